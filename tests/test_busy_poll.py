"""[switch] busy_poll_tuning: in poll mode the ports' NAPI deferral (per NAPI instance through
the netdev family, else per device in sysfs) is set while they are ports, shown in `status`,
and the values found are back after a stop, a port del, a SIGTERM and a change of mode; off,
or outside poll mode, nothing changes.  `pyxsw doctor` reads the per-NAPI values.

A veth has a NAPI instance only while XDP or GRO is on (its values go with it), so the lab's
switch ends get GRO on: their instance outlives the switch and the restore can be seen."""
import errno
import signal
import socket
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import make_config, running, stderr_of, wait_until
from pyxsw import napi, reload
from pyxsw.client import Client
from pyxsw.config import Config, ConfigError
from pyxsw.doctor import OK, WARN, diagnose
from pyxsw.links import LinkError, Netdev
from pyxsw.mgmt.ctl import _tuning_cell

system = pytest.mark.system
ROOT = Path(__file__).resolve().parent.parent
WAS = (1, 5000)                       # what the ports have before the switch: not the default
SET = (napi.DEFER_HARD_IRQS, napi.GRO_FLUSH_TIMEOUT)


# ---------------------------------------------------------------------------- pure parts

def test_napi_get_answers_are_parsed():
    at = {1: struct.pack("=I", 7), 2: struct.pack("=I", 8193), 5: struct.pack("=i", 2),
          6: struct.pack("=Q", 200000)}
    assert napi.parse_napi(at) == {"id": 8193, "ifindex": 7, "irq": None,
                                   "defer_hard_irqs": 2, "gro_flush_timeout": 200000}
    at[3], at[6] = struct.pack("=I", 41), struct.pack("=I", 20000)     # a u32 uint, an IRQ
    assert napi.parse_napi(at)["gro_flush_timeout"] == 20000 and napi.parse_napi(at)["irq"] == 41
    # a kernel before 6.13: no settings in the answer (None, never 0)
    old = napi.parse_napi({1: at[1], 2: at[2]})
    assert old["defer_hard_irqs"] is None and old["gro_flush_timeout"] is None
    assert napi.parse_napi({1: at[1]}) is None and napi.parse_napi({2: at[2]}) is None
    assert napi.masks(2, 200000) and not napi.masks(2, 0) and not napi.masks(0, 200000)


class FakeNetdev:
    """The netdev family as napi.py asks it: napi-get dumps and napi-set requests."""

    def __init__(self, instances, refuse=None):
        self.ops = {napi.NETDEV_CMD_NAPI_GET, napi.NETDEV_CMD_NAPI_SET}
        self.instances = instances      # {id: [ifindex, defer, flush]}
        self.refuse = refuse

    def request(self, cmd, attrs, what, absent=(), flags=0):
        at, a = {}, 0
        while a < len(attrs):
            alen, atype = struct.unpack_from("=HH", attrs, a)
            at[atype] = attrs[a + 4:a + alen]
            a += (alen + 3) & ~3
        if cmd == napi.NETDEV_CMD_NAPI_GET:
            index = struct.unpack("=I", at[1])[0]
            return [{1: struct.pack("=I", i), 2: struct.pack("=I", n), 5: struct.pack("=I", d),
                     6: struct.pack("=Q", f)}
                    for n, (i, d, f) in self.instances.items() if i == index]
        if self.refuse:
            raise LinkError(self.refuse, f"asking about {what}: {errno.errorcode[self.refuse]}")
        n = struct.unpack("=I", at[2])[0]
        if n not in self.instances:
            raise LinkError(errno.ENOENT, f"asking about {what}: ENOENT")
        self.instances[n][1:] = [struct.unpack("=I", at[5])[0], struct.unpack("=Q", at[6])[0]]
        return []


def test_tuning_sets_each_instance_and_restores_only_those_still_there():
    nd = FakeNetdev({10: [3, 0, 0], 11: [3, 1, 5000], 12: [4, 0, 0]})
    t = napi.Tuning(nd, "s0", 3)
    assert nd.instances == {10: [3, *SET], 11: [3, *SET], 12: [4, 0, 0]}
    assert t.view() == {"via": "napi", "napi": [10, 11], "defer_hard_irqs": SET[0],
                        "gro_flush_timeout": SET[1],
                        "was": {"10": {"defer_hard_irqs": 0, "gro_flush_timeout": 0},
                                "11": {"defer_hard_irqs": 1, "gro_flush_timeout": 5000}}}
    assert _tuning_cell(t.view()) == "napi 10,11: 2/200000ns (was 0/0ns, 1/5000ns)"
    del nd.instances[10]                # gone with the XDP program: nothing to restore there
    t.close()
    assert nd.instances == {11: [3, 1, 5000], 12: [4, 0, 0]}
    t.close()                           # twice is nothing
    assert nd.instances == {11: [3, 1, 5000], 12: [4, 0, 0]}


