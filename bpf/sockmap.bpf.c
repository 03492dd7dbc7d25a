// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Same-node socket acceleration (docs/sockmap.md). kw_sm_sockops is attached to the
 * agent's cgroup and adds established pod-to-pod TCP sockets to kw_sm_hash;
 * kw_sm_msg is attached to kw_sm_hash and moves each message a socket sends straight
 * into its peer socket's receive queue, or lets it take the TCP/IP stack. The rules
 * that keep every byte are in include/sockmap.h.
 */
#include "kw_common.h"
#include <bpf/bpf_core_read.h>
#include "sockmap.h"
#include "waypoint_msg.h"

/*
 * A socket the hand-off added to kw_sm_hash only so that sk_msg writes its PROXY header
 * (a blocking client, or one the accelerator did not take: waypoint_msg.h) reads through
 * tcp_bpf_recvmsg while it is there, which a blocking reader can tell from TCP (rule 5: a
 * wake-up without data, such as the ACK of its own FIN after shutdown(SHUT_WR), returns
 * EAGAIN). Nothing is ever redirected to it (it has no kw_sm_rx entry), so taking it out
 * loses nothing: its key is kept in kw_sm_sk (state KW_SM_HDR_ONLY), and it is removed at
 * the first ACK after the header went out, or when it leaves ESTABLISHED.
 */
static __always_inline void kw_sm_hdr_only_added(struct bpf_sock_ops *skops)
{
	struct kw_sm_key key = {};
	struct kw_wp_sock *wp;
	struct kw_sm_sock *st;
	struct bpf_sock *sk = skops->sk;
	__u32 family = skops->family;

	if (!sk || (family != KW_AF_INET && family != KW_AF_INET6))
		return;
	wp = bpf_sk_storage_get(&kw_wp_sk, sk, 0, 0);
	if (!wp || !(wp->flags & KW_WP_F_STACK_ONLY) || bpf_sk_storage_get(&kw_sm_sk, sk, 0, 0))
		return;
	st = bpf_sk_storage_get(&kw_sm_sk, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (!st)
		return; /* stays in the map until close(), as without this */
	kw_sm_addrs(skops, family, &key);
	key.lport = bpf_htons((__u16)skops->local_port);
	key.rport = kw_sm_remote_port(skops->remote_port);
	key.lseq = skops->snd_una;
	key.rseq = skops->rcv_nxt;
	st->self = key;
	kw_sm_mirror(&key, &st->peer);
	st->state = KW_SM_HDR_ONLY;
	st->pad = 0;
	bpf_sock_ops_cb_flags_set(skops, skops->bpf_sock_ops_cb_flags | BPF_SOCK_OPS_RTT_CB_FLAG | BPF_SOCK_OPS_STATE_CB_FLAG);
}

/* RTT (an ACK) or STATE callback of a header-only socket: out of kw_sm_hash once the header is written. */
static __always_inline void kw_sm_hdr_only_check(struct bpf_sock_ops *skops)
{
	struct bpf_sock *sk = skops->sk;
	struct kw_sm_sock *st;
	struct kw_wp_sock *wp;

	if (!sk)
		return;
	st = bpf_sk_storage_get(&kw_sm_sk, sk, 0, 0);
	if (!st || st->state != KW_SM_HDR_ONLY)
		return;
	wp = bpf_sk_storage_get(&kw_wp_sk, sk, 0, 0);
	if (wp && wp->state == KW_WP_PENDING) {
		/* The header is still to be written: only a socket that can no longer send gives it up. */
		if (skops->op == BPF_SOCK_OPS_RTT_CB || skops->args[1] == 8 /* TCP_CLOSE_WAIT */)
			return;
	}
	bpf_map_delete_elem(&kw_sm_hash, &st->self);
	bpf_sk_storage_delete(&kw_sm_sk, sk);
	bpf_sock_ops_cb_flags_set(skops, skops->bpf_sock_ops_cb_flags & ~(BPF_SOCK_OPS_RTT_CB_FLAG | BPF_SOCK_OPS_STATE_CB_FLAG));
	kw_sm_count(KW_SM_STAT_HDR_ONLY_OUT, 1);
}

SEC("sockops")
int kw_sm_sockops(struct bpf_sock_ops *skops)
{
	switch (skops->op) {
	case BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB:
		kw_sm_established(skops);
		kw_wp_established(skops); /* after: a socket the accelerator took is left as it is */
		kw_sm_hdr_only_added(skops);
		break;
	case BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB:
		kw_sm_established(skops);
		break;
	case BPF_SOCK_OPS_TCP_LISTEN_CB:
		kw_sm_listening(skops);
		break;
	case BPF_SOCK_OPS_RTT_CB:
		kw_sm_hdr_only_check(skops);
		break;
	case BPF_SOCK_OPS_STATE_CB:
		kw_sm_hdr_only_check(skops);
		kw_sm_state_change(skops);
		break;
	default:
		break;
	}
	return 1;
}

SEC("sk_msg")
int kw_sm_msg(struct sk_msg_md *msg)
{
	int stack_only = 0;

	/* A socket redirected to a waypoint: its PROXY header first (waypoint_msg.h). */
	if (kw_wp_msg(msg, &stack_only) != SK_PASS)
		return SK_DROP;
	if (stack_only)
		return SK_PASS;
	return kw_sm_verdict(msg);
}

/* The receive side of accelerated sockets (rules 5 and 6 in include/sockmap.h). */
SEC("raw_tp/sock_recv_length")
int kw_sm_recv_prog(struct bpf_raw_tracepoint_args *ctx)
{
	kw_sm_recv((struct sock *)ctx->args[0], (int)ctx->args[1], (int)ctx->args[2]);
	return 0;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
