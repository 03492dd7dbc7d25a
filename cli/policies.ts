/**
 * `kernway policies`: each workload's effective L4 policy and its counters, as the
 * running agent knows them (GET /policies on its admin socket).
 */
import { errorMessage } from '../common/errors.js';
import { adminRequest, DEFAULT_ADMIN_SOCKET, shapeOf } from '../agent/admin/client.js';
import { formatTable } from '../agent/admin/table.js';
import type { PolicyReport, WorkloadReport } from '../agent/datapath/policy-engine.js';
import { parseCommandOptions } from './args.js';
import type { Command } from './command.js';

/** The admin route serving PolicyEngine.report(). */
export const POLICIES_ROUTE = '/v1/policies';

/** What renderPolicies() relies on. */
const POLICIES_SHAPE = shapeOf({ workloads: 'array', policies: 'array', problems: 'array', drops: 'object', totals: 'object' });

const USAGE = `kernway policies [--json] [--admin-socket PATH] [--all]

  --json               print the agent's report as JSON
  --admin-socket PATH  the agent's admin API socket (default: ${DEFAULT_ADMIN_SOCKET})
  --all                also list workloads no policy selects`;

export const command: Command = {
  summary: 'show each workload\'s effective authorization policy and its counters',
  usage: USAGE,
  async run(argv) {
    const values = parseCommandOptions('policies', USAGE, argv, { json: { type: 'boolean' }, 'admin-socket': { type: 'string' }, all: { type: 'boolean' } });
    if (!values) return 2;
    let report: PolicyReport;
    try {
      report = await adminRequest<PolicyReport>(values['admin-socket'] ?? DEFAULT_ADMIN_SOCKET, POLICIES_ROUTE, { shape: POLICIES_SHAPE });
    } catch (e) {
      console.error(`kernway policies: ${errorMessage(e)} [${(e as { code?: string }).code ?? 'KW_INTERNAL'}]`);
      return 1;
    }
    console.log(values.json ? JSON.stringify(report, null, 2) : renderPolicies(report, { all: values.all === true }));
    return 0;
  },
};

function workloadName(w: WorkloadReport): string {
  const labels = Object.entries(w.labels).map(([k, v]) => `${k}=${v}`).join(',');
  return `${w.namespace} sa=${w.serviceAccount}${labels ? ` ${labels}` : ''}`;
}

/** The human view of a report: workloads, then their local pods with counters, then policies and problems. */
export function renderPolicies(r: PolicyReport, opts: { all?: boolean } = {}): string {
  const out: string[] = [];
  const shown = r.workloads.filter((w) => opts.all || w.mode !== 'open');
  out.push(formatTable(shown, [
    { header: 'WORKLOAD', value: workloadName },
    { header: 'IDENTITY', value: (w) => w.id },
    { header: 'MODE', value: (w) => w.mode },
    { header: 'POLICIES', value: (w) => w.policies.map((p) => `${p.key}(${p.action}${p.enforcement === 'kernel' ? '' : `, ${p.enforcement}`})`).join(' ') },
    { header: 'ENTRIES', value: (w) => w.entries },
  ], { none: `no workload is selected by a policy (${r.totals.identities} identities; --all lists them)` }));

  const pods = shown.flatMap((w) => w.pods.filter((p) => p.endpoint !== undefined));
  if (pods.length > 0) {
    out.push('', `local pods on ${r.node}:`, formatTable(pods, [
      { header: 'POD', value: (p) => p.pod },
      { header: 'VETH', value: (p) => p.endpoint!.ifname },
      { header: 'STATUS', value: (p) => p.endpoint!.status },
      { header: 'PKTS IN', value: (p) => p.counters?.packetsIn ?? 0 },
      { header: 'BYTES IN', value: (p) => p.counters?.bytesIn ?? 0 },
      { header: 'PKTS OUT', value: (p) => p.counters?.packetsOut ?? 0 },
      { header: 'BYTES OUT', value: (p) => p.counters?.bytesOut ?? 0 },
      { header: 'DENIED', value: (p) => (p.counters?.drops.policy_denied ?? 0) + (p.counters?.drops.policy_l7_unenforceable ?? 0) },
      { header: 'REFUSED AT CONNECT', value: (p) => (p.counters?.drops.policy_denied_connect ?? 0) + (p.counters?.drops.policy_l7_unenforceable_connect ?? 0) },
      { header: 'OWN CONNECTS REFUSED', value: (p) => p.counters?.refusedOut ?? 0 },
    ]));
  }
  if (r.policies.length > 0) {
    out.push('', formatTable(r.policies, [
      { header: 'POLICY', value: (p) => p.key },
      { header: 'ACTION', value: (p) => p.action },
      { header: 'SELECTS', value: (p) => `${p.selects} workload(s)` },
      { header: 'ENFORCED', value: (p) => p.enforcement },
      { header: 'FILE', value: (p) => p.file },
    ]));
  }
  if (r.problems.length > 0) {
    out.push('', 'problems:');
    for (const p of r.problems) out.push(`  ${p.code} ${p.object ?? ''}${p.file ? ` (${p.file})` : ''}: ${p.message}`);
  }
  out.push('', `drops by reason: ${Object.entries(r.drops).map(([k, v]) => `${k}=${v}`).join(' ')}`,
    `${r.totals.policies} policies, ${r.totals.identities} identities, ${r.totals.tables} verdict tables (${r.totals.entries} entries), ${r.totals.cidrs} ipBlock prefixes, ${r.totals.endpoints} local endpoints`);
  return out.join('\n');
}
