/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * waypoint.h — the kernel hand-off of HTTP ports to the waypoint (docs/waypoint-handoff.md):
 * what the socket load balancer (connect()) and the sockmap programs (sock_ops, sk_msg)
 * share. Both objects declare these maps; the agent pins them once under <bpffs>/maps/
 * and the second object to load reuses the pin.
 *
 * A connection to a Service port bound to a waypoint goes, at connect(), to one of the
 * waypoint's ready pods on the mesh port (waypoint_connect.h) instead of a backend; the
 * original ClusterIP:port is kept in the socket's storage (kw_wp_sk). At establishment
 * sock_ops makes sure the socket is in kw_sm_hash, so that the one sk_msg program of the
 * socket runs on its sends; on the first send it prepends a PROXY protocol v2 header
 * (source: the client's address and port; destination: the ClusterIP:port) with
 * bpf_msg_push_data(), and only once that succeeded is the header marked written
 * (waypoint_msg.h).
 */
#ifndef KW_WAYPOINT_H
#define KW_WAYPOINT_H

#include "kw_common.h"

/* kw_wp_sock.state */
#define KW_WP_PENDING 1 /* redirected at connect(): the header is still to be written */
#define KW_WP_WRITTEN 2 /* the header went out ahead of the first byte */
#define KW_WP_FAILED  3 /* the socket could not be given an sk_msg program: no header (the waypoint refuses it) */

/* kw_wp_sock.flags */
#define KW_WP_F_STACK_ONLY (1 << 0) /* added to kw_sm_hash for the header alone: never accelerated */

/* Value of kw_wp_sk (socket-local storage of a socket redirected to a waypoint). 40 bytes. */
struct kw_wp_sock {
	struct kw_addr dst; /* ClusterIP the application dialled (IPv4 as ::ffff:a.b.c.d), network order */
	struct kw_addr src; /* the client's own address, set at establishment, network order */
	__be16 port;        /* Service port, network order */
	__be16 sport;       /* the client's own port, network order */
	__u16 state;        /* KW_WP_* */
	__u16 flags;        /* KW_WP_F_* */
};

/* Counters (per CPU), indexes of kw_wp_stats. */
#define KW_WP_STAT_REDIRECTED  0 /* connect()s sent to a waypoint pod */
#define KW_WP_STAT_REFUSED     1 /* connect()s refused: the Service's waypoint has no ready pod (or no storage) */
#define KW_WP_STAT_MESH_DENIED 2 /* connect()s to a waypoint's mesh port not redirected by the kernel: EPERM */
#define KW_WP_STAT_EXEMPT      3 /* connect()s of a waypoint's own pods to a bound Service: balanced at L4 */
#define KW_WP_STAT_HDR_WRITTEN 4 /* PROXY headers written */
#define KW_WP_STAT_HDR_FAILED  5 /* first sends dropped: pushing the header failed (the send fails, retried next send) */
#define KW_WP_STAT_HASH_FAILED 6 /* redirected sockets that could not be added to kw_sm_hash (no header: refused by the waypoint) */
#define KW_WP_STAT_COUNT       7

/* Per-socket state of redirected sockets; freed by the kernel with the socket. */
struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct kw_wp_sock);
} kw_wp_sk SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, KW_WP_STAT_COUNT);
	__type(key, __u32);
	__type(value, __u64);
} kw_wp_stats SEC(".maps");

static __always_inline void kw_wp_count(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&kw_wp_stats, &idx);

	if (v)
		*v += 1;
}

#endif /* KW_WAYPOINT_H */
