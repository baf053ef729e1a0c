"""The FDB and the forwarding decision of the Cython core, without root: a Datapath with no
UMEM and "virtual" ports runs the very functions the workers run, frame by frame."""
import random

import pytest
from hypothesis import given, settings, strategies as st

from pyxsw import _core
from pyxsw._core import (FORWARD_FILTER, FORWARD_FLOOD, FORWARD_RESERVED, FORWARD_RUNT, Datapath,
                         mac_to_int)

BCAST = "ff:ff:ff:ff:ff:ff"
V = 1       # untagged frames on a port without VLAN settings: access VLAN 1


def frame(dst, src, payload=b"\x08\x00" + bytes(50)):
    return bytes.fromhex(dst.replace(":", "")) + bytes.fromhex(src.replace(":", "")) + payload


def core(n_ports=3, **kw):
    c = Datapath(umem=False, **kw)
    ports = [c.add_virtual_port(f"v{i}") for i in range(n_ports)]
    return c, ports


def entries(c):
    return {(mac, vlan): (port, static) for mac, vlan, port, age, static, _ in c.fdb_list()}


def test_mac_conversion_round_trips():
    for mac in ["00:00:00:00:00:00", "02:00:00:aa:00:01", "ff:ff:ff:ff:ff:ff"]:
        assert _core.int_to_mac(mac_to_int(mac)) == mac
    for bad in ["", "02:00:00:aa:00", "02:00:00:aa:00:zz", "0200.00aa.0001"]:
        with pytest.raises(ValueError):
            mac_to_int(bad)


def test_learns_source_and_forwards_known_unicast():
    c, (a, b, d) = core()
    A, B = "02:00:00:00:00:0a", "02:00:00:00:00:0b"
    assert c.decide(frame(B, A), a) == FORWARD_FLOOD        # B unknown yet
    assert entries(c) == {(A, V): (a, False)}
    assert c.decide(frame(A, B), b) == a                    # A learned on port a
    assert c.decide(frame(B, A), a) == b
    assert entries(c) == {(A, V): (a, False), (B, V): (b, False)}


def test_broadcast_multicast_flood_and_multicast_source_not_learned():
    c, (a, b, d) = core()
    assert c.decide(frame(BCAST, "02:00:00:00:00:01"), a) == FORWARD_FLOOD
    assert c.decide(frame("01:00:5e:00:00:01", "02:00:00:00:00:01"), a) == FORWARD_FLOOD
    assert c.decide(frame("02:00:00:00:00:01", "03:00:00:00:00:09"), b) == a
    assert ("03:00:00:00:00:09", V) not in entries(c)


def test_reserved_link_local_groups_are_not_forwarded_unless_the_port_says_so():
    """01:80:c2:00:00:00 to 0f (STP, PAUSE, LACP, 802.1X, LLDP...) were flooded like any
    multicast; IEEE bridges, and the Linux bridge and Open vSwitch by default, keep them on
    their link.  A port with forward_reserved floods them, but never PAUSE (:01)."""
    c = Datapath(umem=False)
    plain, fwd, other = (c.add_virtual_port("v0"), c.add_virtual_port("v1", forward_reserved=True),
                         c.add_virtual_port("v2"))
    src = "02:00:00:00:00:01"
    for last in range(16):
        group = f"01:80:c2:00:00:{last:02x}"
        assert c.decide(frame(group, src), plain) == FORWARD_RESERVED, group
        assert c.decide(frame(group, src), fwd) == (FORWARD_RESERVED if last == 1 else FORWARD_FLOOD)
    # the neighbours of the range are ordinary multicast
    for group in ["01:80:c2:00:00:10", "01:80:c2:00:01:00", "01:80:c3:00:00:00", "01:81:c2:00:00:00",
                  "01:00:5e:00:00:01", "03:80:c2:00:00:00", "01:80:c2:00:00:1e"]:
        assert c.decide(frame(group, src), plain) == FORWARD_FLOOD, group
    assert (src, V) in entries(c)                           # the sender is still learned
    assert c.port_info(fwd)["forward_reserved"] and not c.port_info(plain)["forward_reserved"]


def test_runt_and_same_port():
    c, (a, b, d) = core()
    for n in range(14):
        assert c.decide(bytes(n), a) == FORWARD_RUNT
    assert c.fdb_list() == []                               # a runt teaches nothing
    c.decide(frame(BCAST, "02:00:00:00:00:01"), a)
    c.decide(frame(BCAST, "02:00:00:00:00:02"), a)
    assert c.decide(frame("02:00:00:00:00:01", "02:00:00:00:00:02"), a) == FORWARD_FILTER


