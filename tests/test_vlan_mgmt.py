"""VLAN management (issue 13) without root: the real Switch's VLAN calls into the datapath,
on a stand-in that records them (the core's VLAN functions come with the datapath side of
the issue; its forwarding tests are the system tests), and the one set of VLAN rules that
the configuration, the RPC methods and `pyxsw ctl` share."""
import argparse
from types import SimpleNamespace

import pytest
from hypothesis import given, settings, strategies as st

from pyxsw import config, vocab
from pyxsw.config import Config, ConfigError
from pyxsw.mgmt import RpcError, ctl, handlers
from pyxsw.mgmt.fake import FakeSwitch
from pyxsw.switch import Port, Switch


class RecordingDatapath:
    """The calls the switch makes, as (name, args); answers as the core would."""

    def __init__(self, fdb=()):
        self.calls = []
        self.fdb = list(fdb)            # (mac, vlan, port index, age, static)

    def __getattr__(self, name):
        def call(*args, **kw):
            self.calls.append((name, args, kw))
            return {"fdb_flush": 3, "fdb_flush_not_carried": 2, "fdb_add": True,
                    "fdb_del": True, "fdb_list": self.fdb}.get(name)
        return call


@pytest.fixture
def sw():
    s = Switch(Config.from_dict({}))
    s.dp = RecordingDatapath()
    s.ports = {"s0": Port("s0", 0, 2, None, None), "s1": Port("s1", 1, 3, None, None)}
    events = []
    s.add_listener(events.append)
    s.events = events
    yield s
    s.dp = None


def test_port_set_tells_the_datapath_then_flushes_what_is_no_longer_carried(sw):
    vlans = vocab.port_vlan("trunk", allowed=[10, 20], native=10)
    assert sw.port_set("s1", vlans) == 2
    assert [c[0] for c in sw.dp.calls] == ["port_set_vlan", "wait_grace",
                                           "fdb_flush_not_carried"]
    assert sw.dp.calls[0][1] == (1, "trunk", 0, [10, 20], 10)
    assert sw.dp.calls[2][1] == (1,)
    assert sw.ports["s1"].vlans == vlans
    assert [{k: v for k, v in e.items() if k != "time"} for e in sw.events] == \
        [{"event": "fdb.flush", "port": "s1", "count": 2}]
    sw.dp.calls.clear()
    sw.port_set("s0", vocab.port_vlan(vlan=30))
    assert sw.dp.calls[0][1] == (0, "access", 30, None, 0)
    sw.dp.calls.clear()
    sw.port_set("s0", vocab.port_vlan("trunk"))             # every VLAN: allowed None
    assert sw.dp.calls[0][1] == (0, "trunk", 0, None, 1)
    with pytest.raises(KeyError):
        sw.port_set("s9", vlans)


def test_a_refused_port_set_changes_nothing(sw):
    def refuse(*args):
        raise ValueError("bad vlans")
    sw.dp.port_set_vlan = refuse
    with pytest.raises(ValueError):
        sw.port_set("s1", vocab.port_vlan(vlan=10))
    assert sw.ports["s1"].vlans == vocab.DEFAULT_PORT_VLAN
    assert sw.dp.calls == [] and sw.events == []            # no flush either


def test_fdb_flush_passes_the_vlan_only_when_given(sw):
    assert sw.fdb_flush(port="s1", vlan=20) == 3
    assert sw.fdb_flush(vlan=0) == 3
    assert sw.fdb_flush() == 3
    assert [(c[1], c[2]) for c in sw.dp.calls] == [((1,), {"vlan": 20}), ((-1,), {"vlan": 0}),
                                                  ((-1,), {})]
    assert isinstance(sw.events[0].pop("time"), float)          # every event is stamped
    assert sw.events[0] == {"event": "fdb.flush", "port": "s1", "vlan": 20, "count": 3}


def test_fdb_add_checks_the_ports_vlans(sw):
    sw.ports["s1"].vlans = vocab.port_vlan("trunk", allowed=[10, 20], native=0)
    with pytest.raises(ValueError, match="port s1 does not carry vlan 30"):
        sw.fdb_add("02:00:00:00:00:01", "s1", vlan=30)
    with pytest.raises(ValueError, match="a trunk without a native VLAN"):
        sw.fdb_add("02:00:00:00:00:01", "s1")
    assert sw.dp.calls == []
    sw.fdb_add("02:00:00:00:00:01", "s1", vlan=20)
    sw.fdb_add("02:00:00:00:00:01", "s0")                  # no VLAN keys: VLAN 1
    assert [c[1] for c in sw.dp.calls] == [("02:00:00:00:00:01", 20, 1),
                                           ("02:00:00:00:00:01", 1, 0)]


def test_fdb_del_without_a_vlan_removes_the_mac_from_every_vlan(sw):
    sw.dp.fdb = [("02:00:00:00:00:01", 10, 0, 3, False), ("02:00:00:00:00:02", 10, 0, 3, False),
                 ("02:00:00:00:00:01", 20, 1, 3, False)]
    assert sw.fdb_del("02:00:00:00:00:01") == 2
    assert [c[1] for c in sw.dp.calls if c[0] == "fdb_del"] == [("02:00:00:00:00:01", 10),
                                                               ("02:00:00:00:00:01", 20)]


# ---------------------------------------------------------------------------- one set of rules

MODES = st.sampled_from([None, "access", "trunk", "hybrid", 1])
VLANS = st.sampled_from([None, 0, 1, 10, 20, 4094, 4095, -1, "10", True])
LISTS = st.sampled_from([None, [], [10], [1, 10], [10, 20], "10-20", "all", [0], [4095], 10,
                         ["20-10"], [10, "20-30"], [True]])


