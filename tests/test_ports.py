"""Ports and their interfaces (root, namespaces): a port is never silently black-holed.  The
switch follows each port's interface by index, notices within a second when it goes, comes
back, or loses pyxsw's XDP program, and never touches an interface another switch owns."""
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import link_flags, make_config, ping, running, stderr_of, wait_until

pytestmark = pytest.mark.system
ROOT = Path(__file__).resolve().parent.parent
BPF_OBJECT = ROOT / "pyxsw" / "bpf" / "pyxsw.bpf.o"


def xdp_prog_id(ifname):
    """The id of the XDP program attached to an interface, 0 if none."""
    info = json.loads(subprocess.run(["ip", "-d", "-j", "link", "show", "dev", ifname],
                                     capture_output=True, text=True, check=True).stdout)[0]
    xdp = info.get("xdp") or {}
    return xdp.get("prog", {}).get("id") or xdp.get("id") or 0


def prog_loaded(ident):
    """Is the program with that id still loaded (attached, or a descriptor of it open)?"""
    return subprocess.run(["bpftool", "prog", "show", "id", str(ident)],
                          capture_output=True).returncode == 0


def recreate(lab, i):
    """Make host i's veth pair again, as `ip link del` left it: the same names and addresses."""
    h, s = lab.hosts[i], lab.ports[i]
    subprocess.run(["ip", "link", "add", s, "type", "veth", "peer", "name", "eth0",
                    "netns", h.ns], check=True)
    for cmd in (["link", "set", "eth0", "address", h.mac], ["addr", "add", h.cidr, "dev", "eth0"],
                ["link", "set", "eth0", "up"]):
        subprocess.run(["ip", "-n", h.ns, *cmd], check=True)
    subprocess.run(["ip", "link", "set", s, "up"], check=True)


def foreign_program(tmp_path):
    """An XDP object that is not pyxsw's: what another tool would attach."""
    src = tmp_path / "other.bpf.c"
    src.write_text('#include <linux/bpf.h>\n#include <bpf/bpf_helpers.h>\n'
                   'SEC("xdp") int other_prog(struct xdp_md *ctx) { return XDP_PASS; }\n'
                   'char _license[] SEC("license") = "GPL";\n')
    arch = subprocess.run(["gcc", "-print-multiarch"], capture_output=True, text=True).stdout.strip()
    obj = tmp_path / "other.bpf.o"
    subprocess.run(["clang", "-O2", "-target", "bpf", f"-I/usr/include/{arch}", "-c", str(src),
                    "-o", str(obj)], check=True)
    return obj


