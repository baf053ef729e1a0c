"""perf/report.py on synthetic bench results (schema 2): the spread in every cell, ratios
paired by round, targets met only in every round, the recommendation's rules, the plots.
Pure computation: no benchmark runs here, and only `report` is imported."""
import json
import random
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "perf"))

import report  # noqa: E402

STEPS = [10, 25, 50, 75, 100]
# (row, NDR Mpps, MFR Mpps, 1500 B (NDR, MFR) Mpps, CPU model, idle core busy %, p50 us)
SPEC = [
    ({"system": "bridge"}, 0.35, 0.50, (0.30, 0.45), "kernel", 0.3, 150),
    ({"system": "testpmd"}, 0.30, 0.47, (0.28, 0.42), "spin", 100.0, 130),
    ({"system": "ovs"}, 0.28, 0.46, (0.26, 0.40), "spin", 100.0, 125),
    ({"system": "pyxsw", "mode": "poll"}, 0.45, 0.62, (0.30, 0.37), "spin", 100.0, 90),
    ({"system": "pyxsw", "mode": "interrupt"}, 0.38, 0.55, (0.30, 0.40), "sleep", 0.4, 180),
    ({"system": "pyxsw", "mode": "adaptive"}, 0.40, 0.56, (0.31, 0.41), "adaptive", 0.3, 150),
    ({"system": "pyxsw", "mode": "poll", "fastpath": True}, 0.90, 1.20, (0.80, 1.00), "spin",
     100.0, 110),
    ({"system": "pyxsw", "mode": "interrupt", "fastpath": True}, 1.40, 1.85, (1.10, 1.33),
     "xdp-sleep", 0.4, 140),
    ({"system": "pyxsw", "mode": "adaptive", "fastpath": True}, 1.20, 1.60, (1.00, 1.20),
     "adaptive", 0.3, 130),
    ({"system": "pyxsw", "mode": "poll", "ports": 16}, 0.42, 0.58, (0.28, 0.35), "spin", 100.0,
     95),
    ({"system": "pyxsw", "mode": "poll", "ports": 64}, 0.33, 0.50, (0.25, 0.32), "spin", 100.0,
     110),
    ({"system": "pyxsw", "mode": "poll", "fdb_macs": 1000}, 0.44, 0.60, (0.30, 0.36), "spin",
     100.0, 92),
    ({"system": "pyxsw", "mode": "poll", "fdb_macs": 100000}, 0.40, 0.55, (0.28, 0.34), "spin",
     100.0, 95),
    ({"system": "pyxsw", "mode": "poll", "vlan_trunk": True}, 0.38, 0.52, (0.27, 0.33), "spin",
     100.0, 95),
    ({"system": "xdp"}, 3.6, 4.4, (2.0, 2.1), "kernel", 0.4, 100),
]


def fwd_label(r):
    parts = [r.get("mode"), "fastpath" if r.get("fastpath") else None,
             f"{r['fdb_macs']} MACs" if r.get("fdb_macs") else None,
             f"{r['ports']}p" if r.get("ports") else None, "trunk" if r.get("vlan_trunk") else None]
    parts = [p for p in parts if p]
    return f"{r['system']} ({', '.join(parts)})" if parts else r["system"]


def busy(model, u):
    """Forwarder-core busy % and switch process CPU % at a load of u x NDR (u=0: idle)."""
    if model == "spin":
        return 100.0, 100.0
    if model == "sleep":
        return 1 + 90 * u, 85 * u
    if model == "adaptive":
        return (100.0, 100.0) if u >= 0.5 else (1 + 140 * u, 130 * u)
    if model == "xdp-sleep":            # the fast path: the kernel forwards, the worker sleeps
        return 1 + 60 * u, 2 * u
    return 1 + 60 * u, None


