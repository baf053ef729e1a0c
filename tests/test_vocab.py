"""One vocabulary for management: the RPC method table is the one list of methods, and
what derives from it, or is checked against it, cannot drift from it:

  - `pyxsw ctl` builds its arguments from the table: every method has a command (or is in
    ctl.NOT_COMMANDS), with the method's parameters, defaults and checks;
  - the Python client's helpers are written out (they are its documented API) and checked
    here: every method has one (or is in client.NOT_HELPERS), with the same parameters;
  - the choices, limits and checks of pyxsw.vocab are those of the configuration, the RPC
    methods, ctl and the Cython core;
  - the switch the methods drive (pyxsw.mgmt.api.SwitchAPI) is what they use, and the real
    Switch and the fake one both provide it.
No root needed."""
import argparse
import ast
import inspect
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from pyxsw import client, config, vocab
from pyxsw.mgmt import RpcError, api, busy_share, ctl, handlers
from pyxsw.mgmt.fake import FakePort, FakeSwitch

ROOT = Path(__file__).resolve().parent.parent
METHODS = handlers.METHODS
COMMON = {"help", "socket", "json", "timeout"}          # every ctl command has these


# ---------------------------------------------------------------------------- the table

def test_every_method_declares_its_parameters_and_help():
    assert list(METHODS)[:13] == ["status", "port.list", "port.add", "port.del", "port.stats",
                                  "fdb.list", "fdb.add", "fdb.del", "fdb.flush", "mode.set",
                                  "aging.set", "shutdown", "events.subscribe"]
    assert {"methods", "worker.stats"} <= set(METHODS)
    for name, fn in METHODS.items():
        assert fn.rpc_name == name
        assert fn.rpc_help and len(fn.rpc_help) <= 72 and "\n" not in fn.rpc_help, name
        assert fn.rpc_help[0].isupper() and fn.rpc_help.endswith("."), name
        for p in fn.rpc_params:
            assert isinstance(p.kind, vocab.Kind) and p.required == (p.name in fn.rpc_required)


def test_registration_refuses_what_the_table_cannot_describe():
    def no_kind(conn, name):
        """Help."""

    def no_help(conn, name: vocab.IFNAME):
        pass

    for fn, what in [(no_kind, "needs a kind"), (no_help, "needs a docstring")]:
        with pytest.raises(TypeError, match=what):
            handlers.method("test.bad")(fn)
    with pytest.raises(ValueError, match="twice"):
        handlers.method("status")(handlers.status)
    assert "test.bad" not in METHODS


def test_describe_lists_parameters():
    assert handlers.describe(METHODS["fdb.add"]) == {
        "name": "fdb.add", "help": "Add a static FDB entry (or make a learned one static).",
        "params": [{"name": "mac", "kind": "station", "required": True},
                   {"name": "port", "kind": "port", "required": True},
                   {"name": "vlan", "kind": "vlan_id", "required": False, "default": None}]}
    assert handlers.describe(METHODS["mode.set"])["params"] == [
        {"name": "mode", "kind": "mode", "required": True,
         "choices": ["poll", "interrupt", "adaptive"]}]
    assert handlers.describe(METHODS["fdb.list"])["params"][0] == \
        {"name": "port", "kind": "port", "required": False, "default": None}
    assert handlers.describe(METHODS["status"])["params"] == []


def test_bind_args_checks_values_by_their_kinds():
    bind = handlers.bind_args
    assert bind(METHODS["fdb.add"], [{"mac": "02-AA-bb-cc-dd-01", "port": "s0"}]) == \
        {"mac": "02:aa:bb:cc:dd:01", "port": "s0"}                # the default: the method's
    assert bind(METHODS["fdb.list"], [{"port": None, "vlan": 7}]) == {"vlan": 7}
    for fn, args, says in [
            ("fdb.add", {"mac": "01:00:5e:00:00:01", "port": "s0"}, "multicast"),
            ("fdb.add", {"mac": "02:00:00:00:00:01", "port": "a b"}, "not a valid port"),
            ("port.add", {"name": None}, "interface name must be a string"),
            ("aging.set", {"seconds": 2**32}, "seconds must be an integer 0..4294967295"),
            ("mode.set", {"mode": "turbo"}, "mode must be one of poll, interrupt, adaptive")]:
        with pytest.raises(RpcError) as e:
            bind(METHODS[fn], [args])
        assert e.value.code == "invalid_params" and says in e.value.message


# ---------------------------------------------------------------------------- the client

