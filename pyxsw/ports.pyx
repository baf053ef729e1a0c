# Ports: the XDP program and the AF_XDP sockets of each switch port (control path).
#
# A port comes up in an order that never black-holes the interface: promiscuous mode (done
# by the Python side), then the XDP program (frames on queues without a socket still go to
# the kernel: XDP_PASS), then one socket per queue on the shared UMEM, then the XSKMAP
# entries that start the redirect.  It goes down in the reverse order, and the frames its
# rings held go back to the pool so that the accounting still adds up.

import errno as _errno
import os as _os
import time as _time

cdef enum:
    SOL_XDP = 283
    XDP_MAX_TX_SKB_BUDGET = 9   # newer than Debian's headers: probed at run time
    SO_BUSY_POLL = 46
    SO_PREFER_BUSY_POLL = 69
    SO_BUSY_POLL_BUDGET = 70
    BUSY_POLL_USECS = 20


# While a program is attached, libxdp and libbpf warnings are kept, not printed: on some
# kernels libxdp's multi-program dispatcher is refused (with alarming lines about
# permissions and ulimit) and libxdp falls back to a single program, which works, and the
# port status says which mode is in use.  If the attach fails after all, they are shown.
cdef bint log_keep = False
cdef char log_buf[4096]
cdef size_t log_len = 0

cdef int libxdp_print(libxdp_print_level level, const char *fmt, va_list ap) noexcept nogil:
    global log_len
    cdef char line[512]
    if level != LIBXDP_WARN:
        return 0
    vsnprintf(line, sizeof(line), fmt, ap)
    if not log_keep:
        fputs(line, stderr)
    elif log_len + strlen(line) < sizeof(log_buf):
        memcpy(&log_buf[log_len], line, strlen(line) + 1)
        log_len += strlen(line)
    return 0


cdef void log_hold() noexcept:
    global log_keep, log_len
    log_keep = True
    log_len = 0
    log_buf[0] = 0


cdef str log_release():
    """Stop keeping warnings; returns what was kept."""
    global log_keep
    log_keep = False
    return log_buf[:log_len].decode(errors="replace")

libxdp_set_print(libxdp_print)
libbpf_set_print(<libbpf_print_fn_t>libxdp_print)   # same levels, same signature


def _bpf_object_path():
    return _os.path.join(_os.path.dirname(__file__), "bpf", "pyxsw.bpf.o")


cdef str _libxdp_err(int err):
    cdef char buf[256]
    libxdp_strerror(err, buf, sizeof(buf))
    return buf.decode(errors="replace")


cdef bint _is_ours(xdp_program *prog) noexcept:
    cdef const char *n = xdp_program__name(prog)
    # The kernel keeps 15 characters of a program name.
    return n != NULL and strncmp(n, PYXSW_PROG_NAME, 15) == 0


cdef str remove_stale_xdp(int ifindex, str ifname):
    """Detach a pyxsw program left by a killed instance; refuse another program's.  Only
    for an interface no live switch claims (pyxsw.switch's claim): its program is stale."""
    cdef xdp_multiprog *mp = xdp_multiprog__get_from_ifindex(ifindex)
    cdef xdp_program *prog = NULL
    cdef str found = ""
    cdef long err = libxdp_get_error(mp)
    if mp == NULL or err == -_errno.ENOENT:
        return ""                       # no program attached
    if err:
        raise OSError(-err, f"{ifname}: cannot tell which XDP program is attached: {_libxdp_err(err)}")
    try:
        if xdp_multiprog__is_legacy(mp):
            prog = xdp_multiprog__main_prog(mp)
            if prog != NULL and _is_ours(prog):
                xdp_multiprog__detach(mp)
                found = "replaced a stale pyxsw XDP program"
            elif prog != NULL:
                name = (xdp_program__name(prog) or b"?").decode()
                raise OSError(_errno.EBUSY, f"{ifname}: another XDP program ({name}) is attached; "
                                           f"remove it first (ip link set dev {ifname} xdp off)")
        else:
            prog = xdp_multiprog__next_prog(NULL, mp)
            while prog != NULL:
                if _is_ours(prog):
                    xdp_program__detach(prog, ifindex, xdp_multiprog__attach_mode(mp), 0)
                    found = "replaced a stale pyxsw XDP program"
                prog = xdp_multiprog__next_prog(prog, mp)
    finally:
        xdp_multiprog__close(mp)
    return found


