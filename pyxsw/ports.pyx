# Ports: what makes an interface a switch port and undoes it (control path).
#
#   the XDP program   loaded once per switch and attached to every AF_XDP port, with maps
#                     the switch makes, so that one program and one set of maps serve all:
#                     ports_map (ifindex -> port index), xsks_map (port index x queue ->
#                     socket) and xdp_stats_map (port index x counter, per CPU)
#   the sockets       one AF_XDP socket per (port, queue) on the shared UMEM: open, options,
#                     statistics, the frames their rings hold, close
#   the port steps    open, close, options, frames held, counters: each switches on the
#                     port's kind (KIND_AFXDP today; the seam other kinds of ports will use)
#
# A port comes up in an order that never black-holes the interface: promiscuous mode (done
# by the Python side), then its row in ports_map and the XDP program (frames on queues
# without a socket still go to the kernel: XDP_PASS), then one socket per queue on the shared
# UMEM, then the xsks_map entries that start the redirect.  It goes down in the reverse
# order, and the frames its rings held go back to the pool so that the accounting still adds
# up.  Functions that can fail for a reason an operator must read raise OSError here.

import errno as _errno
import os as _os

cdef enum:
    SOL_XDP = 283
    XDP_MAX_TX_SKB_BUDGET = 9   # newer than Debian's headers: probed at run time
    SO_BUSY_POLL = 46
    SO_PREFER_BUSY_POLL = 69
    SO_BUSY_POLL_BUDGET = 70
    BUSY_POLL_USECS = 20
    BIND_TRIES = 250            # x 20 ms: a socket closed a moment ago keeps its queue busy until
                                # the kernel's deferred work frees its pool (over 1 s seen on a
                                # loaded 2-core machine: port.del then port.add, EBUSY)
    ATTACHED_TRIES = 10         # looks at what is attached to an interface while it changes


# ---------------------------------------------------------------------------- libxdp's messages

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


cdef bint _name_is_ours(const char *n) noexcept nogil:
    # The kernel keeps BPF_OBJ_NAME_LEN - 1 = 15 characters of a program name.
    return n != NULL and strncmp(n, PYXSW_PROG_NAME, BPF_OBJ_NAME_LEN - 1) == 0


cdef bint _is_ours(xdp_program *prog) noexcept:
    return _name_is_ours(xdp_program__name(prog))


# ---------------------------------------------------------------------------- what else is attached

# Which program an interface runs is asked of libbpf, not of libxdp: before 1.4.1 (Debian
# bookworm has 1.3.1) libxdp's xdp_multiprog__get_from_ifindex(), which its
# xdp_program__detach() calls too, opens the attached program, keeps a copy of the
# descriptor and never closes the original (fixed by xdp-tools 48ad94b).  A switch restarted
# after a kill -9 held one descriptor per port to the program it replaced, which kept that
# program and its maps (the old FDB among them) loaded until it exited.  Here every
# descriptor opened is closed, and a program is detached only if it is still the one that
# was looked at (XDP_FLAGS_REPLACE).  Only libxdp's dispatcher, which only libxdp takes
# apart, still goes through libxdp, which before 1.4.1 leaks the same way there (the
# dispatcher's descriptor and its programs'); libxdp falls back to a plain program where the
# kernel refuses the dispatcher or there is no bpffs.

