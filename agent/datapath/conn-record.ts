/**
 * The connection records of bpf/conn_metrics.bpf.c (struct kw_cm_event) as they sit in
 * the ring buffer, and the keys of its opened counters (struct kw_cm_okey): their
 * layouts and decoders into objects. No addon here, so that agent/metrics/tcp.ts can
 * read them in place (agent/datapath/conn-metrics.ts drains and reads them).
 */
import { readAddr } from './addr.js';

/** struct kw_cm_event (bpf/conn_metrics.bpf.c): 120 bytes. */
export const CM_EVENT_SIZE = 120;
export const CM_AT = {
  cookie: 0, duration: 8, sent: 16, received: 24, redirSent: 32, redirReceived: 40,
  local: 48, remote: 64, orig: 80, lport: 96, rport: 98, oport: 100, event: 102, role: 103, srtt: 104, retrans: 108, reset: 112,
} as const;

/** struct kw_cm_okey (bpf/conn_metrics.bpf.c), the key of kw_cm_opened: 56 bytes. */
export const CM_OKEY_SIZE = 56;
export const CM_OKEY_AT = { local: 0, remote: 16, orig: 32, oport: 48, role: 50 } as const;

/** What decides an opened connection's labels (the fields of a record that TcpMetrics.labelsOf reads). */
export interface OpenedKey {
  role: 'client' | 'server';
  local: string; remote: string;
  /** What the client dialled (role client); the server's own address and port (role server). */
  orig: string; origPort: number;
}

export function decodeOpenedKey(k: Buffer): OpenedKey {
  return {
    role: k[CM_OKEY_AT.role] === 1 ? 'client' : 'server',
    local: readAddr(k.subarray(CM_OKEY_AT.local, CM_OKEY_AT.local + 16)),
    remote: readAddr(k.subarray(CM_OKEY_AT.remote, CM_OKEY_AT.remote + 16)),
    orig: readAddr(k.subarray(CM_OKEY_AT.orig, CM_OKEY_AT.orig + 16)),
    origPort: k.readUInt16BE(CM_OKEY_AT.oport),
  };
}

export interface ConnRecord {
  /** The program writes closed records only (opened ones came from versions before kw_cm_opened). */
  event: 'opened' | 'closed';
  /** client: this socket connect()ed (Istio reporter "source"); server: it was accepted ("destination"). */
  role: 'client' | 'server';
  cookie: bigint;
  local: string; localPort: number;
  remote: string; remotePort: number;
  /** What the client dialled (a ClusterIP when balanced, else the peer); the server's own address for role server. */
  orig: string; origPort: number;
  /** Closed records only (0 in opened ones). */
  durationNs: number;
  /** By this socket: acknowledged by the peer (TCP) plus redirected by the sockmap. */
  bytesSent: number;
  /** By this socket: received through TCP plus redirected to it and read. */
  bytesReceived: number;
  redirectedSent: number;
  redirectedReceived: number;
  srttUs: number;
  retransmits: number;
  reset: boolean;
}

export function decodeConnRecords(data: Buffer, count: number): ConnRecord[] {
  const out: ConnRecord[] = [];
  for (let i = 0; i < count; i++) {
    const o = i * CM_EVENT_SIZE;
    const b = data.subarray(o, o + CM_EVENT_SIZE);
    out.push({
      event: b[CM_AT.event] === 1 ? 'opened' : 'closed',
      role: b[CM_AT.role] === 1 ? 'client' : 'server',
      cookie: b.readBigUInt64LE(CM_AT.cookie),
      local: readAddr(b.subarray(CM_AT.local, CM_AT.local + 16)), localPort: b.readUInt16BE(CM_AT.lport),
      remote: readAddr(b.subarray(CM_AT.remote, CM_AT.remote + 16)), remotePort: b.readUInt16BE(CM_AT.rport),
      orig: readAddr(b.subarray(CM_AT.orig, CM_AT.orig + 16)), origPort: b.readUInt16BE(CM_AT.oport),
      durationNs: Number(b.readBigUInt64LE(CM_AT.duration)),
      bytesSent: Number(b.readBigUInt64LE(CM_AT.sent)),
      bytesReceived: Number(b.readBigUInt64LE(CM_AT.received)),
      redirectedSent: Number(b.readBigUInt64LE(CM_AT.redirSent)),
      redirectedReceived: Number(b.readBigUInt64LE(CM_AT.redirReceived)),
      srttUs: b.readUInt32LE(CM_AT.srtt),
      retransmits: b.readUInt32LE(CM_AT.retrans),
      reset: b[CM_AT.reset] === 1,
    });
  }
  return out;
}
