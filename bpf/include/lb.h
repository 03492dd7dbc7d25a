/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * lb.h — Service load balancing at connect() time: the service, slot and backend maps
 * and their structs. The agent mirrors these layouts in agent/datapath/codec.ts; change
 * both together.
 *
 * A Service port ("frontend") is {VIP, port, protocol}. Its backends are held as a
 * *backend set*: slots {set_id, 0..count-1} -> backend id, plus a Maglev table for the
 * same set_id when the Service asks for Maglev. An update never edits a live set: the
 * agent writes the backends and a new set under a fresh set_id, then switches the
 * service entry to it (one atomic map update), then deletes the old set and the
 * backends no longer used. A connect() therefore sees the old set or the new one,
 * never a mix. One that read the old service entry just before the switch may find the
 * old set already deleted; kw_lb_select() then reads the service entry again.
 */
#ifndef KW_LB_H
#define KW_LB_H

#include "kw_common.h"
#include "maglev.h"
#include "affinity.h"

#ifndef KW_MAX_SERVICES
#define KW_MAX_SERVICES 65536      /* frontends {VIP, port, proto}; also bounds svc_id */
#endif
#ifndef KW_MAX_BACKENDS
#define KW_MAX_BACKENDS 1048576    /* backends, counted per frontend */
#endif
#ifndef KW_MAX_SLOTS
#define KW_MAX_SLOTS 1048576       /* slots of all live backend sets, with room for a second set while switching */
#endif

/* kw_svc_val.flags */
#define KW_SVC_F_MAGLEV   (1 << 0) /* pick through the set's Maglev table (hash of the client) */
#define KW_SVC_F_AFFINITY (1 << 1) /* sessionAffinity: ClientIP, see affinity.h */

/* Key of kw_svc: one Service port as a client dials it. 20 bytes. */
struct kw_svc_key {
	struct kw_addr addr; /* ClusterIP (IPv4 as ::ffff:a.b.c.d), network byte order */
	__be16 port;         /* Service port, network byte order */
	__u8 proto;          /* IPPROTO_TCP or IPPROTO_UDP */
	__u8 pad;            /* zero */
};

/* Value of kw_svc. 20 bytes. */
struct kw_svc_val {
	__u32 count;            /* slots in the live set; 0: no usable endpoint, connect() is refused */
	__u32 set_id;           /* live backend set: kw_slot {set_id, i}, kw_maglev {set_id} */
	__u32 svc_id;           /* stable id of this frontend: affinity key, kw_svc_stats index */
	__u16 flags;            /* KW_SVC_F_* */
	__u16 pad;              /* zero */
	__u32 affinity_timeout; /* seconds a ClientIP affinity lasts after its last connection */
};

/* Key of kw_slot. 8 bytes. */
struct kw_slot_key {
	__u32 set_id; /* backend set */
	__u32 slot;   /* 0..count-1 */
};

/* Value of kw_backend: where a connection is sent. 24 bytes. */
struct kw_backend {
	struct kw_addr addr; /* endpoint address (IPv4 as ::ffff:a.b.c.d), network byte order */
	__be16 port;         /* target port, network byte order */
	__u8 proto;          /* IPPROTO_TCP or IPPROTO_UDP (as the frontend) */
	__u8 pad;            /* zero */
	__u32 svc_id;        /* frontend owning this backend id (ids are per frontend, so an affinity to a removed backend misses) */
};

/* Value of kw_svc_stats: counters of one frontend, per CPU. 16 bytes. */
struct kw_svc_stats {
	__u64 balanced; /* connections (and unconnected UDP datagrams) sent to a backend */
	__u64 refused;  /* connect()/sendmsg() refused because the Service had no usable endpoint */
};

/* Service frontends: {VIP, port, proto} -> live backend set and algorithm. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, KW_MAX_SERVICES);
	__uint(map_flags, BPF_F_NO_PREALLOC); /* replaced elements are freed after RCU, never reused under a reader */
	__type(key, struct kw_svc_key);
	__type(value, struct kw_svc_val);
} kw_svc SEC(".maps");

