// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * pyxsw's XDP program: one program per switch, attached to every port.
 *
 * Every frame goes to the AF_XDP socket bound to its port's RX queue, if there is one.  The
 * program finds its port from the interface the frame came in by (ports_map, filled by the
 * switch), so one loaded program and one set of maps serve every port.  The redirect's
 * fallback action is XDP_PASS, so a queue without a socket (a switch starting up, or one
 * that died without detaching) or an interface that is not (or no longer) a port leaves the
 * interface working through the kernel instead of black-holing it.
 *
 * The fast path ([switch] fastpath = "xdp"): a known unicast frame is forwarded here, by
 * bpf_redirect_map() into tx_map, when the kernel copy of the FDB (fdb_map, which the switch
 * keeps equal to its own) says its source sits on this very port and its destination on
 * another port that is a target (up, and its device takes redirected frames), in the VLAN
 * the frame classifies into exactly as the workers classify it.  Anything else (a new or
 * moved source, which userspace must learn, floods, runts, priority tags, a frame too short
 * to untag without padding, a frame longer than the egress MTU allows) takes the AF_XDP path
 * as before.  The FDB stays userspace's: the program only writes the "seen" second of an
 * entry whose MAC sends, when it changes, so that aging sees traffic that never reaches
 * userspace.
 *
 * Jumbo frames: the program is frags-aware (BPF_F_XDP_HAS_FRAGS, set by the switch through
 * libxdp's xdp_program__set_xdp_frags_support() where the kernel has it, 5.18+: the section
 * is plain "xdp", since libbpf forces the flag on for "xdp.frags" whatever the kernel), so
 * that it attaches to an interface whose MTU is above a page and does not cap a veth peer's
 * MTU.  It drops, and
 * counts, a frame longer than the switch carries ([switch] max_frame, or a UMEM frame's room
 * when the kernel refused multi-buffer AF_XDP): nothing else would count it.  A frame in
 * several buffers (bpf_xdp_get_buff_len() > its linear part) is forwarded by the fast path
 * only to a target whose driver sends fragments (NETDEV_XDP_ACT_NDO_XMIT_SG: PYXSW_FP_OUT_SG
 * in its row); to others it takes the AF_XDP path, where the workers forward it as a chain
 * of descriptors.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <xdp/xdp_helpers.h>
#include "pyxsw_shared.h"

#define NSEC_PER_SEC 1000000000ULL

/* Set by the switch before the program is loaded (its .rodata, ports.pyx xdp_open): 1 where
 * the kernel has frags and bpf_xdp_get_buff_len() (5.18+).  At 0 the branches that call the
 * helper are dead, and a kernel that lacks it never sees the call. */
const volatile __u32 has_frags = 1;

/* The frame's length, fragments included. */
static __always_inline __u32 frame_len(struct xdp_md *ctx)
{
	if (has_frags)
		return (__u32)bpf_xdp_get_buff_len(ctx);
	return (__u32)(ctx->data_end - ctx->data);
}

/* ifindex -> the port's index + 1 (0: not a port), for ifindexes below PYXSW_IFX_DIRECT: an
 * array lookup, which the verifier inlines (a hash lookup cost 30-40 ns a frame here). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, PYXSW_IFX_DIRECT);
	__type(key, __u32);
	__type(value, __u32);
} ifx_map SEC(".maps");

/* ifindex -> the port's index, for every port (the program reads it only for an ifindex at
 * or above PYXSW_IFX_DIRECT) */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, PYXSW_MAX_PORTS);
	__type(key, __u32);
	__type(value, __u32);
} ports_map SEC(".maps");

/* port index -> the port's row, written by the switch under the row's seqlock (see
 * row_read()) */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, PYXSW_MAX_PORTS);
	__type(key, __u32);
	__type(value, struct pyxsw_port);
} port_rows SEC(".maps");

/* The switch's settings, by PYXSW_CONFIG_* (written before the program runs) */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, PYXSW_CONFIGS);
	__type(key, __u32);
	__type(value, __u32);
} config_map SEC(".maps");

/* port index * PYXSW_MAX_QUEUES + RX queue -> the AF_XDP socket of that (port, queue) */
struct {
	__uint(type, BPF_MAP_TYPE_XSKMAP);
	__uint(max_entries, PYXSW_MAX_PORTS * PYXSW_MAX_QUEUES);
	__type(key, __u32);
	__type(value, __u32);
} xsks_map SEC(".maps");

/* port index -> its interface, for the fast path's redirect (set only while fastpath = "xdp") */
struct {
	__uint(type, BPF_MAP_TYPE_DEVMAP);
	__uint(max_entries, PYXSW_MAX_PORTS);
	__type(key, __u32);
	__type(value, __u32);
} tx_map SEC(".maps");

/* The kernel copy of the FDB; the switch makes it as large as fdb.capacity. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u64);
	__type(value, struct pyxsw_fdb_val);
} fdb_map SEC(".maps");

/* port index * PROG_COUNTERS + counter -> a per-CPU count */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, PYXSW_MAX_PORTS * PROG_COUNTERS);
	__type(key, __u32);
	__type(value, __u64);
} xdp_stats_map SEC(".maps");

