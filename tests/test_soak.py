"""The soak: millions of frames of mixed traffic through a live switch, as fast as a BPF
live-frames generator can push them (perf/livegen.py running perf/xdp_mix.bpf.c).

Afterwards every frame is accounted for: the UMEM's frames are all back in place, each frame
the XDP program saw was forwarded by it, or redirected to a socket and then taken by a worker
or counted as dropped by the kernel, each frame the switch took was sent, flooded or counted,
each frame sent reached its host, and the forwarding rate held from the first second to the
last.

It runs twice: with the fast path off, and with `fastpath = "xdp"`, where the XDP program
forwards the unicast kinds to the known hosts itself (FAST_TO_A, FAST_TO_B) and everything
else still goes through the worker; the identities are the same, each frame the kernel
forwarded counted once in the fast path's rx on its way in and once in its tx on its way out.

The generator's port is a trunk (VLANs 1 and 10, native 1), host B's too; host A's an access
port of VLAN 1.  Four kinds carry tags: tagged VID 10 (allowed) unicast to B's static entry in
VLAN 10, leaving tagged as it came; tagged VID 30 (not allowed): dropped and counted in
vlan_dropped; priority-tagged (VID 0) to A, in the native VLAN, its tag popped; and an 802.1ad
outer tag to B, payload in VLAN 1.

`make test` puts 10 million frames through the switch in each variant; `make soak` puts
PYXSW_SOAK_FRAMES through (default 300 million) and prints the figures."""
import ctypes as C
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from statistics import median

import pytest

from helpers import BCAST, eth_frame, make_config, ping, running, send

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "perf"))
from livegen import BpfObject, check, compile_bpf, libbpf, percpu_sum  # noqa: E402

pytestmark = pytest.mark.system
FRAMES = int(os.environ.get("PYXSW_SOAK_FRAMES", 10_000_000))
KINDS = ["unicast A"] * 6 + ["unicast B"] * 2 + ["broadcast", "multicast", "unknown unicast",
                                                 "header only", "short", "oversize",
                                                 "reserved EtherType", "1514 bytes",
                                                 "tagged VID 10", "tagged VID 30",
                                                 "priority-tagged", "802.1ad outer tag"]
OVERSIZE = KINDS.index("oversize")
NOT_ALLOWED = KINDS.index("tagged VID 30")
FLOODING = ("broadcast", "multicast", "unknown unicast")
# With the fast path the XDP program forwards these itself, once their 64 sources are learned
# on the generator's port: known unicast, in the VLAN the frame classifies into (the 802.1ad
# kind is untagged to 802.1Q: VLAN 1, to B's port, native there), to a target port that
# carries it.  Not the priority-tagged kind (the workers keep its PCP), nor the oversize one
# (longer than A's port's MTU allows: the AF_XDP path drops it and counts it), nor VID 30
# (not carried), nor the flooding kinds.
FAST_TO_A = ("unicast A", "header only", "short", "reserved EtherType", "1514 bytes")
FAST_TO_B = ("unicast B", "tagged VID 10", "802.1ad outer tag")
TRUNK = {"vlan_mode": "trunk", "allowed": [1, 10], "native": 1}
WINDOW = 1.0                    # seconds per rate sample
# Samples at least (the rate check needs a few whole windows between the first and the last,
# and the fast path may put FRAMES through in less time than that)
MIN_SAMPLES = 8


def host_counter(lab, i, name):
    r = lab.run(i, "cat", f"/sys/class/net/eth0/statistics/{name}", capture_output=True,
                text=True, check=True)
    return int(r.stdout)


def link_counter(ifname, name):
    return int(Path(f"/sys/class/net/{ifname}/statistics/{name}").read_text())


def template(size=3000):
    """xdp_mix.bpf.c writes every header field; the length is what matters here."""
    return bytes(size)


