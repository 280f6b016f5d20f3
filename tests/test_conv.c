/* Convolutions: the conv and depthwise_conv ops (src/ops/cpu/conv.c) and the layers
 * Conv1D, Conv2D, DepthwiseConv2D, SeparableConv1D, SeparableConv2D (src/layers/conv.c).
 *
 * - Ops: forward against a naive reference in double, and numerical gradient checks of x,
 *   kernel and bias (central differences of an MSE objective through the plan), over
 *   valid/same padding, strides, dilation, odd sizes, depth multipliers, 1D and 2D, the
 *   1x1 GEMM path and im2col in several chunks; backward runs twice with equal results,
 *   and inference plans (shared buffers) give the training plan's outputs.
 * - Layers: every case of tests/fixtures/keras_conv.txt (Keras 3 on JAX, made by
 *   tools/keras_fixtures/make_conv_fixtures.py): weights' names and shapes, parameter
 *   counts, predict, the MSE loss and its gradients, and the weights after one SGD step
 *   through fit, to 1e-5 relative.
 * - Parameter counts of the chapter's models, automatic names, and refusals of bad input
 *   with messages that name the layer and the shapes. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "fixture.h"
#include "model/internal.h"
#include "ops/conv.h"
#include "train/losses.h"

#define RTOL 1e-5
#define ATOL 1e-6

/* ---- A seeded generator (splitmix64) ---- */

static uint64_t rng_state;

static double urand(double lo, double hi) {
  uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  return lo + (hi - lo) * (double)(z >> 11) * (1.0 / 9007199254740992.0);
}

/* ---- Op configurations ---- */

typedef struct conv_cfg {
  const char *what;
  int depthwise;
  int rank; /* spatial: 1 or 2 */
  int n, h, w, c;
  int kh, kw, f; /* f: filters, or the depth multiplier */
  int sh, sw, dh, dw;
  lm_padding pad;
  int bias;
  int64_t chunk; /* floats per im2col chunk, 0 default */
} conv_cfg;

static int64_t ref_out(int64_t in, int64_t k, int64_t s, int64_t d, int same, int64_t *before) {
  int64_t ek = (k - 1) * d + 1;
  if (!same) {
    *before = 0;
    return (in - ek) / s + 1;
  }
  int64_t out = (in + s - 1) / s, total = (out - 1) * s + ek - in;
  if (total < 0) total = 0;
  *before = total / 2;
  return out;
}

static lm_shape x_shape(const conv_cfg *c) {
  return c->rank == 2 ? LM_SHAPE(c->n, c->h, c->w, c->c) : LM_SHAPE(c->n, c->w, c->c);
}

static lm_shape k_shape(const conv_cfg *c) {
  return c->rank == 2 ? LM_SHAPE(c->kh, c->kw, c->c, c->f) : LM_SHAPE(c->kw, c->c, c->f);
}

static int out_channels(const conv_cfg *c) { return c->depthwise ? c->c * c->f : c->f; }

static lm_attrs cfg_attrs(const conv_cfg *c) {
  return (lm_attrs){.i = {c->sh, c->sw, c->dh, c->dw, c->pad, c->chunk}};
}

/* y in double, straight from the definition. */
static double *reference(const conv_cfg *c, const float *x, const float *k, const float *b, int64_t *oh_,
                         int64_t *ow_) {
  int64_t pt, pl, h = c->rank == 2 ? c->h : 1, kh = c->rank == 2 ? c->kh : 1;
  int64_t oh = ref_out(h, kh, c->sh, c->dh, c->pad == LM_SAME, &pt);
  int64_t ow = ref_out(c->w, c->kw, c->sw, c->dw, c->pad == LM_SAME, &pl);
  int oc = out_channels(c);
  double *y = calloc((size_t)(c->n * oh * ow * oc), sizeof *y);
  assert_non_null(y);
  for (int64_t n = 0; n < c->n; n++)
    for (int64_t i = 0; i < oh; i++)
      for (int64_t j = 0; j < ow; j++)
        for (int o = 0; o < oc; o++) {
          double s = b ? b[o] : 0;
          for (int64_t a = 0; a < kh; a++)
            for (int64_t e = 0; e < c->kw; e++) {
              int64_t ih = i * c->sh - pt + a * c->dh, iw = j * c->sw - pl + e * c->dw;
              if (ih < 0 || ih >= h || iw < 0 || iw >= c->w) continue;
              const float *xp = x + ((n * h + ih) * c->w + iw) * c->c;
              const float *kp = k + (a * c->kw + e) * c->c * c->f;
              if (c->depthwise) s += (double)xp[o / c->f] * kp[o];
              else
                for (int ci = 0; ci < c->c; ci++) s += (double)xp[ci] * kp[ci * c->f + o];
            }
          y[((n * oh + i) * ow + j) * oc + o] = s;
        }
  *oh_ = oh, *ow_ = ow;
  return y;
}

/* ---- The op checker ---- */

#define MAX_VALS 16

typedef struct op_run {
  lm_graph *g;
  lm_shape shapes[MAX_VALS];
  int x, k, b, y, target, loss;
  float *data[MAX_VALS]; /* fed values, by id */
} op_run;

static int feed(op_run *r, lm_value_kind kind, lm_shape s, bool grad, double lo, double hi) {
  int id = lm__graph_input(r->g, kind, LM_FLOAT32, s);
  assert_true(id >= 0 && id < MAX_VALS);
  r->g->vals[id].requires_grad = grad;
  r->shapes[id] = s;
  int64_t n = lm_shape_size(s);
  r->data[id] = malloc((size_t)n * sizeof(float));
  assert_non_null(r->data[id]);
  for (int64_t i = 0; i < n; i++) r->data[id][i] = (float)urand(lo, hi);
  return id;
}

static void op_build(op_run *r, const conv_cfg *c) {
  memset(r, 0, sizeof *r);
  r->g = lm__graph_new();
  assert_non_null(r->g);
  r->x = feed(r, LM_VALUE_INPUT, x_shape(c), true, -1, 1);
  r->k = feed(r, LM_VALUE_INPUT, k_shape(c), true, -1, 1);
  r->b = c->bias ? feed(r, LM_VALUE_INPUT, LM_SHAPE(out_channels(c)), true, -1, 1) : -1;
  int in[3] = {r->x, r->k, r->b}, outs[2];
  lm_attrs a = cfg_attrs(c);
  const lm_op_def *def = c->depthwise ? &lm__op_depthwise_conv : &lm__op_conv;
  if (lm__graph_op(r->g, def, in, c->bias ? 3 : 2, &a, outs)) fail_msg("%s: %s", c->what, r->g->err.msg);
  r->y = outs[0];
  r->target = feed(r, LM_VALUE_TARGET, r->g->vals[r->y].shape, false, -1, 1);
  assert_int_equal(lm__graph_op(r->g, &lm__op_loss, (int[]){r->y, r->target}, 2,
                                &(lm_attrs){.i = {LM_LOSS_MSE, 0}}, outs),
                   0);
  r->loss = outs[0];
  assert_true(r->g->n_vals <= MAX_VALS);
}