/* Backend slots: {set_id, slot} -> backend id. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, KW_MAX_SLOTS);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct kw_slot_key);
	__type(value, __u32);
} kw_slot SEC(".maps");

/* Backends: id -> address, port. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, KW_MAX_BACKENDS);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u32);
	__type(value, struct kw_backend);
} kw_backend SEC(".maps");

/* Per-frontend counters, indexed by svc_id; read by the agent at scrape time. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, KW_MAX_SERVICES);
	__type(key, __u32);
	__type(value, struct kw_svc_stats);
} kw_svc_stats SEC(".maps");

/* errno given to a connect()/sendmsg() towards a Service without usable endpoint. */
const volatile __u32 kw_cfg_refuse_errno = KW_ECONNREFUSED;
/* Count balanced and refused connections in kw_svc_stats (1) or not (0). */
const volatile __u8 kw_cfg_stats = 1;

static __always_inline void kw_stats_add(__u32 svc_id, int refused)
{
	struct kw_svc_stats *st;

	if (!kw_cfg_stats)
		return;
	st = bpf_map_lookup_elem(&kw_svc_stats, &svc_id);
	if (!st)
		return;
	/* Per-CPU value: no other CPU writes it, a plain increment is enough. */
	if (refused)
		st->refused++;
	else
		st->balanced++;
}

/* Result of kw_lb_select(). */
#define KW_LB_PASS   0 /* not a Service: leave the socket alone */
#define KW_LB_OK     1 /* *be holds the chosen backend */
#define KW_LB_REFUSE 2 /* a Service without usable endpoint */
#define KW_LB_AGAIN  3 /* raced with an update: read the service entry again */

/* One attempt at choosing a backend for key; see kw_lb_select(). */
static __always_inline int kw_lb_try(const struct kw_svc_key *key, const struct kw_client *client,
				     struct kw_backend *be, __u32 *svc_id)
{
	struct kw_svc_val *sv = bpf_map_lookup_elem(&kw_svc, key);
	struct kw_slot_key sk = {};
	struct kw_backend *b;
	__u32 count, set_id, flags, timeout, id = 0;
	__u32 *slot;

	if (!sv)
		return KW_LB_PASS;
	/* Copy the entry once: every later decision uses this one snapshot. */
	count = sv->count;
	set_id = sv->set_id;
	flags = sv->flags;
	timeout = sv->affinity_timeout;
	*svc_id = sv->svc_id;
	if (count == 0)
		return KW_LB_REFUSE;

	if (flags & KW_SVC_F_AFFINITY) {
		id = kw_affinity_get(*svc_id, client, timeout);
		if (id) {
			b = bpf_map_lookup_elem(&kw_backend, &id);
			if (b && b->svc_id == *svc_id) {
				*be = *b;
				kw_affinity_put(*svc_id, client, id);
				return KW_LB_OK;
			}
			id = 0;
		}
	}
	if (flags & KW_SVC_F_MAGLEV) {
		id = kw_maglev_pick(set_id, kw_client_hash(client));
	} else {
		sk.set_id = set_id;
		sk.slot = bpf_get_prandom_u32() % count;
		slot = bpf_map_lookup_elem(&kw_slot, &sk);
		if (slot)
			id = *slot;
	}
	if (!id)
		return KW_LB_AGAIN;
	b = bpf_map_lookup_elem(&kw_backend, &id);
	if (!b)
		return KW_LB_AGAIN;
	*be = *b;
	if (flags & KW_SVC_F_AFFINITY)
		kw_affinity_put(*svc_id, client, id);
	return KW_LB_OK;
}

/*
 * Chooses a backend for a connection to key: the client's affinity if it holds, else
 * Maglev or uniform random. A set deleted between reading the service entry and its
 * slots (an update switched it) is retried once with the new entry; should that miss
 * too, the connection is refused rather than left to hang on a ClusterIP.
 */
static __always_inline int kw_lb_select(const struct kw_svc_key *key, const struct kw_client *client,
					struct kw_backend *be, __u32 *svc_id)
{
	int r = kw_lb_try(key, client, be, svc_id);

	if (r == KW_LB_AGAIN)
		r = kw_lb_try(key, client, be, svc_id);
	if (r == KW_LB_AGAIN)
		r = KW_LB_REFUSE;
	return r;
}

#endif /* KW_LB_H */
