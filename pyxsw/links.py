"""Interfaces as the kernel reports them, through rtnetlink (pyroute2).

    links = Links()                      # two netlink sockets, held for the switch's life
    link = links.get(ifindex=7)          # a Link, or None when no such interface exists
    changed = links.read()               # after select() says links.fileno() is readable

The switch follows its ports by interface index, not by name: an interface deleted and made
again under the same name is a new interface, and one renamed is still the same.  The kernel
sends an RTM_NEWLINK or RTM_DELLINK message to the link group on every change that matters
here (carrier, operstate, an XDP program attached, detached or replaced), so the switch
learns of them as they happen and never polls sysfs: reading state must not need a new file
descriptor, since a process out of descriptors would read every port as down (issue 9).

An error while reading is never a state: `get()` raises LinkError and the caller keeps what it
knew; a lost notification (ENOBUFS when the socket's buffer overflowed) is reported by `read()`
as RESYNC, and the caller then asks again about everything it follows.
"""
from __future__ import annotations

import errno
import socket
import struct
import threading
from dataclasses import dataclass

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

IFF_LOOPBACK = 0x8
RTMGRP_LINK = 0x1
RTM_NEWLINK, RTM_DELLINK = 16, 17
IFLA_IFNAME = 3
NLMSG_HDR = struct.Struct("=IHHII")     # length, type, flags, sequence, port id
IFINFO = struct.Struct("=BxHiII")       # family, type, index, flags, change
RTA = struct.Struct("=HH")              # length, type
RESYNC = "resync"                       # read(): notifications were lost, ask again
RCVBUF = 4 << 20                        # a burst of link changes must not overflow it

# IFLA_XDP's per-mode program attributes, by the mode the switch attached in.
_XDP_ID = {"generic": "IFLA_XDP_SKB_PROG_ID", "native": "IFLA_XDP_DRV_PROG_ID"}


class LinkError(OSError):
    """The kernel could not be asked (not: the interface does not exist)."""


@dataclass(frozen=True)
class Link:
    ifindex: int
    name: str
    up: bool                            # carrier and operationally up (or "unknown")
    loopback: bool
    xdp: dict                           # {"generic"|"native"|"any": program id} attached

    def xdp_id(self, mode):
        """The id of the XDP program attached in `mode` ("generic"/"native"), 0 if none."""
        return self.xdp.get(mode, self.xdp.get("any", 0)) if mode in _XDP_ID else 0


def _link(msg) -> Link:
    xdp = {}
    attrs = msg.get("IFLA_XDP")
    if attrs is not None:
        for mode, key in _XDP_ID.items():
            if attrs.get(key):
                xdp[mode] = attrs.get(key)
        if attrs.get("IFLA_XDP_PROG_ID"):
            xdp["any"] = attrs.get("IFLA_XDP_PROG_ID")
    oper = msg.get("IFLA_OPERSTATE")
    return Link(ifindex=msg["index"], name=msg.get("IFLA_IFNAME") or "",
                up=msg.get("IFLA_CARRIER") == 1 and oper in ("UP", "UNKNOWN"),
                loopback=bool(msg["flags"] & IFF_LOOPBACK), xdp=xdp)


def _touched(data, out):
    """Add the ifindex and name of every link message in a netlink datagram to `out`: all
    the notifications say here is which interfaces to ask about again."""
    off = 0
    while off + NLMSG_HDR.size + IFINFO.size <= len(data):
        length, kind = NLMSG_HDR.unpack_from(data, off)[:2]
        if length < NLMSG_HDR.size:
            break
        if kind in (RTM_NEWLINK, RTM_DELLINK):
            body = off + NLMSG_HDR.size
            out.add(IFINFO.unpack_from(data, body)[2])
            a, end = body + IFINFO.size, off + length
            while a + RTA.size <= end:
                alen, atype = RTA.unpack_from(data, a)
                if alen < RTA.size:
                    break
                if atype == IFLA_IFNAME:
                    out.add(data[a + RTA.size:a + alen].split(b"\0")[0].decode(errors="replace"))
                a += (alen + 3) & ~3
        off += (length + 3) & ~3


class Links:
    def __init__(self):
        self._lock = threading.Lock()   # one request at a time on the query socket
        # Notifications arrive on a plain netlink socket: each only says which interface to
        # ask about again, and a select()able socket with nothing buffered in front of it is
        # what the housekeeping loop needs (pyroute2 reads ahead into a queue of its own).
        self._events = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_NONBLOCK
                                     | socket.SOCK_CLOEXEC, socket.NETLINK_ROUTE)
        try:
            try:
                self._events.setsockopt(socket.SOL_SOCKET, 33, RCVBUF)     # SO_RCVBUFFORCE
            except OSError:
                self._events.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
            self._events.bind((0, RTMGRP_LINK))
            self._query = IPRoute()
        except BaseException:
            self._events.close()
            raise

    def close(self):
        for s in (self._events, self._query):
            try:
                s.close()
            except Exception:
                pass

    def fileno(self):
        """Readable when link notifications are waiting: select() on it, then read()."""
        return self._events.fileno()

    def read(self):
        """The interfaces the waiting notifications are about: a set of ifindexes and names,
        or RESYNC when some were lost (then ask about everything again)."""
        touched = set()
        while True:
            try:
                data = self._events.recv(1 << 16)
            except BlockingIOError:
                return touched
            except OSError as e:
                if e.errno == errno.ENOBUFS:
                    return RESYNC
                raise LinkError(e.errno, f"reading link notifications: {e.strerror or e}") from e
            _touched(data, touched)

    def get(self, *, ifindex=None, name=None) -> Link | None:
        """The interface with that index (or name) as it is now; None if there is none.
        LinkError when the kernel cannot be asked."""
        kw = {"index": ifindex} if ifindex is not None else {"ifname": name}
        try:
            with self._lock:
                msgs = self._query.link("get", **kw)
        except NetlinkError as e:
            if e.code == errno.ENODEV:
                return None
            raise LinkError(e.code, f"asking about interface {ifindex or name}: {e}") from e
        except OSError as e:
            raise LinkError(e.errno, f"asking about interface {ifindex or name}: {e}") from e
        return _link(msgs[0]) if msgs else None

    def addresses(self, ifindex):
        """The interface's IP addresses that a host could be using: IPv4, and IPv6 but link-
        local ones (every interface with IPv6 has one)."""
        try:
            with self._lock:
                msgs = self._query.get_addr(index=ifindex)
        except (NetlinkError, OSError):
            return []
        return [f"{m.get('IFA_ADDRESS')}/{m['prefixlen']}" for m in msgs
                if m["family"] == 2 or m["scope"] < 253]
