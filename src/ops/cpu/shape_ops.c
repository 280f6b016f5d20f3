/* Ops that move data without arithmetic: reshape and concatenate. */
#include "graph/graph.h"

/* attrs: i0 = target rank (batch excluded), i1.. = target dims, one of them may be -1. */
static lm_status reshape_shape(const lm_attrs *a, const lm_shape *in, const lm_dtype *dt, int n, lm_shape *out,
                               lm_dtype *odt, char *err, size_t len) {
  int rank = (int)a->i[0];
  char b1[96];
  if (in[0].rank < 1 || rank + 1 > LM_MAX_RANK || rank > 7) {
    snprintf(err, len, "cannot reshape to rank %d", rank + 1);
    return LM_ERROR_SHAPE;
  }
  int64_t have = lm__dims_product(&in[0], 1, in[0].rank), known = 1;
  int infer = -1;
  out[0].rank = rank + 1;
  out[0].dim[0] = in[0].dim[0];
  for (int i = 0; i < rank; i++) {
    int64_t d = a->i[1 + i];
    out[0].dim[1 + i] = d;
    if (d == -1) {
      if (infer >= 0) {
        snprintf(err, len, "only one dimension of the target shape can be -1");
        return LM_ERROR_VALUE;
      }
      infer = i;
    } else if (d <= 0) {
      snprintf(err, len, "target dimension %lld is not positive", (long long)d);
      return LM_ERROR_VALUE;
    } else known *= d;
  }
  if (have < 0) { /* unknown input size: only the inferred dim stays unknown */
    if (infer >= 0) out[0].dim[1 + infer] = LM_NONE;
  } else if (infer >= 0) {
    if (have % known) goto mismatch;
    out[0].dim[1 + infer] = have / known;
  } else if (have != known) goto mismatch;
  odt[0] = dt[0];
  return LM_OK;
mismatch:
  snprintf(err, len, "an input of shape %s (%lld values per sample) cannot be reshaped to that target",
           lm_shape_format(in[0], b1, sizeof b1), (long long)have);
  return LM_ERROR_SHAPE;
}

static void copy_fwd(lm_plan *p, const lm_opnode *node) {
  memcpy(p->data[node->out[0]], p->data[node->in[0]], (size_t)lm__n(p, node->in[0]) * 4);
}

static void copy_bwd(lm_plan *p, const lm_opnode *node) {
  float *dx = lm__g(p, node->in[0]);
  const float *dy = lm__g(p, node->out[0]);
  if (!dx) return;
  int64_t n = lm__n(p, node->in[0]);
  for (int64_t i = 0; i < n; i++) dx[i] += dy[i];
}

const lm_op_def lm__op_reshape = {"reshape", 1, reshape_shape, copy_fwd, copy_bwd, 0, false, LM_UNREAD_ALL, 0};

/* attrs: i0 = axis (negative counts from the end). */
static int concat_axis(const lm_attrs *a, int rank) { return a->i[0] < 0 ? rank + (int)a->i[0] : (int)a->i[0]; }

static lm_status concat_shape(const lm_attrs *a, const lm_shape *in, const lm_dtype *dt, int n, lm_shape *out,
                              lm_dtype *odt, char *err, size_t len) {
  char b1[96], b2[96];
  int rank = in[0].rank, axis = concat_axis(a, rank);
  if (n < 2) {
    snprintf(err, len, "Concatenate needs at least 2 inputs, got %d", n);
    return LM_ERROR_VALUE;
  }
  if (axis < 1 || axis >= rank) {
    snprintf(err, len, "axis %lld does not exist for inputs of rank %d (the batch axis cannot be joined)",
             (long long)a->i[0], rank);
    return LM_ERROR_VALUE;
  }
  out[0] = in[0];
  for (int k = 1; k < n; k++) {
    if (in[k].rank != rank || dt[k] != dt[0]) goto mismatch;
    for (int d = 0; d < rank; d++) {
      if (d == axis) continue;
      if (in[k].dim[d] != in[0].dim[d] && in[k].dim[d] >= 0 && in[0].dim[d] >= 0) goto mismatch;
    }
    out[0].dim[axis] = out[0].dim[axis] < 0 || in[k].dim[axis] < 0 ? LM_NONE : out[0].dim[axis] + in[k].dim[axis];
    continue;
  mismatch:
    snprintf(err, len,
             "a Concatenate layer requires inputs with matching shapes except for the concatenation axis %d, "
             "got %s and %s",
             axis, lm_shape_format(in[0], b1, sizeof b1), lm_shape_format(in[k], b2, sizeof b2));
    return LM_ERROR_SHAPE;
  }
  odt[0] = dt[0];
  return LM_OK;
}

static void concat_run(lm_plan *p, const lm_opnode *node, int backward) {
  lm_shape so = p->shapes[node->out[0]];
  int axis = concat_axis(&node->a, so.rank);
  int64_t outer = lm__dims_product(&so, 0, axis), inner = lm__dims_product(&so, axis + 1, so.rank);
  int64_t out_row = so.dim[axis] * inner, at = 0;
  for (int k = 0; k < node->n_in; k++) {
    int64_t row = p->shapes[node->in[k]].dim[axis] * inner;
    if (!backward) {
      const float *x = lm__f(p, node->in[k]);
      float *y = lm__f(p, node->out[0]);
      for (int64_t o = 0; o < outer; o++) memcpy(y + o * out_row + at, x + o * row, (size_t)row * 4);
    } else if (lm__g(p, node->in[k])) {
      float *dx = lm__g(p, node->in[k]);
      const float *dy = lm__g(p, node->out[0]);
      for (int64_t o = 0; o < outer; o++)
        for (int64_t i = 0; i < row; i++) dx[o * row + i] += dy[o * out_row + at + i];
    }
    at += row;
  }
}

static void concat_fwd(lm_plan *p, const lm_opnode *node) { concat_run(p, node, 0); }
static void concat_bwd(lm_plan *p, const lm_opnode *node) { concat_run(p, node, 1); }

const lm_op_def lm__op_concat = {"concatenate", 1, concat_shape, concat_fwd, concat_bwd, 0, false, LM_UNREAD_ALL, 0};
