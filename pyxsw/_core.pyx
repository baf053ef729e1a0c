# cython: language_level=3
# pyxsw's core: one C extension built from several files (`include`d so the C compiler sees
# one unit and inlines across them), in the order they depend on each other:
#
#   umem.pyx    the UMEM and its frame pool
#   fdb.pyx     the MAC learning table
#   worker.pyx  the worker loop: the packet path, C only, no GIL
#   ports.pyx   XDP program and socket set-up (control path)
#   core.pyx    the Python-facing Core object that pyxsw.switch drives
#
# Everything on the packet path is `noexcept nogil` on C structs; exceptions exist only at
# the Python boundary, in core.pyx and ports.pyx.
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, int64_t
from libc.stdlib cimport malloc, calloc, free
from libc.string cimport memcpy, memset, strlen, strncpy, strncmp, strerror, strstr
from libc.stdio cimport stderr, fputs

from pyxsw.includes.system cimport *
from pyxsw.includes.atomics cimport *
from pyxsw.includes.xsk cimport *
from pyxsw.includes.libxdp cimport *
from pyxsw.includes.xdp_shared cimport *
from pyxsw.includes.counters cimport *

cdef enum:
    MAX_PORTS = 64          # switch ports (indexes into per-port arrays)
    MAX_WORKERS = 16        # workers, and so queues per port
    MAX_BATCH = 256         # frames per RX burst at most
    # Rings: the kernel takes any power of two and allocates each ring in one piece while
    # the bind waits (2**31 entries held the machine for tens of seconds).  32768 is four
    # times the largest NIC descriptor rings (8K) and costs 1.5 MiB per socket.
    MAX_RING_SIZE = 32768
    # The FDB: its table has 2 x capacity slots rounded up to a power of two, indexed in 32
    # bits; 2**24 entries (16.7 million: 896 MiB a table) is far beyond any switch's table.
    MAX_FDB_CAPACITY = 1 << 24

include "umem.pyx"
include "fdb.pyx"
include "worker.pyx"
include "ports.pyx"
include "core.pyx"
