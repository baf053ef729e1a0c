"""Rates and the live view: the rate arithmetic (pyxsw.mgmt.rates), `pyxsw ctl port stats
--rate`, `worker stats`, and `pyxsw ctl top` run in a pseudo-terminal against a served fake
switch whose counters grow."""
import fcntl
import json
import os
import pty
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import time

import pytest

from test_ctl import run, served  # noqa: F401  (the fixture)

from pyxsw.mgmt import ctl
from pyxsw.mgmt.rates import DROPS, delta, port_rates, si, worker_rates
from pyxsw.mgmt.top import screen


# ---------------------------------------------------------------------------- the arithmetic

def port(rx=0, tx=0, rxb=0, txb=0, up=True, **drops):
    return {"up": up, "rx_packets": rx, "tx_packets": tx, "rx_bytes": rxb, "tx_bytes": txb,
            "flooded": drops.pop("flooded", 0), **dict.fromkeys(DROPS, 0), **drops}


def test_port_rates():
    before = {"s0": port(100, 50, 10_000, 5_000, flooded=3, vlan_dropped=1),
              "s1": port(), "gone": port(5)}
    after = {"s0": port(300, 150, 30_000, 15_000, flooded=7, vlan_dropped=5, runts=2),
             "s1": port(up=False), "new": port(9)}
    r = port_rates(before, after, 2.0)
    assert set(r) == {"s0", "s1"}               # only ports in both looks
    s0 = r["s0"]
    assert (s0["rx_packets"], s0["tx_packets"]) == (100, 50)
    assert (s0["rx_bits"], s0["tx_bits"]) == (80_000, 40_000)      # bytes x 8, per second
    assert s0["flooded"] == 2 and s0["vlan_dropped"] == 2 and s0["runts"] == 1
    assert s0["dropped"] == 3 and s0["up"] is True
    assert r["s1"]["up"] is False and r["s1"]["dropped"] == 0
    assert set(s0) == {"up", "rx_packets", "tx_packets", "rx_bits", "tx_bits", "flooded",
                       "dropped", *DROPS}


def test_a_reset_counter_counts_from_zero():
    assert delta(1000, 30) == 30 and delta(30, 1000) == 970 and delta(None, 5) == 5
    r = port_rates({"s0": port(1_000_000)}, {"s0": port(40)}, 4.0)
    assert r["s0"]["rx_packets"] == 10


def test_worker_rates():
    before = [{"queue": 0, "loops": 1000, "idle_loops": 900, "wakeups": 10, "mode": "poll"},
              {"queue": 1, "loops": 50, "idle_loops": 50}]
    after = [{"queue": 0, "loops": 3000, "idle_loops": 1400, "wakeups": 30, "mode": "poll"},
             {"queue": 1, "loops": 50, "idle_loops": 50}, {"queue": 2, "loops": 1}]
    r = worker_rates(before, after, 0.5)
    assert [w["queue"] for w in r] == [0, 1]
    assert r[0]["busy"] == 0.75 and r[0]["loops"] == 4000 and r[0]["idle_loops"] == 1000
    assert r[0]["wakeups"] == 40 and r[0]["mode"] == "poll"
    assert r[1]["busy"] is None and r[1]["loops"] == 0        # no pass in the span


@pytest.mark.parametrize("seconds", [0, -1, float("nan")])
def test_a_span_must_be_positive(seconds):
    with pytest.raises(ValueError):
        port_rates({}, {}, seconds)
    with pytest.raises(ValueError):
        worker_rates([], [], seconds)


def test_si():
    assert [si(v) for v in (None, 0, 0.5, 12, 999, 999.6, 1234, 45_600_000, 7.891e9, 1e15)] == \
        ["-", "0", "0.5", "12", "999", "1k", "1.23k", "45.6M", "7.89G", "1000T"]


