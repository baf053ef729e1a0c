// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Sink for perf/fwd_rate.py, attached to sink0: counts every generator frame that reaches it
 * and drops it, the cheapest possible receiver, so the measurement is the forwarder's rate and not the
 * sink's.  Having an XDP program here also lets frames be redirected into sink0's veth peer
 * (ndo_xdp_xmit needs an XDP program or GRO on the receiving side).
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/in.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

/* The generator's frames go to UDP port 9 (discard); everything else (ARP, the latency
 * ping-pong) goes on to sink0's network stack. */
#define SINK_PORT 9

/* Slot 0: frames, slot 1: bytes, per CPU; the benchmark sums the CPUs. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u64);
} sink_count SEC(".maps");

SEC("xdp")
int xdp_sink(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	__u16 *proto = data + 12;		/* the EtherType */
	struct iphdr *ip;
	struct udphdr *udp;
	__u32 key = 0;
	__u64 *v;

	if ((void *)(eth + 1) > end)
		return XDP_PASS;
	if (*proto == bpf_htons(ETH_P_8021Q)) {	/* one 802.1Q tag (fwd_rate.py --vlan-trunk) */
		proto += 2;
		if ((void *)(proto + 1) > end)
			return XDP_PASS;
	}
	ip = (void *)(proto + 1);
	udp = (void *)(ip + 1);
	if ((void *)(udp + 1) > end || *proto != bpf_htons(ETH_P_IP) ||
	    ip->protocol != IPPROTO_UDP || ip->ihl != 5 || udp->dest != bpf_htons(SINK_PORT))
		return XDP_PASS;
	v = bpf_map_lookup_elem(&sink_count, &key);

	if (v)
		*v += 1;
	key = 1;
	v = bpf_map_lookup_elem(&sink_count, &key);
	if (v)
		*v += ctx->data_end - ctx->data;
	return XDP_DROP;
}

char _license[] SEC("license") = "Dual BSD/GPL";
