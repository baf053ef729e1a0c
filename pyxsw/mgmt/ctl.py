"""`pyxsw ctl`: talk to a running switch through its management socket.

    pyxsw ctl [-s SOCKET] [--json] [--timeout SECONDS] COMMAND
      status | port list | port add IFNAME | port del IFNAME | port stats [IFNAME] [--wide]
      port set IFNAME --access N | --trunk LIST [--native N]     (port add takes them too)
      fdb show [--port IFNAME] [--vlan N] | fdb add MAC IFNAME [--vlan N]
      fdb del MAC [--vlan N] | fdb flush [--port IFNAME] [--vlan N] | vlan show [N]
      mode poll|interrupt|adaptive | aging SECONDS | shutdown | events
      methods | workers [--interval SECONDS] | worker stats [--interval SECONDS]
      port stats [IFNAME] --rate [--interval SECONDS] | top [IFNAME] [--interval SECONDS]
      capture IFNAME [--direction in|out|both] [-c COUNT] [--snaplen N] [-w FILE|-]
      mirror add NAME --source IFNAME,... --output IFNAME [--direction D] | mirror del NAME
      mirror list
      reload | save [-o FILE]

The switch: `-s SOCKET`, else $PYXSW_SOCKET, else the one switch serving a socket in
/run/pyxsw (when several do, name one), else /run/pyxsw/sw0.sock.

Readable tables by default; `--json` prints the RPC result as JSON (events: one per line),
and every error as {"error": {"code": ..., "message": ...}} on stderr (stdout carries
results only).  The commands' arguments are made from the switch's method table
(pyxsw.mgmt.handlers.METHODS): their names, defaults and checks are the method's, so a
value the switch would refuse is a usage error here, and nothing is sent.
Exit codes: 0 done, 1 the switch refused (the error is printed; `reload`: a change failed;
`save -o`: the file could not be written), 2 usage, 3 no switch to talk to (socket missing, refused, not permitted, the connection failed or timed out).
"""
from __future__ import annotations

import argparse
import difflib
import json
import os
import socket
import stat
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Callable, Optional

from .. import pcap
from ..counters import PORT_SUMMARY
from . import DEFAULT_SOCKET, RUNTIME_DIR, RpcError, busy_share
from .handlers import METHODS
from .rates import DROPS, PORT_RATES, WORKER_RATES, port_rates, worker_rates
from ..render import cell as _cell, is_number as _is_number, table
from ..vocab import VLAN_ID, VLAN_LIST, Invalid, PortVlan, port_vlan, vlan_text

EXIT_OK, EXIT_REFUSED, EXIT_USAGE, EXIT_UNREACHABLE = 0, 1, 2, 3
USAGE, UNREACHABLE = "usage", "unreachable"     # error codes of our own, beside the switch's
ENV_SOCKET = "PYXSW_SOCKET"
MAX_TIMEOUT = 1e9               # socket.settimeout() overflows a little past 9e9
WIDTH = 80                      # what one port's counters must fit


# ---------------------------------------------------------------------------- rendering

def _mapping(d, indent=""):
    """A nested mapping as 'key: value' lines; lists of mappings become tables."""
    lines = []
    for k, v in d.items():
        if isinstance(v, dict):
            lines.append(f"{indent}{k}:")
            lines.append(_mapping(v, indent + "  "))
        elif isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
            keys = list(dict.fromkeys(k2 for x in v for k2 in x))
            lines.append(f"{indent}{k}:")
            lines += [indent + "  " + line
                      for line in table(keys, [[x.get(k2) for k2 in keys] for x in v]).splitlines()]
        elif isinstance(v, list):
            lines.append(f"{indent}{k}: {', '.join(map(_cell, v)) or '-'}")
        else:
            lines.append(f"{indent}{k}: {_cell(v)}")
    return "\n".join(lines)


def show_status(r, args):
    if _is_number(r.get("uptime")):             # seconds in the result, for scripts
        r = dict(r, uptime=duration(r["uptime"]))
    if any(isinstance(p, dict) and "busy_poll_tuning" in p for p in r.get("ports") or ()):
        r = dict(r, ports=[dict(p, busy_poll_tuning=_tuning_cell(p.get("busy_poll_tuning")))
                           for p in r["ports"]])
    return _mapping(r)


def _tuning_cell(t):
    """A port's busy_poll_tuning in the ports table: "napi 12,13: 2/200000ns (was 0/0ns)",
    "not set: why", or "-" (nothing wanted: busy_poll_tuning off, or not poll mode)."""
    if not isinstance(t, dict):
        return None
    if not t.get("via"):
        return f"not set: {t.get('problem')}"
    was = sorted({(w.get("defer_hard_irqs"), w.get("gro_flush_timeout"))
                  for w in (t.get("was") or {}).values()}, key=str)
    where = t["via"] + (f" {','.join(map(str, t['napi']))}" if t.get("napi") else "")
    return (f"{where}: {t.get('defer_hard_irqs')}/{t.get('gro_flush_timeout')}ns (was "
            + ", ".join(f"{d}/{f}ns" for d, f in was) + ")")


