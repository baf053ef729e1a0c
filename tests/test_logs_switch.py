"""Logs and events of a running switch (root, namespaces): a port down is a warning the
journal can filter, a management change is logged with the client's uid and is an event with
a time, a flapping MAC is one warning with a count, not one per frame."""
import logging
import os
import subprocess
import sys
import threading
import time

import pytest

import pyxsw.switch
from helpers import NETTOOL, eth_frame, make_config, running, wait_until
from pyxsw.client import Client

pytestmark = pytest.mark.system


def _conf(tmp_path, ports, extra=""):
    conf = tmp_path / "sw.toml"
    conf.write_text(f'[switch]\nname = "t"\ncores = [1]\n'
                    f'[management]\nsocket = "{tmp_path}/sw.sock"\n{extra}'
                    + "".join(f'[[port]]\nname = "{p}"\n' for p in ports))
    return conf


class Lines:
    """The lines a child writes to a pipe, read as they come."""

    def __init__(self, fd):
        self.lines = []
        self._f = os.fdopen(fd, "r", errors="replace")
        self._t = threading.Thread(target=self._read, daemon=True)
        self._t.start()

    def _read(self):
        for line in self._f:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, text, timeout=10):
        assert wait_until(lambda: any(text in line for line in self.lines), timeout), \
            "\n".join(self.lines[-30:])
        return [line for line in self.lines if text in line]


def test_run_under_the_journal_logs_port_down_as_a_warning_and_changes_with_the_uid(
        lab_factory, tmp_path):
    """`pyxsw run` with stderr on a stream JOURNAL_STREAM names, as systemd starts it: each
    line carries its sd-daemon priority, port down <4> (warning), a change <6> with the uid."""
    lab = lab_factory(hosts=2)
    conf = _conf(tmp_path, lab.ports)
    r, w = os.pipe()
    st = os.fstat(w)
    env = dict(os.environ, JOURNAL_STREAM=f"{st.st_dev}:{st.st_ino}")
    proc = subprocess.Popen([sys.executable, "-m", "pyxsw", "run", "-c", str(conf)],
                            stdout=subprocess.DEVNULL, stderr=w, env=env)
    os.close(w)
    out = Lines(r)
    try:
        out.wait_for("switch t running", timeout=30)
        sock = str(tmp_path / "sw.sock")
        assert wait_until(lambda: os.path.exists(sock), 10)
        lab.run(1, "ip", "link", "set", "eth0", "down", check=True)
        [line] = out.wait_for(f"port {lab.ports[1]} is down")
        assert line == f"<4>pyxsw: warning: port {lab.ports[1]} is down"
        lab.run(1, "ip", "link", "set", "eth0", "up", check=True)
        [line] = out.wait_for(f"port {lab.ports[1]} is up")
        assert line == f"<6>pyxsw: info: port {lab.ports[1]} is up"
        with Client(sock) as c:
            c.fdb_add("02:00:00:00:0a:01", lab.ports[0])
        [line] = out.wait_for("fdb.add by uid")
        assert line.startswith(f"<6>pyxsw: info: fdb.add by uid {os.getuid()} (pid ")
        assert line.endswith(f"mac=02:00:00:00:0a:01 port={lab.ports[0]}")
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert all(line.startswith(("<3>", "<4>", "<6>", "<7>")) for line in out.lines), out.lines


def test_json_log_lines_carry_the_event_fields(lab_factory, tmp_path):
    import json
    lab = lab_factory(hosts=2)
    conf = _conf(tmp_path, lab.ports, extra='[log]\nformat = "json"\nlevel = "debug"\n')
    r, w = os.pipe()
    proc = subprocess.Popen([sys.executable, "-m", "pyxsw", "run", "-c", str(conf)],
                            stdout=subprocess.DEVNULL, stderr=w)
    os.close(w)
    out = Lines(r)
    try:
        out.wait_for("switch t running", timeout=30)
        lab.run(0, "ip", "link", "set", "eth0", "down", check=True)
        [line] = out.wait_for("is down")
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    obj = json.loads(line)
    assert (obj["level"], obj["logger"], obj["event"], obj["port"]) == \
        ("warning", "pyxsw", "port.down", lab.ports[0])
    assert abs(obj["time"] - time.time()) < 60
    assert all(json.loads(x)["level"] in ("debug", "info", "warning", "error") for x in out.lines)


