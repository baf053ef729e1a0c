"""The words and bounds of pyxsw's interface, said once.

The configuration (pyxsw.config), the RPC methods (pyxsw.mgmt.handlers) and `pyxsw ctl`
take their choices, limits and checks from here, so that a mode, a VLAN or an interface
name cannot mean one thing in a file and another on the socket.  Standard library only:
the Cython core, the client and `ctl --help` can import it without msgpack or the build.

The core keeps the bounds that size its C arrays as enums of its own (a C array needs its
length at compile time); tests/test_vocab.py checks that they equal the ones here.

What is here:
  - the choices: MODES, XDP_MODES, ZERO_COPY, FRAME_SIZES;
  - the limits, and CORE_LIMITS, the bounds the core's Core() accepts;
  - checks that return a value in the switch's form or raise Invalid, whose text is what
    the switch replies (invalid_params) and what `pyxsw ctl` prints (usage), and the
    predicate valid_ifname() for the configuration, which words its own messages;
  - kinds: what an RPC argument may be (a check with a name and a metavar), which the
    method table declares for every parameter.
"""
from __future__ import annotations

import re

# ---------------------------------------------------------------------------- choices

MODES = ("poll", "interrupt", "adaptive")       # the workers'; the core's MODE_* enums
XDP_MODES = ("auto", "native", "generic")       # auto: native, else generic (SKB)
ZERO_COPY = ("auto", "on", "off")               # auto: probed per interface
FRAME_SIZES = (2048, 4096)                      # UMEM frames: the kernel takes these two

# ---------------------------------------------------------------------------- limits

U32_MAX = 2**32 - 1
VLAN_MAX = 4095                 # 802.1Q: 12 bits (0 is untagged, 4095 reserved but a key)
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

# What Core() accepts at most, parameter by parameter: pyxsw._core.LIMITS is the same.
CORE_LIMITS = {"frames": MAX_FRAMES, "ring_size": MAX_RING_SIZE, "batch": MAX_BATCH,
               "workers": MAX_WORKERS, "ports": MAX_PORTS, "capacity": MAX_CAPACITY,
               "port_limit": U32_MAX, "aging": MAX_AGING, "flood_limit": MAX_FLOOD_LIMIT}

# ---------------------------------------------------------------------------- checks


class Invalid(ValueError):
    """A value the switch does not take; str() is the reason, in the switch's words."""


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
    return integer(value, "vlan", 0, VLAN_MAX)


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
