"""Running as a systemd service: the unit verifies, `pyxsw run` speaks sd_notify (READY=1 once
the ports forward, WATCHDOG=1 while healthy, STOPPING=1), and its exit codes tell a
configuration error (2, not retried) from a machine not ready yet (75, retried).

systemd is not PID 1 on these machines: the unit is checked with `systemd-analyze verify`,
and the notify protocol with a NOTIFY_SOCKET of the test's own."""
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from helpers import link_flags, make_config, ping, running, wait_until
from pyxsw import Config, Switch
from pyxsw import switch as switch_mod
from pyxsw.service import Notifier, ports_status

ROOT = Path(__file__).resolve().parent.parent
UNIT = ROOT / "conf" / "pyxsw@.service"
EX_TEMPFAIL = 75


# ---------------------------------------------------------------------------- the unit

def test_unit_verifies(tmp_path):
    """`systemd-analyze verify` of the unit, ExecStart pointed at this checkout's pyxsw (the
    path the unit names, /usr/local/bin/pyxsw, is not installed on a test machine)."""
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze is missing: `make install` installs Debian's systemd"
    text = UNIT.read_text()
    assert text.count("ExecStart=/usr/local/bin/pyxsw run ") == 1
    pyxsw = Path(sys.executable).with_name("pyxsw")
    assert os.access(pyxsw, os.X_OK), pyxsw
    (tmp_path / "pyxsw@.service").write_text(text.replace("/usr/local/bin/pyxsw", str(pyxsw)))
    (tmp_path / "pyxsw@sw0.service").symlink_to("pyxsw@.service")
    r = subprocess.run([analyze, "verify", str(tmp_path / "pyxsw@sw0.service")],
                       capture_output=True, text=True, timeout=60)
    # verify exits 0 on an unknown key or a bad value and only says so: read what it says
    ours = [line for line in r.stderr.splitlines() if "pyxsw@" in line]
    assert r.returncode == 0 and not ours, r.stderr


def _directives(text):
    out = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith("#"):
            k, v = line.split("=", 1)
            out.setdefault(k.strip(), []).append(v.strip())
    return out


def test_unit_is_notify_with_watchdog_and_every_capability_explained():
    text = UNIT.read_text()
    d = _directives(text)
    assert d["Type"] == ["notify"] and d["NotifyAccess"] == ["main"]
    assert d["WatchdogSec"] and d["Restart"] == ["on-failure"]
    assert d["RestartPreventExitStatus"] == ["2"]           # 75 is retried
    assert int(d["LimitNOFILE"][0]) >= 65536
    assert d["ExecReload"] == ["/bin/kill -HUP $MAINPID"]   # SIGHUP reloads the file
    for family in ("AF_UNIX", "AF_NETLINK", "AF_XDP", "AF_PACKET", "AF_INET", "AF_INET6"):
        assert family in d["RestrictAddressFamilies"][0].split()
    caps = d["CapabilityBoundingSet"][0].split()
    assert "CAP_SYS_NICE" in caps and "CAP_SYS_ADMIN" in caps
    for cap in caps:
        assert re.search(rf"^#\s+{cap}\s+\S", text, re.M), f"{cap} is not explained"


def test_dedicated_core_lines_are_explained_and_verify_once_uncommented(tmp_path):
    """The example lines for a dedicated-core deployment are commented out (their values
    depend on the machine); uncommented, as a drop-in would set them, the unit verifies."""
    text = UNIT.read_text()
    for line in ("#CPUAffinity=0-1", "#Slice=pyxsw.slice"):
        assert re.search(rf"^{re.escape(line)}$", text, re.M), line
    for said in ("isolcpus=", "nohz_full=", "AllowedCPUs=", "A mask, not a limit",
                 "IRQBALANCE_BANNED_CPULIST"):
        assert said in text, said
    assert "CPUAffinity" not in _directives(text) and "Slice" not in _directives(text)
    analyze = shutil.which("systemd-analyze")
    pyxsw = Path(sys.executable).with_name("pyxsw")
    text = text.replace("/usr/local/bin/pyxsw", str(pyxsw))
    text = text.replace("#CPUAffinity=", "CPUAffinity=").replace("#Slice=", "Slice=")
    (tmp_path / "pyxsw@.service").write_text(text)
    (tmp_path / "pyxsw@sw0.service").symlink_to("pyxsw@.service")
    d = _directives(text)
    assert d["CPUAffinity"] == ["0-1"] and d["Slice"] == ["pyxsw.slice"]
    r = subprocess.run([analyze, "verify", str(tmp_path / "pyxsw@sw0.service")],
                       capture_output=True, text=True, timeout=60)
    ours = [line for line in r.stderr.splitlines() if "pyxsw@" in line]
    assert r.returncode == 0 and not ours, r.stderr


