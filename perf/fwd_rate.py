#!/usr/bin/env python3
"""Forwarding rate of L2 forwarders, side by side, on the same two veth ports.

    netns <P>gen                   root netns                          netns <P>sink
    gen0 ===veth=== <P>p0 --[ forwarder under test, core 1 ]-- <P>p1 ===veth=== sink0
    XDP live-frames generator, core 0                               XDP: count, drop

The generator is an XDP program returning XDP_TX, run by BPF_PROG_RUN in live-frames mode:
every repetition transmits the template frame out of gen0 into <P>p0.  The sink counts what
reaches sink0.  Forwarded rate = sink frames/s over a steady window; offered rate = frames/s
the generator sent.  Systems: bridge (Linux bridge), testpmd (DPDK, AF_XDP PMD), ovs (Open
vSwitch, netdev datapath, afxdp ports), pyxsw (once per --modes entry), xdp (in-kernel devmap
redirect, the ceiling).  After the rate window, on the same forwarder: --storm (pyxsw's rate
under an RPC storm, and under a CPU hog as the control), --idle (CPU with no traffic),
--latency (UDP ping-pong through the switch); --fdb-sizes: pyxsw with N learned MACs.

Run as root:   .venv/bin/python perf/fwd_rate.py [--only bridge,testpmd] [--size 1500]
Everything it creates carries a random prefix pb<4 hex> and is removed on exit, on SIGINT and
on SIGTERM; after a SIGKILL, `fwd_rate.py cleanup` removes what is left.
"""
import argparse
import contextlib
import ctypes as C
import datetime
import fcntl
import json
import os
import platform
import re
import secrets
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from livegen import (BpfObject, XDP_FLAGS_DRV_MODE, check, compile_bpf, libbpf,  # noqa: E402
                     percpu_sum)

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SYSTEMS = ("bridge", "testpmd", "ovs", "pyxsw", "xdp")
PYXSW = REPO / ".venv" / "bin" / "pyxsw"
LOCK = "/run/pyxsw-fwd_rate.lock"

# ----------------------------------------------------------------------------------------
# Small helpers: commands, namespaces, undo stack
# ----------------------------------------------------------------------------------------
def sh(*cmd, ns=None, check=True):
    """Run a command (inside netns `ns` if given); its output, or RuntimeError with stderr."""
    cmd = [str(c) for c in cmd]
    if ns:
        cmd = ["ip", "netns", "exec", ns] + cmd
    r = subprocess.run(cmd, capture_output=True, text=True)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {r.stderr.strip() or r.returncode}")
    return r.stdout


CLONE_NEWNET = 0x40000000
_libc = C.CDLL(None, use_errno=True)


@contextlib.contextmanager
def netns(name):
    """Run a block of this (single-threaded) process inside a named netns: sockets made and
    ifindexes looked up there belong to it.  Python 3.11 has no os.setns."""
    home = os.open("/proc/self/ns/net", os.O_RDONLY)
    target = os.open(f"/run/netns/{name}", os.O_RDONLY)
    try:
        if _libc.setns(target, CLONE_NEWNET) != 0:
            raise OSError(C.get_errno(), f"setns {name}")
        yield
    finally:
        _libc.setns(home, CLONE_NEWNET)
        os.close(home)
        os.close(target)


SIGNALS = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}     # all mean: clean up and stop
GEN_IP, SINK_IP = "10.254.0.1", "10.254.0.2"     # the template frame's addresses
LAT_PORT = 7007                                     # latency ping-pong (not 9: the sink's)


class Undo:
    """A stack of undo actions run newest first; unwind(mark) undoes back to a mark."""

    def __init__(self):
        self.actions = []

    def push(self, what, fn, *args):
        self.actions.append((what, fn, args))

    def mark(self):
        return len(self.actions)

    def unwind(self, mark=0):
        # A second Ctrl-C in the middle of teardown would leave half of it behind.
        old = signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS)
        try:
            while len(self.actions) > mark:
                what, fn, args = self.actions.pop()
                try:
                    fn(*args)
                except Exception as e:  # keep undoing the rest
                    print(f"cleanup: {what}: {e}", file=sys.stderr)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)


def stop_process(p, timeout=10):
    """SIGTERM the child's own process group (it runs in its own session), then SIGKILL."""
    if p.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(p.pid, signal.SIGTERM)
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGKILL)
            p.wait()


class Unavailable(Exception):
    """A system that cannot run here: reported and skipped, the others still run."""


# ----------------------------------------------------------------------------------------
# Frames
# ----------------------------------------------------------------------------------------
def mac_bytes(mac):
    return bytes.fromhex(mac.replace(":", ""))


def udp_frame(dst, src, size):
    """An Ethernet/IPv4/UDP frame; `size` counts the 4-byte FCS the wire adds (RFC 2544)."""
    payload = bytes(size - 4 - 14 - 20 - 8)
    udp = struct.pack("!HHHH", 9, 9, 8 + len(payload), 0) + payload      # discard port, no csum
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0x4000, 64, 17, 0,
                     bytes([10, 254, 0, 1]), bytes([10, 254, 0, 2]))
    s = sum(struct.unpack("!10H", ip))
    s = (s & 0xFFFF) + (s >> 16)
    csum = ~((s & 0xFFFF) + (s >> 16)) & 0xFFFF
    ip = ip[:10] + struct.pack("!H", csum) + ip[12:]
    return mac_bytes(dst) + mac_bytes(src) + b"\x08\x00" + ip + udp


def garp(mac):
    """A gratuitous ARP from `mac`: makes learning switches put `mac` on the port it came in."""
    arp = struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 1, mac_bytes(mac),
                      bytes([10, 254, 0, 2]), bytes(6), bytes([10, 254, 0, 2]))
    return b"\xff" * 6 + mac_bytes(mac) + b"\x08\x06" + arp + bytes(18)


