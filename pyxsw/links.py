"""Interfaces as the kernel reports them, through rtnetlink.

    links = Links()                      # two netlink sockets, held for the switch's life
    link = links.get(ifindex=7)          # a Link, or None when no such interface exists
    changed = links.read()               # once links.fileno() polls readable

The switch follows its ports by interface index, not by name: an interface deleted and made
again under the same name is a new interface, and one renamed is still the same.  The kernel
sends an RTM_NEWLINK or RTM_DELLINK message to the link group on every change that matters
here (carrier, operstate, an XDP program attached, detached or replaced), so the switch
learns of them as they happen and never polls sysfs.

Reading state needs no new file descriptor, in any thread: a process out of descriptors
would otherwise read its ports as down (issue 9).  That is why this speaks rtnetlink itself
on two sockets made once, rather than through pyroute2, whose IPRoute keeps a socket and an
event loop per calling thread and opens them on a thread's first call.  An error is never a
state: `get()` raises LinkError and the caller keeps what it knew; a lost notification
(ENOBUFS: the socket's buffer overflowed) is reported by `read()` as RESYNC, and the caller
then asks again about everything it follows.
"""
from __future__ import annotations

import errno
import ipaddress
import socket
import struct
import threading
from dataclasses import dataclass

IFF_LOOPBACK = 0x8
RTMGRP_LINK = 0x1
NLMSG_ERROR, NLMSG_DONE = 2, 3
RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK = 16, 17, 18
RTM_NEWADDR, RTM_GETADDR = 20, 22
NLM_F_REQUEST, NLM_F_DUMP = 0x1, 0x300
IFLA_IFNAME, IFLA_OPERSTATE, IFLA_CARRIER, IFLA_XDP = 3, 16, 33, 43
IFLA_XDP_DRV_PROG_ID, IFLA_XDP_SKB_PROG_ID = 5, 6
IFA_ADDRESS, IFA_LOCAL = 1, 2
RT_SCOPE_LINK = 253
OPER_UP, OPER_UNKNOWN = 6, 0
SO_RCVBUFFORCE = 33

NLMSG_HDR = struct.Struct("=IHHII")     # length, type, flags, sequence, port id
IFINFO = struct.Struct("=BxHiII")       # family, type, index, flags, change
IFADDR = struct.Struct("=BBBBI")        # family, prefix length, flags, scope, index
RTA = struct.Struct("=HH")              # length, type
RESYNC = "resync"                       # read(): notifications were lost, ask again
RCVBUF = 4 << 20                        # a burst of link changes must not overflow it
TIMEOUT = 2.0                           # the kernel answers at once; never wait forever

# IFLA_XDP's per-mode program attributes, by the mode the switch attached in.
_XDP_ID = {"generic": IFLA_XDP_SKB_PROG_ID, "native": IFLA_XDP_DRV_PROG_ID}


class LinkError(OSError):
    """The kernel could not be asked (not: the interface does not exist)."""


@dataclass(frozen=True)
class Link:
    ifindex: int
    name: str
    up: bool                            # carrier and operationally up (or "unknown")
    loopback: bool
    xdp: dict                           # {"generic"|"native": program id} attached

    def xdp_id(self, mode):
        """The id of the XDP program attached in `mode` ("generic"/"native"), 0 if none."""
        return self.xdp.get(mode, 0)


def _messages(data):
    """(type, flags, sequence, body) of each netlink message in a datagram; a truncated or
    malformed one ends the walk (the kernel never sends one; a datagram is never trusted)."""
    off = 0
    while off + NLMSG_HDR.size <= len(data):
        length, kind, flags, seq, _ = NLMSG_HDR.unpack_from(data, off)
        if length < NLMSG_HDR.size or off + length > len(data):
            return
        yield kind, flags, seq, data[off + NLMSG_HDR.size:off + length]
        off += (length + 3) & ~3


def _attrs(body, start):
    """{type: payload} of the route attributes in body[start:] (nesting bit masked)."""
    out = {}
    a = start
    while a + RTA.size <= len(body):
        alen, atype = RTA.unpack_from(body, a)
        if alen < RTA.size or a + alen > len(body):
            break
        out[atype & 0x3fff] = body[a + RTA.size:a + alen]
        a += (alen + 3) & ~3
    return out


def _u(payload, default=0):
    """A netlink integer attribute (u8 or u32, host order)."""
    if len(payload) >= 4:
        return struct.unpack_from("=I", payload)[0]
    return payload[0] if payload else default


def _name(payload):
    return payload.split(b"\0")[0].decode(errors="replace")