def duration(seconds):
    """'2d 3h 4m 5s', from the largest unit there is, in whole seconds."""
    left, parts = int(seconds), []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if left >= size or parts:
            parts.append(f"{left // size}{unit}")
            left %= size
    return " ".join(parts + [f"{left}s"])


def show_ports(r, args):
    return table(["port", "index", "up", "state", "vlan_mode", "vlans", "native", "fastpath",
                  "reason"],
                 [[p["name"], p["index"], p["up"], p.get("state"), *_vlan_cells(p),
                   _fastpath_cell(p.get("fastpath")), p.get("reason") or ""] for p in r])


def _fastpath_cell(fp):
    """'yes' for a fast-path target, else why not ('off' with the fast path off)."""
    if not fp:
        return None
    if fp.get("target"):
        return "yes"
    return "off" if fp.get("reason") == "the fast path is off" else f"no: {fp.get('reason')}"


def _vlan_cells(p):
    """A port's vlan_mode, the VLANs it carries ("10", "10-12,20", "all") and its native
    VLAN (a trunk's: "none" for 0), as port list shows them."""
    mode = p.get("vlan_mode")
    if mode == "trunk":
        native = p.get("native")
        return [mode, vlan_text(p.get("allowed")), native or "none"]
    return [mode, p.get("vlan"), None]


def show_vlans(r, args):
    return table(["vlan", "untagged", "tagged", "fdb"],
                 [[v["vlan"], ",".join(v["untagged"]) or None, ",".join(v["tagged"]) or None,
                   v["fdb"]] for v in sorted(r, key=lambda v: int(v["vlan"]))])


def _port_vlans(r):
    return PortVlan(r["vlan_mode"], r["vlan"] or 0,
                    None if r.get("allowed") is None else tuple(r["allowed"]),
                    r.get("native") or 0).describe()


def show_stats(r, args):
    if _rate(args):
        return show_rates(r, args)
    if args.name and not args.wide:
        return port_counters(args.name, r[args.name])
    out = table(["port", "up", *PORT_SUMMARY],
                [[name, s.get("up"), *(s.get(k) for k in PORT_SUMMARY)]
                 for name, s in sorted(r.items())])
    if args.name:                               # --wide: one row, then its details
        s = r[args.name]
        rest = {k: v for k, v in s.items() if k not in PORT_SUMMARY and k != "up"}
        if rest:
            out += "\n\n" + _mapping(rest)
    return out


def show_rates(r, args):
    """port stats --rate: a port a line, every figure per second over the sample."""
    ports = r["ports"]
    return f"per second, over {r['interval']:.3g} s:\n" + table(
        ["port", "up", *PORT_RATES, "dropped", *DROPS],
        [[name, p.get("up"), *(_rate_cell(p[k]) for k in (*PORT_RATES, "dropped", *DROPS))]
         for name, p in sorted(ports.items())])


def _rate_cell(v):
    """A rate in a table: whole numbers from 10 up, one decimal below (JSON has them all)."""
    return round(v) if abs(v) >= 10 or v == int(v) else round(v, 1)


def show_worker_table(r, args):
    """worker stats: a worker a line; with --interval, per second over it."""
    if isinstance(r, dict):                     # --interval: {"interval", "workers"}
        head = f"workers, per second over {r['interval']:.3g} s (busy: the share of passes " \
               "that found frames):"
        rows, keys = r["workers"], WORKER_RATES
    else:
        head = "workers, since start (busy: the share of passes that found frames):"
        rows, keys = r, WORKER_TABLE
    if not rows:
        return "no workers"
    return head + "\n" + table(
        ["queue", "mode", "busy", *keys],
        [[w.get("queue"), w.get("mode"),
          f"{100 * w['busy']:.1f}%" if _is_number(w.get("busy")) else None,
          *(_rate_cell(w.get(k)) if isinstance(r, dict) and _is_number(w.get(k)) else w.get(k)
            for k in keys)] for w in rows])


WORKER_TABLE = ("loops", "idle_loops", "wakeups", "rx_kicks", "tx_kicks", "pool_empty",
                "cache", "learned", "moved", "events_lost")


def port_counters(name, s, width=WIDTH):
    """One port's counters, one 'counter  value' line each, so that they fit `width`
    columns whatever the numbers (a 64-bit count has 20 digits); below them the kernel's
    (xdp) and the per-queue figures, queues side by side as far as they fit."""
    flat = [k for k in PORT_SUMMARY if k in s] + \
        [k for k, v in s.items() if k not in PORT_SUMMARY and k != "up"
         and not isinstance(v, (dict, list))]
    lines = [f"port {name}: {'up' if s.get('up') else 'not up'}"] + _column(s, flat)
    for k, v in s.items():
        if isinstance(v, dict):
            lines += [f"{k}:"] + _column(v, list(v))
        elif isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
            lines += [f"{k}:"] + _across(v, width)
    return "\n".join(lines)