cdef void attach_xdp(Port *pt, str xdp_mode) except *:
    path = _bpf_object_path().encode()
    cdef xdp_program *prog = xdp_program__open_file(path, b"xdp", NULL)
    cdef long err = libxdp_get_error(prog)
    cdef int rc = -1
    cdef int mode
    name = pt.name.decode()
    if err:
        raise OSError(-err, f"{name}: cannot open the XDP program {path.decode()}: {_libxdp_err(err)}")
    modes = {"native": [XDP_MODE_NATIVE], "generic": [XDP_MODE_SKB],
             "auto": [XDP_MODE_NATIVE, XDP_MODE_SKB]}[xdp_mode]
    log_hold()
    for mode in modes:
        rc = xdp_program__attach(prog, pt.ifindex, <xdp_attach_mode>mode, 0)
        if rc == 0:
            pt.attach_mode = mode
            break
    kept = log_release()
    if rc != 0:
        xdp_program__close(prog)
        if kept:
            fputs(kept.encode(), stderr)
        raise OSError(-rc, f"{name}: cannot attach the XDP program ({xdp_mode} mode): {_libxdp_err(rc)}")
    pt.prog = prog
    obj = xdp_program__bpf_obj(prog)
    pt.xsks_map_fd = bpf_object__find_map_fd_by_name(obj, b"xsks_map")
    pt.stats_map_fd = bpf_object__find_map_fd_by_name(obj, b"xdp_stats_map")


cdef str foreign_xdp(int ifindex):
    """The name of an XDP program other than pyxsw's attached to ifindex, or ''."""
    cdef xdp_multiprog *mp = xdp_multiprog__get_from_ifindex(ifindex)
    cdef xdp_program *prog
    cdef long err = libxdp_get_error(mp)
    if mp == NULL or err == -_errno.ENOENT:
        return ""
    if err:
        raise OSError(-err, f"cannot tell which XDP program is attached: {_libxdp_err(err)}")
    try:
        if xdp_multiprog__is_legacy(mp):
            prog = xdp_multiprog__main_prog(mp)
        else:
            prog = xdp_multiprog__next_prog(NULL, mp)
        while prog != NULL:
            if not _is_ours(prog):
                return (xdp_program__name(prog) or b"?").decode()
            if xdp_multiprog__is_legacy(mp):
                break
            prog = xdp_multiprog__next_prog(prog, mp)
        return ""
    finally:
        xdp_multiprog__close(mp)


cdef bint prog_is_attached(Port *pt) except -1:
    """Is pt's program attached to its interface, alone or in libxdp's dispatcher?"""
    cdef xdp_multiprog *mp
    cdef xdp_program *prog
    cdef long err
    cdef uint32_t ours
    if pt.prog == NULL:
        return False
    ours = xdp_program__id(pt.prog)
    mp = xdp_multiprog__get_from_ifindex(pt.ifindex)
    err = libxdp_get_error(mp)
    if mp == NULL or err == -_errno.ENOENT:
        return False
    if err:
        raise OSError(-err, f"{pt.name.decode()}: cannot tell which XDP program is attached: "
                            f"{_libxdp_err(err)}")
    try:
        if xdp_multiprog__is_legacy(mp):
            prog = xdp_multiprog__main_prog(mp)
            return prog != NULL and xdp_program__id(prog) == ours
        prog = xdp_multiprog__next_prog(NULL, mp)
        while prog != NULL:
            if xdp_program__id(prog) == ours:
                return True
            prog = xdp_multiprog__next_prog(prog, mp)
        return False
    finally:
        xdp_multiprog__close(mp)


