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

/* Slot 0: how many source MACs to cycle through (0 or 1: the template's own).  With N > 1,
 * frame k gets source MAC template[0..2]:80|(i>>16):(i>>8):i, i = k mod N, so a learning switch
 * learns (and keeps refreshing) N addresses on its ingress port. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} gen_cfg SEC(".maps");

SEC("xdp")
int xdp_gen(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
	__u32 key = 0, *nmacs = bpf_map_lookup_elem(&gen_cfg, &key);
	__u64 *n = bpf_map_lookup_elem(&gen_count, &key);
	__u64 k = 0;

	if (n) {
		k = *n;
		*n += 1; /* per-CPU slot: no atomic needed */
	}
	if (nmacs && *nmacs > 1 && data + 12 <= end) {
		__u32 i = (__u32)(k % *nmacs);
		__u8 *src = (__u8 *)data + 6;

		src[3] = 0x80 | ((i >> 16) & 0x7f); /* never the template's 00:00:0x */
		src[4] = (i >> 8) & 0xff;
		src[5] = i & 0xff;
	}
	return XDP_TX;
}

char _license[] SEC("license") = "Dual BSD/GPL";
