"""Every counter pyxsw keeps, declared once.

One table per family.  Each entry has the name the RPC, `pyxsw ctl` and the Python
dictionaries show, a kind (COUNTER only ever grows; GAUGE is a level that goes up and down,
or a setting) and one line of help.  Nothing else spells these names:

- setup.py generates `xdp/pyxsw_counters.h` (one C enum per family: PORT_RX_PACKETS, ...,
  and their number, PORT_COUNTERS) and `pyxsw/includes/counters.pxd` (the same for Cython) from these tables
  at build time.  The core's structures hold `uint64_t c[PORT_COUNTERS]` arrays indexed by
  those enums, and the XDP program counts into slots numbered by them.
- The core builds the dictionaries it returns (port_stats, worker_stats, fdb_counters,
  accounting) by walking these tables over its arrays; `pyxsw ctl` and `pyxsw demo` take
  their columns from them; a later issue's Prometheus exposition can take help and kind.

Pure Python, standard library only: `pyxsw ctl` uses it without the compiled core, and
setup.py loads this file on its own before anything is built.
"""
from __future__ import annotations

from typing import NamedTuple

COUNTER, GAUGE = "counter", "gauge"


class Counter(NamedTuple):
    name: str
    kind: str                   # COUNTER or GAUGE
    help: str
    in_c: bool = True           # a slot in the core's array; False: derived from others here
    summary: bool = False       # a column of the one-line-per-port tables (ctl, demo)
    per_queue: bool = False     # also shown for each queue of a port
    fdb: bool = False           # a worker's learning counter, summed into the FDB's counters


class Family(NamedTuple):
    name: str
    prefix: str                 # of the C enum's names: prefix + NAME
    help: str
    counters: tuple

    @property
    def count(self):
        """The C name of how many counters the C side keeps: PORT_COUNTERS, ..."""
        return f"{self.name.upper()}_COUNTERS"

    @property
    def names(self):
        return tuple(c.name for c in self.counters)

    def in_c(self):
        """The counters the C side keeps, in their enum's order."""
        return tuple(c for c in self.counters if c.in_c)


# Per port, kept per (worker, port) by the worker that owns the port's queue and summed.
# The first seven, in this order, are the design's port counters (the tables' columns).
PORT = Family("port", "PORT_", "one switch port, summed over its queues", (
    Counter("rx_packets", COUNTER, "frames received", summary=True, per_queue=True),
    Counter("rx_bytes", COUNTER, "bytes received", summary=True),
    Counter("tx_packets", COUNTER, "frames sent", summary=True, per_queue=True),
    Counter("tx_bytes", COUNTER, "bytes sent", summary=True),
    Counter("rx_dropped", COUNTER, "frames lost on receive: the kernel's rx_dropped and "
            "rx_ring_full of this port's sockets, plus runts and oversize_dropped", in_c=False,
            summary=True),
    Counter("tx_dropped", COUNTER, "frames not sent: TX ring full, or no free frame for a "
            "flood copy", summary=True),
    Counter("flooded", COUNTER, "frames received here and flooded", summary=True),
    Counter("runts", COUNTER, "frames shorter than an Ethernet header"),
    Counter("filtered", COUNTER, "frames whose destination sits on the port they came in by"),
    Counter("flood_limited", COUNTER, "floods dropped by the port's flood_limit"),
    Counter("reserved_dropped", COUNTER, "frames to 01:80:c2:00:00:0x (STP, LACP, LLDP...) "
            "not forwarded"),
    Counter("vlan_dropped", COUNTER, "frames not in a VLAN the port carries: a VLAN it does not "
            "allow, a tag on an access port, no tag on a trunk without a native VLAN"),
    Counter("mirror_dropped", COUNTER, "frames received on a mirror's output port, which "
            "forwards nothing while it mirrors"),
    Counter("capture_lost", COUNTER, "frames of this port a capture missed: its worker's "
            "capture ring was full"),
    Counter("oversize_dropped", COUNTER, "frames received longer than the switch carries "
            "([switch] max_frame; a UMEM frame where multi-buffer is off)"),
))

