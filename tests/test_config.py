"""Configuration: defaults, every key, and one clear line for every kind of mistake (no root)."""
import subprocess
import sys
from pathlib import Path

import pytest

from pyxsw.config import Config, ConfigError

ROOT = Path(__file__).resolve().parent.parent

FULL = """
[switch]
name = "edge-1"
mode = "adaptive"
cores = [0, 1]
batch = 32
xdp_mode = "generic"
zero_copy = "off"
frame_size = 4096
frames = 8192
ring_size = 1024

[fdb]
aging = 0
capacity = 1000
port_limit = 10

[management]
socket = "/tmp/edge.sock"

[[port]]
name = "eth1"

[[port]]
name = "veth-x.10"
"""


def load_text(tmp_path, text, name="sw.toml"):
    path = tmp_path / name
    path.write_text(text)
    return Config.load(path)


def error(tmp_path, text):
    with pytest.raises(ConfigError) as e:
        load_text(tmp_path, text)
    return e.value


def test_defaults():
    c = Config.from_dict({})
    assert (c.switch.name, c.switch.mode, c.switch.cores, c.switch.batch) == ("sw0", "poll", [1], 64)
    assert (c.switch.xdp_mode, c.switch.zero_copy) == ("auto", "auto")
    assert (c.switch.frame_size, c.switch.frames, c.switch.ring_size) == (2048, 16384, 2048)
    assert (c.fdb.aging, c.fdb.capacity, c.fdb.port_limit) == (300, 65536, 0)
    assert c.management.socket == "/run/pyxsw/sw0.sock"
    assert c.ports == []                     # zero ports: they can be added at run time
    assert c == Config()


def test_socket_default_follows_name():
    assert Config.from_dict({"switch": {"name": "core7"}}).management.socket == "/run/pyxsw/core7.sock"


def test_every_key(tmp_path):
    c = load_text(tmp_path, FULL)
    assert c.switch.name == "edge-1" and c.switch.mode == "adaptive"
    assert c.switch.cores == [0, 1] and c.switch.batch == 32
    assert c.switch.xdp_mode == "generic" and c.switch.zero_copy == "off"
    assert (c.switch.frame_size, c.switch.frames, c.switch.ring_size) == (4096, 8192, 1024)
    assert (c.fdb.aging, c.fdb.capacity, c.fdb.port_limit) == (0, 1000, 10)
    assert c.management.socket == "/tmp/edge.sock"
    assert [p.name for p in c.ports] == ["eth1", "veth-x.10"]
    assert c.source == str(tmp_path / "sw.toml")


def test_to_dict_round_trips(tmp_path):
    c = load_text(tmp_path, FULL)
    assert Config.from_dict(c.to_dict()) == c
    assert Config.from_dict(Config().to_dict()) == Config()


def test_frozen():
    c = Config.from_dict({})
    with pytest.raises(AttributeError):
        c.switch.mode = "interrupt"


@pytest.mark.parametrize("path", ["conf/sw0.toml", "conf/lab3.toml"])
def test_shipped_examples_load(path):
    c = Config.load(ROOT / path)
    assert c.ports and all(p.name.startswith("s") for p in c.ports)


def test_sw0_example_shows_the_defaults():
    c = Config.load(ROOT / "conf/sw0.toml")
    assert c == Config.from_dict({"port": [{"name": "s0"}, {"name": "s1"}]})


BAD = [
    # (TOML, key, words the reason must contain)
    ("[switch]\nmodee = 'poll'", "switch.modee", "unknown key"),
    ("[swich]\nmode = 'poll'", "swich", "unknown key"),
    ("[fdb]\nttl = 3", "fdb.ttl", "unknown key"),
    ("[management]\npath = '/x'", "management.path", "unknown key"),
    ("[[port]]\nname = 's0'\nmtu = 9000", "port[0].mtu", "unknown key"),
    ("switch = 3", "switch", "expected a table"),
    ("port = 's0'", "port", "array of tables"),
    ("[switch]\nmode = 'turbo'", "switch.mode", "poll, interrupt, adaptive"),
    ("[switch]\nmode = 1", "switch.mode", "expected a string"),
    ("[switch]\nxdp_mode = 'skb'", "switch.xdp_mode", "auto, native, generic"),
    ("[switch]\nzero_copy = true", "switch.zero_copy", "got a boolean"),
    ("[switch]\nzero_copy = 'yes'", "switch.zero_copy", "auto, on, off"),
    ("[switch]\nframe_size = 1500", "switch.frame_size", "2048 or 4096"),
    ("[switch]\nframe_size = '2048'", "switch.frame_size", "expected an integer"),
    ("[switch]\nframes = 0", "switch.frames", "positive"),
    ("[switch]\nframes = -5", "switch.frames", "positive"),
    ("[switch]\nframes = 16384.0", "switch.frames", "got a float"),
    ("[switch]\nbatch = true", "switch.batch", "got a boolean"),
    ("[switch]\nbatch = 0", "switch.batch", "positive"),
    ("[switch]\nbatch = 512\nring_size = 4096", "switch.batch", "at most 256"),
    ("[switch]\nbatch = 128\nring_size = 64", "switch.batch", "at most ring_size"),
    ("[switch]\nring_size = 1000", "switch.ring_size", "power of two"),
    ("[switch]\nring_size = 0", "switch.ring_size", "positive"),
    ("[switch]\ncores = []", "switch.cores", "at least one"),
    ("[switch]\ncores = 1", "switch.cores", "expected an array"),
    ("[switch]\ncores = [0, -1]", "switch.cores[1]", "zero or more"),
    ("[switch]\ncores = [1, 0, 1]", "switch.cores[2]", "twice"),
    ("[switch]\ncores = [true]", "switch.cores[0]", "got a boolean"),
    ("[switch]\nname = 'a/b'", "switch.name", "letters, digits"),
    ("[switch]\nname = ''", "switch.name", "letters, digits"),
    ("[fdb]\naging = -1", "fdb.aging", "zero or more"),
    ("[fdb]\naging = false", "fdb.aging", "got a boolean"),
    ("[fdb]\ncapacity = 0", "fdb.capacity", "positive"),
    ("[fdb]\ncapacity = -3", "fdb.capacity", "positive"),
    ("[fdb]\nport_limit = -1", "fdb.port_limit", "zero or more"),
    ("[management]\nsocket = 'run/sw0.sock'", "management.socket", "absolute"),
    ("[management]\nsocket = 7", "management.socket", "expected a string"),
    ("[management]\nmax_clients = 0", "management.max_clients", "positive"),
    ("[management]\nmax_clients = '256'", "management.max_clients", "expected an integer"),
    ("[management]\nmax_clients = 1e3", "management.max_clients", "got a float"),
    ("[management]\nmax_clients = 70000", "management.max_clients", "at most 65536"),
    ("[[port]]\nname = 's0'\n[[port]]\nname = 's0'", "port[1].name", "twice"),
    ("[[port]]\nname = 'a-very-long-ifname'", "port[0].name", "interface name"),
    ("[[port]]\nname = ''", "port[0].name", "interface name"),
    ("[[port]]\nname = 'a/b'", "port[0].name", "interface name"),
    ("[[port]]\nname = 'eth0:1'", "port[0].name", "interface name"),
    ("[[port]]\nname = 'a b'", "port[0].name", "interface name"),
    ("[[port]]\nname = 's0'\n[[port]]\nmtu = 1", "port[1].mtu", "unknown key"),
    ("[[port]]\nname = 1", "port[0].name", "expected a string"),
    ("[[port]]", "port[0].name", "missing"),
]