cdef int xdp_attached_open(int ifindex, XdpAttached *a) noexcept nogil:
    """Open the program attached to ifindex in driver or generic mode into *a (a.fd = -1:
    none; an offloaded one is not looked at, pyxsw attaches none).  0 or -errno."""
    cdef bpf_xdp_query_opts q
    cdef bpf_prog_info info
    cdef uint32_t info_len
    cdef int rc, tries
    a.fd = -1
    a.id = 0
    a.mode_flag = 0
    a.name[0] = 0
    for tries in range(ATTACHED_TRIES):
        memset(&q, 0, sizeof(q))
        q.sz = sizeof(q)
        rc = bpf_xdp_query(ifindex, 0, &q)
        if rc < 0:
            return rc
        if q.attach_mode == XDP_ATTACHED_DRV or (q.attach_mode == XDP_ATTACHED_MULTI
                                                 and q.drv_prog_id):
            a.id = q.drv_prog_id
            a.mode_flag = XDP_FLAGS_DRV_MODE
        elif q.attach_mode == XDP_ATTACHED_SKB or (q.attach_mode == XDP_ATTACHED_MULTI
                                                   and q.skb_prog_id):
            a.id = q.skb_prog_id
            a.mode_flag = XDP_FLAGS_SKB_MODE
        else:
            a.id = 0
            a.mode_flag = 0
            return 0
        rc = bpf_prog_get_fd_by_id(a.id)
        if rc == -ENOENT:
            continue                    # detached and freed since it was asked: ask again
        if rc < 0:
            return rc
        a.fd = rc
        memset(&info, 0, sizeof(info))
        info_len = sizeof(info)
        rc = bpf_obj_get_info_by_fd(a.fd, &info, &info_len)
        if rc < 0:
            close(a.fd)
            a.fd = -1
            return rc
        memcpy(a.name, info.name, sizeof(a.name))
        a.name[sizeof(a.name) - 1] = 0
        return 0
    return -EBUSY                       # it kept changing


cdef int xdp_attached_detach(int ifindex, XdpAttached *a) noexcept nogil:
    """Detach a's program from ifindex if it is still the one attached there (else -EEXIST:
    it was replaced or detached since).  0 or -errno."""
    cdef bpf_xdp_attach_opts o
    memset(&o, 0, sizeof(o))
    o.sz = sizeof(o)
    o.old_prog_fd = a.fd
    return bpf_xdp_detach(ifindex, a.mode_flag | XDP_FLAGS_REPLACE, &o)


cdef bint _is_dispatcher(XdpAttached *a) noexcept nogil:
    return strncmp(a.name, b"xdp_dispatcher", BPF_OBJ_NAME_LEN - 1) == 0


cdef int _attached(int ifindex, str prefix, XdpAttached *a) except -1:
    cdef int rc = xdp_attached_open(ifindex, a)
    if rc < 0:
        raise OSError(-rc, f"{prefix}cannot tell which XDP program is attached: "
                           f"{_os.strerror(-rc)}")
    return 0


cdef xdp_multiprog *_dispatcher_open(int ifindex, str prefix) except? NULL:
    """libxdp's view of the dispatcher on ifindex (NULL: it is gone); the caller closes it."""
    cdef xdp_multiprog *mp = xdp_multiprog__get_from_ifindex(ifindex)
    cdef long err = libxdp_get_error(mp)
    if mp == NULL or err == -ENOENT:
        return NULL
    if err:
        raise OSError(-err, f"{prefix}cannot tell which XDP program is attached: {_libxdp_err(err)}")
    return mp


cdef object _foreign_error(str ifname, str name):
    return OSError(_errno.EBUSY, f"{ifname}: another XDP program ({name}) is attached; "
                                 f"remove it first (ip link set dev {ifname} xdp off)")


cdef str remove_stale_xdp(int ifindex, str ifname):
    """Detach a pyxsw program left by a killed instance; refuse another program's.  Only
    for an interface no live switch claims (pyxsw.switch's claim): its program is stale."""
    cdef XdpAttached a
    cdef int rc = 0, tries
    for tries in range(ATTACHED_TRIES):
        _attached(ifindex, f"{ifname}: ", &a)
        if a.fd < 0:
            return ""                   # no program attached
        try:
            if _is_dispatcher(&a):
                return _remove_stale_from_dispatcher(ifindex, ifname)
            if not _name_is_ours(a.name):
                raise _foreign_error(ifname, a.name.decode(errors="replace") or "?")
            rc = xdp_attached_detach(ifindex, &a)
        finally:
            close(a.fd)
        if rc == 0:
            return "replaced a stale pyxsw XDP program"
        if rc != -EEXIST:               # EEXIST: another program since: look again
            raise OSError(-rc, f"{ifname}: cannot detach a stale pyxsw XDP program: "
                               f"{_os.strerror(-rc)}")
    raise OSError(_errno.EBUSY, f"{ifname}: the attached XDP program keeps changing")


