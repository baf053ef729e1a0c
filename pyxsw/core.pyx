# Core: the Python face of the C switch.  pyxsw.switch.Switch drives it; tests drive it
# directly too (Core(umem=False) needs no privileges: the FDB and the forwarding decision
# on "virtual" ports without sockets).
#
# Threads: each worker runs Core.run_worker(q) in its own thread with the GIL released.
# Every other method runs on the control thread and changes what workers see only through
# atomics, the generation counter and grace periods (wait_grace()).

import threading as _threading

from pyxsw import counters as _counters

_MODES = {"poll": MODE_POLL, "interrupt": MODE_INTERRUPT, "adaptive": MODE_ADAPTIVE}
_MODE_NAMES = {v: k for k, v in _MODES.items()}
FORWARD_FLOOD = FWD_FLOOD
FORWARD_RUNT = FWD_RUNT
FORWARD_FILTER = FWD_FILTER
FORWARD_RESERVED = FWD_RESERVED


def mac_to_int(str mac):
    """'aa:bb:cc:dd:ee:ff' -> the FDB's key form (wire bytes read little-endian)."""
    parts = mac.replace("-", ":").split(":")
    if len(parts) != 6 or not all(len(p) == 2 for p in parts):
        raise ValueError(f"not a MAC address: {mac!r}")
    try:
        return int.from_bytes(bytes(int(p, 16) for p in parts), "little")
    except ValueError:
        raise ValueError(f"not a MAC address: {mac!r}") from None


def int_to_mac(uint64_t key):
    return (key & MAC_MASK).to_bytes(6, "little").hex(":")


# What Core() accepts at most, for pyxsw.config to check the same bounds first (a test
# compares them).  Counts the C side keeps in 32 bits are bounded by that.
LIMITS = {"frames": 0xffffffff, "ring_size": MAX_RING_SIZE, "batch": MAX_BATCH,
          "workers": MAX_WORKERS, "ports": MAX_PORTS, "capacity": MAX_FDB_CAPACITY,
          "port_limit": 0xffffffff, "aging": 0xffffffff, "flood_limit": 0xffffffff}


cdef dict _named(family, const uint64_t *c):
    """{name: value} of a family's C-side counters (its enum's order is the table's)."""
    return {k.name: c[i] for i, k in enumerate(family.in_c())}


def _param_error(exc, str param):
    """exc, marked with the Core() parameter at fault: pyxsw.switch names its config key."""
    exc.param = param
    return exc


def _check_arg(str name, value, lo, hi):
    # bool is an int to Python, never a size to a caller
    if not isinstance(value, int) or isinstance(value, bool):
        raise _param_error(ValueError(f"{name} must be an integer, got {type(value).__name__}"),
                           name)
    if not lo <= value <= hi:
        raise _param_error(ValueError(f"{name} must be {lo}..{hi}, got {value}"), name)


def size_text(n):
    """A byte count for people: '512 bytes', '1.5 MiB', '8 GiB'."""
    if n < 1024:
        return f"{n} bytes"
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        n /= 1024
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if n == int(n) else f"{n:.1f} {unit}"


def fdb_memory(capacity):
    """Bytes the FDB of `capacity` entries may hold at once: two tables while a rebuild
    replaces one (the old waits for a grace period)."""
    if not 1 <= capacity <= MAX_FDB_CAPACITY:
        raise _param_error(ValueError(f"capacity must be 1..{MAX_FDB_CAPACITY}, got {capacity}"),
                           "capacity")
    return 2 * fdb_table_slots(capacity) * (sizeof(FdbSlot) + sizeof(uint32_t))


