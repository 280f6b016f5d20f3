/* Pooling: windowed max / average (1D and 2D, valid and same padding) and global max /
 * average, channels last. Every inner loop runs over the channels of one cell, which are
 * contiguous, so that it vectorizes. */
#include "ops/pool.h"
#include <math.h>
#include "core/threads.h"

/* Global max pooling saves argmax offsets within a sample as int32. */
static lm_status check_sample_size(const lm_shape *x, char *err, size_t len) {
  int64_t per_sample = lm__dims_product(x, 1, x->rank);
  if (per_sample <= INT32_MAX) return LM_OK;
  snprintf(err, len, "a sample of %lld values is too large for pooling (at most %d)", (long long)per_sample,
           INT32_MAX);
  return LM_ERROR_SHAPE;
}

/* ---- Windowed pooling ---- */

static lm_status pool_shape_common(const lm_attrs *a, const lm_shape *in, const lm_dtype *dt, int n, lm_shape *out,
                                   lm_dtype *odt, char *err, size_t len) {
  char b1[96];
  int dims = (int)a->i[LM_POOL_DIMS];
  int64_t pool[2] = {a->i[LM_POOL_H], a->i[LM_POOL_W]}, stride[2] = {a->i[LM_POOL_SH], a->i[LM_POOL_SW]};
  if (dt[0] != LM_FLOAT32) {
    snprintf(err, len, "pooling needs float32 input, got int32");
    return LM_ERROR_VALUE;
  }
  if ((dims != 1 && dims != 2) || pool[0] < 1 || pool[1] < 1 || stride[0] < 1 || stride[1] < 1 ||
      (dims == 1 && (pool[1] != 1 || stride[1] != 1))) {
    snprintf(err, len, "bad pooling attributes: %dD, pool (%lld, %lld), strides (%lld, %lld)", dims,
             (long long)pool[0], (long long)pool[1], (long long)stride[0], (long long)stride[1]);
    return LM_ERROR_VALUE;
  }
  if (in[0].rank != dims + 2) {
    snprintf(err, len, "expected an input of rank %d %s, got %s", dims + 2,
             dims == 1 ? "(batch, steps, channels)" : "(batch, rows, cols, channels)",
             lm_shape_format(in[0], b1, sizeof b1));
    return LM_ERROR_SHAPE;
  }
  out[0] = in[0];
  for (int d = 0; d < dims; d++) {
    int64_t size = in[0].dim[1 + d];
    if (size < 0) continue; /* unknown: stays LM_NONE, the plan sees the real size */
    if (a->i[LM_POOL_PADDING] == LM_SAME) {
      out[0].dim[1 + d] = (size + stride[d] - 1) / stride[d];
    } else {
      if (size < pool[d]) {
        const char *axis = dims == 1 ? "steps" : d == 0 ? "rows" : "cols";
        char pool_str[48];
        if (dims == 1) snprintf(pool_str, sizeof pool_str, "%lld", (long long)pool[0]);
        else snprintf(pool_str, sizeof pool_str, "(%lld, %lld)", (long long)pool[0], (long long)pool[1]);
        snprintf(err, len,
                 "pool_size %s does not fit the input's %lld %s with padding 'valid' (the output would have "
                 "no %s); use padding 'same' or a smaller pool",
                 pool_str, (long long)size, axis, axis);
        return LM_ERROR_SHAPE;
      }
      out[0].dim[1 + d] = (size - pool[d]) / stride[d] + 1;
    }
  }
  odt[0] = LM_FLOAT32;
  return LM_OK;
}

/* Max pooling saves, per output element, the index of its maximum within the window
 * (row-major over the unclipped pool_h x pool_w window): one byte when the window has at
 * most 255 cells, else an int32; the all-ones value marks an empty window. out[1] is
 * int32 elements holding those indices packed. */
static bool small_window(const lm_attrs *a) { return a->i[LM_POOL_H] * a->i[LM_POOL_W] <= 255; }

static lm_status max_pool_shape(const lm_attrs *a, const lm_shape *in, const lm_dtype *dt, int n, lm_shape *out,
                                lm_dtype *odt, char *err, size_t len) {
  lm_status st = pool_shape_common(a, in, dt, n, out, odt, err, len);
  if (st == LM_OK) st = check_sample_size(&in[0], err, len);
  int64_t count = 1;
  for (int d = 0; d < out[0].rank && count != LM_NONE; d++) count = out[0].dim[d] < 0 ? LM_NONE : count * out[0].dim[d];
  if (count != LM_NONE && small_window(a)) count = (count + 3) / 4;
  out[1] = LM_SHAPE(count);
  odt[1] = LM_INT32;
  return st;
}

