"""Attacks and faults (root, namespaces): the switch keeps forwarding and loses nothing."""
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from helpers import link_flags, mac_bytes, make_config, nettool, ping, running, send

pytestmark = pytest.mark.system
ROOT = Path(__file__).resolve().parent.parent


def test_mac_flooding_attack(lab_factory, tmp_path):
    """200,000 random source MACs from one host: static entries stay, the table stays within
    its capacity, the attacker's port stops learning at its limit, the others still talk."""
    lab = lab_factory(hosts=3)
    cfg = make_config(lab.ports, tmp_path, capacity=4096, port_limit=1000)
    with running(cfg) as sw:
        sw.fdb_add("02:00:00:00:5a:5a", lab.ports[2])
        assert ping(lab, 1, 2) and ping(lab, 2, 1)
        attack = lab.popen(0, sys.executable, str(Path(__file__).with_name("nettool.py")), "spray",
                           "--count", "200000", stdout=subprocess.PIPE, text=True)
        try:
            during = [ping(lab, a, b) for a, b in [(1, 2), (2, 1), (1, 2)]]
            out, _ = attack.communicate(timeout=300)
        finally:
            if attack.poll() is None:
                attack.kill()
        assert attack.returncode == 0 and "200000" in out
        assert all(during)
        fdb = sw.fdb_list()
        counters = sw.status()["fdb"]
        assert len(fdb) <= 4096 and counters["entries"] == len(fdb)
        on_attacker = [e for e in fdb if e["port"] == lab.ports[0]]
        assert len(on_attacker) == 1000                             # the per-port limit
        assert counters["learn_limited"] > 100000                   # ... counted
        assert {"mac": "02:00:00:00:5a:5a", "vlan": 1, "port": lab.ports[2], "age": 0,
                "static": True} in fdb
        assert {e["mac"] for e in fdb} >= {lab.hosts[1].mac, lab.hosts[2].mac}
        assert all(ping(lab, a, b) for a, b in [(1, 2), (2, 1), (0, 1)])
        acc = sw.wait_quiet()
        assert acc["in_flight"] == 0


