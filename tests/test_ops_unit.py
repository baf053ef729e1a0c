"""Capture and mirrors without a switch (issue 16): the pcap format, what the datapath is
told (taps.ops_table), the mirror rules, a capture's filter and count, the stream's bounds,
and `pyxsw ctl capture` and `mirror` against the fake switch served in-process."""
import os
import struct
import subprocess
import threading
import time

import pytest

from test_mgmt_unit import FakeSwitch, served, start_server  # noqa: F401 (fixture)

from pyxsw import pcap, taps, vocab
from pyxsw.client import Client, RpcError
from pyxsw.mgmt import capture as mcapture
from pyxsw.mgmt.ctl import ctl_main
from pyxsw.mgmt.handlers import METHODS

@pytest.fixture(autouse=True)
def keep_affinity():
    """ctl capture moves its process off the switch's worker cores: in-process, put the
    test process back."""
    cpus, nice = os.sched_getaffinity(0), os.getpriority(os.PRIO_PROCESS, 0)
    yield
    os.sched_setaffinity(0, cpus)
    os.setpriority(os.PRIO_PROCESS, 0, nice)


FRAME = bytes.fromhex("020000000002" "020000000001" "0800") + bytes(range(46))


# ---------------------------------------------------------------------------- pcap

def test_pcap_round_trip_and_what_tcpdump_reads(tmp_path):
    t0 = 1_764_000_000_123_456_789
    blob = pcap.header(1500) + pcap.record(t0, 60, FRAME) + pcap.record(t0 + 1000, 200, FRAME[:20])
    assert struct.unpack("=I", blob[:4])[0] == 0xA1B23C4D
    linktype, frames = pcap.read(blob)
    assert linktype == 1
    assert frames == [(t0, 60, FRAME), (t0 + 1000, 200, FRAME[:20])]
    f = tmp_path / "x.pcap"
    f.write_bytes(blob)
    r = subprocess.run(["tcpdump", "-nn", "-e", "--time-stamp-precision=nano", "-tt", "-r",
                        str(f)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) == 2 and lines[0].startswith("1764000000.123456789 02:00:00:00:00:01 > "
                                                   "02:00:00:00:00:02")
    for bad in (b"", b"\0" * 24, blob[:-3]):
        with pytest.raises(ValueError):
            pcap.read(bad)


# ---------------------------------------------------------------------------- what the datapath is told

def test_ops_table():
    idx = {"s0": 0, "s1": 1, "s2": 2, "s3": 5}
    caps = [taps.Capture("s0", "in", 100, 0, None, 0), taps.Capture("s0", "out", 60, 0, None, 0),
            taps.Capture("gone", "both", 9000, 0, None, 0)]
    mirrors = [taps.Mirror("a", ("s0", "s1"), "in", "s3"), taps.Mirror("b", ("s1",), "out", "s2"),
               taps.Mirror("c", ("s0",), "both", "nowhere")]
    ops, snap = taps.ops_table(idx, caps, mirrors)
    assert snap == 100                  # the port that is gone captures nothing
    assert ops == {0: ({"in", "out"}, {5}, set(), False), 1: (set(), {5}, {2}, False),
                   5: (set(), set(), set(), True), 2: (set(), set(), set(), True)}
    assert taps.ops_table(idx, [], []) == ({}, 0)


def test_mirror_rules():
    ms = {"a": taps.Mirror("a", ("s0",), "both", "s9")}
    for m, key in [(taps.Mirror("a", ("s1",), "in", "s8"), "name"),
                   (taps.Mirror("b", ("s1", "s2"), "in", "s2"), "output"),
                   (taps.Mirror("b", ("s1",), "in", "s0"), "output"),
                   (taps.Mirror("b", ("s9",), "in", "s8"), "source")]:
        with pytest.raises(vocab.Invalid) as e:
            taps.check_mirror(m, ms)
        assert e.value.key == key
    taps.check_mirror(taps.Mirror("b", ("s0", "s1"), "in", "s9"), ms)   # two to one output


def test_a_capture_takes_its_port_and_direction_and_stops_at_its_count():
    got = []
    c = taps.Capture("s0", "in", 4, 3, lambda frames, end: got.append((frames, end)), 5)
    frames = [(1, "s0", "in", 60, FRAME), (2, "s1", "in", 60, FRAME), (3, "s0", "out", 60, FRAME),
              (4, "s0", "in", 60, FRAME)]
    assert not c.offer(frames)
    assert got == [([(1, "s0", "in", 60, FRAME[:4]), (4, "s0", "in", 60, FRAME[:4])], None)]
    assert c.offer(frames)                          # the third: its count
    assert got[-1] == ([(1, "s0", "in", 60, FRAME[:4])], None)
    assert c.result(9) == {"captured": 3, "lost": 4}


def test_the_stream_drops_and_counts_what_has_no_room(monkeypatch):
    class Writer:
        def __init__(self):
            self.data, self.buffered = [], 0
            self.transport = self

        def is_closing(self):
            return False

        def get_write_buffer_size(self):
            return self.buffered

        def write(self, b):
            self.data.append(b)

    async def main():
        conn = type("Conn", (), {"writer": Writer(), "switch": None,
                                 "server": type("Server", (), {"_conns": ()})()})()
        s = mcapture.CaptureStream(conn)
        s.id = 7
        monkeypatch.setattr(mcapture, "CAPTURE_INBOX", 100)
        s.sink([(i, "s0", "in", 60, FRAME) for i in range(150)], None)   # 50 find no room
        assert s.dropped == 50
        s._deliver()
        assert len(conn.writer.data) == 2           # 100 frames in chunks of 64
        conn.writer.buffered = mcapture.CAPTURE_BUFFER + 1                # a client that reads nothing
        s.sink([(i, "s0", "in", 60, FRAME) for i in range(10)], {"captured": 110, "lost": 3})
        s._deliver()
        assert s.dropped == 60 and s.ended
        import msgpack
        end = msgpack.unpackb(conn.writer.data[-1])
        assert end == [2, "capture.end", [{"id": 7, "captured": 50, "lost": 63}]]
    import asyncio
    asyncio.run(main())


# ---------------------------------------------------------------------------- ctl, against the fake

def _feed(fake, port, frames, every=0.05):
    """Once a capture runs, hand it frames (time ns, direction, bytes) from a thread."""
    def go():
        deadline = time.monotonic() + 10
        while not fake.captures and time.monotonic() < deadline:
            time.sleep(0.01)
        for t, d, data in frames:
            time.sleep(every)
            fake.frame(port, d, data, when_ns=t)
    th = threading.Thread(target=go, daemon=True)
    th.start()
    return th


def test_ctl_capture_writes_pcap_and_says_how_many(served, tmp_path, capsys):  # noqa: F811
    out = tmp_path / "c.pcap"
    t0 = 1_764_000_000_000_000_000
    th = _feed(served.fake, "s1", [(t0 + i, d, FRAME) for i, d in
                                   enumerate(["in", "out", "in", "out"])])
    code = ctl_main(["-s", served.path, "capture", "s1", "--direction", "in", "-c", "2",
                     "--snaplen", "14", "-w", str(out)])
    th.join(10)
    o, err = capsys.readouterr()
    assert code == 0 and o == "" and err == "2 frames captured, 0 lost\n", err
    linktype, frames = pcap.read(out.read_bytes())
    assert frames == [(t0, 60, FRAME[:14]), (t0 + 2, 60, FRAME[:14])]
    assert served.fake.captures == {}


def test_ctl_capture_lines_and_its_usage_errors(served, capsys):  # noqa: F811
    th = _feed(served.fake, "s0", [(1_764_000_000_000_000_000, "out", FRAME)])
    code = ctl_main(["-s", served.path, "capture", "s0", "-c", "1"])
    th.join(10)
    o, err = capsys.readouterr()
    assert code == 0, err
    assert "s0 out 02:00:00:00:00:01 > 02:00:00:00:00:02 ethertype 0x0800, length 60" in o
    for words, says in [(["capture", "s0", "--direction", "up"], "invalid choice"),
                        (["capture", "s0", "--snaplen", "0"], "snaplen must be"),
                        (["capture", "s0", "-c", "-1"], "count must be"),
                        (["capture", "bad/name"], "not a valid port")]:
        code = ctl_main(["-s", served.path, *words])
        o, err = capsys.readouterr()
        assert code == 2 and says in err, (words, err)
    code = ctl_main(["-s", served.path, "capture", "nosuch0"])
    assert code == 1 and "not_found" in capsys.readouterr().err


def test_ctl_mirror_commands(served, capsys):  # noqa: F811
    def ctl(*words):
        code = ctl_main(["-s", served.path, *words])
        o, err = capsys.readouterr()
        return code, o, err
    assert ctl("mirror", "list")[1] == "no mirrors\n"
    code, o, _ = ctl("mirror", "add", "m0", "--source", "s0,s1", "--output", "s2",
                     "--direction", "in")
    assert code == 0 and o == "mirror m0: s0,s1 (in) to s2\n"
    code, o, _ = ctl("mirror", "list")
    assert "m0" in o and "s0,s1" in o and "s2" in o
    code, _, err = ctl("mirror", "add", "m1", "--source", "s2", "--output", "s0")
    assert code == 1 and "its output s0 is a source of mirror m0" in err
    code, _, err = ctl("mirror", "add", "m 1", "--source", "s0", "--output", "s2")
    assert code == 2 and "name must be" in err
    assert ctl("mirror", "add", "m2", "--source", "s1", "--output", "s2")[0] == 0
    assert ctl("mirror", "del", "m2")[1] == "mirror m2 removed; s2 is still another mirror's output\n"
    assert ctl("mirror", "del", "m0")[1] == "mirror m0 removed; s2 forwards again\n"
    code, _, err = ctl("mirror", "del", "m0")
    assert code == 1 and "not_found" in err


def test_capture_methods_are_described():
    fn = METHODS["capture.start"]
    assert [p.name for p in fn.rpc_params] == ["port", "direction", "snaplen", "count"]
    assert fn.rpc_params[2].default == taps.DEFAULT_SNAPLEN == vocab.MAX_SNAPLEN


# ---------------------------------------------------------------------------- reload and save

def _conf(mirrors=(), listen=None):
    from pyxsw.config import Config
    return Config.from_dict({"switch": {"name": "t", "cores": [1]},
                             "management": {"socket": "/tmp/t.sock"},
                             **({"metrics": {"listen": listen}} if listen else {}),
                             "port": [{"name": n} for n in ("s0", "s1", "s2", "s3")],
                             "mirror": list(mirrors)})


def test_a_reload_plans_mirrors_and_the_metrics_listener():
    from pyxsw import reload
    from pyxsw.config import Config
    a = {"name": "a", "source": ["s0"], "output": "s3"}
    b = {"name": "b", "source": ["s1"], "output": "s2", "direction": "in"}
    old = _conf([a, b])
    new = _conf([dict(a, source=["s0", "s1"]), {"name": "c", "source": ["s0"], "output": "s2"}],
                listen="127.0.0.1:9477")
    p = reload.plan(old, new)
    assert p.restart == []
    assert [c.call for c in p.changes] == [
        ("mirror_del", ("a",), {}), ("mirror_del", ("b",), {}),               # removals first
        ("set_metrics_listen", ("127.0.0.1:9477",), {}),
        ("mirror_add", ("a", ("s0", "s1"), "both", "s3"), {}),                # after the ports
        ("mirror_add", ("c", ("s0",), "both", "s2"), {})]
    assert "metrics: off -> 127.0.0.1:9477" in [c.text for c in p.changes]
    assert not reload.plan(new, new)
    # save: what a running switch says is a file that loads back equal
    assert Config.from_dict(new.to_dict()) == new
    assert new.to_dict()["mirror"][0] == {"name": "a", "source": ["s0", "s1"],
                                          "direction": "both", "output": "s3"}


def test_every_method_that_changes_the_switch_is_audited():
    """Logged with the client's uid and sent as a "mgmt" event (issue 16): every method but
    those that only read."""
    reads = {"status", "port.list", "port.stats", "fdb.list", "events.subscribe", "methods",
             "worker.stats", "vlan.list", "mirror.list", "capture.stop", "config.save"}
    assert {n for n, fn in METHODS.items() if not fn.rpc_changes} == reads


def test_a_reload_changes_the_log_level_of_pyxsws_logging_only():
    import io
    import logging
    from pyxsw import logs, reload
    from pyxsw.config import Config
    old = _conf()
    new = Config.from_dict(dict(old.to_dict(), log={"level": "warning", "format": "json"}))
    assert [c.call for c in reload.plan(old, new).changes] == [
        ("set_log", ("warning", "json"), {})]
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        for h in [h for h in root.handlers if getattr(h, "_pyxsw", False)]:
            root.removeHandler(h)
        with pytest.raises(ValueError):             # an embedding program's logging
            logs.reconfigure("warning", "json")
        out = io.StringIO()
        logs.setup("info", "text", out)
        logs.reconfigure("warning", "json", )
        logging.getLogger("pyxsw").info("not shown")
        logging.getLogger("pyxsw").warning("shown")
        assert out.getvalue().count("\n") == 1 and '"shown"' in out.getvalue()
    finally:
        for h in [h for h in root.handlers if getattr(h, "_pyxsw", False)]:
            root.removeHandler(h)
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])


