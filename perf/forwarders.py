"""The forwarders under test, one launcher per system, each between the lab's <P>p0 and <P>p1.

    bridge    the Linux bridge over both ports; its softirq moved to the forwarder cores by RPS
    testpmd   dpdk-testpmd, AF_XDP PMD on both ports, --forward-mode=io
    ovs       Open vSwitch, netdev datapath, both ports type=afxdp, NORMAL
    pyxsw     `pyxsw run` with one --modes entry, cores = --fwd-cores; with the fast path
              ([switch] fastpath = "xdp"), the switch's XDP program forwards known unicast
              itself, its NAPI threaded and pinned as for xdp
    xdp       an in-kernel devmap redirect p0 -> p1 (the ceiling), its NAPI threaded and pinned

`start(lab, undo, row)` returns once frames go through
(the lab's probe) or raises Unavailable; each launcher pushes on `undo` what puts the machine
back.
"""
import contextlib
import ctypes as C
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

from benchlab import Unavailable, sh, stop_process
from livegen import BpfObject, XDP_FLAGS_DRV_MODE, check

REPO = Path(__file__).resolve().parent.parent
SYSTEMS = ("bridge", "testpmd", "ovs", "pyxsw", "xdp")
PYXSW = REPO / ".venv" / "bin" / "pyxsw"

