"""The bench lab: two namespaces, two veth pairs, a live-frames generator and a counting sink.

    netns <P>gen                   root netns                          netns <P>sink
    gen0 ===veth=== <P>p0 --[ forwarder under test, core 1 ]-- <P>p1 ===veth=== sink0
    XDP live-frames generator, core 0                               XDP: count, drop

`BenchLab` builds it and runs its two ends: the generator (children running livegen.py,
which transmit the template frame out of gen0 into <P>p0), the sink (an XDP program on sink0
that counts the generator's frames and drops them), the probe that tells when a forwarder
forwards, and the UDP ping-pong between a host on gen0 and one on sink0.  Everything it makes
is pushed on an `Undo` stack.  (Named so as not to be taken for pyxsw.lab.Lab, the test
suite's lab.)  The forwarders that go between <P>p0 and <P>p1 are in forwarders.py, what is
measured in measure.py, the command line in fwd_rate.py.
"""
import contextlib
import ctypes as C
import os
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

from livegen import (BpfObject, XDP_FLAGS_DRV_MODE, check, compile_bpf, gen_configure, libbpf,
                     percpu_sum)

HERE = Path(__file__).resolve().parent
LOCK = "/run/pyxsw-fwd_rate.lock"       # one run at a time: two would share the two cores

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
RT_PRIO = 10                                        # SCHED_FIFO priority of the ping-pong


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
# The lab: namespaces, veth pairs, generator, sink, ping-pong
# ----------------------------------------------------------------------------------------
class BenchLab:
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
        self.set_size(self.args.size[0])
        # Two hosts for the latency ping-pong (the sink passes all but UDP port 9 to its
        # stack).  Checksum offload off: a userspace switch over veth would otherwise
        # forward frames with partial checksums, which the receiver drops.
        for ns, dev, ip in ((self.gen_ns, "gen0", GEN_IP), (self.sink_ns, "sink0", SINK_IP)):
            sh("ip", "addr", "add", f"{ip}/24", "dev", dev, ns=ns)
            sh("ethtool", "-K", dev, "tx", "off", ns=ns)

    def idle_ports(self, n):
        """n idle switch ports: veth pairs <P>i1.. whose peers sit up, silent, in namespace
        <P>idle (made on first use, kept for the run: make them before a measurement's
        undo mark, as run_all does)."""
        self.idle = getattr(self, "idle", [])
        if n and not self.idle and not getattr(self, "idle_ns", None):
            self.idle_ns = f"{self.prefix}idle"
            sh("ip", "netns", "add", self.idle_ns)
            self.undo.push(f"netns {self.idle_ns}", sh, "ip", "netns", "del", self.idle_ns)
        while len(self.idle) < n:
            k = len(self.idle) + 1
            port = f"{self.prefix}i{k}"
            sh("ip", "link", "add", port, "type", "veth", "peer", "name", f"i{k}",
               "netns", self.idle_ns)
            self.undo.push(f"link {port}", sh, "ip", "link", "del", port)
            sh("ip", "link", "set", port, "up")
            sh("ip", "link", "set", f"i{k}", "up", ns=self.idle_ns)
            self.idle.append(port)
        return self.idle[:n]

    def set_size(self, size):
        """The generator's frames: `size` bytes counting the FCS (generators started after)."""
        self.size = size
        self.frame = udp_frame(self.sink_mac, self.gen_mac, size)

    def load(self, pps=None, paused=False, macs=None):
        """Set the generator's load (xdp_gen.bpf.c's gen_cfg), running or not: `pps` frames/s
        in all, None as fast as it goes (overload), or paused; `macs` source MACs to cycle
        through (kept until changed)."""
        if macs is not None:
            self.macs = macs
        gen_configure(self.lib, self.gen_cfg, getattr(self, "macs", 0), pps, paused,
                      len(self.args.gen_cores))

    def start_echo(self, undo, port=LAT_PORT):
        """The ping-pong's far end on sink0 (`fwd_rate.py _echo`, which `fwd_rate.py cleanup`
        finds by that name), started once per forwarder: its start-up would otherwise take
        the generator's core in the middle of a measurement."""
        self.echo = subprocess.Popen(["taskset", "-c", self.spare_cores(), "ip", "netns",
                                      "exec", self.sink_ns, sys.executable,
                                      HERE / "fwd_rate.py", "_echo", "--lab", self.prefix,
                                      "--port", str(port)],
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        undo.push("echo server", stop_process, self.echo)

    def ping_pong(self, count, interval=None, port=LAT_PORT):
        """UDP ping-pong gen0 -> sink0 -> gen0 through the forwarder (start_echo first), one
        request in flight, `interval` s apart (default --latency-interval), riding on
        whatever load the generator makes: round-trip times in microseconds, and how many
        got no answer within 100 ms.  Both ends run off the forwarder cores (on a core a
        forwarder busy-polls they would wait for its time slice) and at a real-time
        priority: the generator spins on their core at every load, and the time measured
        must be the forwarder's, not the scheduler's."""
        interval = self.args.latency_interval / 1e6 if interval is None else interval
        away = self.spare_cores()
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
                try:
                    os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(RT_PRIO))
                    for i in range(count):
                        msg = struct.pack("!Q", i)
                        t0 = time.perf_counter_ns()
                        s.sendto(msg, (SINK_IP, port))
                        try:
                            while s.recv(64) != msg:       # a late answer to an earlier one
                                pass
                            rtts.append((time.perf_counter_ns() - t0) / 1000)
                        except socket.timeout:
                            lost += 1
                        time.sleep(interval)
                finally:
                    os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
        finally:
            os.sched_setaffinity(0, home)
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

    def gen_frames(self):
        return percpu_sum(self.lib, self.gen_map, 0)

    def spare_cores(self):
        """The cores other than the forwarder's (the generator's on a 2-core machine), as
        taskset wants them: where the storm, its control and the latency ping-pong run."""
        away = sorted(os.sched_getaffinity(0) - set(self.args.fwd_cores)) or self.args.gen_cores
        return ",".join(map(str, away))

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


def echo_server(port):
    """The ping-pong's far end (`fwd_rate.py _echo`, run in the sink's namespace): echo UDP
    datagrams on `port` until stopped."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((SINK_IP, port))
    # real-time once started (see BenchLab.ping_pong), not while Python starts up
    os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(RT_PRIO))
    while True:
        data, peer = s.recvfrom(2048)
        s.sendto(data, peer)
