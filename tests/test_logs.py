"""Log lines and rate-limited warnings, without root: the formatters (levels, the journal's
priority prefix, JSON lines), [log] in the config, pyxsw.watch on a fake clock, and the
management server's audit of changes (uid, a "mgmt" event with a time) on a fake switch."""
import io
import json
import logging
import os
import subprocess
import sys
import threading
import time

import pytest

from pyxsw import logs
from pyxsw.client import Client, RpcError
from pyxsw.config import Config, ConfigError
from pyxsw.mgmt.ctl import show_event
from pyxsw.mgmt.fake import FakeSwitch
from pyxsw.mgmt.server import Server
from pyxsw.watch import Watch


def record(levelno, msg, *args, exc_info=None, **extra):
    r = logging.LogRecord("pyxsw", levelno, __file__, 1, msg, args, exc_info)
    r.__dict__.update(extra)
    return r


# ---------------------------------------------------------------------------- formatters

@pytest.mark.parametrize("level,word,prio", [(logging.DEBUG, "debug", 7),
                                             (logging.INFO, "info", 6),
                                             (logging.WARNING, "warning", 4),
                                             (logging.ERROR, "error", 3)])
def test_text_lines_carry_the_level_and_under_the_journal_its_priority(level, word, prio):
    r = record(level, "port %s is down", "s1")
    assert logs.TextFormatter().format(r) == f"pyxsw: {word}: port s1 is down"
    assert logs.TextFormatter(journal=True).format(r) == f"<{prio}>pyxsw: {word}: port s1 is down"


def test_a_message_is_one_line_and_a_traceback_keeps_the_priority():
    assert logs.TextFormatter().format(record(logging.INFO, "a\nb")) == "pyxsw: info: a b"
    try:
        raise ValueError("boom")
    except ValueError:
        r = record(logging.ERROR, "housekeeping", exc_info=sys.exc_info())
    lines = logs.TextFormatter(journal=True).format(r).splitlines()
    assert lines[0] == "<3>pyxsw: error: housekeeping"
    assert len(lines) > 2 and all(line.startswith("<3>pyxsw: error: ") for line in lines)
    assert lines[-1].endswith("ValueError: boom")


def test_json_lines_parse_with_time_level_logger_message_and_fields():
    r = record(logging.WARNING, "port %s is down", "s1", event="port.down", port="s1")
    line = logs.JsonFormatter().format(r)
    assert "\n" not in line
    obj = json.loads(line)
    assert obj["level"] == "warning" and obj["logger"] == "pyxsw"
    assert obj["message"] == "port s1 is down"
    assert (obj["event"], obj["port"]) == ("port.down", "s1")
    assert abs(obj["time"] - time.time()) < 5
    # a field may not hide the record's own keys; anything json cannot hold becomes text
    obj = json.loads(logs.JsonFormatter().format(record(logging.INFO, "x", level="no",
                                                        params={"v": {1, 2}})))
    assert obj["level"] == "info" and isinstance(obj["params"]["v"], str)


