"""Jumbo frames (issue 17): frames larger than a UMEM frame travel as chains of descriptors
(multi-buffer AF_XDP), whole or not at all; [switch] max_frame bounds what the switch carries.

Every interface of these labs is at MTU 9000 unless a test says otherwise: the hosts' eth0
and the switch's ports.  With 2048-byte UMEM frames a fragment holds 1792 bytes, so a
9000-byte frame is a chain of 6 descriptors, 2500 bytes 2 and 4000 bytes 3.
"""
import os
import random
import subprocess
import sys
import threading
import time

import pytest

from helpers import (BCAST, capture, eth_frame, make_config, nettool, ping, running, send,
                     tcp_transfer, wait_until)
from test_vlan import at_rest_exact, blast

pytestmark = pytest.mark.system

FRAG = 2048 - 256               # bytes of a frame one descriptor holds (copy mode)


def mtu(lab, value, hosts=None):
    """Set the MTU of hosts' eth0 and of their switch ports (all hosts by default)."""
    for h in (lab.hosts if hosts is None else [lab.hosts[i] for i in hosts]):
        subprocess.run(["ip", "link", "set", "dev", h.port, "mtu", str(value)], check=True)
        lab.run(h.index, "ip", "link", "set", "dev", "eth0", "mtu", str(value), check=True)


def jumbo_lab(lab_factory, hosts=3):
    lab = lab_factory(hosts=hosts)
    mtu(lab, 9000)
    return lab


def ping_df(lab, a, b, size=8972, count=3):
    """Host a pings host b with `size` bytes of ICMP payload, never fragmented."""
    r = lab.run(a, "ping", "-n", "-c", count, "-i", "0.2", "-W", 2, "-s", size, "-M", "do",
                lab.hosts[b].ip, capture_output=True, text=True)
    return r.returncode == 0


def payload(n, seed):
    return random.Random(seed).randbytes(n)


def host_rx(lab, i):
    """(frames, bytes) host i's eth0 received: the kernel's count of what the switch sent."""
    r = lab.run(i, "cat", "/sys/class/net/eth0/statistics/rx_packets",
                "/sys/class/net/eth0/statistics/rx_bytes", capture_output=True, text=True,
                check=True)
    return tuple(int(v) for v in r.stdout.split())


def no_invalid_descs(sw):
    """No TX descriptor the kernel refused: a half-written chain would be one."""
    return all(s["xdp"]["tx_invalid_descs"] == 0 and s["xdp"]["rx_invalid_descs"] == 0
               for s in sw.port_stats().values())


# ---------------------------------------------------------------------------- hosts at MTU 9000

def test_ping_of_9000_bytes_unfragmented(lab_factory, tmp_path):
    lab = jumbo_lab(lab_factory)
    with running(make_config(lab.ports, tmp_path)) as sw:
        st = sw.status()
        assert (st["max_frame"], st["multi_buffer"]) == (9216, "on")
        assert ping_df(lab, 0, 1) and ping_df(lab, 1, 2) and ping_df(lab, 2, 0)
        s = sw.port_stats()
        # every echo of 9014 bytes on the wire went through as one frame each way
        assert s[lab.ports[0]]["rx_bytes"] >= 3 * 9014 and s[lab.ports[1]]["tx_bytes"] >= 3 * 9014
        assert all(v["oversize_dropped"] == 0 and v["tx_dropped"] == 0 for v in s.values()), s
        at_rest_exact(sw)
        assert no_invalid_descs(sw)


def test_tcp_at_mtu_9000_delivers_every_byte(lab_factory, tmp_path):
    lab = jumbo_lab(lab_factory, hosts=2)
    with running(make_config(lab.ports, tmp_path)) as sw:
        sent, got = tcp_transfer(lab, server=1, client=0, nbytes=32 << 20)
        assert sent == got
        s = sw.port_stats()[lab.ports[0]]
        # segments of MSS 8960: frames far larger than one UMEM frame carried the transfer
        assert s["rx_bytes"] / s["rx_packets"] > 4 * FRAG, s
        at_rest_exact(sw)
        assert no_invalid_descs(sw)


