/** Waypoint bindings in the model: labels, opt-out, Gateway class and listener, pods, HTTP ports. */
import { describe, expect, it } from 'vitest';
import { buildModel } from '../../model/model.js';
import {
  MESH_CONTROLLER, WAYPOINT_NOT_FOUND, isHttpPort, waypointBindings, type WaypointBindings,
} from '../../model/waypoint-binding.js';
import type { SourcedObject } from '../../k8s/types.js';
import { service, slice, src } from './fixtures.js';

type Obj = SourcedObject['object'];
const ns = (name: string, labels: Record<string, string> = {}): Obj => ({ apiVersion: 'v1', kind: 'Namespace', metadata: { name, labels } });
const cls = (name = 'kernway-waypoint', controllerName = MESH_CONTROLLER): Obj => ({
  apiVersion: 'gateway.networking.k8s.io/v1', kind: 'GatewayClass', metadata: { name }, spec: { controllerName },
});
const gw = (name: string, o: { ns?: string; className?: string; port?: number; protocol?: string } = {}): Obj => ({
  apiVersion: 'gateway.networking.k8s.io/v1', kind: 'Gateway', metadata: { name, namespace: o.ns ?? 'shop' },
  spec: { gatewayClassName: o.className ?? 'kernway-waypoint', listeners: [{ name: 'mesh', port: o.port ?? 15019, protocol: o.protocol ?? 'kernway.io/mesh' }] },
});
const pod = (name: string, ip: string, labels: Record<string, string>, o: { ns?: string; phase?: string } = {}): Obj => ({
  apiVersion: 'v1', kind: 'Pod', metadata: { name, namespace: o.ns ?? 'shop', labels },
  spec: { nodeName: 'node-a', containers: [{ name: 'c', image: 'x' }] }, status: { podIP: ip, podIPs: [{ ip }], phase: o.phase ?? 'Running' },
});
const wpPod = (name: string, ip: string, o: { ns?: string; phase?: string; gateway?: string } = {}): Obj =>
  pod(name, ip, { 'gateway.networking.k8s.io/gateway-name': o.gateway ?? 'wp' }, o);
const svc = (name: string, ip: string, ports: unknown[], labels?: Record<string, string>, n = 'shop'): Obj => {
  const o = service(name, { ns: n, ip, ports });
  if (labels) (o.metadata as Record<string, unknown>).labels = labels;
  return o;
};
const bind = (objs: Obj[]): WaypointBindings => {
  const m = buildModel(objs.map((o) => src(o)));
  expect(m.problems).toEqual([]);
  return waypointBindings(m);
};
const PORTS = [
  { name: 'http', port: 80, targetPort: 8080 },
  { name: 'metrics', port: 9090, targetPort: 9090 },
  { name: 'api', port: 81, targetPort: 8081, appProtocol: 'kubernetes.io/h2c' },
];

describe('waypoint bindings', () => {
  it('a namespace label binds its Services; only HTTP ports are handed over; pods by gateway-name label', () => {
    const b = bind([ns('shop', { 'kernway.io/use-waypoint': 'wp' }), cls(), gw('wp'), wpPod('wp-1', '10.244.0.9'), wpPod('wp-2', '10.244.0.8'),
      wpPod('wp-3', '10.244.0.7', { phase: 'Pending' }), svc('web', '10.96.0.10', PORTS)]);
    const s = b.services.get('shop/web')!;
    expect(s.waypoint).toBe('shop/wp');
    expect([...s.httpPorts].sort()).toEqual([80, 81]);
    const w = b.waypoints.get('shop/wp')!;
    expect(w.valid).toBe(true);
    expect(w.meshPort).toBe(15019);
    expect(w.podIPs).toEqual(['10.244.0.8', '10.244.0.9']); // the Pending pod is not ready
    expect([...b.waypointPodIPs].sort()).toEqual(['10.244.0.8', '10.244.0.9']);
  });

  it('a Service label wins over its namespace; none opts out; other namespaces are untouched', () => {
    const b = bind([ns('shop', { 'kernway.io/use-waypoint': 'wp' }), ns('plain'), cls(), gw('wp'), gw('other'),
      svc('web', '10.96.0.10', PORTS), svc('out', '10.96.0.11', PORTS, { 'kernway.io/use-waypoint': 'none' }),
      svc('own', '10.96.0.12', PORTS, { 'kernway.io/use-waypoint': 'other' }), svc('p', '10.96.0.13', PORTS, undefined, 'plain')]);
    expect(b.services.get('shop/web')?.waypoint).toBe('shop/wp');
    expect(b.services.has('shop/out')).toBe(false);
    expect(b.services.get('shop/own')?.waypoint).toBe('shop/other');
    expect(b.services.has('plain/p')).toBe(false);
  });

  it('a missing Gateway, a wrong class or a listener that is not the mesh listener: bound but invalid, reported', () => {
    for (const objs of [
      [] as Obj[],
      [cls('other-class', 'example.com/x'), gw('wp', { className: 'other-class' })],
      [cls(), gw('wp', { port: 8080 })],
      [cls(), gw('wp', { protocol: 'HTTP' })],
    ]) {
      const m = buildModel([ns('shop', { 'kernway.io/use-waypoint': 'wp' }), svc('web', '10.96.0.10', PORTS), ...objs].map((o) => src(o)));
      const b = waypointBindings(m);
      expect(b.services.get('shop/web')?.waypoint).toBe('shop/wp');
      expect(b.waypoints.get('shop/wp')?.valid).toBe(false);
      expect(b.problems.map((p) => [p.code, p.object])).toEqual([[WAYPOINT_NOT_FOUND, 'Service shop/web']]);
    }
  });

  it("the waypoint's own Service is never bound (no loop)", () => {
    const b = bind([ns('shop', { 'kernway.io/use-waypoint': 'wp' }), cls(), gw('wp'), wpPod('wp-1', '10.244.0.9'),
      svc('wp', '10.96.0.20', [{ name: 'mesh', port: 15019, targetPort: 15019 }, { name: 'http', port: 80 }]),
      slice('wp-1', 'wp', ['10.244.0.9'], [{ name: 'mesh', port: 15019 }, { name: 'http', port: 80 }], { ns: 'shop' }),
      svc('web', '10.96.0.10', PORTS), slice('web-1', 'web', ['10.244.0.3'], [{ name: 'http', port: 8080 }], { ns: 'shop' })]);
    expect(b.services.has('shop/wp')).toBe(false);
    expect(b.services.has('shop/web')).toBe(true);
  });

  it('HTTP ports: appProtocol http, kubernetes.io/h2c, grpc; else names http, http-*, grpc, h2c; TCP only', () => {
    const yes = [{ name: 'x', appProtocol: 'http' }, { name: 'x', appProtocol: 'kubernetes.io/h2c' }, { name: 'x', appProtocol: 'grpc' },
      { name: 'http' }, { name: 'http-web' }, { name: 'grpc' }, { name: 'h2c' }];
    const no = [{ name: 'http', appProtocol: 'mysql' }, { name: 'https' }, { name: 'tcp' }, { name: '' }, { name: 'grpc-web' }];
    for (const p of yes) expect(isHttpPort({ protocol: 'TCP', ...p }), JSON.stringify(p)).toBe(true);
    for (const p of no) expect(isHttpPort({ protocol: 'TCP', ...p }), JSON.stringify(p)).toBe(false);
    expect(isHttpPort({ name: 'http', protocol: 'UDP' })).toBe(false);
  });
});
