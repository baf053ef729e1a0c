"""The NAPI deferral that preferred busy polling needs, set on a port while it is one.

    nd = Netdev()                                   # pyxsw.links: the netdev family
    napis(nd, ifindex)                              # [Napi]: the device's NAPI instances
    t = Tuning(nd, "s0", ifindex)                   # set (a warning, not an error, if it cannot)
    t.view()                                        # what was set, for `status`; None: nothing
    t.close()                                       # the previous values back

In poll mode the workers busy-poll their sockets with SO_PREFER_BUSY_POLL.  That masks the
device's interrupts only while the NAPI instance defers them: `napi_defer_hard_irqs` (how
many polls that find nothing before the IRQ is re-armed) and `gro_flush_timeout` (the
watchdog that schedules NAPI if nobody polled within that many nanoseconds) must both be
non-zero (Documentation/networking/napi.rst, "preferred busy polling").  Left at 0, the
default, every frame still raises an interrupt and the kernel's softirq races the worker for
the queue.

The values are those of the preferred-busy-polling series for AF_XDP (its xdpsock example,
and pyxsw doctor's fix): DEFER_HARD_IRQS 2 lets one poll come back empty (a worker between
bursts) without handing the queue back to interrupts; GRO_FLUSH_TIMEOUT 200 us is far longer
than a worker's loop (microseconds), so the workers do the NAPI work, yet short enough that a
worker that stops polling (stopped, preempted) leaves the queue to softirq within 0.2 ms.

Where the kernel sets them per NAPI instance through the netdev family (NETDEV_CMD_NAPI_SET,
Linux 6.13+) they are set on each of the device's instances, else on the device through
/sys/class/net/IF/ (5.11+), which is also what a device with no NAPI instance listed gets: its
instances made later start from the device's values.  Standard library only.
"""
from __future__ import annotations

import errno
import logging
import socket
import struct

from .links import NLM_F_ACK, NLM_F_DUMP, LinkError, _attr, _uint

log = logging.getLogger("pyxsw")

DEFER_HARD_IRQS, GRO_FLUSH_TIMEOUT = 2, 200000       # see above; ns for the timeout

# include/uapi/linux/netdev.h
NETDEV_CMD_NAPI_GET, NETDEV_CMD_NAPI_SET = 11, 14
NETDEV_A_NAPI_IFINDEX, NETDEV_A_NAPI_ID, NETDEV_A_NAPI_IRQ = 1, 2, 3
NETDEV_A_NAPI_DEFER_HARD_IRQS, NETDEV_A_NAPI_GRO_FLUSH_TIMEOUT = 5, 6

SYS_NET = "/sys/class/net"
KEYS = ("napi_defer_hard_irqs", "gro_flush_timeout")   # sysfs names, per device


def parse_napi(at):
    """{"id", "ifindex", "irq", "defer_hard_irqs", "gro_flush_timeout"} of one napi-get
    answer's attributes ({type: payload}); None when it has no id or ifindex.  The two
    settings are None where the kernel does not report them (before 6.13)."""
    napi_id = _uint(at.get(NETDEV_A_NAPI_ID, b""))
    ifindex = _uint(at.get(NETDEV_A_NAPI_IFINDEX, b""))
    if not napi_id or not ifindex:
        return None
    irq = at.get(NETDEV_A_NAPI_IRQ)
    return {"id": napi_id, "ifindex": ifindex, "irq": None if irq is None else _uint(irq),
            "defer_hard_irqs": _uint(at.get(NETDEV_A_NAPI_DEFER_HARD_IRQS, b"")),
            "gro_flush_timeout": _uint(at.get(NETDEV_A_NAPI_GRO_FLUSH_TIMEOUT, b""))}


def per_napi(netdev):
    """Whether this kernel sets the deferral per NAPI instance (napi-set, Linux 6.13+)."""
    return netdev is not None and NETDEV_CMD_NAPI_SET in netdev.ops


def napis(netdev, ifindex):
    """The device's NAPI instances now, by id; [] when it has none (a veth without XDP or
    GRO).  LinkError when the kernel cannot be asked."""
    found = netdev.request(NETDEV_CMD_NAPI_GET,
                           _attr(NETDEV_A_NAPI_IFINDEX, struct.pack("=I", ifindex)),
                           f"the NAPI instances of interface {ifindex}", flags=NLM_F_DUMP)
    out = [n for n in map(parse_napi, found) if n is not None and n["ifindex"] == ifindex]
    return sorted(out, key=lambda n: n["id"])


def napi_set(netdev, napi_id, defer, flush):
    """Set one NAPI instance's deferral; LinkError (ENOENT: it is gone; EPERM) if refused."""
    netdev.request(NETDEV_CMD_NAPI_SET,
                   _attr(NETDEV_A_NAPI_ID, struct.pack("=I", napi_id))
                   + _attr(NETDEV_A_NAPI_DEFER_HARD_IRQS, struct.pack("=I", defer))
                   + _attr(NETDEV_A_NAPI_GRO_FLUSH_TIMEOUT, struct.pack("=Q", flush)),
                   f"NAPI instance {napi_id}", absent=(), flags=NLM_F_ACK)