def test_move_and_static_entries():
    c, (a, b, d) = core()
    M = "02:00:00:00:00:0c"
    c.decide(frame(BCAST, M), a)
    c.decide(frame(BCAST, M), b)                            # the host moved
    assert entries(c)[(M, V)] == (b, False)
    assert c.fdb_counters()["moved"] == 1
    S = "02:00:00:00:00:5a"
    assert c.fdb_add(S, V, d) is True
    c.decide(frame(BCAST, S), a)                            # spoofed elsewhere: static stays
    assert entries(c)[(S, V)] == (d, True)
    assert c.decide(frame(S, M), b) == d
    with pytest.raises(ValueError):
        c.fdb_add(BCAST, V, d)
    assert c.fdb_del(S, V) is True and c.fdb_del(S, V) is False


def test_down_port_is_not_a_destination():
    c, (a, b, d) = core()
    c.decide(frame(BCAST, "02:00:00:00:00:0b"), b)
    c.set_port_up(b, False)
    assert c.decide(frame("02:00:00:00:00:0b", "02:00:00:00:00:0a"), a) == FORWARD_FLOOD
    c.set_port_up(b, True)
    assert c.decide(frame("02:00:00:00:00:0b", "02:00:00:00:00:0a"), a) == b


def test_capacity_and_port_limit_bound_learning_but_not_static():
    c, (a, b, d) = core(capacity=10, port_limit=4)
    c.fdb_add("02:00:00:00:01:00", V, d)
    for i in range(50):
        c.decide(frame(BCAST, f"02:00:00:00:00:{i:02x}"), a)
    assert sum(1 for e in entries(c).values() if e[0] == a) == 4
    assert c.fdb_counters()["learn_limited"] == 46
    for i in range(50):
        c.decide(frame(BCAST, f"02:00:00:00:02:{i:02x}"), b)
    cnt = c.fdb_counters()
    assert cnt["entries"] == 9 and cnt["learn_limited"] == 46 + 46
    c.set_aging(0)
    c.decide(frame(BCAST, "02:00:00:00:03:00"), d)          # per-port: d has room
    assert cnt["entries"] + 1 == c.fdb_counters()["entries"] == 10
    c.decide(frame(BCAST, "02:00:00:00:03:01"), d)          # capacity reached
    assert c.fdb_counters()["learn_full"] == 1
    assert entries(c)[("02:00:00:00:01:00", V)] == (d, True)


def test_aging_removes_learned_keeps_static():
    c, (a, b, d) = core(aging=300)
    old = (_core.clock() - 1000) % 2**32
    c.decide(frame(BCAST, "02:00:00:00:00:01"), a, now=old)  # last seen long ago
    c.decide(frame(BCAST, "02:00:00:00:00:02"), a)           # just now
    c.fdb_add("02:00:00:00:00:03", V, b)
    assert c.fdb_maintain() == [("02:00:00:00:00:01", V, a)]
    assert set(entries(c)) == {("02:00:00:00:00:02", V), ("02:00:00:00:00:03", V)}
    # the aged MAC is unknown again: frames to it flood
    assert c.decide(frame("02:00:00:00:00:01", "02:00:00:00:00:02"), a) == FORWARD_FLOOD


def test_tombstones_trigger_a_rebuild_that_keeps_entries():
    c, (a, b, d) = core(capacity=64, aging=300)
    old = (_core.clock() - 1000) % 2**32
    for round_ in range(20):
        for i in range(40):
            c.decide(frame(BCAST, f"02:00:00:00:{round_:02x}:{i:02x}"), a, now=old)
        c.decide(frame(BCAST, "02:00:00:00:ff:01"), b)
        c.fdb_maintain()
        cnt = c.fdb_counters()
        assert cnt["tombstones"] * 4 <= cnt["slots"]
        assert entries(c) == {("02:00:00:00:ff:01", V): (b, False)}


def test_flush_by_port():
    c, (a, b, d) = core()
    c.decide(frame(BCAST, "02:00:00:00:00:01"), a)
    c.decide(frame(BCAST, "02:00:00:00:00:02"), b)
    c.fdb_add("02:00:00:00:00:03", V, a)
    assert c.fdb_flush(a) == 1
    assert set(entries(c)) == {("02:00:00:00:00:02", V), ("02:00:00:00:00:03", V)}
    assert c.fdb_flush(-1, True) == 2 and c.fdb_list() == []


# ---------------------------------------------------------------------------- model check

