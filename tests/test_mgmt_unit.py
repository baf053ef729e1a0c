"""The management plane against a fake switch, in-process, without root.

Every test that serves runs twice: with the server's loop on uvloop and on plain asyncio
(and the async clients on the same kind of loop)."""
import asyncio
import json
import os
import re
import resource
import signal
import socket
import stat
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import msgpack
import pytest

from helpers import run_async
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from pyxsw.client import AsyncClient, Client, RpcError, busy_share
from pyxsw.mgmt import handlers
from pyxsw.mgmt.ctl import ctl_main
from pyxsw.mgmt.fake import FakeSwitch
from pyxsw.mgmt.server import Server, ServerError, serve

ROOT = Path(__file__).resolve().parent.parent
CODES = {"invalid_request", "method_not_found", "invalid_params", "not_found", "exists", "failed"}
COUNTERS = ("rx_packets", "rx_bytes", "tx_packets", "tx_bytes", "rx_dropped", "tx_dropped",
            "flooded")


# ---------------------------------------------------------------------------- fixtures

def untimed(events):
    """Events without their "time" (every one has it: checked here)."""
    assert all(isinstance(e.get("time"), float) for e in events), events
    return [{k: v for k, v in e.items() if k != "time"} for e in events]


def start_server(switch, path, kind, **kw):
    srv = Server(switch, path, **kw)
    t = threading.Thread(target=srv.run, kwargs={"use_uvloop": kind == "uvloop"}, daemon=True)
    t.start()
    assert srv.started.wait(5), "the server did not start"
    return srv, t


@pytest.fixture
def served(short_dir, loop_kind):
    """A live server on a fake switch: .fake, .path, .server, .kind."""
    fake = FakeSwitch()
    path = str(short_dir / "run" / "sw.sock")
    srv, t = start_server(fake, path, loop_kind)
    yield SimpleNamespace(fake=fake, path=path, server=srv, thread=t, kind=loop_kind)
    srv.request_stop()
    t.join(10)
    assert not t.is_alive()
    assert fake.listeners == []                 # the server let go of the switch
    assert not os.path.exists(path)