/* port index * FASTPATH_COUNTERS + counter -> a per-CPU count of the frames forwarded here */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, PYXSW_MAX_PORTS * FASTPATH_COUNTERS);
	__type(key, __u32);
	__type(value, __u64);
} fast_stats_map SEC(".maps");

static __always_inline void count(__u32 port, __u32 stat)
{
	__u32 key = port * PROG_COUNTERS + stat;
	__u64 *v = bpf_map_lookup_elem(&xdp_stats_map, &key);

	if (v)
		*v += 1; /* per-CPU slot: no atomic needed */
}

static __always_inline void count_fast(__u32 port, __u32 stat, __u64 bytes)
{
	__u32 key = port * FASTPATH_COUNTERS + stat;
	__u64 *v = bpf_map_lookup_elem(&fast_stats_map, &key);

	if (v)
		*v += 1;
	key += 1; /* each *_PACKETS counter is followed by its *_BYTES */
	v = bpf_map_lookup_elem(&fast_stats_map, &key);
	if (v)
		*v += bytes;
}

/* What the fast path reads of a port's row, read whole or not at all.  The switch writes a
 * row in three map updates (fastpath.pyx fp_port_write): its seq made odd, then the new
 * fields, then seq even again; a reader that sees seq odd, or changed, takes the AF_XDP path
 * for that frame (x86's loads stay in order: the compiler barriers keep them so). */
struct row {
	__u32 flags;
	__u32 max_len;
	__u16 untagged;
	__u16 vlan_mode;
	__u64 word;		/* the word of the VLAN map that holds `vlan`'s bit */
};

static __always_inline int row_read(__u32 index, __u16 vlan, struct row *r)
{
	struct pyxsw_port *p = bpf_map_lookup_elem(&port_rows, &index);
	__u32 seq;

	if (!p)
		return -1;
	seq = *(volatile __u32 *)&p->seq;
	if (seq & 1)
		return -1;
	asm volatile("" ::: "memory");
	r->flags = p->flags;
	r->max_len = p->max_len;
	r->untagged = p->untagged;
	r->vlan_mode = p->vlan_mode;
	r->word = p->vlans[(vlan >> 6) & (PYXSW_VLAN_WORDS - 1)];
	asm volatile("" ::: "memory");
	return *(volatile __u32 *)&p->seq == seq ? 0 : -1;
}

static __always_inline int carries(const struct row *r, __u16 vlan)
{
	return (r->word >> (vlan & 63)) & 1;
}

static __always_inline __u64 mac_key(const __u8 *mac, __u16 vlan)
{
	__u64 k = 0;

	__builtin_memcpy(&k, mac, 6); /* the wire bytes read little-endian, as the core does */
	return k | (__u64)vlan << 48;
}

/* Remove the 802.1Q tag: the MACs move up 4 bytes and the frame starts 4 bytes later. */
static __always_inline int pop_tag(struct xdp_md *ctx)
{
	__u8 *pkt = (void *)(long)ctx->data;
	__u8 macs[12];

	if ((void *)(pkt + 16) > (void *)(long)ctx->data_end)
		return -1;
	__builtin_memcpy(macs, pkt, 12);
	__builtin_memcpy(pkt + 4, macs, 12);
	return bpf_xdp_adjust_head(ctx, 4);
}

/* Insert an 802.1Q tag of `vlan` (PCP 0, as the workers push it) into the headroom. */
static __always_inline int push_tag(struct xdp_md *ctx, __u16 vlan)
{
	__u8 *pkt;
	__u8 macs[12];

	if (bpf_xdp_adjust_head(ctx, -4))
		return -1;
	pkt = (void *)(long)ctx->data;
	if ((void *)(pkt + 18) > (void *)(long)ctx->data_end)
		return -1;
	__builtin_memcpy(macs, pkt + 4, 12);
	__builtin_memcpy(pkt, macs, 12);
	pkt[12] = 0x81;
	pkt[13] = 0x00;
	pkt[14] = (vlan >> 8) & 0x0f;
	pkt[15] = vlan & 0xff;
	return 0;
}

