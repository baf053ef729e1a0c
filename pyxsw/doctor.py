"""`pyxsw doctor [-c FILE] [--json]`: the machine checked against a configuration.

    checks = diagnose(Config.load("sw0.toml"))     # [Check], in the order printed
    worst(checks)                                  # "OK" | "WARN" | "FAIL"

Each Check has a name ("port.mtu"), a subject (a port, "core 3", or "" for the machine), a
status, what was found and, unless it is OK, the command (or the config change) that fixes
it.  FAIL: `pyxsw run` would stop on it, or the port could not forward at all; WARN: the
switch runs but loses frames, speed or interrupts to it.  Nothing here changes the machine.

Standard library only, and no compiled core: interfaces come from rtnetlink and the netdev
family through pyxsw.links, ethtool settings from the `ethtool` command (`-k`, `-i`, `-l`),
a veth's peer from `ip -j -d link`, the rest from /proc and /sys.  A veth's peer in another
namespace is read with `ip netns exec`, so it must be a named namespace.  `pyxsw run` logs
the WARNs once it has started (pyxsw.cli).
"""
from __future__ import annotations

import errno
import glob
import json
import os
import resource
import socket
import subprocess
from dataclasses import asdict, dataclass

from . import napi
from .links import LinkError, Links, XdpFeatures, can_take_redirects
from .vocab import VLAN_ETH_HLEN, XDP_HEADROOM, kernel_at_least, max_frame_limit

OK, WARN, FAIL = "OK", "WARN", "FAIL"
STATUSES = (OK, WARN, FAIL)                     # in order of gravity

AF_XDP = 44
CAP_IPC_LOCK = 14
# NETDEV_XDP_ACT_* (include/uapi/linux/netdev.h): what a device's driver does with XDP
XDP_ACT_BASIC, XDP_ACT_XSK_ZEROCOPY, XDP_ACT_RX_SG = 1 << 0, 1 << 3, 1 << 5
SYS_NET = "/sys/class/net"
SYS_CPU = "/sys/devices/system/cpu"
SYS_NODE = "/sys/devices/system/node"
PROC_IRQ = "/proc/irq"
# What `fix` suggests for the busy-poll deferral: what busy_poll_tuning sets (pyxsw.napi)
DEFER_HARD_IRQS, GRO_FLUSH_TIMEOUT = napi.DEFER_HARD_IRQS, napi.GRO_FLUSH_TIMEOUT


@dataclass(frozen=True)
class Check:
    name: str           # "cpu.cores", "port.mtu", ...
    subject: str        # the port or core it is about; "" for the machine
    status: str         # OK | WARN | FAIL
    found: str          # what was found, one line
    fix: str = ""       # the command or config change that fixes it ("" when OK)

    def as_dict(self):
        return asdict(self)


def worst(checks):
    return max((c.status for c in checks), key=STATUSES.index, default=OK)


# ---------------------------------------------------------------------------- reading

def _read(path):
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


def cpu_list(text):
    """The CPUs of a list like "0-3,8,10-11" (sysfs, /proc/irq, isolcpus); empty if none."""
    out = set()
    for part in (text or "").split(","):
        part = part.strip()
        if not part:
            continue
        lo, _, hi = part.partition("-")
        try:
            out.update(range(int(lo), int(hi or lo) + 1))
        except ValueError:
            continue
    return out


def list_text(cpus):
    """A set of CPUs as the kernel writes a list ("0-3,8")."""
    out, run = [], []
    for c in sorted(cpus):
        if run and c == run[-1] + 1:
            run.append(c)
            continue
        if run:
            out.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
        run = [c]
    if run:
        out.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
    return ",".join(out)


def _run(argv, ns=None):
    """stdout of a command (in network namespace `ns`), None if it failed or is missing."""
    if ns:
        argv = ["ip", "netns", "exec", ns, *argv]
    try:
        p = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return p.stdout if p.returncode == 0 else None


