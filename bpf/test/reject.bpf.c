// SPDX-License-Identifier: GPL-2.0
/*
 * Test object with a program the verifier must reject (kw_t_bad dereferences a map
 * value without the NULL check) next to one it accepts, to check that a failed load
 * names the program and carries the verifier's log.
 */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_HASH); /* a hash lookup may return NULL */
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} kw_t_rej SEC(".maps");

SEC("tc")
int kw_t_good(struct __sk_buff *skb)
{
	return TC_ACT_OK;
}

SEC("tc")
int kw_t_bad(struct __sk_buff *skb)
{
	__u32 k = 0;
	__u64 *v = bpf_map_lookup_elem(&kw_t_rej, &k);

	/* No NULL check on purpose: the verifier rejects this load. */
	return (int)*v;
}

char LICENSE[] SEC("license") = "GPL";