static lm_plan *op_plan(op_run *r, int training) {
  lm_plan *p = lm__plan_new(r->g, r->shapes, training, training ? r->loss : -1);
  assert_non_null(p);
  if (p->err.code) fail_msg("plan: %s", p->err.msg);
  for (int v = 0; v < MAX_VALS; v++)
    if (r->data[v]) memcpy(lm__f(p, v), r->data[v], (size_t)lm__n(p, v) * sizeof(float));
  return p;
}

static void op_free(op_run *r) {
  for (int v = 0; v < MAX_VALS; v++) free(r->data[v]);
  lm__graph_free(r->g);
}

/* Forward against the reference, in training and inference plans; then analytic against
 * numerical gradients of every input. Returns the number of mismatching gradients. */
static void check_op(const conv_cfg *c) {
  op_run r;
  op_build(&r, c);
  lm_plan *p = op_plan(&r, 1);
  lm__plan_forward(p);
  int64_t oh, ow;
  double *want = reference(c, r.data[r.x], r.data[r.k], c->bias ? r.data[r.b] : NULL, &oh, &ow);
  int64_t ny = lm__n(p, r.y);
  assert_int_equal(ny, c->n * oh * ow * out_channels(c));
  const float *y = lm__f(p, r.y);
  for (int64_t i = 0; i < ny; i++)
    if (fabs(y[i] - want[i]) > 1e-5 * (1 + fabs(want[i])))
      fail_msg("%s: y[%lld] = %.7g, reference %.7g", c->what, (long long)i, (double)y[i], want[i]);
  free(want);
  /* An inference plan shares buffers between values; the output is the same. */
  lm_plan *q = op_plan(&r, 0);
  lm__plan_forward(q);
  assert_memory_equal(lm__f(q, r.y), y, (size_t)ny * sizeof(float));
  lm__plan_free(q);

  lm__plan_backward(p);
  int ids[3] = {r.x, r.k, r.b};
  float *analytic[3] = {0};
  for (int t = 0; t < 3; t++) {
    if (ids[t] < 0) continue;
    assert_non_null(lm__g(p, ids[t]));
    size_t bytes = (size_t)lm__n(p, ids[t]) * sizeof(float);
    analytic[t] = malloc(bytes);
    assert_non_null(analytic[t]);
    memcpy(analytic[t], lm__g(p, ids[t]), bytes);
  }
  /* a second step gives the same gradients (backward runs once per forward: the plan shares
   * the scratch's bytes between the op's forward and its backward) */
  lm__plan_forward(p);
  lm__plan_backward(p);
  for (int t = 0; t < 3; t++)
    if (analytic[t]) assert_memory_equal(analytic[t], lm__g(p, ids[t]), (size_t)lm__n(p, ids[t]) * sizeof(float));

  const double eps = 1e-2; /* the objective is quadratic: central differences are exact */
  int bad = 0;
  for (int t = 0; t < 3; t++) {
    if (!analytic[t]) continue;
    float *v = lm__f(p, ids[t]);
    double biggest = 0;
    for (int64_t i = 0; i < lm__n(p, ids[t]); i++) {
      float orig = v[i];
      v[i] = (float)(orig + eps);
      lm__plan_forward(p);
      double fp = lm__f(p, r.loss)[0];
      v[i] = (float)(orig - eps);
      lm__plan_forward(p);
      double fm = lm__f(p, r.loss)[0];
      v[i] = orig;
      double num = (fp - fm) / (2 * eps), got = analytic[t][i];
      biggest = fmax(biggest, fabs(num));
      if (fabs(got - num) > 2e-3 * fmax(fabs(got), fabs(num)) + 2e-4) {
        if (bad < 6)
          print_message("  %s: d/d(%s)[%lld]: analytic %.7g, numerical %.7g\n", c->what, t == 0 ? "x" : t == 1 ? "kernel" : "bias",
                        (long long)i, got, num);
        bad++;
      }
    }
    if (!(biggest > 1e-3)) fail_msg("%s: the objective hardly depends on input %d", c->what, t);
    free(analytic[t]);
  }
  if (bad) fail_msg("%s: %d gradient elements disagree", c->what, bad);
  lm__plan_free(p);
  op_free(&r);
}

static void test_conv_op(void **state) {
  (void)state;
  rng_state = 11;
  const conv_cfg cfgs[] = {
      /* what                         dw r  n  h  w  c  kh kw f  sh sw dh dw pad      bias chunk */
      {"2d valid 3x3", 0, 2, 2, 5, 6, 3, 3, 3, 4, 1, 1, 1, 1, LM_VALID, 1, 0},
      {"2d same 3x3", 0, 2, 2, 5, 4, 2, 3, 3, 3, 1, 1, 1, 1, LM_SAME, 1, 0},
      {"2d same 2x2 (pad at the end)", 0, 2, 1, 4, 5, 2, 2, 2, 3, 1, 1, 1, 1, LM_SAME, 1, 0},
      {"2d valid stride 2 odd", 0, 2, 2, 7, 5, 2, 3, 3, 2, 2, 2, 1, 1, LM_VALID, 1, 0},
      {"2d same stride 2 even", 0, 2, 2, 6, 6, 2, 3, 3, 2, 2, 2, 1, 1, LM_SAME, 0, 0},
      {"2d same stride (2,3) 4x2", 0, 2, 1, 7, 8, 2, 4, 2, 3, 2, 3, 1, 1, LM_SAME, 1, 0},
      {"2d dilation 2 valid", 0, 2, 2, 6, 7, 2, 3, 3, 2, 1, 1, 2, 2, LM_VALID, 1, 0},
      {"2d dilation (2,1) same", 0, 2, 1, 5, 5, 3, 3, 2, 2, 1, 1, 2, 1, LM_SAME, 1, 0},
      {"2d stride 2 dilation 2 same", 0, 2, 1, 7, 7, 2, 3, 3, 2, 2, 2, 2, 2, LM_SAME, 1, 0},
      {"2d 1x1 (GEMM path)", 0, 2, 2, 3, 4, 3, 1, 1, 4, 1, 1, 1, 1, LM_VALID, 1, 0},
      {"2d 1x1 no bias", 0, 2, 2, 3, 3, 3, 1, 1, 2, 1, 1, 1, 1, LM_SAME, 0, 0},
      {"2d 1x1 stride 2", 0, 2, 2, 5, 4, 2, 1, 1, 3, 2, 2, 1, 1, LM_SAME, 1, 0},
      {"2d 3x3 in chunks of 1 output row", 0, 2, 3, 4, 4, 2, 3, 3, 2, 1, 1, 1, 1, LM_SAME, 1, 1},
      {"2d 2x2 in chunks of 6 rows, across samples", 0, 2, 5, 4, 3, 2, 2, 2, 2, 1, 1, 1, 1, LM_VALID, 1, 2 * 6 * 8},
      {"2d kernel = input", 0, 2, 2, 3, 3, 2, 3, 3, 2, 1, 1, 1, 1, LM_VALID, 1, 0},
      {"1d valid k3", 0, 1, 2, 1, 7, 3, 1, 3, 4, 1, 1, 1, 1, LM_VALID, 1, 0},
      {"1d same k4 stride 2", 0, 1, 2, 1, 9, 2, 1, 4, 3, 1, 2, 1, 1, LM_SAME, 1, 0},
      {"1d same k3 dilation 2", 0, 1, 2, 1, 8, 2, 1, 3, 2, 1, 1, 1, 2, LM_SAME, 0, 0},
      {"1d k1 (GEMM path)", 0, 1, 2, 1, 5, 3, 1, 1, 2, 1, 1, 1, 1, LM_VALID, 1, 0},
      {"1d chunks of 1 row (a sample)", 0, 1, 3, 1, 6, 2, 1, 3, 2, 1, 1, 1, 1, LM_VALID, 1, 1},
      /* 8 channels and more: im2col copies whole channel runs */
      {"2d same 3x3 c9 stride 2", 0, 2, 2, 5, 4, 9, 3, 3, 3, 2, 2, 1, 1, LM_SAME, 1, 0},
      {"2d valid 2x3 c8 dilation 2", 0, 2, 1, 4, 6, 8, 2, 3, 2, 1, 1, 2, 2, LM_VALID, 1, 0},
      {"2d same 3x3 c8 chunks of 1 row", 0, 2, 3, 3, 3, 8, 3, 3, 2, 1, 1, 1, 1, LM_SAME, 0, 1},
      {"1d same k3 c10 stride 2", 0, 1, 2, 1, 7, 10, 1, 3, 2, 1, 2, 1, 1, LM_SAME, 1, 0},
  };
  for (size_t i = 0; i < sizeof cfgs / sizeof *cfgs; i++) check_op(&cfgs[i]);
}

