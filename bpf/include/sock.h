/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * sock.h — the glue of the cgroup sock_addr hooks: read the destination a socket asks
 * for, send it to a backend, and show the application the ClusterIP again.
 *
 * A Service without usable endpoint fails connect()/sendmsg() at once with
 * kw_cfg_refuse_errno (ECONNREFUSED): the program sets the syscall's return value with
 * bpf_set_retval() (kernel >= 5.18) and rejects. A bare rejection would give EPERM.
 */
#ifndef KW_SOCK_H
#define KW_SOCK_H

#include "kw_common.h"
#include "lb.h"
#include "affinity.h"
#include "revnat.h"

/* The socket's destination as a map address. */
static __always_inline void kw_sock_dst(struct bpf_sock_addr *ctx, int v4, struct kw_addr *a)
{
	if (v4) {
		kw_addr_from_v4(a, ctx->user_ip4);
	} else {
		a->w[0] = ctx->user_ip6[0];
		a->w[1] = ctx->user_ip6[1];
		a->w[2] = ctx->user_ip6[2];
		a->w[3] = ctx->user_ip6[3];
	}
}

/* Rewrites the socket's destination; the caller checked the families match. */
static __always_inline void kw_sock_set_dst(struct bpf_sock_addr *ctx, int v4, const struct kw_addr *a, __be16 port)
{
	if (v4) {
		ctx->user_ip4 = a->w[3];
	} else {
		ctx->user_ip6[0] = a->w[0];
		ctx->user_ip6[1] = a->w[1];
		ctx->user_ip6[2] = a->w[2];
		ctx->user_ip6[3] = a->w[3];
	}
	ctx->user_port = (__u32)port;
}

static __always_inline int kw_sock_refuse(__u32 svc_id)
{
	kw_stats_add(svc_id, 1);
	bpf_set_retval(-(int)kw_cfg_refuse_errno);
	return KW_SOCK_DENY;
}

/* The hand-off of HTTP ports to the waypoint (uses the helpers above). */
#include "waypoint_connect.h"

/* connect4/6 and sendmsg4/6: a ClusterIP:port becomes a backend's address:port. */
static __always_inline int kw_sock_forward(struct bpf_sock_addr *ctx, int v4)
{
	struct kw_svc_key key = {};
	struct kw_client client = {};
	struct kw_backend be = {};
	struct kw_svc_val *sv;
	__u32 proto = ctx->protocol;
	__u32 svc_id = 0;
	int r;

	if (proto != KW_IPPROTO_TCP && proto != KW_IPPROTO_UDP)
		return KW_SOCK_ALLOW;
	kw_sock_dst(ctx, v4, &key.addr);
	key.port = (__be16)ctx->user_port;
	key.proto = (__u8)proto;

	/* Most connections are not to a Service: one lookup and out. */
	sv = bpf_map_lookup_elem(&kw_svc, &key);
	if (!sv) {
		/* A waypoint's mesh port is reached only through the kernel's redirect. */
		if (proto == KW_IPPROTO_TCP && kw_wp_guard_check(ctx, &key.addr, key.port))
			return KW_SOCK_DENY;
		return KW_SOCK_ALLOW;
	}
	if (proto == KW_IPPROTO_TCP) {
		r = kw_wp_forward(ctx, v4, &key, sv->svc_id);
		if (r >= 0)
			return r;
	}
	if (sv->flags & (KW_SVC_F_MAGLEV | KW_SVC_F_AFFINITY))
		kw_client_of(ctx, v4, &client);

	r = kw_lb_select(&key, &client, &be, &svc_id);
	if (r == KW_LB_PASS)
		return KW_SOCK_ALLOW;
	if (r != KW_LB_OK)
		return kw_sock_refuse(svc_id);
	/* A backend of the other family cannot be reached from this socket. */
	if (kw_addr_is_v4(&be.addr) != kw_addr_is_v4(&key.addr))
		return kw_sock_refuse(svc_id);

	kw_sock_set_dst(ctx, v4, &be.addr, be.port);
	kw_revnat_store(ctx, &be.addr, be.port, &key.addr, key.port);
	kw_stats_add(svc_id, 0);
	return KW_SOCK_ALLOW;
}

/* getpeername4/6 and recvmsg4/6: a backend's address:port shows as the ClusterIP:port. */
static __always_inline int kw_sock_reverse(struct bpf_sock_addr *ctx, int v4)
{
	struct kw_addr peer = {};
	struct kw_revnat_val vip;
	__u32 proto = ctx->protocol;

	if (proto != KW_IPPROTO_TCP && proto != KW_IPPROTO_UDP)
		return KW_SOCK_ALLOW;
	kw_sock_dst(ctx, v4, &peer);
	if (kw_revnat_lookup(ctx, &peer, (__be16)ctx->user_port, &vip))
		return KW_SOCK_ALLOW;
	kw_sock_set_dst(ctx, v4, &vip.addr, vip.port);
	return KW_SOCK_ALLOW;
}

#endif /* KW_SOCK_H */