def test_screen():
    status = {"name": "sw0", "mode": "poll", "uptime": 65, "fdb": {"entries": 12,
                                                                     "capacity": 65536}}
    lines = screen(status, None, None, 1.0)
    assert lines[0].startswith("pyxsw sw0  mode poll  up 1m 5s  fdb 12 entries of 65536")
    assert lines[-1] == "measuring..."
    ports = port_rates({"s0": port(), "s1": port()},
                       {"s0": port(2_000_000, 10, 125_000_000, 0, vlan_dropped=3),
                        "s1": port(up=False)}, 1.0)
    workers = worker_rates([{"queue": 0, "loops": 0, "idle_loops": 0}],
                           [{"queue": 0, "loops": 2000, "idle_loops": 500, "mode": "poll"}], 1)
    lines = screen(status, ports, workers, 1.0, width=100)
    assert lines[2].split() == ["port", "up", "rx", "pkt/s", "tx", "pkt/s", "rx", "bit/s", "tx",
                                "bit/s", "flood/s", "drop/s", "drops", "by", "cause"]
    assert lines[3].split() == ["s0", "yes", "2M", "10", "1G", "0", "0", "3", "vlan_dropped", "3"]
    assert lines[4].split() == ["s1", "no", "0", "0", "0", "0", "0", "0"]
    assert lines[6].split() == ["worker", "mode", "busy", "wakeups/s", "idle", "loops/s",
                                "loops/s"]
    assert lines[7].split() == ["0", "poll", "75.0%", "0", "500", "2k"]
    assert all(len(line) <= 40 for line in screen(status, ports, workers, 1.0, width=40))


# ---------------------------------------------------------------------------- ctl commands

class Growing:
    """Makes a fake switch's counters grow by a known amount between looks."""

    def __init__(self, fake, frames=1000, size=100):
        self.fake, self.frames, self.size, self.n = fake, frames, size, 0
        self.plain = fake.port_stats
        fake.port_stats = self

    def __call__(self, name=None):
        out = self.plain(name)
        self.n += 1
        for p, s in out.items():
            s["rx_packets"] += self.n * self.frames
            s["rx_bytes"] += self.n * self.frames * self.size
            s["vlan_dropped"] += self.n * 7
        return out


def test_port_stats_rate(served, capsys):  # noqa: F811
    Growing(served.fake)
    code, out, _ = run(capsys, "-s", served.path, "port", "stats", "--rate", "--interval",
                       "0.2")
    lines = out.splitlines()
    assert code == 0 and lines[0].startswith("per second, over 0.2")
    head = lines[1].split()
    assert head[:8] == ["port", "up", "rx_packets", "tx_packets", "rx_bits", "tx_bits",
                        "flooded", "dropped"]
    row = dict(zip(head, lines[2].split()))
    assert row["port"] == "s0" and 4000 < float(row["rx_packets"]) <= 5000      # 1000 / 0.2 s
    code, out, _ = run(capsys, "-s", served.path, "--json", "port", "stats", "s1", "--interval",
                       "0.1")
    r = json.loads(out)
    assert set(r) == {"interval", "ports"} and set(r["ports"]) == {"s1"}
    s1 = r["ports"]["s1"]
    assert s1["rx_bits"] == pytest.approx(s1["rx_packets"] * 800)
    assert s1["vlan_dropped"] == pytest.approx(7 / r["interval"], rel=1e-3)
    assert s1["dropped"] == s1["vlan_dropped"]
    # without --rate: the counters as before
    code, out, _ = run(capsys, "-s", served.path, "--json", "port", "stats", "s1")
    assert "rx_packets" in json.loads(out)["s1"]


def test_worker_stats(served, capsys):  # noqa: F811
    code, out, _ = run(capsys, "-s", served.path, "worker", "stats")
    lines = out.splitlines()
    assert code == 0 and lines[0].startswith("workers, since start")
    assert lines[1].split()[:6] == ["queue", "mode", "busy", "loops", "idle_loops", "wakeups"]
    assert lines[2].split()[:6] == ["0", "poll", "25.0%", "4000", "3000", "12"]
    code, out, _ = run(capsys, "-s", served.path, "worker", "stats", "--interval", "0.1")
    lines = out.splitlines()
    assert lines[0].startswith("workers, per second over 0.1")
    row = dict(zip(lines[1].split(), lines[2].split()))
    assert row["busy"] == "75.0%" and 9000 < float(row["loops"]) <= 10000    # 1000 / 0.1 s
    r = json.loads(run(capsys, "-s", served.path, "--json", "worker", "stats")[1])
    assert r[0]["queue"] == 0 and r[0]["loops"] == 7000                 # a third look
    assert r[0]["busy"] == round(1 - r[0]["idle_loops"] / 7000, 4)
    # `workers` goes on as before
    assert run(capsys, "-s", served.path, "workers")[1].startswith("workers (busy:")


