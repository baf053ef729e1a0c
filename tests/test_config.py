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
fastpath = "xdp"
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
    assert c.switch.fastpath == "off"
    assert (c.switch.frame_size, c.switch.frames, c.switch.ring_size) == (2048, 16384, 2048)
    assert c.switch.max_frame == 9216           # MTU 9000 + 18 with no extra key
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
    assert c.switch.fastpath == "xdp"
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


def test_a_copy_of_sw0_for_another_switch_gets_its_own_socket(tmp_path):
    """A second instance made by copying sw0.toml and renaming the switch must not fight the
    first over the management socket: the example leaves the path to follow the name."""
    copy = tmp_path / "sw1.toml"
    copy.write_text((ROOT / "conf/sw0.toml").read_text().replace('name = "sw0"', 'name = "sw1"'))
    assert Config.load(copy).management.socket == "/run/pyxsw/sw1.sock"


BAD = [
    # (TOML, key, words the reason must contain)
    ("[switch]\nmodee = 'poll'", "switch.modee", "unknown key"),
    ('[switch]\n"mo\\nde" = 1', 'switch."mo\\nde"', "unknown key"),
    ("[swich]\nmode = 'poll'", "swich", "unknown key"),
    ("[fdb]\nttl = 3", "fdb.ttl", "unknown key"),
    ("[management]\npath = '/x'", "management.path", "unknown key"),
    ("[[port]]\nname = 's0'\nmtu = 9000", "port[0].mtu", "unknown key"),
    ("switch = 3", "switch", "expected a table"),
    ("port = 's0'", "port", "array of tables"),
    ("[switch]\nmode = 'turbo'", "switch.mode", "poll, interrupt, adaptive"),
    ("[switch]\nmode = 1", "switch.mode", "expected a string"),
    ("[switch]\nxdp_mode = 'skb'", "switch.xdp_mode", "auto, native, generic"),
    ("[switch]\nfastpath = 'bogus'", "switch.fastpath", "must be one of off, xdp, got 'bogus'"),
    ("[switch]\nfastpath = true", "switch.fastpath", "got a boolean"),
    ("[switch]\nzero_copy = true", "switch.zero_copy", "got a boolean"),
    ("[switch]\nzero_copy = 'yes'", "switch.zero_copy", "auto, on, off"),
    ("[switch]\nframe_size = 1500", "switch.frame_size", "2048 or 4096"),
    ("[switch]\nframe_size = '2048'", "switch.frame_size", "expected an integer"),
    ("[switch]\nmax_frame = 63", "switch.max_frame", "must be at least 64, got 63"),
    ("[switch]\nmax_frame = 0", "switch.max_frame", "positive"),
    ("[switch]\nmax_frame = 24577", "switch.max_frame",
     "must be at most 24576 with frame_size 2048 (a frame spans 18 UMEM frames at most), got 24577"),
    ("[switch]\nframe_size = 4096\nmax_frame = 57345", "switch.max_frame", "at most 57344"),
    ("[switch]\nmax_frame = '9000'", "switch.max_frame", "expected an integer"),
    ("[switch]\nring_size = 4\nbatch = 4", "switch.ring_size",
     "must hold a frame of switch.max_frame 9216 bytes: 6 descriptors of 1792, got 4"),
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
    # sizes beyond what the core's 32-bit counts, its FDB sizing and the kernel hold
    ("[switch]\nframes = 4294967296", "switch.frames", "at most 4294967295"),
    ("[switch]\nring_size = 4294967296", "switch.ring_size", "at most 32768"),
    ("[switch]\nring_size = 2147483648", "switch.ring_size", "at most 32768"),
    ("[switch]\nring_size = 65536", "switch.ring_size", "at most 32768"),
    ("[switch]\nbatch = 4294967296", "switch.batch", "at most 256"),
    ("[fdb]\ncapacity = 4294967296", "fdb.capacity", "at most 16777216"),
    ("[fdb]\ncapacity = 2147483648", "fdb.capacity", "at most 16777216"),
    ("[fdb]\ncapacity = 2147483647", "fdb.capacity", "at most 16777216"),
    ("[fdb]\ncapacity = 1073741825", "fdb.capacity", "at most 16777216"),
    ("[fdb]\naging = 4294967296", "fdb.aging", "at most 4294967295"),
    ("[fdb]\nport_limit = 4294967296", "fdb.port_limit", "at most 16777216"),
    ("[[port]]\nname = 's0'\nflood_limit = 4294967296", "port[0].flood_limit", "at most 4294967295"),
    ("[switch]\nframes = 99999999999999999999999999999999999999999", "switch.frames", "at most"),
    ("[switch]\nframes = 1\n[[port]]\nname = 's0'", "switch.frames", "at least 128"),
    ("[switch]\nframes = 255\ncores = [0, 1]\nbatch = 32\n[[port]]\nname = 's0'\n[[port]]\nname = 's1'",
     "switch.frames", "at least 256"),
    ("[switch]\ncores = [" + ", ".join(map(str, range(17))) + "]", "switch.cores", "at most 16"),
    ("[switch]\ncores = [4294967296]", "switch.cores[0]", "below 8192"),
    ("port = [" + ", ".join(f"{{name = 's{i}'}}" for i in range(65)) + "]", "port", "at most 64"),
    ("[management]\ngroup = '4294967295'", "management.group", "at most 4294967294"),
    ("[management]\nsocket = '/" + "x" * 107 + "'", "management.socket", "at most 107 bytes"),
    # 802.1Q (issue 13)
    ("[[port]]\nname = 's0'\nvlan = 0", "port[0].vlan", "vlan must be an integer 1..4094, got 0"),
    ("[[port]]\nname = 's0'\nvlan = 4095", "port[0].vlan", "1..4094, got 4095"),
    ("[[port]]\nname = 's0'\nvlan = '10'", "port[0].vlan", "must be an integer"),
    ("[[port]]\nname = 's0'\nvlan_mode = 'hybrid'", "port[0].vlan_mode", "access, trunk"),
    ("[[port]]\nname = 's0'\nvlan_mode = 'trunk'\nvlan = 10", "port[0].vlan",
     "vlan is for access ports only"),
    ("[[port]]\nname = 's0'\n[[port]]\nname = 's1'\nallowed = [10]", "port[1].allowed",
     "allowed is for trunk ports only"),
    ("[[port]]\nname = 's0'\nvlan_mode = 'access'\nnative = 1", "port[0].native",
     "native is for trunk ports only"),
    ("[[port]]\nname = 's0'\nvlan_mode = 'trunk'\nallowed = [10, 20]\nnative = 30",
     "port[0].native", "native 30 is not one of the trunk's allowed VLANs (10,20)"),
    ("[[port]]\nname = 's0'\nvlan_mode = 'trunk'\nnative = 4095", "port[0].native",
     "0..4094"),
    ("[[port]]\nname = 's0'\nvlan_mode = 'trunk'\nallowed = [10, 4095]", "port[0].allowed",
     "1..4094, got 4095"),
    ("[[port]]\nname = 's0'\nvlan_mode = 'trunk'\nallowed = [0]", "port[0].allowed",
     "1..4094, got 0"),
    ("[[port]]\nname = 's0'\nvlan_mode = 'trunk'\nallowed = []", "port[0].allowed",
     "at least one VLAN"),
    ("[[port]]\nname = 's0'\nvlan_mode = 'trunk'\nallowed = ['30-20']", "port[0].allowed",
     "backwards"),
    ("[[port]]\nname = 's0'\nvlan_mode = 'trunk'\nallowed = 10", "port[0].allowed",
     "must be a list of VLANs"),
    ("[[port]]\nname = 's0'\nvlan_mode = 'trunk'\nallowed = [true]", "port[0].allowed",
     "got True in it"),
    ("[[port]]\nname = 's0'\nvlna = 10", "port[0].vlna", "did you mean 'vlan'?"),
]


