"""Reload and save: [[fdb.static]] in the file, the plan of a reload (pure: two Configs in),
a bad file refused with `pyxsw run`'s own line, `pyxsw ctl save`; then, as root, SIGHUP and
`pyxsw ctl reload` on a running `pyxsw run`, and a switch restarted from what `ctl save` wrote."""
import signal
import stat
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest

from helpers import ping, stderr_of, wait_until
from test_mgmt_unit import FakeSwitch, start_server

from pyxsw import reload
from pyxsw.client import Client, RpcError
from pyxsw.config import Config, ConfigError, StaticEntry, to_toml
from pyxsw.mgmt.ctl import ctl_main
from pyxsw.vocab import port_vlan

ROOT = Path(__file__).resolve().parent.parent
A, B, C = "02:00:00:00:00:0a", "02:00:00:00:00:0b", "02:00:00:00:00:0c"


def conf(ports=({"name": "s0"}, {"name": "s1", "vlan_mode": "trunk", "allowed": [10, 20],
                                  "native": 10}),
         static=(), switch=None, fdb=None, socket="/tmp/t.sock"):
    return Config.from_dict({"switch": {"name": "t", "cores": [1], **(switch or {})},
                             "fdb": {**(fdb or {}), **({"static": list(static)} if static else {})},
                             "management": {"socket": socket}, "port": list(ports)})


# ---------------------------------------------------------------------------- [[fdb.static]]

def test_static_entries_take_the_ports_untagged_vlan_and_round_trip():
    c = conf(static=[{"mac": A.upper(), "port": "s0"}, {"mac": B, "port": "s1"},
                     {"mac": C, "port": "s1", "vlan": 20}])
    assert c.fdb.static == (StaticEntry(A, "s0", 1), StaticEntry(B, "s1", 10),
                            StaticEntry(C, "s1", 20))
    assert Config.from_dict(c.to_dict()) == c
    assert Config.from_dict(tomllib.loads(to_toml(c, "# saved\n"))) == c
    assert "static" not in conf().to_dict()["fdb"]        # none: the section as before


@pytest.mark.parametrize("entry, key, says", [
    ({"mac": A, "port": "s1", "vlan": 30}, "fdb.static[0].vlan",
     "port s1 does not carry vlan 30 (trunk allowed 10,20 native 10)"),
    ({"mac": A, "port": "s0", "vlan": 10}, "fdb.static[0].vlan", "port s0 does not carry vlan 10"),
    ({"mac": A, "port": "s9"}, "fdb.static[0].port", "not one of the [[port]] names (s0, s1)"),
    ({"mac": "01:00:5e:00:00:01", "port": "s0"}, "fdb.static[0].mac", "multicast"),
    ({"mac": "nope", "port": "s0"}, "fdb.static[0].mac", "not a MAC address"),
    ({"port": "s0"}, "fdb.static[0].mac", "missing"),
    ({"mac": A, "port": "s0", "vlan": 0}, "fdb.static[0].vlan", "must be positive"),
    ({"mac": A, "port": "s0", "age": 3}, "fdb.static[0].age", "unknown key"),
])
def test_static_entry_errors_name_the_key(entry, key, says):
    with pytest.raises(ConfigError) as e:
        conf(static=[entry])
    assert e.value.key == key and says in e.value.reason, str(e.value)


def test_a_trunk_without_native_needs_the_vlan_and_an_entry_is_listed_once():
    trunk = [{"name": "s0", "vlan_mode": "trunk", "allowed": [10], "native": 0}]
    with pytest.raises(ConfigError, match=r"fdb\.static\[0\]\.vlan: port s0 is a trunk without"):
        conf(ports=trunk, static=[{"mac": A, "port": "s0"}])
    with pytest.raises(ConfigError, match=r"fdb\.static\[1\]\.mac: .* listed twice"):
        conf(static=[{"mac": A, "port": "s0"}, {"mac": A, "port": "s0", "vlan": 1}])


# ---------------------------------------------------------------------------- the plan

def test_the_same_config_plans_nothing():
    c = conf(static=[{"mac": A, "port": "s0"}])
    assert not reload.plan(c, c) and reload.plan(c, c) == ([], [])


