"""The XDP program's fast path (issue 14), unit by unit: hand-built frames run through the
loaded program with BPF_PROG_RUN (bpf(BPF_PROG_TEST_RUN), through libbpf by ctypes), on a
Datapath(fastpath="xdp") with three real veth ports (root, namespaces) and no workers running.

A frame the program forwards itself returns XDP_REDIRECT (into tx_map) and counts in the
ingress port's ["fastpath"]["rx_packets"] and the egress port's ["fastpath"]["tx_packets"]; a
frame for userspace returns XDP_REDIRECT as well (into the port's AF_XDP socket, which exists)
and counts in ["xdp"]["prog_redirected"].  run() tells the two apart by those counters and
returns the bytes the program left (a pushed or popped tag).  A test run redirects nothing:
no frame leaves through a port."""
import ctypes
import errno
import os

import pytest

from pyxsw import _core

pytestmark = pytest.mark.system

XDP_PASS, XDP_REDIRECT = 2, 4
ET = b"\x88\xb5"                # local experimental EtherType: the payload is not parsed

A, B, C, D = (f"02:00:00:5a:00:{i:02x}" for i in (0xa, 0xb, 0xc, 0xd))
BCAST = "ff:ff:ff:ff:ff:ff"
MCAST = "01:00:5e:00:00:fb"


# ------------------------------------------------------------------ libbpf, through ctypes

class BpfTestRunOpts(ctypes.Structure):
    # struct bpf_test_run_opts of /usr/include/bpf/bpf.h (libbpf 1.1)
    _fields_ = [("sz", ctypes.c_size_t),
                ("data_in", ctypes.c_void_p), ("data_out", ctypes.c_void_p),
                ("data_size_in", ctypes.c_uint32), ("data_size_out", ctypes.c_uint32),
                ("ctx_in", ctypes.c_void_p), ("ctx_out", ctypes.c_void_p),
                ("ctx_size_in", ctypes.c_uint32), ("ctx_size_out", ctypes.c_uint32),
                ("retval", ctypes.c_uint32), ("repeat", ctypes.c_int),
                ("duration", ctypes.c_uint32), ("flags", ctypes.c_uint32),
                ("cpu", ctypes.c_uint32), ("batch_size", ctypes.c_uint32)]


class XdpMd(ctypes.Structure):
    # struct xdp_md of <linux/bpf.h>
    _fields_ = [(n, ctypes.c_uint32) for n in ("data", "data_end", "data_meta", "ingress_ifindex",
                                               "rx_queue_index", "egress_ifindex")]


class FdbVal(ctypes.Structure):
    # struct pyxsw_fdb_val of xdp/pyxsw_shared.h
    _fields_ = [("port", ctypes.c_uint32), ("seen", ctypes.c_uint32)]


_lib = ctypes.CDLL("libbpf.so.1", use_errno=True)
_lib.bpf_prog_get_fd_by_id.argtypes = [ctypes.c_uint32]
_lib.bpf_map_get_fd_by_id.argtypes = [ctypes.c_uint32]
_lib.bpf_prog_test_run_opts.argtypes = [ctypes.c_int, ctypes.POINTER(BpfTestRunOpts)]
_lib.bpf_obj_get_info_by_fd.argtypes = [ctypes.c_int, ctypes.c_void_p,
                                        ctypes.POINTER(ctypes.c_uint32)]
_lib.bpf_map_lookup_elem.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p]
_lib.bpf_map_update_elem.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p,
                                     ctypes.c_uint64]


def _check(rc, what):
    if rc < 0:
        e = ctypes.get_errno() or -rc
        raise OSError(e, f"{what}: {os.strerror(e)}")
    return rc


def _info(fd, size):
    buf = ctypes.create_string_buffer(size)
    n = ctypes.c_uint32(size)
    _check(_lib.bpf_obj_get_info_by_fd(fd, buf, ctypes.byref(n)), "bpf_obj_get_info_by_fd")
    return buf


