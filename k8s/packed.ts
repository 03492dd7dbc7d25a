/**
 * Endpoints and backends packed into one byte array each (issue 10's memory target: the
 * agent holds 10,000 Services x 10 endpoints under 80 MiB). An endpoint as an object with
 * its address as a string costs ≈ 100 bytes, and the service table's backend as much again;
 * packed, an IPv4 endpoint is 7 bytes and a backend 8.
 *
 * Layout, per element, in one string of one-byte characters (a V8 sequential one-byte string
 * is its bytes plus a 16-byte header, on the heap; a Uint8Array of that size would be an
 * ArrayBuffer with its backing store outside the heap, ≈ 200 bytes of bookkeeping each):
 *   endpoint: address (4 bytes for IPv4, 16 for IPv6, none for FQDN), flags (ready 1,
 *             serving 2, terminating 4), node (u16 little-endian: 0 none, n = nodes[n-1]);
 *   backend:  address (4 / 16 bytes), port (u16 LE), node (u16 LE, as above).
 * FQDN names are kept as strings beside. Node names are listed once per slice or entry,
 * and equal lists are one (`internStrings`).
 *
 * Iterating yields plain `Endpoint` / `Backend` objects made on demand (garbage once used),
 * so readers that walk them keep working; hot readers use the accessors by index.
 */
import { ipv6Text } from './ip.js';
import { internStrings } from './strings.js';
import type { AddressType, Endpoint, EndpointList, IPFamily } from './types.js';

const READY = 1, SERVING = 2, TERMINATING = 4;
const NO_NAMES: readonly string[] = Object.freeze([]);

function addrLen(t: AddressType): number {
  return t === 'IPv4' ? 4 : t === 'IPv6' ? 16 : 0;
}

/** Writes a canonical IPv4 or IPv6 text address of `family` at `off`. */
function writeIP(ip: string, family: IPFamily, out: Uint8Array, off: number): void {
  if (family === 'IPv4') {
    const parts = ip.split('.');
    for (let i = 0; i < 4; i++) out[off + i] = Number(parts[i]);
    return;
  }
  const [head, tail] = ip.includes('::') ? ip.split('::') as [string, string] : [ip, undefined];
  const hs = head === '' ? [] : head.split(':');
  const ts = tail === undefined || tail === '' ? [] : tail.split(':');
  const groups = tail === undefined ? hs : [...hs, ...new Array<string>(8 - hs.length - ts.length).fill('0'), ...ts];
  for (let g = 0; g < 8; g++) {
    const v = parseInt(groups[g]!, 16);
    out[off + 2 * g] = v >> 8;
    out[off + 2 * g + 1] = v & 255;
  }
}

/** The canonical text of the address at `off` (IPv6 as RFC 5952 and WHATWG URL write it, as k8s/ip.ts parseIP gives it). */
function readIP(b: string, off: number, family: IPFamily): string {
  if (family === 'IPv4') return `${b.charCodeAt(off)}.${b.charCodeAt(off + 1)}.${b.charCodeAt(off + 2)}.${b.charCodeAt(off + 3)}`;
  const g: number[] = [];
  for (let i = 0; i < 8; i++) g.push((b.charCodeAt(off + 2 * i) << 8) | b.charCodeAt(off + 2 * i + 1));
  return ipv6Text(g);
}

/** The bytes as a string of one-byte characters (latin1: char code = byte). */
function packed(b: Uint8Array): string {
  return Buffer.from(b.buffer, b.byteOffset, b.length).toString('latin1');
}

/** Index+1 of `name` in `nodes` (added when new), or 0 for none. */
function nodeIndex(nodes: string[], name: string | undefined): number {
  if (name === undefined) return 0;
  const i = nodes.indexOf(name);
  if (i >= 0) return i + 1;
  if (nodes.length === 0xffff) throw new RangeError('more than 65535 node names in one list');
  return nodes.push(name);
}

/**
 * The endpoints of one EndpointSlice, packed. Three fields and the names (FQDN): the row size
 * follows from the family and the count from the bytes (16 bytes per slice less than as
 * fields: 0.15 MiB at 10,000).
 */
export class PackedEndpoints implements EndpointList {
  private readonly data: string;
  private readonly names: readonly string[];
  private readonly nodes: readonly string[];
  private readonly family: IPFamily | undefined;