# ---------------------------------------------------------------------------- sd_notify

@pytest.fixture
def notify_sock(short_dir):
    """A NOTIFY_SOCKET of the test's own: (path, socket reading it)."""
    path = short_dir / "notify"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(str(path))
    yield str(path), s
    s.close()


def _messages(sock, until, timeout):
    """Messages (dicts of their fields, plus "at": monotonic arrival) until one satisfies
    until(msg) or timeout passes; the list read."""
    got = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            data = sock.recv(4096)
        except socket.timeout:
            break
        msg = dict(line.split("=", 1) for line in data.decode().splitlines())
        msg["at"] = time.monotonic()
        got.append(msg)
        if until(msg):
            break
    return got


def test_notifier_does_nothing_without_notify_socket():
    n = Notifier(environ={})
    assert not n.enabled and n.watchdog_interval is None
    assert n.ready("x") is False and n.stopping() is False
    n.watchdog()


def test_notifier_messages_and_watchdog_pace(notify_sock):
    path, s = notify_sock
    n = Notifier(environ={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "800000"})
    assert n.watchdog_interval == pytest.approx(0.2)            # a quarter of the timeout
    assert Notifier(environ={"NOTIFY_SOCKET": path,
                             "WATCHDOG_USEC": "30000000"}).watchdog_interval == 1.0  # at most 1 s
    assert n.ready("forwarding\non 2")
    (m,) = _messages(s, lambda m: True, 2)
    assert m["READY"] == "1" and m["STATUS"] == "forwarding on 2"   # one line
    assert m["MAINPID"] == str(os.getpid())
    t0 = time.monotonic()
    while time.monotonic() - t0 < 0.5:          # called every tick: sent every 0.2 s at most
        n.watchdog()
        time.sleep(0.01)
    feeds = _messages(s, lambda m: False, 0.3)
    assert 2 <= len(feeds) <= 3 and all(m.get("WATCHDOG") == "1" for m in feeds), feeds
    n.stopping()
    assert _messages(s, lambda m: True, 2)[0]["STOPPING"] == "1"
    n.close()


def test_notifier_abstract_address_and_watchdog_of_another_process():
    name = f"pyxsw-test-{os.getpid()}-{time.monotonic_ns()}"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind("\0" + name)
    try:
        n = Notifier(environ={"NOTIFY_SOCKET": "@" + name, "WATCHDOG_USEC": "1000000",
                              "WATCHDOG_PID": str(os.getpid() + 1)})
        assert n.watchdog_interval is None          # the watchdog is someone else's
        assert n.status("hello")
        assert _messages(s, lambda m: True, 2)[0]["STATUS"] == "hello"
    finally:
        s.close()


class _Port:
    def __init__(self, name, state, reason=""):
        self.name, self.state, self.reason = name, state, reason


def test_ports_status_names_what_does_not_forward():
    assert ports_status([_Port("s0", "up"), _Port("s1", "down", "no carrier")]) == \
        "forwarding on 1 of 2 port(s): s0; not forwarding: s1 down (no carrier)"
    assert ports_status([]) == "forwarding on 0 of 0 port(s)"


class _FakeDatapath:
    workers = 1

    def __init__(self):
        self.loops = 0

    def worker_stats(self):
        return [{"loops": self.loops}]


def test_a_worker_whose_loop_stops_turning_is_unhealthy(monkeypatch):
    """No root needed: the health check on a stand-in core.  A worker turns its loop at
    least once a second; one that has not for WORKER_STALL is stuck."""
    monkeypatch.setattr(switch_mod, "WORKER_STALL", 0.3)
    sw = Switch(Config.from_dict({}))
    sw.dp = _FakeDatapath()
    alive = threading.Event()
    t = threading.Thread(target=alive.wait)
    t.start()
    try:
        sw._threads = [t]
        assert sw._unhealthy() == ""
        time.sleep(0.4)
        assert "has not turned" in sw._unhealthy()
        sw.dp.loops += 1                          # it turned again
        assert sw._unhealthy() == ""
    finally:
        alive.set()
        t.join()
    assert "thread has ended" in sw._unhealthy()
    sw._threads, sw.dp = [], None


