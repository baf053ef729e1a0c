"""Starting and stopping (root, namespaces): a stop never hangs, and only a signal that would
end the process stops `pyxsw run`, cleanly."""
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from helpers import link_flags, make_config, ping, stderr_of
from pyxsw import Switch

pytestmark = pytest.mark.system
ROOT = Path(__file__).resolve().parent.parent


def _stops_within(sw, seconds):
    """Run sw.stop() in a thread; did it return within `seconds`?  (A hung stop leaves a
    daemon thread behind rather than hanging the test run.)"""
    t = threading.Thread(target=sw.stop, daemon=True)
    t.start()
    t.join(seconds)
    return not t.is_alive()


def test_stop_while_another_thread_holds_the_switch_lock(lab_factory, tmp_path):
    """stop() used to join the housekeeping thread while holding the lock that thread takes
    on every tick: with the lock busy when stop() was called, it hung 20 times in 20."""
    lab = lab_factory(hosts=2)
    for _ in range(3):
        sw = Switch(make_config(lab.ports, tmp_path))
        sw.start()
        held = threading.Event()

        def hold():
            with sw._lock:
                held.set()
                time.sleep(0.5)         # housekeeping's tick ends meanwhile: it waits too

        holder = threading.Thread(target=hold)
        holder.start()
        held.wait()
        assert _stops_within(sw, 15), "Switch.stop() hung"
        holder.join()
        assert not any(link_flags(p)[1] for p in lab.ports)


def test_stop_from_a_switch_thread_is_refused(lab_factory, tmp_path):
    """A listener runs on the housekeeping thread, which stop() joins: stopping from there
    would wait for itself.  It is refused at once instead."""
    lab = lab_factory(hosts=2)
    with Switch(make_config(lab.ports, tmp_path)) as sw:
        outcome = []

        def listener(ev):
            if ev["event"] in ("port.down", "port.add"):
                try:
                    sw.stop()
                    outcome.append("stopped")
                except RuntimeError as e:
                    outcome.append(e)

        sw.add_listener(listener)
        subprocess.run(["ip", "link", "set", lab.ports[0], "down"], check=True)
        deadline = time.monotonic() + 5
        while not outcome and time.monotonic() < deadline:
            time.sleep(0.05)
        assert outcome and isinstance(outcome[0], RuntimeError), outcome
        # port.add reaches listeners on the caller's thread, which holds the switch lock:
        # stopping from there would wait for housekeeping, which waits for that lock
        sw.del_port(lab.ports[1])
        outcome.clear()
        sw.add_port(lab.ports[1])
        assert len(outcome) == 1 and isinstance(outcome[0], RuntimeError), outcome
        assert sw.dp is not None


def test_hundreds_of_start_stop_cycles_in_poll_mode(lab_factory, tmp_path):
    """3 in 600 stops used to hang: housekeeping's tick ending just before stop() took the
    lock.  Every stop here, at a random point of the tick, must return."""
    lab = lab_factory(hosts=2)
    cfg = make_config(lab.ports, tmp_path, mode="poll", switch={"frames": 1024, "ring_size": 256})
    rnd = random.Random(9)
    t0 = time.monotonic()
    cycles = 0
    while cycles < 300 and time.monotonic() - t0 < 120:
        sw = Switch(cfg)
        sw.start()
        time.sleep(rnd.uniform(0, 0.12))
        assert _stops_within(sw, 15), f"Switch.stop() hung after {cycles} cycles"
        cycles += 1
    assert cycles >= 200, f"only {cycles} start/stop cycles in 120 s"
    assert not any(link_flags(p)[1] for p in lab.ports)


# ---------------------------------------------------------------------------- pyxsw run

def _conf(tmp_path, ports):
    conf = tmp_path / "sw.toml"
    conf.write_text(f'[switch]\nname = "t"\ncores = [1]\n[management]\nsocket = "{tmp_path}/sw.sock"\n'
                    + "".join(f'[[port]]\nname = "{p}"\n' for p in ports))
    return conf


