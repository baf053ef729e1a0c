"""Traffic tools that tests run inside a host namespace:

    ip netns exec NS python tests/nettool.py COMMAND ...

  send        --ifname IF --hex FRAME [--count N]       raw Ethernet frames (AF_PACKET)
  capture     --ifname IF --seconds S [--max N]         JSON list of hex frames received
  tcp-server  --port P --bytes N                        receive N bytes, print their sha256
  tcp-client  --host H --port P --bytes N --seed S      send N seeded bytes, print their sha256
  udp-flows   --dst IP --flows N --count M              M datagrams over N source ports
  udp-sink    --port P --seconds S                      count datagrams and their sources

Tools that a test must wait for (capture, tcp-server, udp-sink) print "ready" as their first
line on stderr once their socket is bound.  Results go to stdout; for the TCP tools the last
word of stdout is the sha256, so `out.split()[-1]` compares the two sides.

Only the standard library: it runs with the venv's interpreter, but needs nothing from it.
"""
import argparse
import errno
import hashlib
import json
import random
import socket
import struct
import sys
import time

ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_AUXDATA = 8
PACKET_OUTGOING = 4             # pkttype of frames this host sent itself
TP_STATUS_VLAN_VALID = 0x10
TP_STATUS_VLAN_TPID_VALID = 0x40
CHUNK = 64 * 1024


def ready():
    print("ready", file=sys.stderr, flush=True)


def send_waiting(s, frame):
    """Send one frame; when the device queue is full, wait for room instead of dropping."""
    while True:
        try:
            s.send(frame)
            return
        except OSError as e:
            if e.errno not in (errno.ENOBUFS, errno.EAGAIN):
                raise
            time.sleep(0.001)


def cmd_send(a):
    frame = bytes.fromhex(a.hex)
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0) as s:
        s.bind((a.ifname, 0))
        for _ in range(a.count):
            send_waiting(s, frame)
            if a.interval:
                time.sleep(a.interval)
    print(f"sent {a.count} frames of {len(frame)} bytes")


def _with_vlan_tag(data, ancdata):
    """The kernel strips an 802.1Q tag into metadata before packet sockets see the frame;
    put it back from PACKET_AUXDATA so the test sees the frame as it was on the wire."""
    for level, kind, aux in ancdata:
        if level == SOL_PACKET and kind == PACKET_AUXDATA and len(aux) >= 20:
            status, _, _, _, _, tci, tpid = struct.unpack("IIIHHHH", aux[:20])
            if status & TP_STATUS_VLAN_VALID:
                if not status & TP_STATUS_VLAN_TPID_VALID:
                    tpid = 0x8100
                return data[:12] + struct.pack("!HH", tpid, tci) + data[12:]
    return data


def cmd_spray(a):
    """Frames from `count` random unicast source MACs: a MAC flooding attack."""
    rng = random.Random(a.seed)
    dst = bytes.fromhex(a.dst.replace(":", ""))
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0) as s:
        s.bind((a.ifname, 0))
        for _ in range(a.count):
            src = bytes([rng.randrange(256) & 0xfe | 0x02]) + rng.randbytes(5)
            send_waiting(s, dst + src + b"\x88\xb5" + bytes(46))
    print(f"sprayed {a.count} source MACs")


def cmd_capture(a):
    frames = []
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL)) as s:
        s.setsockopt(SOL_PACKET, PACKET_AUXDATA, 1)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        s.bind((a.ifname, ETH_P_ALL))
        ready()
        deadline = time.monotonic() + a.seconds
        while a.max is None or len(frames) < a.max:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            s.settimeout(left)
            try:
                data, anc, _, addr = s.recvmsg(65536, socket.CMSG_SPACE(32))
            except socket.timeout:
                break
            if addr[2] == PACKET_OUTGOING:
                continue
            frames.append(_with_vlan_tag(data, anc).hex())
    json.dump(frames, sys.stdout)
    print()


def _seeded_chunks(nbytes, seed):
    rng = random.Random(seed)
    while nbytes > 0:
        n = min(CHUNK, nbytes)
        yield rng.randbytes(n)
        nbytes -= n


def cmd_tcp_server(a):
    h, got = hashlib.sha256(), 0
    with socket.create_server(("0.0.0.0", a.port)) as srv:
        srv.settimeout(a.timeout)
        ready()
        conn, _ = srv.accept()
        t0 = time.monotonic()
        with conn:
            conn.settimeout(a.timeout)
            while got < a.bytes:
                data = conn.recv(CHUNK)
                if not data:
                    break
                h.update(data)
                got += len(data)
    secs = time.monotonic() - t0
    print(f"received {got} bytes in {secs:.3f} s, sha256 {h.hexdigest()}")
    return 0 if got == a.bytes else 1


