"""The Prometheus endpoint ([metrics] listen): what /metrics says, parsed by
prometheus_client's own text parser, and how the HTTP side treats good and bad clients.
Against the fake switch served by the management server, in-process, no root needed; the
comparison with a real switch's port.stats is test_metrics_match_port_stats_on_a_lab."""
import http.client
import socket
import subprocess
import sys
import threading
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

from test_mgmt_unit import FakeSwitch, start_server

from pyxsw import __version__
from pyxsw.counters import COUNTER, FAMILIES, GAUGE
from pyxsw.mgmt.metrics import CONTENT_TYPE, MetricsServer, exposition, metric_name
from pyxsw.mgmt.server import Server, ServerError


def families(text):
    """{name as the parser gives it (counters without _total): MetricFamily}."""
    return {f.name: f for f in text_string_to_metric_families(text)}


def samples(fams, name):
    """{frozen labels: value} of the metric `name` (as exposed, _total included)."""
    fam = fams[name.removesuffix("_total")]
    return {tuple(sorted(s.labels.items())): s.value for s in fam.samples if s.name == name}


@pytest.fixture
def served(short_dir):
    fake = FakeSwitch()
    m = MetricsServer(fake, "127.0.0.1", 0, read_timeout=0.5)
    srv, t = start_server(fake, str(short_dir / "sw.sock"), "uvloop", metrics=m)
    host, port = m.address
    yield type("Served", (), {"fake": fake, "metrics": m, "host": host, "port": port,
                              "server": srv})
    srv.request_stop()
    t.join(10)
    assert not t.is_alive()
    with socket.socket() as s:
        assert s.connect_ex((host, port)) != 0          # closed with the server


def get(served, path="/metrics", method="GET"):
    c = http.client.HTTPConnection(served.host, served.port, timeout=10)
    try:
        c.request(method, path)
        r = c.getresponse()
        return r.status, dict(r.getheaders()), r.read().decode()
    finally:
        c.close()


def raw(served, data, shut=True):
    """Send bytes as they are; the reply's status line and body."""
    with socket.create_connection((served.host, served.port), timeout=10) as s:
        s.sendall(data)
        if shut:
            s.shutdown(socket.SHUT_WR)
        reply = b""
        while chunk := s.recv(65536):
            reply += chunk
    head, _, body = reply.partition(b"\r\n\r\n")
    return head.split(b"\r\n")[0].decode(), body.decode()


# ---------------------------------------------------------------------------- the exposition

def test_every_counter_of_every_family_has_help_and_type():
    fake = FakeSwitch()
    text = exposition(fake.port_stats(), fake.worker_stats(), fake.status())
    fams = families(text)
    names = [metric_name(fam, c) for fam in FAMILIES for c in fam.counters]
    assert len(names) == len(set(names))                # no two counters share a name
    for fam in FAMILIES:
        for c in fam.counters:
            name = metric_name(fam, c)
            assert name.startswith("pyxsw_") and name.endswith("_total") == (c.kind == COUNTER)
            assert f"# HELP {name} {c.help} ({fam.help})\n" in text, name
            assert f"# TYPE {name} {c.kind}\n" in text, name
            parsed = fams[name.removesuffix("_total")]
            assert parsed.type == c.kind and parsed.documentation.startswith(c.help)
            # every counter the fake reports has its samples, labelled by where it is
            assert parsed.samples, name
            keys = {frozenset(s.labels) for s in parsed.samples}
            assert keys == {{"port": frozenset({"port"}), "queue": frozenset({"port", "queue"}),
                             "prog": frozenset({"port"}), "fastpath": frozenset({"port"}),
                             "worker": frozenset({"worker"})}.get(fam.name, frozenset())}, name
    assert fams["pyxsw_port_rx_packets"].type == COUNTER
    assert fams["pyxsw_fdb_entries"].type == GAUGE


def test_values_are_the_switchs():
    fake = FakeSwitch()
    fake.learn("02:00:00:00:00:01", "s0")
    stats, workers, status = fake.port_stats(), fake.worker_stats(), fake.status()
    fams = families(exposition(stats, workers, status))
    assert samples(fams, "pyxsw_info") == {(("name", "fake"), ("version", __version__)): 1}
    assert samples(fams, "pyxsw_uptime_seconds") == {(): status["uptime"]}
    assert samples(fams, "pyxsw_port_up") == {(("port", p),): 1 for p in ("s0", "s1", "s2")}
    for p in ("s0", "s1", "s2"):
        for k in ("rx_packets", "rx_bytes", "tx_packets", "tx_bytes", "flooded"):
            assert samples(fams, f"pyxsw_port_{k}_total")[(("port", p),)] == stats[p][k]
        assert samples(fams, "pyxsw_prog_seen_total")[(("port", p),)] == 5
        assert samples(fams, "pyxsw_queue_rx_dropped_total")[(("port", p), ("queue", "0"))] == 0
    assert samples(fams, "pyxsw_worker_loops_total") == {(("worker", "0"),): 4000}
    assert samples(fams, "pyxsw_fdb_entries") == {(): 1}
    assert samples(fams, "pyxsw_pool_frames") == {(): 16384}
    assert samples(fams, "pyxsw_pool") == {(): 16000}        # POOL's "pool": not said twice


def test_a_port_that_is_down_and_odd_label_values():
    ports = {'we"ird\\po\nrt': {"up": False, "rx_packets": 7}}
    text = exposition(ports, [], {"name": "x", "uptime": 1.5})
    fams = families(text)
    assert samples(fams, "pyxsw_port_up") == {(("port", 'we"ird\\po\nrt'),): 0}
    assert samples(fams, "pyxsw_port_rx_packets_total") == {(("port", 'we"ird\\po\nrt'),): 7}
    assert samples(fams, "pyxsw_port_tx_packets_total") == {}    # no figure, no sample
    assert "\n\n" not in text and text.endswith("\n")


