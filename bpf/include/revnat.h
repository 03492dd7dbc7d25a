/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * revnat.h — reverse translation, so the application sees the address it dialled.
 *
 * When connect()/sendmsg() sends a socket to a backend instead of a ClusterIP, the
 * program remembers {socket cookie, backend} -> ClusterIP:port. getpeername() and
 * recvmsg() (the source of a UDP reply) then show the ClusterIP:port again. Keyed by
 * the backend too, so one unconnected UDP socket can talk to several Services.
 * Entries are never deleted by the agent: the LRU drops those of closed sockets.
 */
#ifndef KW_REVNAT_H
#define KW_REVNAT_H

#include "kw_common.h"

#ifndef KW_MAX_REVNAT
#define KW_MAX_REVNAT 131072
#endif

/* Key of kw_revnat. 32 bytes. */
struct kw_revnat_key {
	__u64 cookie;        /* bpf_get_socket_cookie() */
	struct kw_addr addr; /* backend address the socket was sent to */
	__be16 port;         /* backend port, network byte order */
	__u16 pad1;          /* zero */
	__u32 pad2;          /* zero */
};

/* Value of kw_revnat. 20 bytes. */
struct kw_revnat_val {
	struct kw_addr addr; /* ClusterIP the application dialled */
	__be16 port;         /* Service port, network byte order */
	__u16 pad;           /* zero */
#ifdef KW_TEST_REVNAT_GEN
	__u32 gen;           /* upgrade tests only (bpf/test/sock_lb_v2.bpf.c): the field a new build adds */
#endif
};

/* Reverse translation: {socket cookie, backend} -> ClusterIP:port. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, KW_MAX_REVNAT);
	__type(key, struct kw_revnat_key);
	__type(value, struct kw_revnat_val);
} kw_revnat SEC(".maps");

static __always_inline void kw_revnat_store(struct bpf_sock_addr *ctx, const struct kw_addr *backend, __be16 bport,
					     const struct kw_addr *vip, __be16 vport)
{
	struct kw_revnat_key key = { .cookie = bpf_get_socket_cookie(ctx), .addr = *backend, .port = bport };
	struct kw_revnat_val val = { .addr = *vip, .port = vport };
#ifdef KW_TEST_REVNAT_GEN
	val.gen = KW_TEST_REVNAT_GEN;
#endif
	struct kw_revnat_val *old = bpf_map_lookup_elem(&kw_revnat, &key);

	/* Unconnected UDP comes here per datagram: skip the write when nothing changes. */
	if (old && old->port == vport && old->addr.w[0] == vip->w[0] && old->addr.w[1] == vip->w[1] &&
	    old->addr.w[2] == vip->w[2] && old->addr.w[3] == vip->w[3])
		return;
	bpf_map_update_elem(&kw_revnat, &key, &val, BPF_ANY);
}

/* Looks up the ClusterIP:port for a socket's peer; 0 when found. */
static __always_inline int kw_revnat_lookup(struct bpf_sock_addr *ctx, const struct kw_addr *peer, __be16 pport,
					     struct kw_revnat_val *out)
{
	struct kw_revnat_key key = { .cookie = bpf_get_socket_cookie(ctx), .addr = *peer, .port = pport };
	struct kw_revnat_val *v = bpf_map_lookup_elem(&kw_revnat, &key);

	if (!v)
		return -1;
	*out = *v;
	return 0;
}

#endif /* KW_REVNAT_H */