static void test_depthwise_op(void **state) {
  (void)state;
  rng_state = 12;
  const conv_cfg cfgs[] = {
      /* what                         dw r  n  h  w  c  kh kw m  sh sw dh dw pad      bias chunk */
      {"dw valid 3x3 m1", 1, 2, 2, 5, 6, 3, 3, 3, 1, 1, 1, 1, 1, LM_VALID, 1, 0},
      {"dw same 3x3 m2", 1, 2, 2, 5, 4, 2, 3, 3, 2, 1, 1, 1, 1, LM_SAME, 1, 0},
      {"dw same 2x2 m1", 1, 2, 1, 4, 5, 3, 2, 2, 1, 1, 1, 1, 1, LM_SAME, 0, 0},
      {"dw stride 2 odd m3", 1, 2, 2, 7, 5, 2, 3, 3, 3, 2, 2, 1, 1, LM_VALID, 1, 0},
      {"dw same stride 2 even", 1, 2, 2, 6, 6, 2, 3, 3, 1, 2, 2, 1, 1, LM_SAME, 1, 0},
      {"dw dilation 2 same m2", 1, 2, 1, 6, 7, 2, 3, 3, 2, 1, 1, 2, 2, LM_SAME, 1, 0},
      {"dw stride 2 dilation 2 (2x3)", 1, 2, 2, 7, 8, 2, 2, 3, 2, 2, 2, 2, 2, LM_VALID, 1, 0},
      {"dw 1x1 m2", 1, 2, 2, 3, 3, 2, 1, 1, 2, 1, 1, 1, 1, LM_VALID, 1, 0},
      {"dw 1d k3 m1", 1, 1, 2, 1, 7, 3, 1, 3, 1, 1, 1, 1, 1, LM_VALID, 1, 0},
      {"dw 1d same k3 stride 2 m2", 1, 1, 2, 1, 9, 2, 1, 3, 2, 1, 2, 1, 1, LM_SAME, 1, 0},
      {"dw 1d same dilation 2", 1, 1, 2, 1, 8, 2, 1, 3, 2, 1, 1, 1, 2, LM_SAME, 0, 0},
      /* blocks of 16 channels and a remainder */
      {"dw same 3x3 c18 m1", 1, 2, 2, 3, 4, 18, 3, 3, 1, 1, 1, 1, 1, LM_SAME, 1, 0},
      {"dw valid 2x2 c16 m1 stride 2", 1, 2, 1, 5, 4, 16, 2, 2, 1, 2, 2, 1, 1, LM_VALID, 0, 0},
      {"dw same 3x3 c17 m2", 1, 2, 1, 3, 3, 17, 3, 3, 2, 1, 1, 1, 1, LM_SAME, 1, 0},
  };
  for (size_t i = 0; i < sizeof cfgs / sizeof *cfgs; i++) check_op(&cfgs[i]);
}

/* One and two threads give the same bits: the output and the gradients of x, the kernel
 * and the bias, on shapes large enough for the parallel path (the kernel and bias
 * gradients sum over the batch in fixed pieces). */