def wait_serving(path, timeout=10):
    """Until a connect succeeds: the file appears at bind(), a moment before listen()."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            raw(path).close()
            return
        except (FileNotFoundError, ConnectionRefusedError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def raw(path, timeout=5):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(path)
    return s


def exchange(path, data):
    """Send bytes, close our side, return every message the server sent until it closed."""
    with raw(path) as s:
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        return read_all(s)


def read_all(s):
    unpacker = msgpack.Unpacker()
    while True:
        try:
            data = s.recv(65536)
        except ConnectionResetError:
            break
        if not data:
            break
        unpacker.feed(data)
    return list(unpacker)


def request(msgid, method, params=None):
    return msgpack.packb([0, msgid, method, [params] if params is not None else []])


def assert_response(msg):
    assert isinstance(msg, list) and len(msg) == 4 and msg[0] == 1, msg
    err = msg[2]
    if err is not None:
        assert set(err) == {"code", "message"}, err
        assert err["code"] in CODES and isinstance(err["message"], str) and err["message"]
        # a handler never crashed: every failure was foreseen
        assert not err["message"].startswith("internal error"), err


def error_code(client, method, **kw):
    with pytest.raises(RpcError) as e:
        client.call(method, **kw)
    assert e.value.code in CODES
    return e.value.code


# ---------------------------------------------------------------------------- every method

def test_status_and_port_list(served):
    with Client(served.path) as c:
        st = c.status()
        assert st["name"] == "fake" and st["mode"] == "poll"
        assert st["fastpath"] == {"mode": "off", "kernel_fdb_entries": 0, "sync_errors": 0}
        assert c.port_list() == [{"name": n, "index": i, "up": True, "state": "up", "reason": "",
                                  "vlan_mode": "access", "vlan": 1, "allowed": None,
                                  "native": None, "changed": [],
                                  "fastpath": {"target": False,
                                               "reason": "the fast path is off"}}
                                 for i, n in enumerate(["s0", "s1", "s2"])]


def test_fastpath_on_in_status_port_list_and_fdb_list(served):
    """With the fast path on: its mode and the kernel copy's size in status, each port a
    target or why not in port.list, "kernel" in fdb.list entries (only then)."""
    fake = served.fake
    fake.fastpath = "xdp"
    fake.ports["s1"].fastpath = {"target": True, "reason": ""}
    fake.ports["s2"].fastpath = {"target": False, "reason": "down"}
    fake.learn("02:00:00:00:00:0a", "s0")
    with Client(served.path) as c:
        assert c.status()["fastpath"] == {"mode": "xdp", "kernel_fdb_entries": 1,
                                          "sync_errors": 0}
        assert [p["fastpath"] for p in c.port_list()] == [
            {"target": False, "reason": "the fast path is off"},
            {"target": True, "reason": ""}, {"target": False, "reason": "down"}]
        assert c.fdb_list() == [{"mac": "02:00:00:00:00:0a", "vlan": 1, "port": "s0",
                                 "age": 3, "static": False, "kernel": True}]
        fake.fastpath = "off"
        assert "kernel" not in c.fdb_list()[0]


def test_port_add_and_del(served):
    with Client(served.path) as c:
        assert c.port_add("eth3") == {"name": "eth3", "index": 3, "up": True, "state": "up",
                                      "reason": "", "warnings": [], "vlan_mode": "access",
                                      "vlan": 1, "allowed": None, "native": None,
                                      "changed": [], "fastpath": {
                                          "target": False, "reason": "the fast path is off"}}
        assert "eth3" in served.fake.ports
        assert error_code(c, "port.add", name="eth3") == "exists"
        # a port whose interface is gone, or whose XDP program was taken, can be added again
        served.fake.ports["eth3"].state = "gone"
        assert c.port_add("eth3")["state"] == "up"
        assert c.port_add("ip0")["warnings"] == ["ip0 has IP addresses (10.9.0.1/24)"]
        assert c.port_del("ip0") == {"name": "ip0"}
        assert error_code(c, "port.add", name="nosuch0") == "not_found"
        assert c.port_del("eth3") == {"name": "eth3"}
        assert "eth3" not in served.fake.ports
        assert error_code(c, "port.del", name="eth3") == "not_found"


def test_port_stats(served):
    with Client(served.path) as c:
        every = c.port_stats()
        assert sorted(every) == ["s0", "s1", "s2"]
        one = c.port_stats("s1")
        assert list(one) == ["s1"]
        assert all(k in one["s1"] for k in COUNTERS + ("xdp", "fastpath", "queues"))
        assert error_code(c, "port.stats", name="s9") == "not_found"


def test_fdb_add_list_del_flush(served):
    fake = served.fake
    with Client(served.path) as c:
        r = c.fdb_add("02:AA:bb:cc:dd:01", "s1")                    # upper case is fine
        assert r == {"mac": "02:aa:bb:cc:dd:01", "vlan": 1, "port": "s1", "static": True,
                     "new": True}                                   # the port's VLAN: 1
        c.port_set("s2", "trunk", allowed=[7])
        c.port_set("s1", "trunk", allowed="1,7")
        assert c.fdb_add("02-aa-bb-cc-dd-02", "s2", vlan=7)["mac"] == "02:aa:bb:cc:dd:02"
        fake.learn("02:00:00:00:00:0a", "s0")
        fake.learn("02:00:00:00:00:0b", "s1", vlan=7)
        every = c.fdb_list()
        assert len(every) == 4
        assert set(every[0]) == {"mac", "vlan", "port", "age", "static"}
        assert [e["mac"] for e in c.fdb_list(port="s1")] == ["02:aa:bb:cc:dd:01",
                                                             "02:00:00:00:00:0b"]
        assert {e["mac"] for e in c.fdb_list(vlan=7)} == {"02:aa:bb:cc:dd:02",
                                                           "02:00:00:00:00:0b"}
        assert c.fdb_list(port="s2", vlan=1) == []
        assert error_code(c, "fdb.list", port="s9") == "not_found"

        assert c.fdb_del("02:aa:bb:cc:dd:02", vlan=7) == {"mac": "02:aa:bb:cc:dd:02", "vlan": 7,
                                                          "removed": 1}
        assert error_code(c, "fdb.del", mac="02:aa:bb:cc:dd:02", vlan=7) == "not_found"
        assert c.fdb_flush(port="s0") == {"flushed": 1}
        assert c.fdb_flush() == {"flushed": 1}                      # statics stay
        assert [e["mac"] for e in c.fdb_list()] == ["02:aa:bb:cc:dd:01"]
        assert error_code(c, "fdb.flush", port="s9") == "not_found"


def test_mode_and_aging(served):
    with Client(served.path) as c:
        for mode in ("interrupt", "adaptive", "poll"):
            assert c.mode_set(mode) == {"mode": mode}
            assert served.fake.mode == mode
        assert c.aging_set(0) == {"aging": 0}
        assert c.aging_set(42) == {"aging": 42}
        assert served.fake.aging == 42


def test_methods_lists_the_method_table(served):
    with Client(served.path) as c:
        listed = c.methods()
    assert [m["name"] for m in listed] == list(handlers.METHODS)
    assert listed == [handlers.describe(fn) for fn in handlers.METHODS.values()]
    fdb_add = next(m for m in listed if m["name"] == "fdb.add")
    assert [(p["name"], p["kind"], p["required"], p.get("default")) for p in fdb_add["params"]] \
        == [("mac", "station", True, None), ("port", "port", True, None),
            ("vlan", "vlan_id", False, None)]
    assert fdb_add["help"] == "Add a static FDB entry (or make a learned one static)."


def test_worker_stats(served):
    """Every counter of Switch.worker_stats(), and busy: the share of a worker's passes
    since it started that found frames (the fake's worker made 4,000 passes, 3,000 idle,
    and 1,000 more, 250 idle, before each look after that)."""
    with Client(served.path) as c:
        first, later = c.worker_stats(), c.worker_stats()
    assert [w["queue"] for w in first] == [0]
    assert {k: v for k, v in first[0].items() if k != "busy"} == \
        dict(FakeSwitch().worker_stats()[0])
    assert (first[0]["busy"], later[0]["busy"]) == (0.25, 0.35)
    assert busy_share(later[0], since=first[0]) == 0.75


def test_shutdown_replies_then_stops(served):
    with Client(served.path) as c:
        assert c.shutdown() == {"stopping": True}
    served.thread.join(5)
    assert not served.thread.is_alive()
    assert not os.path.exists(served.path)


def test_events_reach_subscribers_only(served):
    fake = served.fake
    with Client(served.path) as sub, Client(served.path) as other:
        fake.learn("02:00:00:00:00:01", "s0")        # before subscribing: not seen
        assert sub.call("events.subscribe") == {"subscribed": True}
        sub.subscribe()                               # a second subscription is harmless
        events = sub.events(timeout=5)
        fake.learn("02:00:00:00:00:02", "s0")
        fake.learn("02:00:00:00:00:02", "s1")
        fake.emit(event="port.down", port="s2")
        got = untimed([next(events) for _ in range(3)])
        assert got == [
            {"event": "fdb.learn", "mac": "02:00:00:00:00:02", "vlan": 1, "port": "s0"},
            {"event": "fdb.move", "mac": "02:00:00:00:00:02", "vlan": 1, "port": "s1",
             "from": "s0"},
            {"event": "port.down", "port": "s2"}]
        # calls still work on a subscribed connection; events that come meanwhile wait
        fake.emit(event="fdb.age", mac="02:00:00:00:00:02", vlan=0, port="s1")
        assert c_status_ok(sub)
        assert next(events)["event"] == "fdb.age"
        assert other.status()["name"] == "fake"     # no events mixed into its replies


def c_status_ok(c):
    return c.status()["name"] == "fake"


def test_async_client_and_events(served):
    async def main():
        async with AsyncClient(served.path) as c:
            results = await asyncio.gather(c.status(), c.port_list(), c.fdb_list(),
                                           c.port_stats("s0"))
            assert results[0]["name"] == "fake" and len(results[1]) == 3
            with pytest.raises(RpcError) as e:
                await c.port_del("s9")
            assert e.value.code == "not_found" and "s9" in e.value.message
            events = c.events()
            first = asyncio.ensure_future(events.__anext__())
            while not served.server.subscribers:
                await asyncio.sleep(0.01)
            served.fake.learn("02:00:00:00:00:05", "s2")
            ev = await asyncio.wait_for(first, 5)
            assert ev["event"] == "fdb.learn" and ev["mac"] == "02:00:00:00:00:05"

    run_async(served.kind, main())


# ---------------------------------------------------------------------------- bad input

BAD_CALLS = [
    ("no.such.method", {}, "method_not_found"),
    ("status", {"verbose": True}, "invalid_params"),
    ("port.add", {}, "invalid_params"),
    ("port.add", {"name": "s4", "extra": 1}, "invalid_params"),
    ("port.add", {"name": ""}, "invalid_params"),
    ("port.add", {"name": "a" * 16}, "invalid_params"),
    ("port.add", {"name": "a/b"}, "invalid_params"),
    ("port.add", {"name": "a b"}, "invalid_params"),
    ("port.add", {"name": "eth0:1"}, "invalid_params"),
    ("port.add", {"name": ".."}, "invalid_params"),
    ("port.add", {"name": 7}, "invalid_params"),
    ("port.add", {"name": None}, "invalid_params"),
    ("port.del", {"name": ["s0"]}, "invalid_params"),
    ("port.stats", {"name": b"s0"}, "invalid_params"),
    ("fdb.add", {"mac": "02:00:00:00:00:01"}, "invalid_params"),
    ("fdb.add", {"mac": "02:00:00:00:01", "port": "s0"}, "invalid_params"),
    ("fdb.add", {"mac": "02:00:00:00:00:0g", "port": "s0"}, "invalid_params"),
    ("fdb.add", {"mac": "0200.0000.0001", "port": "s0"}, "invalid_params"),
    ("fdb.add", {"mac": "02:00-00:00:00:01", "port": "s0"}, "invalid_params"),
    ("fdb.add", {"mac": "01:00:5e:00:00:01", "port": "s0"}, "invalid_params"),
    ("fdb.add", {"mac": "02:00:00:00:00:01", "port": "s0", "vlan": 4096}, "invalid_params"),
    ("fdb.add", {"mac": "02:00:00:00:00:01", "port": "s0", "vlan": -1}, "invalid_params"),
    ("fdb.add", {"mac": "02:00:00:00:00:01", "port": "s0", "vlan": "1"}, "invalid_params"),
    ("fdb.add", {"mac": "02:00:00:00:00:01", "port": "s0", "vlan": True}, "invalid_params"),
    ("fdb.add", {"mac": "02:00:00:00:00:01", "port": "s0", "vlan": 1.0}, "invalid_params"),
    ("fdb.add", {"mac": "02:00:00:00:00:01", "port": "s9"}, "not_found"),
    ("fdb.del", {"mac": 2}, "invalid_params"),
    ("fdb.list", {"vlan": 2**64 - 1}, "invalid_params"),
    ("fdb.list", {"port": "bad name"}, "invalid_params"),
    ("fdb.list", {"port": "s9", "vlan": 5000}, "invalid_params"),  # values before look-ups
    ("fdb.flush", {"port": 0}, "invalid_params"),
    ("mode.set", {"mode": "turbo"}, "invalid_params"),
    ("mode.set", {"mode": ["poll"]}, "invalid_params"),
    ("mode.set", {}, "invalid_params"),
    ("aging.set", {"seconds": -1}, "invalid_params"),
    ("aging.set", {"seconds": 1.5}, "invalid_params"),
    ("aging.set", {"seconds": "300"}, "invalid_params"),
    ("aging.set", {"seconds": 2**32}, "invalid_params"),
    ("shutdown", {"now": True}, "invalid_params"),
    ("events.subscribe", {"filter": "fdb"}, "invalid_params"),
    ("methods", {"verbose": True}, "invalid_params"),
    ("worker.stats", {"queue": 0}, "invalid_params"),
]


def test_bad_calls(served):
    before = (dict(served.fake.ports), dict(served.fake.fdb), served.fake.mode,
              served.fake.aging)
    with Client(served.path) as c:
        for method, kw, code in BAD_CALLS:
            with pytest.raises(RpcError) as e:
                c.call(method, **kw)
            assert e.value.code == code, (method, kw, e.value)
        assert c.status()["name"] == "fake"        # the same connection still serves
    assert before == (dict(served.fake.ports), dict(served.fake.fdb), served.fake.mode,
                      served.fake.aging)


@pytest.mark.parametrize("message", [
    5, "status", {"method": "status"}, [], [0], [0, 1, "status"], [0, 1, "status", [], 9],
    [1, 1, None, None], [3, 1, "status", []], ["0", 1, "status", []],
    [0, "1", "status", []], [0, -1, "status", []], [0, 2**32, "status", []],
    [0, True, "status", []], [0, None, "status", []], [0, 1.0, "status", []],
])
def test_not_a_request_gets_invalid_request(served, message):
    replies = exchange(served.path, msgpack.packb(message) + request(9, "status"))
    assert len(replies) == 2
    assert replies[0][:2] == [1, None] and replies[0][2]["code"] == "invalid_request"
    assert replies[1][:3] == [1, 9, None]        # the connection went on


@pytest.mark.parametrize("msg, code", [
    ([0, 1, 5, []], "method_not_found"),
    ([0, 1, None, []], "method_not_found"),
    ([0, 1, b"status", []], "method_not_found"),
    ([0, 1, "status", None], "invalid_params"),
    ([0, 1, "status", {}], "invalid_params"),
    ([0, 1, "status", [1]], "invalid_params"),
    ([0, 1, "status", [{}, {}]], "invalid_params"),
    ([0, 1, "port.del", [{b"name": "s0"}]], "invalid_params"),
    ([0, 1, "port.del", ["s0"]], "invalid_params"),
])
def test_wrong_method_or_params(served, msg, code):
    replies = exchange(served.path, msgpack.packb(msg))
    assert [(r[1], r[2]["code"]) for r in replies] == [(1, code)]


def test_client_notification_is_ignored(served):
    replies = exchange(served.path, msgpack.packb([2, "status", []]) + request(3, "status"))
    assert [r[1] for r in replies] == [3]


@pytest.mark.parametrize("garbage", [
    b"\xc1",                                     # a byte MessagePack never uses
    b"\x94\x00\x01\xa6status\x91\x81\x01\x02",   # a map with an int key
    b"\x94\x00\x01\xa6stat\xff\xfe\x90",         # invalid UTF-8 in a str
    b"\x91" * 2000,                              # nested deeper than the unpacker allows
])
def test_malformed_msgpack_closes_that_connection_only(served, garbage):
    with Client(served.path) as bystander:
        replies = exchange(served.path, request(1, "status") + garbage + request(2, "status"))
        assert replies[0][:3] == [1, 1, None]
        assert replies[1][:2] == [1, None] and replies[1][2]["code"] == "invalid_request"
        assert len(replies) == 2                  # closed: request 2 never answered
        assert bystander.status()["name"] == "fake"


def test_message_over_the_limit(served):
    big = msgpack.packb([0, 1, "status", [{"x": "y" * (2 << 20)}]])
    with Client(served.path) as bystander, raw(served.path) as s:
        try:
            s.sendall(big)                        # the server may stop reading half-way
        except (BrokenPipeError, ConnectionResetError):
            pass
        replies = read_all(s)
        assert len(replies) == 1 and replies[0][2]["code"] == "invalid_request"
        assert "limit" in replies[0][2]["message"] or "exceeds" in replies[0][2]["message"]
        assert bystander.status()["name"] == "fake"


def test_slow_message_is_assembled(served):
    data = request(4, "port.list") + request(5, "status")
    with raw(served.path) as s:
        for b in data:                            # one byte at a time
            s.send(bytes([b]))
        s.shutdown(socket.SHUT_WR)
        assert [r[1] for r in read_all(s)] == [4, 5]


# ---------------------------------------------------------------------------- property tests

values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**63, 2**64 - 1) | st.floats()
    | st.text(max_size=20) | st.binary(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                               max_size=4),
    max_leaves=12)
arg_names = (st.sampled_from(["name", "port", "mac", "vlan", "mode", "seconds"])
             | st.text(max_size=6))
arg_values = (values | st.sampled_from(["s0", "s1", "s9", "eth5", "02:00:00:00:00:01",
                                        "poll", "turbo", 0, 4095, 4096, -1])
              | st.from_regex(r"[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}", fullmatch=True))
known = st.sampled_from(sorted(set(handlers.METHODS) - {"shutdown"}))
methods = st.one_of(known, known, st.text(max_size=12))
named = st.builds(lambda d: [d], st.dictionaries(arg_names, arg_values, max_size=3))
params = st.one_of(st.just([]), named, named, st.lists(values, max_size=2), values)
msgids = st.integers(0, 2**32 - 1)
requests = st.builds(lambda msgid, m, p: [0, msgid, m, p],
                     st.one_of(msgids, msgids, values), methods, params)
# mostly request-shaped, so that most get past the framing checks into the methods
messages = st.one_of(requests, requests, requests, st.lists(values, max_size=5), values)

HYPOTHESIS = settings(max_examples=150, deadline=None,
                      suppress_health_check=[HealthCheck.function_scoped_fixture,
                                             HealthCheck.too_slow])


@HYPOTHESIS
@given(batch=st.lists(messages, min_size=1, max_size=5))
def test_property_wrong_requests(served, batch):
    data = b"".join(msgpack.packb(m) for m in batch)
    replies = exchange(served.path, data)
    # a batch that subscribed may also get events (fdb.flush makes one): well-formed ones
    events = [r for r in replies if r[0] == 2]
    assert all(r[1] == "event" and isinstance(r[2][0], dict) for r in events)
    replies = [r for r in replies if r[0] != 2]
    expected = [m for m in batch if not (isinstance(m, list) and len(m) == 3 and m[0] == 2)]
    assert len(replies) == len(expected)          # one reply per message, in order
    for m, r in zip(expected, replies):
        assert_response(r)
        event(r[2]["code"] if r[2] else "ok")
        ok_id = (isinstance(m, list) and len(m) == 4 and m[0] == 0
                 and isinstance(m[1], int) and not isinstance(m[1], bool)
                 and 0 <= m[1] < 2**32)
        assert r[1] == (m[1] if ok_id else None)
    with Client(served.path) as c:
        assert c.status()["name"] == "fake"


@HYPOTHESIS
@given(data=st.binary(max_size=3000)
       | st.builds(lambda a, b: a + b, st.sampled_from([request(1, "status"), b"\x94\x00"]),
                   st.binary(max_size=200)))
def test_property_random_bytes(served, data):
    with Client(served.path) as bystander:
        for r in exchange(served.path, data):
            assert_response(r)
        assert bystander.status()["name"] == "fake"


# ---------------------------------------------------------------------------- concurrency

def test_100_concurrent_clients(served):
    async def one(i, started):
        async with AsyncClient(served.path) as c:
            started.append(i)
            while len(started) < 100:             # every client connected at once
                await asyncio.sleep(0.01)
            for k in range(20):
                if k % 2:
                    assert (await c.status())["name"] == "fake"
                else:
                    assert len(await c.port_list()) == 3
            return i

    async def main():
        started = []
        return await asyncio.wait_for(asyncio.gather(*(one(i, started) for i in range(100))), 60)

    assert run_async(served.kind, main()) == list(range(100))


def test_slow_port_add_does_not_stall_others(served):
    served.fake.delay = 0.8
    done = threading.Event()

    def add():
        with Client(served.path) as c:
            c.port_add("eth7")
        done.set()

    t = threading.Thread(target=add)
    t.start()
    time.sleep(0.1)
    with Client(served.path) as c:
        t0 = time.monotonic()
        for _ in range(10):
            c.status()
        assert time.monotonic() - t0 < 0.4 and not done.is_set()
    t.join()
    assert "eth7" in served.fake.ports


def test_connections_over_max_clients_are_refused_cleanly(short_dir, loop_kind, capsys):
    """Past max_clients a connection gets one "busy" error reply and is closed; the clients
    already connected never notice, and a place that frees up is taken again."""
    path = str(short_dir / "sw.sock")
    srv, t = start_server(FakeSwitch(), path, loop_kind, max_clients=5)
    held = []
    try:
        held = [Client(path) for _ in range(5)]
        assert all(c.status()["name"] == "fake" for c in held)
        with raw(path) as s:                      # the sixth, saying nothing
            msgs = read_all(s)
        assert len(msgs) == 1 and msgs[0][:2] == [1, None] and msgs[0][3] is None, msgs
        assert msgs[0][2]["code"] == "busy" and "max_clients" in msgs[0][2]["message"]
        with raw(path) as s:                      # one that sends a request at once
            s.sendall(request(1, "status"))
            assert [m[2]["code"] for m in read_all(s)] == ["busy"]
        with pytest.raises(RpcError) as e:        # what the Python clients make of it
            with Client(path) as c:
                c.status()
        assert e.value.code == "busy"

        async def refused():
            async with AsyncClient(path) as c:
                await c.status()

        with pytest.raises(RpcError) as e:
            run_async(loop_kind, refused())
        assert e.value.code == "busy"
        assert ctl_main(["-s", path, "status"]) == 1
        assert "busy" in capsys.readouterr().err
        st = held[0].status()                     # the five were served all along
        assert all(c.status()["name"] == "fake" for c in held[1:])
        assert st["clients"]["connected"] == 5 and st["clients"]["max"] == 5
        assert st["clients"]["refused"] == 5
        held.pop().close()
        deadline = time.monotonic() + 5
        while True:                               # once the server has seen it go
            try:
                with Client(path) as c:
                    assert c.status()["name"] == "fake"
                break
            except RpcError as e:
                assert e.code == "busy" and time.monotonic() < deadline
                time.sleep(0.05)
    finally:
        for c in held:
            c.close()
        srv.request_stop()
        t.join(10)


def test_pyxsw_run_raises_its_descriptor_limit():
    """`pyxsw run` raises RLIMIT_NOFILE's soft limit to the hard one when max_clients and
    the ports need more (a 1,024 soft limit is common), and says when the hard limit is
    too low."""
    code = textwrap.dedent(f"""
        import logging, resource, sys
        sys.path.insert(0, {str(ROOT)!r})
        logging.basicConfig(level=logging.INFO, format="%(message)s")
        from pyxsw.cli import _raise_nofile
        from pyxsw.config import Config
        def soft_after(soft, hard, **management):
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
            _raise_nofile(Config.from_dict({{"management": management}}))
            return resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        print(soft_after(1024, 4096))                     # 256 clients fit: left alone
        print(soft_after(1024, 4096, max_clients=2000))   # raised to the hard limit
        print(soft_after(1024, 1500, max_clients=2000))   # as far as it goes, with a warning
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["1024", "4096", "1500"]
    assert r.stderr.count("raise LimitNOFILE") == 1 and "1500" in r.stderr


