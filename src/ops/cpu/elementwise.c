/* Elementwise ops: binary arithmetic with broadcasting, averaging, dropout, identity. */
#include "graph/graph.h"
#include <math.h>

/* Broadcast shapes numpy-style (aligned at the last axis). */
static lm_status broadcast(lm_shape a, lm_shape b, lm_shape *out, char *err, size_t len) {
  int rank = a.rank > b.rank ? a.rank : b.rank;
  out->rank = rank;
  for (int i = 0; i < rank; i++) {
    int ia = a.rank - rank + i, ib = b.rank - rank + i;
    int64_t da = ia >= 0 ? a.dim[ia] : 1, db = ib >= 0 ? b.dim[ib] : 1;
    if (da == db || db == 1) out->dim[i] = da;
    else if (da == 1) out->dim[i] = db;
    else if (da < 0 || db < 0) out->dim[i] = da < 0 ? db : da; /* unknown: decided at run time */
    else {
      char b1[96], b2[96];
      snprintf(err, len, "shapes %s and %s cannot be broadcast together (axis %d: %lld vs %lld)",
               lm_shape_format(a, b1, sizeof b1), lm_shape_format(b, b2, sizeof b2), i, (long long)da,
               (long long)db);
      return LM_ERROR_SHAPE;
    }
  }
  return LM_OK;
}

static lm_status binary_shape(const lm_attrs *a, const lm_shape *in, const lm_dtype *dt, int n, lm_shape *out,
                              lm_dtype *odt, char *err, size_t len) {
  if (dt[0] != LM_FLOAT32 || dt[1] != LM_FLOAT32) {
    snprintf(err, len, "merge layers need float32 inputs");
    return LM_ERROR_VALUE;
  }
  odt[0] = LM_FLOAT32;
  return broadcast(in[0], in[1], out, err, len);
}

/* Offsets of each output element into a and b, for broadcast operands. */
static int64_t bcast_offset(int64_t flat, const lm_shape *out, const lm_shape *s) {
  int64_t off = 0, stride = 1;
  for (int i = out->rank - 1; i >= 0; i--) {
    int64_t idx = flat % out->dim[i];
    flat /= out->dim[i];
    int is = s->rank - out->rank + i;
    if (is >= 0) {
      if (s->dim[is] != 1) off += idx * stride;
      stride *= s->dim[is];
    }
  }
  return off;
}

static float binary_apply(int kind, float x, float y) {
  switch (kind) {
  case LM_BINARY_ADD: return x + y;
  case LM_BINARY_SUBTRACT: return x - y;
  case LM_BINARY_MULTIPLY: return x * y;
  case LM_BINARY_MAXIMUM: return x >= y ? x : y;
  default: return x <= y ? x : y;
  }
}

static void binary_fwd(lm_plan *p, const lm_opnode *node) {
  const float *x = lm__f(p, node->in[0]), *y = lm__f(p, node->in[1]);
  float *z = lm__f(p, node->out[0]);
  int kind = (int)node->a.i[0];
  lm_shape so = p->shapes[node->out[0]], sa = p->shapes[node->in[0]], sb = p->shapes[node->in[1]];
  int64_t n = lm_shape_size(so);
  if (lm__shape_equal(sa, sb)) {
    for (int64_t i = 0; i < n; i++) z[i] = binary_apply(kind, x[i], y[i]);
    return;
  }
  for (int64_t i = 0; i < n; i++)
    z[i] = binary_apply(kind, x[bcast_offset(i, &so, &sa)], y[bcast_offset(i, &so, &sb)]);
}

static void binary_bwd(lm_plan *p, const lm_opnode *node) {
  const float *x = lm__f(p, node->in[0]), *y = lm__f(p, node->in[1]), *dz = lm__g(p, node->out[0]);
  float *dx = lm__g(p, node->in[0]), *dy = lm__g(p, node->in[1]);
  int kind = (int)node->a.i[0];
  lm_shape so = p->shapes[node->out[0]], sa = p->shapes[node->in[0]], sb = p->shapes[node->in[1]];
  int same = lm__shape_equal(sa, sb);
  int64_t n = lm_shape_size(so);
  for (int64_t i = 0; i < n; i++) {
    int64_t ia = same ? i : bcast_offset(i, &so, &sa), ib = same ? i : bcast_offset(i, &so, &sb);
    float ga, gb;
    switch (kind) {
    case LM_BINARY_ADD: ga = dz[i], gb = dz[i]; break;
    case LM_BINARY_SUBTRACT: ga = dz[i], gb = -dz[i]; break;
    case LM_BINARY_MULTIPLY: ga = dz[i] * y[ib], gb = dz[i] * x[ia]; break;
    case LM_BINARY_MAXIMUM: ga = x[ia] >= y[ib] ? dz[i] : 0, gb = x[ia] >= y[ib] ? 0 : dz[i]; break;
    default: ga = x[ia] <= y[ib] ? dz[i] : 0, gb = x[ia] <= y[ib] ? 0 : dz[i]; break;
    }
    if (dx) dx[ia] += ga;
    if (dy) dy[ib] += gb;
  }
}

const lm_op_def lm__op_binary = {"binary", 1, binary_shape, binary_fwd, binary_bwd, 0, false, 0, 0};

