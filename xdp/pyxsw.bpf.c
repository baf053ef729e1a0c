// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * pyxsw's XDP program, one copy per switch port.
 *
 * Every frame goes to the AF_XDP socket bound to its RX queue, if there is one.  The
 * redirect's fallback action is XDP_PASS, so a queue without a socket (a switch starting
 * up, or one that died without detaching) leaves the interface working through the kernel
 * instead of black-holing it.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <xdp/xdp_helpers.h>
#include "pyxsw_shared.h"

struct {
	__uint(type, BPF_MAP_TYPE_XSKMAP);
	__uint(max_entries, PYXSW_MAX_QUEUES);
	__type(key, __u32);
	__type(value, __u32);
} xsks_map SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, PROG_COUNTERS);
	__type(key, __u32);
	__type(value, __u64);
} xdp_stats_map SEC(".maps");

static __always_inline void count(__u32 stat)
{
	__u64 *v = bpf_map_lookup_elem(&xdp_stats_map, &stat);

	if (v)
		*v += 1; /* per-CPU slot: no atomic needed */
}

SEC("xdp")
int pyxsw_xsk_redirect(struct xdp_md *ctx)
{
	__u32 q = ctx->rx_queue_index;
	long act;

	count(PYXSW_PROG_SEEN);
	act = bpf_redirect_map(&xsks_map, q, XDP_PASS);
	count(act == XDP_REDIRECT ? PYXSW_PROG_REDIRECTED : PYXSW_PROG_PASSED);
	return act;
}

char _license[] SEC("license") = "Dual BSD/GPL";

/* Run priority and chain-call actions for libxdp's dispatcher (ignored in single-program mode). */
struct {
	__uint(priority, 20);
	__uint(XDP_PASS, 1);
} XDP_RUN_CONFIG(pyxsw_xsk_redirect);
