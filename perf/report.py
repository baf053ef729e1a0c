#!/usr/bin/env python3
"""Markdown report and PNG plots of a `make bench` result (perf/bench.py, "schema": 2).

    .venv/bin/python perf/report.py [perf/results/bench-latest.json]

Writes <name>.md and <name>-{rate,latency,cpu,load}.png next to the JSON (plots need
matplotlib==3.10.7, from requirements; without it, only the Markdown).

How to read every figure: the bench runs each row several rounds, interleaved (round 1 of
every row, then round 2, ...).  A cell shows the median of the rounds and their range,
`1.027 (0.985-1.050)`, and `[2/3]` when only 2 of 3 rounds have the figure.  A ratio of two
rows is taken round by round (the same round index ran minutes apart at most) and shown as
the median and range of those ratios.  A target is met only when it holds in every round:
the worst round decides.  Everything here is computed from the rounds themselves; the
rows' "stats" are for readers of the JSON.
"""
import json
import math
import statistics
import sys
from collections import namedtuple
from itertools import accumulate
from operator import sub, truediv
from pathlib import Path

PLOTS = ("rate", "latency", "cpu", "load")    # <name>-<plot>.png, when there is data for it
NOISY = 10          # % of a core other processes may use in a round before its row gets (!)
MODES = ("poll", "interrupt", "adaptive")

Spread = namedtuple("Spread", "lo mid hi n of")


class OldResult(ValueError):
    """A result written before schema 2: its report is the .md committed beside it."""


# ---------------------------------------------------------------- rows, rounds, spreads

def label(r):
    """The row's name in every table and plot: its own "label" when the bench wrote one,
    else built the way fwd_rate.label builds it: "pyxsw (poll, fastpath)", "bridge",
    "pyxsw (interrupt, fastpath, 1000 MACs)", "pyxsw (poll, 16p)", "pyxsw (poll, trunk)"."""
    if r.get("label"):
        return r["label"]
    parts = [r.get("mode"), "fastpath" if r.get("fastpath") else None,
             f"{r['fdb_macs']} MACs" if r.get("fdb_macs") else None,
             f"{r['ports']}p" if r.get("ports") not in (None, 2) else None,
             "trunk" if r.get("vlan_trunk") else None,
             {"metrics": "metrics 1/s", "capture": "capture"}.get(r.get("ops"))]
    parts = [p for p in parts if p]
    return f"{r['system']} ({', '.join(parts)})" if parts else r["system"]


def key(r):
    """What tells rows apart: system, mode, fast path, ports, learned MACs, trunk, ops."""
    return (r.get("system"), r.get("mode"), bool(r.get("fastpath")), r.get("ports") or 2,
            r.get("fdb_macs"), bool(r.get("vlan_trunk")), r.get("ops"))


def find(rows, system, mode=None, fastpath=False, ports=2, fdb_macs=None, vlan_trunk=False,
         ops=None):
    """The row of that description (a plain one unless asked otherwise), or None."""
    want = (system, mode, fastpath, ports, fdb_macs, vlan_trunk, ops)
    return next((r for r in rows if key(r) == want), None)


def results(doc):
    """Every row of the run's forwarding measurements.  A row that failed after some rounds
    keeps them: it counts as available with those rounds (its name says it failed, and
    `[n/m]` how many rounds a figure has)."""
    fwd = doc.get("fwd") or {}
    of = (fwd.get("config") or {}).get("rounds")
    return [dict(r, of=of, **({"available": True, "failed": r.get("reason")}
                              if r.get("rounds") and not r.get("available") else {}))
            for r in fwd.get("results") or []]


def plain(r):
    """A row of the main comparison: two ports, one MAC, untagged (not a scaling row)."""
    return key(r)[3:] == (2, None, False, None)


def dig(obj, path):
    """The value at a dotted path in a round: dict keys, and sweep steps by their pct
    ("sweep.50.latency_us.p99", "sizes.1500.ndr.pps"); None when a part is missing."""
    for k in str(path).split("."):
        if isinstance(obj, list):
            obj = next((s for s in obj if isinstance(s, dict) and str(s.get("pct")) == k), None)
        elif isinstance(obj, dict):
            obj = obj.get(k)
        else:
            return None
    return obj


def per_round(row, what):
    """{round index: value} over the rounds of `row` that have the figure; `what` is a
    dotted path or a function of a round."""
    out = {}
    for i, rd in enumerate((row or {}).get("rounds") or []):
        v = what(rd) if callable(what) else dig(rd, what)
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            out[rd.get("round", i)] = v
    return out


def spread(values, of=None):
    """Min, median and max of some values (None when there are none); `of`: how many
    rounds there were, so a figure missing from some rounds says so."""
    v = sorted(values)
    return Spread(v[0], statistics.median(v), v[-1], len(v), of or len(v)) if v else None


def nrounds(*rows):
    """How many rounds the rows should have: the run's (a failed row has fewer)."""
    return max((r or {}).get("of") or len((r or {}).get("rounds") or []) for r in rows)


def fig(row, *whats):
    """One figure of one row over its rounds (several paths: all their values pooled)."""
    return spread([v for w in whats for v in per_round(row, w).values()],
                  nrounds(row) * len(whats))


def paired(a, b, what, what_b=None, op=truediv):
    """a / b (or a - b with op=sub) round by round: rounds with the same index ran in the
    same round, so each pair saw the same machine; the spread of those ratios."""
    if a is None or b is None:
        return None
    x, y = per_round(a, what), per_round(b, what_b or what)
    return spread([op(x[i], y[i]) for i in x if i in y and (op is not truediv or y[i])],
                  nrounds(a, b))


def cell(s, scale=1.0, nd=3, unit=""):
    """A figure as `median (min-max)`: `1.027 (0.985-1.050)`; the median alone when every
    round gave the same to the digits shown; `-` when not measured."""
    if s is None:
        return "-"
    f = lambda x: f"{x * scale:.{nd}f}"     # noqa: E731
    text = f(s.mid) + unit
    if f(s.lo) != f(s.hi):
        text += f" ({f(s.lo)}-{f(s.hi)})"
    return text + (f" [{s.n}/{s.of}]" if s.n < s.of else "")


