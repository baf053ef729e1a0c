"""System tests of capture and port mirroring (issue 16): a real switch over veth ports and
namespaces, driven through its management socket (root).

What the switch copies is compared with what the hosts themselves see (a packet socket in
the host's namespace, helpers.capture) and read back with tcpdump, not with pyxsw's code.
"""
import os
import signal
import tomllib
import subprocess
import sys
import threading
import time
from contextlib import contextmanager

import pytest

from helpers import BCAST, capture, eth_frame, flooding, make_config, ping, running, send, \
    udp_flows, udp_sink, wait_until
from pyxsw import pcap
from pyxsw.config import Config
from pyxsw.client import Client, RpcError
from pyxsw.mgmt.server import Server

pytestmark = pytest.mark.system
FAST = {"fastpath": "xdp"}


@contextmanager
def served(cfg, short_dir):
    """A started switch and its management server: (switch, socket path)."""
    path = str(short_dir / "sw.sock")
    with running(cfg) as sw:
        srv = Server(sw, path)
        t = threading.Thread(target=srv.run, kwargs={"use_uvloop": False}, daemon=True)
        t.start()
        try:
            assert srv.started.wait(5)
            yield sw, path
        finally:
            srv.request_stop()
            t.join(10)


def mac(b):
    return ":".join(f"{x:02x}" for x in b)


def icmp_type(frame):
    """The ICMP type of an untagged IPv4 ICMP frame, else None."""
    if frame[12:14] != b"\x08\x00" or frame[23] != 1:
        return None
    return frame[14 + (frame[14] & 0xf) * 4]


