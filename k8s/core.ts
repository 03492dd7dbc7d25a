/**
 * The core kinds (Service, EndpointSlice, Pod, Namespace) checked and normalised into
 * their slim forms. The registry (kinds.ts) calls these parsers and memoises them.
 */
import { Checker, checkMeta, type NameRule } from './check.js';
import { forbiddenAddress, parseIP } from './ip.js';
import { PackedEndpoints } from './packed.js';
import { intern, internList, originOf, own } from './strings.js';
import {
  DEFAULT_AFFINITY_TIMEOUT_SECONDS, LB_ALGORITHM_ANNOTATION, MAX_AFFINITY_TIMEOUT_SECONDS, SERVICE_NAME_LABEL,
  type AddressType, type Endpoint, type EndpointSlice, type EndpointSlicePort, type LbAlgorithm, type Namespace, type Pod,
  type ParseResult, type Problem, type Protocol, type Service, type ServicePort, type ServiceType, type SourcedObject, type TrafficPolicy,
} from './types.js';

export type CoreObject =
  | { kind: 'Service'; value: Service }
  | { kind: 'EndpointSlice'; value: EndpointSlice }
  | { kind: 'Pod'; value: Pod }
  | { kind: 'Namespace'; value: Namespace };

type Parsed = ParseResult<CoreObject>;

const PROTOCOLS: readonly Protocol[] = ['TCP', 'UDP', 'SCTP'];
const SERVICE_TYPES: readonly ServiceType[] = ['ClusterIP', 'NodePort', 'LoadBalancer', 'ExternalName'];
const TRAFFIC_POLICIES: readonly TrafficPolicy[] = ['Cluster', 'Local'];
const ALGORITHMS: readonly LbAlgorithm[] = ['random', 'maglev'];
const ADDRESS_TYPES: readonly AddressType[] = ['IPv4', 'IPv6', 'FQDN'];
const NO_PROBLEMS: Problem[] = Object.freeze([]) as unknown as Problem[];
const NO_IPS: string[] = Object.freeze([]) as unknown as string[];

/** What every namespaced kind starts with: namespace, name (checked by its rule) and labels (check.ts checkMeta). */
function namespacedHead(src: SourcedObject, nameRule: NameRule) {
  const o = src.object;
  const c = new Checker(src, intern(typeof o.metadata.namespace === 'string' && o.metadata.namespace !== '' ? o.metadata.namespace : 'default'));
  const { namespace, name, labels } = checkMeta(c, true, nameRule);
  return { o, namespace, c, name, labels };
}

function result<K extends CoreObject['kind']>(c: Checker, kind: K, value: Extract<CoreObject, { kind: K }>['value']): Parsed {
  if (!c.ok) return { object: undefined, problems: c.problems };
  return { object: { kind, value } as CoreObject, problems: NO_PROBLEMS };
}

// ---------------------------------------------------------------- Service