def _helper_name(method):
    return method.replace(".", "_")


def test_every_method_has_a_client_helper_with_its_parameters():
    assert set(client.NOT_HELPERS) <= set(METHODS)
    for name, fn in METHODS.items():
        if name in client.NOT_HELPERS:
            assert not hasattr(client._Methods, _helper_name(name))
            continue
        helper = getattr(client._Methods, _helper_name(name), None)
        assert helper is not None, f"client._Methods has no {_helper_name(name)}() for {name}"
        got = [(p.name, p.default) for p in list(inspect.signature(helper).parameters.values())[1:]]
        want = [(p.name, inspect.Parameter.empty if p.required else p.default)
                for p in fn.rpc_params]
        assert got == want, name


def test_every_helper_calls_its_method():
    class Recorder(client._Methods):
        def call(self, method, **kwargs):
            return method, kwargs

    r = Recorder()
    for name, fn in METHODS.items():
        if name not in client.NOT_HELPERS:
            args = {p.name: f"<{p.name}>" for p in fn.rpc_params}
            assert getattr(r, _helper_name(name))(**args) == (name, args)
    # optional arguments left out are not sent (the switch reads None as left out, too)
    assert r.fdb_list() == ("fdb.list", {})
    assert r.fdb_add("m", "p") == ("fdb.add", {"mac": "m", "port": "p"})
    assert r.port_set("s1", vlan=10) == ("port.set", {"port": "s1", "vlan": 10})


# ---------------------------------------------------------------------------- pyxsw ctl

def _commands(parser, words=()):
    """{command words: its parser} for every command that calls a method."""
    out = {}
    for a in parser._actions:
        if isinstance(a, argparse._SubParsersAction):
            for word, sub in a.choices.items():
                out.update(_commands(sub, (*words, word)))
    if parser.get_default("method"):
        out[words] = parser
    return out


def test_every_method_has_a_ctl_command_with_its_parameters():
    commands = _commands(ctl.build_parser())
    assert set(ctl.NOT_COMMANDS) <= set(METHODS)
    reached = {p.get_default("method") for p in commands.values()}
    assert reached == set(METHODS) - set(ctl.NOT_COMMANDS)
    for words, parser in commands.items():
        fn = METHODS[parser.get_default("method")]
        cmd = parser.get_default("command")
        actions = {a.dest: a for a in parser._actions if a.dest not in COMMON}
        own = set()                                 # options of ctl's own, if any
        if cmd.options:
            bare = argparse.ArgumentParser(add_help=False)
            cmd.options(bare)
            own = {a.dest for a in bare._actions}
        assert not own & {p.name for p in fn.rpc_params}, words
        assert set(actions) == {p.name for p in fn.rpc_params} | own, words
        for p in fn.rpc_params:
            a = actions[p.name]
            assert (not a.option_strings) == (p.name in cmd.positional), (words, p.name)
            assert a.default == (None if p.required else p.default), (words, p.name)
            if p.kind.choices:
                assert list(a.choices) == list(p.kind.choices)
            else:
                assert a.metavar == p.kind.metavar


def test_the_words_of_before_are_all_there():
    # the contract's words stay; new ones join them
    assert set(_commands(ctl.build_parser())) >= {
        ("status",), ("port", "list"), ("port", "add"), ("port", "del"), ("port", "stats"),
        ("fdb", "show"), ("fdb", "add"), ("fdb", "del"), ("fdb", "flush"), ("mode",),
        ("aging",), ("shutdown",), ("events",), ("methods",), ("workers",),
        ("port", "set"), ("vlan", "show"), ("worker", "stats"), ("top",)}


def test_ctl_refuses_what_the_switch_refuses():
    """For every command argument, a word is a usage error in ctl exactly when the method's
    kind refuses it, with the same reason."""
    samples = ["s0", "eth0.10", "a b", "x" * 16, "..", "02:00:00:00:00:01", "01:00:5e:00:00:01",
               "02-AA-bb-cc-dd-01", "zz", "0", "4095", "4096", "-1", "1.5", "4294967296", "poll",
               "turbo", ""]
    for words, parser in _commands(ctl.build_parser()).items():
        fn = METHODS[parser.get_default("method")]
        for p in fn.rpc_params:
            action = next(a for a in parser._actions if a.dest == p.name)
            for text in samples:
                value = int(text) if p.kind.integer and text.lstrip("-").isdigit() else text
                try:
                    want = p.kind(value)
                except vocab.Invalid as e:
                    want = e
                if action.choices:
                    assert (text in action.choices) == (not isinstance(want, Exception))
                    continue
                try:
                    got = action.type(text)
                except argparse.ArgumentTypeError as e:
                    assert isinstance(want, Exception) and str(e) == str(want), (words, text)
                else:
                    assert got == want, (words, p.name, text)


