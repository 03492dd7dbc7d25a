/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * kw_common.h — what every kernway program shares: UAPI includes, the address type
 * used in map keys, return codes of cgroup hooks, and a small hash.
 *
 * Addresses in maps are always 16 bytes: an IPv6 address, or an IPv4 address written
 * as IPv4-mapped IPv6 (::ffff:a.b.c.d). One key layout serves connect4 and connect6,
 * and an IPv6 socket dialling ::ffff:<ClusterIP> finds the IPv4 Service for free.
 */
#ifndef KW_COMMON_H
#define KW_COMMON_H

#include <linux/types.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#ifndef __always_inline
#define __always_inline inline __attribute__((always_inline))
#endif

/* Verdicts of cgroup sock_addr programs. */
#define KW_SOCK_DENY  0
#define KW_SOCK_ALLOW 1

/* errno values (no libc in BPF). */
#define KW_ECONNREFUSED 111

#define KW_IPPROTO_TCP 6
#define KW_IPPROTO_UDP 17

/* An address as stored in every kernway map key and value (network byte order). */
struct kw_addr {
	__be32 w[4];
};

static __always_inline void kw_addr_from_v4(struct kw_addr *a, __be32 ip4)
{
	a->w[0] = 0;
	a->w[1] = 0;
	a->w[2] = bpf_htonl(0x0000ffff);
	a->w[3] = ip4;
}

static __always_inline int kw_addr_is_v4(const struct kw_addr *a)
{
	return a->w[0] == 0 && a->w[1] == 0 && a->w[2] == bpf_htonl(0x0000ffff);
}

static __always_inline int kw_addr_is_zero(const struct kw_addr *a)
{
	return (a->w[0] | a->w[1] | a->w[2] | a->w[3]) == 0;
}

/* murmur3's 32-bit finaliser: spreads every input bit over the output. */
static __always_inline __u32 kw_mix32(__u32 h)
{
	h ^= h >> 16;
	h *= 0x85ebca6b;
	h ^= h >> 13;
	h *= 0xc2b2ae35;
	h ^= h >> 16;
	return h;
}

/* A hash of four words, stable across agent restarts (no per-boot seed). */
static __always_inline __u32 kw_hash4(__u32 a, __u32 b, __u32 c, __u32 d)
{
	__u32 h = 0x9747b28c;

	h = kw_mix32(h ^ a);
	h = kw_mix32(h ^ b);
	h = kw_mix32(h ^ c);
	h = kw_mix32(h ^ d);
	return h;
}

#endif /* KW_COMMON_H */
