"""Management plane speed: simple RPCs per second from one client, and fdb.list of a big FDB.

    perf/rpc_rate.py                     # serve a fake switch holding 100,000 FDB entries
    perf/rpc_rate.py -s /run/pyxsw/sw0.sock      # measure a running switch instead
    perf/rpc_rate.py -s SOCKET --storm 10        # 10 s of RPCs as fast as 4 clients go

The storm is for measuring what management traffic costs the data plane: run it against a
switch that perf/fwd_rate.py is driving and compare the forwarded rate with a run without.

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
from pyxsw.mgmt.fake import FakeSwitch  # noqa: E402


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


STORM_CALLS = ("status", "port.stats", "port.list", "fdb.list")


def storm(path, seconds, clients=4, depth=8, calls=STORM_CALLS):
    """Every client keeps `depth` calls in flight, cycling through `calls`."""
    async def one(deadline):
        n = 0
        async with AsyncClient(path) as c:
            try:
                while time.perf_counter() < deadline:
                    await asyncio.gather(*(c.call(calls[(n + k) % len(calls)])
                                           for k in range(depth)))
                    n += depth
            except ConnectionError:             # the switch stopped first: count what was done
                pass
        return n

    async def main():
        t0 = time.perf_counter()
        counts = await asyncio.gather(*(one(t0 + seconds) for _ in range(clients)))
        return sum(counts) / (time.perf_counter() - t0)
    return asyncio.run(main())


def measure(path, seconds):
    one = "one client, one call at a time"
    print(f"  port.list, {one}: {rate_sync(path, 'port.list', seconds):8.0f} RPCs/s")
    print(f"  status,    {one}: {rate_sync(path, 'status', seconds):8.0f} RPCs/s")
    rate = rate_pipelined(path, "port.list", seconds)
    print(f"  port.list, one client, 32 calls in flight: {rate:8.0f} RPCs/s")
    n, dt = fdb_list_time(path)
    print(f"  fdb.list of {n} entries: {dt * 1000:.0f} ms (best of 3)")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-s", "--socket", help="a running switch's socket (default: a fake)")
    ap.add_argument("--entries", type=int, default=100_000, help="FDB entries of the fake")
    ap.add_argument("--seconds", type=float, default=2.0, help="per rate measurement")
    ap.add_argument("--storm", type=float, metavar="SECONDS",
                    help="with -s: only an RPC storm of this length (4 clients, 8 in flight each)")
    ap.add_argument("--calls", default=",".join(STORM_CALLS),
                    help="with --storm: the methods to cycle through (default: %(default)s)")
    a = ap.parse_args()
    if a.storm:
        if not a.socket:
            ap.error("--storm needs -s SOCKET")
        calls = tuple(c for c in a.calls.split(",") if c)
        print(f"storm on {a.socket}: {storm(a.socket, a.storm, calls=calls):.0f} RPCs/s "
              f"for {a.storm:g} s")
        return
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
