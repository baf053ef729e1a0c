"""Hostile and careless use of capture, mirrors, metrics and reload/save (issue 16): a real
switch over veth ports and namespaces (root).  Each test is a way a user could break it;
what must hold afterwards: no capture or mirror left behind, every UMEM frame accounted for,
the switch forwarding, the other clients undisturbed."""
import socket
import struct
import threading
import time
import tomllib
from contextlib import contextmanager

import msgpack
import pytest

from helpers import BCAST, capture, eth_frame, flooding, make_config, ping, send, wait_until
from pyxsw.client import Client, RpcError
from pyxsw.config import Config, to_toml
from test_ops import served, capturing
from test_vlan import at_rest_exact

pytestmark = pytest.mark.system


def raw(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    return s


def request(s, msgid, method, **params):
    s.sendall(msgpack.packb([0, msgid, method, [params]], use_bin_type=True))


def reset(s):
    """Close with a reset, as a killed client's kernel would on unread data."""
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()


def test_capture_clients_killed_abruptly_leave_no_capture(lab_factory, short_dir, tmp_path):
    lab = lab_factory(hosts=2)
    h0, h1 = lab.hosts
    with served(make_config(lab.ports, tmp_path), short_dir) as (sw, path):
        assert ping(lab, 0, 1)
        socks = [raw(path) for _ in range(12)]
        for i, s in enumerate(socks):
            request(s, 1, "capture.start", port=lab.ports[i % 2])
        for i, s in enumerate(socks):
            if i % 3 == 0:
                time.sleep(0.05)
            reset(s)
        assert wait_until(lambda: not sw._captures, 10), sw._captures
        # and frames on the way to them while they went
        socks = [raw(path) for _ in range(6)]
        for s in socks:
            request(s, 1, "capture.start", port=h0.port)
        capturing(sw, 6)
        send(lab, 1, eth_frame(BCAST, h1.mac, b"to the dead"), count=200)
        for s in socks:
            reset(s)
        assert wait_until(lambda: not sw._captures, 10), sw._captures
        at_rest_exact(sw)
        assert ping(lab, 0, 1)


def test_a_failed_capture_start_leaves_the_connection_free(lab_factory, short_dir, tmp_path):
    """capture.start whose port goes between the check and the start fails (not_found); the
    connection can capture afterwards (it is not `busy` with a capture that never ran)."""
    lab = lab_factory(hosts=2)
    h0, h1 = lab.hosts
    with served(make_config(lab.ports, tmp_path), short_dir) as (sw, path):
        with Client(path) as c:
            with sw._lock:                          # capture_start waits in the executor
                out = {}

                def start():
                    try:
                        out["r"] = c.capture(h0.port)
                    except RpcError as e:
                        out["e"] = e
                t = threading.Thread(target=start)
                t.start()
                time.sleep(0.5)                     # checked by the handler, now waiting
                sw.del_port(h0.port)
            t.join(10)
            assert out["e"].code == "not_found", out
            frames = c.capture(h1.port, count=2, timeout=5)
            send(lab, 0, eth_frame(BCAST, h0.mac, b"x"), count=1)   # h0 is no port now
            send(lab, 1, eth_frame(BCAST, h1.mac, b"y"), count=2)
            assert len(list(frames)) == 2
        assert wait_until(lambda: not sw._captures)


@pytest.mark.parametrize("params", [
    {"snaplen": 0}, {"snaplen": -1}, {"snaplen": 2**40}, {"snaplen": "64"},
    {"count": -1}, {"count": 2**40}, {"count": 1.5}, {"count": True},
    {"direction": "sideways"}, {"port": 7}, {"port": "x" * 300},
    {"port": None}, {"bogus": 1},
])
def test_malformed_capture_params_are_invalid_params(lab_factory, short_dir, tmp_path, params):
    lab = lab_factory(hosts=2)
    with served(make_config(lab.ports, tmp_path), short_dir) as (sw, path):
        with Client(path) as c:
            kw = dict({"port": lab.ports[0]}, **params)
            with pytest.raises(RpcError) as e:
                c.call("capture.start", **kw)
            assert e.value.code == "invalid_params", (params, e.value)
            assert sw._captures == {}
            frames = c.capture(lab.ports[1], count=1, timeout=5)   # the connection still works
            assert ping(lab, 0, 1)
            assert len(list(frames)) == 1


def test_count_one_on_a_busy_port(lab_factory, short_dir, tmp_path):
    lab = lab_factory(hosts=3)
    h0, h1, h2 = lab.hosts
    with served(make_config(lab.ports, tmp_path, switch={"batch": 256}), short_dir) \
            as (sw, path):
        with flooding(lab, 0, eth_frame(BCAST, h0.mac, b"busy"), 500):
            for _ in range(20):
                with Client(path) as c:
                    frames = c.capture(h1.port, count=1, timeout=5)
                    assert len(list(frames)) == 1
                    assert c.capture_result["captured"] == 1
        assert wait_until(lambda: not sw._captures)
        at_rest_exact(sw)
        assert ping(lab, 0, 1) and ping(lab, 1, 2)


def test_a_capture_survives_its_port_going_and_coming_back(lab_factory, short_dir, tmp_path):
    lab = lab_factory(hosts=2)
    h0, h1 = lab.hosts
    with served(make_config(lab.ports, tmp_path), short_dir) as (sw, path):
        with Client(path) as c, Client(path) as admin:
            frames = c.capture(h0.port, direction="in", timeout=3)
            capturing(sw)
            admin.port_del(h0.port)
            send(lab, 0, eth_frame(BCAST, h0.mac, b"while gone"), count=3)
            admin.port_add(h0.port)
            time.sleep(0.3)
            send(lab, 0, eth_frame(BCAST, h0.mac, b"back again"), count=3)
            time.sleep(0.3)
            res = c.capture_stop()
            got = [f for _, _, _, f in frames]
        assert sum(b"back again" in f for f in got) == 3, got
        assert not any(b"while gone" in f for f in got)
        assert res["captured"] == len(got)
        assert wait_until(lambda: not sw._captures)
        at_rest_exact(sw)
        assert ping(lab, 0, 1)


def test_a_mirror_whose_output_went_and_came_back_then_removed(lab_factory, short_dir, tmp_path):
    lab = lab_factory(hosts=3)
    h0, h1, h2 = lab.hosts
    with served(make_config(lab.ports, tmp_path), short_dir) as (sw, path), Client(path) as c:
        c.mirror_add("m", [h0.port], h2.port)
        c.port_del(h2.port)
        assert c.mirror_list()[0]["missing"] == [h2.port]
        assert ping(lab, 0, 1)
        c.port_add(h2.port)
        assert c.mirror_list()[0]["active"]
        with capture(lab, 2, seconds=2) as at_h2:
            time.sleep(0.2)
            send(lab, 0, eth_frame(BCAST, h0.mac, b"copied to h2"), count=2)
        assert sum(b"copied to h2" in f for f in at_h2) == 2       # copies, no flood
        c.mirror_del("m")
        assert ping(lab, 0, 2) and ping(lab, 2, 1)                 # h2 forwards again
        # the output deleted with the mirror gone too, and back
        c.mirror_add("m", [h0.port], h2.port)
        c.port_del(h2.port)
        c.mirror_del("m")
        c.port_add(h2.port)
        assert ping(lab, 0, 2) and ping(lab, 2, 1)
        at_rest_exact(sw)


def test_mirror_storm_while_another_client_captures(lab_factory, short_dir, tmp_path):
    lab = lab_factory(hosts=3)
    h0, h1, h2 = lab.hosts
    cfg = make_config(lab.ports, tmp_path, switch={"batch": 256})
    with served(cfg, short_dir) as (sw, path), Client(path) as watcher, Client(path) as c:
        frames = watcher.capture(h0.port, direction="in", timeout=5)
        with flooding(lab, 0, eth_frame(BCAST, h0.mac, b"storm"), 300):
            for i in range(60):
                c.mirror_add("m", [h0.port], h2.port, direction="both")
                c.mirror_del("m")
        time.sleep(0.3)
        res = watcher.capture_stop()
        got = [f for _, _, _, f in frames]
        assert res["captured"] == len(got) > 0
        assert all(b"storm" in f for f in got)
        assert sw._captures == {} and sw.mirrors == {}
        at_rest_exact(sw)
        assert ping(lab, 0, 2) and ping(lab, 1, 2)


def test_save_then_reload_of_that_file_changes_nothing(lab_factory, short_dir, tmp_path):
    lab = lab_factory(hosts=3)
    h0, h1, h2 = lab.hosts
    conf = tmp_path / "sw.toml"
    conf.write_text(to_toml(make_config(lab.ports, tmp_path), ""))
    with served(Config.load(conf), short_dir) as (sw, path), Client(path) as c:
        c.mirror_add("m", [h1.port, h0.port], h2.port, direction="in")
        c.port_set(h1.port, vlan_mode="trunk", allowed=[10, 20], native=10)
        c.fdb_add("02:00:00:00:0e:01", h0.port)
        c.aging_set(77)
        c.mode_set("interrupt")
        c.fdb_add("02:00:00:00:0e:02", h1.port, vlan=20)       # a tagged static entry
        c.port_set(h2.port, vlan_mode="trunk")                   # every VLAN, no native
        c.port_del(h0.port)                                      # the mirror misses a source
        conf.write_text(c.config_save()["toml"])
        r = c.config_reload()
        assert r["changed"] == [] and r["failed"] == [] and r["restart"] == [], r
        assert [m["name"] for m in c.mirror_list()] == ["m"]
        assert c.status()["mode"] == "interrupt"
        r = c.config_reload()
        assert r["changed"] == [], r
        # the source removed at run time comes back: mirrored again, as before the save
        c.port_add(h0.port)
        assert c.mirror_list()[0]["source"] == sorted([h0.port, h1.port])
        # and a reload then makes the switch what the file says: no h0, the mirror of h1
        r = c.config_reload()
        assert r["failed"] == [] and f"port {h0.port}: removed" in r["changed"], r
        assert c.mirror_list()[0]["source"] == [h1.port]


def test_a_port_in_a_freed_slot_starts_its_counters_at_zero(lab_factory, short_dir, tmp_path):
    """What top, metrics and at_rest_exact read: a port added where another was (its
    datapath slot) has none of that port's traffic in its counters."""
    lab = lab_factory(hosts=3)
    h0, h1, h2 = lab.hosts
    with served(make_config(lab.ports, tmp_path), short_dir) as (sw, path), Client(path) as c:
        assert ping(lab, 0, 1, count=3)
        slot = sw.ports[h1.port].index
        assert sw.port_stats(h1.port)[h1.port]["rx_packets"] >= 3
        c.port_del(h1.port)
        c.port_del(h2.port)
        c.port_add(h2.port)
        assert sw.ports[h2.port].index == slot
        st = sw.port_stats(h2.port)[h2.port]
        assert st["rx_packets"] == st["tx_packets"] == st["xdp"]["prog_redirected"] == 0, st
        c.port_add(h1.port)
        st = sw.port_stats(h1.port)[h1.port]
        assert st["rx_packets"] == st["tx_packets"] == 0, st
        assert ping(lab, 0, 2)
        at_rest_exact(sw)


FAST = {"fastpath": "xdp"}


def frames_at_rest(sw):
    """at_rest_exact's UMEM half (its rx balance counts the fast path's frames too)."""
    acc = sw.wait_quiet()
    placed = acc["pool"] + acc["caches"] + acc["fill"] + acc["rx"] + acc["tx"] + acc["completion"]
    assert acc["in_flight"] == 0 and placed == acc["frames"] == sw.config.switch.frames, acc


@contextmanager
def fast_served(lab, tmp_path, short_dir):
    """A switch with the fast path on, served, every port a target and hosts 0 and 1
    learned (both MACs in the kernel FDB): (switch, socket path)."""
    with served(make_config(lab.ports, tmp_path, switch=FAST), short_dir) as (sw, path):
        assert wait_until(lambda: all(p.fastpath["target"] for p in sw.ports.values()))
        assert ping(lab, 0, 1) and ping(lab, 1, 0)
        yield sw, path


def _fast_rx(sw, port):
    return sw.port_stats(port)[port]["fastpath"]["rx_packets"]


def test_a_killed_capture_client_gives_the_fast_path_back(lab_factory, short_dir, tmp_path):
    from helpers import udp_flows
    lab = lab_factory(hosts=2)
    h0, h1 = lab.hosts
    with fast_served(lab, tmp_path, short_dir) as (sw, path):
        s = raw(path)
        request(s, 1, "capture.start", port=h0.port, count=10**6)
        capturing(sw)
        before = _fast_rx(sw, h0.port)
        udp_flows(lab, 0, h1.ip, flows=2, count=50)
        assert _fast_rx(sw, h0.port) == before         # taken off the fast path
        reset(s)
        assert wait_until(lambda: not sw._captures)
        assert wait_until(lambda: all(p.fastpath["target"] for p in sw.ports.values()))
        before = _fast_rx(sw, h0.port)
        udp_flows(lab, 0, h1.ip, flows=2, count=100)
        assert _fast_rx(sw, h0.port) - before >= 75
        frames_at_rest(sw)


def test_a_fast_path_mirror_whose_output_goes_and_comes_back(lab_factory, short_dir, tmp_path):
    from helpers import udp_flows, udp_sink
    lab = lab_factory(hosts=3)
    h0, h1, h2 = lab.hosts
    with fast_served(lab, tmp_path, short_dir) as (sw, path), Client(path) as c:
        c.mirror_add("m", [h0.port], h2.port, direction="in")
        c.port_del(h2.port)
        c.port_add(h2.port)
        assert wait_until(lambda: not sw.ports[h2.port].fastpath["target"])
        with capture(lab, 2, seconds=3) as at_h2, udp_sink(lab, 1, seconds=3) as sink:
            udp_flows(lab, 0, h1.ip, flows=2, count=40)
        got = [f for f in at_h2 if f[12:14] == b"\x08\x00" and f[23] == 17]
        assert sink["received"] == 40 and len(got) == 40
        c.mirror_del("m")
        assert wait_until(lambda: all(p.fastpath["target"] for p in sw.ports.values()))
        assert ping(lab, 0, 2) and ping(lab, 2, 1)
        frames_at_rest(sw)


def test_capture_start_stop_storm_on_a_fast_path_port_under_traffic(lab_factory, short_dir,
                                                                   tmp_path):
    """The port's traffic moves between the kernel's path and AF_XDP at every start and
    stop while a stream of datagrams crosses it: none is lost or doubled, every UMEM frame
    is back, and the fast path comes back."""
    from helpers import udp_flows, udp_sink
    lab = lab_factory(hosts=2)
    h0, h1 = lab.hosts
    with fast_served(lab, tmp_path, short_dir) as (sw, path), Client(path) as c:
        stop = threading.Event()

        def storm():
            while not stop.is_set():
                c.capture(h0.port, direction="in")
                c.capture_stop()
        t = threading.Thread(target=storm)
        t.start()
        try:
            with udp_sink(lab, 1, seconds=6) as sink:
                udp_flows(lab, 0, h1.ip, flows=4, count=2000)
        finally:
            stop.set()
            t.join(30)
        assert sink["received"] == 2000, sink
        assert wait_until(lambda: not sw._captures)
        assert wait_until(lambda: all(p.fastpath["target"] for p in sw.ports.values()))
        frames_at_rest(sw)
        before = _fast_rx(sw, h0.port)
        udp_flows(lab, 0, h1.ip, flows=2, count=100)
        assert _fast_rx(sw, h0.port) - before >= 75


def test_metrics_clients_that_never_finish_during_port_changes(lab_factory, short_dir,
                                                               tmp_path):
    """Slow and oversized metrics requests fill the endpoint while ports come and go: the
    RPCs go on, and once the slow clients are gone a scrape answers again."""
    import urllib.request
    from pyxsw.mgmt.metrics import MetricsServer
    from pyxsw.mgmt.server import Server
    lab = lab_factory(hosts=3)
    h0, h1, h2 = lab.hosts
    path = str(short_dir / "m.sock")
    from helpers import running
    with running(make_config(lab.ports, tmp_path)) as sw:
        ms = MetricsServer(sw, "127.0.0.1", 0, read_timeout=3)
        srv = Server(sw, path, metrics=ms)
        t = threading.Thread(target=srv.run, kwargs={"use_uvloop": False}, daemon=True)
        t.start()
        try:
            assert srv.started.wait(5)
            host, port = ms.address
            slow = []
            for i in range(40):
                s = socket.create_connection((host, port))
                s.sendall(b"GET /metrics HTTP/1.1\r\nX-Slow: " + (b"a" * (20000 if i % 2 else 10)))
                slow.append(s)
            with Client(path) as c:
                t0 = time.monotonic()
                for _ in range(3):
                    c.port_del(h2.port)
                    c.port_add(h2.port)
                assert c.status()
                assert time.monotonic() - t0 < 10
            for s in slow:
                s.close()
            def scrape():
                try:
                    return urllib.request.urlopen(f"http://{host}:{port}/metrics",
                                                  timeout=5).status == 200
                except OSError:
                    return False
            assert wait_until(scrape, 10)
            assert ping(lab, 0, 2)
        finally:
            srv.request_stop()
            t.join(10)
        with pytest.raises(OSError):
            socket.create_connection((host, port), timeout=2)


def test_ctl_capture_into_a_reader_that_goes_away(lab_factory, short_dir, tmp_path):
    """`pyxsw ctl capture -w - | head -c 100` on a busy port: ctl ends (no traceback,
    no hang) and the capture ends at the switch."""
    import subprocess
    import sys
    lab = lab_factory(hosts=2)
    h0, h1 = lab.hosts
    with served(make_config(lab.ports, tmp_path), short_dir) as (sw, path):
        with flooding(lab, 0, eth_frame(BCAST, h0.mac, b"busy" * 50), 300):
            cmd = f"{sys.executable} -m pyxsw ctl -s {path} capture {h1.port} -w - | head -c 100"
            p = subprocess.run(["sh", "-c", cmd], capture_output=True, timeout=20)
        assert len(p.stdout) == 100
        assert b"Traceback" not in p.stderr, p.stderr.decode()
        assert wait_until(lambda: not sw._captures, 10)
        at_rest_exact(sw)


def test_a_mirror_whose_output_link_is_down(lab_factory, short_dir, tmp_path):
    """Copies to an output whose carrier is down (its peer set down) under a flood: no
    frame is stuck, and the output mirrors again once it is up."""
    lab = lab_factory(hosts=3)
    h0, h1, h2 = lab.hosts
    cfg = make_config(lab.ports, tmp_path, switch={"batch": 256})
    with served(cfg, short_dir) as (sw, path), Client(path) as c:
        assert ping(lab, 0, 1)
        c.mirror_add("m", [h0.port, h1.port], h2.port)
        lab.run(2, "ip", "link", "set", "eth0", "down", check=True)
        assert wait_until(lambda: not sw.ports[h2.port].up, 5)
        for _ in range(5):
            send(lab, 0, eth_frame(BCAST, h0.mac, b"to a dead output"), count=500)
        assert ping(lab, 0, 1)
        at_rest_exact(sw)
        lab.run(2, "ip", "link", "set", "eth0", "up", check=True)
        assert wait_until(lambda: sw.ports[h2.port].up, 5)
        time.sleep(0.3)
        with capture(lab, 2, seconds=2) as at_h2:
            time.sleep(0.2)
            send(lab, 0, eth_frame(BCAST, h0.mac, b"mirrored again"), count=2)
        # received at s0 and sent out of s1 (both mirrored): two copies of each
        assert sum(b"mirrored again" in f for f in at_h2) == 4
        c.mirror_del("m")
        assert ping(lab, 0, 2)
        at_rest_exact(sw)


def _xdp_on(ifname):
    import subprocess
    out = subprocess.run(["ip", "-d", "link", "show", "dev", ifname], capture_output=True,
                         text=True).stdout
    return "prog/xdp" in out or " xdp" in out


@pytest.mark.parametrize("delay", [0.0, 0.05, 0.3])
def test_sighup_racing_sigterm_leaves_nothing_behind(lab_factory, tmp_path, delay):
    """A reload that adds a port, a mirror and a metrics listener, raced by SIGTERM: the
    switch exits, and no XDP program, listener or socket file is left."""
    import signal
    from test_reload import _start, _wait_serving, _write
    lab = lab_factory(hosts=3)
    s0, s1, s2 = lab.ports
    path, sock = tmp_path / "sw.toml", str(tmp_path / "sw.sock")
    _write(path, [{"name": s0}, {"name": s1}], sock)
    proc = _start(path)
    try:
        _wait_serving(proc, sock)
        assert _xdp_on(s0) and not _xdp_on(s2)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            mport = s.getsockname()[1]
        _write(path, [{"name": s0}, {"name": s1}, {"name": s2}], sock)
        path.write_text(path.read_text()
                        + f'\n[metrics]\nlisten = "127.0.0.1:{mport}"\n'
                        + f'\n[[mirror]]\nname = "m"\nsource = ["{s0}"]\noutput = "{s2}"\n')
        proc.send_signal(signal.SIGHUP)
        time.sleep(delay)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    err = proc.stderr.read()
    assert "Traceback" not in err, err
    assert [p for p in lab.ports if _xdp_on(p)] == [], err
    assert not __import__("os").path.exists(sock)
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", mport), timeout=2)


@pytest.mark.parametrize("how", ["capture", "mirror"])
def test_what_the_fast_path_sends_out_of_a_port_is_copied(lab_factory, short_dir, tmp_path, how):
    """A capture (or mirror) of what a port *sends*, with the fast path on: frames that
    another port's program would redirect to it in the kernel are copied too."""
    from helpers import udp_flows, udp_sink
    lab = lab_factory(hosts=3)
    h0, h1, h2 = lab.hosts
    with fast_served(lab, tmp_path, short_dir) as (sw, path), Client(path) as c:
        before = _fast_rx(sw, h0.port)
        udp_flows(lab, 0, h1.ip, flows=4, count=100)
        assert _fast_rx(sw, h0.port) - before >= 75         # h0 -> h1 in the kernel
        if how == "capture":
            frames = c.capture(h1.port, direction="out", timeout=5)
            capturing(sw)
        else:
            c.mirror_add("m", [h1.port], h2.port, direction="out")
        with capture(lab, 2, seconds=3) as at_h2, udp_sink(lab, 1, seconds=3) as sink:
            udp_flows(lab, 0, h1.ip, flows=4, count=200)
        time.sleep(0.3)
        if how == "capture":
            c.capture_stop()
            got = [f for _, _, _, f in frames if f[12:14] == b"\x08\x00" and f[23] == 17]
        else:
            got = [f for f in at_h2 if f[12:14] == b"\x08\x00" and f[23] == 17]
            c.mirror_del("m")
        assert sink["received"] == 200
        assert len(got) == 200, len(got)
        assert wait_until(lambda: all(p.fastpath["target"] for p in sw.ports.values()))
        frames_at_rest(sw)


def test_a_quiet_capture_is_not_told_of_another_captures_losses(lab_factory, short_dir,
                                                                tmp_path):
    """Two captures share the workers' capture rings: frames a busy capture lost there
    are its losses, not those of a capture on a port that saw nothing."""
    lab = lab_factory(hosts=3)
    h0, h1, h2 = lab.hosts
    cfg = make_config(lab.ports, tmp_path, switch={"batch": 256})
    with served(cfg, short_dir) as (sw, path), Client(path) as busy, Client(path) as quiet:
        busy.capture(h0.port, direction="in")
        quiet.capture(h2.port, direction="in")         # h2 sends nothing
        capturing(sw, 2)
        for _ in range(4):
            send(lab, 0, eth_frame(BCAST, h0.mac, b"lots" * 300), count=3000)
        time.sleep(0.5)
        b = busy.capture_stop()
        q = quiet.capture_stop()
        assert b["lost"] > 0, b                         # the rings overflowed
        assert q == {"id": q["id"], "captured": 0, "lost": 0}, (q, b)


def test_captures_that_read_nothing_hold_bounded_memory(lab_factory, short_dir, tmp_path):
    """Many captures of a flooded port whose clients never read: what the switch buffers
    for them all together stays bounded (not 4 MB more for every such client)."""
    from pyxsw.mgmt import capture as capmod
    from pyxsw.mgmt.server import Server
    from helpers import running
    lab = lab_factory(hosts=2)
    h0, h1 = lab.hosts
    path = str(short_dir / "c.sock")
    with running(make_config(lab.ports, tmp_path)) as sw:
        srv = Server(sw, path)
        t = threading.Thread(target=srv.run, kwargs={"use_uvloop": False}, daemon=True)
        t.start()
        try:
            assert srv.started.wait(5)
            socks = [raw(path) for _ in range(24)]
            for s in socks:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                request(s, 1, "capture.start", port=h1.port)
            capturing(sw, len(socks))
            for _ in range(8):
                send(lab, 0, eth_frame(BCAST, h0.mac, b"fill" * 350), count=3000)
            time.sleep(1)
            held = sum(c.writer.transport.get_write_buffer_size() for c in list(srv._conns))
            assert held <= capmod.CAPTURE_BUFFERS + len(socks) * 64 * 2048, held
            with Client(path) as c:                 # the others are still served
                assert c.status()
            for s in socks:
                reset(s)
            assert wait_until(lambda: not sw._captures, 10)
        finally:
            srv.request_stop()
            t.join(10)


@pytest.mark.parametrize("which", ["output", "source"])
def test_a_mirror_port_removed_and_added_under_a_flood(lab_factory, short_dir, tmp_path, which):
    """Copies staged for a mirror's output while it (or the source) is removed: every UMEM
    frame comes back, and the switch forwards and mirrors as before."""
    lab = lab_factory(hosts=4)
    h0, h1, h2, h3 = lab.hosts
    cfg = make_config(lab.ports, tmp_path, switch={"batch": 256})
    with served(cfg, short_dir) as (sw, path), Client(path) as c:
        c.mirror_add("m", [h0.port, h3.port], h2.port)
        with flooding(lab, 0, eth_frame(BCAST, h0.mac, b"storm" * 100), 500):
            victim = h2.port if which == "output" else h0.port
            for _ in range(8):
                c.port_del(victim)
                time.sleep(0.05)
                c.port_add(victim)
        at_rest_exact(sw)
        assert c.mirror_list()[0]["active"]
        with capture(lab, 2, seconds=2) as at_h2:
            time.sleep(0.2)
            send(lab, 3, eth_frame(BCAST, h3.mac, b"still mirrored"), count=2)
        assert sum(b"still mirrored" in f for f in at_h2) == 4     # in at s3, out of s0
        assert ping(lab, 0, 1) and ping(lab, 3, 1)


@pytest.mark.parametrize("words", [
    ("save", "-o", "/nonexistent-dir/x.toml"),
    ("save", "-o", "/tmp"),
    ("capture", "PORT", "-w", "/nonexistent-dir/x.pcap"),
    ("capture", "PORT", "-c", "-1"),
    ("capture", "PORT", "--snaplen", "0"),
    ("capture", "nosuch0"),
    ("mirror", "add", "m", "--source", "PORT", "--output", "PORT"),
])
def test_ctl_refuses_bad_words_with_a_line_not_a_traceback(lab_factory, short_dir, tmp_path,
                                                           words):
    import subprocess
    import sys
    lab = lab_factory(hosts=2)
    with served(make_config(lab.ports, tmp_path), short_dir) as (sw, path):
        words = [lab.ports[0] if w == "PORT" else w for w in words]
        p = subprocess.run([sys.executable, "-m", "pyxsw", "ctl", "-s", path, *words],
                           capture_output=True, text=True, timeout=20, stdin=subprocess.DEVNULL)
        assert p.returncode != 0, (p.stdout, p.stderr)
        assert "Traceback" not in p.stderr and len(p.stderr.strip().splitlines()) <= 3, p.stderr
        assert wait_until(lambda: not sw._captures) and sw.mirrors == {}


def test_save_then_reload_keeps_a_static_entry_waiting_for_its_vlan(lab_factory, short_dir,
                                                                    tmp_path):
    """port.set keeps a static entry in a VLAN the port no longer carries (it works again
    when the port carries it again); ctl save cannot write it (pyxsw run would refuse it), and
    a reload of that file must not remove it."""
    lab = lab_factory(hosts=2)
    h0, h1 = lab.hosts
    conf = tmp_path / "sw.toml"
    conf.write_text(to_toml(make_config(lab.ports, tmp_path), ""))
    mac = "02:00:00:00:0e:03"
    with served(Config.load(conf), short_dir) as (sw, path), Client(path) as c:
        c.port_set(h1.port, vlan_mode="trunk", allowed=[10, 20])
        c.fdb_add(mac, h1.port, vlan=20)
        c.port_set(h1.port, vlan_mode="trunk", allowed=[10])
        assert any(e["mac"] == mac for e in c.fdb_list())
        conf.write_text(c.config_save()["toml"])
        r = c.config_reload()
        assert r["changed"] == [] and r["failed"] == [], r
        c.port_set(h1.port, vlan_mode="trunk", allowed=[10, 20])
        assert [e["vlan"] for e in c.fdb_list() if e["mac"] == mac] == [20]


def test_scrapes_during_a_port_add_and_del_storm_all_answer(lab_factory, short_dir, tmp_path):
    import urllib.request
    from prometheus_client.parser import text_string_to_metric_families
    from pyxsw.mgmt.metrics import MetricsServer
    from pyxsw.mgmt.server import Server
    from helpers import running
    lab = lab_factory(hosts=3)
    h0, h1, h2 = lab.hosts
    path = str(short_dir / "s.sock")
    with running(make_config(lab.ports, tmp_path)) as sw:
        ms = MetricsServer(sw, "127.0.0.1", 0)
        srv = Server(sw, path, metrics=ms)
        t = threading.Thread(target=srv.run, kwargs={"use_uvloop": False}, daemon=True)
        t.start()
        try:
            assert srv.started.wait(5)
            host, port = ms.address
            stop = threading.Event()
            bad = []

            def scrape():
                while not stop.is_set():
                    try:
                        r = urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=10)
                        list(text_string_to_metric_families(r.read().decode()))
                    except Exception as e:          # an HTTP error, or what does not parse
                        bad.append(repr(e))
            scrapers = [threading.Thread(target=scrape) for _ in range(4)]
            for s in scrapers:
                s.start()
            try:
                with Client(path) as c:
                    for _ in range(6):
                        c.port_del(h1.port)
                        c.port_del(h2.port)
                        c.port_add(h2.port)
                        c.port_add(h1.port)
            finally:
                stop.set()
                for s in scrapers:
                    s.join(30)
            assert bad == [] and ms.scrapes > 0 and ms.errors == 0, bad[:3]
            assert ping(lab, 0, 1) and ping(lab, 0, 2)
        finally:
            srv.request_stop()
            t.join(10)


def test_captures_of_one_port_each_get_every_frame_once(lab_factory, short_dir, tmp_path):
    lab = lab_factory(hosts=2)
    h0, h1 = lab.hosts
    with served(make_config(lab.ports, tmp_path), short_dir) as (sw, path):
        clients = [Client(path) for _ in range(5)]
        try:
            gens = [c.capture(h1.port, direction="out", count=0 if i % 2 else 40)
                    for i, c in enumerate(clients)]
            capturing(sw, 5)
            frames = [eth_frame(BCAST, h0.mac, b"n%03d" % i) for i in range(40)]
            for f in frames:
                send(lab, 0, f)
            time.sleep(0.5)
            for i, (c, g) in enumerate(zip(clients, gens)):
                if i % 2:
                    c.capture_stop()
                got = [f for _, _, _, f in g if b"n" in f[14:16]]
                assert [f[14:18] for f in got] == [b"n%03d" % k for k in range(40)], i
                assert c.capture_result["lost"] == 0
        finally:
            for c in clients:
                c.close()
        assert wait_until(lambda: not sw._captures)
