/** The conformance judge itself: it must reject what upstream's harness rejects (else the suite proves nothing). */
import { describe, expect, it } from 'vitest';
import type { Captured } from './conformance/client.js';
import { judge, type Request } from './conformance/cases.js';
import type { CaseAssert } from './conformance/data.js';

const r: Request = { method: 'GET', path: '/x', host: undefined, headers: {} };
const ok: CaseAssert = {
  request: { method: 'GET', host: null, path: '/x', headers: {}, followRedirects: true },
  statusCodes: [200],
  ifStatus200or204: {
    backendRequest: { path: '/x', method: 'GET', host: null, headersExact: { 'X-A': 'v1,v2' }, headersAbsent: ['X-Gone'], namespace: 'ns', podNamePrefix: 'infra-backend-v1' },
    responseHeadersExact: { 'X-R': 'r' }, responseHeadersOneOf: { 'x-o': ['a, b'] }, responseHeadersAbsent: ['x-no'], ignoreWhitespace: true,
  },
};
const good: Captured = {
  status: 200, body: '{}', headers: { 'x-r': ['r'], 'x-o': ['a,b'] },
  request: { path: '/x', host: 'h', method: 'GET', headers: { 'x-a': ['v1', 'v2'] }, namespace: 'ns', pod: 'infra-backend-v1-abc-def' },
};
const redirect: CaseAssert = { request: ok.request, statusCodes: [302], ifRedirect: { locationHost: null, locationScheme: 'http', locationPort: null, locationPath: '/x' } };

describe('conformance judge', () => {
  it('accepts a matching round trip', () => expect(judge('gateway', ok, r, good, undefined)).toBeUndefined());
  it('rejects each kind of mismatch', () => {
    const bad = (c: Partial<Captured>, req: Partial<Captured['request']> = {}): string | undefined =>
      judge('gateway', ok, r, { ...good, ...c, request: { ...good.request, ...req } }, undefined);
    expect(bad({ status: 404 })).toMatch(/status/);
    expect(bad({}, { path: '/y' })).toMatch(/path/);
    expect(bad({}, { namespace: 'other' })).toMatch(/namespace/);
    expect(bad({}, { pod: 'infra-backend-v2-x-y' })).toMatch(/pod/);
    expect(bad({}, { headers: { 'x-a': ['v1, v2'] } })).toMatch(/X-A/);
    expect(bad({}, { headers: { 'x-a': ['v1', 'v2'], 'x-gone': ['1'] } })).toMatch(/X-Gone/);
    expect(bad({ headers: { 'x-r': ['r'], 'x-o': ['c'] } })).toMatch(/one of/);
    expect(bad({ headers: { 'x-r': ['r', 'r'], 'x-o': ['a,b'] } })).toMatch(/X-R/);
    expect(bad({ headers: { 'x-r': ['r'], 'x-o': ['a,b'], 'x-no': ['1'] } })).toMatch(/x-no/);
  });
  it('accepts any timeout status when one is expected', () => {
    expect(judge('gateway', { ...ok, statusCodes: [504] }, r, { ...good, status: 408 }, undefined)).toBeUndefined();
  });
  it('checks redirects: host, scheme, port defaults, path', () => {
    const cap = (loc: string): Captured => ({ ...good, status: 302, headers: { location: [loc] } });
    expect(judge('gateway', redirect, r, cap('http://h/x'), undefined)).toBeUndefined();
    expect(judge('gateway', redirect, r, cap('http://h:80/x'), undefined)).toBeUndefined();
    expect(judge('gateway', redirect, r, cap('http://h:8080/x'), undefined)).toMatch(/port/);
    expect(judge('gateway', redirect, r, cap('https://h/x'), undefined)).toMatch(/scheme/);
    expect(judge('gateway', redirect, r, cap('http://h/y'), undefined)).toMatch(/path/);
  });
  it('mesh cases check only what the upstream mesh harness checks', () => {
    const checks = ['statusCodes', 'backendRequest.podNamePrefix'];
    expect(judge('mesh', ok, r, { ...good, request: { ...good.request, path: '/elsewhere' } }, checks)).toBeUndefined();
    expect(judge('mesh', ok, r, { ...good, request: { ...good.request, pod: 'echo-v2-a-b' } }, checks)).toMatch(/pod/);
  });
});
