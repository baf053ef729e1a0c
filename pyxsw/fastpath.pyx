# The in-kernel fast path ([switch] fastpath = "xdp"): what the XDP program needs to forward
# known unicast itself, kept by the control side and the FDB's writers.
#
#   the kernel FDB    fdb_map, a copy of the FDB: every change of the table (fdb.pyx's
#                     fdb_put_locked and fdb_kill_locked: learning, moves, static entries,
#                     deletes, flushes, aging) is made to it too, under the FDB's lock, so
#                     the two never disagree for longer than the change itself.  A worker
#                     that learns a move updates it before it forwards another frame.
#   the ports' rows   port_rows (by index): the port's VLANs, fast-path flags and longest
#                     frame, written under a seqlock whenever ports change
#                     (Datapath._publish); ifx_map and ports_map give a port's index by its
#                     ifindex; tx_map holds the interface of every target.
#   aging             the program writes the second a MAC last sent into its kernel entry;
#                     the sweep takes it before it ages an entry (kfdb_seen).
#
# The program forwards a frame only when its source is in the kernel copy on its ingress
# port and its destination on a target port in its VLAN: everything else, and every frame
# while a map update fails, takes the AF_XDP path, so a failure here costs speed, never a
# frame.


cdef void kfdb_set(Fdb *f, uint64_t key, uint16_t port, uint32_t seen) noexcept nogil:
    """The kernel copy of an entry the table has just made or changed (f.lock held).  When
    the kernel refuses, the key leaves it: a move must never leave it on its old port."""
    cdef pyxsw_fdb_val v
    v.port = port
    v.seen = seen
    if bpf_map_update_elem(f.kfd, &key, &v, BPF_ANY) != 0:
        f.ksync_errors += 1
        bpf_map_delete_elem(f.kfd, &key)


cdef void kfdb_del(Fdb *f, uint64_t key) noexcept nogil:
    """An entry the table is removing (f.lock held); a failure other than "not there" is
    counted with the failed updates."""
    if bpf_map_delete_elem(f.kfd, &key) != 0 and errno != ENOENT:
        f.ksync_errors += 1


cdef uint32_t kfdb_seen(Fdb *f, FdbSlot *s) noexcept nogil:
    """When s's MAC last sent, as the table or the program saw it (f.lock held): the later
    one is kept in the slot, so that traffic only the kernel forwards keeps it alive."""
    cdef pyxsw_fdb_val v
    if bpf_map_lookup_elem(f.kfd, &s.key, &v) == 0 and <int32_t>(v.seen - s.seen) > 0:
        s.seen = v.seen
    return s.seen


cdef void kfdb_attach(Fdb *f, int fd) noexcept nogil:
    """Start keeping fd as the kernel copy: every live entry is copied to it first."""
    cdef FdbTable *t
    cdef FdbSlot *s
    cdef uint32_t i
    pthread_mutex_lock(&f.lock)
    t = f.tab
    f.kfd = fd
    for i in range(t.live):
        s = &t.slots[t.order[i]]
        if s.state == SLOT_LIVE:
            kfdb_set(f, s.key, s.port, s.seen)
    pthread_mutex_unlock(&f.lock)


cdef void kfdb_detach(Fdb *f) noexcept nogil:
    pthread_mutex_lock(&f.lock)
    f.kfd = -1
    pthread_mutex_unlock(&f.lock)


cdef uint32_t kfdb_count(Fdb *f) noexcept nogil:
    """Entries in the kernel copy, counted there (no lock: the Datapath's lock keeps f.kfd,
    which changes only when the first port opens and when the switch is freed)."""
    cdef uint64_t key, nxt
    cdef uint32_t n = 0
    cdef int rc
    if f.kfd < 0:
        return 0
    rc = bpf_map_get_next_key(f.kfd, NULL, &nxt)
    while rc == 0:
        n += 1
        key = nxt
        rc = bpf_map_get_next_key(f.kfd, &key, &nxt)
    return n


cdef void kfdb_mark(Fdb *f, FdbEntry *e, uint32_t n, uint32_t now) noexcept nogil:
    """Which listed entries are in the kernel copy, and their age by its last seen too (no
    lock, as kfdb_count)."""
    cdef pyxsw_fdb_val v
    cdef uint32_t i
    if f.kfd < 0:
        return
    for i in range(n):
        if bpf_map_lookup_elem(f.kfd, &e[i].key, &v) == 0 and v.port == e[i].port:
            e[i].in_kernel = 1
            if not e[i].is_static and <int32_t>(now - v.seen) < <int32_t>e[i].age:
                e[i].age = now - v.seen if <int32_t>(now - v.seen) > 0 else 0


# ---------------------------------------------------------------------------- the ports' rows

cdef uint32_t fp_flags(Sw *sw, Port *pt) noexcept nogil:
    """A port's flags: its frames forwarded in the kernel (IN), frames forwarded to it there
    (OUT).  A direction captured or mirrored, and a mirror's output, take the AF_XDP path,
    where the workers copy them."""
    cdef uint32_t flags
    if not sw.fastpath or pt.kind != KIND_AFXDP or not pt.active or not pt.up or pt.mirror_dst:
        return 0
    flags = PYXSW_FP_IN | (PYXSW_FP_OUT if pt.fp_capable and pt.mtu else 0)
    if flags & PYXSW_FP_OUT and pt.fp_sg:
        flags |= PYXSW_FP_OUT_SG
    if pt.tap & TAP_IN or pt.mirror_in:
        flags &= ~(<uint32_t>PYXSW_FP_IN)
    if pt.tap & TAP_OUT or pt.mirror_out:
        flags &= ~(<uint32_t>(PYXSW_FP_OUT | PYXSW_FP_OUT_SG))
    return flags


