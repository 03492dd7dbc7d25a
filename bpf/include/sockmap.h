/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * sockmap.h — same-node socket acceleration (docs/sockmap.md): the maps, the key of a
 * socket, the per-socket state and the counters. The agent mirrors these layouts in
 * agent/datapath/sockmap.ts; change both together. A restarted agent reuses the pinned
 * maps, so a layout change needs a map name change too.
 *
 * The rules that keep it from ever losing a byte:
 *  1. A message is redirected only to the peer socket of the same connection, found
 *     under a key that names the connection's incarnation (both initial sequence
 *     numbers), so a stale socket with the same 4-tuple can never be the target.
 *  2. A lookup miss passes the message to the TCP/IP stack (never SK_DROP).
 *  3. One direction of a connection never goes from the stack to redirection while
 *     bytes sent through the stack may still be unread by the peer: the receiving
 *     socket reads redirected bytes before the ones in its TCP receive queue, so that
 *     switch would reorder the stream. A direction whose first message found no peer
 *     (the peer's end not yet established: Merbridge #167) stays on the stack until
 *     the peer has read every byte sent so far (see kw_sm_handover).
 *  4. Entries are never deleted by kernway while their socket lives: the kernel drops
 *     a socket's unread redirected bytes with its map entry. The kernel removes a
 *     socket at close(); a half-closed socket in TCP_CLOSE keeps its entry (and its
 *     unread bytes) until then.
 */
#ifndef KW_SOCKMAP_H
#define KW_SOCKMAP_H

#include "kw_common.h"

#ifndef KW_SM_MAX_SOCKS
#define KW_SM_MAX_SOCKS 65536 /* accelerated sockets (two per connection) */
#endif
#ifndef KW_SM_MAX_PODS
#define KW_SM_MAX_PODS 4096   /* local pod addresses (IPv4 and IPv6 count apart) */
#endif
#ifndef KW_SM_MAX_HANDOVERS
#define KW_SM_MAX_HANDOVERS 16384 /* directions waiting to switch from the stack to redirection */
#endif

#define KW_AF_INET  2
#define KW_AF_INET6 10

/* Key of kw_sm_hash: one socket as it sees its connection. 44 bytes. */
struct kw_sm_key {
	struct kw_addr local;  /* this socket's address (IPv4 as ::ffff:a.b.c.d), network order */
	struct kw_addr remote; /* the peer's address, network order */
	__be16 lport;          /* this socket's port, network order */
	__be16 rport;          /* the peer's port, network order */
	__u32 lseq;            /* this end's initial sequence number + 1 (snd_una when established) */
	__u32 rseq;            /* the peer's initial sequence number + 1 (rcv_nxt when established) */
};

/* kw_sm_sock.state: how this socket's outgoing direction travels. */
#define KW_SM_NEW   0 /* nothing sent since the socket was added */
#define KW_SM_REDIR 1 /* redirected to the peer socket */
#define KW_SM_WAIT  2 /* through the TCP/IP stack, waiting for a handover (rule 3) */
#define KW_SM_STACK 3 /* through the TCP/IP stack for good */

/* Value of kw_sm_sk (socket-local storage of an accelerated socket). 96 bytes. */
struct kw_sm_sock {
	struct kw_sm_key self; /* this socket's own key in kw_sm_hash */
	struct kw_sm_key peer; /* the key under which the peer socket is (would be) in kw_sm_hash */
	__u32 state;           /* KW_SM_* */
	__u32 pad;             /* zero */
};

/* Value of kw_sm_pods: a local pod address. 4 bytes. */
struct kw_sm_pod {
	__u32 flags; /* KW_SM_POD_* */
};
#define KW_SM_POD_OFF (1 << 0) /* the pod or its namespace has kernway.io/sockmap: "off" */

/* Value of kw_sm_cfg[0]: the node-wide switch. 4 bytes. */
struct kw_sm_cfg {
	__u32 enabled; /* 0: no new connection is accelerated; established ones carry on */
};

/*
 * Value of kw_sm_handover: how far the peer has read what the waiting socket sent
 * through the stack. 8 bytes, written as one 64-bit store so that a reader on another
 * CPU sees both fields of the same write.
 */
struct kw_sm_handover {
	__u64 read; /* bit 32 set: valid; bits 0-31: the peer's copied_seq when it last sent */
};
#define KW_SM_HO_VALID (1ULL << 32)
/* A direction waits for a handover only while it has sent less than this through the
 * stack: every sequence number compared then lies within 2^30 of the first, so
 * 32-bit equality cannot be fooled by wrap-around. */
#define KW_SM_HO_MAX_BYTES (1U << 30)

/* Counters, per CPU, summed by the agent at scrape time. Indexes of kw_sm_stats. */
#define KW_SM_STAT_REDIR_MSGS      0 /* messages redirected to the peer socket */
#define KW_SM_STAT_REDIR_BYTES     1 /* bytes redirected */
#define KW_SM_STAT_PASS_NO_PEER    2 /* messages passed because the peer socket was not in kw_sm_hash */
#define KW_SM_STAT_PASS_ORDER      3 /* messages passed to keep order after an earlier pass (rule 3) */
#define KW_SM_STAT_INSERTS         4 /* sockets added to kw_sm_hash */
#define KW_SM_STAT_INSERT_FULL     5 /* sockets not added: kw_sm_hash full */
#define KW_SM_STAT_INSERT_ERR      6 /* sockets not added: another error (storage, duplicate key) */
#define KW_SM_STAT_HANDOVERS       7 /* directions switched from the stack to redirection */
#define KW_SM_STAT_SKIPPED_OFF     8 /* pod-to-pod sockets not added: switched off (node or pod) */
#define KW_SM_STAT_COUNT           9

/* Accelerated sockets: kw_sm_key (as the socket sees itself) -> socket. */
struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__uint(max_entries, KW_SM_MAX_SOCKS);
	__type(key, struct kw_sm_key);
	__type(value, __u64);
} kw_sm_hash SEC(".maps");

