"""`pyxsw doctor`: veth labs made wrong on purpose are each reported with a fix, and the fix
printed, run as printed, makes the check pass; a correct lab passes (exit 0); --json parses;
a bad file exits 2 with `pyxsw run`'s one line."""
import json
import os
import subprocess
import sys

import pytest

from pyxsw.config import Config
from pyxsw import doctor as doctor_mod
from pyxsw.doctor import (FAIL, OK, WARN, Check, Doctor, cpu_list, diagnose, list_text, render,
                          worst)

system = pytest.mark.system


def core():
    usable = os.sched_getaffinity(0)
    return 1 if 1 in usable else min(usable)


def config(ports, **switch):
    return Config.from_dict({"switch": {"cores": [core()], **switch},
                             "management": {"socket": "/tmp/pyxsw-doctor-test.sock"},
                             "port": [{"name": p} for p in ports]}, source="<test>")


def write(tmp_path, ports, **switch):
    cores = switch.pop("cores", [core()])
    lines = ["[switch]", f"cores = {cores}"]
    lines += [f"{k} = {json.dumps(v)}" for k, v in switch.items()]
    lines += ["[management]", 'socket = "/tmp/pyxsw-doctor-test.sock"']
    for p in ports:
        lines += ["[[port]]", f'name = "{p}"']
    path = tmp_path / "sw.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def doctor(*args):
    return subprocess.run([sys.executable, "-m", "pyxsw", "doctor", *map(str, args)],
                          capture_output=True, text=True, timeout=60)


def find(checks, name, subject=""):
    found = [c for c in checks if c.name == name and c.subject == subject]
    assert len(found) == 1, f"{name} {subject}: {found} in {checks}"
    return found[0]


def apply(fix):
    """Run a fix as printed (a shell command line)."""
    subprocess.run(fix, shell=True, check=True, capture_output=True)


# ---------------------------------------------------------------------------- pure parts

def test_cpu_lists_both_ways():
    assert cpu_list("0-3,8,10-11\n") == {0, 1, 2, 3, 8, 10, 11}
    assert cpu_list("") == set() and cpu_list(None) == set()
    assert list_text({0, 1, 2, 3, 8, 10, 11}) == "0-3,8,10-11"
    assert list_text({5}) == "5" and list_text(set()) == ""


def test_render_and_worst():
    checks = [Check("cpu.cores", "", OK, "fine"),
              Check("port.mtu", "s0", WARN, "MTU 9000", "ip link set dev s0 mtu 1774")]
    assert worst(checks) == WARN and worst([]) == OK
    assert worst(checks + [Check("port.link", "s9", FAIL, "gone", "x")]) == FAIL
    text = render(checks)
    assert text.splitlines()[1].startswith("WARN  port.mtu s0")
    assert text.splitlines()[2].strip() == "fix: ip link set dev s0 mtu 1774"
    assert text.splitlines()[-1] == "1 OK, 1 WARN, 0 FAIL"


def fake_machine(root, monkeypatch):
    """A NIC on NUMA node 1 with IRQs 40 (on cores 0-3) and 41 (core 0), CPUs 0-3 on node 0
    with core 2 at the powersave governor: what veth labs cannot show."""
    files = {"net/nic0/device/numa_node": "1", "net/nic0/device/msi_irqs/40": "",
             "net/nic0/device/msi_irqs/41": "", "irq/40/smp_affinity_list": "0-3",
             "irq/41/smp_affinity_list": "0", "cpu/online": "0-3",
             "cpu/cpu2/cpufreq/scaling_governor": "powersave", "node/node1/cpulist": "4-7"}
    for path, text in files.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(text + "\n")
    for c in range(4):
        (root / f"cpu/cpu{c}/node0").mkdir(parents=True, exist_ok=True)
    for name, sub in (("SYS_NET", "net"), ("SYS_CPU", "cpu"), ("SYS_NODE", "node"),
                      ("PROC_IRQ", "irq")):
        monkeypatch.setattr(doctor_mod, name, str(root / sub))
    monkeypatch.setattr(doctor_mod, "usable_cpus", lambda: {0, 1, 2, 3})


