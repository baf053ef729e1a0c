"""A test and demo lab: hosts in network namespaces, wired by veth pairs to switch ports.

    with Lab(hosts=3, prefix="t1-") as lab:      # namespaces t1-h0.., switch ports t1-s0..
        lab.run(0, "ping", "-c1", lab.hosts[1].ip)

Host i lives in namespace `{prefix}h{i}` and owns `eth0` (MAC 02:00:00:XX:00:{i+1:02x},
198.18.0.{i+1}/24, from the RFC 2544 benchmark range).  The other end of its veth pair,
`{prefix}s{i}`, stays in the root namespace for the switch.  Both sides are kept quiet
(IPv6 off, so no router solicitations or DAD) so tests see only the frames they send.

It drives the `ip` command rather than pyroute2: each step is one command that an operator
can re-type to debug a lab, and `ip netns exec` is what runs commands in the hosts anyway.
"""
from __future__ import annotations

import re
import shutil
import subprocess
import zlib
from dataclasses import dataclass

IFNAMSIZ = 16
MAX_HOSTS = 254                 # 198.18.0.{1..254}
SUBNET = "198.18.0"


class LabError(RuntimeError):
    """A lab could not be built (a command failed, a name is taken)."""


def _ip(*args, check=True):
    """Run `ip ARGS`; on failure raise LabError with the command and what ip said."""
    p = subprocess.run(["ip", *args], capture_output=True, text=True)
    if check and p.returncode:
        raise LabError(f"ip {' '.join(args)}: {p.stderr.strip() or f'exit {p.returncode}'}")
    return p


def check_prefix(prefix: str, hosts: int = 1) -> None:
    """Raise ValueError unless `{prefix}s{hosts-1}` is a valid interface name."""
    if not re.fullmatch(r"[A-Za-z0-9_.-]*", prefix):
        raise ValueError(f"prefix {prefix!r}: use letters, digits, '_', '.' or '-'")
    if not 1 <= hosts <= MAX_HOSTS:
        raise ValueError(f"hosts must be 1..{MAX_HOSTS}, got {hosts}")
    longest = f"{prefix}s{hosts - 1}"
    if len(longest) >= IFNAMSIZ:
        raise ValueError(f"prefix {prefix!r} too long: {longest!r} exceeds 15 characters")


def lab_mac_byte(prefix: str) -> int:
    """The 4th MAC byte of a lab: a hash of its prefix, so labs side by side differ
    (almost always: there are 256 values) and the empty prefix gives 00."""
    return zlib.crc32(prefix.encode()) & 0xFF


@dataclass(frozen=True)
class Host:
    index: int
    ns: str                     # network namespace
    ifname: str                 # inside the namespace: always eth0
    mac: str
    ip: str                     # without the /24
    port: str                   # the switch-side veth end, in the root namespace

    @property
    def cidr(self):
        return f"{self.ip}/24"


