"""`pyxsw ctl` as a user meets it: usage errors checked here by the switch's rules, JSON
errors, finding the socket, what status, fdb show and port stats print, "did you mean".
Against the fake switch of test_mgmt_unit, in-process, no root needed."""
import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from test_mgmt_unit import FakeSwitch, start_server

from pyxsw import __version__
from pyxsw.client import Client, RpcError
from pyxsw.mgmt import ctl
from pyxsw.mgmt.ctl import ctl_main

ROOT = Path(__file__).resolve().parent.parent
BIG = 2**64 - 1                 # the largest count a counter can show: 20 digits


@pytest.fixture
def served(short_dir, monkeypatch):
    """A fake switch served in its own runtime directory, which discovery looks at;
    no $PYXSW_SOCKET from the environment running the tests."""
    monkeypatch.delenv("PYXSW_SOCKET", raising=False)
    run = short_dir / "run"
    monkeypatch.setattr(ctl, "RUNTIME_DIR", str(run), raising=False)
    monkeypatch.setattr(ctl, "DEFAULT_SOCKET", str(short_dir / "default.sock"))
    fake = FakeSwitch()
    srv, t = start_server(fake, str(run / "sw.sock"), "uvloop")
    servers = [(srv, t)]                        # a test may start more: stopped here too
    yield SimpleNamespace(fake=fake, path=str(run / "sw.sock"), run=run, servers=servers)
    for srv, t in servers:
        srv.request_stop()
        t.join(10)


def run(capsys, *argv):
    code = ctl_main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def one_line(err):
    assert err.endswith("\n") and err.count("\n") == 1 and "Traceback" not in err, err
    return err


# ---------------------------------------------------------------------------- usage errors

@pytest.mark.parametrize("value", ["-1", "0", "-0.5", "nan", "inf", "1e12", "soon"])
def test_timeout_must_be_a_positive_number(short_dir, capsys, value):
    # -1 was a traceback (settimeout's ValueError), 0 an errno string (a non-blocking connect)
    code, out, err = run(capsys, "-s", str(short_dir / "none.sock"), "--timeout", value,
                         "status")
    assert code == 2 and out == ""
    assert "--timeout" in one_line(err) and repr(value) in err


def test_timeout_is_used(served, capsys):
    assert run(capsys, "--timeout", "0.5", "-s", served.path, "status")[0] == 0
    served.fake.delay = 0.6                     # port.add sleeps: no reply in time
    code, _, err = run(capsys, "--timeout", "0.2", "-s", served.path, "port", "add", "eth7")
    assert code == 3 and "no reply within 0.2 s" in one_line(err)


