# cython: language_level=3
# pyxsw's core: one C extension built from several files, `include`d so that the C compiler
# sees one unit and inlines across them.  One concept per file:
#
#   types.pxi   the data model: every limit, enum and struct (first, so order never matters)
#   umem.pyx    the UMEM: area, registration, fill/completion rings, frame pool, anchor socket
#   fdb.pyx     the MAC table, the lookups and learning of the packet path, and its walks
#   events.pyx  typed event rings from the workers to the control thread, with an eventfd
#   worker.pyx  the worker loop: the packet path, C only, no GIL
#   ports.pyx   the XDP program and its maps, the AF_XDP sockets, the per-port steps
#   fastpath.pyx  the in-kernel fast path: the kernel copy of the FDB, the ports' rows
#   core.pyx    Datapath, the Python face that pyxsw.switch drives: locking, argument
#               checks, results
#
# C declarations are in includes/*.pxd (system calls, atomics, libxdp/libbpf, the XDP
# program's shared constants, the counters' enums generated from pyxsw/counters.py).
#
# Everything on the packet path is `noexcept nogil` on C structs; Python objects and
# exceptions appear only on the control path: core.pyx, the port set-up of ports.pyx, the
# UMEM's set-up and the FDB's list walk, which return what core.pyx hands on.
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, int32_t, int64_t
from libc.stdlib cimport malloc, calloc, free
from libc.string cimport memcpy, memmove, memset, strlen, strncpy, strncmp, strerror, strstr
from libc.stdio cimport stderr, fputs, snprintf

from pyxsw.includes.system cimport *
from pyxsw.includes.atomics cimport *
from pyxsw.includes.xsk cimport *
from pyxsw.includes.libxdp cimport *
from pyxsw.includes.xdp_shared cimport *
from pyxsw.includes.counters cimport *

from pyxsw import vocab as _vocab

include "types.pxi"
include "umem.pyx"
include "fdb.pyx"
include "events.pyx"
include "worker.pyx"
include "ports.pyx"
include "fastpath.pyx"
include "core.pyx"
