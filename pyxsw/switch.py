"""Switch: a running pyxsw switch inside this Python process.

    with Switch(Config.load("conf/lab3.toml")) as sw:
        ...
        print(sw.fdb_list(), sw.port_stats())

start() builds the datapath (UMEM, FDB), makes every configured interface a port (promiscuous,
XDP program, one AF_XDP socket per queue) and starts one worker thread per entry of
`cores`, pinned to that core.  A housekeeping thread ages the FDB and watches link state.
stop() undoes all of it; so does leaving the `with` block, whatever the exit.
"""
from __future__ import annotations

import ctypes
import dataclasses
import errno
import fcntl
import logging
import os
import select
import socket
import struct
import subprocess
import threading
import time

from . import __version__, _core, napi, taps
from .config import Config  # noqa: F401 (type of Switch.config)
from .doctor import usable_cpus
from .links import (RESYNC, LinkError, Links, Netdev, XdpFeatures, can_take_redirects,
                    takes_fragments)
from .vocab import DEFAULT_PORT_VLAN, VLAN_ETH_HLEN, XDP_HEADROOM
from .watch import Watch

log = logging.getLogger("pyxsw")

SOL_PACKET = 263
PACKET_ADD_MEMBERSHIP = 1
PACKET_MR_PROMISC = 1


# What says the machine is not ready yet, rather than the file wrong: an interface that does
# not exist (yet), one busy with another switch or XDP program, a resource that comes free.
# `pyxsw run` exits 75 (EX_TEMPFAIL) on those, which systemd's Restart=on-failure retries.
TEMPORARY = frozenset({errno.ENODEV, errno.ENXIO, errno.EBUSY, errno.EAGAIN, errno.EADDRINUSE})


class SwitchError(Exception):
    """A start-up problem the operator must fix; `key` names the config key when there is one.
    `temporary`: the machine is not ready yet (see TEMPORARY); waiting may fix it."""

    def __init__(self, message, key=None, temporary=False):
        super().__init__(message)
        self.key = key
        self.temporary = temporary


def _temporary(e):
    return isinstance(e, OSError) and e.errno in TEMPORARY


class _Promisc:
    """Promiscuous mode held through a packet socket's membership.

    The kernel counts promiscuity references and drops this one when the socket closes,
    however the process ends (kill -9 included), so the interface always returns to the
    state it had.  A packet socket of protocol 0 receives no frames: it costs nothing."""

    def __init__(self, ifindex):
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        try:
            self.sock.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP,
                                 struct.pack("iHH8s", ifindex, PACKET_MR_PROMISC, 0, b""))
        except OSError:
            self.sock.close()
            raise

    def close(self):
        self.sock.close()


SIOCETHTOOL = 0x8946
ETHTOOL_GFLAGS, ETHTOOL_SFLAGS = 0x25, 0x26
ETH_FLAG_RXVLAN = 1 << 8                # rx VLAN offload (rx-vlan-offload in `ethtool -k`)


def _ethtool_flags(name, flags=None):
    """An interface's ethtool flags (ETH_FLAG_*); with `flags`, set them first."""
    val = (ctypes.c_uint32 * 2)(ETHTOOL_SFLAGS if flags is not None else ETHTOOL_GFLAGS,
                                flags or 0)
    ifr = struct.pack("16sP16x", name.encode(), ctypes.addressof(val))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        fcntl.ioctl(s, SIOCETHTOOL, ifr)
        if flags is not None:
            return _ethtool_flags(name)
    return val[1]


class _RxVlanOffload:
    """rx VLAN offload off while the interface is a port, so that 802.1Q tags stay in the
    frames XDP sees instead of moving into metadata it cannot read (NICs strip them before
    XDP), and on again when the port goes.  Unlike promiscuous mode, the kernel keeps no
    reference for it: a switch killed with SIGKILL leaves it off (`ethtool -K IF rxvlan on`).
    `changed` says what was done, for the port's status."""

    def __init__(self, name, ifindex):
        self.name, self.ifindex, self.changed = name, ifindex, []
        try:
            flags = _ethtool_flags(name)
        except OSError:
            return                          # no ethtool flags here: nothing to turn off
        if flags & ETH_FLAG_RXVLAN:
            try:
                _ethtool_flags(name, flags & ~ETH_FLAG_RXVLAN)
            except OSError as e:
                log.warning("%s: cannot turn rx VLAN offload off (%s): tagged frames may "
                            "reach the switch untagged", name, _reason(e))
                return
            self.changed = ["rx-vlan-offload off (was on)"]

    def close(self):
        changed, self.changed = self.changed, []
        if not changed:
            return
        try:
            if socket.if_nametoindex(self.name) != self.ifindex:
                return                      # the name is another interface's now: not ours
            _ethtool_flags(self.name, _ethtool_flags(self.name) | ETH_FLAG_RXVLAN)
        except OSError as e:                # the interface may be gone already
            log.debug("%s: rx VLAN offload not restored: %s", self.name, _reason(e))


# The config key of each Datapath() parameter, for errors it marks with `param`.
_PARAM_KEYS = {"frames": "switch.frames", "frame_size": "switch.frame_size",
               "max_frame": "switch.max_frame",
               "ring_size": "switch.ring_size", "batch": "switch.batch", "workers": "switch.cores",
               "mode": "switch.mode", "capacity": "fdb.capacity", "port_limit": "fdb.port_limit",
               "aging": "fdb.aging"}


def _reason(e):
    """An exception as one line for the operator, without Python's '[Errno N]'."""
    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    # never an empty line: a bare MemoryError() says nothing
    return str(e) or ("out of memory" if isinstance(e, MemoryError) else type(e).__name__)


def _meminfo():
    """(MemTotal, MemAvailable) in bytes; None where /proc/meminfo does not tell."""
    try:
        with open("/proc/meminfo") as f:
            info = dict(line.split(":", 1) for line in f if ":" in line)
        return tuple(int(info[k].split()[0]) * 1024 for k in ("MemTotal", "MemAvailable"))
    except (OSError, KeyError, ValueError):
        return None


def _check_memory(c):
    """The UMEM (mapped, populated and pinned at start) and the FDB must fit in the memory
    the machine has available: asked for more, the kernel stalls everything before it fails."""
    mem = _meminfo()
    if mem is None:
        return
    total, avail = mem
    umem = c.switch.frames * (c.switch.frame_size + 8)      # the frames, and the pool's stack
    fdb = _core.fdb_memory(c.fdb.capacity)
    have = f"this machine has {_core.size_text(avail)} available of {_core.size_text(total)}"
    # More than the machine has is the file's fault; more than is free right now may pass
    # once other programs give memory back (exit 75: retried).
    if umem > avail:
        raise SwitchError(f"{c.switch.frames} frames of {c.switch.frame_size} bytes need "
                          f"{_core.size_text(umem)} of memory; {have}", key="switch.frames",
                          temporary=umem <= total)
    if umem + fdb > avail:
        raise SwitchError(f"an FDB of {c.fdb.capacity} entries needs up to "
                          f"{_core.size_text(fdb)} of memory, with the UMEM's "
                          f"{_core.size_text(umem)}; {have}", key="fdb.capacity",
                          temporary=umem + fdb <= total)