def _column(d, keys, indent="  "):
    kw = max(map(len, keys), default=0)
    vw = max((len(_cell(d[k])) for k in keys), default=0)
    return [f"{indent}{k:<{kw}}  " + (_cell(d[k]).rjust(vw) if _is_number(d[k]) else _cell(d[k]))
            for k in keys]


def _across(records, width, indent="  "):
    """Records (the queues) as columns named by their first key ('queue 0', 'queue 1'),
    a line per other key, in as many blocks as it takes to fit `width`."""
    keys = list(dict.fromkeys(k for r in records for k in r))
    name, keys = keys[0], keys[1:]
    room = width - len(indent) - max(map(len, keys), default=0)
    blocks, block, used = [], [], 0
    for r in records:
        w = 2 + max(len(_cell(x)) for x in [f"{name} {_cell(r.get(name))}",
                                            *(r.get(k) for k in keys)])
        if block and used + w > room:
            blocks.append(block)
            block, used = [], 0
        block.append(r)
        used += w
    blocks.append(block)
    lines = []
    for b in blocks:
        lines += [""] * bool(lines) + [
            indent + line for line in
            table(["", *(f"{name} {_cell(r.get(name))}" for r in b)],
                  [[k, *(r.get(k) for r in b)] for k in keys]).splitlines()]
    return lines


def show_fdb(r, args):
    # sorted here too, whatever order a switch sends: port, then VLAN (a number), then MAC
    entries = sorted(r, key=lambda e: (str(e["port"]), int(e["vlan"]), str(e["mac"])))
    kernel = any("kernel" in e for e in entries)
    rows = [[e["mac"], e["vlan"], e["port"], e["age"], "static" if e["static"] else "learned",
             *(["yes" if e.get("kernel") else "no"] if kernel else [])] for e in entries]
    return table(["mac", "vlan", "port", "age", "type", *(["kernel"] if kernel else [])], rows) + \
        f"\n{len(r)} entr{'y' if len(r) == 1 else 'ies'}"


def show_methods(r, args):
    """A method a line, its parameters after it (name=choice|choice, [optional],
    [optional=default]), its help below."""
    def param(p):
        text = p["name"] + ("=" + "|".join(map(str, p["choices"])) if p.get("choices") else "")
        if p.get("required"):
            return text
        return f"[{text}{'' if p.get('default') is None else '=' + _cell(p['default'])}]"

    lines = []
    for m in r:
        params = [param(p) for p in m.get("params", ())]
        lines += [" ".join([str(m["name"]), *params]), f"    {m.get('help', '')}".rstrip()]
    return "\n".join(lines)


def show_workers(r, args):
    """Workers side by side, as port stats shows queues; busy as a percentage."""
    if not r:
        return "no workers"
    span = f"over {args.interval:g} s" if getattr(args, "interval", None) else "since start"
    first = [k for k in ("queue", "mode", "busy") if any(k in w for w in r)]
    records = [{**{k: w.get(k) for k in first}, **{k: v for k, v in w.items() if k not in first}}
               for w in r]
    for w in records:
        if _is_number(w.get("busy")):
            w["busy"] = f"{100 * w['busy']:.1f}%"
    return "\n".join([f"workers (busy: the share of passes that found frames, {span}):",
                      *_across(records, WIDTH)])


SHOW_DONE = {
    "port.add": lambda r, a: f"port {r['name']} added (index {r['index']}, "
                             f"{r.get('state') or ('up' if r['up'] else 'down')})"
                             + "".join(f"\nwarning: {w}" for w in r.get("warnings", ())),
    "port.del": lambda r, a: f"port {r['name']} removed",
    "port.set": lambda r, a: f"port {r['port']}: {_port_vlans(r)} (flushed {_entries(r['flushed'])})",
    "fdb.add": lambda r, a: f"{r['mac']} vlan {r['vlan']} -> {r['port']} (static)",
    "fdb.del": lambda r, a: (f"{r['mac']} removed from {_entries(r.get('removed', 1), 'VLAN')}"
                             if r["vlan"] is None else f"{r['mac']} vlan {r['vlan']} removed"),
    "fdb.flush": lambda r, a: f"flushed {_entries(r['flushed'])}",
    "mode.set": lambda r, a: f"mode {r['mode']}",
    "aging.set": lambda r, a: f"aging {r['aging']} s" if r["aging"] else "aging off",
    "shutdown": lambda r, a: "switch shutting down",
    "mirror.add": lambda r, a: f"mirror {r['name']}: {','.join(r['source'])} "
                               f"({r['direction']}) to {r['output']}",
    "mirror.del": lambda r, a: f"mirror {r['name']} removed; {r['output']} "
                               + ("forwards again" if r.get("output_forwards", True)
                                  else "is still another mirror's output"),
}


