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
it; --busy-poll-tuning: each poll-mode row once more with [switch] busy_poll_tuning = true),
xdp (in-kernel devmap redirect, the ceiling).  After the rate window, on the same
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
from measure import label, run_all  # noqa: E402

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


# ----------------------------------------------------------------------------------------
# The report and the JSON
# ----------------------------------------------------------------------------------------
def machine_info():
    cpu = re.search(r"model name\s*:\s*(.*)", Path("/proc/cpuinfo").read_text())

    def git(*args):
        return subprocess.run(["git", "-C", REPO, *args], capture_output=True,
                              text=True).stdout.strip()
    dpdk = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", "dpdk-dev"],
                          capture_output=True, text=True).stdout.strip()
    return {"kernel": platform.release(), "cpu_model": cpu.group(1) if cpu else platform.machine(),
            "nproc": os.cpu_count(), "hostname": platform.node(),
            "pyxsw_git": git("describe", "--always", "--dirty"), "commit": git("rev-parse", "HEAD"),
            "dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
            "dpdk": dpdk or None}


def spread(st, path, scale=1e6, nd=3):
    """A figure over the rounds as "median (min-max)", or "-"."""
    v = st.get(path)
    if not v:
        return "-"
    f = lambda x: f"{x / scale:.{nd}f}"     # noqa: E731
    return f(v["median"]) if v["n"] == 1 else f"{f(v['median'])} ({f(v['min'])}-{f(v['max'])})"


def report(rows, args):
    """The run's figures on stdout, a row at a time (report.py makes the full report)."""
    print(f"\nfwd_rate: {'/'.join(map(str, args.size))}-byte frames, {args.rounds} round(s), "
          f"queues={args.queues}, generator cores {args.gen_cores}, forwarder cores "
          f"{args.fwd_cores}; Mpps as median (min-max) of the rounds; no-drop: at most "
          f"{args.loss_tolerance:g}% lost in {args.trial:g} s trials")
    width = max([20] + [len(r["label"]) for r in rows])
    print(f"{'row':<{width}}  {'max fwd Mpps':<22} {'offered':<22} {'no-drop Mpps':<22}")
    for r in rows:
        st = r.get("stats", {})
        if not r["available"] and not r["rounds"]:
            print(f"{r['label']:<{width}}  not available: {r['reason']}")
            continue
        print(f"{r['label']:<{width}}  {spread(st, 'mfr.forwarded_pps'):<22} "
              f"{spread(st, 'mfr.offered_pps'):<22} {spread(st, 'ndr.pps'):<22}"
              + ("" if r["available"] else f"  (then not available: {r['reason']})"))
        more = []
        for size in args.size[1:]:
            if f"sizes.{size}.mfr.forwarded_pps" in st:
                more.append(f"{size} B: max fwd {spread(st, f'sizes.{size}.mfr.forwarded_pps')}"
                            f" Mpps, no-drop {spread(st, f'sizes.{size}.ndr.pps')} Mpps = "
                            f"{spread(st, f'sizes.{size}.ndr.gbps', 1, 2)} Gb/s")
        if "mfr.fastpath_frames.ingress.share" in st:
            more.append("fast path: share of p0's frames forwarded in the kernel "
                        f"{spread(st, 'mfr.fastpath_frames.ingress.share', 0.01, 1)}%")
        for pct in args.sweep:
            k = f"sweep.{pct}"
            if f"{k}.forwarded_pps" in st:
                more.append(f"{pct:>3}% of no-drop: fwd core busy "
                            f"{spread(st, f'{k}.fwd_core_busy_pct', 1, 0)}%, switch "
                            f"{spread(st, f'{k}.switch_cpu_pct', 1, 0)}%, wake-ups/s "
                            f"{spread(st, f'{k}.wakeups_per_s', 1, 0)}, rtt us p50 "
                            f"{spread(st, f'{k}.latency_us.p50', 1, 0)} p99 "
                            f"{spread(st, f'{k}.latency_us.p99', 1, 0)} p99.9 "
                            f"{spread(st, f'{k}.latency_us.p999', 1, 0)} max "
                            f"{spread(st, f'{k}.latency_us.max', 1, 0)}")
        if "idle.switch_cpu_pct" in st or "idle.fwd_core_busy_pct" in st:
            more.append(f"idle: switch {spread(st, 'idle.switch_cpu_pct', 1, 1)}% of a core, "
                        f"fwd core busy {spread(st, 'idle.fwd_core_busy_pct', 1, 1)}%")
        if "storm_ratio" in st:
            more.append(f"RPC storm / quiet {spread(st, 'storm_ratio', 1, 2)}, CPU hog / quiet "
                        f"{spread(st, 'burn_ratio', 1, 2)}")
        if "fdb_entries" in st:
            more.append(f"FDB entries {spread(st, 'fdb_entries', 1, 0)}")
        flagged = [x["round"] + 1 for x in r["rounds"] if x.get("other_load_pct_max", 0) > 10]
        if flagged:
            more.append(f"[other processes used >10% of a core in round(s) {flagged}]")
        for m in more:
            print(f"{'':<{width + 2}}{m}")