cdef str _remove_stale_from_dispatcher(int ifindex, str ifname):
    cdef xdp_multiprog *mp = _dispatcher_open(ifindex, f"{ifname}: ")
    cdef xdp_program *prog
    cdef str found = ""
    if mp == NULL:
        return ""
    try:
        if xdp_multiprog__is_legacy(mp):    # named like it, but not libxdp's dispatcher
            prog = xdp_multiprog__main_prog(mp)
            if prog != NULL:
                raise _foreign_error(ifname, (xdp_program__name(prog) or b"?").decode())
            return ""
        prog = xdp_multiprog__next_prog(NULL, mp)
        while prog != NULL:
            if _is_ours(prog):
                xdp_program__detach(prog, ifindex, xdp_multiprog__attach_mode(mp), 0)
                found = "replaced a stale pyxsw XDP program"
            prog = xdp_multiprog__next_prog(prog, mp)
    finally:
        xdp_multiprog__close(mp)
    return found


cdef str foreign_xdp(int ifindex):
    """The name of an XDP program other than pyxsw's attached to ifindex, or ''."""
    cdef XdpAttached a
    _attached(ifindex, "", &a)
    if a.fd < 0:
        return ""
    try:
        if _is_dispatcher(&a):
            return _foreign_in_dispatcher(ifindex)
        return "" if _name_is_ours(a.name) else (a.name.decode(errors="replace") or "?")
    finally:
        close(a.fd)


cdef str _foreign_in_dispatcher(int ifindex):
    cdef xdp_multiprog *mp = _dispatcher_open(ifindex, "")
    cdef xdp_program *prog
    if mp == NULL:
        return ""
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


# ---------------------------------------------------------------------------- the XDP program

# The program's maps the switch makes and holds, by name, in the order of xdp_map_fds().
_MAP_NAMES = (b"ports_map", b"xsks_map", b"xdp_stats_map", b"port_rows", b"ifx_map",
              b"config_map", b"tx_map", b"fdb_map", b"fast_stats_map")
cdef enum:
    XDP_MAPS = 9


cdef void xdp_map_fds(Xdp *x, int **out) noexcept nogil:
    """Where the switch keeps each map's descriptor, in _MAP_NAMES' order: out[XDP_MAPS]."""
    out[0] = &x.ports_map_fd
    out[1] = &x.xsks_map_fd
    out[2] = &x.stats_map_fd
    out[3] = &x.rows_map_fd
    out[4] = &x.ifx_map_fd
    out[5] = &x.config_map_fd
    out[6] = &x.tx_map_fd
    out[7] = &x.fdb_map_fd
    out[8] = &x.fast_stats_fd


cdef int *xdp_map_slot(Xdp *x, bytes name) noexcept:
    """Where the switch keeps the descriptor of the program's map of that name (NULL: one
    the switch does not use)."""
    cdef int *fds[XDP_MAPS]
    if name not in _MAP_NAMES:
        return NULL
    xdp_map_fds(x, fds)
    return fds[_MAP_NAMES.index(name)]