# ---------------------------------------------------------------------------- shared words

def test_config_handlers_and_ctl_share_the_words():
    assert config.MODES is vocab.MODES and vocab.MODE.choices is vocab.MODES
    assert (config.XDP_MODES, config.ZERO_COPY, config.FRAME_SIZES) == \
        (vocab.XDP_MODES, vocab.ZERO_COPY, vocab.FRAME_SIZES)
    assert config.valid_ifname is vocab.valid_ifname
    assert config.MAX_AGING == vocab.MAX_AGING and config.MAX_BATCH == vocab.MAX_BATCH
    modes = next(a for a in _commands(ctl.build_parser())[("mode",)]._actions
                 if a.dest == "mode")
    assert tuple(modes.choices) == vocab.MODES


def test_render_table_is_one():
    from pyxsw import cli, render
    assert cli.table is render.table and ctl.table is render.table
    assert render.table(["a", "n", "b"], [["x", 10, True], ["yy", 2, None]]) == \
        "a    n  b\nx   10  yes\nyy   2  -"


NAMES = st.one_of(st.text(max_size=17), st.sampled_from(["s0", ".", "..", "a:b", "a/b", "x" * 15,
                                                          "x" * 16, "é" * 7, "é" * 8, "a\tb"]))


@settings(max_examples=300, deadline=None)
@given(name=NAMES)
def test_an_interface_name_is_one_thing_in_a_file_and_on_the_socket(name):
    try:
        config.Config.from_dict({"port": [{"name": name}]})
        in_file = True
    except config.ConfigError as e:
        assert e.key == "port[0].name", e
        in_file = False
    try:
        vocab.IFNAME(name)
        on_socket = True
    except vocab.Invalid:
        on_socket = False
    assert in_file == on_socket == vocab.valid_ifname(name)


def test_limits_are_one_thing_in_a_file_and_on_the_socket():
    config.Config.from_dict({"fdb": {"aging": vocab.MAX_AGING}})
    with pytest.raises(config.ConfigError):
        config.Config.from_dict({"fdb": {"aging": vocab.MAX_AGING + 1}})
    assert vocab.AGING(vocab.MAX_AGING) == vocab.MAX_AGING
    with pytest.raises(vocab.Invalid):
        vocab.AGING(vocab.MAX_AGING + 1)
    for mode in vocab.MODES:
        assert config.Config.from_dict({"switch": {"mode": mode}}).switch.mode == vocab.MODE(mode)


# ---------------------------------------------------------------------------- the core's copies

def test_core_modes_are_the_vocabs():
    from pyxsw import _core
    assert tuple(_core._MODES) == vocab.MODES


def test_core_limits_are_the_vocabs():
    from pyxsw import _core
    assert _core.LIMITS == vocab.CORE_LIMITS


def test_core_frame_sizes_and_vlans_are_the_vocabs():
    from pyxsw._core import Datapath as Core
    for size in (1024, *vocab.FRAME_SIZES, 8192):
        try:
            Core(umem=False, frame_size=size).close()
            took = True
        except ValueError:
            took = False
        assert took == (size in vocab.FRAME_SIZES), size
    c = Core(umem=False)
    port = c.add_virtual_port("v0")
    assert c.fdb_add("02:00:00:00:00:01", vocab.VLAN_MAX, port)
    with pytest.raises(ValueError):
        c.fdb_add("02:00:00:00:00:01", vocab.VLAN_MAX + 1, port)
    c.close()


@settings(max_examples=200, deadline=None)
@given(octets=st.lists(st.integers(0, 255), min_size=6, max_size=6),
       sep=st.sampled_from(":-"), upper=st.booleans())
def test_core_reads_a_mac_as_the_vocab_does(octets, sep, upper):
    from pyxsw import _core
    mac = sep.join(f"{o:02X}" if upper else f"{o:02x}" for o in octets)
    assert _core.mac_to_int(mac) == vocab.mac_to_int(mac)
    assert _core.int_to_mac(vocab.mac_to_int(mac)) == vocab.mac(mac)


