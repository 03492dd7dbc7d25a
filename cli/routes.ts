/**
 * `kernway routes`: the status of HTTPRoutes (per parent: Accepted, ResolvedRefs,
 * PartiallyInvalid, with Gateway API's reasons), the Gateways' listeners, the mesh
 * Services, and the problems found in the manifests. From a running waypoint (its admin
 * address), or computed from a manifest directory.
 */
// (node:http as its CommonJS module: see agent/admin/server.ts.)
const http = process.getBuiltinModule('node:http');
import { InvalidArgumentError, errorMessage } from '../common/errors.js';
import { ManifestDirectory } from '../sources/manifest-dir.js';
import { buildWaypointConfig } from '../model/waypoint-config.js';
import { validateObject } from '../k8s/kinds.js';
import { isIP } from 'node:net';
import { parseHostPort } from '../waypoint/options.js';
import { buildRoutingTable } from '../waypoint/routing/table.js';
import { formatReport, statusReport, type StatusReport } from '../waypoint/status.js';
import { parseCommandOptions } from './args.js';
import type { Command } from './command.js';

const USAGE = `kernway routes [--json] [--admin HOST:PORT | --manifests DIR --namespace NS [--listen-address IP]]

  --admin HOST:PORT    a running waypoint's admin address (default 127.0.0.1:15020)
  --manifests DIR      compute the status from manifests instead (with --namespace)
  --namespace NS       the waypoint namespace, with --manifests
  --listen-address IP  the waypoint's --listen-address, with --manifests (default 0.0.0.0)
  --json               print the report as JSON`;

function fetchReport(addr: { host: string; port: number }): Promise<StatusReport> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: addr.host, port: addr.port, path: '/debug/routes', timeout: 5000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => { body += d; });
      res.on('end', () => {
        if (res.statusCode !== 200) { reject(new Error(`waypoint at ${addr.host}:${addr.port} answered ${res.statusCode}: ${body.trim()}`)); return; }
        try { resolve(JSON.parse(body) as StatusReport); } catch (e) { reject(new Error(`waypoint at ${addr.host}:${addr.port}: unreadable report (${errorMessage(e)})`)); }
      });
    });
    req.on('timeout', () => req.destroy(new Error(`no answer from a waypoint at ${addr.host}:${addr.port} within 5s`)));
    req.on('error', (e: NodeJS.ErrnoException) => reject(new Error(e.code === 'ECONNREFUSED'
      ? `no waypoint listening on ${addr.host}:${addr.port} (start one, or pass --admin, or --manifests DIR --namespace NS)`
      : `cannot reach the waypoint at ${addr.host}:${addr.port}: ${e.message}`)));
  });
}

async function computeReport(dir: string, namespace: string, listenAddress: string): Promise<StatusReport> {
  const md = new ManifestDirectory(dir, { validate: validateObject });
  const snap = await md.load();
  md.close();
  const cfg = buildWaypointConfig(snap.objects);
  const table = buildRoutingTable(cfg, { namespace, listenAddress });
  return statusReport(table, 1, [...snap.problems, ...cfg.problems], [], undefined);
}

export const command: Command = {
  summary: 'show HTTPRoute status (Accepted, ResolvedRefs with reasons), Gateway listeners and manifest problems',
  usage: USAGE,
  async run(argv) {
    const values = parseCommandOptions('routes', USAGE, argv, { json: { type: 'boolean' }, admin: { type: 'string' }, manifests: { type: 'string' }, namespace: { type: 'string' }, 'listen-address': { type: 'string' } });
    if (!values) return 2;
    let report: StatusReport;
    try {
      if (values.manifests !== undefined) {
        if (values.admin !== undefined) throw new InvalidArgumentError('--admin', 'not with --manifests', values.admin);
        if (values.namespace === undefined) throw new InvalidArgumentError('--namespace', 'a namespace (required with --manifests)', undefined);
        if (!/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(values.namespace) || values.namespace.length > 63) {
          throw new InvalidArgumentError('--namespace', 'a namespace name (DNS label: lowercase letters, digits and -)', values.namespace);
        }
        const listen = values['listen-address'] ?? '0.0.0.0';
        if (isIP(listen) === 0) throw new InvalidArgumentError('--listen-address', 'an IPv4 or IPv6 address', listen);
        report = await computeReport(values.manifests, values.namespace, listen);
      } else {
        if (values['listen-address'] !== undefined) throw new InvalidArgumentError('--listen-address', 'only with --manifests', values['listen-address']);
        if (values.namespace !== undefined) throw new InvalidArgumentError('--namespace', 'only with --manifests (a running waypoint knows its namespace)', values.namespace);
        report = await fetchReport(parseHostPort('--admin', values.admin ?? '127.0.0.1:15020'));
      }
    } catch (e) {
      console.error(`kernway routes: ${errorMessage(e)}`);
      return e instanceof InvalidArgumentError ? 2 : 1;
    }
    console.log(values.json ? JSON.stringify(report, null, 2) : formatReport(report));
    return 0;
  },
};
