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
from libc.string cimport memcpy, memset, strncpy, strncmp, strerror, strstr
from libc.stdio cimport stderr, fputs

from pyxsw.includes.system cimport *
from pyxsw.includes.xsk cimport *
from pyxsw.includes.libxdp cimport *

cdef enum:
    MAX_PORTS = 64          # switch ports (indexes into per-port arrays)
    MAX_WORKERS = 16        # workers, and so queues per port
    MAX_BATCH = 256         # frames per RX burst at most

include "umem.pyx"
include "fdb.pyx"
include "worker.pyx"
include "ports.pyx"
include "core.pyx"
