/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * policy.h — L4 authorization: compiled AuthorizationPolicies as verdict tables, and
 * the check of one new connection against them (docs/policy.md). The agent compiles
 * policies (agent/datapath/policy-compile.ts) and mirrors these layouts in
 * agent/datapath/policy-codec.ts; change both together.
 *
 * A destination identity that some policy selects has an entry in kw_pdst: its verdict
 * table and whether an ALLOW policy selects it (then only what an ALLOW rule admits gets
 * through). Identities that no policy selects have no entry: one lookup, then allowed.
 *
 * A table is a set of kw_pol entries {tbl, src identity, CIDR class, port, proto} ->
 * verdict bits, where 0 in src, class or port is a wildcard. The check ORs the bits of
 * at most 8 lookups (each field exact or wildcard; kw_pdst.combos says which of the 8
 * combinations the table holds, so most checks do one to three). Any DENY bit wins;
 * then, for an allow-listed destination, an ALLOW bit is needed.
 *
 * CIDR classes: every ipBlock of every policy is a prefix in kw_cidr. The class of a
 * source address is the value of its longest matching prefix, which stands for the
 * whole chain of prefixes containing the address (all contain the longest one), so a
 * rule on block X matches exactly the classes whose prefix X contains.
 *
 * Tables are never edited in place: the agent writes a new table under a fresh id,
 * switches kw_pdst to it (one atomic update), then deletes the old one. A check that
 * read kw_pdst just before the switch reads it again at the end and starts over once
 * if the table changed under it.
 */
#ifndef KW_POLICY_H
#define KW_POLICY_H

#include "kw_common.h"
#include "identity.h"

#ifndef KW_MAX_POL_DSTS
#define KW_MAX_POL_DSTS 65536     /* destination identities selected by some policy */
#endif
#ifndef KW_MAX_POL_ENTRIES
#define KW_MAX_POL_ENTRIES 262144 /* entries of all live tables, with room for a second table while switching */
#endif
#ifndef KW_MAX_CIDRS
#define KW_MAX_CIDRS 16384        /* distinct ipBlocks of all policies */
#endif

/* kw_pdst_val.flags */
#define KW_PDST_ALLOWLIST (1 << 0) /* an ALLOW policy selects this identity: default deny */

/* kw_pdst_val.combos: bit (src ? 1 : 0) | (class ? 2 : 0) | (port ? 4 : 0) is set when the
 * table holds an entry whose exact (non-wildcard) fields are those. */
#define KW_COMBO_SRC   1
#define KW_COMBO_CLASS 2
#define KW_COMBO_PORT  4
/* The combinations with an exact class (2, 3, 6, 7): the source address's class is needed. */
#define KW_COMBOS_WITH_CLASS ((1 << 2) | (1 << 3) | (1 << 6) | (1 << 7))

/* Verdict bits of kw_pol values. */
#define KW_POL_DENY    (1 << 0) /* a DENY rule matches */
#define KW_POL_ALLOW   (1 << 1) /* an ALLOW rule matches */
#define KW_POL_DENY_L7 (1 << 2) /* the L4 part of a DENY rule whose L7 part cannot be checked (no waypoint): denied, fail safe */
#define KW_POL_HOLD_L7 (1 << 3) /* the L4 part of an ALLOW rule whose L7 part cannot be checked: not admitted (explains the drop) */

/* Result of kw_policy_check(). */
#define KW_POL_PASS   0
#define KW_POL_DROP   1 /* denied by policy */
#define KW_POL_DROP_L7 2 /* denied because an L7 rule cannot be checked here */

/* Value of kw_pdst (key: __u32 destination identity). 8 bytes. */
struct kw_pdst_val {
	__u32 tbl;    /* verdict table id (kw_pol_key.tbl) */
	__u16 flags;  /* KW_PDST_* */
	__u8 combos;  /* KW_COMBO_* combinations present in the table */
	__u8 pad;     /* zero */
};

/* Key of kw_pol. 16 bytes. */
struct kw_pol_key {
	__u32 tbl;    /* verdict table id */
	__u32 src;    /* source identity, 0: any */
	__u32 cls;    /* CIDR class of the source address, 0: any */
	__be16 port;  /* destination port, network byte order, 0: any */
	__u8 proto;   /* IPPROTO_TCP */
	__u8 pad;     /* zero */
};