/* Concrete geometry of one pooling op in a plan; 1D as rows x 1. */
typedef struct pool_geom {
  int64_t batch, h, w, c, oh, ow, ph, pw, sh, sw, top, left;
} pool_geom;

static pool_geom pool_geometry(lm_plan *p, const lm_opnode *node) {
  lm_shape x = p->shapes[node->in[0]], y = p->shapes[node->out[0]];
  const int64_t *a = node->a.i;
  pool_geom g = {.batch = x.dim[0], .ph = a[LM_POOL_H], .pw = a[LM_POOL_W], .sh = a[LM_POOL_SH], .sw = a[LM_POOL_SW]};
  int two = a[LM_POOL_DIMS] == 2;
  g.h = x.dim[1], g.w = two ? x.dim[2] : 1, g.c = x.dim[x.rank - 1];
  g.oh = y.dim[1], g.ow = two ? y.dim[2] : 1;
  if (a[LM_POOL_PADDING] == LM_SAME) { /* Keras/TF: the smaller half of the padding goes first */
    int64_t th = (g.oh - 1) * g.sh + g.ph - g.h, tw = (g.ow - 1) * g.sw + g.pw - g.w;
    g.top = th > 0 ? th / 2 : 0;
    g.left = tw > 0 ? tw / 2 : 0;
  }
  return g;
}

/* The window of output (oy, ox), clipped to the input: rows [r0, r1), cols [q0, q1). */
static void pool_window(const pool_geom *g, int64_t oy, int64_t ox, int64_t *r0, int64_t *r1, int64_t *q0,
                        int64_t *q1) {
  int64_t r = oy * g->sh - g->top, q = ox * g->sw - g->left;
  *r0 = r > 0 ? r : 0;
  *r1 = r + g->ph < g->h ? r + g->ph : g->h;
  *q0 = q > 0 ? q : 0;
  *q1 = q + g->pw < g->w ? q + g->pw : g->w;
}

/* Max pooling of samples [b0, b1), one function per index type: per output cell, the
 * window's first cell, then the others taken where larger. The first maximum wins; a NaN
 * wins and stays, as in XLA's max. With track, each output's index is saved. */
#define MAX_POOL_FWD(name, T)                                                                                    \
  LM_VECTORIZE static void name(const pool_geom *g, const float *x, float *y, T *arg, bool track, int64_t b0,    \
                                int64_t b1) {                                                                    \
    const int64_t c = g->c;                                                                                      \
    for (int64_t b = b0; b < b1; b++) {                                                                          \
      const float *xb = x + b * g->h * g->w * c;                                                                 \
      for (int64_t oy = 0; oy < g->oh; oy++)                                                                     \
        for (int64_t ox = 0; ox < g->ow; ox++) {                                                                 \
          int64_t r0, r1, q0, q1, o = ((b * g->oh + oy) * g->ow + ox) * c;                                      \
          pool_window(g, oy, ox, &r0, &r1, &q0, &q1);                                                            \
          float *restrict yo = y + o;                                                                            \
          T *restrict ao = arg + o;                                                                              \
          if (r0 >= r1 || q0 >= q1) { /* cannot happen with Keras's padding; stay safe */                        \
            for (int64_t k = 0; k < c; k++) yo[k] = -INFINITY;                                                   \
            if (track)                                                                                           \
              for (int64_t k = 0; k < c; k++) ao[k] = (T)-1;                                                     \
            continue;                                                                                            \
          }                                                                                                      \
          int64_t wr = oy * g->sh - g->top, wq = ox * g->sw - g->left; /* the unclipped window's corner */       \
          const float *restrict x0 = xb + (r0 * g->w + q0) * c;                                                  \
          for (int64_t k = 0; k < c; k++) yo[k] = x0[k];                                                         \
          if (track) {                                                                                           \
            T cell = (T)((r0 - wr) * g->pw + q0 - wq);                                                           \
            for (int64_t k = 0; k < c; k++) ao[k] = cell;                                                        \
          }                                                                                                      \
          for (int64_t r = r0; r < r1; r++)                                                                      \
            for (int64_t q = (r == r0 ? q0 + 1 : q0); q < q1; q++) {                                             \
              const float *restrict xs = xb + (r * g->w + q) * c;                                                \
              if (track) {                                                                                       \
                T cell = (T)((r - wr) * g->pw + q - wq);                                                         \
                for (int64_t k = 0; k < c; k++) { /* branch-free, so that it vectorizes */                       \
                  bool take = xs[k] > yo[k] || xs[k] != xs[k];                                                   \
                  yo[k] = take ? xs[k] : yo[k];                                                                  \
                  ao[k] = take ? cell : ao[k];                                                                   \
                }                                                                                                \
              } else {                                                                                           \
                for (int64_t k = 0; k < c; k++) yo[k] = (xs[k] > yo[k] || xs[k] != xs[k]) ? xs[k] : yo[k];       \
              }                                                                                                  \
            }                                                                                                    \
        }                                                                                                        \
    }                                                                                                            \
  }

