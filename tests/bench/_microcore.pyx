# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# The microbenchmarks' view of the core: pyxsw's own _core.pyx, compiled once more as
# _microcore with a few C loops added, so that functions the extension keeps to itself
# (fdb_find, learn, decide, pool_get/put, the worker's frame cache) can be timed without a
# Python call per operation.  Built by conftest.py; the core's source is not changed.
include "_core.pyx"


cdef inline uint64_t _mac_key(uint64_t i) noexcept nogil:
    # A unicast, locally administered MAC as the core keys it (wire bytes read
    # little-endian: the first byte, 0x02, is the low byte), unique for i < 2**40.
    return ((i << 8) | 0x02) & MAC_MASK


def mac_key(uint64_t i):
    return _mac_key(i)


def learn_range(Datapath c, uint64_t first, uint64_t n, int port):
    """learn() as the worker does for n sources first..first+n-1 arriving on `port`;
    returns how many entries the FDB gained."""
    cdef Worker *w = c.sw.workers[0]
    cdef uint32_t now = now_s()
    cdef uint64_t i, before = w.c[WORKER_LEARNED]
    if w.gen != c.sw.gen:
        worker_apply_gen(w)
    with nogil:
        for i in range(first, first + n):
            learn(w, c.sw.fdb.tab, _mac_key(i), <uint16_t>port, now)
    w.events.head = w.events.tail = 0       # nobody drains the event ring here
    return w.c[WORKER_LEARNED] - before


def lookup_keys(Datapath c, const uint64_t[:] keys, uint64_t rounds):
    """fdb_find() of every key, `rounds` times; returns the hits."""
    cdef uint64_t r, hits = 0
    cdef Py_ssize_t i, n = keys.shape[0]
    cdef uint16_t port
    cdef FdbTable *tab = c.sw.fdb.tab
    with nogil:
        for r in range(rounds):
            for i in range(n):
                if fdb_find(tab, keys[i], &port) != NULL:
                    hits += 1
    return hits


def decide_burst(Datapath c, const uint8_t[:] burst, uint32_t stride, uint32_t length,
                 int in_port, uint64_t rounds):
    """decide() (learning included) on every frame of a burst laid out `stride` bytes
    apart, `rounds` times; returns a checksum of the decisions."""
    cdef Worker *w = c.sw.workers[0]
    cdef uint32_t now = now_s()
    cdef Py_ssize_t n = burst.shape[0] // stride, i
    cdef uint64_t r
    cdef int64_t total = 0
    cdef Frame f
    if w.gen != c.sw.gen:
        worker_apply_gen(w)
    with nogil:
        for r in range(rounds):
            for i in range(n):
                total += decide(w, c.sw.fdb.tab, &burst[i * stride], length,
                                <uint16_t>in_port, now, &f)
    return total


def pool_cycle(Datapath c, uint32_t burst, uint64_t rounds):
    """pool_get() then pool_put() of `burst` frames on the shared stack, `rounds` times."""
    cdef uint64_t buf[4096]
    cdef uint64_t r
    cdef uint32_t k = 0
    if burst > 4096:
        raise ValueError("burst > 4096")
    with nogil:
        for r in range(rounds):
            k = pool_get(&c.sw.umem.pool, buf, burst)
            pool_put(&c.sw.umem.pool, buf, k)
    return k


def cache_cycle(Datapath c, uint32_t burst, uint64_t rounds):
    """The worker's fast path: cache_take() `burst` frames, then cache_put() them back."""
    cdef Worker *w = c.sw.workers[0]
    cdef uint64_t buf[4096]
    cdef uint64_t r
    cdef uint32_t i
    if burst > 4096:
        raise ValueError("burst > 4096")
    with nogil:
        for r in range(rounds):
            for i in range(burst):
                buf[i] = cache_take(w)
            for i in range(burst):
                cache_put(w, buf[i])
    return w.ncache