def test_top_wants_a_terminal(served):  # noqa: F811
    r = subprocess.run([sys.executable, "-m", "pyxsw", "ctl", "-s", served.path, "top"],
                       capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert r.returncode == 2 and "top needs a terminal" in r.stderr and r.stdout == ""


# ---------------------------------------------------------------------------- top in a terminal

class Terminal:
    """`pyxsw ctl ARGS` in a pseudo-terminal of 100 x 30."""

    def __init__(self, *args):
        self.master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
        self.modes = termios.tcgetattr(slave)
        self.proc = subprocess.Popen([sys.executable, "-m", "pyxsw", "ctl", *args],
                                     stdin=slave, stdout=slave, stderr=slave,
                                     env=dict(os.environ, TERM="xterm"), start_new_session=True,
                                     preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0))
        self.slave = slave
        self.seen = b""

    def read_until(self, *words, timeout=15):
        deadline = time.monotonic() + timeout
        while not all(w.encode() in self.seen for w in words):
            left = deadline - time.monotonic()
            assert left > 0, f"not on screen: {words}; seen {self.seen[-2000:]!r}"
            if select.select([self.master], [], [], left)[0]:
                try:
                    self.seen += os.read(self.master, 65536)
                except OSError:
                    break
        return self.seen

    def send(self, data):
        os.write(self.master, data)

    def finish(self, timeout=15):
        code = self.proc.wait(timeout)
        try:
            while select.select([self.master], [], [], 0.2)[0]:
                self.seen += os.read(self.master, 65536)
        except OSError:
            pass
        restored = termios.tcgetattr(self.slave) == self.modes
        os.close(self.master)
        os.close(self.slave)
        return code, restored


def test_top_shows_ports_and_rates_and_quits_on_q(served):  # noqa: F811
    Growing(served.fake, frames=500, size=64)
    t = Terminal("-s", served.path, "top", "--interval", "0.3")
    try:
        # the fake's busy share between looks: 75.0%
        t.read_until("pyxsw fake", "rx pkt/s", "s0", "s2", "busy", "vlan_dropped", "75.0%")
        # 500 frames per look, a look every 0.3 s or a little more: at most 1.67k/s
        rate = re.search(r"s0 +yes +([0-9.]+)k", t.seen.decode(errors="replace"))
        assert rate and 1.0 < float(rate[1]) <= 1.67, t.seen
        t.send(b"q")
        code, restored = t.finish()
    finally:
        if t.proc.poll() is None:
            t.proc.kill()
    assert code == 0 and restored
    assert t.seen.endswith(b"\x1b[?1049l") or b"\x1b[?1049l" in t.seen[-200:]  # screen given back


def test_top_quits_on_ctrl_c(served):  # noqa: F811
    t = Terminal("-s", served.path, "top")
    try:
        t.read_until("s0", "rx pkt/s")
        os.killpg(t.proc.pid, signal.SIGINT)            # what Ctrl-C at the terminal sends
        code, restored = t.finish()
    finally:
        if t.proc.poll() is None:
            t.proc.kill()
    assert code == 0 and restored


def test_top_when_the_switch_goes_away(served):  # noqa: F811
    t = Terminal("-s", served.path, "top", "--interval", "0.2")
    try:
        t.read_until("s0", "rx pkt/s")
        srv, thread = served.servers[0]
        srv.request_stop()
        thread.join(10)
        code, restored = t.finish()
    finally:
        if t.proc.poll() is None:
            t.proc.kill()
    assert code == 3 and restored
    tail = t.seen.rsplit(b"\x1b[?1049l", 1)[-1].decode(errors="replace")
    tail = re.sub(r"\x1b(\[[0-9;?]*[A-Za-z]|[=>])", "", tail).strip()
    assert tail.startswith("pyxsw ctl: ") and len(tail.splitlines()) == 1, tail


def test_top_is_a_command_with_port_stats_options():
    parser = ctl.build_parser()
    args = parser.parse_args(["top", "s1", "--interval", "2"])
    assert (args.name, args.interval, args.command.live is not None) == ("s1", 2.0, True)
    assert parser.parse_args(["top"]).interval == 1.0


def test_frames_dropped_on_a_mirror_output_are_a_drop_cause():
    """Review: what arrives on a mirror's output is dropped (mirror_dropped): top and
    port stats --rate count it with the other causes."""
    r = port_rates({"s2": port(mirror_dropped=10)}, {"s2": port(mirror_dropped=30)}, 2.0)
    assert r["s2"]["mirror_dropped"] == 10 and r["s2"]["dropped"] == 10
