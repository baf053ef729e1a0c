"""The `pyxsw` command: run, ctl, lab up/down, demo, doctor.

Exit codes: 0 success, 1 failure at run time (a ping failed, a lab's interface is missing...),
2 a configuration or usage error, always reported as one line on stderr.  `pyxsw run` also
exits 75 (EX_TEMPFAIL) when the machine is not ready for the configuration yet: an interface
missing or busy, the management socket served by another instance (systemd retries that one).
"""
from __future__ import annotations

import argparse
import contextlib
import functools
import logging
import os
import re
import resource
import signal
import sys
import tempfile
import threading
import time

from . import __version__, logs
from .config import Config, ConfigError
from .counters import PORT_SUMMARY
from .lab import Lab, LabError, check_prefix, lab_down, lab_up
from .render import table
from .service import Notifier, ports_status

log = logging.getLogger("pyxsw")


def _setup_logging(section=None):
    """stderr, `pyxsw: LEVEL: message` (pyxsw.logs): as [log] says, or at info in text."""
    logs.setup(section.level if section else "info", section.format if section else "text")


def _line(e):
    # one line whatever an error's text holds (a libxdp message, a path)
    return " ".join(str(e).split())


def _fail(msg, code):
    print(msg, file=sys.stderr)
    return code


# ---------------------------------------------------------------------------- run

# Every signal whose default action ends the process stops the switch cleanly instead (XDP
# detached, promiscuous mode restored, socket removed): SIGQUIT too.  SIGHUP reloads the
# config file instead (RELOAD_SIGNAL).  Faults (SIGSEGV...) and SIGKILL cannot be handled; job
# control (SIGSTOP/SIGCONT, a debugger attaching) must not stop it.
RELOAD_SIGNAL = signal.SIGHUP
STOP_SIGNALS = frozenset(
    {signal.SIGINT, signal.SIGQUIT, signal.SIGTERM, signal.SIGUSR1,
     signal.SIGUSR2, signal.SIGALRM, signal.SIGVTALRM, signal.SIGPROF, signal.SIGIO,
     signal.SIGPWR, signal.SIGXCPU, signal.SIGSTKFLT}
    | set(range(signal.SIGRTMIN, signal.SIGRTMAX + 1)))
# How long the management loop may take to close once asked (it gives requests under way 5 s).
LOOP_CLOSE = 15.0
# A management loop that has not turned for this long is wedged (at nice 19 on saturated
# cores it was seen late by up to 2 s).
LOOP_STALL = 15.0
IDLE_NICE = 19                  # the management loop's, with [management] priority = "idle"
# `pyxsw run`'s exit codes (README, "Running as a service"): the unit retries 75, never 2.
EXIT_RUNTIME = 1                # failed while running (the management loop died...)
EXIT_CONFIG = 2                 # the file is wrong as written: restarting cannot help
EXIT_NOT_READY = os.EX_TEMPFAIL  # 75: the machine is not ready for the file yet: retry
# Readiness (READY=1 to systemd) waits for every port to forward, this long at most: a NIC's
# link can drop for a moment when XDP attaches, but a port with no cable must not hold the
# boot up.  Ports not up by then are named in STATUS= and forward once their link is up.
READY_WAIT = 5.0