/* The backward of samples [b0, b1): each window cell takes the output's gradient where it
 * holds the saved index, in the order of the outputs. */
#define MAX_POOL_BWD(name, T)                                                                                    \
  LM_VECTORIZE static void name(const pool_geom *g, float *dx, const float *dy, const T *arg, int64_t b0,        \
                                int64_t b1) {                                                                    \
    const int64_t c = g->c;                                                                                      \
    for (int64_t b = b0; b < b1; b++) {                                                                          \
      float *dxb = dx + b * g->h * g->w * c;                                                                     \
      for (int64_t oy = 0; oy < g->oh; oy++)                                                                     \
        for (int64_t ox = 0; ox < g->ow; ox++) {                                                                 \
          int64_t r0, r1, q0, q1, o = ((b * g->oh + oy) * g->ow + ox) * c;                                      \
          pool_window(g, oy, ox, &r0, &r1, &q0, &q1);                                                            \
          int64_t wr = oy * g->sh - g->top, wq = ox * g->sw - g->left;                                           \
          const float *restrict dyo = dy + o;                                                                    \
          const T *restrict ao = arg + o;                                                                        \
          for (int64_t r = r0; r < r1; r++)                                                                      \
            for (int64_t q = q0; q < q1; q++) {                                                                  \
              float *restrict dxs = dxb + (r * g->w + q) * c;                                                    \
              T cell = (T)((r - wr) * g->pw + q - wq);                                                           \
              for (int64_t k = 0; k < c; k++) dxs[k] = ao[k] == cell ? dxs[k] + dyo[k] : dxs[k];                 \
            }                                                                                                    \
        }                                                                                                        \
    }                                                                                                            \
  }

MAX_POOL_FWD(max_fwd_u8, uint8_t)
MAX_POOL_FWD(max_fwd_i32, int32_t)
MAX_POOL_BWD(max_bwd_u8, uint8_t)
MAX_POOL_BWD(max_bwd_i32, int32_t)

/* Samples are independent in every windowed pooling: any split over them gives the same
 * bits. */
static void max_pool_fwd(lm_plan *p, const lm_opnode *node) {
  pool_geom g = pool_geometry(p, node);
  const float *x = lm__f(p, node->in[0]);
  float *y = lm__f(p, node->out[0]);
  void *arg = lm__i(p, node->out[1]);
  bool track = lm__g(p, node->in[0]) != NULL, small = small_window(&node->a); /* argmax only matters to a backward */
  int64_t work = g.batch * g.h * g.w * g.c;
#pragma omp parallel for num_threads(lm__num_threads()) schedule(static) if (work > LM_PARALLEL_MIN)
  for (int64_t b = 0; b < g.batch; b++) {
    if (small) max_fwd_u8(&g, x, y, arg, track, b, b + 1);
    else max_fwd_i32(&g, x, y, arg, track, b, b + 1);
  }
}

