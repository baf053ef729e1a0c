#!/usr/bin/env python3
"""Forwarding rate of L2 forwarders, side by side, on the same two veth ports.

    netns <P>gen                   root netns                          netns <P>sink
    gen0 ===veth=== <P>p0 --[ forwarder under test, core 1 ]-- <P>p1 ===veth=== sink0
    XDP live-frames generator, core 0                               XDP: count, drop

The generator is an XDP program returning XDP_TX, run by BPF_PROG_RUN in live-frames mode:
every repetition transmits the template frame out of gen0 into <P>p0.  The sink counts what
reaches sink0.  Forwarded rate = sink frames/s over a steady window; offered rate = frames/s
the generator sent.  Systems: bridge (Linux bridge), testpmd (DPDK, AF_XDP PMD), ovs (Open
vSwitch, netdev datapath, afxdp ports), pyxsw (once per --modes entry; --fastpath: with the
in-kernel fast path, [switch] fastpath = "xdp"; --fastpath-modes: once more per entry, with
it), xdp (in-kernel devmap redirect, the ceiling).  After the rate window, on the same
forwarder: --storm (pyxsw's rate under an RPC storm, and under a CPU hog as the control),
--idle (CPU with no traffic), --latency (UDP ping-pong through the switch); --fdb-sizes:
pyxsw with N learned MACs; --ports: pyxsw with N ports, N-2 of them idle.  Every pyxsw row
also reports how its workers went about the window (frames per busy pass and per TX kick,
passes per frame), and, with the fast path, the share of frames it forwarded in the kernel.

Run as root:   .venv/bin/python perf/fwd_rate.py [--only bridge,testpmd] [--size 1500]
Everything it creates carries a random prefix pb<4 hex> and is removed on exit, on SIGINT and
on SIGTERM; after a SIGKILL, `fwd_rate.py cleanup` removes what is left.

This file is the command line: options, the run's lock and signals, the report and the JSON,
`cleanup`.  The lab is benchlab.py, the forwarders forwarders.py, the windows measure.py.
"""
import argparse
import contextlib
import datetime
import fcntl
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlab import LOCK, SIGNALS, BenchLab, Undo, echo_server, sh  # noqa: E402
from forwarders import PYXSW, SYSTEMS, ovs_running  # noqa: E402
from measure import run_all  # noqa: E402

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


# ----------------------------------------------------------------------------------------
# The report and the JSON
# ----------------------------------------------------------------------------------------
def label(r):
    mode = ", ".join(x for x in (r.get("mode"), "fastpath" if r.get("fastpath") else None) if x)
    if r.get("fdb_macs"):
        return f"{r['system']} ({mode}, {r['fdb_macs']} MACs)"
    if r.get("ports"):
        return f"{r['system']} ({mode}, {r['ports']}p)"
    return f"{r['system']} ({mode})" if mode else r["system"]


def machine_info():
    cpu = re.search(r"model name\s*:\s*(.*)", Path("/proc/cpuinfo").read_text())
    git = subprocess.run(["git", "-C", REPO, "describe", "--always", "--dirty"],
                         capture_output=True, text=True).stdout.strip()
    dpdk = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", "dpdk-dev"],
                          capture_output=True, text=True).stdout.strip()
    return {"kernel": platform.release(), "cpu_model": cpu.group(1) if cpu else platform.machine(),
            "nproc": os.cpu_count(), "hostname": platform.node(), "pyxsw_git": git,
            "dpdk": dpdk or None}


