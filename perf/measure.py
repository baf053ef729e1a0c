"""What is measured on a forwarder between the lab's ports, and how.

measure_once() starts one forwarder (forwarders.start), runs the generator for --warmup and
then a rate window of --seconds, and, on the same forwarder process, as asked:

    rate window   forwarded (sink) and offered (generator) frames/s, frames into <P>p0,
                  every core's busy %, the switch process's CPU, other processes' load
    --storm       (pyxsw) a window under an RPC storm (rpc_rate.py --storm), then one with a
                  CPU hog on the same cores instead (the control): ratios to the quiet window
    --fdb-sizes   (pyxsw) the generator cycles through N source MACs; the FDB's entries after
    --idle        S seconds without traffic: the switch's CPU and the cores' busy %
    --latency     N UDP ping-pongs gen0 -> sink0 -> gen0 through the switch: percentiles

pyxsw with the fast path (--fastpath, --fastpath-modes): the rate window starts only once
the switch's XDP program forwards the generator's frames itself (its "fastpath" counters of
<P>p0 grow), and the row says which share of the frames it forwarded in the kernel.

run_system() repeats it --runs times and keeps the median run; run_all() runs every system
of --only (pyxsw once per --modes entry, then once per --fastpath-modes entry), then the
--fdb-sizes runs.
"""
import contextlib
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import forwarders
from benchlab import Unavailable, sh, stop_process

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


# ----------------------------------------------------------------------------------------
# Samples: every counter a window needs, read at one instant
# ----------------------------------------------------------------------------------------
def sample(lab):
    """The time, the sink's and the generator's frame counts, frames into <P>p0, the
    forwarder's CPU ticks, every core's busy and total jiffies, other processes' ticks."""
    pid = lab.fwd_pid()
    return {"t": time.monotonic(), "sink": lab.sink_frames(),
            "proc": proc_ticks(pid) if pid else None,
            "gen": lab.gen_frames(),
            "p0": port_rx_frames(lab.p0), "cpu": cpu_times(),
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
# Windows: what two samples make
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


def percentile(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q / 100 * (len(xs) - 1))))] if xs else None


def latency_hist(rtts):
    """Every RTT rounded to 1 us, as {us: count}: small, and enough to plot a distribution."""
    h = {}
    for x in rtts:
        h[int(x)] = h.get(int(x), 0) + 1
    return h


# ----------------------------------------------------------------------------------------
# pyxsw's own view (through its management socket), and the storm with its control
# ----------------------------------------------------------------------------------------
def pyxsw_client(lab):
    """A client of the switch under test's management socket."""
    sys.path.insert(0, str(REPO))
    from pyxsw.client import Client
    return Client(str(lab.tmp / "sw.sock"), timeout=10)


def pyxsw_fdb_entries(lab):
    with pyxsw_client(lab) as c:
        return c.status().get("fdb", {}).get("entries")


def pyxsw_losses(lab):
    """pyxsw's own loss counters, summed over its ports: where frames went missing."""
    with pyxsw_client(lab) as c:
        st = c.port_stats()
    keys = ("rx_packets", "tx_packets", "tx_dropped")
    xkeys = ("rx_dropped", "rx_ring_full", "rx_fill_ring_empty_descs")
    out = {k: sum(p[k] for p in st.values()) for k in keys}
    out.update({f"xdp_{k}": sum(p["xdp"].get(k, 0) for p in st.values()) for k in xkeys})
    return out


def pyxsw_workers(lab):
    """worker.stats of the switch under test (one record per worker)."""
    with pyxsw_client(lab) as c:
        return c.worker_stats()


def pyxsw_port_stats(lab):
    """port.stats of the switch under test: {port: stats}."""
    with pyxsw_client(lab) as c:
        return c.port_stats()


def fastpath_share(st0, st1, port, direction="rx"):
    """What the fast path did at `port` between two port.stats: its frames (the "fastpath"
    map's <direction>_packets), the port's frames either way (they count both paths), and
    the share, None when the port saw no frame."""
    key = f"{direction}_packets"
    fast = st1[port]["fastpath"][key] - st0[port]["fastpath"][key]
    total = st1[port][key] - st0[port][key]
    return {"fastpath_packets": fast, "packets": total,
            "share": round(fast / total, 4) if total else None}