static void max_pool_bwd(lm_plan *p, const lm_opnode *node) {
  float *dx = lm__g(p, node->in[0]);
  const float *dy = lm__g(p, node->out[0]);
  if (!dx || !dy) return;
  pool_geom g = pool_geometry(p, node);
  const void *arg = lm__i(p, node->out[1]);
  bool small = small_window(&node->a);
  int64_t work = g.batch * g.h * g.w * g.c;
#pragma omp parallel for num_threads(lm__num_threads()) schedule(static) if (work > LM_PARALLEL_MIN)
  for (int64_t b = 0; b < g.batch; b++) {
    if (small) max_bwd_u8(&g, dx, dy, arg, b, b + 1);
    else max_bwd_i32(&g, dx, dy, arg, b, b + 1);
  }
}

const lm_op_def lm__op_max_pool = {"max_pool", 2, max_pool_shape, max_pool_fwd, max_pool_bwd, 1u << 1, false, 0, 0};

LM_VECTORIZE static void avg_fwd_samples(const pool_geom *g, const float *x, float *y, int64_t b0, int64_t b1) {
  int64_t c = g->c;
  for (int64_t b = b0; b < b1; b++) {
    const float *xb = x + b * g->h * g->w * c;
    for (int64_t oy = 0; oy < g->oh; oy++)
      for (int64_t ox = 0; ox < g->ow; ox++) {
        int64_t r0, r1, q0, q1;
        pool_window(g, oy, ox, &r0, &r1, &q0, &q1);
        float *restrict yo = y + ((b * g->oh + oy) * g->ow + ox) * c;
        for (int64_t k = 0; k < c; k++) yo[k] = 0;
        for (int64_t r = r0; r < r1; r++)
          for (int64_t q = q0; q < q1; q++) {
            const float *restrict xs = xb + (r * g->w + q) * c;
            for (int64_t k = 0; k < c; k++) yo[k] += xs[k];
          }
        /* Only the cells inside the input count (Keras's window_counts for 'same'). */
        float inv = 1.0f / (float)((r1 - r0) * (q1 - q0));
        for (int64_t k = 0; k < c; k++) yo[k] *= inv;
      }
  }
}

LM_VECTORIZE static void avg_bwd_samples(const pool_geom *g, float *dx, const float *dy, int64_t b0, int64_t b1) {
  int64_t c = g->c;
  for (int64_t b = b0; b < b1; b++) {
    float *dxb = dx + b * g->h * g->w * c;
    for (int64_t oy = 0; oy < g->oh; oy++)
      for (int64_t ox = 0; ox < g->ow; ox++) {
        int64_t r0, r1, q0, q1;
        pool_window(g, oy, ox, &r0, &r1, &q0, &q1);
        const float *restrict dyo = dy + ((b * g->oh + oy) * g->ow + ox) * c;
        float inv = 1.0f / (float)((r1 - r0) * (q1 - q0));
        for (int64_t r = r0; r < r1; r++)
          for (int64_t q = q0; q < q1; q++) {
            float *restrict dxs = dxb + (r * g->w + q) * c;
            for (int64_t k = 0; k < c; k++) dxs[k] += dyo[k] * inv;
          }
      }
  }
}

static void avg_pool_fwd(lm_plan *p, const lm_opnode *node) {
  pool_geom g = pool_geometry(p, node);
  const float *x = lm__f(p, node->in[0]);
  float *y = lm__f(p, node->out[0]);
  int64_t work = g.batch * g.h * g.w * g.c;
#pragma omp parallel for num_threads(lm__num_threads()) schedule(static) if (work > LM_PARALLEL_MIN)
  for (int64_t b = 0; b < g.batch; b++) avg_fwd_samples(&g, x, y, b, b + 1);
}

static void avg_pool_bwd(lm_plan *p, const lm_opnode *node) {
  float *dx = lm__g(p, node->in[0]);
  const float *dy = lm__g(p, node->out[0]);
  if (!dx || !dy) return;
  pool_geom g = pool_geometry(p, node);
  int64_t work = g.batch * g.h * g.w * g.c;
#pragma omp parallel for num_threads(lm__num_threads()) schedule(static) if (work > LM_PARALLEL_MIN)
  for (int64_t b = 0; b < g.batch; b++) avg_bwd_samples(&g, dx, dy, b, b + 1);
}

const lm_op_def lm__op_avg_pool = {"avg_pool", 1, pool_shape_common, avg_pool_fwd, avg_pool_bwd, 0, false, LM_UNREAD_ALL, 0};

