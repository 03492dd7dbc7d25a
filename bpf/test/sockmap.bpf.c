// SPDX-License-Identifier: GPL-2.0
/*
 * Test object for sock_ops and sk_msg attach: sock_ops puts established IPv4 TCP
 * sockets in a sockhash, sk_msg counts the messages sent on them and lets them pass.
 */
#include <linux/bpf.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

/* Identifies a socket in kw_t_socks: both ends, as the socket sees them. */
struct kw_t_sock_key {
	__u32 local_ip4;   /* network order */
	__u32 remote_ip4;  /* network order */
	__u32 local_port;  /* host order */
	__u32 remote_port; /* host order */
};

/* Established sockets of the test cgroup. */
struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__uint(max_entries, 1024);
	__type(key, struct kw_t_sock_key);
	__type(value, __u64);
} kw_t_socks SEC(".maps");

/* [0]: sockets established (sock_ops), [1]: messages seen (sk_msg). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u64);
} kw_t_sockstat SEC(".maps");

static __always_inline void bump(__u32 slot)
{
	__u64 *v = bpf_map_lookup_elem(&kw_t_sockstat, &slot);

	if (v)
		__sync_fetch_and_add(v, 1);
}

SEC("sockops")
int kw_t_sockops(struct bpf_sock_ops *skops)
{
	struct kw_t_sock_key key = {};

	if (skops->family != 2 /* AF_INET */)
		return 1;
	if (skops->op != BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB &&
	    skops->op != BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB)
		return 1;
	key.local_ip4 = skops->local_ip4;
	key.remote_ip4 = skops->remote_ip4;
	key.local_port = skops->local_port;
	key.remote_port = bpf_ntohl(skops->remote_port);
	bpf_sock_hash_update(skops, &kw_t_socks, &key, BPF_ANY);
	bump(0);
	return 1;
}

SEC("sk_msg")
int kw_t_msg(struct sk_msg_md *msg)
{
	bump(1);
	return SK_PASS;
}

char LICENSE[] SEC("license") = "GPL";
