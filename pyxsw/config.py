"""Configuration: a TOML file checked completely before anything starts.

    cfg = Config.load("conf/sw0.toml")
    cfg.switch.mode, cfg.fdb.aging, cfg.management.socket, [p.name for p in cfg.ports]

Every problem is one `ConfigError` whose text is a single line, "<file>: <key>: <reason>", so
an operator (or systemd's journal) sees exactly what to fix.  Checks here are the ones that
need only the file; what depends on the machine (does core 3 exist, is s0 an interface) is
checked by the switch when it starts.
"""
from __future__ import annotations

import dataclasses
import difflib
import ipaddress
import json
import re
import datetime
import tomllib
from dataclasses import dataclass, field

from . import logs

# The choices and the bounds the core holds are pyxsw.vocab's, shared with the RPC methods
# and `pyxsw ctl` (and, by test, with the core's own: test_bounds_are_the_cores), so that a
# value the file accepts can never overflow the core's 32-bit counts, hang its sizing or
# keep the kernel allocating for a minute.  What the machine's memory allows (the UMEM, the
# FDB) is checked by Switch.start().  Re-exported here: what a config key may hold.
from .vocab import (FASTPATH, FRAME_SIZES, MAX_AGING, MAX_BATCH, MAX_CAPACITY, MAX_FLOOD_LIMIT,  # noqa: F401
                    MAX_FRAMES, MAX_PORT_LIMIT, MAX_PORTS, MAX_RING_SIZE, MAX_WORKERS, MODES,
                    VLAN_ID_MAX, VLAN_MODES, XDP_MODES, ZERO_COPY, Invalid, PortVlan, port_vlan,
                    station, valid_ifname)
from .vocab import DIRECTIONS, port_names, name as vocab_name
from .vocab import MAX_FRAGS, MAX_FRAME_DEFAULT, MIN_FRAME, XDP_HEADROOM, max_frame_limit
from .taps import Mirror, check_mirror

# Bounds only the file has.
MAX_CLIENTS = 65536             # management connections: a descriptor and ~30 KB each
MAX_CPU = 8192                  # Linux's NR_CPUS is at most 8192
MAX_GID = 2**32 - 2             # gid_t is 32 bits and (gid_t)-1 means "no change" to chown
VLAN_KEYS = PortVlan._fields   # a [[port]]'s 802.1Q keys: vlan_mode, vlan, allowed, native
SUN_PATH = 108                  # an AF_UNIX socket path: at most 107 bytes plus the NUL


class ConfigError(Exception):
    """A configuration problem: `source` (file name), `key` (dotted, "-" for the whole file)
    and `reason`.  str() is the one line the CLI prints."""

    def __init__(self, source, key, reason):
        self.source, self.key = str(source), key
        # One line whatever the reason says (tomllib messages are one line; be sure).
        self.reason = " ".join(str(reason).split())
        super().__init__(f"{self.source}: {self.key}: {self.reason}")


@dataclass(frozen=True)
class SwitchSection:
    name: str = "sw0"
    mode: str = "poll"
    cores: list = field(default_factory=lambda: [1])
    batch: int = 64
    xdp_mode: str = "auto"
    zero_copy: str = "auto"
    fastpath: str = "off"
    frame_size: int = 2048
    frames: int = 16384
    ring_size: int = 2048
    max_frame: int = MAX_FRAME_DEFAULT
    busy_poll_tuning: bool = False  # poll mode: set the ports' NAPI deferral (pyxsw.napi)


@dataclass(frozen=True)
class StaticEntry:
    """A [[fdb.static]] entry: `mac` (a station) reached through port `port` in VLAN `vlan`
    (the file may leave it out: then the port's untagged VLAN, resolved when read)."""
    mac: str
    port: str
    vlan: int


@dataclass(frozen=True)
class FdbSection:
    aging: int = 300
    capacity: int = 65536
    port_limit: int = 0
    static: tuple = ()                     # StaticEntry, in the file's order