/* Per-socket state of accelerated sockets; freed by the kernel with the socket. */
struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct kw_sm_sock);
} kw_sm_sk SEC(".maps");

/* Local pod addresses, written by the agent: only pod-to-pod connections are accelerated. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, KW_SM_MAX_PODS);
	__type(key, struct kw_addr);
	__type(value, struct kw_sm_pod);
} kw_sm_pods SEC(".maps");

/* The node-wide switch, written by the agent. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct kw_sm_cfg);
} kw_sm_cfg SEC(".maps");

/*
 * Directions waiting for a handover, by the key of the socket that must report its
 * reading progress (the waiting socket's peer). LRU: an evicted entry only delays a
 * handover forever, which is safe.
 */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, KW_SM_MAX_HANDOVERS);
	__type(key, struct kw_sm_key);
	__type(value, struct kw_sm_handover);
} kw_sm_handover SEC(".maps");

/*
 * Test only, always 0 in production: the first message of every direction behaves as
 * if the peer socket were not in kw_sm_hash yet, the race of rule 3 made certain, so
 * that the tests can exercise the handover with real traffic.
 */
const volatile __u32 kw_sm_test_first_miss = 0;

/*
 * Test only, always 0 in production: breaks one rule on purpose, so that the tests can
 * show they catch what the rule prevents (test/sockmap/controls.test.ts).
 *   KW_SM_BREAK_ORDER:  a waiting direction switches to redirection as soon as the peer
 *                       is in the map (rule 3 ignored: reorders streams);
 *   KW_SM_BREAK_UNHASH: a socket's entry is deleted when it enters TCP_CLOSE (rule 4
 *                       ignored: drops unread bytes of half-closed sockets).
 */
#define KW_SM_BREAK_ORDER  1
#define KW_SM_BREAK_UNHASH 2
const volatile __u32 kw_sm_test_break = 0;

/* Counters (KW_SM_STAT_*), per CPU. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, KW_SM_STAT_COUNT);
	__type(key, __u32);
	__type(value, __u64);
} kw_sm_stats SEC(".maps");

static __always_inline void kw_sm_count(__u32 idx, __u64 n)
{
	__u64 *v = bpf_map_lookup_elem(&kw_sm_stats, &idx);

	/* Per-CPU value: no other CPU writes it, a plain add is enough. */
	if (v)
		*v += n;
}

