"""The words and bounds of pyxsw's interface, said once.

The configuration (pyxsw.config), the RPC methods (pyxsw.mgmt.handlers) and `pyxsw ctl`
take their choices, limits and checks from here, so that a mode, a VLAN or an interface
name cannot mean one thing in a file and another on the socket.  Standard library only:
the Cython core, the client and `ctl --help` can import it without msgpack or the build.

The core keeps the bounds that size its C arrays as enums of its own (a C array needs its
length at compile time); tests/test_vocab.py checks that they equal the ones here.

What is here:
  - the choices: MODES, XDP_MODES, ZERO_COPY, FASTPATH, FRAME_SIZES, VLAN_MODES;
  - the limits, and CORE_LIMITS, the bounds the core's Core() accepts;
  - checks that return a value in the switch's form or raise Invalid, whose text is what
    the switch replies (invalid_params) and what `pyxsw ctl` prints (usage), and the
    predicate valid_ifname() for the configuration, which words its own messages;
  - a port's 802.1Q settings (PortVlan): port_vlan() checks the keys of a [[port]] section,
    of port.set and of port.add together, vlan_list() reads "10,20,30-40", carries() says
    whether a port carries a VLAN;
  - kinds: what an RPC argument may be (a check with a name and a metavar), which the
    method table declares for every parameter.
"""
from __future__ import annotations

import collections
import os
import re

# ---------------------------------------------------------------------------- choices

MODES = ("poll", "interrupt", "adaptive")       # the workers'; the core's MODE_* enums
XDP_MODES = ("auto", "native", "generic")       # auto: native, else generic (SKB)
ZERO_COPY = ("auto", "on", "off")               # auto: probed per interface
FASTPATH = ("off", "xdp")                       # xdp: known unicast forwarded by the XDP program
FRAME_SIZES = (2048, 4096)                      # UMEM frames: the kernel takes these two
VLAN_MODES = ("access", "trunk")                # a port's 802.1Q mode (vlan_mode)
DIRECTIONS = ("in", "out", "both")              # what a capture or mirror takes of a port:
                                                # what it receives, what it sends, both

# ---------------------------------------------------------------------------- limits

U32_MAX = 2**32 - 1
VLAN_MAX = 4095                 # 802.1Q: 12 bits (0 is untagged, 4095 reserved but a key)
VLAN_ID_MIN, VLAN_ID_MAX = 1, 4094  # the VLANs a port can carry (0 and 4095 are reserved)
IFNAMSIZ = 16                   # Linux interface names: at most 15 bytes plus the NUL
# The core's arrays and counts (pyxsw/_core.pyx's enums, pyxsw/core.pyx's LIMITS), so that a
# value the file or a call accepts can never overflow a 32-bit count, hang the core's
# sizing or keep the kernel allocating for a minute.
MAX_BATCH = 256                 # frames per burst: the core's burst arrays are this long
MAX_WORKERS = 16                # entries of `cores`: the core's per-worker arrays
MAX_PORTS = 64                  # the core's per-port arrays
MAX_FRAMES = U32_MAX            # the frame pool counts in 32 bits (so does the kernel: chunks)
MAX_RING_SIZE = 32768           # 4x the largest NIC rings; the kernel takes any power of two
                                # and allocates each ring at bind time (2**31 stalled the machine)
MAX_CAPACITY = 2**24            # FDB entries: 2 x capacity slots indexed in 32 bits, 896 MiB a
                                # table at most, far beyond any switch's table
MAX_PORT_LIMIT = MAX_CAPACITY   # a limit above the capacity never bites (the core takes 2**32-1)
MAX_AGING = U32_MAX             # seconds, kept in 32 bits ([fdb] aging and aging.set)
MAX_FLOOD_LIMIT = U32_MAX       # frames/s, kept in 32 bits (line rate is far below anyway)
MAX_SNAPLEN = 262144            # bytes a captured frame keeps at most (tcpdump's default);
                                # (a frame is never longer than [switch] max_frame anyway)