def run_cli(*args, timeout=60, **kw):
    return subprocess.run([sys.executable, "-m", "pyxsw.cli", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout, **kw)


def write_conf(tmp_path, ports, switch="", management=None):
    conf = tmp_path / "sw.toml"
    sock = management or f'socket = "{tmp_path}/sw.sock"'
    conf.write_text(f'[switch]\nname = "t"\ncores = [1]\n{switch}\n[management]\n{sock}\n'
                    + "".join(f'[[port]]\nname = "{p}"\n' for p in ports))
    return conf


@pytest.mark.parametrize("case", ["missing-interface", "umem", "cores", "socket-dir"])
def test_start_up_errors_are_one_line_exit_2_or_75_and_leave_nothing(lab_factory, tmp_path,
                                                                     case):
    """2: the file is wrong as written.  75 (EX_TEMPFAIL): the machine is not ready for it
    yet, as an interface missing at boot, which the systemd unit retries."""
    lab = lab_factory(hosts=2)
    ports = list(lab.ports)
    switch, management, key, code = "", None, None, 2
    if case == "missing-interface":
        ports.append("nope0")
        key, code = "port[2].name", 75
    elif case == "umem":
        switch = "frames = 134217728"                   # 256 GiB of frames
        key = "switch.frames"
    elif case == "cores":
        switch = "cores = [1, 64]"
        key = "switch.cores[1]"
    else:
        (tmp_path / "ro").mkdir(mode=0o500)
        management = 'socket = "/proc/pyxsw-none/sw.sock"'
        key = "management.socket"
    if case == "cores":
        conf = tmp_path / "sw.toml"
        conf.write_text(f'[switch]\nname = "t"\ncores = [1, 64]\n[management]\n'
                        f'socket = "{tmp_path}/sw.sock"\n'
                        + "".join(f'[[port]]\nname = "{p}"\n' for p in ports))
    else:
        conf = write_conf(tmp_path, ports, switch, management)
    r = run_cli("run", "-c", str(conf))
    assert r.returncode == code, r.stderr
    assert r.stderr.count("\n") == 1 and f"{conf}: {key}: " in r.stderr, r.stderr
    for p in lab.ports:                                 # nothing left attached or promiscuous
        flags, xdp, promiscuity = link_flags(p)
        assert not xdp and promiscuity == 0
    assert not (tmp_path / "sw.sock").exists()


def _conf(ports, sock, switch="", fdb="", management="", port1=""):
    """A config file's bytes: a switch on `ports`, with lines added to its sections."""
    return (f'[switch]\nname = "t"\ncores = [1]\n{switch}\n[fdb]\n{fdb}\n'
            f'[management]\nsocket = "{sock}"\n{management}\n'
            + "".join(f'[[port]]\nname = "{p}"\n' for p in ports) + port1 + "\n").encode()


# Files that used to end in a traceback, an empty reason, the wrong key, a hang or a stalled
# machine: (the file's bytes from ports and socket path, the key, words of the reason).
BAD_RUNS = {
    "frames-2^32": (lambda P, S: _conf(P, S, switch="frames = 4294967296"),
                    "switch.frames", "at most 4294967295"),
    "ring_size-2^32": (lambda P, S: _conf(P, S, switch="ring_size = 4294967296"),
                       "switch.ring_size", "at most 32768"),
    "capacity-2^32": (lambda P, S: _conf(P, S, fdb="capacity = 4294967296"),
                      "fdb.capacity", "at most 16777216"),
    "aging-2^32": (lambda P, S: _conf(P, S, fdb="aging = 4294967296"),
                   "fdb.aging", "at most 4294967295"),
    "port_limit-2^32": (lambda P, S: _conf(P, S, fdb="port_limit = 4294967296"),
                        "fdb.port_limit", "at most 16777216"),
    "flood_limit-2^32": (lambda P, S: _conf(P, S, port1="flood_limit = 4294967296"),
                         "port[1].flood_limit", "at most 4294967295"),
    "frames-2^32-1": (lambda P, S: _conf(P, S, switch="frames = 4294967295"),
                      "switch.frames", "4294967295 frames of 2048 bytes need 8.0 TiB of memory"),
    "frames-1": (lambda P, S: _conf(P, S, switch="frames = 1"),
                 "switch.frames", "at least 256 for 2 port(s) x 1 queue(s)"),
    "capacity-2^31-1": (lambda P, S: _conf(P, S, fdb="capacity = 2147483647"),
                        "fdb.capacity", "at most 16777216"),
    "ring_size-2^31": (lambda P, S: _conf(P, S, switch="ring_size = 2147483648"),
                       "switch.ring_size", "at most 32768"),
    "invalid-utf8": (lambda P, S: _conf(P, S).replace(b'name = "t"', b'name = "t\xff"'),
                     "-", "not valid UTF-8: byte 0xff"),
    "nested-2000": (lambda P, S: _conf(P, S, fdb="x = " + "[" * 2000 + "]" * 2000),
                    "-", "nested too deeply"),
    "digits-5000": (lambda P, S: _conf(P, S, fdb="capacity = " + "9" * 5000), "-", "not valid TOML"),
    "no-such-group": (lambda P, S: _conf(P, S, management='group = "no-such-group-pyxsw"'),
                      "management.group", "no such group"),
}


@pytest.mark.parametrize("case", list(BAD_RUNS))
def test_bad_values_are_one_line_exit_2_quickly_and_leave_nothing(lab_factory, tmp_path, case):
    lab = lab_factory(hosts=2)
    make, key, words = BAD_RUNS[case]
    conf, sock = tmp_path / "sw.toml", tmp_path / "sw.sock"
    conf.write_bytes(make(lab.ports, sock))
    t0 = time.monotonic()
    r = run_cli("run", "-c", str(conf), timeout=30)
    assert time.monotonic() - t0 < 10                   # refused, not spinning or allocating
    assert r.returncode == 2, r.stderr
    head = f"{conf}: {key}: "
    assert r.stderr.count("\n") == 1 and r.stderr.startswith(head), r.stderr
    reason = r.stderr[len(head):].strip()
    assert reason and words in reason, r.stderr
    for p in lab.ports:                                 # nothing left attached or promiscuous
        flags, xdp, promiscuity = link_flags(p)
        assert not xdp and promiscuity == 0
    assert not sock.exists()


def test_management_group_may_be_gid_0(lab_factory, tmp_path):
    lab = lab_factory(hosts=2)
    sock = tmp_path / "sw.sock"
    conf = tmp_path / "sw.toml"
    conf.write_bytes(_conf(lab.ports, sock, management='group = "0"'))
    proc = subprocess.Popen([sys.executable, "-m", "pyxsw.cli", "run", "-c", str(conf)],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 20
        while run_cli("ctl", "-s", str(sock), "status").returncode != 0:
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.2)
        st = sock.stat()
        assert st.st_gid == 0 and st.st_mode & 0o777 == 0o660
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
    for p in lab.ports:
        flags, xdp, promiscuity = link_flags(p)
        assert not xdp and promiscuity == 0


def test_flood_limit_near_2_32_limits_nothing(lab_factory, tmp_path):
    # The per-window share was rounded up in 32 bits: 2**32 - 1 wrapped to 1 flood per 100 ms.
    lab = lab_factory(hosts=2)
    storm = b"\xff" * 6 + mac_bytes(lab.hosts[0].mac) + b"\x88\xb5" + b"storm".ljust(46, b".")
    cfg = make_config(lab.ports, tmp_path, port_extra={lab.ports[0]: {"flood_limit": 2**32 - 1}})
    with running(cfg) as sw:
        send(lab, 0, storm, 2000)
        time.sleep(0.3)
        st = sw.port_stats(lab.ports[0])[lab.ports[0]]
        assert st["flood_limited"] == 0 and st["flooded"] > 0, st


def test_socket_refuses_unprivileged_users(lab_factory, tmp_path):
    lab = lab_factory(hosts=2)
    os.chmod(tmp_path, 0o755)
    with running(make_config(lab.ports, tmp_path)) as sw:
        from pyxsw.mgmt.server import Server
        server = Server(sw, str(tmp_path / "sw.sock"))
        t = threading.Thread(target=server.run, kwargs={"stop_signals": ()}, daemon=True)
        t.start()
        try:
            assert server.started.wait(10)
            assert oct((tmp_path / "sw.sock").stat().st_mode & 0o777) == oct(0o600)
            code = ("import socket,sys; s=socket.socket(socket.AF_UNIX); "
                    f"s.connect({str(tmp_path / 'sw.sock')!r})")
            r = subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
                                sys.executable, "-c", code], capture_output=True, text=True)
            assert r.returncode != 0 and "PermissionError" in r.stderr, r.stderr
            with socket.socket(socket.AF_UNIX) as s:      # root still gets in
                s.connect(str(tmp_path / "sw.sock"))
        finally:
            server.request_stop()
            t.join(10)