def test_memory_of_connection_bursts_is_given_back(short_dir):
    """Bursts of 2,000 concurrent connections (most of them refused over max_clients)
    leave the server's RSS near where it started: the cap bounds what a burst costs, and
    what it took is handed back once it is over (glibc kept it: +55 MiB a burst)."""
    path = str(short_dir / "sw.sock")
    code = textwrap.dedent(f"""
        import sys
        sys.path[:0] = [{str(ROOT)!r}, {str(Path(__file__).parent)!r}]
        from test_mgmt_unit import FakeSwitch
        from pyxsw.mgmt.server import serve
        serve(FakeSwitch(), {path!r})
    """)
    p = subprocess.Popen([sys.executable, "-c", code])

    def rss():
        with open(f"/proc/{p.pid}/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) >> 10

    async def one(done):
        try:
            async with AsyncClient(path) as c:
                await asyncio.gather(c.status(), c.port_stats(), c.fdb_list())
                await asyncio.sleep(0.5)          # still connected as the rest arrive
                done["ok"] += 1
        except RpcError as e:
            assert e.code == "busy"
            done["busy"] += 1
        except OSError:                           # the backlog was full: connect() refused
            done["busy"] += 1

    async def burst(n):
        done = {"ok": 0, "busy": 0}
        await asyncio.gather(*(one(done) for _ in range(n)))
        return done

    try:
        wait_serving(path)
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 4096)), hard))
        base = rss()
        sizes = []
        for _ in range(6):
            done = asyncio.run(burst(2000))
            assert done["ok"] >= 1 and done["ok"] + done["busy"] == 2000
            time.sleep(2)                         # TRIM_DELAY after the burst has gone
            sizes.append(rss())
        print(f"\nRSS {base} MiB at rest, after each burst of 2,000: {sizes}")
        assert max(sizes[2:]) - base < 40, (base, sizes)
    finally:
        p.terminate()
        p.wait(10)


