"""802.1Q in the core, on virtual ports (no privileges): classification, learning and lookup
per VLAN, membership changes.  The frames themselves (tags pushed and popped) are checked by
tests/test_vlan.py through real ports."""
import pytest

from pyxsw._core import FORWARD_FILTER, FORWARD_FLOOD, FORWARD_VLAN, Datapath

A, B = "02:00:00:00:00:0a", "02:00:00:00:00:0b"
BCAST = "ff:ff:ff:ff:ff:ff"


def mac(m):
    return bytes.fromhex(m.replace(":", ""))


def frame(dst, src, vid=None, pcp=0):
    tag = b"" if vid is None else b"\x81\x00" + ((pcp << 13) | vid).to_bytes(2, "big")
    return mac(dst) + mac(src) + tag + b"\x88\xb5" + bytes(46)


def entries(c):
    return {(m, v): p for m, v, p, age, static, _ in c.fdb_list()}


@pytest.fixture
def dp():
    c = Datapath(umem=False)
    yield c, [c.add_virtual_port(f"v{i}") for i in range(4)]
    c.close()


def test_a_port_without_vlan_settings_is_access_vlan_1(dp):
    c, (a, b, _, _) = dp
    assert c.port_vlan(a) == {"vlan_mode": "access", "vlan": 1, "allowed": None, "native": 0}
    assert c.decide(frame(BCAST, A), a) == FORWARD_FLOOD and c.last_vlan == 1
    assert entries(c) == {(A, 1): a}
    # a tagged frame on an access port is dropped, priority-tagged (VID 0) is the access VLAN's
    assert c.decide(frame(BCAST, B, vid=5), b) == FORWARD_VLAN
    assert c.decide(frame(BCAST, B, vid=0, pcp=5), b) == FORWARD_FLOOD and c.last_vlan == 1
    assert c.decide(frame(A, B), b) == a


def test_learning_and_lookup_are_per_vlan(dp):
    c, (a, b, t, _) = dp
    c.port_set_vlan(a, "access", 10)
    c.port_set_vlan(b, "access", 20)
    c.port_set_vlan(t, "trunk", allowed=[10, 20])
    # the same MAC in two VLANs: two entries, on two ports
    c.decide(frame(BCAST, A), a)
    c.decide(frame(BCAST, A, vid=20), t)
    assert entries(c) == {(A, 10): a, (A, 20): t}
    assert c.decide(frame(A, B, vid=10), t) == a       # VLAN 10's A
    assert c.decide(frame(A, B), b) == t                # VLAN 20's A, reached over the trunk
    # a move is per VLAN: A moving in VLAN 20 leaves VLAN 10's entry alone
    c.decide(frame(BCAST, A), b)
    assert entries(c)[(A, 10)] == a and entries(c)[(A, 20)] == b
    assert c.decide(frame(A, B), b) == FORWARD_FILTER


def test_trunk_classification(dp):
    c, (a, _, t, _) = dp
    c.port_set_vlan(t, "trunk", allowed=[10, 20], native=10)
    assert c.decide(frame(BCAST, A, vid=20), t) == FORWARD_FLOOD and c.last_vlan == 20
    assert c.decide(frame(BCAST, A, vid=30), t) == FORWARD_VLAN        # not allowed
    assert c.decide(frame(BCAST, A), t) == FORWARD_FLOOD and c.last_vlan == 10   # native
    c.port_set_vlan(t, "trunk", allowed=[10, 20], native=0)
    assert c.decide(frame(BCAST, A), t) == FORWARD_VLAN                # no native
    assert c.decide(frame(BCAST, A, vid=0), t) == FORWARD_VLAN         # priority-tagged too
    c.port_set_vlan(t, "trunk")                                        # every VLAN
    assert c.port_vlan(t)["allowed"] is None
    assert c.decide(frame(BCAST, A, vid=4094), t) == FORWARD_FLOOD and c.last_vlan == 4094
    # 802.1ad outer tags are payload of the port's VLAN
    qinq = mac(BCAST) + mac(B) + b"\x88\xa8\x00\x0a" + b"\x81\x00\x00\x14" + bytes(46)
    assert c.decide(qinq, a) == FORWARD_FLOOD and c.last_vlan == 1


def test_a_unicast_destination_must_carry_the_vlan(dp):
    c, (a, b, _, _) = dp
    c.port_set_vlan(a, "access", 10)
    c.decide(frame(BCAST, A), a)                        # A learned on a, in VLAN 10
    c.port_set_vlan(a, "access", 20)                    # a leaves VLAN 10; the entry lingers
    c.port_set_vlan(b, "access", 10)
    assert c.decide(frame(A, B), b) == FORWARD_FLOOD    # never sent where VLAN 10 is not
    assert c.fdb_flush_not_carried(a) == 1 and (A, 10) not in entries(c)


def test_flush_by_vlan(dp):
    c, (a, _, t, _) = dp
    c.port_set_vlan(t, "trunk", allowed=[10, 20])
    for v in (10, 20):
        c.decide(frame(BCAST, A, vid=v), t)
    c.fdb_add(B, 10, t)
    assert c.fdb_flush(vlan=10) == 1 and set(entries(c)) == {(A, 20), (B, 10)}
    assert c.fdb_flush(vlan=10, static=True) == 1 and set(entries(c)) == {(A, 20)}


@pytest.mark.parametrize("args, err", [
    (("access", 0), "1..4094"), (("access", 4095), "1..4094"),
    (("trunk", 0, [10, 4095]), "1..4094"), (("trunk", 0, [10], 20), "native VLAN 20"),
    (("access", 10, [10]), "trunk's"), (("hybrid",), "vlan_mode"),
])
def test_bad_memberships_are_refused_and_change_nothing(dp, args, err):
    c, (a, _, _, _) = dp
    with pytest.raises(ValueError, match=err):
        c.port_set_vlan(a, *args)
    assert c.port_vlan(a)["vlan"] == 1


def test_port_carries(dp):
    c, (a, _, t, _) = dp
    c.port_set_vlan(t, "trunk", allowed=[7], native=7)
    assert c.port_carries(t, 7) and not c.port_carries(t, 8) and not c.port_carries(t, 4095)
    assert c.port_carries(a, 1) and not c.port_carries(a, 7)
