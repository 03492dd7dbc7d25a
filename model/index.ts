/** The model's public surface: types, parsing/validation, the model builder, the service table. */
export * from '../k8s/types.js';
export * from './types.js';
export { parseIP, hostPort, familyOf, type ParsedIP } from '../k8s/ip.js';
export { parseObject, validateObject, isModelKind, type Parsed, type ModelObject } from '../k8s/core.js';
export { buildModel } from './model.js';
export { buildServiceTable, serviceEntries, serviceKey, type Backend, type ServiceEntry, type ServiceTable, type ServiceTableOptions } from './service-table.js';
