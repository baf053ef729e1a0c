"""pcap files: what `pyxsw ctl capture -w` writes, for tcpdump -r and Wireshark.

The classic format (not pcapng), with nanosecond timestamps (magic 0xa1b23c4d), Ethernet
frames (link type 1).  Standard library only: `pyxsw ctl` uses it.
"""
from __future__ import annotations

import struct

MAGIC_NS = 0xA1B23C4D           # timestamps in nanoseconds
MAGIC_US = 0xA1B2C3D4           # in microseconds (read only)
LINKTYPE_ETHERNET = 1
_HEADER = struct.Struct("=IHHiIII")
_RECORD = struct.Struct("=IIII")


def header(snaplen, linktype=LINKTYPE_ETHERNET):
    """The file header: version 2.4, this machine's byte order."""
    return _HEADER.pack(MAGIC_NS, 2, 4, 0, 0, snaplen, linktype)


def record(ts_ns, length, data):
    """One frame: its time (ns since the epoch), its length on the wire, the bytes kept."""
    sec, ns = divmod(ts_ns, 1_000_000_000)
    return _RECORD.pack(sec, ns, len(data), length) + bytes(data)


def read(blob):
    """(linktype, [(time ns, length on the wire, bytes)]) of a pcap file's bytes, in either
    byte order and either time unit.  ValueError when it is not one."""
    if len(blob) < _HEADER.size:
        raise ValueError("not a pcap file: too short")
    for order in "<>":
        magic = struct.unpack(order + "I", blob[:4])[0]
        if magic in (MAGIC_NS, MAGIC_US):
            break
    else:
        raise ValueError(f"not a pcap file: magic {blob[:4].hex()}")
    scale = 1 if magic == MAGIC_NS else 1000
    _, major, minor, _, _, _, linktype = struct.unpack(order + _HEADER.format[1:],
                                                       blob[:_HEADER.size])
    frames, at = [], _HEADER.size
    rec = struct.Struct(order + _RECORD.format[1:])
    while at < len(blob):
        if at + rec.size > len(blob):
            raise ValueError(f"a record header cut short at byte {at}")
        sec, frac, caplen, length = rec.unpack_from(blob, at)
        at += rec.size
        if at + caplen > len(blob):
            raise ValueError(f"a record cut short at byte {at}")
        frames.append((sec * 1_000_000_000 + frac * scale, length, blob[at:at + caplen]))
        at += caplen
    return linktype, frames
