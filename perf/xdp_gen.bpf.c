// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Traffic generator for perf/fwd_rate.py, run by BPF_PROG_RUN with
 * BPF_F_TEST_XDP_LIVE_FRAMES: the kernel hands this program a copy of the template frame once
 * per repetition, and XDP_TX sends it out of the interface named by ctx->ingress_ifindex (gen0),
 * that is into its veth peer, the forwarder's ingress port.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

/* Frames generated, per CPU: lets the benchmark see the generator's own rate. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} gen_count SEC(".maps");

SEC("xdp")
int xdp_gen(struct xdp_md *ctx)
{
	__u32 key = 0;
	__u64 *n = bpf_map_lookup_elem(&gen_count, &key);

	if (n)
		*n += 1; /* per-CPU slot: no atomic needed */
	return XDP_TX;
}

char _license[] SEC("license") = "Dual BSD/GPL";
