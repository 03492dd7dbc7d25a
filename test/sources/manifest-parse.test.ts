/** Parsing one manifest file: documents, lists, and problems that say where. */
import { describe, expect, it } from 'vitest';
import { parseManifestText } from '../../sources/manifest-parse.js';

describe('parseManifestText', () => {
  it('reads every document of a multi-document YAML file, skipping empty ones', () => {
    const r = parseManifestText('m.yaml', [
      '---', 'apiVersion: v1', 'kind: Service', 'metadata: {name: a}', '---', '# only a comment', '---',
      'apiVersion: v1', 'kind: Pod', 'metadata:', '  name: b', '  namespace: x', '---', '',
    ].join('\n'));
    expect(r.problems).toEqual([]);
    expect(r.documents.map((d) => [d.index, d.object.kind, d.object.metadata.name])).toEqual([[0, 'Service', 'a'], [2, 'Pod', 'b']]);
  });

  it('expands kind: List and typed lists', () => {
    const r = parseManifestText('l.yaml', [
      'apiVersion: v1', 'kind: List', 'items:', '- {apiVersion: v1, kind: Service, metadata: {name: a}}', '- {apiVersion: v1, kind: Service, metadata: {name: b}}',
      '---', 'apiVersion: v1', 'kind: ServiceList', 'items: [{apiVersion: v1, kind: Service, metadata: {name: c}}]',
    ].join('\n'));
    expect(r.problems).toEqual([]);
    expect(r.documents.map((d) => [d.index, d.object.metadata.name])).toEqual([[0, 'a'], [0, 'b'], [1, 'c']]);
  });

  it('reports a YAML syntax error with its line and column', () => {
    const r = parseManifestText('bad.yaml', 'apiVersion: v1\nkind: Service\nmetadata:\n  name: [a\n  namespace: x\n');
    expect(r.documents).toEqual([]);
    expect(r.problems).toHaveLength(1);
    expect(r.problems[0]).toMatchObject({ code: 'KW_MANIFEST_PARSE', file: 'bad.yaml' });
    expect(r.problems[0]!.message).toMatch(/^YAML syntax error at line \d+, column \d+ \(document 0\): /);
  });

  it('reports the line of an error in a later document', () => {
    const r = parseManifestText('bad.yaml', 'apiVersion: v1\nkind: Pod\nmetadata: {name: a}\n---\napiVersion: v1\nkind: Pod\nkind: Pod\nmetadata: {name: b}\n');
    expect(r.documents.map((d) => d.object.metadata.name)).toEqual(['a']);
    expect(r.problems[0]!.message).toMatch(/line 7, column 1 \(document 1\).*unique/);
  });

  const shapes: [string, string, string, RegExp][] = [
    ['apiVersion missing', 'kind: Service\nmetadata: {name: a}\n', 'apiVersion', /apiVersion is missing/],
    ['kind missing', 'apiVersion: v1\nmetadata: {name: a}\n', 'kind', /kind is missing/],
    ['kind empty', 'apiVersion: v1\nkind: ""\nmetadata: {name: a}\n', 'kind', /non-empty string/],
    ['metadata missing', 'apiVersion: v1\nkind: Service\n', 'metadata', /metadata is missing/],
    ['metadata.name missing', 'apiVersion: v1\nkind: Service\nmetadata: {namespace: x}\n', 'metadata.name', /metadata.name is missing/],
    ['metadata.name a number', 'apiVersion: v1\nkind: Service\nmetadata: {name: 3}\n', 'metadata.name', /non-empty string/],
    ['a label that is not a string', 'apiVersion: v1\nkind: Service\nmetadata: {name: a, labels: {on: true}}\n', 'metadata.labels["on"]', /must be a string \(quote it\)/],
  ];
  for (const [what, text, field, msg] of shapes) {
    it(`names the field when ${what}`, () => {
      const r = parseManifestText('s.yaml', text);
      expect(r.documents).toEqual([]);
      expect(r.problems).toHaveLength(1);
      expect(r.problems[0]).toMatchObject({ code: 'KW_MANIFEST_SHAPE', file: 's.yaml', field });
      expect(r.problems[0]!.message).toMatch(msg);
    });
  }

  it('names the list item of a bad List entry', () => {
    const r = parseManifestText('l.yaml', 'apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: Pod, metadata: {name: a}}\n- {apiVersion: v1, kind: Pod}\n- 3\n');
    expect(r.problems.map((p) => p.field)).toEqual(['items[1].metadata', 'items[2]']);
    expect(r.problems[1]!.message).toMatch(/items\[2\]: expected a mapping/);
  });

  it('rejects a document that is not a mapping', () => {
    const r = parseManifestText('s.yaml', '- a\n- b\n');
    expect(r.problems[0]).toMatchObject({ code: 'KW_MANIFEST_SHAPE', message: 'document 0: expected a mapping (a Kubernetes object), got a list' });
  });

  it('drops empty labels (labels: with nothing under it)', () => {
    const r = parseManifestText('s.yaml', 'apiVersion: v1\nkind: Pod\nmetadata:\n  name: a\n  labels:\n');
    expect(r.problems).toEqual([]);
    expect(r.documents[0]!.object.metadata).toEqual({ name: 'a' });
  });

  it('reads JSON, and says where a JSON syntax error is', () => {
    const ok = parseManifestText('o.json', JSON.stringify({ apiVersion: 'v1', kind: 'List', items: [{ apiVersion: 'v1', kind: 'Pod', metadata: { name: 'a' } }] }));
    expect(ok.documents.map((d) => d.object.metadata.name)).toEqual(['a']);
    const bad = parseManifestText('o.json', '{\n  "apiVersion": "v1",\n  "kind": "Pod",,\n}');
    expect(bad.documents).toEqual([]);
    expect(bad.problems[0]!.message).toMatch(/line 3/);
  });
});