cdef void detach_xdp(Port *pt) noexcept:
    # Quietly: the interface may be gone already, and then so is the program.
    if pt.prog != NULL:
        log_hold()
        xdp_program__detach(pt.prog, pt.ifindex, <xdp_attach_mode>pt.attach_mode, 0)
        log_release()
        xdp_program__close(pt.prog)
        pt.prog = NULL


cdef void xdp_prog_stats(Port *pt, uint64_t *out) noexcept:
    """The XDP program's per-CPU counters, summed, into out[PROG_COUNTERS]."""
    cdef int ncpu = libbpf_num_possible_cpus()
    cdef uint64_t *vals
    cdef uint32_t k
    cdef int c
    memset(out, 0, PROG_COUNTERS * sizeof(uint64_t))
    if pt.stats_map_fd < 0 or ncpu <= 0:
        return
    vals = <uint64_t *>calloc(ncpu, sizeof(uint64_t))
    if vals == NULL:
        return
    for k in range(PROG_COUNTERS):
        if bpf_map_lookup_elem(pt.stats_map_fd, &k, vals) == 0:
            for c in range(ncpu):
                out[k] += vals[c]
    free(vals)


cdef Sock *sock_create(Sw *sw, Port *pt, int q, int bind_flags) except NULL:
    """An AF_XDP socket on (port, queue q) sharing the switch's UMEM."""
    cdef xsk_socket_config cfg
    cdef Sock *s = <Sock *>calloc(1, sizeof(Sock))
    cdef int rc = 0, tries
    if s == NULL:
        raise MemoryError("cannot allocate an AF_XDP socket's state")
    cfg.rx_size = sw.ring_size
    cfg.tx_size = sw.ring_size
    cfg.libxdp_flags = XSK_LIBXDP_FLAGS__INHIBIT_PROG_LOAD
    cfg.xdp_flags = 0
    cfg.bind_flags = bind_flags
    # A socket closed a moment ago can keep the queue busy while the kernel tears it down.
    for tries in range(50):
        rc = xsk_socket__create_shared(&s.xsk, pt.name, q, sw.umem, &s.rx, &s.tx,
                                       &s.fill, &s.comp, &cfg)
        if rc != -_errno.EBUSY:
            break
        _time.sleep(0.02)
    if rc:
        free(s)
        raise OSError(-rc, f"{pt.name.decode()} queue {q}: cannot create an AF_XDP socket: "
                           f"{_os.strerror(-rc)}")
    s.fd = xsk_socket__fd(s.xsk)
    return s


cdef int sock_tx_budget(Sock *s, uint32_t budget) noexcept nogil:
    """Raise the frames one copy-mode TX kick may send; 0 if the kernel took it."""
    return setsockopt(s.fd, SOL_XDP, XDP_MAX_TX_SKB_BUDGET, &budget, sizeof(budget))


cdef int sock_busy_poll(Sock *s, bint on, uint32_t budget) noexcept nogil:
    """Busy-poll socket options for poll mode (off for the others); 0 if all were taken."""
    cdef int prefer = 1 if on else 0
    cdef int usecs = BUSY_POLL_USECS if on else 0
    cdef int b = budget
    cdef int rc = 0
    rc |= setsockopt(s.fd, SOL_SOCKET, SO_PREFER_BUSY_POLL, &prefer, sizeof(int))
    rc |= setsockopt(s.fd, SOL_SOCKET, SO_BUSY_POLL, &usecs, sizeof(int))
    if on:
        rc |= setsockopt(s.fd, SOL_SOCKET, SO_BUSY_POLL_BUDGET, &b, sizeof(int))
    return rc