def test_the_journal_prefix_only_when_stderr_is_the_journal_stream(tmp_path):
    with open(tmp_path / "err", "w") as f:
        st = os.fstat(f.fileno())
        assert logs.on_journal(f, {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"})
        assert not logs.on_journal(f, {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino + 1}"})
        assert not logs.on_journal(f, {"JOURNAL_STREAM": "garbage"})
        assert not logs.on_journal(f, {})


def journal_child(env_value, fmt="text", level="info"):
    """A child process that logs at every level through logs.setup(); JOURNAL_STREAM set to
    its stderr's own device:inode when env_value is None."""
    code = f"""
import logging, os, sys
from pyxsw import logs
st = os.fstat(2)
if {env_value is None!r}:
    os.environ["JOURNAL_STREAM"] = f"{{st.st_dev}}:{{st.st_ino}}"
logs.setup({level!r}, {fmt!r})
log = logging.getLogger("pyxsw")
log.debug("d"); log.info("switch up"); log.warning("port s1 is down"); log.error("e")
"""
    env = dict(os.environ)
    env.pop("JOURNAL_STREAM", None)
    if env_value:
        env["JOURNAL_STREAM"] = env_value
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, check=True).stderr.splitlines()


def test_setup_under_systemd_prefixes_priorities_and_filters_the_level():
    assert journal_child(None) == ["<6>pyxsw: info: switch up",
                                   "<4>pyxsw: warning: port s1 is down", "<3>pyxsw: error: e"]
    # JOURNAL_STREAM inherited, but stderr is a pipe of our own: plain lines
    assert journal_child("1:2", level="warning") == ["pyxsw: warning: port s1 is down",
                                                     "pyxsw: error: e"]
    lines = [json.loads(x) for x in journal_child(None, fmt="json", level="debug")]
    assert [x["level"] for x in lines] == ["debug", "info", "warning", "error"]


# ---------------------------------------------------------------------------- [log]

def test_log_section_defaults_and_values():
    c = Config.from_dict({})
    assert (c.log.level, c.log.format) == ("info", "text")
    c = Config.from_dict({"log": {"level": "debug", "format": "json"}})
    assert (c.log.level, c.log.format) == ("debug", "json")
    assert Config.from_dict(c.to_dict()) == c


@pytest.mark.parametrize("d,key,reason", [
    ({"log": {"level": "verbose"}}, "log.level", "must be one of debug, info, warning, error"),
    ({"log": {"level": 3}}, "log.level", "expected a string, got an integer"),
    ({"log": {"format": "xml"}}, "log.format", "must be one of text, json"),
    ({"log": {"levle": "info"}}, "log.levle", "did you mean 'level'?"),
    ({"log": "info"}, "log", "expected a table"),
])
def test_bad_log_values_name_the_key(d, key, reason):
    with pytest.raises(ConfigError) as e:
        Config.from_dict(d, source="<t>")
    assert e.value.key == key and reason in e.value.reason


def test_run_with_a_bad_log_level_exits_2_naming_the_key(tmp_path):
    path = tmp_path / "sw.toml"
    path.write_text('[log]\nlevel = "loud"\n')
    r = subprocess.run([sys.executable, "-m", "pyxsw", "run", "-c", str(path)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [f"{path}: log.level: must be one of debug, info, "
                                             f"warning, error, got 'loud'"]


# ---------------------------------------------------------------------------- pyxsw.watch

class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_a_condition_is_said_at_once_then_once_per_interval_then_over():
    clock = Clock()
    w = Watch(10, clock=clock)
    w.total(("storm", "s1"), 50)                # the baseline: nothing happened yet
    assert w.due() == []
    w.total(("storm", "s1"), 80, port="s1")
    [r] = w.due()
    assert (r.state, r.count, r.total, r.info) == ("start", 30, 30, {"port": "s1"})
    for t in range(1, 10):                      # growing all the time: nothing before 10 s
        clock.now += 1
        w.total(("storm", "s1"), 80 + t * 100)
        assert w.due() == []
    clock.now += 1
    w.total(("storm", "s1"), 1080)
    [r] = w.due()
    assert (r.state, r.count, r.total, r.seconds) == ("count", 1000, 1030, 10)
    clock.now += 10                             # an interval without growth: over
    w.total(("storm", "s1"), 1080)
    [r] = w.due()
    assert (r.state, r.count, r.total, r.seconds) == ("end", 0, 1030, 20)
    assert w.due() == [] and not w.active(("storm", "s1"))
    w.total(("storm", "s1"), 1081)              # a new episode starts again at once
    assert [r.state for r in w.due()] == ["start"]


def test_a_flapping_mac_is_one_report_per_interval_with_its_count():
    clock = Clock()
    w = Watch(5, leading=False, clock=clock)
    for i in range(1000):                       # 1000 moves over 4 s: no report yet
        clock.now = 100 + i * 0.004
        w.add(("02:00:00:00:00:01", 1), 1, port="s1" if i % 2 else "s0")
        assert w.due() == []
    clock.now = 105
    [r] = w.due()
    assert (r.key, r.state, r.count, r.info) == (("02:00:00:00:00:01", 1), "count", 1000,
                                                {"port": "s1"})
    clock.now = 110
    assert [r.state for r in w.due()] == ["end"]


def test_keys_are_independent_and_counters_may_start_anew():
    clock = Clock()
    w = Watch(1, clock=clock)
    w.total("a", 10)
    w.total("b", 10)
    w.total("a", 5)                             # started anew (a port added again): baseline
    w.total("b", 12)
    assert [(r.key, r.count) for r in w.due()] == [("b", 2)]
    w.add("a", 0)
    w.add("a", -3)
    assert w.due() == []
    w.total("a", 6)
    w.forget("b")
    assert [(r.key, r.count) for r in w.due()] == [("a", 1)]
    with pytest.raises(ValueError):
        Watch(0)


# ---------------------------------------------------------------------------- management

@pytest.fixture
def fake_server(short_dir):
    fake = FakeSwitch()
    path = str(short_dir / "sw.sock")
    srv = Server(fake, path)
    t = threading.Thread(target=srv.run, daemon=True)
    t.start()
    assert srv.started.wait(5)
    yield fake, path
    srv.request_stop()
    t.join(10)


def test_management_changes_are_logged_with_the_uid_and_are_events(fake_server, caplog):
    fake, path = fake_server
    with Client(path) as sub, Client(path) as c, \
            caplog.at_level(logging.INFO, logger="pyxsw.mgmt"):
        sub.subscribe()
        events = sub.events(timeout=5)
        c.fdb_list()                                    # not a change: no line, no event
        c.fdb_add("02:00:00:00:00:09", "s1", vlan=1)
        with pytest.raises(RpcError):
            c.call("port.del", name="s9")               # refused: logged, no event
        c.call("aging.set", seconds=60)
        got = [next(events) for _ in range(2)]
    assert [e["event"] for e in got] == ["mgmt", "mgmt"]
    assert got[0]["method"] == "fdb.add" and got[0]["uid"] == os.getuid()
    assert got[0]["params"] == {"mac": "02:00:00:00:00:09", "port": "s1", "vlan": 1}
    assert got[0]["pid"] == os.getpid() and abs(got[0]["time"] - time.time()) < 10
    assert got[1]["method"] == "aging.set" and got[1]["params"] == {"seconds": 60}
    lines = [(r.levelname, r.getMessage()) for r in caplog.records if r.name == "pyxsw.mgmt"]
    uid = os.getuid()
    assert lines == [
        ("INFO", f"fdb.add by uid {uid} (pid {os.getpid()}): mac=02:00:00:00:00:09 port=s1 "
                 f"vlan=1"),
        ("INFO", f"port.del by uid {uid} (pid {os.getpid()}) refused: name=s9: s9: not a "
                 f"switch port"),
        ("INFO", f"aging.set by uid {uid} (pid {os.getpid()}): seconds=60")]


def test_ctl_events_shows_the_time():
    when = time.mktime((2026, 11, 30, 12, 34, 56, 0, 0, -1)) + 0.25
    line = show_event({"event": "port.down", "port": "s1", "time": when})
    assert line.startswith("2026-11-30 12:34:56.250 port.down")
    assert line.endswith("port=s1") and "time=" not in line
    assert show_event({"event": "port.up", "port": "s1"}).startswith("port.up")
