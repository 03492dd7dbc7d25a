// SPDX-License-Identifier: GPL-2.0
/*
 * Test object for tc attach: counts the packets a tc hook sees (atomic adds in an
 * array), and a second program that counts elsewhere, for link replacement.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

/* The ICMP header fields we read (linux/icmp.h pulls in libc headers). */
struct kw_t_icmp {
	__u8 type;
	__u8 code;
	__u16 checksum;
};
#define KW_T_ICMP_ECHOREPLY 0
#define KW_T_ICMP_ECHO 8

enum {
	KW_T_ALL = 0,       /* every packet seen by kw_t_count_a */
	KW_T_ECHO_REQ = 1,  /* IPv4 ICMP echo requests seen by kw_t_count_a */
	KW_T_ECHO_REPLY = 2,/* IPv4 ICMP echo replies seen by kw_t_count_a */
	KW_T_ALL_B = 3,     /* every packet seen by kw_t_count_b */
	KW_T_SLOTS = 4,
};

/* Packet counters, indexed by the enum above. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, KW_T_SLOTS);
	__type(key, __u32);
	__type(value, __u64);
} kw_t_count SEC(".maps");

static __always_inline void bump(__u32 slot)
{
	__u64 *v = bpf_map_lookup_elem(&kw_t_count, &slot);

	if (v)
		__sync_fetch_and_add(v, 1);
}

SEC("tc")
int kw_t_count_a(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip;
	struct kw_t_icmp *icmp;

	bump(KW_T_ALL);
	if ((void *)(eth + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IP))
		return TC_ACT_OK;
	ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > data_end || ip->protocol != IPPROTO_ICMP || ip->ihl != 5)
		return TC_ACT_OK;
	icmp = (void *)(ip + 1);
	if ((void *)(icmp + 1) > data_end)
		return TC_ACT_OK;
	if (icmp->type == KW_T_ICMP_ECHO)
		bump(KW_T_ECHO_REQ);
	else if (icmp->type == KW_T_ICMP_ECHOREPLY)
		bump(KW_T_ECHO_REPLY);
	return TC_ACT_OK;
}

SEC("tc")
int kw_t_count_b(struct __sk_buff *skb)
{
	bump(KW_T_ALL_B);
	return TC_ACT_OK;
}

char LICENSE[] SEC("license") = "GPL";