# The kernel's XDP_STATISTICS of one AF_XDP socket: per queue, and summed per port ("xdp").
QUEUE = Family("queue", "QUEUE_", "the kernel's statistics of one AF_XDP socket", (
    Counter("rx_dropped", COUNTER, "frames the kernel dropped: no fill-ring frame, or too "
            "large for a UMEM frame"),
    Counter("rx_invalid_descs", COUNTER, "invalid descriptors on the fill ring"),
    Counter("tx_invalid_descs", COUNTER, "invalid descriptors on the TX ring"),
    Counter("rx_ring_full", COUNTER, "frames dropped for want of RX-ring room"),
    Counter("rx_fill_ring_empty_descs", COUNTER, "times the fill ring was found empty"),
    Counter("tx_ring_empty_descs", COUNTER, "times the TX ring was found empty"),
))

# The XDP program's per-CPU counters of one port (summed over CPUs), beside QUEUE in "xdp".
PROG = Family("prog", "PYXSW_", "pyxsw's XDP program on one port", (
    Counter("prog_seen", COUNTER, "frames the XDP program ran on"),
    Counter("prog_redirected", COUNTER, "frames it handed to an AF_XDP socket"),
    Counter("prog_passed", COUNTER, "frames it left to the kernel: no socket on that queue"),
    Counter("prog_oversize", COUNTER, "frames it dropped as longer than the switch carries "
            "(in the port's oversize_dropped)"),
))

# The frames the XDP program forwarded itself (fastpath = "xdp"), per CPU and summed: a port's
# "fastpath" map, and its share of the port's counters, which count every frame either way.
FASTPATH = Family("fastpath", "PYXSW_FAST_", "frames the XDP program forwarded in the kernel", (
    Counter("rx_packets", COUNTER, "frames received here and forwarded in the kernel"),
    Counter("rx_bytes", COUNTER, "their bytes"),
    Counter("tx_packets", COUNTER, "frames the kernel forwarded out of this port"),
    Counter("tx_bytes", COUNTER, "their bytes (after a tag was pushed or popped)"),
))

WORKER = Family("worker", "WORKER_", "one worker thread (queue q of every port)", (
    Counter("loops", COUNTER, "passes of the worker loop"),
    Counter("idle_loops", COUNTER, "passes that found nothing to do"),
    Counter("cycles", COUNTER, "time-stamp counter cycles of its passes, asleep included: "
            "its time"),
    Counter("busy_cycles", COUNTER, "cycles of the passes that found frames: its busy time"),
    Counter("wakeups", COUNTER, "returns from poll(2) (interrupt and adaptive modes)"),
    Counter("rx_kicks", COUNTER, "receive calls made for busy polling"),
    Counter("tx_kicks", COUNTER, "send calls made to start transmission"),
    Counter("learned", COUNTER, "MACs learned", fdb=True),
    Counter("moved", COUNTER, "MACs that moved to another port", fdb=True),
    Counter("learn_full", COUNTER, "MACs not learned: the FDB was full", fdb=True),
    Counter("learn_limited", COUNTER, "MACs not learned: the port was at its limit", fdb=True),
    Counter("learn_busy", COUNTER, "learnings skipped while a writer held the FDB", fdb=True),
    Counter("pool_empty", COUNTER, "times a frame was wanted and none was free"),
    Counter("cache", GAUGE, "free frames in the worker's own cache"),
    Counter("events_lost", COUNTER, "events dropped because the event ring was full"),
    Counter("captured", COUNTER, "frames copied into the capture ring"),
    Counter("capture_lost", COUNTER, "frames a capture missed: its ring was full"),
    Counter("mirrored", COUNTER, "frames copied to a mirror's output port"),
    Counter("frames_from_pool", COUNTER, "frames taken from the shared pool"),
    Counter("frames_to_pool", COUNTER, "frames given back to the shared pool"),
    Counter("frames_from_rx", COUNTER, "frames taken from RX rings"),
    Counter("frames_from_completion", COUNTER, "frames reaped from completion rings"),
    Counter("frames_to_fill", COUNTER, "frames put on fill rings"),
    Counter("frames_to_tx", COUNTER, "frames put on TX rings"),
))