@pytest.mark.parametrize("text,key,reason", BAD, ids=[b[1] + ":" + b[2] for b in BAD])
def test_errors_name_file_and_key_in_one_line(tmp_path, text, key, reason):
    e = error(tmp_path, text)
    path = str(tmp_path / "sw.toml")
    assert (e.source, e.key) == (path, key)
    assert reason in e.reason
    assert str(e) == f"{path}: {key}: {e.reason}"
    assert "\n" not in str(e)


def test_unparseable_toml_is_one_line(tmp_path):
    e = error(tmp_path, "[switch\nmode = ")
    assert e.key == "-" and str(e).startswith(f"{tmp_path / 'sw.toml'}: -: not valid TOML")
    assert "\n" not in str(e)


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError) as e:
        Config.load(tmp_path / "nope.toml")
    assert str(e.value) == f"{tmp_path / 'nope.toml'}: -: cannot read: No such file or directory"


def test_from_dict_names_its_source():
    with pytest.raises(ConfigError) as e:
        Config.from_dict({"fdb": {"aging": "5m"}}, source="<api>")
    assert str(e.value) == "<api>: fdb.aging: expected an integer, got a string"


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "pyxsw.cli", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)


def test_run_with_bad_config_exits_2_with_one_line(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[switch]\nmode = 'turbo'\n")
    r = run_cli("run", "-c", str(bad))
    assert r.returncode == 2
    assert r.stderr == (f"{bad}: switch.mode: must be one of poll, interrupt, adaptive, "
                        f"got 'turbo'\n")
    assert r.stdout == ""


def test_run_with_missing_file_exits_2(tmp_path):
    r = run_cli("run", "-c", str(tmp_path / "none.toml"))
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and ": -: cannot read" in r.stderr


def test_python_dash_m_pyxsw_is_the_cli():
    r = subprocess.run([sys.executable, "-m", "pyxsw", "--help"], cwd=ROOT,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "run" in r.stdout and "demo" in r.stdout


def test_ctl_without_a_switch_says_so(tmp_path):
    r = run_cli("ctl", "-s", str(tmp_path / "none.sock"), "status")
    assert r.returncode == 3 and "none.sock" in r.stderr


def test_management_priority_key():
    assert Config.from_dict({}).management.priority == "idle"
    assert Config.from_dict({"management": {"priority": "normal"}}).management.priority == "normal"
    for bad in ("low", 19, ""):
        with pytest.raises(ConfigError) as e:
            Config.from_dict({"management": {"priority": bad}})
        assert "management.priority" in str(e.value)


def test_management_group_key():
    cfg = Config.from_dict({"management": {"group": "pyxsw"}})
    assert cfg.management.group == "pyxsw" and Config.from_dict({}).management.group == ""
    with pytest.raises(ConfigError) as e:
        Config.from_dict({"management": {"group": "bad group"}})
    assert "management.group" in str(e.value)


def test_management_max_clients_key():
    assert Config.from_dict({}).management.max_clients == 256
    cfg = Config.from_dict({"management": {"max_clients": 4}})
    assert cfg.management.max_clients == 4 and Config.from_dict(cfg.to_dict()) == cfg


def test_run_with_bad_max_clients_exits_2_with_one_line(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[management]\nmax_clients = -1\n")
    r = run_cli("run", "-c", str(bad))
    assert r.returncode == 2
    assert r.stderr == f"{bad}: management.max_clients: must be positive, got -1\n"


def test_port_flood_limit():
    cfg = Config.from_dict({"port": [{"name": "s0", "flood_limit": 500}, {"name": "s1"}]})
    assert [p.flood_limit for p in cfg.ports] == [500, 0]
    for bad in (-1, "many", 1.5, True):
        with pytest.raises(ConfigError) as e:
            Config.from_dict({"port": [{"name": "s0", "flood_limit": bad}]})
        assert "port[0].flood_limit" in str(e.value)