@settings(max_examples=400, deadline=None)
@given(mode=MODES, vlan=VLANS, allowed=LISTS, native=VLANS)
def test_a_ports_vlans_are_one_thing_in_a_file_on_the_socket_and_in_ctl(mode, vlan, allowed,
                                                                           native):
    keys = {k: v for k, v in dict(vlan_mode=mode, vlan=vlan, allowed=allowed,
                                  native=native).items() if v is not None}
    # the file
    try:
        in_file = Config.from_dict({"port": [dict(name="s0", **keys)]}).ports[0].vlans
    except ConfigError as e:
        assert e.key.startswith("port[0].") and e.key[8:] in vocab.PortVlan._fields
        in_file = e.reason
    # the socket: port.set's checks (kinds, then the keys together)
    conn = SimpleNamespace(switch=FakeSwitch())
    try:
        reply = handlers.port_set(conn, **handlers.bind_args(handlers.METHODS["port.set"],
                                                             [dict(port="s0", **keys)]))
        on_socket = conn.switch.ports["s0"].vlans
        assert reply == {"port": "s0", **on_socket.view(), "flushed": 0}
    except RpcError as e:
        assert e.code == "invalid_params"
        on_socket = e.message
    if not keys:            # port.set needs something to set; a [[port]] takes defaults
        assert in_file == vocab.DEFAULT_PORT_VLAN and "nothing to set" in on_socket
        return
    assert on_socket == in_file
    # ctl: the same words (where a word can say the value)
    # (a word "10" is a number for vlan and native, and a list for allowed)
    if all(type(keys.get(k, 0)) is int for k in ("vlan", "native")) \
            and all(isinstance(keys.get(k, ""), str) for k in ("vlan_mode", "allowed")):
        words = ["port", "set", "s0"]
        for k, v in keys.items():
            words += [f"--{k}", str(v)]
        try:
            args = ctl.build_parser().parse_args(words)
            ctl._vlan_params(args)
            in_ctl = True
        except ctl.UsageError as e:
            in_ctl = str(e)
        if isinstance(in_file, vocab.PortVlan):
            assert in_ctl is True, (keys, in_ctl)
        else:
            # a usage error with the switch's words (argparse words a bad choice its way)
            assert isinstance(in_ctl, str) and (in_file in in_ctl or "invalid choice" in in_ctl)


def test_the_vlan_words_are_the_vocabs():
    assert config.VLAN_KEYS == vocab.PortVlan._fields == ("vlan_mode", "vlan", "allowed", "native")
    for method, first in (("port.set", "port"), ("port.add", "name")):
        params = handlers.METHODS[method].rpc_params
        assert [p.name for p in params] == [first, *vocab.PortVlan._fields]
        assert [p.kind for p in params[1:]] == [vocab.VLAN_MODE, vocab.VLAN_ID, vocab.VLAN_LIST,
                                                vocab.NATIVE]
    assert vocab.VLAN_MODE.choices is vocab.VLAN_MODES == ("access", "trunk")
    parser = ctl.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    port_set = next(a for a in sub.choices["port"]._actions
                    if isinstance(a, argparse._SubParsersAction)).choices["set"]
    modes = next(a for a in port_set._actions if a.dest == "vlan_mode")
    assert tuple(modes.choices) == vocab.VLAN_MODES
    assert handlers.METHODS["fdb.add"].rpc_params[2].kind is vocab.VLAN_ID
    assert handlers.METHODS["fdb.flush"].rpc_params[1].kind is vocab.VLAN
    assert (vocab.VLAN_ID_MIN, vocab.VLAN_ID_MAX) == (1, vocab.VLAN_MAX - 1)


@pytest.mark.parametrize("text,want", [
    ("10", [10]), ("10,20", [10, 20]), ("20,10,10", [10, 20]), ("10-12,20", [10, 11, 12, 20]),
    (" 1 - 3 , 7 ", [1, 2, 3, 7]), ("4094", [4094]), ("all", None),
    ([10, "20-21"], [10, 20, 21]), ((5, 4), [4, 5])])
def test_vlan_list_reads_lists_and_ranges(text, want):
    assert vocab.vlan_list(text) == want
    if want is not None:
        assert vocab.vlan_list(vocab.vlan_text(want)) == want


@pytest.mark.parametrize("bad", ["", "0", "4095", "10-", "-10", "a", "10;20", "1-4095",
                                 "10,,20", [10.0], [None], {"10": 1}, 10, True])
def test_vlan_list_refuses(bad):
    with pytest.raises(vocab.Invalid):
        vocab.vlan_list(bad)


def test_carries_untagged_and_tagged():
    access = vocab.port_vlan(vlan=10)
    trunk = vocab.port_vlan("trunk", allowed=[10, 20], native=20)
    every = vocab.port_vlan("trunk")
    assert [access.carries(v) for v in (0, 1, 10, 4095)] == [False, False, True, False]
    assert [trunk.carries(v) for v in (1, 10, 20, 30)] == [False, True, True, False]
    assert [every.carries(v) for v in (0, 1, 4094, 4095)] == [False, True, True, False]
    assert (access.untagged(), trunk.untagged(), every.untagged()) == (10, 20, 1)
    assert (access.tagged(10), trunk.tagged(10), trunk.tagged(20)) == (False, True, False)
    for pv in (access, trunk, every, vocab.port_vlan("trunk", allowed="2-3")):
        assert vocab.port_vlan(**pv.keys()) == pv
