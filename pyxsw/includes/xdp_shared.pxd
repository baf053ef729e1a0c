# What the XDP program (xdp/pyxsw.bpf.c) and the core share: xdp/pyxsw_shared.h.  The XDP
# program's counters are PROG_* of counters.pxd (generated from pyxsw/counters.py).
cdef extern from "pyxsw_shared.h" nogil:
    enum:
        MAX_PORTS "PYXSW_MAX_PORTS"     # switch ports: the rows of the program's maps
        PYXSW_MAX_QUEUES
    const char *PYXSW_PROG_NAME