def wait_fastpath(lab, timeout):
    """Wait until the switch's XDP program forwards the generator's frames itself (<P>p0's
    fastpath rx_packets grow), or raise Unavailable saying why not, from the switch's own
    view: which ports are fast-path targets and which of the two MACs are in the kernel
    FDB.  The switch decides which ports are targets (the kernel tells it which devices take
    XDP-redirected frames); the bench never tells it."""
    first = pyxsw_port_stats(lab)[lab.p0]["fastpath"]["rx_packets"]
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        time.sleep(0.05)
        if pyxsw_port_stats(lab)[lab.p0]["fastpath"]["rx_packets"] > first:
            return
    with pyxsw_client(lab) as c:
        ports = {p["name"]: p for p in c.status()["ports"]}
        fdb = {(e["mac"], e["port"]): e for e in c.fdb_list()}
    why = []
    for port in (lab.p0, lab.p1):
        p = ports.get(port, {})
        why.append(f"{port} " + ("a target" if p.get("fastpath_target") else
                                 f"not a target ({p.get('fastpath_reason', '?')})"))
    for mac, port, who in ((lab.gen_mac, lab.p0, "generator"), (lab.sink_mac, lab.p1, "sink")):
        e = fdb.get((mac, port))
        why.append(f"{who}'s MAC on {port}: " + ("not learned" if e is None else
                                                 "in the kernel FDB" if e.get("kernel")
                                                 else "not in the kernel FDB"))
    raise Unavailable(f"the fast path did not engage within {timeout:g} s: " + "; ".join(why))


def worker_rates(w0, w1, forwarded):
    """How the workers went about a window, from worker.stats before and after it: per
    forwarded frame and per pass.  The evidence for how the loop paces the kernel's work."""
    d = {k: sum(b[k] - a[k] for a, b in zip(w0, w1))
         for k in ("loops", "idle_loops", "wakeups", "rx_kicks", "tx_kicks", "frames_from_rx",
                   "frames_to_tx", "frames_to_fill", "frames_from_completion")}
    busy = d["loops"] - d["idle_loops"]
    per = (lambda x, y: round(x / y, 3) if y else None)
    return {**d, "busy_passes": busy,
            "rx_frames_per_busy_pass": per(d["frames_from_rx"], busy),
            "tx_frames_per_kick": per(d["frames_to_tx"], d["tx_kicks"]),
            "rx_kicks_per_frame": per(d["rx_kicks"], d["frames_from_rx"]),
            "passes_per_frame": per(d["loops"], d["frames_from_rx"]),
            "fill_frames_per_pass": per(d["frames_to_fill"], d["loops"]),
            "forwarded_per_tx": per(forwarded, d["frames_to_tx"])}


def start_burn(lab, seconds):
    """The storm's control: one process spinning on the same cores as the storm's client,
    making no RPC.  A rate that falls as much under it as under the storm was lost to the
    shared generator core, not to the management plane."""
    return subprocess.Popen(["taskset", "-c", lab.spare_cores(), sys.executable, "-c",
                             f"import time\ne = time.monotonic() + {seconds:.1f}\n"
                             "while time.monotonic() < e: pass"],
                            stdin=subprocess.DEVNULL, start_new_session=True)


def start_storm(lab, seconds):
    """perf/rpc_rate.py --storm against the switch's socket, on the generator's cores (the
    switch's management thread is off the worker cores too): 4 clients, 8 calls in flight."""
    log = open(lab.tmp / "storm.log", "w")
    with log:
        return subprocess.Popen(["taskset", "-c", lab.spare_cores(), sys.executable,
                                 HERE / "rpc_rate.py",
                                 "-s", lab.tmp / "sw.sock", "--storm", f"{seconds:.1f}",
                                 *(["--calls", lab.args.storm_calls]
                                   if lab.args.storm_calls else [])],
                                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)


