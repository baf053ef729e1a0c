"""pyxsw.links: rtnetlink parsing that never trusts a datagram, and queries that need no new
file descriptor (no root needed: any process may ask rtnetlink about interfaces)."""
import resource
import socket
import struct
import threading

from pyxsw import _core
from pyxsw.links import (IFINFO, IFLA_IFNAME, NLMSG_HDR, RTA, RTM_NEWLINK, Links, _link,
                         _messages)

import pytest


def newlink(index, name, extra=b""):
    raw = name.encode() + b"\0"
    attr = RTA.pack(RTA.size + len(raw), IFLA_IFNAME) + raw
    attr += b"\0" * (-len(attr) % 4)
    body = IFINFO.pack(0, 1, index, 0, 0) + attr + extra
    return NLMSG_HDR.pack(NLMSG_HDR.size + len(body), RTM_NEWLINK, 0, 0, 0) + body


def test_a_link_message_is_read():
    (kind, _, _, body), = _messages(newlink(7, "s0"))
    link = _link(body)
    assert kind == RTM_NEWLINK and (link.ifindex, link.name, link.xdp) == (7, "s0", {})


@pytest.mark.parametrize("cut", range(1, 40))
def test_truncated_or_lying_datagrams_end_the_walk_quietly(cut):
    """A length past the datagram's end made the attribute walk raise struct.error, which
    killed the housekeeping thread."""
    good = newlink(3, "eth3")
    for data in (good[:-cut], good + good[:cut],
                 good[:NLMSG_HDR.size + IFINFO.size] + RTA.pack(60000, IFLA_IFNAME) + b"x" * cut,
                 struct.pack("=I", 1 << 20) + good[4:]):
        for _, _, _, body in _messages(data):
            _link(body)                         # no exception, whatever it finds


def test_queries_work_from_any_thread_out_of_descriptors():
    """pyroute2 opened a socket and an event loop per calling thread: out of descriptors,
    asking from another thread failed (and a failure was a reason to think a port down)."""
    links = Links()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    hold = []
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
        try:
            while True:
                hold.append(socket.socket())
        except OSError:
            pass
        got = []
        t = threading.Thread(target=lambda: got.append(links.get(name="lo")))
        t.start()
        t.join()
        assert got and got[0].loopback and got[0].ifindex == links.get(name="lo").ifindex
        assert links.get(name="no-such-if0") is None
    finally:
        for s in hold:
            s.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        links.close()


def test_a_closed_core_raises_instead_of_crashing():
    c = _core.Datapath(umem=False)
    p = c.add_virtual_port("v0")
    c.close()
    for call in (lambda: c.mode, lambda: c.port_info(p), lambda: c.port_stats(p),
                 lambda: c.fdb_list(), lambda: c.accounting(), lambda: c.set_port_up(p, False)):
        with pytest.raises(RuntimeError, match="closed"):
            call()
    c2 = _core.Datapath(umem=False)
    with pytest.raises(KeyError):
        c2.port_info(64)