cdef int xdp_maps_make(Xdp *x, bpf_object *obj) except -1:
    """Make the program's maps as the object declares them (or take the ones the switch
    made already), and have the object use them rather than make its own when it is loaded:
    the switch holds them, for the program's life and beyond a copy opened again."""
    cdef bpf_map *m = bpf_object__next_map(obj, NULL)
    cdef bpf_map_create_opts opts
    cdef bytes name
    cdef int fd
    cdef int *slot
    cdef int *fds[XDP_MAPS]
    cdef int i, rc
    while m != NULL:
        slot = xdp_map_slot(x, bpf_map__name(m)) if not bpf_map__is_internal(m) else NULL
        if slot != NULL and slot[0] >= 0:
            if bpf_map__reuse_fd(m, slot[0]):       # the object takes a copy of the fd
                raise OSError(_errno.EINVAL, f"cannot give the XDP program its map "
                                             f"{bpf_map__name(m).decode()}")
        elif not bpf_map__is_internal(m):
            memset(&opts, 0, sizeof(opts))
            opts.sz = sizeof(opts)
            opts.map_flags = bpf_map__map_flags(m)
            name = bpf_map__name(m)
            fd = bpf_map_create(bpf_map__type(m), name, bpf_map__key_size(m),
                                bpf_map__value_size(m),
                                (x.fdb_capacity if x.fastpath else 1) if slot == &x.fdb_map_fd else
                                bpf_map__max_entries(m), &opts)
            if fd < 0:
                e = errno
                raise OSError(e, f"cannot make the XDP program's map {name.decode()}: "
                                 f"{_os.strerror(e)}")
            if bpf_map__reuse_fd(m, fd):
                close(fd)
                raise OSError(_errno.EINVAL, f"cannot give the XDP program its map {name.decode()}")
            if slot != NULL:
                slot[0] = fd
            else:
                close(fd)           # not one the switch uses: the object's own copy is kept
        m = bpf_object__next_map(obj, m)
    xdp_map_fds(x, fds)
    for i in range(XDP_MAPS):
        if fds[i][0] < 0:
            raise OSError(_errno.EINVAL, f"{_bpf_object_path()} is not pyxsw's XDP program "
                                         f"(the map {_MAP_NAMES[i].decode()} is missing)")
    rc = xdp_config_set(x, PYXSW_CONFIG_FASTPATH, x.fastpath)
    if rc:
        raise OSError(-rc, f"cannot configure the XDP program: {_os.strerror(-rc)}")
    return 0


cdef int xdp_rodata_set(bpf_object *obj, uint32_t has_frags) noexcept nogil:
    """The program's constants, before it is loaded (its .rodata: `has_frags`): 0, or -1
    when the object has no such section as pyxsw's program does."""
    cdef bpf_map *m = bpf_object__next_map(obj, NULL)
    cdef size_t size = 0
    while m != NULL:
        if bpf_map__is_internal(m) and strstr(bpf_map__name(m), b".rodata") != NULL:
            if bpf_map__initial_value(m, &size) == NULL or size != sizeof(uint32_t):
                return -1
            return bpf_map__set_initial_value(m, &has_frags, sizeof(uint32_t))
        m = bpf_object__next_map(obj, m)
    return -1


cdef int xdp_config_set(Xdp *x, uint32_t key, uint32_t value) noexcept nogil:
    """One of the program's settings (PYXSW_CONFIG_*): 0 or -errno."""
    return 0 if bpf_map_update_elem(x.config_map_fd, &key, &value, BPF_ANY) == 0 else -errno


cdef int xdp_open(Xdp *x) except -1:
    """Open the XDP program and make its maps (it is loaded by its first attach); again,
    a fresh copy on the same maps (see xdp_attach)."""
    path = _bpf_object_path().encode()
    cdef xdp_program *prog
    cdef long err
    cdef bint fresh = x.prog == NULL and x.ports_map_fd < 0
    if x.prog != NULL:
        return 0
    x.ncpu = libbpf_num_possible_cpus()
    if x.ncpu <= 0:
        raise OSError(-x.ncpu if x.ncpu < 0 else _errno.EINVAL, "cannot tell how many CPUs "
                      "the per-CPU counters of the XDP program have")
    prog = xdp_program__open_file(path, b"xdp", NULL)
    err = libxdp_get_error(prog)
    if err:
        raise OSError(-err, f"cannot open the XDP program {path.decode()}: {_libxdp_err(err)}")
    # frags-aware (so that it attaches to, and does not cap, large MTUs) where the kernel
    # knows the flag and the program's helper (5.18+), which also asks libxdp for a
    # dispatcher that is
    frags = _vocab.kernel_at_least(5, 18)
    try:
        if xdp_program__set_xdp_frags_support(prog, frags) or \
                xdp_rodata_set(xdp_program__bpf_obj(prog), frags):
            raise OSError(_errno.EINVAL, f"{path.decode()}: cannot set it up for "
                                         f"{'' if frags else 'no '}frags")
        xdp_maps_make(x, xdp_program__bpf_obj(prog))
    except BaseException:
        xdp_program__close(prog)
        if fresh:
            xdp_close(x)
        raise
    x.prog = prog
    return 0