def fdb_map_fd(prog_fd):
    """An fd of the program's fdb_map (found among its maps by name)."""
    info = _info(prog_fd, 64)                 # struct bpf_prog_info up to map_ids
    nr = int.from_bytes(info.raw[52:56], "little")      # nr_map_ids
    ids = (ctypes.c_uint32 * nr)()
    full = ctypes.create_string_buffer(256)     # zeros: ask for nothing but the map ids
    ctypes.c_uint64.from_buffer(full, 56).value = ctypes.addressof(ids)     # map_ids
    ctypes.c_uint32.from_buffer(full, 52).value = nr
    n = ctypes.c_uint32(256)
    _check(_lib.bpf_obj_get_info_by_fd(prog_fd, full, ctypes.byref(n)), "bpf_obj_get_info_by_fd")
    for map_id in ids:
        fd = _check(_lib.bpf_map_get_fd_by_id(map_id), "bpf_map_get_fd_by_id")
        name = _info(fd, 40).raw[24:40].split(b"\0")[0]  # struct bpf_map_info's name
        if name == b"fdb_map":
            return fd
        os.close(fd)
    raise LookupError("the program has no fdb_map")


def mac(s):
    return bytes.fromhex(s.replace(":", ""))


def fdb_key(m, vlan):
    """The kernel FDB's key: vlan << 48 | the MAC's wire bytes read little-endian."""
    return ctypes.c_uint64(int.from_bytes(mac(m), "little") | vlan << 48)


# ------------------------------------------------------------------ frames

def eth(dst, src, size=60, vid=None, pcp=0, tci=None):
    """A frame of `size` bytes (shorter than its header: the header cut there); tagged with
    802.1Q TCI `tci`, or PCP `pcp` and VID `vid`, when either is given."""
    h = mac(dst) + mac(src)
    if tci is None and vid is not None:
        tci = pcp << 13 | vid
    if tci is not None:
        h += b"\x81\x00" + tci.to_bytes(2, "big")
    h += ET
    return (h + bytes((7 * i + 1) & 0xff for i in range(max(0, size - len(h)))))[:size]


def pushed(f, vid):
    return f[:12] + b"\x81\x00" + vid.to_bytes(2, "big") + f[12:]


def popped(f):
    return f[:12] + f[16:]


# ------------------------------------------------------------------ running the program

def _counts(dp):
    out = {}
    for p in dp.ports():
        st = dp.port_stats(p)
        out[p] = {**{"xdp." + k: v for k, v in st["xdp"].items() if k.startswith("prog_")},
                  **{"fast." + k: v for k, v in st["fastpath"].items()}}
    return out


