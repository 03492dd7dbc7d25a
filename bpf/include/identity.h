/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * identity.h — who is who: numeric identities of workloads, the address -> identity
 * map (every pod of the cluster, local and remote), and the endpoints of this node (its
 * pods: their host veths, their cgroups, their counters). The agent mirrors these layouts
 * in agent/datapath/policy-codec.ts; change both together.
 *
 * An identity stands for one distinct (namespace, service account, labels) of a pod;
 * pods that share all three share an identity. Reserved identities, as in Cilium:
 *   1 host   the node's own addresses (when the agent knows them)
 *   2 world  any address that is no known pod
 * Identities given to workloads start at KW_ID_FIRST.
 *
 * An endpoint is a pod on this node. Its id (1..KW_MAX_ENDPOINTS-1) indexes the
 * per-CPU counters; 0 means "not a local pod".
 */
#ifndef KW_IDENTITY_H
#define KW_IDENTITY_H

#include "kw_common.h"

#ifndef KW_MAX_IDENTS
#define KW_MAX_IDENTS 262144   /* pod addresses of the whole cluster */
#endif
#ifndef KW_MAX_ENDPOINTS
#define KW_MAX_ENDPOINTS 1024  /* local pods (endpoint ids), also bounds the counters */
#endif
#ifndef KW_MAX_CGROUPS
#define KW_MAX_CGROUPS 4096    /* local pods' cgroups */
#endif
#ifndef KW_CG_MAX_LEVEL
#define KW_CG_MAX_LEVEL 12     /* cgroup levels searched for a pod's cgroup at connect() */
#endif

#define KW_ID_HOST  1
#define KW_ID_WORLD 2
#define KW_ID_FIRST 256

/* Value of kw_ident (key: struct kw_addr, a pod address). 8 bytes. */
struct kw_ident_val {
	__u32 id;    /* identity of the pod owning the address */
	__u32 ep_id; /* its endpoint id when the pod is on this node, else 0 */
};

/* Value of kw_lxc (key: __u32 ifindex of a pod's host-side veth, node namespace). 8 bytes. */
struct kw_lxc_val {
	__u32 ep_id; /* endpoint id */
	__u32 id;    /* identity of the pod behind the veth */
};

/* Value of kw_cgrp (key: __u64 cgroup id of a pod's cgroup). 40 bytes. */
struct kw_cgrp_val {
	__u32 ep_id;         /* endpoint id */
	__u32 id;            /* identity of the pod */
	struct kw_addr ip4;  /* the pod's IPv4 address (::ffff:a.b.c.d), zero if none */
	struct kw_addr ip6;  /* the pod's IPv6 address, zero if none */
};

/* Drop and refusal reasons: index of kw_ep_stats.drops[]. Names in agent/datapath/policy-codec.ts. */
#define KW_DROP_POLICY          0 /* a new connection dropped at the pod's tc ingress: policy denies it */
#define KW_DROP_POLICY_L7       1 /* same, because an L7 rule cannot be checked without a waypoint (fail safe) */
#define KW_DROP_POLICY_CONNECT  2 /* a local client's connect() to this pod refused (EPERM) */
#define KW_DROP_POLICY_L7_CONNECT 3 /* same, because of an L7 rule without waypoint */
#define KW_DROP_REASONS         4

/*
 * Value of kw_ep_stats: counters of one local pod, per CPU. "in" is traffic into the pod
 * (the host veth's tc egress), "out" traffic from it (the host veth's tc ingress).
 * 72 bytes.
 */
struct kw_ep_stats {
	__u64 pkts_in;
	__u64 bytes_in;
	__u64 pkts_out;
	__u64 bytes_out;
	__u64 drops[KW_DROP_REASONS]; /* connections into the pod dropped or refused, by reason */
	__u64 refused_out;            /* this pod's own connect() calls refused by a policy */
};

/* Pod address (IPv4 as ::ffff:a.b.c.d) -> identity, endpoint. Exact addresses only. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, KW_MAX_IDENTS);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct kw_addr);
	__type(value, struct kw_ident_val);
} kw_ident SEC(".maps");

/* Host veth ifindex -> endpoint of the pod behind it (for the tc programs). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, KW_MAX_ENDPOINTS);
	__type(key, __u32);
	__type(value, struct kw_lxc_val);
} kw_lxc SEC(".maps");

/* Pod cgroup id -> endpoint (for connect(): which pod is calling). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, KW_MAX_CGROUPS);
	__type(key, __u64);
	__type(value, struct kw_cgrp_val);
} kw_cgrp SEC(".maps");

/*
 * Pod network namespace cookie (bpf_get_netns_cookie()) -> endpoint, same value as
 * kw_cgrp: which pod is calling connect(), whatever cgroup its processes are in (every
 * container runtime gives each pod its own network namespace). Tried before kw_cgrp.
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, KW_MAX_CGROUPS);
	__type(key, __u64);
	__type(value, struct kw_cgrp_val);
} kw_netns SEC(".maps");

/* Per-endpoint counters, indexed by endpoint id; read by the agent when asked. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, KW_MAX_ENDPOINTS);
	__type(key, __u32);
	__type(value, struct kw_ep_stats);
} kw_ep_stats SEC(".maps");

/* Identity of an address; KW_ID_WORLD when it is no known pod. *ep_id gets its endpoint. */
static __always_inline __u32 kw_ident_of(const struct kw_addr *a, __u32 *ep_id)
{
	struct kw_ident_val *v = bpf_map_lookup_elem(&kw_ident, a);

	if (!v) {
		if (ep_id)
			*ep_id = 0;
		return KW_ID_WORLD;
	}
	if (ep_id)
		*ep_id = v->ep_id;
	return v->id;
}

static __always_inline struct kw_ep_stats *kw_ep_stats_of(__u32 ep_id)
{
	if (ep_id == 0)
		return 0;
	return bpf_map_lookup_elem(&kw_ep_stats, &ep_id);
}

/* Per-CPU value: no other CPU writes it, plain increments are enough. */
static __always_inline void kw_ep_count_drop(__u32 ep_id, __u32 reason)
{
	struct kw_ep_stats *st = kw_ep_stats_of(ep_id);

	if (st && reason < KW_DROP_REASONS)
		st->drops[reason]++;
}

#endif /* KW_IDENTITY_H */
