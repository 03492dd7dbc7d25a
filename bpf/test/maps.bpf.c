// SPDX-License-Identifier: GPL-2.0
/*
 * Test object for the addon's object and map API: one map of each common kind, rodata
 * tunables, and a tc program whose verdict is a tunable, so a BPF_PROG_TEST_RUN shows
 * that a value set before load reached the kernel.
 */
#include <stdbool.h>
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>

/* Tunables, set by the loader before load. */
const volatile __u32 kw_verdict = TC_ACT_OK; /* returned by kw_t_verdict */
const volatile __u64 kw_mark = 0;            /* written to kw_t_array[0] when kw_enabled */
const volatile bool kw_enabled = false;      /* gates the write above */
const volatile __s16 kw_signed = -1;         /* written to kw_t_array[1] (sign-extended) */

/* u32 -> u64, small: lookup/update/delete/iterate. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, __u64);
} kw_t_hash SEC(".maps");

/* u32 -> u64, big enough for the 100,000-entry batch test. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 131072);
	__type(key, __u32);
	__type(value, __u64);
} kw_t_big SEC(".maps");

/* Where kw_t_verdict writes its rodata so tests can read it back. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, __u64);
} kw_t_array SEC(".maps");

/* Runs of kw_t_verdict, per CPU. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} kw_t_percpu SEC(".maps");

SEC("tc")
int kw_t_verdict(struct __sk_buff *skb)
{
	__u32 k = 0;
	__u64 *v = bpf_map_lookup_elem(&kw_t_array, &k);

	if (v && kw_enabled)
		*v = kw_mark;
	k = 1;
	v = bpf_map_lookup_elem(&kw_t_array, &k);
	if (v)
		*v = (__u64)(__s64)kw_signed;
	k = 0;
	v = bpf_map_lookup_elem(&kw_t_percpu, &k);
	if (v)
		*v += 1;
	return kw_verdict;
}

char LICENSE[] SEC("license") = "GPL";
