// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * tc programs on a local pod's host-side veth (docs/policy.md): L4 authorization of new
 * connections into the pod, and per-pod counters.
 *
 * Directions are named from the pod's point of view:
 *   kw_to_pod    traffic INTO the pod. It leaves the node namespace through the host
 *                veth, so it is attached at the host veth's tc EGRESS.
 *   kw_from_pod  traffic FROM the pod. It enters the node namespace through the host
 *                veth, so it is attached at the host veth's tc INGRESS.
 *
 * Only the first packet of a TCP connection (SYN without ACK) is checked against the
 * policy; the packets of established connections are only counted. A pass returns
 * TC_ACT_UNSPEC (tcx: "next"), so programs attached after this one still run.
 *
 * Before the policy, the hand-off's SYN guard: a SYN to a waypoint pod's mesh port from
 * an address that is no known pod is dropped (bpf/include/waypoint_syn.h).
 */
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/tcp.h>
#include <linux/pkt_cls.h>
#include "kw_common.h"
#include "identity.h"
#include "policy.h"
#include "waypoint_syn.h"

#ifndef KW_IPV6_MAX_EXT
#define KW_IPV6_MAX_EXT 4 /* IPv6 extension headers walked to find the TCP header */
#endif

/* What kw_pkt_parse() found. */
#define KW_PKT_OTHER    0 /* not the first packet of a TCP connection: only counted */
#define KW_PKT_TCP_SYN  1 /* a TCP SYN without ACK: a new connection, checked */
#define KW_PKT_UNPARSED 2 /* an IPv6 packet whose transport header was not found within KW_IPV6_MAX_EXT */

/* The fields of a packet the policy needs. */
struct kw_pkt {
	struct kw_addr src; /* source address, IPv4 as ::ffff:a.b.c.d */
	struct kw_addr dst; /* destination address, same form */
	__be16 dport;       /* TCP destination port, network byte order */
};

/* IPv6 fragment header (linux/ipv6.h has no UAPI struct for it). */
struct kw_frag_hdr {
	__u8 nexthdr;
	__u8 reserved;
	__be16 frag_off; /* offset in 8-byte units << 3, then flags */
	__be32 identification;
};

/*
 * Finds the source address and TCP destination port of a packet that starts with an
 * Ethernet header (a veth's tc hooks). Fixed headers are read in place (bounds checked);
 * variable-offset headers (IPv4 options, IPv6 extension headers, TCP) with
 * bpf_skb_load_bytes(), which checks bounds itself.
 */
static __always_inline int kw_pkt_parse(struct __sk_buff *skb, struct kw_pkt *p)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct tcphdr tcp;
	__u32 l4off;
	__u8 nexthdr;
	int i;

	if ((void *)(eth + 1) > data_end)
		return KW_PKT_OTHER;
	if (eth->h_proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = (void *)(eth + 1);

		if ((void *)(ip + 1) > data_end)
			return KW_PKT_OTHER;
		if (ip->protocol != IPPROTO_TCP)
			return KW_PKT_OTHER;
		if (ip->frag_off & bpf_htons(0x1fff))
			return KW_PKT_OTHER; /* a later fragment: no TCP header in it */
		kw_addr_from_v4(&p->src, ip->saddr);
		kw_addr_from_v4(&p->dst, ip->daddr);
		l4off = ETH_HLEN + ip->ihl * 4;
	} else if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = (void *)(eth + 1);

		if ((void *)(ip6 + 1) > data_end)
			return KW_PKT_OTHER;
		__builtin_memcpy(&p->src, &ip6->saddr, sizeof(p->src));
		__builtin_memcpy(&p->dst, &ip6->daddr, sizeof(p->dst));
		nexthdr = ip6->nexthdr;
		l4off = ETH_HLEN + sizeof(*ip6);
