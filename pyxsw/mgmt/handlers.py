"""The RPC methods, one function each, and their table, METHODS: the one list of what the
management socket serves.  The `methods` RPC describes it, `pyxsw ctl` builds its arguments
from it, and tests/test_vocab.py checks the Python client's helpers against it.

A method is `fn(conn, **arguments)`, registered with @method(name); the first line of its
docstring is its help.  `conn` is the client's connection: `conn.switch` is the switch (what
it offers the methods is pyxsw.mgmt.api.SwitchAPI), `conn.subscribe()` and
`conn.after_reply(fn)` are for the two methods that act on the connection or the server.
Each parameter is annotated with its kind (pyxsw.vocab): bind_args checks the arguments'
names against the signature and their values with their kinds, in the signature's order,
before the function runs, so it is given values in the switch's form only (`pyxsw ctl`
applies the same kinds to its words before it sends them).  What only the switch can answer
(is it one of its ports?) the function checks.  Methods marked `blocking` run in the loop's
executor: they can take a second (attaching XDP, creating sockets) and the loop must keep
serving other clients meanwhile.  A method may return an awaitable (capture.start): the
loop awaits it for the reply.
"""
import collections
import errno
import inspect
import logging
import time

from ..config import ConfigError, to_toml
from . import EXISTS, FAILED, INVALID_PARAMS, NOT_FOUND, RpcError, busy_share
from ..vocab import (AGING, COUNT, DIRECTION, IFNAME, MAC, MODE, NAME, NATIVE, PORT, PORTS,
                     SNAPLEN, STATION, VLAN, VLAN_ID, VLAN_LIST, VLAN_MODE, Invalid, Kind,
                     port_vlan, show)
from ..taps import DEFAULT_SNAPLEN

log = logging.getLogger("pyxsw.mgmt")

METHODS = {}                            # name -> function, in the order they are declared below

# A parameter of a method: its kind checks it; an optional one (required False) has a
# default, None meaning "not given".
Param = collections.namedtuple("Param", "name kind required default")


def method(name, *, blocking=False, changes=False):
    """Register fn as the RPC method `name`: every parameter after `conn` annotated with
    its kind, and a docstring whose first line says what it does.  `changes`: it changes the
    switch (the server logs each call with the client's uid and emits a "mgmt" event)."""
    def register(fn):
        sig = inspect.signature(fn)
        params = []
        for p in list(sig.parameters.values())[1:]:         # [0] is conn
            # (p.kind is inspect's: a plain parameter, not *args or keyword-only)
            if not isinstance(p.annotation, Kind) or p.kind is not p.POSITIONAL_OR_KEYWORD:
                raise TypeError(f"{name}: parameter {p.name} needs a kind (pyxsw.vocab) "
                                "as its annotation")
            required = p.default is p.empty
            params.append(Param(p.name, p.annotation, required, None if required else p.default))
        if not (fn.__doc__ or "").strip():
            raise TypeError(f"{name}: a method needs a docstring (its help)")
        if name in METHODS:
            raise ValueError(f"{name}: registered twice")
        fn.rpc_name = name
        fn.rpc_params = tuple(params)
        fn.rpc_required = {p.name for p in params if p.required}
        fn.rpc_allowed = {p.name for p in params}
        fn.rpc_blocking = blocking
        fn.rpc_changes = changes
        fn.rpc_help = fn.__doc__.strip().splitlines()[0].strip()
        METHODS[name] = fn
        return fn
    return register


def describe(fn):
    """A method as the `methods` RPC lists it."""
    params = []
    for p in fn.rpc_params:
        d = {"name": p.name, "kind": p.kind.name, "required": p.required}
        if not p.required:
            d["default"] = p.default
        if p.kind.choices:
            d["choices"] = list(p.kind.choices)
        params.append(d)
    return {"name": fn.rpc_name, "params": params, "help": fn.rpc_help}