@pytest.mark.parametrize("fastpath", ["off", "xdp"])
def test_soak_mixed_traffic(lab_factory, tmp_path, fastpath):
    lab = lab_factory(hosts=3)
    gen, a, b = lab.hosts
    # Room for the oversize kind on the way in (XDP refuses to send a frame over the MTU of
    # either veth end, so the switch would never see it); the UMEM frames stay 2048 bytes,
    # and max_frame 2500 makes its 3000 bytes more than the switch carries.
    subprocess.run(["ip", "link", "set", gen.port, "mtu", "3000"], check=True)
    lab.run(0, "ip", "link", "set", "eth0", "mtu", "3000", check=True)
    lib = libbpf()
    compile_bpf(ROOT / "perf" / "xdp_mix.bpf.c", tmp_path / "xdp_mix.o")
    obj = BpfObject(lib, tmp_path / "xdp_mix.o")
    try:
        prog, counts = obj.prog_fd("xdp_mix"), obj.map_fd("mix_count")
        key = C.c_uint32(0)
        dst = C.create_string_buffer(bytes.fromhex((a.mac + b.mac).replace(":", "")), 12)
        check(lib.bpf_map_update_elem(obj.map_fd("mix_cfg"), C.byref(key), dst, 0), "mix_cfg")
        trunks = {lab.ports[0]: TRUNK, lab.ports[2]: TRUNK}
        # A and B never send during the soak: aging longer than any soak keeps their entries,
        # so that their kinds stay known unicast however long `make soak` runs
        cfg = make_config(lab.ports, tmp_path, port_extra=trunks,
                          switch={"fastpath": fastpath, "max_frame": 2500}, aging=3600)
        with running(cfg) as sw:
            # every port a fast-path target (`pyxsw lab up` turned GRO on at the host ends)
            assert all(p.fastpath["target"] == (fastpath == "xdp")
                       for p in sw.ports.values()), {n: p.fastpath for n, p in sw.ports.items()}
            # The hosts' stacks stay silent during the soak: no ARP (a neighbor that answered
            # a ping would be probed by unicast ARP 5 s later, which the fast path forwards)
            for i, j in [(i, j) for i in range(3) for j in range(3) if i != j]:
                lab.run(i, "ip", "neigh", "replace", lab.hosts[j].ip, "lladdr",
                        lab.hosts[j].mac, "dev", "eth0", "nud", "permanent", check=True)
            assert all(ping(lab, x, y) for x, y in [(1, 2), (2, 1), (0, 1)])
            # B in VLAN 10 (its stack speaks no 802.1Q): the tagged kind's destination, so
            # that it never floods (VLAN 10 has 2 ports, VLAN 1 3: every flood has 2 copies)
            sw.fdb_add(b.mac, lab.ports[2], vlan=10)
            before = sw.port_stats()
            samples, gen_rc = soak(lab, sw, prog)
            assert gen_rc in (0, -signal.SIGTERM)
            sent = [percpu_sum(lib, counts, k) for k in range(len(KINDS) + 1)]
            check_everything(lab, sw, samples, sent, before, fastpath)
    finally:
        obj.close()


