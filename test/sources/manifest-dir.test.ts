/** ManifestDirectory on real files with real fs.watch events. */
import { mkdirSync, renameSync, rmSync, symlinkSync, writeFileSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ManifestDirectory, SNAPSHOT, type Located, type ManifestSnapshot } from '../../sources/manifest-dir.js';
import { next, tempDir, write, writeAtomic } from './helpers.js';
import { slimSourced, validateObject } from '../../k8s/kinds.js';
import { IN_THREAD_MAX_CHARS, type YamlWorker } from '../../sources/yaml-docs.js';

const pod = (name: string, extra = '') => `apiVersion: v1\nkind: Pod\nmetadata:\n  name: ${name}\n${extra}`;
const names = (s: ManifestSnapshot) => s.objects.map((o) => o.object.metadata.name);
const has = (...want: string[]) => (s: ManifestSnapshot) => JSON.stringify(names(s).slice().sort()) === JSON.stringify([...want].sort());

let dir: string;
let cleanup: () => void;
let md: ManifestDirectory | undefined;
beforeEach(() => ({ dir, cleanup } = tempDir()));
afterEach(() => { md?.close(); md = undefined; cleanup(); });

describe('load', () => {
  it('reads *.yaml, *.yml and *.json recursively, in file name order, skipping hidden and other files', async () => {
    write(join(dir, 'b.yaml'), pod('b1') + '---\n' + pod('b2'));
    write(join(dir, 'a.yml'), pod('a'));
    write(join(dir, 'sub/deeper/c.json'), JSON.stringify({ apiVersion: 'v1', kind: 'Pod', metadata: { name: 'c' } }));
    write(join(dir, 'notes.txt'), pod('txt'));
    write(join(dir, '.hidden.yaml'), pod('hidden'));
    write(join(dir, '.git/x.yaml'), pod('git'));
    md = new ManifestDirectory(dir);
    const s = await md.load();
    expect(s.problems).toEqual([]);
    expect(s.objects.map((o: Located) => [o.file.slice(dir.length + 1), o.index, o.object.metadata.name])).toEqual([
      ['a.yml', 0, 'a'], ['b.yaml', 0, 'b1'], ['b.yaml', 1, 'b2'], ['sub/deeper/c.json', 0, 'c'],
    ]);
    expect(s.changes?.added).toHaveLength(4);
  });

  it('reports a bad file (file and reason) and applies the others', async () => {
    write(join(dir, 'good.yaml'), pod('good'));
    write(join(dir, 'bad.yaml'), 'apiVersion: v1\nkind: Pod\nmetadata: {name: [x\n');
    md = new ManifestDirectory(dir);
    const s = await md.load();
    expect(names(s)).toEqual(['good']);
    expect(s.problems).toHaveLength(1);
    expect(s.problems[0]).toMatchObject({ code: 'KW_MANIFEST_PARSE', file: join(dir, 'bad.yaml') });
    expect(s.problems[0]!.message).toMatch(/line \d+, column \d+/);
  });

  it('a validator problem rejects the whole file', async () => {
    write(join(dir, 'pods.yaml'), pod('ok') + '---\n' + pod('refused'));
    md = new ManifestDirectory(dir, {
      validate: (o) => o.object.metadata.name === 'refused' ? [{ code: 'KW_INVALID_FIELD', file: o.file, object: `Pod ${o.object.metadata.name}`, field: 'metadata.name', message: 'metadata.name: refused' }] : [],
    });
    const s = await md.load();
    expect(names(s)).toEqual([]);
    expect(s.problems).toEqual([{ code: 'KW_INVALID_FIELD', file: join(dir, 'pods.yaml'), object: 'Pod refused', field: 'metadata.name', message: 'metadata.name: refused' }]);
  });

  it('kind: Servicee (a typo in an apiVersion kernway reads) is a problem naming file, document and the hint; apps/v1 Deployment is not', async () => {
    write(join(dir, 'web.yaml'), 'apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n---\napiVersion: v1\nkind: Servicee\nmetadata:\n  name: web\n');
    write(join(dir, 'ok.yaml'), pod('ok') + '---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cfg\n');
    md = new ManifestDirectory(dir, { validate: validateObject });
    const s = await md.load();
    expect(names(s)).toEqual(['ok', 'cfg']);
    expect(s.problems).toEqual([{
      code: 'KW_MANIFEST_UNKNOWN_KIND', file: join(dir, 'web.yaml'), object: 'Servicee web', field: 'kind',
      message: 'document 1: kind "Servicee" is not a kind kernway reads in v1 (it reads Namespace, Service, Pod); did you mean Service?',
    }]);
  });

  it('reports a symlink loop at start, naming its path; fixing it clears the problem', async () => {
    write(join(dir, 'good.yaml'), pod('good'));
    symlinkSync(join(dir, 'b.yaml'), join(dir, 'a.yaml'));
    symlinkSync(join(dir, 'a.yaml'), join(dir, 'b.yaml'));
    mkdirSync(join(dir, 'sub'));
    symlinkSync('self', join(dir, 'sub', 'self'));
    symlinkSync('..', join(dir, 'sub', 'up')); // a directory loop
    symlinkSync(join(dir, 'sub'), join(dir, 'side')); // a symlinked directory, not a loop: not followed, not a problem
    md = new ManifestDirectory(dir);
    const s = await md.load();
    expect(names(s)).toEqual(['good']);
    expect(s.problems.map((p) => [p.code, p.file])).toEqual([
      ['KW_MANIFEST_READ', join(dir, 'a.yaml')], ['KW_MANIFEST_READ', join(dir, 'b.yaml')], ['KW_MANIFEST_READ', join(dir, 'sub', 'self')],
      ['KW_MANIFEST_READ', join(dir, 'sub', 'up')],
    ]);
    expect(s.problems[0]!.message).toBe(`cannot read: a symlink loop (${join(dir, 'a.yaml')} leads back to itself through symbolic links); fix or remove the link`);
    unlinkSync(join(dir, 'b.yaml'));
    write(join(dir, 'b.yaml'), pod('b')); // a.yaml -> b.yaml is now a plain link to a file
    unlinkSync(join(dir, 'a.yaml'));
    unlinkSync(join(dir, 'sub', 'self'));
    unlinkSync(join(dir, 'sub', 'up'));
    const again = await md.load();
    expect(again.problems).toEqual([]);
    expect(names(again).sort()).toEqual(['b', 'good']);
  });

  it('a throwing validator is a problem, not a crash', async () => {
    write(join(dir, 'pods.yaml'), pod('a'));
    md = new ManifestDirectory(dir, { validate: () => { throw new Error('boom'); } });
    const s = await md.load();
    expect(s.problems[0]).toMatchObject({ code: 'KW_MANIFEST_VALIDATOR', object: 'Pod a' });
  });

  it('the same object in two files: the first by file name is used, the other reported', async () => {
    write(join(dir, 'a.yaml'), pod('same', '  labels: {from: a}\n'));
    write(join(dir, 'b.yaml'), pod('same', '  labels: {from: b}\n') + '---\n' + pod('other'));
    write(join(dir, 'c.yaml'), pod('same', '  namespace: default\n')); // the default namespace, spelled out: the same object
    md = new ManifestDirectory(dir);
    const s = await md.load();
    expect(s.objects.map((o) => [o.object.metadata.name, o.file.slice(dir.length + 1)])).toEqual([['same', 'a.yaml'], ['other', 'b.yaml']]);
    expect(s.problems.map((p) => [p.code, p.file.slice(dir.length + 1), p.object, p.field])).toEqual([
      ['KW_MANIFEST_DUPLICATE', 'b.yaml', 'Pod same', 'metadata.name'],
      ['KW_MANIFEST_DUPLICATE', 'c.yaml', 'Pod default/same', 'metadata.name'],
    ]);
    expect(s.problems[0]!.message).toMatch(/also defined in .*a\.yaml \(document 0\); that one is used/);
  });

  it('refuses a missing directory or a file (KW_MANIFEST_DIR)', async () => {
    await expect(new ManifestDirectory(join(dir, 'nope')).load()).rejects.toMatchObject({ code: 'KW_MANIFEST_DIR', message: expect.stringMatching(/does not exist/) });
    write(join(dir, 'f.yaml'), '');
    await expect(new ManifestDirectory(join(dir, 'f.yaml')).load()).rejects.toMatchObject({ code: 'KW_MANIFEST_DIR', message: expect.stringMatching(/not a directory/) });
  });

  it('slim: keeps what it returns as the located object itself (one object per document), removed as delivered', async () => {
    write(join(dir, 'p.yaml'), pod('a') + '---\n' + pod('b'));
    md = new ManifestDirectory(dir, { validate: validateObject, slim: slimSourced, debounceMs: 5 });
    const s = await md.load();
    expect(s.objects.map((o) => [(o.object as unknown) === o, o.file, o.index, o.object.metadata.name])).toEqual([[true, join(dir, 'p.yaml'), 0, 'a'], [true, join(dir, 'p.yaml'), 1, 'b']]);
    expect(JSON.parse(JSON.stringify(s.objects[0]!.object))).toEqual({ apiVersion: 'v1', kind: 'Pod', metadata: { name: 'a' } });
    md.watch();
    const p = next<ManifestSnapshot>(md, SNAPSHOT, has('b'));
    writeFileSync(join(dir, 'p.yaml'), pod('b'));
    const after = await p;
    expect(after.changes!.removed).toContain(s.objects[0]); // the object as delivered before (the Source contract)
    expect(after.objects[0]!.object).toBe(after.objects[0]);
  });

  it('keeps only what slim returns', async () => {
    write(join(dir, 'p.yaml'), pod('a', 'spec: {nodeName: n1}\n'));
    md = new ManifestDirectory(dir, { slim: (o) => ({ object: { apiVersion: o.object.apiVersion, kind: o.object.kind, metadata: { name: o.object.metadata.name } }, file: o.file, index: o.index }) });
    const s = await md.load();
    expect(s.objects[0]!.object).toEqual({ apiVersion: 'v1', kind: 'Pod', metadata: { name: 'a' } });
  });
});