  /** `endpoints`' addresses must be canonical and of `addressType` (as the slice parser gives them). */
  constructor(addressType: AddressType, endpoints: readonly Endpoint[]) {
    const alen = addrLen(addressType);
    this.family = addressType === 'FQDN' ? undefined : addressType;
    const stride = alen + 3;
    const data = new Uint8Array(endpoints.length * stride);
    const nodes: string[] = [];
    for (let i = 0; i < endpoints.length; i++) {
      const e = endpoints[i]!, o = i * stride;
      if (this.family) writeIP(e.address, this.family, data, o);
      data[o + alen] = (e.ready ? READY : 0) | (e.serving ? SERVING : 0) | (e.terminating ? TERMINATING : 0);
      const n = nodeIndex(nodes, e.nodeName);
      data[o + alen + 1] = n & 255;
      data[o + alen + 2] = n >> 8;
    }
    this.data = packed(data);
    this.names = this.family ? NO_NAMES : Object.freeze(endpoints.map((e) => e.address));
    this.nodes = internStrings(nodes);
    Object.freeze(this);
  }

  /** Bytes per endpoint: the address, flags, node index (2). */
  private get stride(): number {
    return this.family === 'IPv4' ? 7 : this.family === 'IPv6' ? 19 : 3;
  }

  get length(): number {
    return this.data.length / this.stride;
  }

  address(i: number): string {
    return this.family ? readIP(this.data, i * this.stride, this.family) : this.names[i]!;
  }
  private flags(i: number): number {
    return this.data.charCodeAt(i * this.stride + this.stride - 3);
  }
  ready(i: number): boolean { return (this.flags(i) & READY) !== 0; }
  serving(i: number): boolean { return (this.flags(i) & SERVING) !== 0; }
  terminating(i: number): boolean { return (this.flags(i) & TERMINATING) !== 0; }
  nodeName(i: number): string | undefined {
    const o = i * this.stride + this.stride - 2;
    const n = this.data.charCodeAt(o) | (this.data.charCodeAt(o + 1) << 8);
    return n === 0 ? undefined : this.nodes[n - 1];
  }
  at(i: number): Endpoint {
    return { address: this.address(i), ready: this.ready(i), serving: this.serving(i), terminating: this.terminating(i), nodeName: this.nodeName(i) };
  }
  *[Symbol.iterator](): Iterator<Endpoint> {
    for (let i = 0, n = this.length; i < n; i++) yield this.at(i);
  }
  /** The wire and log form: the list of endpoints. */
  toJSON(): Endpoint[] {
    return [...this];
  }

  /** The addresses are IPs (not FQDN names): `backends` can view them. */
  get isIP(): boolean {
    return this.family !== undefined;
  }

  /**
   * Backends that are these endpoints' addresses and nodes, all on `port`, in `order` (endpoint
   * indexes; fewer than 256 of them): a view on this list's bytes, no copy of its own.
   */
  backends(port: number, order: readonly number[]): PackedBackends {
    if (this.family === undefined || order.length > 255) throw new RangeError('a view needs IP endpoints and fewer than 256 backends');
    return new BackendsView(this.family, this.data, this.nodes, port, order);
  }
}

/** A backend of the service table: an endpoint's address with the slice's port for the Service port. */
export interface Backend {
  ip: string;
  port: number;
  /** The node the endpoint runs on, when the slice says. */
  nodeName?: string;
}

/**
 * The backends of one service-table entry, packed (all of the entry's family). Three fields:
 * the row size follows from the family and the count from the bytes.
 */
export class PackedBackends implements Iterable<Backend> {
  protected readonly data: string;
  protected readonly nodes: readonly string[];
  protected readonly family: IPFamily;

  constructor(family: IPFamily, backends: readonly Backend[], view?: { data: string; nodes: readonly string[] }) {
    this.family = family;
    if (view) {
      this.data = view.data;
      this.nodes = view.nodes;
      return;
    }
    const stride = addrLen(family) + 4;
    const data = new Uint8Array(backends.length * stride);
    const nodes: string[] = [];
    for (let i = 0; i < backends.length; i++) {
      const b = backends[i]!, o = i * stride, p = o + stride - 4;
      writeIP(b.ip, family, data, o);
      data[p] = b.port & 255;
      data[p + 1] = b.port >> 8;
      const n = nodeIndex(nodes, b.nodeName);
      data[p + 2] = n & 255;
      data[p + 3] = n >> 8;
    }
    this.data = packed(data);
    this.nodes = internStrings(nodes);
    Object.freeze(this);
  }