cdef int row_write(Xdp *x, Port *pt, uint32_t index, pyxsw_port *row) noexcept nogil:
    """Write a port's row in port_rows under its seqlock: seq made odd (on the old fields),
    the new fields, seq even again, each one map update, so that the program, which reads a
    row only while seq is even and unchanged (row_read() in the XDP program), never uses a
    mix of old and new (an array map's update copies in place).  0 or -errno; after a failure
    the row may stay odd, and the program then skips it: no fast path for that port."""
    cdef pyxsw_port old
    if bpf_map_lookup_elem(x.rows_map_fd, &index, &old) != 0:
        return -errno
    old.seq = pt.row_seq + 1
    if bpf_map_update_elem(x.rows_map_fd, &index, &old, BPF_ANY) != 0:
        return -errno
    row.seq = pt.row_seq + 1
    if bpf_map_update_elem(x.rows_map_fd, &index, row, BPF_ANY) != 0:
        return -errno
    row.seq = pt.row_seq + 2
    if bpf_map_update_elem(x.rows_map_fd, &index, row, BPF_ANY) != 0:
        return -errno
    pt.row_seq += 2
    return 0


cdef int fp_port_write(Sw *sw, Port *pt) noexcept nogil:
    """Write pt's row as the program sees it, its tx_map entry and its ifindex's entries: 0
    or -errno.  A target gets its tx_map entry before the flag that sends frames there, and
    loses it after."""
    cdef Xdp *x = &sw.xdp
    cdef pyxsw_port row
    cdef uint32_t index = pt - sw.ports
    cdef uint32_t plus1 = index + 1
    cdef uint32_t key = pt.ifindex
    cdef uint32_t dev = pt.ifindex
    cdef int rc = 0, r
    if x.ports_map_fd < 0 or pt.kind != KIND_AFXDP:
        return 0
    memset(&row, 0, sizeof(row))
    row.max_len = pt.mtu + 18 if pt.mtu else 0     # xdp_ok_fwd_dev(): MTU + ETH_HLEN + VLAN_HLEN
    row.flags = fp_flags(sw, pt)
    row.untagged = pt.untagged
    row.vlan_mode = pt.vlan_mode
    memcpy(row.vlans, pt.vlans, sizeof(row.vlans))
    if row.flags & PYXSW_FP_OUT:
        if bpf_map_update_elem(x.tx_map_fd, &index, &dev, BPF_ANY) != 0:
            rc = -errno
            row.flags &= ~(<uint32_t>PYXSW_FP_OUT)     # not a target until it can be
    r = row_write(x, pt, index, &row)
    if r and rc == 0:
        rc = r
    if bpf_map_update_elem(x.ports_map_fd, &key, &index, BPF_ANY) != 0 and rc == 0:
        rc = -errno
    if key < PYXSW_IFX_DIRECT and bpf_map_update_elem(x.ifx_map_fd, &key, &plus1, BPF_ANY) != 0 \
            and rc == 0:
        rc = -errno
    if not (row.flags & PYXSW_FP_OUT):
        bpf_map_delete_elem(x.tx_map_fd, &index)
    return rc


cdef void fp_port_clear(Sw *sw, Port *pt) noexcept nogil:
    """pt leaves the program's maps: its ifindex's entries, its row (zeros: an array's row
    cannot be deleted), then its tx_map entry."""
    cdef Xdp *x = &sw.xdp
    cdef uint32_t index = pt - sw.ports
    cdef uint32_t key = pt.ifindex
    cdef uint32_t zero = 0
    cdef pyxsw_port row
    if x.ports_map_fd < 0:
        return
    if key < PYXSW_IFX_DIRECT:
        bpf_map_update_elem(x.ifx_map_fd, &key, &zero, BPF_ANY)
    bpf_map_delete_elem(x.ports_map_fd, &key)
    memset(&row, 0, sizeof(row))
    row_write(x, pt, index, &row)
    bpf_map_delete_elem(x.tx_map_fd, &index)


cdef int fp_ports_write(Sw *sw) noexcept nogil:
    """Every port's row again (ports changed): 0, or the first -errno.  Inactive ones too:
    a port being deleted stops being a target here, before its program is detached."""
    cdef int p, r, rc = 0
    for p in range(MAX_PORTS):
        if sw.ports[p].kind == KIND_AFXDP:
            r = fp_port_write(sw, &sw.ports[p])
            if rc == 0:
                rc = r
    return rc


cdef void fp_port_counters(Sw *sw, Port *pt, uint64_t *out) noexcept nogil:
    """pt's fast-path counters summed over CPUs, into out[FASTPATH_COUNTERS]."""
    xdp_percpu_sum(&sw.xdp, sw.xdp.fast_stats_fd, pt - sw.ports, FASTPATH_COUNTERS, out)


cdef str fp_target_reason(Sw *sw, Port *pt):
    """'' when pt is a fast-path target, else why it is not."""
    cdef uint32_t index = pt - sw.ports
    cdef pyxsw_port row
    if not sw.fastpath:
        return "the fast path is off"
    if not pt.active:
        return "not active"
    if not pt.up:
        return "down"
    if pt.mirror_dst:
        return "a mirror's output"
    if pt.tap & TAP_OUT or pt.mirror_out:
        return "what it sends is captured or mirrored"
    if not pt.mtu:
        return "its MTU is not known yet"
    if not pt.fp_capable:
        return ("its device does not take XDP-redirected frames (a veth takes them while "
                "its peer has GRO on or an XDP program)")
    if (sw.xdp.rows_map_fd < 0 or bpf_map_lookup_elem(sw.xdp.rows_map_fd, &index, &row) != 0
            or not (row.flags & PYXSW_FP_OUT) or (row.seq & 1)):
        return "its row in the XDP program's maps could not be written"
    return ""