def run(dp, in_port_ifindex, frame):
    """Run the switch's XDP program once on `frame` as if it came in on the interface
    `in_port_ifindex`, queue 0.  Returns (retval, data_out, which): which is "fast->P" (forwarded
    in the kernel out of port P), "user" (to the port's AF_XDP socket) or "pass", as the
    program's counters say; an AssertionError when they say anything else."""
    ports = dp.ports()
    inp = next(p for p in ports if dp.port_info(p)["ifindex"] == in_port_ifindex)
    prog_fd = _check(_lib.bpf_prog_get_fd_by_id(dp.port_prog_id(inp)), "bpf_prog_get_fd_by_id")
    try:
        data_in = ctypes.create_string_buffer(bytes(frame), len(frame))
        data_out = ctypes.create_string_buffer(len(frame) + 256)
        ctx = XdpMd(data=0, data_end=len(frame), data_meta=0, ingress_ifindex=in_port_ifindex,
                    rx_queue_index=0, egress_ifindex=0)
        opts = BpfTestRunOpts(sz=ctypes.sizeof(BpfTestRunOpts),
                              data_in=ctypes.addressof(data_in),
                              data_out=ctypes.addressof(data_out),
                              data_size_in=len(frame), data_size_out=len(data_out),
                              ctx_in=ctypes.addressof(ctx), ctx_size_in=ctypes.sizeof(ctx),
                              repeat=1)
        before = _counts(dp)
        _check(_lib.bpf_prog_test_run_opts(prog_fd, ctypes.byref(opts)), "bpf_prog_test_run_opts")
        after = _counts(dp)
    finally:
        os.close(prog_fd)
    out = data_out.raw[:opts.data_size_out]
    delta = {p: {k: after[p][k] - before[p][k] for k in after[p] if after[p][k] != before[p][k]}
             for p in ports}
    delta = {p: d for p, d in delta.items() if d}
    what = f"counters moved: {delta}"
    assert delta.get(inp, {}).get("xdp.prog_seen") == 1, what     # no stray frame counted
    if "fast.rx_packets" in delta[inp]:
        outs = [p for p, d in delta.items() if "fast.tx_packets" in d]
        assert len(outs) == 1 and outs[0] != inp, what
        e = outs[0]
        assert delta == {inp: {"xdp.prog_seen": 1, "fast.rx_packets": 1,
                               "fast.rx_bytes": len(frame)},
                         e: {"fast.tx_packets": 1, "fast.tx_bytes": len(out)}}, what
        which = f"fast->{e}"
    elif "xdp.prog_redirected" in delta[inp]:
        assert delta == {inp: {"xdp.prog_seen": 1, "xdp.prog_redirected": 1}}, what
        which = "user"
    else:
        assert delta == {inp: {"xdp.prog_seen": 1, "xdp.prog_passed": 1}}, what
        which = "pass"
    return opts.retval, out, which


class Rig:
    """Three ports of a fast-path switch: dp, p[i] (port indexes), ifx[i] (their ifindexes)."""

    def __init__(self, dp, ports):
        self.dp, self.p = dp, ports
        self.ifx = [dp.port_info(p)["ifindex"] for p in ports]
        self._fdb_fd = -1

    def send(self, i, frame):
        """The program on `frame` in at port i: (retval, data_out, which)."""
        return run(self.dp, self.ifx[i], frame)

    def fast(self, i, frame, to):
        """Assert that `frame` in at port i is forwarded in the kernel out of port `to`;
        returns the bytes it leaves with."""
        rv, out, which = self.send(i, frame)
        assert (rv, which) == (XDP_REDIRECT, f"fast->{self.p[to]}")
        return out

    def user(self, i, frame):
        """Assert that `frame` in at port i goes to port i's AF_XDP socket, untouched."""
        rv, out, which = self.send(i, frame)
        assert (rv, which) == (XDP_REDIRECT, "user")
        assert out == frame
        return out

    def kfdb_fd(self):
        if self._fdb_fd < 0:
            prog_fd = _check(_lib.bpf_prog_get_fd_by_id(self.dp.port_prog_id(self.p[0])),
                             "bpf_prog_get_fd_by_id")
            try:
                self._fdb_fd = fdb_map_fd(prog_fd)
            finally:
                os.close(prog_fd)
        return self._fdb_fd

    def kfdb_get(self, m, vlan):
        """(port index, seen) of the kernel FDB's entry, or None."""
        v = FdbVal()
        k = fdb_key(m, vlan)
        if _lib.bpf_map_lookup_elem(self.kfdb_fd(), ctypes.byref(k), ctypes.byref(v)) < 0:
            assert ctypes.get_errno() == errno.ENOENT
            return None
        return v.port, v.seen

    def kfdb_put(self, m, vlan, port, seen):
        """Write an entry straight into the kernel FDB (behind the switch's back)."""
        v = FdbVal(port=port, seen=seen)
        k = fdb_key(m, vlan)
        _check(_lib.bpf_map_update_elem(self.kfdb_fd(), ctypes.byref(k), ctypes.byref(v), 0),
               "bpf_map_update_elem")

    def close(self):
        if self._fdb_fd >= 0:
            os.close(self._fdb_fd)
            self._fdb_fd = -1


