#!/usr/bin/env python3
"""Jumbo frames: pyxsw against the Linux bridge at MTU 9000, side by side in one run.

    .venv/bin/python perf/jumbo.py [--rounds 3] [--seconds 5] [--modes poll,interrupt]

Two hosts (network namespaces <P>h0 and <P>h1, pyxsw.lab) at MTU 9000, their veth peers
<P>s0 and <P>s1 in the root namespace, forwarded by each system in turn: the Linux bridge
(its softirq moved to the forwarder core by RPS, as perf/forwarders.py does), then pyxsw in
each mode (`cores = [--fwd-core]`) with each --frame-sizes (a 9000-byte frame is a chain of 6
descriptors with 2048-byte UMEM frames, 3 with 4096; the UMEM is 32 MiB either way).  For
each:

  tcp   one iperf3 TCP stream h0 -> h1 (MSS 8948: 9014-byte frames), Gb/s received;
  udp   iperf3 UDP, unpaced, 8972-byte datagrams (9014-byte frames): Gb/s received and the
        share lost (the sender is one core, the generator here: XDP live frames cannot carry
        frames above a page).

--fastpath adds, for each pyxsw row, one with `fastpath = "xdp"`: a 9000-byte frame is then
forwarded by the XDP program (to a target that takes fragments), and the hosts keep GRO on.
Segmentation offloads are off on the hosts (`ethtool -K eth0 tso off gso off gro off`) unless
--offloads: then TCP hands veth 64 KB segments, which the bridge forwards whole (one skb for
seven frames) while an XDP program on a port turns them off at its peer, so pyxsw forwards
9014-byte frames: not the same work.  Off, every system forwards the frames a wire carries.

Rounds are interleaved (round 1 of every system, then round 2, ...); the table gives the
median (min-max) and each pyxsw row's ratio to the bridge, taken round by round.  iperf3
runs on --host-core (both ends), the forwarder on --fwd-core.  Saved to
perf/results/jumbo-<time>.json.  The machine should be otherwise quiet.
"""
import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from pyxsw.lab import Lab  # noqa: E402

MTU = 9000


def sh(*args, check=True):
    return subprocess.run([str(a) for a in args], check=check, capture_output=True, text=True)


def cpu_busy(core):
    """(busy, total) jiffies of a core, from /proc/stat."""
    for line in open("/proc/stat"):
        if line.startswith(f"cpu{core} "):
            v = [int(x) for x in line.split()[1:]]
            return sum(v) - v[3] - v[4], sum(v)
    raise ValueError(core)


class Bridge:
    name = "bridge"

    def __init__(self, lab, args):
        self.lab, self.args, self.br = lab, args, f"{lab.prefix}br"

    def __enter__(self):
        sh("ip", "link", "add", self.br, "mtu", MTU, "type", "bridge")
        for p in self.lab.ports:
            sh("ip", "link", "set", p, "master", self.br)
            for q in Path(f"/sys/class/net/{p}/queues").glob("rx-*"):
                (q / "rps_cpus").write_text(f"{1 << self.args.fwd_core:x}")
        sh("ip", "link", "set", self.br, "up")
        return self

    def __exit__(self, *exc):
        for p in self.lab.ports:
            for q in Path(f"/sys/class/net/{p}/queues").glob("rx-*"):
                (q / "rps_cpus").write_text("0")
        sh("ip", "link", "del", self.br, check=False)


class Pyxsw:
    def __init__(self, lab, args, mode, frame_size, fastpath=False):
        self.lab, self.args, self.mode, self.frame_size = lab, args, mode, frame_size
        self.fastpath = fastpath
        self.name = f"pyxsw ({mode}, {frame_size}{', fastpath' if fastpath else ''})"
        self.proc = None

    def __enter__(self):
        self.dir = tempfile.mkdtemp(prefix="pyxsw-jumbo-")
        cfg = Path(self.dir, "sw.toml")
        cfg.write_text(f'[switch]\nname = "jumbo"\nmode = "{self.mode}"\n'
                       f"cores = [{self.args.fwd_core}]\nframe_size = {self.frame_size}\n"
                       f"frames = {16384 * 2048 // self.frame_size}\n"
                       + ('fastpath = "xdp"\n' if self.fastpath else "") +
                       f'[management]\nsocket = "{self.dir}/sw.sock"\n'
                       + "".join(f'[[port]]\nname = "{p}"\n' for p in self.lab.ports))
        # this checkout's pyxsw, with the interpreter running this script
        self.proc = subprocess.Popen([sys.executable, "-m", "pyxsw.cli", "run", "-c", str(cfg)],
                                     cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     text=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"pyxsw exited: {self.proc.stderr.read()}")
            if self.lab.run(0, "ping", "-c1", "-W1", "-s", MTU - 28, "-M", "do",
                            self.lab.hosts[1].ip, capture_output=True).returncode == 0:
                if self.fastpath:
                    self.napi_to_fwd_core()
                return self
        raise RuntimeError("no jumbo ping through pyxsw after 30 s")

    def napi_to_fwd_core(self):
        """The fast path forwards inside the receiving port's NAPI, which a veth runs on the
        sending CPU (the hosts' core): threaded, its kthread pinned to the forwarder core at
        SCHED_FIFO 50, as perf/forwarders.py does for the in-kernel rows."""
        for p in self.lab.ports:
            Path(f"/sys/class/net/{p}/threaded").write_text("1")
            for d in Path("/proc").iterdir():
                try:
                    if d.name.isdigit() and (d / "comm").read_text().startswith(f"napi/{p}-"):
                        sh("taskset", "-pc", self.args.fwd_core, d.name)
                        sh("chrt", "-f", "-p", 50, d.name)
                except OSError:
                    pass

    def __exit__(self, *exc):
        for p in self.lab.ports if self.fastpath else ():
            try:
                Path(f"/sys/class/net/{p}/threaded").write_text("0")
            except OSError:
                pass
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        subprocess.run(["rm", "-rf", self.dir])


