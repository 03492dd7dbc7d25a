// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * L4 connection metrics from the kernel, without a proxy (docs/metrics.md). A sock_ops
 * program of its own, attached to the agent's cgroup beside kw_sm_sockops (cgroup
 * links run every program attached): at ACTIVE/PASSIVE_ESTABLISHED it remembers when
 * the connection started and the address the client dialled (the ClusterIP, from the
 * balancer's kw_revnat), counts the connection in a per-CPU counter keyed by what
 * decides its labels (kw_cm_opened: no record, no lock) and asks the kernel for
 * state-change callbacks; when the socket reaches TCP_CLOSE it writes one "closed"
 * record with bytes each way, duration, smoothed RTT, retransmissions and whether it
 * was reset. Records go to a ring buffer the agent drains; the agent reads the opened
 * counters when /metrics is scraped (agent/datapath/conn-metrics.ts).
 *
 * Bytes the sockmap moved past the TCP stack are not in TCP's bytes_acked and
 * bytes_received: they are counted where the redirect happens (kw_sm_io.redirected,
 * the sender's redirected bytes; kw_sm_rx.consumed, the redirected bytes the receiver
 * read) and added here. Those maps are the accelerator's, shared by pin; this program
 * only reads them and never changes anything the accelerator relies on. kw_sm_io is
 * socket storage, which only a program given the socket (sock_ops) can read: that is
 * why the close is seen through sock_ops state callbacks and not a raw tracepoint
 * (this kernel has no BTF tracing programs, docs/metrics.md).
 */
#include "kw_common.h"
#include <bpf/bpf_core_read.h>
#include "revnat.h"
#include "sockmap.h"

#ifndef KW_CM_RINGBUF_BYTES
#define KW_CM_RINGBUF_BYTES (2 << 20)
#endif

#ifndef KW_CM_OPENED_MAX
#define KW_CM_OPENED_MAX 16384
#endif

#define KW_CM_EV_OPEN  1 /* written by earlier versions only: opens are counted in kw_cm_opened */
#define KW_CM_EV_CLOSE 2
#define KW_CM_ROLE_CLIENT 1 /* the socket connect()ed (reporter "source") */
#define KW_CM_ROLE_SERVER 2 /* the socket was accepted (reporter "destination") */

#define KW_CM_STAT_LOST    0 /* records not written: the ring buffer was full */
#define KW_CM_STAT_NOSTORE 1 /* connections not followed: no socket storage */
#define KW_CM_STAT_OPEN_FULL_CLIENT 2 /* client connections opened whose key found kw_cm_opened full */
#define KW_CM_STAT_OPEN_FULL_SERVER 3 /* the same for accepted connections */
#define KW_CM_STAT_COUNT   4

/* TCP states (include/net/tcp_states.h). */
#define KW_TCP_ESTABLISHED 1
#define KW_TCP_CLOSE       7
#define KW_TCP_CLOSE_WAIT  8
#define KW_ECONNRESET 104
#define KW_EPIPE      32

/* Per followed socket (socket-local storage, freed with the socket). 40 bytes. */
struct kw_cm_sock {
	__u64 start_ns;       /* bpf_ktime_get_ns() at establishment */
	struct kw_addr orig;  /* the address the client dialled (ClusterIP), or the peer's */
	__be16 oport;         /* its port, network order */
	__u8 role;            /* KW_CM_ROLE_* */
	__u8 pad[5];          /* zero */
};

/*
 * Key of kw_cm_opened: what decides a connection's labels (agent/metrics/tcp.ts), as
 * the closed record holds it. 56 bytes.
 */
struct kw_cm_okey {
	struct kw_addr local;  /* this socket's address */
	struct kw_addr remote; /* the peer's */
	struct kw_addr orig;   /* what the client dialled; the server's own address for role server */
	__be16 oport;          /* its port (the server's own port for role server), network order */
	__u8 role;             /* KW_CM_ROLE_* */
	__u8 pad[5];           /* zero */
};

/* A ring buffer record (closed connections). 120 bytes. */
struct kw_cm_event {
	__u64 cookie;         /* socket cookie: pairs an opened record with its closed one */
	__u64 duration_ns;    /* closed: time since establishment */
	__u64 bytes_sent;     /* closed: acknowledged by the peer, plus redirected to it */
	__u64 bytes_received; /* closed: received through TCP, plus redirected to this socket and read */
	__u64 redir_sent;     /* closed: the part of bytes_sent the sockmap carried */
	__u64 redir_received; /* closed: the part of bytes_received the sockmap carried */
	struct kw_addr local; /* this socket's address (IPv4 as ::ffff:a.b.c.d) */
	struct kw_addr remote;/* the peer's address (a backend, for a balanced client) */
	struct kw_addr orig;  /* what the client dialled (ClusterIP); the server's own address for role server */
	__be16 lport;         /* network order */
	__be16 rport;
	__be16 oport;
	__u8 event;           /* KW_CM_EV_* */
	__u8 role;            /* KW_CM_ROLE_* */
	__u32 srtt_us;        /* closed: smoothed RTT, microseconds */
	__u32 retrans;        /* closed: segments retransmitted */
	__u8 reset;           /* closed: 1 when the connection ended with a reset (sent or received) */
	__u8 pad[3];          /* zero */
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, KW_CM_RINGBUF_BYTES);
} kw_cm_events SEC(".maps");

