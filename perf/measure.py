"""What is measured on a forwarder between the lab's ports, and how.

Every row (a system, and for pyxsw a mode, with the fast path or not, and the scaling
variants: more ports, more learned MACs, an 802.1Q trunk) is measured --rounds times, the
rounds interleaved by run_all (round 1 of every row, then round 2, ...), so that the
machine's slow minutes fall on every row alike and two rows' round i can be compared as a
pair.  One round of a row, measure_once(), starts the forwarder once and then, on that same
process:

    mfr        maximum forwarding rate (RFC 2889): the generator unpaced, several times
               overload; forwarded and offered frames/s, the cores' busy %, the switch's CPU
    storm      (pyxsw) a window under an RPC storm, one under a CPU hog (the control), and
               one per --storm-methods method alone: ratios to the quiet window
    ndr        no-drop rate (RFC 2544 throughput): a search over paced trials for the highest
               offered rate that loses at most --loss-tolerance percent of its frames
    sweep      at --sweep percentages of that round's NDR: CPU per core and per thread,
               worker wake-ups, round-trip latency percentiles of a UDP ping-pong riding
               on the load
    idle       --idle seconds without traffic: the switch's CPU
    sizes      every --size after the first: mfr and ndr again with those frames

pyxsw with the fast path (--fastpath, --fastpath-modes): the windows start only once the
switch's XDP program forwards the generator's frames itself (its "fastpath" counters of
<P>p0 grow), and the mfr window says which share of the frames it forwarded in the kernel.
stats() then sums up every figure of a row's rounds as min, median and max.
"""
import contextlib
import os
import re
import subprocess
import sys
import time
import traceback
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
    forwarder's CPU ticks, every core's busy and total jiffies, other processes' ticks (and
    which cores are the forwarder's)."""
    pid = lab.fwd_pid()
    return {"t": time.monotonic(), "sink": lab.sink_frames(),
            "proc": proc_ticks(pid) if pid else None,
            "gen": lab.gen_frames(),
            "p0": port_rx_frames(lab.p0), "cpu": cpu_times(),
            "other": other_ticks(exclude=pid), "fwd_cores": lab.args.fwd_cores}


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