def show_reload(r, args):
    lines = [f"reloaded {r.get('config', 'the config file')}: "
             + ("nothing changed" if not r["changed"] else f"{_entries(len(r['changed']), 'change')}")]
    lines += [f"  {t}" for t in r["changed"]]
    lines += [f"  failed: {f['change']}: {f['error']}" for f in r["failed"]]
    if r["restart"]:
        lines.append(f"  needs a restart: {', '.join(r['restart'])} (left as it is)")
    return "\n".join(lines)


def show_save(r, args):
    if args.output:
        return f"saved the running configuration to {args.output}"
    return r["toml"].rstrip("\n")


def _output(c):
    c.add_argument("-o", "--output", metavar="FILE",
                   help="write it to FILE (atomically; the file's mode is kept, else 0644) "
                        "instead of standard output")


class OutputError(Exception):
    """The result could not be written where asked (exit 1)."""


def write_atomic(path, text):
    """`text` into `path` as one step: a temporary file beside it renamed over it (a
    symbolic link's target is replaced).  The mode (and, where allowed, the owner) of the file
    replaced is kept; a new file is 0644."""
    path = os.path.realpath(path)
    try:
        old = os.stat(path)
    except FileNotFoundError:
        old = None
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=f".{os.path.basename(path)}.",
                               suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, stat.S_IMODE(old.st_mode) if old else 0o644)
        if old is not None and (old.st_uid, old.st_gid) != (os.geteuid(), os.getegid()):
            try:
                os.chown(tmp, old.st_uid, old.st_gid)
            except PermissionError:
                pass
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _save(client, args, params):
    r = client.call(args.method, **params)
    if args.output:
        try:
            write_atomic(args.output, r["toml"])
        except OSError as e:
            raise OutputError(f"{args.output}: {e.strerror or e}") from None
    return r


def _entries(n, what="entry"):
    if what == "entry":
        return f"{n} entr{'y' if n == 1 else 'ies'}"
    return f"{n} {what}{'' if n == 1 else 's'}"


def show_mirrors(r, args):
    if not r:
        return "no mirrors"
    return table(["name", "source", "direction", "output", "missing"],
                 [[m["name"], ",".join(m["source"]), m["direction"], m["output"],
                   ",".join(m["missing"]) or None] for m in r])


