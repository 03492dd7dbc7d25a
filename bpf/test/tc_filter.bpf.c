// SPDX-License-Identifier: GPL-2.0
/*
 * Test object for BPF_PROG_TEST_RUN: a small tc filter over IPv4/UDP.
 *   - UDP to port kw_drop_port: TC_ACT_SHOT;
 *   - UDP to port kw_ttl_port: TTL decremented (IP checksum fixed), TC_ACT_OK;
 *   - anything else, or a truncated packet: TC_ACT_OK, untouched.
 */
#include <stddef.h>
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/udp.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

const volatile __u16 kw_drop_port = 9;  /* UDP destination port dropped */
const volatile __u16 kw_ttl_port = 53;  /* UDP destination port whose TTL is decremented */

#define IP_TTL_OFF (ETH_HLEN + offsetof(struct iphdr, ttl))
#define IP_CSUM_OFF (ETH_HLEN + offsetof(struct iphdr, check))

SEC("tc")
int kw_t_filter(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip;
	struct udphdr *udp;

	if ((void *)(eth + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IP))
		return TC_ACT_OK;
	ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > data_end || ip->ihl != 5 || ip->protocol != IPPROTO_UDP)
		return TC_ACT_OK;
	udp = (void *)(ip + 1);
	if ((void *)(udp + 1) > data_end)
		return TC_ACT_OK;
	if (udp->dest == bpf_htons(kw_drop_port))
		return TC_ACT_SHOT;
	if (udp->dest != bpf_htons(kw_ttl_port) || ip->ttl <= 1)
		return TC_ACT_OK;
	/* TTL shares a 16-bit checksum word with the protocol byte. */
	union { __u8 b[2]; __u16 w; } old, new;
	old.b[0] = ip->ttl;
	old.b[1] = ip->protocol;
	new.b[0] = ip->ttl - 1;
	new.b[1] = ip->protocol;
	bpf_l3_csum_replace(skb, IP_CSUM_OFF, old.w, new.w, sizeof(__u16));
	bpf_skb_store_bytes(skb, IP_TTL_OFF, &new.b[0], 1, 0);
	return TC_ACT_OK;
}

char LICENSE[] SEC("license") = "GPL";
