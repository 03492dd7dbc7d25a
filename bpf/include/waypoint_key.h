/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * waypoint_key.h — a waypoint pod's mesh address, the key of kw_wp_guard (the connect()
 * guard, waypoint_connect.h) and of kw_wp_mesh (the SYN guard, waypoint_syn.h).
 */
#ifndef KW_WAYPOINT_KEY_H
#define KW_WAYPOINT_KEY_H

#include "kw_common.h"

/* 20 bytes. */
struct kw_wp_gkey {
	struct kw_addr addr; /* network order, IPv4 as ::ffff:a.b.c.d */
	__be16 port;         /* network order */
	__u16 pad;           /* zero */
};

#endif /* KW_WAYPOINT_KEY_H */