def mpps(s):
    """Packets per second, in Mpps."""
    return cell(s, 1e-6)


def times(s):
    """A ratio: 1.29x (1.21-1.35)."""
    return cell(s, 1, 2, "x")


def pct(s):
    """A percentage, one decimal."""
    return cell(s, 1, 1)


def us(s):
    """Microseconds, or any count, whole."""
    return cell(s, 1, 0)


def met(s, op, goal):
    """A target holds only when every round holds it: for ">=" the smallest value must
    reach the goal, for "<=" and "<" the largest must stay under it."""
    if s is None:
        return "not measured"
    ok = s.lo >= goal if op == ">=" else s.hi <= goal if op == "<=" else s.hi < goal
    return "met" if ok else "NOT met"


def noisy(r):
    """Other processes used more than NOISY % of a core in some round of the row."""
    return any((rd.get("other_load_pct_max") or 0) > NOISY for rd in r.get("rounds") or [])


def gen_bound(r):
    """In some round the no-drop search hit the generator's limit: a lower bound."""
    return any((rd.get("ndr") or {}).get("generator_bound") for rd in r.get("rounds") or [])


def unconverged(r):
    """In some round the no-drop search ran out of trials before its resolution."""
    return any((rd.get("ndr") or {}).get("converged") is False for rd in r.get("rounds") or [])


def name(r):
    """The row's label with its marks: (!) a noisy round, (x) a round that failed."""
    return label(r) + (" (!)" if noisy(r) else "") + (" (x)" if r.get("failed") else "")


def missing(r, ncols):
    """A table row for a row that did not run, with its reason."""
    return (f"| {label(r)} | not available: {(r.get('reason') or '')[:80]} |"
            + " |" * (ncols - 2))


def config(doc):
    return (doc.get("fwd") or {}).get("config") or {}


def sizes(doc):
    return config(doc).get("sizes") or [64, 1500]


def rate_path(doc, size, part):
    """Where a size's MFR ("mfr") or NDR ("ndr") rate is in a round: the first size at the
    top, the others under sizes.<size>."""
    at = "" if size == sizes(doc)[0] else f"sizes.{size}."
    return at + ("mfr.forwarded_pps" if part == "mfr" else "ndr.pps")


def gbps(doc, size, part):
    """A function of a round: its rate at `size` in Gb/s of frame bits (FCS included, no
    preamble or gap), pps * size * 8 / 1e9."""
    path = rate_path(doc, size, part)
    return lambda rd: (dig(rd, path) * size * 8 / 1e9
                       if isinstance(dig(rd, path), (int, float)) else None)


# ---------------------------------------------------------------- the recommendation

def mean_of(rd, *paths):
    """The mean of a round's figures at `paths`, None unless it has them all: one value per
    round, so that a spread stays a spread over rounds."""
    vals = [dig(rd, p) for p in paths]
    return sum(vals) / len(vals) if all(isinstance(v, (int, float)) for v in vals) else None


def rank(cands, measure, lower=False, slack=0.0, tiebreak=None):
    """The candidate with the best median of `measure` (row -> Spread), and the rows the
    rounds cannot tell from it (min-max ranges overlapping, within `slack`), itself
    included; among those, the lowest median of `tiebreak` wins.  (None, []) when no
    candidate has the figure, (best, []) when nothing ties with it."""
    scored = [(r, s) for r in cands if (s := measure(r))]
    if not scored:
        return None, []
    top, ts = min(scored, key=lambda x: x[1].mid if lower else -x[1].mid)
    tied = [r for r, s in scored if s.lo <= ts.hi + slack and ts.lo <= s.hi + slack]
    if len(tied) < 2:
        return top, []
    return min(tied, key=lambda r: (tiebreak(r) or Spread(*[math.inf] * 5)).mid), tied


