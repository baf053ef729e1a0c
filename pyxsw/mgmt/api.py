"""What the management plane needs of a switch: exactly the members the RPC methods
(`handlers`) and the server use, no more.

pyxsw.switch.Switch provides them; so do the switch in memory that tests and perf/ serve
(pyxsw.mgmt.fake.FakeSwitch).  Neither inherits from these classes: tests/test_vocab.py
checks that each has every member, with a signature that takes every call declared here,
and that handlers.py and server.py use no member of the switch that is not declared.
"""
from __future__ import annotations

from typing import Callable, Mapping, Optional, Protocol


class PortView(Protocol):
    """A port as the methods show it (Switch.ports' values)."""

    name: str
    index: int                  # the core's port index
    state: str                  # "up" | "down" | "gone" | "degraded"
    reason: str                 # why it is not up, in words; "" when up
    warnings: list              # said when it was added (IP addresses on the interface...)

    @property
    def up(self) -> bool: ...


class SwitchAPI(Protocol):
    ports: Mapping[str, PortView]   # by name

    def status(self) -> dict:
        """A mapping the `status` method extends with the server's own figures."""

    def add_port(self, name: str) -> PortView:
        """Make interface `name` a port, or attach a gone or degraded port anew.  OSError
        ENODEV when there is no such interface, ValueError when it is already a port."""

    def del_port(self, name: str) -> None:
        """KeyError when it is not a port."""

    def port_stats(self, name: Optional[str] = None) -> dict:
        """{port name: its counters}, for every port or one."""

    def fdb_list(self, port: Optional[str] = None, vlan: Optional[int] = None) -> list:
        """[{"mac", "vlan", "port", "age", "static"}], sorted by port, VLAN, MAC."""

    def fdb_add(self, mac: str, port: str, vlan: int = 0) -> bool:
        """True when the entry is new (else an entry became static or moved)."""

    def fdb_del(self, mac: str, vlan: int = 0) -> bool:
        """False when there was no such entry."""

    def fdb_flush(self, port: Optional[str] = None) -> int:
        """Learned entries removed."""

    def set_mode(self, mode: str) -> None: ...

    def set_aging(self, seconds: int) -> None: ...

    def worker_stats(self) -> list:
        """[{"queue", "loops", "idle_loops", "wakeups", ...}], one per worker."""

    def add_listener(self, fn: Callable[[dict], None]) -> None:
        """Call fn(event) for every FDB and port event, from a switch thread."""

    def remove_listener(self, fn: Callable[[dict], None]) -> None: ...


def members(protocol):
    """The names a protocol declares: its attributes and its methods."""
    names = set(getattr(protocol, "__annotations__", {}))
    names |= {k for k, v in vars(protocol).items()
              if not k.startswith("_") and (callable(v) or isinstance(v, property))}
    return names
