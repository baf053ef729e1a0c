#!/usr/bin/env python3
"""`make bench`: the whole performance comparison, in one run, one step after the other.

  1. fwd_rate.py, every row in --rounds interleaved rounds (round 1 of every row, then round 2,
     ...): bridge, testpmd, ovs, xdp (the in-kernel ceiling), pyxsw in each mode without and
     with its in-kernel fast path; then pyxsw (poll) with 16 and 64 ports (14 and 62 idle),
     with 1,000 and 100,000 learned MACs, and with an 802.1Q trunk (64 B; the MAC rows the
     overload rate only).  For each main row and round: the maximum forwarding rate
     (overload), the no-drop rate (RFC 2544 throughput, binary search over paced trials),
     both at 64 and 1500 bytes; for pyxsw and the bridge the load
     sweep (CPU per core and thread, wake-ups, round-trip latency at 10, 25, 50, 75 and 100% of
     the no-drop rate; the other rows get the 10% step); CPU at idle; for pyxsw without the
     fast path the RPC storm, its CPU-hog control and (poll) one storm per method;
  2. two queues per port, when the machine has the cores (2 generators + 2 forwarders);
  3. the pytest-benchmark microbenchmarks of tests/bench/ (FDB, classification, frame pool);
  4. report.py: perf/results/bench-<time>.json, .md and the PNG plots, which the bench-latest.*
     symbolic links then point to.

    .venv/bin/python perf/bench.py              # about 20 minutes on 2 cores
    .venv/bin/python perf/bench.py --quick      # one round of the main rows (~3 minutes)

Step 1 holds fwd_rate.py's lock (runs never overlap); the microbenchmarks take it too, so they
never share the machine with a forwarding measurement of another run.  A step that fails is
reported and the others still run; SIGINT/SIGTERM stop the current step (fwd_rate.py cleans
up after itself) and the rest.
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
import time
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
    ap.add_argument("--rounds", type=int, default=3, help="rounds of every row (spread: min, "
                                                          "median, max)")
    ap.add_argument("--quick", action="store_true",
                    help="one round of the main rows at 64 B, a 3-step sweep of 500 pings, a "
                         "1 s idle, no scaling rows, storms or 1500 B: a smoke test of about "
                         "3 minutes")
    ap.add_argument("--only", default=",".join(fwd_rate.SYSTEMS), help="systems (fwd_rate.py)")
    ap.add_argument("--no-1500", action="store_true", help="skip the 1500-byte rates")
    ap.add_argument("--no-2q", action="store_true", help="skip the two-queue rates")
    ap.add_argument("--no-micro", action="store_true", help="skip the microbenchmarks")
    ap.add_argument("--no-scaling", action="store_true",
                    help="skip the rows with more ports, more learned MACs and the trunk")
    ap.add_argument("--no-fastpath", action="store_true",
                    help='skip the rows of pyxsw with the fast path ([switch] fastpath = "xdp")')
    a = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench: run as root")
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _forward)
    started = time.monotonic()
    machine = fwd_rate.machine_info()       # the commit measured: as it is at the start
    py, fr = sys.executable, HERE / "fwd_rate.py"
    modes = "poll,interrupt,adaptive"
    cmd = [py, fr, "--only", a.only, "--modes", modes, "--seconds", "2", "--warmup", "1",
           "--trial", "1"]
    if a.quick:
        cmd += ["--rounds", "1", "--sweep", "10,50,100", "--latency", "500", "--idle", "1",
                "--resolution", "0.08"]
    else:
        cmd += ["--rounds", a.rounds, "--sweep", "10,25,50,75,100", "--latency", "2000",
                "--idle", "2", "--size", "64" if a.no_1500 else "64,1500",
                "--storm", "--storm-methods", "status,port.list,port.stats,fdb.list"]
        if not a.no_scaling:
            cmd += ["--fdb-sizes", "1000,100000", "--ports", "16,64", "--vlan-trunk"]
    if not a.no_fastpath:
        cmd += ["--fastpath-modes", modes]
    tmp = Path(tempfile.mkdtemp(prefix="pyxsw-bench-"))
    parts = {}
    try:
        out = tmp / "fwd.json"
        rc = run([*cmd, "--save-as", out])
        parts["fwd"] = json.loads(out.read_text()) if out.exists() else {"error": rc}
        cores = os.cpu_count() or 1
        if a.no_2q or a.quick:
            parts["two_queues"] = {"measured": False, "reason": "skipped (--no-2q or --quick)"}
        elif cores < 4:
            parts["two_queues"] = {
                "measured": False, "reason": f"needs 4 cores (2 generators and 2 forwarder "
                                             f"workers, one each per core); this machine has "
                                             f"{cores}"}
        else:
            # A generator and a worker per queue, each on its own core (veth picks the
            # receiving queue by the sending CPU).
            out = tmp / "fwd2q.json"
            rc = run([py, fr, "--only", "bridge,pyxsw", "--modes", modes, "--queues", "2",
                      "--gen-cores", "0,1", "--fwd-cores", "2,3", "--rounds", a.rounds,
                      "--seconds", "2", "--warmup", "1", "--save-as", out])
            parts["two_queues"] = ({"measured": True, **json.loads(out.read_text())}
                                   if out.exists() else {"measured": False,
                                                         "reason": f"fwd_rate.py exit {rc}"})
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
    doc = {"benchmark": "bench", "schema": 2, "time": now.isoformat(timespec="seconds"),
           "machine": machine, "quick": a.quick,
           "duration_s": round(time.monotonic() - started), **parts}
    RESULTS.mkdir(exist_ok=True)
    stamp = f"bench-{now.strftime('%Y%m%dT%H%M%SZ')}"
    path = RESULTS / f"{stamp}.json"
    path.write_text(json.dumps(doc, indent=2) + "\n")
    md = report.write_all(doc, RESULTS, stamp)
    for f in RESULTS.glob("bench-latest*"):        # an older run's plots may be others
        f.unlink()
    for f in sorted(RESULTS.glob(f"{stamp}*")):
        fwd_rate.link_latest(f, f.name.replace(stamp, "bench-latest"))
    print(md)
    print(f"bench: {path.relative_to(REPO)} with its .md and plots, in "
          f"{doc['duration_s'] // 60:.0f} min {doc['duration_s'] % 60:.0f} s; bench-latest.* "
          "link to them")
    return 0


if __name__ == "__main__":
    sys.exit(main())
