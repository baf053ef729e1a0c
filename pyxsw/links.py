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

Whether a port can take frames that an XDP program redirects into it (the in-kernel fast
path) is not in rtnetlink: the kernel's netdev generic-netlink family (Linux 6.3+) reports
each device's XDP features, and XdpFeatures speaks it the same way, on two sockets made once:

    xf = XdpFeatures()                   # LinkError on a kernel without the family
    can_take_redirects(xf.get(ifindex))  # False while a veth's peer has neither GRO nor XDP
    changed = xf.read()                  # once xf.fileno() polls readable
"""
from __future__ import annotations

import errno
import ipaddress
import socket
import struct
import sys
import threading
from dataclasses import dataclass

IFF_LOOPBACK = 0x8
RTMGRP_LINK = 0x1
NLMSG_ERROR, NLMSG_DONE = 2, 3
RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK = 16, 17, 18
RTM_NEWADDR, RTM_GETADDR = 20, 22
NLM_F_REQUEST, NLM_F_ACK, NLM_F_DUMP = 0x1, 0x4, 0x300
IFLA_IFNAME, IFLA_MTU, IFLA_OPERSTATE, IFLA_CARRIER, IFLA_XDP = 3, 4, 16, 33, 43
IFLA_XDP_DRV_PROG_ID, IFLA_XDP_SKB_PROG_ID = 5, 6
IFA_ADDRESS, IFA_LOCAL = 1, 2
RT_SCOPE_LINK = 253
OPER_UP, OPER_UNKNOWN = 6, 0
SO_RCVBUFFORCE = 33
NETLINK_GENERIC, SOL_NETLINK, NETLINK_ADD_MEMBERSHIP = 16, 270, 1

# The generic-netlink controller, which names families (include/uapi/linux/genetlink.h) ...
GENL_ID_CTRL, CTRL_CMD_GETFAMILY = 0x10, 3
CTRL_ATTR_FAMILY_ID, CTRL_ATTR_FAMILY_NAME, CTRL_ATTR_OPS, CTRL_ATTR_MCAST_GROUPS = 1, 2, 6, 7
CTRL_ATTR_OP_ID = 1
CTRL_ATTR_MCAST_GRP_NAME, CTRL_ATTR_MCAST_GRP_ID = 1, 2
# ... and its netdev family (include/uapi/linux/netdev.h, Linux 6.3+).
NETDEV_CMD_DEV_GET, NETDEV_CMD_DEV_ADD_NTF = 1, 2
NETDEV_CMD_DEV_DEL_NTF, NETDEV_CMD_DEV_CHANGE_NTF = 3, 4
NETDEV_A_DEV_IFINDEX, NETDEV_A_DEV_XDP_FEATURES, NETDEV_A_DEV_XDP_ZC_MAX_SEGS = 1, 3, 4
NDO_XMIT = 1 << 2                       # NETDEV_XDP_ACT_NDO_XMIT: takes redirected frames
NDO_XMIT_SG = 1 << 6                    # NETDEV_XDP_ACT_NDO_XMIT_SG: ... in fragments too

NLMSG_HDR = struct.Struct("=IHHII")     # length, type, flags, sequence, port id
IFINFO = struct.Struct("=BxHiII")       # family, type, index, flags, change
IFADDR = struct.Struct("=BBBBI")        # family, prefix length, flags, scope, index
RTA = struct.Struct("=HH")              # length, type
GENL_HDR = struct.Struct("=BBxx")       # command, version, reserved
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
    mtu: int = 0                        # 0: not reported

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


def _uint(payload):
    """A netlink unsigned attribute of any width (u8..u64, host order); None if malformed."""
    return int.from_bytes(payload, sys.byteorder) if len(payload) in (1, 2, 4, 8) else None


def _attr(kind, payload):
    """One route attribute, padded to 4 bytes."""
    return RTA.pack(RTA.size + len(payload), kind) + payload + b"\0" * (-len(payload) % 4)


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
                loopback=bool(flags & IFF_LOOPBACK), xdp=xdp, mtu=_u(at.get(IFLA_MTU, b"")))


def _socket(protocol=socket.NETLINK_ROUTE):
    return socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, protocol)


def _grow_rcvbuf(sock):
    """A burst of notifications must not overflow a listening socket (root may pass the
    rmem_max cap; anyone else gets what the cap allows)."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, RCVBUF)
    except OSError:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)


class Links:
    def __init__(self):
        self._lock = threading.Lock()   # one request at a time on the query socket
        self._seq = 0
        self._events = _socket()
        try:
            self._events.setblocking(False)
            _grow_rcvbuf(self._events)
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
            return _exchange(self._query, self._seq, kind, flags, body, what, (errno.ENODEV,))