def _ensure_bpffs():
    """libxdp keeps its multi-program state in bpffs; mount it where it is missing."""
    if not os.path.ismount("/sys/fs/bpf"):
        subprocess.run(["mount", "-t", "bpf", "bpf", "/sys/fs/bpf"], capture_output=True)


CLAIM_DIR = "/run/pyxsw/ports"


class _Claim:
    """This process's claim on an interface, held for as long as the interface is a port.

    An exclusive flock() on a file named after the network namespace and the interface's
    index.  The kernel releases it when the process ends, however it ends (kill -9
    included), so a pyxsw program found on an interface nobody claims was left by a switch
    that died and is safe to replace, while a claimed one belongs to a live switch, which a
    second instance must not touch at all.  The directory and files are root's alone (an
    abstract socket name, which any user can bind, would let anyone squat on an interface);
    a file keeps its owner's pid, for the refusal to name it."""

    def __init__(self, ifindex, name, directory=CLAIM_DIR):
        os.makedirs(directory, mode=0o700, exist_ok=True)
        st = os.stat(directory)
        if st.st_uid != os.geteuid() or st.st_mode & 0o022:
            raise OSError(errno.EPERM, f"{directory} must belong to this user and be writable "
                                       f"by nobody else: it holds the switches' claims")
        netns = os.stat("/proc/self/ns/net").st_ino
        path = os.path.join(directory, f"net{netns}-if{ifindex}")
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = os.pread(self.fd, 32, 0).decode(errors="replace").strip()
            os.close(self.fd)
            raise OSError(errno.EBUSY, f"{name} is a port of another running pyxsw switch"
                                       f"{f' (pid {owner})' if owner.isdigit() else ''}: "
                                       f"not touching it") from None
        except BaseException:
            os.close(self.fd)
            raise
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, f"{os.getpid()}\n".encode(), 0)

    def close(self):
        if self.fd >= 0:
            os.close(self.fd)       # the file stays: unlinking it would race a waiting claim
            self.fd = -1


class Port:
    """What the switch knows of one port beyond its index in the datapath.

    `state` is what an operator sees: "up" (switching), "down" (no carrier, or admin down),
    "gone" (its interface was deleted: the port waits for one of that name to come back) or
    "degraded" (something detached or replaced pyxsw's XDP program: nothing reaches the
    switch from it).  Only an "up" port is in the flood set and a unicast destination."""

    def __init__(self, name, index, ifindex, promisc, claim, *, flood_limit=0,
                 forward_reserved=False, vlans=DEFAULT_PORT_VLAN):
        self.name = name
        self.index = index
        self.ifindex = ifindex
        self.promisc = promisc
        self.claim = claim
        self.rxvlan = None              # _RxVlanOffload: interface settings changed for it
        self.tuning = None              # napi.Tuning: busy_poll_tuning's deferral, when set
        self.flood_limit = flood_limit
        self.forward_reserved = forward_reserved
        self.vlans = vlans              # vocab.PortVlan: what the datapath was last told
        self.state = "up"
        self.reason = ""                # why the state is not "up", in words
        self.xdp_mode = "none"          # "native" | "generic": how the program is attached
        self.xdp_expect = 0             # the program id the interface should run
        self.warnings = []              # said when the port was added
        self.retried = 0                # the ifindex a re-attach last failed on
        self.unsure = False             # its state could not be read: ask again every tick
        self.fp_unsure = ""             # why whether it takes redirected frames is unknown
        self.mtu = 0                    # its interface's, as the datapath was last told
        self._dp = None                 # the datapath, for `fastpath`

    @property
    def fastpath(self):
        """{"target": whether the XDP program forwards frames to it itself, "reason": if
        not, why}."""
        info = self._dp.port_info(self.index) if self._dp is not None else {}
        reason = self.fp_unsure or info.get("fastpath_reason", "not a port")
        if info.get("fastpath_target") and not self.fp_unsure:
            reason = ""
        return {"target": not reason, "reason": reason}

    @property
    def up(self):
        return self.state == "up"

    @property
    def changed(self):
        """The interface settings the switch changed while it is a port, in words."""
        return list(self.rxvlan.changed) if self.rxvlan is not None else []

    def close(self):
        self.promisc.close()
        if self.tuning is not None:
            self.tuning.close()
        if self.rxvlan is not None:
            self.rxvlan.close()
        if self.claim is not None:
            self.claim.close()


TICK = 0.1                  # housekeeping's period: FDB aging, ports asked again, health
EVENTS_GAP = 0.002          # after passing events on, housekeeping ignores the workers' eventfd
                            # this long: a learning storm wakes it 500 times a second at most
WATCH_INTERVAL = 10.0       # a rate-limited warning (MAC flapping, FDB full, storm control, pool
                            # empty) is said at most once per interval per subject (pyxsw.watch)
FLAP_LINES = 10            # flapping MACs said one by one per interval; the others in one line
WATCH_SAMPLE = 1.0          # housekeeping reads the counters those warnings follow this often
WORKER_STALL = 5.0          # a worker whose loop has not turned for this long is stuck: it
                            # turns at least once a second, asleep or not (SLEEP_MS)