def test_timeout_in_a_real_process_is_one_line(short_dir):
    p = subprocess.run([sys.executable, "-m", "pyxsw", "ctl", "--timeout", "-1", "status"],
                       cwd=ROOT, capture_output=True, text=True,
                       env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert p.returncode == 2 and p.stdout == ""
    assert one_line(p.stderr).startswith("pyxsw ctl: argument --timeout: ")


BAD_WORDS = [
    # (words, what the switch's own check says about it)
    (["fdb", "add", "zz:00:00:00:00:01", "s0"], "not a MAC address"),
    (["fdb", "add", "02:00:00:00:01", "s0"], "not a MAC address"),
    (["fdb", "add", "01:00:5e:00:00:01", "s0"], "multicast"),
    (["fdb", "add", "02:00:00:00:00:01", "a b"], "not a valid port"),
    (["fdb", "add", "02:00:00:00:00:01", "s0", "--vlan", "4096"], "vlan must be an integer"),
    (["fdb", "add", "02:00:00:00:00:01", "s0", "--vlan", "-1"], "vlan must be an integer"),
    (["fdb", "add", "02:00:00:00:00:01", "s0", "--vlan", "4095"], "vlan must be an integer 1..4094"),
    (["fdb", "add", "02:00:00:00:00:01", "s0", "--vlan", "0"], "vlan must be an integer 1..4094"),
    (["fdb", "flush", "--vlan", "4096"], "vlan must be an integer 0..4095"),
    (["port", "set", "s0"], "nothing to set"),
    (["port", "set", "s0", "--access", "0"], "vlan must be an integer 1..4094"),
    (["port", "set", "s0", "--access", "4095"], "vlan must be an integer 1..4094"),
    (["port", "set", "s0", "--access", "10", "--native", "1"], "native is for trunk ports only"),
    (["port", "set", "s0", "--access", "10", "--allowed", "10"], "allowed is for trunk ports"),
    (["port", "set", "s0", "--access", "10", "--trunk", "10"], "not allowed with argument"),
    (["port", "set", "s0", "--access", "10", "--vlan_mode", "trunk"], "contradicts --access"),
    (["port", "set", "s0", "--trunk", "10", "--vlan", "10"], "vlan is for access ports only"),
    (["port", "set", "s0", "--trunk", "10,20", "--native", "30"],
     "native 30 is not one of the trunk's allowed VLANs (10,20)"),
    (["port", "set", "s0", "--trunk", "10", "--native", "4095"], "native must be an integer 0..4094"),
    (["port", "set", "s0", "--trunk", "0-10"], "allowed must be an integer 1..4094"),
    (["port", "set", "s0", "--trunk", "20-10"], "the range 20-10 is backwards"),
    (["port", "set", "s0", "--trunk", "10,x"], "got 'x' in it"),
    (["port", "set", "s0", "--trunk", ""], "got '' in it"),
    (["port", "set", "s0", "--vlan_mode", "hybrid"], "invalid choice 'hybrid'"),
    (["port", "add", "eth3", "--access", "10", "--native", "0"], "native is for trunk ports"),
    (["vlan", "show", "4096"], "vlan must be an integer 0..4095"),
    (["fdb", "del", "02:00:00:00:00:0g"], "not a MAC address"),
    (["fdb", "del", "02:00:00:00:00:01", "--vlan", "x"], "vlan must be an integer"),
    (["fdb", "show", "--vlan", "5000"], "vlan must be an integer"),
    (["fdb", "show", "--port", "a/b"], "not a valid port"),
    (["fdb", "flush", "--port", "x" * 16], "not a valid port"),
    (["aging", "99999999999"], "seconds must be an integer 0..4294967295"),
    (["aging", "4294967296"], "seconds must be an integer 0..4294967295"),
    (["aging", "-1"], "seconds must be an integer"),
    (["aging", "1.5"], "seconds must be an integer"),
    (["port", "add", "eth0:1"], "not a valid interface name"),
    (["port", "del", ".."], "not a valid interface name"),
    (["port", "stats", "a" * 16], "not a valid interface name"),
]


@pytest.mark.parametrize("words,says", BAD_WORDS)
def test_bad_values_are_usage_errors_checked_here(short_dir, capsys, words, says):
    """Exit 2 with no switch to ask (it would be 3 if anything were sent), one line."""
    code, out, err = run(capsys, "-s", str(short_dir / "none.sock"), *words)
    assert (code, out) == (2, "")
    assert says in one_line(err) and err.startswith(f"pyxsw ctl: {words[0]}")


def test_the_checks_are_the_switchs(served, capsys):
    """Where the switch would say invalid_params, ctl says the same words itself."""
    with Client(served.path) as c:
        for method, kw, words in [
                ("fdb.add", {"mac": "zz", "port": "s0"}, ["fdb", "add", "zz", "s0"]),
                ("aging.set", {"seconds": 2**40}, ["aging", str(2**40)]),
                ("fdb.list", {"vlan": 4096}, ["fdb", "show", "--vlan", "4096"])]:
            with pytest.raises(RpcError) as e:
                c.call(method, **kw)
            assert e.value.code == "invalid_params"
            code, _, err = run(capsys, "-s", served.path, *words)
            assert code == 2 and err.rstrip("\n").endswith(e.value.message), (err, e.value)


@pytest.mark.parametrize("words", [
    ["fdb", "add", "02:00:00:00:00:01", "s0", "--vlan", "4094"],
    ["port", "set", "s0", "--access", "4094"],
    ["port", "set", "s0", "--trunk", "1-4094", "--native", "4094"],
    ["port", "set", "s0", "--trunk", "10, 20-30 ,40", "--native", "0"],
    ["port", "set", "s0", "--trunk", "all"],
    ["port", "set", "s0", "--vlan_mode", "trunk", "--allowed", "10"],
    ["port", "add", "eth3", "--trunk", "10,20", "--native", "20"],
    ["fdb", "flush", "--vlan", "10", "--port", "s0"],
    ["vlan", "show", "10"],
    ["fdb", "del", "02-AA-bb-cc-dd-01"],
    ["fdb", "show", "--vlan", "0", "--port", "eth0.10"],
    ["aging", "4294967295"],
    ["aging", "0"],
    ["port", "add", "x" * 15],
])
def test_good_values_pass_the_checks(short_dir, capsys, words):
    assert run(capsys, "-s", str(short_dir / "none.sock"), *words)[0] == 3


def test_did_you_mean_for_command_words(short_dir, capsys):
    none = str(short_dir / "none.sock")
    for words, line in [
            (["stauts"], "unknown command 'stauts' (did you mean 'status'?)"),
            (["port", "lst"], "port: unknown command 'lst' (did you mean 'list'?)"),
            (["fdb", "shwo"], "fdb: unknown command 'shwo' (did you mean 'show'?)"),
            (["mode", "pol"], "mode: invalid mode 'pol' (did you mean 'poll'?)"),
            (["frobnicate"], "unknown command 'frobnicate' (choose from status, port, fdb, "
                             "mode, aging, shutdown, events, methods, workers, worker, "
                             "top, vlan, capture, mirror, reload, save)"),
            (["workrs"], "unknown command 'workrs' (did you mean 'workers'?)"),
            (["worker", "stat"], "worker: unknown command 'stat' (did you mean 'stats'?)")]:
        code, out, err = run(capsys, "-s", none, *words)
        assert (code, out, err) == (2, "", f"pyxsw ctl: {line}\n")


def test_other_usage_errors_are_one_line(capsys):
    for words in ([], ["port"], ["fdb", "add", "02:00:00:00:00:01"], ["status", "--bogus"]):
        code, out, err = run(capsys, *words)
        assert (code, out) == (2, "") and one_line(err).startswith("pyxsw ctl: ")
    assert run(capsys, "--help")[0] == 0


# ---------------------------------------------------------------------------- --json errors

def test_json_errors(served, capsys, short_dir):
    def error(*argv):
        code, out, err = run(capsys, "--json", *argv)
        assert out == ""                                # stdout carries results only
        e = json.loads(one_line(err))
        assert set(e) == {"error"} and set(e["error"]) == {"code", "message"}
        return code, e["error"]["code"], e["error"]["message"]

    code, kind, msg = error("-s", served.path, "fdb", "show", "--vlan", "5000")
    assert (code, kind) == (2, "usage") and "vlan must be an integer 0..4095" in msg
    assert error("stauts")[:2] == (2, "usage")
    assert error("--timeout", "0", "status")[:2] == (2, "usage")
    code, kind, msg = error("-s", served.path, "port", "del", "s9")
    assert (code, kind) == (1, "not_found") and "s9" in msg
    code, kind, msg = error("-s", str(short_dir / "none.sock"), "status")
    assert (code, kind) == (3, "unreachable") and "no such socket" in msg
    # --json after the command words: the same
    code, out, err = run(capsys, "-s", served.path, "port", "del", "s9", "--json")
    assert code == 1 and json.loads(err)["error"]["code"] == "not_found"
    # and without --json, the plain lines of before
    assert run(capsys, "-s", served.path, "port", "del", "s9")[2] == \
        "pyxsw ctl: not_found: s9: not a switch port\n"


# ---------------------------------------------------------------------------- which switch

def test_pyxsw_socket(served, capsys, monkeypatch, short_dir):
    os.rename(served.path, served.run / "elsewhere.sock")      # not found by discovery
    monkeypatch.setattr(ctl, "RUNTIME_DIR", str(short_dir / "empty"))
    monkeypatch.setenv("PYXSW_SOCKET", str(served.run / "elsewhere.sock"))
    code, out, _ = run(capsys, "status")
    assert code == 0 and "name: fake" in out
    # -s comes first
    code, _, err = run(capsys, "-s", str(short_dir / "none.sock"), "status")
    assert code == 3 and "none.sock" in err
    os.rename(served.run / "elsewhere.sock", served.path)     # for the server to remove


def test_the_one_switch_serving_is_found(served, capsys, short_dir):
    # what else lives there: claim files, a socket whose switch died, a file named .sock
    (served.run / "ports").mkdir()
    (served.run / "ports" / "0-4.claim").write_text("")
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(served.run / "dead.sock"))
    dead.close()
    (served.run / "file.sock").write_text("")
    assert ctl.serving_sockets(str(served.run)) == [served.path]
    code, out, _ = run(capsys, "status")
    assert code == 0 and "name: fake" in out


