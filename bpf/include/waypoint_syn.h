/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * waypoint_syn.h — the SYN guard of the hand-off (docs/waypoint-handoff.md), in the tc
 * program on a local pod's host veth (bpf/tc_pod.bpf.c, kw_to_pod: traffic INTO the pod):
 * a new TCP connection (SYN without ACK) to a waypoint pod's mesh port from an address
 * that is no known pod (identity world in kw_ident) is dropped. Pods and the nodes' own
 * addresses pass: on a kernway node their connect() to the mesh port is refused unless
 * the kernel redirected it itself (waypoint_connect.h), so a PROXY header arriving there
 * was written by a kernel, never forged from outside the mesh.
 *
 * kw_wp_mesh holds every waypoint pod's mesh address (the same keys as kw_wp_guard, in the
 * policy object's maps); its value counts the SYNs dropped for that address.
 */
#ifndef KW_WAYPOINT_SYN_H
#define KW_WAYPOINT_SYN_H

#include "kw_common.h"
#include "identity.h"
#include "waypoint_key.h"

#ifndef KW_WP_MAX_MESH
#define KW_WP_MAX_MESH 4096 /* waypoint pod mesh addresses */
#endif

/* The mesh port every waypoint listens on (the Gateway listener {mesh, 15019, kernway.io/mesh}). */
#define KW_WP_MESH_PORT 15019

/* Waypoint pods' mesh addresses -> SYNs dropped there (from addresses that are no known pod). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, KW_WP_MAX_MESH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct kw_wp_gkey);
	__type(value, __u64);
} kw_wp_mesh SEC(".maps");

/* A SYN to `dst`:`dport` from `src_id`: 1 when it must be dropped. */
static __always_inline int kw_wp_syn_denied(const struct kw_addr *dst, __be16 dport, __u32 src_id)
{
	struct kw_wp_gkey k = {};
	__u64 *drops;

	if (dport != bpf_htons(KW_WP_MESH_PORT) || src_id != KW_ID_WORLD)
		return 0;
	k.addr = *dst;
	k.port = dport;
	drops = bpf_map_lookup_elem(&kw_wp_mesh, &k);
	if (!drops)
		return 0; /* not a waypoint pod's mesh port */
	__sync_fetch_and_add(drops, 1);
	return 1;
}

#endif /* KW_WAYPOINT_SYN_H */
