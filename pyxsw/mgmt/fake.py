"""A switch in memory that the management plane can serve: the tests' (no root, no core)
and perf/rpc_rate.py's (the server's speed alone).  It has what pyxsw.mgmt.api.SwitchAPI
declares, and a little more for tests to drive it: learn() and emit() make events,
`delay` slows port changes down.  FakeSwitch(fastpath="xdp") shows the fast path on:
every port a target, every FDB entry in the kernel copy.

    from pyxsw.mgmt.fake import FakeSwitch
    from pyxsw.mgmt.server import serve
    serve(FakeSwitch(100_000), "/tmp/sw.sock")        # 100,000 learned FDB entries

Interfaces whose name starts with "nosuch" do not exist; those starting with "ip" carry
IP addresses (their port comes with a warning, as a real one's does).
"""
from __future__ import annotations

import errno
import os
import threading
import time

from .. import __version__
from ..counters import FASTPATH, FDB, POOL, PORT, PROG, QUEUE, WORKER
from ..counters import PORT_SUMMARY as COUNTERS     # the port counters it makes up
from ..vocab import DEFAULT_PORT_VLAN
from .. import taps


FASTPATH_OFF = {"target": False, "reason": "the fast path is off"}


class FakePort:
    def __init__(self, name, index, vlans=DEFAULT_PORT_VLAN, fastpath=FASTPATH_OFF):
        self.name, self.index, self.state, self.reason = name, index, "up", ""
        self.vlans = vlans
        self.flood_limit, self.forward_reserved = 0, False
        self.changed = []               # interface settings changed (rx VLAN offload...)
        self.fastpath = dict(fastpath)  # as Switch's Port.fastpath: {"target", "reason"}
        # like a real port whose interface carries addresses: the reply must say so
        self.warnings = [f"{name} has IP addresses (10.9.0.1/24)"] if name.startswith("ip") else []

    @property
    def up(self):
        return self.state == "up"