def test_several_switches_serving_is_a_usage_error(served, capsys):
    other = str(served.run / "sw1.sock")
    served.servers.append(start_server(FakeSwitch(), other, "uvloop"))
    code, out, err = run(capsys, "status")
    assert (code, out) == (2, "")
    assert "sw.sock" in one_line(err) and "sw1.sock" in err and "-s" in err
    assert run(capsys, "-s", other, "status")[0] == 0


def test_no_switch_serving_falls_back_to_the_default(short_dir, capsys, monkeypatch):
    monkeypatch.delenv("PYXSW_SOCKET", raising=False)
    monkeypatch.setattr(ctl, "RUNTIME_DIR", str(short_dir))
    monkeypatch.setattr(ctl, "DEFAULT_SOCKET", str(short_dir / "default.sock"))
    code, _, err = run(capsys, "status")
    assert code == 3 and "default.sock: no such socket" in one_line(err)


# ---------------------------------------------------------------------------- what is shown

def test_status_shows_version_pid_config_and_uptime(served, capsys):
    code, out, _ = run(capsys, "-s", served.path, "status")
    lines = out.splitlines()
    assert code == 0
    for line in (f"version: {__version__}", f"pid: {os.getpid()}", "config: /etc/pyxsw/fake.toml",
                 "uptime: 2d 3h 4m 5s"):
        assert line in lines, out
    st = json.loads(run(capsys, "-s", served.path, "--json", "status")[1])
    assert st["uptime"] == 183845.25                    # seconds, for scripts


