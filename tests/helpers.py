"""Helpers for system tests: drive tests/nettool.py inside a lab's host namespaces.

    from helpers import capture, eth_frame, send, ping, tcp_transfer

    with capture(lab, 1, seconds=2) as got:          # armed when the block starts
        send(lab, 0, eth_frame(BCAST, lab.hosts[0].mac))
    assert ...got...                                 # list of bytes, filled when it ends
"""
from __future__ import annotations

import json
import threading
import select
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from pyxsw import Config, Switch

NETTOOL = str(Path(__file__).with_name("nettool.py"))
BCAST = "ff:ff:ff:ff:ff:ff"
ETH_P_TEST = 0x88B5             # IEEE "local experimental" ethertype: nobody else answers it


def mac_bytes(mac: str) -> bytes:
    return bytes.fromhex(mac.replace(":", ""))


def eth_frame(dst: str, src: str, payload: bytes = b"", ethertype: int = ETH_P_TEST,
              vlan: int | None = None, pad: bool = True) -> bytes:
    """An Ethernet frame (no FCS); with `vlan`, an 802.1Q tag; padded to 60 bytes unless
    pad=False, as a NIC would."""
    tag = (b"\x81\x00" + vlan.to_bytes(2, "big")) if vlan is not None else b""
    f = mac_bytes(dst) + mac_bytes(src) + tag + ethertype.to_bytes(2, "big") + payload
    return f.ljust(60, b"\0") if pad else f


def nettool(lab, i, *args, timeout=60, **kw) -> subprocess.CompletedProcess:
    """Run a nettool command in host i to completion (output captured as text)."""
    kw.setdefault("capture_output", True)
    kw.setdefault("text", True)
    return lab.run(i, sys.executable, NETTOOL, *args, timeout=timeout, **kw)


