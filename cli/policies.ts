/**
 * `kernway policies`: each workload's effective L4 policy and its counters, as the
 * running agent knows them (GET /policies on its admin socket).
 */
import { request } from 'node:http';
import { parseArgs } from 'node:util';
import { KernwayError, errorMessage } from '../common/errors.js';
import type { PolicyReport, WorkloadReport } from '../agent/datapath/policy-engine.js';
import type { Command } from './main.js';

const DEFAULT_ADMIN_SOCKET = '/run/kernway/admin.sock';

const USAGE = `kernway policies [--json] [--admin-socket PATH] [--all]

  --json               print the agent's report as JSON
  --admin-socket PATH  the agent's admin API socket (default: ${DEFAULT_ADMIN_SOCKET})
  --all                also list workloads no policy selects`;

export const command: Command = {
  summary: 'show each workload\'s effective authorization policy and its counters',
  usage: USAGE,
  async run(argv) {
    let values;
    try {
      ({ values } = parseArgs({
        args: argv, strict: true, allowPositionals: false,
        options: { json: { type: 'boolean' }, 'admin-socket': { type: 'string' }, all: { type: 'boolean' } },
      }));
    } catch (e) {
      console.error(`kernway policies: ${errorMessage(e)}\nusage: ${USAGE}`);
      return 2;
    }
    const socket = values['admin-socket'] ?? DEFAULT_ADMIN_SOCKET;
    let report: PolicyReport;
    try {
      report = await fetchReport(socket);
    } catch (e) {
      console.error(`kernway policies: ${errorMessage(e)}`);
      return 1;
    }
    console.log(values.json ? JSON.stringify(report, null, 2) : renderPolicies(report, { all: values.all === true }));
    return 0;
  },
};

/** GET /policies from the agent's admin socket. */
export function fetchReport(socketPath: string, timeoutMs = 5000): Promise<PolicyReport> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath, path: '/policies', method: 'GET', timeout: timeoutMs }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (d: string) => { body += d; }).on('end', () => {
        if (res.statusCode !== 200) {
          reject(new KernwayError('KW_ADMIN', `the agent answered ${res.statusCode} on ${socketPath}: ${body.trim().slice(0, 200)}`));
          return;
        }
        try { resolve(JSON.parse(body) as PolicyReport); } catch (e) { reject(new KernwayError('KW_ADMIN', `bad JSON from the agent: ${errorMessage(e)}`)); }
      });
    });
    req.on('timeout', () => req.destroy(new KernwayError('KW_ADMIN', `no answer from the agent on ${socketPath} within ${timeoutMs} ms`)));
    req.on('error', (e: NodeJS.ErrnoException) => {
      if (e instanceof KernwayError) reject(e);
      else reject(new KernwayError('KW_ADMIN', `cannot reach the agent on ${socketPath} (${e.code ?? e.message}): is \`kernway agent\` running? (--admin-socket)`));
    });
    req.end();
  });
}

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  return rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  ').trimEnd()).join('\n');
}

function workloadName(w: WorkloadReport): string {
  const labels = Object.entries(w.labels).map(([k, v]) => `${k}=${v}`).join(',');
  return `${w.namespace} sa=${w.serviceAccount}${labels ? ` ${labels}` : ''}`;
}

/** The human view of a report: workloads, then their local pods with counters, then policies and problems. */
export function renderPolicies(r: PolicyReport, opts: { all?: boolean } = {}): string {
  const out: string[] = [];
  const shown = r.workloads.filter((w) => opts.all || w.mode !== 'open');
  const rows = [['WORKLOAD', 'IDENTITY', 'MODE', 'POLICIES', 'ENTRIES']];
  for (const w of shown) {
    rows.push([workloadName(w), String(w.id), w.mode, w.policies.map((p) => `${p.key}(${p.action}${p.enforcement === 'kernel' ? '' : `, ${p.enforcement}`})`).join(' ') || '-', String(w.entries)]);
  }
  out.push(shown.length > 0 ? table(rows) : `no workload is selected by a policy (${r.totals.identities} identities; --all lists them)`);

  const podRows = [['POD', 'VETH', 'STATUS', 'PKTS IN', 'BYTES IN', 'PKTS OUT', 'BYTES OUT', 'DENIED', 'REFUSED AT CONNECT', 'OWN CONNECTS REFUSED']];
  for (const w of shown) {
    for (const p of w.pods) {
      if (!p.endpoint) continue;
      const c = p.counters;
      podRows.push([
        p.pod, p.endpoint.ifname ?? '-', p.endpoint.status,
        String(c?.packetsIn ?? 0), String(c?.bytesIn ?? 0), String(c?.packetsOut ?? 0), String(c?.bytesOut ?? 0),
        String((c?.drops.policy_denied ?? 0) + (c?.drops.policy_l7_unenforceable ?? 0)),
        String((c?.drops.policy_denied_connect ?? 0) + (c?.drops.policy_l7_unenforceable_connect ?? 0)),
        String(c?.refusedOut ?? 0),
      ]);
    }
  }
  if (podRows.length > 1) out.push('', `local pods on ${r.node}:`, table(podRows));

  if (r.policies.length > 0) {
    const pr = [['POLICY', 'ACTION', 'SELECTS', 'ENFORCED', 'FILE']];
    for (const p of r.policies) pr.push([p.key, p.action, `${p.selects} workload(s)`, p.enforcement, p.file]);
    out.push('', table(pr));
  }
  if (r.problems.length > 0) {
    out.push('', 'problems:');
    for (const p of r.problems) out.push(`  ${p.code} ${p.object ?? ''}${p.file ? ` (${p.file})` : ''}: ${p.message}`);
  }
  out.push('', `drops by reason: ${Object.entries(r.drops).map(([k, v]) => `${k}=${v}`).join(' ')}`,
    `${r.totals.policies} policies, ${r.totals.identities} identities, ${r.totals.tables} verdict tables (${r.totals.entries} entries), ${r.totals.cidrs} ipBlock prefixes, ${r.totals.endpoints} local endpoints`);
  return out.join('\n');
}