cdef void xdp_init(Xdp *x) noexcept nogil:
    cdef int *fds[XDP_MAPS]
    cdef int i
    x.prog = NULL
    xdp_map_fds(x, fds)
    for i in range(XDP_MAPS):
        fds[i][0] = -1
    x.attached = 0


cdef void xdp_close(Xdp *x) noexcept nogil:
    """Once no port has the program attached."""
    cdef int *fds[XDP_MAPS]
    cdef int i
    if x.prog != NULL:
        xdp_program__close(x.prog)
    xdp_map_fds(x, fds)
    for i in range(XDP_MAPS):
        if fds[i][0] >= 0:
            close(fds[i][0])
    xdp_init(x)


cdef int xdp_port_set(Sw *sw, Port *pt) noexcept nogil:
    """Give the program a row for a port: its counters zeroed (the row may have been another
    port's), then its ifindex mapped to its row (fastpath.pyx; no fast path until it is
    active).  0 or -errno."""
    cdef Xdp *x = &sw.xdp
    cdef uint32_t index = pt - sw.ports
    cdef uint32_t k
    cdef uint64_t *zero = <uint64_t *>calloc(x.ncpu if x.ncpu > 0 else 1, sizeof(uint64_t))
    cdef int rc = 0
    if zero == NULL:
        return -ENOMEM
    for k in range(index * PROG_COUNTERS, (index + 1) * PROG_COUNTERS):
        if rc == 0:
            rc = bpf_map_update_elem(x.stats_map_fd, &k, zero, 0)
    for k in range(index * FASTPATH_COUNTERS, (index + 1) * FASTPATH_COUNTERS):
        if rc == 0:
            rc = bpf_map_update_elem(x.fast_stats_fd, &k, zero, 0)
    free(zero)
    if rc == 0:
        rc = fp_port_write(sw, pt)
    return rc


cdef int xdp_queue_set(Xdp *x, uint32_t index, uint32_t q, int fd) noexcept nogil:
    """Start redirecting (port index, queue q) to a socket.  0 or -errno."""
    cdef uint32_t key = index * PYXSW_MAX_QUEUES + q
    cdef uint32_t value = fd
    return bpf_map_update_elem(x.xsks_map_fd, &key, &value, 0)


cdef void xdp_queue_clear(Xdp *x, uint32_t index, uint32_t q) noexcept nogil:
    cdef uint32_t key = index * PYXSW_MAX_QUEUES + q
    if x.xsks_map_fd >= 0:
        bpf_map_delete_elem(x.xsks_map_fd, &key)


cdef void xdp_percpu_sum(Xdp *x, int fd, uint32_t index, uint32_t nk, uint64_t *out) noexcept nogil:
    """A port's row of nk per-CPU counters of map fd, summed, into out[nk]."""
    cdef uint64_t *vals
    cdef uint32_t k, key
    cdef int c
    memset(out, 0, nk * sizeof(uint64_t))
    if fd < 0 or x.ncpu <= 0:
        return
    vals = <uint64_t *>calloc(x.ncpu, sizeof(uint64_t))
    if vals == NULL:
        return
    for k in range(nk):
        key = index * nk + k
        if bpf_map_lookup_elem(fd, &key, vals) == 0:
            for c in range(x.ncpu):
                out[k] += vals[c]
    free(vals)


cdef int xdp_attach(Xdp *x, Port *pt, str xdp_mode) except -1:
    """Attach the switch's program to pt's interface ("native", "generic" or "auto": native,
    else generic).  The first attach loads it; later ones attach the same program."""
    cdef int rc = -1
    cdef int mode
    name = pt.name.decode()
    modes = {"native": [XDP_MODE_NATIVE], "generic": [XDP_MODE_SKB],
             "auto": [XDP_MODE_NATIVE, XDP_MODE_SKB]}[xdp_mode]
    log_hold()
    for mode in modes:
        rc = xdp_program__attach(x.prog, pt.ifindex, <xdp_attach_mode>mode, 0)
        if rc == 0:
            pt.attach_mode = mode
            break
    kept = log_release()
    if rc == 0:
        x.attached += 1
    elif x.attached == 0:
        # libbpf loads an object once, even when that load failed, and libxdp may have left
        # it set up for a dispatcher that is gone: with no port running it, the next port
        # gets a fresh copy on the same maps rather than fail until the switch restarts.
        xdp_program__close(x.prog)
        x.prog = NULL
    if rc != 0:
        if kept:
            fputs(kept.encode(), stderr)
        raise OSError(-rc, f"{name}: cannot attach the XDP program ({xdp_mode} mode): {_libxdp_err(rc)}")
    return 0