def _cli(*args, **kw):
    return subprocess.Popen([sys.executable, "-m", "pyxsw.cli", *args], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def _conf(path, sock, ports, extra=""):
    path.write_text(f'[switch]\nname = "t"\ncores = [1]\n{extra}\n[management]\n'
                    f'socket = "{sock}"\n' + "".join(f'[[port]]\nname = "{p}"\n' for p in ports))
    return path


# ---------------------------------------------------------------------------- ownership

def test_second_instance_never_touches_a_live_switchs_port(lab_factory, tmp_path):
    """A second switch (another socket, same port) took the first one's program for a stale
    leftover, detached it, then failed: the first switch's port forwarded nothing while its
    status said up (3 times in 3).  Now the second refuses before touching anything."""
    lab = lab_factory(hosts=2)
    a = _cli("run", "-c", str(_conf(tmp_path / "a.toml", tmp_path / "a.sock", lab.ports)))
    try:
        assert wait_until(lambda: ping(lab, 0, 1), timeout=20, interval=0.2), stderr_of(a)
        before = {p: xdp_prog_id(p) for p in lab.ports}
        assert all(before.values())
        b = subprocess.run([sys.executable, "-m", "pyxsw.cli", "run", "-c",
                            str(_conf(tmp_path / "b.toml", tmp_path / "b.sock", lab.ports[1:]))],
                           cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert b.returncode == 75, b.stderr         # not ready (busy), not a config error
        assert b.stderr.count("\n") == 1, b.stderr
        assert f"another running pyxsw switch (pid {a.pid})" in b.stderr, b.stderr
        assert {p: xdp_prog_id(p) for p in lab.ports} == before      # untouched
        assert ping(lab, 0, 1) and ping(lab, 1, 0)
        assert a.poll() is None
    finally:
        a.terminate()
        a.wait(15)
    assert not any(link_flags(p)[1] for p in lab.ports)


def test_a_killed_switchs_program_is_still_replaced(lab_factory, tmp_path):
    """The claim dies with its process: a program left by kill -9 is stale, and replaced."""
    lab = lab_factory(hosts=2)
    conf = _conf(tmp_path / "a.toml", tmp_path / "a.sock", lab.ports)
    a = _cli("run", "-c", str(conf))
    assert wait_until(lambda: ping(lab, 0, 1), timeout=20, interval=0.2)
    a.kill()
    a.wait()
    assert all(link_flags(p)[1] for p in lab.ports)         # left behind, passing to the kernel
    with running(make_config(lab.ports, tmp_path)) as sw:
        assert ping(lab, 0, 1) and all(p.state == "up" for p in sw.ports.values())


# ---------------------------------------------------------------------------- interfaces that go

@pytest.mark.parametrize("gone", [0, 2])        # the first port too: the UMEM is not tied to it
def test_interface_deleted_then_recreated_is_attached_again(lab_factory, tmp_path, gone):
    """The link watch found ports by name: a port whose interface was deleted and made again
    showed up with no program on the new interface, and `port add` was refused (16 in 16)."""
    lab = lab_factory(hosts=3)
    s2 = lab.ports[gone]
    a, b = [i for i in range(3) if i != gone]
    with running(make_config(lab.ports, tmp_path)) as sw:
        assert ping(lab, a, gone)
        sw.fdb_add("02:00:00:00:77:01", s2)                    # a static entry: it stays
        events = []
        # without their time stamps (test_logs_switch.py checks those)
        sw.add_listener(lambda ev: events.append({k: v for k, v in ev.items() if k != "time"}))
        subprocess.run(["ip", "link", "del", s2], check=True)
        t0 = time.monotonic()
        assert wait_until(lambda: {"event": "port.gone", "port": s2} in events, timeout=5)
        assert time.monotonic() - t0 < 1.0
        assert {"event": "port.down", "port": s2} in events
        assert sw.ports[s2].state == "gone" and not sw.ports[s2].up
        assert [p["state"] for p in sw.status()["ports"] if p["name"] == s2] == ["gone"]
        assert [e["mac"] for e in sw.fdb_list(port=s2)] == ["02:00:00:00:77:01"]  # learned: flushed
        assert ping(lab, a, b) and ping(lab, b, a)              # the others keep forwarding

        recreate(lab, gone)                 # same name, new interface: attached on its own
        assert wait_until(lambda: sw.ports[s2].state == "up", timeout=5), sw.ports[s2].reason
        # the new interface's rx VLAN offload is off, and stays off: tearing the old port's
        # socket down must not turn it on again through the name they share
        assert rx_vlan_offload(s2) == "off" and sw.ports[s2].changed
        new_ifindex = sw.ports[s2].ifindex
        assert any(e["event"] == "port.reattach" and e["port"] == s2
                   and e["ifindex"] == new_ifindex for e in events)
        assert {"event": "port.up", "port": s2} in events[events.index(
            {"event": "port.gone", "port": s2}):]
        assert xdp_prog_id(s2) == sw.dp.port_prog_id(sw.ports[s2].index)
        assert {"mac": "02:00:00:00:77:01", "vlan": 1, "port": s2, "age": 0,
                "static": True} in sw.fdb_list()
        assert ping(lab, a, gone) and ping(lab, gone, b)
        assert sw.wait_quiet()["in_flight"] == 0


def test_interface_recreated_while_the_switch_cannot_take_it(lab_factory, tmp_path):
    """A new interface of a gone port's name that the switch cannot use (too few queues for
    two workers) leaves the port gone, says why, and `port add` works once it is fixed."""
    lab = lab_factory(hosts=2, queues=2)
    s1 = lab.ports[1]
    with running(make_config(lab.ports, tmp_path, cores=(0, 1))) as sw:
        assert ping(lab, 0, 1)
        subprocess.run(["ip", "link", "del", s1], check=True)
        assert wait_until(lambda: sw.ports[s1].state == "gone")
        recreate(lab, 1)                    # one queue only
        assert wait_until(lambda: "attaching the new one failed" in sw.ports[s1].reason)
        assert sw.ports[s1].state == "gone" and not link_flags(s1)[1]
        subprocess.run(["ip", "link", "del", s1], check=True)
        h = lab.hosts[1]
        subprocess.run(["ip", "link", "add", s1, "numtxqueues", "2", "numrxqueues", "2", "type",
                        "veth", "peer", "name", "eth0", "numtxqueues", "2", "numrxqueues", "2",
                        "netns", h.ns], check=True)
        for cmd in (["link", "set", "eth0", "address", h.mac],
                    ["addr", "add", h.cidr, "dev", "eth0"], ["link", "set", "eth0", "up"]):
            subprocess.run(["ip", "-n", h.ns, *cmd], check=True)
        subprocess.run(["ip", "link", "set", s1, "up"], check=True)
        assert wait_until(lambda: sw.ports[s1].state == "up", timeout=5), sw.ports[s1].reason
        assert ping(lab, 0, 1)


# ---------------------------------------------------------------------------- programs taken away

@pytest.mark.parametrize("how", ["detached", "replaced"])
def test_program_taken_away_is_noticed_and_port_add_restores_it(lab_factory, tmp_path, how,
                                                                 caplog):
    lab = lab_factory(hosts=3)
    s0 = lab.ports[0]
    with running(make_config(lab.ports, tmp_path)) as sw:
        assert ping(lab, 0, 1)
        mode = {"native": "xdpdrv", "generic": "xdpgeneric"}[sw.ports[s0].xdp_mode]
        events = []
        sw.add_listener(events.append)
        with caplog.at_level(logging.ERROR, logger="pyxsw"):
            if how == "detached":
                subprocess.run(["ip", "link", "set", "dev", s0, mode, "off"], check=True)
            else:                           # another copy of a program, under a new id
                subprocess.run(["ip", "-force", "link", "set", "dev", s0, mode, "obj",
                                str(BPF_OBJECT), "sec", "xdp"], check=True)
                copy = xdp_prog_id(s0)
            t0 = time.monotonic()
            assert wait_until(lambda: sw.ports[s0].state == "degraded", timeout=5)
            assert time.monotonic() - t0 < 1.0
        assert any("degraded" in r.getMessage() for r in caplog.records)
        ev = [e for e in events if e["event"] == "port.degraded"]
        assert ev and ev[0]["port"] == s0 and ("detached" if how == "detached" else "replaced") \
            in ev[0]["reason"]
        st = [p for p in sw.status()["ports"] if p["name"] == s0][0]
        assert st["state"] == "degraded" and st["up"] is False
        assert all(e["port"] != s0 for e in sw.fdb_list())
        assert ping(lab, 1, 2)                                  # the others are unaffected
        # `port add` attaches it anew
        port = sw.add_port(s0)
        assert port.state == "up" and xdp_prog_id(s0) == sw.dp.port_prog_id(port.index)
        if how == "replaced":
            # detached as stale, and no descriptor of it kept: libxdp < 1.4.1 leaked one
            # each time the switch asked what was attached (every tick while degraded)
            assert wait_until(lambda: not prog_loaded(copy), timeout=5)
        assert ping(lab, 0, 1) and ping(lab, 1, 0)
        assert sw.wait_quiet()["in_flight"] == 0
    assert not link_flags(s0)[1]


def program_fds():
    """How many descriptors of BPF programs this process has open."""
    n = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            n += os.readlink(f"/proc/self/fd/{fd}") == "anon_inode:bpf-prog"
        except OSError:
            pass
    return n


def test_port_del_and_add_keep_no_program_descriptor(lab_factory, tmp_path):
    """Each `port del` left a descriptor of the switch's program open: libxdp < 1.4.1's
    xdp_program__detach() leaks one of the program it finds attached (xdp-tools 48ad94b)."""
    lab = lab_factory(hosts=2)
    s1 = lab.ports[1]
    with running(make_config(lab.ports, tmp_path)) as sw:
        before = program_fds()
        for _ in range(3):
            sw.del_port(s1)
            assert not xdp_prog_id(s1)
            sw.add_port(s1)
        assert program_fds() == before
        assert ping(lab, 0, 1)


# ---------------------------------------------------------------------------- interfaces refused

def test_a_foreign_program_is_never_replaced(lab_factory, tmp_path):
    """A port degraded by another tool's program stays as it is (options, static entries)
    when `port add` is refused because of that program; once it is removed, `port add`
    attaches pyxsw's again."""
    lab = lab_factory(hosts=2)
    s0 = lab.ports[0]
    obj = foreign_program(tmp_path)
    cfg = make_config(lab.ports, tmp_path, port_extra={s0: {"flood_limit": 500}})
    with running(cfg) as sw:
        sw.fdb_add("02:00:00:00:77:02", s0)
        mode = {"native": "xdpdrv", "generic": "xdpgeneric"}[sw.ports[s0].xdp_mode]
        subprocess.run(["ip", "-force", "link", "set", "dev", s0, mode, "obj", str(obj),
                        "sec", "xdp"], check=True)
        assert wait_until(lambda: sw.ports[s0].state == "degraded")
        foreign = xdp_prog_id(s0)
        with pytest.raises(OSError, match=r"another XDP program \(other_prog\)"):
            sw.add_port(s0)
        assert xdp_prog_id(s0) == foreign                   # untouched
        assert sw.ports[s0].state == "degraded" and sw.ports[s0].flood_limit == 500
        assert "02:00:00:00:77:02" in [e["mac"] for e in sw.fdb_list(port=s0)]
        subprocess.run(["ip", "link", "set", "dev", s0, mode, "off"], check=True)
        assert wait_until(lambda: not prog_loaded(foreign), timeout=5)    # the switch kept no fd
        port = sw.add_port(s0, flood_limit=500)
        assert port.state == "up" and "02:00:00:00:77:02" in [e["mac"] for e in sw.fdb_list(port=s0)]
        assert ping(lab, 0, 1)


def test_a_state_that_cannot_be_read_is_asked_again(lab_factory, tmp_path, caplog):
    """One failed read used to lose the change it was about: the port stayed up with no
    program, for good.  A port whose state cannot be read is asked about every tick."""
    from pyxsw.links import LinkError
    lab = lab_factory(hosts=2)
    s0 = lab.ports[0]
    with running(make_config(lab.ports, tmp_path)) as sw:
        real = sw.links.get
        fails = [3]

        def flaky(**kw):
            if kw.get("ifindex") == sw.ports[s0].ifindex and fails[0]:
                fails[0] -= 1
                raise LinkError(5, "injected")
            return real(**kw)

        sw.links.get = flaky
        mode = {"native": "xdpdrv", "generic": "xdpgeneric"}[sw.ports[s0].xdp_mode]
        with caplog.at_level(logging.ERROR, logger="pyxsw"):
            subprocess.run(["ip", "link", "set", "dev", s0, mode, "off"], check=True)
            assert wait_until(lambda: sw.ports[s0].state == "degraded", timeout=5)
        assert fails == [0]
        assert sum("cannot tell its state" in r.getMessage() for r in caplog.records) == 1


def test_claims_are_roots_alone(lab_factory, tmp_path):
    """The claim used to be an abstract socket name, which any user can bind: `nobody`
    could make every switch refuse an interface.  Claims are files only root can open."""
    lab = lab_factory(hosts=2)
    with running(make_config(lab.ports, tmp_path)) as sw:
        claim = Path("/run/pyxsw/ports")
        assert claim.stat().st_mode & 0o777 == 0o700
        code = (f"import fcntl, os; fd = os.open({str(claim)!r} + '/x', os.O_RDWR | os.O_CREAT); "
                "fcntl.flock(fd, fcntl.LOCK_EX)")
        r = subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
                            sys.executable, "-c", code], capture_output=True, text=True)
        assert r.returncode != 0 and "PermissionError" in r.stderr, r.stderr
        assert ping(lab, 0, 1)