describe('watch', () => {
  async function started(): Promise<ManifestDirectory> {
    md = new ManifestDirectory(dir, { debounceMs: 10 });
    await md.load();
    md.watch();
    return md;
  }

  it('sees files added, changed and deleted; unchanged files keep their objects', async () => {
    write(join(dir, 'a.yaml'), pod('a'));
    write(join(dir, 'b.yaml'), pod('b'));
    const m = await started();
    const first = (await m.load()).objects; // same state: nothing pending
    const aObj = first.find((o) => o.object.metadata.name === 'a')!;

    let p = next<ManifestSnapshot>(m, SNAPSHOT, has('a', 'b', 'c'));
    write(join(dir, 'c.yaml'), pod('c'));
    let s = await p;
    expect(s.changes?.added.map((o) => o.object.metadata.name)).toEqual(['c']);
    expect(s.changes?.removed).toEqual([]);
    expect(s.objects.find((o) => o.object.metadata.name === 'a')).toBe(aObj);

    p = next<ManifestSnapshot>(m, SNAPSHOT, has('a', 'b2', 'c'));
    writeFileSync(join(dir, 'b.yaml'), pod('b2'));
    s = await p;
    expect(s.changes?.added.map((o) => o.object.metadata.name)).toEqual(['b2']);
    expect(s.changes?.removed.map((o) => o.object.metadata.name)).toEqual(['b']);

    p = next<ManifestSnapshot>(m, SNAPSHOT, has('b2', 'c'));
    unlinkSync(join(dir, 'a.yaml'));
    s = await p;
    expect(s.changes?.removed).toEqual([aObj]);
  });

  it('a large file is parsed in the worker thread, which is stopped once the load or the change is done (started again on demand)', async () => {
    const many = (prefix: string, n: number) => Array.from({ length: n }, (_, i) => pod(`${prefix}-${i}`, '  labels:\n    filler: "' + 'x'.repeat(60) + '"\n')).join('---\n');
    const big = many('p', 1100);
    expect(big.length).toBeGreaterThan(IN_THREAD_MAX_CHARS); // the worker's path
    write(join(dir, 'big.yaml'), big);
    const m = await started();
    const worker = (m as unknown as { yaml: YamlWorker }).yaml;
    expect(worker.running).toBe(false);
    expect((await m.load()).objects).toHaveLength(1100);
    expect(worker.running).toBe(false);

    const p = next<ManifestSnapshot>(m, SNAPSHOT, (s) => s.objects.length === 1101);
    writeAtomic(join(dir, 'big.yaml'), many('q', 1101));
    const s = await p;
    expect(s.problems).toEqual([]);
    expect(s.objects.map((o) => o.object.metadata.name)).toContain('q-1100');
    expect(worker.running).toBe(false);
  });

  it('sees renames: editor-style saves (temp file renamed over) and moves', async () => {
    write(join(dir, 'a.yaml'), pod('a'));
    const m = await started();
    let p = next<ManifestSnapshot>(m, SNAPSHOT, has('a2'));
    writeAtomic(join(dir, 'a.yaml'), pod('a2'));
    await p;
    p = next<ManifestSnapshot>(m, SNAPSHOT, (s) => has('a2')(s) && s.objects[0]!.file === join(dir, 'z.yaml'));
    renameSync(join(dir, 'a.yaml'), join(dir, 'z.yaml'));
    await p;
    p = next<ManifestSnapshot>(m, SNAPSHOT, has());
    renameSync(join(dir, 'z.yaml'), join(dir, 'z.yaml.bak'));
    await p;
  });

  it('a bad edit keeps the previous good content in force and is reported; fixing it clears the problem', async () => {
    write(join(dir, 'a.yaml'), pod('a'));
    const m = await started();
    let p = next<ManifestSnapshot>(m, SNAPSHOT, (s) => s.problems.length > 0);
    writeFileSync(join(dir, 'a.yaml'), 'apiVersion: v1\nkind: Pod\nmetadata: {name: [\n');
    let s = await p;
    expect(names(s)).toEqual(['a']);
    expect(s.problems[0]).toMatchObject({ code: 'KW_MANIFEST_PARSE', file: join(dir, 'a.yaml') });
    expect(s.changes).toEqual({ added: [], removed: [] });
    p = next<ManifestSnapshot>(m, SNAPSHOT, (s2) => s2.problems.length === 0);
    writeFileSync(join(dir, 'a.yaml'), pod('a-fixed'));
    s = await p;
    expect(names(s)).toEqual(['a-fixed']);
  });

  it('sees new subdirectories (and files in them), and their removal', async () => {
    const m = await started();
    let p = next<ManifestSnapshot>(m, SNAPSHOT, has('x', 'y'));
    mkdirSync(join(dir, 'ns1/deep'), { recursive: true });
    writeFileSync(join(dir, 'ns1/x.yaml'), pod('x'));
    writeFileSync(join(dir, 'ns1/deep/y.yaml'), pod('y'));
    await p;
    p = next<ManifestSnapshot>(m, SNAPSHOT, has('x', 'y', 'z'));
    writeFileSync(join(dir, 'ns1/deep/z.yaml'), pod('z')); // the new directory is watched too
    await p;
    p = next<ManifestSnapshot>(m, SNAPSHOT, has());
    rmSync(join(dir, 'ns1'), { recursive: true });
    await p;
  });

  it('promotes a duplicate when the file that won is removed', async () => {
    write(join(dir, 'a.yaml'), pod('same', '  labels: {from: a}\n'));
    write(join(dir, 'b.yaml'), pod('same', '  labels: {from: b}\n'));
    const m = await started();
    const p = next<ManifestSnapshot>(m, SNAPSHOT);
    unlinkSync(join(dir, 'a.yaml'));
    const s = await p;
    expect(s.objects.map((o) => (o.object.metadata.labels as Record<string, string> | undefined)?.from)).toEqual(['b']);
    expect(s.problems).toEqual([]);
    expect(s.changes?.added.map((o) => o.file)).toEqual([join(dir, 'b.yaml')]);
    expect(s.changes?.removed.map((o) => o.file)).toEqual([join(dir, 'a.yaml')]);
  });

  it('keeps nothing of 1,000 objects once their files are gone (claims by scope and name, duplicates included)', async () => {
    const svc = (ns: string, i: number) => `apiVersion: v1\nkind: Service\nmetadata:\n  name: svc-${i}\n  namespace: ${ns}\nspec:\n  clusterIP: 10.96.${i >> 8}.${(i & 255) + 1}\n  ports: [{port: 80}]\n`;
    const m = await started();
    let p = next<ManifestSnapshot>(m, SNAPSHOT, (s) => s.objects.length === 1001 && s.problems.length === 1);
    for (let f = 0; f < 10; f++) {
      const docs: string[] = [];
      for (let i = f * 100; i < (f + 1) * 100; i++) docs.push(svc(i % 2 === 0 ? 'team-a' : 'team-b', i));
      write(join(dir, `svc-${f}.yaml`), docs.join('---\n'));
    }
    write(join(dir, 'zz-dup.yaml'), svc('team-a', 0) + '---\n' + pod('p'));
    let s = await p;
    expect(s.problems.map((x) => [x.code, x.object])).toEqual([['KW_MANIFEST_DUPLICATE', 'Service team-a/svc-0']]);
    expect(m.claimCounts()).toEqual({ scopes: 3, identities: 1001, duplicated: 1 });
    p = next<ManifestSnapshot>(m, SNAPSHOT, (x) => x.objects.length === 0);
    for (let f = 0; f < 10; f++) unlinkSync(join(dir, `svc-${f}.yaml`));
    unlinkSync(join(dir, 'zz-dup.yaml'));
    s = await p;
    expect(s.problems).toEqual([]);
    expect(m.claimCounts()).toEqual({ scopes: 0, identities: 0, duplicated: 0 });
  });

  it('follows a ConfigMap volume update (..data symlink swap)', async () => {
    // The kubelet's layout: ..<timestamp>/ holds the files, ..data -> it, name.yaml -> ..data/name.yaml.
    mkdirSync(join(dir, '..v1'));
    writeFileSync(join(dir, '..v1/app.yaml'), pod('v1'));
    symlinkSync('..v1', join(dir, '..data'));
    symlinkSync('..data/app.yaml', join(dir, 'app.yaml'));
    const m = await started();
    expect(names(await m.load())).toEqual(['v1']);
    const p = next<ManifestSnapshot>(m, SNAPSHOT, has('v2'));
    mkdirSync(join(dir, '..v2'));
    writeFileSync(join(dir, '..v2/app.yaml'), pod('v2'));
    symlinkSync('..v2', join(dir, '..data_tmp'));
    renameSync(join(dir, '..data_tmp'), join(dir, '..data'));
    await p;
  });

  it('watch() without load() emits the first snapshot; close() stops events', async () => {
    write(join(dir, 'a.yaml'), pod('a'));
    md = new ManifestDirectory(dir, { debounceMs: 5 });
    const p = next<ManifestSnapshot>(md, SNAPSHOT);
    md.watch();
    expect(names(await p)).toEqual(['a']);
    md.close();
    let seen = false;
    md.on(SNAPSHOT, () => { seen = true; });
    writeFileSync(join(dir, 'b.yaml'), pod('b'));
    // Give a live watcher ample occasion to fire (this bounds nothing; it only lets events arrive).
    await new Promise((r) => setTimeout(r, 200));
    expect(seen).toBe(false);
  });
});