def takes_fragments(features) -> bool:
    """Whether a device takes XDP-redirected frames in several buffers (jumbo frames)."""
    return can_take_redirects(features) and bool(features & NDO_XMIT_SG)


def can_take_redirects(features) -> bool:
    """Whether a device with these XDP features (XdpFeatures.get) accepts frames an XDP
    program redirects into it.  None (no such device) cannot."""
    return features is not None and bool(features & NDO_XMIT)


def _dev(body):
    """(command, ifindex, xdp features or None) of a netdev family message, None if it names
    no device.  Features are None when absent or malformed: never read as "none"."""
    if len(body) < GENL_HDR.size:
        return None
    cmd, _ = GENL_HDR.unpack_from(body)
    at = _attrs(body, GENL_HDR.size)
    index = _uint(at.get(NETDEV_A_DEV_IFINDEX, b""))
    if not index:
        return None
    return cmd, index, _uint(at.get(NETDEV_A_DEV_XDP_FEATURES, b""))


class Netdev:
    """Requests to the kernel's netdev generic-netlink family (Linux 6.3+) on one socket made
    once, as Links does for rtnetlink: `request()` from any thread, an error a LinkError.
    `ops` are the commands this kernel has (pyxsw.napi asks for NETDEV_CMD_NAPI_SET)."""

    def __init__(self):
        self._lock = threading.Lock()   # one request at a time on the query socket
        self._seq = 0
        self._query = None
        try:
            self._query = _socket(NETLINK_GENERIC)
            self._query.settimeout(TIMEOUT)
            self._query.bind((0, 0))
            self.family, self.group, self.ops = self._resolve()
        except BaseException as e:
            self._failed(e)

    def _failed(self, e):
        """A failed open: everything closed, and e raised again (an OSError as a LinkError)."""
        self.close()
        if isinstance(e, OSError) and not isinstance(e, LinkError):
            raise LinkError(e.errno or errno.EIO,
                            f"netdev generic netlink: {e.strerror or e}") from e
        raise e

    def _resolve(self):
        """(family id, "mgmt" group id, command ids) of the netdev family, from the
        controller; LinkError when the kernel has no such family (older than 6.3)."""
        body = GENL_HDR.pack(CTRL_CMD_GETFAMILY, 1) + _attr(CTRL_ATTR_FAMILY_NAME, b"netdev\0")
        for kind, mbody in self._ask(GENL_ID_CTRL, body, "the netdev family", (errno.ENOENT,)):
            if kind != GENL_ID_CTRL or len(mbody) < GENL_HDR.size:
                continue
            at = _attrs(mbody, GENL_HDR.size)
            groups = {}
            for nested in _attrs(at.get(CTRL_ATTR_MCAST_GROUPS, b""), 0).values():
                g = _attrs(nested, 0)
                groups[_name(g.get(CTRL_ATTR_MCAST_GRP_NAME, b""))] = \
                    _uint(g.get(CTRL_ATTR_MCAST_GRP_ID, b""))
            ops = {_uint(_attrs(nested, 0).get(CTRL_ATTR_OP_ID, b""))
                   for nested in _attrs(at.get(CTRL_ATTR_OPS, b""), 0).values()}
            family = _uint(at.get(CTRL_ATTR_FAMILY_ID, b""))
            if family and groups.get("mgmt"):
                return family, groups["mgmt"], frozenset(ops - {None})
        raise LinkError(errno.ENOENT, "the kernel has no netdev generic-netlink family with a "
                        "\"mgmt\" group (Linux 6.3+): it cannot tell which devices take "
                        "XDP-redirected frames")

    def close(self):
        if self._query is not None:
            self._query.close()

    def request(self, cmd, attrs, what, absent=(errno.ENODEV, errno.ENOENT), flags=0):
        """[{attribute: payload}] of the family's answers to command `cmd` with `attrs`
        (already packed by _attr): one message, or a dump with flags NLM_F_DUMP; a change
        (NLM_F_ACK) answers []."""
        body = GENL_HDR.pack(cmd, 1) + attrs
        return [_attrs(mbody, GENL_HDR.size)
                for kind, mbody in self._ask(self.family, body, what, absent,
                                             NLM_F_REQUEST | flags)
                if kind == self.family and len(mbody) >= GENL_HDR.size]

    def _ask(self, kind, body, what, absent, flags=NLM_F_REQUEST):
        with self._lock:
            self._seq = (self._seq + 1) & 0xffffffff
            return _exchange(self._query, self._seq, kind, flags, body, what, absent)