/* Average of n same-shape inputs. */
static lm_status mean_shape(const lm_attrs *a, const lm_shape *in, const lm_dtype *dt, int n, lm_shape *out,
                            lm_dtype *odt, char *err, size_t len) {
  for (int i = 1; i < n; i++) {
    if (in[i].rank != in[0].rank) goto mismatch;
    for (int d = 0; d < in[0].rank; d++)
      if (in[i].dim[d] != in[0].dim[d] && in[i].dim[d] >= 0 && in[0].dim[d] >= 0) goto mismatch;
  }
  out[0] = in[0];
  odt[0] = LM_FLOAT32;
  return LM_OK;
mismatch:;
  char b1[96], b2[96];
  snprintf(err, len, "Average needs inputs of one shape, got %s and %s", lm_shape_format(in[0], b1, sizeof b1),
           lm_shape_format(in[n - 1], b2, sizeof b2));
  return LM_ERROR_SHAPE;
}

static void mean_fwd(lm_plan *p, const lm_opnode *node) {
  float *y = lm__f(p, node->out[0]);
  int64_t n = lm__n(p, node->out[0]);
  float inv = 1.0f / (float)node->n_in;
  memcpy(y, lm__f(p, node->in[0]), (size_t)n * sizeof *y);
  for (int k = 1; k < node->n_in; k++) {
    const float *x = lm__f(p, node->in[k]);
    for (int64_t i = 0; i < n; i++) y[i] += x[i];
  }
  for (int64_t i = 0; i < n; i++) y[i] *= inv;
}

static void mean_bwd(lm_plan *p, const lm_opnode *node) {
  const float *dy = lm__g(p, node->out[0]);
  int64_t n = lm__n(p, node->out[0]);
  float inv = 1.0f / (float)node->n_in;
  for (int k = 0; k < node->n_in; k++) {
    float *dx = lm__g(p, node->in[k]);
    if (dx)
      for (int64_t i = 0; i < n; i++) dx[i] += dy[i] * inv;
  }
}

const lm_op_def lm__op_mean_n = {"average", 1, mean_shape, mean_fwd, mean_bwd, 0, false, LM_UNREAD_ALL, 0};

/* Dropout: attrs f0 = rate, i0 = seed. Output 1 is the scaled keep mask, saved for backward. */
static lm_status dropout_shape(const lm_attrs *a, const lm_shape *in, const lm_dtype *dt, int n, lm_shape *out,
                               lm_dtype *odt, char *err, size_t len) {
  if (dt[0] != LM_FLOAT32) {
    snprintf(err, len, "Dropout needs float32 input");
    return LM_ERROR_VALUE;
  }
  out[0] = out[1] = in[0];
  odt[0] = odt[1] = LM_FLOAT32;
  return LM_OK;
}

static void dropout_fwd(lm_plan *p, const lm_opnode *node) {
  const float *x = lm__f(p, node->in[0]);
  float *y = lm__f(p, node->out[0]), *mask = lm__f(p, node->out[1]);
  int64_t n = lm__n(p, node->in[0]);
  float rate = node->a.f[0];
  if (!p->training || rate <= 0) {
    memcpy(y, x, (size_t)n * sizeof *y);
    return;
  }
  float scale = 1.0f / (1.0f - rate);
  /* The stream depends on the seeds (the session's unless the layer's was given), the layer
   * and the step, never on threads. */
  uint64_t session = node->a.i[1] ? 0 : p->seed;
  uint64_t key = lm__mix64(session ^ lm__mix64((uint64_t)node->a.i[0] + 0x51ED27ull) ^ lm__mix64(p->step));
  for (int64_t i = 0; i < n; i++) {
    mask[i] = lm__hash_uniform(key, (uint64_t)i) >= rate ? scale : 0.0f;
    y[i] = x[i] * mask[i];
  }
}

static void dropout_bwd(lm_plan *p, const lm_opnode *node) {
  float *dx = lm__g(p, node->in[0]);
  const float *dy = lm__g(p, node->out[0]), *mask = lm__f(p, node->out[1]);
  if (!dx) return;
  int64_t n = lm__n(p, node->in[0]);
  int active = p->training && node->a.f[0] > 0;
  for (int64_t i = 0; i < n; i++) dx[i] += active ? dy[i] * mask[i] : dy[i];
}

const lm_op_def lm__op_dropout = {"dropout", 2, dropout_shape, dropout_fwd, dropout_bwd, 1u << 1, false,
                                  LM_UNREAD_IN(0) | LM_UNREAD_OUT(0), 0};

static lm_status identity_shape(const lm_attrs *a, const lm_shape *in, const lm_dtype *dt, int n,
                                lm_shape *out, lm_dtype *odt, char *err, size_t len) {
  out[0] = in[0];
  odt[0] = dt[0];
  return LM_OK;
}

static void identity_fwd(lm_plan *p, const lm_opnode *node) {
  memcpy(p->data[node->out[0]], p->data[node->in[0]], (size_t)lm__n(p, node->in[0]) * 4);
}

static void identity_bwd(lm_plan *p, const lm_opnode *node) {
  float *dx = lm__g(p, node->in[0]);
  const float *dy = lm__g(p, node->out[0]);
  if (!dx) return;
  int64_t n = lm__n(p, node->in[0]);
  for (int64_t i = 0; i < n; i++) dx[i] += dy[i];
}

const lm_op_def lm__op_identity = {"identity", 1, identity_shape, identity_fwd, identity_bwd, 0, false, LM_UNREAD_ALL, 0};