export function parseService(src: SourcedObject): Parsed {
  const { o, namespace, c, name, labels } = namespacedHead(src, 'dns1035Label');
  const annotations = c.stringMap(o.metadata.annotations, 'metadata.annotations');
  const algorithm = c.oneOf(annotations[LB_ALGORITHM_ANNOTATION], `metadata.annotations[${JSON.stringify(LB_ALGORITHM_ANNOTATION)}]`, ALGORITHMS, 'random');

  if (o.spec === undefined || o.spec === null) c.fail('spec', 'is missing');
  const spec = c.record(o.spec, 'spec') ?? {};
  const type = c.oneOf(spec.type, 'spec.type', SERVICE_TYPES, 'ClusterIP');

  // Cluster IPs: clusterIP and clusterIPs (dual-stack); clusterIPs[0] must equal clusterIP.
  let headless = false;
  const clusterIPs: string[] = [];
  const clusterIP = c.string(spec.clusterIP, 'spec.clusterIP', '');
  const listed = c.list(spec.clusterIPs, 'spec.clusterIPs') ?? [];
  const raw: { v: unknown; field: string }[] = listed.length > 0
    ? listed.map((v, i) => ({ v, field: `spec.clusterIPs[${i}]` }))
    : clusterIP ? [{ v: clusterIP, field: 'spec.clusterIP' }] : [];
  if (listed.length > 0 && clusterIP && listed[0] !== clusterIP) c.fail('spec.clusterIPs[0]', `must equal spec.clusterIP (${JSON.stringify(clusterIP)}), got ${JSON.stringify(listed[0])}`);
  if (listed.length > 2) c.fail('spec.clusterIPs', `must hold at most 2 addresses (one per family), got ${listed.length}`);
  if (type !== 'ExternalName') {
    for (const { v, field } of raw) {
      if (v === 'None') { headless = true; continue; }
      const ip = parseIP(v);
      if (!ip) { c.fail(field, `must be an IPv4 or IPv6 address, or "None" for a headless Service, got ${JSON.stringify(v)}`); continue; }
      const bad = forbiddenAddress(ip);
      if (bad) { c.fail(field, `must not be ${bad}, got ${JSON.stringify(v)}`); continue; }
      if (clusterIPs.length > 0 && parseIP(clusterIPs[0])!.family === ip.family) { c.fail(field, 'must be of the other IP family than the first cluster IP (one address per family)'); continue; }
      clusterIPs.push(own(ip.ip));
    }
    if (headless && clusterIPs.length > 0) c.fail('spec.clusterIPs', 'must not mix "None" with addresses');
  }

  // Ports.
  const rawPorts = c.list(spec.ports, 'spec.ports') ?? [];
  if (rawPorts.length === 0 && type !== 'ExternalName' && !headless) c.fail('spec.ports', 'must list at least one port');
  const ports: ServicePort[] = [];
  const names = new Set<string>();
  const portProto = new Set<string>();
  rawPorts.forEach((rp, i) => {
    const f = `spec.ports[${i}]`;
    const p = c.record(rp, f);
    if (!p) return;
    const portName = c.string(p.name, `${f}.name`, '') ?? '';
    if (portName === '' && rawPorts.length > 1) c.fail(`${f}.name`, 'is required when a Service has more than one port');
    if (portName !== '') {
      c.dnsLabel(portName, `${f}.name`);
      if (names.has(portName)) c.fail(`${f}.name`, `duplicate port name ${JSON.stringify(portName)}`);
      names.add(portName);
    }
    const port = c.port(p.port, `${f}.port`);
    const protocol = c.oneOf(p.protocol, `${f}.protocol`, PROTOCOLS, 'TCP');
    let targetPort: number | string | undefined = port;
    if (typeof p.targetPort === 'string') {
      if (/^[0-9]+$/.test(p.targetPort)) {
        targetPort = c.int(Number(p.targetPort), `${f}.targetPort`, 1, 65535);
      } else {
        c.ianaSvcName(p.targetPort, `${f}.targetPort`);
        targetPort = p.targetPort;
      }
    } else if (p.targetPort !== undefined && p.targetPort !== null && p.targetPort !== 0) {
      targetPort = c.int(p.targetPort, `${f}.targetPort`, 1, 65535);
    }
    if (port === undefined || targetPort === undefined) return;
    const pp = `${port}/${protocol}`;
    if (portProto.has(pp)) c.fail(`${f}.port`, `duplicate port ${pp}`);
    portProto.add(pp);
    const sp: ServicePort = { name: intern(portName), port, targetPort: typeof targetPort === 'string' ? intern(targetPort) : targetPort, protocol };
    const appProtocol = c.string(p.appProtocol, `${f}.appProtocol`);
    if (appProtocol) sp.appProtocol = intern(appProtocol);
    ports.push(sp);
  });

  // Session affinity.
  const sessionAffinity = c.oneOf(spec.sessionAffinity, 'spec.sessionAffinity', ['None', 'ClientIP'] as const, 'None');
  let affinity: { timeoutSeconds: number } | null = null;
  if (sessionAffinity === 'ClientIP') {
    const cfg = c.record(spec.sessionAffinityConfig, 'spec.sessionAffinityConfig') ?? {};
    const cip = c.record(cfg.clientIP, 'spec.sessionAffinityConfig.clientIP') ?? {};
    const t = c.int(cip.timeoutSeconds, 'spec.sessionAffinityConfig.clientIP.timeoutSeconds', 1, MAX_AFFINITY_TIMEOUT_SECONDS, DEFAULT_AFFINITY_TIMEOUT_SECONDS);
    affinity = { timeoutSeconds: t ?? DEFAULT_AFFINITY_TIMEOUT_SECONDS };
  }
  const internalTrafficPolicy = c.oneOf(spec.internalTrafficPolicy, 'spec.internalTrafficPolicy', TRAFFIC_POLICIES, 'Cluster');

  return result(c, 'Service', Object.freeze({
    namespace, name, key: own(`${namespace}/${name}`), type, clusterIPs: type === 'ExternalName' ? NO_IPS : clusterIPs.slice(), headless,
    ports: internList(ports), affinity, internalTrafficPolicy, algorithm, labels, annotations, origin: originOf(src),
  }));
}