def recommend(doc):
    """Which pyxsw mode for which use, chosen from this run's figures by fixed rules, each
    with the figures behind it (median (min-max) over the rounds).  Modes are the plain
    pyxsw rows without the fast path; (d) says what the fast path changes.

    (a) dedicated core: the highest median no-drop rate; modes whose NDR ranges overlap
        it are a tie the rounds cannot break, decided by the lower p99 latency at 50%
        load (the core is the switch's: rate first, then how it answers under load).
    (b) shared core: among modes whose median NDR is at least 0.8x the best, the lowest
        forwarder-core CPU per Mpps at 25% and 50% load (their mean in each round: what
        forwarding takes from the core's other tenants at a typical load);
        ties by the lower core busy % at 10% load.  Poll spins its core at any load:
        said, with its busy % at 10% load.
    (c) mostly idle port: the lowest forwarder-core busy % with no traffic; within a
        point of a core counts as a tie (/proc/stat's resolution over a short window),
        decided by the lower p99 latency at 10% load.
    (d) fast path: for each mode measured with and without it, the NDR ratio (paired by
        round), CPU per Mpps at 50% load and p99 at 10% load, with and without; the
        choice is the fast-path mode with the highest NDR among those whose NDR beats
        the same mode without it in every round.
    A case without its figures is "not measured"."""
    rows = [r for r in results(doc) if plain(r) and r.get("available")]
    modes = [r for r in rows if r["system"] == "pyxsw" and not r.get("fastpath")]
    ndr = lambda r: fig(r, "ndr.pps")                                   # noqa: E731
    p99 = lambda p: lambda r: fig(r, f"sweep.{p}.latency_us.p99")       # noqa: E731
    cpm = lambda r: fig(r, lambda rd: mean_of(rd, "sweep.25.cpu_per_mpps",   # noqa: E731
                                              "sweep.50.cpu_per_mpps"))
    busy10 = lambda r: fig(r, "sweep.10.fwd_core_busy_pct")             # noqa: E731
    idle = lambda r: fig(r, "idle.fwd_core_busy_pct")                   # noqa: E731
    out = []

    def say(measure, fmt, rs):
        return ", ".join(f"{r['mode']} {fmt(measure(r))}" for r in rs if measure(r))

    def case(what, pick, why, tied=(), decides="", tiebreak=None, fmt=None, unit=""):
        if pick is None:
            out.append({"case": what, "choice": "not measured", "why": why})
            return
        if tied:
            why += (f"; {', '.join(r['mode'] for r in tied)} cannot be told apart across "
                    f"rounds, the lower {decides} decides: {say(tiebreak, fmt, tied)}{unit}")
        out.append({"case": what, "choice": pick["mode"], "why": why})

    pick, tied = rank(modes, ndr, tiebreak=p99(50))
    case("dedicated core", pick, f"NDR {say(ndr, mpps, modes)} Mpps" if pick else
         "no pyxsw mode has a no-drop rate", tied, "p99 at 50% load", p99(50), us, " us")

    top = max((ndr(r).mid for r in modes if ndr(r)), default=None)
    fast = [r for r in modes if top and ndr(r) and ndr(r).mid >= 0.8 * top]
    pick, tied = rank(fast, cpm, lower=True, tiebreak=busy10)
    why = (f"forwarder-core CPU per Mpps at 25-50% load: {say(cpm, us, fast)} % of a core "
           "per Mpps" if pick else "no NDR, or no CPU per Mpps at 25-50% load")
    slow = [r["mode"] for r in modes if r not in fast and ndr(r)]
    if pick and slow:
        why += f"; left out, NDR below 0.8x the best: {', '.join(slow)}"
    poll = find(modes, "pyxsw", "poll")
    if pick and busy10(poll) and busy10(poll).mid >= 90:
        why += f"; poll keeps its core {cell(busy10(poll), 1, 1, '%')} busy at 10% load"
    case("shared core", pick, why, tied, "core busy % at 10% load", busy10, pct, "%")

    pick, tied = rank(modes, idle, lower=True, slack=1.0, tiebreak=p99(10))
    case("mostly idle port", pick, f"forwarder-core busy % with no traffic: "
         f"{say(idle, pct, modes)}%" if pick else "no idle CPU measured",
         tied, "p99 at 10% load", p99(10), us, " us")

    both = [(m, find(rows, "pyxsw", m, True), find(rows, "pyxsw", m)) for m in MODES]
    both = [(m, f, p, paired(f, p, "ndr.pps")) for m, f, p in both if f and p]
    both = [b for b in both if b[3]]
    c50 = lambda r: us(fig(r, "sweep.50.cpu_per_mpps"))                 # noqa: E731
    why = "; ".join(f"{m}: NDR {times(x)} with/without; CPU per Mpps at 50% load {c50(f)} "
                    f"with, {c50(p)} without; p99 at 10% load {us(p99(10)(f))} with, "
                    f"{us(p99(10)(p))} without (us)" for m, f, p, x in both)
    gains = [f for m, f, p, x in both if x.lo > 1]
    best = max(gains, key=lambda f: ndr(f).mid if ndr(f) else 0, default=None)
    out.append({"case": "fast path", "why": why or "no mode measured with and without it",
                "choice": "not measured" if not both else "no gain in every round"
                if not best else f"on, in {best['mode']} mode: NDR {mpps(ndr(best))} Mpps"})
    return out


# ---------------------------------------------------------------- the Markdown

def header(doc):
    """What was measured, on which commit and machine, and how to read the figures."""
    m = doc.get("machine") or (doc.get("fwd") or {}).get("machine") or {}
    c = config(doc)
    commit = (m.get("commit") or "?")[:12]
    dirty = " with uncommitted changes (dirty)" if m.get("dirty") else ", clean"
    took = f", took {doc['duration_s'] / 60:.0f} min" if doc.get("duration_s") else ""
    kind = next((dig(st, "latency_us.kind") for r in results(doc)
                 for rd in r.get("rounds") or [] for st in rd.get("sweep") or []
                 if dig(st, "latency_us.kind")), "round trip")
    return [
        f"## pyxsw bench, {doc.get('time', '?')}", "",
        f"Commit {commit} ({m.get('pyxsw_git', '?')}){dirty}{took}"
        + (" (quick)" if doc.get("quick") else "") + ".",
        f"Machine: {m.get('cpu_model')}, {m.get('nproc')} cores, kernel {m.get('kernel')}, "
        f"DPDK {m.get('dpdk')}; generator core(s) {c.get('gen_cores')}, forwarder core(s) "
        f"{c.get('fwd_cores')}, {c.get('queues', 1)} queue(s) per port.", "",
        f"Each figure: median (min-max) of {c.get('rounds', '?')} rounds, interleaved; a ratio "
        "is taken round by round (same round index, minutes apart) and shown as the median "
        "(min-max) of those ratios; a single number: every round gave it (to the digits "
        "shown); `[n/m]`: the figure is in n of m rounds. "
        "**MFR**, maximum forwarding rate (RFC 2889): forwarded under overload, generator "
        f"unpaced, {c.get('seconds')} s windows. **NDR**, no-drop rate (RFC 2544 "
        "throughput): the highest offered rate that lost at most "
        f"{c.get('loss_tolerance_pct')}% of frames in a {c.get('trial_s')} s trial, by binary "
        f"search to {100 * (c.get('resolution') or 0):g}% (twice that at the other sizes); "
        f"(c) marks a search that ran out of trials first. Latency: {kind} time of UDP "
        f"ping-pongs ({c.get('latency')} per step, one in flight, every "
        f"{c.get('latency_interval_us')} us) during the load, in us."]


def recommendation(doc):
    """The recommendation table, near the top: what a user should pick, and why."""
    return ["", "| use | pyxsw mode | from this run's figures |", "|---|---|---|",
            *[f"| {c['case']} | {c['choice']} | {c['why']} |" for c in recommend(doc)],
            "", "Rules: `perf/report.py` recommend()."]