def report(results, args):
    ref = next((r["forwarded_pps"] for r in results
                if r["system"] == "testpmd" and r["available"]), None)
    print(f"\nfwd_rate: {args.size}-byte frames, {args.seconds:g} s window, "
          f"queues={args.queues}, generator cores {args.gen_cores}, forwarder cores "
          f"{args.fwd_cores}")
    width = max([20] + [len(label(r)) for r in results])
    print(f"{'system':<{width}} {'offered Mpps':>12} {'fwd Mpps':>9} {'loss %':>7} "
          f"{'vs testpmd':>10}  cpu busy %")
    for r in results:
        if not r["available"]:
            print(f"{label(r):<{width}} not available: {r['reason']}")
            continue
        r["ratio_vs_testpmd"] = r["forwarded_pps"] / ref if ref else None
        ratio = f"{r['ratio_vs_testpmd']:.2f}x" if ref else "-"
        busy = " ".join(f"c{c}={v:.0f}" for c, v in sorted(r["cpu_busy_pct"].items()))
        warn = ""
        if r["offered_pps"] < 1.05 * r["forwarded_pps"]:
            warn += "  [generator-bound: forwarded ~ offered]"
        if r["other_load_pct"] > 5:
            warn += f"  [other processes used {r['other_load_pct']:.0f}% of a core]"
        loss = max(0.0, r["loss_pct"])      # a sample's skew can make it a hair negative
        print(f"{label(r):<{width}} {r['offered_pps'] / 1e6:>12.3f} "
              f"{r['forwarded_pps'] / 1e6:>9.3f} {loss:>7.1f} {ratio:>10}  {busy}{warn}")
        more = []
        if r.get("fastpath_frames"):
            f = r["fastpath_frames"]["ingress"]
            share = f"{100 * f['share']:.1f}%" if f["share"] is not None else "-"
            more.append(f"fast path: {share} of the frames in at p0 forwarded in the kernel "
                        f"({f['fastpath_packets']} of {f['packets']})")
        if r.get("switch_cpu_pct") is not None:
            more.append(f"switch process {r['switch_cpu_pct']:.0f}% of a core")
        if r.get("idle"):
            i = r["idle"]
            core = " ".join(f"c{c}={v:.1f}" for c, v in sorted(i["cpu_busy_pct"].items()))
            sw = (f"switch {i['switch_cpu_pct']:.1f}% of a core, "
                  if i["switch_cpu_pct"] is not None else "")
            more.append(f"idle: {sw}cores {core}")
        if r.get("latency_us"):
            lt = r["latency_us"]
            if lt["n"]:
                fast = (f", {100 * lt['fastpath_share']:.0f}% through the fast path"
                        if lt.get("fastpath_share") is not None else "")
                more.append(f"latency us p50 {lt['p50']:.0f} p99 {lt['p99']:.0f} "
                            f"max {lt['max']:.0f} (n={lt['n']}, lost {lt['lost']}{fast})")
        if r.get("storm"):
            st = r["storm"]
            busy = {n: v["cpu_pct"] for n, v in st.get("threads", {}).items()
                    if v["cpu_pct"] >= 1}
            more.append(f"storm: switch threads % of a core: {busy}")
            more.append(f"RPC storm {st['rpc_per_s'] or 0} RPCs/s: fwd "
                        f"{st['forwarded_pps'] / 1e6:.3f} Mpps, ratio storm/quiet "
                        f"{r.get('storm_ratio', 0):.3f} (offered {st['offered_pps'] / 1e6:.3f}, "
                        f"into p0 {st['into_port_pps'] / 1e6:.3f} vs "
                        f"{r['into_port_pps'] / 1e6:.3f} quiet)")
        if r.get("burn"):
            b = r["burn"]
            more.append(f"control, a CPU hog instead of the storm: fwd "
                        f"{b['forwarded_pps'] / 1e6:.3f} Mpps, ratio {r['burn_ratio']:.3f} "
                        f"(offered {b['offered_pps'] / 1e6:.3f})")
        if r.get("workers"):
            w = r["workers"]
            more.append(f"workers: {w['rx_frames_per_busy_pass']} frames/busy pass, "
                        f"{w['tx_frames_per_kick']} frames/TX kick, "
                        f"{w['rx_kicks_per_frame']} RX kicks/frame, "
                        f"{w['passes_per_frame']} passes/frame, "
                        f"{w['fill_frames_per_pass']} fill frames/pass")
        if r.get("fdb_entries") is not None:
            more.append(f"FDB entries at the end: {r['fdb_entries']}")
        for m in more:
            print(f"{'':<{width + 2}}{m}")


def save(results, args):
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc)
    doc = {"benchmark": "fwd_rate", "time": now.isoformat(timespec="seconds"),
           "machine": machine_info(),
           "config": {"size": args.size, "seconds": args.seconds, "warmup": args.warmup,
                      "queues": args.queues, "runs": args.runs, "gen_cores": args.gen_cores,
                      "fwd_cores": args.fwd_cores, "pin_kernel": args.pin_kernel,
                      "storm": args.storm, "idle": args.idle, "latency": args.latency,
                      "fdb_sizes": args.fdb_sizes, "ports": args.ports,
                      "vlan_trunk": args.vlan_trunk, "fastpath": args.fastpath,
                      "fastpath_modes": args.fastpath_modes},
           "results": results}
    text = json.dumps(doc, indent=2) + "\n"
    if args.save_as:                # perf/bench.py names its parts
        path = Path(args.save_as)
        path.write_text(text)
        print(f"\nresults: {path}")
        return
    path = out / f"fwd_rate-{now.strftime('%Y%m%dT%H%M%SZ')}.json"
    path.write_text(text)
    link_latest(path, "fwd_rate-latest.json")
    print(f"\nresults: {path.relative_to(REPO)} (and fwd_rate-latest.json)")