static void test_threads_same_bits(void **state) {
  (void)state;
  rng_state = 13;
  const conv_cfg cfgs[] = {
      /* what                         dw r  n   h   w   c  kh kw m  sh sw dh dw pad      bias chunk */
      {"dw valid 3x3 c20", 1, 2, 8, 12, 12, 20, 3, 3, 1, 1, 1, 1, 1, LM_VALID, 1, 0},
      {"dw valid 3x3 c3, 40 samples", 1, 2, 40, 8, 9, 3, 3, 3, 1, 1, 1, 1, 1, LM_VALID, 1, 0},
      {"dw same 3x3 c5 stride 2", 1, 2, 33, 11, 12, 5, 3, 3, 1, 2, 2, 1, 1, LM_SAME, 1, 0},
      {"dw same 3x3 c6 m2 stride 2", 1, 2, 8, 15, 15, 6, 3, 3, 2, 2, 2, 1, 1, LM_SAME, 1, 0},
      {"dw 1d same k5 c16 dilation 2", 1, 1, 16, 1, 120, 16, 1, 5, 1, 1, 1, 1, 2, LM_SAME, 0, 0},
      /* the general convolution's bias epilogue and bias gradient, on each of its paths */
      {"conv 1x1 c16 f40 (direct)", 0, 2, 12, 16, 16, 16, 1, 1, 40, 1, 1, 1, 1, LM_VALID, 1, 0},
      {"conv1d k5 c24 f48 (window rows)", 0, 1, 12, 1, 150, 24, 1, 5, 48, 1, 1, 1, 1, LM_VALID, 1, 0},
      {"conv 3x3 same c8 f32 (im2col)", 0, 2, 10, 14, 14, 8, 3, 3, 32, 1, 1, 1, 1, LM_SAME, 1, 0},
  };
  int before = lm_get_num_threads();
  for (size_t i = 0; i < sizeof cfgs / sizeof *cfgs; i++) {
    const conv_cfg *c = &cfgs[i];
    op_run r;
    op_build(&r, c);
    lm_plan *p = op_plan(&r, 1);
    int ids[4] = {r.y, r.x, r.k, r.b};
    float *saved[4] = {0};
    for (int threads = 1; threads <= 2; threads++) {
      lm_set_num_threads(threads);
      memset(lm__f(p, r.y), 0x7f, (size_t)lm__n(p, r.y) * sizeof(float));
      lm__plan_forward(p);
      lm__plan_backward(p);
      for (int t = 0; t < 4; t++) {
        if (ids[t] < 0) continue;
        const float *v = t == 0 ? lm__f(p, ids[t]) : lm__g(p, ids[t]);
        size_t bytes = (size_t)lm__n(p, ids[t]) * sizeof(float);
        assert_non_null(v);
        if (threads == 1) {
          saved[t] = malloc(bytes);
          assert_non_null(saved[t]);
          memcpy(saved[t], v, bytes);
        } else if (memcmp(saved[t], v, bytes)) {
          fail_msg("%s: %s differs between 1 and 2 threads", c->what, t == 0 ? "y" : t == 1 ? "dx" : t == 2 ? "dkernel" : "dbias");
        }
      }
    }
    for (int t = 0; t < 4; t++) free(saved[t]);
    lm__plan_free(p);
    op_free(&r);
  }
  lm_set_num_threads(before);
}

/* The ops' shape rules: output sizes with unknown dims, and refusals. */
static void test_op_shapes(void **state) {
  (void)state;
  lm_graph *g = lm__graph_new();
  int x = lm__graph_input(g, LM_VALUE_INPUT, LM_FLOAT32, LM_SHAPE(LM_NONE, LM_NONE, 16));
  int k = lm__graph_input(g, LM_VALUE_INPUT, LM_FLOAT32, LM_SHAPE(5, 16, 8));
  int y = lm__emit(g, &lm__op_conv, (int[]){x, k}, 2, &(lm_attrs){.i = {1, 2, 1, 1, LM_SAME}});
  assert_true(y >= 0);
  assert_int_equal(g->vals[y].shape.rank, 3);
  assert_int_equal(g->vals[y].shape.dim[1], LM_NONE);
  assert_int_equal(g->vals[y].shape.dim[2], 8);
  int x2 = lm__graph_input(g, LM_VALUE_INPUT, LM_FLOAT32, LM_SHAPE(LM_NONE, 2, 2, 3));
  int k2 = lm__graph_input(g, LM_VALUE_INPUT, LM_FLOAT32, LM_SHAPE(3, 3, 3, 8));
  assert_int_equal(lm__emit(g, &lm__op_conv, (int[]){x2, k2}, 2, &(lm_attrs){.i = {1, 1, 1, 1, LM_VALID}}), -1);
  assert_non_null(strstr(g->err.msg, "zero or negative"));
  assert_non_null(strstr(g->err.msg, "(None, 2, 2, 3)"));
  assert_non_null(strstr(g->err.msg, "(3, 3, 3, 8)"));
  lm__graph_free(g);

  g = lm__graph_new();
  x2 = lm__graph_input(g, LM_VALUE_INPUT, LM_FLOAT32, LM_SHAPE(LM_NONE, 2, 2, 3));
  k2 = lm__graph_input(g, LM_VALUE_INPUT, LM_FLOAT32, LM_SHAPE(3, 3, 3, 8));
  y = lm__emit(g, &lm__op_conv, (int[]){x2, k2}, 2, &(lm_attrs){.i = {2, 2, 1, 1, LM_SAME}}); /* same pads it */
  assert_true(y >= 0);
  assert_int_equal(g->vals[y].shape.dim[1], 1);
  int kd = lm__graph_input(g, LM_VALUE_INPUT, LM_FLOAT32, LM_SHAPE(3, 3, 4, 2));
  assert_int_equal(lm__emit(g, &lm__op_depthwise_conv, (int[]){x2, kd}, 2, &(lm_attrs){.i = {1, 1, 1, 1, LM_SAME}}), -1);
  assert_non_null(strstr(g->err.msg, "3 channels"));
  lm__graph_free(g);

  g = lm__graph_new();
  int xi = lm__graph_input(g, LM_VALUE_INPUT, LM_INT32, LM_SHAPE(LM_NONE, 5, 5, 1));
  int ki = lm__graph_input(g, LM_VALUE_INPUT, LM_FLOAT32, LM_SHAPE(3, 3, 1, 2));
  assert_int_equal(lm__emit(g, &lm__op_conv, (int[]){xi, ki}, 2, &(lm_attrs){.i = {1, 1, 1, 1, LM_VALID}}), -1);
  assert_non_null(strstr(g->err.msg, "float32"));
  lm__graph_free(g);
}

/* ---- Keras fixtures ---- */

static fx_file fixture;

static int load_fixture(void **state) {
  (void)state;
  char path[256]; /* short: fixture.h formats it into a 512-byte message */
  fx_source_path(path, sizeof path, "tests/fixtures/keras_conv.txt");
  if (fx_load(&fixture, path)) {
    fprintf(stderr, "%s\n", fixture.error);
    return -1;
  }
  return 0;
}

static int free_fixture(void **state) {
  (void)state;
  fx_free(&fixture);
  return 0;
}

static const fx_array *need(const fx_case *c, const char *name) {
  const fx_array *a = fx_array_get(c, name);
  if (!a) fail_msg("case %s has no array '%s'", c->name, name);
  return a;
}

static const char *need_attr(const fx_case *c, const char *key) {
  const char *v = fx_attr_get(c, key);
  if (!v) fail_msg("case %s has no attribute '%s'", c->name, key);
  return v;
}

static long attr_int(const fx_case *c, const char *key) { return strtol(need_attr(c, key), NULL, 10); }

static void attr_pair(const fx_case *c, const char *key, int out[2]) {
  char *end;
  const char *v = need_attr(c, key);
  out[0] = (int)strtol(v, &end, 10);
  out[1] = *end == ',' ? (int)strtol(end + 1, NULL, 10) : 0;
}

static void check(const fx_case *c, const char *what, const float *got, const fx_array *want, int *bad) {
  char tag[256];
  snprintf(tag, sizeof tag, "%s %s", c->name, what);
  *bad += fx_compare(tag, got, want, RTOL, ATOL);
}