def test_subscriber_that_never_reads_is_disconnected(short_dir, loop_kind):
    """A subscriber that reads nothing costs bounded memory: events that find its queue
    full are dropped and counted, and once its socket has taken nothing for `event_stall`
    seconds it is cut off."""
    fake = FakeSwitch()
    path = str(short_dir / "sw.sock")
    srv, t = start_server(fake, path, loop_kind, event_queue=50, event_stall=1.0)
    try:
        s = raw(path)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.sendall(request(1, "events.subscribe"))
        deadline = time.monotonic() + 5
        while not srv.subscribers and time.monotonic() < deadline:
            time.sleep(0.01)
        assert srv.subscribers
        conn = next(iter(srv.subscribers))
        for i in range(5000):
            fake.emit(event="fdb.learn", mac="02:00:00:00:00:01", vlan=0, port="s0",
                      pad="x" * 1000)
            if i % 500 == 0:
                time.sleep(0.01)
        deadline = time.monotonic() + 5
        while srv.events_dropped < 4000 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert srv.events_dropped >= 4000         # dropped, not buffered without end
        assert len(conn.events) <= 51
        assert conn.writer.transport.get_write_buffer_size() < 1 << 20
        deadline = time.monotonic() + 5
        while srv.subscribers and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not srv.subscribers                # cut off once it stalled
        with Client(path) as c:
            assert c.status()["name"] == "fake"
        s.settimeout(5)
        with pytest.raises((ConnectionResetError, AssertionError)):
            while s.recv(65536):                  # what was sent, then the end
                pass
            raise AssertionError("closed")
        s.close()
    finally:
        srv.request_stop()
        t.join(10)