def test_a_refused_tuning_warns_naming_the_port_and_says_why(caplog):
    nd = FakeNetdev({10: [3, 0, 0]}, refuse=errno.EPERM)
    t = napi.Tuning(nd, "s0", 3)
    assert nd.instances == {10: [3, 0, 0]}
    assert t.view() == {"via": None, "problem": "cannot set the NAPI deferral for busy "
                                                "polling: not permitted (CAP_NET_ADMIN)"}
    assert "port s0: cannot set the NAPI deferral" in caplog.text
    assert _tuning_cell(t.view()).startswith("not set: cannot set")
    assert _tuning_cell(None) is None
    t.close()


def test_the_key_is_a_boolean_off_by_default_and_needs_a_restart():
    base = {"switch": {"cores": [0]}, "port": [{"name": "s0"}]}
    assert Config.from_dict(base).switch.busy_poll_tuning is False
    on = Config.from_dict({**base, "switch": {"cores": [0], "busy_poll_tuning": True}})
    assert on.switch.busy_poll_tuning is True
    assert Config.from_dict(on.to_dict()) == on
    for bad in ("yes", 1, "true"):
        with pytest.raises(ConfigError) as e:
            Config.from_dict({**base, "switch": {"cores": [0], "busy_poll_tuning": bad}})
        assert e.value.key == "switch.busy_poll_tuning" and "expected true or false" in str(e.value)
    p = reload.plan(Config.from_dict(base), on)
    assert p.restart == ["switch.busy_poll_tuning"] and p.changes == []


