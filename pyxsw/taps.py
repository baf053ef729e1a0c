"""Capture and port mirroring: what the operator asked the workers to copy.

The switch keeps the captures running (`capture.start`, one per client that asked) and the
mirrors (`[[mirror]]`, `mirror.add`), by port name, and whenever they or the ports change
says it all again to the datapath (ops_table -> Datapath.set_ops), by port index:

  a capture of port P, direction in/out/both: the workers copy each frame P receives
  (as it arrived) or sends (as it leaves) with its time into their capture rings; the
  housekeeping thread drains them and hands each capture its frames (Capture.offer);

  a mirror: every frame its source ports receive and/or send is copied to its output port,
  which while it mirrors forwards nothing (it leaves the flood set, is no unicast
  destination, and what it receives is dropped and counted: mirror_dropped).

A port with a capture or a mirror takes that traffic off the in-kernel fast path while it
runs (the workers can only copy what reaches them): fastpath.pyx's fp_flags.
"""
from __future__ import annotations

import itertools
from typing import Callable, NamedTuple

from .vocab import Invalid, directions

DEFAULT_SNAPLEN = 262144


class Capture:
    """One capture: port (a name), dirs ({"in"}, {"out"} or both), snaplen, count (0: no
    limit) and sink(frames, end), called on the housekeeping thread with
    [(time ns, port, "in"|"out", length, bytes)] and, once `count` frames were given,
    end = {"captured": n, "lost": m} (the capture is then over)."""

    _ids = itertools.count(1)

    def __init__(self, port, direction, snaplen, count, sink: Callable, lost_before):
        self.id = next(self._ids)
        self.port = port
        self.direction = direction
        self.dirs = directions(direction)
        self.snaplen = snaplen
        self.count = count
        self.sink = sink
        self.captured = 0
        self.lost_before = lost_before or 0     # its port's capture_lost when it started

    def offer(self, frames):
        """Give the sink what of `frames` is its own: True once its count is reached."""
        mine = [(t, p, d, n, data[:self.snaplen]) for t, p, d, n, data in frames
                if p == self.port and d in self.dirs]
        if self.count:
            mine = mine[:self.count - self.captured]
        self.captured += len(mine)
        done = bool(self.count) and self.captured >= self.count
        if mine:
            self.sink(mine, None)
        return done

    def result(self, lost_now):
        if lost_now is None:                # the port is gone: what was counted is too
            lost_now = self.lost_before
        return {"captured": self.captured, "lost": max(0, lost_now - self.lost_before)}


class Mirror(NamedTuple):
    name: str
    sources: tuple      # port names
    direction: str      # in | out | both
    output: str         # a port name

    def view(self, ports):
        """As mirror.list shows it; `ports` the switch's (name -> Port): active while its
        output and a source are up-and-running ports."""
        missing = [p for p in (*self.sources, self.output) if p not in ports]
        return {"name": self.name, "source": list(self.sources), "direction": self.direction,
                "output": self.output, "active": not missing, "missing": missing}

    def keys(self):
        """As a [[mirror]] section says it."""
        return {"name": self.name, "source": list(self.sources), "direction": self.direction,
                "output": self.output}


def check_mirror(m: Mirror, mirrors):
    """Invalid (a ValueError; `key` the key at fault) when m cannot join `mirrors` (name -> Mirror): a name taken, its output
    among its sources, an output that is another mirror's source or a source that is
    another's output (a mirror's output forwards nothing, so it mirrors nothing)."""
    if m.name in mirrors:
        raise Invalid(f"mirror {m.name} exists already", key="name")
    if m.output in m.sources:
        raise Invalid(f"mirror {m.name}: its output {m.output} is one of its sources",
                      key="output")
    for other in mirrors.values():
        if m.output in other.sources:
            raise Invalid(f"mirror {m.name}: its output {m.output} is a source of mirror "
                          f"{other.name}", key="output")
        if other.output in m.sources:
            raise Invalid(f"mirror {m.name}: source {other.output} is the output of "
                          f"mirror {other.name}", key="source")


def ops_table(index, captures, mirrors):
    """Datapath.set_ops' arguments: ({port index: (tap, mirror_in, mirror_out, dst)},
    snaplen), from the ports' indexes (name -> index, ports with a datapath slot), the
    captures and the mirrors.  What names a port without a slot is left out."""
    ops = {}

    def row(name):
        return ops.setdefault(index[name], [set(), set(), set(), False])

    snaplen = 0
    for c in captures:
        if c.port in index:
            row(c.port)[0].update(c.dirs)
            snaplen = max(snaplen, c.snaplen)
    for m in mirrors:
        if m.output not in index:
            continue
        row(m.output)[3] = True
        out, dirs = index[m.output], directions(m.direction)
        for s in m.sources:
            if s in index:
                if "in" in dirs:
                    row(s)[1].add(out)
                if "out" in dirs:
                    row(s)[2].add(out)
    return {p: tuple(r) for p, r in ops.items()}, snaplen
