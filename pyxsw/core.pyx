# Datapath: the Python face of the C switch.  pyxsw.switch.Switch drives it; tests drive it
# directly too (Datapath(umem=False) needs no privileges: the FDB and the forwarding decision
# on virtual ports, without sockets).
#
# It checks arguments, serializes control-path calls on one lock, calls the C functions of
# the other files, and builds Python results from the plain C data they return (counters
# through the tables of pyxsw/counters.py).  It holds no state of its own beyond that lock.
#
# Threads: each worker runs Datapath.run_worker(q) in its own thread with the GIL released.
# Every other method runs on a control thread and changes what workers see only through
# atomics, the generation counter and grace periods (wait_grace()).

import threading as _threading
import time as _time

from pyxsw import counters as _counters

# The words are pyxsw.vocab's; the C enums are in the same order.
_MODES = dict(zip(_vocab.MODES, (MODE_POLL, MODE_INTERRUPT, MODE_ADAPTIVE)))
_MODE_NAMES = {v: k for k, v in _MODES.items()}
_ZERO_COPY = dict(zip(_vocab.ZERO_COPY, (ZC_AUTO, ZC_ON, ZC_OFF)))
_XDP_MODES = _vocab.XDP_MODES
FORWARD_FLOOD = FWD_FLOOD
FORWARD_RUNT = FWD_RUNT
FORWARD_FILTER = FWD_FILTER
FORWARD_RESERVED = FWD_RESERVED
FORWARD_VLAN = FWD_VLAN
VLAN_MODES = dict(zip(_vocab.VLAN_MODES, (VLAN_ACCESS, VLAN_TRUNK)))   # pyxsw.vocab's words
_VLAN_MIN, _VLAN_MAX = _vocab.VLAN_ID_MIN, _vocab.VLAN_ID_MAX

# What Datapath() accepts at most, from the C side's array sizes and widths; pyxsw.vocab's
# CORE_LIMITS says the same for config and ctl, which run without the core (a test compares
# them).  Counts the C side keeps in 32 bits are bounded by that.
LIMITS = {"frames": 0xffffffff, "ring_size": MAX_RING_SIZE, "batch": MAX_BATCH,
          "workers": MAX_WORKERS, "ports": MAX_PORTS, "capacity": MAX_FDB_CAPACITY,
          "port_limit": 0xffffffff, "aging": 0xffffffff, "flood_limit": 0xffffffff,
          "fragments": MAX_FRAGS}


def _param_error(exc, str param):
    """exc, marked with the Datapath() parameter at fault: pyxsw.switch names its config key."""
    exc.param = param
    return exc


def _check_arg(str name, value, lo, hi):
    # bool is an int to Python, never a size to a caller
    if not isinstance(value, int) or isinstance(value, bool):
        raise _param_error(ValueError(f"{name} must be an integer, got {type(value).__name__}"),
                           name)
    if not lo <= value <= hi:
        raise _param_error(ValueError(f"{name} must be {lo}..{hi}, got {value}"), name)


def _check_word(str name, value, words):
    if value not in words:
        raise _param_error(ValueError(f"{name} must be one of {', '.join(words)}"), name)


def size_text(n):
    """A byte count for people: '512 bytes', '1.5 MiB', '8 GiB'."""
    if n < 1024:
        return f"{n} bytes"
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        n /= 1024
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if n == int(n) else f"{n:.1f} {unit}"


def _check_args(frames, frame_size, ring_size, batch, workers, capacity, port_limit, aging,
                zero_copy, xdp_mode, mode, fastpath="off", max_frame=_vocab.MAX_FRAME_DEFAULT):
    """Datapath()'s arguments, checked before anything is allocated and against what the C
    side holds: a bad one is a ValueError naming its parameter (see _param_error), never an
    OverflowError from the conversion or a hang in the sizing."""
    _check_arg("frames", frames, 1, LIMITS["frames"])
    if type(frame_size) is not int or frame_size not in _vocab.FRAME_SIZES:
        raise _param_error(ValueError(f"frame_size must be 2048 or 4096, got {frame_size!r}"),
                           "frame_size")
    _check_arg("max_frame", max_frame, _vocab.MIN_FRAME, _vocab.max_frame_limit(frame_size))
    _check_arg("ring_size", ring_size, 1, MAX_RING_SIZE)
    if ring_size & (ring_size - 1):
        raise _param_error(ValueError(f"ring_size must be a power of two, got {ring_size}"),
                           "ring_size")
    _check_arg("batch", batch, 1, min(MAX_BATCH, ring_size))
    _check_arg("workers", workers, 1, MAX_WORKERS)
    _check_arg("capacity", capacity, 1, MAX_FDB_CAPACITY)
    _check_arg("port_limit", port_limit, 0, LIMITS["port_limit"])
    _check_arg("aging", aging, 0, LIMITS["aging"])
    _check_word("mode", mode, _MODES)
    _check_word("zero_copy", zero_copy, _ZERO_COPY)
    _check_word("xdp_mode", xdp_mode, _XDP_MODES)
    _check_word("fastpath", fastpath, _vocab.FASTPATH)


def _interface_mtu(str name):
    """An interface's MTU, or 0 when it cannot be read (the port is then no fast-path target
    until set_port_mtu() says it)."""
    try:
        with open(f"/sys/class/net/{name}/mtu") as f:
            return int(f.read())
    except (OSError, ValueError):
        return 0


