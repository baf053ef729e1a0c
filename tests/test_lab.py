"""The lab itself (root): namespaces, veth pairs, addresses, and that it is removed again.

A Linux bridge made by the test stands in for the switch, so these tests check the lab
without depending on pyxsw's data plane."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import capture, eth_frame, ping, send, tcp_transfer
from pyxsw.lab import Lab, check_prefix, lab_down

pytestmark = pytest.mark.system
ROOT = Path(__file__).resolve().parent.parent


def namespaces():
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


def link(name, ns=None):
    """`ip -d -j link show` of one interface, or None."""
    cmd = ["ip"] + (["-n", ns] if ns else []) + ["-d", "-j", "link", "show", "dev", name]
    r = subprocess.run(cmd, capture_output=True, text=True)
    return json.loads(r.stdout)[0] if r.returncode == 0 else None


def mine(prefix):
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    names = [line.split(":")[1].strip().split("@")[0] for line in links.splitlines()]
    return sorted(n for n in list(namespaces()) + names if n.startswith(prefix))


class Bridge:
    """A Linux bridge over the lab's switch-side ports, removed on exit."""

    def __init__(self, name, ports):
        self.name, self.ports = name, ports

    def __enter__(self):
        subprocess.run(["ip", "link", "add", self.name, "type", "bridge"], check=True)
        try:
            for p in self.ports:
                subprocess.run(["ip", "link", "set", p, "master", self.name], check=True)
            subprocess.run(["ip", "link", "set", self.name, "up"], check=True)
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc):
        subprocess.run(["ip", "link", "del", self.name], capture_output=True)


def test_lab_builds_hosts(lab_factory, prefix):
    lab = lab_factory(hosts=3, queues=2)
    assert lab.ports == [f"{prefix}s{i}" for i in range(3)]
    assert {h.ns for h in lab.hosts} <= namespaces()
    macs = set()
    for i, h in enumerate(lab.hosts):
        assert (h.ns, h.ifname, h.ip, h.port) == (f"{prefix}h{i}", "eth0", f"198.18.0.{i + 1}",
                                                  f"{prefix}s{i}")
        assert h.mac.startswith("02:00:00:") and h.mac.endswith(f":00:{i + 1:02x}")
        macs.add(h.mac)
        inner, outer = link("eth0", h.ns), link(h.port)
        assert inner["address"] == h.mac and "UP" in inner["flags"] and "UP" in outer["flags"]
        assert inner["num_tx_queues"] == inner["num_rx_queues"] == 2
        assert outer["num_tx_queues"] == outer["num_rx_queues"] == 2
        addrs = lab.run(i, "ip", "-j", "addr", "show", "dev", "eth0",
                        capture_output=True, text=True, check=True).stdout
        assert [(a["family"], a["local"], a["prefixlen"]) for a in json.loads(addrs)[0]["addr_info"]] \
            == [("inet", h.ip, 24)]                  # and no IPv6 address at all
        assert Path(f"/proc/sys/net/ipv6/conf/{h.port}/disable_ipv6").read_text().strip() == "1"
        feats = lab.run(i, "ethtool", "-k", "eth0", capture_output=True, text=True).stdout
        assert "tx-checksumming: off" in feats
        lo = lab.run(i, "ip", "-j", "link", "show", "dev", "lo", capture_output=True, text=True)
        assert "UP" in json.loads(lo.stdout)[0]["flags"]
    assert len(macs) == 3


def test_two_labs_differ(lab_factory):
    a, b = lab_factory(hosts=2), lab_factory(hosts=2)
    assert a.prefix != b.prefix and not set(a.ports) & set(b.ports)
    assert not {h.ns for h in a.hosts} & {h.ns for h in b.hosts}


def test_hosts_ping_and_tcp_through_a_bridge(lab_factory, prefix):
    lab = lab_factory(hosts=3)
    with Bridge(f"{prefix}br", lab.ports):
        assert all(ping(lab, a, b, count=1, timeout=3)
                   for a in range(3) for b in range(3) if a != b)
        sent, got = tcp_transfer(lab, server=1, client=0, nbytes=2_000_000, seed=3)
        assert len(sent) == 64 and sent == got
    assert link(f"{prefix}br") is None