static lm_array *wrap(const fx_array *a) {
  lm_shape s = {.rank = a->rank};
  for (int d = 0; d < a->rank; d++) s.dim[d] = a->dim[d];
  lm_array *arr = lm_array_wrap(LM_FLOAT32, s, a->f);
  assert_non_null(arr);
  return arr;
}

static const fx_array *weight_array(const fx_case *c, const char *weight, const char *suffix) {
  char name[96];
  snprintf(name, sizeof name, "%s:%s", weight, suffix);
  return need(c, name);
}

/* The layer a case describes, from its attributes. */
static lm_layer *layer_for(const fx_case *c) {
  const char *cls = need_attr(c, "class");
  lm_conv_opts o = {0};
  attr_pair(c, "kernel_size", o.kernel_hw);
  attr_pair(c, "strides", o.strides);
  attr_pair(c, "dilation_rate", o.dilation_rate);
  const char *pad = need_attr(c, "padding");
  assert_true(!strcmp(pad, "valid") || !strcmp(pad, "same"));
  o.padding = strcmp(pad, "same") ? LM_VALID : LM_SAME;
  o.depth_multiplier = (int)attr_int(c, "depth_multiplier");
  o.no_bias = !strcmp(need_attr(c, "use_bias"), "False");
  int act = lm_activation_from_name(need_attr(c, "activation"));
  assert_true(act >= 0);
  o.activation = (lm_activation)act;
  o.name = "conv";
  int filters = (int)attr_int(c, "filters");
  if (!strcmp(cls, "Conv1D")) return lm_conv1d_new(filters, 0, o);
  if (!strcmp(cls, "Conv2D")) return lm_conv2d_new(filters, 0, o);
  if (!strcmp(cls, "DepthwiseConv2D")) return lm_depthwise_conv2d_new(0, o);
  if (!strcmp(cls, "SeparableConv1D")) return lm_separable_conv1d_new(filters, 0, o);
  if (!strcmp(cls, "SeparableConv2D")) return lm_separable_conv2d_new(filters, 0, o);
  fail_msg("no lamina layer for class %s", cls);
  return NULL;
}

static void layer_case(fx_case *c, int *bad) {
  const fx_array *x = need(c, "x"), *target = need(c, "target");
  lm_shape in_shape = {.rank = x->rank - 1};
  for (int d = 1; d < x->rank; d++) in_shape.dim[d - 1] = x->dim[d];
  lm_tensor *in = lm_input(in_shape);
  lm_layer *layer = layer_for(c);
  assert_int_equal(lm_layer_status(layer), LM_OK);
  assert_string_equal(lm_layer_class(layer), need_attr(c, "class"));
  lm_model *model = lm_model_new(LM_TENSORS(in), LM_TENSORS(lm_call(layer, in)));
  if (lm_model_status(model) != LM_OK) fail_msg("%s: %s", c->name, lm_model_error(model));
  assert_int_equal(lm_layer_count_params(layer), attr_int(c, "params"));

  /* Weights: Keras's names, in Keras's order, of Keras's shapes. */
  char names[256];
  snprintf(names, sizeof names, "%s", need_attr(c, "weights"));
  int n_weights = 0;
  const char *wname;
  for (char *save = NULL, *tok = strtok_r(names, ",", &save); tok; tok = strtok_r(NULL, ",", &save), n_weights++) {
    lm_array *a = lm_layer_weight(layer, n_weights, &wname);
    assert_non_null(a);
    assert_string_equal(wname, tok);
    const fx_array *v = weight_array(c, tok, "before");
    assert_int_equal(a->shape.rank, v->rank);
    for (int d = 0; d < v->rank; d++) assert_int_equal(a->shape.dim[d], v->dim[d]);
    memcpy(lm_array_f32(a), v->f, (size_t)v->n * sizeof(float));
  }
  assert_null(lm_layer_weight(layer, n_weights, NULL));

  /* predict */
  lm_array *xa = wrap(x), *ta = wrap(target);
  lm_outputs out = lm_predict(model, LM_FEED(xa), .verbose = LM_SILENT);
  if (out.n != 1) fail_msg("%s: predict failed: %s", c->name, lm_last_error());
  check(c, "predict", lm_array_f32(out.a[0]), need(c, "y"), bad);
  lm_outputs_free(&out);

  /* The loss and its gradients through the graph */
  lm_graph *g = lm__graph_new();
  assert_non_null(g);
  lm_shape sym = x->rank == 4 ? LM_SHAPE(LM_NONE, x->dim[1], x->dim[2], x->dim[3]) : LM_SHAPE(LM_NONE, x->dim[1], x->dim[2]);
  int vx = lm__graph_input(g, LM_VALUE_INPUT, LM_FLOAT32, sym), vy = -1, outs[2];
  g->vals[vx].requires_grad = true;
  assert_true(lm__model_emit(model, g, &vx, &vy) >= 0);
  lm_shape tsym = g->vals[vy].shape;
  int vt = lm__graph_input(g, LM_VALUE_TARGET, LM_FLOAT32, tsym);
  assert_int_equal(lm__graph_op(g, &lm__op_loss, (int[]){vy, vt}, 2, &(lm_attrs){.i = {LM_LOSS_MSE, 0}}, outs), 0);
  lm_shape *shapes = calloc((size_t)g->n_vals, sizeof *shapes);
  assert_non_null(shapes);
  shapes[vx] = (lm_shape){.rank = x->rank};
  for (int d = 0; d < x->rank; d++) shapes[vx].dim[d] = x->dim[d];
  shapes[vt] = (lm_shape){.rank = target->rank};
  for (int d = 0; d < target->rank; d++) shapes[vt].dim[d] = target->dim[d];
  lm_plan *plan = lm__plan_new(g, shapes, 1, outs[0]);
  free(shapes);
  assert_non_null(plan);
  if (plan->err.code) fail_msg("%s: %s", c->name, plan->err.msg);
  memcpy(lm__f(plan, vx), x->f, (size_t)x->n * sizeof(float));
  memcpy(lm__f(plan, vt), target->f, (size_t)target->n * sizeof(float));
  lm__plan_forward(plan);
  check(c, "graph forward", lm__f(plan, vy), need(c, "y"), bad);
  check(c, "loss", lm__f(plan, outs[0]), need(c, "loss"), bad);
  lm__plan_backward(plan);
  check(c, "d input", lm__g(plan, vx), need(c, "dx"), bad);
  for (int i = 0; i < n_weights; i++) {
    char what[128];
    snprintf(what, sizeof what, "d %s", layer->weights[i]->name);
    float *gw = lm__g(plan, lm__graph_param(g, layer->weights[i]));
    assert_non_null(gw);
    check(c, what, gw, weight_array(c, layer->weights[i]->name, "grad"), bad);
  }
  lm__plan_free(plan);
  lm__graph_free(g);

  /* One SGD step through fit */
  double lr = strtod(need_attr(c, "learning_rate"), NULL);
  assert_int_equal(lm_compile(model, .optimizer = lm_sgd(.learning_rate = lr), .loss = LM_LOSSES("mse")), LM_OK);
  lm_history *h = lm_fit(model, LM_FEED(xa), LM_FEED(ta), .epochs = 1, .batch_size = (int)x->dim[0],
                         .no_shuffle = true, .verbose = LM_SILENT);
  if (!h) fail_msg("%s: fit failed: %s", c->name, lm_last_error());
  *bad += fx_compare_scalar(c->name, lm_history_last(h, "loss"), need(c, "loss"), RTOL, ATOL);
  for (int i = 0; i < n_weights; i++) {
    char what[128];
    snprintf(what, sizeof what, "%s after one SGD step", layer->weights[i]->name);
    check(c, what, lm_array_f32(layer->weights[i]->value), weight_array(c, layer->weights[i]->name, "after"), bad);
  }
  lm_history_free(h);
  lm_array_free(xa);
  lm_array_free(ta);
  lm_session_clear();
}

