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

SEC("sockops")
int kw_sm_sockops(struct bpf_sock_ops *skops)
{
	switch (skops->op) {
	case BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB:
		kw_sm_established(skops);
		kw_wp_established(skops); /* after: a socket the accelerator took is left as it is */
		break;
	case BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB:
		kw_sm_established(skops);
		break;
	case BPF_SOCK_OPS_TCP_LISTEN_CB:
		kw_sm_listening(skops);
		break;
	case BPF_SOCK_OPS_STATE_CB:
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
