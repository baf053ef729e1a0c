"""Conditions that come in bursts, said at most once per interval each: the switch's
rate-limited warnings (a flapping MAC, a full FDB, storm control, an empty frame pool).

    w = Watch(10.0)                         # leading: the first occurrence is said at once
    w.total(("storm", "s1"), port_stats["flood_limited"])    # a counter, as it stands
    w.add(("move", mac, vlan), 1, to="s1")  # occurrences, with what to say about them
    for r in w.due():                       # every tick: the reports due now
        ...  r.key, r.state ("start" | "count" | "end"), r.count, r.total, r.seconds, r.info

A key's episode: "start" at the first due() after its first occurrence (with `leading`; without
it the first report is the first interval's "count"), then one "count" per interval in which
it occurred again (how many times in that interval), then "end" after a whole interval without
any (the episode's total and length).  However many occurrences, that is one report per key per
interval.  Standard library only; the clock is a parameter, for tests.
"""
from __future__ import annotations

import time
from typing import NamedTuple


class Report(NamedTuple):
    key: tuple
    state: str          # "start" | "count" | "end"
    count: int          # occurrences since the previous report of this key
    total: int          # occurrences since the episode started
    seconds: float      # "count": the span counted; "end": the episode's length
    info: dict          # the latest add()'s keywords, merged over the episode's


class _Episode:
    __slots__ = ("started", "window", "count", "total", "info", "said")

    def __init__(self, now):
        self.started = self.window = now
        self.count = self.total = 0
        self.info = {}
        self.said = False


class Watch:
    def __init__(self, interval, *, leading=True, clock=time.monotonic):
        if not interval > 0:
            raise ValueError(f"interval must be positive, got {interval!r}")
        self.interval = interval
        self.leading = leading
        self.clock = clock
        self._episodes = {}
        self._last = {}         # key -> a counter's value when total() last saw it

    def add(self, key, n=1, **info):
        """n more occurrences of key now."""
        if n <= 0:
            return
        ep = self._episodes.get(key)
        if ep is None:
            ep = self._episodes[key] = _Episode(self.clock())
        ep.count += n
        ep.total += n
        ep.info.update(info)

    def total(self, key, value, **info):
        """A counter's current value: its growth since the last call is add()ed.  The first
        value seen is the baseline; a value below the last (a counter started anew, with
        a port added again) is a new baseline too."""
        last = self._last.get(key)
        self._last[key] = value
        if last is not None and value > last:
            self.add(key, value - last, **info)

    def forget(self, key):
        """Drop a key (a port that is gone), its episode unsaid."""
        self._episodes.pop(key, None)
        self._last.pop(key, None)

    def active(self, key):
        return key in self._episodes

    def due(self):
        """The reports due now, oldest episode first; each key at most once."""
        now = self.clock()
        out = []
        for key, ep in list(self._episodes.items()):
            if self.leading and not ep.said:
                out.append(Report(key, "start", ep.count, ep.total, now - ep.window,
                                  dict(ep.info)))
            elif now - ep.window < self.interval:
                continue
            elif ep.count:
                out.append(Report(key, "count", ep.count, ep.total, now - ep.window,
                                  dict(ep.info)))
            else:
                out.append(Report(key, "end", 0, ep.total, now - ep.started, dict(ep.info)))
                del self._episodes[key]
                continue
            ep.said = True
            ep.count = 0
            ep.window = now
        return out
