# The UMEM: its area, its registration, its fill and completion rings, the frame pool, the
# anchor socket, and where every frame is.
#
# One UMEM backs every socket of every port and queue, so forwarding a frame between ports
# hands over its address and never copies its bytes.  Free frames live on a LIFO stack (the
# most recently used frame is the warmest in cache) behind a mutex; each worker keeps a
# private cache of frames and only touches the shared stack in chunks, so in steady state a
# worker recycles its own completions into its own fill rings without any shared state.
#
# The kernel shares a UMEM through its first socket, which libxdp makes out of the UMEM's
# own descriptor: it stays bound to its (interface, queue) for the UMEM's life.  In copy mode
# that first socket (the anchor) is bound to the lo of a network namespace made for this
# switch alone, where it receives nothing and holds no frames, so that every port's interface
# can come and go; the kernel removes that namespace with the switch's last socket, however
# the process ends.  Without the privilege to make a namespace, the host's lo; in zero-copy
# mode (the first bind decides copy or zero-copy for every socket), the first port's queue.
#
# Every frame is in exactly one place: the shared stack, a worker's cache, a fill ring, an
# RX ring, a TX ring, a completion ring, or a worker's hands during a burst.  umem_account()
# adds those up; a sum that is not the UMEM size is a leak.
#
# Functions here return 0 or -errno and never raise: the Python face (core.pyx) words errors.


# ---------------------------------------------------------------------------- the pool

cdef int pool_init(Pool *p, uint32_t nframes, uint32_t frame_size) noexcept nogil:
    cdef uint32_t i
    p.addrs = <uint64_t *>malloc(nframes * sizeof(uint64_t))
    if p.addrs == NULL:
        return -ENOMEM
    # Lowest addresses on top: the first frames used are the first pages of the UMEM.
    for i in range(nframes):
        p.addrs[i] = <uint64_t>(nframes - 1 - i) * frame_size
    p.n = nframes
    p.size = nframes
    pthread_mutex_init(&p.lock, NULL)
    return 0


cdef void pool_destroy(Pool *p) noexcept nogil:
    if p.addrs != NULL:
        free(p.addrs)
        p.addrs = NULL
        pthread_mutex_destroy(&p.lock)


cdef uint32_t pool_get(Pool *p, uint64_t *out, uint32_t n) noexcept nogil:
    cdef uint32_t k
    pthread_mutex_lock(&p.lock)
    k = n if n < p.n else p.n
    p.n -= k
    memcpy(out, &p.addrs[p.n], k * sizeof(uint64_t))
    pthread_mutex_unlock(&p.lock)
    return k


cdef void pool_put(Pool *p, const uint64_t *addrs, uint32_t n) noexcept nogil:
    pthread_mutex_lock(&p.lock)
    memcpy(&p.addrs[p.n], addrs, n * sizeof(uint64_t))
    p.n += n
    pthread_mutex_unlock(&p.lock)


cdef uint32_t pool_free(Pool *p) noexcept nogil:
    cdef uint32_t n
    pthread_mutex_lock(&p.lock)
    n = p.n
    pthread_mutex_unlock(&p.lock)
    return n


# ---------------------------------------------------------------------------- life

cdef int umem_init(Umem *u, uint32_t nframes, uint32_t frame_size, uint32_t ring_size,
                   int zero_copy, uint32_t max_frame) noexcept nogil:
    """The sizes and the pool; no area yet (see umem_map)."""
    u.max_frame = max_frame
    u.sg = max_frame > frame_size - XDP_PACKET_HEADROOM
    u.frame_size = frame_size
    u.frame_mask = ~(<uint64_t>frame_size - 1)
    u.nframes = nframes
    u.ring_size = ring_size
    u.fill_target = ring_size
    u.zero_copy = zero_copy
    u.owner_ifindex = -1
    return pool_init(&u.pool, nframes, frame_size)


cdef int umem_map(Umem *u) noexcept nogil:
    """Map the area and register it: -ENOMEM, or the registration's error."""
    # The memlock rlimit is capped on some machines; root with CAP_IPC_LOCK registers the
    # UMEM anyway, so a failed raise is not an error (the registration reports one).
    cdef rlimit r
    cdef void *area
    r.rlim_cur = RLIM_INFINITY
    r.rlim_max = RLIM_INFINITY
    setrlimit(RLIMIT_MEMLOCK, &r)
    u.area_size = <uint64_t>u.nframes * u.frame_size
    area = mmap(NULL, u.area_size, PROT_READ | PROT_WRITE,
                MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0)
    if area == MAP_FAILED:
        return -ENOMEM
    u.area = <uint8_t *>area
    return umem_register(u)


cdef int umem_register(Umem *u) noexcept nogil:
    cdef xsk_umem_config cfg
    cdef int rc
    cfg.fill_size = u.ring_size
    cfg.comp_size = u.ring_size
    cfg.frame_size = u.frame_size
    cfg.frame_headroom = 0
    cfg.flags = 0
    rc = xsk_umem__create(&u.xsk, u.area, u.area_size, &u.fill, &u.comp, &cfg)
    if rc:
        u.xsk = NULL
    return rc