def test_plan_lists_each_change_in_order_and_what_needs_a_restart():
    old = conf(static=[{"mac": A, "port": "s0"}, {"mac": B, "port": "s0"}])
    new = conf(ports=[{"name": "s0", "flood_limit": 500},
                      {"name": "s1", "vlan": 10},
                      {"name": "s2", "vlan_mode": "trunk", "allowed": [10], "native": 0}],
               static=[{"mac": B, "port": "s1"}, {"mac": C, "port": "s2", "vlan": 10}],
               switch={"mode": "interrupt", "cores": [0, 1], "frames": 8192},
               fdb={"aging": 60, "capacity": 1024}, socket="/tmp/u.sock")
    p = reload.plan(old, new)
    assert p.restart == ["switch.cores", "switch.frames", "fdb.capacity", "management.socket"]
    assert [c.call for c in p.changes] == [
        ("fdb_del", (A,), {"vlan": 1}),                                         # removals
        ("fdb_del", (B,), {"vlan": 1}),
        ("port_options", ("s0",), {"flood_limit": 500, "forward_reserved": False}),  # ports
        ("port_set", ("s1", port_vlan(vlan=10)), {}),
        ("add_port", ("s2",), {"vlans": port_vlan("trunk", allowed=[10], native=0),
                               "flood_limit": 0, "forward_reserved": False}),
        ("set_mode", ("interrupt",), {}),                                       # settings
        ("set_aging", (60,), {}),
        ("fdb_add", (B, "s1"), {"vlan": 10}),                                   # entries
        ("fdb_add", (C, "s2"), {"vlan": 10}),
    ]
    texts = [c.text for c in p.changes]
    assert texts[0] == f"static {A} vlan 1: removed (was on s0)"
    assert "port s2: added (trunk allowed 10 native 0 (none))" in texts
    assert "port s0: flood_limit 0 -> 500" in texts
    assert "port s1: trunk allowed 10,20 native 10 -> access vlan 10" in texts
    assert "mode: poll -> interrupt" in texts and "aging: 300 -> 60 s" in texts
    assert f"static {C} vlan 10: added on s2" in texts


def test_a_static_entry_that_changes_vlan_is_removed_and_added_and_one_that_moves_is_added():
    old = conf(static=[{"mac": A, "port": "s0"}, {"mac": B, "port": "s1"}])
    new = conf(static=[{"mac": A, "port": "s1", "vlan": 20}, {"mac": B, "port": "s0"}])
    assert [c.call for c in reload.plan(old, new).changes] == [
        ("fdb_del", (A,), {"vlan": 1}), ("fdb_del", (B,), {"vlan": 10}),
        ("fdb_add", (A, "s1"), {"vlan": 20}), ("fdb_add", (B, "s0"), {"vlan": 1})]
    # the same (mac, vlan) on another port: one fdb_add moves it
    plain = conf(ports=[{"name": "s0"}, {"name": "s1"}], static=[{"mac": A, "port": "s0"}])
    moved = conf(ports=[{"name": "s0"}, {"name": "s1"}], static=[{"mac": A, "port": "s1"}])
    assert [(c.text, c.call) for c in reload.plan(plain, moved).changes] == \
        [(f"static {A} vlan 1: moved from s0 to s1", ("fdb_add", (A, "s1"), {"vlan": 1}))]


def test_a_static_entry_goes_with_its_removed_port():
    old = conf(static=[{"mac": A, "port": "s1"}])
    new = conf(ports=[{"name": "s0"}])
    assert [c.call for c in reload.plan(old, new).changes] == [("del_port", ("s1",), {})]


def test_apply_goes_on_after_a_change_that_fails(tmp_path):
    fake = FakeSwitch(ports=("s0",))
    new = conf(ports=[{"name": "s0"}, {"name": "nosuch1"}, {"name": "s2"}],
               switch={"name": "fake", "mode": "adaptive", "cores": [0]},
               socket="/run/pyxsw/sw0.sock")           # the fake's
    result = reload.apply(fake, reload.plan(fake.running_config(), new))
    assert result["failed"] == [{"change": "port nosuch1: added (access vlan 1)",
                                 "error": "nosuch1: no such interface"}]
    assert result["changed"] == ["port s2: added (access vlan 1)", "mode: poll -> adaptive"]
    assert result["restart"] == ["switch.cores"]
    assert set(fake.ports) == {"s0", "s2"} and fake.mode == "adaptive"
    assert "1 failed (port nosuch1: added" in reload.summary(result)