cdef dict _named(family, const uint64_t *c):
    """{name: value} of a family's C-side counters (its enum's order is the table's)."""
    return {k.name: c[i] for i, k in enumerate(family.in_c())}


cdef void sw_free(Sw *sw) noexcept:
    """Every port closed, then the UMEM, the XDP program, the workers' state, the FDB.  The
    workers must have stopped."""
    cdef int p, q
    for p in range(MAX_PORTS):
        if sw.ports[p].kind != KIND_NONE:
            port_close(sw, &sw.ports[p])
    umem_destroy(&sw.umem)
    kfdb_detach(&sw.fdb)
    xdp_close(&sw.xdp)
    for q in range(sw.nworkers):
        worker_free(sw.workers[q])
    fdb_destroy(&sw.fdb)
    if sw.events_fd >= 0:
        close(sw.events_fd)
    free(sw)


cdef tuple _vlan_membership(str mode, int vlan, allowed, int native, uint64_t *bits):
    """A port's 802.1Q settings checked and made C data: (VLAN_ACCESS/VLAN_TRUNK, the
    untagged VLAN), and `bits` (VLAN_WORDS words) the VLANs it carries.  ValueError."""
    cdef int v
    if mode not in VLAN_MODES:
        raise ValueError(f"vlan_mode must be one of {', '.join(VLAN_MODES)}")
    memset(bits, 0, VLAN_WORDS * sizeof(uint64_t))
    if mode == "access":
        if not _VLAN_MIN <= vlan <= _VLAN_MAX:
            raise ValueError(f"an access port's vlan must be {_VLAN_MIN}..{_VLAN_MAX}, got {vlan}")
        if allowed is not None or native:
            raise ValueError("allowed and native are a trunk's")
        bits[vlan >> 6] = (<uint64_t>1) << (vlan & 63)
        return VLAN_ACCESS, vlan
    for v in (range(_VLAN_MIN, _VLAN_MAX + 1) if allowed is None else allowed):
        if not _VLAN_MIN <= v <= _VLAN_MAX:
            raise ValueError(f"allowed VLANs must be {_VLAN_MIN}..{_VLAN_MAX}, got {v}")
        bits[v >> 6] |= (<uint64_t>1) << (v & 63)
    if native and not (0 < native <= _VLAN_MAX and port_carries(bits, native)):
        raise ValueError(f"native VLAN {native} is not one the trunk allows")
    return VLAN_TRUNK, native