def nettool_popen(lab, i, *args, ready=True, ready_timeout=10) -> subprocess.Popen:
    """Start a nettool command in host i; with `ready`, return once it said "ready"."""
    p = lab.popen(i, sys.executable, NETTOOL, *args,
                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if ready:
        try:
            _wait_ready(p, ready_timeout)
        except BaseException:
            p.kill()
            p.communicate()
            raise
    return p


def _wait_ready(p, timeout):
    if not select.select([p.stderr], [], [], timeout)[0]:
        raise TimeoutError(f"nettool {p.args[6:]} not ready after {timeout} s")
    line = p.stderr.readline().strip()
    if line != "ready":
        raise RuntimeError(f"nettool {p.args[6:]} failed to start: {line} {p.stderr.read()}")


def finish(p: subprocess.Popen, timeout=30) -> str:
    """Wait for a nettool started by nettool_popen; return its stdout, raise if it failed."""
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        p.communicate()
        raise
    if p.returncode:
        raise RuntimeError(f"nettool {p.args[6:]} exited {p.returncode}: {err.strip()}")
    return out


def send(lab, i, frame: bytes, count: int = 1, interval: float = 0.0) -> None:
    r = nettool(lab, i, "send", "--ifname", "eth0", "--hex", frame.hex(), "--count", count,
                "--interval", interval)
    assert r.returncode == 0, r.stderr


@contextmanager
def flooding(lab, i, frame: bytes, burst: int = 500):
    """Host i sends `frame` in bursts of `burst`, again and again, until the block ends."""
    stop = threading.Event()

    def flood():
        while not stop.is_set():
            send(lab, i, frame, count=burst)
    t = threading.Thread(target=flood, name="flooding")
    t.start()
    try:
        yield
    finally:
        stop.set()
        t.join(30)


@contextmanager
def capture(lab, i, seconds: float = 2.0, max_frames: int | None = None):
    """Capture frames arriving at host i's eth0 (not the ones it sends).  Yields a list that
    is filled with the frames (bytes) when the block ends; capture is armed on entry.
    `max_frames` ends the capture early once that many frames came."""
    args = ["capture", "--ifname", "eth0", "--seconds", seconds]
    if max_frames is not None:
        args += ["--max", max_frames]
    p = nettool_popen(lab, i, *args)
    frames = []
    try:
        yield frames
    finally:
        out = finish(p, timeout=seconds + 30)
        frames.extend(bytes.fromhex(h) for h in json.loads(out))


@contextmanager
def udp_sink(lab, i, port: int = 9, seconds: float = 2.0):
    """Count UDP datagrams to host i:port; yields a dict filled with
    {"received": n, "sources": distinct (ip, port)} when the block ends."""
    p = nettool_popen(lab, i, "udp-sink", "--port", port, "--seconds", seconds)
    result = {}
    try:
        yield result
    finally:
        result.update(json.loads(finish(p, timeout=seconds + 30)))


def udp_flows(lab, i, dst_ip: str, flows: int, count: int, port: int = 9,
              size: int = 18, interval: float = 0.0) -> dict:
    r = nettool(lab, i, "udp-flows", "--dst", dst_ip, "--flows", flows, "--count", count,
                "--port", port, "--size", size, "--interval", interval)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def tcp_transfer(lab, server: int, client: int, nbytes: int, port: int = 5201,
                 seed: int = 1, timeout: float = 120) -> tuple[str, str]:
    """Send nbytes seeded bytes from host `client` to host `server` over TCP.
    Returns (sha256 sent, sha256 received): equal when the switch delivered them intact."""
    srv = nettool_popen(lab, server, "tcp-server", "--port", port, "--bytes", nbytes,
                        "--timeout", timeout)
    try:
        c = nettool(lab, client, "tcp-client", "--host", lab.hosts[server].ip, "--port", port,
                    "--bytes", nbytes, "--seed", seed, "--timeout", timeout, timeout=timeout + 10)
        assert c.returncode == 0, c.stderr
        out = finish(srv, timeout=timeout + 10)
    finally:
        if srv.poll() is None:
            srv.kill()
            srv.communicate()
    return c.stdout.split()[-1], out.split()[-1]


def ping(lab, a: int, b: int, count: int = 1, timeout: float = 2) -> bool:
    """Does host a get every reply from host b?"""
    r = lab.run(a, "ping", "-n", "-c", count, "-i", "0.2", "-W", timeout, lab.hosts[b].ip,
                capture_output=True, text=True)
    return r.returncode == 0


def wait_until(predicate, timeout: float = 5.0, interval: float = 0.05) -> bool:
    """Poll predicate() until it is true or timeout passes; returns its last value."""
    deadline = time.monotonic() + timeout
    while not (ok := predicate()) and time.monotonic() < deadline:
        time.sleep(interval)
    return ok


def run_async(kind, coro):
    """Run a coroutine on a fresh loop of the given kind ("uvloop" or "asyncio")."""
    if kind == "uvloop":
        import uvloop
        return uvloop.run(coro)
    import asyncio
    return asyncio.run(coro)


# ---------------------------------------------------------------------------- a switch

def make_config(ports, tmp_path, mode="poll", cores=(1,), port_extra=None, xdp_mode="auto",
                switch=None, **fdb):
    """A switch on `ports`, its socket in tmp_path; keyword arguments go to [fdb], `switch`
    to [switch]."""
    return Config.from_dict({
        "switch": {"name": "t", "mode": mode, "cores": list(cores), "xdp_mode": xdp_mode,
                   **(switch or {})},
        "fdb": fdb,
        "management": {"socket": str(tmp_path / "sw.sock")},
        "port": [{"name": p, **(port_extra or {}).get(p, {})} for p in ports],
    })


@contextmanager
def running(cfg):
    """A started Switch, stopped when the block ends, whatever happens."""
    sw = Switch(cfg)
    sw.start()
    try:
        yield sw
    finally:
        sw.stop()


def stderr_of(proc) -> str:
    """What a child process said on stderr, once it is surely over (reading the pipe of a
    live one would block): for assertion messages."""
    if proc.poll() is None:
        proc.kill()
    return proc.communicate(timeout=10)[1]


def link_flags(name):
    """(flags, XDP attached?, promiscuity) of an interface in this namespace."""
    out = subprocess.run(["ip", "-d", "-j", "link", "show", "dev", name],
                         capture_output=True, text=True, check=True).stdout
    info = json.loads(out)[0]
    return set(info.get("flags", [])), ("xdp" in info), info.get("promiscuity", 0)