/* Forward the frame in the kernel if it may be: XDP_REDIRECT, else -1 (the AF_XDP path). */
static __always_inline long fast(struct xdp_md *ctx, __u32 index)
{
	__u8 *pkt = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	__u32 linear = (__u32)((long)end - (long)pkt);
	__u32 rx_len, len;
	struct pyxsw_fdb_val *src, *dst;
	struct row in, out;
	__u64 key, now;
	__u16 vlan, vid = 0;
	__u32 e;
	int tagged, untag_out;
	long act;

	if ((void *)(pkt + 14) > end || (pkt[0] & 1)) /* runt; broadcast, multicast */
		return -1;
	rx_len = frame_len(ctx);	/* fragments included */
	len = rx_len;
	/* classify, as the workers do (worker.pyx classify()) */
	tagged = pkt[12] == 0x81 && pkt[13] == 0x00;
	if (tagged) {
		if ((void *)(pkt + 18) > end)
			return -1;
		vid = ((pkt[14] & 0x0f) << 8) | pkt[15];
		if (vid == 0) /* priority-tagged: the workers keep its PCP */
			return -1;
	}
	if (row_read(index, vid, &in) || !(in.flags & PYXSW_FP_IN))
		return -1;
	if (tagged) {
		vlan = vid;
		if (in.vlan_mode != 1 || !carries(&in, vlan))
			return -1; /* dropped and counted by the workers */
	} else {
		vlan = in.untagged;
		if (!vlan)
			return -1;
	}
	/* the source must be known on this very port: a new station or a move is learned */
	key = mac_key(pkt + 6, vlan);
	src = bpf_map_lookup_elem(&fdb_map, &key);
	if (!src || src->port != index)
		return -1;
	now = bpf_ktime_get_coarse_ns() / NSEC_PER_SEC; /* CLOCK_MONOTONIC_COARSE, as the FDB's */
	if (src->seen != (__u32)now)
		src->seen = (__u32)now; /* written only when the second changes */
	key = mac_key(pkt, vlan);
	dst = bpf_map_lookup_elem(&fdb_map, &key);
	if (!dst || dst->port == index)
		return -1;
	e = dst->port;
	if (row_read(e, vlan, &out) || !(out.flags & PYXSW_FP_OUT) || !carries(&out, vlan))
		return -1;
	if (rx_len > linear && !(out.flags & PYXSW_FP_OUT_SG))
		return -1; /* in fragments, to a device that takes none: the workers send it */
	untag_out = out.untagged == vlan;
	if (tagged && untag_out)
		len -= 4;
	else if (!tagged && !untag_out)
		len += 4;
	if (tagged && untag_out && len < 60)
		return -1; /* untagged, it would need padding: the workers pad it */
	/* The redirect refuses a frame longer than the egress MTU + 14 + 4 (xdp_ok_fwd_dev()),
	 * but only after this program returned, when the frame is counted as forwarded (and
	 * the kernel counts the drop in the ingress device's rx_dropped): such a frame takes
	 * the AF_XDP path, which deals with it as it always did and counts what it drops.
	 * The row holds that limit (the switch follows the MTU through rtnetlink): a compare,
	 * where bpf_check_mtu() looked the device up again for every frame (60 ns here). */
	if (len > out.max_len)
		return -1;
	act = bpf_redirect_map(&tx_map, e, 0);
	if (act != XDP_REDIRECT)
		return -1;
	if (tagged && untag_out) {
		if (pop_tag(ctx))
			return -1;
	} else if (!tagged && !untag_out) {
		if (push_tag(ctx, vlan))
			return -1;
	}
	count_fast(index, PYXSW_FAST_RX_PACKETS, rx_len);
	count_fast(e, PYXSW_FAST_TX_PACKETS, len);
	return XDP_REDIRECT;
}

SEC("xdp")
int pyxsw_xsk_redirect(struct xdp_md *ctx)
{
	__u32 ifindex = ctx->ingress_ifindex;
	__u32 q = ctx->rx_queue_index;
	__u32 *slot, *fastpath, *max_frame, port, key, qkey;
	long act = XDP_PASS;

	if (ifindex < PYXSW_IFX_DIRECT) {
		slot = bpf_map_lookup_elem(&ifx_map, &ifindex);
		if (!slot || !*slot)
			return XDP_PASS;
		port = *slot - 1;
	} else {
		slot = bpf_map_lookup_elem(&ports_map, &ifindex);
		if (!slot)
			return XDP_PASS;
		port = *slot;
	}
	count(port, PYXSW_PROG_SEEN);
	qkey = port * PYXSW_MAX_QUEUES + q;
	key = PYXSW_CONFIG_MAX_FRAME;
	max_frame = bpf_map_lookup_elem(&config_map, &key);
	if (max_frame && *max_frame && frame_len(ctx) > *max_frame) {
		/* longer than the switch carries: dropped and counted, where the switch serves
		 * this queue; else the kernel's, as every frame there is */
		if (q < PYXSW_MAX_QUEUES && bpf_map_lookup_elem(&xsks_map, &qkey)) {
			count(port, PYXSW_PROG_OVERSIZE);
			return XDP_DROP;
		}
		count(port, PYXSW_PROG_PASSED);
		return XDP_PASS;
	}
	key = PYXSW_CONFIG_FASTPATH;
	fastpath = bpf_map_lookup_elem(&config_map, &key);
	if (fastpath && *fastpath && fast(ctx, port) == XDP_REDIRECT)
		return XDP_REDIRECT;
	if (q < PYXSW_MAX_QUEUES) /* a larger queue would land on the next port's slots */
		act = bpf_redirect_map(&xsks_map, qkey, XDP_PASS);
	count(port, act == XDP_REDIRECT ? PYXSW_PROG_REDIRECTED : PYXSW_PROG_PASSED);
	return act;
}

char _license[] SEC("license") = "Dual BSD/GPL";

/* Run priority and chain-call actions for libxdp's dispatcher (ignored in single-program mode). */
struct {
	__uint(priority, 20);
	__uint(XDP_PASS, 1);
} XDP_RUN_CONFIG(pyxsw_xsk_redirect);