def test_slow_subscriber_gets_a_gap_event_and_stays(short_dir, loop_kind):
    """A subscriber that falls behind is not cut off: what its queue had no room for is
    dropped, and once it catches up it gets {"event": "events.lost", "count": N} before
    newer events.  Every event is delivered or counted; status shows the drops."""
    fake = FakeSwitch()
    path = str(short_dir / "sw.sock")
    srv, t = start_server(fake, path, loop_kind, event_queue=100)
    try:
        with Client(path) as sub:
            sub.subscribe()
            sub._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            for i in range(3000):                 # it reads none of these yet
                fake.emit(event="fdb.learn", mac="02:00:00:00:00:01", vlan=0, port="s0",
                          n=i, pad="x" * 200)
            deadline = time.monotonic() + 5
            while srv.events_dropped == 0 and time.monotonic() < deadline:
                time.sleep(0.01)
            got, lost, gaps = [], 0, 0
            events = sub.events(timeout=5)
            while len(got) + lost < 3000:
                ev = next(events)
                if ev["event"] == "events.lost":
                    lost += ev["count"]
                    gaps += 1
                else:
                    got.append(ev["n"])
            assert lost > 0 and len(got) + lost == 3000
            assert got == sorted(got)             # in order, with holes
            fake.emit(event="port.down", port="s2")
            ev = next(events)
            assert isinstance(ev.pop("time"), float)
            assert ev == {"event": "port.down", "port": "s2"}
            assert srv.subscribers                # still subscribed
            st = sub.status()
            assert st["events"]["dropped"] == lost and st["events"]["subscribers"] == 1
    finally:
        srv.request_stop()
        t.join(10)


def test_losses_the_switch_reports_reach_subscribers(served):
    """The switch emits events.lost for events its workers' rings had no room for: each
    subscriber gets the count, merged with its own gap if it has one."""
    with Client(served.path) as sub:
        sub.subscribe()
        events = sub.events(timeout=5)
        served.fake.learn("02:00:00:00:00:07", "s0")
        served.fake.emit(event="events.lost", count=7)
        served.fake.learn("02:00:00:00:00:08", "s0")
        got = [next(events) for _ in range(3)]
        assert [e["event"] for e in got] == ["fdb.learn", "events.lost", "fdb.learn"]
        assert isinstance(got[1].pop("time"), float)
        assert got[1] == {"event": "events.lost", "count": 7}
        assert sub.status()["events"]["dropped"] == 0       # not the server's drops


def test_event_flood_keeps_requests_answered_and_subscribers_on(short_dir, loop_kind):
    """A switch thread emitting events as fast as it can (a MAC-move storm) while a
    subscriber reads and another client calls status: the loop's work per turn is bounded,
    so status answers and the subscriber stays; every event is delivered or counted."""
    fake = FakeSwitch()
    path = str(short_dir / "sw.sock")
    srv, t = start_server(fake, path, loop_kind)
    total = 200_000
    try:
        counts = {"got": 0, "lost": 0, "end": False}

        def read():
            with Client(path) as sub:
                sub.subscribe()
                ready.set()
                for ev in sub.events(timeout=30):
                    if ev["event"] == "events.lost":
                        counts["lost"] += ev["count"]
                    elif ev["event"] == "fdb.move":
                        counts["got"] += 1
                    if counts["got"] + counts["lost"] >= total:
                        counts["end"] = True
                        return

        ready = threading.Event()
        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        assert ready.wait(5)

        def storm():
            for i in range(total):
                fake.emit(**{"event": "fdb.move", "mac": "02:00:00:00:00:01", "vlan": 0,
                             "port": "s1", "from": "s0"})

        emitter = threading.Thread(target=storm, daemon=True)
        emitter.start()
        latencies = []
        with Client(path, timeout=30) as c:
            while emitter.is_alive():
                t0 = time.monotonic()
                assert c.status()["name"] == "fake"
                latencies.append(time.monotonic() - t0)
                time.sleep(0.05)
        emitter.join()
        reader.join(60)
        assert counts["end"], counts            # never cut off; nothing unaccounted for
        assert counts["got"] + counts["lost"] == total
        assert max(latencies) < 2.0, sorted(latencies)[-5:]
    finally:
        srv.request_stop()
        t.join(10)


# ---------------------------------------------------------------------------- the socket file

def test_socket_mode_and_parent_dir(short_dir, loop_kind):
    path = short_dir / "new" / "dir" / "sw.sock"
    srv, t = start_server(FakeSwitch(), str(path), loop_kind)
    try:
        assert stat.S_ISSOCK(path.stat().st_mode)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o755
    finally:
        srv.request_stop()
        t.join(10)
    assert not path.exists()


def test_socket_group(short_dir, loop_kind):
    gid = os.getgid()
    path = short_dir / "sw.sock"
    srv, t = start_server(FakeSwitch(), str(path), loop_kind, group=gid)
    try:
        assert stat.S_IMODE(path.stat().st_mode) == 0o660
        assert path.stat().st_gid == gid
    finally:
        srv.request_stop()
        t.join(10)


def test_unknown_group_refuses_to_start(short_dir):
    with pytest.raises(ServerError, match="no such group"):
        asyncio.run(Server(FakeSwitch(), str(short_dir / "sw.sock"),
                           group="no-such-group-pyxsw").start())


def test_stale_socket_is_replaced(short_dir, loop_kind):
    path = str(short_dir / "sw.sock")
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(path)                               # a file with nobody listening behind it
    dead.close()
    assert os.path.exists(path)
    srv, t = start_server(FakeSwitch(), path, loop_kind)
    try:
        with Client(path) as c:
            assert c.status()["name"] == "fake"
    finally:
        srv.request_stop()
        t.join(10)


def test_second_instance_refuses_while_first_lives(served):
    async def second():
        await Server(FakeSwitch(), served.path).start()

    with pytest.raises(ServerError, match="another pyxsw"):
        run_async(served.kind, second())
    with Client(served.path) as c:                # the first one is untouched
        assert c.status()["name"] == "fake"


def test_path_that_is_not_a_socket_is_left_alone(short_dir):
    path = short_dir / "sw.sock"
    path.write_text("precious")
    with pytest.raises(ServerError, match="not a socket"):
        asyncio.run(Server(FakeSwitch(), str(path)).start())
    assert path.read_text() == "precious"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_serve_stops_on_signal(short_dir, loop_kind, sig):
    path = short_dir / "sw.sock"
    code = textwrap.dedent(f"""
        import sys
        sys.path[:0] = [{str(ROOT)!r}, {str(Path(__file__).parent)!r}]
        import signal
        from test_mgmt_unit import FakeSwitch
        from pyxsw.mgmt.server import serve
        def mine(*_):
            pass
        signal.signal({int(sig)}, mine)
        serve(FakeSwitch(), {str(path)!r}, use_uvloop={loop_kind == "uvloop"})
        # the caller's handler is back: a second signal cannot kill it while it cleans up
        assert signal.getsignal({int(sig)}) is mine
        print("stopped cleanly")
    """)
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        wait_serving(str(path))
        with Client(str(path)) as c:
            assert c.status()["name"] == "fake"
        p.send_signal(sig)
        out, err = p.communicate(timeout=10)
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate()
    assert p.returncode == 0, err
    assert "stopped cleanly" in out
    assert not path.exists()