def rates(doc):
    """NDR beside MFR for every system and mode, each size; sizes after the first in Gb/s
    too.  Ratios against testpmd (the DPDK reference) round by round."""
    rows = [r for r in results(doc) if plain(r)]
    ref = find(rows, "testpmd")
    first, *others = sizes(doc)
    out = ["", f"| {first} B | NDR Mpps | MFR Mpps | MFR offered Mpps | NDR vs testpmd | "
           "MFR vs testpmd |", "|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        if not r.get("available"):
            out.append(missing(r, 6))
            continue
        g = (" (g)" if gen_bound(r) else "") + (" (c)" if unconverged(r) else "")
        out.append(f"| {name(r)} | {mpps(fig(r, 'ndr.pps'))}{g} | "
                   f"{mpps(fig(r, 'mfr.forwarded_pps'))} | {mpps(fig(r, 'mfr.offered_pps'))} | "
                   f"{times(paired(r, ref, 'ndr.pps'))} | "
                   f"{times(paired(r, ref, 'mfr.forwarded_pps'))} |")
    for size in others:
        out += ["", f"| {size} B | NDR Mpps | NDR Gb/s | MFR Mpps | MFR Gb/s |",
                "|---|---:|---:|---:|---:|"]
        for r in rows:
            if not r.get("available"):
                out.append(missing(r, 5))
                continue
            out.append(f"| {name(r)} | {mpps(fig(r, rate_path(doc, size, 'ndr')))} | "
                       f"{cell(fig(r, gbps(doc, size, 'ndr')))} | "
                       f"{mpps(fig(r, rate_path(doc, size, 'mfr')))} | "
                       f"{cell(fig(r, gbps(doc, size, 'mfr')))} |")
    out += ["", "Gb/s: frame bits (FCS included, no preamble or gap), pps x size x 8."]
    if any(noisy(r) for r in results(doc)):
        out += ["", f"(!): in some round of that row, other processes (not this benchmark) "
                f"used more than {NOISY}% of a core: its figures are not trustworthy, run again "
                "when the machine is quiet."]
    if any(unconverged(r) for r in rows):
        out += ["", "(c): in some round the no-drop search used all its trials before its "
                "bracket was within the resolution: that round's NDR is the best rate that "
                "passed, up to the bracket's width below the true one."]
    if any(r.get("failed") for r in rows):
        out += ["", "(x): the row failed in a later round and was not measured again; its "
                "figures are from the rounds it finished: "
                + "; ".join(f"{label(r)}: {r['failed'][:100]}" for r in rows if r.get("failed"))]
    if any(gen_bound(r) for r in results(doc)):
        out += ["", "(g): in some round the generator could not offer the rate the search "
                "asked for (below 0.97 of it): the NDR is a lower bound."]
    return out


def latency_low(doc):
    """Every system's latency at a low load (10% of its own NDR): the comparison row for
    the systems that get no sweep."""
    rows = [r for r in results(doc) if plain(r) and r.get("available")]
    pc = (config(doc).get("sweep_pct") or [10])[0]
    out = ["", f"| latency at {pc}% of the row's NDR | offered Mpps | p50 us | p99 us | "
           "p99.9 us | max us |", "|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        s = lambda q: us(fig(r, f"sweep.{pc}.latency_us.{q}"))     # noqa: E731
        out.append(f"| {name(r)} | {mpps(fig(r, f'sweep.{pc}.offered_pps'))} | {s('p50')} | "
                   f"{s('p99')} | {s('p999')} | {s('max')} |")
    return out


def swept_rows(doc):
    """The rows with a whole load sweep: the plain rows of the config's sweep systems."""
    systems = config(doc).get("sweep_rows") or ["pyxsw", "bridge"]
    return [r for r in results(doc) if plain(r) and r["system"] in systems]


def sweeps(doc):
    """For each swept row, at each step of its own NDR: offered rate, forwarder-core busy %,
    switch process CPU, CPU per Mpps, wake-ups and latency percentiles: what a mode costs
    and how it answers at the load a user actually has."""
    out = []
    for r in swept_rows(doc):
        out += ["", f"| {name(r)}: % of its NDR | offered Mpps | lost % | fwd core busy % | "
                "switch CPU % | CPU % per Mpps | wake-ups/s | p50 us | p99 us | p99.9 us | "
                "max us | pings lost |",
                "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        if not r.get("available"):
            out.append(missing(r, 13))
            continue
        for p in config(doc).get("sweep_pct") or [10, 25, 50, 75, 100]:
            f = lambda k: fig(r, f"sweep.{p}.{k}")      # noqa: E731
            out.append(f"| {p}% | {mpps(f('offered_pps'))} | {cell(f('loss_pct'), 1, 3)} | "
                       f"{pct(f('fwd_core_busy_pct'))} | "
                       f"{pct(f('switch_cpu_pct'))} | {us(f('cpu_per_mpps'))} | "
                       f"{us(f('wakeups_per_s'))} | "
                       + " | ".join(us(f(f"latency_us.{q}"))
                                    for q in ("p50", "p99", "p999", "max"))
                       + f" | {us(f('latency_us.lost'))} |")
    if out:
        out += ["", "Lost %: frames the sink did not get over the step's CPU window (a "
                "window's edges make it approximate: a step at its row's NDR can lose frames "
                "the 1 s trials did not, and its latency is then a full queue's). Fwd core "
                "busy %: the forwarder core(s) from /proc/stat, kernel work included; switch "
                "CPU %: the switch process's utime+stime in % of one core (none for the "
                "in-kernel bridge); CPU % per Mpps: fwd core busy % / forwarded Mpps; "
                "wake-ups/s: the workers' (pyxsw). Pings lost: ping-pongs with no answer "
                "within 100 ms, counted at 100 ms in the percentiles."]
    return out


def cpu_summary(doc):
    """CPU per Mpps of every row at every load step it has, and its CPU with no traffic:
    the cost of forwarding, the figure for sharing a core."""
    rows = [r for r in results(doc) if plain(r) and r.get("available")]
    steps = config(doc).get("sweep_pct") or [10, 25, 50, 75, 100]
    out = ["", "| CPU % of a core per Mpps | idle: fwd core busy % | idle: switch CPU % | "
           + " | ".join(f"at {p}%" for p in steps) + " |",
           "|---|---:|---:|" + "---:|" * len(steps)]
    for r in rows:
        out.append(f"| {name(r)} | {pct(fig(r, 'idle.fwd_core_busy_pct'))} | "
                   f"{pct(fig(r, 'idle.switch_cpu_pct'))} | "
                   + " | ".join(us(fig(r, f"sweep.{p}.cpu_per_mpps")) for p in steps)
                   + " |")
    return out + ["", "At p%: offered p% of the row's own NDR; idle: no traffic, "
                  f"{config(doc).get('idle')} s."]


def scaling(doc):
    """Rate against idle ports, FDB size, an 802.1Q trunk, and two queues, each against
    the plain row of the same mode (and testpmd for the trunk), round by round."""
    rs = results(doc)
    out = []

    def table(title, rows, what, extra=None):
        lines = ["", f"| {title} | NDR Mpps | vs plain | MFR Mpps | vs plain |"
                 + (f" {extra[0]} |" if extra else ""),
                 "|---|---:|---:|---:|---:|" + ("---:|" if extra else "")]
        for r in rows:
            base = find(rs, *key(r)[:3])
            if not r.get("available"):
                lines.append(missing(r, 6 if extra else 5))
                continue
            lines.append(f"| {what(r)} | {mpps(fig(r, 'ndr.pps'))} | "
                         f"{times(paired(r, base, 'ndr.pps'))} | "
                         f"{mpps(fig(r, 'mfr.forwarded_pps'))} | "
                         f"{times(paired(r, base, 'mfr.forwarded_pps'))} |"
                         + (f" {extra[1](r)} |" if extra else ""))
        return lines

    ports = [r for r in rs if key(r)[3] != 2]
    if ports:
        bases = [find(rs, *k) for k in dict.fromkeys(key(r)[:3] for r in ports)]
        out += table("2 busy ports + idle ones", [b for b in bases if b] + ports,
                     lambda r: f"{name(r)}: {key(r)[3] - 2} idle")
        out += ["", "vs plain: against the same mode with 2 ports. A worker polls every port "
                "each pass: what idle ports cost."]
    fdb = [r for r in rs if r.get("fdb_macs")]
    if fdb:
        bases = [find(rs, *k) for k in dict.fromkeys(key(r)[:3] for r in fdb)]
        out += table("learned MACs", [b for b in bases if b] + fdb,
                     lambda r: name(r) if r.get("fdb_macs") else f"{name(r)}, 1 MAC",
                     ("FDB entries", lambda r: us(fig(r, "fdb_entries"))))
    trunk = [r for r in rs if r.get("vlan_trunk")]
    if trunk:
        ref = find(rs, "testpmd")
        out += table("802.1Q: the sink's port a trunk (a tag pushed per frame)", trunk, name,
                     ("NDR vs testpmd, MFR vs testpmd", lambda r: (
                         f"{times(paired(r, ref, 'ndr.pps'))}, "
                         f"{times(paired(r, ref, 'mfr.forwarded_pps'))}")))
    ops = [r for r in rs if r.get("ops")]
    if ops:
        bases = [find(rs, *k) for k in dict.fromkeys(key(r)[:3] for r in ops)]
        out += table("operating it: metrics scraped once a second, a capture running",
                     [b for b in bases if b] + ops, name)
        out += ["", "vs plain: against the same mode without them, round by round. The "
                "capture is `pyxsw ctl capture` of the generator's port to /dev/null: at these "
                "rates most frames are lost to the capture (counted), the copy is what it costs."]
    two = doc.get("two_queues") or {}
    if two and not two.get("measured"):
        out += ["", f"Two queues: not measured: {two.get('reason') or 'no reason given'}."]
    elif two.get("results"):
        out += ["", "| two queues | NDR Mpps | MFR Mpps | MFR vs one queue |",
                "|---|---:|---:|---:|"]
        for r in two["results"]:
            if not r.get("available"):
                out.append(missing(r, 4))
                continue
            one = find(rs, *key(r))
            out.append(f"| {name(r)} | {mpps(fig(r, 'ndr.pps'))} | "
                       f"{mpps(fig(r, 'mfr.forwarded_pps'))} | "
                       f"{times(paired(r, one, 'mfr.forwarded_pps'))} |")
        out += ["", "Two queues: a separate run after the one-queue rows (its rounds paired "
                "with theirs by index); generators and workers share the cores."]
    return out


def storms(doc):
    """The management plane's cost: the rate under an RPC storm against quiet, and a CPU
    hog's (the control), per row; then storm of one method at a time."""
    rows = [r for r in results(doc) if any(rd.get("storm") for rd in r.get("rounds") or [])]
    out = []
    if rows:
        out += ["", "| RPC storm | quiet MFR Mpps | storm Mpps | storm / quiet | RPCs/s | "
                "CPU hog / quiet (control) | offered quiet Mpps | offered storm | offered hog |",
                "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for r in rows:
            f = lambda k: fig(r, k)     # noqa: E731
            out.append(f"| {name(r)} | {mpps(f('mfr.forwarded_pps'))} | "
                       f"{mpps(f('storm.forwarded_pps'))} | {cell(f('storm_ratio'))} | "
                       f"{us(f('storm.rpc_per_s'))} | {cell(f('burn_ratio'))} | "
                       f"{mpps(f('mfr.offered_pps'))} | {mpps(f('storm.offered_pps'))} | "
                       f"{mpps(f('burn.offered_pps'))} |")
        out += ["", "Storm: perf/rpc_rate.py --storm (4 clients x 8 calls in flight, cycling "
                "status, port.stats, port.list, fdb.list) on the non-forwarder core(s), in a "
                "second window of the same switch process; control: a third window with a "
                "spinning process on the same core(s) and no RPC, to separate the management "
                "plane's cost from the generator core's loss of CPU."]
    for r in results(doc):
        methods = {m: None for rd in r.get("rounds") or [] for m in rd.get("storm_by_method") or {}}
        if not methods:
            continue
        # (method names have dots: no dotted path here)
        f = lambda m, k: fig(r, lambda rd: ((rd.get("storm_by_method") or {}).get(m)  # noqa
                                            or {}).get(k))
        out += ["", f"| storm of one method, {name(r)} | RPCs/s | storm / quiet |",
                "|---|---:|---:|"]
        for m in methods:
            out.append(f"| {m} | {us(f(m, 'rpc_per_s'))} | {cell(f(m, 'ratio'))} |")
        out += ["", "The CPU-hog control of the table above serves these windows too: same "
                "cores, same switch process."]
    return out


def check(lines, what, s, op, goal, unit="x", nd=2):
    """One target line: measured (median (min-max)), the goal, met only in every round."""
    lines.append(f"| {what} | {cell(s, 1, nd, unit)} | {op} {goal:g}{unit} | "
                 f"{met(s, op, goal)} |")


def targets(doc):
    """Issue 4's targets, on the maximum forwarding rates (as when they were set), latency
    at the first sweep step (10% of each row's own NDR) and idle CPU."""
    rs = [r for r in results(doc) if plain(r)]
    f = lambda *a: find(rs, *a)     # noqa: E731
    poll, intr, adap = f("pyxsw", "poll"), f("pyxsw", "interrupt"), f("pyxsw", "adaptive")
    low = (config(doc).get("sweep_pct") or [10])[0]
    lines = []
    for ref, goal in (("testpmd", 1.25), ("ovs", 1.0), ("bridge", 1.0)):
        check(lines, f"poll / {ref}, 64 B MFR", paired(poll, f(ref), "mfr.forwarded_pps"),
              ">=", goal)
    check(lines, "interrupt, idle switch CPU", fig(intr, "idle.switch_cpu_pct") if intr else None,
          "<", 1, "%", 1)
    check(lines, "adaptive / poll, MFR", paired(adap, poll, "mfr.forwarded_pps"), ">=", 0.9)
    check(lines, "adaptive, idle switch CPU", fig(adap, "idle.switch_cpu_pct") if adap else None,
          "<", 5, "%", 1)
    check(lines, f"poll p99 / bridge p99 at {low}% load",
          paired(poll, f("bridge"), f"sweep.{low}.latency_us.p99"), "<=", 1)
    check(lines, "poll under RPC storm / quiet (issue 3)",
          fig(poll, "storm_ratio") if poll else None, ">=", 0.9)
    return ["", "| target (issue 4): MFR, latency at low load, idle CPU | measured | goal | |",
            "|---|---|---|---|", *lines, "",
            "Met only when every round meets it (the smallest ratio for >=, the largest for <=)."]


def fastpath(doc):
    """Issue 14: pyxsw with the in-kernel fast path beside the same run's other systems
    (MFR ratios, round by round), and its targets.  Nothing without a fast-path row."""
    rs = [r for r in results(doc) if plain(r)]
    fast = [r for r in rs if r.get("fastpath")]
    if not fast:
        return []
    low = (config(doc).get("sweep_pct") or [10])[0]
    refs = [("xdp", find(rs, "xdp")), ("bridge", find(rs, "bridge")), ("ovs", find(rs, "ovs")),
            ("testpmd", find(rs, "testpmd"))]
    out = ["", "| pyxsw with the fast path, 64 B | MFR Mpps | in the kernel % | vs xdp redirect"
           " | vs bridge | vs ovs | vs testpmd | vs same mode without | p50 us | p99 us | "
           "idle switch CPU % |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in fast:
        if not r.get("available"):
            out.append(missing(r, 11))
            continue
        without = find(rs, "pyxsw", r.get("mode"))
        share = fig(r, lambda rd: dig(rd, "mfr.fastpath_frames.ingress.share") * 100
                    if isinstance(dig(rd, "mfr.fastpath_frames.ingress.share"), (int, float))
                    else None)
        out.append(f"| {name(r)} | {mpps(fig(r, 'mfr.forwarded_pps'))} | {pct(share)} | "
                   + " | ".join(times(paired(r, b, "mfr.forwarded_pps"))
                                for b in [b for _, b in refs] + [without])
                   + f" | {us(fig(r, f'sweep.{low}.latency_us.p50'))} | "
                   f"{us(fig(r, f'sweep.{low}.latency_us.p99'))} | "
                   f"{pct(fig(r, 'idle.switch_cpu_pct'))} |")
    out += ["", "In the kernel: the share of the MFR window's frames in at the generator's "
            "port that the switch's XDP program forwarded itself (port.stats); xdp, the plain "
            f"devmap redirect, is the ceiling. Latency at {low}% of the row's NDR."]
    lines = []
    for r in fast:
        m = r.get("mode")
        for ref, b in refs:
            goal = 0.8 if ref == "xdp" else 3.0
            check(lines, f"{m} fastpath / {ref if ref != 'xdp' else 'xdp redirect'}, 64 B MFR",
                  paired(r, b, "mfr.forwarded_pps"), ">=", goal)
        for q in ("p50", "p99"):
            check(lines, f"{m} fastpath latency {q} / bridge {q} at {low}% load",
                  paired(r, refs[1][1], f"sweep.{low}.latency_us.{q}"), "<=", 1)
        if m == "interrupt":
            check(lines, "interrupt fastpath, idle switch CPU minus without",
                  paired(r, find(rs, "pyxsw", m), "idle.switch_cpu_pct", op=sub), "<=", 0.5,
                  " points", 1)
    return out + ["", "| target (issue 14, fast path): MFR, latency at low load | measured | "
                  "goal | |", "|---|---|---|---|", *lines]


def micro(doc):
    """The microbenchmarks of tests/bench (pytest-benchmark), per operation."""
    bench = (doc.get("micro") or {}).get("benchmarks")
    if not bench:
        return []
    out = ["", "| microbenchmark (tests/bench, pytest-benchmark) | median per operation "
           "| operations/s |", "|---|---:|---:|"]
    for b in bench:
        st, info = b["stats"], b.get("extra_info") or {}
        each = st["median"] / info.get("ops", 1)
        out.append(f"| {b['name']} | {each * 1e9:.1f} ns per {info.get('per', 'call')} | "
                   f"{1 / each:,.0f} |")
    return out


def markdown(doc):
    """The whole report: header, recommendation, rates, latency and CPU against load,
    scaling, storms, the old targets, microbenchmarks."""
    if doc.get("schema") != 2:
        raise OldResult(f"a schema-{doc.get('schema', 1)} result (before issue 15)")
    parts = (header, recommendation, rates, latency_low, cpu_summary, sweeps, scaling, storms,
             targets, fastpath, micro)
    return "\n".join(line for part in parts for line in part(doc)) + "\n"


# ---------------------------------------------------------------- the plots

def style(r):
    """A mode has one colour in every plot; the fast path is dashed, with square marks."""
    colour = {"poll": "tab:blue", "interrupt": "tab:orange", "adaptive": "tab:green"}.get(
        r.get("mode")) or {"bridge": "tab:gray", "testpmd": "tab:purple", "ovs": "tab:brown",
                           "xdp": "tab:red"}.get(r["system"], "black")
    fp = bool(r.get("fastpath"))
    return {"color": colour, "linestyle": "--" if fp else "-", "marker": "s" if fp else "o"}


def yerr(ss, scale=1.0):
    """Matplotlib's asymmetric error bars (min and max around the median)."""
    return [[(s.mid - s.lo) * scale if s else 0 for s in ss],
            [(s.hi - s.mid) * scale if s else 0 for s in ss]]


def us_axis(axis):
    """A log axis of microseconds with many labelled ticks, plain numbers: 1, 2, 5 of each
    decade over a wide range, 1, 1.5, 2, 3, 5, 7 over a narrow one."""
    from matplotlib.ticker import FuncFormatter, Locator, NullFormatter

    class Ticks(Locator):
        def __call__(self):
            return self.tick_values(*self.axis.get_view_interval())

        def tick_values(self, lo, hi):
            lo, hi = max(min(lo, hi), 1e-3), max(lo, hi)
            subs = (1, 2, 5) if hi / lo > 30 else (1, 1.5, 2, 3, 5, 7)
            d = 10 ** math.floor(math.log10(lo))
            out = []
            while d <= hi:
                out += [d * k for k in subs if lo <= d * k <= hi]
                d *= 10
            return out

    axis.set_major_locator(Ticks())
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(NullFormatter())


def rate_plot(plt, doc, path):
    """NDR and MFR bars per system with min-max error bars, one panel per frame size (the
    first in Mpps, the others in Gb/s).  The in-kernel xdp redirect is a horizontal line
    and band, not a bar, so the others stay readable; when it is far above them it is
    written at the top edge instead of stretching the axis."""
    rows = [r for r in results(doc) if plain(r) and r.get("available")]
    bars = [r for r in rows if r["system"] != "xdp"]
    xdp = find(rows, "xdp")
    if not bars:
        return False
    szs = sizes(doc)
    fig_, axes = plt.subplots(len(szs), 1, figsize=(13, 4.4 * len(szs)), squeeze=False)
    for ax, size in zip(axes[:, 0], szs):
        if size == szs[0]:
            what = {p: rate_path(doc, size, p) for p in ("ndr", "mfr")}
            scale, unit = 1e-6, "Mpps"
        else:
            what = {p: gbps(doc, size, p) for p in ("ndr", "mfr")}
            scale, unit = 1.0, "Gb/s"
        x = range(len(bars))
        top = 0
        for dx, p, hatch, alpha in ((-0.2, "ndr", None, 1.0), (0.2, "mfr", "//", 0.45)):
            ss = [fig(r, what[p]) for r in bars]
            ax.bar([i + dx for i in x], [s.mid * scale if s else 0 for s in ss], 0.4,
                   yerr=yerr(ss, scale), capsize=3, hatch=hatch, alpha=alpha,
                   color=[style(r)["color"] for r in bars], edgecolor="black", linewidth=0.5,
                   label=f"{p.upper()} ({'no drop' if p == 'ndr' else 'max. forwarding'})")
            for i, s in zip(x, ss):
                if s:
                    ax.annotate(f"{s.mid * scale:.2f}" if scale != 1 else f"{s.mid:.1f}",
                                (i + dx, s.hi * scale), xytext=(0, 2),
                                textcoords="offset points", ha="center", fontsize=7)
            top = max([top] + [s.hi * scale for s in ss if s])
        ymax = top * 1.2
        xs = {p: fig(xdp, what[p]) if xdp else None for p in ("ndr", "mfr")}
        if any(xs.values()):
            if max(s.mid * scale for s in xs.values() if s) <= ymax * 1.6:
                for p, ls in (("ndr", "-"), ("mfr", ":")):
                    s = xs[p]
                    if s:
                        ax.axhline(s.mid * scale, color="tab:red", linestyle=ls, zorder=0.5,
                                   label=f"xdp redirect {p.upper()} {cell(s, scale, 2)} {unit}"
                                   " (in-kernel ceiling)")
                        ax.axhspan(s.lo * scale, s.hi * scale, color="tab:red", alpha=0.1,
                                   zorder=0.5)
                        ymax = max(ymax, s.hi * scale * 1.08)
            else:
                txt = ", ".join(f"{p.upper()} {cell(s, scale, 2)}" for p, s in xs.items() if s)
                ax.text(0.5, 0.97, f"xdp redirect (in-kernel ceiling, off this scale): "
                        f"{txt} {unit}", transform=ax.transAxes, ha="center", va="top",
                        color="tab:red", fontsize=9,
                        bbox={"facecolor": "white", "edgecolor": "tab:red"})
                ymax *= 1.12
        ax.set_ylim(0, ymax or 1)
        ax.set_xticks(list(x), [label(r) for r in bars], rotation=20, ha="right")
        ax.set_ylabel(f"{unit}, median (bars: min-max)")
        ax.set_title(f"{size}-byte frames: no-drop rate (solid) and maximum forwarding rate "
                     "(hatched)")
        ax.grid(axis="y", alpha=0.3)
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8)
    return save(plt, fig_, path)


def save(plt, f, path, **layout):
    """Lay the figure out, write it, free it."""
    f.tight_layout(**layout)
    f.savefig(path, dpi=100)
    plt.close(f)
    return True


def latency_plot(plt, doc, path):
    """The latency CDF of each swept row at the lowest and the highest load step, one panel
    per load: the rounds' histograms pooled, x log in us, y the cumulative fraction on a
    logit scale so that p50, p99 and p99.9 (marked) are all visible."""
    from matplotlib.ticker import FixedLocator, FuncFormatter
    rows = [r for r in swept_rows(doc) if r.get("available")]
    steps = config(doc).get("sweep_pct") or [10, 100]
    curves = {}
    for p in (steps[0], steps[-1]):
        for r in rows:
            hist = {}
            for rd in r.get("rounds") or []:
                for t, n in (dig(rd, f"sweep.{p}.latency_us.hist") or {}).items():
                    hist[float(t)] = hist.get(float(t), 0) + n
            if hist:
                xs = sorted(hist)
                curves.setdefault(p, []).append(
                    (r, xs, [c / sum(hist.values()) for c in accumulate(hist[x] for x in xs)]))
    if not curves:
        return False
    f, axes = plt.subplots(1, 2, figsize=(13, 6), sharey=True, squeeze=False)
    for ax, (p, lines) in zip(axes[0], curves.items()):
        for r, xs, ys in lines:
            st = style(r)
            ax.plot(xs, ys, drawstyle="steps-post", color=st["color"], linestyle=st["linestyle"],
                    label=label(r))
        for q, t in ((0.5, "p50"), (0.99, "p99"), (0.999, "p99.9")):
            ax.axhline(q, color="black", linewidth=0.6, linestyle=":")
            ax.annotate(t, (0, q), xycoords=("axes fraction", "data"), xytext=(3, 1),
                        textcoords="offset points", va="bottom", fontsize=8)
        ax.set_xscale("log")
        ax.set_xlim(min(xs[0] for c in curves.values() for _, xs, _ in c) * 0.9,
                    max(xs[-1] for c in curves.values() for _, xs, _ in c) * 1.1)
        us_axis(ax.xaxis)
        ax.set_yscale("logit", nonpositive="clip")
        ax.yaxis.set_major_locator(FixedLocator([0.01, 0.1, 0.5, 0.9, 0.99, 0.999]))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.yaxis.set_minor_locator(FixedLocator([]))
        ax.set_ylim(0.005, 0.9995)
        ax.set_title(f"at {p}% of each row's no-drop rate")
        ax.set_xlabel("latency, us (log)")
        ax.grid(alpha=0.3)
    axes[0, 0].set_ylabel("fraction of ping-pongs at or below (logit scale)")
    f.legend(*axes[0, 0].get_legend_handles_labels(), loc="lower center", ncol=4, fontsize=8)
    f.suptitle("Latency CDF (UDP ping-pong, rounds pooled)")
    return save(plt, f, path, rect=(0, 0.1, 1, 1))


def against_load(ax, doc, k, by_pct):
    """Figure k of every swept row's steps against the load, min-max bars: x is the offered
    Mpps (bars too) or, by_pct, the % of the row's NDR (rows side by side so their bars
    do not hide each other).  Whether anything was drawn."""
    rows = [r for r in swept_rows(doc) if r.get("available")]
    drawn = False
    for i, r in enumerate(rows):
        pts = [(fig(r, f"sweep.{p}.offered_pps"), fig(r, f"sweep.{p}.{k}"), p)
               for p in config(doc).get("sweep_pct") or [10, 25, 50, 75, 100]]
        pts = [(o, s, p) for o, s, p in pts if o and s]
        if not pts:
            continue
        o, s, p = zip(*pts)
        x = ([q + (i - len(rows) / 2) * 0.6 for q in p] if by_pct else [v.mid / 1e6 for v in o])
        ax.errorbar(x, [v.mid for v in s], yerr=yerr(s), xerr=None if by_pct else yerr(o, 1e-6),
                    capsize=3, label=label(r), **style(r))
        drawn = True
    return drawn


def cpu_plot(plt, doc, path):
    """Forwarder-core busy % against offered load per swept row: poll flat at 100%,
    interrupt rising with the load, the fast path's slope the kernel's work."""
    f, ax = plt.subplots(figsize=(10, 5))
    if not against_load(ax, doc, "fwd_core_busy_pct", by_pct=False):
        plt.close(f)
        return False
    steps = ", ".join(map(str, config(doc).get("sweep_pct") or []))
    ax.set_xlabel(f"offered load, Mpps (steps at {steps}% of the row's NDR)")
    ax.set_ylabel("forwarder core busy %, median (bars: min-max)")
    ax.set_ylim(0, 110)
    ax.set_xlim(left=0)
    ax.grid(alpha=0.3)
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8)
    ax.set_title("CPU against load: the forwarder core (/proc/stat, kernel work included)")
    return save(plt, f, path)


def load_plot(plt, doc, path):
    """Latency p50 and p99 against load (% of each row's NDR) per swept row, two panels,
    log y in us: how a mode answers as it nears its limit."""
    f, axes = plt.subplots(1, 2, figsize=(13, 5))
    steps = config(doc).get("sweep_pct") or [10, 25, 50, 75, 100]
    for ax, q in zip(axes, ("p50", "p99")):
        if not against_load(ax, doc, f"latency_us.{q}", by_pct=True):
            plt.close(f)
            return False
        ax.set_yscale("log")
        us_axis(ax.yaxis)
        ax.set_xticks(steps, [f"{p}%" for p in steps])
        ax.set_xlabel("offered load, % of the row's no-drop rate")
        ax.set_ylabel(f"latency {q}, us (log), median (bars: min-max)")
        ax.set_title(f"{q} latency against load")
        ax.grid(alpha=0.3)
    axes[1].legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8)
    return save(plt, f, path)


def plots(doc, outdir, name_):
    """Every plot there is data for, as <name>-<plot>.png; their file names."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("report: matplotlib missing, no plots (pip install matplotlib==3.10.7)")
        return []
    draw = {"rate": rate_plot, "latency": latency_plot, "cpu": cpu_plot, "load": load_plot}
    return [f"{name_}-{p}.png" for p in PLOTS
            if draw[p](plt, doc, Path(outdir) / f"{name_}-{p}.png")]


def write_all(doc, outdir, name_):
    """<name>.md and the plots in outdir; the .md lists the plots. Returns the Markdown."""
    outdir = Path(outdir)
    md = markdown(doc)
    md += "".join(f"\n![{p}]({p})\n" for p in plots(doc, outdir, name_))
    (outdir / f"{name_}.md").write_text(md)
    return md


def main(argv=None):
    """report.py [FILE]: remake a result's Markdown and plots beside it; an older result is
    refused in one line (its own .md, committed beside it, is its report)."""
    argv = sys.argv[1:] if argv is None else argv
    path = Path(argv[0] if argv else
                Path(__file__).resolve().parent / "results" / "bench-latest.json")
    path = path.resolve()           # bench-latest.json: a link to a bench-<time>.json
    doc = json.loads(path.read_text())
    try:
        print(write_all(doc, path.parent, path.stem))
    except OldResult as e:
        md = path.with_suffix(".md")
        beside = (f"its report is {md.name}, committed beside it" if md.exists()
                  else f"no {md.name} beside it")
        print(f"report: {path.name} is {e}; this report.py reads schema 2 only; {beside}",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
