"""802.1Q on real ports (root, namespaces): VLANs isolate, trunks carry tags, and tags are
pushed and popped byte for byte.  The hosts speak hand-built tagged frames (no 802.1Q module
here); nettool's capture puts back a tag the receiving stack moved into metadata."""
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pyxsw.vocab import PortVlan
from helpers import (BCAST, capture, eth_frame, mac_bytes, make_config, ping, running, send,
                     tcp_transfer, udp_sink, wait_until)

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


TESTS = str(Path(__file__).resolve().parent)


def blast(lab, i, frames, rounds=1):
    """Send `frames` round-robin from host i, `rounds` times, from one raw socket (waiting
    when the device queue is full, never dropping): interleaved as listed."""
    code = ("import socket, sys; sys.path.insert(0, %r); from nettool import send_waiting\n"
            "frames = [bytes.fromhex(h) for h in %r]\n"
            "with socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0) as s:\n"
            "    s.bind(('eth0', 0))\n"
            "    for _ in range(%d):\n"
            "        for f in frames:\n"
            "            send_waiting(s, f)\n") % (TESTS, [f.hex() for f in frames], rounds)
    r = lab.run(i, sys.executable, "-c", code, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr


def at_rest_exact(sw):
    """Every frame a port's XDP program redirected was taken or counted by the kernel, and
    every UMEM frame is back in place: nothing in flight, nothing lost."""
    def balanced():
        return all(s["rx_packets"] + s["xdp"]["rx_dropped"] + s["xdp"]["rx_ring_full"]
                   == s["xdp"]["prog_redirected"] for s in sw.port_stats().values())
    assert wait_until(balanced), sw.port_stats()
    acc = sw.wait_quiet()
    placed = acc["pool"] + acc["caches"] + acc["fill"] + acc["rx"] + acc["tx"] + acc["completion"]
    assert acc["in_flight"] == 0 and placed == acc["frames"] == sw.config.switch.frames, acc
    assert sw.status()["frames"]["placed"] == acc["frames"]


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


def test_tcp_within_a_vlan_never_reaches_another(lab_factory, tmp_path):
    lab = lab_factory(hosts=3)
    h = lab.hosts
    with running(conf(lab, tmp_path, **{"0": {"vlan": 10}, "1": {"vlan": 10},
                                        "2": {"vlan": 20}})) as sw:
        nbytes = 8 * 1024 * 1024
        with capture(lab, 2, 8) as at2:
            sent, got = tcp_transfer(lab, 1, 0, nbytes, seed=13)
        assert len(sent) == 64 and sent == got
        assert sw.port_stats(lab.ports[0])[lab.ports[0]]["rx_bytes"] > nbytes
        # not one frame of the transfer (nor its ARP) reached the VLAN 20 port
        assert not ours(at2, h[0].mac) and not ours(at2, h[1].mac)
        assert sw.port_stats(lab.ports[2])[lab.ports[2]]["tx_packets"] == 0
        assert not ping(lab, 2, 0, count=2) and not ping(lab, 2, 1, count=2)
        assert not ping(lab, 0, 2, count=2)
        fdb = {(e["mac"], e["vlan"]): e["port"] for e in sw.fdb_list()}
        assert fdb[(h[0].mac, 10)] == lab.ports[0] and fdb[(h[1].mac, 10)] == lab.ports[1]
        assert fdb[(h[2].mac, 20)] == lab.ports[2]
        assert {v for _, v in fdb} == {10, 20}
        at_rest_exact(sw)


def test_port_set_moves_a_host_between_vlans_under_traffic(lab_factory, tmp_path):
    lab = lab_factory(hosts=4)
    h = lab.hosts
    mover = 1
    with running(conf(lab, tmp_path, **{"0": {"vlan": 10}, "1": {"vlan": 10},
                                        "2": {"vlan": 20}, "3": {"vlan": 20}})) as sw:
        assert ping(lab, 0, mover) and ping(lab, 2, 3)
        # traffic both ways through the change: a fast ping stream from the mover to h0 and
        # UDP flows from h0 to the mover
        pinger = lab.popen(mover, "ping", "-n", "-c", "400", "-i", "0.005", "-W", "1",
                           h[0].ip, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            with udp_sink(lab, mover, seconds=4) as sink:
                flows = lab.popen(0, sys.executable, str(Path(TESTS) / "nettool.py"),
                                  "udp-flows", "--dst", h[mover].ip, "--flows", "8",
                                  "--count", "20000", "--interval", "0.0001",
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                time.sleep(0.7)
                assert pinger.poll() is None and flows.poll() is None   # still under way
                before = sw.port_stats()
                n = set_vlan(sw, lab.ports[mover], "access", 20)
                # the mover's entry in VLAN 10 is flushed, and stays gone under traffic
                gone_now = [e for e in sw.fdb_list() if e["vlan"] == 10 and
                            (e["port"] == lab.ports[mover] or e["mac"] == h[mover].mac)]
                flows_out, _ = flows.communicate(timeout=60)
            ping_out, _ = pinger.communicate(timeout=60)
        finally:
            for p in (pinger, flows):
                if p.poll() is None:
                    p.kill()
                    p.communicate()
        assert n >= 1 and not gone_now
        assert flows.returncode == 0 and json.loads(flows_out)["sent"] == 20000
        # traffic went through before the change, and not all of it after
        assert before[lab.ports[0]]["tx_packets"] > 50 and before[lab.ports[mover]]["tx_packets"] > 50
        assert 0 < sink["received"] < 20000
        replies = int(ping_out.split(" received")[0].split(", ")[-1])
        assert 0 < replies < 400, ping_out
        time.sleep(0.3)
        assert not [e for e in sw.fdb_list() if e["vlan"] == 10 and
                    (e["port"] == lab.ports[mover] or e["mac"] == h[mover].mac)]
        # it reaches VLAN 20's hosts, no longer VLAN 10's
        assert ping(lab, mover, 2) and ping(lab, mover, 3) and ping(lab, 3, mover)
        assert not ping(lab, mover, 0, count=2) and not ping(lab, 0, mover, count=2)
        fdb = {(e["mac"], e["vlan"]): e["port"] for e in sw.fdb_list()}
        assert fdb[(h[mover].mac, 20)] == lab.ports[mover]
        assert sw.port_stats()[lab.ports[mover]]["vlan_dropped"] == 0
        at_rest_exact(sw)


def test_storm_control_and_learning_limit_count_per_port_across_vlans(lab_factory, tmp_path):
    lab = lab_factory(hosts=3)
    h = lab.hosts
    trunk = {"vlan_mode": "trunk", "allowed": [10, 20], "native": 0, "flood_limit": 200}
    cfg = make_config(lab.ports, tmp_path, port_limit=50,
                      port_extra={lab.ports[0]: trunk, lab.ports[1]: {"vlan": 10},
                                  lab.ports[2]: {"vlan": 20}})
    with running(cfg) as sw:
        # storm control: broadcasts in VLANs 10 and 20, interleaved, from the trunk; 200
        # floods/s for the port, not per VLAN (counted per 100 ms window: 20 a window)
        storm = [tagged(BCAST, h[0].mac, v, payload=b"storm %d" % v) for v in (10, 20)]
        rounds = 6000
        t0 = time.monotonic()
        with capture(lab, 1, 4) as at1, capture(lab, 2, 4) as at2:
            blast(lab, 0, storm, rounds)
        elapsed = time.monotonic() - t0
        st = sw.port_stats()[lab.ports[0]]
        got10 = sum(1 for f in ours(at1, h[0].mac) if f == untag(storm[0]))
        got20 = sum(1 for f in ours(at2, h[0].mac) if f == untag(storm[1]))
        assert got10 > 0 and got20 > 0, (got10, got20)
        # both VLANs' floods share the port's 20 a window: per-VLAN limits would pass twice
        assert got10 + got20 <= 20 * (elapsed * 10 + 2), (got10, got20, elapsed)
        assert st["flooded"] + st["flood_limited"] >= 2 * rounds - 5, st
        assert st["flood_limited"] > rounds
        assert st["flooded"] == got10 + got20, (st["flooded"], got10, got20)
        assert sw.port_stats()[lab.ports[1]]["flood_limited"] == 0

        # the learning limit: h0 (the storm's source) is learned in both VLANs; then 40
        # stations behind the trunk in VLAN 10 and the same 40 in VLAN 20: 82 entries wanted,
        # 50 (the port's limit, across VLANs) learned, the rest refused and counted
        assert sorted(e["vlan"] for e in sw.fdb_list(port=lab.ports[0])) == [10, 20]
        stations = ["02:77:00:00:00:%02x" % k for k in range(40)]
        learned_before = sw.status()["fdb"]["learn_limited"]
        blast(lab, 0, [tagged(h[1].mac, m, 10) for m in stations])
        time.sleep(0.2)
        blast(lab, 0, [tagged(h[2].mac, m, 20) for m in stations])
        time.sleep(0.3)
        on_trunk = [(e["mac"], e["vlan"]) for e in sw.fdb_list() if e["port"] == lab.ports[0]]
        assert len(on_trunk) == 50, on_trunk
        assert sorted(v for _, v in on_trunk) == [10] * 41 + [20] * 9
        assert {m for m, v in on_trunk if v == 10} == set(stations) | {h[0].mac}
        assert sw.status()["fdb"]["learn_limited"] - learned_before >= 32
        # other ports still learn, in their VLANs
        send(lab, 1, eth_frame(BCAST, h[1].mac))
        send(lab, 2, eth_frame(BCAST, h[2].mac))
        assert wait_until(lambda: {(e["mac"], e["vlan"]) for e in sw.fdb_list()}
                          >= {(h[1].mac, 10), (h[2].mac, 20)})
        at_rest_exact(sw)