MAX_NAME = 32                   # a mirror's name
XDP_HEADROOM = 256              # XDP_PACKET_HEADROOM: the kernel receives into a UMEM frame after it
VLAN_ETH_HLEN = 18              # an Ethernet header with one 802.1Q tag: a frame is MTU + this at most
# [switch] max_frame: the longest frame the switch carries.  The default lets ports at MTU
# 9000 work (9000 + VLAN_ETH_HLEN), in a chain of descriptors (multi-buffer AF_XDP) where a
# frame is larger than a UMEM frame.  A chain has MAX_FRAGS descriptors at most (the
# core's, pyxsw/types.pxi); a zero-copy driver's fragments can hold a few hundred bytes less
# than a copy-mode one's (frame_size - XDP_HEADROOM): 16 x (frame_size - 512) stays within it.
MAX_FRAGS = 18
MAX_FRAME_DEFAULT = 9216
MIN_FRAME = 64


def max_frame_limit(frame_size):
    """The largest max_frame a UMEM of frame_size frames carries."""
    return 16 * (frame_size - 512)


def kernel_at_least(major, minor):
    """Is the running kernel major.minor or later?  (For what cannot be probed cheaply: a
    kernel too old for a flag refuses it with EINVAL, among other things.)"""
    try:
        have = tuple(int(v) for v in os.uname().release.split("-")[0].split(".")[:2])
    except ValueError:
        return True                 # a release string of another shape: assume a new kernel
    return have >= (major, minor)

# What Core() accepts at most, parameter by parameter: pyxsw._core.LIMITS is the same.
CORE_LIMITS = {"frames": MAX_FRAMES, "ring_size": MAX_RING_SIZE, "batch": MAX_BATCH,
               "workers": MAX_WORKERS, "ports": MAX_PORTS, "capacity": MAX_CAPACITY,
               "port_limit": U32_MAX, "aging": MAX_AGING, "flood_limit": MAX_FLOOD_LIMIT,
               "fragments": MAX_FRAGS}

# ---------------------------------------------------------------------------- checks


class Invalid(ValueError):
    """A value the switch does not take; str() is the reason, in the switch's words.
    `key`, when set, is the argument (or config key) at fault among several checked
    together (port_vlan)."""

    def __init__(self, message, key=None):
        super().__init__(message)
        self.key = key


def show(value, limit=60):
    """A value for an error message, cut short: a request may carry a megabyte of it."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def integer(value, what, lo, hi):
    # bool is an int to Python but never a number to a user
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise Invalid(f"{what} must be an integer {lo}..{hi}, got {show(value)}")
    return value


def choice(value, what, choices):
    if value not in choices:
        raise Invalid(f"{what} must be one of {', '.join(choices)}, got {show(value)}")
    return value


def vlan(value):
    """An FDB key's VLAN (a filter may name any of the 4096)."""
    return integer(value, "vlan", 0, VLAN_MAX)


def vlan_id(value, what="vlan"):
    """A VLAN a port can carry: 1..4094."""
    return integer(value, what, VLAN_ID_MIN, VLAN_ID_MAX)


def native_vlan(value):
    """A trunk's native VLAN: 1..4094, or 0 for none (untagged frames dropped)."""
    return integer(value, "native", 0, VLAN_ID_MAX)


def vlan_mode(value):
    return choice(value, "vlan_mode", VLAN_MODES)


_vlan_mode = vlan_mode              # port_vlan() has a parameter of that name


_RANGE = re.compile(r"\s*(\d{1,4})\s*(?:-\s*(\d{1,4})\s*)?")


