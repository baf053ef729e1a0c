#!/usr/bin/env python3
"""`make bench`: the whole performance comparison, in one run, one step after the other.

  1. fwd_rate.py, 64-byte frames: every system (bridge, testpmd, ovs, pyxsw in each mode,
     pyxsw with the in-kernel fast path in poll and interrupt modes, xdp), with the switch's
     CPU under load and at idle, the latency ping-pong, the RPC storm (pyxsw) and pyxsw's
     rate with 1, 1k and 100k learned MACs;
  2. fwd_rate.py, 1500-byte frames: the rates (the fast-path rows too);
  3. fwd_rate.py, two queues per port (a generator and a worker on each core);
  4. the pytest-benchmark microbenchmarks of tests/bench/ (FDB, classification, frame pool);
  5. report.py: perf/results/bench-<time>.json, .md and -{rate,cpu,latency}.png, which the
     bench-latest.* symbolic links then point to.

    .venv/bin/python perf/bench.py              # about 20 minutes
    .venv/bin/python perf/bench.py --quick      # one short run per system (a smoke test)

Steps 1-2 each hold fwd_rate.py's lock (runs never overlap); step 3 takes it too, so a
microbenchmark never shares the machine with a forwarding measurement of another run.
A step that fails is reported and the others still run; SIGINT/SIGTERM stop the current
step (fwd_rate.py cleans up after itself) and the rest.
"""
import argparse
import contextlib
import datetime
import fcntl
import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULTS = HERE / "results"
sys.path.insert(0, str(HERE))
import fwd_rate  # noqa: E402
import report  # noqa: E402

_child = None


def _forward(signum, frame):
    """Pass the signal to the running step (it cleans up), then stop."""
    if _child and _child.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            _child.send_signal(signum)
        with contextlib.suppress(Exception):
            _child.wait(60)
    raise KeyboardInterrupt


def run(cmd):
    global _child
    print("bench:", " ".join(map(str, cmd)), flush=True)
    # Its own session: a terminal's Ctrl-C reaches only us, and we pass it on once.
    _child = subprocess.Popen([str(c) for c in cmd], cwd=REPO, start_new_session=True)
    rc = _child.wait()
    _child = None
    return rc


