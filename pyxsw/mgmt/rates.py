"""Rates: what changed per second between two looks at a switch's counters.  The one place
that arithmetic lives: `pyxsw ctl top`, `port stats --rate` and `worker stats --interval`
all use it.  Pure, standard library only.

    port_rates(before, after, seconds)      two port.stats results
    worker_rates(before, after, seconds)    two worker.stats results

A counter that went down between the looks was reset (the port was removed and added again,
the switch restarted): its rate is what it counted since, over the span, as Prometheus's
rate() takes it.
"""
from __future__ import annotations

from . import busy_share

# The counters whose rates the per-port views show, per second: frames, bits (bytes x 8),
# floods, and the drops by cause (their sum is "dropped").
PORT_RATES = ("rx_packets", "tx_packets", "rx_bits", "tx_bits", "flooded")
DROPS = ("rx_dropped", "tx_dropped", "flood_limited", "vlan_dropped", "runts", "filtered",
         "reserved_dropped", "mirror_dropped")
# A worker's, per second; "busy" beside them is the share of its passes that found frames.
WORKER_RATES = ("loops", "idle_loops", "wakeups", "rx_kicks", "tx_kicks", "pool_empty",
                "learned", "moved", "events_lost", "captured", "capture_lost", "mirrored")


def delta(before, after):
    """How much a counter counted between two looks (after a reset: all it shows now)."""
    before, after = before or 0, after or 0
    return after if after < before else after - before


def _per_second(before, after, key, seconds, scale=1):
    return round(scale * delta(before.get(key), after.get(key)) / seconds, 3)


def port_rates(before, after, seconds):
    """{port: {"up", "rx_packets", "tx_packets", "rx_bits", "tx_bits", "flooded",
    "dropped", *DROPS}}, every figure but "up" per second over `seconds`, for the ports
    in both looks (one added between them has no rate yet; one removed is gone)."""
    if not seconds > 0:
        raise ValueError(f"a span of seconds above 0, got {seconds!r}")
    out = {}
    for name, a in after.items():
        b = before.get(name)
        if b is None:
            continue
        r = {"up": a.get("up")}
        for k in ("rx_packets", "tx_packets", "flooded"):
            r[k] = _per_second(b, a, k, seconds)
        for k in ("rx", "tx"):
            r[f"{k}_bits"] = _per_second(b, a, f"{k}_bytes", seconds, 8)
        drops = {k: _per_second(b, a, k, seconds) for k in DROPS}
        r["dropped"] = round(sum(drops.values()), 3)
        r.update(drops)
        out[name] = r
    return out


def worker_rates(before, after, seconds):
    """[{"queue", "mode", "busy", *WORKER_RATES}] for the workers in both looks: busy, the
    share of passes between them that found frames (None: no pass), and the counters per
    second."""
    if not seconds > 0:
        raise ValueError(f"a span of seconds above 0, got {seconds!r}")
    earlier = {w.get("queue"): w for w in before}
    out = []
    for a in after:
        b = earlier.get(a.get("queue"))
        if b is None:
            continue
        reset = a.get("loops", 0) < b.get("loops", 0)
        out.append({"queue": a.get("queue"), "mode": a.get("mode"),
                    "busy": busy_share(a, since=None if reset else b),
                    **{k: _per_second(b, a, k, seconds) for k in WORKER_RATES}})
    return out


def si(value, unit=""):
    """A rate for a person: 0, 12, 999, 1.23k, 45.6M, 7.89G (three figures)."""
    if value is None:
        return "-"
    for size, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= size * 0.9995:
            v = value / size
            return f"{v:.3g}{prefix}{unit}" if v < 1000 else f"{v:.0f}{prefix}{unit}"
    return f"{value:.0f}{unit}" if value == int(value) or abs(value) >= 10 else \
        f"{value:.2g}{unit}"
