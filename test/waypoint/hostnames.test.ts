import { describe, expect, it } from 'vitest';
import { hostMatches, intersectHostnames, requestHost } from '../../waypoint/routing/hostnames.js';

describe('host names', () => {
  it('wildcards match one or more labels, never the bare suffix', () => {
    expect(hostMatches('*.example.com', 'a.example.com')).toBe(true);
    expect(hostMatches('*.example.com', 'a.b.example.com')).toBe(true);
    expect(hostMatches('*.example.com', 'example.com')).toBe(false);
    expect(hostMatches('example.com', 'example.com')).toBe(true);
    expect(hostMatches('example.com', 'www.example.com')).toBe(false);
  });
  it('intersect listener and route host names as the spec says', () => {
    expect(intersectHostnames(undefined, [])).toEqual([undefined]);
    expect(intersectHostnames('a.example.com', [])).toEqual(['a.example.com']);
    expect(intersectHostnames(undefined, ['x.com'])).toEqual(['x.com']);
    expect(intersectHostnames('*.example.com', ['a.example.com', 'b.other.com'])).toEqual(['a.example.com']);
    expect(intersectHostnames('a.example.com', ['*.example.com'])).toEqual(['a.example.com']);
    expect(intersectHostnames('*.example.com', ['*.a.example.com'])).toEqual(['*.a.example.com']);
    expect(intersectHostnames('*.a.example.com', ['*.example.com'])).toEqual(['*.a.example.com']);
    expect(intersectHostnames('a.example.com', ['b.example.com'])).toEqual([]);
  });
  it('take the host of a request without port, case or trailing dot', () => {
    expect(requestHost('Example.COM:8080')).toBe('example.com');
    expect(requestHost('example.com.')).toBe('example.com');
    expect(requestHost('[::1]:80')).toBe('::1');
    expect(requestHost('10.0.0.1')).toBe('10.0.0.1');
    expect(requestHost(undefined)).toBeUndefined();
    expect(requestHost('a b')).toBeUndefined();
    expect(requestHost('host:port')).toBeUndefined();
  });
});