def vlan_list(value, what="allowed"):
    """A set of VLANs, sorted, each once: a list whose items are VLANs (10) or ranges
    ("10-20"), or the same as text ("10,20,30-40").  "all" (or None) is every VLAN: None."""
    if value is None or value == "all":
        return None
    if isinstance(value, str):
        items = value.split(",")
    elif isinstance(value, (list, tuple)):
        items = list(value)
    else:
        raise Invalid(f"{what} must be a list of VLANs 1..4094 (or ranges like 10-20), "
                      f"got {show(value)}")
    if len(items) > VLAN_ID_MAX:
        raise Invalid(f"{what}: too many items ({len(items)})")
    out = set()
    for item in items:
        if isinstance(item, int) and not isinstance(item, bool):
            out.add(vlan_id(item, what))
            continue
        m = _RANGE.fullmatch(item) if isinstance(item, str) else None
        if m is None:
            raise Invalid(f"{what} must be a list of VLANs 1..4094 (or ranges like 10-20), "
                          f"got {show(item)} in it")
        lo = vlan_id(int(m[1]), what)
        hi = vlan_id(int(m[2]), what) if m[2] else lo
        if hi < lo:
            raise Invalid(f"{what}: the range {lo}-{hi} is backwards")
        out.update(range(lo, hi + 1))
    if not out:
        raise Invalid(f"{what} must name at least one VLAN (leave it out for all)")
    return sorted(out)


def vlan_text(vlans):
    """A set of VLANs as short text: [10, 11, 12, 20] is "10-12,20"; None is "all"."""
    if vlans is None:
        return "all"
    parts, vlans = [], sorted(vlans)
    i = 0
    while i < len(vlans):
        j = i
        while j + 1 < len(vlans) and vlans[j + 1] == vlans[j] + 1:
            j += 1
        parts.append(str(vlans[i]) if i == j else f"{vlans[i]}-{vlans[j]}")
        i = j + 1
    return ",".join(parts) or "-"


_MAC = re.compile(r"[0-9a-fA-F]{2}([:-])[0-9a-fA-F]{2}(\1[0-9a-fA-F]{2}){4}")


def mac(value):
    """'aa:bb:cc:dd:ee:ff' (or with '-') in the switch's form: lower case, colons."""
    if not isinstance(value, str) or not _MAC.fullmatch(value):
        raise Invalid(f"not a MAC address (aa:bb:cc:dd:ee:ff): {show(value)}")
    return value.lower().replace("-", ":")


def station(value):
    """A MAC a static entry can hold: a station's, never a group (multicast) address."""
    m = mac(value)
    if int(m[:2], 16) & 1:
        raise Invalid(f"{m} is a multicast address: it cannot be a station")
    return m


def mac_to_int(value):
    """A MAC as the FDB's key: its six wire bytes read little-endian (the core's form)."""
    return int.from_bytes(bytes.fromhex(mac(value).replace(":", "")), "little")


def valid_ifname(name) -> bool:
    """What the kernel accepts as a name (dev_valid_name): 1..15 bytes, not '.' or '..',
    no '/', ':' or white space."""
    return (isinstance(name, str)
            and 1 <= len(name.encode("utf-8", "surrogatepass")) < IFNAMSIZ
            and name not in (".", "..")
            and not any(c in "/:" or c.isspace() or c == "\0" for c in name))


def ifname(value, what="interface name"):
    if not isinstance(value, str):
        raise Invalid(f"{what} must be a string, got {show(value)}")
    if not valid_ifname(value):
        raise Invalid(f"not a valid {what} (1..15 characters, no '/', ':' or spaces): "
                      f"{show(value)}")
    return value


def direction(value):
    return choice(value, "direction", DIRECTIONS)


def directions(value):
    """A direction as the set of the two it covers: {"in"}, {"out"} or {"in", "out"}."""
    return {"in", "out"} if value == "both" else {value}


_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def name(value, what="name"):
    """A name an operator gives (a mirror's): 1..32 letters, digits, '_', '.', '-'."""
    if not isinstance(value, str) or len(value) > MAX_NAME or not _NAME.fullmatch(value):
        raise Invalid(f"{what} must be 1..{MAX_NAME} letters, digits, '_', '.' or '-' "
                      f"(starting with a letter or digit), got {show(value)}")
    return value