def show_frame(port, t_ns, direction, length, data):
    """One captured frame as a line: time, port, direction, MACs, EtherType (after an
    802.1Q tag, with its VLAN), length."""
    when = time.strftime("%H:%M:%S", time.localtime(t_ns // 1_000_000_000))
    line = f"{when}.{t_ns % 1_000_000_000 // 1000:06d} {port} {direction:3}"
    if len(data) < 14:
        return f"{line} runt, length {length}"
    mac = lambda b: ":".join(f"{x:02x}" for x in b)     # noqa: E731
    etype, vlan = int.from_bytes(data[12:14], "big"), ""
    if etype == 0x8100 and len(data) >= 18:
        vlan = f" vlan {int.from_bytes(data[14:16], 'big') & 0xfff}"
        etype = int.from_bytes(data[16:18], "big")
    return f"{line} {mac(data[6:12])} > {mac(data[0:6])}{vlan} ethertype 0x{etype:04x}, " \
           f"length {length}"


def show_event(ev):
    """One line: the local time (to the millisecond) the switch stamped, the event's name,
    its fields."""
    ev = dict(ev)
    name = ev.pop("event", "?")
    when = ev.pop("time", None)
    stamp = ""
    if _is_number(when):
        try:
            stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(when)) + \
                f".{int(when % 1 * 1000):03d} "
        except (OverflowError, OSError, ValueError):
            stamp = f"{when} "
    return f"{stamp}{name:10} " + " ".join(f"{k}={_cell(v)}" for k, v in ev.items())


# ---------------------------------------------------------------------------- parsing

class UsageError(Exception):
    """A usage error (exit 2), as one line: `ctl_main` prints it, as JSON with --json."""


class Parser(argparse.ArgumentParser):
    """argparse, with its usage errors raised rather than printed (for --json, and one line
    instead of the usage text), and a "did you mean" for a misspelt command word or choice
    (Python 3.11's argparse has no suggest_on_error).  Subparsers are of the same class."""

    def __init__(self, *args, **kw):
        # No abbreviated options: `--js` would be --json to argparse but not to ctl_main's
        # look at argv before parsing, which decides how usage errors are printed.
        kw.setdefault("allow_abbrev", False)
        super().__init__(*args, **kw)

    def error(self, message):
        words = self.prog.removeprefix("pyxsw ctl").strip()     # "fdb add" for its errors
        raise UsageError(f"{words}: {message}" if words else message)

    def _check_value(self, action, value):
        # argparse checks every value with choices here, command words included.
        if action.choices is None or value in action.choices:
            return
        close = difflib.get_close_matches(str(value), list(map(str, action.choices)), n=1)
        hint = (f"did you mean '{close[0]}'?" if close
                else f"choose from {', '.join(map(str, action.choices))}")
        if isinstance(action, argparse._SubParsersAction):
            raise argparse.ArgumentError(None, f"unknown command {value!r} ({hint})")
        if not action.option_strings:           # "mode: invalid mode 'pol' (...)"
            raise argparse.ArgumentError(None, f"invalid {action.dest} {value!r} ({hint})")
        raise argparse.ArgumentError(action, f"invalid choice {value!r} ({hint})")


def _checked(kind):
    """An argparse type made of one of the switch's own kinds (pyxsw.vocab): a value the
    switch would refuse is a usage error here, said in the switch's words, and nothing is
    sent.  For an integer kind, text that reads as an integer is checked as one (else as
    the text it is)."""
    def convert(text):
        value = text
        if kind.integer:
            try:
                value = int(text)
            except ValueError:
                pass
        try:
            return kind(value)
        except Invalid as e:
            raise argparse.ArgumentTypeError(str(e)) from None
    return convert


def _seconds(most):
    def convert(text):
        try:
            v = float(text)
        except ValueError:
            v = None
        if v is None or not 0 < v <= most:      # NaN too
            raise argparse.ArgumentTypeError(
                f"must be a number of seconds above 0 (at most {most:.0f}), got {text!r}")
        return v
    return convert


_timeout = _seconds(MAX_TIMEOUT)                # 0 would be a non-blocking socket
MAX_INTERVAL = 3600.0


def _sample(client, args, params):
    """worker.stats once; with --interval, twice, and busy over the time between."""
    first = client.call("worker.stats")
    if not args.interval:
        return first
    time.sleep(args.interval)
    before = {w.get("queue"): w for w in first}
    return [dict(w, busy=busy_share(w, since=before.get(w.get("queue"))))
            for w in client.call("worker.stats")]


def _rate(args):
    return getattr(args, "rate", False) or getattr(args, "rate_interval", None) is not None


def _port_stats(client, args, params):
    """port.stats once; with --rate, twice, and the rates between (pyxsw.mgmt.rates)."""
    if not _rate(args):
        return client.call("port.stats", **params)
    interval = args.rate_interval or 1.0
    t0, first = time.monotonic(), client.call("port.stats", **params)
    time.sleep(interval)
    t1, second = time.monotonic(), client.call("port.stats", **params)
    span = round(t1 - t0, 6)
    return {"interval": span, "ports": port_rates(first, second, span)}


def _worker_stats(client, args, params):
    """worker.stats once; with --interval, twice, and per second between."""
    if not args.interval:
        return client.call("worker.stats")
    t0, first = time.monotonic(), client.call("worker.stats")
    time.sleep(args.interval)
    t1, second = time.monotonic(), client.call("worker.stats")
    span = round(t1 - t0, 6)
    return {"interval": span, "workers": worker_rates(first, second, span)}


def _port_stats_options(c):
    _wide(c)
    c.add_argument("--rate", action="store_true",
                   help="per second: two looks --interval apart (default 1 s)")
    c.add_argument("--interval", dest="rate_interval", type=_seconds(MAX_INTERVAL),
                   metavar="SECONDS", help="with --rate: the time between the looks "
                                           "(implies --rate)")


def _top_options(c):
    c.add_argument("--interval", type=_seconds(MAX_INTERVAL), default=1.0, metavar="SECONDS",
                   help="redraw every SECONDS (default 1)")


def _top(client, args, params):
    from .top import run                        # curses only here
    return run(client, args, params)


def _vlan_shorthands(c):
    g = c.add_mutually_exclusive_group()
    g.add_argument("--access", type=_checked(VLAN_ID), metavar="N", default=argparse.SUPPRESS,
                   help="an access port on VLAN N (--vlan_mode access --vlan N)")
    g.add_argument("--trunk", type=_checked(VLAN_LIST), metavar="LIST",
                   default=argparse.SUPPRESS,
                   help="a trunk carrying LIST tagged: 10,20,30-40 or all (--vlan_mode trunk "
                        "--allowed LIST); --native N: its untagged VLAN (0: none)")


def _vlan_params(args):
    """port set's and port add's arguments: --access N and --trunk LIST are --vlan_mode
    with --vlan or --allowed; the keys together must be what the switch takes
    (vocab.port_vlan), else a usage error."""
    params = _params(args)
    words = " ".join(args.command.words)
    if hasattr(args, "access"):
        short, option = {"vlan_mode": "access", "vlan": args.access}, "--access"
    elif hasattr(args, "trunk"):
        short, option = {"vlan_mode": "trunk", "allowed": args.trunk}, "--trunk"
    else:
        short, option = {}, None
    for k, v in short.items():
        if k in params and params[k] != v:
            raise UsageError(f"{words}: --{k} {params[k]} contradicts {option}")
        if v is not None:
            params[k] = v
    keys = {k: params.get(k) for k in PortVlan._fields}
    if all(v is None for v in keys.values()) and not short:
        if args.method == "port.set":
            raise UsageError(f"{words}: nothing to set: --access N, or --trunk LIST "
                             f"[--native N]")
        return params
    try:
        port_vlan(**keys)
    except Invalid as e:
        raise UsageError(f"{words}: {e}") from None
    return params


def _wide(c):
    c.add_argument("--wide", action="store_true",
                   help="one port's counters as a table row (wider than 80 columns)")


def _interval(c):
    c.add_argument("--interval", type=_seconds(MAX_INTERVAL), metavar="SECONDS",
                   help="busy share over this long (two looks), not since the start")


def leave_worker_cores(client):
    """Run off the switch's worker cores when this machine has others (the switch's own
    threads do the same), and at the lowest priority (nice 19, as the switch's management
    loop): a capture's client takes a core's share while frames stream, and must take it
    neither from a worker nor from what feeds the switch (a NIC's interrupts, a veth's
    sender).  What it cannot keep up with is lost and counted.  A switch elsewhere, or no
    other core: as it is."""
    try:
        os.nice(19 - os.nice(0))
    except OSError:
        pass
    try:
        cores = {w["core"] for w in client.call("status").get("workers", ())}
        spare = os.sched_getaffinity(0) - cores
        if cores and spare and os.path.exists(client.path):
            os.sched_setaffinity(0, spare)
    except (RpcError, OSError, KeyError, TypeError):
        pass


def _capture_params(args):
    if args.write == "-" and sys.stdout.isatty():
        raise UsageError("capture: -w - writes pcap to standard output, which is a terminal: "
                         "pipe it (| tcpdump -r -) or name a file")
    return _params(args)


def _capture_options(c):
    c.add_argument("-w", dest="write", metavar="FILE",
                   help="write the frames as pcap to FILE ('-': standard output, for "
                        "`| tcpdump -r -`); else one line per frame")


def _capture(client, args, params):
    """Stream the frames: pcap to a file or stdout, or a line each; Ctrl-C or the count
    ends it, and stderr gets how many were captured and lost (as tcpdump says it)."""
    out, to = None, args.write
    if to == "-":
        out = sys.stdout.buffer
    elif to is not None:
        try:
            out = open(to, "wb")
        except OSError as e:
            raise OutputError(f"{to}: {e.strerror or e}") from None
    snaplen = params.get("snaplen", METHODS["capture.start"].rpc_params[2].default)
    leave_worker_cores(client)
    try:
        if out is not None:
            out.write(pcap.header(snaplen))
            out.flush()
        frames = client.capture(**params)
        while True:
            try:
                for t, d, n, data in frames:
                    if out is not None:
                        out.write(pcap.record(t, n, data))
                        if to == "-":
                            out.flush()
                    else:
                        print(show_frame(params["port"], t, d, n, data), flush=True)
                break
            except KeyboardInterrupt:
                try:
                    client.capture_stop()
                except RpcError as e:   # its count ended it meanwhile: the end is on its way
                    if e.code != "not_found":
                        raise
                frames = client.capture_frames()
    except BrokenPipeError:                     # `| tcpdump -r - -c 5`, `| head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        try:
            client.capture_stop()
        except (RpcError, OSError):
            pass
        return {}
    finally:
        if out is not None and to != "-":
            out.close()
    res = client.capture_result or {}
    print(f"{res.get('captured', 0)} frames captured, {res.get('lost', 0)} lost",
          file=sys.stderr)
    return None if args.write == "-" else res


@dataclass(frozen=True)
class Command:
    """A command: its words, the RPC method it calls, which of the method's parameters are
    given as words (the others are --options), how its result is shown (None: a line of
    SHOW_DONE), its help when the method's own does not say what the command does, options
    of ctl's own (how to show or fetch, or shorthands for the method's own), how to make
    the method's arguments of the words when shorthands are involved (UsageError when they
    do not fit), and how to fetch the result when it takes more than one call."""
    words: tuple
    method: str
    positional: tuple = ()
    show: Optional[Callable] = None
    help: Optional[str] = None
    options: Optional[Callable] = None
    fetch: Optional[Callable] = None
    params: Optional[Callable] = None
    short: tuple = ()           # (parameter, "-x"): a short option of a method's own
    live: Optional[Callable] = None             # runs on its own (top): returns the exit code
    exit: Optional[Callable] = None             # result -> exit code (else 0)


# Every argument's name, check, metavar, choices, default and whether it is required come
# from the method (handlers.METHODS), and so does the help unless given here.  Every method
# has a command, but for those in NOT_COMMANDS (tests/test_vocab.py checks both).
COMMANDS = (
    Command(("status",), "status", show=show_status),
    Command(("port", "list"), "port.list", show=show_ports),
    Command(("port", "add"), "port.add", ("name",), options=_vlan_shorthands,
            params=_vlan_params),
    Command(("port", "del"), "port.del", ("name",)),
    Command(("port", "stats"), "port.stats", ("name",), show=show_stats,
            options=_port_stats_options, fetch=_port_stats),
    Command(("port", "set"), "port.set", ("port",), options=_vlan_shorthands,
            params=_vlan_params),
    Command(("fdb", "show"), "fdb.list", show=show_fdb),
    Command(("fdb", "add"), "fdb.add", ("mac", "port")),
    Command(("fdb", "del"), "fdb.del", ("mac",)),
    Command(("fdb", "flush"), "fdb.flush"),
    Command(("mode",), "mode.set", ("mode",)),
    Command(("aging",), "aging.set", ("seconds",)),
    Command(("shutdown",), "shutdown"),
    Command(("events",), "events.subscribe",
            help="print FDB and port events as they happen (Ctrl-C ends)"),
    Command(("methods",), "methods", show=show_methods),
    Command(("workers",), "worker.stats", show=show_workers, options=_interval, fetch=_sample),
    Command(("worker", "stats"), "worker.stats", show=show_worker_table, options=_interval,
            fetch=_worker_stats, help="per-worker counters and busy share, a worker a line "
                                      "(with --interval: per second)"),
    Command(("top",), "port.stats", ("name",), options=_top_options, live=_top,
            help="a live view: rates per port and per worker, the FDB's size (q quits)"),
    Command(("vlan", "show"), "vlan.list", ("vlan",), show=show_vlans),
    Command(("capture",), "capture.start", ("port",), options=_capture_options,
            fetch=_capture, params=_capture_params, show=lambda r, args: None, short=(("count", "-c"),),
            help="capture a port's frames: lines, or pcap with -w (Ctrl-C or -c ends)"),
    Command(("mirror", "add"), "mirror.add", ("name",)),
    Command(("mirror", "del"), "mirror.del", ("name",)),
    Command(("mirror", "list"), "mirror.list", show=show_mirrors),
    Command(("reload",), "config.reload", show=show_reload,
            exit=lambda r: EXIT_REFUSED if r["failed"] else EXIT_OK),
    Command(("save",), "config.save", show=show_save, options=_output, fetch=_save,
            help="print the running configuration as TOML that `pyxsw run` takes"),
)
GROUPS = {"port": "list, add, remove ports; their counters and VLANs", "fdb": "the MAC table",
          "vlan": "the VLANs in use", "worker": "the worker threads",
          "mirror": "port mirrors (SPAN)"}
NOT_COMMANDS = {                                # method -> why ctl has no command for it
    "capture.stop": "`pyxsw ctl capture` stops its capture when it ends (Ctrl-C, -c)",
}


def build_parser():
    # -s and --json are accepted before or after the command words.
    common = Parser(add_help=False)
    common.add_argument("-s", "--socket", default=argparse.SUPPRESS, metavar="SOCKET",
                        help=f"management socket (default: ${ENV_SOCKET}, else the one "
                             f"switch serving in {RUNTIME_DIR}, else {DEFAULT_SOCKET})")
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                        help="print the result, or the error, as JSON")
    common.add_argument("--timeout", type=_timeout, default=argparse.SUPPRESS,
                        metavar="SECONDS", help="give up on the switch after this long "
                                                "(default 30)")

    p = Parser(prog="pyxsw ctl", parents=[common], description="Talk to a running pyxsw switch.",
               epilog="exit codes: 0 done, 1 the switch refused, 2 usage, 3 unreachable")
    sub = p.add_subparsers(dest="cmd", required=True, metavar="COMMAND")
    groups = {}
    for cmd in COMMANDS:
        parent = sub
        if len(cmd.words) > 1:
            group = cmd.words[0]
            if group not in groups:
                words = [c.words[1] for c in COMMANDS if c.words[0] == group]
                groups[group] = sub.add_parser(group, help=GROUPS[group]).add_subparsers(
                    dest=f"{group}_cmd", required=True, metavar="|".join(words))
            parent = groups[group]
        fn = METHODS[cmd.method]
        c = parent.add_parser(cmd.words[-1], parents=[common], help=cmd.help or _help(fn))
        c.set_defaults(command=cmd, method=cmd.method, show=cmd.show)
        for param in fn.rpc_params:
            _argument(c, param, param.name in cmd.positional, dict(cmd.short).get(param.name))
        if cmd.options:
            cmd.options(c)
    return p