def test_nic_irqs_numa_and_governor(tmp_path, monkeypatch):
    fake_machine(tmp_path, monkeypatch)
    d = Doctor(config([], cores=[2], mode="poll"))
    d.cpus()
    d.irqs("nic0")
    numa, irq = find(d.checks, "port.numa", "nic0"), find(d.checks, "port.irq", "nic0")
    assert (numa.status, numa.found) == (WARN, "NIC on NUMA node 1; worker core(s) 2 on "
                                               "another node")
    assert numa.fix == "edit the config: switch.cores on node 1 (4-7)"
    assert irq.status == WARN and irq.found.startswith("2 IRQ(s): 1 may run on worker cores")
    assert irq.fix == f"echo 0-1,3 > {tmp_path}/irq/40/smp_affinity_list"
    gov = find(d.checks, "cpu.governor")
    assert (gov.status, gov.found) == (WARN, "core 2: powersave")
    assert gov.fix == f"echo performance > {tmp_path}/cpu/cpu2/cpufreq/scaling_governor"
    assert find(d.checks, "cpu.cores").status == OK
    # interrupt mode: IRQs near the workers are what it wants
    d = Doctor(config([], cores=[2], mode="interrupt"))
    d.irqs("nic0")
    assert find(d.checks, "port.irq", "nic0").status == OK
    # poll mode on every core: nothing left for the kernel
    d = Doctor(config([], cores=[0, 1, 2, 3], mode="poll", frames=16384))
    d.cpus()
    assert find(d.checks, "cpu.cores").status == WARN


def test_a_missing_core_fails_with_its_key():
    checks = diagnose(config([], cores=[4000]))
    c = find(checks, "cpu.cores", "core 4000")
    assert c.status == FAIL
    assert "switch.cores[0]: core 4000 does not exist" in c.found
    assert "switch.cores" in c.fix
    assert worst(checks) == FAIL


