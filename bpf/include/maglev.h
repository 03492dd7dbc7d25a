/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * maglev.h — consistent hashing (Maglev, Eisenbud et al., NSDI 2016) for Services
 * annotated kernway.io/lb-algorithm: maglev.
 *
 * The agent computes each backend set's lookup table (agent/datapath/maglev.ts) and
 * stores it whole as one value of kw_maglev under the set's id; the program only
 * indexes it with a hash of the client. A client keeps its backend while the set
 * changes elsewhere, and removing one of N backends moves about 1/N of the clients.
 */
#ifndef KW_MAGLEV_H
#define KW_MAGLEV_H

#include "kw_common.h"

/* Table size M: a prime much larger than the number of backends of a Service
 * (the paper's M >= 100 N keeps the spread within ~1%). The agent reads M from the
 * map's value size, so changing it here is enough. */
#ifndef KW_MAGLEV_M
#define KW_MAGLEV_M 16381
#endif
#ifndef KW_MAX_MAGLEV
#define KW_MAX_MAGLEV 4096         /* live Maglev tables (64 KiB each at M = 16381) */
#endif

/* Value of kw_maglev: entry i holds the backend id for clients hashing to i. */
struct kw_maglev_table {
	__u32 backend[KW_MAGLEV_M];
};

/* Maglev tables: set_id -> table. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, KW_MAX_MAGLEV);
	__uint(map_flags, BPF_F_NO_PREALLOC); /* tables are allocated only for Services that use Maglev */
	__type(key, __u32);
	__type(value, struct kw_maglev_table);
} kw_maglev SEC(".maps");

/* The backend id for a client hash in set set_id, 0 when the table is gone. */
static __always_inline __u32 kw_maglev_pick(__u32 set_id, __u32 client_hash)
{
	struct kw_maglev_table *t = bpf_map_lookup_elem(&kw_maglev, &set_id);
	__u32 i = client_hash % KW_MAGLEV_M;

	if (!t)
		return 0;
	/* Need this check to satisfy the verifier: clang turns the modulo into
	 * div/mul/sub, whose result the verifier cannot bound. The empty asm hides
	 * from clang that i < M already holds, so the check survives. */
	asm volatile("" : "+r"(i));
	if (i >= KW_MAGLEV_M)
		return 0;
	return t->backend[i];
}

#endif /* KW_MAGLEV_H */