/* Scatters each output's gradient onto its argmax (an offset within the sample). */
static void scatter_argmax(float *dx, const float *dy, const int32_t *arg, int64_t batch, int64_t in_per_sample,
                           int64_t out_per_sample) {
  for (int64_t b = 0; b < batch; b++) {
    float *dxb = dx + b * in_per_sample;
    const float *dyb = dy + b * out_per_sample;
    const int32_t *ab = arg + b * out_per_sample;
    for (int64_t i = 0; i < out_per_sample; i++)
      if (ab[i] >= 0) dxb[ab[i]] += dyb[i];
  }
}

/* ---- Global pooling: (batch, ..., ch) -> (batch, ch) ---- */

static lm_status global_shape_common(const lm_shape *in, const lm_dtype *dt, lm_shape *out, lm_dtype *odt, char *err,
                                     size_t len) {
  char b1[96];
  if (dt[0] != LM_FLOAT32) {
    snprintf(err, len, "global pooling needs float32 input, got int32");
    return LM_ERROR_VALUE;
  }
  if (in[0].rank < 3) {
    snprintf(err, len, "expected an input of rank >= 3 (batch, steps, channels), got %s",
             lm_shape_format(in[0], b1, sizeof b1));
    return LM_ERROR_SHAPE;
  }
  out[0] = LM_SHAPE(in[0].dim[0], in[0].dim[in[0].rank - 1]);
  odt[0] = LM_FLOAT32;
  return LM_OK;
}

static lm_status global_max_shape(const lm_attrs *a, const lm_shape *in, const lm_dtype *dt, int n, lm_shape *out,
                                  lm_dtype *odt, char *err, size_t len) {
  lm_status st = global_shape_common(in, dt, out, odt, err, len);
  if (st == LM_OK) st = check_sample_size(&in[0], err, len);
  out[1] = out[0];
  odt[1] = LM_INT32;
  return st;
}

static lm_status global_avg_shape(const lm_attrs *a, const lm_shape *in, const lm_dtype *dt, int n, lm_shape *out,
                                  lm_dtype *odt, char *err, size_t len) {
  lm_status st = global_shape_common(in, dt, out, odt, err, len);
  if (st != LM_OK || n < 2) return st;
  char b1[96], b2[96];
  const lm_shape *x = &in[0], *m = &in[1];
  bool fits = x->rank == 3 && m->rank == 2 && (dt[1] == LM_FLOAT32 || dt[1] == LM_INT32);
  for (int d = 0; fits && d < 2; d++) fits = x->dim[d] < 0 || m->dim[d] < 0 || x->dim[d] == m->dim[d];
  if (!fits) {
    snprintf(err, len, "the mask %s does not fit the input %s (a mask is (batch, steps), float32 or int32)",
             lm_shape_format(*m, b1, sizeof b1), lm_shape_format(*x, b2, sizeof b2));
    return LM_ERROR_SHAPE;
  }
  return LM_OK;
}

/* batch, the cells between batch and channels, and the channels of x. */
static void global_dims(lm_plan *p, const lm_opnode *node, int64_t *batch, int64_t *cells, int64_t *c) {
  lm_shape x = p->shapes[node->in[0]];
  *batch = x.dim[0];
  *c = x.dim[x.rank - 1];
  *cells = lm__dims_product(&x, 1, x.rank - 1);
}

static void global_max_fwd(lm_plan *p, const lm_opnode *node) {
  int64_t batch, cells, c;
  global_dims(p, node, &batch, &cells, &c);
  const float *x = lm__f(p, node->in[0]);
  float *y = lm__f(p, node->out[0]);
  int32_t *arg = lm__i(p, node->out[1]);
  bool track = lm__g(p, node->in[0]) != NULL;
  for (int64_t b = 0; b < batch; b++) {
    const float *xb = x + b * cells * c;
    float *yb = y + b * c;
    int32_t *ab = arg + b * c;
    if (cells == 0) { /* the max of nothing: XLA's -inf */
      for (int64_t k = 0; k < c; k++) yb[k] = -INFINITY, ab[k] = -1;
      continue;
    }
    memcpy(yb, xb, (size_t)c * sizeof *yb);
    if (track)
      for (int64_t k = 0; k < c; k++) ab[k] = (int32_t)k;
    for (int64_t s = 1; s < cells; s++) {
      const float *xs = xb + s * c;
      if (track) {
        int32_t base = (int32_t)(s * c);
        for (int64_t k = 0; k < c; k++) {
          bool take = xs[k] > yb[k] || xs[k] != xs[k];
          yb[k] = take ? xs[k] : yb[k];
          ab[k] = take ? base + (int32_t)k : ab[k];
        }
      } else {
        for (int64_t k = 0; k < c; k++) yb[k] = (xs[k] > yb[k] || xs[k] != xs[k]) ? xs[k] : yb[k];
      }
    }
  }
}