def test_duration():
    assert [ctl.duration(s) for s in (0, 0.9, 59.99, 60, 61, 3600, 86399, 86400 + 5)] == [
        "0s", "0s", "59s", "1m 0s", "1m 1s", "1h 0m 0s", "23h 59m 59s", "1d 0h 0m 5s"]


def test_fdb_show_is_sorted_whatever_the_switch_sends(served, capsys, monkeypatch):
    entries = [("02:00:00:00:00:0b", 10, "s1"), ("02:00:00:00:00:0a", 9, "s1"),
               ("02:00:00:00:00:01", 100, "s0"), ("02:00:00:00:00:ff", 10, "s1"),
               ("0a:00:00:00:00:00", 0, "s0"), ("02:00:00:00:00:02", 100, "s0")]
    monkeypatch.setattr(served.fake, "fdb_list", lambda port=None, vlan=None: [
        {"mac": m, "vlan": v, "port": p, "age": 1, "static": False} for m, v, p in entries])
    code, out, _ = run(capsys, "-s", served.path, "fdb", "show")
    rows = [line.split()[:3] for line in out.splitlines()[1:-1]]
    assert code == 0 and rows == [
        ["0a:00:00:00:00:00", "0", "s0"], ["02:00:00:00:00:01", "100", "s0"],
        ["02:00:00:00:00:02", "100", "s0"], ["02:00:00:00:00:0a", "9", "s1"],
        ["02:00:00:00:00:0b", "10", "s1"], ["02:00:00:00:00:ff", "10", "s1"]]


VETH = ("its device does not take XDP-redirected frames (a veth takes them while its peer "
        "has GRO on or an XDP program)")


def test_port_list_fastpath_column(served, capsys):
    """yes for a target, off with the fast path off, else no: and the switch's reason; the
    port's own reason (why it is not up) stays in the last column."""
    ports = served.fake.ports
    ports["s0"].fastpath = {"target": True, "reason": ""}
    ports["s1"].fastpath = {"target": False, "reason": VETH}
    ports["s2"].state, ports["s2"].reason = "down", "no carrier or administratively down"
    ports["s2"].fastpath = {"target": False, "reason": "down"}
    code, out, _ = run(capsys, "-s", served.path, "port", "list")
    lines = out.splitlines()
    assert code == 0 and lines[0].split() == ["port", "index", "up", "state", "vlan_mode",
                                              "vlans", "native", "fastpath", "reason"]
    at = lines[0].index("fastpath")
    assert [line[at:].rstrip() for line in lines[1:]] == [
        "yes", f"no: {VETH}",
        "no: down" + " " * (len(VETH) - len("down") + 2) + "no carrier or administratively down"]
    ports["s0"].fastpath = {"target": False, "reason": "the fast path is off"}
    assert run(capsys, "-s", served.path, "port", "list")[1].splitlines()[1].split()[-1] == "off"
    # what the RPC gave, as it gave it
    assert json.loads(run(capsys, "-s", served.path, "--json", "port", "list")[1])[1][
        "fastpath"] == {"target": False, "reason": VETH}


