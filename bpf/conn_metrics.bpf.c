// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * L4 connection metrics from the kernel, without a proxy (docs/metrics.md). A sock_ops
 * program of its own, attached to the agent's cgroup beside kw_sm_sockops (cgroup
 * links run every program attached): at ACTIVE/PASSIVE_ESTABLISHED it remembers when
 * the connection started and the address the client dialled (the ClusterIP, from the
 * balancer's kw_revnat), counts the connection as opened and asks the kernel for
 * state-change callbacks; when the socket reaches TCP_CLOSE it adds the connection's
 * bytes each way, duration, smoothed RTT, retransmissions and whether it was reset.
 * Everything is counted in the kernel, per CPU, under the key that decides the
 * connection's labels (kw_cm_counts: no record, no lock, nothing for the agent to do per
 * connection); the agent reads the counters when /metrics is scraped
 * (agent/datapath/conn-metrics.ts, agent/metrics/tcp.ts).
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
#include <bpf/bpf_tracing.h>
#include "revnat.h"
#include "sockmap.h"

#ifndef KW_CM_KEYS_MAX
#define KW_CM_KEYS_MAX 8192
#endif
#define KW_CM_ROLE_CLIENT 1 /* the socket connect()ed (reporter "source") */
#define KW_CM_ROLE_SERVER 2 /* the socket was accepted (reporter "destination") */

#define KW_CM_STAT_UNUSED  0 /* (records lost to a full ring buffer, before kw_cm_counts) */
#define KW_CM_STAT_NOSTORE 1 /* sockets not followed: kw_cm_conns full */
#define KW_CM_STAT_COUNT   2

/* Histogram buckets (agent/metrics/tcp.ts RTT_BUCKETS, DURATION_BUCKETS): the +Inf one is `closed`. */
#define KW_CM_RTT_BUCKETS 14
#define KW_CM_DUR_BUCKETS 8

/* TCP states (include/net/tcp_states.h). */
#define KW_TCP_ESTABLISHED 1
#define KW_TCP_CLOSE       7
#define KW_TCP_CLOSE_WAIT  8
#define KW_ECONNRESET 104
#define KW_EPIPE      32

/* Key of kw_cm_counts: what decides a connection's labels (agent/metrics/tcp.ts). 56 bytes. */
struct kw_cm_okey {
	struct kw_addr local;  /* this socket's address (IPv4 as ::ffff:a.b.c.d) */
	struct kw_addr remote; /* the peer's (a backend, for a balanced client) */
	struct kw_addr orig;   /* what the client dialled (ClusterIP); the server's own address for role server */
	__be16 oport;          /* its port (the server's own port for role server), network order */
	__u8 role;             /* KW_CM_ROLE_* */
	__u8 pad[5];           /* zero */
};

/*
 * Per followed socket (kw_cm_conns, by socket cookie, from establishment to TCP_CLOSE):
 * the key its counts go under, computed once at establishment, and when it was
 * established. 64 bytes.
 */
struct kw_cm_sock {
	struct kw_cm_okey key;
	__u64 start_ns;        /* bpf_ktime_get_ns() at establishment */
};

/*
 * What the connections of one key added up to, on one CPU. 240 bytes. Byte counts are
 * what the reporting socket sent (acknowledged by the peer, plus redirected by the
 * sockmap) and received (through TCP, plus redirected to it and read).
 */
struct kw_cm_counts {
	__u64 opened;
	__u64 closed;
	__u64 sent;
	__u64 received;
	__u64 retrans;          /* segments retransmitted */
	__u64 resets;           /* closes that were resets (sent or received) */
	__u64 rtt_sum_us;       /* smoothed RTT at close, summed */
	__u64 duration_sum_ns;  /* establishment to close, summed */
	__u64 rtt[KW_CM_RTT_BUCKETS];      /* closes per RTT bucket (not cumulative) */
	__u64 duration[KW_CM_DUR_BUCKETS]; /* closes per duration bucket (not cumulative) */
};

/*
 * Per key, per CPU: the agent sums the CPUs at a scrape and adds what grew since its last
 * read; it deletes keys that stopped growing long ago (the map stays bounded). A
 * connection whose key finds the map full is counted in kw_cm_unkeyed (the overflow series).
 */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, KW_CM_KEYS_MAX);
	__type(key, struct kw_cm_okey);
	__type(value, struct kw_cm_counts);
} kw_cm_counts SEC(".maps");

