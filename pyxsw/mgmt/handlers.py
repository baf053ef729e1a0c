"""The RPC methods, one function each.

A method is `fn(conn, **arguments)`: `conn` is the client's connection (`conn.switch` is
the Switch; `conn.subscribe()` and `conn.after_reply(fn)` are for the two methods that act
on the connection or the server).  Each function checks its arguments' values before the
switch sees them and raises RpcError for anything wrong (`pyxsw ctl` applies the same checks,
these functions, to its arguments before it sends them); `bind_args` has already checked
their names against the function's signature, so an unknown or missing argument never
reaches it.  Methods marked `blocking` run in the loop's executor: they can take a second
(attaching XDP, creating sockets) and the loop must keep serving other clients meanwhile.
"""
from __future__ import annotations

import errno
import inspect
import logging
import re

from . import EXISTS, FAILED, INVALID_PARAMS, NOT_FOUND, RpcError

log = logging.getLogger("pyxsw.mgmt")

METHODS = {}
MODES = ("poll", "interrupt", "adaptive")
MAX_AGING = 2**32 - 1                   # the core keeps seconds in 32 bits
_MAC = re.compile(r"[0-9a-fA-F]{2}([:-])[0-9a-fA-F]{2}(\1[0-9a-fA-F]{2}){4}")


def method(name, *, blocking=False):
    """Register fn as the RPC method `name`."""
    def register(fn):
        sig = inspect.signature(fn)
        params = list(sig.parameters.values())[1:]          # [0] is conn
        fn.rpc_required = {p.name for p in params if p.default is p.empty}
        fn.rpc_allowed = {p.name for p in params}
        fn.rpc_blocking = blocking
        METHODS[name] = fn
        return fn
    return register


def bind_args(fn, params):
    """The named arguments of a request's `params` for fn; invalid_params if they don't fit.
    A None for an optional argument means the same as leaving it out."""
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
    return {k: v for k, v in args.items() if v is not None or k in fn.rpc_required}


def show(value, limit=60):
    """A value for an error message, cut short: a request may carry a megabyte of it."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


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


# ---------------------------------------------------------------------------- checks

def _bad(message):
    return RpcError(INVALID_PARAMS, message)


def _int(value, what, lo, hi):
    # bool is an int to Python but never a number to a user
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise _bad(f"{what} must be an integer {lo}..{hi}, got {show(value)}")
    return value


def _vlan(value):
    return _int(value, "vlan", 0, 4095)


def _mac(value):
    """'aa:bb:cc:dd:ee:ff' (or with '-') in the switch's form: lower case, colons."""
    if not isinstance(value, str) or not _MAC.fullmatch(value):
        raise _bad(f"not a MAC address (aa:bb:cc:dd:ee:ff): {show(value)}")
    return value.lower().replace("-", ":")


def _station(value):
    """A MAC a static entry can hold: a station's, never a group (multicast) address."""
    mac = _mac(value)
    if int(mac[:2], 16) & 1:
        raise _bad(f"{mac} is a multicast address: it cannot be a station")
    return mac


def _ifname(value, what="interface name"):
    """What the kernel accepts as a name (dev_valid_name): 1..15 bytes, not '.' or '..',
    no '/', ':' or white space."""
    if not isinstance(value, str):
        raise _bad(f"{what} must be a string, got {show(value)}")
    if (not 1 <= len(value.encode("utf-8", "surrogatepass")) <= 15 or value in (".", "..")
            or any(c in "/:" or c.isspace() or c == "\0" for c in value)):
        raise _bad(f"not a valid {what} (1..15 characters, no '/', ':' or spaces): {show(value)}")
    return value


def _port(sw, value, what="port"):
    """A name that must be one of the switch's ports."""
    name = _ifname(value, what)
    if name not in sw.ports:
        raise RpcError(NOT_FOUND, f"{name}: not a switch port")
    return name


def _port_info(port):
    return {"name": port.name, "index": port.index, "up": bool(port.up), "state": port.state,
            "reason": port.reason}


# ---------------------------------------------------------------------------- methods

@method("status")
def status(conn):
    st = conn.switch.status()
    # The switch knows the events its workers could not queue ("lost"); the server those
    # that subscribers fell too far behind to be sent, summed over subscribers.
    st.setdefault("events", {}).update(conn.server.event_stats())
    st["clients"] = conn.server.client_stats()
    return st


@method("port.list")
def port_list(conn):
    return [_port_info(p) for p in sorted(conn.switch.ports.values(), key=lambda p: p.index)]


@method("port.add", blocking=True)
def port_add(conn, name):
    name = _ifname(name)
    port = conn.switch.ports.get(name)
    if port is not None and port.state not in ("gone", "degraded"):     # those: attach anew
        raise RpcError(EXISTS, f"{name}: already a switch port")
    port = conn.switch.add_port(name)
    return dict(_port_info(port), warnings=list(port.warnings))


@method("port.del", blocking=True)
def port_del(conn, name):
    name = _port(conn.switch, name, "interface name")
    conn.switch.del_port(name)
    return {"name": name}


@method("port.stats")
def port_stats(conn, name=None):
    if name is not None:
        name = _port(conn.switch, name, "interface name")
    return conn.switch.port_stats(name)


@method("fdb.list", blocking=True)     # 100,000 entries take a while to build
def fdb_list(conn, port=None, vlan=None):
    if port is not None:
        port = _port(conn.switch, port)
    if vlan is not None:
        vlan = _vlan(vlan)
    return conn.switch.fdb_list(port=port, vlan=vlan)


@method("fdb.add")
def fdb_add(conn, mac, port, vlan=0):
    mac, vlan = _station(mac), _vlan(vlan)
    port = _port(conn.switch, port)
    new = conn.switch.fdb_add(mac, port, vlan=vlan)
    return {"mac": mac, "vlan": vlan, "port": port, "static": True, "new": bool(new)}


@method("fdb.del")
def fdb_del(conn, mac, vlan=0):
    mac, vlan = _mac(mac), _vlan(vlan)
    if not conn.switch.fdb_del(mac, vlan=vlan):
        raise RpcError(NOT_FOUND, f"no FDB entry for {mac} on vlan {vlan}")
    return {"mac": mac, "vlan": vlan}


@method("fdb.flush")
def fdb_flush(conn, port=None):
    if port is not None:
        port = _port(conn.switch, port)
    return {"flushed": conn.switch.fdb_flush(port=port)}


@method("mode.set")
def mode_set(conn, mode):
    if mode not in MODES:
        raise _bad(f"mode must be one of {', '.join(MODES)}, got {show(mode)}")
    conn.switch.set_mode(mode)
    return {"mode": mode}


@method("aging.set")
def aging_set(conn, seconds):
    conn.switch.set_aging(_int(seconds, "seconds", 0, MAX_AGING))
    return {"aging": seconds}


@method("shutdown")
def shutdown(conn):
    # Stop only once the reply is on its way: the caller learns that it worked.
    conn.after_reply(conn.server.request_stop)
    return {"stopping": True}


@method("events.subscribe")
def events_subscribe(conn):
    conn.subscribe()
    return {"subscribed": True}