class FakeSwitch:
    """`entries` learned FDB entries to start with (spread over the ports and 4 VLANs);
    `ports`, the names of its ports; `fastpath`, "off" or "xdp" ([switch] fastpath).
    add_port/del_port take `delay` seconds."""

    # Each worker_stats() is a look after this many more passes of each worker, this many
    # of them idle: a busy share of 0.75 between two looks.
    PASSES, IDLE = 1000, 250

    def __init__(self, entries=0, *, ports=("s0", "s1", "s2"), fastpath="off", config=None):
        self.fastpath = fastpath
        self.config_path = config               # a file reload() reads; None: none
        self.ports = {}
        self.fdb = {}                           # (vlan, mac) -> [port, static]
        self.mode = "poll"
        self.aging = 300
        self.delay = 0.0
        self.listeners = []
        self.captures = {}                      # id -> taps.Capture: feed them with frame()
        self.metrics_hook = None
        self.metrics_listen = ""
        self.mirrors = {}
        self.lock = threading.Lock()
        # every counter of the tables (pyxsw.counters): those not set here are 0
        self.workers = [dict(dict.fromkeys(WORKER.names, 0), queue=0, loops=4000,
                             idle_loops=3000, cycles=400_000, busy_cycles=100_000, wakeups=12,
                             tx_kicks=7, learned=2, mode="poll")]
        for p in ports:
            self.add_port(p)
        names = list(self.ports)
        for i in range(entries):
            mac = f"02:00:{i >> 24 & 255:02x}:{i >> 16 & 255:02x}:{i >> 8 & 255:02x}:{i & 255:02x}"
            self.fdb[(i % 4, mac)] = [names[i % len(names)], False]

    # events
    def add_listener(self, fn):
        self.listeners.append(fn)

    def remove_listener(self, fn):
        self.listeners.remove(fn)

    def emit(self, **event):
        event.setdefault("time", time.time())      # as Switch._emit stamps them
        for fn in list(self.listeners):
            fn(event)

    def learn(self, mac, port, vlan=None):
        """As a worker learns a frame of `port`: vlan None is an untagged frame's, the
        port's access or native VLAN."""
        if vlan is None:
            vlan = self.ports[port].vlans.untagged()
        with self.lock:
            old = self.fdb.get((vlan, mac))
            self.fdb[(vlan, mac)] = [port, False]
        if old is None:
            self.emit(event="fdb.learn", mac=mac, vlan=vlan, port=port)
        elif old[0] != port:
            self.emit(**{"event": "fdb.move", "mac": mac, "vlan": vlan, "port": port,
                         "from": old[0]})

    # the SwitchAPI
    def status(self):
        return {"name": "fake", "version": __version__, "pid": os.getpid(),
                "config": "/etc/pyxsw/fake.toml", "mode": self.mode,
                "uptime": 2 * 86400 + 3 * 3600 + 4 * 60 + 5.25,
                "workers": [{"queue": 0, "core": 1}],
                "ports": [{"name": p.name, "index": p.index, "up": p.up}
                          for p in self.ports.values()],
                "fdb": dict(dict.fromkeys(FDB.names, 0), entries=len(self.fdb),
                            capacity=65536, aging=self.aging),
                "frames": dict(dict.fromkeys(POOL.names, 0), frames=16384, pool=16000,
                               placed=16384),
                "fastpath": {"mode": self.fastpath,
                             "kernel_fdb_entries": len(self.fdb) if self.fastpath == "xdp" else 0,
                             "sync_errors": 0}}

    def add_port(self, name, vlans=None, flood_limit=0, forward_reserved=False):
        if name.startswith("nosuch"):
            raise OSError(errno.ENODEV, f"{name}: no such interface")
        time.sleep(self.delay)
        with self.lock:
            if name in self.ports and self.ports[name].state == "up":
                raise ValueError(f"{name}: already a switch port")
            old = self.ports.get(name)
            if vlans is None:
                vlans = old.vlans if old is not None else DEFAULT_PORT_VLAN
            used = {p.index for p in self.ports.values() if p is not old}
            port = FakePort(name, min(set(range(len(used) + 1)) - used), vlans,
                            {"target": True, "reason": ""} if self.fastpath == "xdp"
                            else FASTPATH_OFF)
            port.flood_limit, port.forward_reserved = flood_limit, forward_reserved
            self.ports[name] = port
        self.emit(event="port.add", port=name)
        return port

    def del_port(self, name):
        time.sleep(self.delay)
        with self.lock:
            if name not in self.ports:
                raise KeyError(name)
            del self.ports[name]
            for k in [k for k, v in self.fdb.items() if v[0] == name]:
                del self.fdb[k]
        self.emit(event="port.del", port=name)

    def port_set(self, name, vlans):
        with self.lock:
            if name not in self.ports:
                raise KeyError(f"{name}: not a switch port")
            self.ports[name].vlans = vlans
            # what Datapath.fdb_flush_not_carried does: the port's learned entries only
            gone = [k for k, (p, static) in self.fdb.items()
                    if p == name and not static and not vlans.carries(k[0])]
            for k in gone:
                del self.fdb[k]
        self.emit(event="fdb.flush", port=name, count=len(gone))
        return len(gone)

    def port_stats(self, name=None):
        names = [name] if name is not None else list(self.ports)
        return {n: dict(dict.fromkeys(PORT.names, 0), **{k: 10 * i for i, k in enumerate(COUNTERS)},
                        up=self.ports[n].up,
                        xdp=dict(dict.fromkeys(QUEUE.names + PROG.names, 0), prog_seen=5),
                        fastpath=dict.fromkeys(FASTPATH.names, 0),
                        queues=[dict(dict.fromkeys(QUEUE.names, 0), queue=0, rx_packets=0,
                                     tx_packets=20)])
                for n in names}

    def fdb_list(self, port=None, vlan=None):
        # the work Switch.fdb_list does in Python: a dict per entry, filtered, sorted
        with self.lock:
            items = list(self.fdb.items())
        kernel = {"kernel": True} if self.fastpath == "xdp" else {}     # as Switch.fdb_list
        out = [{"mac": mac, "vlan": v, "port": p, "age": 0 if static else 3, "static": static,
                **kernel}
               for (v, mac), (p, static) in items
               if (port is None or p == port) and (vlan is None or v == vlan)]
        return sorted(out, key=lambda e: (e["port"], e["vlan"], e["mac"]))

    def fdb_add(self, mac, port, vlan=None):
        if port not in self.ports:
            raise KeyError(f"{port}: not a switch port")
        vlan = self.ports[port].vlans.static_vlan(port, vlan)
        with self.lock:
            new = (vlan, mac) not in self.fdb
            self.fdb[(vlan, mac)] = [port, True]
        return new

    def fdb_del(self, mac, vlan=None):
        with self.lock:
            keys = [k for k in self.fdb if k[1] == mac and (vlan is None or k[0] == vlan)]
            for k in keys:
                del self.fdb[k]
        return len(keys)

    def fdb_flush(self, port=None, vlan=None):
        with self.lock:
            gone = [k for k, (p, static) in self.fdb.items()
                    if not static and (port is None or p == port)
                    and (vlan is None or k[0] == vlan)]
            for k in gone:
                del self.fdb[k]
        self.emit(event="fdb.flush", port=port, count=len(gone),
                  **({} if vlan is None else {"vlan": vlan}))
        return len(gone)

    def set_mode(self, mode):
        self.mode = mode
        for w in self.workers:
            w["mode"] = mode

    def set_aging(self, seconds):
        self.aging = seconds

    def worker_stats(self):
        with self.lock:
            out = [dict(w) for w in self.workers]
            for w in self.workers:
                w["loops"] += self.PASSES
                w["idle_loops"] += self.IDLE
                # 100 cycles a pass: busy the same share of its time as of its passes
                w["cycles"] += 100 * self.PASSES
                w["busy_cycles"] += 100 * (self.PASSES - self.IDLE)
        return out

    # capture and mirrors
    def capture_start(self, port, direction="both", snaplen=taps.DEFAULT_SNAPLEN, count=0,
                      sink=None):
        if port not in self.ports:
            raise KeyError(f"{port}: not a switch port")
        c = taps.Capture(port, direction, snaplen, count, sink, 0)
        self.captures[c.id] = c
        return c.id

    def capture_stop(self, cid):
        c = self.captures.pop(cid)
        return c.result(0)

    def frame(self, port, direction, data, when_ns=None):
        """A frame the port received ("in") or sent ("out"), for the captures."""
        t = time.time_ns() if when_ns is None else when_ns
        for c in list(self.captures.values()):
            if c.offer([(t, port, direction, len(data), bytes(data))]):
                del self.captures[c.id]
                c.sink([], c.result(0))

    def mirror_add(self, name, sources, direction, output):
        for p in (*sources, output):
            if p not in self.ports:
                raise KeyError(f"{p}: not a switch port")
        m = taps.Mirror(name, tuple(sorted(set(sources))), direction, output)
        taps.check_mirror(m, self.mirrors)
        self.mirrors[name] = m
        return m.view(self.ports)

    def mirror_del(self, name):
        if name not in self.mirrors:
            raise KeyError(f"no mirror {name}")
        return self.mirrors.pop(name).view(self.ports)

    def mirror_list(self):
        return [m.view(self.ports) for _, m in sorted(self.mirrors.items())]

    def port_options(self, name, flood_limit=None, forward_reserved=None):
        port = self.ports[name]
        if flood_limit is not None:
            port.flood_limit = flood_limit
        if forward_reserved is not None:
            port.forward_reserved = forward_reserved

    def running_config(self, for_file=False):
        from ..config import Config, FdbSection, PortSection, StaticEntry, SwitchSection
        ports = sorted(self.ports.values(), key=lambda p: p.index)
        return Config(
            switch=SwitchSection(name="fake", mode=self.mode),
            fdb=FdbSection(aging=self.aging, static=tuple(
                StaticEntry(e["mac"], e["port"], e["vlan"]) for e in self.fdb_list()
                if e["static"])),
            ports=[PortSection(name=p.name, flood_limit=p.flood_limit,
                               forward_reserved=p.forward_reserved, **p.vlans._asdict())
                   for p in ports])

    def reload(self):
        """As Switch.reload, from `config` (the constructor's); a change to the switch
        section other than mode is one that needs a restart, as a real switch's."""
        from .. import reload as _reload
        from ..config import Config
        if self.config_path is None:
            raise ValueError("the switch was not started from a file: nothing to reload")
        new = Config.load(self.config_path)
        return dict(_reload.apply(self, _reload.plan(self.running_config(), new)),
                    config=self.config_path)
