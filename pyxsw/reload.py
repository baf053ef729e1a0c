"""Reload: what it takes to make a running switch what its configuration file now says.

    p = plan(switch.running_config(), Config.load(path))    # pure: two Configs in
    p.changes       # [Change]: what can change at run time, in the order to apply it
    p.restart       # ["switch.cores", ...]: keys that differ but need a restart
    result = apply(switch, p)                                 # {"changed", "failed", "restart"}

The comparison is with the running state (Switch.running_config(): the ports, modes and
static entries as they are now, run-time changes included), not with the file the switch
started from: after a reload the switch is what the file says, except what needs a restart.
Learned FDB entries are never touched.

One function per section, listed in SECTIONS: `section(old, new)` returns the section's
Changes, and Restart(key) for each key that differs but cannot change at run time.  A new
section is one more such function in SECTIONS, a method of the switch for each change it
applies, and its part of Switch.running_config().

A Change names a method of the switch and its arguments (`call`), so that a plan is data:
it can be compared in tests without a switch.  Changes run in `stage` order (removals, then
additions and changes, then switch-wide settings, then static entries, which need their
ports), each on its own: one that fails is reported and the others go on.
"""
from __future__ import annotations

import dataclasses
import logging
from typing import NamedTuple

log = logging.getLogger("pyxsw")

# stages
REMOVE, PORTS, SETTINGS, ENTRIES = 0, 1, 2, 3


class Change(NamedTuple):
    stage: int
    text: str                   # what changes, in words: "port s2: added"
    call: tuple                 # (switch method name, positional args, keyword args)


class Restart(NamedTuple):
    key: str                    # "switch.cores"


class Plan(NamedTuple):
    changes: list
    restart: list

    def __bool__(self):
        return bool(self.changes or self.restart)


def _differs(section, old, new, keys):
    """Restart(section.key) for each of `keys` whose value differs."""
    return [Restart(f"{section}.{k}") for k in keys if getattr(old, k) != getattr(new, k)]


# ---------------------------------------------------------------------------- sections

def switch_section(old, new):
    o, n = old.switch, new.switch
    out = _differs("switch", o, n, ("name", "cores", "batch", "xdp_mode", "zero_copy",
                                    "fastpath", "frame_size", "frames", "ring_size",
                                    "max_frame", "busy_poll_tuning"))
    if o.mode != n.mode:
        out.append(Change(SETTINGS, f"mode: {o.mode} -> {n.mode}", ("set_mode", (n.mode,), {})))
    return out


def fdb_section(old, new):
    o, n = old.fdb, new.fdb
    out = _differs("fdb", o, n, ("capacity", "port_limit"))
    if o.aging != n.aging:
        out.append(Change(SETTINGS, f"aging: {o.aging} -> {n.aging} s",
                          ("set_aging", (n.aging,), {})))
    return out


def management_section(old, new):
    o, n = old.management, new.management
    return _differs("management", o, n, [f.name for f in dataclasses.fields(o)])


def ports_section(old, new):
    was = {p.name: p for p in old.ports}
    now = {p.name: p for p in new.ports}
    out = []
    for name in was:
        if name not in now:
            out.append(Change(REMOVE, f"port {name}: removed", ("del_port", (name,), {})))
    for name, p in now.items():
        q = was.get(name)
        if q is None:
            out.append(Change(PORTS, f"port {name}: added ({p.vlans.describe()})",
                              ("add_port", (name,), {"vlans": p.vlans,
                                                     "flood_limit": p.flood_limit,
                                                     "forward_reserved": p.forward_reserved})))
            continue
        if q.vlans != p.vlans:
            out.append(Change(PORTS, f"port {name}: {q.vlans.describe()} -> {p.vlans.describe()}",
                              ("port_set", (name, p.vlans), {})))
        if (q.flood_limit, q.forward_reserved) != (p.flood_limit, p.forward_reserved):
            said = [f"{k} {getattr(q, k)} -> {getattr(p, k)}"
                    for k in ("flood_limit", "forward_reserved") if getattr(q, k) != getattr(p, k)]
            out.append(Change(PORTS, f"port {name}: {', '.join(said)}",
                              ("port_options", (name,), {"flood_limit": p.flood_limit,
                                                         "forward_reserved": p.forward_reserved})))
    return out


