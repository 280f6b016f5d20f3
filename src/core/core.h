/* Internal core: errors, allocation, random numbers. Not installed. */
#ifndef LAMINA_CORE_H
#define LAMINA_CORE_H

#include <lamina/tensor.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LM_INTERNAL __attribute__((visibility("hidden")))
#define LM_PRINTF(f, a) __attribute__((format(printf, f, a)))
/* Hot loops are compiled for AVX-512, AVX2 and the baseline, and the loader picks a clone
 * by the CPU's features (not by model name, which misses newer CPUs); the library itself is
 * built for the baseline. Keep such loops simple and contiguous so that each clone
 * vectorizes. noinline: GCC 12 otherwise inlines a static function's default clone into
 * its callers and leaves the other clones as stubs that call it. */
#define LM_VECTORIZE __attribute__((target_clones("avx512f", "avx2", "default"), noinline))

/* The first failure of an object; later failures are ignored so the root cause survives. */
typedef struct lm_error {
  lm_status code;
  char msg[1024];
} lm_error;

/* Records the failure in err (if it holds none yet) and in the thread's last error. */
LM_INTERNAL lm_status lm__fail(lm_error *err, lm_status code, const char *fmt, ...) LM_PRINTF(3, 4);
LM_INTERNAL lm_status lm__failv(lm_error *err, lm_status code, const char *fmt, va_list ap) LM_PRINTF(3, 0);
/* Copies src's failure into dst if dst has none. */
LM_INTERNAL void lm__error_pass(lm_error *dst, const lm_error *src);

/* Allocation that reports failure through lm_last_error instead of returning silently. */
LM_INTERNAL void *lm__calloc(size_t n, size_t size);
LM_INTERNAL void *lm__realloc(void *p, size_t size);
LM_INTERNAL char *lm__strdup(const char *s);
/* Grows *items (of *cap elements of size elem) to hold at least need; returns 0 on success. */
LM_INTERNAL int lm__grow(void *items, int *cap, int need, size_t elem);

/* Float buffers aligned for SIMD; freed with free(). */
LM_INTERNAL float *lm__alloc_floats(int64_t n);

/* Random numbers: one seeded stream per session for initializers and shuffling, and
 * stateless counter-based draws for dropout so results do not depend on threads. */
typedef struct lm_rng {
  uint64_t s[4];
} lm_rng;

LM_INTERNAL lm_rng *lm__global_rng(void);
LM_INTERNAL void lm__rng_seed(lm_rng *rng, uint64_t seed);
LM_INTERNAL uint64_t lm__rng_next(lm_rng *rng);
LM_INTERNAL double lm__rng_uniform(lm_rng *rng); /* [0, 1) */
LM_INTERNAL double lm__rng_normal(lm_rng *rng);
LM_INTERNAL uint64_t lm__rng_seed_value(void);
LM_INTERNAL uint64_t lm__mix64(uint64_t x);
/* A uniform float in [0, 1) that depends only on (key, index). */
static inline float lm__hash_uniform(uint64_t key, uint64_t index) {
  return (float)(lm__mix64(key ^ (index * 0x9E3779B97F4A7C15ull)) >> 40) * (1.0f / 16777216.0f);
}

LM_INTERNAL int lm__shape_equal(lm_shape a, lm_shape b);
/* Product of dims [from, to); -1 when any is unknown. */
LM_INTERNAL int64_t lm__dims_product(const lm_shape *s, int from, int to);

#endif
