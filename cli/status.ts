/**
 * `kernway status`: the running agent at a glance — its state, the last reconcile, the
 * manifests' problems, map usage and the same-node acceleration's counters (GET /v1/status
 * on the admin socket; the counters are read from the kernel when asked).
 */
import { errorMessage } from '../common/errors.js';
import { adminRequest, DEFAULT_ADMIN_SOCKET, shapeOf } from '../agent/admin/client.js';
import { formatTable } from '../agent/admin/table.js';
import type { AgentStatus } from '../agent/agent.js';
import type { MapUsage } from '../agent/datapath/service-sync.js';
import { parseCommandOptions } from './args.js';
import type { Command } from './command.js';

export const STATUS_ROUTE = '/v1/status';

const USAGE = `kernway status [--json] [--admin-socket PATH]

  --json               print the agent's status as JSON
  --admin-socket PATH  the agent's admin API socket (default: ${DEFAULT_ADMIN_SOCKET})`;

export type StatusReport = AgentStatus & { maps?: MapUsage[] };

/** What renderStatus() relies on (the optional parts it checks itself). */
const STATUS_SHAPE = shapeOf({ state: 'string', problems: 'array' });

export const command: Command = {
  summary: "show the running agent's state, last reconcile, problems, maps and sockmap counters",
  usage: USAGE,
  async run(argv) {
    const values = parseCommandOptions('status', USAGE, argv, { json: { type: 'boolean' }, 'admin-socket': { type: 'string' } });
    if (!values) return 2;
    let st: StatusReport;
    try {
      st = await adminRequest<StatusReport>(values['admin-socket'] ?? DEFAULT_ADMIN_SOCKET, STATUS_ROUTE, { shape: STATUS_SHAPE });
    } catch (e) {
      console.error(`kernway status: ${errorMessage(e)} [${(e as { code?: string }).code ?? 'KW_INTERNAL'}]`);
      return 1;
    }
    console.log(values.json ? JSON.stringify(st, null, 2) : renderStatus(st));
    return 0;
  },
};

/** Who holds the status-writer Lease, since when, and whether it is this agent. */
function leaderLine(l: NonNullable<StatusReport['leader']>): string {
  const who = l.leading ? `this agent (${l.identity}) leads` : l.holder ? `${l.holder} leads (this agent, ${l.identity}, is a candidate)` : `no holder yet (this agent, ${l.identity}, is a candidate)`;
  return `${who}${l.holder && l.holderSince ? ` since ${l.holderSince}` : ''}; Lease ${l.lease}${l.lastError ? `; lease requests failing: ${l.lastError}` : ''}`;
}