@pytest.fixture
def rig(lab_factory):
    lab = lab_factory(hosts=3)
    dp = _core.Datapath(fastpath="xdp", frames=4096, workers=1)
    r = None
    try:
        ports = [dp.port_add(name)[0] for name in lab.ports]
        for p in ports:
            dp.set_port_fastpath_capable(p, True)
        assert all(dp.port_info(p)["fastpath_target"] for p in ports)
        r = Rig(dp, ports)
        yield r
    finally:
        if r is not None:
            r.close()
        dp.close()


def known(rig, *entries):
    """Static FDB entries (mac, vlan, rig port number)."""
    for m, vlan, i in entries:
        rig.dp.fdb_add(m, vlan, rig.p[i])


# ------------------------------------------------------------------ the plain (VLAN 1) cases

def test_the_program_is_one_for_all_ports_and_passes_other_interfaces(rig):
    assert rig.dp.fastpath()["mode"] == "xdp"
    assert len({rig.dp.port_prog_id(p) for p in rig.p}) == 1 and rig.dp.port_prog_id(rig.p[0])
    # an interface that is not a port (lo, ifindex 1): left to the kernel
    lo = 1
    prog_fd = _check(_lib.bpf_prog_get_fd_by_id(rig.dp.port_prog_id(rig.p[0])), "get fd")
    try:
        f = eth(B, A)
        data_in = ctypes.create_string_buffer(f, len(f))
        ctx = XdpMd(data_end=len(f), ingress_ifindex=lo)
        opts = BpfTestRunOpts(sz=ctypes.sizeof(BpfTestRunOpts), data_in=ctypes.addressof(data_in),
                              data_size_in=len(f), ctx_in=ctypes.addressof(ctx),
                              ctx_size_in=ctypes.sizeof(ctx), repeat=1)
        _check(_lib.bpf_prog_test_run_opts(prog_fd, ctypes.byref(opts)), "test run")
        assert opts.retval == XDP_PASS
    finally:
        os.close(prog_fd)


def test_known_unicast_is_forwarded_in_the_kernel_unchanged(rig):
    known(rig, (A, 1, 0), (B, 1, 1), (C, 1, 2))
    f = eth(B, A)
    assert rig.fast(0, f, to=1) == f
    assert rig.fast(0, eth(C, A, size=1514), to=2) == eth(C, A, size=1514)
    assert rig.fast(1, eth(A, B, size=100), to=0) == eth(A, B, size=100)
    st0, st1 = rig.dp.port_stats(rig.p[0]), rig.dp.port_stats(rig.p[1])
    assert st0["fastpath"]["rx_packets"] == 2 and st0["fastpath"]["rx_bytes"] == 60 + 1514
    assert st1["fastpath"]["tx_packets"] == 1 and st1["fastpath"]["tx_bytes"] == 60
    # every frame counts in the port's totals, whichever path it took
    assert st0["rx_packets"] == 2 and st0["tx_packets"] == 1


def test_an_unknown_source_goes_to_userspace_to_be_learned(rig):
    known(rig, (B, 1, 1))
    rig.user(0, eth(B, A))
    known(rig, (A, 1, 0))
    rig.fast(0, eth(B, A), to=1)


def test_a_source_known_on_another_port_goes_to_userspace_as_a_move(rig):
    known(rig, (A, 1, 2), (B, 1, 1))
    rig.user(0, eth(B, A))
    rig.fast(2, eth(B, A), to=1)


def test_a_source_known_in_another_vlan_only_goes_to_userspace(rig):
    known(rig, (A, 2, 0), (B, 1, 1))
    rig.user(0, eth(B, A))