static void each_case(const char *prefix, int expected, void (*fn)(fx_case *c, int *bad)) {
  int seen = 0, bad = 0;
  for (int i = 0; i < fixture.n_cases; i++) {
    fx_case *c = &fixture.cases[i];
    if (!fx_has_prefix(c->name, prefix)) continue;
    int before = bad;
    fn(c, &bad);
    if (bad != before) fprintf(stderr, "FAILED: %s\n", c->name);
    c->checked = 1;
    seen++;
  }
  assert_int_equal(seen, expected);
  if (bad) fail_msg("%d value(s) differ from Keras in the %s cases", bad, prefix);
}

static void test_keras_conv1d(void **state) {
  (void)state;
  each_case("conv/conv1d/", 5, layer_case);
}

static void test_keras_conv2d(void **state) {
  (void)state;
  each_case("conv/conv2d/", 9, layer_case);
}

static void test_keras_depthwise_conv2d(void **state) {
  (void)state;
  each_case("conv/depthwise_conv2d/", 5, layer_case);
}

static void test_keras_separable_conv1d(void **state) {
  (void)state;
  each_case("conv/separable_conv1d/", 3, layer_case);
}

static void test_keras_separable_conv2d(void **state) {
  (void)state;
  each_case("conv/separable_conv2d/", 4, layer_case);
}

/* ---- Parameter counts of the chapter's models ---- */

static void expect_params(const fx_case *c, lm_model *model) {
  for (int i = 0; i < lm_model_n_layers(model); i++) {
    lm_layer *layer = lm_model_get_layer(model, i);
    char key[160];
    snprintf(key, sizeof key, "%s.params", lm_layer_name(layer));
    const char *v = fx_attr_get(c, key);
    if (v) assert_int_equal(lm_layer_count_params(layer), strtol(v, NULL, 10));
    snprintf(key, sizeof key, "%s.shape", lm_layer_name(layer));
    if ((v = fx_attr_get(c, key))) {
      char buf[96], want[320];
      lm_shape_format(lm_tensor_shape(layer->nodes[0]->outputs[0]), buf, sizeof buf);
      snprintf(want, sizeof want, "(%s)", v);
      for (char *p = want; (p = strchr(p, ',')); p++) { /* "None,62" -> "None, 62" */
        memmove(p + 2, p + 1, strlen(p + 1) + 1);
        p[1] = ' ';
      }
      assert_string_equal(buf, want);
    }
  }
  assert_int_equal(lm_model_count_params(model), attr_int(c, "total"));
}

static void params_case(fx_case *c, int *bad) {
  (void)bad;
  lm_model *model = NULL;
  if (!strcmp(c->name, "params/separable_classifier")) {
    /* Keras 3.15.1 counts 38,949 parameters (the fixture's "total"). */
    lm_tensor *in = lm_input(LM_SHAPE(64, 64, 3));
    lm_tensor *x = lm_call(lm_separable_conv2d(32, 3, .activation = LM_RELU), in);
    x = lm_call(lm_separable_conv2d(64, 3, .activation = LM_RELU), x);
    x = lm_call(lm_max_pooling2d(2), x);
    x = lm_call(lm_separable_conv2d(64, 3, .activation = LM_RELU), x);
    x = lm_call(lm_separable_conv2d(128, 3, .activation = LM_RELU), x);
    x = lm_call(lm_max_pooling2d(2), x);
    x = lm_call(lm_separable_conv2d(64, 3, .activation = LM_RELU), x);
    x = lm_call(lm_separable_conv2d(128, 3, .activation = LM_RELU), x);
    x = lm_call(lm_global_average_pooling2d(), x);
    x = lm_call(lm_dense(32, .activation = LM_RELU), x);
    lm_tensor *out = lm_call(lm_dense(10, .activation = LM_SOFTMAX), x);
    model = lm_model_new(LM_TENSORS(in), LM_TENSORS(out));
    if (lm_model_status(model) != LM_OK) fail_msg("%s", lm_model_error(model));
    assert_int_equal(lm_model_count_params(model), 38949);
  } else if (!strcmp(c->name, "params/imdb_conv1d")) {
    /* Conv1D(32, 7) on 128 channels: 7 * 128 * 32 + 32 = 28,704 (Keras 3.15.1). */
    lm_tensor *in = lm_input(LM_SHAPE(LM_NONE, 128));
    lm_tensor *x = lm_call(lm_conv1d(32, 7, .activation = LM_RELU), in);
    x = lm_call(lm_max_pooling1d(5), x);
    x = lm_call(lm_conv1d(32, 7, .activation = LM_RELU), x);
    model = lm_model_new(LM_TENSORS(in), LM_TENSORS(x));
    if (lm_model_status(model) != LM_OK) fail_msg("%s", lm_model_error(model));
    assert_int_equal(lm_layer_count_params(lm_model_get_layer(model, 1)), 28704);
  } else {
    fail_msg("no model for case %s", c->name);
  }
  expect_params(c, model);
  lm_session_clear();
}

static void test_keras_param_counts(void **state) {
  (void)state;
  each_case("params/", 2, params_case);
}

static void test_every_case_checked(void **state) {
  (void)state;
  int unchecked = 0;
  for (int i = 0; i < fixture.n_cases; i++)
    if (!fixture.cases[i].checked) {
      fprintf(stderr, "  case %s was not checked\n", fixture.cases[i].name);
      unchecked++;
    }
  assert_int_equal(unchecked, 0);
}

/* ---- Names, parameter counts of single layers, summary ---- */