def test_bad_frames_are_dropped_or_forwarded_and_counted(lab_factory, tmp_path):
    """Header-only frames, odd EtherTypes, frames bigger than a UMEM frame (a chain of two)
    and bigger than max_frame: forwarded when the rules say so, dropped and counted
    otherwise, never a crash or a lost frame."""
    lab = lab_factory(hosts=2)
    for i, p in enumerate(lab.ports):               # room for frames over 2048 bytes
        subprocess.run(["ip", "link", "set", p, "mtu", "3000"], check=True)
        lab.run(i, "ip", "link", "set", "eth0", "mtu", "3000", check=True)
    with running(make_config(lab.ports, tmp_path, xdp_mode="generic",
                             switch={"max_frame": 2500})) as sw:
        h0, h1 = lab.hosts
        assert ping(lab, 0, 1)
        dst, src = mac_bytes(h1.mac), mac_bytes(h0.mac)
        frames = [dst + src + b"\x88\xb5",                           # header only
                  dst + src + b"\xff\xff" + bytes(46),              # reserved EtherType
                  dst + src + b"\x00\x01" + bytes(46),              # a length, not a type
                  dst + src + b"\x88\xb5" + bytes(2386),           # 2400 bytes: 2 UMEM frames
                  dst + src + b"\x88\xb5" + bytes(2986)]            # 3000 bytes > max_frame
        for f in frames:
            r = nettool(lab, 0, "send", "--ifname", "eth0", "--hex", f.hex(), "--count", "10",
                        capture_output=True, text=True)
            assert r.returncode == 0, r.stderr
        time.sleep(0.5)
        st = sw.port_stats()
        s0, s1 = st[lab.ports[0]], st[lab.ports[1]]
        assert s0["rx_packets"] >= 40 and s1["tx_packets"] >= 40   # the well-formed ones
        assert s1["tx_bytes"] >= 10 * 2400
        assert s0["oversize_dropped"] == s0["xdp"]["prog_oversize"] == 10   # counted
        assert s0["rx_dropped"] >= 10
        assert ping(lab, 0, 1) and ping(lab, 1, 0)
        assert sw.wait_quiet()["in_flight"] == 0


def test_sigterm_under_load_exits_quickly_and_cleanly(lab_factory, tmp_path):
    lab = lab_factory(hosts=2)
    conf = write_conf(tmp_path, lab.ports)
    proc = subprocess.Popen([sys.executable, "-m", "pyxsw.cli", "run", "-c", str(conf)],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    load = None
    try:
        deadline = time.monotonic() + 20
        while not ping(lab, 0, 1):
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
        load = lab.popen(0, sys.executable, str(Path(__file__).with_name("nettool.py")), "udp-flows",
                         "--dst", lab.hosts[1].ip, "--flows", "16", "--count", "2000000",
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1.0)
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        assert time.monotonic() - t0 < 2.0
    finally:
        for p in (proc, load):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait()
    for p in lab.ports:
        flags, xdp, promiscuity = link_flags(p)
        assert not xdp and promiscuity == 0
    assert not (tmp_path / "sw.sock").exists()