def test_a_flooded_jumbo_broadcast_reaches_every_host_intact(lab_factory, tmp_path):
    """Flooding copies the chain for every port but one and sends the original there: each
    host gets the very bytes sent, tagged where its port is a trunk (a tag pushed into the
    first fragment of the original or of a copy; popped from a tagged jumbo frame)."""
    lab = jumbo_lab(lab_factory, hosts=4)
    h = lab.hosts
    trunk = {"vlan_mode": "trunk", "allowed": [1, 5], "native": 5}     # VLAN 1 tagged
    with running(make_config(lab.ports, tmp_path, port_extra={h[3].port: trunk})) as sw:
        frame = eth_frame(BCAST, h[0].mac, payload(9000 - 14, 1))
        assert len(frame) == 9000
        with capture(lab, 1, seconds=3, max_frames=1) as g1, \
                capture(lab, 2, seconds=3, max_frames=1) as g2, \
                capture(lab, 3, seconds=3, max_frames=1) as g3:
            send(lab, 0, frame)
        assert g1 == [frame] and g2 == [frame]
        tagged = frame[:12] + b"\x81\x00\x00\x01" + frame[12:]
        assert g3 == [tagged]

        # and back: a tagged 9004-byte frame from the trunk, popped for the access hosts
        back = eth_frame(BCAST, h[3].mac, payload(9000 - 14, 2), vlan=1)
        with capture(lab, 0, seconds=3, max_frames=1) as g0, \
                capture(lab, 1, seconds=3, max_frames=1) as g1:
            send(lab, 3, back)
        untagged = back[:12] + back[16:]
        assert g0 == [untagged] and g1 == [untagged]

        # unicast, learned: h3 -> h0 popped in place, h0 -> h3 pushed in place
        uni = eth_frame(h[0].mac, h[3].mac, payload(8000, 3), vlan=1)
        with capture(lab, 0, seconds=3, max_frames=1) as g0:
            send(lab, 3, uni)
        assert g0 == [uni[:12] + uni[16:]]
        uni = eth_frame(h[3].mac, h[0].mac, payload(8000, 4))
        with capture(lab, 3, seconds=3, max_frames=1) as g3:
            send(lab, 0, uni)
        assert g3 == [uni[:12] + b"\x81\x00\x00\x01" + uni[12:]]
        at_rest_exact(sw)
        assert no_invalid_descs(sw)


@pytest.mark.parametrize("batch,ring", [(64, 2048), (4, 64)])
def test_chains_of_1_2_3_and_6_descriptors_mixed_under_load(lab_factory, tmp_path, batch, ring):
    """Two hosts send frames of 1, 2, 3 and 6 descriptors among small ones, as fast as they
    can, to a third (unicast) and to everyone (broadcast).  Every frame the switch received
    left whole or was dropped whole and counted: no descriptor the kernel calls invalid, the
    bytes the hosts got are frames that were sent, and every UMEM frame is back in place.
    A batch of 4 cuts every 6-descriptor chain that starts a burst (the rest is taken in the
    same burst), and rings of 64 make the RX side drop (whole frames).  (A TX ring too full
    for a chain: test_jumbo_core.py.)"""
    lab = jumbo_lab(lab_factory)
    h = lab.hosts
    cfg = make_config(lab.ports, tmp_path, switch={"batch": batch, "ring_size": ring})
    with running(cfg) as sw:
        send(lab, 1, eth_frame(BCAST, h[1].mac, b"hello"))          # h1 is learned
        assert wait_until(lambda: sw.dp.fdb_counters()["entries"] >= 1)
        sizes = [60, 1000, 2 * FRAG - 100, 3 * FRAG - 100, 9000, 60, 1500, 60]
        frames = {}
        for src in (0, 2):
            frames[src] = [eth_frame(h[1].mac if n % 2 == 0 else BCAST, h[src].mac,
                                     payload(n - 14, n + src)) for n in sizes]
        rounds = 300
        known = set(frames[0]) | set(frames[2])
        h1_before = host_rx(lab, 1)
        out_before = sw.port_stats()[h[1].port]
        with capture(lab, 1, seconds=8) as got:
            t = threading.Thread(target=blast, args=(lab, 2, frames[2], rounds))
            t.start()
            blast(lab, 0, frames[0], rounds)
            t.join(300)
        at_rest_exact(sw)
        assert no_invalid_descs(sw)
        s = sw.port_stats()
        for src in (0, 2):
            p = s[h[src].port]
            assert p["rx_packets"] + p["xdp"]["rx_dropped"] + p["xdp"]["rx_ring_full"] \
                == rounds * len(sizes), p
            assert p["oversize_dropped"] == 0 and p["runts"] == 0
        out = s[h[1].port]
        # what h1's capture got are frames that were sent, whole (it may miss some)
        assert got and all(f in known for f in got), [len(f) for f in got if f not in known]
        assert {len(f) for f in got} >= {9000, 3 * FRAG - 100, 2 * FRAG - 100}
        # every frame for h1 was sent or dropped as a whole frame, and counted once; what
        # the switch says it sent is what h1's kernel received, frame for frame, byte for byte
        rx = sum(s[h[i].port]["rx_packets"] for i in (0, 2))
        sent = out["tx_packets"] - out_before["tx_packets"]
        assert sent + out["tx_dropped"] == rx, (out, rx)
        h1_after = host_rx(lab, 1)
        assert (h1_after[0] - h1_before[0], h1_after[1] - h1_before[1]) == \
            (sent, out["tx_bytes"] - out_before["tx_bytes"])
        if ring == 2048:
            assert out["tx_dropped"] == 0