static void global_max_bwd(lm_plan *p, const lm_opnode *node) {
  float *dx = lm__g(p, node->in[0]);
  const float *dy = lm__g(p, node->out[0]);
  if (!dx || !dy) return;
  int64_t batch, cells, c;
  global_dims(p, node, &batch, &cells, &c);
  scatter_argmax(dx, dy, lm__i(p, node->out[1]), batch, cells * c, c);
}

const lm_op_def lm__op_global_max_pool = {"global_max_pool", 2, global_max_shape, global_max_fwd, global_max_bwd,
                                          1u << 1, false, 0, 0};

/* Mask entry s of row b as a keep flag; the mask may be float32 or int32. */
static bool mask_keep(const void *mask, bool is_int, int64_t i) {
  return is_int ? ((const int32_t *)mask)[i] != 0 : ((const float *)mask)[i] != 0;
}

/* The divisor of row b: the number of kept steps (or all cells without a mask). */
static int64_t global_count(lm_plan *p, const lm_opnode *node, int64_t b, int64_t cells) {
  if (node->n_in < 2) return cells;
  const void *m = p->data[node->in[1]];
  bool is_int = p->g->vals[node->in[1]].dtype == LM_INT32;
  int64_t n = 0;
  for (int64_t s = 0; s < cells; s++) n += mask_keep(m, is_int, b * cells + s);
  return n;
}

static void global_avg_fwd(lm_plan *p, const lm_opnode *node) {
  int64_t batch, cells, c;
  global_dims(p, node, &batch, &cells, &c);
  const float *x = lm__f(p, node->in[0]);
  float *y = lm__f(p, node->out[0]);
  const void *m = node->n_in > 1 ? p->data[node->in[1]] : NULL;
  bool is_int = m && p->g->vals[node->in[1]].dtype == LM_INT32;
  for (int64_t b = 0; b < batch; b++) {
    const float *xb = x + b * cells * c;
    float *yb = y + b * c;
    for (int64_t k = 0; k < c; k++) yb[k] = 0;
    for (int64_t s = 0; s < cells; s++) {
      if (m && !mask_keep(m, is_int, b * cells + s)) continue; /* Keras: where(mask, x, 0) */
      const float *xs = xb + s * c;
      for (int64_t k = 0; k < c; k++) yb[k] += xs[k];
    }
    int64_t count = global_count(p, node, b, cells);
    float inv = count ? 1.0f / (float)count : NAN; /* 0 / 0, as Keras computes it */
    for (int64_t k = 0; k < c; k++) yb[k] *= inv;
  }
}

static void global_avg_bwd(lm_plan *p, const lm_opnode *node) {
  float *dx = lm__g(p, node->in[0]);
  const float *dy = lm__g(p, node->out[0]);
  if (!dx || !dy) return;
  int64_t batch, cells, c;
  global_dims(p, node, &batch, &cells, &c);
  const void *m = node->n_in > 1 ? p->data[node->in[1]] : NULL;
  bool is_int = m && p->g->vals[node->in[1]].dtype == LM_INT32;
  for (int64_t b = 0; b < batch; b++) {
    int64_t count = global_count(p, node, b, cells);
    if (!count) continue; /* the output is NaN whatever x is; no finite gradient to pass */
    float inv = 1.0f / (float)count;
    float *dxb = dx + b * cells * c;
    const float *dyb = dy + b * c;
    for (int64_t s = 0; s < cells; s++) {
      if (m && !mask_keep(m, is_int, b * cells + s)) continue;
      float *dxs = dxb + s * c;
      for (int64_t k = 0; k < c; k++) dxs[k] += dyb[k] * inv;
    }
  }
}

const lm_op_def lm__op_global_avg_pool = {"global_avg_pool", 1, global_avg_shape, global_avg_fwd, global_avg_bwd, 0, false,
                                          LM_UNREAD_IN(0) | LM_UNREAD_OUT(0), 0};
