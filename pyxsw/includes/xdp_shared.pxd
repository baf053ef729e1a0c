# What the XDP program (xdp/pyxsw.bpf.c) and the core share: xdp/pyxsw_shared.h.  The XDP
# program's counters are PROG_* and PYXSW_FAST_* of counters.pxd (generated from
# pyxsw/counters.py).
from libc.stdint cimport uint16_t, uint32_t, uint64_t

cdef extern from "pyxsw_shared.h" nogil:
    enum:
        MAX_PORTS "PYXSW_MAX_PORTS"     # switch ports: the rows of the program's maps
        PYXSW_MAX_QUEUES
        PYXSW_FP_IN
        PYXSW_FP_OUT
        PYXSW_FP_OUT_SG
        PYXSW_VLAN_WORDS
        PYXSW_IFX_DIRECT
        PYXSW_CONFIG_FASTPATH
        PYXSW_CONFIG_MAX_FRAME
    const char *PYXSW_PROG_NAME

    struct pyxsw_port:
        uint32_t seq
        uint32_t flags
        uint16_t untagged
        uint16_t vlan_mode
        uint32_t max_len
        uint64_t vlans[64]

    struct pyxsw_fdb_val:
        uint32_t port
        uint32_t seen