def bind_args(fn, params):
    """The named arguments of a request's `params` for fn, checked by their kinds;
    invalid_params if they don't fit.  A None for an optional argument means the same as
    leaving it out."""
    if params == []:
        args = {}
    elif isinstance(params, list) and len(params) == 1 and isinstance(params[0], dict):
        args = params[0]
    else:
        raise RpcError(INVALID_PARAMS, "params must be [] or [{named arguments}]")
    if not all(isinstance(k, str) for k in args):
        raise RpcError(INVALID_PARAMS, "argument names must be strings")
    unknown = sorted(set(args) - fn.rpc_allowed)
    if unknown:
        raise RpcError(INVALID_PARAMS, f"unknown argument(s): {_names(unknown)}"
                       + _expects(fn))
    missing = sorted(fn.rpc_required - set(args))
    if missing:
        raise RpcError(INVALID_PARAMS, f"missing argument(s): {_names(missing)}"
                       + _expects(fn))
    given = {}
    for p in fn.rpc_params:
        if p.name in args and (args[p.name] is not None or p.required):
            try:
                given[p.name] = p.kind(args[p.name])
            except Invalid as e:
                raise RpcError(INVALID_PARAMS, str(e)) from None
    return given


def _names(names):
    return show(", ".join(names), 200)[1:-1] if names else ""


def _expects(fn):
    if not fn.rpc_allowed:
        return " (this method takes none)"
    return f" (takes {', '.join(sorted(fn.rpc_allowed))})"


def to_rpc_error(exc):
    """The error reply for an exception the switch raised.  The switch says 'no such thing'
    with KeyError or ENODEV, and anything else is a failure whose text is the message."""
    if isinstance(exc, RpcError):
        return exc
    if isinstance(exc, KeyError):
        what = exc.args[0] if exc.args and isinstance(exc.args[0], str) else str(exc)
        return RpcError(NOT_FOUND, what)
    if isinstance(exc, OSError) and exc.errno in (errno.ENODEV, errno.ENOENT, errno.ENXIO):
        return RpcError(NOT_FOUND, exc.strerror or str(exc))
    if isinstance(exc, (OSError, ValueError)):
        return RpcError(FAILED, str(exc))
    log.exception("management request failed", exc_info=exc)
    return RpcError(FAILED, f"internal error: {type(exc).__name__}: {exc}")


# ---------------------------------------------------------------------------- helpers

def _port(conn, name):
    """`name` (checked by its kind already), which must be one of the switch's ports."""
    if name not in conn.switch.ports:
        raise RpcError(NOT_FOUND, f"{name}: not a switch port")
    return name


def _port_info(port):
    return {"name": port.name, "index": port.index, "up": bool(port.up), "state": port.state,
            "reason": port.reason, **port.vlans.view(), "changed": port.changed,
            "fastpath": port.fastpath}


def _vlans(**keys):
    """A port's VLAN settings from port.set's or port.add's keys, checked together (the
    rules of a [[port]] section: vocab.port_vlan)."""
    try:
        return port_vlan(**keys)
    except Invalid as e:
        raise RpcError(INVALID_PARAMS, str(e)) from None


# ---------------------------------------------------------------------------- methods

@method("status")
def status(conn):
    """The switch at a glance.

    Name, version, pid, config file, uptime, mode, workers, ports, FDB, fast path, frames,
    events, clients.
    """
    st = conn.switch.status()
    # The switch knows the events its workers could not queue ("lost"); the server those
    # that subscribers fell too far behind to be sent, summed over subscribers.
    st.setdefault("events", {}).update(conn.server.event_stats())
    st["clients"] = conn.server.client_stats()
    return st


@method("port.list")
def port_list(conn):
    """The ports: state (and why not up), VLANs, fast-path target or why not."""
    return [_port_info(p) for p in sorted(conn.switch.ports.values(), key=lambda p: p.index)]


@method("port.add", blocking=True, changes=True)
def port_add(conn, name: IFNAME, vlan_mode: VLAN_MODE = None, vlan: VLAN_ID = None,
             allowed: VLAN_LIST = None, native: NATIVE = None):
    """Make an interface a port (or attach a gone or degraded one anew).

    The VLAN keys are those of a [[port]] section; none given: access on VLAN 1, or for a
    port attached anew, the settings it had.
    """
    keys = {"vlan_mode": vlan_mode, "vlan": vlan, "allowed": allowed, "native": native}
    vlans = None if all(v is None for v in keys.values()) else _vlans(**keys)
    port = conn.switch.ports.get(name)
    if port is not None and port.state not in ("gone", "degraded"):     # those: attach anew
        raise RpcError(EXISTS, f"{name}: already a switch port")
    port = conn.switch.add_port(name, vlans)
    return dict(_port_info(port), warnings=list(port.warnings))


@method("port.del", blocking=True, changes=True)
def port_del(conn, name: IFNAME):
    """Remove a port; its interface is left as it was before."""
    conn.switch.del_port(_port(conn, name))
    return {"name": name}


