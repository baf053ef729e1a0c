"""802.1Q on real ports (root, namespaces): VLANs isolate, trunks carry tags, and tags are
pushed and popped byte for byte.  The hosts speak hand-built tagged frames (no 802.1Q module
here); nettool's capture puts back a tag the receiving stack moved into metadata."""
import time

import pytest

from pyxsw.vocab import PortVlan
from helpers import (BCAST, capture, eth_frame, mac_bytes, make_config, ping, running, send)

pytestmark = pytest.mark.system
ET = 0x88B5


def set_vlan(sw, port, mode, vlan=0, allowed=None, native=0):
    """A running port's membership, as `port.set` changes it; how many entries went."""
    return sw.port_set(port, PortVlan(mode, vlan, tuple(allowed) if allowed else None, native))


def conf(lab, tmp_path, **by_port):
    """A switch on the lab's ports with [[port]] VLAN keys: by_port = {i: {key: value}}."""
    return make_config(lab.ports, tmp_path,
                       port_extra={lab.ports[int(i)]: keys for i, keys in by_port.items()})


def tagged(dst, src, vid, pcp=0, dei=0, payload=b"vlan test"):
    f = eth_frame(dst, src, payload, ethertype=0x8100, pad=False)
    tci = ((pcp << 13) | (dei << 12) | vid).to_bytes(2, "big")
    return (f[:14] + tci + ET.to_bytes(2, "big") + payload).ljust(64, b"\0")


def untag(frame):
    return (frame[:12] + frame[16:]).ljust(60, b"\0")


def ours(frames, src):
    return [f for f in frames if f[6:12] == mac_bytes(src)]


def settle(sw):
    time.sleep(0.05)        # workers pick the new membership up at their next pass


def test_access_vlans_isolate(lab_factory, tmp_path):
    lab = lab_factory(hosts=4)
    h = lab.hosts
    with running(conf(lab, tmp_path, **{str(i): {"vlan": v}
                                        for i, v in enumerate((10, 10, 20, 20))})) as sw:
        assert ping(lab, 0, 1) and ping(lab, 2, 3)
        assert not ping(lab, 0, 2, count=2) and not ping(lab, 1, 3, count=2)
        # broadcast, multicast and unknown unicast of VLAN 10 never reach VLAN 20's ports
        kinds = [BCAST, "01:00:5e:00:00:fb", "02:ee:ee:ee:ee:01"]
        with capture(lab, 2, 2) as at2, capture(lab, 3, 2) as at3, capture(lab, 1, 2) as at1:
            for dst in kinds:
                send(lab, 0, eth_frame(dst, h[0].mac, b"v10"), 20)
        assert not ours(at2, h[0].mac) and not ours(at3, h[0].mac)
        assert len([f for f in ours(at1, h[0].mac) if f[14:17] == b"v10"]) == 3 * 20
        st = sw.port_stats()
        assert all(st[p]["vlan_dropped"] == 0 for p in lab.ports)


def test_trunk_to_access_and_back(lab_factory, tmp_path):
    lab = lab_factory(hosts=4)
    h = lab.hosts
    trunk = {"vlan_mode": "trunk", "native": 0}
    with running(conf(lab, tmp_path, **{"0": dict(trunk, allowed=[10, 20]), "1": {"vlan": 10},
                                        "2": {"vlan": 20}, "3": dict(trunk, allowed=[20])})) as sw:
        # tagged VID 10 in on the trunk: out untagged on VLAN 10's access port only
        f10 = tagged(BCAST, h[0].mac, 10, pcp=3)
        with capture(lab, 1, 2) as at1, capture(lab, 2, 2) as at2, capture(lab, 3, 2) as at3:
            send(lab, 0, f10)
        assert ours(at1, h[0].mac) == [untag(f10)]
        assert not ours(at2, h[0].mac) and not ours(at3, h[0].mac)
        # untagged in on VLAN 20's access port: tagged (PCP 0) on both trunks, untouched else
        u = eth_frame(BCAST, h[2].mac, b"from 20")
        with capture(lab, 0, 2) as at0, capture(lab, 3, 2) as at3, capture(lab, 1, 2) as at1:
            send(lab, 2, u)
        want = u[:12] + b"\x81\x00\x00\x14" + u[12:]
        assert ours(at0, h[2].mac) == [want] and ours(at3, h[2].mac) == [want]
        assert not ours(at1, h[2].mac)
        # trunk to trunk keeps PCP and DEI; a VLAN the trunk does not allow is dropped
        f20 = tagged(BCAST, h[0].mac, 20, pcp=5, dei=1)
        with capture(lab, 3, 2) as at3, capture(lab, 2, 2) as at2:
            send(lab, 0, f20)
            send(lab, 0, tagged(BCAST, h[0].mac, 30))
        assert ours(at3, h[0].mac) == [f20]
        assert ours(at2, h[0].mac) == [untag(f20)]
        assert sw.port_stats()[lab.ports[0]]["vlan_dropped"] == 1


