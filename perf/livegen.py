#!/usr/bin/env python3
"""libbpf through ctypes, and a traffic generator that can outrun any switch here.

The generator runs an XDP program by BPF_PROG_RUN in live-frames mode: the kernel hands the
program a fresh copy of a template frame once per repetition, the program may rewrite it, and
XDP_TX sends it out of the interface named by ctx.ingress_ifindex, that is into its veth peer.
perf/fwd_rate.py (xdp_gen.bpf.c: one template) and tests/test_soak.py (xdp_mix.bpf.c: mixed
traffic) use it.  Run as a child inside the generator's namespace:

    ip netns exec NS python perf/livegen.py --prog-fd FD --ifname eth0 --frame HEX --count N
"""
import argparse
import ctypes as C
import errno
import os
import platform
import signal
import socket
import subprocess
import sys
import time

# ----------------------------------------------------------------------------------------
# libbpf through ctypes
# ----------------------------------------------------------------------------------------
XDP_FLAGS_DRV_MODE = 1 << 2         # native XDP: veth's ndo_xdp_xmit needs it on the peer
BPF_F_TEST_XDP_LIVE_FRAMES = 1 << 1
CLONE_NEWNET = 0x40000000


class XdpMd(C.Structure):
    _fields_ = [(n, C.c_uint32) for n in ("data", "data_end", "data_meta", "ingress_ifindex",
                                          "rx_queue_index", "egress_ifindex")]


class TestRunOpts(C.Structure):     # struct bpf_test_run_opts, libbpf 1.1
    _fields_ = [("sz", C.c_size_t), ("data_in", C.c_void_p), ("data_out", C.c_void_p),
                ("data_size_in", C.c_uint32), ("data_size_out", C.c_uint32),
                ("ctx_in", C.c_void_p), ("ctx_out", C.c_void_p),
                ("ctx_size_in", C.c_uint32), ("ctx_size_out", C.c_uint32),
                ("retval", C.c_uint32), ("repeat", C.c_int), ("duration", C.c_uint32),
                ("flags", C.c_uint32), ("cpu", C.c_uint32), ("batch_size", C.c_uint32)]


def libbpf():
    lib = C.CDLL("libbpf.so.1", use_errno=True)
    lib.bpf_object__open_file.restype = C.c_void_p
    lib.bpf_object__open_file.argtypes = [C.c_char_p, C.c_void_p]
    lib.bpf_object__find_program_by_name.restype = C.c_void_p
    lib.bpf_object__find_program_by_name.argtypes = [C.c_void_p, C.c_char_p]
    for f in ("bpf_object__load", "bpf_object__close", "bpf_program__fd"):
        getattr(lib, f).argtypes = [C.c_void_p]
    lib.bpf_object__find_map_fd_by_name.argtypes = [C.c_void_p, C.c_char_p]
    lib.bpf_xdp_attach.argtypes = [C.c_int, C.c_int, C.c_uint32, C.c_void_p]
    lib.bpf_xdp_detach.argtypes = [C.c_int, C.c_uint32, C.c_void_p]
    lib.bpf_map_lookup_elem.argtypes = [C.c_int, C.c_void_p, C.c_void_p]
    lib.bpf_map_update_elem.argtypes = [C.c_int, C.c_void_p, C.c_void_p, C.c_uint64]
    lib.bpf_prog_test_run_opts.argtypes = [C.c_int, C.POINTER(TestRunOpts)]
    return lib


def check(rc, what):
    """libbpf returns -errno (or NULL with errno set)."""
    if rc is None or (isinstance(rc, int) and rc < 0):
        err = -rc if rc else C.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return rc


class BpfObject:
    """One compiled .o, opened and loaded; programs and maps by name."""

    def __init__(self, lib, path):
        self.lib = lib
        self.obj = check(lib.bpf_object__open_file(str(path).encode(), None), f"open {path}")
        check(lib.bpf_object__load(self.obj), f"load {path}")

    def prog_fd(self, name):
        prog = check(self.lib.bpf_object__find_program_by_name(self.obj, name.encode()), name)
        return check(self.lib.bpf_program__fd(prog), name)

    def map_fd(self, name):
        return check(self.lib.bpf_object__find_map_fd_by_name(self.obj, name.encode()), name)

    def close(self):
        self.lib.bpf_object__close(self.obj)