# ----------------------------------------------------------------------------------------
# One measurement: a forwarder started, the windows, the forwarder stopped
# ----------------------------------------------------------------------------------------
def measure_once(lab, system, mode, undo, fdb_macs=0, ports=2, fastpath=False):
    """Start a forwarder, drive it for warmup + seconds, return its rates.  Then, as asked:
    for pyxsw a second window under an RPC storm (--storm), an idle window (--idle), the
    latency ping-pong (--latency).  pyxsw with `fastpath`: the window starts once the fast
    path forwards (else Unavailable), and the row has its share of the window's frames."""
    a = lab.args
    fastpath = fastpath and system == "pyxsw"
    name = {"system": system, "mode": mode, **({"fastpath": True} if fastpath else {})}
    storm = a.storm and system == "pyxsw" and not fdb_macs
    mark = undo.mark()
    lab.forwarder, lab.forwarder_pid = None, None   # set by spawn() / start_ovs()
    extra = {}
    try:
        lab.load(macs=fdb_macs)
        forwarders.start(system, lab, undo, mode, fdb_macs, ports, fastpath)
        lab.announce()
        gens = lab.start_generators(a.warmup + a.seconds * (3 if storm else 1)
                                    + (3 if storm else 0) + 1)
        started = time.monotonic()
        for g in gens:
            undo.push("generator", stop_process, g)
        if fastpath:
            # The probe and the sink's ARPs made both MACs known: the generator's first
            # frames take the AF_XDP path only until the kernel FDB has them.
            wait_fastpath(lab, max(a.warmup, 1.0))
        time.sleep(max(0.0, started + a.warmup - time.monotonic()))
        f0 = pyxsw_port_stats(lab) if fastpath else None
        w0 = pyxsw_workers(lab) if system == "pyxsw" else None
        s0 = sample(lab)
        time.sleep(a.seconds)
        s1 = sample(lab)
        w1 = pyxsw_workers(lab) if system == "pyxsw" else None
        if fastpath:
            f1 = pyxsw_port_stats(lab)
            extra["fastpath_frames"] = {"ingress": fastpath_share(f0, f1, lab.p0, "rx"),
                                 "egress": fastpath_share(f0, f1, lab.p1, "tx")}
        if storm:
            extra.update(storm_windows(lab, undo, a.seconds))
        if lab.forwarder and lab.forwarder.poll() is not None:
            raise Unavailable(f"exited with status {lab.forwarder.returncode} while measured")
        for g in gens:
            if g.wait() != 0:
                raise RuntimeError(f"generator exited with status {g.returncode}")
        if fdb_macs:
            extra["fdb_entries"] = pyxsw_fdb_entries(lab)
        if a.idle and not fdb_macs:
            extra["idle"] = idle_window(lab, a.idle)
        if a.latency and not fdb_macs:
            f0 = pyxsw_port_stats(lab) if fastpath else None
            extra["latency_us"] = latency(lab, a.latency, system)
            if fastpath and extra["latency_us"].get("n"):
                # both ways: gen0 -> sink0 enters at p0, the answer at p1
                f1 = pyxsw_port_stats(lab)
                both = [fastpath_share(f0, f1, p) for p in (lab.p0, lab.p1)]
                fast, total = (sum(x[k] for x in both) for k in ("fastpath_packets", "packets"))
                extra["latency_us"]["fastpath_share"] = round(fast / total, 4) if total else None
    except (Unavailable, RuntimeError, OSError, subprocess.TimeoutExpired) as e:
        # one system failing spoils no other
        return {**name, "available": False, "reason": str(e),
                **({"fdb_macs": fdb_macs} if fdb_macs else {})}
    finally:
        undo.unwind(mark)
    r = {**name, "available": True, **window_rates(s0, s1), **extra}
    if w0 and w1:
        r["workers"] = worker_rates(w0, w1, s1["sink"] - s0["sink"])
    if ports != 2:
        r["ports"] = ports
    if storm and r["forwarded_pps"]:
        r["storm_ratio"] = r["storm"]["forwarded_pps"] / r["forwarded_pps"]
        r["burn_ratio"] = r["burn"]["forwarded_pps"] / r["forwarded_pps"]
    if fdb_macs:
        r["fdb_macs"] = fdb_macs
    return r