def test_an_unknown_destination_goes_to_userspace_to_be_flooded(rig):
    known(rig, (A, 1, 0))
    rig.user(0, eth(B, A))
    known(rig, (B, 2, 1))               # known, but in another VLAN
    rig.user(0, eth(B, A))
    known(rig, (B, 1, 1))
    rig.fast(0, eth(B, A), to=1)


def test_a_destination_on_the_ingress_port_goes_to_userspace_to_be_filtered(rig):
    known(rig, (A, 1, 0), (B, 1, 0))
    rig.user(0, eth(B, A))


def test_a_destination_on_a_port_that_is_down_goes_to_userspace(rig):
    known(rig, (A, 1, 0), (B, 1, 1))
    rig.dp.set_port_up(rig.p[1], False)
    assert rig.dp.port_info(rig.p[1])["fastpath_reason"] == "down"
    rig.user(0, eth(B, A))
    rig.dp.set_port_up(rig.p[1], True)
    rig.fast(0, eth(B, A), to=1)


def test_a_destination_on_a_port_that_does_not_take_redirects_goes_to_userspace(rig):
    known(rig, (A, 1, 0), (B, 1, 1))
    rig.dp.set_port_fastpath_capable(rig.p[1], False)
    assert not rig.dp.port_info(rig.p[1])["fastpath_target"]
    rig.user(0, eth(B, A))
    rig.dp.set_port_fastpath_capable(rig.p[1], True)
    rig.fast(0, eth(B, A), to=1)


def test_an_ingress_port_that_is_down_forwards_nothing_in_the_kernel(rig):
    known(rig, (A, 1, 0), (B, 1, 1))
    rig.dp.set_port_up(rig.p[0], False)
    rig.user(0, eth(B, A))


@pytest.mark.parametrize("dst", [BCAST, MCAST, "03:00:00:00:00:01"])
def test_broadcast_and_multicast_go_to_userspace_even_if_the_kernel_fdb_had_them(rig, dst):
    known(rig, (A, 1, 0), (B, 1, 1))
    rig.user(0, eth(dst, A))
    # fdb_add refuses group addresses: put one in the kernel copy directly, so that only the
    # program's own check keeps the frame from the fast path
    rig.kfdb_put(dst, 1, rig.p[1], _core.clock())
    assert rig.kfdb_get(dst, 1)[0] == rig.p[1]
    rig.user(0, eth(dst, A))
    rig.kfdb_put(B, 1, rig.p[1], _core.clock())         # the same write makes a unicast fast
    rig.fast(0, eth(B, A), to=1)


def test_a_14_byte_frame_is_forwarded_as_the_workers_would(rig):
    # the workers forward any frame of at least a header; so does the program
    known(rig, (A, 1, 0), (B, 1, 1))
    f = eth(B, A, size=14)
    assert len(f) == 14
    assert rig.fast(0, f, to=1) == f


def test_a_14_byte_frame_with_an_unknown_destination_goes_to_userspace(rig):
    known(rig, (A, 1, 0))
    rig.user(0, eth(B, A, size=14))


@pytest.mark.parametrize("size", [14, 15, 16, 17])
def test_a_tagged_frame_shorter_than_its_tag_goes_to_userspace(rig, size):
    for p in rig.p:
        rig.dp.port_set_vlan(p, "trunk", allowed=[10])
    known(rig, (A, 10, 0), (B, 10, 1))
    f = eth(B, A, vid=10, size=size)
    assert len(f) == size and f[12:14] == b"\x81\x00"
    rig.user(0, f)
    f = eth(B, A, vid=10, size=18)                      # the whole tag: forwarded
    assert rig.fast(0, f, to=1) == f


# ------------------------------------------------------------------ VLANs

