"""pyxsw.links.XdpFeatures: the netdev generic-netlink family's XDP features of a device,
and its notifications.  The system tests (root) build veth pairs and namespaces named
`xf<4 hex>-...`, unique to the test, and remove them afterwards, pass or fail."""
import os
import resource
import secrets
import select
import socket
import struct
import subprocess
import threading
import time

import pytest

from pyxsw.lab import Lab, lab_down
from pyxsw.links import (GENL_HDR, NDO_XMIT, NETDEV_A_DEV_IFINDEX, NETDEV_A_DEV_XDP_FEATURES,
                         NETDEV_CMD_DEV_CHANGE_NTF, NLMSG_HDR, LinkError, XdpFeatures, _attr,
                         _dev, _messages, can_take_redirects)

system = pytest.mark.system
NOTIFY_WAIT = 5.0


def sh(*argv, check=True):
    return subprocess.run(argv, capture_output=True, text=True, check=check)


def _taken(prefix):
    ns = sh("ip", "netns", "list").stdout.split()
    links = [line.split(":")[1].strip().split("@")[0]
             for line in sh("ip", "-o", "link").stdout.splitlines() if ":" in line]
    return [n for n in ns + links if n.startswith(prefix)]


@pytest.fixture
def xf_prefix():
    """"xf" + 4 hex + "-", unused on the machine; whatever carries it is removed after."""
    while True:
        p = f"xf{secrets.token_hex(2)}-"
        if not _taken(p):
            break
    try:
        yield p
    finally:
        lab_down(p)
        for name in _taken(p):
            sh("ip", "link", "del", name, check=False)
            sh("ip", "netns", "del", name, check=False)
        assert not _taken(p), f"could not remove {_taken(p)}"


@pytest.fixture
def xf():
    x = XdpFeatures()
    yield x
    x.close()


@pytest.fixture
def veth(xf_prefix):
    """(port ifindex, peer name, namespace): a veth pair, the port in the root namespace and
    its peer in a fresh namespace, both up, the peer's GRO off."""
    ns, port, peer = f"{xf_prefix}n0", f"{xf_prefix}s0", f"{xf_prefix}p0"
    sh("ip", "netns", "add", ns)
    sh("ip", "link", "add", port, "type", "veth", "peer", "name", peer, "netns", ns)
    sh("ip", "link", "set", port, "up")
    sh("ip", "-n", ns, "link", "set", peer, "up")
    sh("ip", "netns", "exec", ns, "ethtool", "-K", peer, "gro", "off")
    return socket.if_nametoindex(port), peer, ns


def notified(xf, ifindex, timeout=NOTIFY_WAIT):
    """Poll xf's notification socket until one about `ifindex` arrives: True, or False at
    the timeout."""
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        if select.select([xf], [], [], left)[0]:
            got = xf.read()
            assert got != "resync"
            if ifindex in got:
                return True
    return False


def drain(xf):
    while select.select([xf], [], [], 0)[0]:
        xf.read()


# ---- parsing and the class, no root needed ----

def change_ntf(index, features=None, family=20):
    body = GENL_HDR.pack(NETDEV_CMD_DEV_CHANGE_NTF, 1) + \
        _attr(NETDEV_A_DEV_IFINDEX, struct.pack("=I", index))
    if features is not None:
        body += _attr(NETDEV_A_DEV_XDP_FEATURES, struct.pack("=Q", features))
    return NLMSG_HDR.pack(NLMSG_HDR.size + len(body), family, 0, 0, 0) + body


def test_a_notification_is_read():
    (kind, _, _, body), = _messages(change_ntf(7, 0x67))
    assert kind == 20 and _dev(body) == (NETDEV_CMD_DEV_CHANGE_NTF, 7, 0x67)
    (_, _, _, body), = _messages(change_ntf(7))
    assert _dev(body) == (NETDEV_CMD_DEV_CHANGE_NTF, 7, None)    # absent is not "none"


@pytest.mark.parametrize("cut", range(1, 24))
def test_truncated_notifications_never_raise(cut):
    good = change_ntf(3, 0x67)
    for data in (good[:-cut], good + good[:cut], struct.pack("=I", 1 << 20) + good[4:]):
        for _, _, _, body in _messages(data):
            d = _dev(body)
            assert d is None or d[1] == 3


def test_can_take_redirects():
    assert NDO_XMIT == 4                    # NETDEV_XDP_ACT_NDO_XMIT in linux/netdev.h
    assert can_take_redirects(0x67) and can_take_redirects(NDO_XMIT)
    assert not can_take_redirects(0x23) and not can_take_redirects(0)
    assert not can_take_redirects(None)


def test_a_missing_family_is_a_clear_link_error_and_leaks_nothing(monkeypatch):
    """On a kernel older than 6.3 the controller answers ENOENT; the switch must learn that
    the fast path is unavailable, and keep no socket."""
    fds = set(os.listdir("/proc/self/fd"))
    real = XdpFeatures._ask

    def ask(self, kind, body, what, absent):
        body = body.replace(b"netdev\0", b"nodev\0\0")       # a family no kernel has
        return real(self, kind, body, what, absent)
    monkeypatch.setattr(XdpFeatures, "_ask", ask)
    with pytest.raises(LinkError, match="no netdev generic-netlink family"):
        XdpFeatures()
    assert set(os.listdir("/proc/self/fd")) == fds


def test_get_opens_no_descriptor_in_any_thread(xf):
    """Out of descriptors, asking from another thread must still answer (a failure would be
    read as "this port cannot take redirects")."""
    lo = socket.if_nametoindex("lo")
    before = xf.get(lo)
    assert isinstance(before, int)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    hold, got = [], []
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
        try:
            while True:
                hold.append(socket.socket())
        except OSError:
            pass
        t = threading.Thread(target=lambda: got.append((xf.get(lo), xf.get(0x7fffff00))))
        t.start()
        t.join()
    finally:
        for s in hold:
            s.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert got == [(before, None)]


# ---- against the kernel (root, namespaces) ----

@system
def test_peer_gro_flips_ndo_xmit_and_is_notified(xf, veth):
    port, peer, ns = veth
    drain(xf)
    off = xf.get(port)
    assert off is not None and not can_take_redirects(off)

    sh("ip", "netns", "exec", ns, "ethtool", "-K", peer, "gro", "on")
    on = xf.get(port)
    assert can_take_redirects(on) and (on ^ off) & NDO_XMIT
    assert notified(xf, port), "no dev-change-ntf for the port on the mgmt group"
    assert xf.features[port] == on

    sh("ip", "netns", "exec", ns, "ethtool", "-K", peer, "gro", "off")
    assert xf.get(port) == off
    assert notified(xf, port)
    assert xf.features[port] == off


@system
def test_a_deleted_device_is_none_and_notified(xf, veth):
    port, _, _ = veth
    assert xf.get(port) is not None
    drain(xf)
    sh("ip", "link", "del", socket.if_indextoname(port))
    assert xf.get(port) is None
    assert notified(xf, port), "no dev-del-ntf for the deleted port"
    assert port not in xf.features


@system
def test_lab_hosts_have_gro_on_so_ports_take_redirects(xf, xf_prefix):
    lab = Lab(hosts=2, prefix=xf_prefix)
    try:
        lab.up()
        for i, h in enumerate(lab.hosts):
            feats = lab.run(i, "ethtool", "-k", h.ifname, capture_output=True, text=True).stdout
            assert "generic-receive-offload: on" in feats
            assert can_take_redirects(xf.get(socket.if_nametoindex(h.port))), h.port
    finally:
        lab.down()