def test_9000_byte_frames_with_the_fast_path_on(lab_factory, tmp_path):
    """The fast path forwards a frame in fragments to a target whose device takes them
    (NDO_XMIT_SG: a veth does while its peer has GRO or XDP), and punts it to the workers
    for a target that takes none; small frames go through the kernel either way."""
    lab = jumbo_lab(lab_factory, hosts=2)
    s0, s1 = lab.ports
    with running(make_config(lab.ports, tmp_path, switch={"fastpath": "xdp"})) as sw:
        assert ping(lab, 0, 1, 3) and ping(lab, 1, 0, 3)        # both learned, in the kernel
        assert wait_until(lambda: sw.ports[s1].fastpath["target"], 5)

        def through(size, count=5):
            before = sw.port_stats()
            assert ping_df(lab, 0, 1, size=size, count=count)
            after = sw.port_stats()
            return (after[s0]["fastpath"]["rx_packets"] - before[s0]["fastpath"]["rx_packets"],
                    after[s0]["xdp"]["prog_redirected"] - before[s0]["xdp"]["prog_redirected"],
                    after[s1]["fastpath"]["tx_bytes"] - before[s1]["fastpath"]["tx_bytes"])
        fast, workers, nbytes = through(8972)
        assert fast >= 5 and workers == 0 and nbytes >= 5 * 9014, (fast, workers, nbytes)
        fast, workers, _ = through(64)
        assert fast >= 5 and workers == 0
        # a target that takes no fragments: jumbo frames to it take the AF_XDP path
        with sw._lock:
            sw.dp.set_port_fastpath_capable(sw.ports[s1].index, True, False)
        fast, workers, _ = through(8972)
        assert fast == 0 and workers >= 5, (fast, workers)
        fast, workers, _ = through(64)
        assert fast >= 5 and workers == 0
        assert ping_df(lab, 1, 0)
        acc = sw.wait_quiet()           # (at_rest_exact counts fast-path frames as AF_XDP's)
        assert acc["in_flight"] == 0 and acc["placed"] == acc["frames"], acc
        assert no_invalid_descs(sw)


# ---------------------------------------------------------------------------- max_frame

def test_frames_above_max_frame_are_dropped_and_counted(lab_factory, tmp_path):
    lab = jumbo_lab(lab_factory, hosts=2)
    h = lab.hosts
    with running(make_config(lab.ports, tmp_path, switch={"max_frame": 4000})) as sw:
        assert sw.status()["max_frame"] == 4000
        big = eth_frame(BCAST, h[0].mac, payload(5000, 1))
        fits = eth_frame(BCAST, h[0].mac, payload(4000 - 14, 2))
        with capture(lab, 1, seconds=3, max_frames=1) as got:
            send(lab, 0, big, count=7)
            send(lab, 0, fits)
        assert got == [fits]
        s = sw.port_stats()[h[0].port]
        assert s["oversize_dropped"] == 7 and s["xdp"]["prog_oversize"] == 7
        assert s["rx_dropped"] >= 7 and s["rx_packets"] == 1
        # a 4000-byte ping fits, 5000 does not
        assert ping_df(lab, 0, 1, size=4000 - 42, count=1)
        assert not ping_df(lab, 0, 1, size=5000 - 42, count=1)
        at_rest_exact(sw)