def without_samples(micro):
    """pytest-benchmark's JSON keeps every timing it took (megabytes): the statistics do."""
    for b in micro.get("benchmarks", []):
        b.get("stats", {}).pop("data", None)
    return micro


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=3, help="runs per system (medians reported)")
    ap.add_argument("--seconds", type=float, default=5.0, help="measuring window")
    ap.add_argument("--quick", action="store_true", help="--runs 1 --seconds 3, short idle "
                                                         "and latency, FDB sizes 1,1000")
    ap.add_argument("--only", default=",".join(fwd_rate.SYSTEMS), help="systems (fwd_rate.py)")
    ap.add_argument("--no-1500", action="store_true", help="skip the 1500-byte rates")
    ap.add_argument("--no-2q", action="store_true", help="skip the two-queue rates")
    ap.add_argument("--no-micro", action="store_true", help="skip the microbenchmarks")
    ap.add_argument("--no-vlan", action="store_true",
                    help="skip the 802.1Q trunk row (a tag pushed on every frame)")
    ap.add_argument("--no-fastpath", action="store_true",
                    help='skip the rows of pyxsw with the fast path ([switch] fastpath = "xdp")')
    a = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench: run as root")
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _forward)
    runs, secs = (1, 3.0) if a.quick else (a.runs, a.seconds)
    idle, lat, fdb = ("2", "300", "1,1000") if a.quick else ("5", "2000", "1,1000,100000")
    py, fr = sys.executable, HERE / "fwd_rate.py"
    common = ["--only", a.only, "--modes", "poll,interrupt,adaptive", "--runs", runs,
              "--seconds", secs]
    # pyxsw with the in-kernel fast path, beside the rest in the same fwd_rate.py run
    fast = [] if a.no_fastpath else ["--fastpath-modes", "poll,interrupt"]
    tmp = Path(tempfile.mkdtemp(prefix="pyxsw-bench-"))
    parts = {}
    try:
        out = tmp / "fwd64.json"
        rc = run([py, fr, *common, *fast, "--storm", "--idle", idle, "--latency", lat,
                  "--fdb-sizes", fdb, "--save-as", out])
        parts["fwd_64"] = json.loads(out.read_text()) if out.exists() else {"error": rc}
        # What each RPC method of the storm costs, alone (pyxsw poll, one run each).
        parts["storm_by_method"] = {}
        for m in ("status", "port.list", "port.stats", "fdb.list"):
            out = tmp / f"storm-{m}.json"
            run([py, fr, "--only", "pyxsw", "--modes", "poll", "--seconds", secs, "--storm",
                 "--storm-calls", m, "--save-as", out])
            if out.exists():
                r = json.loads(out.read_text())["results"][0]
                parts["storm_by_method"][m] = {k: r.get(k) for k in (
                    "available", "reason", "forwarded_pps", "storm_ratio", "burn_ratio")}
                if r.get("storm"):
                    parts["storm_by_method"][m]["rpc_per_s"] = r["storm"]["rpc_per_s"]
        if not a.no_1500:
            out = tmp / "fwd1500.json"
            rc = run([py, fr, *common, *fast, "--size", "1500", "--save-as", out])
            parts["fwd_1500"] = json.loads(out.read_text()) if out.exists() else {"error": rc}
        if not a.no_2q:
            # Two queues per port, a worker and a generator on each core (veth picks the
            # receiving queue by the sending CPU).  On a 2-core machine they share the cores.
            out = tmp / "fwd2q.json"
            cores = "0,1"
            rc = run([py, fr, *common, "--queues", "2", "--gen-cores", cores, "--fwd-cores",
                      cores, "--save-as", out])
            parts["fwd_64_2q"] = json.loads(out.read_text()) if out.exists() else {"error": rc}
        if not a.no_vlan and "pyxsw" in a.only.split(","):
            # 802.1Q: the sink's port a trunk carrying VLAN 1 tagged, beside testpmd again
            out = tmp / "fwdvlan.json"
            rc = run([py, fr, "--only", "testpmd,pyxsw", "--modes", "poll", "--runs", runs,
                      "--seconds", secs, "--vlan-trunk", "--save-as", out])
            parts["fwd_64_trunk"] = json.loads(out.read_text()) if out.exists() else {"error": rc}
        if not a.no_micro:
            out = tmp / "micro.json"
            with open(fwd_rate.LOCK, "w") as lock:      # nothing else measures meanwhile
                fcntl.flock(lock, fcntl.LOCK_EX)
                rc = run([py, "-m", "pytest", "-q", "-c", HERE.parent / "tests/bench/pytest.ini",
                          HERE.parent / "tests/bench", "--benchmark-json", out,
                          *(["--benchmark-max-time", "0.2", "--benchmark-min-rounds", "3"]
                            if a.quick else [])])
            parts["micro"] = without_samples(json.loads(out.read_text())) if out.exists() \
                else {"error": rc}
    except KeyboardInterrupt:
        print("bench: interrupted", file=sys.stderr)
        return 130
    finally:
        for f in tmp.iterdir():
            f.unlink()
        tmp.rmdir()
    now = datetime.datetime.now(datetime.timezone.utc)
    doc = {"benchmark": "bench", "time": now.isoformat(timespec="seconds"),
           "machine": fwd_rate.machine_info(), "quick": a.quick, **parts}
    RESULTS.mkdir(exist_ok=True)
    stamp = f"bench-{now.strftime('%Y%m%dT%H%M%SZ')}"
    path = RESULTS / f"{stamp}.json"
    path.write_text(json.dumps(doc, indent=2) + "\n")
    md = report.write_all(doc, RESULTS, stamp)
    for suffix in (".json", ".md", "-rate.png", "-cpu.png", "-latency.png"):
        if (RESULTS / f"{stamp}{suffix}").exists():
            fwd_rate.link_latest(RESULTS / f"{stamp}{suffix}", f"bench-latest{suffix}")
    print(md)
    print(f"bench: {path.relative_to(REPO)} with its .md and plots; bench-latest.* link to them")
    return 0


if __name__ == "__main__":
    sys.exit(main())