/* Connections whose key found kw_cm_counts full, by role - 1. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, struct kw_cm_counts);
} kw_cm_unkeyed SEC(".maps");

/*
 * Followed sockets, by socket cookie (never reused), from establishment to their
 * TCP_CLOSE, where kw_cm_close deletes the entry. A hash and not socket storage: the
 * storage's allocation at establishment cost ~1.1 µs per socket here (measured with
 * -DKW_CM_SELF_TIME), a hash update a fraction of it. Not preallocated: memory follows
 * the connections open. A socket that finds it full is not followed (KW_CM_STAT_NOSTORE).
 */
#ifndef KW_CM_CONNS_MAX
#define KW_CM_CONNS_MAX 65536
#endif
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, KW_CM_CONNS_MAX);
	__type(key, __u64);
	__type(value, struct kw_cm_sock);
} kw_cm_conns SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, KW_CM_STAT_COUNT);
	__type(key, __u32);
	__type(value, __u64);
} kw_cm_stats SEC(".maps");

/*
 * Benchmarks only (never in the build the agent loads): -DKW_CM_SELF_TIME times each run
 * of the programs with bpf_ktime_get_ns(), per kind of run, into kw_cm_time (per CPU:
 * nanoseconds and runs), so that bench/tcp-metrics.ts can say what they cost per
 * connection whatever the machine's load. Slot KW_CM_T_EMPTY times nothing (the two
 * clock reads), to be subtracted from every run.
 */
#define KW_CM_T_OTHER_OP   0 /* sock_ops, any op but the two below */
#define KW_CM_T_ACTIVE     1 /* sock_ops, ACTIVE_ESTABLISHED */
#define KW_CM_T_PASSIVE    2 /* sock_ops, PASSIVE_ESTABLISHED */
#define KW_CM_T_NOT_CLOSE  3 /* close hook: a change to another state */
#define KW_CM_T_UNFOLLOWED 4 /* close hook: TCP_CLOSE of a socket without a record */
#define KW_CM_T_CLOSE      5 /* close hook: a connection counted */
#define KW_CM_T_EMPTY      6 /* the clock reads alone */
#define KW_CM_T_COUNT      7
#ifdef KW_CM_SELF_TIME
struct kw_cm_took {
	__u64 ns;
	__u64 runs;
};
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, KW_CM_T_COUNT);
	__type(key, __u32);
	__type(value, struct kw_cm_took);
} kw_cm_time SEC(".maps");

static __always_inline void kw_cm_took(__u32 slot, __u64 t0)
{
	__u64 t1 = bpf_ktime_get_ns();
	struct kw_cm_took *t = bpf_map_lookup_elem(&kw_cm_time, &slot);

	if (t) {
		t->ns += t1 - t0;
		t->runs += 1;
	}
}
#define KW_CM_T0() __u64 kw_cm_t0 = bpf_ktime_get_ns()
#define KW_CM_TOOK(slot) kw_cm_took((slot), kw_cm_t0)
#else
#define KW_CM_T0() do { } while (0)
#define KW_CM_TOOK(slot) do { } while (0)
#endif

/* What the close reads of the kernel's struct sock and struct tcp_sock (CO-RE: offsets from the running kernel's BTF). */
struct sock___kwcm {
	int sk_err;
} __attribute__((preserve_access_index));

struct tcp_sock___kwcm {
	__u64 bytes_acked;    /* bytes the peer acknowledged */
	__u64 bytes_received; /* bytes received in order */
	__u32 srtt_us;        /* smoothed RTT, microseconds << 3 */
	__u32 total_retrans;  /* segments retransmitted */
	__u8 bpf_sock_ops_cb_flags; /* BPF_SOCK_OPS_*_CB_FLAG: KW_CM_MARK on a followed socket */
} __attribute__((preserve_access_index));

/*
 * The mark of a followed socket, read by kw_cm_close before it looks in kw_cm_conns: the
 * callback on retransmission timeouts, turned on at establishment. The socket's own
 * line is hot at its close; a lookup of kw_cm_conns that misses was not (~0.2-0.3 µs per
 * unfollowed socket with a cookie, measured). The callback itself runs only on a
 * timeout, when the cgroup's sock_ops programs ignore it; another program may set the
 * flag too, then the lookup decides (the mark is a hint, the map the truth).
 */
#define KW_CM_MARK BPF_SOCK_OPS_RTO_CB_FLAG

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

/*
 * The counters of a connection's key (inserted at the first connection), or its role's
 * unkeyed counters when the map is full. The caller adds with atomic adds: a program in
 * process context (close()) and one in softirq may run on the same CPU.
 */