def _help(fn):
    """A method's help line as argparse's own read: "the switch at a glance"."""
    h = fn.rpc_help.rstrip(".")
    return h[0].lower() + h[1:] if h[1:2].islower() else h


def _argument(parser, param, positional, short=None):
    """A method's parameter as a word (an optional one may be left out) or as --name (and
    `short`, "-c", when given)."""
    kind = param.kind
    kw = {"choices": kind.choices} if kind.choices else \
        {"type": _checked(kind), "metavar": kind.metavar}
    if positional:
        parser.add_argument(param.name, **kw, **({} if param.required else {"nargs": "?"}))
    else:
        parser.add_argument(*([short] if short else []), f"--{param.name}",
                            default=param.default, required=param.required, **kw)


def _params(args):
    """The arguments of args' method, as the words and options gave them."""
    return {p.name: getattr(args, p.name) for p in METHODS[args.method].rpc_params
            if getattr(args, p.name) is not None}


def _call(client, args, params):
    return client.call(args.method, **params)


# ---------------------------------------------------------------------------- main

def ctl_main(argv=None) -> int:
    """`pyxsw ctl ARGV...`; returns the exit code."""
    argv = sys.argv[1:] if argv is None else list(argv)
    as_json = "--json" in argv                  # known before parsing: usage errors too
    try:
        args = build_parser().parse_args(argv)
        path = socket_path(args)
        params = (args.command.params or _params)(args)
    except UsageError as e:
        return _error(USAGE, str(e), EXIT_USAGE, as_json)
    except SystemExit as e:                     # --help
        return e.code if isinstance(e.code, int) else EXIT_USAGE
    timeout = getattr(args, "timeout", 30.0)
    from ..client import Client                 # here: `pyxsw ctl --help` needs no msgpack

    try:
        with Client(path, timeout=timeout) as c:
            if args.method == "events.subscribe":
                return _follow(c, as_json)
            if args.command.live:
                return args.command.live(c, args, params)
            result = (args.command.fetch or _call)(c, args, params)
    except RpcError as e:
        return _error(e.code, e.message, EXIT_REFUSED, as_json)
    except OutputError as e:
        return _error("output", str(e), EXIT_REFUSED, as_json)
    except FileNotFoundError:
        why = (f"{path}: no such socket: is the switch running (`pyxsw run -c FILE`), and is "
               "this its socket (-s)?")
    except ConnectionRefusedError:
        why = (f"{path}: connection refused: no switch is serving this socket (a file left by "
               "a switch that died?)")
    except PermissionError:
        why = f"{path}: permission denied: run as root or as a member of the socket's group"
    except TimeoutError:                        # socket.timeout too
        why = f"{path}: no reply within {timeout:g} s"
    except OSError as e:                        # ConnectionError (closed on us) included
        why = f"{path}: {e}"
    except KeyboardInterrupt:
        return 130
    else:
        if result is None and args.command.fetch is _capture:   # pcap on stdout: nothing more
            return EXIT_OK
        text = (json.dumps(result, indent=2, default=str) if as_json
                else (args.show or SHOW_DONE[args.method])(result, args))
        if text is None:
            return EXIT_OK
        code = _print(text)
        return args.command.exit(result) if args.command.exit else code
    return _error(UNREACHABLE, why, EXIT_UNREACHABLE, as_json)


