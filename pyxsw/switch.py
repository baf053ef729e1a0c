"""Switch: a running pyxsw switch inside this Python process.

    with Switch(Config.load("conf/lab3.toml")) as sw:
        ...
        print(sw.fdb_list(), sw.port_stats())

start() builds the core (UMEM, FDB), makes every configured interface a port (promiscuous,
XDP program, one AF_XDP socket per queue) and starts one worker thread per entry of
`cores`, pinned to that core.  A housekeeping thread ages the FDB and watches link state.
stop() undoes all of it; so does leaving the `with` block, whatever the exit.
"""
from __future__ import annotations

import logging
import os
import socket
import struct
import subprocess
import threading
import time

from . import _core
from .config import Config  # noqa: F401 (type of Switch.config)

log = logging.getLogger("pyxsw")

SOL_PACKET = 263
PACKET_ADD_MEMBERSHIP = 1
PACKET_MR_PROMISC = 1


class SwitchError(Exception):
    """A start-up problem the operator must fix; `key` names the config key when there is one."""

    def __init__(self, message, key=None):
        super().__init__(message)
        self.key = key


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


def _reason(e):
    """An exception as one line for the operator, without Python's '[Errno N]'."""
    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    return str(e)


def _ensure_bpffs():
    """libxdp keeps its multi-program state in bpffs; mount it where it is missing."""
    if not os.path.ismount("/sys/fs/bpf"):
        subprocess.run(["mount", "-t", "bpf", "bpf", "/sys/fs/bpf"], capture_output=True)


def _link_up(name):
    try:
        with open(f"/sys/class/net/{name}/operstate") as f:
            state = f.read().strip()
        with open(f"/sys/class/net/{name}/carrier") as f:
            carrier = f.read().strip() == "1"
    except OSError:
        return False
    return carrier and state in ("up", "unknown")


class Port:
    """What the switch knows of one port beyond the core's index."""

    def __init__(self, name, index, promisc):
        self.name = name
        self.index = index
        self.promisc = promisc
        self.ifindex = 0
        self.up = True


