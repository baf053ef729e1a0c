# System calls the core uses (the atomics are in atomics.pxd).
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t

cdef extern from "<stdarg.h>":
    ctypedef struct va_list:
        pass

cdef extern from "<stdio.h>" nogil:
    int vsnprintf(char *buf, size_t n, const char *fmt, va_list ap)

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
    int usleep(unsigned int usec)
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
        CLOCK_REALTIME
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
        EBADF
        EBUSY
        EEXIST
        ENOBUFS
        ENODEV
        ENOENT
        ENOMEM
        ENETDOWN
        EINTR
        EINVAL
        EOPNOTSUPP

cdef extern from "<pthread.h>" nogil:
    ctypedef unsigned long pthread_t
    int pthread_create(pthread_t *t, const void *attr, void *(*start)(void *) noexcept nogil,
                       void *arg)
    int pthread_join(pthread_t t, void **ret)
    ctypedef struct pthread_mutex_t:
        pass
    int pthread_mutex_init(pthread_mutex_t *m, const void *attr)
    int pthread_mutex_lock(pthread_mutex_t *m)
    int pthread_mutex_trylock(pthread_mutex_t *m)
    int pthread_mutex_unlock(pthread_mutex_t *m)
    int pthread_mutex_destroy(pthread_mutex_t *m)