def _run(conf):
    return subprocess.Popen([sys.executable, "-m", "pyxsw.cli", "run", "-c", str(conf)],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_forwarding(lab, proc):
    deadline = time.monotonic() + 20
    while not ping(lab, 0, 1):
        assert proc.poll() is None and time.monotonic() < deadline, stderr_of(proc)


def _assert_clean(lab, tmp_path):
    for p in lab.ports:
        flags, xdp, promiscuity = link_flags(p)
        assert not xdp and promiscuity == 0, (p, flags)
    assert not (tmp_path / "sw.sock").exists()


def test_sigstop_sigcont_does_not_stop_pyxsw_run(lab_factory, tmp_path):
    """sigtimedwait() returned after EINTR with a signal number it never set, and any result
    was taken for a stop signal: SIGSTOP then SIGCONT ended `pyxsw run` 5 times in 5."""
    lab = lab_factory(hosts=2)
    proc = _run(_conf(tmp_path, lab.ports))
    try:
        _wait_forwarding(lab, proc)
        for _ in range(5):
            proc.send_signal(signal.SIGSTOP)
            time.sleep(0.5)             # longer than one sigtimedwait() timeout
            proc.send_signal(signal.SIGCONT)
            time.sleep(0.3)
        assert proc.poll() is None, stderr_of(proc)
        assert ping(lab, 0, 1) and ping(lab, 1, 0)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    _assert_clean(lab, tmp_path)


@pytest.mark.parametrize("sig", [signal.SIGQUIT, signal.SIGUSR1, signal.SIGALRM,
                                 signal.SIGRTMIN + 1])
def test_every_ending_signal_stops_cleanly(lab_factory, tmp_path, sig):
    """SIGQUIT used to end the process at once (rc 131, XDP and socket left); SIGHUP did too
    and reloads the config now (tests/test_reload.py)."""
    lab = lab_factory(hosts=2)
    proc = _run(_conf(tmp_path, lab.ports))
    try:
        _wait_forwarding(lab, proc)
        proc.send_signal(sig)
        assert proc.wait(timeout=15) == 0, stderr_of(proc)
        err = proc.stderr.read()
        assert (f"signal {sig}" if sig == signal.SIGRTMIN + 1 else signal.Signals(sig).name) \
            in err, err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    _assert_clean(lab, tmp_path)


def test_shutdown_rpc_still_stops_pyxsw_run(lab_factory, tmp_path):
    lab = lab_factory(hosts=2)
    proc = _run(_conf(tmp_path, lab.ports))
    try:
        _wait_forwarding(lab, proc)
        from pyxsw.client import Client
        with Client(str(tmp_path / "sw.sock")) as c:
            assert c.call("shutdown") == {"stopping": True}
        assert proc.wait(timeout=15) == 0, stderr_of(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    _assert_clean(lab, tmp_path)


@pytest.mark.parametrize("sig", [signal.SIGHUP, signal.SIGTERM])
def test_demo_interrupted_leaves_nothing(prefix, sig):
    """`pyxsw demo` took only SIGTERM: SIGHUP (a closed terminal) left its lab and programs."""
    proc = subprocess.Popen([sys.executable, "-m", "pyxsw.cli", "demo", "--prefix", prefix],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = ""
        deadline = time.monotonic() + 30
        while "all-pairs ping" not in line and time.monotonic() < deadline:
            line = proc.stdout.readline()
            assert line or proc.poll() is None, stderr_of(proc)
        proc.send_signal(sig)
        time.sleep(0.3)
        proc.send_signal(sig)           # a second one, during the teardown, must not cut it short
        assert proc.wait(timeout=30) in (0, 1, 130), stderr_of(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    out = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    assert prefix not in out
    assert prefix not in subprocess.run(["ip", "netns", "list"], capture_output=True,
                                        text=True).stdout