def test_serve_until_shutdown_rpc(short_dir, loop_kind):
    path = str(short_dir / "sw.sock")
    t = threading.Thread(target=serve, args=(FakeSwitch(), path),
                         kwargs={"use_uvloop": loop_kind == "uvloop"})
    t.start()
    wait_serving(path)
    assert ctl_main(["-s", path, "shutdown"]) == 0
    t.join(5)
    assert not t.is_alive() and not os.path.exists(path)


def test_bind_first_then_serve(short_dir, loop_kind):
    """What `pyxsw run` does: claim the socket, start the switch (slow), then serve."""
    path = str(short_dir / "sw.sock")
    first = Server(FakeSwitch(), path)
    first.bind()
    with pytest.raises(ServerError, match="another pyxsw"):
        Server(FakeSwitch(), path).bind()        # the first is still starting: not stale
    first.release()
    assert not os.path.exists(path)

    srv = Server(FakeSwitch(), path)
    srv.bind()
    early = Client(path)                          # connects at once, answered once served
    t = threading.Thread(target=srv.run, kwargs={"use_uvloop": loop_kind == "uvloop"})
    t.start()
    try:
        assert early.status()["name"] == "fake"
    finally:
        early.close()
        srv.request_stop()
        t.join(10)
    assert not os.path.exists(path)


def test_request_stop_before_start_is_honoured(short_dir):
    srv = Server(FakeSwitch(), str(short_dir / "sw.sock"))
    srv.request_stop()
    srv.run(use_uvloop=False)                     # returns at once


# ---------------------------------------------------------------------------- pyxsw ctl

def ctl(served, capsys, *words, json_out=False):
    argv = ["-s", served.path] + (["--json"] if json_out else []) + list(words)
    code = ctl_main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_ctl_every_command(served, capsys):
    fake = served.fake
    fake.learn("02:00:00:00:00:0a", "s0")
    assert ctl(served, capsys, "status")[0] == 0
    code, out, _ = ctl(served, capsys, "status")
    assert "name: fake" in out and "mode: poll" in out
    code, out, _ = ctl(served, capsys, "port", "list")
    assert code == 0 and out.split("\n")[0].split() == ["port", "index", "up", "state",
                                                        "vlan_mode", "vlans", "native",
                                                        "fastpath", "reason"]
    assert out.split("\n")[1].split() == ["s0", "0", "yes", "up", "access", "1", "-", "off"]
    assert ctl(served, capsys, "port", "add", "eth4")[1] == "port eth4 added (index 3, up)\n"
    assert ctl(served, capsys, "port", "add", "ip4")[1] == \
        "port ip4 added (index 4, up)\nwarning: ip4 has IP addresses (10.9.0.1/24)\n"
    assert ctl(served, capsys, "port", "del", "ip4")[0] == 0
    assert "eth4" in fake.ports
    code, out, _ = ctl(served, capsys, "port", "stats")
    assert code == 0 and "rx_packets" in out and "eth4" in out
    code, out, _ = ctl(served, capsys, "port", "stats", "s1")
    assert code == 0 and "prog_seen" in out and "s0" not in out
    assert ctl(served, capsys, "port", "del", "eth4")[1] == "port eth4 removed\n"
    assert ctl(served, capsys, "port", "set", "s1", "--trunk", "1,5")[1] == \
        "port s1: trunk allowed 1,5 native 1 (flushed 0 entries)\n"
    assert ctl(served, capsys, "fdb", "add", "02:00:00:00:00:09", "s1", "--vlan", "5")[1] == \
        "02:00:00:00:00:09 vlan 5 -> s1 (static)\n"
    code, out, _ = ctl(served, capsys, "vlan", "show")
    assert code == 0 and out.splitlines() == ["vlan  untagged  tagged  fdb",
                                              "   1  s0,s1,s2  -         1",
                                              "   5  -         s1        1"]
    code, out, _ = ctl(served, capsys, "fdb", "show")
    lines = out.splitlines()
    assert lines[0].split() == ["mac", "vlan", "port", "age", "type"]
    assert lines[-1] == "2 entries" and "static" in out and "learned" in out
    code, out, _ = ctl(served, capsys, "fdb", "show", "--port", "s1", "--vlan", "5")
    assert out.splitlines()[-1] == "1 entry"
    assert ctl(served, capsys, "fdb", "del", "02:00:00:00:00:09", "--vlan", "5")[0] == 0
    assert ctl(served, capsys, "fdb", "flush", "--port", "s0")[1] == "flushed 1 entry\n"
    assert ctl(served, capsys, "fdb", "flush")[1] == "flushed 0 entries\n"
    assert ctl(served, capsys, "mode", "interrupt")[1] == "mode interrupt\n"
    assert fake.mode == "interrupt"
    assert ctl(served, capsys, "aging", "60")[1] == "aging 60 s\n"
    assert ctl(served, capsys, "aging", "0")[1] == "aging off\n"
    assert ctl(served, capsys, "shutdown")[1] == "switch shutting down\n"
    served.thread.join(5)
    assert not served.thread.is_alive()


def test_ctl_json(served, capsys):
    served.fake.learn("02:00:00:00:00:0a", "s2")
    code, out, _ = ctl(served, capsys, "fdb", "show", json_out=True)
    assert code == 0 and json.loads(out) == [{"mac": "02:00:00:00:00:0a", "vlan": 1,
                                             "port": "s2", "age": 3, "static": False}]
    assert json.loads(ctl(served, capsys, "port", "list", json_out=True)[1])[0]["name"] == "s0"
    assert sorted(json.loads(ctl(served, capsys, "port", "stats", json_out=True)[1])) == \
        ["s0", "s1", "s2"]
    assert json.loads(ctl(served, capsys, "status", json_out=True)[1])["name"] == "fake"
    # options after the command words work too
    code, out, _ = ctl(served, capsys, "mode", "poll", "--json")
    assert json.loads(out) == {"mode": "poll"}


def test_ctl_errors(served, capsys):
    code, out, err = ctl(served, capsys, "port", "del", "s9")
    assert code == 1 and out == "" and "not_found" in err and "s9" in err
    code, _, err = ctl(served, capsys, "fdb", "add", "zz:00:00:00:00:01", "s0")
    assert code == 2 and "not a MAC address" in err     # checked here: nothing sent
    assert ctl(served, capsys, "mode", "turbo")[0] == 2
    assert ctl(served, capsys, "aging", "-5")[0] == 2
    assert ctl(served, capsys, "fdb", "show", "--vlan", "5000")[0] == 2
    assert ctl(served, capsys, "frobnicate")[0] == 2
    assert ctl_main([]) == 2


def test_ctl_without_a_switch(short_dir, capsys):
    path = str(short_dir / "sw.sock")
    assert ctl_main(["-s", path, "status"]) == 3
    err = capsys.readouterr().err
    assert path in err and "no such socket" in err
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(path)
    dead.close()
    assert ctl_main(["-s", path, "port", "list"]) == 3
    assert "refused" in capsys.readouterr().err