static __always_inline struct kw_cm_counts *kw_cm_counters(const struct kw_cm_okey *key)
{
	struct kw_cm_counts *v;
	__u32 idx = key->role == KW_CM_ROLE_CLIENT ? 0 : 1;

	v = bpf_map_lookup_elem(&kw_cm_counts, key);
	if (v)
		return v;
	/* Zero for every CPU; fails when another CPU inserted it meanwhile, or when the map is full. */
	{
		struct kw_cm_counts zero = {};

		bpf_map_update_elem(&kw_cm_counts, key, &zero, BPF_NOEXIST);
	}
	v = bpf_map_lookup_elem(&kw_cm_counts, key);
	if (v)
		return v;
	return bpf_map_lookup_elem(&kw_cm_unkeyed, &idx);
}

static __always_inline __u32 kw_cm_rtt_bucket(__u64 us)
{
	/* RTT_BUCKETS in microseconds: 50 100 250 500 1000 2500 5000 10000 25000 50000 100000 250000 500000 1000000 */
	if (us <= 1000) return us <= 50 ? 0 : us <= 100 ? 1 : us <= 250 ? 2 : us <= 500 ? 3 : 4;
	if (us <= 50000) return us <= 2500 ? 5 : us <= 5000 ? 6 : us <= 10000 ? 7 : us <= 25000 ? 8 : 9;
	return us <= 100000 ? 10 : us <= 250000 ? 11 : us <= 500000 ? 12 : us <= 1000000 ? 13 : KW_CM_RTT_BUCKETS;
}

static __always_inline __u32 kw_cm_duration_bucket(__u64 ns)
{
	/* DURATION_BUCKETS in nanoseconds: 1 ms, 10 ms, 100 ms, 1 s, 10 s, 60 s, 600 s, 3600 s */
	if (ns <= 1000000000ULL) return ns <= 1000000ULL ? 0 : ns <= 10000000ULL ? 1 : ns <= 100000000ULL ? 2 : 3;
	return ns <= 10000000000ULL ? 4 : ns <= 60000000000ULL ? 5 : ns <= 600000000000ULL ? 6 : ns <= 3600000000000ULL ? 7 : KW_CM_DUR_BUCKETS;
}

/*
 * sock_ops, ACTIVE/PASSIVE_ESTABLISHED: the socket's key, computed once (the balancer's
 * reverse translation for a client), kept in its storage with the time, and counted as
 * opened. No callback is asked for: the close is seen by kw_cm_close.
 */
static __always_inline void kw_cm_established(struct bpf_sock_ops *skops, __u8 role)
{
	struct kw_cm_counts *c;
	struct kw_cm_sock st;
	struct bpf_sock *sk = skops->sk;
	__u32 family = skops->family;
	struct kw_sm_key k = {};
	__u64 cookie;

	if ((family != KW_AF_INET && family != KW_AF_INET6) || !sk)
		return;
	kw_sm_addrs(skops, family, &k);
	if (kw_cm_loopback(&k.remote))
		return; /* inside a pod's own network namespace: not traffic between workloads */
	cookie = bpf_get_socket_cookie(skops);
	st.start_ns = bpf_ktime_get_ns();
	st.key.local = k.local;
	st.key.remote = k.remote;
	__builtin_memset(st.key.pad, 0, sizeof(st.key.pad));
	st.key.role = role;
	if (role == KW_CM_ROLE_CLIENT) {
		/* The balancer's reverse translation: {cookie, backend} -> what was dialled. */
		__be16 rport = kw_sm_remote_port(skops->remote_port);
		struct kw_revnat_key rk = { .cookie = cookie, .addr = k.remote, .port = rport };
		struct kw_revnat_val *rv = bpf_map_lookup_elem(&kw_revnat, &rk);

		if (rv) {
			st.key.orig = rv->addr;
			st.key.oport = rv->port;
		} else {
			st.key.orig = k.remote;
			st.key.oport = rport;
		}
	} else {
		st.key.orig = k.local;
		st.key.oport = bpf_htons((__u16)skops->local_port);
	}
	if (bpf_map_update_elem(&kw_cm_conns, &cookie, &st, BPF_ANY)) {
		kw_cm_count(KW_CM_STAT_NOSTORE);
		return;
	}
	if (!(skops->bpf_sock_ops_cb_flags & KW_CM_MARK))
		bpf_sock_ops_cb_flags_set(skops, skops->bpf_sock_ops_cb_flags | KW_CM_MARK); /* keeps the others' flags */
	c = kw_cm_counters(&st.key);
	if (c)
		__sync_fetch_and_add(&c->opened, 1);
}

