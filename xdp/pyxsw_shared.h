/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* What the XDP program and the Cython core share (pyxsw/includes/xdp_shared.pxd). */
#ifndef PYXSW_SHARED_H
#define PYXSW_SHARED_H

#include <linux/types.h>

/* Ports of one switch: rows in the maps below, indexed by the core's port index.  The core's
 * per-port arrays have this many entries too (pyxsw/includes/xdp_shared.pxd). */
#define PYXSW_MAX_PORTS 64

/* Slots per port in xsks_map: one per RX queue index the program may see. */
#define PYXSW_MAX_QUEUES 64

/* Per-CPU counters: indexes into xdp_stats_map (PYXSW_PROG_SEEN, ... PROG_COUNTERS) and
 * fast_stats_map (PYXSW_FAST_RX_PACKETS, ... FASTPATH_COUNTERS), generated from
 * pyxsw/counters.py's PROG and FASTPATH tables by setup.py. */
#include "pyxsw_counters.h"

/* The program's function name: how a start recognizes a stale copy left by a killed switch. */
#define PYXSW_PROG_NAME "pyxsw_xsk_redirect"

/* config_map's slots */
#define PYXSW_CONFIG_FASTPATH	0	/* 1: fastpath = "xdp" */
#define PYXSW_CONFIG_MAX_FRAME	1	/* the longest frame the switch carries (0: no limit) */
#define PYXSW_CONFIGS		2

/* ifindexes below this find their port in an array (ifx_map), others in a hash (ports_map) */
#define PYXSW_IFX_DIRECT 65536

/* A port as the fast path sees it (port_rows, by index), written by the switch whenever the
 * port changes, under `seq` (pyxsw/fastpath.pyx). */
#define PYXSW_FP_IN	1	/* its frames may be forwarded in the kernel (fastpath = "xdp") */
#define PYXSW_FP_OUT	2	/* a fast-path target: up, and its device takes redirected frames */
#define PYXSW_FP_OUT_SG	4	/* ... in several buffers too (NDO_XMIT_SG): jumbo frames */
#define PYXSW_VLAN_WORDS 64	/* __u64 words of a 4096-bit VLAN map */

struct pyxsw_port {
	__u32 seq;		/* odd while the switch writes the row: a reader then skips it */
	__u32 flags;		/* PYXSW_FP_* */
	__u16 untagged;		/* the VLAN of its untagged frames (access, or native); 0 = none */
	__u16 vlan_mode;	/* 0 access, 1 trunk (the core's VLAN_ACCESS / VLAN_TRUNK) */
	__u32 max_len;		/* the longest frame a redirect gives its device: MTU + 18, as
			 * xdp_ok_fwd_dev() allows (0: MTU not known, no target) */
	__u64 vlans[PYXSW_VLAN_WORDS];	/* the VLANs it carries */
};

/* The kernel copy of one FDB entry, keyed like the core's FDB: vlan << 48 | the destination
 * MAC's 6 wire bytes read little-endian. */
struct pyxsw_fdb_val {
	__u32 port;		/* port index */
	__u32 seen;		/* coarse monotonic seconds the program last saw the MAC send */
};

#endif
