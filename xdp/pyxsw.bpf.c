// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * pyxsw's XDP program: one program per switch, attached to every port.
 *
 * Every frame goes to the AF_XDP socket bound to its port's RX queue, if there is one.  The
 * program finds its port from the interface the frame came in by (ports_map, filled by the
 * switch), so one loaded program and one set of maps serve every port: a later in-kernel
 * fast path can look one FDB up from all of them.  The redirect's fallback action is
 * XDP_PASS, so a queue without a socket (a switch starting up, or one that died without
 * detaching) or an interface that is not (or no longer) a port leaves the interface working
 * through the kernel instead of black-holing it.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <xdp/xdp_helpers.h>
#include "pyxsw_shared.h"

/* ifindex -> the port's index: its row in the two maps below */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, PYXSW_MAX_PORTS);
	__type(key, __u32);
	__type(value, __u32);
} ports_map SEC(".maps");

/* port index * PYXSW_MAX_QUEUES + RX queue -> the AF_XDP socket of that (port, queue) */
struct {
	__uint(type, BPF_MAP_TYPE_XSKMAP);
	__uint(max_entries, PYXSW_MAX_PORTS * PYXSW_MAX_QUEUES);
	__type(key, __u32);
	__type(value, __u32);
} xsks_map SEC(".maps");

/* port index * PROG_COUNTERS + counter -> a per-CPU count */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, PYXSW_MAX_PORTS * PROG_COUNTERS);
	__type(key, __u32);
	__type(value, __u64);
} xdp_stats_map SEC(".maps");

static __always_inline void count(__u32 port, __u32 stat)
{
	__u32 key = port * PROG_COUNTERS + stat;
	__u64 *v = bpf_map_lookup_elem(&xdp_stats_map, &key);

	if (v)
		*v += 1; /* per-CPU slot: no atomic needed */
}

SEC("xdp")
int pyxsw_xsk_redirect(struct xdp_md *ctx)
{
	__u32 ifindex = ctx->ingress_ifindex;
	__u32 q = ctx->rx_queue_index;
	__u32 *port = bpf_map_lookup_elem(&ports_map, &ifindex);
	long act = XDP_PASS;

	if (!port)
		return XDP_PASS;
	count(*port, PYXSW_PROG_SEEN);
	if (q < PYXSW_MAX_QUEUES) /* a larger queue would land on the next port's slots */
		act = bpf_redirect_map(&xsks_map, *port * PYXSW_MAX_QUEUES + q, XDP_PASS);
	count(*port, act == XDP_REDIRECT ? PYXSW_PROG_REDIRECTED : PYXSW_PROG_PASSED);
	return act;
}

char _license[] SEC("license") = "Dual BSD/GPL";

/* Run priority and chain-call actions for libxdp's dispatcher (ignored in single-program mode). */
struct {
	__uint(priority, 20);
	__uint(XDP_PASS, 1);
} XDP_RUN_CONFIG(pyxsw_xsk_redirect);