cdef uint32_t ring_occupancy(uint32_t *prod, uint32_t *cons) noexcept nogil:
    return pyxsw_load_acq32(prod) - pyxsw_load_acq32(cons)


cdef void sock_held(Sock *s, uint64_t *held) noexcept nogil:
    """Add the frames in s's fill, RX, TX and completion rings to held[0..3]."""
    held[0] += ring_occupancy(s.fill.producer, s.fill.consumer)
    held[1] += ring_occupancy(s.rx.producer, s.rx.consumer)
    held[2] += ring_occupancy(s.tx.producer, s.tx.consumer)
    held[3] += ring_occupancy(s.comp.producer, s.comp.consumer)


cdef void reclaim_range(Sw *sw, uint32_t *cons, uint32_t *prod, void *ring_base, uint32_t mask,
                        bint descs) noexcept nogil:
    """Return the frames between a ring's consumer and producer to the pool."""
    cdef uint32_t i = pyxsw_load_acq32(cons)
    cdef uint32_t end = pyxsw_load_acq32(prod)
    cdef uint64_t addr
    while i != end:
        if descs:
            addr = (<xdp_desc *>ring_base)[i & mask].addr
        else:
            addr = (<uint64_t *>ring_base)[i & mask]
        addr &= sw.frame_mask
        pool_put(&sw.pool, &addr, 1)
        i += 1
    pyxsw_store_rel32(cons, end)


cdef void sock_reclaim(Sw *sw, Sock *s, bint closing) noexcept nogil:
    """Return the frames a socket's rings hold to the pool; no worker may be using it.

    The RX and completion rings are ours to consume.  The fill and TX rings are the
    kernel's to consume: their frames are taken back only when the socket is about to be
    closed (`closing`), since a socket that lives on would use them later."""
    reclaim_range(sw, s.rx.consumer, s.rx.producer, s.rx.ring, s.rx.mask, True)
    reclaim_range(sw, s.comp.consumer, s.comp.producer, s.comp.ring, s.comp.mask, False)
    s.rx.cached_cons = pyxsw_load_acq32(s.rx.consumer)
    s.rx.cached_prod = s.rx.cached_cons
    s.comp.cached_cons = pyxsw_load_acq32(s.comp.consumer)
    s.comp.cached_prod = s.comp.cached_cons
    if closing:
        reclaim_range(sw, s.fill.consumer, s.fill.producer, s.fill.ring, s.fill.mask, False)
        reclaim_range(sw, s.tx.consumer, s.tx.producer, s.tx.ring, s.tx.mask, True)


cdef bint sock_stats(Sock *s, uint64_t *out) noexcept nogil:
    """The kernel's XDP_STATISTICS of a socket into out[QUEUE_COUNTERS]; False if unread."""
    cdef xdp_statistics xs
    cdef socklen_t ln = sizeof(xs)
    memset(&xs, 0, sizeof(xs))
    if getsockopt(s.fd, SOL_XDP, XDP_STATISTICS, &xs, &ln) != 0:
        return False
    out[QUEUE_RX_DROPPED] = xs.rx_dropped
    out[QUEUE_RX_INVALID_DESCS] = xs.rx_invalid_descs
    out[QUEUE_TX_INVALID_DESCS] = xs.tx_invalid_descs
    out[QUEUE_RX_RING_FULL] = xs.rx_ring_full
    out[QUEUE_RX_FILL_RING_EMPTY_DESCS] = xs.rx_fill_ring_empty_descs
    out[QUEUE_TX_RING_EMPTY_DESCS] = xs.tx_ring_empty_descs
    return True


cdef bint sock_zero_copy(Sock *s) noexcept nogil:
    cdef xdp_options o
    cdef socklen_t ln = sizeof(o)
    o.flags = 0
    if getsockopt(s.fd, SOL_XDP, XDP_OPTIONS, &o, &ln) != 0:
        return False
    return (o.flags & XDP_OPTIONS_ZEROCOPY) != 0
