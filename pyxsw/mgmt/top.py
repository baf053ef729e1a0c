"""`pyxsw ctl top`: a live view of a running switch, redrawn every --interval seconds.

Per port: frames and bits per second each way, floods and drops per second (with the
causes that counted); per worker: busy share, wake-ups, idle loops and loops per second; the
FDB's size.  `q` (or Ctrl-C) quits with the terminal as it was; a switch that goes away ends
it with one line and exit code 3 (as any ctl command that loses its switch).

curses from the standard library; the screen's text is made by `screen()`, which is pure
(tests call it), from rates made by pyxsw.mgmt.rates.
"""
from __future__ import annotations

import curses
import os
import sys
import time

from .rates import DROPS, port_rates, si, worker_rates

QUIT_KEYS = (ord("q"), ord("Q"))
PORT_HEAD = ("port", "up", "rx pkt/s", "tx pkt/s", "rx bit/s", "tx bit/s", "flood/s", "drop/s")
WORKER_HEAD = ("worker", "mode", "busy", "wakeups/s", "idle loops/s", "loops/s")


def _row(cells, widths):
    return "  ".join(c.ljust(w) if i < 2 else c.rjust(w)
                     for i, (c, w) in enumerate(zip(cells, widths))).rstrip()


def _table(head, rows, extra=None):
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    lines = [_row(head, widths) + ("  " + extra[0] if extra else "")]
    for i, r in enumerate(rows):
        lines.append(_row(r, widths) + ("  " + extra[i + 1] if extra and extra[i + 1] else ""))
    return lines


def screen(status, ports, workers, interval, width=100):
    """The lines of one screen: `status` as the status RPC gives it, `ports` and `workers`
    as port_rates() and worker_rates() make them (None before the second look)."""
    fdb = status.get("fdb", {})
    up = status.get("uptime")
    lines = [f"pyxsw {status.get('name', '?')}  mode {status.get('mode', '?')}  "
             f"up {_duration(up) if up is not None else '?'}  "
             f"fdb {fdb.get('entries', '?')} entries"
             + (f" of {fdb['capacity']}" if "capacity" in fdb else "")
             + f"  every {interval:g} s  (q quits)", ""]
    if ports is None:
        lines.append("measuring...")
        return [line[:width] for line in lines]
    rows, causes = [], []
    for name, r in sorted(ports.items()):
        rows.append([name, "yes" if r.get("up") else "no", si(r["rx_packets"]),
                     si(r["tx_packets"]), si(r["rx_bits"]), si(r["tx_bits"]),
                     si(r["flooded"]), si(r["dropped"])])
        causes.append(" ".join(f"{k} {si(r[k])}" for k in DROPS if r.get(k)))
    lines += _table(PORT_HEAD, rows, ["drops by cause", *causes]) if rows else ["no ports"]
    lines.append("")
    rows = [[str(w["queue"]), str(w.get("mode") or "-"),
             "-" if w["busy"] is None else f"{100 * w['busy']:.1f}%", si(w["wakeups"]),
             si(w["idle_loops"]), si(w["loops"])] for w in workers]
    lines += _table(WORKER_HEAD, rows) if rows else ["no workers"]
    return [line[:width] for line in lines]


def _duration(seconds):
    from .ctl import duration
    return duration(seconds)


def run(client, args, params):
    """ctl's `top` command: the exit code.  Errors talking to the switch propagate (the
    terminal restored first) for ctl_main to report."""
    if not (os.isatty(sys.stdin.fileno()) and os.isatty(sys.stdout.fileno())):
        print("pyxsw ctl: top needs a terminal; for scripts: pyxsw ctl port stats --rate "
              "[--json]", file=sys.stderr)
        return 2
    try:
        return curses.wrapper(_loop, client, args.interval, params.get("name"))
    except KeyboardInterrupt:                   # Ctrl-C: as q
        return 0


def _look(client, name):
    ports = client.call("port.stats", **({"name": name} if name else {}))
    return time.monotonic(), ports, client.call("worker.stats"), client.call("status")


def _loop(win, client, interval, name):
    try:
        curses.curs_set(0)
    except curses.error:                        # a terminal that cannot hide it
        pass
    win.timeout(50)
    before = _look(client, name)
    _draw(win, screen(before[3], None, None, interval, win.getmaxyx()[1] - 1))
    due = before[0] + interval
    while True:
        key = win.getch()
        if key in QUIT_KEYS:
            return 0
        if key == curses.KEY_RESIZE:
            win.clear()
        if time.monotonic() < due:
            continue
        now = _look(client, name)
        span = now[0] - before[0]
        _draw(win, screen(now[3], port_rates(before[1], now[1], span),
                          worker_rates(before[2], now[2], span), interval,
                          win.getmaxyx()[1] - 1))
        before, due = now, now[0] + interval


def _draw(win, lines):
    win.erase()
    rows = win.getmaxyx()[0]
    for y, line in enumerate(lines[:rows]):
        try:
            win.addstr(y, 0, line)
        except curses.error:                    # the last cell of a tiny window
            pass
    win.refresh()