def _link(body) -> Link | None:
    if len(body) < IFINFO.size:
        return None
    _, _, index, flags, _ = IFINFO.unpack_from(body)
    at = _attrs(body, IFINFO.size)
    xdp = {}
    if IFLA_XDP in at:
        nested = _attrs(at[IFLA_XDP], 0)
        for mode, key in _XDP_ID.items():       # one per mode attached
            if _u(nested.get(key, b"")):
                xdp[mode] = _u(nested[key])
    oper = _u(at.get(IFLA_OPERSTATE, b""), OPER_UNKNOWN)
    return Link(ifindex=index, name=_name(at.get(IFLA_IFNAME, b"")),
                up=_u(at.get(IFLA_CARRIER, b"")) == 1 and oper in (OPER_UP, OPER_UNKNOWN),
                loopback=bool(flags & IFF_LOOPBACK), xdp=xdp)


def _socket():
    return socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC,
                         socket.NETLINK_ROUTE)


class Links:
    def __init__(self):
        self._lock = threading.Lock()   # one request at a time on the query socket
        self._seq = 0
        self._events = _socket()
        try:
            self._events.setblocking(False)
            try:
                self._events.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, RCVBUF)
            except OSError:
                self._events.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
            self._events.bind((0, RTMGRP_LINK))
            self._query = _socket()
            self._query.settimeout(TIMEOUT)
            self._query.bind((0, 0))
        except BaseException:
            self._events.close()
            raise

    def close(self):
        self._events.close()
        if hasattr(self, "_query"):
            self._query.close()

    def fileno(self):
        """Readable when link notifications are waiting: poll it, then read()."""
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
            for kind, _, _, body in _messages(data):
                if kind in (RTM_NEWLINK, RTM_DELLINK):
                    link = _link(body)
                    if link is not None:
                        touched.add(link.ifindex)
                        if link.name:
                            touched.add(link.name)

    def get(self, *, ifindex=None, name=None) -> Link | None:
        """The interface with that index (or name) as it is now; None if there is none.
        LinkError when the kernel cannot be asked."""
        attrs = b""
        if ifindex is None:
            raw = name.encode() + b"\0"
            attrs = RTA.pack(RTA.size + len(raw), IFLA_IFNAME) + raw
            attrs += b"\0" * (-len(attrs) % 4)
        body = IFINFO.pack(socket.AF_UNSPEC, 0, ifindex or 0, 0, 0) + attrs
        what = f"interface {ifindex if ifindex is not None else name}"
        for kind, body in self._ask(RTM_GETLINK, NLM_F_REQUEST, body, what):
            if kind == RTM_NEWLINK:
                return _link(body)
        return None

    def addresses(self, ifindex):
        """The interface's IP addresses that a host could be using: IPv4, and IPv6 but
        link-local ones (every interface with IPv6 has one).  LinkError if it cannot tell."""
        out = []
        body = IFADDR.pack(socket.AF_UNSPEC, 0, 0, 0, 0)
        for kind, body in self._ask(RTM_GETADDR, NLM_F_REQUEST | NLM_F_DUMP, body,
                                    f"the addresses of interface {ifindex}"):
            if kind != RTM_NEWADDR or len(body) < IFADDR.size:
                continue
            family, plen, _, scope, index = IFADDR.unpack_from(body)
            if index != ifindex or scope >= RT_SCOPE_LINK:
                continue
            at = _attrs(body, IFADDR.size)
            raw = at.get(IFA_LOCAL) or at.get(IFA_ADDRESS)  # LOCAL: ours on point-to-point
            if raw and family in (socket.AF_INET, socket.AF_INET6):
                out.append(f"{ipaddress.ip_address(raw)}/{plen}")
        return out

    def _ask(self, kind, flags, body, what):
        """[(type, body)] of the kernel's answer to one request: one message, or a dump up
        to NLMSG_DONE.  An ENODEV error answer is an empty list (no such interface)."""
        with self._lock:
            self._seq = (self._seq + 1) & 0xffffffff
            seq = self._seq
            msg = NLMSG_HDR.pack(NLMSG_HDR.size + len(body), kind, flags, seq, 0) + body
            out = []
            try:
                self._query.send(msg)
                while True:
                    data = self._query.recv(1 << 16)
                    for mkind, _, mseq, mbody in _messages(data):
                        if mseq != seq:
                            continue            # the rest of an earlier, abandoned answer
                        if mkind == NLMSG_ERROR:
                            err = -struct.unpack_from("=i", mbody)[0] if len(mbody) >= 4 else 0
                            if err in (0, errno.ENODEV):
                                return out
                            raise LinkError(err, f"asking about {what}: {errno.errorcode.get(err, err)}")
                        if mkind == NLMSG_DONE:
                            return out
                        out.append((mkind, mbody))
                    if not flags & NLM_F_DUMP and out:
                        return out
            except LinkError:
                raise
            except OSError as e:
                raise LinkError(e.errno or errno.EIO,
                                f"asking about {what}: {e.strerror or e}") from e