def cmd_tcp_client(a):
    # The server may be a moment behind: retry a refused connection until the deadline.
    deadline = time.monotonic() + a.timeout
    while True:
        try:
            conn = socket.create_connection((a.host, a.port), timeout=a.timeout)
            break
        except ConnectionRefusedError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    h, t0 = hashlib.sha256(), time.monotonic()
    with conn:
        for chunk in _seeded_chunks(a.bytes, a.seed):
            h.update(chunk)
            conn.sendall(chunk)
        conn.shutdown(socket.SHUT_WR)
        conn.recv(1)                    # wait for the server's close: all bytes delivered
    secs = time.monotonic() - t0
    print(f"sent {a.bytes} bytes in {secs:.3f} s, sha256 {h.hexdigest()}")


def cmd_udp_flows(a):
    # One socket per flow, each bound to its own ephemeral port: N distinct 5-tuples,
    # which RSS hashing spreads over the receive queues.
    socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(a.flows)]
    try:
        for s in socks:
            s.bind(("0.0.0.0", 0))
        payload = bytes(a.size)
        for k in range(a.count):
            socks[k % a.flows].sendto(payload, (a.dst, a.port))
            if a.interval:
                time.sleep(a.interval)
        print(json.dumps({"sent": a.count, "flows": a.flows,
                          "sports": [s.getsockname()[1] for s in socks]}))
    finally:
        for s in socks:
            s.close()


def cmd_udp_sink(a):
    got, sources = 0, set()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        s.bind(("0.0.0.0", a.port))
        ready()
        deadline = time.monotonic() + a.seconds
        while (left := deadline - time.monotonic()) > 0:
            s.settimeout(left)
            try:
                _, addr = s.recvfrom(65536)
            except socket.timeout:
                break
            got += 1
            sources.add(addr)
    print(json.dumps({"received": got, "sources": len(sources)}))


def main(argv=None):
    p = argparse.ArgumentParser(prog="nettool")
    sub = p.add_subparsers(dest="cmd", required=True)

    s = sub.add_parser("send")
    s.add_argument("--ifname", required=True)
    s.add_argument("--hex", required=True)
    s.add_argument("--count", type=int, default=1)
    s.add_argument("--interval", type=float, default=0.0, help="seconds between frames")
    s.set_defaults(func=cmd_send)

    sp = sub.add_parser("spray")
    sp.add_argument("--ifname", default="eth0")
    sp.add_argument("--dst", default="ff:ff:ff:ff:ff:ff")
    sp.add_argument("--count", type=int, required=True)
    sp.add_argument("--seed", type=int, default=1)
    sp.set_defaults(func=cmd_spray)
    c = sub.add_parser("capture")
    c.add_argument("--ifname", required=True)
    c.add_argument("--seconds", type=float, required=True)
    c.add_argument("--max", type=int, default=None, help="stop after this many frames")
    c.set_defaults(func=cmd_capture)

    ts = sub.add_parser("tcp-server")
    ts.add_argument("--port", type=int, required=True)
    ts.add_argument("--bytes", type=int, required=True)
    ts.add_argument("--timeout", type=float, default=60.0)
    ts.set_defaults(func=cmd_tcp_server)

    tc = sub.add_parser("tcp-client")
    tc.add_argument("--host", required=True)
    tc.add_argument("--port", type=int, required=True)
    tc.add_argument("--bytes", type=int, required=True)
    tc.add_argument("--seed", type=int, default=0)
    tc.add_argument("--timeout", type=float, default=60.0)
    tc.set_defaults(func=cmd_tcp_client)

    u = sub.add_parser("udp-flows")
    u.add_argument("--dst", required=True)
    u.add_argument("--flows", type=int, required=True)
    u.add_argument("--count", type=int, required=True)
    u.add_argument("--port", type=int, default=9, help="destination port (9: discard)")
    u.add_argument("--size", type=int, default=18, help="payload bytes (18: a 64-byte frame)")
    u.add_argument("--interval", type=float, default=0.0, help="seconds between datagrams")
    u.set_defaults(func=cmd_udp_flows)

    k = sub.add_parser("udp-sink")
    k.add_argument("--port", type=int, required=True)
    k.add_argument("--seconds", type=float, required=True)
    k.set_defaults(func=cmd_udp_sink)

    a = p.parse_args(argv)
    return a.func(a) or 0


if __name__ == "__main__":
    sys.exit(main())