def link_latest(path, name):
    """<name> next to `path`, a symbolic link to it: the newest result, without a copy."""
    latest = path.parent / name
    latest.unlink(missing_ok=True)
    latest.symlink_to(path.name)


# ----------------------------------------------------------------------------------------
# Entry points
# ----------------------------------------------------------------------------------------
def cleanup_stale():
    """After a SIGKILL: stop the processes and remove the namespaces, interfaces, hugetlbfs
    mounts and temp dirs of every pb<4 hex> run that is no longer running, and restore
    nr_hugepages.  A run still in progress (its owner.pid alive) is left alone."""
    live, tmps = set(), {}
    for tmp in Path(tempfile.gettempdir()).glob("pb????-*"):
        with contextlib.suppress(OSError, ValueError):
            pid = int((tmp / "owner.pid").read_text())
            if "fwd_rate" in Path(f"/proc/{pid}/cmdline").read_text(errors="replace"):
                live.add(tmp.name[:6])
                continue
        tmps[tmp] = tmp.name[:6]

    def stale(name):
        m = re.search(r"pb[0-9a-f]{4}", name)
        return m is not None and m[0] not in live
    for d in Path("/proc").iterdir():
        with contextlib.suppress(OSError):
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            ours = any(k in cmd for k in ("livegen.py", "fwd_rate.py _echo",
                                          "dpdk-testpmd", "pyxsw", "rpc_rate.py"))
            # (the storm's control, a bare `python -c` spin, ends by itself within seconds)
            if d.name.isdigit() and ours and stale(cmd):
                print("kill", d.name, cmd[:70])
                os.kill(int(d.name), signal.SIGKILL)
    time.sleep(0.5)
    for tmp in tmps:
        if (tmp / "huge").is_dir():
            sh("umount", tmp / "huge", check=False)
        with contextlib.suppress(OSError, ValueError):
            Path("/proc/sys/vm/nr_hugepages").write_text(
                str(int((tmp / "nr_hugepages.orig").read_text())))
        print("remove", tmp)
        shutil.rmtree(tmp, ignore_errors=True)
    if ovs_running("ovsdb-server"):
        for br in sh("ovs-vsctl", "--timeout=5", "list-br", check=False).split():
            if re.fullmatch(r"pb[0-9a-f]{4}ob", br) and stale(br):
                print("ovs bridge", br)
                sh("ovs-vsctl", "--timeout=5", "--if-exists", "del-br", br, check=False)
    for ns in sh("ip", "netns", "list").split():
        if re.fullmatch(r"pb[0-9a-f]{4}(gen|sink|idle)", ns) and stale(ns):
            print("netns", ns)
            sh("ip", "netns", "del", ns, check=False)
    for name in re.findall(r"^\d+: (pb[0-9a-f]{4}(?:p\d|br|i\d+))[@:]", sh("ip", "-o", "link"),
                           re.M):
        if stale(name):
            print("link", name)
            sh("ip", "link", "del", name, check=False)