def iperf(lab, args, udp):
    """(Gb/s received, % lost or None, forwarder core busy %) of one iperf3 run h0 -> h1."""
    srv = lab.popen(1, "iperf3", "-s", "-1", "-A", args.host_core, "-p", 5399,
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    try:
        cmd = ["iperf3", "-c", lab.hosts[1].ip, "-p", 5399, "-t", args.seconds, "-J",
               "-A", args.host_core, "--omit", 1]
        if udp:
            cmd += ["-u", "-b", "0", "-l", MTU - 28]
        b0 = cpu_busy(args.fwd_core)
        r = lab.run(0, *cmd, capture_output=True, text=True, timeout=args.seconds + 30)
        b1 = cpu_busy(args.fwd_core)
        out = json.loads(r.stdout)
        if "error" in out:
            raise RuntimeError(out["error"])
        end = out["end"]
        busy = 100.0 * (b1[0] - b0[0]) / max(1, b1[1] - b0[1])
        if udp:
            s = end.get("sum_received") or end["sum"]
            lost = end["sum"].get("lost_percent")
            return s["bits_per_second"] / 1e9, lost, busy
        return end["sum_received"]["bits_per_second"] / 1e9, None, busy
    finally:
        srv.kill()
        srv.wait()


def summary(values):
    return f"{statistics.median(values):6.2f} ({min(values):.2f}-{max(values):.2f})"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--modes", default="poll,interrupt")
    ap.add_argument("--frame-sizes", default="2048,4096",
                    help="pyxsw's [switch] frame_size, a row for each (9000 bytes are 6 and 3 "
                         "descriptors)")
    ap.add_argument("--fwd-core", type=int, default=1)
    ap.add_argument("--host-core", type=int, default=0)
    ap.add_argument("--prefix", default=f"pj{os.getpid() % 1000}-")
    ap.add_argument("--fastpath", action="store_true",
                    help="each pyxsw row once more with fastpath = \"xdp\" (the hosts' GRO is "
                         "left on: a veth takes redirected frames while its peer has it)")
    ap.add_argument("--offloads", action="store_true",
                    help="leave the hosts' TSO/GSO/GRO on (see above)")
    ap.add_argument("--no-save", action="store_true")
    args = ap.parse_args(argv)
    lab = Lab(hosts=2, prefix=args.prefix)
    results = {}
    try:
        lab.up()
        for h in lab.hosts:
            sh("ip", "link", "set", "dev", h.port, "mtu", MTU)
            lab.run(h.index, "ip", "link", "set", "dev", "eth0", "mtu", MTU, check=True)
            if not args.offloads:
                lab.run(h.index, "ethtool", "-K", "eth0", "tso", "off", "gso", "off",
                        "gro", "on" if args.fastpath else "off", check=True,
                        capture_output=True)
        systems = [lambda: Bridge(lab, args)] + [
            (lambda m, f, fp: lambda: Pyxsw(lab, args, m, f, fp))(m, int(f), fp)
            for m in args.modes.split(",") if m for f in args.frame_sizes.split(",") if f
            for fp in ((False, True) if args.fastpath else (False,))]
        for rnd in range(args.rounds):
            for make in systems:
                sys_ = make()
                with sys_:
                    for test in ("tcp", "udp"):
                        gbps, lost, busy = iperf(lab, args, udp=test == "udp")
                        results.setdefault(sys_.name, {}).setdefault(test, []).append(
                            {"gbps": gbps, "lost_percent": lost, "fwd_core_busy": busy})
                        print(f"round {rnd + 1} {sys_.name:18} {test}: {gbps:6.2f} Gb/s"
                              + (f", {lost:.1f}% lost" if lost is not None else "")
                              + f", forwarder core {busy:.0f}% busy", flush=True)
    finally:
        lab.down()
    print(f"\n{'system':18} {'test':4} {'Gb/s median (min-max)':24} {'x bridge (per round)':22}"
          f" {'core busy %':>11}")
    for name, tests in results.items():
        for test, runs in tests.items():
            g = [r["gbps"] for r in runs]
            ratio = ""
            if name != "bridge":
                b = [r["gbps"] for r in results["bridge"][test]]
                ratio = summary([x / y for x, y in zip(g, b)])
            busy = statistics.median(r["fwd_core_busy"] for r in runs)
            print(f"{name:18} {test:4} {summary(g):24} {ratio:22} {busy:11.0f}")
    if not args.no_save:
        out = REPO / "perf" / "results" / f"jumbo-{time.strftime('%Y%m%d-%H%M%S')}.json"
        out.write_text(json.dumps({"mtu": MTU, "rounds": args.rounds, "seconds": args.seconds,
                                   "offloads": args.offloads, "fastpath": args.fastpath,
                                   "kernel": os.uname().release, "results": results}, indent=1))
        print(f"saved {out}")


if __name__ == "__main__":
    main()