export function renderStatus(st: StatusReport): string {
  const out: string[] = [];
  const rec = st.lastReconcile;
  out.push(formatTable([
    ['state', st.state],
    ['node', st.nodeName],
    ['cgroup', st.cgroup],
    ['bpffs', st.bpffs],
    ['manifests generation', st.generation],
    ['service ports balanced', st.frontends],
    ['maps adopted from pins', st.reusedMaps ? 'yes (restart)' : 'no (first start)'],
    ['last reconcile', rec ? `${rec.at} in ${rec.ms.toFixed(1)} ms${rec.error ? ` FAILED: ${rec.error}` : ''}` : 'none yet'],
    ...(st.api ? [['API server', `${st.api.server}: ${st.api.unreachableSince ? `unreachable since ${st.api.unreachableSince} (the maps keep the last state)`
      : st.api.synced ? 'connected' : 'syncing'}${st.api.protocol ? ` (${st.api.protocol})` : ''}`] as [string, string]] : []),
    ...(st.leader ? [['status writer', leaderLine(st.leader)] as [string, string]] : []),
  ], [{ header: 'AGENT', value: (r) => r[0] }, { header: '', value: (r) => r[1] }]));
  if (st.problems.length > 0) {
    out.push('', `${st.problems.length} manifest problem(s) (the last good content of those files stays in force):`);
    out.push(formatTable(st.problems, [
      { header: 'CODE', value: (p) => p.code },
      { header: 'FILE', value: (p) => p.file },
      { header: 'OBJECT', value: (p) => p.object ?? '' },
      { header: 'FIELD', value: (p) => p.field ?? '' },
      { header: 'MESSAGE', value: (p) => p.message },
    ]));
  }
  if (st.api) {
    out.push('', formatTable(st.api.kinds, [
      { header: 'KIND', value: (k) => k.kind },
      { header: 'API VERSION', value: (k) => k.apiVersion ?? '-' },
      { header: 'STATE', value: (k) => k.state },
      { header: 'OBJECTS', value: (k) => k.objects },
      { header: 'RELISTS', value: (k) => k.relists },
      { header: 'LAST ERROR', value: (k) => k.lastError ?? '' },
    ]));
  }
  if (st.maps && st.maps.length > 0) {
    out.push('', formatTable(st.maps, [
      { header: 'MAP', value: (m) => m.name },
      { header: 'ENTRIES', value: (m) => m.entries },
      { header: 'CAPACITY', value: (m) => m.capacity },
    ]));
  }
  if (st.sockmap) {
    const s = st.sockmap;
    out.push('', `same-node acceleration (sockmap): ${s.enabled ? 'on' : 'off'}, ${s.sockets}/${s.capacity} sockets, ` +
      `${s.localPods} local pod address(es)${s.localPodsOff ? ` (${s.localPodsOff} opted out)` : ''}, ${s.localPodsTarget ?? 0} receiving redirected bytes`);
    out.push(counterTable(s.stats));
  } else {
    out.push('', 'same-node acceleration (sockmap): not loaded (see the agent log)');
  }
  if (st.waypoints) {
    const w = st.waypoints;
    out.push('', `HTTP ports handed to a waypoint: ${w.frontends.length} (${w.frontends.filter((f) => f.pods.length === 0).length} refused: no ready waypoint pod)`);
    out.push(formatTable(w.frontends, [
      { header: 'FRONTEND', value: (f) => f.frontend },
      { header: 'SERVICE', value: (f) => f.service },
      { header: 'WAYPOINT', value: (f) => f.waypoint },
      { header: 'PODS', value: (f) => (f.pods.length > 0 ? f.pods : `(none: connect() refused${f.reason ? `; ${f.reason}` : ''})`) },
    ]));
    out.push(counterTable(w.stats));
  }
  if (st.feed) {
    const f = st.feed;
    out.push('', `waypoint feed on ${f.addresses.join(', ')}: version ${f.version}, ${f.waypoints.length} waypoint(s) connected, ${f.nacks} NACK(s), ${f.denied} refused`);
    if (f.waypoints.length > 0) {
      out.push(formatTable(f.waypoints, [
        { header: 'NAMESPACE', value: (w) => w.namespace },
        { header: 'WAYPOINT', value: (w) => w.name },
        { header: 'PEER', value: (w) => w.peer },
        { header: 'OBJECTS', value: (w) => w.objects },
        { header: 'SENT', value: (w) => w.sentVersion },
        { header: 'ACKED', value: (w) => w.ackedVersion },
        { header: 'LAST NACK', value: (w) => (w.lastNack ? `v${w.lastNack.version}: ${w.lastNack.reason}` : '') },
      ]));
    }
    if (f.recentNacks.length > 0) {
      out.push('', 'recent NACKs (the waypoint keeps its last good configuration):');
      out.push(formatTable(f.recentNacks, [
        { header: 'AT', value: (n) => n.at },
        { header: 'NAMESPACE', value: (n) => n.namespace },
        { header: 'WAYPOINT', value: (n) => n.name },
        { header: 'VERSION', value: (n) => n.version },
        { header: 'REASON', value: (n) => n.reason },
      ]));
    }
  }
  return out.join('\n');
}

/** Kernel counters (name -> value) as a two-column table. */
function counterTable(stats: Readonly<Record<string, number>>): string {
  return formatTable(Object.entries(stats), [
    { header: 'COUNTER', value: (e) => e[0] },
    { header: 'VALUE', value: (e) => e[1] },
  ]);
}