def test_ctl_events(served, capsys):
    def feed():
        while not served.server.subscribers:
            time.sleep(0.01)
        served.fake.learn("02:00:00:00:00:0c", "s1")
        served.fake.emit(event="port.down", port="s1")
        served.server.request_stop()             # ends the stream

    t = threading.Thread(target=feed)
    t.start()
    code = ctl_main(["-s", served.path, "events"])
    t.join()
    out = capsys.readouterr().out.splitlines()
    assert code == 0
    # each line starts with the date and time the switch stamped the event with
    assert all(re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} ", line) for line in out)
    assert out[0].split()[2:] == ["fdb.learn", "mac=02:00:00:00:00:0c", "vlan=1", "port=s1"]
    assert out[1].split()[2:] == ["port.down", "port=s1"]


def test_error_messages_stay_short(served):
    # a megabyte of bad argument must not come back as a megabyte of error message
    with Client(served.path) as c:
        for kw in ({"name": "x" * 500_000}, {"name": "s0", "y" * 500_000: 1}):
            with pytest.raises(RpcError) as e:
                c.call("port.add", **kw)
            assert e.value.code == "invalid_params" and len(e.value.message) < 400
        with pytest.raises(RpcError) as e:
            c.call("z" * 500_000)
        assert e.value.code == "method_not_found" and len(e.value.message) < 400


def test_client_that_never_reads_replies_is_held_back_not_buffered(short_dir, loop_kind):
    """Requests from a client that does not read are answered at the pace it reads: the
    server stops reading from it once its replies back up, so nothing grows without end,
    and everyone else is served meanwhile."""
    fake = FakeSwitch()
    path = str(short_dir / "sw.sock")
    srv, t = start_server(fake, path, loop_kind)
    try:
        s = raw(path)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.setblocking(False)
        sent = 0
        batch = b"".join(request(i, "status") for i in range(100))
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:          # until the server stops taking more
            try:
                sent += s.send(batch)
            except BlockingIOError:
                time.sleep(0.05)
                try:
                    sent += s.send(batch)
                except BlockingIOError:
                    break
        assert sent < 64 * 1024 * 1024              # held back: not swallowed whole
        buffered = [c.writer.transport.get_write_buffer_size() for c in list(srv._conns)]
        assert buffered and max(buffered) < 4 * 1024 * 1024
        with Client(path) as c:
            t0 = time.monotonic()
            assert c.status()["name"] == "fake"
            assert time.monotonic() - t0 < 1.0
        s.close()
    finally:
        srv.request_stop()
        t.join(10)