def test_events_carry_time_and_a_management_change_is_an_event(lab_factory, short_dir):
    from pyxsw.mgmt.server import Server
    lab = lab_factory(hosts=2)
    with running(make_config(lab.ports, short_dir)) as sw:
        srv = Server(sw, str(short_dir / "sw.sock"))
        t = threading.Thread(target=srv.run, daemon=True)
        t.start()
        try:
            assert srv.started.wait(10)
            with Client(srv.path) as sub, Client(srv.path) as c:
                sub.subscribe()
                events = sub.events(timeout=10)
                before = time.time()
                c.fdb_add("02:00:00:00:0b:01", lab.ports[1])
                ev = next(events)
                assert ev["event"] == "mgmt" and ev["method"] == "fdb.add"
                # the arguments as the client gave them (no vlan: the port's untagged one)
                assert ev["params"] == {"mac": "02:00:00:00:0b:01", "port": lab.ports[1]}
                assert ev["uid"] == os.getuid() and before <= ev["time"] <= time.time()
                lab.run(0, "ip", "link", "set", "eth0", "down", check=True)
                ev = next(e for e in events if e["event"] == "port.down")
                assert before <= ev["time"] <= time.time()
        finally:
            srv.request_stop()
            t.join(10)


def test_a_flapping_mac_is_one_warning_with_a_count(lab_factory, tmp_path, caplog,
                                                     monkeypatch):
    monkeypatch.setattr(pyxsw.switch, "WATCH_INTERVAL", 4.0)
    lab = lab_factory(hosts=3)
    mac = "02:00:00:00:fa:01"
    frame = eth_frame("02:00:00:00:fa:ff", mac)         # to nobody: flooded, learnt each time
    moves = []
    with running(make_config(lab.ports, tmp_path)) as sw, \
            caplog.at_level(logging.INFO, logger="pyxsw"):
        sw.add_listener(lambda ev: ev["event"] == "fdb.move" and ev["mac"] == mac
                        and moves.append(ev))
        said = []
        sw.add_listener(lambda ev: ev["event"] == "fdb.flapping" and said.append(ev))
        t0 = time.monotonic()
        senders = [lab.popen(i, sys.executable, NETTOOL, "send", "--ifname", "eth0", "--hex",
                             frame.hex(), "--count", "300", "--interval", "0.004",
                             stdout=subprocess.DEVNULL) for i in (0, 1)]
        for p in senders:
            assert p.wait(timeout=30) == 0
        flapped = time.monotonic() - t0
        assert len(moves) >= 20, len(moves)
        assert wait_until(lambda: said, timeout=10)
        time.sleep(1.0)                 # any further report would come now: none must
    lines = [r for r in caplog.records if "moved" in r.getMessage() and mac in r.getMessage()]
    # one line per 4 s interval at most, not one per move; the counts add up to the moves
    assert len(lines) <= 1 + flapped // 4, [r.getMessage() for r in lines]
    assert all(r.levelno == logging.WARNING for r in lines)
    assert len(said) == len(lines) and sum(ev["count"] for ev in said) == len(moves)
    assert f"moved {said[0]['count']} times" in lines[0].getMessage()


def _said(caplog, words):
    return [(r.levelname, r.getMessage()) for r in caplog.records if words in r.getMessage()]