@pytest.mark.parametrize("text,key,reason", BAD, ids=[b[1] + ":" + b[2] for b in BAD])
def test_errors_name_file_and_key_in_one_line(tmp_path, text, key, reason):
    e = error(tmp_path, text)
    path = str(tmp_path / "sw.toml")
    assert (e.source, e.key) == (path, key)
    assert reason in e.reason
    assert str(e) == f"{path}: {key}: {e.reason}"
    assert "\n" not in str(e)


@pytest.mark.parametrize("d,key,reason", [
    ({"switch": {"modee": "poll"}}, "switch.modee", "unknown key (did you mean 'mode'?)"),
    ({"swich": {}}, "swich", "unknown key (did you mean 'switch'?)"),
    ({"fdb": {"capacty": 1}}, "fdb.capacty", "unknown key (did you mean 'capacity'?)"),
    ({"management": {"max_client": 1}}, "management.max_client",
     "unknown key (did you mean 'max_clients'?)"),
    ({"port": [{"name": "s0", "flood_limt": 1}]}, "port[0].flood_limt",
     "unknown key (did you mean 'flood_limit'?)"),
    ({"fdb": {"ttl": 3}}, "fdb.ttl", "unknown key"),           # nothing close: no guess
])
def test_unknown_keys_suggest_the_closest(d, key, reason):
    with pytest.raises(ConfigError) as e:
        Config.from_dict(d, source="<t>")
    assert (e.value.key, e.value.reason) == (key, reason)