def test_port_list_of_a_switch_without_the_fast_path_key():
    row = {"name": "s0", "index": 0, "up": True, "state": "up", "vlan_mode": "access", "vlan": 1}
    assert ctl.show_ports([row], None).splitlines()[1].split() == [
        "s0", "0", "yes", "up", "access", "1", "-", "-"]


def test_fdb_show_kernel_column_only_with_the_fast_path(served, capsys, monkeypatch):
    served.fake.learn("02:00:00:00:00:0a", "s0")
    served.fake.fdb_add("02:00:00:00:00:0b", "s1")
    code, out, _ = run(capsys, "-s", served.path, "fdb", "show")
    assert code == 0 and out.splitlines()[0].split() == ["mac", "vlan", "port", "age", "type"]
    served.fake.fastpath = "xdp"
    out = run(capsys, "-s", served.path, "fdb", "show")[1].splitlines()
    assert out[0].split() == ["mac", "vlan", "port", "age", "type", "kernel"]
    assert [line.split()[-1] for line in out[1:-1]] == ["yes", "yes"] and out[-1] == "2 entries"
    # an entry not in the kernel copy (a refused update) says no
    monkeypatch.setattr(served.fake, "fdb_list", lambda port=None, vlan=None: [
        {"mac": "02:00:00:00:00:0a", "vlan": 1, "port": "s0", "age": 3, "static": False,
         "kernel": False}])
    assert run(capsys, "-s", served.path, "fdb", "show")[1].splitlines()[1].split() == [
        "02:00:00:00:00:0a", "1", "s0", "3", "learned", "no"]


def test_status_shows_the_fast_path(served, capsys):
    out = run(capsys, "-s", served.path, "status")[1].splitlines()
    at = out.index("fastpath:")
    assert out[at + 1:at + 4] == ["  mode: off", "  kernel_fdb_entries: 0", "  sync_errors: 0"]
    served.fake.fastpath = "xdp"
    served.fake.learn("02:00:00:00:00:0a", "s0")
    out = run(capsys, "-s", served.path, "status")[1].splitlines()
    at = out.index("fastpath:")
    assert out[at + 1:at + 4] == ["  mode: xdp", "  kernel_fdb_entries: 1", "  sync_errors: 0"]


def big_stats(queues):
    """One port's counters as the switch makes them (Datapath.port_stats), all at their largest."""
    xdp = dict.fromkeys(["rx_dropped", "rx_invalid_descs", "tx_invalid_descs", "rx_ring_full",
                         "rx_fill_ring_empty_descs", "tx_ring_empty_descs", "prog_seen",
                         "prog_redirected", "prog_passed"], BIG)
    counters = dict.fromkeys(["rx_packets", "rx_bytes", "tx_packets", "tx_bytes",
                              "tx_dropped", "flooded", "runts", "filtered", "flood_limited",
                              "reserved_dropped", "rx_dropped"], BIG)
    qs = [{"queue": q, "rx_packets": BIG, "tx_packets": BIG,
           **{k: BIG for k in list(xdp)[:6]}} for q in range(queues)]
    fastpath = dict.fromkeys(["rx_packets", "rx_bytes", "tx_packets", "tx_bytes"], BIG)
    return dict(counters, xdp=xdp, fastpath=fastpath, queues=qs, up=True)