def test_unicast_across_trunk_and_access_with_the_same_mac_in_two_vlans(lab_factory, tmp_path):
    lab = lab_factory(hosts=3)
    h = lab.hosts
    with running(make_config(lab.ports, tmp_path)) as sw:
        set_vlan(sw, lab.ports[0], "trunk", allowed=[10, 20])
        set_vlan(sw, lab.ports[1], "access", 10)
        set_vlan(sw, lab.ports[2], "access", 20)
        settle(sw)
        m = "02:aa:00:00:00:01"             # one station, both VLANs, behind the trunk
        send(lab, 0, tagged(BCAST, m, 10))
        send(lab, 0, tagged(BCAST, m, 20))
        send(lab, 1, eth_frame(BCAST, h[1].mac))
        send(lab, 2, eth_frame(BCAST, h[2].mac))
        time.sleep(0.2)
        got = {(e["mac"], e["vlan"]): e["port"] for e in sw.fdb_list()}
        assert got[(m, 10)] == got[(m, 20)] == lab.ports[0]
        # each VLAN's host reaches m, and the frame leaves the trunk tagged with that VLAN
        with capture(lab, 0, 2) as at0:
            send(lab, 1, eth_frame(m, h[1].mac, b"to m in 10"))
            send(lab, 2, eth_frame(m, h[2].mac, b"to m in 20"))
        vids = sorted(int.from_bytes(f[14:16], "big") & 0xfff for f in at0
                      if f[:6] == mac_bytes(m))
        assert vids == [10, 20]
        # and m's replies reach only the host of their VLAN, untagged
        with capture(lab, 1, 2) as at1, capture(lab, 2, 2) as at2:
            send(lab, 0, tagged(h[1].mac, m, 10, payload=b"reply 10"))
        assert [f for f in at1 if f[6:12] == mac_bytes(m)] == \
            [untag(tagged(h[1].mac, m, 10, payload=b"reply 10"))]
        assert not [f for f in at2 if f[6:12] == mac_bytes(m)]


def test_membership_changes_flush_and_leave_no_frame_behind(lab_factory, tmp_path):
    lab = lab_factory(hosts=3)
    h = lab.hosts
    with running(make_config(lab.ports, tmp_path)) as sw:
        for i in range(3):
            set_vlan(sw, lab.ports[i], "access", 10)
        settle(sw)
        assert ping(lab, 0, 1) and ping(lab, 1, 2)
        assert set_vlan(sw, lab.ports[2], "access", 20) >= 1      # h2's entry in VLAN 10
        assert not [e for e in sw.fdb_list() if e["port"] == lab.ports[2] and e["vlan"] == 10]
        settle(sw)
        assert not ping(lab, 1, 2, count=2) and ping(lab, 0, 1)
        send(lab, 0, tagged(BCAST, h[0].mac, 10), 50)      # tagged on access: dropped
        time.sleep(0.2)
        assert sw.port_stats()[lab.ports[0]]["vlan_dropped"] == 50
        acc = sw.wait_quiet()
        placed = acc["pool"] + acc["caches"] + acc["fill"] + acc["rx"] + acc["tx"] + acc["completion"]
        assert placed == acc["frames"] == sw.config.switch.frames, acc