cdef void xdp_detach(Xdp *x, Port *pt) noexcept:
    # Quietly: the interface may be gone already, and then so is the program.  Only the
    # switch's own program, or libxdp's dispatcher running it, is taken away: a program
    # that replaced it (the port is degraded) stays.
    cdef XdpAttached a
    if pt.attach_mode:
        log_hold()
        if x.prog != NULL and xdp_attached_open(pt.ifindex, &a) == 0 and a.fd >= 0:
            if a.id == xdp_program__id(x.prog):
                xdp_attached_detach(pt.ifindex, &a)
            elif _is_dispatcher(&a):
                xdp_program__detach(x.prog, pt.ifindex, <xdp_attach_mode>pt.attach_mode, 0)
            close(a.fd)
        log_release()
        pt.attach_mode = 0
        x.attached -= 1


cdef uint32_t xdp_prog_id(Xdp *x, Port *pt) noexcept:
    """The kernel's id of the program attached to pt (0 when it has none)."""
    return xdp_program__id(x.prog) if pt.attach_mode and x.prog != NULL else 0


cdef bint xdp_is_attached(Xdp *x, Port *pt) except -1:
    """Is the switch's program attached to pt's interface, alone or in libxdp's dispatcher?"""
    cdef XdpAttached a
    cdef xdp_multiprog *mp
    cdef xdp_program *prog
    cdef uint32_t ours = xdp_prog_id(x, pt)
    if not ours:
        return False
    _attached(pt.ifindex, f"{pt.name.decode()}: ", &a)
    if a.fd < 0:
        return False
    try:
        if a.id == ours:
            return True
        if not _is_dispatcher(&a):
            return False
    finally:
        close(a.fd)
    mp = _dispatcher_open(pt.ifindex, f"{pt.name.decode()}: ")
    if mp == NULL:
        return False
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


# ---------------------------------------------------------------------------- sockets

cdef int sock_open(Umem *u, const char *ifname, int q, int bind_flags, Sock **out) noexcept nogil:
    """An AF_XDP socket on (ifname, q) sharing the UMEM, into *out: 0 or -errno."""
    cdef xsk_socket_config cfg
    cdef Sock *s = <Sock *>calloc(1, sizeof(Sock))
    cdef int rc = 0, tries
    if s == NULL:
        return -ENOMEM
    cfg.rx_size = u.ring_size
    cfg.tx_size = u.ring_size
    cfg.libxdp_flags = XSK_LIBXDP_FLAGS__INHIBIT_PROG_LOAD
    cfg.xdp_flags = 0
    cfg.bind_flags = bind_flags
    for tries in range(BIND_TRIES):
        rc = xsk_socket__create_shared(&s.xsk, ifname, q, u.xsk, &s.rx, &s.tx,
                                       &s.fill, &s.comp, &cfg)
        if rc != -EBUSY:
            break
        usleep(20000)
    if rc:
        free(s)
        return rc
    s.fd = xsk_socket__fd(s.xsk)
    out[0] = s
    return 0


cdef void sock_close(Sock *s) noexcept nogil:
    xsk_socket__delete(s.xsk)
    free(s)


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