def test_client_that_disconnects_mid_request(short_dir, loop_kind):
    fake = FakeSwitch()
    fake.delay = 0.3
    path = str(short_dir / "sw.sock")
    srv, t = start_server(fake, path, loop_kind)
    try:
        half = request(1, "status")
        s = raw(path)
        s.sendall(half[: len(half) // 2])           # half a message, then gone
        s.close()
        s = raw(path)
        s.sendall(request(2, "port.add", {"name": "eth9"}))  # a slow call, then gone
        s.close()
        deadline = time.monotonic() + 5
        while "eth9" not in fake.ports and time.monotonic() < deadline:
            time.sleep(0.02)
        assert "eth9" in fake.ports                 # the call still completed
        with Client(path) as c:
            assert c.status()["name"] == "fake"
        deadline = time.monotonic() + 5
        while len(srv._conns) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(srv._conns) == 0                 # nothing left of the departed clients
    finally:
        srv.request_stop()
        t.join(10)


# ---------------------------------------------------------------------------- VLANs (issue 13)

def test_port_set_changes_a_ports_vlans_and_flushes_what_it_no_longer_carries(served):
    fake = served.fake
    with Client(served.path) as c:
        r = c.port_set("s1", "trunk", allowed=[10, "20-22"])
        # native: 1 when allowed carries 1, else none
        assert r == {"port": "s1", "vlan_mode": "trunk", "vlan": None,
                     "allowed": [10, 20, 21, 22], "native": 0, "flushed": 0}
        fake.learn("02:00:00:00:00:0a", "s1", vlan=10)
        fake.learn("02:00:00:00:00:0b", "s1", vlan=21)
        fake.learn("02:00:00:00:00:0c", "s1", vlan=22)
        fake.learn("02:00:00:00:00:0d", "s0", vlan=22)            # another port's: stays
        c.fdb_add("02:00:00:00:00:0e", "s1", vlan=20)             # static: stays
        events = []
        fake.add_listener(events.append)
        r = c.port_set("s1", "trunk", allowed="10,20", native=10)
        assert r["flushed"] == 2 and r["native"] == 10 and r["allowed"] == [10, 20]
        fake.remove_listener(events.append)
        assert untimed(events) == [{"event": "fdb.flush", "port": "s1", "count": 2}]
        assert sorted((e["mac"][-2:], e["vlan"]) for e in c.fdb_list(port="s1")) == \
            [("0a", 10), ("0e", 20)]
        assert [e["vlan"] for e in c.fdb_list(port="s0")] == [22]
        assert c.port_set("s1", vlan=20) == {"port": "s1", "vlan_mode": "access", "vlan": 20,
                                             "allowed": None, "native": None, "flushed": 1}
        p = next(p for p in c.port_list() if p["name"] == "s1")
        assert (p["vlan_mode"], p["vlan"], p["allowed"], p["native"]) == ("access", 20, None, None)
        assert c.port_set("s2", "trunk") == {"port": "s2", "vlan_mode": "trunk", "vlan": None,
                                             "allowed": None, "native": 1, "flushed": 0}


@pytest.mark.parametrize("kw,says", [
    ({}, "nothing to set"),
    ({"vlan": 0}, "vlan must be an integer 1..4094, got 0"),
    ({"vlan": 4095}, "vlan must be an integer 1..4094, got 4095"),
    ({"vlan_mode": "hybrid"}, "vlan_mode must be one of access, trunk"),
    ({"vlan": 10, "allowed": [10]}, "allowed is for trunk ports only"),
    ({"vlan_mode": "access", "native": 1}, "native is for trunk ports only"),
    ({"vlan_mode": "trunk", "vlan": 10}, "vlan is for access ports only"),
    ({"vlan_mode": "trunk", "allowed": [10, 20], "native": 1},
     "native 1 is not one of the trunk's allowed VLANs (10,20)"),
    ({"vlan_mode": "trunk", "allowed": [0]}, "allowed must be an integer 1..4094"),
    ({"vlan_mode": "trunk", "allowed": []}, "must name at least one VLAN"),
    ({"vlan_mode": "trunk", "allowed": 10}, "allowed must be a list of VLANs"),
    ({"vlan_mode": "trunk", "native": -1}, "native must be an integer 0..4094"),
])
def test_port_set_refuses_bad_values_and_changes_nothing(served, kw, says):
    with Client(served.path) as c:
        with pytest.raises(RpcError) as e:
            c.call("port.set", port="s1", **kw)
        assert e.value.code == "invalid_params" and says in e.value.message, e.value
        assert served.fake.ports["s1"].vlans == ("access", 1, None, 0)
        assert error_code(c, "port.set", port="s9", vlan=10) == "not_found"


def test_port_add_takes_the_vlan_keys(served):
    with Client(served.path) as c:
        r = c.port_add("eth3", "trunk", allowed="100-102", native=101)
        assert (r["vlan_mode"], r["allowed"], r["native"]) == ("trunk", [100, 101, 102], 101)
        assert served.fake.ports["eth3"].vlans.carries(102)
        assert error_code(c, "port.add", name="eth4", vlan=10, native=3) == "invalid_params"
        assert "eth4" not in served.fake.ports
        # attached anew with no keys: it keeps its settings
        served.fake.ports["eth3"].state = "gone"
        assert c.port_add("eth3")["allowed"] == [100, 101, 102]


def test_fdb_add_is_refused_in_a_vlan_the_port_does_not_carry(served):
    with Client(served.path) as c:
        c.port_set("s1", vlan=10)
        c.port_set("s2", "trunk", allowed=[20, 30], native=0)
        with pytest.raises(RpcError) as e:
            c.fdb_add("02:00:00:00:00:01", "s1", vlan=20)
        assert e.value.code == "invalid_params"
        assert e.value.message == "port s1 does not carry vlan 20 (access vlan 10)"
        with pytest.raises(RpcError) as e:
            c.fdb_add("02:00:00:00:00:01", "s2", vlan=10)
        assert e.value.message == \
            "port s2 does not carry vlan 10 (trunk allowed 20,30 native 0 (none))"
        with pytest.raises(RpcError) as e:                       # no vlan, no native
            c.fdb_add("02:00:00:00:00:01", "s2")
        assert "a trunk without a native VLAN" in e.value.message
        assert c.fdb_list() == []                                # nothing was added
        assert c.fdb_add("02:00:00:00:00:01", "s1")["vlan"] == 10
        assert c.fdb_add("02:00:00:00:00:01", "s2", vlan=30)["vlan"] == 30
        assert [(e["port"], e["vlan"]) for e in c.fdb_list()] == [("s1", 10), ("s2", 30)]
        # without a vlan, fdb.del removes the MAC from every VLAN
        assert c.fdb_del("02:00:00:00:00:01") == {"mac": "02:00:00:00:00:01", "vlan": None,
                                                  "removed": 2}
        assert error_code(c, "fdb.del", mac="02:00:00:00:00:01") == "not_found"


def test_fdb_flush_by_vlan_and_port(served):
    fake = served.fake
    with Client(served.path) as c:
        for port in ("s0", "s1"):
            c.port_set(port, "trunk", allowed=[10, 20])
        for i, (port, vlan) in enumerate([("s0", 10), ("s0", 20), ("s1", 10), ("s1", 20)]):
            fake.learn(f"02:00:00:00:00:0{i}", port, vlan=vlan)
        c.fdb_add("02:00:00:00:00:09", "s0", vlan=10)             # static: stays
        events = []
        fake.add_listener(events.append)
        assert c.fdb_flush(port="s1", vlan=10) == {"flushed": 1}
        fake.remove_listener(events.append)
        assert untimed(events) == [{"event": "fdb.flush", "port": "s1", "count": 1, "vlan": 10}]
        assert sorted((e["port"], e["vlan"]) for e in c.fdb_list()) == \
            [("s0", 10), ("s0", 10), ("s0", 20), ("s1", 20)]
        assert c.fdb_flush(vlan=10) == {"flushed": 1}
        assert sorted((e["port"], e["vlan"], e["static"]) for e in c.fdb_list()) == \
            [("s0", 10, True), ("s0", 20, False), ("s1", 20, False)]
        assert error_code(c, "fdb.flush", vlan=4096) == "invalid_params"


def test_vlan_list(served):
    fake = served.fake
    with Client(served.path) as c:
        c.port_set("s0", vlan=10)
        c.port_set("s1", "trunk", allowed="10,20", native=20)
        c.port_set("s2", "trunk")                                 # every VLAN, native 1
        fake.learn("02:00:00:00:00:01", "s0")                     # vlan 10
        fake.learn("02:00:00:00:00:02", "s1")                     # its native: 20
        fake.learn("02:00:00:00:00:03", "s2", vlan=300)
        assert c.vlan_list() == [
            {"vlan": 1, "untagged": ["s2"], "tagged": [], "fdb": 0},
            {"vlan": 10, "untagged": ["s0"], "tagged": ["s1", "s2"], "fdb": 1},
            {"vlan": 20, "untagged": ["s1"], "tagged": ["s2"], "fdb": 1},
            {"vlan": 300, "untagged": [], "tagged": ["s2"], "fdb": 1}]
        # one VLAN, in use or not
        assert c.vlan_list(vlan=999) == [{"vlan": 999, "untagged": [], "tagged": ["s2"],
                                          "fdb": 0}]
        assert c.vlan_list(vlan=20)[0]["fdb"] == 1


def test_ctl_port_set_vlan_show_and_fdb_flush_vlan(served, capsys):
    fake = served.fake
    code, out, _ = ctl(served, capsys, "port", "set", "s0", "--access", "10")
    assert (code, out) == (0, "port s0: access vlan 10 (flushed 0 entries)\n")
    assert fake.ports["s0"].vlans == ("access", 10, None, 0)
    code, out, _ = ctl(served, capsys, "port", "set", "s1", "--trunk", "10,20-22,30",
                       "--native", "0")
    assert out == "port s1: trunk allowed 10,20-22,30 native 0 (none) (flushed 0 entries)\n"
    assert fake.ports["s1"].vlans == ("trunk", 0, (10, 20, 21, 22, 30), 0)
    code, out, _ = ctl(served, capsys, "port", "set", "s2", "--trunk", "all", "--json")
    assert json.loads(out) == {"port": "s2", "vlan_mode": "trunk", "vlan": None,
                               "allowed": None, "native": 1, "flushed": 0}
    code, out, _ = ctl(served, capsys, "port", "list")
    rows = [line.split() for line in out.splitlines()[1:]]
    assert rows == [["s0", "0", "yes", "up", "access", "10", "-", "off"],
                    ["s1", "1", "yes", "up", "trunk", "10,20-22,30", "none", "off"],
                    ["s2", "2", "yes", "up", "trunk", "all", "1", "off"]]
    fake.learn("02:00:00:00:00:01", "s0")
    fake.learn("02:00:00:00:00:02", "s1", vlan=21)
    fake.learn("02:00:00:00:00:03", "s2", vlan=21)
    code, out, _ = ctl(served, capsys, "vlan", "show")
    assert code == 0 and out.splitlines() == [
        "vlan  untagged  tagged  fdb",
        "   1  s2        -         0",
        "  10  s0        s1,s2     1",
        "  20  -         s1,s2     0",
        "  21  -         s1,s2     2",
        "  22  -         s1,s2     0",
        "  30  -         s1,s2     0"]
    assert ctl(served, capsys, "vlan", "show", "21", "--json")[1].count('"vlan": 21') == 1
    assert ctl(served, capsys, "fdb", "flush", "--vlan", "21", "--port", "s2")[1] == \
        "flushed 1 entry\n"
    assert ctl(served, capsys, "fdb", "flush", "--vlan", "21")[1] == "flushed 1 entry\n"
    assert [e["vlan"] for e in fake.fdb_list()] == [10]
    # refused by the switch (exit 1): the port does not carry the VLAN
    code, out, err = ctl(served, capsys, "fdb", "add", "02:00:00:00:00:09", "s0", "--vlan", "20")
    assert (code, out) == (1, "") and \
        err == "pyxsw ctl: invalid_params: port s0 does not carry vlan 20 (access vlan 10)\n"
    # moving s0 to VLAN 20 flushes its entry in 10
    assert ctl(served, capsys, "port", "set", "s0", "--access", "20")[1] == \
        "port s0: access vlan 20 (flushed 1 entry)\n"
    code, out, _ = ctl(served, capsys, "port", "add", "eth5", "--trunk", "7", "--native", "7")
    assert code == 0 and fake.ports["eth5"].vlans == ("trunk", 0, (7,), 7)
    assert ctl(served, capsys, "fdb", "add", "02:00:00:00:00:09", "eth5")[1] == \
        "02:00:00:00:00:09 vlan 7 -> eth5 (static)\n"
    assert ctl(served, capsys, "fdb", "del", "02:00:00:00:00:09")[1] == \
        "02:00:00:00:00:09 removed from 1 VLAN\n"