/*
 * The two fields of the kernel's struct tcp_sock that the handover reads. CO-RE
 * (preserve_access_index) relocates their offsets against the running kernel's BTF at
 * load time, so no vmlinux.h is needed.
 */
struct tcp_sock {
	__u32 copied_seq; /* first byte the application has not read yet */
	__u32 write_seq;  /* one past the last byte the application queued for sending */
} __attribute__((preserve_access_index));

/*
 * Both addresses of a sock_ops socket as map addresses (IPv4 as ::ffff:a.b.c.d).
 * Verifier workaround: every context field is read once, before the family branch, and
 * pinned with barrier_var(); otherwise clang turns the choice between the IPv4 and
 * IPv6 fields into a choice between two pointers into the context and loads through
 * it, which the verifier rejects ("dereference of modified ctx ptr").
 */
static __always_inline void kw_sm_addrs(struct bpf_sock_ops *skops, __u32 family, struct kw_sm_key *k)
{
	__u32 l4 = skops->local_ip4, r4 = skops->remote_ip4;
	__u32 l0 = skops->local_ip6[0], l1 = skops->local_ip6[1], l2 = skops->local_ip6[2], l3 = skops->local_ip6[3];
	__u32 r0 = skops->remote_ip6[0], r1 = skops->remote_ip6[1], r2 = skops->remote_ip6[2], r3 = skops->remote_ip6[3];

	barrier_var(l4);
	barrier_var(r4);
	barrier_var(l0);
	barrier_var(l1);
	barrier_var(l2);
	barrier_var(l3);
	barrier_var(r0);
	barrier_var(r1);
	barrier_var(r2);
	barrier_var(r3);
	if (family == KW_AF_INET) {
		kw_addr_from_v4(&k->local, l4);
		kw_addr_from_v4(&k->remote, r4);
		return;
	}
	k->local.w[0] = l0;
	k->local.w[1] = l1;
	k->local.w[2] = l2;
	k->local.w[3] = l3;
	k->remote.w[0] = r0;
	k->remote.w[1] = r1;
	k->remote.w[2] = r2;
	k->remote.w[3] = r3;
}

/*
 * The remote port of a sock_ops context in network order. The kernel loads the 16-bit
 * port (network order) into the 32-bit field shifted into the upper half on
 * little-endian machines and into the lower half on big-endian ones; the other half is
 * zero, so or-ing both halves gives the port on either.
 */
static __always_inline __be16 kw_sm_remote_port(__u32 field)
{
	return (__be16)((field >> 16) | (field & 0xffff));
}

/* The key under which the other end of the connection finds itself: both ends swapped. */
static __always_inline void kw_sm_mirror(const struct kw_sm_key *k, struct kw_sm_key *m)
{
	m->local = k->remote;
	m->remote = k->local;
	m->lport = k->rport;
	m->rport = k->lport;
	m->lseq = k->rseq;
	m->rseq = k->lseq;
}

/* 1 when the address is a local pod that did not opt out; 0 when it is not a local pod; -1 when it opted out. */
static __always_inline int kw_sm_pod_ok(const struct kw_addr *a)
{
	struct kw_sm_pod *p = bpf_map_lookup_elem(&kw_sm_pods, a);

	if (!p)
		return 0;
	return (p->flags & KW_SM_POD_OFF) ? -1 : 1;
}

static __always_inline int kw_sm_enabled(void)
{
	__u32 zero = 0;
	struct kw_sm_cfg *cfg = bpf_map_lookup_elem(&kw_sm_cfg, &zero);

	return cfg && cfg->enabled;
}

/*
 * sock_ops, on ACTIVE/PASSIVE_ESTABLISHED: adds the socket to kw_sm_hash when both
 * ends are local pods and acceleration is on for both. Nothing is ever deleted here
 * (rule 4): the kernel removes the socket at close().
 */
