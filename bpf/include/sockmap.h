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
 *  5. A socket receives redirected bytes only if its owner reads it the way the sockmap
 *     receive path (tcp_bpf_recvmsg) serves exactly as tcp_recvmsg would. Only sockets
 *     of non-blocking owners are added (a blocking read of a socket in the map can
 *     return EAGAIN: tcp_bpf waits once): a client's file is non-blocking at connect(),
 *     an accepted socket's listener was non-blocking at listen() (kw_sm_listen; an
 *     unknown listener counts as blocking). A socket becomes a target only after its
 *     owner read it with recvmsg()/read() with MSG_DONTWAIT and none of MSG_PEEK,
 *     MSG_WAITALL, MSG_TRUNC, MSG_OOB, with SO_RCVLOWAT at most 1 (kw_sm_recv); before
 *     that, everything sent to it takes the stack (rule 3 hands the direction over
 *     afterwards). Any other read marks it "kept on the stack" for good, and the
 *     direction to it goes back to the stack (safe by rule 3). A socket read only with
 *     splice(2) is never read with recvmsg, so never a target.
 *  6. A sender stops redirecting while the bytes it redirected that its peer has not
 *     read, plus this message, exceed the peer's receive buffer (at least
 *     KW_SM_UNREAD_MIN) plus its own send buffer: it takes the stack (rule 3 brings it
 *     back), and TCP's flow control makes the writer block as it would without kernway.
 *  7. A socket receives redirected bytes only if its pod opted in (kernway.io/sockmap:
 *     "on" on the pod or its namespace) or is a kernway waypoint (KW_SM_POD_TARGET, set
 *     by the agent). Rule 5 sees how a socket was read, not how it will be: one read with
 *     recvmsg and later spliced from (Go's bufio.Reader, then io.Copy) would never see the
 *     bytes redirected to it before the splice, and this kernel has no hook that runs
 *     before a splice (no kprobes, no fentry, no BPF LSM) nor a way to hand the bytes
 *     back to the TCP receive queue. A socket of another pod is added only when its peer
 *     is a target's (what it sends may then be redirected), and is never a target; two
 *     pods that did not opt in are never accelerated at all.
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
#define KW_SM_MAX_HANDOVERS 65536 /* directions waiting to switch from the stack to redirection */
#endif
#ifndef KW_SM_MAX_LISTENERS
#define KW_SM_MAX_LISTENERS 8192 /* listening sockets whose blocking mode is known (rule 5) */
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
#define KW_SM_HDR_ONLY 4 /* not accelerated: in kw_sm_hash only for the hand-off's PROXY header; removed once it is written (sockmap.bpf.c) */

/* Value of kw_sm_sk (socket-local storage of an accelerated socket). 96 bytes. */
struct kw_sm_sock {
	struct kw_sm_key self; /* this socket's own key in kw_sm_hash */
	struct kw_sm_key peer; /* the key under which the peer socket is (would be) in kw_sm_hash */
	__u32 state;           /* KW_SM_* */
	__u32 pad;             /* zero */
};

/* kw_sm_rx.state: how the owner of a socket reads it (rule 5). */
#define KW_SM_RX_UNPROVEN 0 /* not read yet: not a redirect target */
#define KW_SM_RX_PROVEN   1 /* read only in ways tcp_bpf serves as TCP does: a target */
#define KW_SM_RX_STACK    2 /* read otherwise (blocking, MSG_PEEK, MSG_WAITALL, ...): never a target again */

/* Value of kw_sm_io (socket-local storage of an accelerated socket, next to kw_sm_sk). 8 bytes. */
struct kw_sm_io {
	__u64 redirected; /* bytes this socket redirected to its peer (rule 6) */
};

/*
 * Value of kw_sm_rx: a socket's receive side, written by kw_sm_recv (after each read)
 * and read by the peer's sk_msg program. 24 bytes.
 */
struct kw_sm_rx {
	__u64 consumed; /* bytes redirected to this socket that its owner has read */
	__u32 state;    /* KW_SM_RX_* */
	__u32 rcvbuf;   /* sk_rcvbuf at the last read */
	__u32 seq;      /* copied_seq after the last read */
	__u32 pad;      /* zero */
};

/* Key of kw_sm_listen: a listening port in a network namespace. 16 bytes. */
struct kw_sm_lkey {
	__u64 netns; /* network namespace cookie */
	__u32 port;  /* host order */
	__u32 pad;   /* zero */
};
/* Value of kw_sm_listen. 8 bytes (64-bit for the atomic or). */
struct kw_sm_listener {
	__u64 flags; /* KW_SM_L_*: what the listening sockets on that port were at listen() */
};
#define KW_SM_L_NONBLOCK (1 << 0)
#define KW_SM_L_BLOCK    (1 << 1)

/* Value of kw_sm_pods: a local pod address. 4 bytes. */
struct kw_sm_pod {
	__u32 flags; /* KW_SM_POD_* */
};
#define KW_SM_POD_OFF    (1 << 0) /* the pod or its namespace has kernway.io/sockmap: "off" */
#define KW_SM_POD_TARGET (1 << 1) /* its sockets may receive redirected bytes (rule 7): kernway.io/sockmap: "on", or a kernway waypoint */

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
/* Rule 6: a peer may hold at least this many unread redirected bytes (TCP lets a receive
 * buffer grow to tcp_rmem[2], 6 MiB by default, for a fast stream). */
#define KW_SM_UNREAD_MIN (4U << 20)

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
#define KW_SM_STAT_SKIPPED_BLOCK   9 /* pod-to-pod sockets not added: blocking owner, or listener unknown (rule 5) */
#define KW_SM_STAT_PASS_RX        10 /* messages passed: the peer is not (yet) a target (rule 5) */
#define KW_SM_STAT_PASS_FULL      11 /* messages passed: the peer's unread redirected bytes fill its buffer (rule 6) */
#define KW_SM_STAT_RX_PROVEN      12 /* sockets that became redirect targets (rule 5) */
#define KW_SM_STAT_RX_STACK       13 /* sockets kept on the stack for the way they are read (rule 5) */
#define KW_SM_STAT_SKIPPED_PLAIN  14 /* pod-to-pod sockets not added: neither pod opted in (rule 7) */
#define KW_SM_STAT_RX_NOT_OPTED   15 /* sockets added but never targets: their pod did not opt in (rule 7) */
#define KW_SM_STAT_HDR_ONLY_OUT   16 /* header-only sockets of the hand-off taken out of kw_sm_hash once their header was written */
#define KW_SM_STAT_COUNT          17

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

/* Bytes each accelerated socket redirected (rule 6). */
struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct kw_sm_io);
} kw_sm_io SEC(".maps");