@method("port.stats")
def port_stats(conn, name: IFNAME = None):
    """Port counters: every port's, or one's."""
    if name is not None:
        _port(conn, name)
    return conn.switch.port_stats(name)


@method("fdb.list", blocking=True)     # 100,000 entries take a while to build
def fdb_list(conn, port: PORT = None, vlan: VLAN = None):
    """List FDB entries: all, or one port's and/or one VLAN's."""
    if port is not None:
        _port(conn, port)
    return conn.switch.fdb_list(port=port, vlan=vlan)


@method("fdb.add", changes=True)
def fdb_add(conn, mac: STATION, port: PORT, vlan: VLAN_ID = None):
    """Add a static FDB entry (or make a learned one static).

    vlan left out: the port's untagged VLAN (an access port's, a trunk's native); refused
    when the port does not carry it.
    """
    try:
        vlan = conn.switch.ports[_port(conn, port)].vlans.static_vlan(port, vlan)
    except Invalid as e:
        raise RpcError(INVALID_PARAMS, str(e)) from None
    new = conn.switch.fdb_add(mac, port, vlan=vlan)
    return {"mac": mac, "vlan": vlan, "port": port, "static": True, "new": bool(new)}


@method("fdb.del", blocking=True, changes=True)  # without a vlan: a look through the table
def fdb_del(conn, mac: MAC, vlan: VLAN = None):
    """Remove an FDB entry, static or learned (vlan left out: in every VLAN)."""
    n = conn.switch.fdb_del(mac, vlan=vlan)
    if not n:
        raise RpcError(NOT_FOUND, f"no FDB entry for {mac}"
                       + ("" if vlan is None else f" on vlan {vlan}"))
    return {"mac": mac, "vlan": vlan, "removed": int(n)}


@method("fdb.flush", changes=True)
def fdb_flush(conn, port: PORT = None, vlan: VLAN = None):
    """Remove learned FDB entries: all, a port's and/or a VLAN's (not static)."""
    if port is not None:
        _port(conn, port)
    return {"flushed": conn.switch.fdb_flush(port=port, vlan=vlan)}


@method("mode.set", changes=True)
def mode_set(conn, mode: MODE):
    """Change the workers' mode."""
    conn.switch.set_mode(mode)
    return {"mode": mode}


@method("aging.set", changes=True)
def aging_set(conn, seconds: AGING):
    """Set the FDB aging time in seconds (0: never)."""
    conn.switch.set_aging(seconds)
    return {"aging": seconds}


@method("shutdown", changes=True)
def shutdown(conn):
    """Stop the switch (once this reply is sent)."""
    # Stop only once the reply is on its way: the caller learns that it worked.
    conn.after_reply(conn.server.request_stop)
    return {"stopping": True}


@method("events.subscribe")
def events_subscribe(conn):
    """Receive FDB and port events on this connection from now on."""
    conn.subscribe()
    return {"subscribed": True}


@method("methods")
def methods(conn):
    """The methods this switch serves, their parameters and help."""
    return [describe(fn) for fn in METHODS.values()]


@method("worker.stats")
def worker_stats(conn):
    """Per-worker counters and busy share (the passes that found frames).

    Loops, idle loops, wake-ups, kicks, learning, frame movements, mode; busy is the share
    of the worker's passes since it started that found frames (pyxsw.mgmt.busy_share).
    """
    # Since the start, so that the switch keeps no state per caller: a share over a span is
    # busy_share(later, since=earlier) of two replies (`pyxsw ctl workers --interval`).
    return [dict(w, busy=busy_share(w)) for w in conn.switch.worker_stats()]


@method("port.set", blocking=True, changes=True)     # waits for the workers before it flushes
def port_set(conn, port: PORT, vlan_mode: VLAN_MODE = None, vlan: VLAN_ID = None,
             allowed: VLAN_LIST = None, native: NATIVE = None):
    """Set a port's VLANs; flushes its entries in VLANs it no longer carries.

    The keys are those of a [[port]] section, with its defaults for the keys left out (no
    vlan_mode: access); the reply has the port's settings and how many entries went.
    """
    keys = {"vlan_mode": vlan_mode, "vlan": vlan, "allowed": allowed, "native": native}
    if all(v is None for v in keys.values()):
        raise RpcError(INVALID_PARAMS, "nothing to set: give vlan_mode, vlan, allowed or native")
    vlans = _vlans(**keys)
    flushed = conn.switch.port_set(_port(conn, port), vlans)
    return {"port": port, **vlans.view(), "flushed": int(flushed)}