// ---------------------------------------------------------------- EndpointSlice

export function parseEndpointSlice(src: SourcedObject): Parsed {
  const { o, namespace, c, name, labels } = namespacedHead(src, 'dnsSubdomain');
  const serviceName = labels[SERVICE_NAME_LABEL];
  const labelField = `metadata.labels[${JSON.stringify(SERVICE_NAME_LABEL)}]`;
  if (serviceName === undefined) c.fail(labelField, 'is missing: it names the Service this EndpointSlice belongs to');
  else if (serviceName === '') c.fail(labelField, 'must name a Service, got ""');

  if (o.addressType === undefined || o.addressType === null) c.fail('addressType', 'is missing (IPv4, IPv6 or FQDN)');
  const addressType = c.oneOf(o.addressType, 'addressType', ADDRESS_TYPES, 'IPv4');

  const rawEndpoints = c.list(o.endpoints, 'endpoints') ?? [];
  const endpoints: Endpoint[] = new Array<Endpoint>(rawEndpoints.length);
  let n = 0;
  for (let i = 0; i < rawEndpoints.length; i++) {
    const fast = plainEndpoint(rawEndpoints[i], addressType);
    if (fast) { endpoints[n++] = fast; continue; }
    // Something unusual or wrong: the careful path, which names the fields.
    const f = `endpoints[${i}]`;
    const e = c.record(rawEndpoints[i], f);
    if (!e) continue;
    const addrs = c.list(e.addresses, `${f}.addresses`) ?? [];
    if (addrs.length === 0) { c.fail(`${f}.addresses`, 'must hold at least one address'); continue; }
    let address: string | undefined;
    for (let j = 0; j < addrs.length; j++) {
      const a = addrs[j];
      if (addressType === 'FQDN') {
        if (typeof a === 'string' && a !== '') address ??= a;
        else c.fail(`${f}.addresses[${j}]`, 'must be a host name');
        continue;
      }
      const ip = parseIP(a);
      if (!ip) c.fail(`${f}.addresses[${j}]`, `must be an ${addressType} address, got ${JSON.stringify(a)}`);
      else if (ip.family !== addressType) c.fail(`${f}.addresses[${j}]`, `must be an ${addressType} address (the slice's addressType), got ${ip.family} ${ip.ip}`);
      else address ??= ip.ip;
    }
    const cond = c.record(e.conditions, `${f}.conditions`) ?? {};
    // Kubernetes (kube-proxy): ready and serving unset mean true; terminating unset means false.
    const ready = c.bool(cond.ready, `${f}.conditions.ready`, true);
    const serving = c.bool(cond.serving, `${f}.conditions.serving`, true);
    const terminating = c.bool(cond.terminating, `${f}.conditions.terminating`, false);
    const nodeName = c.string(e.nodeName, `${f}.nodeName`);
    if (address !== undefined) endpoints[n++] = { address: own(address), ready, serving, terminating, nodeName: nodeName ? intern(nodeName) : undefined };
  }
  endpoints.length = n;

  const ports: EndpointSlicePort[] = [];
  const seen = new Set<string>();
  (c.list(o.ports, 'ports') ?? []).forEach((rp, i) => {
    const f = `ports[${i}]`;
    const p = c.record(rp, f);
    if (!p) return;
    const portName = c.string(p.name, `${f}.name`, '') ?? '';
    if (portName !== '') c.dnsLabel(portName, `${f}.name`);
    const protocol = c.oneOf(p.protocol, `${f}.protocol`, PROTOCOLS, 'TCP');
    if (seen.has(`${portName}/${protocol}`)) c.fail(`${f}.name`, `duplicate port ${JSON.stringify(portName)} (${protocol})`);
    seen.add(`${portName}/${protocol}`);
    const port = p.port === undefined || p.port === null ? undefined : c.int(p.port, `${f}.port`, 1, 65535);
    ports.push({ name: intern(portName), port, protocol });
  });

  return result(c, 'EndpointSlice', Object.freeze({
    namespace, name, key: own(`${namespace}/${name}`), serviceKey: own(`${namespace}/${serviceName ?? ''}`),
    addressType, endpoints: new PackedEndpoints(addressType, endpoints), ports: internList(ports),
    origin: originOf(src),
  }));
}

