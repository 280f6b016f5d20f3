/* Embedding lookup (a row gather, whose gradient scatters back) and the padding mask of
 * index 0. */
#include "graph/graph.h"
#include "ops/rnn.h"

static lm_status embedding_shape(const lm_attrs *a, const lm_shape *in, const lm_dtype *dt, int n, lm_shape *out,
                                 lm_dtype *odt, char *err, size_t len) {
  char b1[96];
  if (dt[0] != LM_INT32) {
    snprintf(err, len, "Embedding needs int32 indices, got float32 (make the model input int32: "
                       "lm_input(shape, .dtype = LM_INT32))");
    return LM_ERROR_VALUE;
  }
  if (in[0].rank < 1 || in[0].rank + 1 > LM_MAX_RANK) {
    snprintf(err, len, "indices of shape %s cannot be embedded (rank 1..%d)", lm_shape_format(in[0], b1, sizeof b1),
             LM_MAX_RANK - 1);
    return LM_ERROR_SHAPE;
  }
  if (in[1].rank != 2 || dt[1] != LM_FLOAT32) {
    snprintf(err, len, "the table must be a float32 matrix (input_dim, output_dim), got %s",
             lm_shape_format(in[1], b1, sizeof b1));
    return LM_ERROR_SHAPE;
  }
  out[0] = in[0];
  out[0].dim[out[0].rank++] = in[1].dim[1];
  odt[0] = LM_FLOAT32;
  return LM_OK;
}

static void embedding_fwd(lm_plan *p, const lm_opnode *node) {
  const int32_t *idx = lm__i(p, node->in[0]);
  const float *table = lm__f(p, node->in[1]);
  float *y = lm__f(p, node->out[0]);
  lm_shape ts = p->shapes[node->in[1]];
  int64_t n = lm__n(p, node->in[0]), rows = ts.dim[0], d = ts.dim[1];
  for (int64_t i = 0; i < n; i++) {
    int32_t k = idx[i];
    if (k >= 0 && k < rows) {
      memcpy(y + i * d, table + (int64_t)k * d, (size_t)d * sizeof *y);
      continue;
    }
    memset(y + i * d, 0, (size_t)d * sizeof *y);
    if (p->err.code == LM_OK)
      lm__fail(&p->err, LM_ERROR_VALUE, "Embedding \"%s\": index %d at position %lld is outside [0, %lld)",
               node->who ? node->who : "?", (int)k, (long long)i, (long long)rows);
  }
}

static void embedding_bwd(lm_plan *p, const lm_opnode *node) {
  float *dtable = lm__g(p, node->in[1]);
  if (!dtable) return;
  const int32_t *idx = lm__i(p, node->in[0]);
  const float *dy = lm__g(p, node->out[0]);
  lm_shape ts = p->shapes[node->in[1]];
  int64_t n = lm__n(p, node->in[0]), rows = ts.dim[0], d = ts.dim[1];
  for (int64_t i = 0; i < n; i++) {
    int32_t k = idx[i];
    if (k < 0 || k >= rows) continue; /* forward reported it */
    float *dst = dtable + (int64_t)k * d;
    const float *src = dy + i * d;
    for (int64_t j = 0; j < d; j++) dst[j] += src[j];
  }
}

const lm_op_def lm__op_embedding = {"embedding", 1, embedding_shape, embedding_fwd, embedding_bwd, 0, false, 0, 0};

static lm_status index_mask_shape(const lm_attrs *a, const lm_shape *in, const lm_dtype *dt, int n, lm_shape *out,
                                  lm_dtype *odt, char *err, size_t len) {
  if (dt[0] != LM_INT32) {
    snprintf(err, len, "the padding mask is computed from int32 indices, got float32");
    return LM_ERROR_VALUE;
  }
  out[0] = in[0];
  odt[0] = LM_FLOAT32;
  return LM_OK;
}

static void index_mask_fwd(lm_plan *p, const lm_opnode *node) {
  const int32_t *idx = lm__i(p, node->in[0]);
  float *m = lm__f(p, node->out[0]);
  int64_t n = lm__n(p, node->in[0]);
  for (int64_t i = 0; i < n; i++) m[i] = idx[i] != 0 ? 1.0f : 0.0f;
}

const lm_op_def lm__op_index_mask = {"index_mask", 1, index_mask_shape, index_mask_fwd, NULL, 0, false, 0, 0};