def test_unparseable_toml_is_one_line(tmp_path):
    e = error(tmp_path, "[switch\nmode = ")
    assert e.key == "-" and str(e).startswith(f"{tmp_path / 'sw.toml'}: -: not valid TOML")
    assert "\n" not in str(e)


def test_frames_enough_for_every_socket_is_accepted():
    # exactly 2 x batch per socket (ports x queues), the core's rule in Datapath.port_add
    d = {"switch": {"frames": 256, "batch": 32, "cores": [0, 1]}, "port": [{"name": "s0"}, {"name": "s1"}]}
    assert Config.from_dict(d).switch.frames == 256


def test_the_largest_accepted_sizes():
    c = Config.from_dict({"switch": {"frames": 2**32 - 1, "ring_size": 32768, "batch": 256},
                          "fdb": {"capacity": 2**24, "aging": 2**32 - 1, "port_limit": 2**24},
                          "management": {"group": "4294967294"},
                          "port": [{"name": "s0", "flood_limit": 2**32 - 1}]})
    assert (c.switch.frames, c.fdb.capacity, c.ports[0].flood_limit) == (2**32 - 1, 2**24, 2**32 - 1)


@pytest.mark.parametrize("data,words", [
    (b"[switch]\nname = \"sw\xff0\"\n", "not valid UTF-8: byte 0xff at offset 19"),
    (b"\xfe\xff[switch]\n", "not valid UTF-8: byte 0xfe at offset 0"),
    (b"x = " + b"[" * 2000 + b"]" * 2000 + b"\n", "nested too deeply"),
    (b"x = " + b"{a = " * 2000 + b"1" + b"}" * 2000 + b"\n", "nested too deeply"),
    (b"[fdb]\ncapacity = " + b"9" * 5000 + b"\n", "not valid TOML"),
])
def test_files_the_parser_cannot_take_are_one_line(tmp_path, data, words):
    path = tmp_path / "sw.toml"
    path.write_bytes(data)
    with pytest.raises(ConfigError) as e:
        Config.load(path)
    assert e.value.key == "-" and words in e.value.reason, e.value
    assert str(e.value).startswith(f"{path}: -: ") and len(str(e.value).splitlines()) == 1


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


