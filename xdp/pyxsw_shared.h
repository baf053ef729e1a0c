/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* Constants shared by the XDP program and the Cython core (pyxsw/includes/xdp_shared.pxd). */
#ifndef PYXSW_SHARED_H
#define PYXSW_SHARED_H

/* Ports of one switch: rows in the maps below, indexed by the core's port index.  The core's
 * per-port arrays have this many entries too (pyxsw/includes/xdp_shared.pxd). */
#define PYXSW_MAX_PORTS 64

/* Slots per port in xsks_map: one per RX queue index the program may see. */
#define PYXSW_MAX_QUEUES 64

/* Per-CPU counters, indexes into xdp_stats_map: PYXSW_PROG_SEEN, ... PROG_COUNTERS, generated
 * from pyxsw/counters.py's PROG table by setup.py. */
#include "pyxsw_counters.h"

/* The program's function name: how a start recognizes a stale copy left by a killed switch. */
#define PYXSW_PROG_NAME "pyxsw_xsk_redirect"

#endif
