/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* Constants shared by the XDP program and the Cython core (pyxsw/includes/xdp_shared.pxd). */
#ifndef PYXSW_SHARED_H
#define PYXSW_SHARED_H

/* Slots in xsks_map: one per RX queue index the program may see. */
#define PYXSW_MAX_QUEUES 64

/* Per-CPU counters, indexes into xdp_stats_map. */
enum pyxsw_xdp_stat {
	PYXSW_STAT_SEEN = 0,     /* frames the program ran on */
	PYXSW_STAT_REDIRECTED,   /* handed to an AF_XDP socket */
	PYXSW_STAT_PASSED,       /* no socket bound on that queue: left to the kernel */
	PYXSW_STAT_MAX,
};

/* The program's function name: how a start recognizes a stale copy left by a killed switch. */
#define PYXSW_PROG_NAME "pyxsw_xsk_redirect"

#endif
