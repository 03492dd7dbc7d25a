/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * affinity.h — who the client is, and sessionAffinity: ClientIP.
 *
 * At connect() the kernel has not chosen the source address of an unbound socket yet
 * (the route lookup comes after the hook). The client is therefore identified by the
 * socket's bound source address when it has one, else by its network namespace
 * (bpf_get_netns_cookie): a pod has one namespace and one address, so both name the
 * same client. Host-network processes share the node's namespace and count as one
 * client. The same identity feeds Maglev's hash.
 *
 * An affinity entry remembers the backend a client was sent to and when; a new
 * connection within affinity_timeout seconds of the last one goes to the same backend
 * if that backend id still exists (backend ids are per frontend and are never reused
 * while live, so a removed backend misses and the client is balanced afresh).
 */
#ifndef KW_AFFINITY_H
#define KW_AFFINITY_H

#include "kw_common.h"

#ifndef KW_MAX_AFFINITY
#define KW_MAX_AFFINITY 65536
#endif

/* kw_client.kind */
#define KW_CLIENT_ADDR  1 /* id is the bound source address */
#define KW_CLIENT_NETNS 2 /* id.w[0..1] is the netns cookie */

/* A client identity. 20 bytes. */
struct kw_client {
	__u32 kind;        /* KW_CLIENT_* */
	struct kw_addr id; /* address (network order) or netns cookie */
};

/* Key of kw_affinity. 24 bytes. */
struct kw_aff_key {
	__u32 svc_id;          /* frontend (kw_svc_val.svc_id) */
	struct kw_client client;
};

/* Value of kw_affinity. 16 bytes. */
struct kw_aff_val {
	__u32 backend_id; /* backend chosen last time */
	__u32 pad;        /* zero */
	__u64 last_ns;    /* bpf_ktime_get_ns() of the client's last connection */
};

/* ClientIP session affinity: {svc_id, client} -> backend, last use. LRU: old ones go first. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, KW_MAX_AFFINITY);
	__type(key, struct kw_aff_key);
	__type(value, struct kw_aff_val);
} kw_affinity SEC(".maps");

static __always_inline void kw_client_of(struct bpf_sock_addr *ctx, int v4, struct kw_client *c)
{
	struct bpf_sock *sk = ctx->sk;
	__u64 cookie;

	if (sk) {
		if (v4) {
			__be32 src = sk->src_ip4;

			if (src) {
				c->kind = KW_CLIENT_ADDR;
				kw_addr_from_v4(&c->id, src);
				return;
			}
		} else {
			c->id.w[0] = sk->src_ip6[0];
			c->id.w[1] = sk->src_ip6[1];
			c->id.w[2] = sk->src_ip6[2];
			c->id.w[3] = sk->src_ip6[3];
			if (!kw_addr_is_zero(&c->id)) {
				c->kind = KW_CLIENT_ADDR;
				return;
			}
		}
	}
	cookie = bpf_get_netns_cookie(ctx);
	c->kind = KW_CLIENT_NETNS;
	c->id.w[0] = (__u32)cookie;
	c->id.w[1] = (__u32)(cookie >> 32);
	c->id.w[2] = 0;
	c->id.w[3] = 0;
}

static __always_inline __u32 kw_client_hash(const struct kw_client *c)
{
	return kw_hash4(c->id.w[0] ^ c->kind, c->id.w[1], c->id.w[2], c->id.w[3]);
}

/* The backend id this client is bound to on svc_id, 0 when none or expired. */
static __always_inline __u32 kw_affinity_get(__u32 svc_id, const struct kw_client *c, __u32 timeout_s)
{
	struct kw_aff_key key = { .svc_id = svc_id, .client = *c };
	struct kw_aff_val *v = bpf_map_lookup_elem(&kw_affinity, &key);
	__u64 now = bpf_ktime_get_ns();
	__u64 last;

	if (!v)
		return 0;
	/* Copy before use: the LRU may recycle the element under us. */
	last = v->last_ns;
	if (now - last > (__u64)timeout_s * 1000000000ULL)
		return 0;
	return v->backend_id;
}

/* Records (or refreshes) the client's backend on svc_id. */
static __always_inline void kw_affinity_put(__u32 svc_id, const struct kw_client *c, __u32 backend_id)
{
	struct kw_aff_key key = { .svc_id = svc_id, .client = *c };
	struct kw_aff_val v = { .backend_id = backend_id, .last_ns = bpf_ktime_get_ns() };

	bpf_map_update_elem(&kw_affinity, &key, &v, BPF_ANY);
}

#endif /* KW_AFFINITY_H */