def test_run_with_a_bad_fastpath_exits_2_naming_the_key(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[switch]\nfastpath = 'bogus'\n")
    r = run_cli("run", "-c", str(bad))
    assert (r.returncode, r.stdout) == (2, "")
    assert r.stderr == f"{bad}: switch.fastpath: must be one of off, xdp, got 'bogus'\n"


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


@pytest.mark.parametrize("listen,address", [
    ("127.0.0.1:9477", ("127.0.0.1", 9477)), ("[::1]:9477", ("::1", 9477)),
    ("0.0.0.0:1", ("0.0.0.0", 1)), ("[::]:65535", ("::", 65535)),
    ("localhost:9477", ("localhost", 9477)), ("[fe80::1%2]:9", None)])
def test_metrics_listen(listen, address):
    assert Config.from_dict({}).metrics.address is None          # off when absent
    assert Config.from_dict({"metrics": {}}).metrics.address is None
    if address is None:
        with pytest.raises(ConfigError) as e:
            Config.from_dict({"metrics": {"listen": listen}})
        assert e.value.key == "metrics.listen"
        return
    cfg = Config.from_dict({"metrics": {"listen": listen}})
    assert cfg.metrics.address == address and Config.from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize("listen,reason", [
    (9477, "expected a string, got an integer"),
    ("", "must be host:port or [IPv6]:port, got ''"),
    (":9477", "name the address to listen on (0.0.0.0:9477 or [::]:9477 for every address)"),
    ("127.0.0.1", "must be host:port or [IPv6]:port"),
    ("::1:9477", "must be host:port or [IPv6]:port"),
    ("127.0.0.1:0", "the port must be 1..65535"),
    ("127.0.0.1:65536", "the port must be 1..65535"),
    ("256.0.0.1:80", "not an IPv4 address"),
    ("[127.0.0.1]:80", "not an IPv6 address in brackets"),
    ("my host:80", "not an IPv4 address or a host name"),
])
def test_metrics_listen_errors_name_the_key(tmp_path, listen, reason):
    e = error(tmp_path, f"[metrics]\nlisten = {json.dumps(listen)}\n")
    assert e.key == "metrics.listen" and reason in e.reason and "\n" not in str(e)


def test_metrics_unknown_key():
    with pytest.raises(ConfigError) as e:
        Config.from_dict({"metrics": {"listn": "127.0.0.1:9477"}})
    assert str(e.value) == "<dict>: metrics.listn: unknown key (did you mean 'listen'?)"


def test_port_flood_limit():
    cfg = Config.from_dict({"port": [{"name": "s0", "flood_limit": 500}, {"name": "s1"}]})
    assert [p.flood_limit for p in cfg.ports] == [500, 0]
    for bad in (-1, "many", 1.5, True):
        with pytest.raises(ConfigError) as e:
            Config.from_dict({"port": [{"name": "s0", "flood_limit": bad}]})
        assert "port[0].flood_limit" in str(e.value)


# ---------------------------------------------------------------------------- every key, any value

import dataclasses  # noqa: E402
import datetime  # noqa: E402
import json  # noqa: E402
import re  # noqa: E402

from hypothesis import given, settings, strategies as st  # noqa: E402

from pyxsw import config as config_mod  # noqa: E402
from pyxsw.config import (FdbSection, ManagementSection, MetricsSection, PortSection,  # noqa: E402
                          SwitchSection)

SECTIONS = {"switch": SwitchSection, "fdb": FdbSection, "management": ManagementSection,
            "metrics": MetricsSection, "port": PortSection}
FIELDS = {s: [f.name for f in dataclasses.fields(cls)] for s, cls in SECTIONS.items()}
# Every key an error may name: "-", a section, a key of one (an array's element for cores and
# port), or "bogus", the one unknown key the strategies below put anywhere.
KEY = re.compile("|".join([
    r"-|bogus|switch|fdb|management|metrics|port|port\[\d+\]|switch\.cores\[\d+\]",
    r"fdb\.static\[\d+\](\.(mac|port|vlan))?",
    *(rf"{s}\.(bogus|{'|'.join(f)})" for s, f in FIELDS.items() if s != "port"),
    rf"port\[\d+\]\.(bogus|{'|'.join(FIELDS['port'])})",
]))
BOUNDARY = [0, 1, -1, 2**31 - 1, 2**31, 2**32 - 1, 2**32, 2**63 - 1, 2**64, -(2**63), 2**1000]
INTS = st.one_of(st.sampled_from(BOUNDARY), st.integers(-3, 70000), st.integers())
# Anything TOML can hold, nested.
SCALARS = st.one_of(INTS, st.booleans(), st.floats(), st.text(max_size=20), st.datetimes(),
                    st.datetimes(timezones=st.just(datetime.timezone.utc)), st.dates(), st.times())
ANY = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3)
                   | st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=8)