# ---------------------------------------------------------------------------- in a switch

@pytest.mark.system
def test_heartbeat_only_while_healthy(lab_factory, tmp_path):
    """The hook systemd's watchdog is fed from: housekeeping calls it every tick while the
    switch is healthy, not while its ticks fail, nor once a worker thread has died."""
    lab = lab_factory(hosts=2)
    beats = []
    sw = Switch(make_config(lab.ports, tmp_path))
    sw.set_heartbeat(lambda: beats.append(time.monotonic()))
    sw.start()
    try:
        assert wait_until(lambda: len(beats) >= 5, timeout=5), beats
        assert ping(lab, 0, 1)

        sw._drain_events = lambda: 1 / 0            # housekeeping fails every tick
        time.sleep(0.3)
        n = len(beats)
        time.sleep(1.0)
        assert len(beats) == n, "fed while housekeeping fails"
        del sw._drain_events
        assert wait_until(lambda: len(beats) > n + 3, timeout=5)

        worker = sw._threads[0]                     # a worker thread that has ended
        dead = threading.Thread(target=lambda: None)
        dead.start()
        dead.join()
        sw._threads[0] = dead
        try:
            time.sleep(0.3)
            n = len(beats)
            time.sleep(1.0)
            assert len(beats) == n, "fed with a dead worker"
        finally:
            sw._threads[0] = worker                 # stop() must join the real one
        assert wait_until(lambda: len(beats) > n + 3, timeout=5)
    finally:
        sw.stop()


# ---------------------------------------------------------------------------- pyxsw run

def _conf(path, ports, sock, extra=""):
    path.write_text(f'[switch]\nname = "t"\ncores = [1]\n{extra}\n[management]\n'
                    f'socket = "{sock}"\n' + "".join(f'[[port]]\nname = "{p}"\n' for p in ports))
    return path


def _run(conf, log, notify=None, watchdog_usec=None):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("NOTIFY_SOCKET", None)
    if notify:
        env["NOTIFY_SOCKET"] = notify
    if watchdog_usec:
        env["WATCHDOG_USEC"] = str(watchdog_usec)
    return subprocess.Popen([sys.executable, "-m", "pyxsw", "run", "-c", str(conf)], cwd=ROOT,
                            env=env, stdout=log, stderr=subprocess.STDOUT)


def _text(log):
    log.seek(0)
    return log.read()


def _end(proc):
    if proc.poll() is None:
        proc.kill()
        proc.wait()


@pytest.mark.system
def test_ready_once_forwarding_then_watchdog_then_stopping(lab_factory, short_dir, notify_sock):
    lab = lab_factory(hosts=2)
    path, s = notify_sock
    conf = _conf(short_dir / "sw.toml", lab.ports, short_dir / "sw.sock")
    with open(short_dir / "log", "w+") as log:
        proc = _run(conf, log, notify=path, watchdog_usec=2_000_000)
        try:
            got = _messages(s, lambda m: m.get("READY") == "1", 30)
            assert got and got[-1].get("READY") == "1", (got, _text(log))
            ready = got[-1]
            assert ping(lab, 0, 1, timeout=1) and ping(lab, 1, 0, timeout=1)   # at once
            assert ready["MAINPID"] == str(proc.pid)
            assert ready["STATUS"] == f"forwarding on 2 of 2 port(s): {', '.join(lab.ports)}"
            assert (short_dir / "sw.sock").exists()     # the management socket serves
            feeds = _messages(s, lambda m: False, 2.6)
            # every WATCHDOG_USEC/4 = 0.5 s: about 5 in 2.6 s, never faster than the pace
            # (gaps measured on arrival here, on a busy machine: a little slack)
            assert 3 <= len(feeds) <= 6 and all(m.get("WATCHDOG") == "1" for m in feeds), feeds
            gaps = [b["at"] - a["at"] for a, b in zip(feeds, feeds[1:])]
            assert min(gaps) > 0.25, gaps
            proc.send_signal(signal.SIGTERM)
            last = _messages(s, lambda m: m.get("STOPPING") == "1", 15)
            assert last and last[-1].get("STOPPING") == "1", last
            assert proc.wait(15) == 0
        finally:
            _end(proc)
    for p in lab.ports:
        assert not link_flags(p)[1]