static __always_inline void kw_sm_established(struct bpf_sock_ops *skops)
{
	struct kw_sm_key key = {};
	struct kw_sm_sock *st;
	struct bpf_sock *sk;
	struct tcp_sock *tp;
	__u32 family = skops->family;
	int l, r;
	long err;

	if (family != KW_AF_INET && family != KW_AF_INET6)
		return;
	kw_sm_addrs(skops, family, &key);
	l = kw_sm_pod_ok(&key.local);
	r = kw_sm_pod_ok(&key.remote);
	if (l == 0 || r == 0)
		return; /* not pod to pod on this node */
	if (l < 0 || r < 0 || !kw_sm_enabled()) {
		kw_sm_count(KW_SM_STAT_SKIPPED_OFF, 1);
		return;
	}
	key.lport = bpf_htons((__u16)skops->local_port);
	key.rport = kw_sm_remote_port(skops->remote_port);
	key.lseq = skops->snd_una;
	key.rseq = skops->rcv_nxt;

	sk = skops->sk;
	if (!sk)
		return;
	st = bpf_sk_storage_get(&kw_sm_sk, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (!st) {
		kw_sm_count(KW_SM_STAT_INSERT_ERR, 1);
		return;
	}
	st->self = key;
	kw_sm_mirror(&key, &st->peer);
	st->state = KW_SM_NEW;
	st->pad = 0;
	/*
	 * Bytes this socket sent or queued before now went through the stack (TCP Fast Open
	 * data in the SYN, already acknowledged and so counted in snd_una; data queued
	 * behind the handshake): rule 3 applies from the first message.
	 */
	tp = bpf_skc_to_tcp_sock(sk);
	if (!tp || tp->write_seq != key.lseq || skops->data_segs_out != 0)
		st->state = KW_SM_WAIT;

	/* NOEXIST: never replace a live socket, whatever the key says. */
	err = bpf_sock_hash_update(skops, &kw_sm_hash, &key, BPF_NOEXIST);
	if (err) {
		kw_sm_count((err == -7 /* E2BIG */ || err == -12 /* ENOMEM */ || err == -28 /* ENOSPC */)
			    ? KW_SM_STAT_INSERT_FULL : KW_SM_STAT_INSERT_ERR, 1);
		bpf_sk_storage_delete(&kw_sm_sk, sk);
		return;
	}
	kw_sm_count(KW_SM_STAT_INSERTS, 1);
	if (kw_sm_test_break == KW_SM_BREAK_UNHASH)
		bpf_sock_ops_cb_flags_set(skops, BPF_SOCK_OPS_STATE_CB_FLAG);
}

/* Test only (KW_SM_BREAK_UNHASH): what rule 4 forbids, deleting at TCP_CLOSE. */
static __always_inline void kw_sm_state_change(struct bpf_sock_ops *skops)
{
	struct kw_sm_sock *st;
	struct bpf_sock *sk = skops->sk;

	if (kw_sm_test_break != KW_SM_BREAK_UNHASH || skops->args[1] != 7 /* TCP_CLOSE */ || !sk)
		return;
	st = bpf_sk_storage_get(&kw_sm_sk, sk, 0, 0);
	if (st)
		bpf_map_delete_elem(&kw_sm_hash, &st->self);
}

/* A socket reports how far it has read to a peer waiting for a handover (rule 3). */
static __always_inline void kw_sm_report(struct kw_sm_sock *st, struct bpf_sock *sk)
{
	struct kw_sm_handover *ho = bpf_map_lookup_elem(&kw_sm_handover, &st->self);
	struct tcp_sock *tp;

	if (!ho)
		return;
	tp = bpf_skc_to_tcp_sock(sk);
	if (!tp)
		return;
	/* One 64-bit store: the peer sees the valid bit and the value of the same write. */
	ho->read = KW_SM_HO_VALID | tp->copied_seq;
}

/*
 * A waiting direction may switch to redirection once the peer has read every byte
 * this socket ever queued through the stack: the peer's last report equals our
 * write_seq. We hold our socket lock (sk_msg runs under it), so write_seq cannot move,
 * and copied_seq only grows: the report may be old, never wrong.
 */
static __always_inline int kw_sm_handover_ready(struct kw_sm_sock *st, struct bpf_sock *sk)
{
	struct kw_sm_handover *ho = bpf_map_lookup_elem(&kw_sm_handover, &st->peer);
	struct tcp_sock *tp;
	__u64 v;

	if (kw_sm_test_break == KW_SM_BREAK_ORDER)
		return 1;
	if (!ho)
		return 0;
	v = ho->read;
	if (!(v & KW_SM_HO_VALID))
		return 0;
	tp = bpf_skc_to_tcp_sock(sk);
	if (!tp)
		return 0;
	if (tp->write_seq - st->self.lseq >= KW_SM_HO_MAX_BYTES) {
		/* Too much sent to compare 32-bit sequence numbers safely: stay on the stack. */
		st->state = KW_SM_STACK;
		bpf_map_delete_elem(&kw_sm_handover, &st->peer);
		return 0;
	}
	return (__u32)v == tp->write_seq;
}

/* Starts waiting for a handover: the peer will report its reading progress. */
static __always_inline void kw_sm_wait(struct kw_sm_sock *st)
{
	struct kw_sm_handover ho = {};

	st->state = KW_SM_WAIT;
	bpf_map_update_elem(&kw_sm_handover, &st->peer, &ho, BPF_NOEXIST);
}

/* sk_msg verdict: redirect to the peer socket's ingress, or pass to the stack. Never drop. */
static __always_inline int kw_sm_verdict(struct sk_msg_md *msg)
{
	struct bpf_sock *sk = msg->sk;
	struct kw_sm_sock *st;
	__u64 size = msg->size;

	if (!sk)
		return SK_PASS;
	st = bpf_sk_storage_get(&kw_sm_sk, sk, 0, 0);
	if (!st) {
		kw_sm_count(KW_SM_STAT_PASS_NO_PEER, 1);
		return SK_PASS;
	}
	kw_sm_report(st, sk);

	switch (st->state) {
	case KW_SM_NEW: {
		/*
		 * Rule 3 again at the first message: a send that began before the socket was
		 * in the map (a blocking send or TCP Fast Open without a cookie, both waiting
		 * for the handshake) finishes on the stack after sock_ops inserted it. Its bytes
		 * are ahead of this message, so this direction waits for a handover.
		 */
		struct tcp_sock *tp = bpf_skc_to_tcp_sock(sk);

		if (!tp || tp->write_seq != st->self.lseq) {
			kw_sm_wait(st);
			kw_sm_count(KW_SM_STAT_PASS_ORDER, 1);
			return SK_PASS;
		}
		if (kw_sm_test_first_miss) {
			kw_sm_wait(st);
			kw_sm_count(KW_SM_STAT_PASS_NO_PEER, 1);
			return SK_PASS;
		}
	}
		/* fall through */
	case KW_SM_REDIR:
		/* bpf_msg_redirect_hash() looks the peer up; a miss returns SK_DROP and
		 * changes nothing, and we pass instead (rule 2). */
		if (bpf_msg_redirect_hash(msg, &kw_sm_hash, &st->peer, BPF_F_INGRESS) == SK_PASS) {
			st->state = KW_SM_REDIR;
			kw_sm_count(KW_SM_STAT_REDIR_MSGS, 1);
			kw_sm_count(KW_SM_STAT_REDIR_BYTES, size);
			return SK_PASS;
		}
		if (st->state == KW_SM_NEW)
			kw_sm_wait(st);      /* peer not established yet, or not accelerated */
		else
			st->state = KW_SM_STACK; /* peer closed: its key never comes back */
		kw_sm_count(KW_SM_STAT_PASS_NO_PEER, 1);
		return SK_PASS;
	case KW_SM_WAIT:
		if (kw_sm_handover_ready(st, sk)) {
			if (bpf_msg_redirect_hash(msg, &kw_sm_hash, &st->peer, BPF_F_INGRESS) == SK_PASS) {
				st->state = KW_SM_REDIR;
				bpf_map_delete_elem(&kw_sm_handover, &st->peer);
				kw_sm_count(KW_SM_STAT_HANDOVERS, 1);
				kw_sm_count(KW_SM_STAT_REDIR_MSGS, 1);
				kw_sm_count(KW_SM_STAT_REDIR_BYTES, size);
				return SK_PASS;
			}
			st->state = KW_SM_STACK;
			bpf_map_delete_elem(&kw_sm_handover, &st->peer);
			kw_sm_count(KW_SM_STAT_PASS_NO_PEER, 1);
			return SK_PASS;
		}
		kw_sm_count(KW_SM_STAT_PASS_ORDER, 1);
		return SK_PASS;
	default:
		kw_sm_count(KW_SM_STAT_PASS_ORDER, 1);
		return SK_PASS;
	}
}

#endif /* KW_SOCKMAP_H */