# Values near the good ones, so that many examples pass and the checks between keys are met.
NEAR = {
    "name": st.from_regex(r"[a-z0-9_.-]{1,16}", fullmatch=True),
    "mode": st.sampled_from(config_mod.MODES), "xdp_mode": st.sampled_from(config_mod.XDP_MODES),
    "zero_copy": st.sampled_from(config_mod.ZERO_COPY),
    "priority": st.sampled_from(["idle", "normal"]),
    "cores": st.lists(st.one_of(st.integers(0, 3), INTS), min_size=1, max_size=3),
    "frame_size": st.sampled_from([2048, 4096, 1500]),
    "max_frame": st.sampled_from([1, 64, 1518, 9216, 24576, 24577, 57344, 2**32]),
    "ring_size": st.sampled_from([2**k for k in range(0, 33)]),
    "batch": st.sampled_from([1, 32, 64, 256, 257]),
    "frames": st.one_of(st.integers(1, 2**16), st.integers(2**31, 2**33)),
    "socket": st.text(max_size=30).map(lambda t: "/tmp/" + t),
    "group": st.sampled_from(["", "0", "root", "4294967294", "4294967295", "no-such-group"]),
    "aging": st.integers(0, 2**33), "capacity": st.integers(1, 2**25),
    "port_limit": st.integers(0, 2**25), "flood_limit": st.integers(0, 2**33),
    "forward_reserved": st.booleans(), "max_clients": st.integers(0, 2**17),
    "listen": st.sampled_from(["127.0.0.1:9477", "[::1]:1", "localhost:65535", ":9477",
                               "127.0.0.1:0", "[::1]:99999", "1.2.3.4.5:6", ""]),
}


def mostly(good, bad):
    # three draws in four from `good`: most examples get far enough to meet every check
    return st.one_of(good, good, good, bad)


def value(key):
    return mostly(NEAR.get(key, INTS), st.one_of(INTS, ANY))


def section(name, bogus):
    return st.fixed_dictionaries({}, optional={**{k: value(k) for k in FIELDS[name]},
                                               **({"bogus": ANY} if bogus else {})})


def config(bogus):
    port = st.fixed_dictionaries({"name": mostly(st.sampled_from(["s0", "s1", "s2"]), ANY)},
                                 optional={"flood_limit": value("flood_limit"),
                                           "forward_reserved": value("forward_reserved"),
                                           **({"bogus": ANY} if bogus else {})})
    return st.fixed_dictionaries({}, optional={
        **{s: mostly(section(s, bogus), ANY) for s in ("switch", "fdb", "management",
                                                        "metrics")},
        "port": mostly(st.lists(mostly(port, ANY), max_size=3), ANY),
        **({"bogus": ANY} if bogus else {})})


CONFIG = mostly(config(bogus=False), config(bogus=True))


