# The UMEM and its frame pool.
#
# One UMEM backs every socket of every port and queue, so forwarding a frame between ports
# hands over its address and never copies its bytes.  Free frames live on a LIFO stack (the
# most recently used frame is the warmest in cache) behind a mutex; each worker keeps a
# private cache of frames and only touches the shared stack in chunks, so in steady state a
# worker recycles its own completions into its own fill rings without any shared state.
#
# Every frame is in exactly one place: the shared stack, a worker's cache, a fill ring, an
# RX ring, a TX ring, a completion ring, or a worker's hands during a burst.  accounting()
# adds those up; a sum that is not the UMEM size is a leak.

cdef enum:
    CACHE_SIZE = 8192       # frames a worker's cache can hold at most
    CACHE_CHUNK = 512       # frames moved between a cache and the shared stack at once


cdef struct Pool:
    uint64_t *addrs         # stack of free frame addresses (frame base, no offset)
    uint32_t n              # free frames on the stack
    uint32_t size           # every frame of the UMEM fits
    pthread_mutex_t lock


cdef int pool_init(Pool *p, uint32_t nframes, uint32_t frame_size) noexcept nogil:
    cdef uint32_t i
    p.addrs = <uint64_t *>malloc(nframes * sizeof(uint64_t))
    if p.addrs == NULL:
        return -1
    # Lowest addresses on top: the first frames used are the first pages of the UMEM.
    for i in range(nframes):
        p.addrs[i] = <uint64_t>(nframes - 1 - i) * frame_size
    p.n = nframes
    p.size = nframes
    pthread_mutex_init(&p.lock, NULL)
    return 0


cdef void pool_destroy(Pool *p) noexcept nogil:
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


cdef void *umem_area_new(uint64_t size) noexcept nogil:
    # The memlock rlimit is capped on some machines; root with CAP_IPC_LOCK registers the
    # UMEM anyway, so a failed raise is not an error (the registration reports one).
    cdef rlimit r
    r.rlim_cur = RLIM_INFINITY
    r.rlim_max = RLIM_INFINITY
    setrlimit(RLIMIT_MEMLOCK, &r)
    cdef void *area = mmap(NULL, size, PROT_READ | PROT_WRITE,
                           MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0)
    return NULL if area == MAP_FAILED else area