/*
 * Connections opened, per CPU, by kw_cm_okey. The agent sums the CPUs at a scrape and
 * counts what grew since its last read; it deletes keys that stopped growing long ago.
 * A key that finds the map full is counted in kw_cm_stats instead (the overflow series).
 */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, KW_CM_OPENED_MAX);
	__type(key, struct kw_cm_okey);
	__type(value, __u64);
} kw_cm_opened SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct kw_cm_sock);
} kw_cm_sk SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, KW_CM_STAT_COUNT);
	__type(key, __u32);
	__type(value, __u64);
} kw_cm_stats SEC(".maps");

/* sk_err, read with CO-RE (the struct sock of sockmap.h does not name it). */
struct sock___kwcm {
	int sk_err;
} __attribute__((preserve_access_index));

static __always_inline void kw_cm_count(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&kw_cm_stats, &idx);

	if (v)
		*v += 1;
}

static __always_inline int kw_cm_loopback(const struct kw_addr *a)
{
	if (kw_addr_is_v4(a))
		return (bpf_ntohl(a->w[3]) >> 24) == 127;
	return a->w[0] == 0 && a->w[1] == 0 && a->w[2] == 0 && a->w[3] == bpf_htonl(1);
}

static __always_inline void kw_cm_addrs(struct bpf_sock_ops *skops, struct kw_cm_event *e)
{
	struct kw_sm_key k = {};

	kw_sm_addrs(skops, skops->family, &k);
	e->local = k.local;
	e->remote = k.remote;
	e->lport = bpf_htons((__u16)skops->local_port);
	e->rport = kw_sm_remote_port(skops->remote_port);
}

/* One more connection opened under its key: a per-CPU add, an insert for a new key. */
static __always_inline void kw_cm_count_open(const struct kw_addr *local, const struct kw_addr *remote,
					     const struct kw_cm_sock *st, __u8 role)
{
	struct kw_cm_okey key = {};
	__u64 one = 1, *v;

	key.local = *local;
	key.remote = *remote;
	key.orig = st->orig;
	key.oport = st->oport;
	key.role = role;
	v = bpf_map_lookup_elem(&kw_cm_opened, &key);
	if (v) {
		__sync_fetch_and_add(v, 1);
		return;
	}
	if (bpf_map_update_elem(&kw_cm_opened, &key, &one, BPF_NOEXIST) == 0)
		return;
	/* Another CPU inserted it meanwhile, or the map is full. */
	v = bpf_map_lookup_elem(&kw_cm_opened, &key);
	if (v)
		__sync_fetch_and_add(v, 1);
	else
		kw_cm_count(role == KW_CM_ROLE_CLIENT ? KW_CM_STAT_OPEN_FULL_CLIENT : KW_CM_STAT_OPEN_FULL_SERVER);
}

