"""Management plane speed: simple RPCs per second from one client, and fdb.list of a big FDB.

    perf/rpc_rate.py                     # serve a fake switch holding 100,000 FDB entries
    perf/rpc_rate.py -s /run/pyxsw/sw0.sock      # measure a running switch instead

Without -s, the server runs in a child process (as in `pyxsw run`, it does not share the
GIL with the client) once on uvloop and once on plain asyncio.  The fake's fdb_list does the
work the real Switch.fdb_list does in Python: a dict per entry, filtered, sorted.
Targets (issue 3): >= 5,000 simple RPCs/s from one client; fdb.list of 100,000 entries < 1 s.
"""
import argparse
import asyncio
import multiprocessing
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from pyxsw.client import AsyncClient, Client  # noqa: E402


class _Port:
    def __init__(self, name, index):
        self.name, self.index, self.up = name, index, True


class FakeSwitch:
    def __init__(self, entries):
        self.ports = {f"s{i}": _Port(f"s{i}", i) for i in range(4)}
        # what the core's fdb_list returns: (mac, vlan, port index, age, static)
        self.rows = [(f"02:00:{i >> 24 & 255:02x}:{i >> 16 & 255:02x}:{i >> 8 & 255:02x}:"
                      f"{i & 255:02x}", i % 4, i % 4, i % 300, False) for i in range(entries)]

    def status(self):
        return {"name": "fake", "mode": "poll", "uptime": 1.0, "fdb": {"entries": len(self.rows)}}

    def fdb_list(self, port=None, vlan=None):
        names = {p.index: p.name for p in self.ports.values()}
        out = []
        for mac, v, idx, age, static in self.rows:
            name = names.get(idx, f"#{idx}")
            if (port is None or name == port) and (vlan is None or v == vlan):
                out.append({"mac": mac, "vlan": v, "port": name, "age": age, "static": static})
        out.sort(key=lambda e: (e["port"], e["vlan"], e["mac"]))
        return out


def _serve(path, entries, use_uvloop):
    from pyxsw.mgmt.server import serve
    serve(FakeSwitch(entries), path, use_uvloop=use_uvloop)


def rate_sync(path, method, seconds):
    with Client(path) as c:
        n, t0 = 0, time.perf_counter()
        while (dt := time.perf_counter() - t0) < seconds:
            for _ in range(100):
                c.call(method)
            n += 100
    return n / dt


def rate_pipelined(path, method, seconds, depth=32):
    async def main():
        async with AsyncClient(path) as c:
            n, t0 = 0, time.perf_counter()
            while (dt := time.perf_counter() - t0) < seconds:
                await asyncio.gather(*(c.call(method) for _ in range(depth)))
                n += depth
            return n / dt
    return asyncio.run(main())


def fdb_list_time(path, repeat=3):
    best, n = float("inf"), 0
    with Client(path, timeout=60) as c:
        for _ in range(repeat):
            t0 = time.perf_counter()
            n = len(c.fdb_list())
            best = min(best, time.perf_counter() - t0)
    return n, best


def measure(path, seconds):
    print(f"  port.list, one client, one call at a time: {rate_sync(path, 'port.list', seconds):8.0f} RPCs/s")
    print(f"  status,    one client, one call at a time: {rate_sync(path, 'status', seconds):8.0f} RPCs/s")
    print(f"  port.list, one client, 32 calls in flight: {rate_pipelined(path, 'port.list', seconds):8.0f} RPCs/s")
    n, dt = fdb_list_time(path)
    print(f"  fdb.list of {n} entries: {dt * 1000:.0f} ms (best of 3)")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-s", "--socket", help="a running switch's socket (default: a fake)")
    ap.add_argument("--entries", type=int, default=100_000, help="FDB entries of the fake")
    ap.add_argument("--seconds", type=float, default=2.0, help="per rate measurement")
    a = ap.parse_args()
    if a.socket:
        print(f"switch at {a.socket}:")
        measure(a.socket, a.seconds)
        return
    ctx = multiprocessing.get_context("fork")
    for use_uvloop in (True, False):
        with tempfile.TemporaryDirectory(prefix="pyxsw-perf-") as d:
            path = os.path.join(d, "sw.sock")
            p = ctx.Process(target=_serve, args=(path, a.entries, use_uvloop), daemon=True)
            p.start()
            while not os.path.exists(path):
                time.sleep(0.01)
            print(f"fake switch, server on {'uvloop' if use_uvloop else 'asyncio'}:")
            try:
                measure(path, a.seconds)
            finally:
                with Client(path) as c:
                    c.shutdown()
                p.join(10)


if __name__ == "__main__":
    main()