static void test_names_and_counts(void **state) {
  (void)state;
  lm_tensor *img = lm_input(LM_SHAPE(8, 8, 3)), *seq = lm_input(LM_SHAPE(10, 4));
  lm_layer *a = lm_conv2d(8, 3), *b = lm_conv2d(8, 3), *d = lm_depthwise_conv2d(3, .depth_multiplier = 2);
  lm_layer *s2 = lm_separable_conv2d(8, 3, .depth_multiplier = 2), *c1 = lm_conv1d(6, 3),
           *s1 = lm_separable_conv1d(8, 3, .depth_multiplier = 2, .no_bias = true);
  assert_string_equal(lm_layer_name(a), "conv2d");
  assert_string_equal(lm_layer_name(b), "conv2d_1");
  assert_string_equal(lm_layer_name(d), "depthwise_conv2d");
  assert_string_equal(lm_layer_name(s2), "separable_conv2d");
  assert_string_equal(lm_layer_name(c1), "conv1d");
  assert_string_equal(lm_layer_name(s1), "separable_conv1d");
  assert_string_equal(lm_layer_class(d), "DepthwiseConv2D");
  lm_tensor *y = lm_call(a, img);
  assert_int_equal(lm_tensor_status(y), LM_OK);
  char buf[96];
  assert_string_equal(lm_shape_format(lm_tensor_shape(y), buf, sizeof buf), "(None, 6, 6, 8)");
  lm_call(d, img);
  lm_call(s2, img);
  lm_call(c1, seq);
  lm_call(s1, seq);
  /* Keras 3.15.1's counts for these configurations */
  assert_int_equal(lm_layer_count_params(a), 224);
  assert_int_equal(lm_layer_count_params(d), 60);
  assert_int_equal(lm_layer_count_params(s2), 110);
  assert_int_equal(lm_layer_count_params(c1), 3 * 4 * 6 + 6);
  assert_int_equal(lm_layer_count_params(s1), 3 * 4 * 2 + 8 * 8);
  /* Keras's default initializers: glorot_uniform over the kernel's fans, zero bias */
  struct {
    lm_layer *layer;
    int index;
    double fan_in, fan_out;
  } inits[] = {{a, 0, 9 * 3, 9 * 8}, {d, 0, 9 * 3, 9 * 2}, {s2, 0, 9 * 3, 9 * 2}, {s2, 1, 6, 8}, {c1, 0, 3 * 4, 3 * 6}};
  for (size_t i = 0; i < sizeof inits / sizeof *inits; i++) {
    lm_array *w = lm_layer_weight(inits[i].layer, inits[i].index, NULL);
    double limit = sqrt(6.0 / (inits[i].fan_in + inits[i].fan_out)), biggest = 0;
    for (int64_t j = 0; j < w->size; j++) biggest = fmax(biggest, fabs(lm_array_f32(w)[j]));
    assert_true(biggest <= limit && biggest > 0.5 * limit);
  }
  const char *bname;
  lm_array *bias = lm_layer_weight(d, 1, &bname);
  assert_string_equal(bname, "bias");
  for (int64_t j = 0; j < bias->size; j++) assert_true(lm_array_f32(bias)[j] == 0.0f);
  /* Rectangular kernels and per-axis strides */
  lm_tensor *z = lm_call(lm_conv2d(4, 0, .kernel_hw = {3, 1}, .strides = {2, 1}, .padding = LM_SAME), img);
  assert_string_equal(lm_shape_format(lm_tensor_shape(z), buf, sizeof buf), "(None, 4, 8, 4)");
  lm_session_clear();
}

/* ---- Bad input: errors naming the layer and the shapes, no crash ---- */

static void expect_error(lm_tensor *t, const char *a, const char *b, const char *c) {
  assert_int_not_equal(lm_tensor_status(t), LM_OK);
  const char *msg = lm_tensor_error(t);
  const char *parts[3] = {a, b, c};
  for (int i = 0; i < 3; i++)
    if (parts[i] && !strstr(msg, parts[i])) fail_msg("'%s' is not in the message: %s", parts[i], msg);
}

static void expect_layer_error(lm_layer *layer, const char *a, const char *b) {
  assert_int_not_equal(lm_layer_status(layer), LM_OK);
  const char *msg = lm_layer_error(layer);
  if (a && !strstr(msg, a)) fail_msg("'%s' is not in the message: %s", a, msg);
  if (b && !strstr(msg, b)) fail_msg("'%s' is not in the message: %s", b, msg);
}

