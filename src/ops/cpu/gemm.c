/* GEMM through oneDNN's JIT sgemm. It picks its kernel from the CPU's features (AVX-512,
 * AVX2, ...), where OpenBLAS 0.3.21 picks by CPU model and falls back to SSE3 kernels on
 * processors newer than itself (4-5x slower on Sapphire Rapids). oneDNN runs on OpenMP's
 * threads, the pool of lamina's own loops, and splits its work the same way whatever the
 * thread count, so results do not depend on it (tests/test_threads.c). */
#include "ops/gemm.h"
#include <dnnl.h>
#include <omp.h>

/* Below about this many multiply-adds (~10 us of one core) a product runs single-threaded. */
#define SMALL_GEMM_MACS (1 << 20)

void lm__sgemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float *a,
               int64_t lda, const float *b, int64_t ldb, float beta, float *c, int64_t ldc) {
  if (m <= 0 || n <= 0) return;
  /* A small product costs less than waking a second thread: run it on this one. */
  int threads = omp_get_max_threads(), small = (double)m * (double)n * (double)k < SMALL_GEMM_MACS;
  if (small && threads > 1) omp_set_num_threads(1);
  dnnl_status_t st = dnnl_sgemm(trans_a ? 'T' : 'N', trans_b ? 'T' : 'N', m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
  if (small && threads > 1) omp_set_num_threads(threads);
  if (st != dnnl_success) { /* a kernel passed bad leading dimensions: a bug in lamina, never the user's data */
    fprintf(stderr, "lamina: internal error: sgemm(%c%c, m %lld, n %lld, k %lld, lda %lld, ldb %lld, ldc %lld) refused (%d)\n",
            trans_a ? 'T' : 'N', trans_b ? 'T' : 'N', (long long)m, (long long)n, (long long)k, (long long)lda,
            (long long)ldb, (long long)ldc, (int)st);
    abort();
  }
}