class Model:
    """The forwarding decision in plain Python, from the design's rules."""

    def __init__(self, ports, capacity, port_limit):
        self.up = {p: True for p in ports}
        self.fdb = {}                       # mac -> [port, static]
        self.capacity = capacity
        self.port_limit = port_limit

    def learned_on(self, p):
        return sum(1 for port, static in self.fdb.values() if port == p and not static)

    def learn(self, src, p):
        e = self.fdb.get(src)
        if e is not None:
            if e[1] or e[0] == p:
                return
            if self.port_limit and self.learned_on(p) >= self.port_limit:
                return
            e[0] = p
            return
        if len(self.fdb) >= self.capacity:
            return
        if self.port_limit and self.learned_on(p) >= self.port_limit:
            return
        self.fdb[src] = [p, False]

    def decide(self, data, p):
        if len(data) < 14:
            return FORWARD_RUNT
        dst, src = data[:6], data[6:12]
        if not src[0] & 1:
            self.learn(src, p)
        if dst[0] & 1:
            return FORWARD_FLOOD
        e = self.fdb.get(dst)
        if e is None or not self.up[e[0]]:
            return FORWARD_FLOOD
        return FORWARD_FILTER if e[0] == p else e[0]


MACS = [bytes([2, 0, 0, 0, 0, i]) for i in range(12)] + [b"\xff" * 6, bytes([1, 0, 0x5e, 0, 0, 1]),
                                                          bytes([3, 0, 0, 0, 0, 1])]
step = st.one_of(
    st.tuples(st.just("frame"), st.sampled_from(MACS), st.sampled_from(MACS),
              st.integers(0, 3), st.integers(0, 70)),
    st.tuples(st.just("static"), st.sampled_from(MACS[:12]), st.integers(0, 3)),
    st.tuples(st.just("updown"), st.integers(0, 3), st.booleans()),
    st.tuples(st.just("del"), st.sampled_from(MACS[:12])),
)


@settings(max_examples=300, deadline=None)
@given(steps=st.lists(step, max_size=120), capacity=st.integers(1, 16), port_limit=st.integers(0, 5))
def test_core_matches_model(steps, capacity, port_limit):
    c = Datapath(umem=False, capacity=capacity, port_limit=port_limit)
    ports = [c.add_virtual_port(f"v{i}") for i in range(4)]
    m = Model(ports, capacity, port_limit)
    for s in steps:
        if s[0] == "frame":
            _, dst, src, p, ln = s
            data = (dst + src + bytes(60))[:ln]
            assert c.decide(data, p) == m.decide(data, p), s
        elif s[0] == "static":
            _, mac, p = s
            macs = mac.hex(":")
            full = len(m.fdb) >= capacity and mac not in m.fdb
            if full:
                with pytest.raises(OSError):
                    c.fdb_add(macs, V, p)
            else:
                c.fdb_add(macs, V, p)
                m.fdb[mac] = [p, True]
        elif s[0] == "updown":
            _, p, up = s
            c.set_port_up(p, up)
            m.up[p] = up
        else:
            _, mac = s
            assert c.fdb_del(mac.hex(":"), V) == (m.fdb.pop(mac, None) is not None)
    got = {(mac, vlan): (port, static) for mac, vlan, port, age, static, _ in c.fdb_list()}
    want = {(k.hex(":"), V): (v[0], v[1]) for k, v in m.fdb.items()}
    assert got == want


def test_many_random_frames_against_model():
    rng = random.Random(1234)
    c = Datapath(umem=False, capacity=200, port_limit=0)
    ports = [c.add_virtual_port(f"v{i}") for i in range(5)]
    m = Model(ports, 200, 0)
    macs = [bytes([rng.choice([0, 2, 1, 3])]) + rng.randbytes(5) for _ in range(300)]
    for _ in range(20000):
        dst, src = rng.choice(macs), rng.choice(macs)
        p = rng.choice(ports)
        data = dst + src + bytes(rng.choice([0, 2, 46]))
        assert c.decide(data, p) == m.decide(data, p)


def test_learn_and_move_events_are_queued_for_the_control_thread():
    c, (a, b, d) = core()
    M = "02:00:00:00:00:0c"
    c.decide(frame(BCAST, M), a)
    c.decide(frame(BCAST, M), a)                            # known: no event
    c.decide(frame(BCAST, M), b)
    assert c.drain_events() == [("learn", M, V, a, a), ("move", M, V, b, a)]
    assert c.drain_events() == []
    for i in range(1100):                                   # more than the ring holds
        c.decide(frame(BCAST, f"02:00:00:00:{i >> 8:02x}:{i & 255:02x}"), a)
    assert len(c.drain_events()) == 1024
    assert c.worker_stats()[0]["events_lost"] == 1100 - 1024