def _ns_cmd(ns, cmd):
    return f"ip netns exec {ns} {cmd}" if ns else cmd


def ethtool_features(ifname, ns=None):
    """{feature: on} from `ethtool -k` (its text: every ethtool has it, --json only 6.x);
    None when it cannot tell."""
    out = _run(["ethtool", "-k", ifname], ns)
    if out is None:
        return None
    feats = {}
    for line in out.splitlines()[1:]:
        key, _, val = line.strip().partition(": ")
        if val:
            feats[key] = val.split()[0] == "on"
    return feats


def ethtool_driver(ifname):
    for line in (_run(["ethtool", "-i", ifname]) or "").splitlines():
        if line.startswith("driver:"):
            return line.split(":", 1)[1].strip() or None
    return None


def ethtool_channels(ifname):
    """{"max": {"rx": n, "combined": n...}, "now": {...}} from `ethtool -l` (n/a left out);
    None when the driver does not tell."""
    out = _run(["ethtool", "-l", ifname])
    if out is None:
        return None
    res, part = {"max": {}, "now": {}}, None
    for line in out.splitlines():
        if line.startswith("Pre-set maximums"):
            part = "max"
        elif line.startswith("Current hardware settings"):
            part = "now"
        elif part and ":" in line:
            key, val = (s.strip() for s in line.split(":", 1))
            if val.isdigit():
                res[part][key.lower()] = int(val)
    return res


def veth_peer(ifname):
    """(namespace name or None for this one, peer's name, peer's ifindex) of a veth; None if
    ifname is not a veth; (None, None, index) when its namespace has no name."""
    try:
        info = json.loads(_run(["ip", "-j", "-d", "link", "show", "dev", ifname]) or "")[0]
    except (ValueError, IndexError):
        return None
    if info.get("linkinfo", {}).get("info_kind") != "veth":
        return None
    index, nsid = info.get("link_index"), info.get("link_netnsid")
    if nsid is None and info.get("link"):      # a peer in this namespace: named by ip
        return None, info["link"], index
    ns = None
    if nsid is not None:
        try:
            ids = json.loads(_run(["ip", "-j", "netns", "list-id"]) or "[]")
        except ValueError:
            ids = []
        ns = next((i.get("name") for i in ids if i.get("nsid") == nsid), None)
        if ns is None:
            return None, None, index
    try:
        links = json.loads(_run(["ip", "-j", "link", "show"], ns) or "[]")
    except ValueError:
        links = []
    name = next((link["ifname"] for link in links if link.get("ifindex") == index), None)
    return ns, name, index


def usable_cpus():
    """The CPUs a thread of this process may pin itself to: its affinity mask, and the
    online CPUs outside it that a thread is still let onto.  A mask is only where a process
    starts (systemd's CPUAffinity=, taskset): the workers pin themselves out of it; a cgroup
    cpuset (AllowedCPUs=) is a limit, and pinning outside it fails with EINVAL.  Each is
    tried on the calling thread, whose mask is put back."""
    mask = os.sched_getaffinity(0)
    out = set(mask)
    try:
        for c in sorted(cpu_list(_read(f"{SYS_CPU}/online")) - mask):
            try:
                os.sched_setaffinity(0, {c})
                out.add(c)
            except OSError:
                continue
    finally:
        if out != mask:
            os.sched_setaffinity(0, mask)
    return out


def _cap_ipc_lock():
    for line in (_read("/proc/self/status") or "").splitlines():
        if line.startswith("CapEff:"):
            return bool(int(line.split()[1], 16) >> CAP_IPC_LOCK & 1)
    return False


def _queues(r):
    return f"queue {r[0]}" if len(r) == 1 else f"queues {r[0]}-{r[-1]}"


def _size(n):
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:g} {unit}" if unit == "bytes" else f"{n:.4g} {unit}"
        n /= 1024


# ---------------------------------------------------------------------------- checks

