/* Atomics and compiler hints for pyxsw's core: GCC builtins behind tiny inline functions, so
 * that the FDB's seqlock, the single-writer counters and the event rings read as what they
 * are.  Declared for Cython in atomics.pxd. */
#ifndef PYXSW_ATOMICS_H
#define PYXSW_ATOMICS_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

/* Debug builds (PYXSW_DEBUG=1 make ...) check invariants on the packet path; in release
 * builds the tests are `if (0)` and compile away. */
#ifndef PYXSW_DEBUG
#define PYXSW_DEBUG 0
#endif

static inline void pyxsw_check(int ok, const char *what)
{
	if (!ok) {
		fprintf(stderr, "pyxsw: invariant broken: %s\n", what);
		abort();
	}
}

static inline uint32_t pyxsw_load_acq32(const uint32_t *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
static inline uint32_t pyxsw_load_rlx32(const uint32_t *p) { return __atomic_load_n(p, __ATOMIC_RELAXED); }
static inline void pyxsw_store_rel32(uint32_t *p, uint32_t v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }
static inline void pyxsw_store_rlx32(uint32_t *p, uint32_t v) { __atomic_store_n(p, v, __ATOMIC_RELAXED); }
static inline int pyxsw_load_int(const int *p) { return __atomic_load_n(p, __ATOMIC_SEQ_CST); }
static inline void pyxsw_store_int(int *p, int v) { __atomic_store_n(p, v, __ATOMIC_SEQ_CST); }
static inline uint64_t pyxsw_load_acq64(const uint64_t *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
static inline void pyxsw_store_rel64(uint64_t *p, uint64_t v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }
static inline uint64_t pyxsw_load64(const uint64_t *p) { return __atomic_load_n(p, __ATOMIC_SEQ_CST); }
static inline void pyxsw_store64(uint64_t *p, uint64_t v) { __atomic_store_n(p, v, __ATOMIC_SEQ_CST); }
static inline void *pyxsw_load_ptr(void **p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
static inline void pyxsw_store_ptr(void **p, void *v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }
static inline void pyxsw_fence_acq(void) { __atomic_thread_fence(__ATOMIC_ACQUIRE); }
static inline void pyxsw_fence_rel(void) { __atomic_thread_fence(__ATOMIC_RELEASE); }
static inline void pyxsw_fence_seq(void) { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
static inline void pyxsw_cpu_relax(void) { __builtin_ia32_pause(); }
static inline void pyxsw_prefetch(const void *p) { __builtin_prefetch(p, 0, 3); }
/* The 6 bytes of a MAC and the 2 after it, read little-endian (the FDB masks them to 48 bits) */
static inline uint64_t pyxsw_load_mac8(const uint8_t *p) { uint64_t v; __builtin_memcpy(&v, p, 8); return v; }
/* The CPU's time-stamp counter: cycles at a constant rate (a pass's length, cheaply) */
static inline uint64_t pyxsw_rdtsc(void) { return __builtin_ia32_rdtsc(); }
/* The index of the lowest bit set in m (m != 0) */
static inline int pyxsw_ctz64(uint64_t m) { return __builtin_ctzll(m); }
#define pyxsw_likely(x) __builtin_expect(!!(x), 1)
#define pyxsw_unlikely(x) __builtin_expect(!!(x), 0)

#endif
