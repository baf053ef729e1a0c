# System calls and atomics the core uses.
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t

cdef extern from "<sys/socket.h>" nogil:
    ctypedef unsigned int socklen_t
    enum:
        MSG_DONTWAIT
        SOL_SOCKET
    ssize_t sendto(int fd, const void *buf, size_t n, int flags, const void *addr, socklen_t alen)
    ssize_t recvfrom(int fd, void *buf, size_t n, int flags, void *addr, socklen_t *alen)
    int setsockopt(int fd, int level, int name, const void *val, socklen_t len)
    int getsockopt(int fd, int level, int name, void *val, socklen_t *len)

cdef extern from "<poll.h>" nogil:
    struct pollfd:
        int fd
        short events
        short revents
    enum:
        POLLIN
    int poll(pollfd *fds, unsigned long nfds, int timeout)

cdef extern from "<sys/eventfd.h>" nogil:
    enum:
        EFD_NONBLOCK
        EFD_CLOEXEC
    int eventfd(unsigned int initval, int flags)

cdef extern from "<unistd.h>" nogil:
    int close(int fd)
    ssize_t read(int fd, void *buf, size_t n)
    ssize_t write(int fd, const void *buf, size_t n)

cdef extern from "<sys/mman.h>" nogil:
    enum:
        PROT_READ
        PROT_WRITE
        MAP_PRIVATE
        MAP_ANONYMOUS
        MAP_POPULATE
    void *MAP_FAILED
    void *mmap(void *addr, size_t length, int prot, int flags, int fd, long offset)
    int munmap(void *addr, size_t length)

cdef extern from "<sys/resource.h>" nogil:
    enum:
        RLIMIT_MEMLOCK
    ctypedef unsigned long rlim_t
    rlim_t RLIM_INFINITY
    struct rlimit:
        rlim_t rlim_cur
        rlim_t rlim_max
    int setrlimit(int resource, const rlimit *rlim)

cdef extern from "<time.h>" nogil:
    ctypedef int clockid_t
    enum:
        CLOCK_MONOTONIC_COARSE
        CLOCK_MONOTONIC
    struct timespec:
        long tv_sec
        long tv_nsec
    int clock_gettime(clockid_t clk, timespec *ts)

cdef extern from "<sched.h>" nogil:
    enum:
        CLONE_NEWNET
    int unshare(int flags)

cdef extern from "<net/if.h>" nogil:
    unsigned int if_nametoindex(const char *ifname)

cdef extern from "<errno.h>" nogil:
    int errno
    enum:
        EAGAIN
        EBUSY
        ENOBUFS
        ENETDOWN
        EINTR

cdef extern from "<pthread.h>" nogil:
    ctypedef struct pthread_mutex_t:
        pass
    int pthread_mutex_init(pthread_mutex_t *m, const void *attr)
    int pthread_mutex_lock(pthread_mutex_t *m)
    int pthread_mutex_trylock(pthread_mutex_t *m)
    int pthread_mutex_unlock(pthread_mutex_t *m)
    int pthread_mutex_destroy(pthread_mutex_t *m)

# Atomics: GCC builtins behind tiny inline functions, so the seqlock and the
# single-writer counters read as what they are.
cdef extern from *:
    """
    #include <stdint.h>
    #include <stdio.h>
    #include <stdlib.h>
    /* Debug builds (PYXSW_DEBUG=1 make ...) check invariants on the packet path; in release
       builds the tests below are `if (0)` and compile away. */
    #ifndef PYXSW_DEBUG
    #define PYXSW_DEBUG 0
    #endif
    static inline void pyxsw_check(int ok, const char *what) {
        if (!ok) { fprintf(stderr, "pyxsw: invariant broken: %s\\n", what); abort(); }
    }
    static inline uint32_t pyxsw_load_acq32(const uint32_t *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
    static inline uint32_t pyxsw_load_rlx32(const uint32_t *p) { return __atomic_load_n(p, __ATOMIC_RELAXED); }
    static inline void pyxsw_store_rel32(uint32_t *p, uint32_t v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }
    static inline void pyxsw_store_rlx32(uint32_t *p, uint32_t v) { __atomic_store_n(p, v, __ATOMIC_RELAXED); }
    static inline int pyxsw_load_int(const int *p) { return __atomic_load_n(p, __ATOMIC_SEQ_CST); }
    static inline void pyxsw_store_int(int *p, int v) { __atomic_store_n(p, v, __ATOMIC_SEQ_CST); }
    static inline uint64_t pyxsw_load64(const uint64_t *p) { return __atomic_load_n(p, __ATOMIC_SEQ_CST); }
    static inline void pyxsw_store64(uint64_t *p, uint64_t v) { __atomic_store_n(p, v, __ATOMIC_SEQ_CST); }
    static inline void *pyxsw_load_ptr(void **p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
    static inline void pyxsw_store_ptr(void **p, void *v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }
    static inline void pyxsw_fence_acq(void) { __atomic_thread_fence(__ATOMIC_ACQUIRE); }
    static inline void pyxsw_fence_rel(void) { __atomic_thread_fence(__ATOMIC_RELEASE); }
    static inline void pyxsw_fence_seq(void) { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
    static inline void pyxsw_cpu_relax(void) { __builtin_ia32_pause(); }
    static inline void pyxsw_prefetch(const void *p) { __builtin_prefetch(p, 0, 3); }
    static inline uint64_t pyxsw_load_mac8(const uint8_t *p) { uint64_t v; __builtin_memcpy(&v, p, 8); return v; }
    #define pyxsw_likely(x) __builtin_expect(!!(x), 1)
    #define pyxsw_unlikely(x) __builtin_expect(!!(x), 0)
    """
    bint PYXSW_DEBUG
    void pyxsw_check(bint ok, const char *what) nogil
    uint32_t pyxsw_load_acq32(const uint32_t *p) nogil
    uint32_t pyxsw_load_rlx32(const uint32_t *p) nogil
    void pyxsw_store_rel32(uint32_t *p, uint32_t v) nogil
    void pyxsw_store_rlx32(uint32_t *p, uint32_t v) nogil
    int pyxsw_load_int(const int *p) nogil
    void pyxsw_store_int(int *p, int v) nogil
    uint64_t pyxsw_load64(const uint64_t *p) nogil
    void pyxsw_store64(uint64_t *p, uint64_t v) nogil
    void *pyxsw_load_ptr(void **p) nogil
    void pyxsw_store_ptr(void **p, void *v) nogil
    void pyxsw_fence_acq() nogil
    void pyxsw_fence_rel() nogil
    void pyxsw_fence_seq() nogil
    void pyxsw_cpu_relax() nogil
    void pyxsw_prefetch(const void *p) nogil
    uint64_t pyxsw_load_mac8(const uint8_t *p) nogil
    bint pyxsw_likely(bint x) nogil
    bint pyxsw_unlikely(bint x) nogil
