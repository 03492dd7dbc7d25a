/** The admin API: server (agent side), client (CLI side), and the CLI's table printer. */
export { AdminServer, prepareSocketPath, type AdminHandler, type AdminMethod, type AdminRequest, type AdminErrorBody } from './server.js';
export { adminRequest, arrayOf, shapeOf, DEFAULT_ADMIN_SOCKET, type AdminRequestOptions, type ShapeCheck } from './client.js';
export { formatTable, type Column, type Cell, type TableOptions } from './table.js';
