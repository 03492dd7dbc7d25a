/**
 * The standalone source end to end on real files: model snapshots, the service table kept
 * up to date from them, and bad input (malformed YAML, a bad port, an EndpointSlice for a
 * missing Service): each gives a clear error naming the file and the field, the source
 * keeps running and the last good state stays in force.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import pino from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ServiceTableBuilder } from '../../model/service-table.js';
import { MODEL, StandaloneSource, type StandaloneSnapshot } from '../../agent/standalone.js';
import { next, sliceYaml, svcYaml, tempDir, write, writeAtomic } from '../sources/helpers.js';

interface LogLine { level: number; msg: string; code?: string; file?: string; object?: string; field?: string }

function capture(): { log: pino.Logger; lines: LogLine[] } {
  const lines: LogLine[] = [];
  const stream = new Writable({ write(chunk, _enc, cb) { for (const l of String(chunk).split('\n')) if (l) lines.push(JSON.parse(l) as LogLine); cb(); } });
  return { log: pino({ level: 'debug' }, stream), lines };
}

let dir: string;
let cleanup: () => void;
let src: StandaloneSource | undefined;
beforeEach(() => ({ dir, cleanup } = tempDir()));
afterEach(() => { src?.close(); src = undefined; cleanup(); });

/** The table as { 'vip:port/proto': ['ip:port', ...] }. */
function view(tb: ServiceTableBuilder): Record<string, string[]> {
  return Object.fromEntries([...tb.table].map(([k, e]) => [k, e.backends.map((b) => `${b.ip}:${b.port}`)]));
}

async function start(): Promise<{ s: StandaloneSource; first: StandaloneSnapshot; tb: ServiceTableBuilder; lines: LogLine[] }> {
  const { log, lines } = capture();
  src = new StandaloneSource(dir, { log, debounceMs: 10 });
  const first = await src.start();
  const tb = new ServiceTableBuilder({ nodeName: 'node-a' });
  tb.update(first.model);
  src.on(MODEL, (snap: StandaloneSnapshot) => tb.update(snap.model, snap.changedServices));
  return { s: src, first, tb, lines };
}

describe('standalone source', () => {
  it('builds the model and follows endpoint changes into the service table', async () => {
    write(join(dir, 'web/service.yaml'), svcYaml('web', '10.96.0.10'));
    write(join(dir, 'web/endpoints.yaml'), sliceYaml('web-1', 'web', ['10.0.0.1', '10.0.0.2']));
    write(join(dir, 'api.yaml'), svcYaml('api', '10.96.0.11') + '---\n' + sliceYaml('api-1', 'api', ['10.0.1.1']));
    const { s, first, tb } = await start();
    expect(first.problems).toEqual([]);
    expect(first.generation).toBe(1);
    expect(view(tb)).toEqual({ '10.96.0.10:80/TCP': ['10.0.0.1:8080', '10.0.0.2:8080'], '10.96.0.11:80/TCP': ['10.0.1.1:8080'] });
    const apiEntry = tb.table.get('10.96.0.11:80/TCP');

    const p = next<StandaloneSnapshot>(s, MODEL);
    writeAtomic(join(dir, 'web/endpoints.yaml'), sliceYaml('web-1', 'web', ['10.0.0.2', '10.0.0.3']));
    const snap = await p;
    expect([...snap.changedServices]).toEqual(['default/web']);
    expect(view(tb)['10.96.0.10:80/TCP']).toEqual(['10.0.0.2:8080', '10.0.0.3:8080']);
    expect(tb.table.get('10.96.0.11:80/TCP')).toBe(apiEntry); // untouched
  });

  it('a Service whose file is deleted leaves the table', async () => {
    write(join(dir, 'web.yaml'), svcYaml('web', '10.96.0.10') + '---\n' + sliceYaml('web-1', 'web', ['10.0.0.1']));
    const { s, tb } = await start();
    const p = next<StandaloneSnapshot>(s, MODEL);
    writeFileSync(join(dir, 'web.yaml'), '');
    await p;
    expect(view(tb)).toEqual({});
  });
});