def cmd_run(args):
    try:
        cfg = Config.load(args.config)
    except ConfigError as e:
        return _fail(str(e), EXIT_CONFIG)
    _setup_logging(cfg.log)
    # The compiled core and the server only once the file is good.
    from .mgmt.metrics import MetricsServer
    from .mgmt.server import Server, ServerError
    from .switch import Switch, SwitchError

    _raise_nofile(cfg)
    notifier = Notifier()               # systemd's NOTIFY_SOCKET; does nothing without it
    sw = Switch(cfg)
    metrics = cfg.metrics.address and MetricsServer(sw, *cfg.metrics.address)
    server = Server(sw, cfg.management.socket, group=cfg.management.group or None,
                    max_clients=cfg.management.max_clients, metrics=metrics or None)
    if notifier.watchdog_interval:
        sw.set_heartbeat(functools.partial(_heartbeat, notifier, server))
    # Stop signals wait, blocked, for this thread to take them (sigwait below): never a
    # handler interrupting start() half-way.  Threads started from here inherit the block.
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS | {RELOAD_SIGNAL})
    try:
        # Claim the socket first: a second instance must refuse before touching any port.
        server.bind()
    except (ServerError, OSError) as e:
        key = getattr(e, "key", "management.socket")     # a group's problem names the group
        return _fail(f"{cfg.source}: {key}: {_line(e)}",
                     EXIT_NOT_READY if getattr(e, "temporary", False) else EXIT_CONFIG)
    failed = []
    ended = threading.Event()
    try:
        try:
            sw.start()
        except SwitchError as e:
            line = f"{cfg.source}: {e.key}: {_line(e)}" if e.key else f"pyxsw: {_line(e)}"
            return _fail(line, EXIT_NOT_READY if e.temporary else
                         EXIT_CONFIG if e.key else EXIT_RUNTIME)
        sw.leave_worker_cores()
        threading.Thread(target=_doctor_said, args=(cfg,), name="pyxsw-doctor",
                         daemon=True).start()
        loop = threading.Thread(target=_serve, name="pyxsw-management", daemon=True,
                                args=(server, cfg.management.priority, failed, ended,
                                      threading.get_ident()))
        loop.start()
        log.info("switch %s running: ports %s; mode %s; cores %s; socket %s", cfg.switch.name,
                 ", ".join(p.name for p in cfg.ports) or "(none)", cfg.switch.mode,
                 ",".join(map(str, cfg.switch.cores)), cfg.management.socket)
        if _wait_ready(sw, server, ended):
            ports = list(sw.ports.values())
            status = ports_status(ports)
            if not all(p.up for p in ports):
                log.warning("%s", status)
            notifier.ready(status)
            if notifier.enabled:            # `systemctl status` follows the ports from now on
                sw.add_listener(lambda ev: ev["event"].startswith("port.") and notifier.notify(
                    f"STATUS={ports_status(list(sw.ports.values()))}", wait=False))
        # This thread, at normal priority, only waits: for a stop signal, or for the loop to
        # end (the shutdown RPC), which wakes it with one.  sigwait() returns nothing but a
        # signal of the set (sigtimedwait can return garbage after EINTR: issue 9).
        # SIGHUP: the reload runs in the management loop (Server.request_reload, the code of
        # config.reload), which logs what it did; this thread goes back to waiting.  Not the
        # loop's add_signal_handler: that takes signals in the main thread only, and this
        # process keeps every signal blocked outside this sigwait.
        while (signo := signal.sigwait(STOP_SIGNALS | {RELOAD_SIGNAL})) == RELOAD_SIGNAL:
            if ended.is_set():
                signo = signal.SIGTERM
                break
            log.info("SIGHUP: reloading %s", sw.config_path)
            server.request_reload()
        notifier.stopping()
        if not ended.is_set():
            server.request_stop()
            with contextlib.suppress(OSError):      # a loop held back by design stops at once
                os.setpriority(os.PRIO_PROCESS, loop.native_id, 0)
            log.info("%s: stopping", _signal_name(signo))
        loop.join(LOOP_CLOSE)
        if loop.is_alive():
            log.error("the management loop did not close within %d s; stopping the switch "
                      "without it", LOOP_CLOSE)
        log.info("switch %s stopping", cfg.switch.name)
    finally:
        server.release()
        sw.stop()
    if failed:
        return _fail(f"pyxsw: management: {failed[0]}", EXIT_RUNTIME)
    return 0


def _doctor_said(cfg):
    """`pyxsw doctor`'s WARNs, logged once the switch runs (in a thread of their own: they
    read ethtool and sysfs, and must not hold readiness up).  Not its FAILs: those stopped
    start() already, with their one line.  Not port.mtu: the switch says that itself."""
    from .doctor import WARN, diagnose
    try:
        checks = diagnose(cfg)
    except Exception as e:              # a check that broke must not stop the switch
        log.debug("doctor: %s", _line(e))
        return
    for c in checks:
        if c.status == WARN and c.name != "port.mtu":
            log.warning("doctor: %s: %s (fix: %s)", f"{c.name} {c.subject}".strip(),
                        c.found, c.fix)


def _heartbeat(notifier, server):
    """Called by housekeeping on every healthy tick: feed the watchdog, unless the
    management loop has stopped turning (wedged: the switch cannot be managed)."""
    if server.stalled(LOOP_STALL):
        if not getattr(server, "_stall_said", False):
            log.error("the management loop has not turned for %d s: the watchdog is no "
                      "longer fed", LOOP_STALL)
            server._stall_said = True
        return
    server._stall_said = False
    notifier.watchdog()


def _wait_ready(sw, server, ended):
    """Until the management socket serves and every port is up (READY_WAIT at most for the
    ports); False if a stop signal or the loop's end came first."""
    deadline = time.monotonic() + READY_WAIT
    while not ended.is_set() and not signal.sigpending() & STOP_SIGNALS:
        if server.started.is_set() and (all(p.up for p in list(sw.ports.values()))
                                        or time.monotonic() >= deadline):
            return True
        time.sleep(0.02)
    return False