# ---------------------------------------------------------------------------- HTTP

def test_get_metrics(served):
    status, headers, body = get(served)
    assert status == 200 and headers["Content-Type"] == CONTENT_TYPE
    assert int(headers["Content-Length"]) == len(body.encode())
    fams = families(body)
    assert samples(fams, "pyxsw_port_tx_packets_total")[(("port", "s1"),)] == 20
    # a query string is no other path
    assert get(served, "/metrics?x=1")[0] == 200
    status, headers, body = get(served, method="HEAD")
    assert status == 200 and body == "" and int(headers["Content-Length"]) > 1000
    assert served.metrics.scrapes == 3


@pytest.mark.parametrize("path", ["/", "/metric", "/metrics/", "/favicon.ico"])
def test_other_paths_are_404(served, path):
    status, headers, body = get(served, path)
    assert status == 404 and "/metrics" in body


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "OPTIONS", "BREW"])
def test_other_methods_are_405(served, method):
    status, headers, body = get(served, method=method)
    assert status == 405 and headers["Allow"] == "GET, HEAD"


@pytest.mark.parametrize("data", [b"hello\r\n\r\n", b"GET /metrics\r\n\r\n",
                                  b"GET /metrics SPDY/3\r\n\r\n", b"\xff\xfe /m H\r\n\r\n",
                                  b"GET /metrics HTTP/1.1\r\nHost: x"])
def test_bad_requests_are_400(served, data):
    line, body = raw(served, data)
    assert line.startswith("HTTP/1.1 400 "), line
    assert get(served)[0] == 200                        # and the next client is served


def test_a_huge_request_is_refused_and_costs_nothing(served):
    line, body = raw(served, b"GET /metrics HTTP/1.1\r\nX: " + b"a" * 200_000 + b"\r\n\r\n")
    assert line.startswith("HTTP/1.1 431 "), line
    assert get(served)[0] == 200


def test_a_silent_client_times_out_and_holds_nobody_up(served):
    with socket.create_connection((served.host, served.port)) as silent:
        silent.sendall(b"GET /metr")                    # and nothing more
        t0 = time.monotonic()
        assert get(served)[0] == 200                    # served meanwhile
        assert time.monotonic() - t0 < 0.4
        silent.settimeout(5)
        reply = silent.recv(4096)
        assert reply.startswith(b"HTTP/1.1 408 "), reply  # after read_timeout (0.5 s)


def test_too_many_clients_get_503(served):
    served.metrics.max_clients = 2
    held = [socket.create_connection((served.host, served.port)) for _ in range(2)]
    try:
        time.sleep(0.1)
        status, _, body = get(served)
        assert status == 503
    finally:
        for s in held:
            s.close()
    time.sleep(0.1)
    assert get(served)[0] == 200


def test_rpcs_go_on_while_metrics_are_collected(served, short_dir):
    """Collecting runs in the executor: a slow switch does not hold the loop up."""
    from pyxsw.client import Client
    slow = served.fake.port_stats

    def port_stats(name=None):
        if name is None:
            time.sleep(1.0)
        return slow(name)
    served.fake.port_stats = port_stats
    got = []
    t = threading.Thread(target=lambda: got.append(get(served)))
    t.start()
    time.sleep(0.2)
    t0 = time.monotonic()
    with Client(str(short_dir / "sw.sock"), timeout=5) as c:
        assert c.call("status")["name"] == "fake"
    assert time.monotonic() - t0 < 0.5
    t.join(5)
    assert got[0][0] == 200


def test_a_switch_that_fails_gives_500_and_the_next_scrape_works(served):
    good = served.fake.worker_stats
    served.fake.worker_stats = lambda: 1 / 0
    status, _, body = get(served)
    assert status == 500 and "division" in body
    served.fake.worker_stats = good
    assert get(served)[0] == 200


def test_the_address_in_use_names_the_key(short_dir):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        m = MetricsServer(FakeSwitch(), "127.0.0.1", port)
        srv = Server(FakeSwitch(), str(short_dir / "sw.sock"), metrics=m)
        with pytest.raises(ServerError) as e:
            srv.bind()
        assert e.value.key == "metrics.listen" and e.value.temporary
        assert f"127.0.0.1:{port}" in str(e.value) and "in use" in str(e.value)
        assert not (short_dir / "sw.sock").exists()      # the management socket let go too


def test_ipv6_loopback(short_dir):
    fake = FakeSwitch()
    m = MetricsServer(fake, "::1", 0)
    srv, t = start_server(fake, str(short_dir / "sw.sock"), "asyncio", metrics=m)
    try:
        c = http.client.HTTPConnection("::1", m.address[1], timeout=10)
        c.request("GET", "/metrics")
        r = c.getresponse()
        assert r.status == 200 and "pyxsw_port_up" in r.read().decode()
        c.close()
    finally:
        srv.request_stop()
        t.join(10)


def test_run_with_a_bad_listen_exits_2_naming_the_key(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[metrics]\nlisten = "localhost"\n')
    r = subprocess.run([sys.executable, "-m", "pyxsw", "run", "-c", str(bad)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert r.stderr == (f"{bad}: metrics.listen: must be host:port or [IPv6]:port, "
                        f"got 'localhost'\n")


def test_a_figure_that_is_no_number_is_left_out():
    text = exposition({"s0": {"up": True, "rx_packets": "many", "xdp": {"prog_seen": None}}},
                      [], {})
    assert "pyxsw_port_rx_packets_total{" not in text and "pyxsw_prog_seen_total{" not in text
    assert samples(families(text), "pyxsw_port_up") == {(("port", "s0"),): 1}
