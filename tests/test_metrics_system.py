"""The metrics endpoint of a real switch (`pyxsw run` with [metrics] listen) over a lab:
traffic sent, then /metrics scraped between two port.stats RPCs must show what they show;
`pyxsw ctl port stats --rate` sees the traffic while it flows; the listener goes with the
switch."""
import http.client
import json
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from helpers import BCAST, eth_frame, link_flags, ping, send, stderr_of
from pyxsw.client import Client
from pyxsw.counters import FASTPATH, PORT, PROG, QUEUE
from pyxsw.mgmt.metrics import metric_name

pytestmark = pytest.mark.system
ROOT = Path(__file__).resolve().parent.parent


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scrape(port):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        c.request("GET", "/metrics")
        r = c.getresponse()
        assert r.status == 200
        return {(s.name, tuple(sorted(s.labels.items()))): s.value
                for f in text_string_to_metric_families(r.read().decode()) for s in f.samples}
    finally:
        c.close()


@pytest.mark.parametrize("fastpath", ["off", "xdp"])
def test_metrics_match_port_stats_on_a_lab(lab_factory, tmp_path, fastpath):
    """With the fast path on, pings between learned hosts go through the kernel: their
    frames are in the port counters and the fastpath family alike."""
    lab = lab_factory(hosts=3)
    port = free_port()
    sock = tmp_path / "sw.sock"
    conf = tmp_path / "sw.toml"
    conf.write_text(f'[switch]\nname = "m1"\ncores = [1]\nfastpath = "{fastpath}"\n'
                    f'[management]\nsocket = "{sock}"\n'
                    f'[metrics]\nlisten = "127.0.0.1:{port}"\n'
                    + "".join(f'[[port]]\nname = "{p}"\n' for p in lab.ports))
    proc = subprocess.Popen([sys.executable, "-m", "pyxsw", "run", "-c", str(conf)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 20
        while not ping(lab, 0, 1):
            assert proc.poll() is None and time.monotonic() < deadline, stderr_of(proc)
        # traffic while a script watches the rates
        h = lab.hosts
        sender = threading.Thread(target=send, args=(lab, 0, eth_frame(BCAST, h[0].mac,
                                                                       b"x" * 100),
                                                     3000, 0.0005))
        sender.start()
        r = subprocess.run([sys.executable, "-m", "pyxsw", "ctl", "-s", str(sock), "--json",
                            "port", "stats", "--rate", "--interval", "0.5"],
                           capture_output=True, text=True, timeout=30)
        sender.join()
        assert r.returncode == 0, r.stderr
        rates = json.loads(r.stdout)["ports"]
        assert rates[lab.ports[0]]["rx_packets"] > 100, rates       # broadcasts from h0
        assert rates[lab.ports[1]]["tx_packets"] > 100, rates       # flooded to the others
        assert ping(lab, 1, 2) and ping(lab, 2, 0)
        assert ping(lab, 0, 1, count=10) and ping(lab, 1, 0, count=10)   # learned: unicast
        time.sleep(0.5)                                             # the last frames placed
        with Client(str(sock)) as c:
            before = c.call("port.stats")
            got = scrape(port)
            after = c.call("port.stats")
            status = c.call("status")
        checked = 0
        for name in lab.ports:
            assert got[("pyxsw_port_up", (("port", name),))] == 1
            for fam, where in ((PORT, lambda s: s), (PROG, lambda s: s["xdp"]),
                               (FASTPATH, lambda s: s["fastpath"])):
                for k in fam.counters:
                    v = got[(metric_name(fam, k), (("port", name),))]
                    lo, hi = where(before[name])[k.name], where(after[name])[k.name]
                    assert lo <= v <= hi, (name, k.name, lo, v, hi)
                    checked += 1
            for q in before[name]["queues"]:
                for k in QUEUE.counters:
                    v = got[(metric_name(QUEUE, k), (("port", name), ("queue", str(q["queue"]))))]
                    assert v >= q[k.name]
        # the traffic is in it, and at rest the figures are the same as the RPC's
        assert before[lab.ports[0]]["rx_packets"] >= 3000
        assert got[("pyxsw_port_rx_packets_total", (("port", lab.ports[0]),))] == \
            after[lab.ports[0]]["rx_packets"]
        assert got[("pyxsw_fdb_entries", ())] == status["fdb"]["entries"] == 3
        assert got[("pyxsw_info", (("name", "m1"), ("version", status["version"])))] == 1
        fast = got[("pyxsw_fastpath_rx_packets_total", (("port", lab.ports[0]),))]
        assert (fast >= 10) if fastpath == "xdp" else (fast == 0), fast
        assert checked == 3 * (len(PORT.counters) + len(PROG.counters) + len(FASTPATH.counters))
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0, stderr_of(proc)
        with socket.socket() as s:                      # the listener went with the switch
            assert s.connect_ex(("127.0.0.1", port)) != 0
        assert f"metrics on http://127.0.0.1:{port}/metrics" in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_metrics_address_in_use_refuses_before_touching_a_port(lab_factory, tmp_path):
    lab = lab_factory(hosts=2)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        conf = tmp_path / "sw.toml"
        conf.write_text(f'[switch]\ncores = [1]\n[management]\nsocket = "{tmp_path}/s.sock"\n'
                        f'[metrics]\nlisten = "127.0.0.1:{port}"\n'
                        + "".join(f'[[port]]\nname = "{p}"\n' for p in lab.ports))
        r = subprocess.run([sys.executable, "-m", "pyxsw", "run", "-c", str(conf)], cwd=ROOT,
                           capture_output=True, text=True, timeout=60)
    assert r.returncode == 75                           # in use: retried by systemd
    assert r.stderr.splitlines()[-1] == (f"{conf}: metrics.listen: cannot listen on "
                                         f"127.0.0.1:{port}: Address already in use")
    assert not (tmp_path / "s.sock").exists()
    assert not any(link_flags(p)[1] for p in lab.ports)  # no XDP program was attached