def ctl_capture(path, *args):
    return subprocess.Popen([sys.executable, "-m", "pyxsw", "ctl", "-s", path, "capture", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def capturing(sw, n=1):
    assert wait_until(lambda: len(sw._captures) >= n, 10), "the capture did not start"


# ---------------------------------------------------------------------------- capture

def test_a_ping_captured_to_pcap_is_what_the_hosts_saw(lab_factory, short_dir, tmp_path):
    lab = lab_factory(hosts=2)
    h0, h1 = lab.hosts
    with served(make_config(lab.ports, tmp_path), short_dir) as (sw, path):
        assert ping(lab, 0, 1)                      # ARP done, MACs learned
        out = tmp_path / "ping.pcap"
        p = ctl_capture(path, h0.port, "-w", str(out))
        try:
            capturing(sw)
            with capture(lab, 1, seconds=3, max_frames=1) as at_h1, \
                    capture(lab, 0, seconds=3, max_frames=1) as at_h0:
                assert ping(lab, 0, 1)
        finally:
            time.sleep(0.3)                         # the reply's copy reaches ctl
            p.send_signal(signal.SIGINT)
            _, err = p.communicate(timeout=10)
        assert p.returncode == 0, err
        linktype, frames = pcap.read(out.read_bytes())
        assert linktype == pcap.LINKTYPE_ETHERNET
        requests = [f for _, n, f in frames if icmp_type(f) == 8]
        replies = [f for _, n, f in frames if icmp_type(f) == 0]
        # byte for byte what the hosts received: the request at h1, the reply at h0
        want_req = [f for f in at_h1 if icmp_type(f) == 8]
        want_rep = [f for f in at_h0 if icmp_type(f) == 0]
        assert want_req and want_rep
        assert requests == want_req[:1] and replies == want_rep[:1]
        assert all(n == len(f) for _, n, f in frames)
        now = time.time_ns()
        assert all(now - 60e9 < t <= now for t, _, _ in frames)   # the workers' clock
        assert f"{len(frames)} frames captured, 0 lost".encode() in err
        # and tcpdump reads it
        td = subprocess.run(["tcpdump", "-nn", "-e", "-r", str(out)], capture_output=True,
                            text=True)
        assert td.returncode == 0, td.stderr
        assert "ICMP echo request" in td.stdout and "ICMP echo reply" in td.stdout
        assert h0.mac in td.stdout and h1.mac in td.stdout
        assert sw._captures == {}                   # Ctrl-C stopped it at the switch


def test_a_capture_piped_into_tcpdump(lab_factory, short_dir, tmp_path):
    lab = lab_factory(hosts=2)
    with served(make_config(lab.ports, tmp_path), short_dir) as (sw, path):
        assert ping(lab, 0, 1)
        cmd = (f"{sys.executable} -m pyxsw ctl -s {path} capture {lab.ports[1]} -c 4 -w - "
               f"| tcpdump -nn -r -")
        p = subprocess.Popen(["sh", "-c", cmd], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
        try:
            capturing(sw)
            assert ping(lab, 0, 1, count=2)
            out, err = p.communicate(timeout=15)
        finally:
            if p.poll() is None:
                p.kill()
        assert p.returncode == 0, err
        assert out.count("ICMP echo request") == 2 and out.count("ICMP echo reply") == 2, out
        assert "4 frames captured, 0 lost" in err
        assert wait_until(lambda: not sw._captures)


@pytest.mark.parametrize("direction", ["in", "out"])
def test_direction_filters(lab_factory, short_dir, tmp_path, direction):
    lab = lab_factory(hosts=2)
    h0, h1 = lab.hosts
    with served(make_config(lab.ports, tmp_path), short_dir) as (sw, path):
        assert ping(lab, 0, 1)
        got = []
        with Client(path) as c:
            frames = c.capture(h0.port, direction=direction, timeout=5)
            assert ping(lab, 0, 1, count=3)
            send(lab, 1, eth_frame(BCAST, h1.mac, b"to all"), count=2)
            time.sleep(0.3)
            res = c.capture_stop()
            got = list(frames)
        assert res["lost"] == 0 and res["captured"] == len(got) >= 3
        assert all(d == direction for _, d, _, _ in got)
        srcs = {mac(f[6:12]) for _, _, _, f in got}
        # in: what h0 sent; out: what reached h0 (the replies and h1's broadcasts)
        assert srcs == ({h0.mac} if direction == "in" else {h1.mac}), srcs
        kinds = {icmp_type(f) for _, _, _, f in got}
        assert (8 in kinds) == (direction == "in") and (0 in kinds) == (direction == "out")


def test_count_snaplen_and_a_second_capture_on_one_connection(lab_factory, short_dir, tmp_path):
    lab = lab_factory(hosts=2)
    h0, h1 = lab.hosts
    with served(make_config(lab.ports, tmp_path), short_dir) as (sw, path):
        with Client(path) as c:
            frames = c.capture(h1.port, direction="out", snaplen=20, count=3, timeout=5)
            send(lab, 0, eth_frame(BCAST, h0.mac, bytes(range(100))), count=5)
            got = list(frames)                      # ends by itself after 3
            assert c.capture_result["captured"] == 3 and len(got) == 3
            assert all(len(f) == 20 and n == 114 for _, _, n, f in got)
            assert wait_until(lambda: not sw._captures)
            with pytest.raises(RpcError) as e:
                c.capture_stop()
            assert e.value.code == "not_found"
            c.capture(h1.port)
            with pytest.raises(RpcError) as e:      # one at a time per connection
                c.capture(h0.port)
            assert e.value.code == "busy"
            with pytest.raises(RpcError) as e:
                Client(path).capture("nosuch0")
            assert e.value.code == "not_found"
        # the connection closed: its capture is over at the switch
        assert wait_until(lambda: not sw._captures)


def _fast_counts(sw, port):
    st = sw.port_stats(port)[port]["fastpath"]
    return st["rx_packets"], st["tx_packets"]


def test_a_capture_on_a_fast_path_port_sees_its_traffic(lab_factory, short_dir, tmp_path):
    lab = lab_factory(hosts=2)
    h0, h1 = lab.hosts
    cfg = make_config(lab.ports, tmp_path, switch=FAST)
    with served(cfg, short_dir) as (sw, path):
        assert wait_until(lambda: all(p.fastpath["target"] for p in sw.ports.values()))
        assert ping(lab, 0, 1) and ping(lab, 1, 0)
        before = _fast_counts(sw, h0.port)
        udp_flows(lab, 0, h1.ip, flows=4, count=200)
        assert _fast_counts(sw, h0.port)[0] - before[0] >= 150     # the kernel forwards them
        with Client(path) as c:
            frames = c.capture(h0.port, direction="in", timeout=5)
            before = _fast_counts(sw, h0.port)
            with udp_sink(lab, 1, seconds=3) as sink:
                udp_flows(lab, 0, h1.ip, flows=4, count=200)
            time.sleep(0.3)
            c.capture_stop()
            got = [f for _, _, _, f in frames if f[12:14] == b"\x08\x00" and f[23] == 17]
        assert sink["received"] == 200
        assert len(got) == 200                      # every datagram, none in the kernel
        assert _fast_counts(sw, h0.port)[0] == before[0]
        # over: its traffic takes the kernel's path again
        before = _fast_counts(sw, h0.port)
        udp_flows(lab, 0, h1.ip, flows=4, count=200)
        assert _fast_counts(sw, h0.port)[0] - before[0] >= 150


# ---------------------------------------------------------------------------- mirrors

def _mirror_case(lab, sw, path, fast=False):
    h0, h1, h2 = lab.hosts
    with Client(path) as c:
        m = c.mirror_add("m0", [h1.port], h2.port, direction="in")
        assert m == {"name": "m0", "source": [h1.port], "direction": "in",
                     "output": h2.port, "active": True, "missing": []}
        assert c.mirror_list() == [m]
        assert ping(lab, 0, 1) and ping(lab, 1, 0)
        with capture(lab, 2, seconds=3) as at_h2, capture(lab, 1, seconds=3) as at_h1:
            time.sleep(0.2)
            # h1 -> h0: received at s1, mirrored; h0 -> h1: sent out of s1, not mirrored;
            # h0's broadcast: the output is out of the flood set
            send(lab, 1, eth_frame(h0.mac, h1.mac, b"mirror me 1"), count=3)
            send(lab, 0, eth_frame(h1.mac, h0.mac, b"do not mirror"), count=3)
            send(lab, 0, eth_frame(BCAST, h0.mac, b"flood, not to h2"), count=2)
        payloads = [f for f in at_h2 if b"mirror" in f or b"flood" in f]
        assert payloads == [eth_frame(h0.mac, h1.mac, b"mirror me 1")] * 3, payloads
        assert sum(b"flood, not to h2" in f for f in at_h1) == 2    # the flood did go out
        # nothing learned behind the output, and what it receives is dropped
        before = sw.port_stats(h2.port)[h2.port]["mirror_dropped"]
        send(lab, 2, eth_frame(h0.mac, h2.mac, b"from the output"), count=4)
        assert wait_until(lambda: sw.port_stats(h2.port)[h2.port]["mirror_dropped"]
                          - before == 4)
        assert not any(e["mac"] == h2.mac for e in sw.fdb_list())
        c.mirror_del("m0")
        assert c.mirror_list() == []
        with capture(lab, 2, seconds=2) as at_h2:
            time.sleep(0.2)
            send(lab, 0, eth_frame(BCAST, h0.mac, b"flood, to h2 again"), count=2)
        assert sum(b"flood, to h2 again" in f for f in at_h2) == 2


def test_a_mirror_port_sees_exactly_the_mirrored_frames(lab_factory, short_dir, tmp_path):
    lab = lab_factory(hosts=3)
    with served(make_config(lab.ports, tmp_path), short_dir) as (sw, path):
        _mirror_case(lab, sw, path)


def test_a_mirror_on_fast_path_ports(lab_factory, short_dir, tmp_path):
    lab = lab_factory(hosts=3)
    with served(make_config(lab.ports, tmp_path, switch=FAST), short_dir) as (sw, path):
        assert wait_until(lambda: all(p.fastpath["target"] for p in sw.ports.values()))
        h0, h1, h2 = lab.hosts
        assert ping(lab, 0, 1) and ping(lab, 1, 0)
        with Client(path) as c:
            c.mirror_add("m1", [h0.port], h2.port, direction="both")
            assert not sw.ports[h2.port].fastpath["target"]
            assert "mirror" in sw.ports[h2.port].fastpath["reason"]
            with capture(lab, 2, seconds=3) as at_h2, udp_sink(lab, 1, seconds=3) as sink:
                udp_flows(lab, 0, h1.ip, flows=2, count=40)
            got = [f for f in at_h2 if f[12:14] == b"\x08\x00" and f[23] == 17]
            assert sink["received"] == 40 and len(got) == 40
            c.mirror_del("m1")
        assert wait_until(lambda: all(p.fastpath["target"] for p in sw.ports.values()))


def test_mirrors_from_the_config_and_their_errors(lab_factory, short_dir, tmp_path):
    lab = lab_factory(hosts=3)
    h0, h1, h2 = lab.hosts
    cfg = make_config(lab.ports, tmp_path)
    cfg = type(cfg).from_dict(dict(cfg.to_dict(), mirror=[
        {"name": "span", "source": [h0.port, h1.port], "output": h2.port}]))
    with served(cfg, short_dir) as (sw, path):
        with Client(path) as c:
            assert c.mirror_list() == [{"name": "span", "source": sorted([h0.port, h1.port]),
                                        "direction": "both", "output": h2.port,
                                        "active": True, "missing": []}]
            for args, code in [(("span", [h0.port], h1.port), "exists"),
                               (("x", [h2.port], h0.port), "invalid_params"),  # an output
                               (("y", [h0.port], h0.port), "invalid_params"),
                               (("z", ["nosuch0"], h0.port), "not_found")]:
                with pytest.raises(RpcError) as e:
                    c.mirror_add(*args)
                assert e.value.code == code, args
            with pytest.raises(RpcError) as e:
                c.mirror_del("nope")
            assert e.value.code == "not_found"
            # the port goes: the mirror stays, missing it; it comes back with the port
            c.port_del(h0.port)
            assert c.mirror_list()[0]["missing"] == [h0.port]
            # meanwhile `ctl save` writes what `pyxsw run` takes: the mirror without the port
            # that is gone, no static entry in a VLAN its port no longer carries
            c.fdb_add("02:00:00:00:0e:01", h1.port)
            c.port_set(h1.port, vlan=10)
            saved = tomllib.loads(c.config_save()["toml"])
            again = Config.from_dict(saved)
            assert [m.sources for m in again.mirrors] == [(h1.port,)]
            assert again.fdb.static == ()
            c.port_set(h1.port, vlan=1)
            c.port_add(h0.port)
            assert c.mirror_list()[0]["active"]
            with capture(lab, 2, seconds=3) as at_h2:
                time.sleep(0.2)
                send(lab, 0, eth_frame(h1.mac, h0.mac, b"mirrored twice?"), count=1)
            # received at s0 (in) and sent out of s1 (out): a copy of each
            assert sum(b"mirrored twice?" in f for f in at_h2) == 2


# ---------------------------------------------------------------------------- reload and save

def test_reload_adds_and_removes_mirrors_and_moves_the_metrics_endpoint(lab_factory, short_dir,
                                                                       tmp_path):
    import socket
    import tomllib
    import urllib.request
    from pyxsw.config import Config
    lab = lab_factory(hosts=3)
    h0, h1, h2 = lab.hosts
    base = make_config(lab.ports, tmp_path).to_dict()
    conf = tmp_path / "sw.toml"
    from pyxsw.config import to_toml

    def write(**extra):
        conf.write_text(to_toml(Config.from_dict(dict(base, **extra)), ""))

    def free_port():
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]

    write()
    with served(Config.load(conf), short_dir) as (sw, path), Client(path) as c:
        port = free_port()
        write(mirror=[{"name": "m0", "source": [h0.port], "output": h2.port}],
              metrics={"listen": f"127.0.0.1:{port}"})
        r = c.config_reload()
        assert r["failed"] == [] and len(r["changed"]) == 2, r
        assert [m["name"] for m in c.mirror_list()] == ["m0"]
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read()
        assert b"pyxsw_port_rx_packets_total" in body
        saved = tomllib.loads(c.config_save()["toml"])
        assert saved["mirror"] == [{"name": "m0", "source": [h0.port], "direction": "both",
                                    "output": h2.port}]
        assert saved["metrics"] == {"listen": f"127.0.0.1:{port}"}
        with capture(lab, 2, seconds=2) as at_h2:
            time.sleep(0.2)
            send(lab, 0, eth_frame(BCAST, h0.mac, b"reloaded mirror"), count=2)
        assert sum(b"reloaded mirror" in f for f in at_h2) == 2     # copies, not a flood
        write()
        r = c.config_reload()
        assert r["failed"] == [] and len(r["changed"]) == 2, r
        assert c.mirror_list() == []
        with pytest.raises(OSError):
            urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2)


def test_a_new_capture_gets_no_frame_of_one_that_ended(lab_factory, tmp_path):
    """Frames a capture's ring still held when it ended are not the next capture's.  The
    end is staged so that frames surely stay behind: the switch's lock held (housekeeping
    drains nothing meanwhile) while the frames are captured and the capture ends."""
    lab = lab_factory(hosts=2)
    h0, h1 = lab.hosts
    with running(make_config(lab.ports, tmp_path)) as sw:
        got = []
        with sw._lock:
            old = sw.capture_start(h1.port, "out", sink=lambda frames, end: got.extend(frames))
            send(lab, 0, eth_frame(BCAST, h0.mac, b"old"), count=5)
            time.sleep(0.3)
            del sw._captures[old]           # over, its frames left in the ring
            sw._apply_ops()
        new = []
        sw.capture_start(h1.port, "out", sink=lambda frames, end: new.extend(frames))
        send(lab, 0, eth_frame(BCAST, h0.mac, b"new"), count=2)
        assert wait_until(lambda: len(new) >= 2)
        time.sleep(0.3)
        assert [b"new" in f[4] for f in new] == [True, True], new
        assert got == []


def test_mirrors_changing_under_traffic_lose_and_double_no_frame(lab_factory, short_dir, tmp_path):
    """Mirrors added and removed while floods cross the switch (the output's index above
    its source's, a batch of 256): every UMEM frame stays accounted for, and the switch
    forwards as before."""
    from test_vlan import at_rest_exact
    lab = lab_factory(hosts=3)
    h0, h1, h2 = lab.hosts
    cfg = make_config(lab.ports, tmp_path, switch={"batch": 256})
    with served(cfg, short_dir) as (sw, path), Client(path) as c:
        with flooding(lab, 0, eth_frame(BCAST, h0.mac, b"storm"), 500):
            for i in range(100):
                c.mirror_add("m", [h0.port], h2.port, direction="both")
                c.mirror_del("m")
        at_rest_exact(sw)
        assert ping(lab, 0, 2) and ping(lab, 1, 2)


def test_a_capture_stopped_after_the_switch_stopped_is_no_error(lab_factory, tmp_path):
    """A client that goes away while the switch shuts down stops its capture late."""
    lab = lab_factory(hosts=2)
    with running(make_config(lab.ports, tmp_path)) as sw:
        cid = sw.capture_start(lab.ports[0], "both", sink=lambda frames, end: None)
    assert sw.capture_stop(cid) == {"captured": 0, "lost": 0}
    with pytest.raises(KeyError):
        sw.capture_stop(cid)


def test_a_capture_on_a_mirror_output_sees_what_arrives_there(lab_factory, short_dir, tmp_path):
    """Review: the output forwards nothing of what it receives, but a capture `in` on it
    (what the monitor sends back) sees it."""
    lab = lab_factory(hosts=3)
    h0, h1, h2 = lab.hosts
    with served(make_config(lab.ports, tmp_path), short_dir) as (sw, path), Client(path) as c:
        c.mirror_add("m", [h0.port], h2.port, direction="in")
        frames = c.capture(h2.port, direction="in", count=3, timeout=10)
        send(lab, 2, eth_frame(BCAST, h2.mac, b"from the monitor"), count=3)
        got = list(frames)
        assert [b"from the monitor" in f for _, _, _, f in got] == [True] * 3
        assert sw.port_stats(h2.port)[h2.port]["mirror_dropped"] >= 3