@pytest.mark.system
def test_a_port_without_carrier_does_not_hold_readiness_back(lab_factory, short_dir,
                                                             notify_sock):
    """A port whose link is down at start is attached and forwards once its link comes up;
    readiness waits a few seconds for it, then comes with the port named in STATUS."""
    lab = lab_factory(hosts=2)
    lab.run(1, "ip", "link", "set", "eth0", "down", check=True)   # s1: no carrier
    path, s = notify_sock
    conf = _conf(short_dir / "sw.toml", lab.ports, short_dir / "sw.sock")
    with open(short_dir / "log", "w+") as log:
        proc = _run(conf, log, notify=path)
        try:
            got = _messages(s, lambda m: m.get("READY") == "1", 30)
            assert got and got[-1].get("READY") == "1", (got, _text(log))
            assert f"not forwarding: {lab.ports[1]} down" in got[-1]["STATUS"], got[-1]
            lab.run(1, "ip", "link", "set", "eth0", "up", check=True)
            assert wait_until(lambda: ping(lab, 0, 1), timeout=10)
            # STATUS= follows the ports after READY: `systemctl status` says they all forward
            got = _messages(s, lambda m: m.get("STATUS", "").startswith("forwarding on 2 of 2"), 5)
            assert got and got[-1]["STATUS"].startswith("forwarding on 2 of 2"), got
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(15) == 0
        finally:
            _end(proc)


# ---------------------------------------------------------------------------- exit codes

def _run_to_end(conf, timeout=60):
    r = subprocess.run([sys.executable, "-m", "pyxsw", "run", "-c", str(conf)], cwd=ROOT,
                       capture_output=True, text=True, timeout=timeout,
                       env=dict(os.environ, PYTHONPATH=str(ROOT)))
    return r.returncode, r.stderr


@pytest.mark.system
def test_missing_interface_is_75_and_a_retry_starts_once_it_exists(prefix, short_dir,
                                                                  notify_sock):
    """An interface missing at boot is not a configuration error: 75, which the unit
    retries; once the interface exists, the same file starts."""
    a, b = f"{prefix}x0", f"{prefix}x1"
    conf = _conf(short_dir / "sw.toml", [a], short_dir / "sw.sock")
    code, err = _run_to_end(conf)
    assert code == EX_TEMPFAIL, err
    assert err == f"{conf}: port[0].name: {a}: no such interface\n", err
    subprocess.run(["ip", "link", "add", a, "type", "veth", "peer", "name", b], check=True)
    subprocess.run(["ip", "link", "set", b, "up"], check=True)
    subprocess.run(["ip", "link", "set", a, "up"], check=True)
    path, s = notify_sock
    with open(short_dir / "log", "w+") as log:
        proc = _run(conf, log, notify=path)
        try:
            got = _messages(s, lambda m: m.get("READY") == "1", 30)
            assert got and got[-1].get("READY") == "1", (got, _text(log))
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(15) == 0
        finally:
            _end(proc)