cdef void reclaim_range(Umem *u, uint32_t *cons, uint32_t *prod, void *ring_base, uint32_t mask,
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
        addr &= u.frame_mask
        pool_put(&u.pool, &addr, 1)
        i += 1
    pyxsw_store_rel32(cons, end)


cdef void sock_reclaim(Umem *u, Sock *s, bint closing) noexcept nogil:
    """Return the frames a socket's rings hold to the pool; no worker may be using it.

    The RX and completion rings are ours to consume.  The fill and TX rings are the
    kernel's to consume: their frames are taken back only when the socket is about to be
    closed (`closing`), since a socket that lives on would use them later."""
    reclaim_range(u, s.rx.consumer, s.rx.producer, s.rx.ring, s.rx.mask, True)
    reclaim_range(u, s.comp.consumer, s.comp.producer, s.comp.ring, s.comp.mask, False)
    s.rx.cached_cons = pyxsw_load_acq32(s.rx.consumer)
    s.rx.cached_prod = s.rx.cached_cons
    s.comp.cached_cons = pyxsw_load_acq32(s.comp.consumer)
    s.comp.cached_prod = s.comp.cached_cons
    if closing:
        reclaim_range(u, s.fill.consumer, s.fill.producer, s.fill.ring, s.fill.mask, False)
        reclaim_range(u, s.tx.consumer, s.tx.producer, s.tx.ring, s.tx.mask, True)


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


# ---------------------------------------------------------------------------- port steps

cdef Port *port_slot(Sw *sw, int kind, const char *name, int ifindex, uint32_t flood_limit,
                     bint forward_reserved) noexcept nogil:
    """A free slot made a port of that kind, not active yet; NULL when all are taken."""
    cdef Port *pt
    cdef int p
    for p in range(MAX_PORTS):
        pt = &sw.ports[p]
        if pt.kind == KIND_NONE:
            memset(pt, 0, sizeof(Port))
            pt.kind = kind
            snprintf(pt.name, sizeof(pt.name), "%s", name)
            pt.ifindex = ifindex
            pt.flood_limit = flood_limit
            pt.forward_reserved = forward_reserved
            pt.vlans[0] = (<uint64_t>1) << 1       # access VLAN 1 until told otherwise
            pt.vlan_mode = VLAN_ACCESS
            pt.untagged = 1
            return pt
    return NULL


cdef void port_vlan_write(Sw *sw, Port *pt, int mode, uint16_t untagged,
                          const uint64_t *vlans) noexcept nogil:
    """A port's VLAN membership, written inside the switch's config seqlock, so that a
    worker copying the ports (worker_apply_gen) never keeps a mix of old and new."""
    cdef uint32_t seq = sw.cfg_seq
    pyxsw_store_rel32(&sw.cfg_seq, seq + 1)
    pyxsw_fence_seq()
    memcpy(pt.vlans, vlans, sizeof(pt.vlans))
    pt.vlan_mode = mode
    pt.untagged = untagged
    pyxsw_store_rel32(&sw.cfg_seq, seq + 2)


cdef inline bint port_carries(const uint64_t *vlans, uint16_t vlan) noexcept nogil:
    return (vlans[vlan >> 6] >> (vlan & 63)) & 1


cdef int port_open(Sw *sw, Port *pt, str xdp_mode) except -1:
    """Bring up a port whose kind, name and ifindex are set; after a failure, port_close()
    undoes what was done."""
    if pt.kind == KIND_AFXDP:
        afxdp_open(sw, pt, xdp_mode)
    return 0


cdef int afxdp_open(Sw *sw, Port *pt, str xdp_mode) except -1:
    cdef Umem *u = &sw.umem
    cdef int index = pt - sw.ports
    cdef int q, rc
    cdef bint shared
    name = pt.name.decode()
    xdp_open(&sw.xdp)
    if sw.fastpath and sw.fdb.kfd < 0:
        kfdb_attach(&sw.fdb, sw.xdp.fdb_map_fd)
    rc = xdp_port_set(sw, pt)
    if rc:
        raise OSError(-rc, f"{name}: cannot give the XDP program a row for the port: "
                           f"{_os.strerror(-rc)}")
    xdp_attach(&sw.xdp, pt, xdp_mode)
    for q in range(sw.nworkers):
        shared = u.owner != NULL
        with nogil:
            rc = umem_sock_open(u, pt.name, pt.ifindex, q, &pt.socks[q])
        if rc == -EBADF and shared:
            # The kernel shares a UMEM through its first socket, which must stay bound.
            raise OSError(EBADF, f"{name}: cannot share the UMEM: the interface of its first "
                                 f"socket was deleted; restart the switch to add ports")
        if rc:
            raise OSError(-rc, f"{name} queue {q}: cannot create an AF_XDP socket: "
                               f"{_os.strerror(-rc)}")
        umem_set_sockets(u, u.nsocks + 1)
        if sw.tx_budget != 0:       # once refused, not asked again
            sw.tx_budget = u.ring_size if sock_tx_budget(pt.socks[q], u.ring_size) == 0 else 0
        rc = xdp_queue_set(&sw.xdp, index, q, pt.socks[q].fd)
        if rc:
            raise OSError(-rc, f"{name}: cannot insert queue {q} in xsks_map")
    # what the first bind settled: frames above it are the program's to drop and count
    rc = xdp_config_set(&sw.xdp, PYXSW_CONFIG_MAX_FRAME, umem_max_frame(u))
    if rc:
        raise OSError(-rc, f"{name}: cannot give the XDP program the longest frame: "
                           f"{_os.strerror(-rc)}")
    port_sockopts(sw, pt, pyxsw_load_int(&sw.workers[0].mode))
    return 0


cdef void port_close(Sw *sw, Port *pt) noexcept:
    """Undo port_open (whatever part of it was done); no worker may be using the port."""
    cdef Umem *u = &sw.umem
    cdef int index = pt - sw.ports
    cdef int q
    cdef Sock *s
    if pt.kind == KIND_AFXDP:
        for q in range(sw.nworkers):
            if pt.socks[q] != NULL:
                xdp_queue_clear(&sw.xdp, index, q)
        fp_port_clear(sw, pt)           # no fast path into it before its program goes
        xdp_detach(&sw.xdp, pt)
        with nogil:
            usleep(5000)        # frames already redirected, or sent and not yet completed
        for q in range(sw.nworkers):
            s = pt.socks[q]
            if s == NULL:
                continue
            sock_reclaim(u, s, not umem_sock_is_owner(u, s))
            if umem_sock_is_owner(u, s):
                umem_retire_owner(u)            # kept: see Umem.owner
            else:
                sock_close(s)
            pt.socks[q] = NULL
            umem_set_sockets(u, u.nsocks - 1)
    memset(pt, 0, sizeof(Port))         # KIND_NONE: a free slot


cdef void port_sockopts(Sw *sw, Port *pt, int mode) noexcept nogil:
    """The socket options of a mode (busy polling in poll mode)."""
    cdef int q, rc
    if pt.kind != KIND_AFXDP:
        return
    for q in range(sw.nworkers):
        if pt.socks[q] != NULL:
            rc = sock_busy_poll(pt.socks[q], mode == MODE_POLL, sw.batch)
            if mode == MODE_POLL:
                sw.busy_poll = rc == 0


cdef void port_held(Sw *sw, Port *pt, uint64_t *held) noexcept nogil:
    """Add the frames pt's rings hold to held[fill, RX, TX, completion]."""
    cdef int q
    if pt.kind != KIND_AFXDP:
        return
    for q in range(sw.nworkers):
        if pt.socks[q] != NULL:
            sock_held(pt.socks[q], held)


cdef int port_queue_counters(Port *pt, int q, uint64_t *out) noexcept nogil:
    """The kernel's statistics of pt's queue q into out[QUEUE_COUNTERS]: 1; 0 when they
    could not be read; -1 when the port has no such queue (no socket there)."""
    if pt.kind != KIND_AFXDP or pt.socks[q] == NULL:
        return -1
    return 1 if sock_stats(pt.socks[q], out) else 0


cdef void port_prog_counters(Sw *sw, Port *pt, uint64_t *out) noexcept nogil:
    """The XDP program's counters of pt into out[PROG_COUNTERS] (zeros for other kinds)."""
    if pt.kind == KIND_AFXDP:
        xdp_percpu_sum(&sw.xdp, sw.xdp.stats_map_fd, pt - sw.ports, PROG_COUNTERS, out)
    else:
        memset(out, 0, PROG_COUNTERS * sizeof(uint64_t))
