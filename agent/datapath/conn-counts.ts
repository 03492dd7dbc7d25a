/**
 * The L4 counters of bpf/conn_metrics.bpf.c as the kernel keeps them: the key that
 * decides a connection's labels (struct kw_cm_okey) and what that key's connections
 * added up to (struct kw_cm_counts, per CPU). Layouts and decoders only, no addon, so
 * that agent/metrics/tcp.ts can read them (agent/datapath/conn-metrics.ts reads the maps).
 */
import { readAddr } from './addr.js';

/** struct kw_cm_okey, the key of kw_cm_counts: 56 bytes. */
export const CM_OKEY_SIZE = 56;
export const CM_OKEY_AT = { local: 0, remote: 16, orig: 32, oport: 48, role: 50 } as const;

/** The +Inf bucket of each histogram is `closed`. */
export const CM_RTT_BUCKETS = 14;
export const CM_DURATION_BUCKETS = 8;
/** struct kw_cm_counts: 30 __u64, in this order. */
export const CM_COUNTS_FIELDS = ['opened', 'closed', 'sent', 'received', 'retransmits', 'resets', 'rttSumUs', 'durationSumNs'] as const;
export const CM_COUNTS_AT = { rtt: CM_COUNTS_FIELDS.length, duration: CM_COUNTS_FIELDS.length + CM_RTT_BUCKETS } as const;
export const CM_COUNTS_LEN = CM_COUNTS_FIELDS.length + CM_RTT_BUCKETS + CM_DURATION_BUCKETS;
export const CM_COUNTS_SIZE = 8 * CM_COUNTS_LEN;

/** What decides a connection's labels (the fields TcpMetrics.labelsOf reads). */
export interface ConnKey {
  /** client: this socket connect()ed (Istio reporter "source"); server: it was accepted ("destination"). */
  role: 'client' | 'server';
  local: string; remote: string;
  /** What the client dialled (a ClusterIP when balanced, else the peer); the server's own address for role server. */
  orig: string;
  /** Its port; the server's own port for role server. */
  origPort: number;
}

export function decodeConnKey(k: Buffer): ConnKey {
  return {
    role: k[CM_OKEY_AT.role] === 1 ? 'client' : 'server',
    local: readAddr(k.subarray(CM_OKEY_AT.local, CM_OKEY_AT.local + 16)),
    remote: readAddr(k.subarray(CM_OKEY_AT.remote, CM_OKEY_AT.remote + 16)),
    orig: readAddr(k.subarray(CM_OKEY_AT.orig, CM_OKEY_AT.orig + 16)),
    origPort: k.readUInt16BE(CM_OKEY_AT.oport),
  };
}

/** A per-CPU value of kw_cm_counts (every CPU's struct, back to back), summed over the CPUs into out (CM_COUNTS_LEN numbers). */
export function sumCounts(v: Buffer, out: Float64Array): Float64Array {
  out.fill(0);
  for (let o = 0; o + CM_COUNTS_SIZE <= v.length; o += CM_COUNTS_SIZE) {
    for (let i = 0; i < CM_COUNTS_LEN; i++) out[i]! += v.readUInt32LE(o + 8 * i) + v.readUInt32LE(o + 8 * i + 4) * 2 ** 32;
  }
  return out;
}
