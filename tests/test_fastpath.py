"""System tests of the in-kernel fast path (issue 14, `[switch] fastpath = "xdp"`): a real
switch over veth ports, hosts in network namespaces (root).

What the XDP program holds is read here independently of pyxsw's code: the program id from
`ip -j link`, its maps from `bpftool`, and the kernel copy of the FDB (fdb_map) decoded from
`bpftool map dump` (key: vlan << 48 | the MAC's 6 bytes read little-endian, 8 bytes
little-endian; value: u32 port index, u32 second last seen).

Each test builds its own lab with names unique to the run (the `prefix` fixture) and tears
it down whatever happens; switches and child processes are stopped in `finally`."""
import json
import os
import signal
import struct
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from helpers import (BCAST, capture, eth_frame, finish, link_flags, make_config, ping, running,
                     send, tcp_transfer, udp_flows, udp_sink, wait_until)
from pyxsw import vocab
from pyxsw.client import Client
from pyxsw.mgmt.ctl import ctl_main
from pyxsw.mgmt.server import Server

pytestmark = pytest.mark.system
ROOT = Path(__file__).resolve().parent.parent
FAST = {"fastpath": "xdp"}


# ---------------------------------------------------------------------------- the kernel's view

def bpftool(*args):
    """`bpftool -j ARGS`: (exit code, parsed output or None)."""
    r = subprocess.run(["bpftool", "-j", *map(str, args)], capture_output=True, text=True)
    if r.returncode or not r.stdout.strip():
        return r.returncode or 1, None
    return 0, json.loads(r.stdout)


def xdp_prog_id(ifname):
    """The id of the XDP program attached to ifname (this namespace), 0 when none."""
    out = subprocess.run(["ip", "-j", "link", "show", "dev", ifname],
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out)[0].get("xdp", {}).get("prog", {}).get("id", 0)


def prog_maps(prog_id):
    """{map name: map id} of a loaded program."""
    rc, prog = bpftool("prog", "show", "id", prog_id)
    assert rc == 0, f"bpftool prog show id {prog_id} failed"
    names = {}
    for m in prog.get("map_ids", []):
        rc, info = bpftool("map", "show", "id", m)
        assert rc == 0, f"bpftool map show id {m} failed"
        names[info["name"]] = m
    return names


def _bytes(field):
    return bytes(int(b, 16) for b in field)


def fdb_map_entries(map_id):
    """{(mac, vlan): (port index, seen)} of a kernel FDB copy, decoded by hand."""
    rc, dump = bpftool("map", "dump", "id", map_id)
    assert rc == 0, f"bpftool map dump id {map_id} failed"
    out = {}
    for e in dump:
        key, val = _bytes(e["key"]), _bytes(e["value"])
        assert len(key) == 8 and len(val) == 8, e
        k = int.from_bytes(key, "little")
        mac = ":".join(f"{b:02x}" for b in (k & (2 ** 48 - 1)).to_bytes(6, "little"))
        port, seen = struct.unpack("<II", val)
        out[(mac, k >> 48)] = (port, seen)
    return out


def fdb_map_of(ifname):
    """The id of the fdb_map of the program attached to ifname."""
    prog = xdp_prog_id(ifname)
    assert prog, f"no XDP program on {ifname}"
    return prog_maps(prog)["fdb_map"]


def kernel_fdb(sw):
    """{(mac, vlan): port name} as the XDP program's fdb_map has it."""
    names = {p.index: name for name, p in sw.ports.items()}
    any_port = next(iter(sw.ports))
    return {k: names.get(idx, f"#{idx}")
            for k, (idx, _) in fdb_map_entries(fdb_map_of(any_port)).items()}


def user_fdb(sw):
    return {(e["mac"], e["vlan"]): e["port"] for e in sw.fdb_list()}


def assert_copies_agree(sw, what):
    """The kernel copy equals the userspace FDB, and every entry says it is in the kernel."""
    user, kernel = user_fdb(sw), kernel_fdb(sw)
    only_k = {k: v for k, v in kernel.items() if user.get(k) != v}
    only_u = {k: v for k, v in user.items() if kernel.get(k) != v}
    assert kernel == user, f"after {what}: only in the kernel {only_k}, only in userspace {only_u}"
    assert all(e["kernel"] for e in sw.fdb_list()), (what, sw.fdb_list())
    assert sw.status()["fastpath"]["kernel_fdb_entries"] == len(kernel), what
    return user