/*
 * Receive side of accelerated sockets by their key (rules 5 and 6). LRU: a missing
 * entry reads as "not a target", which is safe.
 */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, KW_SM_MAX_SOCKS);
	__type(key, struct kw_sm_key);
	__type(value, struct kw_sm_rx);
} kw_sm_rx SEC(".maps");

/*
 * Accelerated sockets by socket cookie -> their key, for kw_sm_recv (a raw tracepoint
 * gets the kernel's struct sock, not its storage). Cookies are never reused. LRU: a
 * missing entry leaves the socket's reads unseen, so it never becomes a target.
 */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, KW_SM_MAX_SOCKS);
	__type(key, __u64);
	__type(value, struct kw_sm_key);
} kw_sm_ck SEC(".maps");

/* Blocking mode of listening sockets at listen(), for the sockets they accept (rule 5). LRU: missing reads as blocking. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, KW_SM_MAX_LISTENERS);
	__type(key, struct kw_sm_lkey);
	__type(value, struct kw_sm_listener);
} kw_sm_listen SEC(".maps");

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
 *                       is in the map (rule 3 ignored, and rule 5 with it: reorders streams);
 *   KW_SM_BREAK_UNHASH: a socket's entry is deleted when it enters TCP_CLOSE (rule 4
 *                       ignored: drops unread bytes of half-closed sockets);
 *   KW_SM_BREAK_RX:     rules 5 and 6 ignored (what kernway did before them: splice(2)
 *                       readers miss bytes, MSG_WAITALL returns early, ...).
 */