class Switch:
    def __init__(self, config: Config):
        self.config = config
        self.core = None
        self.ports: dict[str, Port] = {}
        self._threads = []
        self._stop = threading.Event()
        self._housekeeper = None
        self._lock = threading.RLock()
        self._listeners = []
        self.started_at = None

    # ------------------------------------------------------------------ life cycle

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    def start(self):
        c = self.config
        allowed = os.sched_getaffinity(0)
        for i, core in enumerate(c.switch.cores):
            if core not in allowed:
                raise SwitchError(f"core {core} does not exist or is not usable here "
                                  f"(usable: {sorted(allowed)})", key=f"switch.cores[{i}]")
        _ensure_bpffs()
        try:
            self.core = _core.Core(
                frames=c.switch.frames, frame_size=c.switch.frame_size,
                ring_size=c.switch.ring_size, batch=c.switch.batch,
                workers=len(c.switch.cores), capacity=c.fdb.capacity,
                port_limit=c.fdb.port_limit, aging=c.fdb.aging,
                zero_copy=c.switch.zero_copy, xdp_mode=c.switch.xdp_mode, mode=c.switch.mode)
        except (OSError, MemoryError, ValueError) as e:
            raise SwitchError(_reason(e), key="switch.frames") from e
        try:
            for i, p in enumerate(c.ports):
                try:
                    self.add_port(p.name, flood_limit=p.flood_limit)
                except (OSError, ValueError) as e:
                    raise SwitchError(_reason(e), key=f"port[{i}].name") from e
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
        self.core.run_worker(q)

    def leave_worker_cores(self):
        """Move the calling thread off the workers' cores, when the machine has others: an
        aging sweep or an RPC storm must not take a worker's time.  Threads it starts
        afterwards (the management loop's executor) inherit that."""
        spare = os.sched_getaffinity(0) - set(self.config.switch.cores)
        if spare:
            os.sched_setaffinity(0, spare)

    def stop(self):
        """Stop the workers, tear every port down (XDP detached, promiscuous mode restored)."""
        with self._lock:
            if self.core is None:
                return
            self._stop.set()
            self.core.stop()
            for t in self._threads:
                t.join()
            self._threads.clear()
            if self._housekeeper is not None:
                self._housekeeper.join()
                self._housekeeper = None
            for name in list(self.ports):
                self._drop_port(name)
            self.core.close()
            self.core = None

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
        for fn in list(self._listeners):
            try:
                fn(event)
            except Exception:
                log.exception("event listener")

    def _housekeeping(self):
        """Age the FDB, follow link state and pass events on, ten times a second."""
        self.leave_worker_cores()
        seen_lost = 0
        while not self._stop.wait(0.1):
            try:
                with self._lock:
                    names = {p.index: p.name for p in self.ports.values()}
                    for kind, mac, vlan, idx, old in self.core.drain_events():
                        if kind == "learn":
                            self._emit(event="fdb.learn", mac=mac, vlan=vlan, port=names.get(idx))
                        else:
                            self._emit(event="fdb.move", mac=mac, vlan=vlan, port=names.get(idx),
                                       **{"from": names.get(old)})
                    # Events the workers' rings had no room for: subscribers hear how many.
                    lost = self._events_lost()
                    if lost > seen_lost:
                        self._emit(event="events.lost", count=lost - seen_lost)
                        seen_lost = lost
                    for mac, vlan, idx in self.core.fdb_maintain():
                        self._emit(event="fdb.age", mac=mac, vlan=vlan, port=names.get(idx))
                    self._watch_links()
            except Exception:               # never let housekeeping die silently
                log.exception("housekeeping")

    def _events_lost(self):
        return sum(w["events_lost"] for w in self.core.worker_stats())

    def _watch_links(self):
        for port in self.ports.values():
            up = _link_up(port.name)
            if up != port.up:
                port.up = up
                self.core.set_port_up(port.index, up)
                log.warning("port %s is %s", port.name, "up" if up else "down")
                n = 0
                if not up:
                    # Flush once no worker can still be learning from a frame of this
                    # port, and before anyone hears of it: then the FDB is already clean.
                    self.core.wait_grace()
                    n = self.core.fdb_flush(port.index)
                self._emit(event="port.up" if up else "port.down", port=port.name)
                if not up:
                    self._emit(event="fdb.flush", port=port.name, count=n)

    # ------------------------------------------------------------------ ports

    def add_port(self, name, flood_limit=0):
        with self._lock:
            ifindex = socket.if_nametoindex(name) if os.path.exists(f"/sys/class/net/{name}") else 0
            old = self.ports.get(name)
            if old is not None:
                if ifindex and ifindex == old.ifindex:
                    raise ValueError(f"{name}: already a switch port")
                # The interface was deleted (and maybe made again) under the switch: the
                # old port is a husk; tear it down and start over on the new interface.
                self._drop_port(name)
                self._emit(event="port.del", port=name)
            if not ifindex:
                raise OSError(19, f"{name}: no such interface")
            nq = sum(1 for d in os.listdir(f"/sys/class/net/{name}/queues") if d.startswith("rx-"))
            if nq < self.core.workers:
                raise OSError(22, f"{name} has {nq} RX queue(s) but cores has {self.core.workers} "
                                  f"entries: worker q needs queue q on every port")
            promisc = _Promisc(ifindex)
            try:
                up = _link_up(name)
                index, note = self.core.port_add(name, up=up, flood_limit=flood_limit)
            except BaseException:
                promisc.close()
                raise
            if note:
                log.warning("%s: %s", name, note)
            port = Port(name, index, promisc)
            port.ifindex = ifindex
            port.up = up
            self.ports[name] = port
            self._emit(event="port.add", port=name)
            return port

    def del_port(self, name):
        with self._lock:
            if name not in self.ports:
                raise KeyError(name)
            self._drop_port(name)
            self._emit(event="port.del", port=name)

    def _drop_port(self, name):
        port = self.ports.pop(name)
        if self.core is not None and port.index in self.core.ports():
            self.core.port_del(port.index)
        port.promisc.close()

    def _index(self, name):
        try:
            return self.ports[name].index
        except KeyError:
            raise KeyError(f"{name}: not a switch port") from None


    # ------------------------------------------------------------------ what users call

    def set_mode(self, mode):
        self.core.set_mode(mode)

    @property
    def mode(self):
        return self.core.mode

    def set_aging(self, seconds):
        self.core.set_aging(int(seconds))

    def fdb_list(self, port=None, vlan=None):
        names = {p.index: p.name for p in self.ports.values()}
        out = []
        for mac, v, idx, age, static in self.core.fdb_list():
            name = names.get(idx, f"#{idx}")
            if (port is None or name == port) and (vlan is None or v == vlan):
                out.append({"mac": mac, "vlan": v, "port": name, "age": age, "static": static})
        out.sort(key=lambda e: (e["port"], e["vlan"], e["mac"]))
        return out

    def fdb_add(self, mac, port, vlan=0):
        return self.core.fdb_add(mac, vlan, self._index(port))

    def fdb_del(self, mac, vlan=0):
        return self.core.fdb_del(mac, vlan)

    def fdb_flush(self, port=None):
        n = self.core.fdb_flush(-1 if port is None else self._index(port))
        self._emit(event="fdb.flush", port=port, count=n)
        return n

    def port_stats(self, name=None):
        names = [name] if name is not None else list(self.ports)
        out = {}
        for n in names:
            st = self.core.port_stats(self._index(n))
            st["up"] = self.ports[n].up
            out[n] = st
        return out

    def worker_stats(self):
        return self.core.worker_stats()

    def accounting(self):
        return self.core.accounting()

    def wait_quiet(self, timeout=5.0):
        """Wait until every frame is placed (nothing in flight); returns the accounting."""
        deadline = time.monotonic() + timeout
        acc = self.accounting()
        while acc["in_flight"] and time.monotonic() < deadline:
            time.sleep(0.05)
            acc = self.accounting()
        return acc

    def status(self):
        core = self.core
        return {
            "name": self.config.switch.name,
            "mode": core.mode,
            "uptime": round(time.monotonic() - self.started_at, 3) if self.started_at else 0,
            "workers": [{"queue": q, "core": c} for q, c in enumerate(self.config.switch.cores)],
            "ports": [dict(core.port_info(p.index), up=p.up) for p in self.ports.values()],
            "zero_copy": core.zero_copy_active,
            "tx_budget": core.tx_budget,
            "busy_poll": core.busy_poll,
            "fdb": core.fdb_counters(),
            "frames": self.accounting(),
            "events": {"lost": self._events_lost()},
        }