describe('standalone source: bad input', () => {
  async function goodState() {
    write(join(dir, 'web/service.yaml'), svcYaml('web', '10.96.0.10'));
    write(join(dir, 'web/endpoints.yaml'), sliceYaml('web-1', 'web', ['10.0.0.1']));
    const r = await start();
    expect(r.first.problems).toEqual([]);
    expect(view(r.tb)).toEqual({ '10.96.0.10:80/TCP': ['10.0.0.1:8080'] });
    return r;
  }

  it('malformed YAML: error names the file and the line, the last good endpoints stay', async () => {
    const { s, tb, lines } = await goodState();
    const file = join(dir, 'web/endpoints.yaml');
    const p = next<StandaloneSnapshot>(s, MODEL, (x) => x.problems.length > 0);
    writeFileSync(file, sliceYaml('web-1', 'web', ['10.0.0.9']).replace('endpoints:\n', 'endpoints:\n  - [oops\n'));
    const snap = await p;
    expect(snap.problems).toHaveLength(1);
    expect(snap.problems[0]).toMatchObject({ code: 'KW_MANIFEST_PARSE', file });
    expect(snap.problems[0]!.message).toMatch(/^YAML syntax error at line \d+, column \d+/);
    expect(view(tb)).toEqual({ '10.96.0.10:80/TCP': ['10.0.0.1:8080'] });
    const warn = lines.find((l) => l.level === 40 && l.code === 'KW_MANIFEST_PARSE');
    expect(warn).toMatchObject({ file, msg: snap.problems[0]!.message });

    // The source keeps running: a fix is picked up, and the problem is logged as resolved.
    const fixed = next<StandaloneSnapshot>(s, MODEL, (x) => x.problems.length === 0);
    writeFileSync(file, sliceYaml('web-1', 'web', ['10.0.0.9']));
    await fixed;
    expect(view(tb)).toEqual({ '10.96.0.10:80/TCP': ['10.0.0.9:8080'] });
    expect(lines.some((l) => l.level === 30 && l.code === 'KW_MANIFEST_PARSE' && l.msg.startsWith('resolved: '))).toBe(true);
  });

  it('a Service with a bad port: error names file, object and field; the Service keeps its last good ports', async () => {
    const { s, tb, lines } = await goodState();
    const file = join(dir, 'web/service.yaml');
    const p = next<StandaloneSnapshot>(s, MODEL, (x) => x.problems.length > 0);
    writeAtomic(file, svcYaml('web', '10.96.0.10', 70000));
    const snap = await p;
    expect(snap.problems).toEqual([{
      code: 'KW_INVALID_FIELD', file, object: 'Service default/web', field: 'spec.ports[0].port',
      message: 'spec.ports[0].port: must be an integer from 1 to 65535, got number 70000',
    }]);
    expect(view(tb)).toEqual({ '10.96.0.10:80/TCP': ['10.0.0.1:8080'] });
    expect(lines.find((l) => l.code === 'KW_INVALID_FIELD')).toMatchObject({ level: 40, file, object: 'Service default/web', field: 'spec.ports[0].port' });

    const fixed = next<StandaloneSnapshot>(s, MODEL, (x) => x.problems.length === 0);
    writeAtomic(file, svcYaml('web', '10.96.0.10', 81));
    await fixed;
    expect(view(tb)).toEqual({ '10.96.0.10:81/TCP': ['10.0.0.1:8080'] });
  });

  it('an EndpointSlice for a missing Service: error names the file and the label field, the rest stays', async () => {
    const { s, tb, lines } = await goodState();
    const file = join(dir, 'orphan.yaml');
    const p = next<StandaloneSnapshot>(s, MODEL, (x) => x.problems.length > 0);
    write(file, sliceYaml('ghost-1', 'ghost', ['10.0.9.9']));
    const snap = await p;
    expect(snap.problems).toEqual([{
      code: 'KW_SERVICE_NOT_FOUND', file, object: 'EndpointSlice default/ghost-1', field: 'metadata.labels["kubernetes.io/service-name"]',
      message: 'metadata.labels["kubernetes.io/service-name"]: Service default/ghost is not defined (in any manifest); the endpoints of this EndpointSlice are not used',
    }]);
    expect(view(tb)).toEqual({ '10.96.0.10:80/TCP': ['10.0.0.1:8080'] });
    expect(lines.find((l) => l.code === 'KW_SERVICE_NOT_FOUND')).toMatchObject({ level: 40, file });

    // Defining the Service later brings the slice into use.
    const p2 = next<StandaloneSnapshot>(s, MODEL, (x) => x.problems.length === 0);
    write(join(dir, 'ghost-svc.yaml'), svcYaml('ghost', '10.96.0.99'));
    await p2;
    expect(view(tb)['10.96.0.99:80/TCP']).toEqual(['10.0.9.9:8080']);
  });

  it('a bad file at start: reported, the others applied, the source starts', async () => {
    write(join(dir, 'good.yaml'), svcYaml('web', '10.96.0.10') + '---\n' + sliceYaml('web-1', 'web', ['10.0.0.1']));
    write(join(dir, 'bad.yaml'), svcYaml('api', '10.96.0.11', 'http'));
    const { first, tb } = await start();
    expect(first.problems).toMatchObject([{ code: 'KW_INVALID_FIELD', file: join(dir, 'bad.yaml'), object: 'Service default/api', field: 'spec.ports[0].port' }]);
    expect(view(tb)).toEqual({ '10.96.0.10:80/TCP': ['10.0.0.1:8080'] });
  });

  it('problems are logged once, not at every snapshot', async () => {
    const { s, lines } = await goodState();
    let p = next<StandaloneSnapshot>(s, MODEL, (x) => x.problems.length > 0);
    write(join(dir, 'bad.yaml'), 'kind: [\n');
    await p;
    p = next<StandaloneSnapshot>(s, MODEL);
    write(join(dir, 'other.yaml'), svcYaml('other', '10.96.0.12'));
    await p;
    expect(lines.filter((l) => l.code === 'KW_MANIFEST_PARSE' && l.level === 40)).toHaveLength(1);
  });
});