#define KW_SM_BREAK_ORDER  1
#define KW_SM_BREAK_UNHASH 2
#define KW_SM_BREAK_RX     3 /* rules 5 and 6 ignored: every socket is added and is a target at once */
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

/* The fields of struct sock, struct socket and struct file that rules 5 and 6 read (CO-RE). */
struct file {
	unsigned int f_flags;
} __attribute__((preserve_access_index));
struct socket {
	struct file *file;
} __attribute__((preserve_access_index));
typedef struct {
	__s64 counter;
} atomic64_t;
struct sock_common {
	atomic64_t skc_cookie;
} __attribute__((preserve_access_index));
struct sock {
	struct sock_common __sk_common;
	struct socket *sk_socket;
	int sk_rcvbuf;
	int sk_sndbuf;
	int sk_rcvlowat;
} __attribute__((preserve_access_index));

#define KW_O_NONBLOCK     04000      /* x86, arm64 */
#define KW_MSG_PEEK       0x2
#define KW_MSG_DONTWAIT   0x40
#define KW_MSG_ERRQUEUE   0x2000
#define KW_MSG_NOSIGNAL   0x4000
#define KW_MSG_CMSG_CLOEXEC 0x40000000
#define KW_MSG_CMSG_COMPAT  0x80000000
/* The recvmsg flags tcp_bpf_recvmsg serves as tcp_recvmsg does (with MSG_DONTWAIT set). */
#define KW_SM_RX_FLAGS_OK (KW_MSG_DONTWAIT | KW_MSG_NOSIGNAL | KW_MSG_CMSG_CLOEXEC | KW_MSG_CMSG_COMPAT)

/* 1: the socket's file is non-blocking; 0: blocking; -1: no file (not accepted yet). */
static __always_inline int kw_sm_nonblocking(struct sock *s)
{
	struct socket *so = s->sk_socket;
	struct file *f;

	if (!so)
		return -1;
	f = so->file;
	if (!f)
		return -1;
	return (f->f_flags & KW_O_NONBLOCK) ? 1 : 0;
}

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

/*
 * 1 when the address is a local pod that did not opt out; 0 when it is not a local pod;
 * -1 when it opted out. *flags gets the pod's KW_SM_POD_* flags.
 */
static __always_inline int kw_sm_pod_ok(const struct kw_addr *a, __u32 *flags)
{
	struct kw_sm_pod *p = bpf_map_lookup_elem(&kw_sm_pods, a);

	if (!p)
		return 0;
	if (flags)
		*flags = p->flags;
	return (p->flags & KW_SM_POD_OFF) ? -1 : 1;
}

static __always_inline int kw_sm_enabled(void)
{
	__u32 zero = 0;
	struct kw_sm_cfg *cfg = bpf_map_lookup_elem(&kw_sm_cfg, &zero);

	return cfg && cfg->enabled;
}

/* The listening port of a sock_ops socket: its network namespace and local port. */
static __always_inline void kw_sm_listen_key(struct bpf_sock_ops *skops, struct kw_sm_lkey *k)
{
	k->netns = bpf_get_netns_cookie(skops);
	k->port = skops->local_port;
	k->pad = 0;
}

/* sock_ops, on TCP_LISTEN: remembers whether the listening socket is non-blocking (rule 5). */
static __always_inline void kw_sm_listening(struct bpf_sock_ops *skops)
{
	struct kw_sm_lkey k;
	struct kw_sm_listener *l, nl = {};
	struct bpf_sock *sk = skops->sk;
	struct tcp_sock *tp;
	__u64 flag;

	if (!sk)
		return;
	tp = bpf_skc_to_tcp_sock(sk);
	if (!tp)
		return;
	flag = kw_sm_nonblocking((struct sock *)tp) == 1 ? KW_SM_L_NONBLOCK : KW_SM_L_BLOCK;
	kw_sm_listen_key(skops, &k);
	/* Sticky: once a blocking listener used the port, its accepted sockets stay out. */
	l = bpf_map_lookup_elem(&kw_sm_listen, &k);
	if (l) {
		__sync_fetch_and_or(&l->flags, flag);
		return;
	}
	nl.flags = flag;
	if (bpf_map_update_elem(&kw_sm_listen, &k, &nl, BPF_NOEXIST)) {
		l = bpf_map_lookup_elem(&kw_sm_listen, &k);
		if (l)
			__sync_fetch_and_or(&l->flags, flag);
	}
}

