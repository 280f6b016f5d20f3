/* Matrix products for every op: C = alpha op(A) op(B) + beta C, row-major, op = transpose
 * where asked. One place decides which library computes them. */
#ifndef LAMINA_OPS_GEMM_H
#define LAMINA_OPS_GEMM_H

#include "core/core.h"

LM_INTERNAL void lm__sgemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float *a,
                           int64_t lda, const float *b, int64_t ldb, float beta, float *c, int64_t ldc);

#endif