def test_storm_control_engaged_then_released_and_fdb_full(lab_factory, tmp_path, caplog,
                                                          monkeypatch):
    """Counters followed by housekeeping: a port's flood_limited growing is storm control
    engaged (a warning at once), then released (info) after an interval without; the FDB's
    learn_full growing is one warning, not one per MAC."""
    monkeypatch.setattr(pyxsw.switch, "WATCH_INTERVAL", 2.0)
    lab = lab_factory(hosts=2)
    cfg = make_config(lab.ports, tmp_path, port_extra={lab.ports[0]: {"flood_limit": 20}},
                      capacity=8)
    events = []
    with running(cfg) as sw, caplog.at_level(logging.INFO, logger="pyxsw"):
        sw.add_listener(lambda ev: ev["event"] in ("storm", "fdb.full") and events.append(ev))
        r = lab.run(0, sys.executable, NETTOOL, "spray", "--ifname", "eth0", "--count", "2000",
                    capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        assert wait_until(lambda: any(e["event"] == "storm" and e["state"] == "end"
                                      for e in events), timeout=15)
        assert wait_until(lambda: any(e["event"] == "fdb.full" and e["state"] == "end"
                                      for e in events), timeout=15)
        limited = sw.port_stats(lab.ports[0])[lab.ports[0]]["flood_limited"]
        full = sw.status()["fdb"]["learn_full"]
    port = lab.ports[0]
    engaged = _said(caplog, f"storm control engaged on port {port}")
    released = _said(caplog, f"storm control released on port {port}")
    assert len(engaged) == 1 and engaged[0][0] == "WARNING"
    assert len(released) == 1 and released[0][0] == "INFO"
    storm = [e for e in events if e["event"] == "storm"]
    assert [e["state"] for e in storm][0] == "start" and storm[-1]["state"] == "end"
    assert storm[-1]["total"] == limited > 100 and all("time" in e for e in storm)
    full_lines = _said(caplog, "the FDB is full")
    assert 1 <= len(full_lines) <= 3 and all(lv == "WARNING" for lv, _ in full_lines)
    fdb_full = [e for e in events if e["event"] == "fdb.full"]
    assert fdb_full[-1]["total"] == full > 1000


def test_an_mtu_over_max_frame_is_a_warning(lab_factory, tmp_path, caplog):
    lab = lab_factory(hosts=2)
    port = lab.ports[1]
    with running(make_config(lab.ports, tmp_path)) as sw, \
            caplog.at_level(logging.INFO, logger="pyxsw"):
        subprocess.run(["ip", "link", "set", port, "mtu", "9000"], check=True)    # fits
        subprocess.run(["ip", "link", "set", port, "mtu", "9300"], check=True)
        assert wait_until(lambda: _said(caplog, f"port {port}: MTU 9300"), timeout=10)
        subprocess.run(["ip", "link", "set", port, "mtu", "1500"], check=True)
        assert wait_until(lambda: _said(caplog, f"port {port}: MTU 1500"), timeout=10)
        assert sw.ports[port].mtu == 1500
    assert _said(caplog, f"port {port}: MTU") == [
        ("WARNING", f"port {port}: MTU 9300 allows frames of up to 9318 bytes but the switch "
                    f"carries 9216 (switch.max_frame 9216): larger frames are dropped, counted "
                    f"in oversize_dropped"),
        ("INFO", f"port {port}: MTU 1500: the switch carries every frame again")]


def test_an_mtu_over_a_umem_frame_without_multi_buffer_is_a_warning_at_start(
        lab_factory, tmp_path, caplog):
    """max_frame within a UMEM frame: no multi-buffer, and a port whose MTU already lets
    larger frames in is warned about when the switch starts."""
    lab = lab_factory(hosts=2)
    port = lab.ports[1]
    subprocess.run(["ip", "link", "set", port, "mtu", "2000"], check=True)
    with caplog.at_level(logging.INFO, logger="pyxsw"), \
            running(make_config(lab.ports, tmp_path, switch={"max_frame": 1792})):
        pass
    assert _said(caplog, f"port {port}: MTU") == [
        ("WARNING", f"port {port}: MTU 2000 allows frames of up to 2018 bytes but the switch "
                    f"carries 1792 (switch.max_frame 1792): larger frames are dropped, counted "
                    f"in oversize_dropped")]