def test_access_to_access_in_the_same_vlan_is_fast_and_unchanged(rig):
    rig.dp.port_set_vlan(rig.p[0], "access", vlan=20)
    rig.dp.port_set_vlan(rig.p[1], "access", vlan=20)
    known(rig, (A, 20, 0), (B, 20, 1))
    f = eth(B, A)
    assert rig.fast(0, f, to=1) == f
    known(rig, (A, 1, 0), (B, 1, 1))        # entries in VLAN 1 do not make VLAN 20's
    rig.dp.fdb_del(B, 20)
    rig.user(0, f)


def test_an_access_port_takes_no_tagged_frame_in_the_kernel(rig):
    rig.dp.port_set_vlan(rig.p[0], "access", vlan=10)
    rig.dp.port_set_vlan(rig.p[1], "trunk", allowed=[10])
    known(rig, (A, 10, 0), (B, 10, 1))
    rig.user(0, eth(B, A, vid=10))
    rig.user(0, eth(B, A, vid=1))
    rig.fast(0, eth(B, A), to=1)                # untagged, it is in VLAN 10


def test_trunk_to_trunk_in_an_allowed_vlan_is_fast_and_unchanged(rig):
    rig.dp.port_set_vlan(rig.p[0], "trunk", allowed=[10, 0x123])
    rig.dp.port_set_vlan(rig.p[1], "trunk", allowed=[10, 0x123])
    known(rig, (A, 10, 0), (B, 10, 1), (A, 0x123, 0), (B, 0x123, 1))
    for f in (eth(B, A, vid=10), eth(B, A, vid=0x123, size=300),
              eth(B, A, vid=10, pcp=5), eth(B, A, tci=(3 << 13) | (1 << 12) | 10)):
        assert rig.fast(0, f, to=1) == f        # the TCI (PCP, DEI) travels as it came


def test_trunk_to_access_pops_the_tag(rig):
    rig.dp.port_set_vlan(rig.p[0], "trunk", allowed=[10, 20])
    rig.dp.port_set_vlan(rig.p[1], "access", vlan=10)
    known(rig, (A, 10, 0), (B, 10, 1))
    for f in (eth(B, A, vid=10, size=64), eth(B, A, vid=10, pcp=6, size=1518)):
        out = rig.fast(0, f, to=1)
        assert out == popped(f) and len(out) == len(f) - 4


def test_trunk_to_access_leaves_a_frame_that_would_need_padding_to_userspace(rig):
    rig.dp.port_set_vlan(rig.p[0], "trunk", allowed=[10])
    rig.dp.port_set_vlan(rig.p[1], "access", vlan=10)
    known(rig, (A, 10, 0), (B, 10, 1))
    for size in (63, 60, 18):                   # untagged: 59, 56, 14 bytes (< 60)
        rig.user(0, eth(B, A, vid=10, size=size))
    f = eth(B, A, vid=10, size=64)              # untagged: 60
    assert rig.fast(0, f, to=1) == popped(f)


def test_access_to_trunk_pushes_the_tag(rig):
    rig.dp.port_set_vlan(rig.p[0], "access", vlan=0x123)
    rig.dp.port_set_vlan(rig.p[1], "trunk", allowed=[10, 0x123])
    known(rig, (A, 0x123, 0), (B, 0x123, 1))
    for size in (60, 14, 1514):
        f = eth(B, A, size=size)
        assert rig.fast(0, f, to=1) == pushed(f, 0x123)


def test_a_vid_the_ingress_trunk_does_not_allow_goes_to_userspace(rig):
    rig.dp.port_set_vlan(rig.p[0], "trunk", allowed=[10])
    rig.dp.port_set_vlan(rig.p[1], "trunk")                 # all VLANs
    known(rig, (A, 20, 0), (B, 20, 1), (A, 10, 0), (B, 10, 1))
    rig.user(0, eth(B, A, vid=20))
    assert rig.fast(0, eth(B, A, vid=10), to=1) == eth(B, A, vid=10)
    rig.dp.port_set_vlan(rig.p[0], "trunk", allowed=[10, 20])
    rig.fast(0, eth(B, A, vid=20), to=1)


