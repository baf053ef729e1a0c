// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Traffic generator for perf/fwd_rate.py, run by BPF_PROG_RUN with
 * BPF_F_TEST_XDP_LIVE_FRAMES: the kernel hands this program a copy of the template frame once
 * per repetition, and XDP_TX sends it out of the interface named by ctx->ingress_ifindex (gen0),
 * that is into its veth peer, the forwarder's ingress port.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

/* Frames sent, per CPU: the offered load, counted only for frames the program transmits. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} gen_count SEC(".maps");

/* The generator's settings, written by the benchmark while it runs.
 * nmacs: how many source MACs to cycle through (0 or 1: the template's own).  With N > 1,
 *   frame k gets source MAC template[0..2]:80|(i>>16):(i>>8):i, i = k mod N, so a learning
 *   switch learns (and keeps refreshing) N addresses on its ingress port.
 * paused: nonzero, nothing is sent (every repetition returns XDP_DROP, uncounted).
 * interval_ns: 0, a frame on every repetition (as fast as the core goes); else at most one
 *   frame per interval_ns on this CPU, by the clock: the rate-controlled load of the no-drop
 *   search and the load sweep.
 * epoch: changed by the benchmark with every setting: the schedule starts afresh, the first
 *   frame at once and no catching up on the time before. */
struct gen_cfg {
	__u32 nmacs;
	__u32 paused;
	__u64 interval_ns;
	__u64 epoch;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct gen_cfg);
} gen_cfg SEC(".maps");

/* Per CPU: when the next frame is due (ns, bpf_ktime_get_ns), under which setting. */
struct due {
	__u64 ns;
	__u64 epoch;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct due);
} gen_due SEC(".maps");

/* A generator that fell behind (its core taken by an interrupt or the port's receive)
 * catches up by at most this many frames back to back: the load stays a steady rate, not a
 * burst after every stall. */
#define CATCH_UP 32

SEC("xdp")
int xdp_gen(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
	__u32 key = 0;
	struct gen_cfg *cfg = bpf_map_lookup_elem(&gen_cfg, &key);
	__u64 *n = bpf_map_lookup_elem(&gen_count, &key);
	__u64 k = 0;

	if (!cfg || cfg->paused)
		return XDP_DROP;
	if (cfg->interval_ns) {
		struct due *due = bpf_map_lookup_elem(&gen_due, &key);
		__u64 now = bpf_ktime_get_ns(), late = CATCH_UP * cfg->interval_ns;

		if (!due)
			return XDP_DROP;
		if (due->epoch != cfg->epoch) {
			due->epoch = cfg->epoch;
			due->ns = now;
		}
		if (now < due->ns)
			return XDP_DROP;
		if (due->ns + late < now)
			due->ns = now - late;
		due->ns += cfg->interval_ns;
	}
	if (n) {
		k = *n;
		*n += 1; /* per-CPU slot: no atomic needed */
	}
	if (cfg->nmacs > 1 && data + 12 <= end) {
		__u32 i = (__u32)(k % cfg->nmacs);
		__u8 *src = (__u8 *)data + 6;

		src[3] = 0x80 | ((i >> 16) & 0x7f); /* never the template's 00:00:0x */
		src[4] = (i >> 8) & 0xff;
		src[5] = i & 0xff;
	}
	return XDP_TX;
}

char _license[] SEC("license") = "Dual BSD/GPL";