def fp(st, port, key="rx_packets"):
    return st[port]["fastpath"][key]


# ---------------------------------------------------------------------------- frame tools

# Run inside a host's namespace (python -c): `stream` sends numbered frames, each carrying
# the CLOCK_MONOTONIC time just before it was sent (one clock for every namespace); `watch`
# captures those frames with the time each was read, after sending one frame of its own
# (--send, --after seconds once armed), and says when it sent that.
FRAME_TOOL = r'''
import json, socket, struct, sys, time
MAGIC = b"pyxswfp!"
def ready():
    print("ready", file=sys.stderr, flush=True)
def send(s, frame):
    while True:
        try:
            return s.send(frame)
        except OSError as e:
            if e.errno not in (11, 105):        # EAGAIN, ENOBUFS: wait for room
                raise
            time.sleep(0.0005)
cmd, ifname = sys.argv[1], sys.argv[2]
if cmd == "stream":
    dst, src, interval, seconds = sys.argv[3], sys.argv[4], float(sys.argv[5]), float(sys.argv[6])
    head = bytes.fromhex(dst) + bytes.fromhex(src) + b"\x88\xb5" + MAGIC
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    s.bind((ifname, 0))
    sent = []
    ready()
    start = time.monotonic()
    while True:
        t = time.monotonic()
        if t - start >= seconds:
            break
        send(s, (head + struct.pack("!Id", len(sent), t)).ljust(60, b"\0"))
        sent.append(t)
        pause = start + len(sent) * interval - time.monotonic()
        if pause > 0:
            time.sleep(pause)
    json.dump(sent, sys.stdout)
else:
    seconds, frame, after = float(sys.argv[3]), sys.argv[4], float(sys.argv[5])
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    s.bind((ifname, 3))
    ready()
    t_sent = None
    got = []
    start = time.monotonic()
    while True:
        now = time.monotonic()
        if frame and t_sent is None and now - start >= after:
            t_sent = time.monotonic()
            send(s, bytes.fromhex(frame))
            continue
        left = start + seconds - now
        if t_sent is None and frame:
            left = min(left, start + after - now)
        if left <= 0:
            if t_sent is None and frame:
                continue
            break
        s.settimeout(left)
        try:
            data, addr = s.recvfrom(65536)
        except socket.timeout:
            continue
        t = time.monotonic()
        if addr[2] == 4 or data[14:22] != MAGIC:      # its own frame; not a stream's
            continue
        seq, ts = struct.unpack("!Id", data[22:34])
        got.append([seq, ts, t, data[:6].hex(), data[6:12].hex()])
    json.dump({"sent_at": t_sent, "frames": got}, sys.stdout)
'''