def unknown_keys(d):
    """The dotted names of the keys in d that are no config key, as TOML writes them."""
    def name(k):
        return k if re.fullmatch(r"[A-Za-z0-9_-]+", k) else json.dumps(k)
    out = {name(k) for k in d if k not in SECTIONS}
    for s in ("switch", "fdb", "management", "metrics"):
        if isinstance(d.get(s), dict):
            out |= {f"{s}.{name(k)}" for k in d[s] if k not in FIELDS[s]}
    for i, p in enumerate(d.get("port") if isinstance(d.get("port"), list) else []):
        if isinstance(p, dict):
            out |= {f"port[{i}].{name(k)}" for k in p if k not in FIELDS["port"]}
    fdb = d.get("fdb") if isinstance(d.get("fdb"), dict) else {}
    for i, e in enumerate(fdb.get("static") if isinstance(fdb.get("static"), list) else []):
        if isinstance(e, dict):
            out |= {f"fdb.static[{i}].{name(k)}" for k in e if k not in ("mac", "port", "vlan")}
    return out


def fits_the_core(c):
    """Build a Datapath from an accepted config: every value must convert to the core's C types
    (frames and capacity are built small, for memory, and checked against the types)."""
    from pyxsw._core import Datapath
    core = Datapath(umem=False, frames=min(c.switch.frames, 4096), frame_size=c.switch.frame_size,
                max_frame=c.switch.max_frame,
                ring_size=c.switch.ring_size, batch=c.switch.batch, workers=len(c.switch.cores),
                capacity=min(c.fdb.capacity, 1024), port_limit=c.fdb.port_limit,
                aging=c.fdb.aging, mode=c.switch.mode)
    try:
        for p in c.ports:
            core.add_virtual_port(p.name, flood_limit=p.flood_limit,
                                  forward_reserved=p.forward_reserved)
    finally:
        core.close()
    # uint32_t frames; the FDB's slots (2 x capacity, a power of two) indexed in 32 bits.
    # (That the file's bounds are the core's own: test_bounds_are_the_cores.)
    assert c.switch.frames < 2**32 and c.fdb.capacity <= 2**30 and len(c.ports) <= 64


@settings(max_examples=1000, deadline=None)
@given(d=CONFIG)
def test_any_value_of_any_key_is_a_config_or_one_clear_line(d):
    try:
        c = Config.from_dict(d, source="<t>")
    except ConfigError as e:
        if e.reason.startswith("unknown key"):
            assert e.key in unknown_keys(d), e.key
        else:
            assert KEY.fullmatch(e.key), e.key
        assert e.reason.strip() and len(str(e).splitlines()) == 1, str(e)
        assert str(e) == f"<t>: {e.key}: {e.reason}"
    else:
        assert Config.from_dict(c.to_dict()) == c
        fits_the_core(c)


# Every integer key of every section, with every boundary value.
INT_KEYS = [(s, f.name) for s, cls in SECTIONS.items() for f in dataclasses.fields(cls)
            if f.type == "int"]


@pytest.mark.parametrize("sec,key,value", [(s, k, v) for s, k in INT_KEYS for v in BOUNDARY],
                         ids=[f"{s}.{k}={v if abs(v) < 2**70 else 'huge'}"
                              for s, k in INT_KEYS for v in BOUNDARY])
def test_boundary_integers_of_every_size(sec, key, value):
    d = {"port": [{"name": "s0", key: value}]} if sec == "port" else {sec: {key: value}}
    if key == "ring_size":
        d["switch"]["batch"] = 1            # batch <= ring_size is batch's check
    try:
        c = Config.from_dict(d)
    except ConfigError as e:
        assert e.key == (f"port[0].{key}" if sec == "port" else f"{sec}.{key}")
        assert e.reason and "\n" not in str(e)
    else:
        fits_the_core(c)


def test_integers_too_long_to_print_are_described():
    # str() refuses ints of over 4300 digits: the reason must not try
    for v in (10**5000, -(10**5000)):
        with pytest.raises(ConfigError) as e:
            Config.from_dict({"fdb": {"capacity": v}})
        assert e.value.reason.endswith("got an integer of 16610 bits")


