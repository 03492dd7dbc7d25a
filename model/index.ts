/** The model's public surface: the model and its change sets, the builder, the service table, the waypoint's view and bindings. */
export * from './types.js';
export { buildModel, ModelBuilder, type ModelDelta } from './model.js';
export { buildServiceTable, serviceEntries, serviceKey, type Backend, type ServiceEntry, type ServiceTable, type ServiceTableOptions } from './service-table.js';
export { buildWaypointConfig, waypointConfigOf, type WaypointConfig } from './waypoint-config.js';
export * from './waypoint-binding.js';
