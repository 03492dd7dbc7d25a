/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * waypoint_connect.h — the connect() side of the hand-off (see waypoint.h), in the socket
 * load balancer's program: the waypoint pod is chosen in the same program as the L4
 * backend would be, no second pass.
 */
#ifndef KW_WAYPOINT_CONNECT_H
#define KW_WAYPOINT_CONNECT_H

#include "kw_common.h"
#include "waypoint.h"
#include "waypoint_key.h"

#ifndef KW_WP_MAX_PODS
#define KW_WP_MAX_PODS 16 /* ready pods of one waypoint the kernel picks from (power of two) */
#endif
#ifndef KW_WP_MAX_SERVICES
#define KW_WP_MAX_SERVICES 16384 /* Service ports (frontends) bound to a waypoint */
#endif
#ifndef KW_WP_MAX_GUARDS
#define KW_WP_MAX_GUARDS 4096 /* waypoint pod mesh addresses */
#endif
#ifndef KW_WP_MAX_EXEMPT
#define KW_WP_MAX_EXEMPT 4096 /* network namespaces of waypoint pods */
#endif

/* Value of kw_wp_svc: where a bound frontend's connections go. 264 bytes. */
struct kw_wp_val {
	__u32 count;                           /* ready waypoint pods of the frontend's family; 0: refuse */
	__be16 port;                           /* the mesh port, network order */
	__u16 pad;                             /* zero */
	struct kw_addr pods[KW_WP_MAX_PODS];   /* pods[0..count-1] (IPv4 as ::ffff:a.b.c.d) */
};


/* Bound frontends: svc_id (kw_svc_val.svc_id) -> the waypoint's pods. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, KW_WP_MAX_SERVICES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u32);
	__type(value, struct kw_wp_val);
} kw_wp_svc SEC(".maps");

/* Mesh ports of waypoint pods: a connect() there that the kernel did not redirect is refused. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, KW_WP_MAX_GUARDS);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct kw_wp_gkey);
	__type(value, __u32);
} kw_wp_guard SEC(".maps");

/* Network namespaces (cookies) of the waypoints' own pods: never redirected (no loop). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, KW_WP_MAX_EXEMPT);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u64);
	__type(value, __u32);
} kw_wp_exempt SEC(".maps");

/* The mesh port every waypoint listens on (network order), for the guard's fast check. */
const volatile __u16 kw_cfg_mesh_port = 15019;

/* errno of a connect() to a mesh port the kernel did not redirect. */
#define KW_EPERM 1

/*
 * connect() to something that is not a Service: refuse a waypoint's mesh port (a client
 * writing its own PROXY header), unless the caller is a waypoint pod itself. 1: refused.
 */
static __always_inline int kw_wp_guard_check(struct bpf_sock_addr *ctx, const struct kw_addr *dst, __be16 port)
{
	struct kw_wp_gkey g = {};
	__u64 netns;

	if (port != bpf_htons(kw_cfg_mesh_port))
		return 0;
	g.addr = *dst;
	g.port = port;
	if (!bpf_map_lookup_elem(&kw_wp_guard, &g))
		return 0;
	netns = bpf_get_netns_cookie(ctx);
	if (bpf_map_lookup_elem(&kw_wp_exempt, &netns))
		return 0;
	kw_wp_count(KW_WP_STAT_MESH_DENIED);
	bpf_set_retval(-KW_EPERM);
	return 1;
}

/*
 * A TCP connect() to a Service frontend: when the frontend is bound to a waypoint, send
 * it to one of the waypoint's ready pods on the mesh port and remember the ClusterIP:port
 * for the socket. Returns -1 when the frontend is not bound (or the caller is a waypoint
 * pod): balance it at L4 as usual; else the verdict.
 */
static __always_inline int kw_wp_forward(struct bpf_sock_addr *ctx, int v4, const struct kw_svc_key *key, __u32 svc_id)
{
	struct kw_wp_val *w = bpf_map_lookup_elem(&kw_wp_svc, &svc_id);
	struct kw_wp_sock *st;
	struct kw_addr pod;
	__u32 count, idx;
	__be16 port;
	__u64 netns;
	struct bpf_sock *sk;

	if (!w)
		return -1;
	netns = bpf_get_netns_cookie(ctx);
	if (bpf_map_lookup_elem(&kw_wp_exempt, &netns)) {
		kw_wp_count(KW_WP_STAT_EXEMPT);
		return -1;
	}
	count = w->count;
	port = w->port;
	if (count == 0 || count > KW_WP_MAX_PODS)
		goto refuse;
	idx = bpf_get_prandom_u32() % count;
	barrier_var(idx); /* keep the bound check for the verifier (the compiler knows idx < count) */
	if (idx >= KW_WP_MAX_PODS)
		goto refuse;
	pod = w->pods[idx];
	/* The agent writes pods of the frontend's family only; check anyway. */
	if (kw_addr_is_v4(&pod) != kw_addr_is_v4(&key->addr))
		goto refuse;
	sk = ctx->sk;
	if (!sk)
		goto refuse;
	st = bpf_sk_storage_get(&kw_wp_sk, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (!st)
		goto refuse;
	st->dst = key->addr;
	st->port = key->port;
	st->state = KW_WP_PENDING;
	st->flags = 0;
	kw_sock_set_dst(ctx, v4, &pod, port);
	kw_revnat_store(ctx, &pod, port, &key->addr, key->port);
	kw_stats_add(svc_id, 0);
	kw_wp_count(KW_WP_STAT_REDIRECTED);
	return KW_SOCK_ALLOW;
refuse:
	/* Fail closed: L7 policy is never skipped by falling back to L4. */
	kw_wp_count(KW_WP_STAT_REFUSED);
	return kw_sock_refuse(svc_id);
}

#endif /* KW_WAYPOINT_CONNECT_H */