cdef int umem_reset(Umem *u) noexcept nogil:
    """Register the UMEM anew, in the calling thread's network namespace: after a first bind
    that failed (libxdp's UMEM is then unusable) or to anchor it in another namespace."""
    if u.xsk != NULL:
        xsk_umem__delete(u.xsk)
        u.xsk = NULL
    return umem_register(u)


cdef void umem_destroy(Umem *u) noexcept nogil:
    """After every port's sockets are closed."""
    if u.owner != NULL:
        xsk_socket__delete(u.owner.xsk)
        free(u.owner)
        u.owner = NULL
    if u.xsk != NULL:
        xsk_umem__delete(u.xsk)
        u.xsk = NULL
    if u.area != NULL:
        munmap(u.area, u.area_size)
        u.area = NULL
    pool_destroy(&u.pool)


cdef void umem_set_sockets(Umem *u, int nsocks) noexcept nogil:
    u.nsocks = nsocks
    u.fill_target = umem_fill_target(u, nsocks)


cdef uint32_t umem_fill_target(Umem *u, int nsocks) noexcept nogil:
    # Fill rings may hold half of the UMEM; caches and frames in flight use the rest.
    cdef uint32_t t
    if nsocks <= 0:
        return u.ring_size
    t = u.nframes // 2 // nsocks
    return t if t < u.ring_size else u.ring_size


# ---------------------------------------------------------------------------- the anchor

cdef uint32_t umem_max_frame(Umem *u) noexcept nogil:
    """The longest frame the switch carries: max_frame, or less where one UMEM frame must
    hold it (multi-buffer not wanted, or refused)."""
    cdef uint32_t room = u.frame_size - XDP_PACKET_HEADROOM
    return u.max_frame if u.sg or u.max_frame < room else room


cdef int umem_sock_open(Umem *u, const char *ifname, int ifindex, int q, Sock **out) noexcept nogil:
    """A socket on (ifname, q) sharing the UMEM, after the UMEM's anchor if it has none yet."""
    cdef int rc
    if u.owner_retired and u.owner_ifindex == ifindex and u.owner_q == q:
        u.owner_retired = False             # the interface is back: its socket too
        out[0] = u.owner
        return 0
    if u.owner != NULL:
        # bind flags are the first socket's: the kernel refuses them on a shared socket
        return sock_open(u, ifname, q, XDP_USE_NEED_WAKEUP, out)
    rc = umem_first_sock(u, ifname, ifindex, q, out)
    if (rc == -EINVAL or rc == -EOPNOTSUPP) and u.sg:
        # Multi-buffer is the first bind's flag too: a kernel before 6.6 refuses it
        # (EINVAL), and so does a zero-copy driver that cannot receive frames in fragments
        # (EOPNOTSUPP).  Without it, frames above a UMEM frame are dropped (the switch says
        # so, and the XDP program counts them).
        u.sg = 0
        rc = umem_first_sock(u, ifname, ifindex, q, out)
        if rc:
            u.sg = 1
    return rc


cdef int umem_first_sock(Umem *u, const char *ifname, int ifindex, int q, Sock **out) noexcept nogil:
    cdef int flags = XDP_USE_NEED_WAKEUP | (XDP_USE_SG if u.sg else 0)
    cdef int rc
    cdef bint zc
    # The first socket's bind flags decide copy or zero-copy for every socket that shares
    # the UMEM.  A failed first bind leaves libxdp's UMEM unusable, so "auto" probes
    # zero-copy on a scratch UMEM instead of trying it on the real one.
    zc = u.zero_copy == ZC_ON or (u.zero_copy == ZC_AUTO and probe_zero_copy(ifname, q))
    flags |= XDP_ZEROCOPY if zc else XDP_COPY
    if not zc and umem_anchor_on_loopback(u, flags):
        return sock_open(u, ifname, q, flags, out)
    rc = sock_open(u, ifname, q, flags, out)
    if rc:
        umem_reset(u)
        return rc
    u.zero_copy_active = sock_zero_copy(out[0])
    u.owner = out[0]
    u.owner_ifindex = ifindex
    u.owner_q = q
    snprintf(u.owner_name, sizeof(u.owner_name), "%s", ifname)
    u.anchor = ANCHOR_PORT
    return 0


cdef bint umem_sock_is_owner(Umem *u, Sock *s) noexcept nogil:
    return s == u.owner


cdef void umem_retire_owner(Umem *u) noexcept nogil:
    """The owner's port is going: keep its socket (see Umem.owner)."""
    u.owner_retired = True


cdef str umem_anchor_text(Umem *u):
    """Where the UMEM's first socket is bound, in words (for the switch's status)."""
    if u.anchor == ANCHOR_OWN_NETNS:
        return "lo of the switch's own network namespace"
    if u.anchor == ANCHOR_HOST_LO:
        return f"lo (the switch's own namespace failed: {_os.strerror(u.anchor_err)})"
    if u.anchor == ANCHOR_PORT:
        return f"{u.owner_name.decode()} queue {u.owner_q} (the first port's socket)"
    return ""