def read_device(name):
    """(napi_defer_hard_irqs, gro_flush_timeout) of a device from sysfs; None if it has no
    such files (a kernel before 5.11) or they cannot be read."""
    try:
        return tuple(int(open(f"{SYS_NET}/{name}/{k}").read()) for k in KEYS)
    except (OSError, ValueError):
        return None


def write_device(name, defer, flush):
    for k, v in zip(KEYS, (defer, flush)):
        with open(f"{SYS_NET}/{name}/{k}", "w") as f:
            f.write(str(v))


def masks(defer, flush):
    """Whether these values let SO_PREFER_BUSY_POLL mask interrupts: both non-zero."""
    return bool(defer) and bool(flush)


def _reason(e):
    if isinstance(e, OSError) and e.errno in (errno.EPERM, errno.EACCES):
        return "not permitted (CAP_NET_ADMIN)"
    return getattr(e, "strerror", None) or str(e)


class Tuning:
    """The deferral set on one port's interface, held like promiscuous mode: the values it
    found are remembered and put back by close(), only on the interface it set them on
    (the same ifindex: NAPI instances are asked for by ifindex, sysfs through its name now).
    Setting never fails the port: what cannot be set is warned about, naming the port, and
    `problem` says it.  Nothing here survives SIGKILL: the values stay as set (harmless in
    poll mode; `pyxsw doctor` shows them)."""

    def __init__(self, netdev, name, ifindex, defer=DEFER_HARD_IRQS, flush=GRO_FLUSH_TIMEOUT):
        self.netdev, self.name, self.ifindex = netdev, name, ifindex
        self.defer, self.flush = defer, flush
        self.via = None                 # "napi" | "sysfs": where the values were set
        self.was = {}                   # {napi id | "device": (defer, flush) found there}
        self.problem = ""
        try:
            self._set()
        except (OSError, LinkError) as e:
            self.problem = f"cannot set the NAPI deferral for busy polling: {_reason(e)}"
            log.warning("port %s: %s: SO_PREFER_BUSY_POLL masks no interrupts (set "
                        "napi_defer_hard_irqs and gro_flush_timeout by hand)", name,
                        self.problem)

    def _set(self):
        if per_napi(self.netdev):
            found = napis(self.netdev, self.ifindex)
            if found:
                for n in found:         # one refused: those before it are restored later
                    napi_set(self.netdev, n["id"], self.defer, self.flush)
                    self.was[n["id"]] = (n["defer_hard_irqs"] or 0, n["gro_flush_timeout"] or 0)
                    self.via = "napi"
                log.info("port %s: busy-poll tuning: NAPI instance(s) %s: defer_hard_irqs %d, "
                         "gro_flush_timeout %d ns", self.name, ",".join(map(str, self.was)),
                         self.defer, self.flush)
                return
        name = socket.if_indextoname(self.ifindex)
        was = read_device(name)
        if was is None:
            raise OSError(errno.EOPNOTSUPP, f"no per-NAPI settings and no {SYS_NET}/{name}/"
                          f"napi_defer_hard_irqs (a kernel before 5.11)")
        try:
            write_device(name, self.defer, self.flush)
        except OSError:
            try:
                write_device(name, *was)    # the first written, the second refused
            except OSError:
                pass
            raise
        self.via = "sysfs"
        self.was["device"] = was
        log.info("port %s: busy-poll tuning: device %s: napi_defer_hard_irqs %d, "
                 "gro_flush_timeout %d ns", self.name, name, self.defer, self.flush)

    def view(self):
        """What was set, as `status` shows it (JSON and msgpack); {"via": None, "problem"}
        when it could not be."""
        if self.via is None:
            return {"via": None, "problem": self.problem or "nothing set"}
        return {"via": self.via, "napi": [i for i in self.was if i != "device"],
                "defer_hard_irqs": self.defer, "gro_flush_timeout": self.flush,
                "was": {str(k): {"defer_hard_irqs": d, "gro_flush_timeout": f}
                        for k, (d, f) in self.was.items()}}

    def close(self):
        """Put the values found back, where the interface is still the one they were set on.
        Never raises: the interface may be gone, or its NAPI instances with it."""
        via, was, self.via, self.was = self.via, self.was, None, {}
        try:
            if via == "napi":
                now = {n["id"] for n in napis(self.netdev, self.ifindex)}
                for napi_id, (d, f) in was.items():
                    if napi_id in now:      # gone with the XDP program or the interface: none
                        napi_set(self.netdev, napi_id, d, f)
            elif via == "sysfs":
                write_device(socket.if_indextoname(self.ifindex), *was["device"])
        except (OSError, LinkError) as e:
            log.debug("port %s: NAPI deferral not restored: %s", self.name, _reason(e))