def static_section(old, new):
    """[[fdb.static]]: by (mac, vlan); an entry on another port is changed (fdb_add moves
    it).  One on a port being removed goes with its port; one in a VLAN its port does not
    carry stays (what `ctl save` wrote has no such entry)."""
    was = {(e.mac, e.vlan): e for e in old.fdb.static}
    now = {(e.mac, e.vlan): e for e in new.fdb.static}
    gone_ports = {p.name for p in old.ports} - {p.name for p in new.ports}
    # an entry its port's VLANs in the file leave out cannot be in the file (`pyxsw run`
    # refuses it; port.set keeps it, waiting for its VLAN): not a removal
    unsaid = {(e.mac, e.vlan) for p in new.ports for e in old.fdb.static
              if e.port == p.name and not p.vlans.carries(e.vlan)}
    out = []
    for k, e in was.items():
        if k not in now and e.port not in gone_ports and k not in unsaid:
            out.append(Change(REMOVE, f"static {e.mac} vlan {e.vlan}: removed (was on {e.port})",
                              ("fdb_del", (e.mac,), {"vlan": e.vlan})))
    for k, e in now.items():
        o = was.get(k)
        if o is None or o.port != e.port:
            what = f"added on {e.port}" if o is None else f"moved from {o.port} to {e.port}"
            out.append(Change(ENTRIES, f"static {e.mac} vlan {e.vlan}: {what}",
                              ("fdb_add", (e.mac, e.port), {"vlan": e.vlan})))
    return out


def mirror_section(old, new):
    """[[mirror]], by name: one that changed is removed, then added as the file says (after
    the ports it names)."""
    known = {p.name for p in old.ports} | {p.name for p in new.ports}

    def said(m):
        """As a file can say it: a source that is neither a port nor in the file (removed
        at run time; `ctl save` leaves it out) stays, and is no difference."""
        return m and m._replace(sources=tuple(p for p in m.sources if p in known))
    was = {m.name: m for m in old.mirrors}
    now = {m.name: m for m in new.mirrors}
    out = []
    for name, m in was.items():
        if said(now.get(name)) != said(m):
            out.append(Change(REMOVE, f"mirror {name}: removed", ("mirror_del", (name,), {})))
    for name, m in now.items():
        if said(was.get(name)) != said(m):
            out.append(Change(ENTRIES, f"mirror {name}: {','.join(m.sources)} ({m.direction}) "
                                       f"to {m.output}",
                              ("mirror_add", (name, m.sources, m.direction, m.output), {})))
    return out


def log_section(old, new):
    o, n = old.log, new.log
    if o == n:
        return []
    return [Change(SETTINGS, f"log: {o.level} {o.format} -> {n.level} {n.format}",
                   ("set_log", (n.level, n.format), {}))]


def metrics_section(old, new):
    o, n = old.metrics.listen, new.metrics.listen
    if o == n:
        return []
    return [Change(SETTINGS, f"metrics: {o or 'off'} -> {n or 'off'}",
                   ("set_metrics_listen", (n,), {}))]


# The sections, in the order their changes are listed (each change runs in its stage).
SECTIONS = [switch_section, fdb_section, management_section, log_section, metrics_section,
            ports_section, static_section, mirror_section]


# ---------------------------------------------------------------------------- plan, apply

def plan(old, new) -> Plan:
    """What differs between two Configs: `old` the running state, `new` the file."""
    changes, restart = [], []
    for section in SECTIONS:
        for item in section(old, new):
            (restart if isinstance(item, Restart) else changes).append(item)
    changes.sort(key=lambda c: c.stage)         # stable: each section's order kept
    return Plan(changes, [r.key for r in restart])


def _reason(e):
    if isinstance(e, OSError) and e.strerror:
        return e.strerror if e.strerror.startswith(str(e.filename or "")) or not e.filename \
            else f"{e.filename}: {e.strerror}"
    if isinstance(e, KeyError) and e.args:
        return str(e.args[0])
    return str(e) or type(e).__name__


def apply(switch, p: Plan, source="reload") -> dict:
    """Apply a plan to a switch, each change on its own; a log line per change.  Returns
    {"changed": [text], "failed": [{"change", "error"}], "restart": [key]}."""
    done, failed = [], []
    for c in p.changes:
        name, args, kwargs = c.call
        try:
            getattr(switch, name)(*args, **kwargs)
        except Exception as e:          # one change failing must not stop the others
            failed.append({"change": c.text, "error": _reason(e)})
            log.error("%s: %s: failed: %s", source, c.text, _reason(e))
        else:
            done.append(c.text)
            log.warning("%s: %s", source, c.text)
    if p.restart:
        log.warning("%s: needs a restart: %s (left as it is)", source, ", ".join(p.restart))
    return {"changed": done, "failed": failed, "restart": list(p.restart)}


def summary(result) -> str:
    """A reload's result in one line, for the log."""
    parts = [f"{len(result['changed'])} change(s)" if result["changed"] else "nothing changed"]
    if result["failed"]:
        parts.append(f"{len(result['failed'])} failed ("
                     + "; ".join(f"{f['change']}: {f['error']}" for f in result["failed"]) + ")")
    if result["restart"]:
        parts.append(f"needs a restart: {', '.join(result['restart'])}")
    return "; ".join(parts)