static void test_bad_input(void **state) {
  (void)state;
  /* A kernel larger than the input */
  lm_tensor *small = lm_input(LM_SHAPE(2, 2, 3));
  expect_error(lm_call(lm_conv2d(8, 3, .name = "big_kernel"), small), "big_kernel", "(None, 2, 2, 3)", "(3, 3, 3, 8)");
  expect_error(lm_call(lm_separable_conv2d(8, 3, .name = "sep"), small), "sep", "zero or negative", NULL);
  expect_error(lm_call(lm_depthwise_conv2d(3, .dilation_rate = {2}, .padding = LM_VALID), lm_input(LM_SHAPE(4, 9, 1))),
               "depthwise_conv2d", "(None, 4, 9, 1)", "negative");
  expect_error(lm_call(lm_conv1d(4, 5), lm_input(LM_SHAPE(3, 2))), "conv1d", "(None, 3, 2)", "(5, 2, 4)");
  /* 'same' pads: the same kernel fits */
  assert_int_equal(lm_tensor_status(lm_call(lm_conv2d(8, 3, .padding = LM_SAME), small)), LM_OK);
  /* No channels axis */
  lm_tensor *gray = lm_input(LM_SHAPE(28, 28));
  expect_error(lm_call(lm_conv2d(8, 3, .name = "no_channels"), gray), "no_channels", "(batch, rows, cols, channels)",
               "(None, 28, 28)");
  expect_error(lm_call(lm_conv1d(8, 3), lm_input(LM_SHAPE(10))), "Conv1D", "(batch, steps, channels)", "(None, 10)");
  expect_error(lm_call(lm_conv1d(8, 3), small), "rank 3", "(None, 2, 2, 3)", NULL);
  /* Unknown channels */
  expect_error(lm_call(lm_conv2d(8, 3), lm_input(LM_SHAPE(28, 28, LM_NONE))), "channels dimension", "(None, 28, 28, None)",
               NULL);
  /* int32 input */
  expect_error(lm_call(lm_conv2d(8, 3, .name = "ints"), lm_input(LM_SHAPE(28, 28, 1), .dtype = LM_INT32)), "ints",
               "float32", "(None, 28, 28, 1)");
  /* A later call with other channels than the build */
  lm_layer *conv = lm_conv2d(4, 3, .name = "built_for_3");
  assert_int_equal(lm_tensor_status(lm_call(conv, lm_input(LM_SHAPE(8, 8, 3)))), LM_OK);
  expect_error(lm_call(conv, lm_input(LM_SHAPE(8, 8, 5))), "built_for_3", "5 channels", "(3, 3, 3, 4)");
  /* Constructor arguments, as Keras refuses them */
  expect_layer_error(lm_conv2d(8, 3, .strides = {2}, .dilation_rate = {2}), "`strides > 1` not supported", "(2, 2)");
  expect_layer_error(lm_conv2d(8, 3, .strides = {2, 1}, .dilation_rate = {1, 2}), "dilation_rate=(1, 2)", NULL);
  expect_layer_error(lm_conv1d(8, 3, .strides = {2}, .dilation_rate = {2}), "strides=(2,)", NULL);
  expect_layer_error(lm_conv2d(0, 3), "filters", NULL);
  expect_layer_error(lm_separable_conv1d(-1, 3), "filters", NULL);
  expect_layer_error(lm_conv2d(4, 0), "kernel_size", NULL);
  expect_layer_error(lm_conv2d(4, 3, .kernel_hw = {3, -1}), "kernel_size", NULL);
  expect_layer_error(lm_depthwise_conv2d(3, .strides = {-1}), "strides", NULL);
  expect_layer_error(lm_depthwise_conv2d(3, .depth_multiplier = -2), "depth_multiplier", NULL);
  expect_layer_error(lm_conv2d(4, 3, .padding = (lm_padding)7), "padding", NULL);
  /* ... but depthwise and separable layers take both, as in Keras */
  lm_tensor *big = lm_input(LM_SHAPE(10, 10, 3));
  lm_tensor *t = lm_call(lm_depthwise_conv2d(3, .strides = {2}, .dilation_rate = {2}), big);
  char buf[96];
  assert_int_equal(lm_tensor_status(t), LM_OK);
  assert_string_equal(lm_shape_format(lm_tensor_shape(t), buf, sizeof buf), "(None, 3, 3, 3)");
  t = lm_call(lm_separable_conv2d(8, 3, .strides = {2}, .dilation_rate = {2}), big);
  assert_string_equal(lm_shape_format(lm_tensor_shape(t), buf, sizeof buf), "(None, 3, 3, 8)");
  lm_session_clear();

  /* Unknown steps: a sequence shorter than the kernel is refused at run time. */
  lm_tensor *seq = lm_input(LM_SHAPE(LM_NONE, 4));
  lm_model *m = lm_model_new(LM_TENSORS(seq), LM_TENSORS(lm_call(lm_conv1d(2, 5, .name = "short"), seq)));
  assert_int_equal(lm_model_status(m), LM_OK);
  lm_array *x = lm_array_new(LM_FLOAT32, LM_SHAPE(2, 3, 4));
  lm_outputs out = lm_predict(m, LM_FEED(x), .verbose = LM_SILENT);
  assert_int_equal(out.n, 0);
  if (!strstr(lm_last_error(), "short") || !strstr(lm_last_error(), "(2, 3, 4)"))
    fail_msg("unexpected message: %s", lm_last_error());
  lm_array_free(x);
  x = lm_array_new(LM_FLOAT32, LM_SHAPE(2, 9, 4));
  out = lm_predict(m, LM_FEED(x), .verbose = LM_SILENT);
  assert_int_equal(out.n, 1);
  assert_string_equal(lm_shape_format(out.a[0]->shape, buf, sizeof buf), "(2, 5, 2)");
  lm_outputs_free(&out);
  lm_array_free(x);
  lm_session_clear();
}

/* ---- Training: a small convnet learns ---- */

static void test_fit_learns(void **state) {
  (void)state;
  lm_set_seed(3);
  rng_state = 99;
  /* Images with a bright vertical or horizontal bar; the class is the bar's direction. */
  const int n = 64, side = 8;
  lm_array *x = lm_array_new(LM_FLOAT32, LM_SHAPE(n, side, side, 1)), *y = lm_array_new(LM_FLOAT32, LM_SHAPE(n, 1));
  float *xf = lm_array_f32(x);
  for (int i = 0; i < n; i++) {
    int vertical = i % 2, at = (int)urand(1, side - 1);
    for (int r = 0; r < side; r++)
      for (int c = 0; c < side; c++)
        xf[(i * side + r) * side + c] = (float)urand(0, 0.3) + ((vertical ? c : r) == at ? 1.0f : 0.0f);
    lm_array_f32(y)[i] = (float)vertical;
  }
  lm_tensor *in = lm_input(LM_SHAPE(side, side, 1));
  lm_tensor *h = lm_call(lm_conv2d(4, 3, .activation = LM_RELU, .padding = LM_SAME), in);
  h = lm_call(lm_separable_conv2d(6, 3, .activation = LM_RELU, .strides = {2}), h);
  h = lm_call(lm_depthwise_conv2d(3, .padding = LM_SAME), h);
  h = lm_call(lm_flatten(), h);
  lm_tensor *out = lm_call(lm_dense(1, .activation = LM_SIGMOID), h);
  lm_model *model = lm_model_new(LM_TENSORS(in), LM_TENSORS(out));
  assert_int_equal(lm_model_status(model), LM_OK);
  assert_int_equal(lm_compile(model, .optimizer = lm_adam(.learning_rate = 0.01), .loss = LM_LOSSES("binary_crossentropy"),
                              .metrics = LM_METRICS("acc")),
                   LM_OK);
  lm_history *hist = lm_fit(model, LM_FEED(x), LM_FEED(y), .epochs = 30, .batch_size = 16, .verbose = LM_SILENT);
  assert_non_null(hist);
  const double *loss = lm_history_get(hist, "loss");
  assert_non_null(loss);
  int last = lm_history_n_epochs(hist) - 1;
  print_message("  loss %.4f -> %.4f, accuracy %.3f\n", loss[0], loss[last], lm_history_last(hist, "acc"));
  assert_true(loss[last] < 0.5 * loss[0]);
  assert_true(lm_history_last(hist, "acc") > 0.9);
  lm_history_free(hist);
  lm_array_free(x);
  lm_array_free(y);
  lm_session_clear();
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_conv_op),
      cmocka_unit_test(test_depthwise_op),
      cmocka_unit_test(test_threads_same_bits),
      cmocka_unit_test(test_op_shapes),
      cmocka_unit_test(test_keras_conv1d),
      cmocka_unit_test(test_keras_conv2d),
      cmocka_unit_test(test_keras_depthwise_conv2d),
      cmocka_unit_test(test_keras_separable_conv1d),
      cmocka_unit_test(test_keras_separable_conv2d),
      cmocka_unit_test(test_keras_param_counts),
      cmocka_unit_test(test_every_case_checked),
      cmocka_unit_test(test_names_and_counts),
      cmocka_unit_test(test_bad_input),
      cmocka_unit_test(test_fit_learns),
  };
  return cmocka_run_group_tests(tests, load_fixture, free_fixture);
}