  /** Bytes per row of `data`: the address, the port (2), the node index (2). */
  protected get stride(): number {
    return addrLen(this.family) + 4;
  }

  get length(): number {
    return this.data.length / this.stride;
  }

  /** The row of backend i in `data`. */
  protected row(i: number): number {
    return i;
  }

  ip(i: number): string {
    return readIP(this.data, this.row(i) * this.stride, this.family);
  }
  port(i: number): number {
    const p = i * this.stride + this.stride - 4;
    return this.data.charCodeAt(p) | (this.data.charCodeAt(p + 1) << 8);
  }
  nodeName(i: number): string | undefined {
    const p = this.row(i) * this.stride + this.stride - 2;
    const n = this.data.charCodeAt(p) | (this.data.charCodeAt(p + 1) << 8);
    return n === 0 ? undefined : this.nodes[n - 1];
  }
  at(i: number): Backend {
    const nodeName = this.nodeName(i);
    return nodeName === undefined ? { ip: this.ip(i), port: this.port(i) } : { ip: this.ip(i), port: this.port(i), nodeName };
  }
  map<T>(f: (b: Backend, i: number) => T): T[] {
    const n = this.length;
    const out = new Array<T>(n);
    for (let i = 0; i < n; i++) out[i] = f(this.at(i), i);
    return out;
  }
  *[Symbol.iterator](): Iterator<Backend> {
    for (let i = 0, n = this.length; i < n; i++) yield this.at(i);
  }
  /** Same backends in the same order. */
  equals(o: PackedBackends): boolean {
    if (o === this) return true;
    if (o.family !== this.family || o.length !== this.length) return false;
    if (!(this instanceof BackendsView) && !(o instanceof BackendsView)) {
      if (this.data !== o.data) return false;
    } else {
      // A view and another list: address bytes and ports row by row.
      const alen = addrLen(this.family);
      for (let i = 0, n = this.length; i < n; i++) {
        if (this.port(i) !== o.port(i)) return false;
        const a = this.row(i) * this.stride, b = o.row(i) * o.stride;
        for (let k = 0; k < alen; k++) if (this.data.charCodeAt(a + k) !== o.data.charCodeAt(b + k)) return false;
      }
    }
    for (let i = 0, n = this.length; i < n; i++) if (this.nodeName(i) !== o.nodeName(i)) return false;
    return true;
  }
  toJSON(): Backend[] {
    return [...this];
  }
}

/**
 * Backends that are a slice's endpoints (PackedEndpoints.backends): the slice's bytes read in
 * `order` with one port, instead of a packed copy of their own. Nearly every Service port's
 * backends are its one slice's endpoints, all ready: 10,000 copies of 10 backends were 0.9 MiB.
 * Endpoint rows hold flags where backend rows hold the port; the address leads and the node
 * ends both, so PackedBackends' readers work on either through `row` and `port`.
 */
class BackendsView extends PackedBackends {
  private readonly onPort: number;
  /** Endpoint row of each backend as one-byte characters; null when it is every endpoint in its own order. */
  private readonly order: string | null;
  constructor(family: IPFamily, data: string, nodes: readonly string[], port: number, order: readonly number[]) {
    super(family, [], { data, nodes });
    this.onPort = port;
    let same = order.length * (addrLen(family) + 3) === data.length;
    for (let i = 0; same && i < order.length; i++) if (order[i] !== i) same = false;
    this.order = same ? null : String.fromCharCode(...order);
    Object.freeze(this);
  }
  /** Endpoint rows: the address, flags, the node index (2). */
  protected override get stride(): number {
    return addrLen(this.family) + 3;
  }
  override get length(): number {
    return this.order === null ? this.data.length / this.stride : this.order.length;
  }
  protected override row(i: number): number {
    return this.order === null ? i : this.order.charCodeAt(i);
  }
  override port(): number {
    return this.onPort;
  }
}