#pragma unroll
		for (i = 0; i < KW_IPV6_MAX_EXT; i++) {
			if (nexthdr == IPPROTO_HOPOPTS || nexthdr == IPPROTO_ROUTING || nexthdr == IPPROTO_DSTOPTS) {
				struct ipv6_opt_hdr h;

				if (bpf_skb_load_bytes(skb, l4off, &h, sizeof(h)) < 0)
					return KW_PKT_OTHER;
				nexthdr = h.nexthdr;
				l4off += (h.hdrlen + 1) * 8;
			} else if (nexthdr == IPPROTO_FRAGMENT) {
				struct kw_frag_hdr f;

				if (bpf_skb_load_bytes(skb, l4off, &f, sizeof(f)) < 0)
					return KW_PKT_OTHER;
				if (f.frag_off & bpf_htons(0xfff8))
					return KW_PKT_OTHER; /* a later fragment */
				nexthdr = f.nexthdr;
				l4off += sizeof(f);
			} else {
				break;
			}
		}
		if (nexthdr == IPPROTO_HOPOPTS || nexthdr == IPPROTO_ROUTING || nexthdr == IPPROTO_DSTOPTS ||
		    nexthdr == IPPROTO_FRAGMENT)
			return KW_PKT_UNPARSED;
		if (nexthdr != IPPROTO_TCP)
			return KW_PKT_OTHER;
	} else {
		return KW_PKT_OTHER;
	}
	if (bpf_skb_load_bytes(skb, l4off, &tcp, sizeof(tcp)) < 0)
		return KW_PKT_OTHER;
	if (!tcp.syn || tcp.ack)
		return KW_PKT_OTHER;
	p->dport = tcp.dest;
	return KW_PKT_TCP_SYN;
}

SEC("tc")
int kw_to_pod(struct __sk_buff *skb)
{
	struct kw_lxc_val *lxc;
	struct kw_ep_stats *st;
	struct kw_pkt p = {};
	__u32 ifindex = skb->ifindex, ep_id, src_id;
	int r;

	lxc = bpf_map_lookup_elem(&kw_lxc, &ifindex);
	if (!lxc)
		return TC_ACT_UNSPEC; /* not (or no longer) a pod's veth: leave it alone */
	ep_id = lxc->ep_id;

	switch (kw_pkt_parse(skb, &p)) {
	case KW_PKT_TCP_SYN:
		src_id = kw_ident_of(&p.src, 0);
		if (kw_wp_syn_denied(&p.dst, p.dport, src_id))
			return TC_ACT_SHOT; /* a waypoint's mesh port, from outside the mesh (waypoint_syn.h) */
		r = kw_policy_check(lxc->id, src_id, &p.src, p.dport, KW_IPPROTO_TCP);
		if (r != KW_POL_PASS) {
			kw_ep_count_drop(ep_id, r == KW_POL_DROP_L7 ? KW_DROP_POLICY_L7 : KW_DROP_POLICY);
			return TC_ACT_SHOT;
		}
		break;
	case KW_PKT_UNPARSED:
		/* Fail safe: a pod that a policy protects gets no packet the policy could not check. */
		if (bpf_map_lookup_elem(&kw_pdst, &lxc->id)) {
			kw_ep_count_drop(ep_id, KW_DROP_POLICY);
			return TC_ACT_SHOT;
		}
		break;
	}
	st = kw_ep_stats_of(ep_id);
	if (st) {
		st->pkts_in++;
		st->bytes_in += skb->len;
	}
	return TC_ACT_UNSPEC;
}

SEC("tc")
int kw_from_pod(struct __sk_buff *skb)
{
	struct kw_lxc_val *lxc;
	struct kw_ep_stats *st;
	__u32 ifindex = skb->ifindex;

	lxc = bpf_map_lookup_elem(&kw_lxc, &ifindex);
	if (!lxc)
		return TC_ACT_UNSPEC;
	st = kw_ep_stats_of(lxc->ep_id);
	if (st) {
		st->pkts_out++;
		st->bytes_out += skb->len;
	}
	return TC_ACT_UNSPEC;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