static __always_inline void kw_cm_established(struct bpf_sock_ops *skops, __u8 role)
{
	struct kw_cm_sock *st;
	struct bpf_sock *sk = skops->sk;
	__u32 family = skops->family;
	struct kw_sm_key k = {};

	if ((family != KW_AF_INET && family != KW_AF_INET6) || !sk)
		return;
	kw_sm_addrs(skops, family, &k);
	if (kw_cm_loopback(&k.remote))
		return; /* inside a pod's own network namespace: not traffic between workloads */
	st = bpf_sk_storage_get(&kw_cm_sk, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (!st) {
		kw_cm_count(KW_CM_STAT_NOSTORE);
		return;
	}
	st->start_ns = bpf_ktime_get_ns();
	st->role = role;
	st->orig = k.remote;
	st->oport = kw_sm_remote_port(skops->remote_port);
	if (role == KW_CM_ROLE_CLIENT) {
		/* The balancer's reverse translation: {cookie, backend} -> what was dialled. */
		struct kw_revnat_key rk = { .cookie = bpf_get_socket_cookie(skops), .addr = k.remote, .port = st->oport };
		struct kw_revnat_val *rv = bpf_map_lookup_elem(&kw_revnat, &rk);

		if (rv) {
			st->orig = rv->addr;
			st->oport = rv->port;
		}
	} else {
		st->orig = k.local;
		st->oport = bpf_htons((__u16)skops->local_port);
	}
	/* Keep the callbacks other programs asked for. */
	bpf_sock_ops_cb_flags_set(skops, skops->bpf_sock_ops_cb_flags | BPF_SOCK_OPS_STATE_CB_FLAG);
	kw_cm_count_open(&k.local, &k.remote, st, role);
}

static __always_inline void kw_cm_closed(struct bpf_sock_ops *skops)
{
	struct bpf_sock *sk = skops->sk;
	struct kw_cm_sock *st;
	struct kw_cm_event *e;
	struct kw_sm_sock *sm;
	struct kw_sm_io *io;
	struct tcp_sock *tp;
	__u32 old = skops->args[0];
	__u64 redir_in = 0, redir_out = 0;
	int err = 0;

	if (!sk)
		return;
	st = bpf_sk_storage_get(&kw_cm_sk, sk, 0, 0);
	if (!st || st->role == 0)
		return;
	/* Bytes the sockmap carried (both zero for a socket it never accelerated). */
	io = bpf_sk_storage_get(&kw_sm_io, sk, 0, 0);
	if (io)
		redir_out = io->redirected;
	sm = bpf_sk_storage_get(&kw_sm_sk, sk, 0, 0);
	if (sm) {
		struct kw_sm_rx *rx = bpf_map_lookup_elem(&kw_sm_rx, &sm->self);

		if (rx)
			redir_in = rx->consumed;
	}
	tp = bpf_skc_to_tcp_sock(sk);
	if (tp)
		err = BPF_CORE_READ((struct sock___kwcm *)tp, sk_err);

	e = bpf_ringbuf_reserve(&kw_cm_events, sizeof(*e), 0);
	if (!e) {
		kw_cm_count(KW_CM_STAT_LOST);
		st->role = 0;
		return;
	}
	__builtin_memset(e, 0, sizeof(*e));
	e->cookie = bpf_get_socket_cookie(skops);
	e->duration_ns = bpf_ktime_get_ns() - st->start_ns;
	e->bytes_sent = skops->bytes_acked + redir_out;
	e->bytes_received = skops->bytes_received + redir_in;
	e->redir_sent = redir_out;
	e->redir_received = redir_in;
	kw_cm_addrs(skops, e);
	e->orig = st->orig;
	e->oport = st->oport;
	e->event = KW_CM_EV_CLOSE;
	e->role = st->role;
	e->srtt_us = skops->srtt_us >> 3; /* the kernel keeps it scaled by 8 */
	e->retrans = skops->total_retrans;
	/* A normal close reaches TCP_CLOSE from FIN_WAIT*, CLOSING or LAST_ACK; an abort or a
	 * received RST from ESTABLISHED or CLOSE_WAIT, or leaves ECONNRESET/EPIPE behind. */
	e->reset = (old == KW_TCP_ESTABLISHED || old == KW_TCP_CLOSE_WAIT || err == KW_ECONNRESET || err == KW_EPIPE) ? 1 : 0;
	bpf_ringbuf_submit(e, BPF_RB_NO_WAKEUP);
	st->role = 0; /* one closed record per connection */
}

SEC("sockops")
int kw_cm_sockops(struct bpf_sock_ops *skops)
{
	switch (skops->op) {
	case BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB:
		kw_cm_established(skops, KW_CM_ROLE_CLIENT);
		break;
	case BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB:
		kw_cm_established(skops, KW_CM_ROLE_SERVER);
		break;
	case BPF_SOCK_OPS_STATE_CB:
		if (skops->args[1] == KW_TCP_CLOSE)
			kw_cm_closed(skops);
		break;
	default:
		break;
	}
	return 1;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