# The FDB's own figures; then the workers' learning counters, summed.
FDB = Family("fdb", "FDB_", "the MAC table", (
    Counter("entries", GAUGE, "live entries, static ones included"),
    Counter("capacity", GAUGE, "entries at most (fdb.capacity)"),
    Counter("slots", GAUGE, "slots of the hash table"),
    Counter("tombstones", GAUGE, "deleted slots a rebuild will reclaim"),
    Counter("aging", GAUGE, "seconds an unseen learned entry lives; 0 never ages"),
    Counter("port_limit", GAUGE, "learned entries per port at most; 0 is no limit"),
    Counter("aged", COUNTER, "entries removed by aging"),
) + tuple(c._replace(in_c=False) for c in WORKER.counters if c.fdb))

# Where the UMEM's frames are (Switch.accounting()).
POOL = Family("pool", "POOL_", "where every UMEM frame is", (
    Counter("frames", GAUGE, "frames in the UMEM"),
    Counter("pool", GAUGE, "frames on the shared free stack"),
    Counter("caches", GAUGE, "frames in the workers' caches"),
    Counter("fill", GAUGE, "frames in fill rings"),
    Counter("rx", GAUGE, "frames in RX rings"),
    Counter("tx", GAUGE, "frames in TX rings"),
    Counter("completion", GAUGE, "frames in completion rings"),
    Counter("placed", GAUGE, "the sum of the six above"),
    Counter("in_flight", GAUGE, "frames in the kernel or a worker's hands: frames - placed"),
    Counter("fill_target", GAUGE, "frames kept in each fill ring"),
))

FAMILIES = (PORT, QUEUE, PROG, FASTPATH, WORKER, FDB, POOL)

# The columns of the tables that show one line per port.
PORT_SUMMARY = tuple(c.name for c in PORT.counters if c.summary)


def port_rx_dropped(port, xdp):
    """A port's rx_dropped: frames lost on receive.  The kernel had no fill-ring frame for
    them or they did not fit one (both in its rx_dropped; the first also in
    rx_fill_ring_empty_descs, so that one is not added again), or there was no RX-ring room;
    plus the runts and the frames longer than the switch carries, dropped here."""
    return (xdp.get("rx_dropped", 0) + xdp.get("rx_ring_full", 0) + port["runts"]
            + port["oversize_dropped"])


# ---------------------------------------------------------------------------- code generation

_WHAT = "Generated by setup.py from pyxsw/counters.py at build time: do not edit (not in git)."


def c_header():
    """xdp/pyxsw_counters.h: one enum per family, for the core and the XDP program."""
    out = [f"/* {_WHAT} */", "#ifndef PYXSW_COUNTERS_H", "#define PYXSW_COUNTERS_H", ""]
    for fam in FAMILIES:
        cs = fam.in_c()
        if not cs:
            continue
        out.append(f"/* {fam.name}: {fam.help} */")
        out.append(f"enum pyxsw_{fam.name}_counter {{")
        for i, c in enumerate(cs):
            out.append(f"\t{fam.prefix}{c.name.upper()} = {i},\t/* {c.kind}: {c.help} */")
        out.append(f"\t{fam.count} = {len(cs)}")
        out.append("};")
        out.append("")
    out.append("#endif")
    return "\n".join(out) + "\n"


def cython_pxd():
    """pyxsw/includes/counters.pxd: the same enums, declared for Cython."""
    out = [f"# {_WHAT}", 'cdef extern from "pyxsw_counters.h" nogil:']
    for fam in FAMILIES:
        cs = fam.in_c()
        if not cs:
            continue
        out.append(f"    enum:  # pyxsw_{fam.name}_counter (anonymous here: Cython indexes arrays by it)")
        out += [f"        {fam.prefix}{c.name.upper()}" for c in cs]
        out.append(f"        {fam.count}")
    return "\n".join(out) + "\n"