def test_a_max_frame_within_a_umem_frame_needs_no_multi_buffer(lab_factory, tmp_path):
    lab = lab_factory(hosts=2)
    h = lab.hosts
    mtu(lab, 1600)
    with running(make_config(lab.ports, tmp_path, switch={"max_frame": 1518})) as sw:
        st = sw.status()
        assert (st["max_frame"], st["multi_buffer"]) == (1518, "off")
        big = eth_frame(BCAST, h[0].mac, payload(1600 - 14, 1))
        fits = eth_frame(BCAST, h[0].mac, payload(1518 - 14, 2))
        with capture(lab, 1, seconds=3, max_frames=1) as got:
            send(lab, 0, big, count=3)
            send(lab, 0, fits)
        assert got == [fits]
        assert sw.port_stats()[h[0].port]["oversize_dropped"] == 3
        at_rest_exact(sw)


def test_max_frame_above_a_umem_frame_is_one_frame_with_4096(lab_factory, tmp_path):
    """With 4096-byte UMEM frames a 3500-byte frame is one descriptor; 9000 bytes are 3."""
    lab = jumbo_lab(lab_factory, hosts=2)
    with running(make_config(lab.ports, tmp_path, switch={"frame_size": 4096,
                                                          "frames": 8192})) as sw:
        assert sw.status()["multi_buffer"] == "on"
        assert ping_df(lab, 0, 1, size=3500) and ping_df(lab, 0, 1)
        sent, got = tcp_transfer(lab, server=1, client=0, nbytes=8 << 20)
        assert sent == got
        at_rest_exact(sw)


# ---------------------------------------------------------------------------- taps

def test_captures_and_mirrors_take_a_jumbo_frame_whole(lab_factory, tmp_path):
    lab = jumbo_lab(lab_factory)
    h = lab.hosts
    with running(make_config(lab.ports, tmp_path)) as sw:
        got = []
        sw.capture_start(h[0].port, "in", sink=lambda frames, end: got.extend(frames))
        sw.mirror_add("m", [h[0].port], "in", h[2].port)
        frame = eth_frame(h[1].mac, h[0].mac, payload(9000 - 14, 5))
        with capture(lab, 2, seconds=3, max_frames=1) as mirrored:
            send(lab, 0, frame)
        assert mirrored == [frame]
        assert wait_until(lambda: got, 5)
        (_, _, direction, length, data), = got
        assert (direction, length, data) == ("in", 9000, frame)
        at_rest_exact(sw)


def test_an_oversize_frame_on_a_queue_the_switch_does_not_serve_goes_to_the_kernel(
        lab_factory, tmp_path):
    """The XDP program drops a frame above max_frame only where a worker serves its queue;
    on another queue it is the kernel's, as every frame there is (review)."""
    lab = lab_factory(hosts=2, queues=2)
    mtu(lab, 9000)
    h = lab.hosts
    with running(make_config(lab.ports, tmp_path, cores=(1,),
                             switch={"max_frame": 4000})) as sw:
        before = sw.port_stats()[h[0].port]["xdp"]
        r = nettool(lab, 0, "udp-flows", "--dst", h[1].ip, "--flows", "64", "--count", "640",
                    "--size", "5000", capture_output=True, text=True)
        assert r.returncode == 0, r.stderr

        def counts():
            after = sw.port_stats()[h[0].port]["xdp"]
            return {k: after[k] - before[k] for k in
                    ("prog_seen", "prog_oversize", "prog_passed", "prog_redirected")}
        # (a veth may drop some before the program sees them: its queue's ring was full)
        assert wait_until(lambda: counts()["prog_seen"] >= 600), counts()
        time.sleep(0.5)
        c = counts()
        assert c["prog_oversize"] > 0 and c["prog_passed"] > 0, c
        assert c["prog_seen"] == c["prog_oversize"] + c["prog_passed"] + c["prog_redirected"], c
        assert c["prog_redirected"] <= 4, c         # the ARP request, nothing oversize
        after = sw.port_stats()[h[0].port]["xdp"]
        assert sw.port_stats()[h[0].port]["oversize_dropped"] == after["prog_oversize"]