def test_an_egress_port_that_does_not_carry_the_vlan_is_no_fast_path_destination(rig):
    rig.dp.port_set_vlan(rig.p[0], "trunk", allowed=[10, 20])
    rig.dp.port_set_vlan(rig.p[1], "trunk", allowed=[10])
    rig.dp.port_set_vlan(rig.p[2], "access", vlan=10)
    known(rig, (A, 20, 0), (B, 20, 1), (C, 20, 2))
    rig.user(0, eth(B, A, vid=20))              # trunk -> trunk without 20
    rig.user(0, eth(C, A, vid=20, size=100))    # trunk -> access of 10
    rig.dp.port_set_vlan(rig.p[1], "trunk", allowed=[10, 20])
    rig.fast(0, eth(B, A, vid=20), to=1)


def test_the_native_vlan_of_a_trunk_goes_untagged_to_an_access_port(rig):
    rig.dp.port_set_vlan(rig.p[0], "trunk", allowed=[10, 30], native=30)
    rig.dp.port_set_vlan(rig.p[1], "access", vlan=30)
    rig.dp.port_set_vlan(rig.p[2], "trunk", allowed=[30])
    known(rig, (A, 30, 0), (B, 30, 1), (C, 30, 2))
    f = eth(B, A)
    assert rig.fast(0, f, to=1) == f                        # untagged in, untagged out
    assert rig.fast(0, eth(C, A), to=2) == pushed(eth(C, A), 30)   # to a trunk: tagged
    g = eth(B, A, vid=30, size=100)                         # the native VID tagged: popped
    assert rig.fast(0, g, to=1) == popped(g)


def test_a_trunk_sends_its_native_vlan_untagged(rig):
    rig.dp.port_set_vlan(rig.p[0], "trunk", allowed=[10, 30])
    rig.dp.port_set_vlan(rig.p[1], "trunk", allowed=[10, 30], native=30)
    rig.dp.port_set_vlan(rig.p[2], "access", vlan=10)
    known(rig, (A, 30, 0), (B, 30, 1), (A, 10, 0), (B, 10, 1), (C, 10, 2))
    f = eth(B, A, vid=30, size=64)
    assert rig.fast(0, f, to=1) == popped(f)
    f = eth(B, A, vid=10, size=64)              # not its native VLAN: tagged as it came
    assert rig.fast(0, f, to=1) == f
    assert rig.fast(1, eth(A, B), to=0) == pushed(eth(A, B), 30)
    assert rig.fast(1, eth(A, B, vid=10), to=0) == eth(A, B, vid=10)


def test_a_trunk_without_a_native_vlan_takes_no_untagged_frame_in_the_kernel(rig):
    rig.dp.port_set_vlan(rig.p[0], "trunk", allowed=[1, 10])
    known(rig, (A, 1, 0), (B, 1, 1))
    rig.user(0, eth(B, A))
    f = eth(B, A, vid=1, size=64)
    assert rig.fast(0, f, to=1) == popped(f)       # tagged, it is VLAN 1: popped for p1


@pytest.mark.parametrize("pcp", [0, 5])
def test_priority_tagged_frames_go_to_userspace(rig, pcp):
    rig.dp.port_set_vlan(rig.p[0], "access", vlan=10)
    rig.dp.port_set_vlan(rig.p[1], "access", vlan=10)
    known(rig, (A, 10, 0), (B, 10, 1))
    rig.user(0, eth(B, A, vid=0, pcp=pcp, size=64))
    rig.dp.port_set_vlan(rig.p[0], "trunk", allowed=[10], native=10)
    rig.user(0, eth(B, A, vid=0, pcp=pcp, size=64))
    rig.fast(0, eth(B, A, size=64), to=1)


# ------------------------------------------------------------------ the FDB's changes and aging