def test_bounds_are_the_cores():
    from pyxsw._core import LIMITS
    assert LIMITS == {"frames": config_mod.MAX_FRAMES, "ring_size": config_mod.MAX_RING_SIZE,
                      "batch": config_mod.MAX_BATCH, "workers": config_mod.MAX_WORKERS,
                      "ports": config_mod.MAX_PORTS, "capacity": config_mod.MAX_CAPACITY,
                      "port_limit": 2**32 - 1, "aging": config_mod.MAX_AGING,
                      "flood_limit": config_mod.MAX_FLOOD_LIMIT, "fragments": config_mod.MAX_FRAGS}
    assert config_mod.MAX_PORT_LIMIT <= LIMITS["port_limit"]


# ---------------------------------------------------------------------------- the core's own checks

@pytest.mark.parametrize("param,value", [
    ("frames", 2**32), ("frames", 0), ("frames", -1), ("ring_size", 2**31), ("ring_size", 65536),
    ("ring_size", 2**32), ("ring_size", 3), ("batch", 2**32), ("batch", 4096), ("capacity", 2**31),
    ("capacity", 2**32), ("capacity", 0), ("aging", 2**32), ("aging", -1), ("port_limit", 2**32),
    ("workers", 17), ("frame_size", 2**32), ("frames", True), ("capacity", 1.5),
    ("max_frame", 63), ("max_frame", 24577), ("max_frame", 2**32)])
def test_core_refuses_what_it_cannot_hold_naming_the_parameter(param, value):
    from pyxsw._core import Datapath
    with pytest.raises(ValueError) as e:
        Datapath(umem=False, **{param: value})
    assert e.value.param == param and str(e.value).startswith(param)


@pytest.mark.parametrize("capacity", [2**30 + 1, 2**31 - 1])
def test_fdb_sizing_never_spins(capacity):
    # In 32 bits, doubling the table's size past 2**31 wrapped to 0 and the loop never ended.
    code = ("from pyxsw._core import Datapath\n"
            f"try:\n    Datapath(umem=False, capacity={capacity})\n"
            "except ValueError as e:\n    print(e.param, e)\n")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                       timeout=30)
    assert r.stdout.startswith("capacity capacity must be 1..16777216"), (r.stdout, r.stderr)


def test_fdb_table_is_sized_for_its_capacity():
    from pyxsw._core import LIMITS, Datapath, fdb_memory
    for capacity, slots in [(1, 64), (32, 64), (33, 128), (65536, 131072), (2**24, 2**25)]:
        c = Datapath(umem=False, capacity=capacity)
        assert c.fdb_counters()["slots"] == slots
        c.close()
        assert fdb_memory(capacity) == 2 * slots * 28       # two tables while one is rebuilt
    assert fdb_memory(LIMITS["capacity"]) == 1792 * 2**20


# ---------------------------------------------------------------------------- checks at start

def test_memory_the_machine_lacks_is_refused_at_start(monkeypatch):
    import os
    from pyxsw import switch
    cores = [min(os.sched_getaffinity(0))]
    monkeypatch.setattr(switch, "_meminfo", lambda: (2**30, 2**29))        # 1 GiB, 512 available
    for d, key, words in [
            ({"frames": 2**18, "frame_size": 4096}, "switch.frames",
             "262144 frames of 4096 bytes need 1.0 GiB of memory; this machine has 512 MiB "
             "available of 1 GiB"),
            ({"frames": 2**16}, "fdb.capacity",
             "an FDB of 16777216 entries needs up to 1.8 GiB of memory, with the UMEM's 128.5 MiB")]:
        cfg = Config.from_dict({"switch": dict(d, cores=cores), "fdb": {"capacity": 2**24}})
        with pytest.raises(switch.SwitchError) as e:
            switch.Switch(cfg).start()
        assert e.value.key == key and words in str(e.value), str(e.value)
        assert not e.value.temporary        # more than the machine has: the file is wrong
    # More than is available but less than the machine has: it may be freed (exit 75)
    cfg = Config.from_dict({"switch": {"frames": 2**17, "frame_size": 4096, "cores": cores}})
    with pytest.raises(switch.SwitchError) as e:
        switch.Switch(cfg).start()
    assert e.value.key == "switch.frames" and e.value.temporary, str(e.value)