def parse_args():
    ints = lambda s: [int(x) for x in s.split(",")]        # noqa: E731
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", metavar="{cleanup}")
    e = sub.add_parser("_echo")     # internal: the latency ping-pong's far end
    e.add_argument("--lab")
    e.add_argument("--port", type=int, required=True)
    sub.add_parser("cleanup", help="remove what a killed run (SIGKILL) left behind")
    p.add_argument("--only", default=",".join(SYSTEMS),
                   help=f"comma-separated systems, from {','.join(SYSTEMS)} (default: all)")
    p.add_argument("--modes", default="poll", help="pyxsw modes, each run once (poll,interrupt,"
                                                   "adaptive)")
    p.add_argument("--fastpath", action="store_true",
                   help='every pyxsw row with the in-kernel fast path ([switch] fastpath = '
                        '"xdp"), labelled "pyxsw (<mode>, fastpath)"')
    p.add_argument("--fastpath-modes", default="", metavar="M,..",
                   help="pyxsw modes run once more each, with the fast path, after the "
                        "--modes rows (e.g. poll,interrupt: both kinds of row in one run)")
    p.add_argument("--pyxsw", default=str(PYXSW), help="the pyxsw command (default: %(default)s)")
    p.add_argument("--size", type=int, default=64, help="frame size with FCS, 64..1518")
    p.add_argument("--seconds", type=float, default=5.0, help="measuring window")
    p.add_argument("--warmup", type=float, default=2.0, help="seconds before the window")
    p.add_argument("--runs", type=int, default=1, help="runs per system; the median is kept")
    p.add_argument("--queues", type=int, default=1, help="queues per port")
    p.add_argument("--gen-cores", type=ints, default=[0], help="generator cores (one process each)")
    p.add_argument("--fwd-cores", type=ints, default=[1], help="forwarder cores")
    p.add_argument("--testpmd-vdev", default="", metavar="K=V,..",
                   help="extra AF_XDP PMD arguments, e.g. busy_budget=0")
    p.add_argument("--no-pin-kernel", dest="pin_kernel", action="store_false",
                   help="leave bridge/xdp (and pyxsw fast-path) forwarding in the generator "
                        "core's softirq")
    p.add_argument("--storm", action="store_true",
                   help="pyxsw: a second window under an RPC storm (perf/rpc_rate.py --storm); "
                        "reports the forwarded rate's ratio storm/quiet")
    p.add_argument("--storm-calls", metavar="M,..", help="the storm's RPC methods (default: "
                   "rpc_rate.py's status,port.stats,port.list,fdb.list)")
    p.add_argument("--idle", type=float, default=0, metavar="S",
                   help="after the traffic, S seconds with none: the switch's CPU at idle")
    p.add_argument("--latency", type=int, default=0, metavar="N",
                   help="after the traffic, N UDP ping-pongs gen0<->sink0, 1 ms apart")
    p.add_argument("--fdb-sizes", type=ints, default=[], metavar="N,..",
                   help="pyxsw (first of --modes): rate with the generator cycling through N "
                        "source MACs, so N are learned (e.g. 1,1000,100000)")
    p.add_argument("--ports", type=ints, default=[], metavar="N,..",
                   help="pyxsw (each of --modes): rate with N switch ports, the two busy ones "
                        "and N-2 idle veths (e.g. 2,16,64; 65536 frames for every run)")
    p.add_argument("--vlan-trunk", action="store_true",
                   help="pyxsw: the sink's port is an 802.1Q trunk carrying VLAN 1 tagged, so "
                        "every frame gets a tag pushed (the generator's port stays access 1)")
    p.add_argument("--prefix", help=argparse.SUPPRESS)     # default pb<4 random hex>
    p.add_argument("--no-save", action="store_true", help="do not write perf/results/")
    p.add_argument("--save-as", metavar="FILE", help="write the JSON here instead")
    a = p.parse_args()
    if a.cmd is None:
        a.only = [s for s in a.only.split(",") if s]
        a.modes = [m for m in a.modes.split(",") if m]
        a.fastpath_modes = [m for m in a.fastpath_modes.split(",") if m]
        bad = set(a.only) - set(SYSTEMS)
        if bad:
            p.error(f"unknown system(s) {','.join(sorted(bad))}; known: {','.join(SYSTEMS)}")
        modes = ("poll", "interrupt", "adaptive")
        if set(a.modes + a.fastpath_modes) - set(modes):
            p.error(f"--modes and --fastpath-modes take {','.join(modes)}")
        if not 64 <= a.size <= 1518:
            p.error("--size must be 64..1518")
        if any(not 2 <= n <= 64 for n in a.ports):
            p.error("--ports must be 2..64 (the two busy ports included; a switch has 64)")
        if a.prefix and not re.fullmatch(r"pb[0-9a-f]{4}", a.prefix):
            p.error("--prefix must be pb and 4 hex digits (they make the MAC addresses)")
    return a


def main():
    a = parse_args()
    if a.cmd == "_echo":
        return echo_server(a.port)
    if os.geteuid() != 0:
        sys.exit("fwd_rate: run as root")
    if a.cmd == "cleanup":
        return cleanup_stale()

    def on_signal(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")
    # SIGINT too: a shell starts background jobs with SIGINT ignored, so Python's default
    # handler would be missing and `kill -INT` would leave everything behind.
    for sig in SIGNALS:
        signal.signal(sig, on_signal)

    # Two runs at once would share the two cores and spoil each other's figures: queue up.
    lock = open(LOCK, "w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        print(f"fwd_rate: another run holds {LOCK}; waiting for it", flush=True)
        fcntl.flock(lock, fcntl.LOCK_EX)

    undo = Undo()
    try:
        lab = BenchLab(a, undo)
        lab.build()
        results = run_all(lab, undo, a)
    except KeyboardInterrupt:
        print("\nfwd_rate: interrupted, cleaning up", file=sys.stderr)
        return 130
    finally:
        undo.unwind()
    report(results, a)
    if not a.no_save:
        save(results, a)
    return 0


if __name__ == "__main__":
    sys.exit(main())