describe('standalone source: other readers of the directory', () => {
  it('an extra validator rejects files like the registry does; policies are in the model, with their change set', async () => {
    write(join(dir, 'a.yaml'), svcYaml('web', '10.96.0.10') + '---\napiVersion: kernway.io/v1alpha1\nkind: AuthorizationPolicy\nmetadata: {name: p1}\nspec: {action: ALLOW}\n');
    write(join(dir, 'b.yaml'), svcYaml('api', '10.96.0.11') + '---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {veto: "yes"}\n');
    src = new StandaloneSource(dir, {
      validate: (o) => (o.object.kind === 'ConfigMap' && (o.object.data as { veto?: string } | undefined)?.veto === 'yes'
        ? [{ code: 'KW_INVALID_FIELD', file: o.file, object: `ConfigMap ${o.object.metadata.name}`, field: 'data.veto', message: 'data.veto: vetoed' }]
        : []),
    });
    const first = await src.start();
    expect([...first.model.services.keys()]).toEqual(['default/web']); // b.yaml rejected as a whole
    expect(first.problems).toMatchObject([{ code: 'KW_INVALID_FIELD', file: join(dir, 'b.yaml'), field: 'data.veto' }]);
    expect([...first.model.policies.keys()]).toEqual(['default/p1']);
    expect([...first.change.policies]).toEqual(['default/p1']);

    const next = new Promise<StandaloneSnapshot>((resolve) => src!.once(MODEL, resolve));
    write(join(dir, 'a.yaml'), svcYaml('web', '10.96.0.10') + '---\napiVersion: kernway.io/v1alpha1\nkind: AuthorizationPolicy\nmetadata: {name: p1}\nspec: {action: DENY}\n');
    const s = await next;
    expect(s.model.policies.get('default/p1')?.action).toBe('DENY');
    expect([...s.change.policies]).toEqual(['default/p1']);
    expect(s.change.pods.size).toBe(0);
  });
});