def save(rows, args, machine):
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc)
    doc = {"benchmark": "fwd_rate", "schema": 2, "time": now.isoformat(timespec="seconds"),
           "machine": machine,
           "config": {k: getattr(args, attr) for k, attr in CONFIG_KEYS.items()},
           "results": rows}
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


# The config as the JSON names it (report.py reads these): {JSON key: option's attribute}
CONFIG_KEYS = {"sizes": "size", "rounds": "rounds", "seconds": "seconds", "warmup": "warmup",
               "queues": "queues", "gen_cores": "gen_cores", "fwd_cores": "fwd_cores",
               "pin_kernel": "pin_kernel", "napi_prio": "napi_prio", "ndr": "ndr",
               "trial_s": "trial", "loss_tolerance_pct": "loss_tolerance",
               "resolution": "resolution", "max_trials": "max_trials", "sweep_pct": "sweep",
               "sweep_rows": "sweep_systems", "latency": "latency",
               "latency_interval_us": "latency_interval", "idle": "idle", "storm": "storm",
               "storm_methods": "storm_methods", "fdb_sizes": "fdb_sizes", "ports": "ports",
               "vlan_trunk": "vlan_trunk", "ops": "ops", "fastpath": "fastpath",
               "fastpath_modes": "fastpath_modes", "modes": "modes", "only": "only",
               "busy_poll_tuning": "busy_poll_tuning"}


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
    p.add_argument("--busy-poll-tuning", action="store_true",
                   help="each pyxsw poll-mode row once more with [switch] busy_poll_tuning = "
                        'true (the ports\' NAPI deferral), labelled "pyxsw (poll, busy-poll '
                        'tuning)", next to the row without')
    p.add_argument("--pyxsw", default=str(PYXSW), help="the pyxsw command (default: %(default)s)")
    p.add_argument("--size", type=ints, default=[64], metavar="N,..",
                   help="frame sizes with FCS, 64..1518: every measurement at the first, the "
                        "maximum forwarding and no-drop rates at the others (e.g. 64,1500)")
    p.add_argument("--seconds", type=float, default=5.0,
                   help="the maximum-forwarding-rate window (generator unpaced)")
    p.add_argument("--warmup", type=float, default=2.0, help="seconds before that window")
    p.add_argument("--rounds", "--runs", dest="rounds", type=int, default=1,
                   help="rounds of every row, interleaved; tables give min, median and max")
    p.add_argument("--no-ndr", dest="ndr", action="store_false",
                   help="skip the no-drop rate search (and so the load sweep)")
    p.add_argument("--trial", type=float, default=1.0, metavar="S",
                   help="no-drop search: seconds per trial (default %(default)s)")
    p.add_argument("--loss-tolerance", type=float, default=0.001, metavar="PCT",
                   help="no-drop search: a trial passes losing at most this %% of its frames "
                        "(default %(default)s)")
    p.add_argument("--resolution", type=float, default=0.04,
                   help="no-drop search: stop when the bracket is within this fraction of "
                        "its top (default %(default)s)")
    p.add_argument("--max-trials", type=int, default=10, help="no-drop search: at most this "
                   "many trials (default %(default)s)")
    p.add_argument("--sweep", type=ints, default=[], metavar="PCT,..",
                   help="load steps in %% of each round's no-drop rate (e.g. 10,25,50,75,100) "
                        "for the rows of --sweep-systems; other rows get the first step only")
    p.add_argument("--sweep-systems", default="pyxsw,bridge", metavar="S,..",
                   help="systems swept at every --sweep step (default %(default)s)")
    p.add_argument("--queues", type=int, default=1, help="queues per port")
    p.add_argument("--gen-cores", type=ints, default=[0], help="generator cores (one process each)")
    p.add_argument("--fwd-cores", type=ints, default=[1], help="forwarder cores")
    p.add_argument("--testpmd-vdev", default="", metavar="K=V,..",
                   help="extra AF_XDP PMD arguments, e.g. busy_budget=0")
    p.add_argument("--no-pin-kernel", dest="pin_kernel", action="store_false",
                   help="leave bridge/xdp (and pyxsw fast-path) forwarding in the generator "
                        "core's softirq")
    p.add_argument("--napi-prio", type=int, default=50, metavar="P",
                   help="SCHED_FIFO priority of the threaded NAPI kthreads pinned to the "
                        "forwarder cores (xdp and the fast-path rows), as a NIC's softirq "
                        "preempts user threads; 0: SCHED_OTHER (default %(default)s)")
    p.add_argument("--storm", action="store_true",
                   help="pyxsw: a second window under an RPC storm (perf/rpc_rate.py --storm); "
                        "reports the forwarded rate's ratio storm/quiet")
    p.add_argument("--storm-calls", metavar="M,..", help="the storm's RPC methods (default: "
                   "rpc_rate.py's status,port.stats,port.list,fdb.list)")
    p.add_argument("--storm-methods", default="", metavar="M,..",
                   help="with --storm, pyxsw in the first of --modes: one more storm window "
                        "per method, storming with it alone (e.g. status,port.list)")
    p.add_argument("--idle", type=float, default=0, metavar="S",
                   help="after the traffic, S seconds with none: the switch's CPU at idle")
    p.add_argument("--latency", type=int, default=0, metavar="N",
                   help="N UDP ping-pongs gen0<->sink0 at every --sweep step (alone: one "
                        "step at 10%% of the no-drop rate)")
    p.add_argument("--latency-interval", type=float, default=250, metavar="US",
                   help="microseconds between two ping-pongs (default %(default)s)")
    p.add_argument("--fdb-sizes", type=ints, default=[], metavar="N,..",
                   help="pyxsw (first of --modes): rate with the generator cycling through N "
                        "source MACs, so N are learned (e.g. 1,1000,100000)")
    p.add_argument("--ports", type=ints, default=[], metavar="N,..",
                   help="pyxsw (first of --modes): a row with N switch ports, the two busy "
                        "ones and N-2 idle veths (e.g. 16,64)")
    p.add_argument("--vlan-trunk", action="store_true",
                   help="pyxsw (first of --modes): a row whose sink port is an 802.1Q trunk "
                        "carrying VLAN 1 tagged, so every frame gets a tag pushed")
    p.add_argument("--ops", type=lambda t: [w for w in t.split(",") if w], default=[],
                   metavar="metrics,capture",
                   help="pyxsw (first of --modes): a row with its metrics endpoint scraped "
                        "once a second, and one with `pyxsw ctl capture` of the generator's "
                        "port running (to /dev/null): what operating it costs")
    p.add_argument("--prefix", help=argparse.SUPPRESS)     # default pb<4 random hex>
    p.add_argument("--no-save", action="store_true", help="do not write perf/results/")
    p.add_argument("--save-as", metavar="FILE", help="write the JSON here instead")
    a = p.parse_args()
    if a.cmd is None:
        a.only = [s for s in a.only.split(",") if s]
        a.modes = [m for m in a.modes.split(",") if m]
        a.fastpath_modes = [m for m in a.fastpath_modes.split(",") if m]
        a.sweep_systems = [m for m in a.sweep_systems.split(",") if m]
        a.storm_methods = [m for m in a.storm_methods.split(",") if m]
        if a.latency and not a.sweep:
            a.sweep = [10]
        if a.sweep and not a.ndr:
            p.error("--sweep and --latency need the no-drop rate (not --no-ndr)")
        if any(not 0 < x <= 100 for x in a.sweep):
            p.error("--sweep takes percentages in 1..100")
        if not 0 <= a.loss_tolerance < 100 or a.trial <= 0 or a.rounds < 1:
            p.error("--loss-tolerance must be 0..100, --trial above 0, --rounds at least 1")
        bad = set(a.only) - set(SYSTEMS)
        if bad:
            p.error(f"unknown system(s) {','.join(sorted(bad))}; known: {','.join(SYSTEMS)}")
        modes = ("poll", "interrupt", "adaptive")
        if set(a.modes + a.fastpath_modes) - set(modes):
            p.error(f"--modes and --fastpath-modes take {','.join(modes)}")
        if a.busy_poll_tuning and "poll" not in a.modes + a.fastpath_modes:
            p.error("--busy-poll-tuning adds rows to poll mode: --modes (or --fastpath-modes) "
                    "must have poll")
        if len(set(a.gen_cores)) != len(a.gen_cores):
            p.error("--gen-cores: each core once (each paces its share of the load)")
        if not all(64 <= x <= 1518 for x in a.size):
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

    machine = machine_info()        # the commit measured: as it is at the start
    undo = Undo()
    try:
        lab = BenchLab(a, undo)
        lab.build()
        rows = run_all(lab, undo, a)
    except KeyboardInterrupt:
        print("\nfwd_rate: interrupted, cleaning up", file=sys.stderr)
        return 130
    finally:
        undo.unwind()
    report(rows, a)
    if not a.no_save:
        save(rows, a, machine)
    return 0


if __name__ == "__main__":
    sys.exit(main())