SEC("sockops")
int kw_cm_sockops(struct bpf_sock_ops *skops)
{
	KW_CM_T0();

	switch (skops->op) {
	case BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB:
		kw_cm_established(skops, KW_CM_ROLE_CLIENT);
		KW_CM_TOOK(KW_CM_T_ACTIVE);
#ifdef KW_CM_SELF_TIME
		{
			KW_CM_T0();
			KW_CM_TOOK(KW_CM_T_EMPTY);
		}
#endif
		break;
	case BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB:
		kw_cm_established(skops, KW_CM_ROLE_SERVER);
		KW_CM_TOOK(KW_CM_T_PASSIVE);
		break;
	default:
		KW_CM_TOOK(KW_CM_T_OTHER_OP);
		break;
	}
	return 1;
}

/*
 * The close: tracepoint sock:inet_sock_set_state as a BTF program (tp_btf), which, unlike
 * a raw tracepoint, may read socket storage (ours and the accelerator's). It fires for
 * every state change of every TCP socket on the machine: anything but a change to
 * TCP_CLOSE returns at once, and a socket that kw_cm_sockops did not follow has no
 * record (one failed lookup). It fires where the state callback of sock_ops did
 * (tcp_set_state, before an abort's tcp_disconnect zeroes the counters), without the
 * per-socket callbacks of every other state change, which ran every sock_ops program of
 * the cgroup each time.
 */
SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(kw_cm_close, struct sock *sk, int oldstate, int newstate)
{
	struct kw_cm_counts *c;
	struct kw_cm_sock *st;
	struct kw_sm_sock *sm;
	struct kw_sm_io *io;
	struct tcp_sock___kwcm *tp;
	__u64 redir_in = 0, redir_out = 0, srtt, dur, cookie, start;
	__u32 b;
	int err;

	KW_CM_T0();

	if (newstate != KW_TCP_CLOSE) {
		KW_CM_TOOK(KW_CM_T_NOT_CLOSE);
		return 0;
	}
	/* A followed socket is a TCP socket with the mark, and has a cookie (kw_cm_sockops asked for it). */
	tp = (struct tcp_sock___kwcm *)bpf_skc_to_tcp_sock(sk);
	cookie = tp && (tp->bpf_sock_ops_cb_flags & KW_CM_MARK) ? sk->__sk_common.skc_cookie.counter : 0;
	st = cookie ? bpf_map_lookup_elem(&kw_cm_conns, &cookie) : 0;
	if (!st || !tp) {
		KW_CM_TOOK(KW_CM_T_UNFOLLOWED);
		return 0;
	}
	c = kw_cm_counters(&st->key);
	start = st->start_ns;
	bpf_map_delete_elem(&kw_cm_conns, &cookie); /* counted once per connection */
	if (!c)
		return 0;
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
	err = ((struct sock___kwcm *)sk)->sk_err;
	srtt = tp->srtt_us >> 3; /* the kernel keeps it scaled by 8 */
	dur = bpf_ktime_get_ns() - start;
	__sync_fetch_and_add(&c->closed, 1);
	__sync_fetch_and_add(&c->sent, tp->bytes_acked + redir_out);
	__sync_fetch_and_add(&c->received, tp->bytes_received + redir_in);
	__sync_fetch_and_add(&c->retrans, tp->total_retrans);
	/* A normal close reaches TCP_CLOSE from FIN_WAIT*, CLOSING or LAST_ACK; an abort or a
	 * received RST from ESTABLISHED or CLOSE_WAIT, or leaves ECONNRESET/EPIPE behind. */
	if (oldstate == KW_TCP_ESTABLISHED || oldstate == KW_TCP_CLOSE_WAIT || err == KW_ECONNRESET || err == KW_EPIPE)
		__sync_fetch_and_add(&c->resets, 1);
	__sync_fetch_and_add(&c->rtt_sum_us, srtt);
	__sync_fetch_and_add(&c->duration_sum_ns, dur);
	b = kw_cm_rtt_bucket(srtt);
	if (b < KW_CM_RTT_BUCKETS)
		__sync_fetch_and_add(&c->rtt[b], 1);
	b = kw_cm_duration_bucket(dur);
	if (b < KW_CM_DUR_BUCKETS)
		__sync_fetch_and_add(&c->duration[b], 1);
	KW_CM_TOOK(KW_CM_T_CLOSE);
	return 0;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