def test_one_ports_stats_fit_80_columns(served, capsys, monkeypatch):
    monkeypatch.setattr(served.fake, "port_stats", lambda name=None: {name: big_stats(4)})
    code, out, _ = run(capsys, "-s", served.path, "port", "stats", "s1")
    assert code == 0
    lines = out.splitlines()
    assert max(map(len, lines)) <= 80, "\n" + out
    assert lines[0] == "port s1: up"
    for k in ("rx_packets", "tx_bytes", "flood_limited", "prog_seen",
              "rx_fill_ring_empty_descs", "fastpath:", "queue 0", "queue 3"):
        assert k in out
    assert out.count(str(BIG)) == 11 + 9 + 4 + 4 * 8   # every figure shown, once
    # the table of before on request, and for every port
    wide = run(capsys, "-s", served.path, "port", "stats", "s1", "--wide")[1]
    assert max(map(len, wide.splitlines())) > 80
    monkeypatch.setattr(served.fake, "port_stats",
                        lambda name=None: {n: big_stats(1) for n in ("s0", "s1")})
    out = run(capsys, "-s", served.path, "port", "stats")[1]
    assert out.split("\n")[0].split()[:3] == ["port", "up", "rx_packets"]


@pytest.mark.parametrize("queues", [1, 2, 3, 16])
def test_any_number_of_queues_fits(queues):
    out = ctl.port_counters("s0", big_stats(queues))
    assert max(map(len, out.splitlines())) <= 80
    assert all(f"queue {q}" in out for q in range(queues))


def test_a_reader_that_stops_early_is_no_error(served):
    """`pyxsw ctl fdb show | head -1` printed a BrokenPipeError traceback and exited 1."""
    for i in range(5000):
        served.fake.learn(f"02:00:00:00:{i >> 8:02x}:{i & 255:02x}", "s0")
    for words in (["fdb", "show"], ["--json", "fdb", "show"]):
        p = subprocess.run(f"{sys.executable} -m pyxsw ctl -s {served.path} {' '.join(words)} "
                           f"| head -1", shell=True, cwd=ROOT, capture_output=True, text=True,
                           env=dict(os.environ, PYTHONPATH=str(ROOT)), executable="/bin/bash")
        assert p.stdout.count("\n") == 1 and p.stderr == "", p.stderr


def test_options_are_never_abbreviated(served, capsys):
    """`--js` was --json to argparse but not to the check that decides how errors print."""
    code, out, err = run(capsys, "-s", served.path, "--js", "status")
    assert code == 2 and out == "" and "--js" in one_line(err)


# ---------------------------------------------------------------------------- methods, workers

def test_methods(served, capsys):
    code, out, _ = run(capsys, "-s", served.path, "methods")
    lines = out.splitlines()
    assert code == 0 and lines[:2] == ["status", "    The switch at a glance."]
    for line in ("fdb.add mac port [vlan]", "vlan.list [vlan]",
                 "port.set port [vlan_mode=access|trunk] [vlan] [allowed] [native]", "fdb.list [port] [vlan]", "port.stats [name]",
                 "mode.set mode=poll|interrupt|adaptive", "aging.set seconds", "worker.stats"):
        assert line in lines, out
    assert max(map(len, lines)) <= 80
    listed = json.loads(run(capsys, "-s", served.path, "--json", "methods")[1])
    assert [m["name"] for m in listed][:3] == ["status", "port.list", "port.add"]


def test_workers(served, capsys):
    code, out, _ = run(capsys, "-s", served.path, "workers")
    lines = out.splitlines()
    assert code == 0
    assert lines[0] == "workers (busy: the share of passes that found frames, since start):"
    assert lines[1].split() == ["queue", "0"] and lines[2].split() == ["mode", "poll"]
    assert lines[3].split() == ["busy", "25.0%"] and lines[4].split() == ["loops", "4000"]
    assert max(map(len, lines)) <= 80
    # over a span: two looks, busy between them (the fake: 1,000 passes, 250 idle)
    code, out, _ = run(capsys, "-s", served.path, "workers", "--interval", "0.05")
    assert out.splitlines()[0].endswith("over 0.05 s):") and "75.0%" in out.split()
    w = json.loads(run(capsys, "-s", served.path, "--json", "workers", "--interval", "0.01")[1])
    assert w[0]["busy"] == 0.75 and w[0]["loops"] == 4000 + 4 * 1000


@pytest.mark.parametrize("value", ["0", "-1", "nan", "3601", "soon"])
def test_workers_interval_must_be_a_span(short_dir, capsys, value):
    code, out, err = run(capsys, "-s", str(short_dir / "none.sock"), "workers", "--interval",
                         value)
    assert (code, out) == (2, "") and "--interval" in one_line(err)