class Lab:
    def __init__(self, hosts: int = 3, prefix: str = "", queues: int = 1):
        check_prefix(prefix, hosts)
        if queues < 1:
            raise ValueError(f"queues must be positive, got {queues}")
        self.prefix, self.queues = prefix, queues
        xx = lab_mac_byte(prefix)
        self.hosts = [Host(i, f"{prefix}h{i}", "eth0", f"02:00:00:{xx:02x}:00:{i + 1:02x}",
                           f"{SUBNET}.{i + 1}", f"{prefix}s{i}") for i in range(hosts)]

    @property
    def ports(self) -> list[str]:
        return [h.port for h in self.hosts]

    def __enter__(self):
        return self.up()

    def __exit__(self, *exc):
        self.down()

    def up(self) -> Lab:
        """Build every host; on any failure remove what was built and raise LabError."""
        if shutil.which("ethtool") is None:
            raise LabError("ethtool is needed (apt-get install ethtool)")
        taken = set(_namespaces()) & {h.ns for h in self.hosts}
        taken |= {h.port for h in self.hosts if _link_exists(h.port)}
        if taken:
            # Never adopt or clobber someone else's names; a leftover lab is removed by
            # `pyxsw lab down --prefix P`.
            raise LabError(f"already exist: {', '.join(sorted(taken))} "
                           f"(pyxsw lab down --prefix '{self.prefix}' removes a leftover lab)")
        try:
            for h in self.hosts:
                self._add_host(h)
        except BaseException:
            self.down()
            raise
        return self

    def _add_host(self, h: Host):
        q = ["numtxqueues", str(self.queues), "numrxqueues", str(self.queues)]
        _ip("netns", "add", h.ns)
        # IPv6 off in the namespace *before* eth0 appears there, so it never sends DAD or
        # router solicitations; "default" covers interfaces created later.
        self._run_or_fail(h, "sysctl", "-q", "-w", "net.ipv6.conf.all.disable_ipv6=1",
                          "net.ipv6.conf.default.disable_ipv6=1")
        # The peer is created directly inside the namespace: no clash with the root's eth0.
        _ip("link", "add", h.port, *q, "type", "veth",
            "peer", "name", h.ifname, *q, "netns", h.ns, "address", h.mac)
        with open(f"/proc/sys/net/ipv6/conf/{h.port}/disable_ipv6", "w") as f:
            f.write("1")
        _ip("-n", h.ns, "addr", "add", h.cidr, "dev", h.ifname)
        _ip("-n", h.ns, "link", "set", "lo", "up")
        _ip("-n", h.ns, "link", "set", h.ifname, "up")
        # Without this the host hands partial checksums to the veth; the kernel would fill
        # them in on a bridge, but a userspace switch forwards them as they are and TCP breaks.
        # GRO on here is what lets the switch port (this veth's peer) take frames that an XDP
        # program redirects into it: a veth offers ndo_xdp_xmit (NDO_XMIT in its XDP
        # features) only while its peer has GRO on or an XDP program attached.
        self._run_or_fail(h, "ethtool", "-K", h.ifname, "tx", "off", "gro", "on")
        _ip("link", "set", h.port, "up")

    def _run_or_fail(self, h: Host, *argv):
        p = self.run(h.index, *argv, capture_output=True, text=True)
        if p.returncode:
            raise LabError(f"{' '.join(argv)} in {h.ns}: {p.stderr.strip() or p.returncode}")

    def down(self) -> None:
        """Remove this lab's namespaces and links; safe to call on a half-built lab, twice."""
        # Links first: deleting one end removes the pair at once, whereas a deleted
        # namespace is torn down later by a kernel worker and its veth lingers a moment.
        for h in self.hosts:
            if _link_exists(h.port):
                _ip("link", "del", h.port, check=False)
        present = set(_namespaces())
        for h in self.hosts:
            if h.ns in present:
                _ip("netns", "del", h.ns, check=False)

    def run(self, i: int, *argv, **kwargs) -> subprocess.CompletedProcess:
        """Run argv in host i's namespace; kwargs go to subprocess.run."""
        return subprocess.run(["ip", "netns", "exec", self.hosts[i].ns, *map(str, argv)],
                              **kwargs)

    def popen(self, i: int, *argv, **kwargs) -> subprocess.Popen:
        return subprocess.Popen(["ip", "netns", "exec", self.hosts[i].ns, *map(str, argv)],
                                **kwargs)


def _namespaces() -> list[str]:
    # `ip netns list` prints "name (id: N)" lines, or just "name" for unpeered namespaces.
    out = _ip("netns", "list", check=False).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def _link_exists(name: str) -> bool:
    return _ip("link", "show", "dev", name, check=False).returncode == 0


def _veth_links() -> list[str]:
    out = _ip("-o", "link", "show", "type", "veth", check=False).stdout
    # "12: s0@if11: <...>" -> "s0"
    return [line.split(":")[1].strip().split("@")[0] for line in out.splitlines() if ":" in line]


def lab_up(hosts: int = 3, prefix: str = "", queues: int = 1) -> Lab:
    return Lab(hosts, prefix, queues).up()


def lab_down(prefix: str = "") -> tuple[list[str], list[str]]:
    """Remove every `{prefix}h<N>` namespace and `{prefix}s<N>` veth, however they were left.

    Only veth links are touched, so a real NIC that happens to match is safe.
    Returns (namespaces removed, links removed)."""
    check_prefix(prefix)
    ns_re = re.compile(re.escape(prefix) + r"h\d+")
    link_re = re.compile(re.escape(prefix) + r"s\d+")
    gone_links = [name for name in _veth_links() if link_re.fullmatch(name)]
    for link in gone_links:                 # links first, as in Lab.down()
        _ip("link", "del", link, check=False)
    gone_ns = [ns for ns in _namespaces() if ns_re.fullmatch(ns)]
    for ns in gone_ns:
        _ip("netns", "del", ns, check=False)
    return gone_ns, gone_links