# ----------------------------------------------------------------------------------------
# The lab: namespaces, veth pairs, generator, sink
# ----------------------------------------------------------------------------------------
class Lab:
    def __init__(self, args, undo):
        self.args, self.undo = args, undo
        self.prefix = args.prefix or f"pb{secrets.token_hex(2)}"
        self.p0, self.p1 = f"{self.prefix}p0", f"{self.prefix}p1"
        self.gen_ns, self.sink_ns = f"{self.prefix}gen", f"{self.prefix}sink"
        tag = self.prefix[2:6]
        self.gen_mac = f"02:{tag[:2]}:{tag[2:]}:00:00:01"
        self.sink_mac = f"02:{tag[:2]}:{tag[2:]}:00:00:02"
        self.tmp = Path(tempfile.mkdtemp(prefix=f"{self.prefix}-"))
        undo.push("temp dir", shutil.rmtree, self.tmp, True)
        (self.tmp / "owner.pid").write_text(str(os.getpid()))    # `cleanup` spares live runs
        self.forwarder = None       # the process under test, when it is one
        self.forwarder_pid = None   # its pid, when not the Popen's (ovs-vswitchd detaches)
        self.lib = libbpf()

    def build(self):
        q, u = self.args.queues, self.undo
        for ns in (self.gen_ns, self.sink_ns):
            sh("ip", "netns", "add", ns)
            u.push(f"netns {ns}", sh, "ip", "netns", "del", ns)
        for port, ns, peer, mac in ((self.p0, self.gen_ns, "gen0", self.gen_mac),
                                    (self.p1, self.sink_ns, "sink0", self.sink_mac)):
            sh("ip", "link", "add", port, "numtxqueues", q, "numrxqueues", q, "type", "veth",
               "peer", "name", peer, "netns", ns, "address", mac, "numtxqueues", q,
               "numrxqueues", q)
            u.push(f"link {port}", sh, "ip", "link", "del", port)
            sh("ip", "link", "set", port, "up")
            sh("ip", "link", "set", peer, "up", ns=ns)
        self.compile()
        # Sink: count and drop on sink0; the parent reads its map directly.
        sink = BpfObject(self.lib, self.tmp / "xdp_sink.o")
        u.push("sink object", sink.close)
        self.sink_map = sink.map_fd("sink_count")
        with netns(self.sink_ns):
            ifindex = socket.if_nametoindex("sink0")
            check(self.lib.bpf_xdp_attach(ifindex, sink.prog_fd("xdp_sink"),
                                          XDP_FLAGS_DRV_MODE, None), "attach sink")
            self.sink_sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
            self.sink_sock.bind(("sink0", 0))
        u.push("sink XDP", self.xdp_detach_in, self.sink_ns, "sink0")
        u.push("sink socket", self.sink_sock.close)
        with netns(self.gen_ns):
            self.gen_sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
            self.gen_sock.bind(("gen0", 0))
        u.push("gen socket", self.gen_sock.close)
        # Generator: loaded here (to read its counter), run by children inside gen_ns.
        gen = BpfObject(self.lib, self.tmp / "xdp_gen.o")
        u.push("gen object", gen.close)
        self.gen_prog, self.gen_map = gen.prog_fd("xdp_gen"), gen.map_fd("gen_count")
        self.gen_cfg = gen.map_fd("gen_cfg")
        self.frame = udp_frame(self.sink_mac, self.gen_mac, self.args.size)
        # Two hosts for the latency ping-pong (the sink passes all but UDP port 9 to its
        # stack).  Checksum offload off: a userspace switch over veth would otherwise
        # forward frames with partial checksums, which the receiver drops.
        for ns, dev, ip in ((self.gen_ns, "gen0", GEN_IP), (self.sink_ns, "sink0", SINK_IP)):
            sh("ip", "addr", "add", f"{ip}/24", "dev", dev, ns=ns)
            sh("ethtool", "-K", dev, "tx", "off", ns=ns)

    def set_source_macs(self, n):
        """Make the generator cycle through n source MACs (xdp_gen.bpf.c, gen_cfg)."""
        key, val = C.c_uint32(0), C.c_uint32(n)
        check(self.lib.bpf_map_update_elem(self.gen_cfg, C.byref(key), C.byref(val), 0),
              "gen_cfg update")

    def ping_pong(self, count, interval=0.001, port=LAT_PORT):
        """UDP ping-pong gen0 -> sink0 -> gen0 through the forwarder, one request in flight,
        `interval` s apart (low load): round-trip times in microseconds, and how many got
        no answer within 100 ms.  Both ends run off the forwarder cores: on a core a
        forwarder busy-polls they would wait for its time slice, and measure the scheduler."""
        away = spare_cores(self)
        echo = subprocess.Popen(["taskset", "-c", away, "ip", "netns", "exec",
                                 self.sink_ns, sys.executable, __file__, "_echo", "--lab",
                                 self.prefix, "--port", str(port)],
                                stdin=subprocess.DEVNULL, start_new_session=True)
        home = os.sched_getaffinity(0)
        os.sched_setaffinity(0, {int(c) for c in away.split(",")})
        try:
            with netns(self.gen_ns):
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            with s:
                s.settimeout(0.1)
                rtts, lost = [], 0
                deadline = time.monotonic() + 5     # wait for the echo server (and ARP)
                while time.monotonic() < deadline:
                    s.sendto(b"warm", (SINK_IP, port))
                    with contextlib.suppress(socket.timeout):
                        s.recv(64)
                        break
                else:
                    raise Unavailable("latency: no echo from the sink host within 5 s")
                for i in range(count):
                    msg = struct.pack("!Q", i)
                    t0 = time.perf_counter_ns()
                    s.sendto(msg, (SINK_IP, port))
                    try:
                        while s.recv(64) != msg:       # a late answer to an earlier request
                            pass
                        rtts.append((time.perf_counter_ns() - t0) / 1000)
                    except socket.timeout:
                        lost += 1
                    time.sleep(interval)
        finally:
            os.sched_setaffinity(0, home)
            stop_process(echo)
        return rtts, lost

    def compile(self):
        for name in ("xdp_gen", "xdp_sink", "xdp_redirect"):
            compile_bpf(HERE / f"{name}.bpf.c", self.tmp / f"{name}.o")

    def fwd_pid(self):
        """The pid of the forwarder under test when it is a process (its CPU is read from
        /proc/<pid>/stat), else None (bridge, xdp: kernel work, see the core's busy %)."""
        if self.forwarder_pid:
            return self.forwarder_pid
        return self.forwarder.pid if self.forwarder else None

    def xdp_detach_in(self, ns, ifname):
        with netns(ns) if ns else contextlib.nullcontext():
            ifindex = socket.if_nametoindex(ifname)
            check(self.lib.bpf_xdp_detach(ifindex, XDP_FLAGS_DRV_MODE, None), "xdp detach")

    def announce(self):
        """The sink speaks first, so learning forwarders unicast to it instead of flooding."""
        for _ in range(3):
            self.sink_sock.send(garp(self.sink_mac))

    def sink_frames(self):
        return percpu_sum(self.lib, self.sink_map, 0)

    def wait_forwarding(self, proc=None, timeout=30.0):
        """Wait until a frame sent from gen0 reaches the sink: the forwarder is really up."""
        probe = udp_frame(self.sink_mac, self.gen_mac, 64)
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if proc is not None and proc.poll() is not None:
                raise Unavailable(f"exited with status {proc.returncode} while starting")
            self.announce()
            before = self.sink_frames()
            for _ in range(8):
                self.gen_sock.send(probe)
            time.sleep(0.1)
            if self.sink_frames() > before:
                return
        raise Unavailable(f"no probe frame reached the sink within {timeout:.0f} s")

    def start_generators(self, seconds):
        """One generator per --gen-cores entry (veth picks the peer's RX queue by the sending
        CPU, so several generator cores are how several queues get traffic)."""
        procs = []
        for core in self.args.gen_cores:
            cmd = ["ip", "netns", "exec", self.gen_ns, "taskset", "-c", str(core),
                   sys.executable, HERE / "livegen.py", "--lab", self.prefix,
                   "--prog-fd", str(self.gen_prog),
                   "--ifname", "gen0", "--seconds", f"{seconds:.1f}", "--frame", self.frame.hex()]
            procs.append(subprocess.Popen(cmd, pass_fds=[self.gen_prog], start_new_session=True))
        return procs

    def sample(self):
        pid = self.fwd_pid()
        return {"t": time.monotonic(), "sink": self.sink_frames(),
                "proc": proc_ticks(pid) if pid else None,
                "gen": percpu_sum(self.lib, self.gen_map, 0),
                "p0": port_rx_frames(self.p0), "cpu": cpu_times(),
                "other": other_ticks(exclude=pid)}


