#!/usr/bin/env python3
"""Markdown table and PNG plots from a perf/bench.py result (perf/results/bench-latest.json).

    .venv/bin/python perf/report.py [perf/results/bench-latest.json]

Writes <name>.md, <name>-rate.png, <name>-cpu.png and <name>-latency.png next to the JSON.
Plots need matplotlib (requirements: matplotlib==3.10.7); without it only the Markdown.
"""
import json
import sys
from pathlib import Path


def label(r):
    mode = ", ".join(x for x in (r.get("mode"), "fastpath" if r.get("fastpath") else None) if x)
    if r.get("fdb_macs"):
        return f"{r['system']} ({mode}, {r['fdb_macs']} MACs)"
    return f"{r['system']} ({mode})" if mode else r["system"]


def rows(part):
    return [r for r in (part or {}).get("results", []) if not r.get("fdb_macs")]


def mpps(x):
    return f"{x / 1e6:.3f}" if x is not None else "-"


def pct(x, nd=0):
    return f"{x:.{nd}f}" if x is not None else "-"


def markdown(doc):
    m = doc.get("machine", {})
    f64, f1500 = doc.get("fwd_64") or {}, doc.get("fwd_1500") or {}
    cfg = f64.get("config", {})
    big = {label(r): r for r in rows(f1500)}
    ref = next((r["forwarded_pps"] for r in rows(f64)
                if r["system"] == "testpmd" and r.get("available")), None)
    out = [f"## pyxsw bench, {doc.get('time', '?')}", "",
           f"Machine: {m.get('cpu_model')}, {m.get('nproc')} cores, kernel {m.get('kernel')}, "
           f"pyxsw {m.get('pyxsw_git')}, DPDK {m.get('dpdk')}. Generator core(s) "
           f"{cfg.get('gen_cores')}, forwarder core(s) {cfg.get('fwd_cores')}, one queue, "
           f"{cfg.get('seconds')} s windows, median of {cfg.get('runs')} run(s)"
           + (" (quick)" if doc.get("quick") else "") + ". A shared 2-core VM: expect +-30%.",
           "",
           "| system | 64 B Mpps | vs testpmd | 1500 B Mpps | switch CPU % loaded | "
           "switch CPU % idle | fwd core busy % idle | latency us p50 / p99 / max |",
           "|---|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows(f64):
        if not r.get("available"):
            out.append(f"| {label(r)} | not available: {r.get('reason', '')[:80]} "
                       "| | | | | | |")
            continue
        b = big.get(label(r), {})
        idle = r.get("idle") or {}
        fwd_core = (cfg.get("fwd_cores") or [1])[0]
        core_idle = (idle.get("cpu_busy_pct") or {}).get(str(fwd_core),
                                                          (idle.get("cpu_busy_pct") or {}).get(
                                                              fwd_core))
        lat = r.get("latency_us") or {}
        lt = (f"{lat['p50']:.0f} / {lat['p99']:.0f} / {lat['max']:.0f}"
              if lat.get("n") else "-")
        ratio = f"{r['forwarded_pps'] / ref:.2f}x" if ref else "-"
        noisy = " (!)" if (r.get("other_load_pct") or 0) > 10 else ""
        out.append(f"| {label(r)} | {mpps(r['forwarded_pps'])}{noisy} | {ratio} | "
                   f"{mpps(b.get('forwarded_pps')) if b.get('available') else '-'} | "
                   f"{pct(r.get('switch_cpu_pct'))} | {pct(idle.get('switch_cpu_pct'), 1)} | "
                   f"{pct(core_idle, 1)} | {lt} |")
    out += ["", "(!): other processes (not this benchmark) used more than 10% of a core "
            "during that row's median run: the figure is not trustworthy, run again when the "
            "machine is quiet.", "", "Switch CPU: utime+stime of the forwarder's process (/proc/<pid>/stat), in % "
            "of one core; none for bridge/xdp (kernel work: see the core's busy %). Idle: 5 s "
            "without traffic, 1 s after it stopped. Latency: UDP ping-pong gen0 <-> sink0 "
            "through the switch, one in flight, 1 ms apart, after the load."]
    storms = [r for r in rows(f64) if r.get("storm")]
    if storms:
        out += ["", "| RPC storm (pyxsw) | quiet Mpps | storm Mpps | storm / quiet | RPCs/s | "
                "CPU hog / quiet (control) | offered quiet / storm / hog Mpps |",
                "|---|---:|---:|---:|---:|---:|---|"]
        for r in storms:
            st, b = r["storm"], r.get("burn") or {}
            out.append(f"| {label(r)} | {mpps(r['forwarded_pps'])} | "
                       f"{mpps(st['forwarded_pps'])} | {r.get('storm_ratio', 0):.3f} | "
                       f"{st.get('rpc_per_s')} | {r.get('burn_ratio', 0):.3f} | "
                       f"{mpps(r['offered_pps'])} / {mpps(st['offered_pps'])} / "
                       f"{mpps(b.get('offered_pps'))} |")
        out += ["", "Storm: perf/rpc_rate.py --storm (4 clients x 8 calls in flight, cycling "
                "status, port.stats, port.list, fdb.list) on the non-forwarder core(s), in a "
                "second window of the same switch process; control: a third window with a "
                "spinning process on the same core(s) and no RPC, to separate the management "
                "plane's cost from the generator core's loss of CPU."]
    by = doc.get("storm_by_method") or {}
    if by:
        out += ["", "| storm of one method (pyxsw poll, 1 run) | RPCs/s | storm / quiet | "
                "CPU hog / quiet |", "|---|---:|---:|---:|"]
        for m, r in by.items():
            if r.get("available") and r.get("storm_ratio") is not None:
                out.append(f"| {m} | {r.get('rpc_per_s')} | {r['storm_ratio']:.3f} | "
                           f"{r.get('burn_ratio') or 0:.3f} |")
            else:
                out.append(f"| {m} | not available: {(r.get('reason') or '')[:60]} | | |")
    two = rows(doc.get("fwd_64_2q"))
    if two:
        one = {label(r): r for r in rows(f64) if r.get("available")}
        out += ["", "| two queues, 64 B | Mpps | vs one queue | switch CPU % |",
                "|---|---:|---:|---:|"]
        for r in two:
            if not r.get("available"):
                out.append(f"| {label(r)} | not available: {r.get('reason', '')[:80]} | | |")
                continue
            o = one.get(label(r), {}).get("forwarded_pps")
            ratio = f"{r['forwarded_pps'] / o:.2f}x" if o else "-"
            out.append(f"| {label(r)} | {mpps(r['forwarded_pps'])} | {ratio} | "
                       f"{pct(r.get('switch_cpu_pct'))} |")
        out += ["", "Two queues: each port has two, a generator and a forwarder worker on each "
                "of cores 0 and 1 (veth picks the receiving queue by the sending CPU); on a "
                "2-core machine generators and workers share the cores, so this shows that "
                "the queues work and what sharing costs, not a scaling figure."]
    trunk = rows(doc.get("fwd_64_trunk"))
    if trunk:
        one = {label(r): r for r in rows(f64) if r.get("available")}
        tref = next((r["forwarded_pps"] for r in trunk
                     if r["system"] == "testpmd" and r.get("available")), None)
        out += ["", "| 802.1Q, 64 B: sink's port a trunk (a tag pushed per frame) | Mpps | "
                "vs testpmd, same run | vs untagged |", "|---|---:|---:|---:|"]
        for r in trunk:
            if r["system"] != "pyxsw":
                continue
            if not r.get("available"):
                out.append(f"| {label(r)} | not available: {r.get('reason', '')[:80]} | | |")
                continue
            o = one.get(label(r), {}).get("forwarded_pps")
            vs_t = f"{r['forwarded_pps'] / tref:.2f}x" if tref else "-"
            vs_u = f"{r['forwarded_pps'] / o:.2f}x" if o else "-"
            out.append(f"| {label(r)} | {mpps(r['forwarded_pps'])} | {vs_t} | {vs_u} |")
    fdb = [r for r in (f64.get("results") or []) if r.get("fdb_macs")]
    if fdb:
        out += ["", "| pyxsw, learned MACs | Mpps | FDB entries |", "|---|---:|---:|"]
        for r in fdb:
            if r.get("available"):
                out.append(f"| {r['fdb_macs']} | {mpps(r['forwarded_pps'])} | "
                           f"{r.get('fdb_entries')} |")
            else:
                out.append(f"| {r['fdb_macs']} | not available | |")
    out += targets(doc)
    out += fastpath(doc)
    micro = (doc.get("micro") or {}).get("benchmarks")
    if micro:
        out += ["", "| microbenchmark (tests/bench, pytest-benchmark) | median per operation "
                "| operations/s |", "|---|---:|---:|"]
        for b in micro:
            st, info = b["stats"], b.get("extra_info") or {}
            ops = info.get("ops", 1)
            each = st["median"] / ops
            out.append(f"| {b['name']} | {each * 1e9:.1f} ns per {info.get('per', 'call')} | "
                       f"{1 / each:,.0f} |")
    return "\n".join(out) + "\n"


def targets(doc):
    """Issue 4's targets as ratios, met or not."""
    r64 = {label(r): r for r in rows(doc.get("fwd_64")) if r.get("available")}

    def fwd(k):
        return r64.get(k, {}).get("forwarded_pps")

    def idle(k):
        return (r64.get(k, {}).get("idle") or {}).get("switch_cpu_pct")

    def p99(k):
        return (r64.get(k, {}).get("latency_us") or {}).get("p99")

    poll = fwd("pyxsw (poll)")
    lines = []

    def check(what, value, goal, ok):
        if value is None:
            lines.append(f"| {what} | - | {goal} | not measured |")
        else:
            lines.append(f"| {what} | {value} | {goal} | {'met' if ok else 'NOT met'} |")

    for ref, goal in (("testpmd", 1.25), ("ovs", 1.0), ("bridge", 1.0)):
        v = poll / fwd(ref) if poll and fwd(ref) else None
        check(f"poll / {ref}, 64 B", f"{v:.2f}x" if v else None, f">= {goal}x",
              v is not None and v >= goal)
    v = idle("pyxsw (interrupt)")
    check("interrupt, idle CPU", f"{v:.1f}%" if v is not None else None, "< 1%",
          v is not None and v < 1)
    a = fwd("pyxsw (adaptive)")
    v = a / poll if a and poll else None
    check("adaptive / poll, full load", f"{v:.2f}x" if v else None, ">= 0.90x",
          v is not None and v >= 0.9)
    v = idle("pyxsw (adaptive)")
    check("adaptive, idle CPU", f"{v:.1f}%" if v is not None else None, "< 5%",
          v is not None and v < 5)
    a, b = p99("pyxsw (poll)"), p99("bridge")
    check("poll p99 / bridge p99", f"{a:.0f} / {b:.0f} us" if a and b else None, "<= 1",
          a is not None and b is not None and a <= b)
    st = r64.get("pyxsw (poll)", {}).get("storm_ratio")
    check("poll under RPC storm / quiet (issue 3)", f"{st:.2f}x" if st else None, ">= 0.90x",
          st is not None and st >= 0.9)
    return ["", "| target (issue 4) | measured | goal | |", "|---|---|---|---|", *lines]


def fastpath(doc):
    """Issue 14: pyxsw with the in-kernel fast path beside the same run's other systems, as
    ratios, and its targets met or not.  Nothing when the run had no fast-path row."""
    f64 = rows(doc.get("fwd_64"))
    fast = [r for r in f64 if r.get("fastpath")]
    if not fast:
        return []
    r64 = {label(r): r for r in f64 if r.get("available")}

    def fwd(k):
        return r64.get(k, {}).get("forwarded_pps")

    def lat(k, q):
        return (r64.get(k, {}).get("latency_us") or {}).get(q)

    def idle(k):
        return (r64.get(k, {}).get("idle") or {}).get("switch_cpu_pct")

    def ratio(a, b):
        return a / b if a and b else None

    def times(v):
        return f"{v:.2f}x" if v is not None else "-"

    out = ["", "| pyxsw with the fast path, 64 B | Mpps | in the kernel | vs xdp redirect | "
           "vs bridge | vs ovs | vs testpmd | vs same mode without | latency us p50 / p99 | "
           "switch CPU % idle |", "|---|---:|---:|---:|---:|---:|---:|---:|---|---:|"]
    for r in fast:
        if not r.get("available"):
            out.append(f"| {label(r)} | not available: {r.get('reason', '')[:80]} "
                       "| | | | | | | | |")
            continue
        k = label(r)
        share = ((r.get("fastpath_frames") or {}).get("ingress") or {}).get("share")
        without = label(dict(r, fastpath=False))
        vs = [times(ratio(r["forwarded_pps"], fwd(ref)))
              for ref in ("xdp", "bridge", "ovs", "testpmd", without)]
        lt = (f"{lat(k, 'p50'):.0f} / {lat(k, 'p99'):.0f}"
              if (r.get("latency_us") or {}).get("n") else "-")
        out.append(f"| {k} | {mpps(r['forwarded_pps'])} | "
                   f"{f'{100 * share:.1f}%' if share is not None else '-'} | {' | '.join(vs)} | "
                   f"{lt} | {pct(idle(k), 1)} |")
    out += ["", "In the kernel: the share of the rate window's frames in at the generator's "
            "port that the switch's XDP program forwarded itself (port.stats: fastpath "
            "rx_packets / rx_packets); the window starts only once it forwards. Same lab, "
            "same run as the rows above; xdp, the plain devmap redirect, is the ceiling."]

    lines = []

    def check(what, value, goal, ok):
        if value is None:
            lines.append(f"| {what} | - | {goal} | not measured |")
        else:
            lines.append(f"| {what} | {value} | {goal} | {'met' if ok else 'NOT met'} |")

    for mode in ("poll", "interrupt"):
        k = f"pyxsw ({mode}, fastpath)"
        if not any(label(r) == k for r in fast):
            continue
        for ref, name, goal in (("xdp", "xdp redirect", 0.8), ("bridge", "bridge", 3.0),
                                ("ovs", "ovs", 3.0), ("testpmd", "testpmd", 3.0)):
            v = ratio(fwd(k), fwd(ref))
            check(f"{mode} fastpath / {name}, 64 B", times(v) if v else None, f">= {goal}x",
                  v is not None and v >= goal)
        for q in ("p50", "p99"):
            a, b = lat(k, q), lat("bridge", q)
            check(f"{mode} fastpath latency {q} / bridge {q}",
                  f"{a:.0f} / {b:.0f} us" if a and b else None, "<= 1",
                  a is not None and b is not None and a <= b)
    a, b = idle("pyxsw (interrupt, fastpath)"), idle("pyxsw (interrupt)")
    if any(label(r) == "pyxsw (interrupt, fastpath)" for r in fast):
        check("interrupt fastpath, idle CPU vs without",
              f"{a:.1f}% / {b:.1f}%" if a is not None and b is not None else None,
              "<= without + 0.5 points", a is not None and b is not None and a <= b + 0.5)
    return out + ["", "| target (issue 14, fast path) | measured | goal | |", "|---|---|---|---|",
                  *lines]


def plots(doc, outdir, name):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("report: matplotlib missing, no plots (pip install matplotlib==3.10.7)")
        return []
    made = []
    f64 = [r for r in rows(doc.get("fwd_64")) if r.get("available")]
    big = {label(r): r for r in rows(doc.get("fwd_1500")) if r.get("available")}

    def pairs(what, names, left, right, ylabel, title):
        """Two bars per system: `left` and `right` are (label, values)."""
        fig, ax = plt.subplots(figsize=(9, 4.5))
        x = range(len(names))
        for dx, (lab, vals) in ((-0.2, left), (0.2, right)):
            ax.bar([i + dx for i in x], vals, 0.4, label=lab)
        ax.set_xticks(list(x), names, rotation=20, ha="right")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.legend()
        fig.tight_layout()
        fig.savefig(outdir / f"{name}-{what}.png", dpi=100)
        plt.close(fig)
        made.append(f"{name}-{what}.png")

    if f64:
        names = [label(r) for r in f64]
        pairs("rate", names, ("64 B", [r["forwarded_pps"] / 1e6 for r in f64]),
              ("1500 B", [big.get(n, {}).get("forwarded_pps", 0) / 1e6 for n in names]),
              "forwarded Mpps (median)", "Forwarding rate, one queue, one forwarder core")
        cpu = [r for r in f64 if r.get("switch_cpu_pct") is not None]
        pairs("cpu", [label(r) for r in cpu],
              ("forwarding at max rate", [r["switch_cpu_pct"] for r in cpu]),
              ("idle (5 s, no traffic)",
               [(r.get("idle") or {}).get("switch_cpu_pct") or 0 for r in cpu]),
              "% of one core (process utime+stime)", "CPU used by the switch process")
        lat = [r for r in f64 if (r.get("latency_us") or {}).get("hist")]
        if lat:
            fig, ax = plt.subplots(figsize=(9, 4.5))
            data = []
            for r in lat:
                vals = []
                for us, n in r["latency_us"]["hist"].items():
                    vals += [float(us)] * n
                data.append(vals)
            ax.boxplot(data, whis=(1, 99), showfliers=False)
            ax.set_xticks(range(1, len(lat) + 1), [label(r) for r in lat], rotation=20,
                          ha="right")
            ax.set_yscale("log")
            ax.set_ylabel("round trip, us (box: quartiles, whiskers: p1..p99)")
            ax.set_title("Latency at low load: UDP ping-pong through the switch")
            fig.tight_layout()
            fig.savefig(outdir / f"{name}-latency.png", dpi=100)
            plt.close(fig)
            made.append(f"{name}-latency.png")
    return made


def write_all(doc, outdir, name):
    outdir = Path(outdir)
    md = markdown(doc)
    made = plots(doc, outdir, name)
    md += "".join(f"\n![{p}]({p})\n" for p in made)
    (outdir / f"{name}.md").write_text(md)
    return md


def main():
    path = Path(sys.argv[1] if len(sys.argv) > 1 else
                Path(__file__).resolve().parent / "results" / "bench-latest.json")
    path = path.resolve()           # bench-latest.json: a link to a bench-<time>.json
    doc = json.loads(path.read_text())
    print(write_all(doc, path.parent, path.stem))


if __name__ == "__main__":
    main()
