// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * L4 authorization at connect() for clients on this node (docs/policy.md).
 *
 * Attached to the agent's cgroup AFTER the socket load balancer's connect programs
 * (cgroup programs run in attach order, each seeing the address the previous one wrote),
 * so the destination here is the real backend pod, not a ClusterIP. When that pod's
 * policy denies the calling pod, connect() fails at once with EPERM: no SYN is sent, no
 * client waits for a timeout.
 *
 * The calling pod is found by its network namespace (kw_netns: the socket's netns
 * cookie, which every container runtime gives each pod), else by its cgroup (kw_cgrp: the
 * pod's cgroup, or an ancestor of the caller's cgroup, as container cgroups sit under the
 * pod's; the kernway.io/cgroup annotation names it in standalone mode). A caller that is
 * no known pod (a host process, a pod whose namespace and cgroup the agent has not found
 * yet) is let through here: the destination's tc program checks its SYN with the real
 * source address.
 */
#include "kw_common.h"
#include "identity.h"
#include "policy.h"

#define KW_SOCK_STREAM 1

/* The pod whose network namespace the socket is in, else whose cgroup is the caller's (or an ancestor); NULL if none. */
static __always_inline struct kw_cgrp_val *kw_pod_current(struct bpf_sock_addr *ctx)
{
	struct kw_cgrp_val *v;
	__u64 id = bpf_get_netns_cookie(ctx);
	int lvl;

	v = bpf_map_lookup_elem(&kw_netns, &id);
	if (v)
		return v;
	id = bpf_get_current_cgroup_id();
	v = bpf_map_lookup_elem(&kw_cgrp, &id);
	if (v)
		return v;
	/* Level 0 is the root; a pod's cgroup is never the root. Bounded for the verifier. */
	for (lvl = 1; lvl <= KW_CG_MAX_LEVEL; lvl++) {
		id = bpf_get_current_ancestor_cgroup_id(lvl);
		if (id == 0)
			break; /* deeper than the caller's own cgroup */
		v = bpf_map_lookup_elem(&kw_cgrp, &id);
		if (v)
			return v;
	}
	return 0;
}

static __always_inline int kw_pol_connect(struct bpf_sock_addr *ctx, int v4)
{
	struct kw_ident_val *dst;
	struct kw_cgrp_val *src;
	struct kw_addr daddr = {}, saddr;
	__u32 dst_id, dst_ep;
	int r;

	if (ctx->type != KW_SOCK_STREAM || ctx->protocol != KW_IPPROTO_TCP)
		return KW_SOCK_ALLOW; /* L4 policy is about TCP connections */
	if (bpf_get_retval() != 0)
		return KW_SOCK_ALLOW; /* an earlier program already refused: keep its errno */

	if (v4) {
		kw_addr_from_v4(&daddr, ctx->user_ip4);
	} else {
		daddr.w[0] = ctx->user_ip6[0];
		daddr.w[1] = ctx->user_ip6[1];
		daddr.w[2] = ctx->user_ip6[2];
		daddr.w[3] = ctx->user_ip6[3];
	}
	dst = bpf_map_lookup_elem(&kw_ident, &daddr);
	if (!dst)
		return KW_SOCK_ALLOW; /* not a pod */
	dst_id = dst->id;
	dst_ep = dst->ep_id;
	if (!bpf_map_lookup_elem(&kw_pdst, &dst_id))
		return KW_SOCK_ALLOW; /* no policy selects it: skip finding the caller */

	src = kw_pod_current(ctx);
	if (!src)
		return KW_SOCK_ALLOW; /* not a known pod: the destination's tc ingress decides */
	if (src->ep_id == dst_ep)
		return KW_SOCK_ALLOW; /* a pod talking to itself never leaves it */
	/* The source address the connection will have: the pod's own, in the destination's family. */
	saddr = kw_addr_is_v4(&daddr) ? src->ip4 : src->ip6;

	r = kw_policy_check(dst_id, src->id, &saddr, (__be16)ctx->user_port, KW_IPPROTO_TCP);
	if (r == KW_POL_PASS)
		return KW_SOCK_ALLOW;
	kw_ep_count_drop(dst_ep, r == KW_POL_DROP_L7 ? KW_DROP_POLICY_L7_CONNECT : KW_DROP_POLICY_CONNECT);
	{
		struct kw_ep_stats *st = kw_ep_stats_of(src->ep_id);

		if (st)
			st->refused_out++;
	}
	return KW_SOCK_DENY; /* connect() fails with EPERM */
}

SEC("cgroup/connect4")
int kw_pol_connect4(struct bpf_sock_addr *ctx)
{
	return kw_pol_connect(ctx, 1);
}

SEC("cgroup/connect6")
int kw_pol_connect6(struct bpf_sock_addr *ctx)
{
	return kw_pol_connect(ctx, 0);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