/**
 * The common endpoint (one address of the slice's family, boolean or unset conditions,
 * a node name or none) without building field paths: undefined sends it to the careful path.
 */
function plainEndpoint(e: unknown, addressType: AddressType): Endpoint | undefined {
  if (addressType === 'FQDN' || typeof e !== 'object' || e === null) return undefined;
  const r = e as Record<string, unknown>;
  const addrs = r.addresses;
  if (!Array.isArray(addrs) || addrs.length !== 1) return undefined;
  const ip = parseIP(addrs[0]);
  if (!ip || ip.family !== addressType) return undefined;
  let ready = true, serving = true, terminating = false;
  const cond = r.conditions;
  if (cond !== undefined && cond !== null) {
    if (typeof cond !== 'object' || Array.isArray(cond)) return undefined;
    const { ready: rd, serving: sv, terminating: tm } = cond as Record<string, unknown>;
    if (rd !== undefined && rd !== null) { if (typeof rd !== 'boolean') return undefined; ready = rd; }
    if (sv !== undefined && sv !== null) { if (typeof sv !== 'boolean') return undefined; serving = sv; }
    if (tm !== undefined && tm !== null) { if (typeof tm !== 'boolean') return undefined; terminating = tm; }
  }
  const nn = r.nodeName;
  if (nn !== undefined && nn !== null && typeof nn !== 'string') return undefined;
  return { address: ip.ip, ready, serving, terminating, nodeName: nn ? intern(nn) : undefined };
}

// ---------------------------------------------------------------- Pod

export function parsePod(src: SourcedObject): Parsed {
  const { o, namespace, c, name, labels } = namespacedHead(src, 'dnsSubdomain');
  const annotations = c.stringMap(o.metadata.annotations, 'metadata.annotations');
  const spec = c.record(o.spec, 'spec') ?? {};
  const status = c.record(o.status, 'status') ?? {};
  const nodeName = c.string(spec.nodeName, 'spec.nodeName');
  const serviceAccountName = c.string(spec.serviceAccountName, 'spec.serviceAccountName', 'default') || 'default';
  if (serviceAccountName !== 'default') c.dnsSubdomain(serviceAccountName, 'spec.serviceAccountName');
  const hostNetwork = c.bool(spec.hostNetwork, 'spec.hostNetwork', false);
  const phase = c.string(status.phase, 'status.phase');

  const podIPs: string[] = [];
  const listed = c.list(status.podIPs, 'status.podIPs') ?? [];
  listed.forEach((rp, i) => {
    const r = c.record(rp, `status.podIPs[${i}]`);
    if (!r) return;
    const ip = parseIP(r.ip);
    if (!ip) c.fail(`status.podIPs[${i}].ip`, `must be an IPv4 or IPv6 address, got ${JSON.stringify(r.ip)}`);
    else if (podIPs.some((x) => parseIP(x)!.family === ip.family)) c.fail(`status.podIPs[${i}].ip`, 'must be of the other IP family than the first (one address per family)');
    else podIPs.push(own(ip.ip));
  });
  if (status.podIP !== undefined && status.podIP !== null && status.podIP !== '') {
    const ip = parseIP(status.podIP);
    if (!ip) c.fail('status.podIP', `must be an IPv4 or IPv6 address, got ${JSON.stringify(status.podIP)}`);
    else if (podIPs.length === 0) podIPs.push(own(ip.ip));
    else if (podIPs[0] !== ip.ip) c.fail('status.podIPs[0].ip', `must equal status.podIP (${ip.ip}), got ${podIPs[0]}`);
  }

  const pod: Pod = {
    namespace, name, key: own(`${namespace}/${name}`), labels, annotations, serviceAccountName: intern(serviceAccountName), hostNetwork, podIPs: podIPs.slice(),
    origin: originOf(src),
  };
  if (typeof o.metadata.uid === 'string') pod.uid = o.metadata.uid;
  if (nodeName) pod.nodeName = intern(nodeName);
  if (phase) pod.phase = intern(phase);
  return result(c, 'Pod', Object.freeze(pod));
}

// ---------------------------------------------------------------- Namespace

export function parseNamespace(src: SourcedObject): Parsed {
  const o = src.object;
  const c = new Checker(src, '');
  const { labels } = checkMeta(c, false, 'dnsLabel');
  const annotations = c.stringMap(o.metadata.annotations, 'metadata.annotations');
  return result(c, 'Namespace', Object.freeze({ name: intern(o.metadata.name), labels, annotations, origin: originOf(src) }));
}