class Switch:
    def __init__(self, config: Config):
        self.config = config
        # Where the configuration came from, for `status`: a file as an absolute path (the
        # operator asking may be elsewhere), a "<dict>"-like source as it is.
        src = str(config.source)
        self.config_path = src if src.startswith("<") else os.path.abspath(src)
        self.dp = None
        self.links = None
        self.features = None                # XdpFeatures (fastpath = "xdp"), else None
        self.netdev = None                  # links.Netdev (busy_poll_tuning), else None
        self.fastpath_problem = ""          # why the fast path has no target at all
        self.ports: dict[str, Port] = {}
        self._threads = []
        self._stop = threading.Event()
        self._housekeeper = None
        # _lock guards the ports and the datapath's control calls; housekeeping takes it every
        # tick.  _stop_lock only serializes stop() callers.  Rule: no thread ever waits for
        # another thread (join) while it holds _lock.
        self._lock = threading.RLock()
        self._stop_lock = threading.Lock()
        self._listeners = []
        self._seen_lost = 0                 # worker ring losses already reported as events.lost
        self._heartbeat = None              # set_heartbeat()
        self._turns = {}                    # worker q -> (loops, when they last changed)
        self._sick = ""                     # why the last tick was not healthy, as logged
        self._captures = {}                 # id -> taps.Capture running
        self.mirrors = {}                   # name -> taps.Mirror
        self._dsts = set()                  # port indexes that were mirror outputs last
        self._reload_lock = threading.Lock()    # one reload at a time (SIGHUP, config.reload)
        # [metrics] listen as it is now, and what changes it: the management server sets
        # metrics_hook(address or None), which (re)starts its metrics endpoint or stops it
        self.metrics_listen = config.metrics.listen
        self.metrics_hook = None
        self.log_section = config.log           # [log] as it is now (a reload changes it)
        # Rate-limited warnings: counters' growth (FDB full, storm control...), MAC moves
        self._alarms = Watch(WATCH_INTERVAL)
        self._moves = Watch(WATCH_INTERVAL, leading=False)
        self._next_flaps = 0.0
        self._next_sample = 0.0
        self.started_at = None
        self._tuning_said = False           # busy_poll_tuning outside poll mode: said once

    # ------------------------------------------------------------------ life cycle

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    def start(self):
        c = self.config
        allowed = usable_cpus()             # beyond the mask CPUAffinity= starts it with
        for i, cpu in enumerate(c.switch.cores):
            if cpu not in allowed:
                raise SwitchError(f"core {cpu} does not exist or is not usable here "
                                  f"(usable: {sorted(allowed)})", key=f"switch.cores[{i}]")
        obj = _core._bpf_object_path()
        if not os.path.exists(obj):
            # The installation's fault, not the configuration's: no key (exit 1, not 2).
            raise SwitchError(f"the XDP program {obj} is missing: this pyxsw was built without "
                              "clang; reinstall it where clang is installed")
        _ensure_bpffs()
        self._stop.clear()
        self._turns.clear()
        self._sg_said = False
        try:
            _check_memory(c)
            self.dp = _core.Datapath(
                frames=c.switch.frames, frame_size=c.switch.frame_size,
                ring_size=c.switch.ring_size, batch=c.switch.batch,
                workers=len(c.switch.cores), capacity=c.fdb.capacity,
                port_limit=c.fdb.port_limit, aging=c.fdb.aging,
                zero_copy=c.switch.zero_copy, xdp_mode=c.switch.xdp_mode, mode=c.switch.mode,
                fastpath=c.switch.fastpath, max_frame=c.switch.max_frame)
        except (OSError, MemoryError, ValueError) as e:
            raise SwitchError(_reason(e), key=_PARAM_KEYS.get(getattr(e, "param", None), "-"),
                              temporary=_temporary(e)) from e
        try:
            try:
                self.links = Links()
            except OSError as e:
                raise SwitchError(f"cannot open rtnetlink: {_reason(e)}",
                                  temporary=_temporary(e)) from e
            if c.switch.fastpath == "xdp":
                self._features_open()
            if c.switch.busy_poll_tuning:
                self._netdev_open()
            for i, p in enumerate(c.ports):
                try:
                    self.add_port(p.name, vlans=p.vlans, flood_limit=p.flood_limit,
                                  forward_reserved=p.forward_reserved)
                except (OSError, MemoryError, ValueError) as e:
                    raise SwitchError(_reason(e), key=_PARAM_KEYS.get(getattr(e, "param", None),
                                                                      f"port[{i}].name"),
                                      temporary=_temporary(e)) from e
            for i, m in enumerate(getattr(c, "mirrors", ())):
                try:
                    self.mirror_add(m.name, m.sources, m.direction, m.output)
                except (KeyError, ValueError, MemoryError) as e:
                    raise SwitchError(_reason(e), key=f"mirror[{i}]") from e
            for i, e in enumerate(c.fdb.static):
                try:
                    self.fdb_add(e.mac, e.port, e.vlan)
                except (OSError, ValueError) as err:        # the FDB full, say
                    raise SwitchError(_reason(err), key=f"fdb.static[{i}]") from err
            for q, cpu in enumerate(c.switch.cores):
                t = threading.Thread(target=self._worker, args=(q, cpu),
                                     name=f"pyxsw-worker-{q}", daemon=True)
                t.start()
                self._threads.append(t)
            self._housekeeper = threading.Thread(target=self._housekeeping,
                                                 name="pyxsw-housekeeping", daemon=True)
            self._housekeeper.start()
        except BaseException:
            self.stop()
            raise
        self.started_at = time.monotonic()
        return self

    def _worker(self, q, cpu):
        os.sched_setaffinity(0, {cpu})      # 0: this thread
        self.dp.run_worker(q)

    def leave_worker_cores(self):
        """Move the calling thread off the workers' cores, when the machine has others: an
        aging sweep or an RPC storm must not take a worker's time.  Threads it starts
        afterwards (the management loop's executor) inherit that."""
        spare = os.sched_getaffinity(0) - set(self.config.switch.cores)
        if spare:
            os.sched_setaffinity(0, spare)

    def stop(self):
        """Stop the workers, tear every port down (XDP detached, promiscuous mode restored).

        The threads are joined without the switch lock held: housekeeping takes that lock on
        every tick, so holding it across the join could wait forever (issue 9)."""
        me = threading.current_thread()
        if me is self._housekeeper or me in self._threads or self._lock._is_owned():
            # a listener called with the lock held (port and FDB events), or a worker
            raise RuntimeError("Switch.stop() from a switch thread or with the switch lock held")
        with self._stop_lock:
            if self.dp is None:
                return
            self._stop.set()
            os.eventfd_write(self.dp.events_fd, 1)  # housekeeping: out of poll(2) now
            self.dp.stop()
            for t in self._threads:
                t.join()
            self._threads.clear()
            if self._housekeeper is not None:
                self._housekeeper.join()
                self._housekeeper = None
            with self._lock:
                for name in list(self.ports):
                    self._drop_port(name)
                self.dp.close()
                self.dp = None
                if self.links is not None:
                    self.links.close()
                    self.links = None
                if self.features is not None:
                    self.features.close()
                    self.features = None
                if self.netdev is not None:
                    self.netdev.close()
                    self.netdev = None

    # ------------------------------------------------------------------ events

    def add_listener(self, fn):
        """Call fn(event: dict) for FDB and port events (from a switch thread)."""
        self._listeners.append(fn)

    def remove_listener(self, fn):
        try:
            self._listeners.remove(fn)
        except ValueError:
            pass

    def _emit(self, **event):
        event["time"] = time.time()
        for fn in list(self._listeners):
            try:
                fn(event)
            except Exception:
                log.exception("event listener")

    def set_heartbeat(self, fn):
        """Have housekeeping call fn() after every tick it completes while the switch is
        healthy: every worker thread alive and its loop turning.  `pyxsw run` feeds systemd's
        watchdog from it, so a worker that died or hangs, or a housekeeping loop that fails
        every tick or is stuck, stops the feeding and systemd restarts the switch."""
        self._heartbeat = fn

    def _unhealthy(self):
        """Why the switch is not healthy, or ''."""
        now = time.monotonic()
        if len(self._threads) != self.dp.workers:
            return "the workers are not all running"
        for q, (t, w) in enumerate(zip(self._threads, self.dp.worker_stats())):
            if not t.is_alive():
                return f"worker {q}'s thread has ended"
            loops, since = self._turns.get(q, (None, now))
            if w["loops"] != loops:
                self._turns[q] = (w["loops"], now)
            elif now - since > WORKER_STALL:
                return f"worker {q}'s loop has not turned for {now - since:.0f} s"
        return ""

    def _housekeeping(self):
        """Pass the workers' events on as soon as one signals them (the datapath's eventfd),
        follow the ports' interfaces as soon as the kernel reports a change (rtnetlink), and
        every tick age the FDB, ask again about ports whose state could not be read, and
        check the switch's health.  Nothing waits for a tick that need not."""
        self.leave_worker_cores()
        links = self.links
        links_fd, events_fd = links.fileno(), self.dp.events_fd
        poller = select.poll()
        poller.register(links_fd, select.POLLIN)
        poller.register(events_fd, select.POLLIN)
        features_fd = self.features.fileno() if self.features is not None else None
        if features_fd is not None:
            poller.register(features_fd, select.POLLIN)
        next_tick = time.monotonic()            # the first pass is a tick
        muted_until = None                      # events_fd ignored until then (EVENTS_GAP)
        while not self._stop.is_set():
            changed, events, feats = set(), False, set()
            wake = next_tick
            if muted_until is not None:
                if time.monotonic() >= muted_until:
                    poller.modify(events_fd, select.POLLIN)
                    muted_until = None
                else:
                    wake = min(wake, muted_until)
            try:
                for fd, _ in poller.poll(max(0.0, wake - time.monotonic()) * 1000):
                    if fd == links_fd:
                        changed = links.read()
                    elif fd == events_fd:
                        events = True
                    elif fd == features_fd:
                        feats = self.features.read()
            except (OSError, ValueError) as e:      # LinkError included: state is kept
                log.error("reading link notifications: %s", _reason(e))
                changed = feats = RESYNC            # what was missed is asked for again
                self._stop.wait(TICK)
            now = time.monotonic()
            tick = now >= next_tick
            if tick:
                next_tick = now + TICK
            try:
                with self._lock:
                    if self._stop.is_set():
                        break
                    if events or tick:              # a tick too: nothing is ever left behind
                        self._drain_events()
                        if self._captures:
                            self._drain_capture()
                    if events:
                        poller.modify(events_fd, 0)
                        muted_until = time.monotonic() + EVENTS_GAP
                    if tick:
                        names = {p.index: p.name for p in self.ports.values()}
                        for mac, vlan, idx in self.dp.fdb_maintain():
                            self._emit(event="fdb.age", mac=mac, vlan=vlan, port=names.get(idx))
                    for port in list(self.ports.values()):
                        if (changed == RESYNC or port.ifindex in changed
                                or port.name in changed or (tick and port.unsure)):
                            self._reconcile(port)
                        if self.features is not None and (
                                feats == RESYNC or port.ifindex in feats
                                or (tick and port.fp_unsure)):
                            self._fastpath_follow(port)
                    if tick:
                        self._watch(now)
                    beat = self._heartbeat if tick else None
                    sick = self._unhealthy() if beat is not None else ""
                if self._stop.is_set():     # set before the workers are told to end
                    break
                if beat is None:
                    continue
                if sick != self._sick:
                    if sick:
                        log.error("%s: the switch is not healthy, its heartbeat stops", sick)
                    else:
                        log.warning("the switch is healthy again")
                    self._sick = sick
                if not sick:
                    beat()
            except Exception:               # never let housekeeping die silently
                log.exception("housekeeping")

    def _drain_events(self):
        names = {p.index: p.name for p in self.ports.values()}
        for kind, mac, vlan, idx, old in self.dp.drain_events():
            if kind == "learn":
                self._emit(event="fdb.learn", mac=mac, vlan=vlan, port=names.get(idx))
            else:
                self._emit(event="fdb.move", mac=mac, vlan=vlan, port=names.get(idx),
                           **{"from": names.get(old)})
                self._moves.add((mac, vlan), 1, port=names.get(idx), old=names.get(old))
        # Events the workers' rings had no room for: subscribers hear how many.
        lost = self._events_lost()
        if lost > self._seen_lost:
            self._emit(event="events.lost", count=lost - self._seen_lost)
            self._seen_lost = lost

    def _events_lost(self):
        return sum(w["events_lost"] for w in self.dp.worker_stats())

    # ------------------------------------------------------------------ rate-limited warnings

    # What each counter's growth means: (event, while it grows, once it stopped for an
    # interval); storm control (flood_limited) is per port.
    _ALARMS = {"learn_full": ("fdb.full", "the FDB is full (fdb.capacity): MACs not learned",
                              "the FDB takes new MACs again"),
               "learn_limited": ("fdb.limited", "learning limit reached (fdb.port_limit): "
                                 "MACs not learned", "no port at its learning limit any more"),
               "pool_empty": ("pool.empty", "the frame pool is exhausted: frames wanted and "
                              "none free", "the frame pool has frames again")}

    def _watch(self, now):
        """Every tick (lock held): follow the counters of the rate-limited warnings (every
        WATCH_SAMPLE), and say what is due.  Counters only: never the packet path."""
        if now >= self._next_sample:
            self._next_sample = now + WATCH_SAMPLE
            workers = self.dp.worker_stats()
            for counter in self._ALARMS:
                self._alarms.total((counter,), sum(w[counter] for w in workers))
            for port in self.ports.values():
                if port.flood_limit and port.index in self.dp.ports():
                    self._alarms.total(("storm", port.name),
                                       self.dp.port_stats(port.index)["flood_limited"])
        for r in self._alarms.due():
            self._alarm_said(r)
        if now >= self._next_flaps:
            self._next_flaps = now + WATCH_SAMPLE
            self._flapping([r for r in self._moves.due() if r.state == "count"])

    def _flapping(self, reports):
        """MACs that moved between ports, one report each per interval: the FLAP_LINES that
        moved most, each a warning and an event, and the others in one more line (a loop
        flaps every MAC: a line per MAC would flood the log)."""
        reports.sort(key=lambda r: -r.count)
        for r in reports[:FLAP_LINES]:
            mac, vlan = r.key
            fields = dict(event="fdb.flapping", mac=mac, vlan=vlan, count=r.count,
                          seconds=round(r.seconds, 1), port=r.info["port"])
            fields["from"] = r.info["old"]
            log.warning("MAC %s (vlan %d) moved %d time%s in %.0f s between ports, "
                        "last from %s to %s", mac, vlan, r.count, "" if r.count == 1 else "s",
                        r.seconds, r.info["old"], r.info["port"], extra=fields)
            self._emit(**fields)
        rest = reports[FLAP_LINES:]
        if rest:
            fields = dict(event="fdb.flapping", mac=None, macs=len(rest),
                          count=sum(r.count for r in rest),
                          seconds=round(max(r.seconds for r in rest), 1))
            log.warning("%d more MACs moved between ports (%d moves in %.0f s): a loop?",
                        fields["macs"], fields["count"], fields["seconds"], extra=fields)
            self._emit(**fields)

    def _alarm_said(self, r):
        """One report of a counter's growth: a warning (start, count), an info (end)."""
        secs = round(r.seconds, 1)
        if r.key[0] == "storm":
            port = r.key[1]
            fields = {"event": "storm", "port": port, "state": r.state, "count": r.count,
                      "total": r.total, "seconds": secs}
            if r.state == "start":
                log.warning("storm control engaged on port %s: its flood_limit is dropping "
                            "floods (%d so far)", port, r.count, extra=fields)
            elif r.state == "count":
                log.warning("storm control on port %s: %d floods dropped in %.0f s", port,
                            r.count, r.seconds, extra=fields)
            else:
                log.info("storm control released on port %s: %d floods dropped in %.0f s",
                         port, r.total, r.seconds, extra=fields)
        else:
            event, words, over = self._ALARMS[r.key[0]]
            fields = {"event": event, "state": r.state, "count": r.count, "total": r.total,
                      "seconds": secs}
            if r.state == "start":
                log.warning("%s (%d so far)", words, r.count, extra=fields)
            elif r.state == "count":
                log.warning("%s (%d in %.0f s)", words, r.count, r.seconds, extra=fields)
            else:
                log.info("%s (%d in all, over %.0f s)", over, r.total, r.seconds,
                         extra=fields)
        self._emit(**fields)

    # ------------------------------------------------------------------ the fast path

    def _features_open(self):
        """The kernel's netdev family, which says which devices take XDP-redirected frames
        and tells when that changes (a veth: while its peer has GRO on or an XDP program).
        Without it the fast path has no target: every frame takes the AF_XDP path."""
        try:
            self.features = XdpFeatures()
        except OSError as e:
            self.fastpath_problem = f"cannot ask the kernel which devices take XDP-redirected " \
                                    f"frames (netdev family): {_reason(e)}"
            log.error("fast path: %s; every frame takes the AF_XDP path", self.fastpath_problem)

    def _fastpath_follow(self, port):
        """Tell the datapath whether port's device takes XDP-redirected frames now.  An error
        asking is not an answer: the port is no target meanwhile (its frames take the AF_XDP
        path), and is asked again every tick."""
        if self.features is None:
            port.fp_unsure = self.fastpath_problem
            return
        try:
            feats = self.features.get(port.ifindex)
        except OSError as e:
            if not port.fp_unsure:
                log.error("port %s: cannot tell whether it takes XDP-redirected frames (%s); "
                          "no fast path to it until it can", port.name, _reason(e))
            port.fp_unsure = f"cannot tell whether its device takes XDP-redirected frames: " \
                             f"{_reason(e)}"
            # Unsure is not capable: a redirect its device refuses would lose the frame.
            self.dp.set_port_fastpath_capable(port.index, False)
            return
        port.fp_unsure = ""
        self.dp.set_port_fastpath_capable(port.index, feats is not None
                                          and can_take_redirects(feats),
                                          feats is not None and takes_fragments(feats))

    # ------------------------------------------------------------------ port states

    def _reconcile(self, port):
        """Bring port's state in line with its interface as the kernel has it now.  An error
        asking is not a state: the port keeps the one it had and is asked about again on the
        next tick, until an answer comes (issue 9)."""
        try:
            link = self.links.get(ifindex=port.ifindex)
            if link is None:
                if port.state != "gone":
                    self._set_state(port, "gone", "interface deleted")
                self._reattach(port)
            elif port.state != "gone":
                if link.mtu != port.mtu:        # the fast path's longest frame to it
                    self.dp.set_port_mtu(port.index, link.mtu)
                    self._mtu_said(port, link.mtu)
                    port.mtu = link.mtu
                problem = self._xdp_problem(port, link)
                if problem:
                    self._set_state(port, "degraded", problem)
                else:
                    self._set_state(port, "up" if link.up else "down",
                                    "" if link.up else "no carrier or administratively down")
        except (OSError, TimeoutError) as e:    # LinkError, libxdp, a grace period
            if not port.unsure:
                log.error("port %s: cannot tell its state (%s); it stays %s until it can",
                          port.name, _reason(e), port.state)
            port.unsure = True
            return
        if port.unsure:
            log.warning("port %s: its state can be read again: %s", port.name, port.state)
        port.unsure = False

    def _zero_copy_segs(self, port):
        """In zero-copy mode a frame sent out of a port spans at most its device's
        zc-max-segs descriptors (the netdev family's xsk-features): the workers drop a longer
        one there (tx_dropped), which the device would take apart and never complete."""
        if not self.dp.zero_copy_active or self.dp.multi_buffer != "on":
            return
        try:
            features = self.features or XdpFeatures()
            try:
                found = features.device(port.ifindex)
            finally:
                if features is not self.features:
                    features.close()
        except LinkError as e:
            log.warning("port %s: cannot read its zero-copy segments (%s): frames in more "
                        "descriptors than its driver sends may be lost", port.name, _reason(e))
            return
        segs = found[1] if found else None
        if not segs:
            return                      # not reported: the bind's own check stands
        self.dp.port_set_segs(port.index, segs)
        room = self.config.switch.frame_size - XDP_HEADROOM
        if segs * room < self.dp.max_frame:
            log.warning("port %s: its driver sends zero-copy frames of %d descriptor(s) at most "
                        "(zc-max-segs): frames above %d bytes are dropped when sent out of it "
                        "(tx_dropped)", port.name, segs, segs * room)

    def _mtu_said(self, port, mtu):
        """Warn when port's new MTU lets frames in that the switch does not carry (above
        [switch] max_frame, or a UMEM frame where multi-buffer is off: the XDP program drops
        and counts them); say so when they fit again."""
        room = self.dp.max_frame
        fits = lambda m: not m or m + VLAN_ETH_HLEN <= room     # noqa: E731
        if fits(mtu) == fits(port.mtu) and port.mtu:
            return
        fields = {"event": "port.mtu", "port": port.name, "mtu": mtu, "room": room}
        if not fits(mtu):
            why = (f"switch.max_frame {room}" if room == self.config.switch.max_frame else
                   f"a UMEM frame holds {room} (switch.frame_size "
                   f"{self.config.switch.frame_size} less {XDP_HEADROOM} of headroom) and "
                   f"multi-buffer is {self.dp.multi_buffer}")
            log.warning("port %s: MTU %d allows frames of up to %d bytes but the switch carries "
                        "%d (%s): larger frames are dropped, counted in oversize_dropped",
                        port.name, mtu, mtu + VLAN_ETH_HLEN, room, why, extra=fields)
            self._emit(**fields, fits=False)
        elif port.mtu:
            log.info("port %s: MTU %d: the switch carries every frame again", port.name, mtu,
                     extra=fields)
            self._emit(**fields, fits=True)

    def _xdp_problem(self, port, link):
        """'' when port's program is still the one that runs on its interface, else why not.
        OSError when that cannot be told."""
        attached = link.xdp_id(port.xdp_mode)
        if attached == port.xdp_expect:
            return ""
        if not attached:
            return "pyxsw's XDP program was detached from the interface"
        # libxdp's dispatcher gets a new id whenever any program joins or leaves it
        if self.dp.port_in_dispatcher(port.index):
            port.xdp_expect = attached
            return ""
        return f"another XDP program (id {attached}) replaced pyxsw's on the interface"

    def _set_state(self, port, state, reason=""):
        old = port.state
        port.reason = reason
        if state == old:
            return
        # If this fails half-way, port.state is still the old one: _reconcile marks the port
        # unsure, and the next tick does it all again (set_port_up and the flush are
        # idempotent) rather than leave the datapath and the port's state apart.
        if old == "up" or state == "up":
            self.dp.set_port_up(port.index, state == "up")
        n = None
        if old == "up":
            # Flush once no worker can still be learning from a frame of this port, and
            # before anyone hears of it: then the FDB is already clean.
            self.dp.wait_grace()
            n = self.dp.fdb_flush(port.index)
        port.state = state
        if state == "up":
            log.info("port %s is up", port.name, extra={"event": "port.up", "port": port.name})
            self._emit(event="port.up", port=port.name)
        elif old == "up":
            log.warning("port %s is down", port.name,
                        extra={"event": "port.down", "port": port.name})
            self._emit(event="port.down", port=port.name)
        if n is not None:
            self._emit(event="fdb.flush", port=port.name, count=n)
        if state == "gone":
            log.warning("port %s: its interface was deleted; the port comes back when an "
                        "interface of that name does", port.name)
            self._emit(event="port.gone", port=port.name)
        elif state == "degraded":
            log.error("port %s is degraded: %s; it switches nothing until `pyxsw ctl port add "
                      "%s` attaches it again", port.name, reason, port.name)
            self._emit(event="port.degraded", port=port.name, reason=reason)

    def _reattach(self, port):
        """A gone port whose name has a new interface: make that interface the port."""
        link = self.links.get(name=port.name)
        if link is None or link.ifindex in (port.ifindex, port.retried):
            return
        log.warning("port %s: a new interface of that name appeared (ifindex %d): attaching it",
                    port.name, link.ifindex)
        try:
            new = self._open_port(port.name, port.flood_limit, port.forward_reserved,
                                  replacing=port)
        except (OSError, ValueError) as e:
            port.retried = link.ifindex
            port.reason = f"interface deleted; attaching the new one failed: {_reason(e)}"
            log.error("port %s: %s", port.name, port.reason)
            return
        self._emit(event="port.reattach", port=new.name, ifindex=new.ifindex)
        if new.up:
            self._emit(event="port.up", port=new.name)

    # ------------------------------------------------------------------ ports

    def add_port(self, name, vlans=None, flood_limit=0, forward_reserved=False):
        """Make interface `name` a port.  A port whose interface is gone or whose program was
        taken away can be added again: that attaches it anew.  `vlans` (vocab.PortVlan):
        its 802.1Q settings; None: access on VLAN 1, or those it had when attached anew."""
        with self._lock:
            if self.dp is None:
                raise OSError(errno.ESHUTDOWN, "the switch is not running")
            old = self.ports.get(name)
            if old is not None and old.state not in ("gone", "degraded"):
                raise ValueError(f"{name}: already a switch port")
            port = self._open_port(name, flood_limit, forward_reserved, replacing=old,
                                   vlans=vlans)
            if old is not None:
                self._emit(event="port.del", port=name)
            self._emit(event="port.add", port=name)
            return port

    def _open_port(self, name, flood_limit, forward_reserved, replacing=None, vlans=None):
        """Everything that can refuse is checked before anything is touched.  `replacing`, an
        old port of that name, stays as it was if the new one fails, unless it is on the same
        interface (a degraded port): its program must go first, and a failure then removes
        the port.  Static FDB entries of the old port carry over to the new one (those in
        VLANs it still carries), and so do its VLAN settings unless `vlans` are given."""
        if vlans is None:
            vlans = replacing.vlans if replacing is not None else DEFAULT_PORT_VLAN
        link = self.links.get(name=name)
        if link is None:
            raise OSError(errno.ENODEV, f"{name}: no such interface")
        if link.loopback:
            raise OSError(errno.EINVAL, f"{name}: a loopback interface cannot be a switch port")
        for p in self.ports.values():
            if p.ifindex == link.ifindex and p is not replacing:
                raise ValueError(f"{name}: already a switch port (as {p.name})")
        # The queues in use (sysfs), not the ones allocated (IFLA_NUM_RX_QUEUES: a veth
        # allocates one per CPU and uses one).  An error here is an error, not a count.
        try:
            nq = sum(1 for d in os.listdir(f"/sys/class/net/{name}/queues")
                     if d.startswith("rx-"))
        except FileNotFoundError:       # renamed or deleted since (udev at boot): not there
            raise OSError(errno.ENODEV, f"{name}: no such interface") from None
        if nq < self.dp.workers:
            raise OSError(errno.EINVAL, f"{name} has {nq} RX queue(s) but cores has "
                                        f"{self.dp.workers} entries: worker q needs queue q "
                                        f"on every port")
        same = replacing is not None and replacing.ifindex == link.ifindex
        if same:
            # What took the port's program away must be gone first: else the port would be
            # torn down, and its options and static entries lost, for nothing.
            foreign = self.dp.foreign_xdp(link.ifindex)
            if foreign:
                raise OSError(errno.EBUSY, f"{name}: another XDP program ({foreign}) is "
                                           f"attached; remove it first (ip link set dev "
                                           f"{name} xdp off)")
        statics = [(e["mac"], e["vlan"]) for e in self.fdb_list(port=name) if e["static"]] \
            if replacing is not None else []
        claim = replacing.claim if same else _Claim(link.ifindex, name)
        try:
            promisc = _Promisc(link.ifindex)
        except BaseException:
            if not same:
                claim.close()
            raise
        if same:
            replacing.claim = None          # the same interface: the claim passes on
            rxvlan, replacing.rxvlan = replacing.rxvlan, None   # and what it changed
        else:
            rxvlan = _RxVlanOffload(name, link.ifindex)
        try:
            if same:
                self._close_port(replacing)
            # its VLANs in place before it forwards anything (ValueError if refused)
            index, note = self.dp.port_add(
                name, link.ifindex, up=link.up, flood_limit=flood_limit,
                forward_reserved=forward_reserved, vlan_mode=vlans.vlan_mode, vlan=vlans.vlan,
                allowed=None if vlans.allowed is None else list(vlans.allowed),
                native=vlans.native)
        except BaseException:
            promisc.close()
            if rxvlan is not None:
                rxvlan.close()
            claim.close()
            if same:
                del self.ports[name]
                self._emit(event="port.del", port=name)
            raise
        port = Port(name, index, link.ifindex, promisc, claim, flood_limit=flood_limit,
                    forward_reserved=forward_reserved, vlans=vlans)
        port.rxvlan = rxvlan
        port._dp = self.dp
        if not link.up:
            port.state, port.reason = "down", "no carrier or administratively down"
        self.ports[name] = port             # from here on, stop() or _drop_port() frees it
        self._tune(port)                    # after the attach: a veth has NAPI from then on
        if replacing is not None and not same:
            try:
                self._close_port(replacing)
            except Exception:
                log.exception("port %s: tearing down its old interface's socket", name)
        if note:
            log.warning("%s: %s", name, note)
        if self.dp.multi_buffer == "refused" and not self._sg_said:
            self._sg_said = True        # the first socket's bind decides: said once
            log.warning("multi-buffer AF_XDP refused (XDP_USE_SG: Linux 6.6+, and a zero-copy "
                        "driver that receives in fragments): frames above %d bytes (a UMEM "
                        "frame) are dropped, counted in oversize_dropped%s", self.dp.max_frame,
                        "; zero_copy = \"off\" carries them in copy mode"
                        if self.dp.zero_copy_active else "",
                        extra={"event": "switch.multi_buffer", "max_frame": self.dp.max_frame})
        self._zero_copy_segs(port)
        port.xdp_mode = self.dp.port_info(index)["xdp_mode"]
        port.xdp_expect = self.dp.port_prog_id(index)     # or libxdp's dispatcher: _reconcile
        for mac, vlan in statics:
            if vlans.carries(vlan):
                self.dp.fdb_add(mac, vlan, index)
        try:
            addresses = self.links.addresses(link.ifindex)
        except LinkError as e:
            addresses = []
            port.warnings.append(f"{name}: cannot tell whether it has IP addresses: {_reason(e)}")
        if addresses:
            port.warnings.append(f"{name} has IP addresses ({', '.join(addresses)}): frames "
                                 f"to them now reach the switch, not this host")
        for w in port.warnings:
            log.warning("%s", w)
        self._reconcile(port)           # a change between the checks and now
        self._fastpath_follow(port)
        self._apply_ops()               # its captures and mirrors (a new index)
        return port

    def del_port(self, name):
        with self._lock:
            if name not in self.ports:
                raise KeyError(name)
            self._drop_port(name)
            self._apply_ops()
            self._emit(event="port.del", port=name)

    def _drop_port(self, name):
        self._close_port(self.ports.pop(name))

    def _close_port(self, port):
        if port.tuning is not None:     # while its NAPI instances exist (XDP attached)
            port.tuning.close()
            port.tuning = None
        try:
            if self.dp is not None and port.index in self.dp.ports():
                self.dp.port_del(port.index)
        finally:
            port.close()

    def _set_vlan(self, index, vlans):
        """Tell the datapath a port's VLAN settings (ValueError if it refuses them)."""
        self.dp.port_set_vlan(index, vlans.vlan_mode, vlans.vlan,
                              None if vlans.allowed is None else list(vlans.allowed),
                              vlans.native)

    def port_set(self, name, vlans):
        """Change a running port's VLAN settings (vocab.PortVlan); its learned entries in
        VLANs it no longer carries are flushed.  Returns how many."""
        with self._lock:
            port = self._port(name)
            self._set_vlan(port.index, vlans)
            port.vlans = vlans
            # Flush once no worker can still be learning from a frame classified the old way.
            self.dp.wait_grace()
            n = self.dp.fdb_flush_not_carried(port.index)
            log.info("port %s: %s (%d learned entr%s flushed)", name, vlans.describe(), n,
                        "y" if n == 1 else "ies")
            self._emit(event="fdb.flush", port=name, count=n)
            return n

    def port_options(self, name, flood_limit=None, forward_reserved=None):
        """Change a running port's flood_limit and/or forward_reserved (None: as it is)."""
        with self._lock:
            port = self._port(name)
            fl = port.flood_limit if flood_limit is None else int(flood_limit)
            fr = port.forward_reserved if forward_reserved is None else bool(forward_reserved)
            self.dp.port_set_options(port.index, fl, fr)
            port.flood_limit, port.forward_reserved = fl, fr

    def _port(self, name):
        try:
            return self.ports[name]
        except KeyError:
            raise KeyError(f"{name}: not a switch port") from None

    def _index(self, name):
        try:
            return self.ports[name].index
        except KeyError:
            raise KeyError(f"{name}: not a switch port") from None

    # ------------------------------------------------------------------ capture and mirrors

    def capture_start(self, port, direction="both", snaplen=taps.DEFAULT_SNAPLEN, count=0,
                      sink=None):
        """Copy port's frames ("in", "out" or "both") to sink(frames, end) (taps.Capture),
        called on the housekeeping thread; its id.  KeyError when it is not a port."""
        with self._lock:
            self._port(port)
            if self._captures:
                self._drain_capture()       # what is in the rings is not this capture's
            else:
                self.dp.drain_capture()     # left by captures that are over
            c = taps.Capture(port, direction, snaplen, count, sink, self._capture_lost(port))
            self._captures[c.id] = c
            try:
                self._apply_ops()
            except BaseException:
                del self._captures[c.id]
                raise
            log.info("capture %d of port %s (%s) started", c.id, port, direction)
            return c.id

    def capture_stop(self, cid):
        """Stop capture cid (KeyError if it is over): {"captured", "lost"}; the frames
        captured before are handed to its sink first."""
        with self._lock:
            if cid not in self._captures:
                raise KeyError(f"no capture {cid}")
            self._drain_capture()
            c = self._captures.pop(cid, None)
            if c is None:                   # its count ended it just now
                raise KeyError(f"no capture {cid}")
            self._apply_ops()
            res = c.result(self._capture_lost(c.port))
            log.info("capture %d of port %s stopped: %d frames, %d lost", cid, c.port,
                     res["captured"], res["lost"])
            return res

    def _capture_lost(self, port):
        """Frames of `port` the workers' capture rings had no room for (shared by every
        capture: those of other ports are not its losses); None when it is no port now."""
        p = self.ports.get(port)
        if p is None or self.dp is None:        # no port now, or the switch stopped
            return None
        try:
            return self.dp.port_stats(p.index)["capture_lost"]
        except (KeyError, ValueError):
            return None

    def _drain_capture(self):
        if self.dp is None:                 # stopped: the rings went with the datapath
            return
        frames = self.dp.drain_capture()
        if not frames:
            return
        names = {p.index: p.name for p in self.ports.values()}
        frames = [(t, names.get(i), d, n, b) for t, i, d, n, b in frames]
        for c in list(self._captures.values()):
            try:
                done = c.offer(frames)
            except Exception:
                log.exception("capture %d: its sink failed; it is stopped", c.id)
                done = True
            if done:
                del self._captures[c.id]
                self._apply_ops()
                try:
                    c.sink([], c.result(self._capture_lost(c.port)))
                except Exception:
                    log.exception("capture %d: its sink failed", c.id)

    def mirror_add(self, name, sources, direction, output):
        """Mirror what ports `sources` receive and/or send (direction "in", "out", "both")
        to port `output`, which forwards nothing while it does.  KeyError when a port is
        not one; ValueError when the mirror clashes with another (taps.check_mirror)."""
        with self._lock:
            for p in (*sources, output):
                self._port(p)
            m = taps.Mirror(name, tuple(sorted(set(sources))), direction, output)
            taps.check_mirror(m, self.mirrors)
            self.mirrors[name] = m
            try:
                self._apply_ops()
            except BaseException:
                del self.mirrors[name]
                raise
            log.info("mirror %s: %s (%s) to %s", name, ",".join(m.sources), direction, output)
            self._emit(event="mirror.add", **m.keys())
            return m.view(self.ports)

    def mirror_del(self, name):
        with self._lock:
            if name not in self.mirrors:
                raise KeyError(f"no mirror {name}")
            m = self.mirrors.pop(name)
            self._apply_ops()
            log.info("mirror %s removed", name)
            self._emit(event="mirror.del", name=name)
            return m.view(self.ports)

    def mirror_list(self):
        with self._lock:
            return [m.view(self.ports) for _, m in sorted(self.mirrors.items())]

    def _apply_ops(self):
        """Tell the datapath the captures and mirrors again (they or the ports changed).
        A port that has just become a mirror's output loses its learned FDB entries: it is
        no destination any more."""
        if self.dp is None:
            return
        index = {n: p.index for n, p in self.ports.items()}
        ops, snaplen = taps.ops_table(index, self._captures.values(), self.mirrors.values())
        self.dp.set_ops(ops, snaplen)
        dsts = {p for p, row in ops.items() if row[3]}
        for p in dsts - self._dsts:
            self.dp.fdb_flush(port=p)
        self._dsts = dsts

    # ------------------------------------------------------------------ what users call

    def set_mode(self, mode):
        with self._lock:
            self.dp.set_mode(mode)
            if self.config.switch.busy_poll_tuning:
                self._tuning_said = False
                for port in self.ports.values():
                    self._tune(port)

    # ------------------------------------------------------------------ busy-poll tuning

    def _netdev_open(self):
        try:
            self.netdev = Netdev()
        except LinkError as e:          # sysfs then, per device (pyxsw.napi)
            log.info("busy_poll_tuning: no netdev generic netlink (%s): the NAPI deferral "
                     "is set per device through sysfs", _reason(e))

    def _tune(self, port):
        """Set or restore a port's NAPI deferral as busy_poll_tuning and the mode say:
        set in poll mode only (in the others nothing busy-polls, and deferred interrupts
        would only delay frames)."""
        want = self.config.switch.busy_poll_tuning and self.dp.mode == "poll"
        if want and port.tuning is None:
            port.tuning = napi.Tuning(self.netdev, port.name, port.ifindex)
        elif not want and port.tuning is not None:
            port.tuning.close()
            port.tuning = None
        if self.config.switch.busy_poll_tuning and not want and not self._tuning_said:
            self._tuning_said = True
            log.info("busy_poll_tuning: mode %s: the ports' NAPI deferral is left as it is "
                     "(it is for poll mode's busy polling only)", self.dp.mode)

    @property
    def mode(self):
        return self.dp.mode

    def set_aging(self, seconds):
        self.dp.set_aging(int(seconds))

    @property
    def aging(self):
        return self.dp.aging

    # ------------------------------------------------------------------ reload and save

    def running_config(self, for_file=False):
        """The configuration the switch runs now, as a Config: the file's switch section
        with the current mode, the current aging, the ports with their current settings and
        the static FDB entries as they are.  for_file (what `pyxsw ctl save` writes): only
        what a file can say, so that `pyxsw run` takes it back: no static entry in a VLAN its
        port no longer carries (port.set keeps those), no mirror's port that is gone."""
        from .config import MetricsSection, PortSection, StaticEntry
        c = self.config
        with self._lock:
            ports = sorted(self.ports.values(), key=lambda p: p.index)
            static = tuple(StaticEntry(e["mac"], e["port"], e["vlan"])
                           for e in self.fdb_list() if e["static"] and e["port"] in self.ports
                           and (not for_file or self.ports[e["port"]].vlans.carries(e["vlan"])))
            mirrors = list(self.mirrors.values())
            if for_file:
                mirrors = [m._replace(sources=tuple(p for p in m.sources if p in self.ports))
                           for m in mirrors if m.output in self.ports]
                mirrors = [m for m in mirrors if m.sources]
            return dataclasses.replace(
                c, switch=dataclasses.replace(c.switch, mode=self.mode),
                fdb=dataclasses.replace(c.fdb, aging=self.aging, static=static),
                ports=[PortSection(name=p.name, flood_limit=p.flood_limit,
                                   forward_reserved=p.forward_reserved, **p.vlans._asdict())
                       for p in ports],
                mirrors=mirrors,
                metrics=MetricsSection(self.metrics_listen), log=self.log_section)

    def set_log(self, level, fmt):
        """[log] level and format at run time (a reload's)."""
        from . import logs
        from .config import LogSection
        logs.reconfigure(level, fmt)
        self.log_section = LogSection(level, fmt)

    def set_metrics_listen(self, listen):
        """Serve the metrics endpoint on `listen` ("host:port"; "" stops it): a reload's."""
        from .config import MetricsSection
        if self.metrics_hook is None:
            raise ValueError("no management server runs the metrics endpoint here")
        self.metrics_hook(MetricsSection(listen).address)
        self.metrics_listen = listen

    def reload(self):
        """Read the file the switch was started from again and apply what can change at
        run time (pyxsw.reload).  ConfigError, with nothing changed, when the file is wrong;
        ValueError when the switch was not started from a file."""
        from . import reload as _reload
        if self.config_path.startswith("<"):
            raise ValueError(f"the switch was not started from a file ({self.config_path}): "
                             f"nothing to reload")
        with self._reload_lock:
            new = Config.load(self.config_path)
            result = _reload.apply(self, _reload.plan(self.running_config(), new))
            result["config"] = self.config_path
            return result

    def fdb_list(self, port=None, vlan=None):
        names = {p.index: p.name for p in self.ports.values()}
        fast = self.config.switch.fastpath == "xdp"
        out = []
        for mac, v, idx, age, static, kernel in self.dp.fdb_list():
            name = names.get(idx, f"#{idx}")
            if (port is None or name == port) and (vlan is None or v == vlan):
                e = {"mac": mac, "vlan": v, "port": name, "age": age, "static": static}
                if fast:
                    e["kernel"] = kernel        # in the XDP program's copy
                out.append(e)
        out.sort(key=lambda e: (e["port"], e["vlan"], e["mac"]))
        return out

    def fdb_add(self, mac, port, vlan=None):
        """A static entry; vlan None: the port's untagged VLAN.  ValueError (vocab.Invalid)
        when the port does not carry the VLAN."""
        with self._lock:
            p = self._port(port)
            return self.dp.fdb_add(mac, p.vlans.static_vlan(port, vlan), p.index)

    def fdb_del(self, mac, vlan=None):
        """Entries removed: mac's in `vlan`, or with None in every VLAN."""
        if vlan is not None:
            return int(self.dp.fdb_del(mac, vlan))
        vlans = {v for m, v, *_ in self.dp.fdb_list() if m == mac}
        return sum(bool(self.dp.fdb_del(mac, v)) for v in sorted(vlans))

    def fdb_flush(self, port=None, vlan=None):
        """Learned entries removed: all, one port's and/or one VLAN's."""
        idx = -1 if port is None else self._index(port)
        if vlan is None:
            n = self.dp.fdb_flush(idx)
            self._emit(event="fdb.flush", port=port, count=n)
        else:
            n = self.dp.fdb_flush(idx, vlan=vlan)
            self._emit(event="fdb.flush", port=port, vlan=vlan, count=n)
        return n

    def port_stats(self, name=None):
        """{name: counters} of one port (KeyError if it is none) or of every port; a port
        removed meanwhile (another thread: an RPC, a scrape) is left out, not an error."""
        if name is not None:
            port = self._port(name)
            return {name: dict(self.dp.port_stats(port.index), up=port.up)}
        out = {}
        for n, port in list(self.ports.items()):
            try:
                out[n] = dict(self.dp.port_stats(port.index), up=port.up)
            except (KeyError, ValueError):
                continue                    # removed since the snapshot
        return out

    def _port_infos(self):
        out = []
        for p in list(self.ports.values()):     # a snapshot: a port may go meanwhile
            try:
                out.append(dict(self.dp.port_info(p.index), up=p.up, state=p.state,
                                reason=p.reason, busy_poll_tuning=p.tuning.view()
                                if p.tuning is not None else None))
            except (KeyError, ValueError):
                continue
        return out

    def worker_stats(self):
        return self.dp.worker_stats()

    def accounting(self):
        return self.dp.accounting()

    def wait_quiet(self, timeout=5.0):
        """Wait until every frame is placed (nothing in flight); returns the accounting."""
        deadline = time.monotonic() + timeout
        acc = self.accounting()
        while acc["in_flight"] and time.monotonic() < deadline:
            time.sleep(0.05)
            acc = self.accounting()
        return acc

    def status(self):
        dp = self.dp
        return {
            "name": self.config.switch.name,
            "version": __version__,
            "pid": os.getpid(),
            "config": self.config_path,
            "mode": dp.mode,
            "uptime": round(time.monotonic() - self.started_at, 3) if self.started_at else 0,
            "workers": [{"queue": q, "core": c} for q, c in enumerate(self.config.switch.cores)],
            "ports": self._port_infos(),
            "zero_copy": dp.zero_copy_active,
            "tx_budget": dp.tx_budget,
            "busy_poll": dp.busy_poll,
            "max_frame": dp.max_frame,
            "multi_buffer": dp.multi_buffer,
            "busy_poll_tuning": self.config.switch.busy_poll_tuning,
            "umem_anchor": dp.anchor,
            "fdb": dp.fdb_counters(),
            "fastpath": dict(dp.fastpath(), **({"problem": self.fastpath_problem}
                                               if self.fastpath_problem else {})),
            "frames": self.accounting(),
            "events": {"lost": self._events_lost()},
        }