cdef class Datapath:
    cdef Sw *sw
    cdef bint has_umem
    cdef public str xdp_mode
    cdef object lock            # serializes control-path calls
    cdef public int last_vlan   # the VLAN decide() put its last frame in (for tests)

    def __cinit__(self, *, frames=16384, frame_size=2048, ring_size=2048, batch=64,
                  workers=1, capacity=65536, port_limit=0, aging=300,
                  str zero_copy="auto", str xdp_mode="auto", str mode="poll", str fastpath="off",
                  max_frame=_vocab.MAX_FRAME_DEFAULT, bint umem=True):
        cdef int q, rc
        cdef Sw *sw
        _check_args(frames, frame_size, ring_size, batch, workers, capacity, port_limit, aging,
                    zero_copy, xdp_mode, mode, fastpath, max_frame)
        self.lock = _threading.RLock()
        self.xdp_mode = xdp_mode
        self.sw = sw = <Sw *>calloc(1, sizeof(Sw))
        if sw == NULL:
            raise MemoryError("cannot allocate the switch's state")
        sw.batch = batch
        sw.nworkers = workers
        sw.tx_budget = -1
        sw.busy_poll = -1
        sw.events_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)
        if sw.events_fd < 0:
            e = errno
            raise OSError(e, f"cannot make the workers' event descriptor: {_os.strerror(e)}")
        xdp_init(&sw.xdp)
        sw.xdp.fdb_capacity = capacity
        sw.xdp.fastpath = fastpath == "xdp"
        sw.fastpath = fastpath == "xdp"
        if umem_init(&sw.umem, frames, frame_size, ring_size, _ZERO_COPY[zero_copy], max_frame):
            raise _param_error(MemoryError(f"cannot allocate the frame pool of {frames} frames "
                                           f"({size_text(8 * frames)})"), "frames")
        if fdb_init(&sw.fdb, capacity, port_limit, aging):
            raise _param_error(MemoryError(f"cannot allocate an FDB of {capacity} entries "
                                           f"({size_text(fdb_memory(capacity) // 2)})"), "capacity")
        for q in range(workers):
            sw.workers[q] = worker_new(sw, q, _MODES[mode],
                                       max(2 * CACHE_CHUNK, min(CACHE_SIZE, frames // (4 * workers))))
            if sw.workers[q] == NULL:
                raise _param_error(MemoryError(f"cannot allocate the state of {workers} workers"),
                                   "workers")
        if umem:
            rc = umem_map(&sw.umem)
            if rc and sw.umem.area == NULL:
                raise _param_error(MemoryError(f"cannot map a UMEM of {frames} frames x "
                                               f"{frame_size} bytes ({size_text(sw.umem.area_size)})"),
                                   "frames")
            if rc:
                raise _param_error(OSError(-rc, f"cannot register the UMEM ({sw.umem.area_size >> 20} "
                                                f"MiB): {_os.strerror(-rc)} (needs root: CAP_NET_RAW, "
                                                f"CAP_IPC_LOCK)"), "frames")
            self.has_umem = True

    cdef Sw *_sw(self) except NULL:
        """The switch's C state; RuntimeError, not a crash, once close() freed it."""
        if self.sw == NULL:
            raise RuntimeError("the switch's datapath is closed")
        return self.sw

    cdef Port *_port(self, int p) except NULL:
        if not 0 <= p < MAX_PORTS:
            raise KeyError(p)
        return &self._sw().ports[p]

    def __dealloc__(self):
        self._free()

    cdef _free(self):
        if self.sw != NULL:
            sw_free(self.sw)
            self.sw = NULL

    def close(self):
        """Free everything: ports torn down, UMEM released.  Workers must have stopped."""
        with self.lock:
            self._free()

    # ------------------------------------------------------------------ what it reports

    @property
    def workers(self):
        return self._sw().nworkers

    @property
    def mode(self):
        return _MODE_NAMES[pyxsw_load_int(&self._sw().workers[0].mode)]

    @property
    def zero_copy(self):
        """As configured: "auto", "on" or "off"."""
        z = self._sw().umem.zero_copy
        return next(k for k, v in _ZERO_COPY.items() if v == z)

    @property
    def zero_copy_active(self):
        return bool(self._sw().umem.zero_copy_active)

    @property
    def tx_budget(self):
        """Frames per TX kick set on the sockets, 0 where the kernel refused, None untried."""
        t = self._sw().tx_budget
        return None if t < 0 else t

    @property
    def max_frame(self):
        """The longest frame the switch carries now: [switch] max_frame, or a UMEM frame's
        room where multi-buffer is not wanted or the kernel refused it."""
        return umem_max_frame(&self._sw().umem)

    @property
    def multi_buffer(self):
        """"on" (frames span descriptors), "off" (max_frame fits a UMEM frame), or
        "refused" (the kernel or the driver refused XDP_USE_SG: larger frames dropped)."""
        u = &self._sw().umem
        if u.sg:
            return "on"
        return "refused" if u.max_frame > u.frame_size - XDP_PACKET_HEADROOM else "off"

    @property
    def busy_poll(self):
        """True when the kernel took the busy-poll options, None before poll mode tried them."""
        b = self._sw().busy_poll
        return None if b < 0 else bool(b)

    @property
    def anchor(self):
        """Where the UMEM's first socket is bound, in words."""
        return umem_anchor_text(&self._sw().umem)

    @property
    def anchor_ifindex(self):
        """The host's lo when the UMEM is anchored there (it cannot be a port), else 0."""
        return self._sw().umem.anchor_ifindex

    @property
    def events_fd(self):
        """Readable when workers have queued events: poll it, then drain_events()."""
        return self._sw().events_fd

    # ------------------------------------------------------------------ workers

    def run_worker(self, int q):
        """Worker q's loop, in the calling thread, with the GIL released, until stop()."""
        cdef Worker *w = self._sw().workers[q]
        pyxsw_store_int(&w.parked, 0)
        with nogil:
            worker_loop(w)

    def stop(self):
        """Ask every worker loop to return (they finish their current pass)."""
        cdef Sw *sw = self._sw()
        cdef int q
        for q in range(sw.nworkers):
            pyxsw_store_int(&sw.workers[q].running, 0)
            worker_wake(sw.workers[q])

    def wait_grace(self, double timeout=2.0):
        """Wait until every worker has passed a quiescent point since the call.

        After it returns, no worker holds a pointer it loaded before the call: an FDB table
        or a socket unpublished before calling can be freed."""
        cdef Sw *sw = self._sw()
        cdef uint64_t since[MAX_WORKERS]
        cdef uint32_t pending
        workers_epochs(sw, since)
        deadline = _time.monotonic() + timeout
        while True:
            pending = workers_not_quiesced(sw, since)
            if not pending:
                return
            if _time.monotonic() > deadline:
                raise TimeoutError(f"workers {[q for q in range(sw.nworkers) if pending >> q & 1]} "
                                   f"did not pass a grace period")
            _time.sleep(0.0002)

    cdef void _publish(self) noexcept:
        """Ports changed: the XDP program's rows of them written again (a map update that
        fails leaves that port no fast-path target: port_info says so), then the generation
        bumped and sleeping workers woken to see it."""
        cdef int q
        fp_ports_write(self.sw)
        pyxsw_fence_seq()
        pyxsw_store_rel32(&self.sw.gen, self.sw.gen + 1)
        for q in range(self.sw.nworkers):
            worker_wake(self.sw.workers[q])

    def set_mode(self, str mode):
        cdef Sw *sw = self._sw()
        cdef int q, p, m
        if mode not in _MODES:
            raise ValueError(f"mode must be one of {', '.join(_MODES)}")
        m = _MODES[mode]
        with self.lock:
            for p in range(MAX_PORTS):
                port_sockopts(sw, &sw.ports[p], m)
            for q in range(sw.nworkers):
                pyxsw_store_int(&sw.workers[q].mode, m)
                worker_wake(sw.workers[q])

    # ------------------------------------------------------------------ ports

    cdef Port *_new_port(self, int kind, bytes name, int ifindex, uint32_t flood_limit,
                         bint forward_reserved) except NULL:
        cdef Port *pt = port_slot(self.sw, kind, name, ifindex, flood_limit, forward_reserved)
        cdef int q
        if pt == NULL:
            raise OSError(_errno.ENOSPC, f"at most {MAX_PORTS} ports")
        # the workers' counters of the slot start again: not the last port's that had it
        # (no worker writes them while the slot is not active)
        for q in range(self.sw.nworkers):
            memset(&self.sw.workers[q].st[pt - self.sw.ports], 0, sizeof(PortStats))
        return pt

    cdef int _activate(self, Port *pt, bint up) except -1:
        pyxsw_store_int(&pt.up, 1 if up else 0)
        pyxsw_store_int(&pt.active, 1)
        self._publish()
        return pt - self.sw.ports

    def port_add(self, str name, int expect_ifindex=0, *, bint up=True, uint32_t flood_limit=0,
                 bint forward_reserved=False, str vlan_mode="access", int vlan=1, allowed=None,
                 int native=0):
        """Make an interface a switch port; returns (index, note).  The caller has made sure
        no other live switch uses the interface: a pyxsw program found on it is replaced.
        With `expect_ifindex`, the name must still be that interface (not one made again
        under it since the caller looked)."""
        cdef Sw *sw = self._sw()
        cdef Umem *u = &sw.umem
        cdef Port *pt
        cdef int p, n, ifindex
        cdef bytes bname = name.encode()
        cdef uint64_t bits[VLAN_WORDS]
        if not self.has_umem:
            raise RuntimeError("this Datapath has no UMEM: use add_virtual_port()")
        # its VLANs are in place before it is active: no frame of it is ever in another
        m, untagged = _vlan_membership(vlan_mode, vlan, allowed, native, bits)
        if not 0 < len(bname) < 16:
            raise ValueError(f"not an interface name: {name!r}")
        with self.lock:
            ifindex = <int>if_nametoindex(bname)
            if ifindex == 0:
                raise OSError(_errno.ENODEV, f"{name}: no such interface")
            if expect_ifindex and ifindex != expect_ifindex:
                raise OSError(_errno.EAGAIN, f"{name}: the interface changed (ifindex "
                                             f"{expect_ifindex}, now {ifindex}); try again")
            # Two sockets of one UMEM on one (interface, queue) share its fill and completion
            # rings, which libxdp then does not hand to the second: refuse, never crash.
            if ifindex == u.anchor_ifindex:
                raise OSError(_errno.EBUSY, f"{name}: the switch itself uses this interface "
                                            f"(the UMEM's anchor socket)")
            for p in range(MAX_PORTS):
                if sw.ports[p].kind != KIND_NONE and sw.ports[p].ifindex == ifindex:
                    raise OSError(_errno.EEXIST, f"{name}: already a switch port "
                                                 f"(as {sw.ports[p].name.decode()})")
            n = u.nsocks + sw.nworkers
            if umem_fill_target(u, n) < sw.batch:
                raise _param_error(ValueError(
                    f"frames = {u.nframes} is too few for {n} sockets (ports x queues): need "
                    f"at least {2 * sw.batch * n}"), "frames")
            pt = self._new_port(KIND_AFXDP, bname, ifindex, flood_limit, forward_reserved)
            pt.mtu = _interface_mtu(name)   # the switch follows it from here (set_port_mtu)
            port_vlan_write(sw, pt, m, untagged, bits)
            try:
                note = remove_stale_xdp(ifindex, name)
                port_open(sw, pt, self.xdp_mode)
            except BaseException:
                port_close(sw, pt)
                raise
            return self._activate(pt, up), note

    def add_virtual_port(self, str name, bint up=True, uint32_t flood_limit=0,
                         bint forward_reserved=False):
        """A port with no interface, for tests of the forwarding decision without root."""
        self._sw()
        with self.lock:
            return self._activate(self._new_port(KIND_VIRTUAL, name.encode(), 0, flood_limit,
                                                 forward_reserved), up)

    def set_port_up(self, int p, bint up):
        """Link state: a down port leaves the flood set and is no unicast destination."""
        cdef Port *pt = self._port(p)
        with self.lock:
            pyxsw_store_int(&pt.up, 1 if up else 0)
            self._publish()

    def set_port_fastpath_capable(self, int p, bint capable, bint fragments=False):
        """Whether port p's device takes XDP-redirected frames (as the kernel reports it),
        and frames in several buffers too (jumbo frames): with the fast path on, an up port
        that does is a fast-path target (for jumbo frames, if it takes fragments)."""
        cdef Port *pt = self._port(p)
        with self.lock:
            pt.fp_capable = 1 if capable else 0
            pt.fp_sg = 1 if capable and fragments else 0
            if pt.active:
                fp_port_write(self.sw, pt)

    def set_port_mtu(self, int p, uint32_t mtu):
        """Port p's interface MTU: the fast path redirects no longer frame to it."""
        cdef Port *pt = self._port(p)
        with self.lock:
            pt.mtu = mtu
            if pt.active:
                fp_port_write(self.sw, pt)

    def fastpath(self):
        """{"mode", "kernel_fdb_entries", "sync_errors"}: the fast path's state."""
        cdef Sw *sw = self._sw()
        cdef uint32_t n
        with self.lock:
            with nogil:        # without the FDB's lock: learning goes on meanwhile
                n = kfdb_count(&sw.fdb)
            return {"mode": "xdp" if sw.fastpath else "off", "kernel_fdb_entries": n,
                    "sync_errors": sw.fdb.ksync_errors}

    def port_del(self, int p):
        """Stop switching on port p: sockets closed, frames reclaimed, XDP detached, FDB flushed."""
        cdef Sw *sw = self._sw()
        with self.lock:
            if not (0 <= p < MAX_PORTS) or not sw.ports[p].active:
                raise KeyError(p)
            pyxsw_store_int(&sw.ports[p].active, 0)
            pyxsw_store_int(&sw.ports[p].up, 0)
            self._publish()
            self.wait_grace()
            port_close(sw, &sw.ports[p])
            fdb_flush(&sw.fdb, p, True)

    def ports(self):
        """{index: name} of the active ports."""
        cdef Sw *sw = self._sw()
        cdef int p
        return {p: sw.ports[p].name.decode() for p in range(MAX_PORTS) if sw.ports[p].active}

    def port_info(self, int p):
        cdef Port *pt
        with self.lock:             # a port_del() in between would free what it reads
            pt = self._port(p)
            return {"name": pt.name.decode(), "index": p, "ifindex": pt.ifindex,
                    "up": bool(pt.up), "active": bool(pt.active),
                    "xdp_mode": {XDP_MODE_NATIVE: "native", XDP_MODE_SKB: "generic"}.get(
                        pt.attach_mode, "none"),
                    "queues": sum(1 for q in range(self.sw.nworkers) if pt.socks[q] != NULL),
                    "flood_limit": pt.flood_limit, "forward_reserved": bool(pt.forward_reserved),
                    "mtu": pt.mtu,
                    "fastpath_target": not fp_target_reason(self.sw, pt),
                    "fastpath_reason": fp_target_reason(self.sw, pt)}

    def port_prog_id(self, int p):
        """The kernel's id of the XDP program on port p's interface (0 when it has none);
        one program serves every port, so every port has the same."""
        cdef Port *pt = self._port(p)
        return xdp_prog_id(&self.sw.xdp, pt)

    def foreign_xdp(self, int ifindex):
        """The name of an XDP program not pyxsw's attached to an interface, or ''."""
        self._sw()
        return foreign_xdp(ifindex)

    def port_in_dispatcher(self, int p):
        """Does the program libxdp runs on port p's interface still include the switch's?
        For libxdp's multi-program mode, where the attached program is a dispatcher whose id
        changes whenever any program is added or removed.  OSError when it cannot be told."""
        cdef Port *pt = self._port(p)
        return xdp_is_attached(&self.sw.xdp, pt)

    # ------------------------------------------------------------------ counters

    def port_stats(self, int p):
        """Counters of port p summed over workers, with the kernel's socket statistics."""
        cdef Port *pt
        cdef uint64_t sums[PORT_COUNTERS]
        cdef uint64_t c[QUEUE_COUNTERS]
        cdef int q, i, got
        with self.lock:             # a port_del() in between would free what it reads
            pt = self._port(p)
            memset(sums, 0, sizeof(sums))
            xdp = {}
            queues = []
            for q in range(self.sw.nworkers):
                for i in range(PORT_COUNTERS):
                    sums[i] += self.sw.workers[q].st[p].c[i]
                got = port_queue_counters(pt, q, c)
                if got < 0:
                    continue
                qs = _named(_counters.QUEUE, c) if got else {}
                mine = _named(_counters.PORT, self.sw.workers[q].st[p].c)
                queues.append({"queue": q, **{k.name: mine[k.name] for k in _counters.PORT.counters
                                              if k.per_queue}, **qs})
                for k, v in qs.items():
                    xdp[k] = xdp.get(k, 0) + v
            port_prog_counters(self.sw, pt, c)
            xdp.update(_named(_counters.PROG, c))
            sums[PORT_OVERSIZE_DROPPED] += c[PYXSW_PROG_OVERSIZE]   # dropped by the program
            fp_port_counters(self.sw, pt, c)
            fast = _named(_counters.FASTPATH, c)
            # every frame counts, whichever path it took
            sums[PORT_RX_PACKETS] += c[PYXSW_FAST_RX_PACKETS]
            sums[PORT_RX_BYTES] += c[PYXSW_FAST_RX_BYTES]
            sums[PORT_TX_PACKETS] += c[PYXSW_FAST_TX_PACKETS]
            sums[PORT_TX_BYTES] += c[PYXSW_FAST_TX_BYTES]
            out = _named(_counters.PORT, sums)
            out["rx_dropped"] = _counters.port_rx_dropped(out, xdp)
            out = {k.name: out[k.name] for k in _counters.PORT.counters}
            out["xdp"] = xdp
            out["fastpath"] = fast
            out["queues"] = queues
            return out

    def worker_stats(self):
        cdef Sw *sw = self._sw()
        cdef uint64_t c[WORKER_COUNTERS]
        cdef int q
        out = []
        for q in range(sw.nworkers):
            worker_counters(sw.workers[q], c)
            out.append({"queue": q, **_named(_counters.WORKER, c),
                        "mode": _MODE_NAMES[sw.workers[q].mode]})
        return out

    def accounting(self):
        """Where every UMEM frame is.  At rest pool+caches+rings add up to `frames`; a
        shortfall while traffic flows is frames in the kernel or in a worker's hands.  (In
        copy mode a receive that finds the RX ring full leaves its buffer on the kernel's
        free list of that socket until the next frame arrives there: one frame per socket
        can show as in flight at rest after an overload.)"""
        cdef uint64_t c[POOL_COUNTERS]
        with self.lock:             # a port_del() in between would free what it reads
            umem_account(self._sw(), c)
            return _named(_counters.POOL, c)

    def fdb_counters(self):
        cdef uint64_t c[FDB_COUNTERS]
        fdb_counters(&self._sw().fdb, c)
        out = _named(_counters.FDB, c)
        workers = self.worker_stats()
        for k in _counters.FDB.counters:
            if not k.in_c:                      # the workers' learning counters
                out[k.name] = sum(w[k.name] for w in workers)
        return out

    # ------------------------------------------------------------------ FDB

    def fdb_list(self):
        """[(mac, vlan, port index, age seconds, static, in the kernel copy)] of the live
        entries (the age by the later of the two copies' last seen)."""
        cdef Sw *sw = self._sw()
        cdef FdbEntry *e
        cdef uint32_t n
        cdef uint32_t now = now_s()
        with self.lock:
            e = fdb_snapshot(&sw.fdb, now, &n)
            if e != NULL:
                with nogil:    # without the FDB's lock: learning goes on meanwhile
                    kfdb_mark(&sw.fdb, e, n, now)
        return fdb_entries_list(e, n, True)

    def fdb_add(self, str mac, int vlan, int port):
        """Add (or turn into) a static entry."""
        cdef Sw *sw = self._sw()
        cdef uint64_t key = mac_to_int(mac) | (<uint64_t>vlan << 48)
        cdef int r
        if not 0 <= vlan < 4096:
            raise ValueError(f"vlan must be 0..4095: {vlan}")
        if key & 1:
            raise ValueError(f"{mac} is a multicast address")
        if not (0 <= port < MAX_PORTS) or not sw.ports[port].active:
            raise KeyError(port)
        with self.lock:
            r = fdb_add_static(&sw.fdb, key, port)
        if r == FDB_R_FULL:
            raise OSError(_errno.ENOSPC, f"the FDB is full ({sw.fdb.capacity} entries)")
        return r == FDB_R_NEW

    def fdb_del(self, str mac, int vlan=0):
        cdef Sw *sw = self._sw()
        cdef uint64_t key = mac_to_int(mac) | (<uint64_t>vlan << 48)
        with self.lock:
            return fdb_remove(&sw.fdb, key)

    def fdb_flush(self, int port=-1, bint static=False, int vlan=-1):
        """Remove learned entries (and static ones too if `static`), of one port or all, of
        one VLAN or all."""
        cdef Sw *sw = self._sw()
        with self.lock:
            return fdb_flush(&sw.fdb, port, static, vlan)

    def fdb_flush_not_carried(self, int p):
        """Remove port p's learned entries in VLANs it no longer carries (static ones stay,
        unused, until removed or the port carries their VLAN again)."""
        cdef Sw *sw = self._sw()
        cdef Port *pt
        with self.lock:
            pt = self._port(p)
            return fdb_flush(&sw.fdb, p, False, -1, pt.vlans)

    # ------------------------------------------------------------------ VLANs

    def port_set_vlan(self, int p, str mode, int vlan=1, allowed=None, int native=0):
        """Port p's 802.1Q membership.  "access": untagged frames of VLAN `vlan` (1..4094).
        "trunk": tagged frames of the VLANs in `allowed` (None: 1..4094), and untagged ones
        of `native` (0: none; else one of `allowed`).  Workers see it at their next pass;
        entries in VLANs the port leaves stay until fdb_flush_not_carried()."""
        cdef Port *pt
        cdef uint64_t bits[VLAN_WORDS]
        m, untagged = _vlan_membership(mode, vlan, allowed, native, bits)
        with self.lock:
            pt = self._port(p)
            port_vlan_write(self.sw, pt, m, untagged, bits)
            self._publish()

    def port_set_options(self, int p, uint32_t flood_limit, bint forward_reserved):
        """Port p's storm control (flooded frames/s it may cause, 0: no limit) and whether it
        floods reserved link-local frames: written inside the config seqlock, as its VLANs
        are, and seen by the workers at their next pass."""
        cdef Port *pt
        cdef uint32_t seq
        with self.lock:
            pt = self._port(p)
            seq = self.sw.cfg_seq
            pyxsw_store_rel32(&self.sw.cfg_seq, seq + 1)
            pyxsw_fence_seq()
            pt.flood_limit = flood_limit
            pt.forward_reserved = forward_reserved
            pyxsw_store_rel32(&self.sw.cfg_seq, seq + 2)
            self._publish()

    def port_set_segs(self, int p, uint32_t segs):
        """The descriptors a frame sent out of port p may span (zero-copy: its device's
        zc-max-segs; 0: MAX_FRAGS): a longer jumbo frame is dropped there (tx_dropped), which
        the device would take apart without ever completing it."""
        cdef Port *pt
        with self.lock:
            pt = self._port(p)
            pt.max_segs = segs
            self._publish()

    def port_vlan(self, int p):
        """{"vlan_mode", "vlan", "allowed", "native"} of port p (allowed None: all)."""
        cdef Port *pt
        cdef int v
        with self.lock:
            pt = self._port(p)
            if pt.vlan_mode == VLAN_ACCESS:
                return {"vlan_mode": "access", "vlan": pt.untagged, "allowed": None,
                        "native": 0}
            allowed = [v for v in range(_VLAN_MIN, _VLAN_MAX + 1) if port_carries(pt.vlans, v)]
            return {"vlan_mode": "trunk", "vlan": 0,
                    "allowed": None if len(allowed) == _VLAN_MAX - _VLAN_MIN + 1 else allowed,
                    "native": pt.untagged}

    def port_carries(self, int p, int vlan):
        cdef Port *pt
        if not 0 <= vlan < VLAN_IDS:
            return False
        with self.lock:
            pt = self._port(p)
            return bool(port_carries(pt.vlans, vlan))

    def fdb_maintain(self):
        """The sweep: age entries out, and rebuild the table when tombstones pile up.
        Returns the aged entries as [(mac, vlan, port index)].  Runs on the control thread."""
        cdef Sw *sw = self._sw()
        cdef FdbEntry *e
        cdef uint32_t n
        with self.lock:
            e = fdb_age(&sw.fdb, now_s(), &n)
            aged = fdb_entries_list(e, n, False)
            if fdb_rebuild(&sw.fdb):
                self.wait_grace()
                fdb_free_retired(&sw.fdb)
        return aged

    def set_aging(self, uint32_t seconds):
        self._sw().fdb.aging = seconds

    @property
    def aging(self):
        """The FDB's aging time in seconds (0: never)."""
        return self._sw().fdb.aging

    def drain_events(self):
        """FDB events the workers queued: [("learn"|"move", mac, vlan, port, old port)], at
        most a ring's worth per worker, so that workers producing as fast as this takes never
        keep it here.  When events are left, the eventfd is left readable: the caller comes
        back for them after its other work."""
        cdef Sw *sw = self._sw()
        cdef Event buf[64]
        cdef uint32_t n, i, taken
        cdef int q
        cdef bint left = False
        cdef uint64_t one = 1
        out = []
        with self.lock:                     # one consumer per ring
            ev_clear_fd(sw.events_fd)
            for q in range(sw.nworkers):
                n = 64
                taken = 0
                while n == 64 and taken < EV_RING:
                    n = ev_take(&sw.workers[q].events, buf, 64)
                    taken += n
                    out += [ev_fdb_tuple(&buf[i]) for i in range(n)]
                left = left or n == 64
            if left:
                write(sw.events_fd, &one, 8)
        return out

    # ------------------------------------------------------------------ capture and mirrors

    def set_ops(self, ops, uint32_t snaplen=0):
        """What the workers copy (pyxsw.switch keeps the captures and mirrors and says it
        all again whenever they or the ports change): ops = {port index: (tap, mirror_in,
        mirror_out, mirror_dst)}, tap a set of "in"/"out", mirror_in/out sets of the output
        ports' indexes, mirror_dst whether it is a mirror's output; ports left out have
        none.  snaplen: bytes a captured frame keeps at most.  A tap allocates the workers'
        capture rings the first time (MemoryError when it cannot)."""
        cdef Sw *sw = self._sw()
        cdef Port *pt
        cdef int p, q
        cdef uint64_t m
        cdef CapRing *r
        cdef uint32_t slot = (sizeof(CapRec) + max(sw.umem.frame_size, umem_max_frame(&sw.umem))
                              + 63) & ~(<uint32_t>63)
        cdef uint32_t seq
        cdef int taps[MAX_PORTS]
        cdef int dsts[MAX_PORTS]
        cdef uint64_t mins[MAX_PORTS]
        cdef uint64_t mouts[MAX_PORTS]
        for p, (tap, mi, mo, dst) in ops.items():
            if not (0 <= p < MAX_PORTS) or not set(tap) <= {"in", "out"}:
                raise ValueError(f"bad operations for port {p}: {tap!r}")
            for o in (*mi, *mo):
                if not (0 <= o < MAX_PORTS) or o == p:
                    raise ValueError(f"port {p} cannot mirror to port {o}")
        with self.lock:
            if any(tap for tap, _, _, _ in ops.values()):
                for q in range(sw.nworkers):
                    if sw.workers[q].cap != NULL:
                        continue
                    r = <CapRing *>calloc(1, sizeof(CapRing))
                    if r != NULL:
                        r.recs = <uint8_t *>malloc(<size_t>CAP_RING * slot)
                    if r == NULL or r.recs == NULL:
                        free(r)
                        raise MemoryError("no memory for the capture rings")
                    r.slot = slot
                    sw.workers[q].cap = r
            # every port's new settings first, then written inside the config seqlock: a
            # worker copying the ports meanwhile copies again, never a mix of old and new
            for p in range(MAX_PORTS):
                tap, mi, mo, dst = ops.get(p, ((), (), (), False))
                taps[p] = (TAP_IN if "in" in tap else 0) | (TAP_OUT if "out" in tap else 0)
                m = 0
                for o in mi:
                    m |= (<uint64_t>1) << o
                mins[p] = m
                m = 0
                for o in mo:
                    m |= (<uint64_t>1) << o
                mouts[p] = m
                dsts[p] = 1 if dst else 0
            seq = sw.cfg_seq
            pyxsw_store_rel32(&sw.cfg_seq, seq + 1)
            pyxsw_fence_seq()
            for p in range(MAX_PORTS):
                pt = &sw.ports[p]
                if pt.kind == KIND_NONE:
                    continue
                pt.tap = taps[p]
                pt.mirror_in = mins[p]
                pt.mirror_out = mouts[p]
                pt.mirror_dst = dsts[p]
            sw.cap_snap = snaplen
            pyxsw_store_rel32(&sw.cfg_seq, seq + 2)
            self._publish()

    def drain_capture(self):
        """Frames the workers captured: [(time ns, port index, "in"|"out", length, bytes)],
        at most a ring's worth per worker (the eventfd is left readable when more wait)."""
        cdef Sw *sw = self._sw()
        cdef CapRing *r
        cdef CapRec *rec
        cdef uint32_t t, h
        cdef int q
        cdef bint left = False
        cdef uint64_t one = 1
        out = []
        with self.lock:                     # one consumer per ring
            for q in range(sw.nworkers):
                r = sw.workers[q].cap
                if r == NULL:
                    continue
                t = r.tail
                h = pyxsw_load_acq32(&r.head)
                while t != h:
                    rec = <CapRec *>(r.recs + <uint64_t>(t & (CAP_RING - 1)) * r.slot)
                    out.append((rec.ts_ns, rec.port, "in" if rec.dir == TAP_IN else "out",
                                rec.len, (<char *>rec + sizeof(CapRec))[:rec.caplen]))
                    t += 1
                pyxsw_store_rel32(&r.tail, t)
                pyxsw_fence_seq()
                left = left or pyxsw_load_acq32(&r.head) != t
            if left:
                write(sw.events_fd, &one, 8)
        return out

    # ------------------------------------------------------------------ tests

    def decide(self, const uint8_t[:] frame, int in_port, now=None):
        """The worker's forwarding decision (learning included) on one frame, run on worker 0's
        state; for tests.  Returns an egress port index or FORWARD_FLOOD/RUNT/FILTER/
        RESERVED."""
        cdef Sw *sw = self._sw()
        cdef Worker *w = sw.workers[0]
        cdef uint32_t t = now_s() if now is None else now
        cdef const uint8_t *ptr = &frame[0] if frame.shape[0] else <const uint8_t *>b""
        cdef int r
        cdef Frame f
        if pyxsw_load_int(&w.running) and self.has_umem and sw.umem.nsocks:
            raise RuntimeError("decide() is for a Datapath whose workers do not run")
        if w.gen != sw.gen:
            worker_apply_gen(w)
        f.vlan = 0
        r = decide(w, sw.fdb.tab, ptr, frame.shape[0], in_port, t, &f)
        ev_flush(&w.events)
        self.last_vlan = f.vlan
        return r


    def flush_chains(self, chains, uint32_t room, uint32_t ring=64, uint32_t segs=0):
        """Worker 0's TX flush on frames of len(chains) descriptors each (chains[i] of them),
        staged on port 0 with a TX ring in memory (not the kernel's) of `ring` slots,
        `room` of them free, port 0 taking frames of `segs` descriptors at most (0: any);
        for tests of "a whole frame or none".  Returns (the options
        of the descriptors written, frames the port counted sent, frames it counted
        dropped); every frame taken is back in the worker's cache or on the ring."""
        cdef Sw *sw = self._sw()
        cdef Worker *w = sw.workers[0]
        cdef Sock s
        cdef uint32_t prod = ring - room, cons = 0, flags = 0, j, k
        cdef uint64_t a[MAX_FRAGS]
        cdef uint32_t l[MAX_FRAGS]
        cdef xdp_desc *descs
        if self.has_umem or room > ring or ring & (ring - 1) or sum(chains) > TX_SLOTS \
                or not all(0 < c <= MAX_FRAGS for c in chains):
            raise ValueError("flush_chains() takes a Datapath(umem=False) and chains that fit")
        descs = <xdp_desc *>calloc(ring, sizeof(xdp_desc))
        memset(&s, 0, sizeof(s))
        s.tx.size = ring
        s.tx.mask = ring - 1
        s.tx.producer = &prod
        s.tx.consumer = &cons
        s.tx.cached_prod = prod
        s.tx.cached_cons = cons + ring
        s.tx.flags = &flags
        s.tx.ring = descs
        s.fd = -1
        w.sock[0] = &s
        w.maxsegs[0] = segs if 0 < segs < MAX_FRAGS else MAX_FRAGS
        before = (w.st[0].c[PORT_TX_PACKETS], w.st[0].c[PORT_TX_DROPPED])
        try:
            for k in chains:
                for j in range(k):
                    a[j] = cache_take(w)
                    l[j] = 100
                stage(w, 0, a, l, k)
            flush_tx(w)
            written = [descs[(ring - room + j) & (ring - 1)].options for j in range(prod - (ring - room))]
            for j in range(ring - room, prod):      # the ring's frames back, as a completion
                cache_put(w, descs[j & (ring - 1)].addr)
            return (written, w.st[0].c[PORT_TX_PACKETS] - before[0],
                    w.st[0].c[PORT_TX_DROPPED] - before[1])
        finally:
            w.sock[0] = NULL
            w.maxsegs[0] = MAX_FRAGS
            free(descs)