@method("vlan.list", blocking=True)    # counts the FDB's entries
def vlan_list(conn, vlan: VLAN = None):
    """The VLANs in use, their member ports (untagged, tagged) and FDB sizes.

    Listed: every port's access VLAN, a trunk's allowed and native VLANs when it names
    them, and every VLAN with FDB entries; a trunk that carries every VLAN is a member of
    each one listed.  With vlan: that one, whatever its use.
    """
    ports = sorted(conn.switch.ports.values(), key=lambda p: p.index)
    sizes = collections.Counter(e["vlan"] for e in conn.switch.fdb_list(vlan=vlan))
    if vlan is not None:
        vlans = {vlan}
    else:
        vlans = set(sizes)
        for p in ports:
            vlans.update(v for v in (p.vlans.vlan, p.vlans.native, *(p.vlans.allowed or ())) if v)
    out = []
    for v in sorted(vlans):
        members = [p for p in ports if p.vlans.carries(v)]
        out.append({"vlan": v,
                    "untagged": [p.name for p in members if not p.vlans.tagged(v)],
                    "tagged": [p.name for p in members if p.vlans.tagged(v)],
                    "fdb": sizes.get(v, 0)})
    return out


@method("capture.start", changes=True)   # takes its traffic off the fast path
def capture_start(conn, port: PORT, direction: DIRECTION = "both",
                  snaplen: SNAPLEN = DEFAULT_SNAPLEN, count: COUNT = 0):
    """Stream a port's frames to this connection ("capture" notifications).

    direction: in (what it receives), out (what the switch sends out of it) or both;
    snaplen: bytes kept of each frame; count: frames, then it ends ("capture.end"; 0: no
    limit).  Until then, capture.stop or the connection's end; one per connection.  The
    port's captured traffic takes the AF_XDP path while it runs (not the fast path).
    """
    _port(conn, port)
    return conn.start_capture(port, direction, snaplen, count)


@method("capture.stop")
def capture_stop(conn):
    """Stop this connection's capture: frames captured, and frames lost."""
    return conn.stop_capture()


@method("mirror.add", blocking=True, changes=True)
def mirror_add(conn, name: NAME, source: PORTS, output: PORT, direction: DIRECTION = "both"):
    """Mirror what the source ports receive and/or send to an output port.

    The output forwards nothing while it mirrors (no floods, no unicast, what it receives
    is dropped); a mirrored port's traffic takes the AF_XDP path (not the fast path).
    """
    for p in (*source, output):
        _port(conn, p)
    if name in {m["name"] for m in conn.switch.mirror_list()}:
        raise RpcError(EXISTS, f"mirror {name} exists already")
    try:
        return conn.switch.mirror_add(name, source, direction, output)
    except Invalid as e:
        raise RpcError(INVALID_PARAMS, str(e)) from None


@method("mirror.del", blocking=True, changes=True)
def mirror_del(conn, name: NAME):
    """Remove a mirror; its output forwards again (unless another's output)."""
    m = conn.switch.mirror_del(name)
    m["output_forwards"] = m["output"] not in {x["output"] for x in conn.switch.mirror_list()}
    return m


@method("mirror.list", blocking=True)    # the switch's lock: a port being added holds it
def mirror_list(conn):
    """The mirrors: sources, direction, output, ports missing."""
    return conn.switch.mirror_list()


@method("config.reload", blocking=True, changes=True)  # ports added, removed: seconds
def config_reload(conn):
    """Read the config file again and apply what can change at run time.

    Ports added, removed or changed, mode, aging, static FDB entries; the reply lists
    what changed, what failed (the others still apply) and the keys that need a restart.
    A file with an error changes nothing: the error is the one `pyxsw run` gives.
    """
    try:
        return conn.switch.reload()
    except ConfigError as e:
        raise RpcError(FAILED, str(e)) from None


@method("config.save", blocking=True)      # reads the FDB for the static entries
def config_save(conn):
    """The running configuration as TOML that `pyxsw run` accepts.

    The switch section as started with the current mode, the current aging, the ports
    with their current settings and the static FDB entries as they are now.
    """
    cfg = conn.switch.running_config(for_file=True)
    section = cfg.switch                    # [switch] of the Config (not conn.switch)
    header = (f"# pyxsw: the running configuration of switch {section.name}, saved "
              f"{time.strftime('%Y-%m-%d %H:%M:%S %z')}\n\n")
    return {"toml": to_toml(cfg, header), "config": cfg.to_dict()}
