"""Microbenchmarks of the core's per-frame work: FDB lookup and learning at 1k and 1M
entries, the classification of a 64-frame burst, and the frame pool.

Each benchmark call runs a C loop of many operations (a Python call per operation would
measure Python); `extra_info["per"]` says what one operation is, and perf/report.py divides
by `extra_info["ops"]` to show ns per operation."""
import random

import pytest

from pyxsw._core import FORWARD_FLOOD  # noqa: F401  (the installed core must import too)

SIZES = {"1k": 1_000, "1M": 1_000_000}
LOOKUPS = 4096          # keys per round of lookups (random order)
LEARNS = 1000           # new MACs learned per benchmark round


def core(mc, capacity, ports=3):
    c = mc.Datapath(umem=False, capacity=capacity)
    ps = [c.add_virtual_port(f"v{i}") for i in range(ports)]
    return c, ps


@pytest.fixture(scope="module", params=list(SIZES))
def filled(request, microcore):
    """A Datapath whose FDB holds N learned MACs on port 0 (room for the learn benchmark too)."""
    n = SIZES[request.param]
    c, ps = core(microcore, capacity=n + 200 * LEARNS)
    assert microcore.learn_range(c, 0, n, ps[0]) == n
    return request.param, n, c, ps


def per_op(benchmark, ops, per):
    benchmark.extra_info.update(ops=ops, per=per)


def bench_fdb_lookup(benchmark, microcore, filled):
    import array
    name, n, c, ps = filled
    rnd = random.Random(1)
    keys = array.array("Q", (microcore.mac_key(rnd.randrange(n)) for _ in range(LOOKUPS)))
    benchmark.group = "fdb lookup"
    benchmark.name = f"fdb_lookup[{name}]"
    per_op(benchmark, LOOKUPS, "lookup")
    assert benchmark(microcore.lookup_keys, c, keys, 1) == LOOKUPS


def bench_fdb_learn(benchmark, microcore, filled):
    name, n, c, ps = filled
    nxt = [n]

    def learn_new():
        got = microcore.learn_range(c, nxt[0], LEARNS, ps[1])
        nxt[0] += LEARNS
        return got
    benchmark.group = "fdb learn"
    benchmark.name = f"fdb_learn_new[{name}]"
    per_op(benchmark, LEARNS, "new MAC")
    # Each round adds LEARNS entries: bounded rounds keep the table within its capacity.
    assert benchmark.pedantic(learn_new, rounds=100, iterations=1, warmup_rounds=1) == LEARNS


def bench_fdb_refresh(benchmark, microcore, filled):
    """The common case of learning: a known source on its own port (a refresh)."""
    name, n, c, ps = filled
    benchmark.group = "fdb learn"
    benchmark.name = f"fdb_learn_known[{name}]"
    per_op(benchmark, LEARNS, "known MAC")
    benchmark(microcore.learn_range, c, 0, LEARNS, ps[0])


def _burst(microcore, known, stride=64):
    """64 frames: 48 to known MACs, 8 broadcasts, 8 to unknown MACs; sources known."""
    frames = []
    for i in range(64):
        src = (microcore.mac_key(i % known)).to_bytes(6, "little")
        if i % 8 == 3:
            dst = b"\xff" * 6
        elif i % 8 == 5:
            dst = microcore.mac_key(10**9 + i).to_bytes(6, "little")
        else:
            dst = microcore.mac_key(known + i).to_bytes(6, "little")
        f = dst + src + b"\x08\x00" + bytes(stride - 14)
        frames.append(f[:stride])
    return b"".join(frames)


def bench_classify_burst(benchmark, microcore):
    c, ps = core(microcore, capacity=4096)
    known = 64
    microcore.learn_range(c, 0, known, ps[0])           # the sources, on port 0
    microcore.learn_range(c, known, 64, ps[1])          # most destinations, on port 1
    burst = _burst(microcore, known)
    benchmark.group = "classify"
    benchmark.name = "classify_burst[64 frames]"
    per_op(benchmark, 64 * 100, "frame")
    benchmark(microcore.decide_burst, c, burst, 64, 60, ps[0], 100)


def bench_pool_get_put(benchmark, microcore):
    c, ps = core(microcore, capacity=1024)
    benchmark.group = "frame pool"
    benchmark.name = "pool_get_put[64-frame burst]"
    per_op(benchmark, 1000, "get+put of 64 frames")
    assert benchmark(microcore.pool_cycle, c, 64, 1000) == 64


def bench_cache_take_put(benchmark, microcore):
    c, ps = core(microcore, capacity=1024)
    benchmark.group = "frame pool"
    benchmark.name = "worker_cache_take_put[64 frames]"
    per_op(benchmark, 1000 * 64, "take+put of 1 frame")
    benchmark(microcore.cache_cycle, c, 64, 1000)