cdef class Core:
    cdef Sw *sw
    cdef bint has_umem
    cdef int nsocks             # sockets open on the UMEM
    # libxdp makes the first socket on a UMEM out of the UMEM's own file descriptor, which
    # stays bound to its (interface, queue) until the UMEM goes.  When that socket's port
    # is deleted, the socket is kept here, idle and empty, and taken again if the same
    # interface comes back.
    cdef Sock *owner
    cdef int owner_ifindex
    cdef int owner_q
    cdef bint owner_retired
    cdef public int anchor_ifindex      # the UMEM's anchor socket's interface, if in our namespace
    cdef int owner_ifindex_lo
    cdef public str anchor              # where the UMEM's first socket is bound, in words
    cdef public str zero_copy   # "auto" | "on" | "off" as configured
    cdef public str xdp_mode
    cdef public object tx_budget        # frames per TX kick, or None where not settable
    cdef public object busy_poll        # True when the kernel took the busy-poll options
    cdef public bint zero_copy_active
    cdef object lock            # serializes control-path calls

    def __cinit__(self, *, frames=16384, frame_size=2048, ring_size=2048, batch=64,
                  workers=1, capacity=65536, port_limit=0, aging=300,
                  str zero_copy="auto", str xdp_mode="auto", str mode="poll", bint umem=True):
        # Sizes are checked before anything is allocated, and against what the C side holds:
        # a bad one is a ValueError naming its parameter (see _param_error), never an
        # OverflowError from the conversion or a hang in the sizing.
        cdef int q
        cdef Worker *w
        _check_arg("frames", frames, 1, LIMITS["frames"])
        if type(frame_size) is not int or frame_size not in (2048, 4096):
            raise _param_error(ValueError(f"frame_size must be 2048 or 4096, got {frame_size!r}"),
                               "frame_size")
        _check_arg("ring_size", ring_size, 1, MAX_RING_SIZE)
        if ring_size & (ring_size - 1):
            raise _param_error(ValueError(f"ring_size must be a power of two, got {ring_size}"),
                               "ring_size")
        _check_arg("batch", batch, 1, min(MAX_BATCH, ring_size))
        _check_arg("workers", workers, 1, MAX_WORKERS)
        _check_arg("capacity", capacity, 1, MAX_FDB_CAPACITY)
        _check_arg("port_limit", port_limit, 0, LIMITS["port_limit"])
        _check_arg("aging", aging, 0, LIMITS["aging"])
        if mode not in _MODES:
            raise _param_error(ValueError(f"mode must be one of {', '.join(_MODES)}"), "mode")
        self.lock = _threading.RLock()
        self.zero_copy = zero_copy
        self.xdp_mode = xdp_mode
        self.tx_budget = None
        self.anchor = ""
        self.busy_poll = None
        self.sw = <Sw *>calloc(1, sizeof(Sw))
        if self.sw == NULL:
            raise MemoryError("cannot allocate the switch's state")
        sw = self.sw
        sw.frame_size = frame_size
        sw.frame_mask = ~(<uint64_t>sw.frame_size - 1)
        sw.nframes = frames
        sw.ring_size = ring_size
        sw.batch = batch
        sw.fill_target = ring_size
        sw.nworkers = workers
        if pool_init(&sw.pool, sw.nframes, sw.frame_size):
            raise _param_error(MemoryError(f"cannot allocate the frame pool of {frames} frames "
                                           f"({size_text(8 * frames)})"), "frames")
        if fdb_init(&sw.fdb, capacity, port_limit, aging):
            raise _param_error(MemoryError(f"cannot allocate an FDB of {capacity} entries "
                                           f"({size_text(fdb_memory(capacity) // 2)})"), "capacity")
        for q in range(workers):
            w = <Worker *>calloc(1, sizeof(Worker))
            if w == NULL:
                raise _param_error(MemoryError(f"cannot allocate the state of {workers} workers"),
                                   "workers")
            sw.workers[q] = w
            w.sw = sw
            w.q = q
            w.running = 1
            w.parked = 1            # not running yet: holds nothing
            w.mode = _MODES[mode]
            w.efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)
            w.gen = <uint32_t>-1
            w.cache_max = max(2 * CACHE_CHUNK, min(CACHE_SIZE, frames // (4 * workers)))
        if umem:
            sw.area_size = <uint64_t>sw.nframes * sw.frame_size
            sw.area = <uint8_t *>umem_area_new(sw.area_size)
            if sw.area == NULL:
                raise _param_error(MemoryError(f"cannot map a UMEM of {frames} frames x "
                                               f"{frame_size} bytes ({size_text(sw.area_size)})"),
                                   "frames")
            try:
                self._umem_create()
            except OSError as e:
                raise _param_error(e, "frames")
            self.has_umem = True

    cdef _umem_create(self):
        cdef xsk_umem_config ucfg
        cdef Sw *sw = self.sw
        ucfg.fill_size = sw.ring_size
        ucfg.comp_size = sw.ring_size
        ucfg.frame_size = sw.frame_size
        ucfg.frame_headroom = 0
        ucfg.flags = 0
        rc = xsk_umem__create(&sw.umem, sw.area, sw.area_size, &sw.umem_fill, &sw.umem_comp, &ucfg)
        if rc:
            sw.umem = NULL
            raise OSError(-rc, f"cannot register the UMEM ({sw.area_size >> 20} MiB): "
                               f"{_os.strerror(-rc)} (needs root: CAP_NET_RAW, CAP_IPC_LOCK)")

    cdef Sw *_sw(self) except NULL:
        """The switch's C state; RuntimeError, not a crash, once close() freed it."""
        if self.sw == NULL:
            raise RuntimeError("the switch's core is closed")
        return self.sw

    cdef Port *_port(self, int p) except NULL:
        if not 0 <= p < MAX_PORTS:
            raise KeyError(p)
        return &self._sw().ports[p]

    def __dealloc__(self):
        self._free()

    cdef _free(self):
        cdef int q
        cdef Sw *sw = self.sw
        if sw == NULL:
            return
        for q in range(MAX_PORTS):
            if sw.ports[q].ifindex:
                self._port_teardown(q)
        if self.owner != NULL:
            xsk_socket__delete(self.owner.xsk)
            free(self.owner)
            self.owner = NULL
        if sw.umem != NULL:
            xsk_umem__delete(sw.umem)
        if sw.area != NULL:
            munmap(sw.area, sw.area_size)
        for q in range(sw.nworkers):
            if sw.workers[q] != NULL:
                close(sw.workers[q].efd)
                free(sw.workers[q])
        fdb_destroy(&sw.fdb)
        pool_destroy(&sw.pool)
        free(sw)
        self.sw = NULL

    def close(self):
        """Free everything: ports torn down, UMEM released.  Workers must have stopped."""
        with self.lock:
            self._free()

    # ------------------------------------------------------------------ workers

    @property
    def workers(self):
        self._sw()
        return self.sw.nworkers

    def run_worker(self, int q):
        """Worker q's loop, in the calling thread, with the GIL released, until stop()."""
        self._sw()
        cdef Worker *w = self.sw.workers[q]
        pyxsw_store_int(&w.parked, 0)
        with nogil:
            worker_loop(w)

    cdef void _wake(self, int q) noexcept:
        cdef uint64_t one = 1
        write(self.sw.workers[q].efd, &one, 8)

    def stop(self):
        """Ask every worker loop to return (they finish their current pass)."""
        self._sw()
        cdef int q
        for q in range(self.sw.nworkers):
            pyxsw_store_int(&self.sw.workers[q].running, 0)
            self._wake(q)

    def wait_grace(self, double timeout=2.0):
        """Wait until every worker has passed a quiescent point since the call.

        After it returns, no worker holds a pointer it loaded before the call: an FDB table
        or a socket unpublished before calling can be freed."""
        self._sw()
        cdef int q
        cdef Worker *w
        pyxsw_fence_seq()
        snap = [pyxsw_load64(&self.sw.workers[q].epoch) for q in range(self.sw.nworkers)]
        deadline = _time.monotonic() + timeout
        pending = set(range(self.sw.nworkers))
        while pending:
            for q in list(pending):
                w = self.sw.workers[q]
                if (pyxsw_load_int(&w.parked) or not pyxsw_load_int(&w.running)
                        or pyxsw_load64(&w.epoch) != snap[q]):
                    pending.discard(q)
            if pending:
                if _time.monotonic() > deadline:
                    raise TimeoutError(f"workers {sorted(pending)} did not pass a grace period")
                _time.sleep(0.0002)

    cdef void _publish(self) noexcept:
        """Ports changed: bump the generation and wake sleeping workers to see it."""
        cdef int q
        pyxsw_fence_seq()
        pyxsw_store_rel32(&self.sw.gen, self.sw.gen + 1)
        for q in range(self.sw.nworkers):
            self._wake(q)

    def set_mode(self, str mode):
        self._sw()
        cdef int q, p, m
        if mode not in _MODES:
            raise ValueError(f"mode must be one of {', '.join(_MODES)}")
        m = _MODES[mode]
        with self.lock:
            for p in range(MAX_PORTS):
                if self.sw.ports[p].ifindex:
                    self._port_sockopts(p, m)
            for q in range(self.sw.nworkers):
                pyxsw_store_int(&self.sw.workers[q].mode, m)
                self._wake(q)

    @property
    def mode(self):
        self._sw()
        return _MODE_NAMES[pyxsw_load_int(&self.sw.workers[0].mode)]

    # ------------------------------------------------------------------ ports

    cdef int _free_index(self) except -1:
        cdef int p
        for p in range(MAX_PORTS):
            if self.sw.ports[p].ifindex == 0 and not self.sw.ports[p].active:
                return p
        raise OSError(_errno.ENOSPC, f"at most {MAX_PORTS} ports")

    cdef void _port_sockopts(self, int p, int mode) noexcept:
        cdef Port *pt = &self.sw.ports[p]
        cdef int q, rc
        for q in range(self.sw.nworkers):
            if pt.socks[q] != NULL:
                rc = sock_busy_poll(pt.socks[q], mode == MODE_POLL, self.sw.batch)
                if mode == MODE_POLL:
                    self.busy_poll = rc == 0

    cdef uint32_t _fill_target_for(self, int nsocks):
        cdef uint32_t t
        if nsocks == 0:
            return self.sw.ring_size
        # Fill rings may hold half of the UMEM; caches and frames in flight use the rest.
        t = self.sw.nframes // 2 // nsocks
        return min(t, self.sw.ring_size)

    def port_add(self, str name, int expect_ifindex=0, *, bint up=True, uint32_t flood_limit=0,
                 bint forward_reserved=False):
        """Make an interface a switch port; returns (index, note).  The caller has made sure
        no other live switch uses the interface: a pyxsw program found on it is replaced.
        With `expect_ifindex`, the name must still be that interface (not one made again
        under it since the caller looked)."""
        self._sw()
        cdef int p, q, flags, rc
        cdef Port *pt
        cdef Sock *s
        cdef uint32_t key, fd, target
        cdef bytes bname = name.encode()
        if not self.has_umem:
            raise RuntimeError("this Core has no UMEM: use add_virtual_port()")
        if not 0 < len(bname) < 16:
            raise ValueError(f"not an interface name: {name!r}")
        with self.lock:
            ifindex = if_nametoindex(bname)
            if ifindex == 0:
                raise OSError(_errno.ENODEV, f"{name}: no such interface")
            if expect_ifindex and ifindex != expect_ifindex:
                raise OSError(_errno.EAGAIN, f"{name}: the interface changed (ifindex "
                                             f"{expect_ifindex}, now {ifindex}); try again")
            # Two sockets of one UMEM on one (interface, queue) share its fill and completion
            # rings, which libxdp then does not hand to the second: refuse, never crash.
            if ifindex == self.anchor_ifindex:
                raise OSError(_errno.EBUSY, f"{name}: the switch itself uses this interface "
                                            f"(the UMEM's anchor socket)")
            for p in range(MAX_PORTS):
                if self.sw.ports[p].ifindex == ifindex:
                    raise OSError(_errno.EEXIST, f"{name}: already a switch port "
                                                 f"(as {self.sw.ports[p].name.decode()})")
            target = self._fill_target_for(self.nsocks + self.sw.nworkers)
            if target < self.sw.batch:
                need = 2 * self.sw.batch * (self.nsocks + self.sw.nworkers)
                raise _param_error(ValueError(
                    f"frames = {self.sw.nframes} is too few for {self.nsocks + self.sw.nworkers} "
                    f"sockets (ports x queues): need at least {need}"), "frames")
            p = self._free_index()
            pt = &self.sw.ports[p]
            memset(pt, 0, sizeof(Port))
            strncpy(pt.name, bname, 15)
            pt.ifindex = ifindex
            pt.xsks_map_fd = -1
            pt.stats_map_fd = -1
            try:
                note = remove_stale_xdp(ifindex, name)
                attach_xdp(pt, self.xdp_mode)
                for q in range(self.sw.nworkers):
                    pt.socks[q] = self._sock_open(pt, q)
                    self.nsocks += 1
                    s = pt.socks[q]
                    if self.tx_budget is None or self.tx_budget:
                        self.tx_budget = self.sw.ring_size if sock_tx_budget(s, self.sw.ring_size) == 0 else 0
                    key = q
                    fd = s.fd
                    rc = bpf_map_update_elem(pt.xsks_map_fd, &key, &fd, 0)
                    if rc:
                        raise OSError(-rc, f"{name}: cannot insert queue {q} in xsks_map")
                self._port_sockopts(p, pyxsw_load_int(&self.sw.workers[0].mode))
            except BaseException:
                self._port_teardown(p)
                raise
            self.sw.fill_target = target
            pt.flood_limit = flood_limit
            pt.forward_reserved = forward_reserved
            pyxsw_store_int(&pt.up, 1 if up else 0)
            pyxsw_store_int(&pt.active, 1)
            self._publish()
            return p, note

    cdef Sock *_sock_open(self, Port *pt, int q) except NULL:
        cdef int flags = XDP_USE_NEED_WAKEUP
        cdef Sock *s
        if self.owner_retired and self.owner_ifindex == pt.ifindex and self.owner_q == q:
            self.owner_retired = False          # the interface is back: its socket too
            return self.owner
        if self.owner == NULL:
            # The first socket's bind flags decide copy or zero-copy for every socket that
            # shares the UMEM.  A failed first bind leaves libxdp's UMEM unusable, so "auto"
            # probes zero-copy on a scratch UMEM instead of trying it on the real one.
            zc = self.zero_copy == "on" or (self.zero_copy == "auto" and _probe_zero_copy(pt.name, q))
            flags |= XDP_ZEROCOPY if zc else XDP_COPY
            if not zc and self._anchor_on_loopback(flags):
                return sock_create(self.sw, pt, q, flags)
            try:
                s = sock_create(self.sw, pt, q, flags)
            except OSError:
                self._umem_reset()
                raise
            self.zero_copy_active = sock_zero_copy(s)
            self.owner = s
            self.owner_ifindex = pt.ifindex
            self.owner_q = q
            self.anchor = f"{pt.name.decode()} queue {q} (the first port's socket)"
            return s
        try:
            return sock_create(self.sw, pt, q, flags)
        except OSError as e:
            if e.errno == _errno.EBADF:
                # The kernel shares a UMEM through its first socket, which must stay bound.
                raise OSError(e.errno, f"{pt.name.decode()}: cannot share the UMEM: the interface "
                                       f"of its first socket was deleted; restart the switch "
                                       f"to add ports") from None
            raise

    cdef bint _anchor_on_loopback(self, int flags) except *:
        """In copy mode, make the UMEM's first socket on a loopback interface, where it
        receives nothing and holds no frames, so that every port's interface can come and go.

        First the lo of a network namespace of the switch's own, made for it: no other switch
        can have taken it, the host's lo is never touched, and the kernel removes it with the
        switch's last socket however the process ends.  Then (without the privilege to make a
        namespace) the host's lo.  False, and the UMEM as it was, when that is taken too."""
        result = []
        t = _threading.Thread(target=_anchor_thread, args=(self, flags, result),
                              name="pyxsw-anchor")
        t.start()
        t.join()
        if result and result[0] is None:
            self.anchor = "lo of the switch's own network namespace"
            return True
        self._umem_reset()              # back in this namespace
        if self._anchor_here(flags):
            self.anchor_ifindex = self.owner_ifindex_lo
            self.anchor = f"lo (the switch's own namespace failed: {result[0] if result else '?'})"
            return True
        return False

    cdef _anchor_in_own_netns(self, int flags, list result):
        """Thread body: a new network namespace for this thread alone, the UMEM made again in
        it (libxdp's first socket is the UMEM's own descriptor, bound in the namespace it was
        made in), and that socket bound to the namespace's lo.  Sockets on the ports, made in
        the switch's namespace, share the UMEM across namespaces."""
        if unshare(CLONE_NEWNET) != 0:
            result.append(_os.strerror(errno))
            return
        try:
            self._umem_reset()
            result.append(None if self._anchor_here(flags) else "no lo there")
        except OSError as e:
            result.append(str(e))

    cdef bint _anchor_here(self, int flags) except *:
        """The UMEM's first socket on lo of the calling thread's namespace, or False."""
        cdef Port lo
        memset(&lo, 0, sizeof(Port))
        strncpy(lo.name, b"lo", 15)
        lo.ifindex = if_nametoindex(b"lo")
        if lo.ifindex == 0:
            return False
        try:
            self.owner = sock_create(self.sw, &lo, 0, flags)
        except OSError:
            self._umem_reset()
            return False
        self.owner_ifindex = -1         # on no port: never retired, never reused
        self.owner_ifindex_lo = lo.ifindex
        self.zero_copy_active = False
        return True

    cdef _umem_reset(self):
        if self.sw.umem != NULL:
            xsk_umem__delete(self.sw.umem)
            self.sw.umem = NULL
        self._umem_create()

    def add_virtual_port(self, str name, bint up=True, uint32_t flood_limit=0,
                         bint forward_reserved=False):
        """A port with no interface, for tests of the forwarding decision without root."""
        self._sw()
        cdef int p
        cdef Port *pt
        with self.lock:
            p = self._free_index()
            pt = &self.sw.ports[p]
            memset(pt, 0, sizeof(Port))
            strncpy(pt.name, name.encode(), 15)
            pt.flood_limit = flood_limit
            pt.forward_reserved = forward_reserved
            pt.up = 1 if up else 0
            pt.active = 1
            self._publish()
            return p

    def set_port_up(self, int p, bint up):
        """Link state: a down port leaves the flood set and is no unicast destination."""
        cdef Port *pt = self._port(p)
        with self.lock:
            pyxsw_store_int(&pt.up, 1 if up else 0)
            self._publish()

    def port_del(self, int p):
        """Stop switching on port p: sockets closed, frames reclaimed, XDP detached, FDB flushed."""
        self._sw()
        with self.lock:
            if not (0 <= p < MAX_PORTS) or not self.sw.ports[p].active:
                raise KeyError(p)
            pyxsw_store_int(&self.sw.ports[p].active, 0)
            pyxsw_store_int(&self.sw.ports[p].up, 0)
            self._publish()
            self.wait_grace()
            self._port_teardown(p)
            self.sw.fill_target = self._fill_target_for(self.nsocks)
            self.fdb_flush(p, True)

    cdef void _port_teardown(self, int p) noexcept:
        cdef Port *pt = &self.sw.ports[p]
        cdef uint32_t key
        cdef int q
        for q in range(self.sw.nworkers):
            if pt.socks[q] != NULL and pt.xsks_map_fd >= 0:
                key = q
                bpf_map_delete_elem(pt.xsks_map_fd, &key)
        detach_xdp(pt)
        _time.sleep(0.005)      # frames already redirected, or sent and not yet completed
        for q in range(self.sw.nworkers):
            if pt.socks[q] != NULL:
                sock_reclaim(self.sw, pt.socks[q], pt.socks[q] != self.owner)
                if pt.socks[q] == self.owner:
                    self.owner_retired = True   # kept: see `owner`
                else:
                    xsk_socket__delete(pt.socks[q].xsk)
                    free(pt.socks[q])
                pt.socks[q] = NULL
                self.nsocks -= 1
        pt.active = 0
        pt.up = 0
        pt.ifindex = 0
        pt.name[0] = 0

    def ports(self):
        """{index: name} of the active ports."""
        self._sw()
        cdef int p
        return {p: self.sw.ports[p].name.decode() for p in range(MAX_PORTS)
                if self.sw.ports[p].active}

    def port_info(self, int p):
        cdef Port *pt = self._port(p)
        return {"name": pt.name.decode(), "index": p, "ifindex": pt.ifindex,
                "up": bool(pt.up), "active": bool(pt.active),
                "xdp_mode": {XDP_MODE_NATIVE: "native", XDP_MODE_SKB: "generic"}.get(pt.attach_mode, "none")
                            if pt.prog != NULL else "none",
                "queues": sum(1 for q in range(self.sw.nworkers) if pt.socks[q] != NULL),
                "flood_limit": pt.flood_limit, "forward_reserved": bool(pt.forward_reserved)}

    def port_prog_id(self, int p):
        """The kernel's id of port p's XDP program (0 when it has none)."""
        self._sw()
        cdef Port *pt = self._port(p)
        return xdp_program__id(pt.prog) if pt.prog != NULL else 0

    def foreign_xdp(self, int ifindex):
        """The name of an XDP program not pyxsw's attached to an interface, or ''."""
        self._sw()
        return foreign_xdp(ifindex)

    def port_in_dispatcher(self, int p):
        """Does the program libxdp runs on port p's interface still include port p's program?
        For libxdp's multi-program mode, where the attached program is a dispatcher whose id
        changes whenever any program is added or removed.  OSError when it cannot be told."""
        self._sw()
        return prog_is_attached(self._port(p))

    def port_stats(self, int p):
        """Counters of port p summed over workers, with the kernel's socket statistics."""
        cdef Port *pt = self._port(p)
        cdef uint64_t sums[PORT_COUNTERS]
        cdef uint64_t qc[QUEUE_COUNTERS]
        cdef uint64_t prog[PROG_COUNTERS]
        cdef int q, i
        memset(sums, 0, sizeof(sums))
        for q in range(self.sw.nworkers):
            for i in range(PORT_COUNTERS):
                sums[i] += self.sw.workers[q].st[p].c[i]
        out = _named(_counters.PORT, sums)
        xdp = {}
        queues = []
        for q in range(self.sw.nworkers):
            if pt.socks[q] != NULL:
                qs = _named(_counters.QUEUE, qc) if sock_stats(pt.socks[q], qc) else {}
                per_q = _named(_counters.PORT, self.sw.workers[q].st[p].c)
                queues.append({"queue": q, **{c.name: per_q[c.name] for c in _counters.PORT.counters
                                              if c.per_queue}, **qs})
                for k, v in qs.items():
                    xdp[k] = xdp.get(k, 0) + v
        xdp_prog_stats(pt, prog)
        xdp.update(_named(_counters.PROG, prog))
        out["rx_dropped"] = _counters.port_rx_dropped(out, xdp)
        out = {c.name: out[c.name] for c in _counters.PORT.counters}
        out["xdp"] = xdp
        out["queues"] = queues
        return out

    def worker_stats(self):
        self._sw()
        cdef Worker *w
        cdef int q
        cdef uint64_t c[WORKER_COUNTERS]
        out = []
        for q in range(self.sw.nworkers):
            w = self.sw.workers[q]
            memcpy(c, w.c, sizeof(c))
            c[WORKER_CACHE] = w.ncache
            out.append({"queue": q, **_named(_counters.WORKER, c), "mode": _MODE_NAMES[w.mode]})
        return out

    def accounting(self):
        """Where every UMEM frame is.  At rest pool+caches+rings add up to `frames`; a
        shortfall while traffic flows is frames in the kernel or in a worker's hands.  (In
        copy mode a receive that finds the RX ring full leaves its buffer on the kernel's
        free list of that socket until the next frame arrives there: one frame per socket
        can show as in flight at rest after an overload.)"""
        self._sw()
        cdef int p, q
        cdef uint64_t a[POOL_COUNTERS]
        cdef uint64_t held[4]               # fill, RX, TX, completion rings
        memset(held, 0, sizeof(held))
        memset(a, 0, sizeof(a))
        pthread_mutex_lock(&self.sw.pool.lock)
        a[POOL_POOL] = self.sw.pool.n
        pthread_mutex_unlock(&self.sw.pool.lock)
        for q in range(self.sw.nworkers):
            a[POOL_CACHES] += self.sw.workers[q].ncache
        for p in range(MAX_PORTS):
            for q in range(self.sw.nworkers):
                if self.sw.ports[p].socks[q] != NULL:
                    sock_held(self.sw.ports[p].socks[q], held)
        if self.owner_retired:
            sock_held(self.owner, held)
        a[POOL_FRAMES] = self.sw.nframes
        a[POOL_FILL], a[POOL_RX], a[POOL_TX], a[POOL_COMPLETION] = held[0], held[1], held[2], held[3]
        a[POOL_PLACED] = (a[POOL_POOL] + a[POOL_CACHES] + a[POOL_FILL] + a[POOL_RX] + a[POOL_TX]
                          + a[POOL_COMPLETION])
        a[POOL_IN_FLIGHT] = a[POOL_FRAMES] - a[POOL_PLACED]
        a[POOL_FILL_TARGET] = self.sw.fill_target
        return _named(_counters.POOL, a)

    # ------------------------------------------------------------------ FDB

    def fdb_list(self):
        """[(mac, vlan, port index, age seconds, static)] of the live entries."""
        self._sw()
        cdef Fdb *f = &self.sw.fdb
        cdef FdbTable *t
        cdef FdbSlot *s
        cdef uint32_t i, now = now_s()
        out = []
        with self.lock:
            pthread_mutex_lock(&f.lock)
            try:
                t = f.tab
                for i in range(t.live):
                    s = &t.slots[t.order[i]]
                    if s.state == FDB_LIVE:
                        out.append((int_to_mac(s.key), <int>(s.key >> 48), s.port,
                                    0 if s.is_static else <uint32_t>(now - s.seen), bool(s.is_static)))
            finally:
                pthread_mutex_unlock(&f.lock)
        return out

    def fdb_add(self, str mac, int vlan, int port):
        """Add (or turn into) a static entry."""
        self._sw()
        cdef uint64_t key = mac_to_int(mac) | (<uint64_t>vlan << 48)
        cdef int r
        if not 0 <= vlan < 4096:
            raise ValueError(f"vlan must be 0..4095: {vlan}")
        if key & 1:
            raise ValueError(f"{mac} is a multicast address")
        if not (0 <= port < MAX_PORTS) or not self.sw.ports[port].active:
            raise KeyError(port)
        with self.lock:
            pthread_mutex_lock(&self.sw.fdb.lock)
            r = fdb_put_locked(&self.sw.fdb, key, port, now_s(), 1)
            pthread_mutex_unlock(&self.sw.fdb.lock)
        if r == FDB_R_FULL:
            raise OSError(_errno.ENOSPC, f"the FDB is full ({self.sw.fdb.capacity} entries)")
        return r == FDB_R_NEW

    def fdb_del(self, str mac, int vlan=0):
        self._sw()
        cdef uint64_t key = mac_to_int(mac) | (<uint64_t>vlan << 48)
        cdef FdbSlot *s
        with self.lock:
            pthread_mutex_lock(&self.sw.fdb.lock)
            s = fdb_find_locked(self.sw.fdb.tab, key)
            if s != NULL:
                fdb_kill_locked(&self.sw.fdb, s)
            pthread_mutex_unlock(&self.sw.fdb.lock)
        return s != NULL

    def fdb_flush(self, int port=-1, bint static=False):
        """Remove learned entries (and static ones too if `static`), of one port or all."""
        self._sw()
        cdef FdbTable *t
        cdef FdbSlot *s
        cdef uint32_t i, n = 0
        with self.lock:
            pthread_mutex_lock(&self.sw.fdb.lock)
            t = self.sw.fdb.tab
            for i in reversed(range(t.live)):       # backwards: a kill moves the last one here
                s = &t.slots[t.order[i]]
                if (s.state == FDB_LIVE and (port < 0 or s.port == port)
                        and (static or not s.is_static)):
                    fdb_kill_locked(&self.sw.fdb, s)
                    n += 1
            pthread_mutex_unlock(&self.sw.fdb.lock)
        return n

    def fdb_maintain(self):
        """The sweep: age entries out, and rebuild the table when tombstones pile up.
        Returns the aged entries as [(mac, vlan, port index)].  Runs on the control thread."""
        self._sw()
        cdef Fdb *f = &self.sw.fdb
        cdef FdbTable *t
        cdef FdbSlot *s
        cdef uint32_t i, now = now_s()
        cdef bint rebuilt = False
        aged = []
        with self.lock:
            pthread_mutex_lock(&f.lock)
            try:
                t = f.tab
                for i in reversed(range(t.live if f.aging else 0)):
                    s = &t.slots[t.order[i]]
                    if s.state == FDB_LIVE and not s.is_static and <uint32_t>(now - s.seen) >= f.aging:
                        aged.append((int_to_mac(s.key), <int>(s.key >> 48), s.port))
                        fdb_kill_locked(f, s)
                f.aged += len(aged)
                if fdb_needs_rebuild(f):
                    rebuilt = fdb_rebuild_locked(f) == 0
            finally:
                pthread_mutex_unlock(&f.lock)
            if rebuilt:
                self.wait_grace()
                fdb_table_free(f.retired)
                f.retired = NULL
        return aged

    def drain_events(self):
        """FDB events the workers queued: [("learn"|"move", mac, vlan, port, old port)]."""
        self._sw()
        cdef Worker *w
        cdef FdbEvent *e
        cdef uint32_t head
        cdef int q
        out = []
        for q in range(self.sw.nworkers):
            w = self.sw.workers[q]
            head = pyxsw_load_acq32(&w.ev_head)
            while w.ev_tail != head:
                e = &w.ev[w.ev_tail & (EV_RING - 1)]
                out.append(("learn" if e.kind == EV_LEARN else "move", int_to_mac(e.key),
                            <int>(e.key >> 48), e.port, e.old_port))
                pyxsw_store_rel32(&w.ev_tail, w.ev_tail + 1)
        return out

    def set_aging(self, uint32_t seconds):
        self._sw()
        self.sw.fdb.aging = seconds

    def fdb_counters(self):
        self._sw()
        cdef Fdb *f = &self.sw.fdb
        cdef uint64_t c[FDB_COUNTERS]
        cdef int q
        c[FDB_ENTRIES] = f.tab.live
        c[FDB_CAPACITY] = f.capacity
        c[FDB_SLOTS] = f.tab.mask + 1
        c[FDB_TOMBSTONES] = f.tab.used - f.tab.live
        c[FDB_AGING] = f.aging
        c[FDB_PORT_LIMIT] = f.port_limit
        c[FDB_AGED] = f.aged
        out = _named(_counters.FDB, c)
        workers = self.worker_stats()
        for k in _counters.FDB.counters:
            if not k.in_c:
                out[k.name] = sum(w[k.name] for w in workers)
        return out

    # ------------------------------------------------------------------ tests

    def decide(self, const uint8_t[:] frame, int in_port, now=None):
        """The worker's forwarding decision (learning included) on one frame, run on worker 0's
        state; for tests.  Returns an egress port index or FORWARD_FLOOD/RUNT/FILTER/
        RESERVED."""
        self._sw()
        cdef Worker *w = self.sw.workers[0]
        cdef uint32_t t = now_s() if now is None else now
        cdef const uint8_t *ptr = &frame[0] if frame.shape[0] else <const uint8_t *>b""
        if pyxsw_load_int(&w.running) and self.has_umem and self.nsocks:
            raise RuntimeError("decide() is for a Core whose workers do not run")
        if w.gen != self.sw.gen:
            worker_apply_gen(w)
        return decide(w, self.sw.fdb.tab, ptr, frame.shape[0], in_port, t)


def _anchor_thread(Core core, int flags, list result):
    # A thread of its own: unshare() moves the calling thread into the new namespace.
    core._anchor_in_own_netns(flags, result)


def _probe_zero_copy(bytes ifname, int q):
    """Can (ifname, q) bind an AF_XDP socket in zero-copy mode?  Tried on a scratch UMEM."""
    cdef void *area
    cdef xsk_umem *umem = NULL
    cdef xsk_socket *xsk = NULL
    cdef xsk_ring_prod fill, tx
    cdef xsk_ring_cons comp, rx
    cdef xsk_umem_config ucfg
    cdef xsk_socket_config cfg
    cdef uint64_t size = 64 * 4096
    cdef int rc
    area = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
    if area == MAP_FAILED:
        return False
    ucfg.fill_size = 64
    ucfg.comp_size = 64
    ucfg.frame_size = 4096
    ucfg.frame_headroom = 0
    ucfg.flags = 0
    try:
        if xsk_umem__create(&umem, area, size, &fill, &comp, &ucfg):
            return False
        cfg.rx_size = 64
        cfg.tx_size = 64
        cfg.libxdp_flags = XSK_LIBXDP_FLAGS__INHIBIT_PROG_LOAD
        cfg.xdp_flags = 0
        cfg.bind_flags = XDP_ZEROCOPY
        rc = xsk_socket__create_shared(&xsk, ifname, q, umem, &rx, &tx, &fill, &comp, &cfg)
        if rc == 0:
            xsk_socket__delete(xsk)
        return rc == 0
    finally:
        if umem != NULL:
            xsk_umem__delete(umem)
        munmap(area, size)


def clock():
    """The FDB's clock: coarse monotonic seconds (what "last seen" is measured in)."""
    return now_s()