def test_ctl_capture_runs_off_the_workers_cores(served, tmp_path):  # noqa: F811
    """The fake switch's worker is on core 1: a capture's client leaves it (when the
    machine has another core), so that streaming frames never takes a worker's time, and
    runs at nice 19."""
    import sys
    if os.sched_getaffinity(0) - {1} == set() or 1 not in os.sched_getaffinity(0):
        pytest.fail("this test needs core 1 and another core")
    p = subprocess.Popen([sys.executable, "-m", "pyxsw", "ctl", "-s", served.path, "capture",
                          "s0", "-w", str(tmp_path / "x.pcap")], stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 10
        while not served.fake.captures and time.monotonic() < deadline:
            time.sleep(0.05)
        assert served.fake.captures, "the capture did not start"
        allowed = os.sched_getaffinity(p.pid)
        assert 1 not in allowed and allowed == os.sched_getaffinity(0) - {1}
        assert os.getpriority(os.PRIO_PROCESS, p.pid) == 19      # and yields to the rest
    finally:
        p.send_signal(2)
        _, err = p.communicate(timeout=10)
    assert p.returncode == 0 and b"0 frames captured, 0 lost" in err


def test_ctl_capture_refuses_pcap_to_a_terminal_and_a_file_it_cannot_write(served, capsys):  # noqa: F811
    import pty
    import sys
    master, slave = pty.openpty()
    try:
        p = subprocess.run([sys.executable, "-m", "pyxsw", "ctl", "-s", served.path, "capture",
                            "s0", "-w", "-"], stdout=slave, stderr=subprocess.PIPE, timeout=30)
    finally:
        os.close(master)
        os.close(slave)
    assert p.returncode == 2 and b"which is a terminal" in p.stderr
    assert served.fake.captures == {}                # nothing was started
    code = ctl_main(["-s", served.path, "capture", "s0", "-w", "/nonexistent/dir/x.pcap"])
    err = capsys.readouterr().err
    assert code == 1 and "/nonexistent/dir/x.pcap: No such file or directory" in err


def test_a_loop_flapping_every_mac_is_a_few_lines_not_one_per_mac(caplog):
    """Review: a bridging loop moves every MAC; each is reported once per interval, but only
    the FLAP_LINES busiest one by one and the others in one more line."""
    import logging
    from pyxsw import switch as switch_mod
    from pyxsw.config import Config
    from pyxsw.watch import Watch
    clock = [1000.0]
    sw = switch_mod.Switch(Config())
    sw._moves = Watch(switch_mod.WATCH_INTERVAL, leading=False, clock=lambda: clock[0])
    events = []
    sw.add_listener(events.append)
    for i in range(300):
        sw._moves.add((f"02:00:00:00:{i >> 8:02x}:{i & 255:02x}", 1), 1 + (i % 7),
                      port="s1", old="s0")
    sw._moves.add(("02:00:00:00:ff:ff", 1), 1000, port="s1", old="s0")
    clock[0] += switch_mod.WATCH_INTERVAL + 1
    with caplog.at_level(logging.WARNING, logger="pyxsw"):
        sw._next_sample = float("inf")              # no datapath here: no counters to read
        sw._watch(clock[0])
        sw._watch(clock[0])                         # again in the same second: nothing new
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == switch_mod.FLAP_LINES + 1, lines
    assert lines[0].startswith("MAC 02:00:00:00:ff:ff (vlan 1) moved 1000 times")
    assert lines[-1].startswith(f"{301 - switch_mod.FLAP_LINES} more MACs moved between ports")
    assert [e["event"] for e in events] == ["fdb.flapping"] * (switch_mod.FLAP_LINES + 1)
    assert events[-1]["macs"] == 301 - switch_mod.FLAP_LINES
    assert sum(e["count"] for e in events) == 1000 + sum(1 + (i % 7) for i in range(300))