def _start_tool(lab, i, *args):
    p = lab.popen(i, sys.executable, "-c", FRAME_TOOL, *args,
                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = p.stderr.readline().strip()
    if line != "ready":
        p.kill()
        raise RuntimeError(f"frame tool {args[:1]} failed: {line} {p.communicate()[1]}")
    return p


def _finish(p, timeout=30):
    return json.loads(finish(p, timeout))


@contextmanager
def tools(*procs_started):
    """Kill whatever frame tools are still running when the block ends."""
    procs = list(procs_started)
    try:
        yield procs
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.communicate()


def stream(lab, i, dst_mac, interval, seconds):
    """Host i sends numbered frames to dst_mac every `interval` s for `seconds`."""
    h = lab.hosts[i]
    return _start_tool(lab, i, "stream", "eth0", dst_mac.replace(":", ""),
                       h.mac.replace(":", ""), interval, seconds)


def watch(lab, i, seconds, frame=b"", after=0.0):
    """Host i captures stream frames for `seconds`; with `frame`, sends it `after` s in."""
    return _start_tool(lab, i, "watch", "eth0", seconds, frame.hex(), after)


# ---------------------------------------------------------------------------- 1. forwarding

@pytest.mark.parametrize("mode", ["poll", "interrupt", "adaptive"])
def test_all_pairs_and_a_20mb_transfer_go_through_the_kernel(lab_factory, tmp_path, mode):
    lab = lab_factory(hosts=3)
    with running(make_config(lab.ports, tmp_path, mode=mode, switch=FAST)) as sw:
        assert sw.mode == mode and sw.status()["fastpath"]["mode"] == "xdp"
        assert all(p.fastpath == {"target": True, "reason": ""} for p in sw.ports.values())
        failed = [(a, b) for a in range(3) for b in range(3) if a != b and not ping(lab, a, b, 2)]
        assert failed == []
        assert user_fdb(sw) == {(h.mac, 1): h.port for h in lab.hosts}
        assert_copies_agree(sw, "pings")

        ingress = lab.ports[:2]                     # data in at s0, ACKs in at s1
        before = sw.port_stats()
        sent, got = tcp_transfer(lab, server=1, client=0, nbytes=20 * 1024 * 1024, seed=3)
        after = sw.port_stats()
        assert len(sent) == 64 and sent == got
        rx = sum(after[p]["rx_packets"] - before[p]["rx_packets"] for p in ingress)
        fast = sum(fp(after, p) - fp(before, p) for p in ingress)
        assert rx > 10000 and fast >= 0.9 * rx, (fast, rx)
        # the data left at s1 through the kernel too, and the counters stay true
        assert fp(after, lab.ports[1], "tx_packets") - fp(before, lab.ports[1], "tx_packets") \
            >= 0.9 * (after[lab.ports[0]]["rx_packets"] - before[lab.ports[0]]["rx_packets"])
        assert after[lab.ports[0]]["rx_bytes"] - before[lab.ports[0]]["rx_bytes"] > 20 * 1024 * 1024


# ---------------------------------------------------------------------------- 2. a move

def test_a_station_moves_under_fast_path_traffic(lab_factory, tmp_path):
    """Host 0 streams to host 1's MAC through the kernel; host 2 then sends one frame with
    host 1's MAC as its source.  Both copies of the FDB have it on s2, the stream reaches
    s2 within 100 ms of that frame, and no frame sent after the move was visible leaves at
    s1 (each frame carries the time it was sent)."""
    lab = lab_factory(hosts=3)
    h0, h1, h2 = lab.hosts
    s0, s1, s2 = lab.ports
    with running(make_config(lab.ports, tmp_path, switch=FAST)) as sw:
        for h in lab.hosts:
            send(lab, h.index, eth_frame(BCAST, h.mac))
        assert wait_until(lambda: len(sw.fdb_list()) == 3)
        assert_copies_agree(sw, "learning")
        move = eth_frame(h0.mac, h1.mac, b"pyxsw-move")     # to h0: nothing floods to s1
        with tools() as procs:
            procs.append(watch(lab, 1, seconds=8))
            start = sw.port_stats()
            procs.append(stream(lab, 0, h1.mac, interval=0.001, seconds=4))
            time.sleep(0.5)
            mid = sw.port_stats()
            assert fp(mid, s0) - fp(start, s0) > 100, "the stream does not take the fast path"
            procs.append(watch(lab, 2, seconds=6, frame=move, after=0.5))
            # the moment the move is visible: from then on the kernel copy has it too
            deadline = time.monotonic() + 5
            while user_fdb(sw).get((h1.mac, 1)) != s2:
                assert time.monotonic() < deadline, f"the move was never learned: {sw.fdb_list()}"
                time.sleep(0.001)
            visible = time.monotonic()
            s1_tx = sw.port_stats(s1)[s1]["tx_packets"]
            kernel = kernel_fdb(sw)
            sent = _finish(procs[1])
            at2 = _finish(procs[2])
            at1 = _finish(procs[0])
        end = sw.port_stats()

        assert kernel[(h1.mac, 1)] == s2
        assert assert_copies_agree(sw, "the move")[(h1.mac, 1)] == s2
        moved_at = at2["sent_at"]
        assert moved_at is not None and moved_at <= visible
        # reached s2 within 100 ms of the move frame (read by the host: an upper bound)
        first = min(t for _, _, t, _, _ in at2["frames"])
        assert first - moved_at <= 0.1, \
            f"first frame at s2 {1000 * (first - moved_at):.1f} ms after the move"
        # nothing sent after the move was visible left at s1, and s2 got every such frame
        old = [(seq, ts) for seq, ts, *_ in at1["frames"] if ts > visible]
        assert not old, f"{len(old)} frames sent after the move left at s1: {old[:5]}"
        assert any(ts < moved_at for _, ts, *_ in at1["frames"]), "s1 never had the stream"
        late = {seq for seq, ts in enumerate(sent) if ts > visible}
        assert late and late <= {seq for seq, *_ in at2["frames"]}, \
            f"{len(late - {seq for seq, *_ in at2['frames']})} of {len(late)} missing at s2"
        assert end[s1]["tx_packets"] == s1_tx
        # the stream kept taking the kernel, to its new port too
        assert fp(end, s0) - fp(start, s0) >= 0.9 * len(sent)
        assert fp(end, s2, "tx_packets") - fp(start, s2, "tx_packets") >= 0.9 * len(late)


# ---------------------------------------------------------------------------- 3. aging

def test_fast_path_traffic_keeps_entries_alive_then_they_age_out_of_both_copies(
        lab_factory, tmp_path):
    lab = lab_factory(hosts=2)
    h0, h1 = lab.hosts
    s0, s1 = lab.ports
    aging = 2
    with running(make_config(lab.ports, tmp_path, switch=FAST, aging=aging)) as sw:
        for h in lab.hosts:
            send(lab, h.index, eth_frame(BCAST, h.mac))
        assert wait_until(lambda: len(sw.fdb_list()) == 2)
        with tools() as procs:
            procs += [stream(lab, 0, h1.mac, interval=0.01, seconds=3 * aging),
                      stream(lab, 1, h0.mac, interval=0.01, seconds=3 * aging)]
            time.sleep(0.3)
            before = sw.port_stats()
            t0, missing = time.monotonic(), []
            while procs[0].poll() is None or procs[1].poll() is None:
                have = user_fdb(sw)
                if have != {(h0.mac, 1): s0, (h1.mac, 1): s1}:
                    missing.append((round(time.monotonic() - t0, 2), have))
                time.sleep(0.1)
            after = sw.port_stats()
            kernel_during = kernel_fdb(sw)
            sent = [_finish(p) for p in procs]
        stopped = time.monotonic()
        assert not missing, f"aged out while the kernel forwarded their traffic: {missing[:3]}"
        assert stopped - t0 > 2 * aging
        assert kernel_during == {(h0.mac, 1): s0, (h1.mac, 1): s1}
        for p, n in zip(lab.ports, sent):
            # the workers saw (almost) none of it: the kernel forwarded it all
            seen_by_workers = (after[p]["xdp"]["prog_redirected"]
                               - before[p]["xdp"]["prog_redirected"])
            assert seen_by_workers <= 5, (p, seen_by_workers)
            assert fp(after, p) - fp(before, p) >= 0.9 * (len(n) - 40), (p, len(n))
        # traffic stops: gone from both copies once the aging time passes
        assert wait_until(lambda: not sw.fdb_list(), timeout=aging + 4), sw.fdb_list()
        assert time.monotonic() - stopped >= aging - 1.5    # not at once: 1 s granularity
        assert kernel_fdb(sw) == {}
        assert sw.status()["fastpath"]["kernel_fdb_entries"] == 0


# ---------------------------------------------------------------------------- 4. the copies agree

def test_every_fdb_change_reaches_the_kernel_copy_before_the_call_returns(lab_factory, tmp_path):
    lab = lab_factory(hosts=4)
    s0, s1, s2, s3 = lab.ports
    trunk = {"vlan_mode": "trunk", "allowed": [1, 10, 20], "native": 1}
    cfg = make_config(lab.ports, tmp_path, switch=FAST, port_extra={s3: trunk})
    extra = [f"02:ee:00:00:00:{i:02x}" for i in range(1, 5)]
    with running(cfg) as sw:
        for h in lab.hosts:
            send(lab, h.index, eth_frame(BCAST, h.mac))
        for mac in extra[:2]:                               # more learned on s0
            send(lab, 0, eth_frame(BCAST, mac))
        send(lab, 3, eth_frame(BCAST, extra[2], vlan=10))   # on the trunk, in VLANs 10, 20
        send(lab, 3, eth_frame(BCAST, extra[3], vlan=20))
        assert wait_until(lambda: len(sw.fdb_list()) == 8), sw.fdb_list()
        fdb = assert_copies_agree(sw, "learning")
        assert fdb[(extra[2], 10)] == s3 and fdb[(extra[3], 20)] == s3

        static_a, static_b = "02:5a:00:00:00:01", "02:5a:00:00:00:02"
        assert sw.fdb_add(static_a, s1)
        assert sw.fdb_add(static_b, s3, vlan=10)
        fdb = assert_copies_agree(sw, "fdb add")
        assert fdb[(static_a, 1)] == s1 and fdb[(static_b, 10)] == s3

        assert sw.fdb_del(static_a) == 1                    # a static entry
        assert sw.fdb_del(lab.hosts[0].mac) == 1            # a learned one
        fdb = assert_copies_agree(sw, "fdb del")
        assert (static_a, 1) not in fdb and (lab.hosts[0].mac, 1) not in fdb

        assert sw.fdb_flush(port=s0) == 2
        assert s0 not in assert_copies_agree(sw, "fdb flush of a port").values()

        assert sw.fdb_flush(vlan=20) == 1
        assert all(v != 20 for _, v in assert_copies_agree(sw, "fdb flush of a VLAN"))

        subprocess.run(["ip", "link", "set", s1, "down"], check=True)
        try:
            # the port's state turns "down" after its entries are flushed
            assert wait_until(lambda: sw.ports[s1].state == "down", timeout=5)
            assert s1 not in assert_copies_agree(sw, "port down").values()
        finally:
            subprocess.run(["ip", "link", "set", s1, "up"], check=True)
        assert wait_until(lambda: sw.ports[s1].up, timeout=5)
        send(lab, 1, eth_frame(BCAST, lab.hosts[1].mac))
        assert wait_until(lambda: (lab.hosts[1].mac, 1) in user_fdb(sw))
        assert_copies_agree(sw, "port up and learning")
        # the host end down: s2 loses its carrier
        assert lab.run(2, "ip", "link", "set", "eth0", "down").returncode == 0
        try:
            assert wait_until(lambda: sw.ports[s2].state == "down", timeout=5)
            assert s2 not in assert_copies_agree(sw, "carrier loss").values()
        finally:
            assert lab.run(2, "ip", "link", "set", "eth0", "up").returncode == 0
        assert wait_until(lambda: sw.ports[s2].up, timeout=5)
        send(lab, 2, eth_frame(BCAST, lab.hosts[2].mac))
        assert wait_until(lambda: (lab.hosts[2].mac, 1) in user_fdb(sw))

        send(lab, 3, eth_frame(BCAST, extra[3], vlan=20))
        assert wait_until(lambda: (extra[3], 20) in user_fdb(sw))
        sw.port_set(s3, vocab.port_vlan("trunk", allowed=[1, 10], native=1))
        fdb = assert_copies_agree(sw, "port.set on a trunk")
        assert (extra[3], 20) not in fdb and fdb[(static_b, 10)] == s3
        sw.port_set(s2, vocab.port_vlan(vlan=30))
        assert (lab.hosts[2].mac, 1) not in assert_copies_agree(sw, "port.set on an access port")

        sw.del_port(s3)
        assert s3 not in assert_copies_agree(sw, "port del").values()
        assert (static_b, 10) not in kernel_fdb(sw)

        sw.fdb_flush()
        assert assert_copies_agree(sw, "fdb flush") == {}
        # and learning again after all that
        assert ping(lab, 0, 1) and ping(lab, 1, 0)
        assert assert_copies_agree(sw, "learning again") == {
            (lab.hosts[0].mac, 1): s0, (lab.hosts[1].mac, 1): s1}


# ---------------------------------------------------------------------------- 5. targets

@contextmanager
def serving(sw, path):
    srv = Server(sw, path)
    t = threading.Thread(target=srv.run, kwargs={"use_uvloop": False}, daemon=True)
    t.start()
    try:
        assert srv.started.wait(5)
        yield path
    finally:
        srv.request_stop()
        t.join(10)


def _gro(lab, i, on):
    r = lab.run(i, "ethtool", "-K", "eth0", "gro", "on" if on else "off",
                capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_the_switch_follows_a_ports_mtu(lab_factory, tmp_path):
    # The fast path redirects no frame longer than the egress MTU allows (the row's limit):
    # an MTU changed under a running switch reaches the datapath through rtnetlink.
    lab = lab_factory(hosts=2)
    s1 = lab.ports[1]
    with running(make_config(lab.ports, tmp_path, switch=FAST)) as sw:
        idx = sw.ports[s1].index
        assert sw.dp.port_info(idx)["mtu"] == 1500
        subprocess.run(["ip", "link", "set", "dev", s1, "mtu", "1400"], check=True)
        assert wait_until(lambda: sw.dp.port_info(idx)["mtu"] == 1400, 2)
        assert sw.ports[s1].fastpath == {"target": True, "reason": ""}
        subprocess.run(["ip", "link", "set", "dev", s1, "mtu", "1500"], check=True)
        assert wait_until(lambda: sw.dp.port_info(idx)["mtu"] == 1500, 2)


@pytest.mark.parametrize("fastpath,size", [("xdp", 4096), ("off", 1)])
def test_the_kernel_fdb_is_as_large_as_the_fdb_only_with_the_fast_path(lab_factory, tmp_path,
                                                                       fastpath, size):
    # The kernel copy's buckets are charged to the switch's memory: none to spare when off.
    lab = lab_factory(hosts=2)
    cfg = make_config(lab.ports, tmp_path, switch={"fastpath": fastpath}, capacity=4096)
    with running(cfg):
        rc, info = bpftool("map", "show", "id", fdb_map_of(lab.ports[0]))
        assert rc == 0 and info["max_entries"] == size, info


def test_a_port_whose_features_cannot_be_read_is_no_target(lab_factory, tmp_path):
    # Unsure is not capable: a redirect its device refuses would lose the frame; the port is
    # asked again every tick and becomes a target again once the answer comes.
    lab = lab_factory(hosts=2)
    s1 = lab.ports[1]
    with running(make_config(lab.ports, tmp_path, switch=FAST)) as sw:
        idx = sw.ports[s1].index
        assert sw.dp.port_info(idx)["fastpath_target"]
        real = sw.features.get

        def refuse(ifindex):
            if ifindex == sw.ports[s1].ifindex:
                raise OSError(5, "netlink said no")
            return real(ifindex)
        sw.features.get = refuse
        try:
            with sw._lock:
                sw._fastpath_follow(sw.ports[s1])
            assert not sw.dp.port_info(idx)["fastpath_target"]
            assert "netlink said no" in sw.ports[s1].fastpath["reason"]
            assert ping(lab, 0, 1)                  # the AF_XDP path carries it meanwhile
        finally:
            sw.features.get = real
        assert wait_until(lambda: sw.dp.port_info(idx)["fastpath_target"]
                          and sw.ports[s1].fastpath["target"], 2)


def test_a_port_whose_peer_cannot_take_redirects_is_no_target_until_it_can(
        lab_factory, short_dir, capsys):
    lab = lab_factory(hosts=2)
    s0, s1 = lab.ports
    h1 = lab.hosts[1]
    _gro(lab, 1, False)                 # the peer of s1: neither GRO nor an XDP program
    with running(make_config(lab.ports, short_dir, switch=FAST)) as sw, \
            serving(sw, str(short_dir / "sw.sock")) as path:
        port = sw.ports[s1]
        assert port.fastpath["target"] is False
        assert "GRO" in port.fastpath["reason"], port.fastpath
        assert sw.ports[s0].fastpath == {"target": True, "reason": ""}
        with Client(path, timeout=5) as c:
            listed = {p["name"]: p["fastpath"] for p in c.port_list()}
        assert listed == {s0: sw.ports[s0].fastpath, s1: port.fastpath}
        assert ctl_main(["-s", path, "port", "list"]) == 0
        row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith(s1))
        assert "no: its device does not take XDP-redirected frames" in row, row

        # traffic to it flows, on the AF_XDP path
        assert ping(lab, 0, 1, 3) and ping(lab, 1, 0, 3)
        before = sw.port_stats()
        with udp_sink(lab, 1, seconds=3) as got:
            udp_flows(lab, 0, h1.ip, flows=4, count=500, interval=0.0005)
        after = sw.port_stats()
        assert got["received"] == 500
        assert fp(after, s1, "tx_packets") == fp(before, s1, "tx_packets")
        assert after[s1]["tx_packets"] - before[s1]["tx_packets"] >= 500
        assert after[s0]["xdp"]["prog_redirected"] - before[s0]["xdp"]["prog_redirected"] >= 500

        # GRO on at the peer: a target again, without a restart
        _gro(lab, 1, True)
        assert wait_until(lambda: port.fastpath["target"], timeout=2), port.fastpath
        with Client(path, timeout=5) as c:
            assert {p["name"]: p["fastpath"] for p in c.port_list()}[s1] == \
                {"target": True, "reason": ""}
        before = sw.port_stats()
        with udp_sink(lab, 1, seconds=3) as got:
            udp_flows(lab, 0, h1.ip, flows=4, count=500, interval=0.0005)
        after = sw.port_stats()
        assert got["received"] == 500
        assert fp(after, s1, "tx_packets") - fp(before, s1, "tx_packets") >= 450
        assert after[s0]["xdp"]["prog_redirected"] - before[s0]["xdp"]["prog_redirected"] <= 50

        # and off again: no target, traffic still flows
        _gro(lab, 1, False)
        assert wait_until(lambda: not port.fastpath["target"], timeout=2), port.fastpath
        before = sw.port_stats()
        assert ping(lab, 0, 1, 3)
        assert fp(sw.port_stats(), s1, "tx_packets") == fp(before, s1, "tx_packets")


# ---------------------------------------------------------------------------- 6. life cycle

def _conf(short_dir, ports):
    conf = short_dir / "sw.toml"
    conf.write_text(f'[switch]\nname = "t"\ncores = [1]\nfastpath = "xdp"\n'
                    f'[management]\nsocket = "{short_dir}/sw.sock"\n'
                    + "".join(f'[[port]]\nname = "{p}"\n' for p in ports))
    return conf


def _run(conf, log):
    return subprocess.Popen([sys.executable, "-m", "pyxsw", "run", "-c", str(conf)], cwd=ROOT,
                            env=dict(os.environ, PYTHONPATH=str(ROOT)),
                            stdout=log, stderr=subprocess.STDOUT)


def _answers(proc, sock, log):
    try:
        with Client(str(sock), timeout=2) as c:
            return c.status()["name"] == "t"
    except OSError:
        assert proc.poll() is None, f"pyxsw run exited {proc.returncode}: {log.read_text()}"
        return False


def _gone(kind, ident):
    return subprocess.run(["bpftool", kind, "show", "id", str(ident)],
                          capture_output=True).returncode != 0


def _program(lab):
    """(program id, {map name: id}) of the one program on every port."""
    ids = {xdp_prog_id(p) for p in lab.ports}
    assert len(ids) == 1 and 0 not in ids, ids
    prog = ids.pop()
    return prog, prog_maps(prog)


def _all_gone(prog, maps):
    return _gone("prog", prog) and all(_gone("map", m) for m in maps.values())


class RunSwitch:
    """`pyxsw run` processes with one config (fast path on) and one log; close() stops
    every one still running (SIGTERM, then SIGKILL)."""

    def __init__(self, lab, short_dir):
        self.lab, self.sock = lab, short_dir / "sw.sock"
        self.conf = _conf(short_dir, lab.ports)
        self.logpath = short_dir / "pyxsw.log"
        self.log = open(self.logpath, "w")
        self.procs = []

    def start(self):
        proc = _run(self.conf, self.log)
        self.procs.append(proc)
        assert wait_until(lambda: _answers(proc, self.sock, self.logpath), timeout=20,
                          interval=0.1)
        return proc

    def learn(self, *macs):
        """Ping 0 -> 1 until it works, then host 0 sends from each of `macs` too."""
        assert wait_until(lambda: ping(self.lab, 0, 1), timeout=10, interval=0.1)
        for mac in macs:
            send(self.lab, 0, eth_frame(BCAST, mac))

    def terminate(self, proc):
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0, self.logpath.read_text()

    def close(self):
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        self.log.close()


@pytest.fixture
def run_switch(lab_factory, short_dir):
    rs = RunSwitch(lab_factory(hosts=2), short_dir)
    try:
        yield rs
    finally:
        rs.close()


GHOST = "02:ee:00:00:00:77"


def test_sigterm_removes_program_and_maps_and_a_restart_after_kill_starts_empty(run_switch):
    rs, lab = run_switch, run_switch.lab
    h0, h1 = lab.hosts
    learned = {(GHOST, 1), (h0.mac, 1), (h1.mac, 1)}

    # SIGTERM: the program and every map of it are gone
    proc = rs.start()
    rs.learn(GHOST)
    prog, maps = _program(lab)
    assert {"fdb_map", "tx_map", "ports_map", "port_rows"} <= set(maps), maps
    assert wait_until(lambda: learned <= set(fdb_map_entries(maps["fdb_map"])))
    rs.terminate(proc)
    assert not any(link_flags(p)[1] for p in lab.ports)
    assert wait_until(lambda: _all_gone(prog, maps), timeout=5), \
        f"left: program {prog} {not _gone('prog', prog)}, maps " \
        f"{[m for m in maps.values() if not _gone('map', m)]}"

    # kill -9: the program stays attached and keeps forwarding known unicast from the
    # last FDB (README: the in-kernel fast path, caveats)
    proc = rs.start()
    rs.learn(GHOST)
    prog, maps = _program(lab)
    old = fdb_map_entries(maps["fdb_map"])
    assert learned <= set(old), old
    proc.kill()
    proc.wait()
    assert _program(lab)[0] == prog
    assert fdb_map_entries(maps["fdb_map"]) == old
    frame = eth_frame(h1.mac, h0.mac, b"after kill -9")
    with capture(lab, 1, seconds=2, max_frames=1) as at1:
        send(lab, 0, frame)
    assert frame in at1

    # a restart replaces that program with one whose FDB copy starts empty, and has only
    # what the new switch learns (not the ghost)
    proc = rs.start()
    new_prog, new_maps = _program(lab)
    assert new_prog != prog and new_maps["fdb_map"] != maps["fdb_map"]
    assert fdb_map_entries(new_maps["fdb_map"]) == {}
    rs.learn()
    got = {k: idx for k, (idx, _) in fdb_map_entries(new_maps["fdb_map"]).items()}
    assert set(got) == {(h0.mac, 1), (h1.mac, 1)}, got
    assert got[(h0.mac, 1)] != got[(h1.mac, 1)]

    rs.terminate(proc)
    assert not any(link_flags(p)[1] for p in lab.ports)
    assert wait_until(lambda: _all_gone(new_prog, new_maps), timeout=5)
    # the killed switch's program and maps are gone by now too
    assert wait_until(lambda: _all_gone(prog, maps), timeout=5)


def test_a_restart_after_kill_frees_the_killed_switchs_program_and_maps(run_switch):
    """The restarted switch used to keep the killed one's program and maps (its FDB among
    them) loaded until it exited: libxdp < 1.4.1, which told it which program was attached,
    leaks a descriptor of that program (xdp-tools 48ad94b).  It asks libbpf now."""
    rs, lab = run_switch, run_switch.lab
    proc = rs.start()
    rs.learn(GHOST)
    prog, maps = _program(lab)
    proc.kill()
    proc.wait()
    proc = rs.start()
    assert _program(lab)[0] != prog
    left = lambda: [f"prog {prog}"] * (not _gone("prog", prog)) + \
        [f"map {n} {m}" for n, m in maps.items() if not _gone("map", m)]
    assert wait_until(lambda: not left(), timeout=5), \
        f"still loaded while the restarted switch runs: {left()}"
    rs.terminate(proc)
