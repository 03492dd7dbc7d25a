// SPDX-License-Identifier: GPL-2.0
/*
 * Test object for cgroup attach: a cgroup/connect4 program that sends connections for
 * 127.0.0.1:kw_from_port to 127.0.0.1:kw_to_port instead, and counts the rewrites.
 */
#include <linux/bpf.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

const volatile __u16 kw_from_port = 0; /* host order; 0 disables the rewrite */
const volatile __u16 kw_to_port = 0;   /* host order */

/* [0]: connections rewritten. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} kw_t_hits SEC(".maps");

SEC("cgroup/connect4")
int kw_t_connect4(struct bpf_sock_addr *ctx)
{
	__u32 k = 0;
	__u64 *hits;

	if (kw_from_port == 0 || ctx->user_ip4 != bpf_htonl(0x7f000001) ||
	    ctx->user_port != bpf_htons(kw_from_port))
		return 1;
	ctx->user_port = bpf_htons(kw_to_port);
	hits = bpf_map_lookup_elem(&kw_t_hits, &k);
	if (hits)
		__sync_fetch_and_add(hits, 1);
	return 1; /* allow the connect() */
}

char LICENSE[] SEC("license") = "GPL";