def percpu_sum(lib, map_fd, key):
    """Sum of one u64 slot of a per-CPU array over every possible CPU."""
    ncpu = lib.libbpf_num_possible_cpus()
    vals = (C.c_uint64 * ncpu)()
    k = C.c_uint32(key)
    check(lib.bpf_map_lookup_elem(map_fd, C.byref(k), vals), "map lookup")
    return sum(vals)


class GenCfg(C.Structure):     # xdp_gen.bpf.c's struct gen_cfg
    _fields_ = [("nmacs", C.c_uint32), ("paused", C.c_uint32), ("interval_ns", C.c_uint64),
                ("epoch", C.c_uint64)]


_epoch = 0


def gen_configure(lib, cfg_fd, nmacs=0, pps=None, paused=False, cores=1):
    """Set xdp_gen.bpf.c's gen_cfg: source MACs to cycle through, and the load: `pps`
    frames/s in all (each of `cores` generators sends its share), None as fast as it goes,
    or paused (nothing sent)."""
    if pps is not None and pps <= 0:
        raise ValueError(f"a load of {pps} frames/s: pause instead")
    interval = 0 if pps is None else max(1, round(1e9 * cores / pps))
    global _epoch
    _epoch += 1                     # every setting starts the schedule afresh
    cfg = GenCfg(nmacs=nmacs, paused=1 if paused else 0, interval_ns=interval, epoch=_epoch)
    key = C.c_uint32(0)
    check(lib.bpf_map_update_elem(cfg_fd, C.byref(key), C.byref(cfg), 0), "gen_cfg update")


def compile_bpf(src, out):
    """clang -target bpf: src (a .bpf.c) into the object `out`."""
    arch = subprocess.run(["gcc", "-print-multiarch"], capture_output=True,
                          text=True).stdout.strip() or f"{platform.machine()}-linux-gnu"
    subprocess.run(["clang", "-O2", "-g", "-Wall", "-target", "bpf", f"-I/usr/include/{arch}",
                    "-c", str(src), "-o", str(out)], check=True, capture_output=True)


def run_live(prog_fd, ifname, frame, count=2**31 - 1, seconds=None):
    """Transmit `count` frames out of ifname (in this process's netns) through the XDP
    program prog_fd, or as many as fit in `seconds`.

    Every BPF_PROG_RUN of an XDP program swaps the XDP dispatcher in and out, each time with a
    synchronize_rcu() that sleeps for milliseconds: with 200,000 repetitions per call the
    generator slept half the time.  So: one call with a huge repeat count, which a timer
    signal interrupts when time is up (the kernel checks for signals between batches: EINTR)."""
    lib = libbpf()
    buf = C.create_string_buffer(frame, len(frame))
    # The kernel insists that ctx.data_end is the frame's length.
    ctx = XdpMd(data_end=len(frame), ingress_ifindex=socket.if_nametoindex(ifname))
    opts = TestRunOpts(sz=C.sizeof(TestRunOpts), data_in=C.addressof(buf),
                       data_size_in=len(frame), ctx_in=C.addressof(ctx),
                       ctx_size_in=C.sizeof(ctx), repeat=count,
                       flags=BPF_F_TEST_XDP_LIVE_FRAMES)
    if seconds is None:
        check(lib.bpf_prog_test_run_opts(prog_fd, C.byref(opts)), "BPF_PROG_RUN")
        return
    signal.signal(signal.SIGALRM, lambda *_: None)     # only there to interrupt the call
    signal.setitimer(signal.ITIMER_REAL, seconds)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        rc = lib.bpf_prog_test_run_opts(prog_fd, C.byref(opts))
        if rc < 0 and rc != -errno.EINTR:
            check(rc, "BPF_PROG_RUN")


def main():
    p = argparse.ArgumentParser(description="transmit frames through an XDP program "
                                            "(BPF_PROG_RUN, live frames)")
    p.add_argument("--prog-fd", type=int, required=True, help="an inherited program fd")
    p.add_argument("--ifname", required=True)
    p.add_argument("--frame", required=True, help="the template frame, in hex")
    p.add_argument("--count", type=int, default=2**31 - 1)
    p.add_argument("--seconds", type=float)
    p.add_argument("--lab", help="a run's prefix: only names the process for cleanups")
    a = p.parse_args()
    try:
        run_live(a.prog_fd, a.ifname, bytes.fromhex(a.frame), a.count, a.seconds)
    except OSError as e:
        sys.exit(f"livegen: {e}")


if __name__ == "__main__":
    main()