class Doctor:
    def __init__(self, cfg):
        self.cfg = cfg
        self.sw = cfg.switch
        self.src = cfg.source if not str(cfg.source).startswith("<") else "the config"
        self.checks = []
        self.features = None            # XdpFeatures, when the kernel has the netdev family
        self.features_error = ""
        self.multi_buffer = kernel_at_least(6, 6)     # XDP_USE_SG

    def add(self, name, subject, status, found, fix=""):
        self.checks.append(Check(name, subject, status, found, fix if status != OK else ""))

    def run(self):
        self.cpus()
        self.kernel()
        try:
            links = Links()
        except OSError as e:
            self.add("kernel.rtnetlink", "", FAIL, f"cannot open rtnetlink: {e.strerror or e}",
                     "run as root")
            return self.checks
        try:
            self.features = XdpFeatures()
            self.add("kernel.xdp_features", "", OK, "the kernel reports each device's XDP "
                     "features (netdev generic netlink)")
        except LinkError as e:
            self.features_error = str(e)
            self.add("kernel.xdp_features", "", WARN, f"{e}: zero-copy and fast-path targets "
                     "cannot be checked", "Linux 6.3+")
        try:
            for i, p in enumerate(self.cfg.ports):
                self.port(links, i, p.name)
        finally:
            links.close()
            if self.features is not None:
                self.features.close()
        return self.checks

    # ------------------------------------------------------------------ CPUs

    def cpus(self):
        cores = self.sw.cores
        usable = usable_cpus()
        online = cpu_list(_read(f"{SYS_CPU}/online")) or usable
        bad = [c for c in cores if c not in usable]
        for i, c in enumerate(cores):
            if c not in usable:
                why = "is offline" if os.path.exists(f"{SYS_CPU}/cpu{c}") and c not in online \
                    else "is not usable here (cgroup cpuset or affinity)" if c in online \
                    else "does not exist"
                self.add("cpu.cores", f"core {c}", FAIL,
                         f"switch.cores[{i}]: core {c} {why}; usable: {list_text(usable)}",
                         f"edit {self.src}: switch.cores = a list of cores among "
                         f"{list_text(usable)}")
        if bad:
            return
        spare = usable - set(cores)
        left = (f"core {list_text(spare)}" if len(spare) == 1 else
                f"cores {list_text(spare)}" if spare else "no core")
        found = (f"worker core(s) {list_text(cores)}: exist, usable, one worker each; "
                 f"{left} left for the kernel and management")
        if not spare and self.sw.mode == "poll":
            self.add("cpu.cores", "", WARN, found + ": poll-mode workers take every core",
                     f"edit {self.src}: leave one usable core out of switch.cores")
        else:
            self.add("cpu.cores", "", OK, found)
        isolated = cpu_list(_read(f"{SYS_CPU}/isolated")) | cpu_list(_read(f"{SYS_CPU}/nohz_full"))
        iso = [c for c in cores if c in isolated]
        rest = [c for c in cores if c not in isolated]
        self.add("cpu.isolation", "", OK,
                 (f"isolated (isolcpus/nohz_full): {list_text(iso)}; " if iso else "")
                 + (f"not isolated: {list_text(rest)} (other tasks may run there; "
                    f"isolcpus=, nohz_full= or a cpuset keep them away)" if rest else ""))
        govs = {c: _read(f"{SYS_CPU}/cpu{c}/cpufreq/scaling_governor") for c in cores}
        if all(g is None for g in govs.values()):
            self.add("cpu.governor", "", OK, "no cpufreq governor (a VM, or a fixed frequency)")
        else:
            slow = [c for c, g in govs.items() if g not in (None, "performance")]
            self.add("cpu.governor", "", WARN if slow else OK,
                     ", ".join(f"core {c}: {g or 'none'}" for c, g in govs.items()),
                     "; ".join(f"echo performance > {SYS_CPU}/cpu{c}/cpufreq/scaling_governor"
                               for c in slow))

    # ------------------------------------------------------------------ kernel

    def kernel(self):
        try:
            socket.socket(AF_XDP, socket.SOCK_RAW).close()
            self.add("kernel.af_xdp", "", OK, "AF_XDP sockets available")
        except OSError as e:
            fatal = e.errno in (errno.EAFNOSUPPORT, errno.EINVAL)
            self.add("kernel.af_xdp", "", FAIL,
                     "no AF_XDP sockets in this kernel" if fatal else
                     f"cannot open an AF_XDP socket: {e.strerror}",
                     "a kernel with CONFIG_XDP_SOCKETS=y" if fatal else "run as root")
        jit = _read("/proc/sys/net/core/bpf_jit_enable")
        if jit == "1":
            self.add("kernel.bpf_jit", "", OK, "BPF JIT on")
        else:
            self.add("kernel.bpf_jit", "", WARN,
                     "no BPF JIT: the XDP program is interpreted" if jit is None else
                     f"net.core.bpf_jit_enable = {jit}" + (
                         ": the XDP program is interpreted" if jit == "0" else
                         ": JIT debug output on"), "sysctl -w net.core.bpf_jit_enable=1")
        umem = self.sw.frames * self.sw.frame_size
        soft, _ = resource.getrlimit(resource.RLIMIT_MEMLOCK)
        limit = "unlimited" if soft == resource.RLIM_INFINITY else _size(soft)
        found = (f"UMEM {_size(umem)} ({self.sw.frames} frames x {self.sw.frame_size}); "
                 f"RLIMIT_MEMLOCK {limit}")
        if soft == resource.RLIM_INFINITY or soft >= umem:
            self.add("kernel.memlock", "", OK, found)
        elif _cap_ipc_lock():
            self.add("kernel.memlock", "", OK, found + ": below the UMEM, but CAP_IPC_LOCK "
                     "exempts it (a run without that capability needs LimitMEMLOCK=infinity)")
        else:
            self.add("kernel.memlock", "", FAIL, found + " and no CAP_IPC_LOCK: the UMEM "
                     "cannot be registered",
                     "ulimit -l unlimited (systemd: LimitMEMLOCK=infinity), or run as root")
        room = self.sw.frame_size - XDP_HEADROOM
        if self.sw.max_frame <= room:
            self.add("kernel.multi_buffer", "", OK, f"switch.max_frame {self.sw.max_frame} fits "
                     f"a UMEM frame ({room} bytes): multi-buffer AF_XDP not needed")
        elif self.multi_buffer:
            self.add("kernel.multi_buffer", "", OK, f"multi-buffer AF_XDP (Linux 6.6+, "
                     f"{os.uname().release}): frames up to switch.max_frame "
                     f"{self.sw.max_frame} span several UMEM frames")
        else:
            self.add("kernel.multi_buffer", "", WARN, f"no multi-buffer AF_XDP before Linux "
                     f"6.6 ({os.uname().release}): frames above {room} bytes (a UMEM frame) "
                     f"are dropped, not switch.max_frame {self.sw.max_frame}",
                     "Linux 6.6+, or switch.frame_size = 4096 for frames up to "
                     f"{4096 - XDP_HEADROOM} bytes")
        if self.sw.mode == "poll":
            if os.path.exists("/proc/sys/net/core/busy_read"):
                self.add("kernel.busy_poll", "", OK, "busy polling built in "
                         "(CONFIG_NET_RX_BUSY_POLL)")
            else:
                self.add("kernel.busy_poll", "", WARN, "no busy polling in this kernel: poll "
                         "mode spins without SO_PREFER_BUSY_POLL",
                         "a kernel with CONFIG_NET_RX_BUSY_POLL=y, or switch.mode = interrupt")

    # ------------------------------------------------------------------ ports

    def port(self, links, i, name):
        link = links.get(name=name)
        if link is None:
            self.add("port.link", name, FAIL, f"port[{i}]: no interface {name}",
                     f"create {name}, or edit {self.src}: port[{i}].name")
            return
        if link.loopback:
            self.add("port.link", name, FAIL, f"{name} is a loopback interface",
                     f"edit {self.src}: port[{i}].name")
            return
        peer = veth_peer(name)
        driver = "veth" if peer is not None else ethtool_driver(name) or "unknown"
        state = "up" if link.up else "down or no carrier"
        self.add("port.link", name, OK if link.up else WARN,
                 f"ifindex {link.ifindex}, driver {driver}, {state}",
                 f"ip link set dev {name} up (and check the cable)")
        feats = segs = None
        if self.features is not None:
            try:
                feats, segs = self.features.device(link.ifindex) or (None, None)
            except LinkError as e:
                self.features_error = str(e)
        self.mtu(name, link.mtu)
        self.offloads(name)
        if peer is not None:
            self.peer(name, peer)
        self.xdp(name, link, feats, driver, segs)
        self.fastpath(name, feats, peer)
        self.queues(name, peer)
        self.busy_poll(name, link.ifindex)
        self.irqs(name)

    def mtu(self, name, mtu):
        """The port's frames against the longest the switch carries: switch.max_frame, or a
        UMEM frame's room without multi-buffer."""
        frame = mtu + VLAN_ETH_HLEN
        room = self.sw.frame_size - XDP_HEADROOM
        if self.multi_buffer and self.sw.max_frame > room:
            room = self.sw.max_frame
            found = (f"MTU {mtu}: frames up to {frame} bytes; the switch carries "
                     f"{room} (switch.max_frame)")
        else:
            room = min(room, self.sw.max_frame)
            found = (f"MTU {mtu}: frames up to {frame} bytes; the switch carries {room} "
                     + ("(switch.max_frame)" if room == self.sw.max_frame else
                        f"(a UMEM frame: switch.frame_size {self.sw.frame_size} less "
                        f"{XDP_HEADROOM} of headroom, no multi-buffer)"))
        if frame <= room:
            self.add("port.mtu", name, OK, found)
            return
        fix = f"ip link set dev {name} mtu {room - VLAN_ETH_HLEN}"
        if self.multi_buffer and frame <= max_frame_limit(self.sw.frame_size):
            fix += f", or edit {self.src}: switch.max_frame = {frame}"
        elif not self.multi_buffer and self.sw.frame_size < 4096 and \
                frame <= min(4096 - XDP_HEADROOM, self.sw.max_frame):
            fix += f", or edit {self.src}: switch.frame_size = 4096"
        self.add("port.mtu", name, WARN, found + ": larger frames are dropped and counted "
                 "(oversize_dropped)", fix)

    def offloads(self, name):
        """LRO and hardware GRO merge frames beyond a UMEM frame; rx VLAN offload the switch
        handles itself (it turns it off while the interface is a port)."""
        f = ethtool_features(name)
        if f is None:
            self.add("port.offloads", name, WARN, "cannot read its offloads (ethtool -k)",
                     "apt-get install ethtool")
            return
        agg = [k for k in ("large-receive-offload", "rx-gro-hw") if f.get(k)]
        found = [f"{', '.join(agg)} on: merged frames exceed a UMEM frame" if agg else
                 "LRO and hardware GRO off",
                 f"GRO {'on' if f.get('generic-receive-offload') else 'off'}"]
        if f.get("rx-vlan-offload"):
            found.append("rx-vlan-offload on (pyxsw turns it off while the port is in the "
                         "switch, so that 802.1Q tags reach XDP)")
        self.add("port.offloads", name, WARN if agg else OK, "; ".join(found),
                 f"ethtool -K {name} lro off rx-gro-hw off")

    def peer(self, name, peer):
        ns, pname, index = peer
        if pname is None:
            self.add("port.peer", name, WARN, f"veth whose peer (ifindex {index}) is in a "
                     "namespace without a name: its checksum offload cannot be read",
                     "ip netns attach NAME PID (then run doctor again)")
            return
        where = f"{pname} in namespace {ns}" if ns else pname
        f = ethtool_features(pname, ns)
        if f is None:
            cmd = _ns_cmd(ns, f"ethtool -k {pname}")
            self.add("port.peer", name, WARN, f"veth peer {where}: cannot read its offloads "
                     f"({cmd} failed)", f"run {cmd} as root to see why (ethtool missing, "
                     "or a sandbox that forbids entering namespaces)")
        elif f.get("tx-checksumming"):
            self.add("port.peer", name, WARN,
                     f"veth peer {where} has tx checksum offload on: it sends frames with "
                     "partial checksums, which a userspace switch forwards as they are "
                     "(TCP breaks)", _ns_cmd(ns, f"ethtool -K {pname} tx off"))
        else:
            self.add("port.peer", name, OK, f"veth peer {where}: tx checksum offload off")

    def xdp(self, name, link, feats, driver, segs=None):
        want, zc = self.sw.xdp_mode, self.sw.zero_copy
        attached = ", ".join(f"{m} program id {i}" for m, i in link.xdp.items())
        also = f"; attached now: {attached}" if attached else ""
        if feats is None:
            why = self.features_error or "the kernel did not say"
            self.add("port.xdp", name, WARN, f"XDP features unknown ({why}); xdp_mode {want}"
                     + also, "Linux 6.3+ reports them (netdev generic netlink)")
            return
        native = bool(feats & XDP_ACT_BASIC)
        if want == "native" and not native:
            self.add("port.xdp", name, FAIL, f"xdp_mode native but driver {driver} has no "
                     "native XDP: attaching fails", f"edit {self.src}: switch.xdp_mode = auto")
        else:
            mode = want if want != "auto" else "native" if native else "generic"
            sg = "with" if feats & XDP_ACT_RX_SG else "without"
            self.add("port.xdp", name, OK, f"XDP {mode} mode (xdp_mode {want}; driver "
                     f"{driver} {'has' if native else 'lacks'} native XDP, {sg} "
                     f"multi-buffer frames){also}")
        has_zc = bool(feats & XDP_ACT_XSK_ZEROCOPY)
        if has_zc:
            self.add("port.zero_copy", name, OK, f"zero-copy AF_XDP supported"
                     + (f" (zc-max-segs {segs})" if segs else "") + f"; zero_copy {zc}"
                     + (": copy mode as configured" if zc == "off" else ""))
        elif zc == "on":
            self.add("port.zero_copy", name, FAIL, f"zero_copy on, but driver {driver} has no "
                     "AF_XDP zero-copy: binding fails", f"edit {self.src}: switch.zero_copy = auto")
        elif driver == "veth" or zc == "off":
            self.add("port.zero_copy", name, OK, f"copy mode (zero_copy {zc}; "
                     f"{'veth has no zero-copy' if driver == 'veth' else 'as configured'})")
        else:
            self.add("port.zero_copy", name, WARN, f"driver {driver} has no AF_XDP zero-copy: "
                     "copy mode (every frame copied by the kernel)",
                     "a NIC whose driver has XSK zero-copy (ice, i40e, mlx5, ixgbe...)")

    def fastpath(self, name, feats, peer):
        if feats is None:
            if self.sw.fastpath == "xdp":
                self.add("port.fastpath", name, WARN, "cannot tell whether it takes "
                         "XDP-redirected frames: no fast path to it",
                         "Linux 6.3+ reports it (netdev generic netlink)")
            return
        takes = can_take_redirects(feats)
        found = f"{'takes' if takes else 'does not take'} XDP-redirected frames (NDO_XMIT)"
        if self.sw.fastpath != "xdp":
            self.add("port.fastpath", name, OK, found + "; switch.fastpath is off")
        elif takes:
            self.add("port.fastpath", name, OK, found + ": a fast-path target")
        else:
            ns, pname, _ = peer or (None, None, None)
            fix = (_ns_cmd(ns, f"ethtool -K {pname} gro on") if pname else
                   "GRO on, or an XDP program, on the veth's peer" if peer else
                   "a driver with ndo_xdp_xmit")
            self.add("port.fastpath", name, WARN, found + ": frames to it take the AF_XDP "
                     "path" + (" (a veth takes them while its peer has GRO on or an XDP "
                               "program)" if peer else ""), fix)

    def queues(self, name, peer):
        """One socket per worker on queues 0..len(cores)-1.  A veth receives on the queue
        its peer sent on, and a frame sent on a queue this end lacks skips its NAPI, and
        so the XDP program: both ends change together."""
        is_veth = peer is not None
        n = len(self.sw.cores)
        rx = len(glob.glob(f"{SYS_NET}/{name}/queues/rx-*"))
        ch = ethtool_channels(name) or {"max": {}, "now": {}}
        key = "combined" if ch["now"].get("combined") else "rx"
        most = ch["max"].get(key)
        found = (f"{rx} RX queue(s)" + (f" (at most {most})" if most else "")
                 + f"; switch.cores uses {_queues(range(n))}")
        set_n = (f"ethtool -L {name} rx {n} tx {n}" if is_veth or key == "rx"
                 else f"ethtool -L {name} combined {n}")
        if is_veth and peer[1]:
            set_n += "; " + _ns_cmd(peer[0], f"ethtool -L {peer[1]} rx {n} tx {n}")
        if rx < n:
            if most and most >= n:
                fix = set_n
            elif is_veth:
                fix = (f"recreate the veth with numrxqueues {n} numtxqueues {n} (both ends), "
                       f"or edit {self.src}: switch.cores to {rx} core(s)")
            else:
                fix = f"edit {self.src}: switch.cores to at most {rx} core(s)"
            self.add("port.queues", name, FAIL, found + f": {_queues(range(rx, n))} "
                     "missing: a socket there cannot bind", fix)
        elif rx > n:
            self.add("port.queues", name, WARN, found + f": frames steered to "
                     f"{_queues(range(n, rx))} (RSS, or the veth peer's TX queue) have no "
                     "socket and go to the kernel (XDP_PASS)",
                     set_n + (f", or ethtool -X {name} equal {n}" if not is_veth else ""))
        else:
            self.add("port.queues", name, OK, found)

    def busy_poll(self, name, ifindex):
        """The deferral that lets SO_PREFER_BUSY_POLL mask interrupts: per NAPI instance
        where the kernel lists the device's (6.13+: those values are the ones that apply),
        else the device's in sysfs (which instances made later, a veth's at the attach,
        start from)."""
        if self.sw.mode != "poll":
            return
        dev = napi.read_device(name)
        instances = None
        if napi.per_napi(self.features):
            try:
                instances = napi.napis(self.features, ifindex)
            except LinkError:
                instances = None
        if dev is None and not instances:
            self.add("port.busy_poll", name, WARN, "no napi_defer_hard_irqs / "
                     "gro_flush_timeout in sysfs (kernel older than 5.11)",
                     "a kernel with preferred busy polling (5.11+)")
            return
        found = [f"napi_defer_hard_irqs {dev[0]}, gro_flush_timeout {dev[1]}" if dev else
                 "no device values in sysfs"]
        if instances:
            found.append("NAPI " + ", ".join(
                f"{n['id']}: defer_hard_irqs {n['defer_hard_irqs']}, gro_flush_timeout "
                f"{n['gro_flush_timeout']}" for n in instances))
            masked = all(napi.masks(n["defer_hard_irqs"], n["gro_flush_timeout"])
                         for n in instances)
        else:
            if instances is not None:
                found.append("no NAPI instance now (a veth has one while XDP or GRO is on)")
            masked = napi.masks(*dev)
        found = "; ".join(found)
        if masked:
            self.add("port.busy_poll", name, OK, found + ": SO_PREFER_BUSY_POLL masks its "
                     "interrupts while the workers poll")
        elif self.sw.busy_poll_tuning:
            self.add("port.busy_poll", name, OK, found + ": switch.busy_poll_tuning sets "
                     f"defer_hard_irqs {DEFER_HARD_IRQS} and gro_flush_timeout "
                     f"{GRO_FLUSH_TIMEOUT} while the switch runs")
        else:
            self.add("port.busy_poll", name, WARN, found + ": in poll mode SO_PREFER_BUSY_POLL "
                     "masks no interrupts without both",
                     f"echo {DEFER_HARD_IRQS} > {SYS_NET}/{name}/napi_defer_hard_irqs; "
                     f"echo {GRO_FLUSH_TIMEOUT} > {SYS_NET}/{name}/gro_flush_timeout, or edit "
                     f"{self.src}: switch.busy_poll_tuning = true")

    def irqs(self, name):
        dev = f"{SYS_NET}/{name}/device"
        if not os.path.isdir(dev):
            return                      # a virtual device (veth): no IRQs, no NUMA node
        node = _read(f"{dev}/numa_node")
        if node and node.lstrip("-").isdigit() and int(node) >= 0:
            far = [c for c in self.sw.cores
                   if not os.path.exists(f"{SYS_CPU}/cpu{c}/node{node}")]
            self.add("port.numa", name, WARN if far else OK,
                     f"NIC on NUMA node {node}" + (f"; worker core(s) {list_text(far)} on "
                                                   "another node" if far else
                                                   ", with every worker core"),
                     f"edit {self.src}: switch.cores on node {node} "
                     f"({_read(f'{SYS_NODE}/node{node}/cpulist') or '?'})")
        irqs = sorted(int(i) for i in os.listdir(f"{dev}/msi_irqs")) \
            if os.path.isdir(f"{dev}/msi_irqs") else []
        if not irqs or not os.path.isdir(PROC_IRQ):
            return
        cores = set(self.sw.cores)
        on = {i: cpu_list(_read(f"{PROC_IRQ}/{i}/smp_affinity_list")) for i in irqs}
        hit = [i for i, cpus in on.items() if cpus & cores]
        found = f"{len(irqs)} IRQ(s)"
        if self.sw.mode == "poll" and hit:
            others = usable_cpus() - cores
            self.add("port.irq", name, WARN,
                     found + f": {len(hit)} may run on worker cores ({list_text(cores)}), "
                     "where they steal time from polling",
                     "; ".join(f"echo {list_text(others) or 0} > {PROC_IRQ}/{i}/smp_affinity_list"
                               for i in hit[:4]) + ("; ..." if len(hit) > 4 else ""))
        else:
            self.add("port.irq", name, OK, found + (
                f", none on the worker cores" if self.sw.mode == "poll" else
                f", {len(hit)} on worker cores (near the workers, as {self.sw.mode} mode "
                "wants)"))


def diagnose(cfg):
    """Every check of the machine against `cfg`, in the order printed."""
    return Doctor(cfg).run()


# ---------------------------------------------------------------------------- output

def render(checks):
    """The text `pyxsw doctor` prints: a line per check, its fix under it, a summary."""
    width = max((len(c.name) + len(c.subject) + 1 for c in checks), default=0)
    lines = []
    for c in checks:
        what = f"{c.name} {c.subject}".strip()
        lines.append(f"{c.status:4}  {what:{width}}  {c.found}")
        if c.fix:
            lines.append(f"{'':4}  {'':{width}}  fix: {c.fix}")
    counts = {s: sum(c.status == s for c in checks) for s in STATUSES}
    lines.append(", ".join(f"{n} {s}" for s, n in counts.items()))
    return "\n".join(lines)


def to_json(checks):
    return json.dumps([c.as_dict() for c in checks], indent=2)