def storm_windows(lab, undo, seconds):
    """After the quiet window, the generator still running: a window under an RPC storm, with
    the switch's threads' CPU and its loss counters, then a window under a CPU hog on the
    same cores (the control).  {"storm": ..., "burn": ...}."""
    extra = {}
    st = start_storm(lab, seconds + 1.0)
    undo.push("storm", stop_process, st)
    time.sleep(0.5)
    s2, t2, l2 = sample(lab), thread_ticks(lab.fwd_pid()), pyxsw_losses(lab)
    time.sleep(seconds)
    s3, t3, l3 = sample(lab), thread_ticks(lab.fwd_pid()), pyxsw_losses(lab)
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
    burn = start_burn(lab, seconds + 1.0)
    undo.push("burn", stop_process, burn)
    time.sleep(0.5)
    s4 = sample(lab)
    time.sleep(seconds)
    s5 = sample(lab)
    burn.wait(30)
    extra["burn"] = window_rates(s4, s5)
    return extra


def idle_window(lab, seconds):
    """`seconds` without traffic, 1 s after it stopped: the switch's CPU, the cores' busy %."""
    time.sleep(1.0)         # let adaptive modes notice the silence
    i0 = sample(lab)
    time.sleep(seconds)
    i1 = sample(lab)
    w = window_rates(i0, i1)
    return {"switch_cpu_pct": w["switch_cpu_pct"],
            "cpu_busy_pct": w["cpu_busy_pct"], "window_s": w["window_s"],
            "other_load_pct": w["other_load_pct"]}


def latency(lab, count, system):
    """`count` ping-pongs through the forwarder: percentiles and the distribution, in us."""
    try:
        rtts, lost = lab.ping_pong(count)
        return {"n": len(rtts), "lost": lost,
                "p50": percentile(rtts, 50),
                "p99": percentile(rtts, 99),
                "max": max(rtts) if rtts else None,
                "hist": latency_hist(rtts)}
    except (Unavailable, OSError) as e:     # the rate still stands
        print(f"{system}: latency not measured: {e}", flush=True)
        return {"n": 0, "error": str(e)}


def run_system(lab, system, mode, undo, fdb_macs=0, ports=2, fastpath=False):
    """--runs measurements of one system; the one with the median forwarded rate stands for
    it, the others are kept in "runs"."""
    runs = []
    for i in range(lab.args.runs):
        r = measure_once(lab, system, mode, undo, fdb_macs, ports, fastpath)
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


def run_all(lab, undo, a):
    """Every system of --only, pyxsw once per --modes entry (with the fast path if
    --fastpath) and then once per --fastpath-modes entry (with it), then pyxsw (first of
    --modes) with each of --fdb-sizes learned MACs, then with each of --ports: the results in
    that order."""
    results = []
    fp = ", fastpath" if a.fastpath else ""
    for system in a.only:
        variants = [(None, False)]
        if system == "pyxsw":
            variants = [(m, a.fastpath) for m in a.modes]
            variants += [(m, True) for m in a.fastpath_modes if (m, True) not in variants]
        for mode, fastpath in variants:
            what = ", ".join(x for x in (mode, "fastpath" if fastpath else None) if x)
            print(f"fwd_rate: {system}{f' ({what})' if what else ''} ...", flush=True)
            r = run_system(lab, system, mode, undo, fastpath=fastpath)
            if not r["available"]:
                print(f"{system}: not available: {r['reason']}", flush=True)
            results.append(r)
    for n in a.fdb_sizes if "pyxsw" in a.only else []:
        mode = a.modes[0]
        print(f"fwd_rate: pyxsw ({mode}{fp}), {n} learned MACs ...", flush=True)
        r = run_system(lab, "pyxsw", mode, undo, fdb_macs=n, fastpath=a.fastpath)
        if not r["available"]:
            print(f"pyxsw: not available: {r['reason']}", flush=True)
        results.append(r)
    if a.ports and "pyxsw" in a.only:
        lab.idle_ports(max(a.ports) - 2)   # made once, outside any one measurement's undo
    for n in a.ports if "pyxsw" in a.only else []:
        for mode in a.modes:
            print(f"fwd_rate: pyxsw ({mode}{fp}), {n} ports ({n - 2} idle) ...", flush=True)
            r = run_system(lab, "pyxsw", mode, undo, ports=n, fastpath=a.fastpath)
            if not r["available"]:
                print(f"pyxsw: not available: {r['reason']}", flush=True)
            results.append(r)
    return results