def test_a_bad_value_stops_run_with_exit_2_naming_the_key(tmp_path):
    path = tmp_path / "sw.toml"
    path.write_text('[switch]\nbusy_poll_tuning = "yes"\n[[port]]\nname = "s0"\n')
    p = subprocess.run([sys.executable, "-m", "pyxsw.cli", "run", "-c", str(path)], cwd=ROOT,
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 2, p.stderr
    assert f"{path}: switch.busy_poll_tuning: expected true or false, got a string" in p.stderr


# ---------------------------------------------------------------------------- on labs

def _values(nd, port):
    """{napi id: (defer, flush)} of a port's instances now."""
    return {n["id"]: (n["defer_hard_irqs"], n["gro_flush_timeout"])
            for n in napi.napis(nd, socket.if_nametoindex(port))}


def _prepare(nd, ports):
    """GRO on the switch ends (a NAPI instance that outlives the switch), WAS on it."""
    for p in ports:
        subprocess.run(["ethtool", "-K", p, "gro", "on"], check=True, capture_output=True)
        ids = list(_values(nd, p))
        assert len(ids) == 1, f"{p}: {ids}"
        napi.napi_set(nd, ids[0], *WAS)
    return {p: _values(nd, p) for p in ports}


@pytest.fixture
def nd():
    n = Netdev()
    yield n
    n.close()


def _tuning(sw):
    return {p["name"]: p["busy_poll_tuning"] for p in sw.status()["ports"]}


@system
def test_poll_mode_sets_the_napi_deferral_and_restores_it_after_port_del_and_stop(
        lab_factory, tmp_path, nd):
    lab = lab_factory(hosts=3)
    before = _prepare(nd, lab.ports)
    cfg = make_config(lab.ports, tmp_path, switch={"busy_poll_tuning": True})
    with running(cfg) as sw:
        for p in lab.ports:
            assert set(_values(nd, p).values()) == {SET}, p
        shown = _tuning(sw)
        for p in lab.ports:
            (nid, _), = before[p].items()
            assert shown[p] == {"via": "napi", "napi": [nid], "defer_hard_irqs": SET[0],
                                "gro_flush_timeout": SET[1],
                                "was": {str(nid): {"defer_hard_irqs": WAS[0],
                                                   "gro_flush_timeout": WAS[1]}}}
        assert sw.status()["busy_poll_tuning"] is True
        sw.del_port(lab.ports[2])
        assert _values(nd, lab.ports[2]) == before[lab.ports[2]]
        assert set(_values(nd, lab.ports[0]).values()) == {SET}
        # the mode changed at run time: nothing busy-polls in interrupt mode
        sw.set_mode("interrupt")
        assert _values(nd, lab.ports[0]) == before[lab.ports[0]]
        assert set(_tuning(sw).values()) == {None}
        sw.set_mode("poll")
        assert set(_values(nd, lab.ports[0]).values()) == {SET}
    for p in lab.ports:
        assert _values(nd, p) == before[p], p
    assert napi.read_device(lab.ports[0]) == (0, 0)       # the device's own: never touched


@system
def test_off_by_default_and_in_interrupt_mode_nothing_changes(lab_factory, tmp_path, nd):
    lab = lab_factory(hosts=2)
    before = _prepare(nd, lab.ports)
    for cfg in (make_config(lab.ports, tmp_path),
                make_config(lab.ports, tmp_path, mode="interrupt",
                            switch={"busy_poll_tuning": True})):
        with running(cfg) as sw:
            for p in lab.ports:
                assert _values(nd, p) == before[p]
                assert napi.read_device(p) == (0, 0)
            assert set(_tuning(sw).values()) == {None}
            if cfg.switch.busy_poll_tuning:
                sw.set_mode("adaptive")
                assert all(_values(nd, p) == before[p] for p in lab.ports)
        assert all(_values(nd, p) == before[p] for p in lab.ports)


@system
def test_without_per_napi_settings_the_device_gets_them_through_sysfs(lab_factory, tmp_path,
                                                                      monkeypatch):
    """A kernel before 6.13 (napi-set missing): the device's values in sysfs."""
    lab = lab_factory(hosts=2)
    for p in lab.ports:
        napi.write_device(p, *WAS)
    monkeypatch.setattr(napi, "per_napi", lambda netdev: False)
    with running(make_config(lab.ports, tmp_path, switch={"busy_poll_tuning": True})) as sw:
        for p in lab.ports:
            assert napi.read_device(p) == SET
        t = _tuning(sw)[lab.ports[0]]
        assert t == {"via": "sysfs", "napi": [], "defer_hard_irqs": SET[0],
                     "gro_flush_timeout": SET[1],
                     "was": {"device": {"defer_hard_irqs": WAS[0], "gro_flush_timeout": WAS[1]}}}
        sw.del_port(lab.ports[1])
        assert napi.read_device(lab.ports[1]) == WAS
    assert napi.read_device(lab.ports[0]) == WAS


@system
def test_sigterm_restores_what_the_switch_set(lab_factory, tmp_path, short_dir, nd):
    lab = lab_factory(hosts=2)
    before = _prepare(nd, lab.ports)
    sock = str(short_dir / "sw.sock")
    path = tmp_path / "sw.toml"
    path.write_text("[switch]\nname = \"tbp\"\nmode = \"poll\"\ncores = [1]\n"
                    "busy_poll_tuning = true\n"
                    f"[management]\nsocket = \"{sock}\"\n"
                    + "".join(f"[[port]]\nname = \"{p}\"\n" for p in lab.ports))
    proc = subprocess.Popen([sys.executable, "-m", "pyxsw.cli", "run", "-c", str(path)],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    try:
        def serving():
            assert proc.poll() is None, stderr_of(proc)
            try:
                with Client(sock, timeout=2) as c:
                    return c.call("status")["ports"]
            except OSError:
                return None
        assert wait_until(serving, timeout=30)
        with Client(sock, timeout=5) as c:
            shown = {p["name"]: p["busy_poll_tuning"] for p in c.call("status")["ports"]}
        assert all(shown[p]["via"] == "napi" for p in lab.ports), shown
        assert all(set(_values(nd, p).values()) == {SET} for p in lab.ports)
        ctl = subprocess.run([sys.executable, "-m", "pyxsw.cli", "ctl", "-s", sock, "status"],
                             cwd=ROOT, capture_output=True, text=True, timeout=30)
        nid = next(iter(before[lab.ports[0]]))
        assert f"napi {nid}: 2/200000ns (was 1/5000ns)" in ctl.stdout, ctl.stdout
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0, stderr_of(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    for p in lab.ports:
        assert _values(nd, p) == before[p], p


@system
def test_doctor_reads_the_per_napi_values(lab_factory, nd):
    lab = lab_factory(hosts=1)
    port = lab.ports[0]
    subprocess.run(["ethtool", "-K", port, "gro", "on"], check=True, capture_output=True)
    (nid, _), = _values(nd, port).items()

    def check(**switch):
        cfg = Config.from_dict({"switch": {"cores": [0], **switch}, "port": [{"name": port}]},
                               source="<test>")
        c = [c for c in diagnose(cfg) if c.name == "port.busy_poll" and c.subject == port]
        assert len(c) == 1
        return c[0]

    c = check()
    assert c.status == WARN
    assert c.found.startswith(f"napi_defer_hard_irqs 0, gro_flush_timeout 0; NAPI {nid}: "
                              "defer_hard_irqs 0, gro_flush_timeout 0")
    assert c.fix.endswith("or edit the config: switch.busy_poll_tuning = true")
    # set per NAPI only (what busy_poll_tuning does): the device's sysfs stays 0, and it is OK
    napi.napi_set(nd, nid, *SET)
    c = check()
    assert c.status == OK and f"NAPI {nid}: defer_hard_irqs 2, gro_flush_timeout 200000" \
        in c.found and "masks its interrupts" in c.found
    napi.napi_set(nd, nid, 0, 0)
    c = check(busy_poll_tuning=True)
    assert c.status == OK and "switch.busy_poll_tuning sets defer_hard_irqs 2" in c.found
    assert check(mode="poll", busy_poll_tuning=False).status == WARN


@system
def test_a_start_that_fails_on_a_later_port_restores_the_earlier_ones(lab_factory, tmp_path,
                                                                      nd):
    from pyxsw.switch import Switch, SwitchError
    lab = lab_factory(hosts=1)
    before = _prepare(nd, lab.ports)
    sw = Switch(make_config([*lab.ports, f"{lab.prefix}s9"], tmp_path,
                            switch={"busy_poll_tuning": True}))
    with pytest.raises(SwitchError) as e:
        sw.start()
    assert e.value.key == "port[1].name"
    assert _values(nd, lab.ports[0]) == before[lab.ports[0]]
