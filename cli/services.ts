/**
 * `kernway services`: what the kernel balances, read from the load balancer's maps —
 * through the running agent's admin API, or with --bpffs straight from the pinned maps
 * (no agent needed).
 */
import { DEFAULTS } from '../agent/options.js';
import type { KernelService } from '../agent/datapath/inspect.js';
import { formatTable } from '../agent/admin/table.js';
import { parseCommandOptions } from './args.js';
import type { Command } from './command.js';

const USAGE = `kernway services [--json] [--admin-socket PATH | --bpffs DIR]

  --json               print JSON instead of a table
  --admin-socket PATH  the agent's admin socket (default: ${DEFAULTS.adminSocket})
  --bpffs DIR          read the pinned maps under DIR directly, without an agent`;

export function formatServices(services: readonly KernelService[]): string {
  return formatTable(services, [
    { header: 'FRONTEND', value: (s) => s.frontend },
    { header: 'SERVICE', value: (s) => (s.service ? `${s.service}${s.portName ? `:${s.portName}` : ''}` : undefined) },
    { header: 'ALGORITHM', value: (s) => s.algorithm + (s.affinityTimeoutSeconds !== null ? ` +affinity ${s.affinityTimeoutSeconds}s` : '') },
    { header: 'BACKENDS', value: (s) => s.backends, empty: '(none: connect() refused)' },
    // Only when some HTTP port is handed to a waypoint (docs/waypoint-handoff.md).
    ...(services.some((s) => s.waypointPods !== undefined)
      ? [{ header: 'WAYPOINT', value: (s: KernelService) => (s.waypointPods === undefined ? undefined : s.waypointPods.length > 0 ? s.waypointPods : '(no ready pod: connect() refused)') }]
      : []),
    { header: 'BALANCED', value: (s) => s.connectionsBalanced },
    { header: 'REFUSED', value: (s) => s.connectionsRefused },
  ], { none: 'no services in the kernel maps' });
}

export const command: Command = {
  summary: 'list the Services the kernel balances (VIP:port/proto, backends, algorithm), read from the maps',
  usage: USAGE,
  async run(argv) {
    const values = parseCommandOptions('services', USAGE, argv, {
      json: { type: 'boolean', default: false }, 'admin-socket': { type: 'string' }, bpffs: { type: 'string' },
    });
    if (!values) return 2;
    if (values.bpffs !== undefined && values['admin-socket'] !== undefined) {
      console.error('kernway services: give --admin-socket or --bpffs, not both');
      return 2;
    }
    let services: KernelService[];
    if (values.bpffs !== undefined) {
      const { openPinnedMaps } = await import('../agent/datapath/sock-lb.js');
      const { readKernelServices } = await import('../agent/datapath/inspect.js');
      const maps = openPinnedMaps(values.bpffs);
      try {
        services = readKernelServices(maps);
      } finally {
        for (const m of Object.values(maps)) m.close?.();
      }
    } else {
      const { adminRequest, arrayOf, shapeOf } = await import('../agent/admin/client.js');
      services = await adminRequest<KernelService[]>(values['admin-socket'] ?? DEFAULTS.adminSocket, '/v1/services',
        { shape: arrayOf(shapeOf({ frontend: 'string', algorithm: 'string', backends: 'array' })) });
    }
    if (values.json) {
      console.log(JSON.stringify(services, null, 2));
    } else {
      console.log(formatServices(services));
    }
    return 0;
  },
};