def _raise_nofile(cfg):
    """Enough descriptors for management.max_clients (and the refused connections held a
    moment), the ports' sockets and BPF objects (8 or so per port and queue) and ports
    added at run time.  Out of descriptors, accept() fails: uvloop (libuv) then accepts
    and at once closes every waiting connection, whose clients get no reply (plain asyncio
    logs each failure and retries a second later), and new port sockets fail too.  Soft
    limits of 1,024 are common, under far higher hard limits, for programs that use
    select(); we don't, so we take the hard limit (systemd's advice) and warn when even
    that is not enough."""
    from .mgmt.server import REFUSED_LINGER
    need = (cfg.management.max_clients + REFUSED_LINGER + 64
            + 16 * max(len(cfg.ports), 4) * len(cfg.switch.cores))
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= need:
        return
    new = need if hard == resource.RLIM_INFINITY else hard
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
    except (OSError, ValueError):
        new = soft
    if new < need:
        log.warning("%d file descriptors allowed (RLIMIT_NOFILE), %d wanted for "
                    "management.max_clients = %d and the ports: raise LimitNOFILE", new, need,
                    cfg.management.max_clients)


def _signal_name(signo):
    try:
        return signal.Signals(signo).name
    except ValueError:                  # real-time signals other than SIGRTMIN and SIGRTMAX
        return f"signal {signo}"


def _serve(server, priority, failed, ended, main_thread):
    """The management loop's thread; when it ends, for whatever reason, it wakes the main
    thread to stop the switch.  With priority "idle" it runs (and the executor threads
    it starts inherit) at nice 19: on a core it shares with the kernel's half of forwarding
    (a NIC's receive softirq) or anything else, an RPC storm slows down, forwarding does not.

    Not SCHED_IDLE, which protects forwarding no better here (an RPC storm cost it 7-8%
    either way, 52% at nice 0) but starves the switch's own threads: a SCHED_IDLE loop
    preempted while it holds the GIL holds up the housekeeping thread (aging, link state,
    events) until it runs again.  In a MAC-move storm on saturated cores housekeeping drained
    the workers' event rings 14-19 times in 9 s behind a SCHED_IDLE loop, 34-38 behind a
    nice 19 one, and `status` took up to 1.8 s against 0.6 s."""
    if priority == "idle":
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), IDLE_NICE)
        except OSError as e:
            log.warning("management.priority = idle not applied: %s", e)
    try:
        server.run(stop_signals=())
    except BaseException as e:          # reported by cmd_run, which still stops the switch
        failed.append(e)
    finally:
        ended.set()
        with contextlib.suppress(OSError):
            signal.pthread_kill(main_thread, signal.SIGTERM)


# ---------------------------------------------------------------------------- lab

def cmd_lab(args):
    try:
        if args.lab_cmd == "up":
            lab = lab_up(args.hosts, args.prefix, args.queues)
            for h in lab.hosts:
                print(f"{h.ns:12} {h.ifname} {h.mac} {h.cidr:16} <-> switch port {h.port}")
        else:
            namespaces, links = lab_down(args.prefix)
            print(f"removed {len(namespaces)} namespaces, {len(links)} links")
    except ValueError as e:
        return _fail(f"pyxsw lab: {e}", 2)
    except LabError as e:
        return _fail(f"pyxsw lab: {e}", 1)
    return 0


# ---------------------------------------------------------------------------- demo




def _ping(lab, i, j):
    """One line about host i pinging host j, and whether every reply came back."""
    p = lab.run(i, "ping", "-n", "-c", "2", "-W", "2", lab.hosts[j].ip,
                capture_output=True, text=True)
    m = re.search(r"(\d+) packets transmitted, (\d+) received", p.stdout)
    rtt = re.search(r"= [\d.]+/([\d.]+)/", p.stdout)
    sent, got = (int(m[1]), int(m[2])) if m else (2, 0)
    ok = p.returncode == 0 and got == sent
    line = (f"h{i} -> h{j} ({lab.hosts[j].ip}): {'ok  ' if ok else 'FAIL'} {got}/{sent} replies"
            + (f", avg rtt {rtt[1]} ms" if rtt else ""))
    return ok, line


def demo_config(ports, socket_path) -> Config:
    usable = os.sched_getaffinity(0)
    core = 1 if 1 in usable else min(usable)     # keep core 0 for the pings where we can
    return Config.from_dict({
        "switch": {"name": "demo", "mode": "poll", "cores": [core]},
        "management": {"socket": socket_path},
        "port": [{"name": p} for p in ports],
    }, source="<demo>")


DEMO_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)


def _interrupt(*_):
    # The first signal unwinds like Ctrl-C, through the finally blocks that tear the switch
    # and the lab down; later ones are ignored so that they cannot cut that teardown short.
    for sig in DEMO_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
    raise KeyboardInterrupt