def test_loopback_is_refused(lab_factory, tmp_path):
    """`port add lo` crashed the switch (a NULL dereference), leaving XDP on every port and
    on the host's lo."""
    from pyxsw.client import Client, RpcError
    from pyxsw.mgmt.server import Server
    import threading
    lab = lab_factory(hosts=2)
    lo_before = link_flags("lo")
    with running(make_config(lab.ports, tmp_path)) as sw:
        srv = Server(sw, str(tmp_path / "sw.sock"))
        t = threading.Thread(target=srv.run, kwargs={"stop_signals": ()}, daemon=True)
        t.start()
        try:
            assert srv.started.wait(5)
            with Client(str(tmp_path / "sw.sock")) as c:
                with pytest.raises(RpcError) as e:
                    c.port_add("lo")
                assert e.value.code == "failed" and "loopback" in e.value.message
                assert link_flags("lo") == lo_before
                assert ping(lab, 0, 1) and c.status()["name"] == "t"
        finally:
            srv.request_stop()
            t.join(10)
    assert link_flags("lo") == lo_before
    r = subprocess.run([sys.executable, "-m", "pyxsw.cli", "run", "-c",
                        str(_conf(tmp_path / "lo.toml", tmp_path / "lo.sock", ["lo"]))],
                       cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "port[0].name" in r.stderr \
        and "loopback" in r.stderr, r.stderr
    assert link_flags("lo") == lo_before


def test_a_port_with_ip_addresses_is_added_with_a_warning(lab_factory, tmp_path, caplog):
    lab = lab_factory(hosts=3)
    s2 = lab.ports[2]
    subprocess.run(["ip", "addr", "add", "192.0.2.77/24", "dev", s2], check=True)
    with running(make_config(lab.ports[:2], tmp_path)) as sw:
        with caplog.at_level(logging.WARNING, logger="pyxsw"):
            port = sw.add_port(s2)
        assert port.warnings and "192.0.2.77/24" in port.warnings[0]
        assert any("192.0.2.77/24" in r.getMessage() for r in caplog.records)
        assert not sw.ports[lab.ports[0]].warnings              # link-local IPv6 is not one
        assert ping(lab, 0, 2)


def test_two_switches_each_anchor_their_umem_off_their_ports(lab_factory, tmp_path, short_dir):
    """The UMEM's first socket must stay bound; it lived on the host's lo, which only one
    switch can take: a second switch anchored on its first port, and when that interface
    was deleted it could not attach any port again.  Each switch now has a lo of its own."""
    lab = lab_factory(hosts=4)
    a_cfg = make_config(lab.ports[:2], tmp_path)
    b_cfg = make_config(lab.ports[2:], short_dir)
    with running(a_cfg) as a, running(b_cfg) as b:
        for sw in (a, b):
            assert sw.status()["umem_anchor"] == "lo of the switch's own network namespace"
            assert sw.dp.anchor_ifindex == 0
        assert ping(lab, 0, 1) and ping(lab, 2, 3)
        first = lab.ports[2]
        subprocess.run(["ip", "link", "del", first], check=True)
        assert wait_until(lambda: b.ports[first].state == "gone")
        recreate(lab, 2)
        assert wait_until(lambda: b.ports[first].state == "up", timeout=5), b.ports[first].reason
        assert ping(lab, 2, 3) and ping(lab, 0, 1)


def test_a_port_whose_attach_failed_leaves_the_next_ones_working(lab_factory, monkeypatch):
    """One XDP program serves every port of a switch.  An attach that fails (native XDP on a
    veth whose MTU is too large for it: a program without frags, as on a kernel before 5.18)
    while no port runs the program must not keep later ports, or the same one made right,
    from getting it."""
    from pyxsw import _core, vocab
    monkeypatch.setattr(vocab, "kernel_at_least", lambda major, minor: (major, minor) < (5, 18))
    lab = lab_factory(hosts=2)
    big, other = lab.hosts[0], lab.hosts[1]

    def mtu(n):
        subprocess.run(["ip", "link", "set", big.port, "mtu", str(n)], check=True)
        lab.run(0, "ip", "link", "set", big.ifname, "mtu", str(n), check=True)
    mtu(9000)
    dp = _core.Datapath(frames=4096, xdp_mode="native")
    try:
        with pytest.raises(OSError, match="cannot attach"):
            dp.port_add(big.port)
        assert xdp_prog_id(big.port) == 0
        mtu(1500)
        p0, _ = dp.port_add(big.port)
        p1, _ = dp.port_add(other.port)
        assert dp.port_info(p0)["xdp_mode"] == dp.port_info(p1)["xdp_mode"] == "native"
        assert xdp_prog_id(big.port) == xdp_prog_id(other.port) == dp.port_prog_id(p0) != 0
        dp.port_del(p0)
        dp.port_del(p1)
        assert xdp_prog_id(big.port) == xdp_prog_id(other.port) == 0
    finally:
        dp.close()


def rx_vlan_offload(ifname):
    out = subprocess.run(["ethtool", "-k", ifname], capture_output=True, text=True,
                         check=True).stdout
    return next(line.split(":")[1].split()[0] for line in out.splitlines()
                if line.startswith("rx-vlan-offload:"))


def test_rx_vlan_offload_is_off_while_a_port_and_restored_after(lab_factory, tmp_path):
    """A NIC (and veth, whose default is on) may strip 802.1Q tags into metadata that XDP
    does not see: the switch turns rx VLAN offload off on its ports, says so in the port's
    status, and turns it on again when the port goes, by port del or by stop."""
    from pyxsw.mgmt.handlers import _port_info
    lab = lab_factory(hosts=2)
    assert [rx_vlan_offload(p) for p in lab.ports] == ["on", "on"]
    with running(make_config(lab.ports, tmp_path)) as sw:
        assert [rx_vlan_offload(p) for p in lab.ports] == ["off", "off"]
        assert _port_info(sw.ports[lab.ports[0]])["changed"] == ["rx-vlan-offload off (was on)"]
        sw.del_port(lab.ports[1])
        assert rx_vlan_offload(lab.ports[1]) == "on"
        sw.add_port(lab.ports[1])
        assert rx_vlan_offload(lab.ports[1]) == "off"
    assert [rx_vlan_offload(p) for p in lab.ports] == ["on", "on"]
    # an interface whose offload was off already is left as it was, and says nothing changed
    subprocess.run(["ethtool", "-K", lab.ports[0], "rxvlan", "off"], check=True)
    with running(make_config(lab.ports, tmp_path)) as sw:
        assert _port_info(sw.ports[lab.ports[0]])["changed"] == []
    assert rx_vlan_offload(lab.ports[0]) == "off" and rx_vlan_offload(lab.ports[1]) == "on"
