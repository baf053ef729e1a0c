"""How soon the switch's control side hears of what happens on its ports.

    sudo .venv/bin/python perf/event_latency.py [--rounds 40] [--mode poll] [--json FILE]

Builds a two-host lab (namespaces with a veth each, names unique to the run), starts a Switch
in this process with a listener on its events, and measures, per round:

- learn: one frame from host 0 with a source MAC never seen before, until the `fdb.learn`
  event for that MAC reaches the listener (worker -> event ring -> control thread);
- down / up: host 1's end of its veth set down (then up again), as a cable pulled, until the
  switch's `port.down` (`port.up`) event for host 1's port (kernel -> rtnetlink -> control
  thread).

The frame is sent and the link set from sockets made inside the hosts' namespaces by a thread
that entered them (setns), so no process is started between the stamp and the act; both
stamps are CLOCK_MONOTONIC.  Prints the median, 90th percentile and worst of each, in ms.

Run it alone on the machine: it measures wake-up latency, which a busy machine stretches.
"""
from __future__ import annotations

import argparse
import ctypes
import fcntl
import json
import os
import queue
import socket
import statistics
import struct
import sys
import tempfile
import threading
import time
from pathlib import Path

from pyxsw import Config, Switch
from pyxsw.lab import Lab

CLONE_NEWNET = 0x40000000
SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1
ETH_P_TEST = 0x88B5
_libc = ctypes.CDLL(None, use_errno=True)


def in_namespace(ns, fn):
    """fn() run by a thread that entered network namespace `ns`: sockets it makes live there
    for good, whatever thread uses them afterwards."""
    out = {}

    def run():
        fd = os.open(f"/run/netns/{ns}", os.O_RDONLY)
        try:
            if _libc.setns(fd, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), f"setns {ns}")
            out["v"] = fn()
        except BaseException as e:
            out["e"] = e
        finally:
            os.close(fd)
    t = threading.Thread(target=run)
    t.start()
    t.join()
    if "e" in out:
        raise out["e"]
    return out["v"]


def set_up(sock, ifname, up):
    ifr = struct.pack("16sH14x", ifname.encode(), 0)
    flags = struct.unpack_from("16sH", fcntl.ioctl(sock, SIOCGIFFLAGS, ifr))[1]
    flags = flags | IFF_UP if up else flags & ~IFF_UP
    fcntl.ioctl(sock, SIOCSIFFLAGS, struct.pack("16sH14x", ifname.encode(), flags))


def summary(ms):
    ms = sorted(ms)
    return {"n": len(ms), "median": round(statistics.median(ms), 3),
            "p90": round(ms[int(0.9 * (len(ms) - 1))], 3), "max": round(ms[-1], 3)}


def measure(rounds, mode, prefix):
    events = queue.Queue()
    with Lab(hosts=2, prefix=prefix) as lab, tempfile.TemporaryDirectory() as tmp:
        cfg = Config.from_dict({
            "switch": {"name": "lat", "mode": mode, "cores": [max(os.sched_getaffinity(0))]},
            "management": {"socket": str(Path(tmp) / "sw.sock")},
            "port": [{"name": p} for p in lab.ports]})
        sw = Switch(cfg)
        sw.add_listener(lambda e: events.put((time.monotonic(), e)))
        sw.start()
        try:
            tx = in_namespace(lab.hosts[0].ns, lambda: socket.socket(
                socket.AF_PACKET, socket.SOCK_RAW))
            tx.bind(("eth0", 0))
            ctl = in_namespace(lab.hosts[1].ns, lambda: socket.socket(
                socket.AF_INET, socket.SOCK_DGRAM))
            port1 = lab.hosts[1].port

            def wait(match, timeout=5.0):
                end = time.monotonic() + timeout
                while True:
                    left = end - time.monotonic()
                    if left <= 0:
                        raise TimeoutError("no event")
                    t, e = events.get(timeout=left)
                    if match(e):
                        return t
            time.sleep(0.5)
            while not events.empty():
                events.get()
            got = {"learn": [], "down": [], "up": []}
            for r in range(rounds):
                mac = f"02:aa:{r >> 8:02x}:{r & 255:02x}:00:01"
                frame = (b"\xff" * 6 + bytes.fromhex(mac.replace(":", ""))
                         + ETH_P_TEST.to_bytes(2, "big")).ljust(60, b"\0")
                time.sleep(0.01 + (r % 10) * 0.0137)    # not in step with any timer
                t0 = time.monotonic()
                tx.send(frame)
                got["learn"].append(1000 * (wait(lambda e: e.get("event") == "fdb.learn"
                                                 and e.get("mac") == mac) - t0))
                for state, up in (("down", False), ("up", True)):
                    time.sleep(0.01 + (r % 7) * 0.0113)
                    t0 = time.monotonic()
                    set_up(ctl, "eth0", up)
                    got[state].append(1000 * (wait(lambda e: e.get("event") == f"port.{state}"
                                                   and e.get("port") == port1) - t0))
            tx.close()
            ctl.close()
        finally:
            sw.stop()
    return {k: summary(v) for k, v in got.items()}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=40)
    ap.add_argument("--mode", default="poll", choices=("poll", "interrupt", "adaptive"))
    ap.add_argument("--prefix", default=f"el{os.getpid() % 10000}")
    ap.add_argument("--json", help="also write the figures to this file")
    a = ap.parse_args(argv)
    res = measure(a.rounds, a.mode, a.prefix)
    print(f"{'event':<8}{'n':>5}{'median ms':>12}{'p90 ms':>10}{'max ms':>10}")
    for k, s in res.items():
        print(f"{k:<8}{s['n']:>5}{s['median']:>12.3f}{s['p90']:>10.3f}{s['max']:>10.3f}")
    if a.json:
        Path(a.json).write_text(json.dumps({"mode": a.mode, **res}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