def test_bad_config_exits_2_with_runs_line(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('[switch]\ncores = "1"\n')
    p = doctor("-c", path)
    assert p.returncode == 2
    assert p.stdout == ""
    assert p.stderr == f"{path}: switch.cores: expected an array of integers, got a string\n"
    run = subprocess.run([sys.executable, "-m", "pyxsw", "run", "-c", str(path)],
                         capture_output=True, text=True, timeout=60)
    assert (run.returncode, run.stderr) == (2, p.stderr)


# ---------------------------------------------------------------------------- on labs

@system
def test_a_correct_lab_passes(lab_factory, tmp_path):
    lab = lab_factory(hosts=2)
    p = doctor("-c", write(tmp_path, lab.ports))
    assert p.returncode == 0, p.stdout + p.stderr
    assert "\nFAIL" not in p.stdout and p.stdout.rstrip().endswith(" 0 FAIL")
    checks = diagnose(config(lab.ports))
    for port in lab.ports:
        for name in ("port.link", "port.mtu", "port.offloads", "port.peer", "port.xdp",
                     "port.zero_copy", "port.fastpath", "port.queues"):
            assert find(checks, name, port).status == OK, find(checks, name, port)
    assert find(checks, "port.peer", lab.ports[0]).found == \
        f"veth peer eth0 in namespace {lab.hosts[0].ns}: tx checksum offload off"
    assert "native mode" in find(checks, "port.xdp", lab.ports[0]).found


@system
def test_json_lists_the_checks(lab_factory, tmp_path):
    lab = lab_factory(hosts=1)
    p = doctor("-c", write(tmp_path, [*lab.ports, f"{lab.prefix}s9"]), "--json")
    assert p.returncode == 1                        # the interface that does not exist
    checks = json.loads(p.stdout)
    assert all(set(c) == {"name", "subject", "status", "found", "fix"} for c in checks)
    assert {c["status"] for c in checks} <= {OK, WARN, FAIL}
    gone = [c for c in checks if c["subject"] == f"{lab.prefix}s9"]
    assert [(c["name"], c["status"]) for c in gone] == [("port.link", FAIL)]
    assert "port[1].name" in gone[0]["fix"]
    assert any(c["name"] == "port.mtu" and c["subject"] == lab.ports[0] for c in checks)


@system
def test_mtu_above_max_frame_is_reported_and_fixed(lab_factory):
    lab = lab_factory(hosts=1)
    port = lab.ports[0]
    subprocess.run(["ip", "link", "set", "dev", port, "mtu", "9000"], check=True)
    assert find(diagnose(config(lab.ports)), "port.mtu", port).status == OK   # jumbo fits
    subprocess.run(["ip", "link", "set", "dev", port, "mtu", "9300"], check=True)
    c = find(diagnose(config(lab.ports)), "port.mtu", port)
    assert c.status == WARN
    assert "MTU 9300: frames up to 9318 bytes; the switch carries 9216 (switch.max_frame)" \
        in c.found
    assert c.fix == f"ip link set dev {port} mtu 9198, or edit the config: " \
                    "switch.max_frame = 9318"
    # with that max_frame it fits
    assert find(diagnose(config(lab.ports, max_frame=9318)), "port.mtu", port).status == OK
    apply(c.fix.split(",")[0])
    assert find(diagnose(config(lab.ports)), "port.mtu", port).status == OK
    # a max_frame within a UMEM frame bounds the port too
    c = find(diagnose(config(lab.ports, max_frame=1518)), "port.mtu", port)
    assert c.status == WARN and "the switch carries 1518 (switch.max_frame)" in c.found
    k = find(diagnose(config(lab.ports, max_frame=1518)), "kernel.multi_buffer", "")
    assert k.status == OK and "not needed" in k.found
    k = find(diagnose(config(lab.ports)), "kernel.multi_buffer", "")
    assert k.status == OK and "switch.max_frame 9216 span several UMEM frames" in k.found


@system
def test_peer_checksum_offload_is_reported_and_fixed(lab_factory):
    lab = lab_factory(hosts=2)
    lab.run(1, "ethtool", "-K", "eth0", "tx", "on", check=True, capture_output=True)
    checks = diagnose(config(lab.ports))
    assert find(checks, "port.peer", lab.ports[0]).status == OK
    c = find(checks, "port.peer", lab.ports[1])
    assert c.status == WARN and "tx checksum offload on" in c.found
    assert c.fix == f"ip netns exec {lab.hosts[1].ns} ethtool -K eth0 tx off"
    apply(c.fix)
    assert find(diagnose(config(lab.ports)), "port.peer", lab.ports[1]).status == OK


@system
def test_more_cores_than_queues_fails(lab_factory, tmp_path):
    if len(os.sched_getaffinity(0)) < 2:
        pytest.fail("needs two usable cores")
    lab = lab_factory(hosts=1)
    cores = sorted(os.sched_getaffinity(0))[:2]
    c = find(diagnose(config(lab.ports, cores=cores)), "port.queues", lab.ports[0])
    assert c.status == FAIL
    assert c.found.startswith("1 RX queue(s) (at most 1); switch.cores uses queues 0-1: "
                              "queue 1 missing")
    assert "numrxqueues 2" in c.fix and "switch.cores to 1 core(s)" in c.fix
    p = doctor("-c", write(tmp_path, lab.ports, cores=cores))
    assert p.returncode == 1 and f"FAIL  port.queues {lab.ports[0]}" in p.stdout


@system
def test_more_queues_than_cores_is_reported_and_fixed(lab_factory):
    lab = lab_factory(hosts=1, queues=2)
    port = lab.ports[0]
    c = find(diagnose(config(lab.ports)), "port.queues", port)
    assert c.status == WARN and "queue 1" in c.found and "XDP_PASS" in c.found
    assert c.fix == (f"ethtool -L {port} rx 1 tx 1; "
                     f"ip netns exec {lab.hosts[0].ns} ethtool -L eth0 rx 1 tx 1")
    apply(c.fix)
    assert find(diagnose(config(lab.ports)), "port.queues", port).status == OK


@system
def test_fastpath_target_needs_the_peers_gro(lab_factory):
    lab = lab_factory(hosts=1)
    port = lab.ports[0]
    assert find(diagnose(config(lab.ports, fastpath="xdp")), "port.fastpath", port).status == OK
    lab.run(0, "ethtool", "-K", "eth0", "gro", "off", check=True, capture_output=True)
    c = find(diagnose(config(lab.ports, fastpath="xdp")), "port.fastpath", port)
    assert c.status == WARN and "does not take XDP-redirected frames" in c.found
    assert c.fix == f"ip netns exec {lab.hosts[0].ns} ethtool -K eth0 gro on"
    # with the fast path off it is only said
    assert find(diagnose(config(lab.ports)), "port.fastpath", port).status == OK
    apply(c.fix)
    assert find(diagnose(config(lab.ports, fastpath="xdp")), "port.fastpath", port).status == OK


@system
def test_busy_poll_deferral_in_poll_mode(lab_factory):
    lab = lab_factory(hosts=1)
    port = lab.ports[0]
    assert not [c for c in diagnose(config(lab.ports, mode="interrupt"))
                if c.name == "port.busy_poll"]
    c = find(diagnose(config(lab.ports, mode="poll")), "port.busy_poll", port)
    assert c.status == WARN and c.found.startswith("napi_defer_hard_irqs 0, gro_flush_timeout 0")
    assert c.fix.endswith(", or edit the config: switch.busy_poll_tuning = true")
    apply(c.fix.split(", or edit")[0])
    assert find(diagnose(config(lab.ports, mode="poll")), "port.busy_poll", port).status == OK


@system
def test_run_logs_the_warnings_once_started(lab_factory, tmp_path):
    """`pyxsw run` logs doctor's WARNs once its ports are up (not its FAILs: those stop the
    start with their one line, as before)."""
    lab = lab_factory(hosts=2)
    lab.run(1, "ethtool", "-K", "eth0", "tx", "on", check=True, capture_output=True)
    conf = write(tmp_path, lab.ports)
    proc = subprocess.Popen([sys.executable, "-m", "pyxsw", "run", "-c", str(conf)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    lines = []
    try:
        for line in proc.stderr:
            lines.append(line.rstrip("\n"))
            if "doctor: port.peer" in line:
                break
    finally:
        proc.terminate()
        rest = proc.communicate(timeout=30)[1]
    assert proc.returncode == 0, "\n".join(lines) + rest
    said = [x for x in lines if "doctor:" in x]
    assert said[-1] == (f"pyxsw: warning: doctor: port.peer {lab.ports[1]}: veth peer eth0 in "
                        f"namespace {lab.hosts[1].ns} has tx checksum offload on: it sends "
                        "frames with partial checksums, which a userspace switch forwards as "
                        "they are (TCP breaks) (fix: ip netns exec "
                        f"{lab.hosts[1].ns} ethtool -K eth0 tx off)")
    assert not [x for x in said if f"port.peer {lab.ports[0]}" in x]


@system
def test_a_peer_in_this_namespace(prefix):
    """A veth whose peer is in the root namespace too: read and fixed without ip netns."""
    port, peer = f"{prefix}s0", f"{prefix}p0"
    subprocess.run(["ip", "link", "add", port, "type", "veth", "peer", "name", peer], check=True)
    subprocess.run(["ethtool", "-K", peer, "tx", "on"], check=True, capture_output=True)
    c = find(diagnose(config([port])), "port.peer", port)
    assert c.status == WARN and c.found.startswith(f"veth peer {peer} has tx checksum")
    assert c.fix == f"ethtool -K {peer} tx off"
    apply(c.fix)
    c = find(diagnose(config([port])), "port.peer", port)
    assert (c.status, c.found) == (OK, f"veth peer {peer}: tx checksum offload off")
    assert find(diagnose(config([port])), "port.link", port).status == WARN     # down


def test_memlock_below_the_umem_without_cap_ipc_lock_fails(monkeypatch):
    monkeypatch.setattr(doctor_mod.resource, "getrlimit", lambda r: (8 << 20, 8 << 20))
    monkeypatch.setattr(doctor_mod, "_cap_ipc_lock", lambda: False)
    d = Doctor(config([]))
    d.kernel()
    c = find(d.checks, "kernel.memlock")
    assert c.status == FAIL
    assert c.found.startswith("UMEM 32 MiB (16384 frames x 2048); RLIMIT_MEMLOCK 8 MiB")
    assert "LimitMEMLOCK=infinity" in c.fix
    monkeypatch.setattr(doctor_mod, "_cap_ipc_lock", lambda: True)
    d = Doctor(config([]))
    d.kernel()
    assert find(d.checks, "kernel.memlock").status == OK


@system
def test_zero_copy_on_a_veth_fails(lab_factory, tmp_path):
    lab = lab_factory(hosts=1)
    port = lab.ports[0]
    c = find(diagnose(config(lab.ports, zero_copy="on")), "port.zero_copy", port)
    assert c.status == FAIL and "no AF_XDP zero-copy" in c.found
    assert c.fix == "edit the config: switch.zero_copy = auto"
    assert find(diagnose(config(lab.ports)), "port.zero_copy", port).status == OK
    p = doctor("-c", write(tmp_path, lab.ports, zero_copy="on"))
    assert p.returncode == 1 and f"FAIL  port.zero_copy {port}" in p.stdout


def test_a_zero_copy_nic_as_the_netdev_family_reports_it():
    from pyxsw.links import Link
    link = Link(ifindex=7, name="nic0", up=True, loopback=False, xdp={"native": 42}, mtu=1500)
    d = Doctor(config([], zero_copy="auto"))
    d.xdp("nic0", link, 0b101001, "ice", 5)      # basic, xsk zero-copy, rx-sg
    assert find(d.checks, "port.xdp", "nic0").found == (
        "XDP native mode (xdp_mode auto; driver ice has native XDP, with multi-buffer frames); "
        "attached now: native program id 42")
    assert find(d.checks, "port.zero_copy", "nic0").found == \
        "zero-copy AF_XDP supported (zc-max-segs 5); zero_copy auto"
    d = Doctor(config([], xdp_mode="native"))
    d.xdp("nic0", link, 0, "somedrv")               # no native XDP, no zero-copy
    assert find(d.checks, "port.xdp", "nic0").status == FAIL
    assert find(d.checks, "port.zero_copy", "nic0").status == WARN


@system
def test_links_device_reads_features_and_no_zc_segments_on_veth(lab_factory):
    import socket
    from pyxsw.links import XdpFeatures
    lab = lab_factory(hosts=1)
    xf = XdpFeatures()
    try:
        feats, segs = xf.device(socket.if_nametoindex(lab.ports[0]))
        assert feats == xf.get(socket.if_nametoindex(lab.ports[0])) and feats & 1
        assert segs is None                         # veth: no zero-copy, so none said
        assert xf.device(0x7fffff00) is None
    finally:
        xf.close()