/* Key of kw_cidr (LPM trie). 20 bytes. */
struct kw_cidr_key {
	__u32 prefixlen;     /* in the 128-bit space: an IPv4 /n is 96 + n */
	struct kw_addr addr; /* network byte order, IPv4 as ::ffff:a.b.c.d */
};

/* Destination identity -> its verdict table and default. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, KW_MAX_POL_DSTS);
	__uint(map_flags, BPF_F_NO_PREALLOC); /* replaced elements are freed after RCU, never reused under a reader */
	__type(key, __u32);
	__type(value, struct kw_pdst_val);
} kw_pdst SEC(".maps");

/* Verdict tables: {tbl, src identity, class, port, proto} -> KW_POL_* bits. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, KW_MAX_POL_ENTRIES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct kw_pol_key);
	__type(value, __u32);
} kw_pol SEC(".maps");

/* ipBlocks of all policies: source prefix -> CIDR class (1..). */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, KW_MAX_CIDRS);
	__uint(map_flags, BPF_F_NO_PREALLOC); /* required for LPM tries */
	__type(key, struct kw_cidr_key);
	__type(value, __u32);
} kw_cidr SEC(".maps");

/* Let traffic from the node's own addresses (identity host) through whatever the policy (1), or not (0). */
const volatile __u8 kw_cfg_allow_host = 1;

static __always_inline __u32 kw_cidr_class(const struct kw_addr *src)
{
	struct kw_cidr_key k = { .prefixlen = 128, .addr = *src };
	__u32 *cls = bpf_map_lookup_elem(&kw_cidr, &k);

	return cls ? *cls : 0;
}

/* ORs the verdict bits of the entries of table tbl matching the query. */
static __always_inline __u32 kw_pol_bits(__u32 tbl, __u8 combos, __u32 src_id, __u32 cls, __be16 port, __u8 proto)
{
	struct kw_pol_key k = { .tbl = tbl, .proto = proto };
	__u32 bits = 0, *v;
	int c;

#pragma unroll
	for (c = 0; c < 8; c++) {
		if (!(combos & (1 << c)))
			continue;
		if ((c & KW_COMBO_CLASS) && cls == 0)
			continue; /* the address is in no ipBlock: class-specific entries cannot match */
		k.src = (c & KW_COMBO_SRC) ? src_id : 0;
		k.cls = (c & KW_COMBO_CLASS) ? cls : 0;
		k.port = (c & KW_COMBO_PORT) ? port : 0;
		v = bpf_map_lookup_elem(&kw_pol, &k);
		if (v)
			bits |= *v;
	}
	return bits;
}

/*
 * The verdict for a new connection from (src_id, src address) to a workload of identity
 * dst_id on port/proto: KW_POL_PASS, KW_POL_DROP or KW_POL_DROP_L7.
 */
static __always_inline int kw_policy_check(__u32 dst_id, __u32 src_id, const struct kw_addr *src, __be16 port, __u8 proto)
{
	struct kw_pdst_val *pd, d;
	__u32 bits = 0, cls = 0;
	int attempt;

	if (src_id == KW_ID_HOST && kw_cfg_allow_host)
		return KW_POL_PASS;
	pd = bpf_map_lookup_elem(&kw_pdst, &dst_id);
	if (!pd)
		return KW_POL_PASS; /* no policy selects the destination */
	d = *pd;
	if (d.combos & KW_COMBOS_WITH_CLASS)
		cls = kw_cidr_class(src);

	for (attempt = 0; attempt < 2; attempt++) {
		bits = kw_pol_bits(d.tbl, d.combos, src_id, cls, port, proto);
		/* The table may have been switched (and the old one deleted) meanwhile: if so, once more. */
		pd = bpf_map_lookup_elem(&kw_pdst, &dst_id);
		if (!pd)
			return KW_POL_PASS;
		if (pd->tbl == d.tbl)
			break;
		d = *pd;
		if (d.combos & KW_COMBOS_WITH_CLASS)
			cls = kw_cidr_class(src);
	}

	if (bits & KW_POL_DENY)
		return KW_POL_DROP;
	if (bits & KW_POL_DENY_L7)
		return KW_POL_DROP_L7;
	if ((d.flags & KW_PDST_ALLOWLIST) && !(bits & KW_POL_ALLOW))
		return (bits & KW_POL_HOLD_L7) ? KW_POL_DROP_L7 : KW_POL_DROP;
	return KW_POL_PASS;
}

#endif /* KW_POLICY_H */
