"""802.1Q frames byte for byte through real ports (root, namespaces): the pad after a pop,
priority-tagged frames, and a pushed tag on known unicast."""
import time

import pytest

from helpers import BCAST, capture, eth_frame, mac_bytes, make_config, running, send

pytestmark = pytest.mark.system
ET = b"\x88\xb5"


def tag(tci):
    return b"\x81\x00" + tci.to_bytes(2, "big")


def conf(lab, tmp_path, **by_port):
    return make_config(lab.ports, tmp_path,
                       port_extra={lab.ports[int(i)]: keys for i, keys in by_port.items()})


def from_(frames, src):
    return [f for f in frames if f[6:12] == mac_bytes(src)]


TRUNK = {"vlan_mode": "trunk", "allowed": [10], "native": 0}


def test_a_short_tagged_frame_popped_is_padded_with_zeros_in_place_and_in_copies(
        lab_factory, tmp_path):
    lab = lab_factory(hosts=3)
    h = lab.hosts
    with running(conf(lab, tmp_path, **{"0": TRUNK, "1": {"vlan": 10}, "2": {"vlan": 10}})):
        # 40 bytes on the wire: popped to 36, which must leave as 60 with zeros after it
        f = mac_bytes(BCAST) + mac_bytes(h[0].mac) + tag(10) + ET + b"\xa5" * 22
        assert len(f) == 40
        with capture(lab, 1, 2) as at1, capture(lab, 2, 2) as at2:
            send(lab, 0, f)
        want = (f[:12] + f[16:]).ljust(60, b"\0")
        # one port got the original popped in place, the other a copy built untagged
        assert from_(at1, h[0].mac) == [want] and from_(at2, h[0].mac) == [want]


def test_priority_tagged_frames_keep_their_priority_where_they_leave_tagged(
        lab_factory, tmp_path):
    lab = lab_factory(hosts=3)
    h = lab.hosts
    trunk = dict(TRUNK, allowed=[10, 20])
    with running(conf(lab, tmp_path, **{"0": {"vlan": 10}, "1": trunk, "2": {"vlan": 10}})):
        # VID 0, PCP 6, DEI 1 from an access host of VLAN 10
        f = eth_frame(BCAST, h[0].mac, b"prio", ethertype=0x8100, pad=False)[:14] + \
            ((6 << 13) | (1 << 12)).to_bytes(2, "big") + ET + b"prio" + bytes(40)
        with capture(lab, 1, 2) as at1, capture(lab, 2, 2) as at2:
            send(lab, 0, f)
        assert from_(at1, h[0].mac) == [f[:14] + ((6 << 13) | (1 << 12) | 10).to_bytes(2, "big")
                                         + f[16:]]
        assert from_(at2, h[0].mac) == [(f[:12] + f[16:]).ljust(60, b"\0")]


def test_known_unicast_gets_its_tag_pushed_in_place(lab_factory, tmp_path):
    lab = lab_factory(hosts=2)
    h = lab.hosts
    with running(conf(lab, tmp_path, **{"0": {"vlan": 10}, "1": TRUNK})) as sw:
        m = "02:bb:00:00:00:01"                     # a station behind the trunk
        send(lab, 1, mac_bytes(BCAST) + mac_bytes(m) + tag(10) + ET + bytes(46))
        send(lab, 0, eth_frame(BCAST, h[0].mac))
        time.sleep(0.2)
        assert {(e["mac"], e["vlan"]) for e in sw.fdb_list()} >= {(m, 10), (h[0].mac, 10)}
        u = eth_frame(m, h[0].mac, b"unicast push")
        flooded = sw.port_stats()[lab.ports[0]]["flooded"]
        with capture(lab, 1, 2) as at1:
            send(lab, 0, u)
        assert from_(at1, h[0].mac) == [u[:12] + tag(10) + u[12:]]
        assert sw.port_stats()[lab.ports[0]]["flooded"] == flooded     # unicast, not a flood
