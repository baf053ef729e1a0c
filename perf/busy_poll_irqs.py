#!/usr/bin/env python3
"""What [switch] busy_poll_tuning changes on veth: the NAPI runs the ports' receive raises.

    .venv/bin/python perf/busy_poll_irqs.py [--rounds 3] [--frames 200000]

Two hosts (pyxsw.lab) and pyxsw in poll mode on core 1, with busy_poll_tuning off and on in
turn (rounds interleaved).  Host 0, pinned to core 0, sends --frames UDP datagrams to host 1
(tests/nettool.py udp-flows).  A veth schedules the receiving end's NAPI on the sending CPU:
each frame into a switch port raises NET_RX there (core 0), unless the port's NAPI is owned
by the worker's preferred busy polling, which the deferral (napi_defer_hard_irqs,
gro_flush_timeout) keeps it.  Reported: NET_RX softirqs per 1,000 frames on each core
(/proc/softirqs; core 1's include host 1's receive of what the switch sends) and each core's
softirq share of its time (/proc/stat).  Saved to perf/results/busypoll-irqs-<time>.json.
"""
import argparse
import json
import pathlib
import signal
import statistics
import subprocess
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from pyxsw.lab import Lab  # noqa: E402


def net_rx():
    for line in open("/proc/softirqs"):
        if line.strip().startswith("NET_RX:"):
            return [int(x) for x in line.split()[1:]]


def stat(core):
    for line in open("/proc/stat"):
        if line.startswith(f"cpu{core} "):
            return [int(x) for x in line.split()[1:]]


def one(lab, tune, frames):
    d = tempfile.mkdtemp(prefix="pyxsw-bp-")
    cfg = pathlib.Path(d, "sw.toml")
    cfg.write_text(f'[switch]\nname = "bp"\nmode = "poll"\ncores = [1]\n'
                   f'busy_poll_tuning = {"true" if tune else "false"}\n'
                   f'[management]\nsocket = "{d}/sw.sock"\n'
                   + "".join(f'[[port]]\nname = "{p}"\n' for p in lab.ports))
    sw = subprocess.Popen([str(REPO / ".venv/bin/pyxsw"), "run", "-c", str(cfg)],
                          stderr=subprocess.DEVNULL)
    try:
        time.sleep(3)
        lab.run(0, "ping", "-c1", "-W1", lab.hosts[1].ip, capture_output=True)
        s0, a0, b0 = net_rx(), stat(0), stat(1)
        r = lab.run(0, "taskset", "-c", "0", sys.executable, REPO / "tests/nettool.py",
                    "udp-flows", "--dst", lab.hosts[1].ip, "--flows", 4, "--count", frames,
                    capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        s1, a1, b1 = net_rx(), stat(0), stat(1)
        return {"net_rx_per_1k_core0": (s1[0] - s0[0]) * 1000 / frames,
                "net_rx_per_1k_core1": (s1[1] - s0[1]) * 1000 / frames,
                "softirq_share_core0": (a1[6] - a0[6]) / max(1, sum(a1) - sum(a0)),
                "softirq_share_core1": (b1[6] - b0[6]) / max(1, sum(b1) - sum(b0))}
    finally:
        sw.send_signal(signal.SIGTERM)
        sw.wait(30)
        subprocess.run(["rm", "-rf", d])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--frames", type=int, default=200000)
    args = ap.parse_args()
    lab = Lab(hosts=2, prefix="bpi-")
    res = {"off": [], "on": []}
    try:
        lab.up()
        for rnd in range(args.rounds):
            for key in ("off", "on"):
                res[key].append(one(lab, key == "on", args.frames))
                print(f"round {rnd + 1} busy_poll_tuning {key}: {res[key][-1]}", flush=True)
    finally:
        lab.down()
    for key, runs in res.items():
        print(f"busy_poll_tuning {key:3}: " + ", ".join(
            f"{k} {statistics.median(r[k] for r in runs):.3g} "
            f"({min(r[k] for r in runs):.3g}-{max(r[k] for r in runs):.3g})" for k in runs[0]))
    out = REPO / "perf" / "results" / f"busypoll-irqs-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps({"frames": args.frames, "results": res}, indent=1))
    print(f"saved {out}")


if __name__ == "__main__":
    main()
