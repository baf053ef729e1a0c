"""`pyxsw ctl`: talk to a running switch through its management socket.

    pyxsw ctl [-s SOCKET] [--json] COMMAND
      status | port list | port add IFNAME | port del IFNAME | port stats [IFNAME]
      fdb show [--port IFNAME] [--vlan N] | fdb add MAC IFNAME [--vlan N]
      fdb del MAC [--vlan N] | fdb flush [--port IFNAME]
      mode poll|interrupt|adaptive | aging SECONDS | shutdown | events

Readable tables by default; `--json` prints the RPC result as JSON (events: one per line).
Exit codes: 0 done, 1 the switch refused (the error is printed), 2 usage, 3 no switch to
talk to (socket missing, refused, not permitted, or the connection failed).
"""
from __future__ import annotations

import argparse
import json
import sys

from . import DEFAULT_SOCKET, RpcError
from .handlers import MODES

EXIT_OK, EXIT_REFUSED, EXIT_USAGE, EXIT_UNREACHABLE = 0, 1, 2, 3
PORT_COUNTERS = ("rx_packets", "rx_bytes", "tx_packets", "tx_bytes",
                 "rx_dropped", "tx_dropped", "flooded")


# ---------------------------------------------------------------------------- rendering

def table(headers, rows):
    """Plain text table: columns as wide as their widest cell, numbers right-aligned."""
    cells = [[str(h) for h in headers]] + [[_cell(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    numeric = [bool(rows) and all(_is_number(r[i]) for r in rows) for i in range(len(headers))]
    return "\n".join("  ".join(c.rjust(w) if num else c.ljust(w)
                               for c, w, num in zip(r, widths, numeric)).rstrip()
                     for r in cells)


def _is_number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _cell(v):
    if isinstance(v, bool):
        return "yes" if v else "no"
    if v is None:
        return "-"
    return str(v)


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
    return _mapping(r)


def show_ports(r, args):
    return table(["port", "index", "up", "state", "reason"],
                 [[p["name"], p["index"], p["up"], p.get("state"), p.get("reason") or ""]
                  for p in r])


def show_stats(r, args):
    out = table(["port", "up", *PORT_COUNTERS],
                [[name, s.get("up"), *(s.get(k) for k in PORT_COUNTERS)]
                 for name, s in sorted(r.items())])
    if args.name:                               # one port: its details too
        s = r[args.name]
        rest = {k: v for k, v in s.items() if k not in PORT_COUNTERS and k != "up"}
        if rest:
            out += "\n\n" + _mapping(rest)
    return out


def show_fdb(r, args):
    rows = [[e["mac"], e["vlan"], e["port"], e["age"], "static" if e["static"] else "learned"]
            for e in r]
    return table(["mac", "vlan", "port", "age", "type"], rows) + \
        f"\n{len(r)} entr{'y' if len(r) == 1 else 'ies'}"


SHOW_DONE = {
    "port.add": lambda r, a: f"port {r['name']} added (index {r['index']}, "
                             f"{r.get('state') or ('up' if r['up'] else 'down')})"
                             + "".join(f"\nwarning: {w}" for w in r.get("warnings", ())),
    "port.del": lambda r, a: f"port {r['name']} removed",
    "fdb.add": lambda r, a: f"{r['mac']} vlan {r['vlan']} -> {r['port']} (static)",
    "fdb.del": lambda r, a: f"{r['mac']} vlan {r['vlan']} removed",
    "fdb.flush": lambda r, a: f"flushed {r['flushed']} entr{'y' if r['flushed'] == 1 else 'ies'}",
    "mode.set": lambda r, a: f"mode {r['mode']}",
    "aging.set": lambda r, a: f"aging {r['aging']} s" if r["aging"] else "aging off",
    "shutdown": lambda r, a: "switch shutting down",
}


def show_event(ev):
    ev = dict(ev)
    name = ev.pop("event", "?")
    return f"{name:10} " + " ".join(f"{k}={_cell(v)}" for k, v in ev.items())


# ---------------------------------------------------------------------------- parsing

def _vlan(text):
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 <= v <= 4095:
        raise argparse.ArgumentTypeError(f"must be 0..4095: {v}")
    return v


def _seconds(text):
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number of seconds: {text!r}") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"must not be negative: {v}")
    return v


def build_parser():
    # -s and --json are accepted before or after the command words.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-s", "--socket", default=argparse.SUPPRESS, metavar="SOCKET",
                        help=f"management socket (default {DEFAULT_SOCKET})")
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                        help="print the result as JSON")
    common.add_argument("--timeout", type=float, default=argparse.SUPPRESS, metavar="SECONDS",
                        help="give up on the switch after this long (default 30)")

    p = argparse.ArgumentParser(prog="pyxsw ctl", parents=[common],
                                description="Talk to a running pyxsw switch.")
    sub = p.add_subparsers(dest="cmd", required=True, metavar="COMMAND")

    def command(parent, name, method, params, show, help):
        c = parent.add_parser(name, parents=[common], help=help)
        c.set_defaults(method=method, params=params, show=show)
        return c

    command(sub, "status", "status", lambda a: {}, show_status, "the switch at a glance")

    port = sub.add_parser("port", help="list, add, remove ports; their counters")
    psub = port.add_subparsers(dest="port_cmd", required=True, metavar="list|add|del|stats")
    command(psub, "list", "port.list", lambda a: {}, show_ports, "the ports")
    command(psub, "add", "port.add", lambda a: {"name": a.name}, None,
            "make an interface a port").add_argument("name", metavar="IFNAME")
    command(psub, "del", "port.del", lambda a: {"name": a.name}, None,
            "remove a port").add_argument("name", metavar="IFNAME")
    command(psub, "stats", "port.stats", lambda a: {"name": a.name}, show_stats,
            "port counters").add_argument("name", metavar="IFNAME", nargs="?")

    fdb = sub.add_parser("fdb", help="the MAC table")
    fsub = fdb.add_subparsers(dest="fdb_cmd", required=True, metavar="show|add|del|flush")
    c = command(fsub, "show", "fdb.list", lambda a: {"port": a.port, "vlan": a.vlan}, show_fdb,
                "list entries")
    c.add_argument("--port", metavar="IFNAME")
    c.add_argument("--vlan", type=_vlan, metavar="N")
    c = command(fsub, "add", "fdb.add",
                lambda a: {"mac": a.mac, "port": a.port, "vlan": a.vlan}, None,
                "add a static entry")
    c.add_argument("mac", metavar="MAC")
    c.add_argument("port", metavar="IFNAME")
    c.add_argument("--vlan", type=_vlan, default=0, metavar="N")
    c = command(fsub, "del", "fdb.del", lambda a: {"mac": a.mac, "vlan": a.vlan}, None,
                "remove an entry")
    c.add_argument("mac", metavar="MAC")
    c.add_argument("--vlan", type=_vlan, default=0, metavar="N")
    command(fsub, "flush", "fdb.flush", lambda a: {"port": a.port}, None,
            "remove learned entries").add_argument("--port", metavar="IFNAME")

    command(sub, "mode", "mode.set", lambda a: {"mode": a.mode}, None,
            "change the workers' mode").add_argument("mode", choices=MODES)
    command(sub, "aging", "aging.set", lambda a: {"seconds": a.seconds}, None,
            "set the FDB aging time (0: never)").add_argument("seconds", type=_seconds,
                                                               metavar="SECONDS")
    command(sub, "shutdown", "shutdown", lambda a: {}, None, "stop the switch")
    command(sub, "events", "events.subscribe", lambda a: {}, None,
            "print FDB and port events as they happen (Ctrl-C ends)")
    return p


# ---------------------------------------------------------------------------- main

def ctl_main(argv=None) -> int:
    """`pyxsw ctl ARGV...`; returns the exit code."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as e:                     # --help (0) or a usage error (2)
        return e.code if isinstance(e.code, int) else EXIT_USAGE
    path = getattr(args, "socket", DEFAULT_SOCKET)
    as_json = getattr(args, "json", False)
    from ..client import Client                 # here: `pyxsw ctl --help` needs no msgpack

    try:
        with Client(path, timeout=getattr(args, "timeout", 30.0)) as c:
            if args.method == "events.subscribe":
                return _follow(c, as_json)
            result = c.call(args.method, **{k: v for k, v in args.params(args).items()
                                            if v is not None})
    except RpcError as e:
        print(f"pyxsw ctl: {e.code}: {e.message}", file=sys.stderr)
        return EXIT_REFUSED
    except FileNotFoundError:
        return _unreachable(f"{path}: no such socket: is the switch running "
                            "(`pyxsw run -c FILE`), and is this its socket (-s)?")
    except ConnectionRefusedError:
        return _unreachable(f"{path}: connection refused: no switch is serving this socket "
                            "(a file left by a switch that died?)")
    except PermissionError:
        return _unreachable(f"{path}: permission denied: run as root or as a member of the "
                            "socket's group")
    except (TimeoutError, OSError) as e:        # ConnectionError and socket.timeout included
        return _unreachable(f"{path}: {e}")
    except KeyboardInterrupt:
        return 130

    if as_json:
        print(json.dumps(result, indent=2, default=str))
    else:
        show = args.show or SHOW_DONE[args.method]
        print(show(result, args))
    return EXIT_OK


def _unreachable(message):
    print(f"pyxsw ctl: {message}", file=sys.stderr)
    return EXIT_UNREACHABLE


def _follow(client, as_json):
    try:
        for ev in client.events():
            print(json.dumps(ev, default=str) if as_json else show_event(ev), flush=True)
    except KeyboardInterrupt:
        return 130
    print("pyxsw ctl: the switch closed the connection", file=sys.stderr)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(ctl_main())