@dataclass(frozen=True)
class ManagementSection:
    socket: str = "/run/pyxsw/sw0.sock"    # from_dict() derives it from switch.name
    group: str = ""                        # a group that may use the socket (mode 0660); "" = root only
    priority: str = "idle"                 # the management loop's: "idle" (nice 19) or "normal"
    max_clients: int = 256                 # connections served at once; more are refused


@dataclass(frozen=True)
class MetricsSection:
    listen: str = ""                       # "host:port" or "[v6]:port"; "" = no metrics endpoint

    @property
    def address(self):
        """(host, port) to listen on, or None when metrics are off."""
        return parse_listen(self.listen) if self.listen else None


def parse_listen(text):
    """(host, port) of "host:port" or "[IPv6]:port"; ValueError, in words, if it is not one.
    The host is an IP address or a host name: an empty one is refused (name 0.0.0.0 or [::]
    to listen on every address: that exposes the switch's figures, so it must be said)."""
    if not isinstance(text, str):
        raise ValueError(f"expected a string, got {_what(text)}")
    m = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\]:([0-9]{1,5})|([^:\[\]]*):([0-9]{1,5})", text)
    if not m:
        raise ValueError(f"must be host:port or [IPv6]:port, got {text!r}")
    host, port = (m[1], m[2]) if m[1] is not None else (m[3], m[4])
    if not 1 <= int(port) <= 65535:
        raise ValueError(f"the port must be 1..65535, got {text!r}")
    if m[1] is not None:
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"not an IPv6 address in brackets: {text!r}") from None
    elif not host:
        raise ValueError(f"name the address to listen on (0.0.0.0:{port} or [::]:{port} for "
                         f"every address), got {text!r}")
    elif re.fullmatch(r"[0-9.]+", host):
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            raise ValueError(f"not an IPv4 address: {text!r}") from None
    elif not re.fullmatch(r"[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?", host):
        raise ValueError(f"not an IPv4 address or a host name: {text!r}")
    return host, int(port)


@dataclass(frozen=True)
class LogSection:
    level: str = "info"                    # debug | info | warning | error (pyxsw.logs.LEVELS)
    format: str = "text"                   # text | json (pyxsw.logs.FORMATS)


@dataclass(frozen=True)
class PortSection:
    name: str
    flood_limit: int = 0                   # flooded frames/s this port may cause; 0 = no limit
    forward_reserved: bool = False         # flood 01:80:c2:00:00:0x frames received here
    # 802.1Q, as pyxsw.vocab.PortVlan holds them (the datapath's form): access on `vlan`, or
    # trunk carrying `allowed` (None: all) tagged and `native` untagged (0: none; then vlan 0)
    vlan_mode: str = "access"
    vlan: int = 1
    allowed: tuple = None
    native: int = 0

    @property
    def vlans(self) -> PortVlan:
        return PortVlan(self.vlan_mode, self.vlan, self.allowed, self.native)


@dataclass(frozen=True)
class Config:
    switch: SwitchSection = field(default_factory=SwitchSection)
    fdb: FdbSection = field(default_factory=FdbSection)
    management: ManagementSection = field(default_factory=ManagementSection)
    metrics: MetricsSection = field(default_factory=MetricsSection)
    ports: list = field(default_factory=list)
    mirrors: list = field(default_factory=list)            # taps.Mirror, from [[mirror]]
    log: LogSection = field(default_factory=LogSection)
    source: str = field(default="<dict>", compare=False)    # where it came from, for messages

    @classmethod
    def load(cls, path) -> Config:
        path = str(path)
        try:
            with open(path, "rb") as f:
                data = tomllib.load(f)
        except OSError as e:
            raise ConfigError(path, "-", f"cannot read: {e.strerror or e}") from None
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(path, "-", f"not valid TOML: {e}") from None
        except UnicodeDecodeError as e:
            raise ConfigError(path, "-", f"not valid UTF-8: byte {e.object[e.start]:#04x} "
                                         f"at offset {e.start}") from None
        except RecursionError:
            raise ConfigError(path, "-", "not valid TOML: nested too deeply") from None
        except Exception as e:      # whatever else the parser meets: still one line
            raise ConfigError(path, "-", f"not valid TOML: {e or type(e).__name__}") from None
        return cls.from_dict(data, source=path)

    @classmethod
    def from_dict(cls, d, source="<dict>") -> Config:
        return _Parser(source).config(d)

    def to_dict(self) -> dict:
        """The TOML-shaped dict that from_dict() reads back to an equal Config."""
        fdb = dataclasses.asdict(self.fdb)
        fdb["static"] = [dataclasses.asdict(e) for e in self.fdb.static]
        if not fdb["static"]:
            del fdb["static"]
        return {
            "switch": dataclasses.asdict(self.switch),
            "fdb": fdb,
            "management": dataclasses.asdict(self.management),
            **({"metrics": dataclasses.asdict(self.metrics)} if self.metrics.listen else {}),
            "log": dataclasses.asdict(self.log),
            "port": [{"name": p.name, "flood_limit": p.flood_limit,
                      "forward_reserved": p.forward_reserved, **p.vlans.keys()}
                     for p in self.ports],
            **({"mirror": [m.keys() for m in self.mirrors]} if self.mirrors else {}),
        }