def thread_cpu(t0, t1, dt):
    """Between two thread_ticks() `dt` s apart: {"comm/tid": {cpu_pct (% of a core),
    on_cpu (the CPU it last ran on)}} of the threads alive at both."""
    hz = os.sysconf("SC_CLK_TCK")
    return {f"{t1[k][0]}/{k}": {"cpu_pct": round(100 * (t1[k][1] - t0[k][1]) / hz / dt, 1),
                                "on_cpu": t1[k][2]} for k in t1 if k in t0}


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
    fwd = [busy[c] for c in s0.get("fwd_cores", ()) if c in busy]
    return {"forwarded_pps": rate["sink"], "offered_pps": rate["gen"],
            "into_port_pps": rate["p0"],
            "fwd_core_busy_pct": round(sum(fwd) / len(fwd), 1) if fwd else None,
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
    if str(REPO) not in sys.path:
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
    d = {k: sum(b.get(k, 0) - a.get(k, 0) for a, b in zip(w0, w1))
         for k in ("loops", "idle_loops", "wakeups", "rx_kicks", "tx_kicks", "frames_from_rx",
                   "frames_to_tx", "frames_to_fill", "frames_from_completion", "cycles",
                   "busy_cycles", "captured", "capture_lost", "mirrored")}
    busy = d["loops"] - d["idle_loops"]
    per = (lambda x, y: round(x / y, 3) if y else None)
    return {**d, "busy_passes": busy,
            "rx_frames_per_busy_pass": per(d["frames_from_rx"], busy),
            "tx_frames_per_kick": per(d["frames_to_tx"], d["tx_kicks"]),
            "rx_kicks_per_frame": per(d["rx_kicks"], d["frames_from_rx"]),
            "passes_per_frame": per(d["loops"], d["frames_from_rx"]),
            "fill_frames_per_pass": per(d["frames_to_fill"], d["loops"]),
            "forwarded_per_tx": per(forwarded, d["frames_to_tx"]),
            # the share of the workers' time in passes that found frames (the TSC)
            "busy_time_share": per(d["busy_cycles"], d["cycles"])}


def start_burn(lab, seconds):
    """The storm's control: one process spinning on the same cores as the storm's client,
    making no RPC.  A rate that falls as much under it as under the storm was lost to the
    shared generator core, not to the management plane."""
    return subprocess.Popen(["taskset", "-c", lab.spare_cores(), sys.executable, "-c",
                             f"import time\ne = time.monotonic() + {seconds:.1f}\n"
                             "while time.monotonic() < e: pass"],
                            stdin=subprocess.DEVNULL, start_new_session=True)


def start_storm(lab, seconds, calls=None):
    """perf/rpc_rate.py --storm against the switch's socket, on the generator's cores (the
    switch's management thread is off the worker cores too): 4 clients, 8 calls in flight,
    cycling through `calls` (default: --storm-calls, else rpc_rate.py's four)."""
    calls = calls or lab.args.storm_calls
    log = open(lab.tmp / "storm.log", "w")
    with log:
        return subprocess.Popen(["taskset", "-c", lab.spare_cores(), sys.executable,
                                 HERE / "rpc_rate.py",
                                 "-s", lab.tmp / "sw.sock", "--storm", f"{seconds:.1f}",
                                 *(["--calls", calls] if calls else [])],
                                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)




def storm_windows(lab, undo, seconds, quiet_pps):
    """The generator unpaced, after the quiet mfr window: a window under an RPC storm, with
    the switch's threads' CPU and its loss counters, then one under a CPU hog on the same
    cores (the control), then one per --storm-methods method, storming with it alone.
    Ratios are to the quiet window's forwarded rate."""
    def window(proc):
        undo.push("storm", stop_process, proc)
        time.sleep(0.5)
        s0, t0, l0 = sample(lab), thread_ticks(lab.fwd_pid()), pyxsw_losses(lab)
        time.sleep(seconds)
        s1, t1, l1 = sample(lab), thread_ticks(lab.fwd_pid()), pyxsw_losses(lab)
        proc.wait(30)
        w = window_rates(s0, s1)
        dt = s1["t"] - s0["t"]
        w["switch_counters"] = {k: l1[k] - l0[k] for k in l1}
        w["threads"] = thread_cpu(t0, t1, dt)
        return w

    def rpcs():
        out = (lab.tmp / "storm.log").read_text(errors="replace")
        m = re.search(r": (\d+) RPCs/s", out)
        return (int(m.group(1)), None) if m else (None, out.strip()[-300:])

    extra = {"storm": window(start_storm(lab, seconds + 1.0))}
    extra["storm"]["rpc_per_s"], err = rpcs()
    if err:
        extra["storm"]["error"] = err
    extra["burn"] = window(start_burn(lab, seconds + 1.0))
    for k in ("storm", "burn"):
        extra[f"{k}_ratio"] = (extra[k]["forwarded_pps"] / quiet_pps) if quiet_pps else None
    methods = lab.args.storm_methods if lab.row.get("mode") == lab.args.modes[0] else []
    if methods:
        extra["storm_by_method"] = {}
        for m in methods:
            w = window(start_storm(lab, seconds + 1.0, calls=m))
            rate, err = rpcs()
            extra["storm_by_method"][m] = {
                "ratio": w["forwarded_pps"] / quiet_pps if quiet_pps else None,
                "rpc_per_s": rate, "forwarded_pps": w["forwarded_pps"],
                **({"error": err} if err else {})}
    return extra


def idle_window(lab, seconds):
    """`seconds` without traffic, 1 s after it stopped: the switch's CPU, the cores' busy %."""
    lab.load(paused=True)
    time.sleep(1.0)         # let adaptive modes notice the silence
    i0 = sample(lab)
    time.sleep(seconds)
    i1 = sample(lab)
    w = window_rates(i0, i1)
    return {k: w[k] for k in ("switch_cpu_pct", "cpu_busy_pct", "fwd_core_busy_pct",
                              "window_s", "other_load_pct")}


# ----------------------------------------------------------------------------------------
# The no-drop rate: trials at a paced rate, and the search over them
# ----------------------------------------------------------------------------------------
def settle(lab, quiet=0.03, limit=1.0):
    """With the generator paused, wait until the sink's count stops moving (unchanged for
    `quiet` s, at most `limit` s): every frame still in the rings has arrived.  Before a
    trial this keeps the overload window's backlog out of its count; after it, the trial's
    last frames in."""
    end = time.monotonic() + limit
    last = lab.sink_frames()
    while time.monotonic() < end:
        time.sleep(quiet)
        now = lab.sink_frames()
        if now == last:
            return
        last = now


def trial(lab, pps, seconds, attempts=2):
    """One RFC 2544 trial from a quiet forwarder: the generator paused and the sink settled,
    then `pps` frames/s for `seconds`, paused, settled again.  Lost = sent (the generator's
    count of frames it transmitted) - received (the sink's).  More received than sent means
    frames from before the trial were counted: the trial is repeated, and if it happens
    again it counts as failed ("excess")."""
    for _ in range(attempts):
        lab.load(paused=True)
        settle(lab)
        s0 = sample(lab)
        t0 = time.monotonic()
        lab.load(pps)
        time.sleep(seconds)
        lab.load(paused=True)
        dt = time.monotonic() - t0
        settle(lab)
        s1 = sample(lab)
        sent, got = s1["gen"] - s0["gen"], s1["sink"] - s0["sink"]
        if got <= sent:
            break
    loss = 100 * (sent - got) / sent if sent else None
    return {"target_pps": round(pps), "offered_pps": sent / dt, "forwarded_pps": got / dt,
            "sent": sent, "lost": max(0, sent - got), "excess": max(0, got - sent),
            "loss_pct": loss,
            "passed": bool(sent) and got <= sent and loss <= lab.args.loss_tolerance,
            "other_load_pct": window_rates(s0, s1)["other_load_pct"]}


def ndr_search(lab, mfr_pps, size, hint=None, resolution=None):
    """The highest offered rate at which the forwarder loses at most --loss-tolerance percent
    of the frames (RFC 2544 throughput), by trials of --trial seconds.  The first trial is at
    `hint` (the row's no-drop rate in an earlier round) or else at 0.9x the maximum
    forwarding rate; from there up by 1.25x while trials pass, or halved while they fail
    (the rate can be far below the overload rate), the first step from a hint 1.1x only;
    then bisection until the bracket is within `resolution` (default --resolution) of its
    top ("converged"), or --max-trials.  The figure is the measured offered rate of the best
    passing trial (a paced generator can fall a little short of its target), flagged
    generator-bound when it fell short by more than 3%."""
    a = lab.args
    resolution = resolution or a.resolution
    trials, lo, hi, best = [], 0.0, None, None
    target = hint or 0.9 * mfr_pps
    for _ in range(a.max_trials):
        if target < 1000:
            break
        t = trial(lab, target, a.trial)
        trials.append(t)
        if t["passed"]:
            if best is None or t["offered_pps"] > best["offered_pps"]:
                best = t
            lo = max(lo, target)
            if t["offered_pps"] < 0.97 * target:
                break                   # the generator gives no more: the NDR is at least this
        else:
            hi = target if hi is None else min(hi, target)
        first = hint and len(trials) == 1      # a hint's first step is a small one
        if hi is None:                          # every trial passed: up
            target *= 1.1 if first else 1.25
        elif not lo:                            # every trial failed: down
            target /= 1.1 if first else 2
        elif hi - lo <= resolution * hi:
            break
        else:
            target = (lo + hi) / 2
    pps = best["offered_pps"] if best else None
    gen_bound = bool(best and best["offered_pps"] < 0.97 * best["target_pps"])
    return {"pps": pps, "gbps": gbps(pps, size), "trials": trials,
            "converged": gen_bound or (hi is not None and lo > 0
                                       and hi - lo <= resolution * hi),
            "generator_bound": gen_bound,
            "loss_tolerance_pct": a.loss_tolerance,
            **({} if best else {"below_pps": min((t["target_pps"] for t in trials), default=None)})}


def gbps(pps, size):
    """Frames/s of `size`-byte frames (FCS counted, as RFC 2544 sizes them) in Gb/s."""
    return round(pps * size * 8 / 1e9, 3) if pps else None


# ----------------------------------------------------------------------------------------
# The load sweep: CPU, wake-ups and latency at a fraction of the no-drop rate
# ----------------------------------------------------------------------------------------
STEP_S = 1.0        # a sweep step's CPU window


def sweep_step(lab, pct, ndr_pps, system):
    """The generator at `pct`% of the NDR: after 0.2 s, a STEP_S window for the cores' and
    the switch's CPU, each of its threads', and pyxsw's worker wake-ups; then --latency
    ping-pongs riding on the same load for the round-trip percentiles.  (Apart, because a
    ping-pong every 250 us is traffic with a host stack at each end: it would add its own
    CPU to a low load's.)"""
    target = ndr_pps * pct / 100
    lab.load(target)
    time.sleep(0.2)
    pid = lab.fwd_pid()
    s0, t0 = sample(lab), thread_ticks(pid) if pid else {}
    w0 = pyxsw_workers(lab) if system == "pyxsw" else None
    time.sleep(STEP_S)
    s1, t1 = sample(lab), thread_ticks(pid) if pid else {}
    w1 = pyxsw_workers(lab) if system == "pyxsw" else None
    w = window_rates(s0, s1)
    dt = s1["t"] - s0["t"]
    step = {"pct": pct, "target_pps": round(target), **w,
            # % of one core per Mpps: the forwarder cores' busy % summed
            "cpu_per_mpps": (round(w["fwd_core_busy_pct"] * len(lab.args.fwd_cores)
                                   / (w["forwarded_pps"] / 1e6), 1)
                             if w["fwd_core_busy_pct"] is not None and w["forwarded_pps"]
                             else None),
            "wakeups_per_s": (round(sum(b["wakeups"] - a["wakeups"] for a, b in zip(w0, w1))
                                    / dt) if w0 and w1 else None)}
    if t0:
        step["threads"] = thread_cpu(t0, t1, dt)
    if lab.args.latency:
        s2 = sample(lab)
        step["latency_us"] = latency(lab, lab.args.latency, system)
        # the load the ping-pongs rode on (it should be the step's)
        step["latency_us"]["offered_pps"] = window_rates(s2, sample(lab))["offered_pps"]
    return step


PING_TIMEOUT_US = 100_000      # BenchLab.ping_pong waits 100 ms for an answer


def latency(lab, count, system):
    """`count` ping-pongs through the forwarder: round-trip percentiles and the distribution,
    in microseconds; a ping-pong without an answer counts as the 100 ms it was waited for."""
    try:
        rtts, lost = lab.ping_pong(count)
        rtts += [PING_TIMEOUT_US] * lost        # no answer: at least the timeout
        return {"kind": "round trip", "n": len(rtts), "lost": lost,
                "p50": percentile(rtts, 50), "p99": percentile(rtts, 99),
                "p999": percentile(rtts, 99.9), "max": max(rtts) if rtts else None,
                "hist": latency_hist(rtts)}
    except (Unavailable, OSError) as e:     # the rates still stand
        print(f"{system}: latency not measured: {e}", flush=True)
        return {"kind": "round trip", "n": 0, "error": str(e)}


# ----------------------------------------------------------------------------------------
# One round of one row: a forwarder started, every measurement, the forwarder stopped
# ----------------------------------------------------------------------------------------
def plain(row):
    """A row of the main comparison (not a scaling variant)."""
    return not (row.get("ports") or row.get("fdb_macs") or row.get("vlan_trunk")
                or row.get("ops"))


def mfr_window(lab, row):
    """The generator unpaced (overload) for --warmup, then a --seconds window: the maximum
    forwarding rate, and for pyxsw how its workers went about it and the fast path's share."""
    a, pyxsw, fast = lab.args, row["system"] == "pyxsw", row.get("fastpath")
    started = time.monotonic()
    lab.load()
    if fast:
        # The probe and the sink's ARPs made both MACs known: the generator's first frames
        # take the AF_XDP path only until the kernel FDB has them.
        wait_fastpath(lab, max(a.warmup, 1.0))
    time.sleep(max(0.0, started + a.warmup - time.monotonic()))
    f0 = pyxsw_port_stats(lab) if fast else None
    w0 = pyxsw_workers(lab) if pyxsw else None
    s0 = sample(lab)
    time.sleep(a.seconds)
    s1 = sample(lab)
    r = window_rates(s0, s1)
    r["gbps"] = gbps(r["forwarded_pps"], lab.size)
    if pyxsw:
        r["workers"] = worker_rates(w0, pyxsw_workers(lab), s1["sink"] - s0["sink"])
    if fast:
        f1 = pyxsw_port_stats(lab)
        r["fastpath_frames"] = {"ingress": fastpath_share(f0, f1, lab.p0, "rx"),
                                "egress": fastpath_share(f0, f1, lab.p1, "tx")}
    return r


def measure_once(lab, row, undo, rnd, hints=None):
    """Round `rnd` of `row`: start its forwarder, measure what the options ask (see the
    module's docstring), stop it.  `hints`: {size: the row's no-drop rate in an earlier
    round}, where the search starts.  A failure makes the round {"available": False}."""
    hints = hints or {}
    a, system = lab.args, row["system"]
    storm = a.storm and system == "pyxsw" and plain(row) and not row.get("fastpath")
    mark = undo.mark()
    lab.forwarder, lab.forwarder_pid, lab.row = None, None, row
    out = {"round": rnd}
    try:
        lab.set_size(a.size[0])
        lab.load(paused=True, macs=row.get("fdb_macs", 0))
        forwarders.start(lab, undo, row)
        if a.sweep and plain(row):
            lab.start_echo(undo)
        lab.announce()
        gens = lab.start_generators(24 * 3600)      # stopped when the round is undone
        for g in gens:
            undo.push("generator", stop_process, g)
        out["mfr"] = mfr_window(lab, row)
        if storm:
            out.update(storm_windows(lab, undo, a.seconds, out["mfr"]["forwarded_pps"]))
        if row.get("fdb_macs"):
            out["fdb_entries"] = pyxsw_fdb_entries(lab)
        if a.ndr and not row.get("fdb_macs"):
            out["ndr"] = ndr_search(lab, out["mfr"]["forwarded_pps"], lab.size,
                                    hints.get(lab.size))
        steps = (a.sweep if system in a.sweep_systems else a.sweep[:1]) if plain(row) else []
        ndr = (out.get("ndr") or {}).get("pps")
        if steps and ndr:
            out["sweep"] = [sweep_step(lab, pct, ndr, system) for pct in steps]
        lab.load(paused=True)
        if a.idle and plain(row):
            out["idle"] = idle_window(lab, a.idle)
        for size in a.size[1:] if plain(row) else []:
            for g in gens:
                stop_process(g)
            lab.set_size(size)
            gens = lab.start_generators(24 * 3600)
            for g in gens:
                undo.push("generator", stop_process, g)
            more = {"mfr": mfr_window(lab, row)}
            if a.ndr:
                # the other sizes' searches to twice the bracket: their figures are
                # the second look, and the time goes to the first size's
                more["ndr"] = ndr_search(lab, more["mfr"]["forwarded_pps"], size,
                                         hints.get(size), 2 * a.resolution)
            out.setdefault("sizes", {})[str(size)] = more
        if lab.forwarder and lab.forwarder.poll() is not None:
            raise Unavailable(f"exited with status {lab.forwarder.returncode} while measured")
        for g in gens:
            if g.poll() is not None:
                raise RuntimeError(f"generator exited with status {g.returncode}")
    except (Unavailable, RuntimeError, OSError, subprocess.TimeoutExpired) as e:
        # one system failing spoils no other
        return {"round": rnd, "available": False, "reason": str(e)}
    except Exception as e:      # noqa: BLE001 - a bug here must not lose the other rows
        traceback.print_exc()
        return {"round": rnd, "available": False, "reason": f"{type(e).__name__}: {e}"}
    finally:
        undo.unwind(mark)
    out["other_load_pct_max"] = max(other_loads(out), default=0.0)
    return out


def other_loads(x):
    """Every other_load_pct anywhere in a round: the round is flagged by the largest."""
    if isinstance(x, dict):
        for k, v in x.items():
            if k == "other_load_pct" and v is not None:
                yield v
            else:
                yield from other_loads(v)
    elif isinstance(x, list):
        for v in x:
            yield from other_loads(v)


# ----------------------------------------------------------------------------------------
# Rows, rounds and their spread
# ----------------------------------------------------------------------------------------
def label(row):
    """How a row is named in tables and plots: "pyxsw (poll, fastpath)", "pyxsw (poll, 16p)",
    "pyxsw (poll, 1000 MACs)", "pyxsw (poll, trunk)", "bridge"."""
    parts = [row.get("mode"), "fastpath" if row.get("fastpath") else None,
             "busy-poll tuning" if row.get("busy_poll_tuning") else None,
             f"{row['fdb_macs']} MACs" if row.get("fdb_macs") else None,
             f"{row['ports']}p" if row.get("ports") else None,
             "trunk" if row.get("vlan_trunk") else None,
             {"metrics": "metrics 1/s", "capture": "capture"}.get(row.get("ops"))]
    what = ", ".join(p for p in parts if p)
    return f"{row['system']} ({what})" if what else row["system"]


def rows_of(a):
    """The rows of a run, in order: every system of --only (pyxsw once per --modes entry,
    with the fast path if --fastpath, then once per --fastpath-modes entry with it; with
    --busy-poll-tuning each poll-mode row is followed by the same with [switch]
    busy_poll_tuning = true), then
    pyxsw in the first of --modes with each of --fdb-sizes learned MACs, each of --ports
    ports, with the sink's port an 802.1Q trunk (--vlan-trunk), and with each of --ops:
    metrics scraped once a second, a capture of the generator's port running."""
    rows = []
    for system in a.only:
        if system != "pyxsw":
            rows.append({"system": system, "mode": None})
            continue
        for mode, fast in ([(m, a.fastpath) for m in a.modes]
                           + [(m, True) for m in a.fastpath_modes]):
            row = {"system": "pyxsw", "mode": mode, **({"fastpath": True} if fast else {})}
            tuned = [{**row, "busy_poll_tuning": True}] \
                if mode == "poll" and getattr(a, "busy_poll_tuning", False) else []
            rows += [r for r in [row, *tuned] if r not in rows]
    if "pyxsw" in a.only:
        base = {"system": "pyxsw", "mode": a.modes[0],
                **({"fastpath": True} if a.fastpath else {})}
        rows += [{**base, "fdb_macs": n} for n in a.fdb_sizes]
        rows += [{**base, "ports": n} for n in a.ports]
        rows += [{**base, "vlan_trunk": True}] if a.vlan_trunk else []
        rows += [{**base, "ops": op} for op in getattr(a, "ops", [])]
    for r in rows:
        r["label"] = label(r)
    return rows


def leaves(x, path=""):
    """(dotted path, number) for every numeric leaf of a round's dicts (lists and the
    latency histogram are not figures); sweep steps are keyed by their percentage."""
    if isinstance(x, bool) or x is None:
        return
    if isinstance(x, (int, float)):
        yield path, x
    elif isinstance(x, dict):
        for k, v in x.items():
            if k not in ("hist", "trials", "threads", "round"):
                yield from leaves(v, f"{path}.{k}" if path else str(k))
    elif isinstance(x, list) and path == "sweep":
        for step in x:
            yield from leaves({k: v for k, v in step.items() if k != "pct"},
                              f"sweep.{step['pct']}")


def stats(rounds):
    """{path: {min, median, max, n}} of every figure over the rounds that have it."""
    vals = {}
    for r in rounds:
        for path, v in leaves(r):
            vals.setdefault(path, []).append(v)
    out = {}
    for path, xs in vals.items():
        xs = sorted(xs)
        n = len(xs)
        med = xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2
        out[path] = {"min": xs[0], "median": med, "max": xs[-1], "n": n}
    return out


def run_all(lab, undo, a):
    """Every row (rows_of) --rounds times, the rounds interleaved: round 1 of each row, then
    round 2 of each, ...  A row that fails a round is not measured again: it is reported
    "not available" with the reason, with the rounds it did finish."""
    rows = rows_of(a)
    if a.ports and "pyxsw" in a.only:
        lab.idle_ports(max(a.ports) - 2)   # made once, outside any one measurement's undo
    for row in rows:
        row.update(available=True, rounds=[])
    for rnd in range(a.rounds):
        for row in rows:
            if not row["available"]:
                continue
            print(f"fwd_rate: round {rnd + 1}/{a.rounds}: {row['label']} ...", flush=True)
            t0 = time.monotonic()
            r = measure_once(lab, {k: v for k, v in row.items() if k not in ("rounds",)},
                             undo, rnd, ndr_hints(row["rounds"], a.size))
            if r.get("available") is False:
                row.update(available=False, reason=r["reason"])
                print(f"{row['label']}: not available: {r['reason']}", flush=True)
                continue
            row["rounds"].append(r)
            print(f"  {summary_line(r)} ({time.monotonic() - t0:.0f} s)", flush=True)
    for row in rows:
        row["stats"] = stats(row["rounds"])
    return rows


def ndr_hints(rounds, sizes):
    """{size: median no-drop rate of the earlier rounds}: where a later round's search
    starts, so that it brackets the rate in a few trials instead of from the overload rate."""
    st, out = stats(rounds), {}
    for i, size in enumerate(sizes):
        got = st.get("ndr.pps" if i == 0 else f"sizes.{size}.ndr.pps")
        if got:
            out[size] = got["median"]
    return out


def summary_line(r):
    """One round's headline figures, printed as it finishes."""
    mfr, ndr = r["mfr"], r.get("ndr") or {}
    s = f"max fwd {mfr['forwarded_pps'] / 1e6:.3f} Mpps (offered {mfr['offered_pps'] / 1e6:.3f})"
    if ndr:
        s += (f", no-drop {ndr['pps'] / 1e6:.3f} Mpps" if ndr.get("pps") else
              f", no-drop below {ndr.get('below_pps', 0) / 1e6:.3f} Mpps")
        s += f" ({len(ndr['trials'])} trials)"
    for step in r.get("sweep", []):
        lt = step.get("latency_us") or {}
        if lt.get("n"):
            s += (f"\n    {step['pct']:>3}%: {step['forwarded_pps'] / 1e6:.3f} Mpps, fwd core "
                  f"{step['fwd_core_busy_pct']}%, rtt p50/p99/p99.9/max {lt['p50']:.0f}/"
                  f"{lt['p99']:.0f}/{lt['p999']:.0f}/{lt['max']:.0f} us")
    for size, more in r.get("sizes", {}).items():
        s += (f"\n    {size} B: max fwd {more['mfr']['forwarded_pps'] / 1e6:.3f} Mpps"
              + (f", no-drop {more['ndr']['pps'] / 1e6:.3f}" if (more.get("ndr") or {}).get("pps")
                 else ""))
    return s