def test_after_fdb_del_of_the_destination_frames_go_to_userspace(rig):
    known(rig, (A, 1, 0), (B, 1, 1))
    rig.fast(0, eth(B, A), to=1)
    assert rig.dp.fdb_del(B, 1)
    assert rig.kfdb_get(B, 1) is None
    rig.user(0, eth(B, A))
    rig.dp.fdb_add(B, 1, rig.p[2])                  # back, elsewhere
    rig.fast(0, eth(B, A), to=2)
    rig.dp.fdb_del(A, 1)                            # the source gone: learned again upstairs
    rig.user(0, eth(B, A))


def test_a_flush_of_the_destination_port_sends_frames_to_userspace(rig):
    known(rig, (A, 1, 0), (B, 1, 1))
    rig.fast(0, eth(B, A), to=1)
    rig.dp.fdb_flush(rig.p[1], static=True)
    rig.user(0, eth(B, A))


def test_a_fast_frame_updates_its_source_last_seen_for_aging(rig):
    dp = rig.dp
    known(rig, (B, 1, 1))
    # learned entries, last seen 100 s ago: the workers' own decision learns them
    dp.stop()                                       # the (never started) workers: decide() runs
    then = _core.clock() - 100
    for src in (A, C):
        dp.decide(bytearray(eth(B, src)), rig.p[0], then)
    assert rig.kfdb_get(A, 1) == (rig.p[0], then)

    def entry(m):
        (e,) = [e for e in dp.fdb_list() if e[0] == m and e[1] == 1]
        return e
    mac_, vlan, port, age, static, in_kernel = entry(A)
    assert (port, static, in_kernel) == (rig.p[0], False, True) and 100 <= age <= 101

    rig.fast(0, eth(B, A), to=1)
    now = _core.clock()
    port, seen = rig.kfdb_get(A, 1)
    assert port == rig.p[0] and now - 1 <= seen <= now
    assert entry(A)[3] <= 1 and entry(A)[5]
    assert entry(C)[3] >= 100                       # no frame from C: still old
    assert rig.kfdb_get(B, 1)[1] <= now             # the destination's is not touched here

    # the sweep takes the kernel's second: A lives, C (silent) ages out
    dp.set_aging(50)
    aged = dp.fdb_maintain()
    assert (C, 1, rig.p[0]) in aged and all(m != A for m, _, _ in aged)
    assert rig.kfdb_get(C, 1) is None and rig.kfdb_get(A, 1) is not None
    rig.fast(0, eth(B, A), to=1)


def test_a_frame_longer_than_the_egress_mtu_allows_goes_to_userspace(rig):
    # The redirect refuses more than MTU + 18 bytes (after the program counted the frame):
    # the row's limit keeps such a frame on the AF_XDP path, a tag pushed or popped included.
    rig.dp.fdb_add(A, 1, rig.p[0])
    rig.dp.fdb_add(B, 1, rig.p[1])
    assert rig.dp.port_info(rig.p[1])["fastpath_target"]
    rig.dp.set_port_mtu(rig.p[1], 1400)
    rig.fast(0, eth(B, A, 1418), to=1)
    rig.user(0, eth(B, A, 1419))
    rig.dp.set_port_mtu(rig.p[1], 1500)             # raised: the same frame is fast again
    rig.fast(0, eth(B, A, 1419), to=1)
    rig.dp.port_set_vlan(rig.p[1], "trunk", allowed=[1])        # a tag pushed: 4 more bytes
    rig.dp.set_port_mtu(rig.p[1], 1400)
    assert rig.fast(0, eth(B, A, 1414), to=1) == pushed(eth(B, A, 1414), 1)
    rig.user(0, eth(B, A, 1415))
    rig.dp.set_port_mtu(rig.p[1], 0)                # not known: no target
    assert not rig.dp.port_info(rig.p[1])["fastpath_target"]
    assert "MTU" in rig.dp.port_info(rig.p[1])["fastpath_reason"]
    rig.user(0, eth(B, A, 60))