/*
 * Rule 5, at establishment: 1 when the socket's owner does not block in reads. A client
 * socket's file is non-blocking at connect(); an accepted socket has no file yet, so its
 * listener's mode at listen() stands for it (unknown listener: blocking).
 */
static __always_inline int kw_sm_owner_nonblocking(struct bpf_sock_ops *skops, struct sock *s)
{
	struct kw_sm_lkey k;
	struct kw_sm_listener *l;

	if (kw_sm_test_break == KW_SM_BREAK_RX)
		return 1;
	if (skops->op == BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB)
		return kw_sm_nonblocking(s) == 1;
	kw_sm_listen_key(skops, &k);
	l = bpf_map_lookup_elem(&kw_sm_listen, &k);
	return l && l->flags == KW_SM_L_NONBLOCK;
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
	struct kw_sm_io *io;
	struct bpf_sock *sk;
	struct tcp_sock *tp;
	__u32 family = skops->family, lflags = 0, rflags = 0;
	int l, r;
	long err;

	if (family != KW_AF_INET && family != KW_AF_INET6)
		return;
	kw_sm_addrs(skops, family, &key);
	l = kw_sm_pod_ok(&key.local, &lflags);
	r = kw_sm_pod_ok(&key.remote, &rflags);
	if (l == 0 || r == 0)
		return; /* not pod to pod on this node */
	if (l < 0 || r < 0 || !kw_sm_enabled()) {
		kw_sm_count(KW_SM_STAT_SKIPPED_OFF, 1);
		return;
	}
	/*
	 * Rule 7: nothing could ever be redirected between two pods that did not opt in, so
	 * their sockets stay out of the map altogether (tcp_bpf never sees them).
	 */
	if (!((lflags | rflags) & KW_SM_POD_TARGET) && kw_sm_test_break != KW_SM_BREAK_RX) {
		kw_sm_count(KW_SM_STAT_SKIPPED_PLAIN, 1);
		return;
	}
	key.lport = bpf_htons((__u16)skops->local_port);
	key.rport = kw_sm_remote_port(skops->remote_port);
	key.lseq = skops->snd_una;
	key.rseq = skops->rcv_nxt;

	sk = skops->sk;
	if (!sk)
		return;
	tp = bpf_skc_to_tcp_sock(sk);
	if (!tp) {
		kw_sm_count(KW_SM_STAT_INSERT_ERR, 1);
		return;
	}
	/* Rule 5: a blocking owner's reads are never served by tcp_bpf_recvmsg. */
	if (!kw_sm_owner_nonblocking(skops, (struct sock *)tp)) {
		kw_sm_count(KW_SM_STAT_SKIPPED_BLOCK, 1);
		return;
	}
	io = bpf_sk_storage_get(&kw_sm_io, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	st = bpf_sk_storage_get(&kw_sm_sk, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (!st || !io) {
		bpf_sk_storage_delete(&kw_sm_io, sk);
		bpf_sk_storage_delete(&kw_sm_sk, sk);
		kw_sm_count(KW_SM_STAT_INSERT_ERR, 1);
		return;
	}
	io->redirected = 0;
	st->self = key;
	kw_sm_mirror(&key, &st->peer);
	st->state = KW_SM_NEW;
	st->pad = 0;
	/*
	 * Bytes this socket sent or queued before now went through the stack (TCP Fast Open
	 * data in the SYN, already acknowledged and so counted in snd_una; data queued
	 * behind the handshake): rule 3 applies from the first message.
	 */
	if (tp->write_seq != key.lseq || skops->data_segs_out != 0)
		st->state = KW_SM_WAIT;

	/* NOEXIST: never replace a live socket, whatever the key says. */
	err = bpf_sock_hash_update(skops, &kw_sm_hash, &key, BPF_NOEXIST);
	if (err) {
		kw_sm_count((err == -7 /* E2BIG */ || err == -12 /* ENOMEM */ || err == -28 /* ENOSPC */)
			    ? KW_SM_STAT_INSERT_FULL : KW_SM_STAT_INSERT_ERR, 1);
		bpf_sk_storage_delete(&kw_sm_sk, sk);
		bpf_sk_storage_delete(&kw_sm_io, sk);
		return;
	}
	kw_sm_count(KW_SM_STAT_INSERTS, 1);
	{
		/*
		 * Not a target until its owner has read it (rule 5), and never unless its pod
		 * opted in (rule 7). copied_seq is rseq now.
		 */
		struct kw_sm_rx rx = { .consumed = 0, .state = KW_SM_RX_UNPROVEN, .rcvbuf = 0, .seq = key.rseq, .pad = 0 };
		__u64 cookie = bpf_get_socket_cookie(skops);

		if (!(lflags & KW_SM_POD_TARGET) && kw_sm_test_break != KW_SM_BREAK_RX) {
			rx.state = KW_SM_RX_STACK;
			kw_sm_count(KW_SM_STAT_RX_NOT_OPTED, 1);
		}

		bpf_map_update_elem(&kw_sm_rx, &key, &rx, BPF_ANY);
		bpf_map_update_elem(&kw_sm_ck, &cookie, &key, BPF_ANY);
	}
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

/*
 * Rules 5 and 6 for one message of `size` bytes: 0 when the peer is a redirect target
 * with room for it, else the KW_SM_STAT_PASS_* reason to take the stack; *never is set
 * when the peer will never be a target again.
 */
static __always_inline __u32 kw_sm_target_check(struct kw_sm_sock *st, struct kw_sm_io *io, struct bpf_sock *sk,
						__u64 size, int *never)
{
	struct kw_sm_rx *rx;
	struct tcp_sock *tp;
	__u64 unread, limit;

	/* The controls of rule 3 skip rule 5 too: it narrows the window rule 3 closes. */
	if (kw_sm_test_break == KW_SM_BREAK_RX || kw_sm_test_break == KW_SM_BREAK_ORDER)
		return 0;
	rx = bpf_map_lookup_elem(&kw_sm_rx, &st->peer);
	if (!rx || rx->state == KW_SM_RX_UNPROVEN)
		return KW_SM_STAT_PASS_RX;
	if (rx->state != KW_SM_RX_PROVEN) {
		*never = 1;
		return KW_SM_STAT_PASS_RX;
	}
	/* consumed only grows and may be old: the estimate of unread bytes errs high, never low. */
	unread = io->redirected - rx->consumed;
	limit = rx->rcvbuf > KW_SM_UNREAD_MIN ? rx->rcvbuf : KW_SM_UNREAD_MIN;
	tp = bpf_skc_to_tcp_sock(sk);
	if (tp)
		limit += (__u32)((struct sock *)tp)->sk_sndbuf;
	if (unread + size > limit)
		return KW_SM_STAT_PASS_FULL;
	return 0;
}

static __always_inline int kw_sm_redirect(struct sk_msg_md *msg, struct kw_sm_sock *st, struct kw_sm_io *io, __u64 size)
{
	/* bpf_msg_redirect_hash() looks the peer up; a miss returns SK_DROP and changes
	 * nothing, and the caller passes instead (rule 2). */
	if (bpf_msg_redirect_hash(msg, &kw_sm_hash, &st->peer, BPF_F_INGRESS) != SK_PASS)
		return 0;
	io->redirected += size;
	kw_sm_count(KW_SM_STAT_REDIR_MSGS, 1);
	kw_sm_count(KW_SM_STAT_REDIR_BYTES, size);
	return 1;
}

/* sk_msg verdict: redirect to the peer socket's ingress, or pass to the stack. Never drop. */
static __always_inline int kw_sm_verdict(struct sk_msg_md *msg)
{
	struct bpf_sock *sk = msg->sk;
	struct kw_sm_sock *st;
	struct kw_sm_io *io;
	__u64 size = msg->size;
	__u32 why;
	int never = 0;

	if (!sk)
		return SK_PASS;
	st = bpf_sk_storage_get(&kw_sm_sk, sk, 0, 0);
	io = bpf_sk_storage_get(&kw_sm_io, sk, 0, 0);
	if (!st || !io) {
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
		why = kw_sm_target_check(st, io, sk, size, &never);
		if (why) {
			/* Redirection to the stack is always safe (rule 3); back needs a handover. */
			if (never)
				st->state = KW_SM_STACK;
			else
				kw_sm_wait(st);
			kw_sm_count(why, 1);
			return SK_PASS;
		}
		if (kw_sm_redirect(msg, st, io, size)) {
			st->state = KW_SM_REDIR;
			return SK_PASS;
		}
		if (st->state == KW_SM_NEW)
			kw_sm_wait(st);      /* peer not established yet, or not accelerated */
		else
			st->state = KW_SM_STACK; /* peer closed: its key never comes back */
		kw_sm_count(KW_SM_STAT_PASS_NO_PEER, 1);
		return SK_PASS;
	case KW_SM_WAIT:
		why = kw_sm_target_check(st, io, sk, size, &never);
		if (why) {
			if (never) {
				st->state = KW_SM_STACK;
				bpf_map_delete_elem(&kw_sm_handover, &st->peer);
			}
			kw_sm_count(why, 1);
			return SK_PASS;
		}
		if (kw_sm_handover_ready(st, sk)) {
			bpf_map_delete_elem(&kw_sm_handover, &st->peer);
			if (kw_sm_redirect(msg, st, io, size)) {
				st->state = KW_SM_REDIR;
				kw_sm_count(KW_SM_STAT_HANDOVERS, 1);
				return SK_PASS;
			}
			st->state = KW_SM_STACK;
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

/*
 * kw_sm_recv, the receive side (rules 5 and 6): raw tracepoint sock:sock_recv_length,
 * which sock_recvmsg() fires after every recvmsg()/recvfrom()/read() of a socket with
 * the flags of the call (MSG_DONTWAIT included when the file is non-blocking) and what
 * it returned. Accelerated sockets are found by cookie; every other socket costs one
 * failed lookup. It runs after the read, which is early enough: a socket is not a
 * target before its first read.
 */
static __always_inline void kw_sm_recv(struct sock *sk, int ret, int flags)
{
	struct kw_sm_key *self;
	struct kw_sm_rx *rx;
	struct kw_sm_handover *ho;
	struct tcp_sock *tp = (struct tcp_sock *)sk;
	__u64 cookie;
	__u32 seq, stack;
	int lowat, good;

	cookie = BPF_CORE_READ(sk, __sk_common.skc_cookie.counter);
	if (!cookie)
		return;
	self = bpf_map_lookup_elem(&kw_sm_ck, &cookie);
	if (!self)
		return;
	if (flags & KW_MSG_ERRQUEUE)
		return;
	rx = bpf_map_lookup_elem(&kw_sm_rx, self);
	if (!rx)
		return; /* evicted: stays not a target */
	seq = BPF_CORE_READ(tp, copied_seq);
	lowat = BPF_CORE_READ(sk, sk_rcvlowat);
	if (ret > 0 && !(flags & KW_MSG_PEEK)) {
		/* What did not come from the TCP receive queue came from the redirected queue. */
		stack = seq - rx->seq;
		if (stack < (__u32)ret)
			rx->consumed += (__u32)ret - stack;
	}
	rx->seq = seq;
	rx->rcvbuf = (__u32)BPF_CORE_READ(sk, sk_rcvbuf);
	good = (flags & KW_MSG_DONTWAIT) && !(flags & ~KW_SM_RX_FLAGS_OK) && lowat <= 1;
	if (!good && rx->state != KW_SM_RX_STACK) {
		rx->state = KW_SM_RX_STACK;
		kw_sm_count(KW_SM_STAT_RX_STACK, 1);
	} else if (good && rx->state == KW_SM_RX_UNPROVEN) {
		rx->state = KW_SM_RX_PROVEN;
		kw_sm_count(KW_SM_STAT_RX_PROVEN, 1);
	}
	/* Rule 3: tell a peer waiting for a handover how far this socket has read. */
	ho = bpf_map_lookup_elem(&kw_sm_handover, self);
	if (ho)
		ho->read = KW_SM_HO_VALID | seq;
}

#endif /* KW_SOCKMAP_H */