def port_names(value, what="source"):
    """Ports named by a list, or by text "s0,s1": a sorted list, each once."""
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)) or not items or len(items) > MAX_PORTS:
        raise Invalid(f"{what} must name 1..{MAX_PORTS} ports (a list, or text like "
                      f"s0,s1), got {show(value)}")
    return sorted({ifname(i.strip() if isinstance(i, str) else i, "port") for i in items})


# ---------------------------------------------------------------------------- a port's VLANs

class PortVlan(collections.namedtuple("PortVlan", "vlan_mode vlan allowed native")):
    """A port's 802.1Q settings, in the form the datapath takes them
    (Datapath.port_set_vlan(p, vlan_mode, vlan, allowed, native)):
      access: vlan = its VLAN (1..4094), allowed None, native 0;
      trunk:  vlan 0, allowed = a sorted tuple of VLANs or None for all 1..4094,
              native = the VLAN of its untagged frames, 0 for none."""

    __slots__ = ()

    def carries(self, v):
        if self.vlan_mode == "access":
            return v == self.vlan
        # a native VLAN is always one of allowed (port_vlan checks it)
        return VLAN_ID_MIN <= v <= VLAN_ID_MAX and (self.allowed is None or v in self.allowed)

    def untagged(self):
        """The VLAN of the port's untagged frames: its access VLAN or native; 0 for none."""
        return self.vlan if self.vlan_mode == "access" else self.native

    def tagged(self, v):
        """Whether frames of VLAN v leave this port tagged (v must be carried)."""
        return self.vlan_mode == "trunk" and v != self.native

    def describe(self):
        """In words: "access vlan 10", "trunk allowed 10-12,20 native 0 (none)"."""
        if self.vlan_mode == "access":
            return f"access vlan {self.vlan}"
        return (f"trunk allowed {vlan_text(self.allowed)} native {self.native}"
                + (" (none)" if not self.native else ""))

    def static_vlan(self, port, v=None):
        """The VLAN of a static FDB entry on this port (port: its name): v, or when v is
        None the port's untagged VLAN.  Invalid when the port does not carry it."""
        if v is None:
            v = self.untagged()
            if not v:
                raise Invalid(f"port {port} is a trunk without a native VLAN: name the "
                              f"entry's vlan (it carries {vlan_text(self.allowed)})", key="vlan")
        if not self.carries(v):
            raise Invalid(f"port {port} does not carry vlan {v} ({self.describe()})", key="vlan")
        return v

    def view(self):
        """As port.list and port.set show it: the four keys, null where they do not apply
        (allowed null on a trunk: every VLAN)."""
        access = self.vlan_mode == "access"
        return {"vlan_mode": self.vlan_mode, "vlan": self.vlan if access else None,
                "allowed": None if access or self.allowed is None else list(self.allowed),
                "native": None if access else self.native}

    def keys(self):
        """As a [[port]] section says it: only the keys that apply (port_vlan(**keys())
        gives it back)."""
        if self.vlan_mode == "access":
            return {"vlan_mode": "access", "vlan": self.vlan}
        keys = {"vlan_mode": "trunk", "native": self.native}
        if self.allowed is not None:
            keys["allowed"] = list(self.allowed)
        return keys


DEFAULT_VLAN = 1                # a port with no VLAN keys: access on VLAN 1