@pytest.mark.system
def test_a_start_mask_without_the_worker_cores_still_pins_the_workers(lab_factory, short_dir):
    """CPUAffinity= (here taskset) of the non-worker cores: the switch starts, its worker
    runs pinned on its core outside that mask, the other threads stay in it."""
    if not {0, 1} <= os.sched_getaffinity(0):
        pytest.fail("needs cores 0 and 1")
    lab = lab_factory(hosts=2)
    sock = short_dir / "sw.sock"
    conf = _conf(short_dir / "sw.toml", lab.ports, sock)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("NOTIFY_SOCKET", None)
    proc = subprocess.Popen(["taskset", "-c", "0", sys.executable, "-m", "pyxsw", "run", "-c",
                             str(conf)], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert wait_until(lambda: sock.exists() or proc.poll() is not None, timeout=30)
        assert proc.poll() is None, proc.stderr.read()

        def masks():
            out = {}
            for tid in os.listdir(f"/proc/{proc.pid}/task"):
                st = Path(f"/proc/{proc.pid}/task/{tid}/status").read_text()
                out[tid] = re.search(r"^Cpus_allowed_list:\s*(\S+)", st, re.M)[1]
            return out
        assert wait_until(lambda: "1" in masks().values(), timeout=10), masks()
        assert sorted(masks().values()).count("1") == 1, masks()      # the one worker
        assert set(masks().values()) == {"0", "1"}, masks()
        assert ping(lab, 0, 1)
    finally:
        _end(proc)


@pytest.mark.system
def test_bad_value_is_2(lab_factory, short_dir):
    lab = lab_factory(hosts=2)
    conf = _conf(short_dir / "sw.toml", lab.ports, short_dir / "sw.sock", 'mode = "turbo"')
    code, err = _run_to_end(conf)
    assert code == 2 and err.startswith(f"{conf}: switch.mode: "), err


@pytest.mark.system
def test_interface_of_a_running_switch_is_75_and_the_first_keeps_it(lab_factory, short_dir):
    lab = lab_factory(hosts=2)
    with running(make_config(lab.ports, short_dir)) as sw:
        conf = _conf(short_dir / "b.toml", lab.ports, short_dir / "b.sock")
        code, err = _run_to_end(conf)
        assert code == EX_TEMPFAIL, err
        assert err.startswith(f"{conf}: port[0].name: ") and err.count("\n") == 1, err
        assert "is a port of another running pyxsw switch" in err, err
        assert ping(lab, 0, 1) and ping(lab, 1, 0)
        assert all(p.up for p in sw.ports.values())


def test_socket_served_by_another_instance_is_75(short_dir):
    """No root needed: the socket is claimed before any port is touched."""
    sock = short_dir / "sw.sock"
    other = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    other.bind(str(sock))
    other.listen(1)
    try:
        conf = _conf(short_dir / "sw.toml", [], sock)
        code, err = _run_to_end(conf)
        assert code == EX_TEMPFAIL, err
        assert err == f"{conf}: management.socket: {sock}: another pyxsw is serving this " \
                      f"socket\n", err
    finally:
        other.close()


def test_a_wedged_management_loop_starves_the_watchdog(short_dir):
    """The heartbeat fed the watchdog whatever the management loop did: a wedged loop left
    a switch nobody could manage, fed forever."""
    import threading
    from pyxsw.cli import _heartbeat
    from pyxsw.mgmt.server import Server
    from test_mgmt_unit import FakeSwitch

    class Counting:
        fed = 0

        def watchdog(self):
            self.fed += 1

    srv = Server(FakeSwitch(), str(short_dir / "sw.sock"))
    t = threading.Thread(target=srv.run, kwargs={"stop_signals": ()}, daemon=True)
    t.start()
    try:
        assert srv.started.wait(5)
        n = Counting()
        _heartbeat(n, srv)
        assert n.fed == 1 and not srv.stalled(0.5)
        srv._loop.call_soon_threadsafe(time.sleep, 1.5)     # the loop wedges for 1.5 s
        time.sleep(1.2)
        assert srv.stalled(0.5)
        import pyxsw.cli
        old, pyxsw.cli.LOOP_STALL = pyxsw.cli.LOOP_STALL, 0.5
        try:
            _heartbeat(n, srv)
            assert n.fed == 1                               # not fed while it is wedged
            time.sleep(1.5)
            _heartbeat(n, srv)
            assert n.fed == 2                               # turning again: fed again
        finally:
            pyxsw.cli.LOOP_STALL = old
    finally:
        srv.request_stop()
        t.join(10)


def test_an_interface_gone_between_two_looks_is_not_ready_not_a_bad_file(monkeypatch):
    """Renamed or deleted (udev at boot) between the netlink look and the sysfs one: its
    queues directory is missing.  That was exit 2 (a config error, never retried)."""
    import errno
    from pyxsw import switch

    def listdir(path):
        raise FileNotFoundError(errno.ENOENT, "gone", path)

    sw = object.__new__(switch.Switch)
    sw.ports = {}

    class Links:
        def get(self, **kw):
            from pyxsw.links import Link
            return Link(ifindex=999999, name="s9", up=True, loopback=False, xdp={})

    sw.links = Links()
    monkeypatch.setattr(switch.os, "listdir", listdir)
    with pytest.raises(OSError) as e:
        sw._open_port("s9", 0, False)
    assert e.value.errno == errno.ENODEV and switch._temporary(e.value)
