"""What the management plane needs of a switch: exactly the members the RPC methods
(`handlers`) and the server use, no more.

pyxsw.switch.Switch provides them; so do the switch in memory that tests and perf/ serve
(pyxsw.mgmt.fake.FakeSwitch).  Neither inherits from these classes: tests/test_vocab.py
checks that each has every member, with a signature that takes every call declared here,
and that handlers.py and server.py use no member of the switch that is not declared.
"""
from __future__ import annotations

from typing import Callable, Mapping, Optional, Protocol

from ..config import Config
from ..vocab import PortVlan


class PortView(Protocol):
    """A port as the methods show it (Switch.ports' values)."""

    name: str
    index: int                  # the core's port index
    state: str                  # "up" | "down" | "gone" | "degraded"
    reason: str                 # why it is not up, in words; "" when up
    warnings: list              # said when it was added (IP addresses on the interface...)
    vlans: PortVlan             # its 802.1Q settings (the switch's copy of the datapath's)
    changed: list               # interface settings the switch changed (rx VLAN offload...)
    fastpath: dict              # {"target": a fast-path target?, "reason": if not, why}

    @property
    def up(self) -> bool: ...


class SwitchAPI(Protocol):
    ports: Mapping[str, PortView]   # by name
    # set by the server: metrics_hook((host, port) or None) serves the metrics endpoint
    # there, or stops it (a reload's [metrics] listen); None when no server runs
    metrics_hook: Optional[Callable]
    metrics_listen: str             # [metrics] listen as served now ("": none)

    def status(self) -> dict:
        """A mapping the `status` method extends with the server's own figures."""

    def add_port(self, name: str, vlans: Optional[PortVlan] = None) -> PortView:
        """Make interface `name` a port, or attach a gone or degraded port anew.  OSError
        ENODEV when there is no such interface, ValueError when it is already a port.
        `vlans` None: access on VLAN 1 (a port attached anew keeps the settings it had)."""

    def port_set(self, name: str, vlans: PortVlan) -> int:
        """Change a port's VLAN settings; returns how many of its learned FDB entries were
        flushed, those in VLANs it no longer carries.  KeyError when it is not a port."""

    def del_port(self, name: str) -> None:
        """KeyError when it is not a port."""

    def port_stats(self, name: Optional[str] = None) -> dict:
        """{port name: its counters}, for every port or one."""

    def fdb_list(self, port: Optional[str] = None, vlan: Optional[int] = None) -> list:
        """[{"mac", "vlan", "port", "age", "static"}], sorted by port, VLAN, MAC; with the
        fast path on ([switch] fastpath = "xdp") each has "kernel" too: in the XDP
        program's copy of the FDB."""

    def fdb_add(self, mac: str, port: str, vlan: Optional[int] = None) -> bool:
        """True when the entry is new (else an entry became static or moved).  vlan None:
        the port's untagged VLAN (access VLAN, trunk's native).  ValueError when the port
        does not carry that VLAN (or is a trunk without native and vlan is None)."""

    def fdb_del(self, mac: str, vlan: Optional[int] = None) -> int:
        """The entries removed: 0 or 1, or with vlan None, the MAC's in every VLAN."""

    def fdb_flush(self, port: Optional[str] = None, vlan: Optional[int] = None) -> int:
        """Learned entries removed: all, one port's and/or one VLAN's."""

    def set_mode(self, mode: str) -> None: ...

    def set_aging(self, seconds: int) -> None: ...

    def worker_stats(self) -> list:
        """[{"queue", "loops", "idle_loops", "wakeups", ...}], one per worker."""

    def capture_start(self, port: str, direction: str = "both", snaplen: int = 262144,
                      count: int = 0, sink: Optional[Callable] = None) -> int:
        """Start copying port's frames to sink(frames, end) (pyxsw.taps.Capture), from a
        switch thread; the capture's id.  KeyError when it is not a port."""

    def capture_stop(self, cid: int) -> dict:
        """{"captured", "lost"}; KeyError when capture cid is over."""

    def mirror_add(self, name: str, sources, direction: str, output: str) -> dict:
        """The mirror as mirror_list shows it.  KeyError when a port is not one; ValueError
        (vocab.Invalid) when it clashes with another mirror."""

    def mirror_del(self, name: str) -> dict:
        """KeyError when there is no such mirror."""

    def mirror_list(self) -> list:
        """[{"name", "source", "direction", "output", "active", "missing"}], by name."""

    def reload(self) -> dict:
        """Read the config file again and apply what can change at run time (pyxsw.reload):
        {"changed": [text], "failed": [{"change", "error"}], "restart": [key], "config":
        path}.  ConfigError when the file is wrong (nothing changed); ValueError when the
        switch was not started from a file."""

    def running_config(self, for_file: bool = False) -> Config:
        """The configuration it runs now (mode, aging, ports, static entries as they are)."""

    def add_listener(self, fn: Callable[[dict], None]) -> None:
        """Call fn(event) for every FDB and port event, from a switch thread."""

    def remove_listener(self, fn: Callable[[dict], None]) -> None: ...


def members(protocol):
    """The names a protocol declares: its attributes and its methods."""
    names = set(getattr(protocol, "__annotations__", {}))
    names |= {k for k, v in vars(protocol).items()
              if not k.startswith("_") and (callable(v) or isinstance(v, property))}
    return names