@pytest.mark.parametrize("section,name,value,key", [
    ("switch", "ring_size", 3, "switch.ring_size"), ("switch", "batch", 300, "switch.batch"),
    ("switch", "frame_size", 1000, "switch.frame_size"), ("fdb", "capacity", 0, "fdb.capacity"),
    ("fdb", "capacity", 2**31, "fdb.capacity"), ("fdb", "aging", -1, "fdb.aging"),
    ("fdb", "port_limit", 2**32, "fdb.port_limit")])
def test_core_errors_at_start_name_their_key(section, name, value, key):
    # Values the file refuses, given to Switch directly: the core's own checks name the key
    # (they were all reported as switch.frames, or escaped as an OverflowError).
    import os
    from pyxsw.switch import Switch, SwitchError
    sw_section = SwitchSection(cores=[min(os.sched_getaffinity(0))])
    cfg = Config(switch=sw_section, fdb=FdbSection())
    cfg = dataclasses.replace(cfg, **{section: dataclasses.replace(getattr(cfg, section),
                                                                   **{name: value})})
    sw = Switch(cfg)
    try:
        with pytest.raises(SwitchError) as e:
            sw.start()
    finally:
        sw.stop()
    assert e.value.key == key and str(e.value).startswith(name), str(e.value)


def test_management_group_may_be_a_gid():
    from pyxsw.mgmt.server import Server, ServerError
    assert Server(None, "/tmp/x.sock", group="0")._gid() == 0
    assert Server(None, "/tmp/x.sock", group="4294967294")._gid() == 4294967294
    with pytest.raises(ServerError) as e:
        Server(None, "/tmp/x.sock", group="no-such-group-pyxsw")._gid()
    assert e.value.key == "management.group" and "no such group" in str(e.value)


def test_port_vlans(tmp_path):
    c = load_text(tmp_path, """
[[port]]
name = "s0"
[[port]]
name = "s1"
vlan = 10
[[port]]
name = "s2"
vlan_mode = "trunk"
allowed = [10, 20, "100-102"]
native = 20
[[port]]
name = "s3"
vlan_mode = "trunk"
[[port]]
name = "s4"
vlan_mode = "trunk"
allowed = "10,20"
""")
    assert [p.vlans for p in c.ports] == [
        ("access", 1, None, 0),                         # no VLAN keys: access on VLAN 1
        ("access", 10, None, 0),
        ("trunk", 0, (10, 20, 100, 101, 102), 20),
        ("trunk", 0, None, 1),                          # every VLAN; native 1
        ("trunk", 0, (10, 20), 0)]                      # 1 not allowed: no native
    assert Config.from_dict(c.to_dict()) == c
    assert c.to_dict()["port"][0] == {"name": "s0", "flood_limit": 0, "forward_reserved": False,
                                      "vlan_mode": "access", "vlan": 1}
    assert c.to_dict()["port"][3] == {"name": "s3", "flood_limit": 0, "forward_reserved": False,
                                      "vlan_mode": "trunk", "native": 1}


def test_run_with_a_bad_vlan_exits_2_with_one_line(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[[port]]\nname = 's0'\n[[port]]\nname = 's1'\nvlan_mode = 'trunk'\n"
                   "allowed = [10, 20]\nnative = 1\n")
    r = run_cli("run", "-c", str(bad))
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr == (f"{bad}: port[1].native: native 1 is not one of the trunk's allowed "
                        f"VLANs (10,20): add it to allowed, or use 0 for none\n")