def _print(text):
    """Print a result; a reader that stops early (`| head`) is no error and no traceback."""
    try:
        print(text, flush=True)
    except BrokenPipeError:
        # Python would report the pipe again when it flushes stdout at exit: point it away.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return EXIT_OK


def _error(code, message, exit_code, as_json):
    """One line on stderr: the switch's error code is shown when it refused; with --json,
    {"error": {"code", "message"}} whatever the error (codes of our own: usage,
    unreachable)."""
    if as_json:
        line = json.dumps({"error": {"code": code, "message": message}})
    elif exit_code == EXIT_REFUSED:
        line = f"pyxsw ctl: {code}: {message}"
    else:
        line = f"pyxsw ctl: {message}"
    print(line, file=sys.stderr)
    return exit_code


def socket_path(args):
    """-s, else $PYXSW_SOCKET, else the socket of the one switch serving in RUNTIME_DIR,
    else the default (whose absence the connection reports as usual).  Several serving
    there is a usage error: which one is meant cannot be guessed."""
    path = getattr(args, "socket", None)
    if path is None:
        path = os.environ.get(ENV_SOCKET) or None
    if path is not None:
        return path
    serving = serving_sockets(RUNTIME_DIR)
    if len(serving) > 1:
        raise UsageError(f"{len(serving)} switches serve in {RUNTIME_DIR} ("
                         f"{', '.join(os.path.basename(p) for p in serving)}): name one with "
                         f"-s SOCKET or ${ENV_SOCKET}")
    return serving[0] if serving else DEFAULT_SOCKET


def serving_sockets(directory):
    """The *.sock sockets of `directory` a switch serves (others there: claim files,
    sockets left by switches that died)."""
    try:
        names = sorted(os.listdir(directory))
    except OSError:
        return []
    found = []
    for name in names:
        path = os.path.join(directory, name)
        try:
            if name.endswith(".sock") and stat.S_ISSOCK(os.lstat(path).st_mode) and \
                    _answers(path):
                found.append(path)
        except OSError:
            pass
    return found


def _answers(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(1.0)
    try:
        s.connect(path)
    except (PermissionError, TimeoutError):     # served, by a switch we may not use / a busy one
        return True
    except OSError:                             # refused: a socket whose switch is gone
        return False
    finally:
        s.close()
    return True


def _follow(client, as_json):
    try:
        for ev in client.events():
            print(json.dumps(ev, default=str) if as_json else show_event(ev), flush=True)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:                     # `pyxsw ctl events | head`
        return _print("")
    print("pyxsw ctl: the switch closed the connection", file=sys.stderr)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(ctl_main())