def to_toml(config, header="") -> str:
    """A Config as a TOML file that Config.load() reads back equal (and `pyxsw run` takes),
    after `header` (comment lines).  tomli-w writes it: the one TOML writer, well kept."""
    import tomli_w      # here: reading a file needs the standard library only
    return header + tomli_w.dumps(config.to_dict())


def _key(k):
    # An unknown key as TOML writes it: bare, or quoted with escapes (never a line break).
    return k if re.fullmatch(r"[A-Za-z0-9_-]+", k) else json.dumps(k)


def _num(v):
    # str() of an int over 4300 digits raises ValueError: describe such a one instead.
    return str(v) if v.bit_length() <= 128 else f"an integer of {v.bit_length()} bits"


def _what(v):
    # bool before int: in Python a bool *is* an int, in a config file it is not.
    for t, word in ((bool, "a boolean"), (int, "an integer"), (float, "a float"),
                    (str, "a string"), (list, "an array"), (dict, "a table"),
                    (datetime.datetime, "a date-time"), (datetime.date, "a date"),
                    (datetime.time, "a time")):
        if isinstance(v, t):
            return word
    return type(v).__name__


class _Parser:
    def __init__(self, source):
        self.source = source

    def fail(self, key, reason):
        raise ConfigError(self.source, key, reason)

    def table(self, d, key, fields):
        """Check that `d` is a table with no key outside `fields`."""
        if not isinstance(d, dict):
            self.fail(key, f"expected a table, got {_what(d)}")
        for k in d:
            if k not in fields:
                # a misspelt key is the usual mistake: name the key it probably meant
                close = difflib.get_close_matches(k, fields, n=1) if isinstance(k, str) else []
                self.fail(f"{key}.{_key(k)}" if key else _key(k),
                          "unknown key" + (f" (did you mean '{close[0]}'?)" if close else ""))
        return d

    def integer(self, d, section, key, default, minimum, maximum=None):
        v = d.get(key, default)
        if type(v) is not int:
            self.fail(f"{section}.{key}", f"expected an integer, got {_what(v)}")
        if v < minimum:
            self.fail(f"{section}.{key}",
                      f"must be {'positive' if minimum == 1 else 'zero or more'}, got {_num(v)}")
        if maximum is not None and v > maximum:
            self.fail(f"{section}.{key}", f"must be at most {maximum}, got {_num(v)}")
        return v

    def string(self, d, section, key, default, choices=None):
        v = d.get(key, default)
        if not isinstance(v, str):
            self.fail(f"{section}.{key}", f"expected a string, got {_what(v)}")
        if choices and v not in choices:
            self.fail(f"{section}.{key}", f"must be one of {', '.join(choices)}, got {v!r}")
        return v

    def config(self, d) -> Config:
        self.table(d, "", ("switch", "fdb", "management", "metrics", "log", "port", "mirror"))
        sw = self.switch(d.get("switch", {}))
        fdb = self.fdb(d.get("fdb", {}))
        mgmt = self.management(d.get("management", {}), sw.name)
        metrics = self.metrics(d.get("metrics", {}))
        ports = self.ports(d.get("port", []))
        mirrors = self.mirrors(d.get("mirror", []), ports)
        fdb = dataclasses.replace(fdb, static=self.static(d.get("fdb", {}).get("static", []),
                                                          ports))
        # The core's rule (Core.port_add): every socket's fill ring gets at least a batch out
        # of half the frames; sockets are ports x queues (one queue per entry of cores).
        need = 2 * sw.batch * len(ports) * len(sw.cores)
        if sw.frames < need:
            self.fail("switch.frames", f"must be at least {need} for {len(ports)} port(s) x "
                                       f"{len(sw.cores)} queue(s) (2 x batch per socket), "
                                       f"got {sw.frames}")
        return Config(switch=sw, fdb=fdb, management=mgmt, metrics=metrics, ports=ports,
                      mirrors=mirrors, log=self.log(d.get("log", {})),
                      source=self.source)

    def switch(self, d) -> SwitchSection:
        S, D = "switch", SwitchSection()
        self.table(d, S, [f.name for f in dataclasses.fields(SwitchSection)])
        name = self.string(d, S, "name", D.name)
        # The name becomes a file name (the socket) and a log tag: keep it plain.
        if not name or len(name) > 64 or not all(c.isalnum() or c in "_.-" for c in name) \
                or name in (".", ".."):
            self.fail("switch.name", f"must be 1-64 letters, digits, '_', '.' or '-', got {name!r}")
        cores = d.get("cores", D.cores)
        if not isinstance(cores, list):
            self.fail("switch.cores", f"expected an array of integers, got {_what(cores)}")
        if not cores:
            self.fail("switch.cores", "must name at least one core")
        if len(cores) > MAX_WORKERS:
            self.fail("switch.cores", f"at most {MAX_WORKERS} cores (one worker each), "
                                      f"got {len(cores)}")
        for i, c in enumerate(cores):
            if type(c) is not int:
                self.fail(f"switch.cores[{i}]", f"expected an integer, got {_what(c)}")
            if c < 0:
                self.fail(f"switch.cores[{i}]", f"must be zero or more, got {_num(c)}")
            if c >= MAX_CPU:
                self.fail(f"switch.cores[{i}]", f"must be below {MAX_CPU}, got {_num(c)}")
            if c in cores[:i]:
                self.fail(f"switch.cores[{i}]", f"core {c} is listed twice")
        ring_size = self.integer(d, S, "ring_size", D.ring_size, 1, MAX_RING_SIZE)
        if ring_size & (ring_size - 1):
            # xsk rings index with a mask: the kernel refuses other sizes.
            self.fail("switch.ring_size", f"must be a power of two, got {ring_size}")
        batch = self.integer(d, S, "batch", D.batch, 1, MAX_BATCH)
        if batch > ring_size:
            self.fail("switch.batch", f"must be at most ring_size ({ring_size}), got {batch}")
        frame_size = self.integer(d, S, "frame_size", D.frame_size, 1)
        if frame_size not in FRAME_SIZES:
            self.fail("switch.frame_size", f"must be {' or '.join(map(str, FRAME_SIZES))}, "
                                                f"got {_num(frame_size)}")
        max_frame = self.integer(d, S, "max_frame", D.max_frame, 1)
        if max_frame < MIN_FRAME:
            self.fail("switch.max_frame", f"must be at least {MIN_FRAME}, got {_num(max_frame)}")
        if max_frame > max_frame_limit(frame_size):
            self.fail("switch.max_frame", f"must be at most {max_frame_limit(frame_size)} with "
                      f"frame_size {frame_size} (a frame spans {MAX_FRAGS} UMEM frames at most), "
                      f"got {_num(max_frame)}")
        descs = -(-max_frame // (frame_size - XDP_HEADROOM))
        if ring_size < descs:
            self.fail("switch.ring_size", f"must hold a frame of switch.max_frame {max_frame} "
                      f"bytes: {descs} descriptors of {frame_size - XDP_HEADROOM}, got {ring_size}")
        busy_poll_tuning = d.get("busy_poll_tuning", D.busy_poll_tuning)
        if not isinstance(busy_poll_tuning, bool):
            self.fail("switch.busy_poll_tuning",
                      f"expected true or false, got {_what(busy_poll_tuning)}")
        return SwitchSection(
            name=name,
            mode=self.string(d, S, "mode", D.mode, MODES),
            cores=list(cores),
            batch=batch,
            xdp_mode=self.string(d, S, "xdp_mode", D.xdp_mode, XDP_MODES),
            zero_copy=self.string(d, S, "zero_copy", D.zero_copy, ZERO_COPY),
            fastpath=self.string(d, S, "fastpath", D.fastpath, FASTPATH),
            frame_size=frame_size,
            frames=self.integer(d, S, "frames", D.frames, 1, MAX_FRAMES),
            ring_size=ring_size,
            max_frame=max_frame,
            busy_poll_tuning=busy_poll_tuning,
        )

    def fdb(self, d) -> FdbSection:
        S, D = "fdb", FdbSection()
        self.table(d, S, [f.name for f in dataclasses.fields(FdbSection)])
        return FdbSection(aging=self.integer(d, S, "aging", D.aging, 0, MAX_AGING),
                          capacity=self.integer(d, S, "capacity", D.capacity, 1, MAX_CAPACITY),
                          port_limit=self.integer(d, S, "port_limit", D.port_limit, 0,
                                                  MAX_PORT_LIMIT))

    def management(self, d, switch_name) -> ManagementSection:
        self.table(d, "management", ["socket", "group", "priority", "max_clients"])
        sock = self.string(d, "management", "socket", f"/run/pyxsw/{switch_name}.sock")
        if not sock.startswith("/"):
            self.fail("management.socket", f"must be an absolute path, got {sock!r}")
        if "\0" in sock or len(sock.encode(errors="surrogatepass")) >= SUN_PATH:
            # the default comes from switch.name: blame the key the file has
            self.fail("management.socket" if "socket" in d else "switch.name",
                      f"the socket path must be at most {SUN_PATH - 1} bytes, without NUL, "
                      f"got {sock!r}")
        group = self.string(d, "management", "group", "")
        if group and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.-]{0,31}|[0-9]+", group):
            self.fail("management.group", f"not a group name or gid: {group!r}")
        if group.isdigit() and int(group) > MAX_GID:
            self.fail("management.group", f"a gid must be at most {MAX_GID}, got {group}")
        prio = self.string(d, "management", "priority", "idle", ("idle", "normal"))
        max_clients = self.integer(d, "management", "max_clients", 256, 1)
        if max_clients > MAX_CLIENTS:
            self.fail("management.max_clients",
                      f"must be at most {MAX_CLIENTS}, got {max_clients}")
        return ManagementSection(socket=sock, group=group, priority=prio, max_clients=max_clients)

    def metrics(self, d) -> MetricsSection:
        self.table(d, "metrics", ["listen"])
        if "listen" not in d:                   # [metrics] alone: nothing to serve on
            return MetricsSection()
        try:
            parse_listen(d["listen"])
        except ValueError as e:
            self.fail("metrics.listen", str(e))
        return MetricsSection(listen=d["listen"])

    def log(self, d) -> LogSection:
        S, D = "log", LogSection()
        self.table(d, S, [f.name for f in dataclasses.fields(LogSection)])
        return LogSection(level=self.string(d, S, "level", D.level, logs.LEVELS),
                          format=self.string(d, S, "format", D.format, logs.FORMATS))

    def ports(self, lst) -> list:
        if not isinstance(lst, list):
            self.fail("port", f"expected an array of tables ([[port]]), got {_what(lst)}")
        if len(lst) > MAX_PORTS:
            self.fail("port", f"at most {MAX_PORTS} ports, got {len(lst)}")
        ports = []
        for i, p in enumerate(lst):
            key = f"port[{i}]"
            self.table(p, key, ["name", "flood_limit", "forward_reserved", *VLAN_KEYS])
            if "name" not in p:
                self.fail(f"{key}.name", "missing")
            name = self.string(p, key, "name", None)
            if not valid_ifname(name):
                self.fail(f"{key}.name", f"not a valid interface name (1-15 characters, "
                                         f"no '/', ':' or space): {name!r}")
            if any(q.name == name for q in ports):
                self.fail(f"{key}.name", f"port {name} is listed twice")
            flood_limit = self.integer(p, key, "flood_limit", 0, 0, MAX_FLOOD_LIMIT)
            forward_reserved = p.get("forward_reserved", False)
            if not isinstance(forward_reserved, bool):
                self.fail(f"{key}.forward_reserved",
                          f"expected true or false, got {_what(forward_reserved)}")
            try:
                vlans = port_vlan(**{k: p[k] for k in VLAN_KEYS if k in p})
            except Invalid as e:
                self.fail(f"{key}.{e.key}", str(e))
            ports.append(PortSection(name=name, flood_limit=flood_limit,
                                     forward_reserved=forward_reserved, **vlans._asdict()))
        return ports

    def mirrors(self, lst, ports) -> list:
        """[[mirror]]: name, source (ports), direction (in | out | both, default both),
        output (a port); checked as mirror.add checks them (taps.check_mirror)."""
        if not isinstance(lst, list):
            self.fail("mirror", f"expected an array of tables ([[mirror]]), got {_what(lst)}")
        names = {p.name for p in ports}
        mirrors = {}
        for i, m in enumerate(lst):
            key = f"mirror[{i}]"
            self.table(m, key, ["name", "source", "direction", "output"])
            for k in ("name", "source", "output"):
                if k not in m:
                    self.fail(f"{key}.{k}", "missing")
            try:
                name = vocab_name(m["name"], "name")
            except Invalid as e:
                self.fail(f"{key}.name", str(e))
            try:
                sources = tuple(port_names(m["source"]))
            except Invalid as e:
                self.fail(f"{key}.source", str(e))
            direction = self.string(m, key, "direction", "both", DIRECTIONS)
            output = self.string(m, key, "output", None)
            for k, ps in (("source", sources), ("output", (output,))):
                for p in ps:
                    if p not in names:
                        self.fail(f"{key}.{k}", f"{p} is not one of the [[port]] names")
            mirror = Mirror(name, sources, direction, output)
            try:
                check_mirror(mirror, mirrors)
            except Invalid as e:
                self.fail(f"{key}.{e.key}", str(e))
            mirrors[name] = mirror
        return list(mirrors.values())

    def static(self, lst, ports) -> tuple:
        """[[fdb.static]]: a station's MAC on one of the [[port]]s, in a VLAN it carries
        (left out: its untagged VLAN), each (mac, vlan) once."""
        if not isinstance(lst, list):
            self.fail("fdb.static", f"expected an array of tables ([[fdb.static]]), "
                                    f"got {_what(lst)}")
        by_name = {p.name: p for p in ports}
        out = []
        for i, e in enumerate(lst):
            key = f"fdb.static[{i}]"
            self.table(e, key, ["mac", "port", "vlan"])
            for k in ("mac", "port"):
                if k not in e:
                    self.fail(f"{key}.{k}", "missing")
            try:
                mac = station(e["mac"])
            except Invalid as err:
                self.fail(f"{key}.mac", str(err))
            port = self.string(e, key, "port", None)
            if port not in by_name:
                self.fail(f"{key}.port", f"not one of the [[port]] names "
                                         f"({', '.join(by_name) or 'none'}): {port!r}")
            vlan = e.get("vlan")
            if vlan is not None:
                vlan = self.integer(e, key, "vlan", None, 1, VLAN_ID_MAX)
            try:
                vlan = by_name[port].vlans.static_vlan(port, vlan)
            except Invalid as err:
                self.fail(f"{key}.vlan", str(err))
            if any(o.mac == mac and o.vlan == vlan for o in out):
                self.fail(f"{key}.mac", f"{mac} in vlan {vlan} is listed twice")
            out.append(StaticEntry(mac=mac, port=port, vlan=vlan))
        return tuple(out)