def test_core_refuses_the_macs_the_vocab_refuses():
    from pyxsw import _core
    for bad in ["", "02:00:00:aa:00", "02:00:00:aa:00:zz", "0200.00aa.0001",
                "02:00-00:00:00:01", "+2:00:00:00:00:01", " 2:00:00:00:00:01"]:
        with pytest.raises(vocab.Invalid):
            vocab.mac_to_int(bad)
        with pytest.raises(ValueError):
            _core.mac_to_int(bad)


# ---------------------------------------------------------------------------- the switch's interface

def _used_on_switch(path):
    """The attributes handlers.py or server.py read on a `.switch` (conn.switch.X,
    self.switch.X), and those it asks hasattr() about."""
    used = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute) \
                and node.value.attr == "switch":
            used.add(node.attr)
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "hasattr" \
                and getattr(node.args[0], "id", None) == "switch":
            used.add(node.args[1].value)
    return used


def test_switch_api_is_what_the_management_plane_uses():
    used = _used_on_switch(ROOT / "pyxsw/mgmt/handlers.py") | \
        _used_on_switch(ROOT / "pyxsw/mgmt/server.py") | \
        _used_on_switch(ROOT / "pyxsw/mgmt/capture.py")
    assert used == api.members(api.SwitchAPI)
    # the metrics endpoint (its collect() takes the switch itself) needs no more
    tree = ast.parse((ROOT / "pyxsw/mgmt/metrics.py").read_text())
    collect = next(n for n in tree.body if getattr(n, "name", None) == "collect")
    on_switch = {n.attr for n in ast.walk(collect) if isinstance(n, ast.Attribute)
                 and getattr(n.value, "id", None) == "switch"}
    assert on_switch == {"port_stats", "worker_stats", "status"} <= used


def _conforms(obj, protocol):
    """Every member of `protocol` on obj; a method's signature takes every call the
    protocol's does: the same parameters in the same order with the same defaults, and
    any more of its own optional."""
    for name in api.members(protocol):
        assert hasattr(obj, name), f"{type(obj).__name__} has no {name}"
        declared = getattr(protocol, name, None)
        if not callable(declared):
            continue
        want = list(inspect.signature(declared).parameters.values())[1:]
        have = list(inspect.signature(getattr(obj, name)).parameters.values())
        assert [(p.name, p.default) for p in have[:len(want)]] == \
            [(p.name, p.default) for p in want], f"{type(obj).__name__}.{name}"
        assert all(p.default is not p.empty for p in have[len(want):]), name


def test_the_real_switch_and_the_fake_provide_it():
    from pyxsw import Config
    from pyxsw.switch import Port, Switch
    _conforms(Switch(Config()), api.SwitchAPI)            # not started: nothing touched
    _conforms(FakeSwitch(), api.SwitchAPI)
    _conforms(Port("s0", 0, 2, None, None), api.PortView)
    _conforms(FakePort("s0", 0), api.PortView)


def test_perf_serves_the_same_fake():
    text = (ROOT / "perf/rpc_rate.py").read_text()
    assert "from pyxsw.mgmt.fake import FakeSwitch" in text and "class FakeSwitch" not in text
    fake = FakeSwitch(1000)
    assert len(fake.fdb_list()) == 1000 and {e["vlan"] for e in fake.fdb_list()} == {0, 1, 2, 3}


# ---------------------------------------------------------------------------- busy share

def test_busy_share():
    w = {"loops": 1000, "idle_loops": 250}
    assert busy_share(w) == 0.75
    assert busy_share({"loops": 3000, "idle_loops": 250}, since=w) == 1.0
    assert busy_share({"loops": 2000, "idle_loops": 1250}, since=w) == 0.0
    assert busy_share({"loops": 0, "idle_loops": 0}) is None
    assert busy_share(w, since=w) is None                    # no pass in between
    assert busy_share({"loops": 10, "idle_loops": 11}) == 0.0   # read a moment apart
    assert client.busy_share is busy_share


def test_busy_share_is_of_the_workers_time_when_the_switch_counts_cycles():
    """A pass that finds frames is long, an idle one short: 1 busy pass in 10 can be most of
    the time.  With cycles (time-stamp counter) the share is of the time."""
    w = {"loops": 1000, "idle_loops": 900, "cycles": 1_000_000, "busy_cycles": 800_000}
    assert busy_share(w) == 0.8
    later = {"loops": 2000, "idle_loops": 1900, "cycles": 2_000_000, "busy_cycles": 1_700_000}
    assert busy_share(later, since=w) == 0.9
    assert busy_share(w, since=w) is None