cdef struct AnchorJob:
    Umem *u
    int flags
    int err                 # 0, or the errno of what failed


cdef void *anchor_in_own_netns(void *arg) noexcept nogil:
    # A thread of its own: unshare() moves the calling thread into the new namespace.  The
    # UMEM is registered again there (its first socket is the UMEM's own descriptor, bound
    # in the namespace it was made in) and that socket bound to the namespace's lo; sockets
    # on the ports, made in the switch's namespace, share the UMEM across namespaces.
    cdef AnchorJob *job = <AnchorJob *>arg
    cdef int rc
    if unshare(CLONE_NEWNET) != 0:
        job.err = errno
        return NULL
    rc = umem_reset(job.u)
    if rc == 0:
        rc = umem_anchor_here(job.u, job.flags)
    job.err = -rc if rc < 0 else 0
    return NULL


cdef bint umem_anchor_on_loopback(Umem *u, int flags) noexcept nogil:
    """In copy mode, the UMEM's first socket on a lo: the switch's own namespace's, else the
    host's.  False, and the UMEM as it was, when neither can be had."""
    cdef AnchorJob job
    cdef pthread_t t
    cdef int rc
    job.u = u
    job.flags = flags
    job.err = 0
    rc = pthread_create(&t, NULL, anchor_in_own_netns, &job)
    if rc == 0:
        pthread_join(t, NULL)
        if job.err == 0:
            u.anchor = ANCHOR_OWN_NETNS
            return True
    else:
        job.err = rc
    umem_reset(u)                   # back in this namespace
    rc = umem_anchor_here(u, flags)
    if rc > 0:
        u.anchor = ANCHOR_HOST_LO
        u.anchor_err = job.err
        u.anchor_ifindex = rc
        return True
    return False


cdef int umem_anchor_here(Umem *u, int flags) noexcept nogil:
    """The UMEM's first socket on lo of the calling thread's namespace: lo's ifindex, or
    -errno (and the UMEM registered anew)."""
    cdef int ifindex = if_nametoindex(b"lo")
    cdef int rc
    if ifindex == 0:
        return -ENODEV
    rc = sock_open(u, b"lo", 0, flags, &u.owner)
    if rc:
        umem_reset(u)
        return rc
    u.owner_ifindex = -1            # on no port: never retired, never reused
    u.zero_copy_active = False
    return ifindex


cdef bint probe_zero_copy(const char *ifname, int q) noexcept nogil:
    """Can (ifname, q) bind an AF_XDP socket in zero-copy mode?  Tried on a scratch UMEM."""
    cdef void *area
    cdef xsk_umem *umem = NULL
    cdef xsk_socket *xsk = NULL
    cdef xsk_ring_prod fill, tx
    cdef xsk_ring_cons comp, rx
    cdef xsk_umem_config ucfg
    cdef xsk_socket_config cfg
    cdef uint64_t size = 64 * 4096
    cdef int rc = -1
    area = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
    if area == MAP_FAILED:
        return False
    ucfg.fill_size = 64
    ucfg.comp_size = 64
    ucfg.frame_size = 4096
    ucfg.frame_headroom = 0
    ucfg.flags = 0
    if xsk_umem__create(&umem, area, size, &fill, &comp, &ucfg) == 0:
        cfg.rx_size = 64
        cfg.tx_size = 64
        cfg.libxdp_flags = XSK_LIBXDP_FLAGS__INHIBIT_PROG_LOAD
        cfg.xdp_flags = 0
        cfg.bind_flags = XDP_ZEROCOPY
        rc = xsk_socket__create_shared(&xsk, ifname, q, umem, &rx, &tx, &fill, &comp, &cfg)
        if rc == 0:
            xsk_socket__delete(xsk)
        xsk_umem__delete(umem)
    munmap(area, size)
    return rc == 0


# ---------------------------------------------------------------------------- accounting

cdef void umem_account(Sw *sw, uint64_t *out) noexcept nogil:
    """Where every frame is, into out[POOL_COUNTERS] (ports' rings through port_held())."""
    cdef Umem *u = &sw.umem
    cdef uint64_t held[4]           # fill, RX, TX, completion rings
    cdef int p, q
    memset(held, 0, sizeof(held))
    memset(out, 0, POOL_COUNTERS * sizeof(uint64_t))
    out[POOL_FRAMES] = u.nframes
    out[POOL_POOL] = pool_free(&u.pool)
    for q in range(sw.nworkers):
        out[POOL_CACHES] += sw.workers[q].ncache
    for p in range(MAX_PORTS):
        port_held(sw, &sw.ports[p], held)
    if u.owner_retired:
        sock_held(u.owner, held)
    out[POOL_FILL] = held[0]
    out[POOL_RX] = held[1]
    out[POOL_TX] = held[2]
    out[POOL_COMPLETION] = held[3]
    out[POOL_PLACED] = (out[POOL_POOL] + out[POOL_CACHES] + held[0] + held[1] + held[2]
                        + held[3])
    out[POOL_IN_FLIGHT] = out[POOL_FRAMES] - out[POOL_PLACED]
    out[POOL_FILL_TARGET] = u.fill_target