def soak(lab, sw, prog):
    """Run the generator until the switch has taken FRAMES frames from the generator's port
    (its worker, or the XDP program itself on the fast path; the generator offers more: the
    kernel drops and counts the rest), and for MIN_SAMPLES windows at least; sample the
    counters every WINDOW seconds."""
    p0 = lab.ports[0]
    rx0 = sw.port_stats(p0)[p0]["rx_packets"]
    proc = lab.popen(0, "taskset", "-c", "0", sys.executable, ROOT / "perf" / "livegen.py",
                     "--prog-fd", prog, "--ifname", "eth0", "--frame", template().hex(),
                     pass_fds=[prog], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    samples = []
    deadline = time.monotonic() + 60 + FRAMES / 50_000         # 50 kpps would be a failure
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            st = sw.port_stats()
            samples.append((time.monotonic(), st[p0]["rx_packets"]))
            if st[p0]["rx_packets"] - rx0 >= FRAMES and len(samples) >= MIN_SAMPLES:
                break
            time.sleep(WINDOW)
    finally:
        if proc.poll() is None:
            proc.terminate()
        _, err = proc.communicate(timeout=30)
    taken = sw.port_stats(p0)[p0]["rx_packets"] - rx0
    assert taken >= FRAMES, f"only {taken} frames went through the switch: {err}"
    return samples, proc.returncode


def check_everything(lab, sw, samples, sent, before, fastpath):
    ports = lab.ports
    # 1. Each kind was generated, in its share.
    total = sent[-1]
    assert sum(sent[:-1]) == total >= FRAMES
    assert all(n >= total // len(KINDS) - 1 for n in sent[:-1]), sent

    # 2. Every frame an XDP program saw it forwarded itself (the fast path: counted in the
    #    port's rx_packets and in its fastpath rx_packets), passed to the kernel (no socket),
    #    dropped as longer than max_frame (prog_oversize) or redirected to a socket; and
    #    every frame it redirected was taken by a worker or counted as dropped by the kernel
    #    (no fill frame: rx_dropped; no room in the RX ring: rx_ring_full).
    def ingress_balanced():
        st = sw.port_stats()
        return all(s["xdp"]["prog_seen"] == s["xdp"]["prog_redirected"]
                   + s["xdp"]["prog_passed"] + s["fastpath"]["rx_packets"]
                   + s["xdp"]["prog_oversize"]
                   and s["rx_packets"] - s["fastpath"]["rx_packets"] + s["xdp"]["rx_dropped"]
                   + s["xdp"]["rx_ring_full"] == s["xdp"]["prog_redirected"]
                   for s in st.values()), st
    deadline = time.monotonic() + 10
    while not ingress_balanced()[0] and time.monotonic() < deadline:
        time.sleep(0.1)
    ok, st = ingress_balanced()
    assert ok, {p: (s["rx_packets"], s["xdp"], s["fastpath"]) for p, s in st.items()}
    s0 = st[ports[0]]
    # The oversize kind never reaches a worker: the XDP program drops it and counts it.
    missing = max(0, total - s0["xdp"]["prog_seen"])        # lost on the generator's side
    oversize = s0["xdp"]["prog_oversize"]
    assert sent[OVERSIZE] - missing <= oversize <= sent[OVERSIZE]
    assert s0["oversize_dropped"] == oversize
    assert s0["rx_bytes"] <= s0["rx_packets"] * 1514

    # 3. Every frame the switch took went out (unicast: once; flood: to the 2 other ports of
    #    its VLAN) or was counted: runt, filtered, reserved, not in a VLAN the port carries,
    #    over the flood limit, or no TX room.  A frame the XDP program forwarded is in its
    #    ingress port's rx and its egress port's tx, like one a worker sent.
    sw.wait_quiet()
    st = sw.port_stats()
    rx = sum(s["rx_packets"] for s in st.values())
    flooded = sum(s["flooded"] for s in st.values())
    gone = sum(s["runts"] + s["filtered"] + s["reserved_dropped"] + s["vlan_dropped"]
               + s["flood_limited"] for s in st.values())
    out = sum(s["tx_packets"] + s["tx_dropped"] for s in st.values())
    assert out == rx - gone + flooded, st
    fast_rx = sum(s["fastpath"]["rx_packets"] for s in st.values())
    assert fast_rx == sum(s["fastpath"]["tx_packets"] for s in st.values()), st
    # (of the generator's frames, the worker takes every kind with the fast path off, and
    # with it on those the kernel does not forward: what it took is their share)
    worker_kinds = len(KINDS) - (fastpath == "xdp") * sum(k in FAST_TO_A + FAST_TO_B
                                                          for k in KINDS)
    by_worker = s0["rx_packets"] - s0["fastpath"]["rx_packets"]
    assert flooded >= by_worker * len(FLOODING) // worker_kinds // 2
    # Only the VID 30 kind is outside the VLANs its port carries: each one the worker took
    # is in vlan_dropped (the kernel dropped at most `lost` frames of the other kinds: lost
    # on the way, no fill frame, no RX room), and nothing else is.  The hosts send untagged
    # frames, all in their ports' VLAN 1.
    lost = missing + s0["xdp"]["rx_fill_ring_empty_descs"] + s0["xdp"]["rx_ring_full"]
    assert sent[NOT_ALLOWED] - lost <= s0["vlan_dropped"] <= sent[NOT_ALLOWED], (lost, s0)
    assert s0["vlan_dropped"] >= by_worker // worker_kinds // 2
    assert st[ports[1]]["vlan_dropped"] == st[ports[2]]["vlan_dropped"] == 0
    assert all(s["reserved_dropped"] == 0 for s in st.values())

    # 4. Every frame sent reached its host (or the veth counted it dropped: in its
    #    tx_dropped, for a frame a worker sent or the XDP program redirected into it).
    for i, p in enumerate(ports):
        got = host_counter(lab, i, "rx_packets")
        assert got + link_counter(p, "tx_dropped") == st[p]["tx_packets"], (p, got, st[p])

    # 5. The fast path carried what it may and nothing else (of the soak's frames, counted
    #    from its start).  Off: nothing.  On: every kind not in FAST_TO_A/FAST_TO_B that the
    #    program saw went to the worker, and the kinds in them went through the kernel, to
    #    the right port, all but the frames before their sources were learned (about a
    #    thousand here; 5% is room for a worker held up at the start, and still less than
    #    any one kind's share, so a kind the kernel does not forward fails); the hosts sent
    #    nothing (no ARP; their stacks drop the soak's EtherType).
    def delta(p, group, name):
        return st[p][group][name] - before[p][group][name]
    g, pa, pb = ports
    unseen = max(0, total - delta(g, "xdp", "prog_seen"))     # lost on the generator's side
    to_a = sum(sent[i] for i, k in enumerate(KINDS) if k in FAST_TO_A)
    to_b = sum(sent[i] for i, k in enumerate(KINDS) if k in FAST_TO_B)
    fast = {p: delta(p, "fastpath", "rx_packets") for p in ports}
    status = sw.status()["fastpath"]
    fdb = sw.fdb_list()
    if fastpath == "off":
        assert all(n == 0 for s in st.values() for n in s["fastpath"].values()), st
        assert status == {"mode": "off", "kernel_fdb_entries": 0, "sync_errors": 0}
        assert all("kernel" not in e for e in fdb)
    else:
        assert fast[pa] == fast[pb] == 0, fast
        assert delta(g, "xdp", "prog_redirected") >= (total - to_a - to_b - unseen
                                                      - delta(g, "xdp", "prog_oversize"))
        assert to_a + to_b >= fast[g] >= (to_a + to_b - unseen) * 0.95, (fast, to_a, to_b)
        assert to_a >= delta(pa, "fastpath", "tx_packets") >= (to_a - unseen) * 0.95
        assert to_b >= delta(pb, "fastpath", "tx_packets") >= (to_b - unseen) * 0.95
        # the kernel copy is the FDB, and never refused an update
        assert status == {"mode": "xdp", "kernel_fdb_entries": len(fdb), "sync_errors": 0}
        assert all(e["kernel"] for e in fdb), fdb

    # 6. No frame leaked: at rest every UMEM frame is back in the pool, a cache or a ring,
    #    and the status RPC shows the same.  One exception, the kernel's: a receive that
    #    found the RX ring full leaves its buffer on the socket's free list (copy mode), for
    #    the next frame on that socket to take.  So the last frames go through every port's
    #    socket: a broadcast from each host (with the fast path, pings between known hosts
    #    would not reach a socket).
    assert all(ping(lab, x, y) for x, y in [(0, 1), (1, 2), (2, 0)])
    for i, h in enumerate(lab.hosts):
        send(lab, i, eth_frame(BCAST, h.mac))
    acc = sw.wait_quiet()
    assert acc["in_flight"] == 0 and acc["placed"] == acc["frames"] == sw.config.switch.frames
    assert sw.status()["frames"]["placed"] == acc["frames"]

    # 7. The rate held: no 1 s window took in less than a quarter of the median one (a
    #    leak empties the pool and the rate falls to nothing; a slow leak shows as a slope).
    rates = [(r1 - r0) / (t1 - t0) for (t0, r0), (t1, r1) in zip(samples, samples[1:])]
    steady = rates[1:-1]
    assert len(steady) >= 3, samples
    half = len(steady) // 2
    first, last = median(steady[:half]), median(steady[half:])
    assert min(steady) >= median(steady) / 4, steady
    assert last >= first / 2, (first, last)

    # 8. The learned table: the 64 generator sources on its port in VLAN 1 (untagged and
    #    priority-tagged kinds) and in VLAN 10 (the allowed tagged kind), none in VLAN 30
    #    (dropped before learning); the hosts where they are, B in VLAN 10 by its static entry.
    fdb = {(e["mac"], e["vlan"]): e["port"] for e in sw.fdb_list()}
    a, b = lab.hosts[1].mac, lab.hosts[2].mac
    assert fdb[(a, 1)] == ports[1] and fdb[(b, 1)] == ports[2] and fdb[(b, 10)] == ports[2]
    gens = {(m, v): p for (m, v), p in fdb.items() if m.startswith("02:5a:5a")}
    assert set(gens.values()) == {ports[0]}
    assert sorted(v for _, v in gens) == [1] * 64 + [10] * 64
    assert {v for _, v in fdb} == {1, 10}

    print(f"\nsoak, fast path {fastpath}: {total:,} frames generated, "
          f"{s0['xdp']['prog_seen']:,} reached the switch, {rx:,} taken by it, of which "
          f"{fast_rx:,} ({fast_rx / max(rx, 1):.1%}) forwarded by the XDP program, "
          f"{rx - fast_rx:,} by the worker; {out:,} sent, {flooded:,} floods, "
          f"{s0['xdp']['prog_oversize']:,} oversize dropped by the XDP program, "
          f"{s0['xdp']['rx_dropped']:,} + {s0['xdp']['rx_ring_full']:,} dropped by the kernel "
          f"(no fill frame {s0['xdp']['rx_fill_ring_empty_descs']:,}; no RX room); rate {min(steady)/1e6:.3f}/{median(steady)/1e6:.3f}/"
          f"{max(steady)/1e6:.3f} Mpps (min/median/max of {len(steady)} windows), first half "
          f"{first/1e6:.3f}, second half {last/1e6:.3f}; accounting {acc}")
