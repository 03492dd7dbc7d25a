// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Socket-level Service load balancing (docs/l4-lb.md). Attached to a cgroup; every
 * socket of a process in it is balanced at connect()/sendmsg() time, and its peer is
 * shown as the ClusterIP at getpeername()/recvmsg() time. No per-packet work.
 */
#include "kw_common.h"
#include "sock.h"

SEC("cgroup/connect4")
int kw_connect4(struct bpf_sock_addr *ctx)
{
	return kw_sock_forward(ctx, 1);
}

SEC("cgroup/connect6")
int kw_connect6(struct bpf_sock_addr *ctx)
{
	return kw_sock_forward(ctx, 0);
}

SEC("cgroup/sendmsg4")
int kw_sendmsg4(struct bpf_sock_addr *ctx)
{
	return kw_sock_forward(ctx, 1);
}

SEC("cgroup/sendmsg6")
int kw_sendmsg6(struct bpf_sock_addr *ctx)
{
	return kw_sock_forward(ctx, 0);
}

SEC("cgroup/recvmsg4")
int kw_recvmsg4(struct bpf_sock_addr *ctx)
{
	return kw_sock_reverse(ctx, 1);
}

SEC("cgroup/recvmsg6")
int kw_recvmsg6(struct bpf_sock_addr *ctx)
{
	return kw_sock_reverse(ctx, 0);
}

SEC("cgroup/getpeername4")
int kw_getpeername4(struct bpf_sock_addr *ctx)
{
	return kw_sock_reverse(ctx, 1);
}

SEC("cgroup/getpeername6")
int kw_getpeername6(struct bpf_sock_addr *ctx)
{
	return kw_sock_reverse(ctx, 0);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