def test_a_kernel_without_frags_gets_the_program_without_them(lab_factory, tmp_path,
                                                              monkeypatch):
    """Before 5.18 the kernel has neither frags nor bpf_xdp_get_buff_len(): the program is
    loaded without the flag and with the helper's branches dead (.rodata has_frags = 0), and
    it forwards; frames above max_frame are still dropped and counted."""
    from pyxsw import vocab
    monkeypatch.setattr(vocab, "kernel_at_least", lambda major, minor: (major, minor) < (5, 18))
    lab = lab_factory(hosts=2)
    mtu(lab, 3000)                      # a non-frags program attaches below a page
    h = lab.hosts
    with running(make_config(lab.ports, tmp_path, switch={"max_frame": 2000})) as sw:
        assert ping(lab, 0, 1) and ping_df(lab, 0, 1, size=2000 - 42, count=1)
        big = eth_frame(BCAST, h[0].mac, payload(2500, 1))
        send(lab, 0, big, count=3)
        assert wait_until(lambda: sw.port_stats()[h[0].port]["oversize_dropped"] == 3)
        at_rest_exact(sw)


NO_SG_SHIM = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <sys/socket.h>
#include <linux/if_xdp.h>

/* A kernel before 6.6: an AF_XDP bind with XDP_USE_SG (1 << 4) is refused with EINVAL. */
int bind(int fd, const struct sockaddr *a, socklen_t len)
{
	static int (*real)(int, const struct sockaddr *, socklen_t);

	if (!real)
		real = (int (*)(int, const struct sockaddr *, socklen_t))dlsym(RTLD_NEXT, "bind");
	if (a && a->sa_family == AF_XDP && len >= sizeof(struct sockaddr_xdp)
	    && (((const struct sockaddr_xdp *)a)->sxdp_flags & (1 << 4))) {
		errno = EINVAL;
		return -1;
	}
	return real(fd, a, len);
}
"""


def test_a_kernel_that_refuses_multi_buffer_starts_and_says_so(lab_factory, tmp_path):
    """Where the kernel refuses XDP_USE_SG (before 6.6; here a bind() shim refuses it as such
    a kernel does), the switch binds without it, starts, says once that frames above a UMEM
    frame are dropped, warns about the ports whose MTU lets them in, and drops and counts
    them while the rest forwards."""
    from pyxsw.client import Client
    src, shim = tmp_path / "nosg.c", tmp_path / "nosg.so"
    src.write_text(NO_SG_SHIM)
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(shim), str(src), "-ldl"], check=True)
    lab = jumbo_lab(lab_factory, hosts=2)
    sock = tmp_path / "sw.sock"
    conf = tmp_path / "sw.toml"
    conf.write_text(f'[switch]\nname = "t"\ncores = [1]\n[management]\nsocket = "{sock}"\n'
                    + "".join(f'[[port]]\nname = "{p}"\n' for p in lab.ports))
    proc = subprocess.Popen([sys.executable, "-m", "pyxsw.cli", "run", "-c", str(conf)],
                            env={**os.environ, "LD_PRELOAD": str(shim)},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        assert wait_until(lambda: proc.poll() is not None or ping(lab, 0, 1), timeout=20)
        assert proc.poll() is None
        with Client(str(sock), timeout=5) as c:
            st = c.status()
            assert (st["multi_buffer"], st["max_frame"]) == ("refused", 1792)
            assert ping_df(lab, 0, 1, size=1792 - 14 - 28, count=1)     # one UMEM frame
            assert not ping_df(lab, 0, 1, size=8972, count=2)
            s = c.port_stats(lab.ports[0])[lab.ports[0]]
            assert s["oversize_dropped"] == s["xdp"]["prog_oversize"] >= 2
    finally:
        proc.terminate()
        err = proc.communicate(timeout=30)[1]
    assert proc.returncode == 0, err
    assert err.count("multi-buffer AF_XDP refused") == 1, err
    assert "frames above 1792 bytes (a UMEM frame) are dropped" in err
    assert f"port {lab.ports[0]}: MTU 9000 allows frames of up to 9018 bytes but the switch " \
           f"carries 1792 (a UMEM frame holds 1792" in err, err