def latency(rng, p50, u, n):
    """A round trip histogram {us: count} with a long tail, and its percentiles."""
    base = p50 * (1 + 2 * u ** 3)
    xs = sorted(int(base * rng.lognormvariate(0, 0.25)
                    * (rng.uniform(3, 12) if rng.random() < 0.015 else 1)) for _ in range(n))
    hist = {}
    for x in xs:
        hist[str(x)] = hist.get(str(x), 0) + 1
    return {"kind": "round trip", "n": n, "lost": 0, "p50": xs[n // 2], "p99": xs[int(n * .99)],
            "p999": xs[int(n * .999)], "max": xs[-1], "hist": hist}


def window(fwd, offered, model, size=64, u=1.0):
    b, sw = busy(model, u)
    return {"forwarded_pps": fwd, "offered_pps": offered, "into_port_pps": offered,
            "loss_pct": 100 * (1 - fwd / offered), "cpu_busy_pct": {"0": 100.0, "1": b},
            "fwd_core_busy_pct": b, "switch_cpu_pct": sw, "other_load_pct": 0.5,
            "window_s": 2.0, "gbps": fwd * size * 8 / 1e9}


def ndr(pps, size=64):
    return {"pps": pps, "gbps": pps * size * 8 / 1e9, "generator_bound": False,
            "loss_tolerance_pct": 0.001,
            "trials": [{"target_pps": pps * 1.1, "offered_pps": pps * 1.1, "forwarded_pps": pps,
                        "sent": 1, "lost": 1, "loss_pct": 9.0, "passed": False,
                        "other_load_pct": 0.5},
                       {"target_pps": pps, "offered_pps": pps, "forwarded_pps": pps, "sent": 1,
                        "lost": 0, "loss_pct": 0.0, "passed": True, "other_load_pct": 0.5}]}


def make_doc(rounds=3, seed=15, pings=500):
    """A full, realistic bench result: every row of issue 15, `rounds` rounds each, values
    jittered by a few % round to round; `pings` per latency histogram."""
    rng = random.Random(seed)
    j = lambda x: x * rng.uniform(0.95, 1.05)       # noqa: E731
    rows = []
    for attrs, n, m, (n15, m15), model, idle, p50 in SPEC:
        swept = attrs["system"] in ("pyxsw", "bridge") and \
            not any(k in attrs for k in ("ports", "fdb_macs", "vlan_trunk"))
        row = dict(attrs, label=fwd_label(attrs), available=True, rounds=[])
        for i in range(rounds):
            rn, offered = j(n) * 1e6, (6.0e6 if attrs["system"] == "xdp" else 2.3e6)
            rd = {"round": i, "mfr": window(j(m) * 1e6, offered, model),
                  "ndr": ndr(rn), "sweep": [], "other_load_pct_max": 1.0,
                  "idle": {"switch_cpu_pct": None if busy(model, 0)[1] is None else idle,
                           "cpu_busy_pct": {"0": 1.0, "1": idle},
                           "fwd_core_busy_pct": min(100.0, j(idle)), "window_s": 2.0},
                  "sizes": {"1500": {"mfr": window(j(m15) * 1e6, 0.8e6, model, 1500),
                                     "ndr": ndr(j(n15) * 1e6, 1500)}}}
            if attrs.get("fastpath"):
                rd["mfr"]["fastpath_frames"] = {"ingress": {"fastpath_packets": 9999,
                                                            "packets": 10000, "share": 0.9999}}
            for pc in STEPS if swept else STEPS[:1]:
                u = pc / 100
                fwd = rn * u * rng.uniform(0.99, 1.0)
                b, sw = busy(model, u)
                b = min(100.0, j(b))
                rd["sweep"].append({
                    "pct": pc, "target_pps": rn * u, "offered_pps": fwd, "forwarded_pps": fwd,
                    "loss_pct": 0.0, "cpu_busy_pct": {"0": 30.0, "1": b},
                    "fwd_core_busy_pct": b, "switch_cpu_pct": sw,
                    "wakeups_per_s": ({"sleep": 40000 * u, "adaptive": 8000 * u}.get(model, 0.0)
                                      if attrs["system"] == "pyxsw" else None),
                    "cpu_per_mpps": b / (fwd / 1e6), "latency_us": latency(rng, j(p50), u, pings),
                    "other_load_pct": 0.5})
            if attrs["system"] == "pyxsw" and not attrs.get("fastpath") and swept:
                rd["storm"] = dict(window(rd["mfr"]["forwarded_pps"] * j(0.9), 1.9e6, model),
                                   rpc_per_s=int(j(400)))
                rd["burn"] = window(rd["mfr"]["forwarded_pps"] * j(0.88), 1.2e6, model)
                rd["storm_ratio"] = rd["storm"]["forwarded_pps"] / rd["mfr"]["forwarded_pps"]
                rd["burn_ratio"] = rd["burn"]["forwarded_pps"] / rd["mfr"]["forwarded_pps"]
                if attrs["mode"] == "poll":
                    rd["storm_by_method"] = {k: {"ratio": j(0.91), "rpc_per_s": int(j(v))}
                                             for k, v in (("status", 750), ("port.list", 1000),
                                                          ("port.stats", 520), ("fdb.list", 300))}
            if attrs.get("fdb_macs"):
                rd["fdb_entries"] = attrs["fdb_macs"] + 2
            row["rounds"].append(rd)
        rows.append(row)
    machine = {"kernel": "6.18.44", "cpu_model": "AMD EPYC", "nproc": 2, "hostname": "bench",
               "pyxsw_git": "93bfb8d", "commit": "93bfb8d" + "0" * 33, "dirty": False,
               "dpdk": "22.11.11"}
    config = {"sizes": [64, 1500], "rounds": rounds, "seconds": 2.0, "warmup": 1.0,
              "trial_s": 1.0, "loss_tolerance_pct": 0.001, "resolution": 0.04,
              "sweep_pct": STEPS, "sweep_rows": ["pyxsw", "bridge"], "latency": 2000,
              "latency_interval_us": 250, "idle": 2.0, "gen_cores": [0], "fwd_cores": [1],
              "queues": 1}
    return {"benchmark": "bench", "schema": 2, "time": "2026-12-01T10:00:00+00:00",
            "quick": False, "duration_s": 1140.0, "machine": machine,
            "fwd": {"benchmark": "fwd_rate", "schema": 2, "time": "2026-12-01T10:00:00+00:00",
                    "machine": machine, "config": config, "results": rows},
            "micro": {"benchmarks": [{"name": "test_fdb_lookup", "stats": {"median": 2.5e-5},
                                      "extra_info": {"ops": 100, "per": "lookup"}}]},
            "two_queues": {"measured": False,
                           "reason": "needs 4 cores (2 generator + 2 forwarder); this machine "
                                     "has 2"}}


def row(doc, lab):
    return next(r for r in doc["fwd"]["results"] if r["label"] == lab)


def put(doc, lab, path, values):
    """Set a figure of a row, one value per round (sweep steps by their pct)."""
    *parents, leaf = path.split(".")
    for rd, v in zip(row(doc, lab)["rounds"], values):
        node = rd
        for k in parents:
            node = next(s for s in node if str(s["pct"]) == k) if isinstance(node, list) \
                else node[k]
        node[leaf] = v


def lines_of(doc):
    return report.markdown(doc).splitlines()


def line(doc, start):
    return next(x for x in lines_of(doc) if x.startswith(start))


_built = []


@pytest.fixture
def doc():
    """A fresh copy of one synthetic result (built once: a copy is cheaper than a build)."""
    if not _built:
        _built.append(json.dumps(make_doc(pings=200)))
    return json.loads(_built[0])


# ---------------------------------------------------------------- cells, ratios, targets

def test_a_cell_is_the_median_and_range_of_the_rounds():
    s = report.spread([1.05e6, 0.985e6, 1.027e6])
    assert report.mpps(s) == "1.027 (0.985-1.050)"
    assert report.times(report.spread([1.3, 1.25, 1.4])) == "1.30x (1.25-1.40)"
    assert report.mpps(report.spread([0.5e6])) == "0.500"
    assert report.mpps(report.spread([0.5e6, 0.6e6], of=3)) == "0.550 (0.500-0.600) [2/3]"
    assert report.mpps(None) == "-"


def test_ratios_are_paired_by_round_index():
    a = {"rounds": [{"round": i, "ndr": {"pps": v}} for i, v in enumerate([1.0, 2.0, 3.0])]}
    b = {"rounds": [{"round": i, "ndr": {"pps": v}} for i, v in enumerate([2.0, 1.0, 3.0])]}
    # unpaired, the medians' ratio is 1.00 with a range of 0.33-3.0; paired: 0.5, 2.0, 1.0
    assert report.paired(a, b, "ndr.pps") == report.Spread(0.5, 1.0, 2.0, 3, 3)
    b["rounds"][1]["ndr"]["pps"] = None      # a round without the figure: left out, said so
    assert report.cell(report.paired(a, b, "ndr.pps"), nd=2) == "0.75 (0.50-1.00) [2/3]"
    assert report.paired(a, None, "ndr.pps") is None


def test_a_target_is_met_only_when_every_round_meets_it(doc):
    put(doc, "testpmd", "mfr.forwarded_pps", [0.40e6, 0.40e6, 0.40e6])
    put(doc, "pyxsw (poll)", "mfr.forwarded_pps", [0.52e6, 0.56e6, 0.54e6])
    assert line(doc, "| poll / testpmd, 64 B MFR |") == \
        "| poll / testpmd, 64 B MFR | 1.35x (1.30-1.40) | >= 1.25x | met |"
    put(doc, "pyxsw (poll)", "mfr.forwarded_pps", [0.49e6, 0.56e6, 0.54e6])   # median 1.35
    assert line(doc, "| poll / testpmd, 64 B MFR |") == \
        "| poll / testpmd, 64 B MFR | 1.35x (1.23-1.40) | >= 1.25x | NOT met |"
    # "no worse than": the largest round decides
    put(doc, "pyxsw (interrupt)", "idle.switch_cpu_pct", [0.2, 0.4, 0.9])
    assert line(doc, "| interrupt, idle switch CPU |").endswith("| < 1% | met |")
    put(doc, "pyxsw (interrupt)", "idle.switch_cpu_pct", [0.2, 0.4, 1.2])
    assert line(doc, "| interrupt, idle switch CPU |") == \
        "| interrupt, idle switch CPU | 0.4% (0.2-1.2) | < 1% | NOT met |"
    put(doc, "pyxsw (poll)", "sweep.10.latency_us.p99", [100, 100, 100])
    put(doc, "bridge", "sweep.10.latency_us.p99", [200, 100, 150])
    assert line(doc, "| poll p99 / bridge p99 at 10% load |") == \
        "| poll p99 / bridge p99 at 10% load | 0.67x (0.50-1.00) | <= 1x | met |"
    put(doc, "bridge", "sweep.10.latency_us.p99", [200, 99, 150])
    assert line(doc, "| poll p99 / bridge p99 at 10% load |").endswith("| NOT met |")


def test_a_target_without_its_rows_is_not_measured(doc):
    doc["fwd"]["results"] = [r for r in doc["fwd"]["results"] if r["system"] != "ovs"]
    assert line(doc, "| poll / ovs, 64 B MFR |") == \
        "| poll / ovs, 64 B MFR | - | >= 1x | not measured |"
    assert line(doc, "| interrupt fastpath / ovs, 64 B MFR |").endswith("| not measured |")


def test_the_fastpath_targets_compare_mfr_and_the_idle_cpu_difference(doc):
    put(doc, "xdp", "mfr.forwarded_pps", [2.0e6, 2.0e6, 2.0e6])
    put(doc, "pyxsw (interrupt, fastpath)", "mfr.forwarded_pps", [1.8e6, 1.7e6, 1.5e6])
    assert line(doc, "| interrupt fastpath / xdp redirect, 64 B MFR |") == \
        "| interrupt fastpath / xdp redirect, 64 B MFR | 0.85x (0.75-0.90) | >= 0.8x | NOT met |"
    put(doc, "pyxsw (interrupt)", "idle.switch_cpu_pct", [0.4, 0.4, 0.4])
    put(doc, "pyxsw (interrupt, fastpath)", "idle.switch_cpu_pct", [0.6, 0.8, 0.9])
    assert line(doc, "| interrupt fastpath, idle switch CPU minus without |") == \
        ("| interrupt fastpath, idle switch CPU minus without | 0.4 points (0.2-0.5) | "
         "<= 0.5 points | met |")


# ---------------------------------------------------------------- tables

def test_the_footnote_is_printed_only_when_a_row_is_flagged(doc):
    text = report.markdown(doc)
    assert "(!)" not in text
    put(doc, "ovs", "other_load_pct_max", [1.0, 12.5, 1.0])
    lines = lines_of(doc)
    assert any(x.startswith("| ovs (!) | ") for x in lines)
    assert any(x.startswith("(!): in some round of that row") for x in lines)
    assert not any(x.startswith("| testpmd (!)") for x in lines)


def test_the_rate_table_has_ndr_and_mfr_with_spread_and_the_testpmd_ratio(doc):
    put(doc, "testpmd", "ndr.pps", [0.30e6, 0.28e6, 0.32e6])
    put(doc, "testpmd", "mfr.forwarded_pps", [0.50e6, 0.50e6, 0.50e6])
    put(doc, "pyxsw (poll)", "ndr.pps", [0.45e6, 0.42e6, 0.40e6])
    put(doc, "pyxsw (poll)", "mfr.forwarded_pps", [0.60e6, 0.62e6, 0.65e6])
    put(doc, "pyxsw (poll)", "mfr.offered_pps", [2.3e6, 2.3e6, 2.3e6])
    assert line(doc, "| pyxsw (poll) |") == (
        "| pyxsw (poll) | 0.420 (0.400-0.450) | 0.620 (0.600-0.650) | 2.300 | "
        "1.50x (1.25-1.50) | 1.24x (1.20-1.30) |")
    put(doc, "pyxsw (poll)", "ndr.generator_bound", [False, True, False])
    lines = lines_of(doc)
    assert any(x.startswith("| pyxsw (poll) | 0.420 (0.400-0.450) (g) |") for x in lines)
    assert any(x.startswith("(g): ") for x in lines)


def test_1500_byte_rates_are_in_gbps_too(doc):
    put(doc, "bridge", "sizes.1500.ndr.pps", [1.0e6, 0.9e6, 1.1e6])
    put(doc, "bridge", "sizes.1500.mfr.forwarded_pps", [0.5e6, 0.5e6, 0.5e6])
    lines = lines_of(doc)
    i = lines.index("| 1500 B | NDR Mpps | NDR Gb/s | MFR Mpps | MFR Gb/s |")
    assert lines[i + 2] == ("| bridge | 1.000 (0.900-1.100) | 12.000 (10.800-13.200) | "
                            "0.500 | 6.000 |")


def test_each_swept_row_has_a_load_sweep_table(doc):
    put(doc, "pyxsw (interrupt)", "sweep.50.offered_pps", [0.2e6, 0.2e6, 0.2e6])
    put(doc, "pyxsw (interrupt)", "sweep.50.fwd_core_busy_pct", [40.0, 44.0, 50.0])
    put(doc, "pyxsw (interrupt)", "sweep.50.cpu_per_mpps", [200.0, 220.0, 250.0])
    put(doc, "pyxsw (interrupt)", "sweep.50.loss_pct", [0.0, 0.0, 2.5])
    put(doc, "pyxsw (interrupt)", "sweep.50.latency_us.lost", [0, 3, 1])
    lines = lines_of(doc)
    heads = [x for x in lines if "% of its NDR |" in x]
    assert [h.split(":")[0] for h in heads] == [
        "| bridge", "| pyxsw (poll)", "| pyxsw (interrupt)", "| pyxsw (adaptive)",
        "| pyxsw (poll, fastpath)", "| pyxsw (interrupt, fastpath)",
        "| pyxsw (adaptive, fastpath)"]
    i = lines.index(next(h for h in heads if h.startswith("| pyxsw (interrupt):")))
    assert [x.split(" |")[0] for x in lines[i + 2:i + 7]] == [f"| {p}%" for p in STEPS]
    # a step's frame loss and its unanswered pings are in the table
    assert lines[i + 4].startswith("| 50% | 0.200 | 0.000 (0.000-2.500) | 44.0 (40.0-50.0) | ")
    assert "| 220 (200-250) |" in lines[i + 4] and lines[i + 4].endswith("| 1 (0-3) |")
    # bridge: no switch process, no wake-ups
    j = lines.index(heads[0])
    assert lines[j + 2].split(" | ")[4:7:2] == ["-", "-"]


def test_scaling_idle_ports_fdb_trunk_and_two_queues(doc):
    put(doc, "pyxsw (poll)", "ndr.pps", [0.40e6, 0.50e6, 0.45e6])
    put(doc, "pyxsw (poll, 64p)", "ndr.pps", [0.20e6, 0.30e6, 0.36e6])
    lines = lines_of(doc)
    assert any(x.startswith("| pyxsw (poll): 0 idle | 0.450 (0.400-0.500) | "
                            "1.00x |") for x in lines)
    assert any(x.startswith("| pyxsw (poll, 64p): 62 idle | 0.300 (0.200-0.360) | "
                            "0.60x (0.50-0.80) |") for x in lines)
    assert any(x.startswith("| pyxsw (poll, 16p): 14 idle |") for x in lines)
    assert any(x.startswith("| pyxsw (poll), 1 MAC |") for x in lines)
    assert any(x.startswith("| pyxsw (poll, 100000 MACs) |") and x.endswith("| 100002 |")
               for x in lines)
    assert any(x.startswith("| pyxsw (poll, trunk) |") for x in lines)
    assert "Two queues: not measured: needs 4 cores (2 generator + 2 forwarder); this " \
           "machine has 2." in lines


def test_the_storm_tables(doc):
    put(doc, "pyxsw (poll)", "storm_ratio", [0.88, 0.92, 0.95])
    lines = lines_of(doc)
    storm = next(x for x in lines if x.startswith("| pyxsw (poll) |") and "| 0.920 (0.880-0.950) |"
                 in x)
    assert storm.count("|") == 10
    assert line(doc, "| poll under RPC storm / quiet (issue 3) |").endswith("| NOT met |")
    assert any(x.startswith("| storm of one method, pyxsw (poll) |") for x in lines)
    # every method's figures, dotted names included (a dotted path lost all but status)
    for m in ("status", "port.list", "port.stats", "fdb.list"):
        row = next(x for x in lines if x.startswith(f"| {m} |"))
        assert "| - |" not in row and row.count("|") == 4


def test_an_unavailable_row_says_why(doc):
    r = row(doc, "pyxsw (interrupt, fastpath)")
    r.update(available=False, reason="the fast path did not engage", rounds=[])
    lines = lines_of(doc)
    assert "| pyxsw (interrupt, fastpath) | not available: the fast path did not engage | | | | |" \
        in lines
    assert line(doc, "| interrupt fastpath / testpmd, 64 B MFR |").endswith("| not measured |")


def test_a_row_that_failed_in_a_later_round_keeps_the_rounds_it_finished(doc):
    r = row(doc, "pyxsw (interrupt)")
    r.update(available=False, reason="exited with status 1 while measured",
             rounds=r["rounds"][:2])
    lines = lines_of(doc)
    ndr = line(doc, "| pyxsw (interrupt) (x) |")
    assert "[2/3]" in ndr and "not available" not in ndr
    assert any(x.startswith("(x): ") and "exited with status 1" in x for x in lines)
    assert any(x.startswith("| pyxsw (interrupt) (x): % of its NDR") for x in lines)
    assert "interrupt" in next(c for c in report.recommend(doc)
                               if c["case"] == "dedicated core")["why"]


def test_a_search_that_did_not_converge_is_marked(doc):
    assert not any(x.startswith("(c): ") for x in lines_of(doc))
    row(doc, "ovs")["rounds"][1]["ndr"]["converged"] = False
    assert line(doc, "| ovs |").split(" | ")[1].endswith(" (c)")
    assert any(x.startswith("(c): ") for x in lines_of(doc))


def test_the_header_records_the_commit_and_whether_it_was_dirty(doc):
    text = report.markdown(doc)
    assert "Commit 93bfb8d00000 (93bfb8d), clean, took 19 min." in text
    doc["machine"].update(dirty=True, pyxsw_git="93bfb8d-dirty")
    assert "Commit 93bfb8d00000 (93bfb8d-dirty) with uncommitted changes (dirty)" in \
        report.markdown(doc)
    assert "lost at most 0.001% of frames" in report.markdown(doc)


def test_the_microbenchmark_table_is_unchanged(doc):
    assert line(doc, "| test_fdb_lookup |") == \
        "| test_fdb_lookup | 250.0 ns per lookup | 4,000,000 |"


def test_labels():
    assert report.label({"system": "pyxsw", "mode": "poll"}) == "pyxsw (poll)"
    assert report.label({"system": "pyxsw", "mode": "poll", "fastpath": True}) == \
        "pyxsw (poll, fastpath)"
    assert report.label({"system": "pyxsw", "mode": "interrupt", "fastpath": True,
                         "fdb_macs": 1000}) == "pyxsw (interrupt, fastpath, 1000 MACs)"
    assert report.label({"system": "bridge", "mode": None}) == "bridge"
    assert report.label({"system": "pyxsw", "mode": "poll", "ports": 16}) == "pyxsw (poll, 16p)"
    assert report.label({"system": "pyxsw", "mode": "poll", "vlan_trunk": True}) == \
        "pyxsw (poll, trunk)"
    assert report.label({"system": "pyxsw", "mode": "poll", "label": "mine"}) == "mine"


# ---------------------------------------------------------------- the recommendation

def rec(doc):
    return {c["case"]: c for c in report.recommend(doc)}


def set_ndr(doc, **by_mode):
    for mode, vals in by_mode.items():
        put(doc, f"pyxsw ({mode})", "ndr.pps", [v * 1e6 for v in vals])


def test_dedicated_core_is_the_highest_ndr_and_ties_go_to_the_lower_p99(doc):
    set_ndr(doc, poll=[0.50, 0.52, 0.51], interrupt=[0.40, 0.41, 0.42],
            adaptive=[0.43, 0.44, 0.45])
    r = rec(doc)["dedicated core"]
    assert r["choice"] == "poll"
    assert "poll 0.510 (0.500-0.520)" in r["why"] and "cannot be told apart" not in r["why"]
    set_ndr(doc, interrupt=[0.60, 0.61, 0.62])
    assert rec(doc)["dedicated core"]["choice"] == "interrupt"
    # overlapping ranges: the rounds cannot tell them apart, p99 at 50% load decides
    set_ndr(doc, interrupt=[0.49, 0.50, 0.505])
    put(doc, "pyxsw (poll)", "sweep.50.latency_us.p99", [400, 410, 420])
    put(doc, "pyxsw (interrupt)", "sweep.50.latency_us.p99", [300, 310, 320])
    r = rec(doc)["dedicated core"]
    assert r["choice"] == "interrupt"
    assert "poll, interrupt cannot be told apart across rounds" in r["why"]
    assert "interrupt 310 (300-320)" in r["why"]
    put(doc, "pyxsw (interrupt)", "sweep.50.latency_us.p99", [500, 510, 520])
    assert rec(doc)["dedicated core"]["choice"] == "poll"


def test_shared_core_is_the_lowest_cpu_per_mpps_among_the_fast_enough(doc):
    set_ndr(doc, poll=[0.50, 0.50, 0.50], interrupt=[0.45, 0.45, 0.45],
            adaptive=[0.45, 0.45, 0.45])
    for m, v in (("poll", 800), ("interrupt", 200), ("adaptive", 300)):
        for p in (25, 50):
            put(doc, f"pyxsw ({m})", f"sweep.{p}.cpu_per_mpps", [v, v + 5, v + 10])
    r = rec(doc)["shared core"]
    assert r["choice"] == "interrupt"
    assert "interrupt 205 (200-210)" in r["why"]
    # the spread is over rounds: a load step's difference is not taken for a round's
    for m, lo, hi in (("poll", 300, 700), ("interrupt", 480, 520)):
        put(doc, f"pyxsw ({m})", "sweep.25.cpu_per_mpps", [hi] * 3)
        put(doc, f"pyxsw ({m})", "sweep.50.cpu_per_mpps", [lo] * 3)
    r = rec(doc)["shared core"]
    assert "poll 500, interrupt 500" in r["why"]
    assert "poll keeps its core" in r["why"]
    # too slow (NDR below 0.8x the best): out, whatever its CPU
    set_ndr(doc, interrupt=[0.38, 0.38, 0.38])
    r = rec(doc)["shared core"]
    assert r["choice"] == "adaptive" and "left out, NDR below 0.8x the best: interrupt" in r["why"]


def test_mostly_idle_port_is_the_lowest_idle_cpu_then_p99(doc):
    put(doc, "pyxsw (poll)", "idle.fwd_core_busy_pct", [100, 100, 100])
    put(doc, "pyxsw (interrupt)", "idle.fwd_core_busy_pct", [0.3, 0.4, 0.5])
    put(doc, "pyxsw (adaptive)", "idle.fwd_core_busy_pct", [4.0, 5.0, 6.0])
    assert rec(doc)["mostly idle port"]["choice"] == "interrupt"
    put(doc, "pyxsw (adaptive)", "idle.fwd_core_busy_pct", [0.5, 0.6, 0.7])   # within a point
    put(doc, "pyxsw (interrupt)", "sweep.10.latency_us.p99", [900, 950, 1000])
    put(doc, "pyxsw (adaptive)", "sweep.10.latency_us.p99", [300, 310, 320])
    r = rec(doc)["mostly idle port"]
    assert r["choice"] == "adaptive" and "lower p99 at 10% load decides" in r["why"]


def test_what_the_fast_path_changes(doc):
    set_ndr(doc, **{"interrupt": [0.40, 0.40, 0.40], "interrupt, fastpath": [1.2, 1.4, 1.6],
                    "poll": [0.5, 0.5, 0.5], "poll, fastpath": [0.9, 0.9, 0.9],
                    "adaptive": [0.4, 0.4, 0.4], "adaptive, fastpath": [0.3, 0.5, 0.6]})
    r = rec(doc)["fast path"]
    assert r["choice"] == "on, in interrupt mode: NDR 1.400 (1.200-1.600) Mpps"
    assert "interrupt: NDR 3.50x (3.00-4.00) with/without" in r["why"]
    assert "adaptive: NDR 1.25x (0.75-1.50)" in r["why"]
    set_ndr(doc, **{"interrupt, fastpath": [0.3, 0.5, 0.6], "poll, fastpath": [0.4, 0.6, 0.6]})
    assert rec(doc)["fast path"]["choice"] == "no gain in every round"


def test_missing_figures_are_not_measured(doc):
    for r in doc["fwd"]["results"]:
        for rd in r["rounds"]:
            rd.pop("sweep")
    r = rec(doc)
    assert r["shared core"]["choice"] == "not measured"
    assert r["dedicated core"]["choice"] == "poll"          # NDR alone decides
    doc["fwd"]["results"] = [x for x in doc["fwd"]["results"] if x["system"] != "pyxsw"]
    assert {c["choice"] for c in report.recommend(doc)} == {"not measured"}
    assert report.markdown(doc)          # and the rest of the report still renders
    assert report.markdown({"schema": 2})


def test_the_recommendation_is_near_the_top(doc):
    lines = lines_of(doc)
    i = lines.index("| use | pyxsw mode | from this run's figures |")
    assert i < lines.index(next(x for x in lines if x.startswith("| 64 B | NDR Mpps")))
    assert [x.split(" | ")[0] for x in lines[i + 2:i + 6]] == [
        "| dedicated core", "| shared core", "| mostly idle port", "| fast path"]


# ---------------------------------------------------------------- files

def test_write_all_writes_the_markdown_and_the_plots(doc, tmp_path):
    md = report.write_all(doc, tmp_path, "bench-x")
    for p in report.PLOTS:
        f = tmp_path / f"bench-x-{p}.png"
        assert f.stat().st_size > 10000, f
        assert f"![bench-x-{p}.png](bench-x-{p}.png)" in md
    assert (tmp_path / "bench-x.md").read_text() == md


def test_an_older_result_is_refused_in_one_line(tmp_path, capsys):
    old = tmp_path / "bench-20261129T192603Z.json"
    old.write_text(json.dumps({"benchmark": "bench", "fwd_64": {"results": []}}))
    (tmp_path / "bench-20261129T192603Z.md").write_text("old report\n")
    assert report.main([str(old)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "bench-20261129T192603Z.md, committed beside it" in err
    assert "schema-1 result" in err
    assert not (tmp_path / "bench-20261129T192603Z-rate.png").exists()


def test_main_writes_beside_the_json(doc, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(report, "plots", lambda *a: [])      # drawn in the test above
    f = tmp_path / "bench-y.json"
    f.write_text(json.dumps(doc))
    assert report.main([str(f)]) == 0
    assert (tmp_path / "bench-y.md").exists() and "## pyxsw bench" in capsys.readouterr().out


def test_two_queues_when_measured(doc):
    two = json.loads(json.dumps([row(doc, "pyxsw (poll)"), row(doc, "bridge")]))
    put({"fwd": {"results": two}}, "pyxsw (poll)", "mfr.forwarded_pps", [0.3e6, 0.3e6, 0.33e6])
    put(doc, "pyxsw (poll)", "mfr.forwarded_pps", [0.6e6, 0.5e6, 0.55e6])
    doc["two_queues"] = {"measured": True, "results": two + [
        {"system": "testpmd", "available": False, "reason": "single-queue veth"}]}
    lines = lines_of(doc)
    i = lines.index("| two queues | NDR Mpps | MFR Mpps | MFR vs one queue |")
    assert lines[i + 2].startswith("| pyxsw (poll) |")
    assert lines[i + 2].endswith("| 0.300 (0.300-0.330) | 0.60x (0.50-0.60) |")
    assert lines[i + 4] == "| testpmd | not available: single-queue veth | | |"


def sample_report(out=Path("/tmp/report-sample")):
    """Not a test: a report of the synthetic run to look at, written by running this file:
    `.venv/bin/python tests/test_perf_report.py` (then /tmp/report-sample/bench-sample.md)."""
    out.mkdir(exist_ok=True)
    report.write_all(make_doc(pings=2000), out, "bench-sample")
    d = make_doc(pings=2000)
    put(d, "xdp", "mfr.forwarded_pps", [1.9e6, 2.0e6, 2.1e6])
    put(d, "xdp", "ndr.pps", [1.5e6, 1.6e6, 1.7e6])
    report.write_all(d, out, "bench-sample-lowxdp")


if __name__ == "__main__":
    sample_report()
