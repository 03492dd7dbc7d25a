/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * waypoint_msg.h — the sock_ops and sk_msg side of the hand-off (see waypoint.h), in the
 * sockmap object: one sk_msg program per socket, the accelerator's, which first writes
 * the PROXY v2 header of a redirected socket and then decides as for any socket.
 */
#ifndef KW_WAYPOINT_MSG_H
#define KW_WAYPOINT_MSG_H

#include "kw_common.h"
#include "sockmap.h"
#include "waypoint.h"

/* PROXY protocol v2 headers (https://www.haproxy.org/download/2.9/doc/proxy-protocol.txt). */
struct kw_pp2_v4 {
	__u8 sig[12];
	__u8 ver_cmd; /* 0x21: version 2, PROXY */
	__u8 fam;     /* 0x11: TCP over IPv4 */
	__be16 len;   /* 12 */
	__be32 src;
	__be32 dst;
	__be16 sport;
	__be16 dport;
} __attribute__((packed));

struct kw_pp2_v6 {
	__u8 sig[12];
	__u8 ver_cmd; /* 0x21 */
	__u8 fam;     /* 0x21: TCP over IPv6 */
	__be16 len;   /* 36 */
	__be32 src[4];
	__be32 dst[4];
	__be16 sport;
	__be16 dport;
} __attribute__((packed));

#define KW_PP2_SIG { 0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A }

/*
 * Prepends header h (a struct of constant size) to the message: room pushed at offset 0,
 * made linear, then written; `goto fail` on any error (the message is then dropped whole).
 */
#define KW_WP_PUSH(msg, h)                                                                          \
	do {                                                                                        \
		void *data_, *end_;                                                                 \
		if (bpf_msg_push_data(msg, 0, sizeof(h), 0) || bpf_msg_pull_data(msg, 0, sizeof(h), 0)) \
			goto fail;                                                                  \
		data_ = (void *)(long)(msg)->data;                                                  \
		end_ = (void *)(long)(msg)->data_end;                                               \
		if (data_ + sizeof(h) > end_)                                                       \
			goto fail;                                                                  \
		__builtin_memcpy(data_, &(h), sizeof(h));                                           \
	} while (0)

/*
 * sock_ops, ACTIVE_ESTABLISHED, after the accelerator had its say: a socket redirected to
 * a waypoint learns its own address for the header, and, when the accelerator did not
 * take it (another node, a blocking owner, acceleration off), is added to kw_sm_hash all
 * the same, marked stack-only, so that the sk_msg program runs on its sends. Nothing is
 * ever redirected to or from such a socket (it has no kw_sm_rx entry: never a target).
 */
static __always_inline void kw_wp_established(struct bpf_sock_ops *skops)
{
	struct kw_sm_key key = {};
	struct kw_wp_sock *st;
	struct bpf_sock *sk = skops->sk;
	__u32 family = skops->family;
	long err;

	if (!sk || (family != KW_AF_INET && family != KW_AF_INET6))
		return;
	st = bpf_sk_storage_get(&kw_wp_sk, sk, 0, 0);
	if (!st || st->state != KW_WP_PENDING)
		return;
	kw_sm_addrs(skops, family, &key);
	key.lport = bpf_htons((__u16)skops->local_port);
	key.rport = kw_sm_remote_port(skops->remote_port);
	key.lseq = skops->snd_una;
	key.rseq = skops->rcv_nxt;
	st->src = key.local;
	st->sport = key.lport;
	if (bpf_sk_storage_get(&kw_sm_sk, sk, 0, 0))
		return; /* accelerated: already in kw_sm_hash */
	err = bpf_sock_hash_update(skops, &kw_sm_hash, &key, BPF_NOEXIST);
	if (err) {
		st->state = KW_WP_FAILED;
		kw_wp_count(KW_WP_STAT_HASH_FAILED);
		return;
	}
	st->flags |= KW_WP_F_STACK_ONLY;
}

/*
 * sk_msg, before the accelerator's verdict: the first send of a redirected socket gets
 * the PROXY v2 header in front. SK_PASS: go on (header written now, before, or not a
 * redirected socket); SK_DROP: the push failed, the send fails and the next one tries
 * again (the header is marked written only once it is in the message).
 */
static __always_inline int kw_wp_msg(struct sk_msg_md *msg, int *stack_only)
{
	struct bpf_sock *sk = msg->sk;
	struct kw_wp_sock *st;

	if (!sk)
		return SK_PASS;
	st = bpf_sk_storage_get(&kw_wp_sk, sk, 0, 0);
	if (!st)
		return SK_PASS;
	*stack_only = (st->flags & KW_WP_F_STACK_ONLY) != 0;
	if (st->state != KW_WP_PENDING)
		return SK_PASS;
	if (kw_addr_is_v4(&st->dst)) {
		struct kw_pp2_v4 h = { .sig = KW_PP2_SIG, .ver_cmd = 0x21, .fam = 0x11, .len = bpf_htons(12) };

		h.src = st->src.w[3];
		h.dst = st->dst.w[3];
		h.sport = st->sport;
		h.dport = st->port;
		KW_WP_PUSH(msg, h);
	} else {
		struct kw_pp2_v6 h = { .sig = KW_PP2_SIG, .ver_cmd = 0x21, .fam = 0x21, .len = bpf_htons(36) };

		h.src[0] = st->src.w[0];
		h.src[1] = st->src.w[1];
		h.src[2] = st->src.w[2];
		h.src[3] = st->src.w[3];
		h.dst[0] = st->dst.w[0];
		h.dst[1] = st->dst.w[1];
		h.dst[2] = st->dst.w[2];
		h.dst[3] = st->dst.w[3];
		h.sport = st->sport;
		h.dport = st->port;
		KW_WP_PUSH(msg, h);
	}
	st->state = KW_WP_WRITTEN;
	kw_wp_count(KW_WP_STAT_HDR_WRITTEN);
	return SK_PASS;
fail:
	kw_wp_count(KW_WP_STAT_HDR_FAILED);
	return SK_DROP;
}

#endif /* KW_WAYPOINT_MSG_H */