def port_rx_frames(ifname):
    """Frames gen0 managed to put into `ifname`: veth's per-queue counter of frames taken off
    its XDP ring (XDP_TX frames that find the ring full are dropped before it)."""
    out = sh("ethtool", "-S", ifname)
    return sum(int(v) for k, v in re.findall(r"(rx_queue_\d+_xdp_packets):\s*(\d+)", out))


def proc_ticks(pid):
    """utime + stime of a whole process (all its threads), in clock ticks; None if gone."""
    try:
        f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return int(f[11]) + int(f[12])
    except (OSError, IndexError, ValueError):
        return None


def thread_ticks(pid):
    """{tid: (comm, utime+stime ticks, CPU it last ran on)} of every thread of a process."""
    out = {}
    for t in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            head, tail = t.joinpath("stat").read_text().rsplit(")", 1)
            f = tail.split()
            out[int(t.name)] = (head.split("(", 1)[1], int(f[11]) + int(f[12]), int(f[36]))
    return out


def percentile(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q / 100 * (len(xs) - 1))))] if xs else None


def cpu_times():
    """{cpu: (busy, total)} jiffies from /proc/stat."""
    res = {}
    for line in Path("/proc/stat").read_text().splitlines():
        m = re.match(r"cpu(\d+) (.*)", line)
        if m:
            v = [int(x) for x in m.group(2).split()]
            res[int(m.group(1))] = (sum(v) - v[3] - v[4], sum(v))      # minus idle, iowait
    return res