# ----------------------------------------------------------------------------------------
# Each start_* returns once frames go through, and pushes its own undo.
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
    move it; threaded NAPI, its kthread pinned to the forwarder cores, can.  The kthread
    runs at SCHED_FIFO --napi-prio (default 50): a NIC's receive softirq preempts whatever
    user thread has the core, and so must this thread, or it waits for the scheduler while
    veth's 256-frame ring overflows (no-drop rates of 0.04-0.15 Mpps instead of 0.3-1.1 at
    SCHED_OTHER, and in poll mode a spinning worker took half its core)."""
    threaded = Path(f"/sys/class/net/{ifname}/threaded")
    threaded.write_text("1")
    undo.push(f"{ifname} threaded off", threaded.write_text, "0")
    cores = ",".join(map(str, lab.args.fwd_cores))
    for d in Path("/proc").iterdir():
        with contextlib.suppress(OSError):
            if d.name.isdigit() and (d / "comm").read_text().startswith(f"napi/{ifname}-"):
                sh("taskset", "-pc", cores, d.name)
                if lab.args.napi_prio:
                    sh("chrt", "-f", "-p", lab.args.napi_prio, d.name)


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


def start_pyxsw(lab, undo, row):
    exe = Path(lab.args.pyxsw)
    if not exe.exists():
        raise Unavailable(f"{exe} not found (run `make install`)")
    core = next((REPO / "pyxsw").glob("_core*.so"), None)
    if core and "asan" in sh("ldd", core, check=False):
        # Someone built the debug core (make test-debug) in this tree: its figures would be
        # AddressSanitizer's, and it does not even start without LD_PRELOAD.
        raise Unavailable(f"{core.name} is a debug (ASan) build: run `make install` first")
    mode, fastpath, fdb_macs = row["mode"], row.get("fastpath"), row.get("fdb_macs", 0)
    name = f"pyxsw-{mode}" + ("-fastpath" if fastpath else "") \
        + ("-bpt" if row.get("busy_poll_tuning") else "")
    cfg = lab.tmp / f"{name}.toml"
    # With the fast path ([switch] fastpath = "xdp"):
    # - GRO on gen0, as for xdp: a veth takes XDP-redirected frames only while its peer has
    #   an XDP program or GRO on.  sink0 has one (the sink), so <P>p1 is a fast-path target
    #   anyway; with GRO on gen0 <P>p0 is one too, and the latency ping-pong's way back goes
    #   through the kernel as well.  The switch finds out by itself which ports are targets
    #   (the kernel's netdev family): nothing here tells it.
    # - with --pin-kernel (the default), p0's NAPI threaded and pinned to the forwarder
    #   cores, as for xdp: the fast path is an XDP redirect in p0's receive, which veth
    #   would otherwise run on the generator's core, and its ratio to xdp must compare like
    #   with like.  (In poll mode the switch's worker spins on that core as well.)
    idle = lab.idle_ports(row.get("ports", 2) - 2)
    if fastpath:
        sh("ethtool", "-K", "gen0", "gro", "on", ns=lab.gen_ns)
        undo.push("gen0 gro off", sh, "ip", "netns", "exec", lab.gen_ns, "ethtool", "-K",
                  "gen0", "gro", "off")
    ops = row.get("ops")
    metrics_port = free_tcp_port() if ops == "metrics" else None
    cfg.write_text(f'[switch]\nname = "{lab.prefix}"\nmode = "{mode}"\n'
                   f"cores = {lab.args.fwd_cores}\n"
                   + ('fastpath = "xdp"\n' if fastpath else "")
                   # the --busy-poll-tuning rows: the ports' NAPI deferral set by the switch
                   + ("busy_poll_tuning = true\n" if row.get("busy_poll_tuning") else "")
                   + (f"[fdb]\ncapacity = {max(65536, 2 * fdb_macs)}\n" if fdb_macs else "")
                   + f'[management]\nsocket = "{lab.tmp / "sw.sock"}"\n'
                   + (f'[metrics]\nlisten = "127.0.0.1:{metrics_port}"\n' if metrics_port else "")
                   + f'[[port]]\nname = "{lab.p0}"\n[[port]]\nname = "{lab.p1}"\n'
                   # the --vlan-trunk row: p1 sends VLAN 1 tagged, a tag pushed on every frame
                   + ('vlan_mode = "trunk"\nallowed = [1]\nnative = 0\n'
                      if row.get("vlan_trunk") else "")
                   + "".join(f'[[port]]\nname = "{p}"\n' for p in idle))
    # No taskset: the switch pins its workers to `cores` and moves its main (management)
    # thread off them by itself.  `taskset -c <fwd core>` would force the management thread
    # onto the worker's core, and every RPC or aging sweep would then cost forwarding time.
    spawn(lab, undo, name, [exe, "run", "-c", cfg])
    if fastpath and lab.args.pin_kernel:
        # p0's NAPI exists once the switch's XDP program is on p0: threaded and pinned now
        napi_to_fwd_cores(lab, undo, lab.p0)
    # The --ops rows: what operating the switch costs its forwarding.
    if ops == "metrics":
        scrape_every_second(undo, f"http://127.0.0.1:{metrics_port}/metrics")
    elif ops == "capture":
        # a capture of everything the generator's port receives and sends, written as pcap
        # to /dev/null by `pyxsw ctl capture` (what it cannot take is lost and counted)
        log = open(lab.tmp / "capture.log", "w")
        p = subprocess.Popen([str(exe), "ctl", "-s", str(lab.tmp / "sw.sock"), "capture",
                              lab.p0, "-w", "/dev/null"], stdin=subprocess.DEVNULL,
                             stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        undo.push("capture", stop_capture, p, log)
        time.sleep(1.0)                 # under way before the trials
        if p.poll() is not None:
            raise Unavailable(f"pyxsw ctl capture ended: see {lab.tmp / 'capture.log'}")


def free_tcp_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scrape_every_second(undo, url):
    """GET url once a second in a thread, as Prometheus would, until undone."""
    stop = threading.Event()

    def scrape():
        while not stop.wait(1.0):
            with contextlib.suppress(OSError):
                urllib.request.urlopen(url, timeout=5).read()
    t = threading.Thread(target=scrape, name="scraper", daemon=True)
    t.start()
    undo.push("metrics scraper", lambda: (stop.set(), t.join(10)))


def stop_capture(p, log):
    """Ctrl-C, as an operator ends it (it stops the capture at the switch), then the rest."""
    if p.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(p.pid, signal.SIGINT)
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            stop_process(p)
    log.close()


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


START = {"bridge": start_bridge, "testpmd": start_testpmd, "ovs": start_ovs,
         "pyxsw": start_pyxsw, "xdp": start_xdp}


def start(lab, undo, row):
    """Start the system of `row` between the lab's ports (pyxsw: in row["mode"], with the
    fast path, more ports, a bigger FDB or the trunk as the row says)."""
    if row["system"] == "pyxsw":
        return start_pyxsw(lab, undo, row)
    return START[row["system"]](lab, undo)