def test_capture_sees_arrivals_not_own_frames(lab_factory, prefix):
    lab = lab_factory(hosts=2)
    h0, h1 = lab.hosts
    plain = eth_frame("ff:ff:ff:ff:ff:ff", h0.mac, b"lab-plain")
    tagged = eth_frame(h1.mac, h0.mac, b"lab-tagged", vlan=42)
    with Bridge(f"{prefix}br", lab.ports):
        with capture(lab, 0, seconds=2) as at0, capture(lab, 1, seconds=2) as at1:
            send(lab, 0, plain, count=3)
            send(lab, 0, tagged)
    assert at1.count(plain) == 3
    assert tagged in at1                     # the 802.1Q tag is shown as on the wire
    assert plain not in at0 and tagged not in at0


def test_down_removes_everything_even_half_built(prefix):
    lab = Lab(hosts=2, prefix=prefix)
    # half-built by hand: a namespace and a lone veth, as a crash in up() might leave
    subprocess.run(["ip", "netns", "add", f"{prefix}h0"], check=True)
    subprocess.run(["ip", "link", "add", f"{prefix}s1", "type", "veth", "peer", "name",
                    f"{prefix}x1"], check=True)
    lab.down()
    assert mine(prefix) == []
    lab.down()                                  # idempotent
    with lab:
        assert len(mine(prefix)) == 4           # 2 namespaces, 2 switch-side links
    assert mine(prefix) == []


def test_up_refuses_existing_names_and_leaves_them(lab_factory, prefix):
    lab_factory(hosts=1)
    with pytest.raises(Exception, match="already exist"):
        Lab(hosts=1, prefix=prefix).up()
    assert f"{prefix}h0" in namespaces()


def test_lab_down_by_prefix_spares_others(lab_factory):
    a, b = lab_factory(hosts=2), lab_factory(hosts=2)
    gone_ns, gone_links = lab_down(a.prefix)
    assert sorted(gone_ns) == [h.ns for h in a.hosts] and sorted(gone_links) == a.ports
    assert mine(a.prefix) == []
    assert {h.ns for h in b.hosts} <= namespaces() and all(link(p) for p in b.ports)


def test_prefix_validation():
    check_prefix("t1234-", 254)
    check_prefix("a" * 13, 10)                  # "aaaaaaaaaaaaas9": 15 characters
    for bad, hosts in [("a" * 13, 11), ("x/y", 1), ("a b", 1), ("", 0), ("", 255)]:
        with pytest.raises(ValueError):
            check_prefix(bad, hosts)


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "pyxsw.cli", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)


def test_cli_lab_up_and_down(prefix):
    r = run_cli("lab", "up", "--hosts", "2", "--prefix", prefix, "--queues", "2")
    assert r.returncode == 0, r.stderr
    assert f"{prefix}h1" in r.stdout and "198.18.0.2/24" in r.stdout
    assert {f"{prefix}h0", f"{prefix}h1"} <= namespaces()
    assert link(f"{prefix}s1")["num_rx_queues"] == 2
    r = run_cli("lab", "up", "--hosts", "2", "--prefix", prefix)
    assert r.returncode == 1 and "already exist" in r.stderr
    r = run_cli("lab", "down", "--prefix", prefix)
    assert r.returncode == 0 and r.stdout.strip() == "removed 2 namespaces, 2 links"
    assert mine(prefix) == []
    r = run_cli("lab", "down", "--prefix", prefix)
    assert r.returncode == 0 and "removed 0 namespaces, 0 links" in r.stdout


def test_cli_lab_rejects_long_prefix():
    r = run_cli("lab", "up", "--prefix", "much-too-long-")
    assert r.returncode == 2 and "too long" in r.stderr and r.stderr.count("\n") == 1