def other_ticks(exclude=None):
    """{pid: CPU ticks} of user processes that are neither this benchmark nor its children.
    Another job on these 2-core machines (a build, a test run) skews the figures badly, so
    the report says when one ran.  (A process that ends inside the window is missed: this
    can under-report, never over-report.)"""
    me, parent, ticks = os.getpid(), {}, {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            with contextlib.suppress(OSError, IndexError):
                f = (d / "stat").read_text().rsplit(")", 1)[1].split()
                parent[int(d.name)] = int(f[1])
                ticks[int(d.name)] = int(f[11]) + int(f[12])      # utime + stime

    def ours_or_kernel(pid):
        while pid > 1:
            if pid in (me, 2, exclude):     # 2: kthreadd: kernel threads are part of the
                # workload; exclude: the forwarder when it is not our child (ovs-vswitchd)
                return True
            pid = parent.get(pid, 0)
        return False
    return {pid: t for pid, t in ticks.items() if not ours_or_kernel(pid)}


# ----------------------------------------------------------------------------------------
# Forwarders.  Each start_* returns once frames go through, and pushes its own undo.
# ----------------------------------------------------------------------------------------
def rps_to_fwd_cores(lab, undo, ifname):
    """The bridge forwards in the softirq of the port that receives, and veth runs that on
    the CPU that sent the frame: the generator's.  RPS hands the received skbs to the
    forwarder cores, so, as with the AF_XDP forwarders, core 0 does the port's receive and
    core 1 the forwarding, the transmit and the sink.  (Threaded NAPI pinned to core 1 gave
    the bridge 0.6-0.8 Mpps against RPS's 1.0: generator and NAPI thread fight over the
    veth ring.)"""
    mask = f"{sum(1 << c for c in lab.args.fwd_cores):x}"
    for q in Path(f"/sys/class/net/{ifname}/queues").glob("rx-*"):
        (q / "rps_cpus").write_text(mask)
        undo.push(f"{q.name} rps off", (q / "rps_cpus").write_text, "0")


def napi_to_fwd_cores(lab, undo, ifname):
    """An XDP redirect runs inside the receiving port's NAPI, before any skb, so RPS cannot
    move it; threaded NAPI, its kthread pinned to the forwarder cores, can."""
    threaded = Path(f"/sys/class/net/{ifname}/threaded")
    threaded.write_text("1")
    undo.push(f"{ifname} threaded off", threaded.write_text, "0")
    cores = ",".join(map(str, lab.args.fwd_cores))
    for d in Path("/proc").iterdir():
        with contextlib.suppress(OSError):
            if d.name.isdigit() and (d / "comm").read_text().startswith(f"napi/{ifname}-"):
                sh("taskset", "-pc", cores, d.name)


def start_bridge(lab, undo):
    br = f"{lab.prefix}br"
    sh("ip", "link", "add", br, "type", "bridge")
    undo.push(f"bridge {br}", sh, "ip", "link", "del", br)
    # gen0 transmits with XDP_TX (ndo_xdp_xmit); a veth accepts such frames only when its
    # peer has an XDP program or GRO on: the bridge attaches no XDP, so GRO it is.
    sh("ethtool", "-K", lab.p0, "gro", "on")
    undo.push("gro off", sh, "ethtool", "-K", lab.p0, "gro", "off")
    for port in (lab.p0, lab.p1):
        sh("ip", "link", "set", port, "master", br)
        undo.push(f"{port} nomaster", sh, "ip", "link", "set", port, "nomaster")
    sh("ip", "link", "set", br, "up")
    if lab.args.pin_kernel:
        rps_to_fwd_cores(lab, undo, lab.p0)
    lab.wait_forwarding()


def start_xdp(lab, undo):
    obj = BpfObject(lab.lib, lab.tmp / "xdp_redirect.o")
    undo.push("redirect object", obj.close)
    key, val = C.c_uint32(0), C.c_uint32(socket.if_nametoindex(lab.p1))
    check(lab.lib.bpf_map_update_elem(obj.map_fd("tx_port"), C.byref(key), C.byref(val), 0),
          "devmap update")
    check(lab.lib.bpf_xdp_attach(socket.if_nametoindex(lab.p0), obj.prog_fd("xdp_redirect_port"),
                                 XDP_FLAGS_DRV_MODE, None), "attach redirect")
    undo.push("redirect XDP", lab.xdp_detach_in, None, lab.p0)
    # The way back (p1 -> p0), for the latency ping-pong and its ARP only: frames redirected
    # into p0 need GRO (or XDP) on its peer gen0.
    back = BpfObject(lab.lib, lab.tmp / "xdp_redirect.o")
    undo.push("redirect object (back)", back.close)
    val = C.c_uint32(socket.if_nametoindex(lab.p0))
    check(lab.lib.bpf_map_update_elem(back.map_fd("tx_port"), C.byref(key), C.byref(val), 0),
          "devmap update")
    sh("ethtool", "-K", "gen0", "gro", "on", ns=lab.gen_ns)
    undo.push("gen0 gro off", sh, "ip", "netns", "exec", lab.gen_ns, "ethtool", "-K", "gen0",
              "gro", "off")
    check(lab.lib.bpf_xdp_attach(socket.if_nametoindex(lab.p1),
                                 back.prog_fd("xdp_redirect_port"), XDP_FLAGS_DRV_MODE, None),
          "attach redirect back")
    undo.push("redirect XDP (back)", lab.xdp_detach_in, None, lab.p1)
    if lab.args.pin_kernel:
        napi_to_fwd_cores(lab, undo, lab.p0)
    lab.wait_forwarding()


def hugepages(lab, undo, pages=512):
    """DPDK wants hugepages and a hugetlbfs mount: provide both, and put things back after."""
    nr = Path("/proc/sys/vm/nr_hugepages")
    old = int(nr.read_text())
    if old < pages:
        (lab.tmp / "nr_hugepages.orig").write_text(str(old))     # for `fwd_rate.py cleanup`
        nr.write_text(str(pages))
        undo.push("nr_hugepages", nr.write_text, str(old))
    if " hugetlbfs " not in Path("/proc/mounts").read_text():
        mnt = lab.tmp / "huge"
        mnt.mkdir(exist_ok=True)
        sh("mount", "-t", "hugetlbfs", "nodev", mnt)
        undo.push("hugetlbfs", sh, "umount", mnt)


def start_testpmd(lab, undo):
    exe = shutil.which("dpdk-testpmd")
    if not exe:
        raise Unavailable("dpdk-testpmd not found (Debian package dpdk-dev)")
    if lab.args.queues > 1:
        # DPDK 22.11's AF_XDP PMD sizes itself from ethtool's "combined" channels, which
        # veth does not report (it has separate RX and TX): one queue is all it will take.
        raise Unavailable("the AF_XDP PMD of DPDK 22.11 sees a veth as single-queue")
    hugepages(lab, undo)
    a, q = lab.args, lab.args.queues
    # The main lcore only prints stats once a second: any core outside --fwd-cores will do.
    main = min(set(range(os.cpu_count())) - set(a.fwd_cores), default=None)
    if main is None:
        raise Unavailable("testpmd needs a main lcore outside --fwd-cores")
    lcores = [main] + a.fwd_cores
    vdevs = []
    for i, port in enumerate((lab.p0, lab.p1)):
        vdevs += ["--vdev", f"net_af_xdp{i},iface={port},start_queue=0,queue_count={q}"
                  + (f",{a.testpmd_vdev}" if a.testpmd_vdev else "")]
    cmd = [exe, "-l", ",".join(map(str, lcores)), "--main-lcore", str(lcores[0]), "--no-pci",
           # --in-memory: no /var/run/dpdk files left behind; --file-prefix in case.
           "--in-memory", "--file-prefix", lab.prefix, *vdevs, "--",
           "--forward-mode=io", f"--nb-cores={len(a.fwd_cores)}", f"--rxq={q}", f"--txq={q}",
           "--auto-start", "--stats-period", "1"]
    spawn(lab, undo, "testpmd", cmd)


def start_pyxsw(lab, undo, mode, fdb_macs=0):
    exe = Path(lab.args.pyxsw)
    if not exe.exists():
        raise Unavailable(f"{exe} not found (run `make install`)")
    core = next((REPO / "pyxsw").glob("_core*.so"), None)
    if core and "asan" in sh("ldd", core, check=False):
        # Someone built the debug core (make test-debug) in this tree: its figures would be
        # AddressSanitizer's, and it does not even start without LD_PRELOAD.
        raise Unavailable(f"{core.name} is a debug (ASan) build: run `make install` first")
    cfg = lab.tmp / f"pyxsw-{mode}.toml"
    cfg.write_text(f'[switch]\nname = "{lab.prefix}"\nmode = "{mode}"\n'
                   f"cores = {lab.args.fwd_cores}\n"
                   + (f"[fdb]\ncapacity = {max(65536, 2 * fdb_macs)}\n" if fdb_macs else "")
                   + f'[management]\nsocket = "{lab.tmp / "sw.sock"}"\n'
                   f'[[port]]\nname = "{lab.p0}"\n[[port]]\nname = "{lab.p1}"\n')
    # No taskset: the switch pins its workers to `cores` and moves its main (management)
    # thread off them by itself.  `taskset -c <fwd core>` would force the management thread
    # onto the worker's core, and every RPC or aging sweep would then cost forwarding time.
    spawn(lab, undo, f"pyxsw-{mode}", [exe, "run", "-c", cfg])


OVS_DIRS = ("/etc/openvswitch", "/var/lib/openvswitch", "/var/log/openvswitch",
            "/var/run/openvswitch")
OVS_CTL = "/usr/share/openvswitch/scripts/ovs-ctl"


def ovs_files():
    out = set()
    for d in OVS_DIRS:
        p = Path(d)
        if p.is_dir():
            out.add(p)
            out.update(p.iterdir())
    return out


def ovs_remove_new(before):
    """Remove what the run made in OVS's directories (db, lock, logs, pid files, sockets)."""
    for f in sorted(ovs_files() - before, key=lambda f: -len(str(f))):
        if f.is_dir() and not f.is_symlink():
            shutil.rmtree(f, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                f.unlink()


def ovs_running(daemon):
    with contextlib.suppress(OSError, ValueError):
        pid = int(Path(f"/var/run/openvswitch/{daemon}.pid").read_text())
        os.kill(pid, 0)
        return pid
    return None


def stop_ovs_daemon(daemon):
    """ovs-appctl exit, then SIGKILL if it is still there after 5 s."""
    pid = ovs_running(daemon)
    if not pid:
        return
    args = ["exit", "--cleanup"] if daemon == "ovs-vswitchd" else ["exit"]
    sh("ovs-appctl", "-t", daemon, *args, check=False)
    for _ in range(50):
        if not Path(f"/proc/{pid}").exists():
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def start_ovs(lab, undo):
    """Open vSwitch, userspace (netdev) datapath, both ports type=afxdp, NORMAL forwarding,
    its PMD thread pinned to the forwarder cores.  Daemons this run starts are stopped after,
    and the files they made (conf.db, logs, pid files) removed; daemons already running are
    used and left running, only our bridge and our other_config key are removed."""
    for exe in ("ovs-vswitchd", "ovsdb-server", "ovs-vsctl", "ovs-appctl", OVS_CTL):
        if not shutil.which(exe):
            raise Unavailable(f"{exe} not found (Debian package openvswitch-switch)")
    if lab.args.queues > 1:
        raise Unavailable("measured with one queue only (afxdp n_rxq=1)")
    before = ovs_files()
    undo.push("ovs files", ovs_remove_new, before)
    if not ovs_running("ovsdb-server"):
        sh(OVS_CTL, "--no-ovs-vswitchd", "--no-monitor", "--system-id=random", "start")
        undo.push("ovsdb-server", stop_ovs_daemon, "ovsdb-server")
    vsctl = ["ovs-vsctl", "--timeout=10"]
    old_mask = sh(*vsctl, "--if-exists", "get", "Open_vSwitch", ".",
                  "other_config:pmd-cpu-mask", check=False).strip()
    mask = f"0x{sum(1 << c for c in lab.args.fwd_cores):x}"
    # --no-wait: without it ovs-vsctl waits for ovs-vswitchd to apply the change, and there
    # is none yet (or none any more, when undone).
    sh(*vsctl, "--no-wait", "set", "Open_vSwitch", ".", f"other_config:pmd-cpu-mask={mask}")
    if old_mask:
        undo.push("pmd-cpu-mask", sh, *vsctl, "--no-wait", "set", "Open_vSwitch", ".",
                  f"other_config:pmd-cpu-mask={old_mask}")
    else:
        undo.push("pmd-cpu-mask", sh, *vsctl, "--no-wait", "remove", "Open_vSwitch", ".",
                  "other_config", "pmd-cpu-mask")
    if not ovs_running("ovs-vswitchd"):
        sh("ovs-vswitchd", "--detach", "--pidfile", "--no-chdir",
           f"--log-file={lab.tmp / 'ovs-vswitchd.log'}", "unix:/var/run/openvswitch/db.sock")
        undo.push("ovs-vswitchd", stop_ovs_daemon, "ovs-vswitchd")
    lab.forwarder_pid = ovs_running("ovs-vswitchd")
    br = f"{lab.prefix}ob"
    sh(*vsctl, "add-br", br, "--", "set", "bridge", br, "datapath_type=netdev")
    undo.push(f"ovs bridge {br}", sh, *vsctl, "--if-exists", "del-br", br)
    for port in (lab.p0, lab.p1):
        sh(*vsctl, "add-port", br, port, "--", "set", "interface", port, "type=afxdp",
           "options:n_rxq=1")
    try:
        lab.wait_forwarding()
    except Unavailable as e:
        log = lab.tmp / "ovs-vswitchd.log"
        tail = log.read_text(errors="replace").splitlines()[-3:] if log.exists() else []
        raise Unavailable(f"{e}; log: {' | '.join(tail) or '(none)'}") from None


def spawn(lab, undo, name, cmd):
    """Start a forwarder in its own session (so stopping it stops all it started), its output
    in <tmp>/<name>.log; return once it forwards, or raise Unavailable with the log's end."""
    logf = lab.tmp / f"{name}.log"
    with open(logf, "w") as log:
        p = subprocess.Popen([str(c) for c in cmd], stdin=subprocess.DEVNULL, stdout=log,
                             stderr=subprocess.STDOUT, start_new_session=True)
    undo.push(name, stop_process, p)
    lab.forwarder = p
    try:
        lab.wait_forwarding(p)
    except Unavailable as e:
        lines = [s for s in logf.read_text(errors="replace").splitlines() if s.strip()]
        raise Unavailable(f"{e}; log: {' | '.join(lines[-3:]) or '(empty)'}") from None


# ----------------------------------------------------------------------------------------
# Measuring
# ----------------------------------------------------------------------------------------
def window_rates(s0, s1):
    """Rates and CPU figures between two samples."""
    dt = s1["t"] - s0["t"]
    rate = {k: (s1[k] - s0[k]) / dt for k in ("sink", "gen", "p0")}
    busy = {cpu: round(100 * (s1["cpu"][cpu][0] - s0["cpu"][cpu][0])
                       / max(1, s1["cpu"][cpu][1] - s0["cpu"][cpu][1]), 1) for cpu in s0["cpu"]}
    other = sum(t - s0["other"].get(pid, 0) for pid, t in s1["other"].items())
    proc = None
    if s0.get("proc") is not None and s1.get("proc") is not None:
        proc = round(100 * (s1["proc"] - s0["proc"]) / os.sysconf("SC_CLK_TCK") / dt, 1)
    return {"forwarded_pps": rate["sink"], "offered_pps": rate["gen"],
            "into_port_pps": rate["p0"],
            "loss_pct": 100 * (1 - rate["sink"] / rate["gen"]) if rate["gen"] else None,
            "cpu_busy_pct": busy, "switch_cpu_pct": proc,
            "other_load_pct": round(100 * other / os.sysconf("SC_CLK_TCK") / dt, 1),
            "window_s": round(dt, 3)}


def spare_cores(lab):
    """The cores other than the forwarder's (the generator's on a 2-core machine), as
    taskset wants them: where the storm, its control and the latency ping-pong run."""
    away = sorted(os.sched_getaffinity(0) - set(lab.args.fwd_cores)) or lab.args.gen_cores
    return ",".join(map(str, away))


def start_burn(lab, seconds):
    """The storm's control: one process spinning on the same cores as the storm's client,
    making no RPC.  A rate that falls as much under it as under the storm was lost to the
    shared generator core, not to the management plane."""
    return subprocess.Popen(["taskset", "-c", spare_cores(lab), sys.executable, "-c",
                             f"import time\ne = time.monotonic() + {seconds:.1f}\n"
                             "while time.monotonic() < e: pass"],
                            stdin=subprocess.DEVNULL, start_new_session=True)


def start_storm(lab, seconds):
    """perf/rpc_rate.py --storm against the switch's socket, on the generator's cores (the
    switch's management thread is off the worker cores too): 4 clients, 8 calls in flight."""
    log = open(lab.tmp / "storm.log", "w")
    with log:
        return subprocess.Popen(["taskset", "-c", spare_cores(lab), sys.executable,
                                 HERE / "rpc_rate.py",
                                 "-s", lab.tmp / "sw.sock", "--storm", f"{seconds:.1f}",
                                 *(["--calls", lab.args.storm_calls]
                                   if lab.args.storm_calls else [])],
                                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)


def measure(lab, system, mode, undo, fdb_macs=0):
    """Start a forwarder, drive it for warmup + seconds, return its rates.  Then, as asked:
    for pyxsw a second window under an RPC storm (--storm), an idle window (--idle), the
    latency ping-pong (--latency)."""
    a = lab.args
    name = {"system": system, "mode": mode}
    storm = a.storm and system == "pyxsw" and not fdb_macs
    mark = undo.mark()
    lab.forwarder, lab.forwarder_pid = None, None   # set by spawn() / start_ovs()
    extra = {}
    try:
        lab.set_source_macs(fdb_macs)
        if mode:
            START[system](lab, undo, mode, fdb_macs) if system == "pyxsw" else \
                START[system](lab, undo, mode)
        else:
            START[system](lab, undo)
        lab.announce()
        gens = lab.start_generators(a.warmup + a.seconds * (3 if storm else 1)
                                    + (3 if storm else 0) + 1)
        for g in gens:
            undo.push("generator", stop_process, g)
        time.sleep(a.warmup)
        s0 = lab.sample()
        time.sleep(a.seconds)
        s1 = lab.sample()
        if storm:
            st = start_storm(lab, a.seconds + 1.0)
            undo.push("storm", stop_process, st)
            time.sleep(0.5)
            s2, t2, l2 = lab.sample(), thread_ticks(lab.fwd_pid()), pyxsw_losses(lab)
            time.sleep(a.seconds)
            s3, t3, l3 = lab.sample(), thread_ticks(lab.fwd_pid()), pyxsw_losses(lab)
            st.wait(30)
            out = (lab.tmp / "storm.log").read_text(errors="replace")
            m = re.search(r": (\d+) RPCs/s", out)
            dt = s3["t"] - s2["t"]
            extra["storm"] = {**window_rates(s2, s3),
                              "rpc_per_s": int(m.group(1)) if m else None,
                              "switch_counters": {k: l3[k] - l2[k] for k in l3},
                              # per thread of the switch: % of a core, and its last CPU
                              "threads": {f"{t3[k][0]}/{k}": {
                                  "cpu_pct": round(100 * (t3[k][1] - t2[k][1])
                                                   / os.sysconf("SC_CLK_TCK") / dt, 1),
                                  "on_cpu": t3[k][2]} for k in t3 if k in t2}}
            if not m:
                extra["storm"]["error"] = out.strip()[-300:]
            burn = start_burn(lab, a.seconds + 1.0)
            undo.push("burn", stop_process, burn)
            time.sleep(0.5)
            s4 = lab.sample()
            time.sleep(a.seconds)
            s5 = lab.sample()
            burn.wait(30)
            extra["burn"] = window_rates(s4, s5)
        if lab.forwarder and lab.forwarder.poll() is not None:
            raise Unavailable(f"exited with status {lab.forwarder.returncode} while measured")
        for g in gens:
            if g.wait() != 0:
                raise RuntimeError(f"generator exited with status {g.returncode}")
        if fdb_macs:
            extra["fdb_entries"] = pyxsw_fdb_entries(lab)
        if a.idle and not fdb_macs:
            time.sleep(1.0)         # let adaptive modes notice the silence
            i0 = lab.sample()
            time.sleep(a.idle)
            i1 = lab.sample()
            w = window_rates(i0, i1)
            extra["idle"] = {"switch_cpu_pct": w["switch_cpu_pct"],
                             "cpu_busy_pct": w["cpu_busy_pct"], "window_s": w["window_s"],
                             "other_load_pct": w["other_load_pct"]}
        if a.latency and not fdb_macs:
            try:
                rtts, lost = lab.ping_pong(a.latency)
                extra["latency_us"] = {"n": len(rtts), "lost": lost,
                                       "p50": percentile(rtts, 50),
                                       "p99": percentile(rtts, 99),
                                       "max": max(rtts) if rtts else None,
                                       "hist": latency_hist(rtts)}
            except (Unavailable, OSError) as e:     # the rate still stands
                extra["latency_us"] = {"n": 0, "error": str(e)}
                print(f"{system}: latency not measured: {e}", flush=True)
    except (Unavailable, RuntimeError, OSError, subprocess.TimeoutExpired) as e:
        # one system failing spoils no other
        return {**name, "available": False, "reason": str(e),
                **({"fdb_macs": fdb_macs} if fdb_macs else {})}
    finally:
        undo.unwind(mark)
    r = {**name, "available": True, **window_rates(s0, s1), **extra}
    if storm and r["forwarded_pps"]:
        r["storm_ratio"] = r["storm"]["forwarded_pps"] / r["forwarded_pps"]
        r["burn_ratio"] = r["burn"]["forwarded_pps"] / r["forwarded_pps"]
    if fdb_macs:
        r["fdb_macs"] = fdb_macs
    return r


def latency_hist(rtts):
    """Every RTT rounded to 1 us, as {us: count}: small, and enough to plot a distribution."""
    h = {}
    for x in rtts:
        h[int(x)] = h.get(int(x), 0) + 1
    return h


def pyxsw_fdb_entries(lab):
    sys.path.insert(0, str(REPO))
    from pyxsw.client import Client
    with Client(str(lab.tmp / "sw.sock"), timeout=10) as c:
        return c.status().get("fdb", {}).get("entries")


def pyxsw_losses(lab):
    """pyxsw's own loss counters, summed over its ports: where frames went missing."""
    sys.path.insert(0, str(REPO))
    from pyxsw.client import Client
    with Client(str(lab.tmp / "sw.sock"), timeout=10) as c:
        st = c.port_stats()
    keys = ("rx_packets", "tx_packets", "tx_dropped")
    xkeys = ("rx_dropped", "rx_ring_full", "rx_fill_ring_empty_descs")
    out = {k: sum(p[k] for p in st.values()) for k in keys}
    out.update({f"xdp_{k}": sum(p["xdp"].get(k, 0) for p in st.values()) for k in xkeys})
    return out


def run_system(lab, system, mode, undo, fdb_macs=0):
    """--runs measurements of one system; the one with the median forwarded rate stands for
    it, the others are kept in "runs"."""
    runs = []
    for i in range(lab.args.runs):
        r = measure(lab, system, mode, undo, fdb_macs)
        if not r["available"]:
            return r
        runs.append(r)
        if lab.args.runs > 1:
            print(f"  run {i + 1}: {r['forwarded_pps'] / 1e6:.3f} Mpps", flush=True)
    best = dict(sorted(runs, key=lambda r: r["forwarded_pps"])[len(runs) // 2])
    best["runs"] = [r["forwarded_pps"] for r in runs]
    if "storm_ratio" in best:       # the median ratio, not the ratio of the median run
        ratios = [r["storm_ratio"] for r in runs if "storm_ratio" in r]
        best["storm_ratio_runs"] = ratios
        best["storm_ratio"] = sorted(ratios)[len(ratios) // 2]
    if "burn_ratio" in best:
        ratios = [r["burn_ratio"] for r in runs if "burn_ratio" in r]
        best["burn_ratio_runs"] = ratios
        best["burn_ratio"] = sorted(ratios)[len(ratios) // 2]
    for key in ("switch_cpu_pct",):
        vals = [r[key] for r in runs if r.get(key) is not None]
        if vals:
            best[key] = sorted(vals)[len(vals) // 2]
    idle = [r["idle"]["switch_cpu_pct"] for r in runs
            if r.get("idle") and r["idle"]["switch_cpu_pct"] is not None]
    if idle:
        best["idle"] = dict(best["idle"], switch_cpu_pct=sorted(idle)[len(idle) // 2],
                            switch_cpu_pct_runs=idle)
    return best


START = {"bridge": start_bridge, "testpmd": start_testpmd, "ovs": start_ovs,
         "pyxsw": start_pyxsw, "xdp": start_xdp}


def label(r):
    if r.get("fdb_macs"):
        return f"{r['system']} ({r['mode']}, {r['fdb_macs']} MACs)"
    return f"{r['system']} ({r['mode']})" if r["mode"] else r["system"]


def machine_info():
    cpu = re.search(r"model name\s*:\s*(.*)", Path("/proc/cpuinfo").read_text())
    git = subprocess.run(["git", "-C", REPO, "describe", "--always", "--dirty"],
                         capture_output=True, text=True).stdout.strip()
    dpdk = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", "dpdk-dev"],
                          capture_output=True, text=True).stdout.strip()
    return {"kernel": platform.release(), "cpu_model": cpu.group(1) if cpu else platform.machine(),
            "nproc": os.cpu_count(), "hostname": platform.node(), "pyxsw_git": git,
            "dpdk": dpdk or None}


def report(results, args):
    ref = next((r["forwarded_pps"] for r in results
                if r["system"] == "testpmd" and r["available"]), None)
    print(f"\nfwd_rate: {args.size}-byte frames, {args.seconds:g} s window, "
          f"queues={args.queues}, generator cores {args.gen_cores}, forwarder cores "
          f"{args.fwd_cores}")
    print(f"{'system':<20} {'offered Mpps':>12} {'fwd Mpps':>9} {'loss %':>7} "
          f"{'vs testpmd':>10}  cpu busy %")
    for r in results:
        if not r["available"]:
            print(f"{label(r):<20} not available: {r['reason']}")
            continue
        r["ratio_vs_testpmd"] = r["forwarded_pps"] / ref if ref else None
        ratio = f"{r['ratio_vs_testpmd']:.2f}x" if ref else "-"
        busy = " ".join(f"c{c}={v:.0f}" for c, v in sorted(r["cpu_busy_pct"].items()))
        warn = ""
        if r["offered_pps"] < 1.05 * r["forwarded_pps"]:
            warn += "  [generator-bound: forwarded ~ offered]"
        if r["other_load_pct"] > 5:
            warn += f"  [other processes used {r['other_load_pct']:.0f}% of a core]"
        loss = max(0.0, r["loss_pct"])      # a sample's skew can make it a hair negative
        print(f"{label(r):<20} {r['offered_pps'] / 1e6:>12.3f} "
              f"{r['forwarded_pps'] / 1e6:>9.3f} {loss:>7.1f} {ratio:>10}  {busy}{warn}")
        more = []
        if r.get("switch_cpu_pct") is not None:
            more.append(f"switch process {r['switch_cpu_pct']:.0f}% of a core")
        if r.get("idle"):
            i = r["idle"]
            core = " ".join(f"c{c}={v:.1f}" for c, v in sorted(i["cpu_busy_pct"].items()))
            sw = (f"switch {i['switch_cpu_pct']:.1f}% of a core, "
                  if i["switch_cpu_pct"] is not None else "")
            more.append(f"idle: {sw}cores {core}")
        if r.get("latency_us"):
            lt = r["latency_us"]
            if lt["n"]:
                more.append(f"latency us p50 {lt['p50']:.0f} p99 {lt['p99']:.0f} "
                            f"max {lt['max']:.0f} (n={lt['n']}, lost {lt['lost']})")
        if r.get("storm"):
            st = r["storm"]
            busy = {n: v["cpu_pct"] for n, v in st.get("threads", {}).items()
                    if v["cpu_pct"] >= 1}
            more.append(f"storm: switch threads % of a core: {busy}")
            more.append(f"RPC storm {st['rpc_per_s'] or 0} RPCs/s: fwd "
                        f"{st['forwarded_pps'] / 1e6:.3f} Mpps, ratio storm/quiet "
                        f"{r.get('storm_ratio', 0):.3f} (offered {st['offered_pps'] / 1e6:.3f}, "
                        f"into p0 {st['into_port_pps'] / 1e6:.3f} vs "
                        f"{r['into_port_pps'] / 1e6:.3f} quiet)")
        if r.get("burn"):
            b = r["burn"]
            more.append(f"control, a CPU hog instead of the storm: fwd "
                        f"{b['forwarded_pps'] / 1e6:.3f} Mpps, ratio {r['burn_ratio']:.3f} "
                        f"(offered {b['offered_pps'] / 1e6:.3f})")
        if r.get("fdb_entries") is not None:
            more.append(f"FDB entries at the end: {r['fdb_entries']}")
        for m in more:
            print(f"{'':<22}{m}")


def save(results, args):
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc)
    doc = {"benchmark": "fwd_rate", "time": now.isoformat(timespec="seconds"),
           "machine": machine_info(),
           "config": {"size": args.size, "seconds": args.seconds, "warmup": args.warmup,
                      "queues": args.queues, "runs": args.runs, "gen_cores": args.gen_cores,
                      "fwd_cores": args.fwd_cores, "pin_kernel": args.pin_kernel,
                      "storm": args.storm, "idle": args.idle, "latency": args.latency,
                      "fdb_sizes": args.fdb_sizes},
           "results": results}
    text = json.dumps(doc, indent=2) + "\n"
    if args.save_as:                # perf/bench.py names its parts
        path = Path(args.save_as)
        path.write_text(text)
        print(f"\nresults: {path}")
        return
    path = out / f"fwd_rate-{now.strftime('%Y%m%dT%H%M%SZ')}.json"
    path.write_text(text)
    link_latest(path, "fwd_rate-latest.json")
    print(f"\nresults: {path.relative_to(REPO)} (and fwd_rate-latest.json)")


def link_latest(path, name):
    """<name> next to `path`, a symbolic link to it: the newest result, without a copy."""
    latest = path.parent / name
    latest.unlink(missing_ok=True)
    latest.symlink_to(path.name)


# ----------------------------------------------------------------------------------------
# Entry points
# ----------------------------------------------------------------------------------------
def echo_main(a):
    """Child, in the sink's namespace: echo UDP datagrams on a.port until stopped."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((SINK_IP, a.port))
    while True:
        data, peer = s.recvfrom(2048)
        s.sendto(data, peer)


def cleanup_stale():
    """After a SIGKILL: stop the processes and remove the namespaces, interfaces, hugetlbfs
    mounts and temp dirs of every pb<4 hex> run that is no longer running, and restore
    nr_hugepages.  A run still in progress (its owner.pid alive) is left alone."""
    live, tmps = set(), {}
    for tmp in Path(tempfile.gettempdir()).glob("pb????-*"):
        with contextlib.suppress(OSError, ValueError):
            pid = int((tmp / "owner.pid").read_text())
            if "fwd_rate" in Path(f"/proc/{pid}/cmdline").read_text(errors="replace"):
                live.add(tmp.name[:6])
                continue
        tmps[tmp] = tmp.name[:6]

    def stale(name):
        m = re.search(r"pb[0-9a-f]{4}", name)
        return m is not None and m[0] not in live
    for d in Path("/proc").iterdir():
        with contextlib.suppress(OSError):
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            ours = any(k in cmd for k in ("livegen.py", "fwd_rate.py _echo",
                                          "dpdk-testpmd", "pyxsw", "rpc_rate.py"))
            # (the storm's control, a bare `python -c` spin, ends by itself within seconds)
            if d.name.isdigit() and ours and stale(cmd):
                print("kill", d.name, cmd[:70])
                os.kill(int(d.name), signal.SIGKILL)
    time.sleep(0.5)
    for tmp in tmps:
        if (tmp / "huge").is_dir():
            sh("umount", tmp / "huge", check=False)
        with contextlib.suppress(OSError, ValueError):
            Path("/proc/sys/vm/nr_hugepages").write_text(
                str(int((tmp / "nr_hugepages.orig").read_text())))
        print("remove", tmp)
        shutil.rmtree(tmp, ignore_errors=True)
    if ovs_running("ovsdb-server"):
        for br in sh("ovs-vsctl", "--timeout=5", "list-br", check=False).split():
            if re.fullmatch(r"pb[0-9a-f]{4}ob", br) and stale(br):
                print("ovs bridge", br)
                sh("ovs-vsctl", "--timeout=5", "--if-exists", "del-br", br, check=False)
    for ns in sh("ip", "netns", "list").split():
        if re.fullmatch(r"pb[0-9a-f]{4}(gen|sink)", ns) and stale(ns):
            print("netns", ns)
            sh("ip", "netns", "del", ns, check=False)
    for name in re.findall(r"^\d+: (pb[0-9a-f]{4}(?:p\d|br))[@:]", sh("ip", "-o", "link"), re.M):
        if stale(name):
            print("link", name)
            sh("ip", "link", "del", name, check=False)


def parse_args():
    ints = lambda s: [int(x) for x in s.split(",")]        # noqa: E731
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", metavar="{cleanup}")
    e = sub.add_parser("_echo")     # internal: the latency ping-pong's far end
    e.add_argument("--lab")
    e.add_argument("--port", type=int, required=True)
    sub.add_parser("cleanup", help="remove what a killed run (SIGKILL) left behind")
    p.add_argument("--only", default=",".join(SYSTEMS),
                   help=f"comma-separated systems, from {','.join(SYSTEMS)} (default: all)")
    p.add_argument("--modes", default="poll", help="pyxsw modes, each run once (poll,interrupt,"
                                                   "adaptive)")
    p.add_argument("--pyxsw", default=str(PYXSW), help="the pyxsw command (default: %(default)s)")
    p.add_argument("--size", type=int, default=64, help="frame size with FCS, 64..1518")
    p.add_argument("--seconds", type=float, default=5.0, help="measuring window")
    p.add_argument("--warmup", type=float, default=2.0, help="seconds before the window")
    p.add_argument("--runs", type=int, default=1, help="runs per system; the median is kept")
    p.add_argument("--queues", type=int, default=1, help="queues per port")
    p.add_argument("--gen-cores", type=ints, default=[0], help="generator cores (one process each)")
    p.add_argument("--fwd-cores", type=ints, default=[1], help="forwarder cores")
    p.add_argument("--testpmd-vdev", default="", metavar="K=V,..",
                   help="extra AF_XDP PMD arguments, e.g. busy_budget=0")
    p.add_argument("--no-pin-kernel", dest="pin_kernel", action="store_false",
                   help="leave bridge/xdp forwarding in the generator core's softirq")
    p.add_argument("--storm", action="store_true",
                   help="pyxsw: a second window under an RPC storm (perf/rpc_rate.py --storm); "
                        "reports the forwarded rate's ratio storm/quiet")
    p.add_argument("--storm-calls", metavar="M,..", help="the storm's RPC methods (default: "
                   "rpc_rate.py's status,port.stats,port.list,fdb.list)")
    p.add_argument("--idle", type=float, default=0, metavar="S",
                   help="after the traffic, S seconds with none: the switch's CPU at idle")
    p.add_argument("--latency", type=int, default=0, metavar="N",
                   help="after the traffic, N UDP ping-pongs gen0<->sink0, 1 ms apart")
    p.add_argument("--fdb-sizes", type=ints, default=[], metavar="N,..",
                   help="pyxsw (first of --modes): rate with the generator cycling through N "
                        "source MACs, so N are learned (e.g. 1,1000,100000)")
    p.add_argument("--prefix", help=argparse.SUPPRESS)     # default pb<4 random hex>
    p.add_argument("--no-save", action="store_true", help="do not write perf/results/")
    p.add_argument("--save-as", metavar="FILE", help="write the JSON here instead")
    a = p.parse_args()
    if a.cmd is None:
        a.only = [s for s in a.only.split(",") if s]
        a.modes = [m for m in a.modes.split(",") if m]
        bad = set(a.only) - set(SYSTEMS)
        if bad:
            p.error(f"unknown system(s) {','.join(sorted(bad))}; known: {','.join(SYSTEMS)}")
        if not 64 <= a.size <= 1518:
            p.error("--size must be 64..1518")
        if a.prefix and not re.fullmatch(r"pb[0-9a-f]{4}", a.prefix):
            p.error("--prefix must be pb and 4 hex digits (they make the MAC addresses)")
    return a


def main():
    a = parse_args()
    if a.cmd == "_echo":
        return echo_main(a)
    if os.geteuid() != 0:
        sys.exit("fwd_rate: run as root")
    if a.cmd == "cleanup":
        return cleanup_stale()

    def on_signal(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")
    # SIGINT too: a shell starts background jobs with SIGINT ignored, so Python's default
    # handler would be missing and `kill -INT` would leave everything behind.
    for sig in SIGNALS:
        signal.signal(sig, on_signal)

    # Two runs at once would share the two cores and spoil each other's figures: queue up.
    lock = open(LOCK, "w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        print(f"fwd_rate: another run holds {LOCK}; waiting for it", flush=True)
        fcntl.flock(lock, fcntl.LOCK_EX)

    undo = Undo()
    results = []
    try:
        lab = Lab(a, undo)
        lab.build()
        for system in a.only:
            for mode in (a.modes if system == "pyxsw" else [None]):
                print(f"fwd_rate: {system}{f' ({mode})' if mode else ''} ...", flush=True)
                r = run_system(lab, system, mode, undo)
                if not r["available"]:
                    print(f"{system}: not available: {r['reason']}", flush=True)
                results.append(r)
        for n in a.fdb_sizes if "pyxsw" in a.only else []:
            mode = a.modes[0]
            print(f"fwd_rate: pyxsw ({mode}), {n} learned MACs ...", flush=True)
            r = run_system(lab, "pyxsw", mode, undo, fdb_macs=n)
            if not r["available"]:
                print(f"pyxsw: not available: {r['reason']}", flush=True)
            results.append(r)
    except KeyboardInterrupt:
        print("\nfwd_rate: interrupted, cleaning up", file=sys.stderr)
        return 130
    finally:
        undo.unwind()
    report(results, a)
    if not a.no_save:
        save(results, a)
    return 0


if __name__ == "__main__":
    sys.exit(main())