def cmd_demo(args):
    _setup_logging()
    from .switch import Switch, SwitchError

    for sig in DEMO_SIGNALS:
        signal.signal(sig, _interrupt)
    prefix = args.prefix
    try:
        check_prefix(prefix, 3)
    except ValueError as e:
        return _fail(f"pyxsw demo: {e}", 2)
    lab_down(prefix)                # a demo killed with -9 may have left its lab behind
    lab = Lab(hosts=3, prefix=prefix)
    failed = 0
    with tempfile.TemporaryDirectory(prefix="pyxsw-demo-") as tmp:
        try:
            lab.up()
            cfg = demo_config(lab.ports, os.path.join(tmp, "demo.sock"))
            print(f"lab: {len(lab.hosts)} hosts, switch ports {', '.join(lab.ports)}; "
                  f"switch mode {cfg.switch.mode} on core {cfg.switch.cores[0]}")
            with Switch(cfg) as sw:
                print("\nall-pairs ping:")
                for i in range(len(lab.hosts)):
                    for j in range(len(lab.hosts)):
                        if i != j:
                            ok, line = _ping(lab, i, j)
                            failed += not ok
                            print(line, flush=True)
                names = {h.mac: f"h{h.index}" for h in lab.hosts}
                print("\nlearned FDB:")
                print(table(["mac", "host", "vlan", "port", "age", "static"],
                            [[e["mac"], names.get(e["mac"], "?"), e["vlan"], e["port"],
                              e["age"], "yes" if e["static"] else "no"]
                             for e in sw.fdb_list()]))
                print("\nport counters:")
                stats = sw.port_stats()
                print(table(["port", *PORT_SUMMARY],
                            [[p, *(s.get(k, 0) for k in PORT_SUMMARY)]
                             for p, s in sorted(stats.items())]))
        except (LabError, SwitchError) as e:
            return _fail(f"pyxsw demo: {e}", 1)
        finally:
            lab.down()
    print(f"\n{'all pings answered' if not failed else f'{failed} ping pair(s) FAILED'}; "
          "lab removed")
    return 1 if failed else 0


# ---------------------------------------------------------------------------- doctor

def cmd_doctor(args):
    """The machine checked against the file (or, without -c, against the defaults): a line
    per check, or with --json a list of {name, subject, status, found, fix}.  Exit 0 when
    nothing FAILs, 1 when something does, 2 when the file is wrong (as `pyxsw run`)."""
    from .doctor import FAIL, diagnose, render, to_json, worst
    try:
        cfg = Config.load(args.config) if args.config else Config.from_dict({}, "<defaults>")
    except ConfigError as e:
        return _fail(str(e), EXIT_CONFIG)
    checks = diagnose(cfg)
    print(to_json(checks) if args.json else render(checks))
    return EXIT_RUNTIME if worst(checks) == FAIL else 0


# ---------------------------------------------------------------------------- ctl

# ---------------------------------------------------------------------------- main

def build_parser():
    p = argparse.ArgumentParser(prog="pyxsw", description="A userspace Ethernet switch on AF_XDP.")
    p.add_argument("--version", action="version", version=f"pyxsw {__version__}")
    sub = p.add_subparsers(dest="cmd", required=True, metavar="COMMAND")

    r = sub.add_parser("run", help="run a switch in the foreground")
    r.add_argument("-c", "--config", required=True, metavar="FILE", help="TOML configuration")
    r.set_defaults(func=cmd_run)

    lab = sub.add_parser("lab", help="host namespaces wired by veth to switch-side interfaces")
    lsub = lab.add_subparsers(dest="lab_cmd", required=True, metavar="up|down")
    up = lsub.add_parser("up", help="create a lab")
    up.add_argument("--hosts", type=int, default=3, metavar="N")
    up.add_argument("--prefix", default="", metavar="P", help="prefix of every name made")
    up.add_argument("--queues", type=int, default=1, metavar="Q", help="queues per veth end")
    down = lsub.add_parser("down", help="remove a lab")
    down.add_argument("--prefix", default="", metavar="P")
    lab.set_defaults(func=cmd_lab)

    d = sub.add_parser("demo", help="a 3-host lab, a switch, all-pairs ping, FDB and counters")
    d.add_argument("--prefix", default="demo-", metavar="P", help="prefix of the lab's names")
    d.set_defaults(func=cmd_demo)

    doc = sub.add_parser("doctor", help="check the machine against a configuration")
    doc.add_argument("-c", "--config", metavar="FILE",
                     help="TOML configuration (default: the defaults, no ports)")
    doc.add_argument("--json", action="store_true", help="print the checks as a JSON list")
    doc.set_defaults(func=cmd_doctor)

    # Listed for --help only: main() hands `ctl ...` to pyxsw.mgmt.ctl before parsing.
    sub.add_parser("ctl", help="talk to a running switch (pyxsw ctl --help)")
    return p


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["ctl"]:
        # `ctl` has its own parser, options included: hand it everything after the word.
        from .mgmt.ctl import ctl_main
        return ctl_main(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