class XdpFeatures(Netdev):
    """Each device's XDP features (NETDEV_XDP_ACT_* bits), from the netdev generic-netlink
    family: `get()` asks, `read()` follows the family's "mgmt" group, where the kernel
    announces devices added, deleted and changed (a veth gains or loses NDO_XMIT as its
    peer's GRO or XDP program comes and goes).  As with Links: two sockets made once, so no
    call opens a descriptor; an error is a LinkError, never "incapable"; lost notifications
    are RESYNC.  `features` holds the last value notified per ifindex (forgotten on a delete
    and on RESYNC); read() is meant for one thread, get() may be called from any."""

    def __init__(self):
        self._events = None
        self.features = {}
        super().__init__()
        try:
            self._events = _socket(NETLINK_GENERIC)
            self._events.setblocking(False)
            _grow_rcvbuf(self._events)
            self._events.bind((0, 0))
            self._events.setsockopt(SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, self.group)
        except BaseException as e:
            self._failed(e)

    def close(self):
        super().close()
        if self._events is not None:
            self._events.close()

    def fileno(self):
        """Readable when netdev notifications are waiting: poll it, then read()."""
        return self._events.fileno()

    def get(self, ifindex) -> int | None:
        """The device's XDP features now (a NETDEV_XDP_ACT_* bit mask); None if there is no
        such device.  LinkError when the kernel cannot be asked or answers without them."""
        dev = self.device(ifindex)
        return None if dev is None else dev[0]

    def device(self, ifindex):
        """(XDP features, zc-max-segs) of the device now, None if there is no such device.
        zc-max-segs, the descriptors a zero-copy frame may span, is None where the kernel
        does not say (devices without zero-copy, kernels before 6.6)."""
        body = GENL_HDR.pack(NETDEV_CMD_DEV_GET, 1) + \
            _attr(NETDEV_A_DEV_IFINDEX, struct.pack("=I", ifindex))
        what = f"the XDP features of interface {ifindex}"
        for kind, mbody in self._ask(self.family, body, what, (errno.ENODEV, errno.ENOENT)):
            dev = _dev(mbody) if kind == self.family else None
            if dev is not None and dev[1] == ifindex:
                if dev[2] is None:
                    raise LinkError(errno.EPROTO, f"asking about {what}: none in the answer")
                segs = _attrs(mbody, GENL_HDR.size).get(NETDEV_A_DEV_XDP_ZC_MAX_SEGS, b"")
                return dev[2], _uint(segs)
        return None

    def read(self):
        """The ifindexes the waiting notifications are about (their features may have
        changed, or they came or went): a set, or RESYNC when some were lost (then get()
        every device followed again)."""
        touched = set()
        while True:
            try:
                data = self._events.recv(1 << 16)
            except BlockingIOError:
                return touched
            except OSError as e:
                if e.errno == errno.ENOBUFS:
                    self.features.clear()       # some may be stale now
                    return RESYNC
                raise LinkError(e.errno, f"reading netdev notifications: {e.strerror or e}") from e
            for kind, _, _, body in _messages(data):
                dev = _dev(body) if kind == self.family else None
                if dev is None or dev[0] not in (NETDEV_CMD_DEV_ADD_NTF, NETDEV_CMD_DEV_DEL_NTF,
                                                 NETDEV_CMD_DEV_CHANGE_NTF):
                    continue
                cmd, index, feats = dev
                touched.add(index)
                if cmd == NETDEV_CMD_DEV_DEL_NTF or feats is None:
                    self.features.pop(index, None)
                else:
                    self.features[index] = feats


def _exchange(sock, seq, kind, flags, body, what, absent):
    """Send one request on `sock` (the caller holds its lock) and collect the answer's
    [(type, body)]: one message, or a dump up to NLMSG_DONE.  An error answer whose errno is
    in `absent` is an empty list (the thing asked about does not exist); any other failure,
    and a timeout, is a LinkError."""
    msg = NLMSG_HDR.pack(NLMSG_HDR.size + len(body), kind, flags, seq, 0) + body
    out = []
    try:
        sock.send(msg)
        while True:
            data = sock.recv(1 << 16)
            for mkind, _, mseq, mbody in _messages(data):
                if mseq != seq:
                    continue            # the rest of an earlier, abandoned answer
                if mkind == NLMSG_ERROR:
                    err = -struct.unpack_from("=i", mbody)[0] if len(mbody) >= 4 else 0
                    if err == 0 or err in absent:
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
        raise LinkError(e.errno or errno.EIO, f"asking about {what}: {e.strerror or e}") from e
