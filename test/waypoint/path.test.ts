import { describe, expect, it } from 'vitest';
import { matchesPrefix, normalizePath, parseTarget, prefixKey, queryParam, replacePrefix } from '../../waypoint/routing/path.js';

describe('request targets', () => {
  it('splits path and query, keeps the query as received', () => {
    expect(parseTarget('/a/b?x=1&y=%20')).toEqual({ path: '/a/b', query: 'x=1&y=%20', authority: undefined });
    expect(parseTarget('/')).toEqual({ path: '/', query: '', authority: undefined });
  });
  it('takes the authority of an absolute-form target', () => {
    expect(parseTarget('http://example.com:8080/x?q')).toEqual({ path: '/x', query: 'q', authority: 'example.com:8080' });
    expect(parseTarget('http://example.com')).toEqual({ path: '/', query: '', authority: 'example.com' });
  });
  it('refuses targets without a leading slash, with a fragment or a bad escape', () => {
    expect(parseTarget('a/b')).toBeUndefined();
    expect(parseTarget('*')).toBeUndefined();
    expect(parseTarget('/a#frag')).toBeUndefined();
    expect(parseTarget('/a%zz')).toBeUndefined();
    expect(parseTarget('/a%4')).toBeUndefined();
  });
  it('normalises: unreserved escapes decoded, others upper-cased, dot segments removed', () => {
    expect(normalizePath('/%61%62c')).toBe('/abc');
    expect(normalizePath('/a%2fb')).toBe('/a%2Fb');
    expect(normalizePath('/a/./b/../c')).toBe('/a/c');
    expect(normalizePath('/a/b/..')).toBe('/a/');
    expect(normalizePath('/a/%2E%2E/admin')).toBe('/admin');
    expect(normalizePath('/..')).toBeUndefined();
    expect(normalizePath('/a/../../etc')).toBeUndefined();
  });
});

describe('PathPrefix matching is element-wise', () => {
  const cases: [string, string, boolean][] = [
    ['/v2', '/v2', true], ['/v2', '/v2/', true], ['/v2', '/v2/x', true], ['/v2', '/v2example', false],
    ['/v2/', '/v2', true], ['/v2/', '/v2/x', true], ['/', '/anything', true], ['/foo', '/Foo', false],
  ];
  for (const [prefix, path, want] of cases) {
    it(`${prefix} ${want ? 'matches' : 'does not match'} ${path}`, () => expect(matchesPrefix(path, prefixKey(prefix))).toBe(want));
  }
});

describe('ReplacePrefixMatch (the Gateway API table)', () => {
  const table: [string, string, string, string][] = [
    ['/foo/bar', '/foo', '/xyz', '/xyz/bar'], ['/foo/bar', '/foo', '/xyz/', '/xyz/bar'],
    ['/foo/bar', '/foo/', '/xyz', '/xyz/bar'], ['/foo/bar', '/foo/', '/xyz/', '/xyz/bar'],
    ['/foo', '/foo', '/xyz', '/xyz'], ['/foo/', '/foo', '/xyz', '/xyz/'],
    ['/foo/bar', '/foo', '', '/bar'], ['/foo/', '/foo', '', '/'], ['/foo', '/foo', '', '/'],
    ['/foo/', '/foo', '/', '/'], ['/foo', '/foo', '/', '/'],
  ];
  for (const [path, prefix, repl, want] of table) {
    it(`${path} with ${prefix} -> ${JSON.stringify(repl)} gives ${want}`, () => expect(replacePrefix(path, prefixKey(prefix), repl)).toBe(want));
  }
});

describe('query parameters', () => {
  it('are matched by exact, case-sensitive name; the first value wins; values are decoded', () => {
    expect(queryParam('animal=whale&x=1', 'animal')).toBe('whale');
    expect(queryParam('ANIMAL=Whale', 'animal')).toBeUndefined();
    expect(queryParam('a=1&a=2', 'a')).toBe('1');
    expect(queryParam('a=b%20c', 'a')).toBe('b c');
    expect(queryParam('flag&a=1', 'flag')).toBe('');
    expect(queryParam('', 'a')).toBeUndefined();
  });
});