def port_vlan(vlan_mode=None, vlan=None, allowed=None, native=None):
    """A port's VLAN settings from the keys of a [[port]] section, port.set or port.add
    (None: left out), checked together.  Left out: vlan_mode access, an access port's vlan
    1, a trunk's allowed every VLAN and its native 1 when allowed carries 1, else 0 (none).
    Invalid, with `key` naming the key at fault: a VLAN outside 1..4094, allowed or native
    on an access port, vlan on a trunk, a native VLAN the trunk's allowed does not list."""
    # Each value by its own check first, in this order (as an RPC's kinds check them), then
    # the keys together: a file and a request get the same answer.
    mode = "access" if vlan_mode is None else _keyed("vlan_mode", _vlan_mode, vlan_mode)
    if vlan is not None:
        vlan = _keyed("vlan", vlan_id, vlan)
    members = None
    if allowed is not None:
        members = _keyed("allowed", vlan_list, allowed)
        members = None if members is None else tuple(members)
    if native is not None:
        native = _keyed("native", native_vlan, native)
    if mode == "access":
        for key, value in (("allowed", allowed), ("native", native)):
            if value is not None:
                raise Invalid(f"{key} is for trunk ports only (an access port carries one "
                              f"VLAN: vlan)", key=key)
        return PortVlan("access", DEFAULT_VLAN if vlan is None else vlan, None, 0)
    if vlan is not None:
        raise Invalid("vlan is for access ports only (a trunk's untagged frames belong to "
                      "its native VLAN)", key="vlan")
    if native is None:
        native = DEFAULT_VLAN if members is None or DEFAULT_VLAN in members else 0
    if native and members is not None and native not in members:
        raise Invalid(f"native {native} is not one of the trunk's allowed VLANs "
                      f"({vlan_text(members)}): add it to allowed, or use 0 for none",
                      key="native")
    return PortVlan("trunk", 0, members, native)


def _keyed(key, check, value):
    try:
        return check(value)
    except Invalid as e:
        raise Invalid(str(e), key=key) from None


DEFAULT_PORT_VLAN = port_vlan()


# ---------------------------------------------------------------------------- kinds

class Kind:
    """What an RPC argument may be.  `kind(value)` is the value in the switch's form, or
    Invalid.  `name` is how the `methods` RPC calls it; `metavar` and `choices` are how
    `pyxsw ctl` shows it, and an `integer` kind is given a number when the word is one."""

    def __init__(self, name, check, *, metavar=None, choices=None, integer=False):
        self.name = name
        self.check = check
        self.metavar = metavar
        self.choices = choices
        self.integer = integer

    def __call__(self, value):
        return self.check(value)

    def __repr__(self):
        return f"<kind {self.name}>"


IFNAME = Kind("ifname", ifname, metavar="IFNAME")               # any interface
PORT = Kind("port", lambda v: ifname(v, "port"), metavar="IFNAME")  # one of the switch's
MAC = Kind("mac", mac, metavar="MAC")
STATION = Kind("station", station, metavar="MAC")               # a unicast MAC
VLAN = Kind("vlan", vlan, metavar="N", integer=True)
AGING = Kind("aging", lambda v: integer(v, "seconds", 0, MAX_AGING), metavar="SECONDS",
             integer=True)                                      # seconds; 0 never ages
MODE = Kind("mode", lambda v: choice(v, "mode", MODES), choices=MODES)
VLAN_ID = Kind("vlan_id", vlan_id, metavar="N", integer=True)   # one a port can carry
VLAN_MODE = Kind("vlan_mode", vlan_mode, choices=VLAN_MODES)
# "10,20,30-40", a list, or "all" (kept as the word: a request that says it has said it)
VLAN_LIST = Kind("vlan_list", lambda v: "all" if v == "all" else vlan_list(v), metavar="LIST")
NATIVE = Kind("native", native_vlan, metavar="N", integer=True)  # 0: none
DIRECTION = Kind("direction", direction, choices=DIRECTIONS)
NAME = Kind("name", name, metavar="NAME")
PORTS = Kind("ports", port_names, metavar="IFNAME,...")        # one or more of the switch's
SNAPLEN = Kind("snaplen", lambda v: integer(v, "snaplen", 1, MAX_SNAPLEN), metavar="N",
               integer=True)
COUNT = Kind("count", lambda v: integer(v, "count", 0, U32_MAX), metavar="N",
             integer=True)                                      # 0: no limit