# ---------------------------------------------------------------------------- over the socket

@pytest.fixture
def fake_served(short_dir):
    path = short_dir / "sw.toml"
    fake = FakeSwitch(ports=("s0", "s1"), config=str(path))
    srv, t = start_server(fake, str(short_dir / "sw.sock"), "uvloop")
    yield fake, path, str(short_dir / "sw.sock")
    srv.request_stop()
    t.join(10)


def _run_line(path):
    """What `pyxsw run -c path` says of a bad file (it stops before touching anything)."""
    p = subprocess.run([sys.executable, "-m", "pyxsw.cli", "run", "-c", str(path)], cwd=ROOT,
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 2, p.stderr
    return p.stderr.strip()


def test_reload_refuses_a_bad_file_with_pyxsw_runs_line_and_changes_nothing(fake_served, capsys):
    fake, path, sock = fake_served
    path.write_text('[switch]\nmode = "interrupt"\n[[port]]\nname = "s0"\n[[port]]\nname = "s2"\n'
                    '[[fdb.static]]\nmac = "02:00:00:00:00:01"\nport = "s3"\n')
    line = _run_line(path)
    assert line.startswith(f"{path}: fdb.static[0].port: not one of the [[port]] names")
    with Client(sock) as c, pytest.raises(RpcError) as e:
        c.config_reload()
    assert (e.value.code, e.value.message) == ("failed", line)
    assert set(fake.ports) == {"s0", "s1"} and fake.mode == "poll"
    assert ctl_main(["-s", sock, "reload"]) == 1
    assert capsys.readouterr().err == f"pyxsw ctl: failed: {line}\n"


def test_ctl_reload_says_what_changed(fake_served, capsys):
    fake, path, sock = fake_served
    path.write_text('[switch]\nname = "fake"\nmode = "interrupt"\ncores = [0]\n'
                    '[management]\nsocket = "/run/pyxsw/sw0.sock"\n'     # the fake's
                    '[[port]]\nname = "s0"\n[[port]]\nname = "s2"\nvlan = 10\n'
                    '[[port]]\nname = "nosuch9"\n')
    assert ctl_main(["-s", sock, "reload"]) == 1               # a change failed
    out = capsys.readouterr().out
    assert out == (f"reloaded {path}: 3 changes\n"
                   "  port s1: removed\n"
                   "  port s2: added (access vlan 10)\n"
                   "  mode: poll -> interrupt\n"
                   "  failed: port nosuch9: added (access vlan 1): nosuch9: no such interface\n"
                   "  needs a restart: switch.cores (left as it is)\n"), out
    assert ctl_main(["-s", sock, "reload"]) == 1               # nosuch9 is still missing
    assert "reloaded" in capsys.readouterr().out and fake.ports["s2"].vlans.vlan == 10


def test_ctl_save_prints_and_writes_what_loads_back_equal(fake_served, capsys, short_dir):
    fake, path, sock = fake_served
    fake.fdb_add(A, "s1")
    fake.set_mode("interrupt")
    fake.set_aging(77)
    assert ctl_main(["-s", sock, "save"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("# pyxsw: the running configuration of switch fake, saved ")
    saved = Config.from_dict(tomllib.loads(text))
    assert saved == fake.running_config()
    assert saved.switch.mode == "interrupt" and saved.fdb.aging == 77
    assert saved.fdb.static == (StaticEntry(A, "s1", 1),)
    out = short_dir / "saved.toml"
    assert ctl_main(["-s", sock, "save", "-o", str(out)]) == 0
    assert capsys.readouterr().out == f"saved the running configuration to {out}\n"
    assert Config.load(out) == fake.running_config()
    assert stat.S_IMODE(out.stat().st_mode) == 0o644
    out.chmod(0o600)
    fake.set_mode("poll")
    assert ctl_main(["-s", sock, "save", "-o", str(out)]) == 0
    assert stat.S_IMODE(out.stat().st_mode) == 0o600 and Config.load(out).switch.mode == "poll"
    assert [p.name for p in short_dir.iterdir() if p.name.endswith(".tmp")] == []
    capsys.readouterr()
    assert ctl_main(["-s", sock, "save", "-o", str(short_dir / "no" / "x.toml")]) == 1
    assert capsys.readouterr().err == \
        f"pyxsw ctl: output: {short_dir}/no/x.toml: No such file or directory\n"


def test_reload_of_a_switch_not_started_from_a_file(short_dir):
    srv, t = start_server(FakeSwitch(), str(short_dir / "sw.sock"), "uvloop")
    try:
        with Client(str(short_dir / "sw.sock")) as c, pytest.raises(RpcError) as e:
            c.config_reload()
        assert e.value.code == "failed" and "not started from a file" in e.value.message
    finally:
        srv.request_stop()
        t.join(10)


# ---------------------------------------------------------------------------- a real switch

def _write(path, ports, sock, *, mode="poll", aging=300, cores=(1,), static=()):
    lines = [f'[switch]\nname = "t"\nmode = "{mode}"\ncores = {list(cores)}\n',
             f"[fdb]\naging = {aging}\n",
             f'[management]\nsocket = "{sock}"\n']
    for p in ports:
        lines.append("[[port]]\n" + "".join(f"{k} = {v!r}\n".replace("'", '"')
                                            for k, v in p.items()))
    for e in static:
        lines.append("[[fdb.static]]\n" + "".join(f"{k} = {v!r}\n".replace("'", '"')
                                                  for k, v in e.items()))
    path.write_text("\n".join(lines))


def _start(path):
    return subprocess.Popen([sys.executable, "-m", "pyxsw.cli", "run", "-c", str(path)], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _wait_serving(proc, sock):
    def serving():
        assert proc.poll() is None, stderr_of(proc)
        try:
            with Client(sock, timeout=2) as c:
                return all(p["up"] for p in c.port_list())
        except OSError:
            return False
    assert wait_until(serving, timeout=30)


def _stop(proc, sock):
    if proc.poll() is None:
        try:
            with Client(sock) as c:
                c.shutdown()
            proc.wait(timeout=20)
        except (OSError, subprocess.TimeoutExpired):
            proc.kill()
            proc.wait()
    return proc.stderr.read()


def _ctl(sock, *words):
    return subprocess.run([sys.executable, "-m", "pyxsw.cli", "ctl", "-s", sock, *words],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)


@pytest.mark.system
def test_sighup_and_ctl_reload_apply_the_file(lab_factory, tmp_path):
    lab = lab_factory(hosts=3)
    s0, s1, s2 = lab.ports
    path, sock = tmp_path / "sw.toml", str(tmp_path / "sw.sock")
    _write(path, [{"name": s0}, {"name": s1}], sock)
    proc = _start(path)
    try:
        _wait_serving(proc, sock)
        assert ping(lab, 0, 1)
        # a third port, s1 and s2 in VLAN 10, s0 storm-limited, mode, aging, a static entry,
        # and a core change (needs a restart)
        _write(path, [{"name": s0, "flood_limit": 1000}, {"name": s1, "vlan": 10},
                      {"name": s2, "vlan": 10}], sock, mode="interrupt", aging=100, cores=(0,),
               static=[{"mac": A, "port": s0}])
        proc.send_signal(signal.SIGHUP)
        with Client(sock) as c:
            assert wait_until(lambda: len(c.port_list()) == 3 and c.status()["mode"] == "interrupt"
                              and any(e["static"] for e in c.fdb_list()), timeout=20), \
                _stop(proc, sock)
            st = c.status()
            assert st["fdb"]["aging"] == 100 and st["workers"] == [{"queue": 0, "core": 1}]
            info = {p["name"]: p for p in st["ports"]}
            assert info[s0]["flood_limit"] == 1000 and info[s1]["flood_limit"] == 0
            ports = {p["name"]: p for p in c.port_list()}
            assert (ports[s1]["vlan"], ports[s2]["vlan"], ports[s0]["vlan"]) == (10, 10, 1)
            assert [(e["mac"], e["port"], e["vlan"]) for e in c.fdb_list() if e["static"]] == \
                [(A, s0, 1)]
        assert wait_until(lambda: ping(lab, 1, 2), timeout=10)      # the new port forwards
        assert not ping(lab, 0, 1)                                  # VLAN 1 and 10 apart

        # ctl reload: the static entry moves to s2, mode adaptive, a port that cannot be added
        nope = f"{lab.prefix}nope"
        _write(path, [{"name": s0}, {"name": s1, "vlan": 10}, {"name": s2, "vlan": 10},
                      {"name": nope}], sock, mode="adaptive", aging=100, cores=(0,),
               static=[{"mac": B, "port": s2}])
        r = _ctl(sock, "reload")
        assert r.returncode == 1, r.stderr
        assert r.stdout.splitlines() == [
            f"reloaded {path}: 4 changes",
            f"  static {A} vlan 1: removed (was on {s0})",
            f"  port {s0}: flood_limit 1000 -> 0",
            "  mode: interrupt -> adaptive",
            f"  static {B} vlan 10: added on {s2}",
            f"  failed: port {nope}: added (access vlan 1): {nope}: no such interface",
            "  needs a restart: switch.cores (left as it is)"], r.stdout
        with Client(sock) as c:
            assert c.status()["mode"] == "adaptive"
            assert [(e["mac"], e["port"], e["vlan"]) for e in c.fdb_list() if e["static"]] == \
                [(B, s2, 10)]
            before = (c.port_list(), c.status()["mode"], c.status()["fdb"]["aging"])

        # a file with an error: `pyxsw run`'s line, and nothing changes
        path.write_text(path.read_text().replace("aging = 100", "aging = -1"))
        line = _run_line(path)
        assert line == f"{path}: fdb.aging: must be zero or more, got -1"
        r = _ctl(sock, "reload")
        assert (r.returncode, r.stderr) == (1, f"pyxsw ctl: failed: {line}\n")
        proc.send_signal(signal.SIGHUP)
        time.sleep(1)
        with Client(sock) as c:
            assert (c.port_list(), c.status()["mode"], c.status()["fdb"]["aging"]) == before
        assert proc.poll() is None                                  # SIGHUP stops it no more
    finally:
        err = _stop(proc, sock)
    assert "needs a restart: switch.cores" in err and "SIGHUP: reloaded" in err, err
    assert f"reload refused, nothing changed: {line}" in err, err
    assert f"reload: port {s2}: added (access vlan 10)" in err, err


@pytest.mark.system
def test_ctl_save_keeps_run_time_changes_across_a_restart(lab_factory, tmp_path):
    lab = lab_factory(hosts=3)
    s0, s1, s2 = lab.ports
    path, sock, saved = tmp_path / "sw.toml", str(tmp_path / "sw.sock"), tmp_path / "saved.toml"
    _write(path, [{"name": s0}, {"name": s1}], sock)
    proc = _start(path)
    try:
        _wait_serving(proc, sock)
        with Client(sock) as c:
            c.port_add(s2, vlan_mode="trunk", allowed=[10, 20], native=20)
            c.fdb_add(A, s2, vlan=10)
            c.fdb_add(B, s0)
            c.mode_set("interrupt")
            c.aging_set(77)
            assert wait_until(lambda: ping(lab, 0, 1))          # learned entries: not saved
            r = _ctl(sock, "save", "-o", str(saved))
            assert r.returncode == 0, r.stderr
            cfg = Config.load(saved)
            assert cfg == Config.from_dict(c.config_save()["config"])
            # the running state, as the switch shows it
            assert cfg.switch.mode == c.status()["mode"] == "interrupt"
            assert cfg.fdb.aging == c.status()["fdb"]["aging"] == 77
            assert [(p.name, p.vlans.view()) for p in cfg.ports] == \
                [(p["name"], {k: p[k] for k in ("vlan_mode", "vlan", "allowed", "native")})
                 for p in c.port_list()]
            assert sorted((e.mac, e.port, e.vlan) for e in cfg.fdb.static) == \
                sorted((e["mac"], e["port"], e["vlan"]) for e in c.fdb_list() if e["static"]) \
                == sorted([(A, s2, 10), (B, s0, 1)])
        _stop(proc, sock)
        proc = _start(saved)                                    # a restart from the saved file
        _wait_serving(proc, sock)
        with Client(sock) as c:
            assert [p["name"] for p in c.port_list()] == [s0, s1, s2]
            assert c.port_list()[2]["allowed"] == [10, 20] and c.port_list()[2]["native"] == 20
            assert sorted((e["mac"], e["port"], e["vlan"]) for e in c.fdb_list() if e["static"]) \
                == sorted([(A, s2, 10), (B, s0, 1)])
            assert c.status()["mode"] == "interrupt" and c.status()["fdb"]["aging"] == 77
        assert ping(lab, 0, 1)
    finally:
        _stop(proc, sock)
