/* Numerical gradient checks of every op in the graph's op table (src/graph/graph.h).
 *
 * Each check builds a small graph, reduces the op's output to a scalar (an MSE loss
 * against a fixed random target, or the op's own scalar for loss and weighted_sum), runs
 * the plan's backward for the analytic gradient of every input that asks for one, and
 * compares it element by element with central differences taken in double through the
 * plan's forward. Inputs are drawn from a seeded generator of this file, away from the
 * kinks of relu/selu/max/min/mae/huber and from the probability clipping of the
 * crossentropies. Negative controls make sure the checker can fail, and the shape rules
 * are checked to refuse misfits with a message naming the shapes. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <lamina/layers.h>

#include "graph/graph.h"
#include "ops/activations.h"
#include "train/losses.h"

/* |analytic - numerical| <= REL_TOL * max(|analytic|, |numerical|) + ABS_TOL */
#define REL_TOL 2e-2
#define ABS_TOL 1e-3
#define DEFAULT_EPS 1e-3

#define MAX_VALS 64
#define MAX_FEEDS 16

/* ---- A small seeded generator (splitmix64) ---- */

typedef struct test_rng {
  uint64_t s;
} test_rng;

static uint64_t rng_next(test_rng *r) {
  uint64_t z = (r->s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

static double rng_uniform(test_rng *r, double lo, double hi) {
  return lo + (hi - lo) * (double)(rng_next(r) >> 11) * (1.0 / 9007199254740992.0);
}

static int64_t rng_int(test_rng *r, int64_t lo, int64_t hi) { /* [lo, hi] */
  return lo + (int64_t)(rng_next(r) % (uint64_t)(hi - lo + 1));
}

/* ---- The gradient checker ---- */

typedef struct gc {
  lm_graph *g;
  test_rng rng;
  lm_shape shapes[MAX_VALS]; /* concrete shapes of INPUT and TARGET values, by id */
  int feed_id[MAX_FEEDS];
  float *feed[MAX_FEEDS];
  int n_feeds;
  lm_plan *plan;
  int loss;      /* the scalar objective */
  uint64_t step; /* every forward runs at this step, so dropout keeps one mask */
  double eps;
} gc;

static void gc_init(gc *t, uint64_t seed) {
  memset(t, 0, sizeof *t);
  t->g = lm__graph_new();
  assert_non_null(t->g);
  t->rng.s = seed;
  t->loss = -1;
  t->step = 3;
  t->eps = DEFAULT_EPS;
}

static void gc_free(gc *t) {
  lm__plan_free(t->plan);
  lm__graph_free(t->g);
  for (int k = 0; k < t->n_feeds; k++) free(t->feed[k]);
  memset(t, 0, sizeof *t);
}

/* A fed value (INPUT or TARGET) of a concrete shape, zero-filled until a fill_* call. */
static int gc_value(gc *t, lm_value_kind kind, lm_shape s, bool grad) {
  assert_true(t->n_feeds < MAX_FEEDS);
  int id = lm__graph_input(t->g, kind, LM_FLOAT32, s);
  assert_true(id >= 0 && id < MAX_VALS);
  t->g->vals[id].requires_grad = grad;
  t->shapes[id] = s;
  int64_t n = lm_shape_size(s);
  t->feed_id[t->n_feeds] = id;
  t->feed[t->n_feeds] = calloc((size_t)(n > 0 ? n : 1), sizeof(float));
  assert_non_null(t->feed[t->n_feeds]);
  t->n_feeds++;
  return id;
}

static float *gc_data(gc *t, int id) {
  for (int k = 0; k < t->n_feeds; k++)
    if (t->feed_id[k] == id) return t->feed[k];
  fail_msg("value %d is not fed", id);
  return NULL;
}

static int64_t gc_size(gc *t, int id) { return lm_shape_size(t->g->vals[id].shape); }

static void fill_uniform(gc *t, int id, double lo, double hi) {
  float *x = gc_data(t, id);
  for (int64_t i = 0; i < gc_size(t, id); i++) x[i] = (float)rng_uniform(&t->rng, lo, hi);
}

/* |x| in [lo, hi] with a random sign: away from a kink at 0. */
static void fill_signed(gc *t, int id, double lo, double hi) {
  float *x = gc_data(t, id);
  for (int64_t i = 0; i < gc_size(t, id); i++) {
    double m = rng_uniform(&t->rng, lo, hi);
    x[i] = (float)(rng_next(&t->rng) & 1 ? m : -m);
  }
}

/* x = 0.1 k + offset with k in [kmin, kmax]: two such fills with offsets 0 and 0.05 never
 * come closer than 0.05, which keeps max/min/mae/huber away from their kinks. */
static void fill_grid(gc *t, int id, int kmin, int kmax, double offset) {
  float *x = gc_data(t, id);
  for (int64_t i = 0; i < gc_size(t, id); i++) x[i] = (float)(0.1 * (double)rng_int(&t->rng, kmin, kmax) + offset);
}

static void fill_values(gc *t, int id, const float *v, int64_t n) {
  assert_int_equal(n, gc_size(t, id));
  memcpy(gc_data(t, id), v, (size_t)n * sizeof *v);
}

/* An input whose gradient is checked, uniform in [lo, hi]. */
static int gc_input(gc *t, lm_shape s, double lo, double hi) {
  int id = gc_value(t, LM_VALUE_INPUT, s, true);
  fill_uniform(t, id, lo, hi);
  return id;
}

/* Reduces y to a scalar: MSE against a fixed random target in [-2, 2]. */
static int gc_mse(gc *t, int y) {
  int target = gc_value(t, LM_VALUE_TARGET, t->g->vals[y].shape, false);
  fill_uniform(t, target, -2, 2);
  int out[2];
  assert_int_equal(lm__graph_op(t->g, &lm__op_loss, (int[]){y, target}, 2,
                                &(lm_attrs){.i = {LM_LOSS_MSE, 0}}, out), 0);
  return out[0];
}

static int emit_ok(gc *t, const lm_op_def *def, const int *in, int n, const lm_attrs *a) {
  int y = lm__emit(t->g, def, in, n, a);
  if (y < 0) fail_msg("%s refused: %s", def->name, t->g->err.msg);
  return y;
}

static void gc_plan(gc *t, int loss, int training) {
  assert_true(t->g->n_vals <= MAX_VALS);
  assert_int_equal(t->g->vals[loss].shape.rank, 0);
  t->loss = loss;
  t->plan = lm__plan_new(t->g, t->shapes, training, loss);
  assert_non_null(t->plan);
  if (t->plan->err.code != LM_OK) fail_msg("plan: %s", t->plan->err.msg);
  t->plan->seed = 0x5EED5EEDull; /* dropout masks independent of the global seed */
  for (int k = 0; k < t->n_feeds; k++)
    memcpy(lm__f(t->plan, t->feed_id[k]), t->feed[k], (size_t)lm__n(t->plan, t->feed_id[k]) * sizeof(float));
}

static double gc_eval(gc *t) {
  t->plan->step = t->step;
  lm__plan_forward(t->plan);
  return lm__f(t->plan, t->loss)[0];
}

static bool grad_close(double a, double n) {
  return fabs(a - n) <= REL_TOL * fmax(fabs(a), fabs(n)) + ABS_TOL; /* false for NaN */
}

/* Number of elements where analytic and numerical gradients disagree; prints a few. */
static int compare_grads(const char *what, int id, const float *analytic, const double *numeric, int64_t n) {
  int bad = 0;
  for (int64_t i = 0; i < n; i++) {
    if (grad_close(analytic[i], numeric[i])) continue;
    if (bad < 4)
      print_message("  %s: d/d(value %d)[%lld]: analytic %.7g, numerical %.7g\n", what, id, (long long)i,
                    (double)analytic[i], numeric[i]);
    bad++;
  }
  return bad;
}

/* Builds the plan (unless built), runs forward and backward at t->step, then compares the
 * analytic gradient of every input that asked for one against central differences.
 * wrong_scale / wrong_index corrupt the analytic gradients before the comparison (the
 * negative controls): every gradient is scaled by wrong_scale, and element wrong_index
 * of the first checked input (if >= 0) is pushed out of tolerance. Returns the number
 * of mismatching elements. */
static int gc_run(gc *t, const char *what, int loss, int training, double wrong_scale, int64_t wrong_index) {
  if (!t->plan) gc_plan(t, loss, training);
  lm_plan *p = t->plan;
  double f0 = gc_eval(t);
  assert_true(isfinite(f0));
  lm__plan_backward(p);

  float *analytic[MAX_FEEDS] = {0};
  for (int k = 0; k < t->n_feeds; k++) {
    int id = t->feed_id[k];
    if (!t->g->vals[id].requires_grad) {
      assert_null(lm__g(p, id)); /* targets and class ids get no gradient */
      continue;
    }
    if (!lm__g(p, id)) fail_msg("%s: value %d asked for a gradient and got no buffer", what, id);
    int64_t n = lm__n(p, id);
    analytic[k] = malloc((size_t)n * sizeof(float));
    assert_non_null(analytic[k]);
    memcpy(analytic[k], lm__g(p, id), (size_t)n * sizeof(float));
  }
  /* backward zeroes before it accumulates: a second step gives the same gradients (backward
   * runs once per forward, since it reuses the bytes of values it is done with) */
  gc_eval(t);
  lm__plan_backward(p);
  for (int k = 0; k < t->n_feeds; k++)
    if (analytic[k])
      assert_memory_equal(analytic[k], lm__g(p, t->feed_id[k]), (size_t)lm__n(p, t->feed_id[k]) * sizeof(float));

  int bad = 0, first = 1;
  for (int k = 0; k < t->n_feeds; k++) {
    if (!analytic[k]) continue;
    int id = t->feed_id[k];
    int64_t n = lm__n(p, id);
    double *numeric = malloc((size_t)n * sizeof(double));
    assert_non_null(numeric);
    float *x = lm__f(p, id);
    double biggest = 0;
    for (int64_t i = 0; i < n; i++) {
      float orig = x[i];
      float xp = (float)(orig + t->eps), xm = (float)(orig - t->eps);
      x[i] = xp;
      double fp = gc_eval(t);
      x[i] = xm;
      double fm = gc_eval(t);
      x[i] = orig;
      numeric[i] = (fp - fm) / ((double)xp - (double)xm);
      biggest = fmax(biggest, fabs(numeric[i]));
    }
    /* a check against an all-zero derivative would prove nothing */
    if (!(biggest > 10 * ABS_TOL)) {
      for (int64_t i = 0; i < n; i++)
        print_message("  x[%lld] = %g, numerical %g\n", (long long)i, (double)x[i], numeric[i]);
      fail_msg("%s: the objective hardly depends on value %d", what, id);
    }
    for (int64_t i = 0; i < n; i++) analytic[k][i] = (float)(analytic[k][i] * wrong_scale);
    if (first && wrong_index >= 0) {
      assert_true(wrong_index < n);
      analytic[k][wrong_index] += 0.05f + 0.05f * fabsf(analytic[k][wrong_index]);
    }
    first = 0;
    bad += compare_grads(what, id, analytic[k], numeric, n);
    free(numeric);
    free(analytic[k]);
  }
  assert_true(gc_eval(t) == f0); /* the inputs are back, the forward is deterministic */
  return bad;
}

static void gc_check(gc *t, const char *what, int loss, int training) {
  int bad = gc_run(t, what, loss, training, 1.0, -1);
  if (bad) fail_msg("%s: %d gradient elements disagree", what, bad);
}

/* ---- Negative controls: the checker reports wrong gradients ---- */

/* y = x * x with a backward that forgets the factor 2. */
static lm_status bad_square_shape(const lm_attrs *a, const lm_shape *in, const lm_dtype *dt, int n,
                                  lm_shape *out, lm_dtype *odt, char *err, size_t len) {
  out[0] = in[0];
  odt[0] = LM_FLOAT32;
  return LM_OK;
}

static void bad_square_fwd(lm_plan *p, const lm_opnode *node) {
  const float *x = lm__f(p, node->in[0]);
  float *y = lm__f(p, node->out[0]);
  for (int64_t i = 0; i < lm__n(p, node->in[0]); i++) y[i] = x[i] * x[i];
}

static void bad_square_bwd(lm_plan *p, const lm_opnode *node) {
  const float *x = lm__f(p, node->in[0]), *dy = lm__g(p, node->out[0]);
  float *dx = lm__g(p, node->in[0]);
  if (!dx) return;
  for (int64_t i = 0; i < lm__n(p, node->in[0]); i++) dx[i] += dy[i] * x[i];
}

static const lm_op_def bad_square = {"bad_square", 1, bad_square_shape, bad_square_fwd, bad_square_bwd, 0, false, 0, 0};

static int dense_graph(gc *t) {
  int x = gc_input(t, LM_SHAPE(4, 3), -1, 1);
  int w = gc_input(t, LM_SHAPE(3, 5), -1, 1);
  int b = gc_input(t, LM_SHAPE(5), -1, 1);
  return gc_mse(t, emit_ok(t, &lm__op_dense, (int[]){x, w, b}, 3, NULL));
}

static void test_checker_rejects_scaled_gradient(void **state) {
  (void)state;
  gc t;
  gc_init(&t, 101);
  int loss = dense_graph(&t);
  int total = 12 + 15 + 5;
  int bad = gc_run(&t, "dense, analytic x 1.1 (expected to mismatch)", loss, 1, 1.1, -1);
  print_message("  negative control: %d of %d elements flagged with gradients scaled by 1.1\n", bad, total);
  assert_true(bad >= total / 2);
  /* and the same plan passes with the true gradients */
  assert_int_equal(gc_run(&t, "dense", loss, 1, 1.0, -1), 0);
  gc_free(&t);
}

static void test_checker_rejects_one_wrong_element(void **state) {
  (void)state;
  gc t;
  gc_init(&t, 102);
  int loss = dense_graph(&t);
  assert_int_equal(gc_run(&t, "dense, one element off (expected to mismatch)", loss, 1, 1.0, 7), 1);
  gc_free(&t);
}

static void test_checker_rejects_broken_op(void **state) {
  (void)state;
  gc t;
  gc_init(&t, 103);
  int x = gc_value(&t, LM_VALUE_INPUT, LM_SHAPE(4, 3), true);
  fill_signed(&t, x, 0.3, 1.5);
  int loss = gc_mse(&t, emit_ok(&t, &bad_square, &x, 1, NULL));
  int bad = gc_run(&t, "bad_square (expected to mismatch)", loss, 1, 1.0, -1);
  print_message("  negative control: %d of 12 elements flagged for an op missing a factor 2\n", bad);
  assert_true(bad >= 6);
  gc_free(&t);
}

/* ---- Dense ---- */

static void test_dense(void **state) {
  (void)state;
  { /* x, kernel and bias */
    gc t;
    gc_init(&t, 1);
    gc_check(&t, "dense(x, W, b)", dense_graph(&t), 1);
    gc_free(&t);
  }
  { /* no bias */
    gc t;
    gc_init(&t, 2);
    int x = gc_input(&t, LM_SHAPE(3, 4), -1, 1);
    int w = gc_input(&t, LM_SHAPE(4, 2), -1, 1);
    gc_check(&t, "dense(x, W)", gc_mse(&t, emit_ok(&t, &lm__op_dense, (int[]){x, w}, 2, NULL)), 1);
    gc_free(&t);
  }
  { /* rank-3 input: the kernel applies over the last axis */
    gc t;
    gc_init(&t, 3);
    int x = gc_input(&t, LM_SHAPE(2, 3, 4), -1, 1);
    int w = gc_input(&t, LM_SHAPE(4, 2), -1, 1);
    int b = gc_input(&t, LM_SHAPE(2), -1, 1);
    int y = emit_ok(&t, &lm__op_dense, (int[]){x, w, b}, 3, NULL);
    assert_int_equal(t.g->vals[y].shape.rank, 3);
    assert_int_equal(t.g->vals[y].shape.dim[2], 2);
    gc_check(&t, "dense(rank-3 x, W, b)", gc_mse(&t, y), 1);
    gc_free(&t);
  }
  { /* only the kernel asks for a gradient; x is a plain input */
    gc t;
    gc_init(&t, 4);
    int x = gc_value(&t, LM_VALUE_INPUT, LM_SHAPE(4, 3), false);
    fill_uniform(&t, x, -1, 1);
    int w = gc_input(&t, LM_SHAPE(3, 2), -1, 1);
    int b = gc_input(&t, LM_SHAPE(2), -1, 1);
    gc_check(&t, "dense(const x, W, b)", gc_mse(&t, emit_ok(&t, &lm__op_dense, (int[]){x, w, b}, 3, NULL)), 1);
    gc_free(&t);
  }
  { /* forward values: y = x W + b */
    gc t;
    gc_init(&t, 5);
    int x = gc_value(&t, LM_VALUE_INPUT, LM_SHAPE(2, 2), false);
    int w = gc_value(&t, LM_VALUE_INPUT, LM_SHAPE(2, 3), false);
    int b = gc_value(&t, LM_VALUE_INPUT, LM_SHAPE(3), false);
    fill_values(&t, x, (const float[]){1, 2, 3, 4}, 4);
    fill_values(&t, w, (const float[]){1, 0, -1, 2, 1, 0.5f}, 6);
    fill_values(&t, b, (const float[]){0.5f, -1, 0}, 3);
    int y = emit_ok(&t, &lm__op_dense, (int[]){x, w, b}, 3, NULL);
    gc_plan(&t, gc_mse(&t, y), 1);
    gc_eval(&t);
    const float want[6] = {5.5f, 1, 0, 11.5f, 3, -1};
    assert_memory_equal(lm__f(t.plan, y), want, sizeof want);
    gc_free(&t);
  }
}

/* The vectorized exp, sigmoid and tanh at the edges: NaN stays NaN (without converting NaN
 * to an integer, which UBSan reports), infinities saturate. */
static void test_activation_edges(void **state) {
  (void)state;
  const float x[6] = {NAN, INFINITY, -INFINITY, 1e30f, -1e30f, 0.0f};
  float y[6];
  lm__act_forward(LM_SIGMOID, x, y, 1, 6);
  assert_true(isnan(y[0]));
  assert_true(y[1] == 1.0f && y[3] == 1.0f && y[5] == 0.5f);
  assert_true(y[2] >= 0.0f && y[2] < 1e-30f && y[4] >= 0.0f && y[4] < 1e-30f);
  lm__act_forward(LM_TANH, x, y, 1, 6);
  assert_true(isnan(y[0]));
  assert_true(y[1] == 1.0f && y[2] == -1.0f && y[3] == 1.0f && y[4] == -1.0f && y[5] == 0.0f);
  lm__act_forward(LM_SOFTMAX, (const float[]){NAN, 1.0f}, y, 1, 2);
  assert_true(isnan(y[0]) && isnan(y[1]));
  lm__act_forward(LM_SOFTMAX, (const float[]){1e30f, -1e30f, 0.0f}, y, 1, 3);
  assert_true(y[0] == 1.0f && y[1] == 0.0f && y[2] == 0.0f);
}

/* ---- Dense with a fused activation (attrs i7) ---- */

/* One dense op with act fused (fused = 1) or a dense op and an activation op; returns the
 * loss and the ids of x, W and the output. */
static int dense_act_graph(gc *t, lm_activation act, int fused, int ids[4]) {
  ids[0] = gc_input(t, LM_SHAPE(3, 4), -1, 1);
  ids[1] = gc_input(t, LM_SHAPE(4, 5), -1, 1);
  ids[2] = gc_input(t, LM_SHAPE(5), -1, 1);
  lm_attrs a = {.i = {[7] = fused ? act : 0}};
  ids[3] = emit_ok(t, &lm__op_dense, ids, 3, &a);
  if (!fused) ids[3] = emit_ok(t, &lm__op_activation, &ids[3], 1, &(lm_attrs){.i = {act}});
  return gc_mse(t, ids[3]);
}

static void test_dense_fused_activation(void **state) {
  (void)state;
  const lm_activation acts[] = {LM_RELU, LM_SIGMOID, LM_TANH, LM_SOFTMAX, LM_ELU, LM_SELU};
  for (size_t i = 0; i < sizeof acts / sizeof *acts; i++) {
    char what[64];
    snprintf(what, sizeof what, "dense(x, W, b) fused with %s", lm_activation_name(acts[i]));
    assert_true(lm__act_fusable(acts[i]));
    gc t, u;
    int ti[4], ui[4];
    gc_init(&t, 40 + i);
    gc_check(&t, what, dense_act_graph(&t, acts[i], 1, ti), 1);
    /* The same numbers as the unfused pair, bit for bit: outputs and every gradient. */
    gc_init(&u, 40 + i);
    gc_plan(&u, dense_act_graph(&u, acts[i], 0, ui), 1);
    gc_eval(&t), gc_eval(&u); /* t's plan is gc_check's */
    lm__plan_backward(t.plan), lm__plan_backward(u.plan);
    assert_memory_equal(lm__f(t.plan, ti[3]), lm__f(u.plan, ui[3]), 15 * sizeof(float));
    for (int k = 0; k < 3; k++)
      assert_memory_equal(lm__g(t.plan, ti[k]), lm__g(u.plan, ui[k]), (size_t)gc_size(&t, ti[k]) * sizeof(float));
    gc_free(&t), gc_free(&u);
  }
  assert_false(lm__act_fusable(LM_GELU) || lm__act_fusable(LM_SWISH) || lm__act_fusable(LM_SOFTPLUS));
}

/* ---- Activations ---- */

static void test_activations(void **state) {
  (void)state;
  for (int act = LM_LINEAR; act <= LM_SWISH; act++) {
    char what[64];
    snprintf(what, sizeof what, "activation %s", lm_activation_name((lm_activation)act));
    gc t;
    gc_init(&t, 10 + (uint64_t)act);
    int x = gc_value(&t, LM_VALUE_INPUT, LM_SHAPE(4, 6), true);
    fill_signed(&t, x, 0.1, 2.5); /* relu, elu and selu have a kink at 0 */
    int y = emit_ok(&t, &lm__op_activation, &x, 1, &(lm_attrs){.i = {act}});
    gc_check(&t, what, gc_mse(&t, y), 1);
    gc_free(&t);
  }
  { /* softmax of a rank-3 input normalizes the last axis */
    gc t;
    gc_init(&t, 30);
    int x = gc_input(&t, LM_SHAPE(2, 3, 4), -2, 2);
    int y = emit_ok(&t, &lm__op_activation, &x, 1, &(lm_attrs){.i = {LM_SOFTMAX}});
    gc_check(&t, "activation softmax (rank 3)", gc_mse(&t, y), 1);
    const float *py = lm__f(t.plan, y);
    for (int r = 0; r < 6; r++) {
      double s = 0;
      for (int c = 0; c < 4; c++) s += py[r * 4 + c];
      assert_true(fabs(s - 1) < 1e-5);
    }
    gc_free(&t);
  }
}

/* ---- Binary ops with broadcasting ---- */

static const char *const BINARY_NAMES[] = {"add", "subtract", "multiply", "maximum", "minimum"};

/* A reference for broadcasting, written from numpy's rule rather than from the op: output
 * element idx reads each operand at idx aligned to the last axis, with size-1 dims at 0.
 * Fills z (if not NULL); for maximum/minimum, counts where a and where b is chosen. */
static void ref_binary(int kind, const float *a, lm_shape sa, const float *b, lm_shape sb, lm_shape so, float *z,
                       int *a_wins, int *b_wins) {
  *a_wins = *b_wins = 0;
  int64_t idx[LM_MAX_RANK];
  for (int64_t flat = 0; flat < lm_shape_size(so); flat++) {
    int64_t rest = flat;
    for (int d = so.rank - 1; d >= 0; d--) {
      idx[d] = rest % so.dim[d];
      rest /= so.dim[d];
    }
    int64_t ia = 0, ib = 0;
    for (int d = 0; d < sa.rank; d++) ia = ia * sa.dim[d] + (sa.dim[d] == 1 ? 0 : idx[so.rank - sa.rank + d]);
    for (int d = 0; d < sb.rank; d++) ib = ib * sb.dim[d] + (sb.dim[d] == 1 ? 0 : idx[so.rank - sb.rank + d]);
    float x = a[ia], y = b[ib], r;
    switch (kind) {
    case LM_BINARY_ADD: r = x + y; break;
    case LM_BINARY_SUBTRACT: r = x - y; break;
    case LM_BINARY_MULTIPLY: r = x * y; break;
    case LM_BINARY_MAXIMUM: r = x > y ? x : y; break;
    default: r = x < y ? x : y; break;
    }
    if (r == x) ++*a_wins;
    if (r == y) ++*b_wins;
    if (z) z[flat] = r;
  }
}

static void test_binary(void **state) {
  (void)state;
  const struct {
    lm_shape a, b;
  } pairs[] = {
      {LM_SHAPE(4, 3), LM_SHAPE(4, 3)},    {LM_SHAPE(4, 3), LM_SHAPE(3)},       {LM_SHAPE(3), LM_SHAPE(4, 3)},
      {LM_SHAPE(4, 1), LM_SHAPE(1, 3)},    {LM_SHAPE(4, 3), LM_SHAPE(4, 1)},    {LM_SHAPE(4, 3), LM_SHAPE(1)},
      {LM_SHAPE(2, 3, 4), LM_SHAPE(3, 1)}, {LM_SHAPE(2, 1, 4), LM_SHAPE(2, 3, 1)},
  };
  for (int kind = LM_BINARY_ADD; kind <= LM_BINARY_MINIMUM; kind++) {
    for (size_t c = 0; c < sizeof pairs / sizeof pairs[0]; c++) {
      char what[128], b1[64], b2[64];
      snprintf(what, sizeof what, "binary %s %s with %s", BINARY_NAMES[kind],
               lm_shape_format(pairs[c].a, b1, sizeof b1), lm_shape_format(pairs[c].b, b2, sizeof b2));
      gc t;
      gc_init(&t, 100 * (uint64_t)kind + c);
      int a = gc_value(&t, LM_VALUE_INPUT, pairs[c].a, true);
      int b = gc_value(&t, LM_VALUE_INPUT, pairs[c].b, true);
      int y = emit_ok(&t, &lm__op_binary, (int[]){a, b}, 2, &(lm_attrs){.i = {kind}});
      lm_shape so = t.g->vals[y].shape;
      int a_wins, b_wins, tries = 0;
      do { /* a - b never within 0.05 of 0; for max/min, redrawn until each side wins a quarter */
        assert_true(++tries < 100);
        fill_grid(&t, a, -15, 14, 0.05);
        fill_grid(&t, b, -6, 6, 0.0);
        ref_binary(kind, gc_data(&t, a), pairs[c].a, gc_data(&t, b), pairs[c].b, so, NULL, &a_wins, &b_wins);
      } while (kind >= LM_BINARY_MAXIMUM && (a_wins < lm_shape_size(so) / 4 || b_wins < lm_shape_size(so) / 4));
      gc_check(&t, what, gc_mse(&t, y), 1);
      /* forward values against the reference */
      float *want = malloc((size_t)lm_shape_size(so) * sizeof *want);
      assert_non_null(want);
      ref_binary(kind, gc_data(&t, a), pairs[c].a, gc_data(&t, b), pairs[c].b, so, want, &a_wins, &b_wins);
      assert_memory_equal(lm__f(t.plan, y), want, (size_t)lm_shape_size(so) * sizeof *want);
      free(want);
      gc_free(&t);
    }
  }
  { /* forward values of a broadcast: (2,1) - (1,3) */
    gc t;
    gc_init(&t, 7);
    int a = gc_value(&t, LM_VALUE_INPUT, LM_SHAPE(2, 1), false);
    int b = gc_value(&t, LM_VALUE_INPUT, LM_SHAPE(1, 3), false);
    fill_values(&t, a, (const float[]){10, 20}, 2);
    fill_values(&t, b, (const float[]){1, 2, 3}, 3);
    int y = emit_ok(&t, &lm__op_binary, (int[]){a, b}, 2, &(lm_attrs){.i = {LM_BINARY_SUBTRACT}});
    gc_plan(&t, gc_mse(&t, y), 1);
    gc_eval(&t);
    const float want[6] = {9, 8, 7, 19, 18, 17};
    assert_memory_equal(lm__f(t.plan, y), want, sizeof want);
    gc_free(&t);
  }
  { /* only the broadcast operand asks for a gradient */
    gc t;
    gc_init(&t, 8);
    int a = gc_value(&t, LM_VALUE_INPUT, LM_SHAPE(4, 3), false);
    fill_uniform(&t, a, -1, 1);
    int b = gc_input(&t, LM_SHAPE(3), -1, 1);
    int y = emit_ok(&t, &lm__op_binary, (int[]){a, b}, 2, &(lm_attrs){.i = {LM_BINARY_MULTIPLY}});
    gc_check(&t, "binary multiply, gradient of b only", gc_mse(&t, y), 1);
    gc_free(&t);
  }
  { /* one value on both sides: the two gradients accumulate into one buffer */
    static const int kinds[] = {LM_BINARY_ADD, LM_BINARY_MULTIPLY, LM_BINARY_MAXIMUM, LM_BINARY_MINIMUM};
    for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
      char what[64];
      snprintf(what, sizeof what, "binary %s(x, x)", BINARY_NAMES[kinds[k]]);
      gc t;
      gc_init(&t, 9 + k);
      int x = gc_input(&t, LM_SHAPE(4, 3), -1.5, 1.5);
      int y = emit_ok(&t, &lm__op_binary, (int[]){x, x}, 2, &(lm_attrs){.i = {kinds[k]}});
      gc_check(&t, what, gc_mse(&t, y), 1);
      gc_free(&t);
    }
  }
}

/* ---- Average of n inputs ---- */

static void test_mean_n(void **state) {
  (void)state;
  {
    gc t;
    gc_init(&t, 40);
    int in[3];
    for (int k = 0; k < 3; k++) in[k] = gc_input(&t, LM_SHAPE(4, 3), -2, 2);
    gc_check(&t, "average of 3", gc_mse(&t, emit_ok(&t, &lm__op_mean_n, in, 3, NULL)), 1);
    gc_free(&t);
  }
  { /* rank 3, the middle input without a gradient */
    gc t;
    gc_init(&t, 41);
    int in[3];
    in[0] = gc_input(&t, LM_SHAPE(2, 3, 2), -2, 2);
    in[1] = gc_value(&t, LM_VALUE_INPUT, LM_SHAPE(2, 3, 2), false);
    fill_uniform(&t, in[1], -2, 2);
    in[2] = gc_input(&t, LM_SHAPE(2, 3, 2), -2, 2);
    gc_check(&t, "average of 3 (rank 3, one constant)", gc_mse(&t, emit_ok(&t, &lm__op_mean_n, in, 3, NULL)), 1);
    gc_free(&t);
  }
}

/* ---- Concatenate ---- */

static void concat_case(uint64_t seed, const char *what, int axis, const lm_shape *shapes, const bool *grad, int n) {
  gc t;
  gc_init(&t, seed);
  int in[4];
  for (int k = 0; k < n; k++) {
    in[k] = gc_value(&t, LM_VALUE_INPUT, shapes[k], grad[k]);
    fill_uniform(&t, in[k], -2, 2);
  }
  int y = emit_ok(&t, &lm__op_concat, in, n, &(lm_attrs){.i = {axis}});
  lm_shape ys = t.g->vals[y].shape;
  int ax = axis < 0 ? ys.rank + axis : axis;
  int64_t total = 0;
  for (int k = 0; k < n; k++) total += shapes[k].dim[ax];
  assert_int_equal(ys.dim[ax], total);
  gc_check(&t, what, gc_mse(&t, y), 1);

  /* forward values: output element (o, at + j, i) is input k's (o, j, i) */
  int64_t outer = 1, inner = 1;
  for (int d = 0; d < ax; d++) outer *= ys.dim[d];
  for (int d = ax + 1; d < ys.rank; d++) inner *= ys.dim[d];
  const float *py = lm__f(t.plan, y);
  int64_t at = 0;
  for (int k = 0; k < n; k++) {
    const float *px = gc_data(&t, in[k]);
    int64_t len = shapes[k].dim[ax];
    for (int64_t o = 0; o < outer; o++)
      for (int64_t j = 0; j < len; j++)
        for (int64_t i = 0; i < inner; i++)
          assert_true(py[(o * ys.dim[ax] + at + j) * inner + i] == px[(o * len + j) * inner + i]);
    at += len;
  }
  gc_free(&t);
}

static void test_concat(void **state) {
  (void)state;
  const bool all[4] = {true, true, true, true};
  concat_case(50, "concat axis 1 (rank 3)", 1, (const lm_shape[]){LM_SHAPE(2, 3, 4), LM_SHAPE(2, 2, 4)}, all, 2);
  concat_case(51, "concat axis -1 (rank 3)", -1, (const lm_shape[]){LM_SHAPE(2, 3, 4), LM_SHAPE(2, 3, 2)}, all, 2);
  concat_case(52, "concat axis 2 (rank 3)", 2, (const lm_shape[]){LM_SHAPE(2, 3, 1), LM_SHAPE(2, 3, 2)}, all, 2);
  concat_case(53, "concat of 3, axis 1 (rank 3)", 1,
              (const lm_shape[]){LM_SHAPE(2, 1, 3), LM_SHAPE(2, 3, 3), LM_SHAPE(2, 2, 3)}, all, 3);
  concat_case(54, "concat of 3, axis -1 (rank 3)", -1,
              (const lm_shape[]){LM_SHAPE(2, 2, 1), LM_SHAPE(2, 2, 3), LM_SHAPE(2, 2, 2)}, all, 3);
  concat_case(55, "concat of 3, axis 1 (rank 2, middle constant)", 1,
              (const lm_shape[]){LM_SHAPE(3, 2), LM_SHAPE(3, 4), LM_SHAPE(3, 1)}, (const bool[]){true, false, true}, 3);
}

/* ---- Reshape ---- */

static void reshape_case(uint64_t seed, const char *what, lm_shape in_shape, const lm_attrs *a, lm_shape want) {
  gc t;
  gc_init(&t, seed);
  int x = gc_input(&t, in_shape, -2, 2);
  int y = emit_ok(&t, &lm__op_reshape, &x, 1, a);
  assert_true(lm__shape_equal(t.g->vals[y].shape, want));
  gc_check(&t, what, gc_mse(&t, y), 1);
  assert_memory_equal(lm__f(t.plan, y), gc_data(&t, x), (size_t)lm_shape_size(in_shape) * sizeof(float));
  gc_free(&t);
}

static void test_reshape(void **state) {
  (void)state;
  reshape_case(60, "reshape (2,3,4) -> (4,-1)", LM_SHAPE(2, 3, 4), &(lm_attrs){.i = {2, 4, -1}}, LM_SHAPE(2, 4, 3));
  reshape_case(61, "reshape (2,12) -> (3,-1,2)", LM_SHAPE(2, 12), &(lm_attrs){.i = {3, 3, -1, 2}},
               LM_SHAPE(2, 3, 2, 2));
  reshape_case(62, "reshape (3,2,2) -> (4,)", LM_SHAPE(3, 2, 2), &(lm_attrs){.i = {1, 4}}, LM_SHAPE(3, 4));
  reshape_case(63, "reshape (2,6) -> (-1,)", LM_SHAPE(2, 6), &(lm_attrs){.i = {1, -1}}, LM_SHAPE(2, 6));
}

/* ---- Dropout ---- */

static void test_dropout_training(void **state) {
  (void)state;
  gc t;
  gc_init(&t, 70);
  t.step = 7;
  int x = gc_value(&t, LM_VALUE_INPUT, LM_SHAPE(4, 6), true);
  fill_signed(&t, x, 0.2, 2);
  int outs[2];
  assert_int_equal(
      lm__graph_op(t.g, &lm__op_dropout, &x, 1, &(lm_attrs){.i = {1234}, .f = {0.5f}}, outs), 0);
  int y = outs[0], mask = outs[1];
  gc_check(&t, "dropout 0.5 (training, one mask)", gc_mse(&t, y), 1);
  assert_null(lm__g(t.plan, mask)); /* the mask carries no gradient */

  const float *px = lm__f(t.plan, x), *py = lm__f(t.plan, y), *pm = lm__f(t.plan, mask), *dx = lm__g(t.plan, x);
  int dropped = 0, kept = 0;
  for (int i = 0; i < 24; i++) {
    assert_true(pm[i] == 0.0f || pm[i] == 2.0f); /* kept values scale by 1 / (1 - rate) */
    assert_true(py[i] == px[i] * pm[i]);
    if (pm[i] == 0) {
      dropped++;
      assert_true(dx[i] == 0.0f); /* the analytic gradient left by the check */
    } else kept++;
  }
  assert_true(dropped > 0 && kept > 0);

  /* the mask depends on the step: this is why every forward of the check runs at one step */
  float first[24];
  memcpy(first, pm, sizeof first);
  t.step = 8;
  gc_eval(&t);
  assert_true(memcmp(first, lm__f(t.plan, mask), sizeof first) != 0);
  t.step = 7;
  gc_eval(&t);
  assert_memory_equal(first, lm__f(t.plan, mask), sizeof first);
  gc_free(&t);

  /* rate 0 in training is the identity */
  gc_init(&t, 71);
  x = gc_input(&t, LM_SHAPE(3, 4), -2, 2);
  assert_int_equal(lm__graph_op(t.g, &lm__op_dropout, &x, 1, &(lm_attrs){.i = {5}, .f = {0.0f}}, outs), 0);
  gc_check(&t, "dropout 0 (training)", gc_mse(&t, outs[0]), 1);
  assert_memory_equal(lm__f(t.plan, outs[0]), gc_data(&t, x), 12 * sizeof(float));
  gc_free(&t);
}

static void test_dropout_inference(void **state) {
  (void)state;
  gc t;
  gc_init(&t, 72);
  int x = gc_input(&t, LM_SHAPE(4, 6), -2, 2);
  int outs[2];
  assert_int_equal(
      lm__graph_op(t.g, &lm__op_dropout, &x, 1, &(lm_attrs){.i = {1234}, .f = {0.5f}}, outs), 0);
  gc_check(&t, "dropout 0.5 (inference)", gc_mse(&t, outs[0]), 0);
  for (uint64_t step = 0; step < 3; step++) {
    t.step = step;
    gc_eval(&t);
    assert_memory_equal(lm__f(t.plan, outs[0]), gc_data(&t, x), 24 * sizeof(float));
  }
  gc_free(&t);
}

/* ---- Losses ---- */

typedef enum target_fill {
  T_UNIFORM,    /* uniform in [-1, 1] */
  T_GRID,       /* 0.1 k: with a pred on the 0.05 grid, |pred - target| >= 0.05 */
  T_PROB,       /* uniform in [0, 1] */
  T_BINARY,     /* 0 or 1 */
  T_ONE_HOT,    /* one-hot rows */
  T_SOFT,       /* rows of a random distribution */
  T_CLASS_IDS,  /* class ids as floats */
  T_BAD_IDS     /* class ids, some out of range (rows with zero loss and gradient) */
} target_fill;

typedef enum pred_fill {
  P_UNIFORM, /* [-2, 2] */
  P_GRID,    /* 0.1 k + 0.05 in [-2.45, 2.45] */
  P_PROB,    /* [0.1, 0.9] */
  P_POSITIVE /* [0.2, 1], normalized by the loss */
} pred_fill;

static void loss_case(uint64_t seed, lm_loss_kind kind, int logits, float delta, lm_shape ps, lm_shape ts,
                      pred_fill pf, target_fill tf) {
  char what[160], b1[64], b2[64];
  snprintf(what, sizeof what, "loss %s%s (delta %g) pred %s target %s", lm__loss_name(kind),
           logits ? " from logits" : "", (double)delta, lm_shape_format(ps, b1, sizeof b1),
           lm_shape_format(ts, b2, sizeof b2));
  gc t;
  gc_init(&t, seed);
  int pred = gc_value(&t, LM_VALUE_INPUT, ps, true);
  int target = gc_value(&t, LM_VALUE_TARGET, ts, false);
  switch (pf) {
  case P_UNIFORM: fill_uniform(&t, pred, -2, 2); break;
  case P_GRID: fill_grid(&t, pred, -25, 24, 0.05); break;
  case P_PROB: fill_uniform(&t, pred, 0.1, 0.9); break;
  case P_POSITIVE: fill_uniform(&t, pred, 0.2, 1); break;
  }
  int64_t rows = ps.dim[0], cols = lm_shape_size(ps) / rows;
  float *y = gc_data(&t, target);
  switch (tf) {
  case T_UNIFORM: fill_uniform(&t, target, -1, 1); break;
  case T_GRID: fill_grid(&t, target, -20, 20, 0.0); break;
  case T_PROB: fill_uniform(&t, target, 0, 1); break;
  case T_BINARY:
    for (int64_t i = 0; i < gc_size(&t, target); i++) y[i] = (float)(rng_next(&t.rng) & 1);
    break;
  case T_ONE_HOT:
    for (int64_t r = 0; r < rows; r++) y[r * cols + rng_int(&t.rng, 0, cols - 1)] = 1;
    break;
  case T_SOFT:
    fill_uniform(&t, target, 0.05, 1);
    for (int64_t r = 0; r < rows; r++) {
      double s = 0;
      for (int64_t j = 0; j < cols; j++) s += y[r * cols + j];
      for (int64_t j = 0; j < cols; j++) y[r * cols + j] = (float)(y[r * cols + j] / s);
    }
    break;
  case T_CLASS_IDS:
    for (int64_t r = 0; r < rows; r++) y[r] = (float)(r % cols); /* every class, in order */
    break;
  case T_BAD_IDS:
    for (int64_t r = 0; r < rows; r++) y[r] = r % 2 ? (r % 4 == 1 ? (float)cols : -1.0f) : (float)(r % cols);
    break;
  }
  int out[2];
  assert_int_equal(lm__graph_op(t.g, &lm__op_loss, (int[]){pred, target}, 2,
                                &(lm_attrs){.i = {kind, logits}, .f = {delta}}, out),
                   0);
  gc_check(&t, what, out[0], 1);
  assert_null(lm__g(t.plan, out[1])); /* the saved derivative carries no gradient */
  gc_free(&t);
}

static void test_losses(void **state) {
  (void)state;
  const lm_shape p43 = LM_SHAPE(4, 3);
  loss_case(80, LM_LOSS_MSE, 0, 0, p43, p43, P_UNIFORM, T_UNIFORM);
  loss_case(81, LM_LOSS_MSE, 0, 0, LM_SHAPE(2, 3, 2), LM_SHAPE(2, 3, 2), P_UNIFORM, T_UNIFORM);
  loss_case(82, LM_LOSS_MAE, 0, 0, p43, p43, P_GRID, T_GRID);
  loss_case(83, LM_LOSS_HUBER, 0, 0, p43, p43, P_GRID, T_GRID); /* delta 0 means Keras's 1.0 */
  loss_case(84, LM_LOSS_HUBER, 0, 1.0f, LM_SHAPE(6, 4), LM_SHAPE(6, 4), P_GRID, T_GRID);
  loss_case(85, LM_LOSS_HUBER, 0, 0.5f, LM_SHAPE(6, 4), LM_SHAPE(6, 4), P_GRID, T_GRID);
  loss_case(86, LM_LOSS_BINARY_CE, 0, 0, p43, p43, P_PROB, T_PROB);
  loss_case(87, LM_LOSS_BINARY_CE, 0, 0, LM_SHAPE(5, 1), LM_SHAPE(5, 1), P_PROB, T_BINARY);
  loss_case(88, LM_LOSS_BINARY_CE, 1, 0, p43, p43, P_UNIFORM, T_PROB);
  loss_case(89, LM_LOSS_BINARY_CE, 1, 0, LM_SHAPE(5, 1), LM_SHAPE(5, 1), P_UNIFORM, T_BINARY);
  loss_case(90, LM_LOSS_CATEGORICAL_CE, 0, 0, p43, p43, P_POSITIVE, T_ONE_HOT);
  loss_case(91, LM_LOSS_CATEGORICAL_CE, 0, 0, p43, p43, P_POSITIVE, T_SOFT);
  loss_case(92, LM_LOSS_CATEGORICAL_CE, 1, 0, p43, p43, P_UNIFORM, T_ONE_HOT);
  loss_case(93, LM_LOSS_CATEGORICAL_CE, 1, 0, p43, p43, P_UNIFORM, T_SOFT);
  loss_case(94, LM_LOSS_SPARSE_CATEGORICAL_CE, 0, 0, p43, LM_SHAPE(4), P_POSITIVE, T_CLASS_IDS);
  loss_case(95, LM_LOSS_SPARSE_CATEGORICAL_CE, 0, 0, p43, LM_SHAPE(4, 1), P_POSITIVE, T_CLASS_IDS);
  loss_case(96, LM_LOSS_SPARSE_CATEGORICAL_CE, 1, 0, p43, LM_SHAPE(4), P_UNIFORM, T_CLASS_IDS);
  loss_case(97, LM_LOSS_SPARSE_CATEGORICAL_CE, 1, 0, p43, LM_SHAPE(4, 1), P_UNIFORM, T_CLASS_IDS);
  loss_case(98, LM_LOSS_SPARSE_CATEGORICAL_CE, 0, 0, p43, LM_SHAPE(4), P_POSITIVE, T_BAD_IDS);
  loss_case(99, LM_LOSS_SPARSE_CATEGORICAL_CE, 1, 0, p43, LM_SHAPE(4), P_UNIFORM, T_BAD_IDS);
}

/* ---- Weighted sum and identity ---- */

static const float WSUM3[3] = {0.5f, 2.0f, -1.5f};
static const float WSUM2[2] = {2.5f, 0.4f};

static void test_weighted_sum(void **state) {
  (void)state;
  { /* of plain scalars: the gradient is the weights */
    gc t;
    gc_init(&t, 110);
    int in[3];
    for (int k = 0; k < 3; k++) in[k] = gc_input(&t, (lm_shape){.rank = 0}, -1, 1);
    int y = emit_ok(&t, &lm__op_weighted_sum, in, 3, &(lm_attrs){.p = WSUM3});
    gc_check(&t, "weighted_sum of 3 scalars", y, 1);
    for (int k = 0; k < 3; k++) assert_true(lm__g(t.plan, in[k])[0] == WSUM3[k]);
    gc_free(&t);
  }
  { /* of two losses, as fit builds it: each loss's backward scales by its upstream gradient */
    gc t;
    gc_init(&t, 111);
    int a = gc_input(&t, LM_SHAPE(4, 3), -2, 2);
    int b = gc_input(&t, LM_SHAPE(4, 2), -2, 2);
    int ta = gc_value(&t, LM_VALUE_TARGET, LM_SHAPE(4, 3), false);
    int tb = gc_value(&t, LM_VALUE_TARGET, LM_SHAPE(4, 2), false);
    fill_uniform(&t, ta, -1, 1);
    fill_uniform(&t, tb, 0, 1);
    int la[2], lb[2];
    assert_int_equal(lm__graph_op(t.g, &lm__op_loss, (int[]){a, ta}, 2, &(lm_attrs){.i = {LM_LOSS_MSE, 0}}, la), 0);
    assert_int_equal(
        lm__graph_op(t.g, &lm__op_loss, (int[]){b, tb}, 2, &(lm_attrs){.i = {LM_LOSS_BINARY_CE, 1}}, lb), 0);
    int y = emit_ok(&t, &lm__op_weighted_sum, (int[]){la[0], lb[0]}, 2, &(lm_attrs){.p = WSUM2});
    gc_check(&t, "weighted_sum of mse and binary_crossentropy", y, 1);
    gc_free(&t);
  }
}

static void test_identity(void **state) {
  (void)state;
  gc t;
  gc_init(&t, 120);
  int x = gc_input(&t, LM_SHAPE(4, 3), -2, 2);
  int y = emit_ok(&t, &lm__op_identity, &x, 1, NULL);
  gc_check(&t, "identity", gc_mse(&t, y), 1);
  assert_memory_equal(lm__f(t.plan, y), gc_data(&t, x), 12 * sizeof(float));
  gc_free(&t);
}

/* ---- A chain of ops, as a small model emits it ---- */

static const float WSUM1[1] = {1.0f};

static void test_chain(void **state) {
  (void)state;
  gc t;
  gc_init(&t, 130);
  t.step = 11;
  int x = gc_input(&t, LM_SHAPE(4, 5), -1, 1);
  int w1 = gc_input(&t, LM_SHAPE(5, 6), -0.8, 0.8);
  int b1 = gc_input(&t, LM_SHAPE(6), -0.3, 0.3);
  int w2 = gc_input(&t, LM_SHAPE(6, 3), -0.8, 0.8);
  int b2 = gc_input(&t, LM_SHAPE(3), -0.3, 0.3);
  int h = emit_ok(&t, &lm__op_dense, (int[]){x, w1, b1}, 3, NULL);
  h = emit_ok(&t, &lm__op_activation, &h, 1, &(lm_attrs){.i = {LM_TANH}});
  int d[2];
  assert_int_equal(lm__graph_op(t.g, &lm__op_dropout, &h, 1, &(lm_attrs){.i = {99}, .f = {0.3f}}, d), 0);
  int skip = emit_ok(&t, &lm__op_reshape, &x, 1, &(lm_attrs){.i = {1, -1}});
  int cat = emit_ok(&t, &lm__op_concat, (int[]){d[0], skip}, 2, &(lm_attrs){.i = {-1}});
  int w2b = gc_input(&t, LM_SHAPE(11, 3), -0.8, 0.8);
  int z = emit_ok(&t, &lm__op_dense, (int[]){cat, w2b, b2}, 3, NULL);
  int z2 = emit_ok(&t, &lm__op_dense, (int[]){h, w2}, 2, NULL); /* h used twice */
  z = emit_ok(&t, &lm__op_binary, (int[]){z, z2}, 2, &(lm_attrs){.i = {LM_BINARY_ADD}});
  int target = gc_value(&t, LM_VALUE_TARGET, LM_SHAPE(4), false);
  fill_values(&t, target, (const float[]){0, 2, 1, 2}, 4);
  int l[2];
  assert_int_equal(lm__graph_op(t.g, &lm__op_loss, (int[]){z, target}, 2,
                                &(lm_attrs){.i = {LM_LOSS_SPARSE_CATEGORICAL_CE, 1}}, l),
                   0);
  int total = emit_ok(&t, &lm__op_weighted_sum, l, 1, &(lm_attrs){.p = WSUM1});
  gc_check(&t, "dense-tanh-dropout-concat-dense-add-sparse_ce chain", total, 1);
  gc_free(&t);
}

/* Values consumed at several depths and twice by one op: the plan shares the buffers of
 * intermediate gradients, and each must start at zero and live until its producer's
 * backward. */
static void test_chain_skips(void **state) {
  (void)state;
  gc t;
  gc_init(&t, 131);
  int x = gc_input(&t, LM_SHAPE(3, 4), -1, 1);
  int w1 = gc_input(&t, LM_SHAPE(4, 4), -0.8, 0.8);
  int w2 = gc_input(&t, LM_SHAPE(4, 4), -0.8, 0.8);
  int a = emit_ok(&t, &lm__op_dense, (int[]){x, w1}, 2, NULL);
  int b = emit_ok(&t, &lm__op_activation, &a, 1, &(lm_attrs){.i = {LM_SIGMOID}});
  int c = emit_ok(&t, &lm__op_dense, (int[]){b, w2}, 2, NULL);
  int d = emit_ok(&t, &lm__op_binary, (int[]){c, a}, 2, &(lm_attrs){.i = {LM_BINARY_MULTIPLY}});
  int sq = emit_ok(&t, &lm__op_binary, (int[]){b, b}, 2, &(lm_attrs){.i = {LM_BINARY_MULTIPLY}});
  int e = emit_ok(&t, &lm__op_concat, (int[]){d, sq, a}, 3, &(lm_attrs){.i = {1}});
  int f = emit_ok(&t, &lm__op_reshape, &e, 1, &(lm_attrs){.i = {2, 2, -1}});
  int m = emit_ok(&t, &lm__op_mean_n, (int[]){f, f, emit_ok(&t, &lm__op_identity, &f, 1, NULL)}, 3, NULL);
  int s = emit_ok(&t, &lm__op_activation, &m, 1, &(lm_attrs){.i = {LM_SOFTMAX}});
  int target = gc_value(&t, LM_VALUE_TARGET, t.g->vals[s].shape, false);
  fill_uniform(&t, target, 0.05, 1);
  int l[2];
  assert_int_equal(
      lm__graph_op(t.g, &lm__op_loss, (int[]){s, target}, 2, &(lm_attrs){.i = {LM_LOSS_CATEGORICAL_CE, 0}}, l), 0);
  gc_check(&t, "chain with skips and shared values", l[0], 1);
  gc_free(&t);
}

/* ---- Shape rules refuse misfits with a message naming the shapes ---- */

static int ref_input(lm_graph *g, lm_dtype dt, lm_shape s) {
  int id = lm__graph_input(g, LM_VALUE_INPUT, dt, s);
  assert_true(id >= 0);
  return id;
}

/* Expects def to refuse: -1, an error code, no op appended, and every needle in the message. */
static void expect_refusal(lm_graph *g, const lm_op_def *def, const int *in, int n, const lm_attrs *a,
                           lm_status code, const char *const *needles) {
  int ops = g->n_ops, vals = g->n_vals, out[LM_MAX_OP_IO];
  assert_int_equal(lm__graph_op(g, def, in, n, a, out), -1);
  assert_int_equal(g->err.code, code);
  assert_int_equal(g->n_ops, ops);
  assert_int_equal(g->n_vals, vals);
  for (int k = 0; needles[k]; k++)
    if (!strstr(g->err.msg, needles[k])) fail_msg("message lacks \"%s\": %s", needles[k], g->err.msg);
  print_message("  refused as expected: %s\n", g->err.msg);
}

#define REFUSE(def, ins, n, attrs, code, ...)                                                             \
  do {                                                                                                    \
    expect_refusal(g, def, ins, n, attrs, code, (const char *const[]){"bad_layer", __VA_ARGS__, NULL}); \
    lm__graph_free(g);                                                                                    \
    g = NULL;                                                                                             \
  } while (0)

static lm_graph *ref_graph(void) {
  lm_graph *g = lm__graph_new();
  assert_non_null(g);
  g->who = "bad_layer";
  return g;
}

static void test_shape_errors(void **state) {
  (void)state;
  lm_graph *g;
  int a, b, c;

  g = ref_graph(); /* dense: kernel rows do not match the features */
  a = ref_input(g, LM_FLOAT32, LM_SHAPE(4, 3));
  b = ref_input(g, LM_FLOAT32, LM_SHAPE(5, 2));
  REFUSE(&lm__op_dense, ((int[]){a, b}), 2, NULL, LM_ERROR_SHAPE, "dense", "(4, 3)", "(5, 2)");

  g = ref_graph(); /* dense: bias does not match the units */
  a = ref_input(g, LM_FLOAT32, LM_SHAPE(4, 3));
  b = ref_input(g, LM_FLOAT32, LM_SHAPE(3, 2));
  c = ref_input(g, LM_FLOAT32, LM_SHAPE(3));
  REFUSE(&lm__op_dense, ((int[]){a, b, c}), 3, NULL, LM_ERROR_SHAPE, "(3,)", "(3, 2)");

  g = ref_graph(); /* dense: rank 1 input */
  a = ref_input(g, LM_FLOAT32, LM_SHAPE(3));
  b = ref_input(g, LM_FLOAT32, LM_SHAPE(3, 2));
  REFUSE(&lm__op_dense, ((int[]){a, b}), 2, NULL, LM_ERROR_SHAPE, "(3,)", "rank >= 2");

  g = ref_graph(); /* dense: int32 input */
  a = ref_input(g, LM_INT32, LM_SHAPE(4, 3));
  b = ref_input(g, LM_FLOAT32, LM_SHAPE(3, 2));
  REFUSE(&lm__op_dense, ((int[]){a, b}), 2, NULL, LM_ERROR_VALUE, "(4, 3)", "float32");

  g = ref_graph(); /* concat: a non-axis dim differs */
  a = ref_input(g, LM_FLOAT32, LM_SHAPE(2, 3, 4));
  b = ref_input(g, LM_FLOAT32, LM_SHAPE(2, 3, 5));
  REFUSE(&lm__op_concat, ((int[]){a, b}), 2, (&(lm_attrs){.i = {1}}), LM_ERROR_SHAPE, "concatenate", "(2, 3, 4)",
         "(2, 3, 5)", "axis 1");

  g = ref_graph(); /* concat of 3: the last differs in rank */
  a = ref_input(g, LM_FLOAT32, LM_SHAPE(2, 3));
  b = ref_input(g, LM_FLOAT32, LM_SHAPE(2, 4));
  c = ref_input(g, LM_FLOAT32, LM_SHAPE(2, 4, 1));
  REFUSE(&lm__op_concat, ((int[]){a, b, c}), 3, (&(lm_attrs){.i = {-1}}), LM_ERROR_SHAPE, "(2, 3)", "(2, 4, 1)");

  g = ref_graph(); /* concat: the batch axis */
  a = ref_input(g, LM_FLOAT32, LM_SHAPE(2, 3));
  b = ref_input(g, LM_FLOAT32, LM_SHAPE(2, 3));
  REFUSE(&lm__op_concat, ((int[]){a, b}), 2, (&(lm_attrs){.i = {0}}), LM_ERROR_VALUE, "(2, 3)", "batch axis");

  g = ref_graph(); /* concat: an axis past the rank */
  a = ref_input(g, LM_FLOAT32, LM_SHAPE(2, 3));
  b = ref_input(g, LM_FLOAT32, LM_SHAPE(2, 3));
  REFUSE(&lm__op_concat, ((int[]){a, b}), 2, (&(lm_attrs){.i = {2}}), LM_ERROR_VALUE, "axis 2", "rank 2");

  g = ref_graph(); /* concat: one input */
  a = ref_input(g, LM_FLOAT32, LM_SHAPE(2, 3));
  REFUSE(&lm__op_concat, ((int[]){a}), 1, (&(lm_attrs){.i = {1}}), LM_ERROR_VALUE, "(2, 3)", "at least 2");

  g = ref_graph(); /* binary: unbroadcastable */
  a = ref_input(g, LM_FLOAT32, LM_SHAPE(4, 3));
  b = ref_input(g, LM_FLOAT32, LM_SHAPE(4, 2));
  REFUSE(&lm__op_binary, ((int[]){a, b}), 2, (&(lm_attrs){.i = {LM_BINARY_ADD}}), LM_ERROR_SHAPE, "binary",
         "(4, 3)", "(4, 2)", "cannot be broadcast");

  g = ref_graph(); /* binary: trailing dims differ */
  a = ref_input(g, LM_FLOAT32, LM_SHAPE(4, 3));
  b = ref_input(g, LM_FLOAT32, LM_SHAPE(2));
  REFUSE(&lm__op_binary, ((int[]){a, b}), 2, (&(lm_attrs){.i = {LM_BINARY_MULTIPLY}}), LM_ERROR_SHAPE, "(4, 3)",
         "(2,)");

  g = ref_graph(); /* reshape: sizes differ */
  a = ref_input(g, LM_FLOAT32, LM_SHAPE(4, 6));
  REFUSE(&lm__op_reshape, &a, 1, (&(lm_attrs){.i = {1, 5}}), LM_ERROR_SHAPE, "reshape", "(4, 6)",
         "cannot be reshaped");

  g = ref_graph(); /* reshape: -1 cannot be inferred */
  a = ref_input(g, LM_FLOAT32, LM_SHAPE(4, 6));
  REFUSE(&lm__op_reshape, &a, 1, (&(lm_attrs){.i = {2, -1, 4}}), LM_ERROR_SHAPE, "(4, 6)", "cannot be reshaped");

  g = ref_graph(); /* reshape: two -1 */
  a = ref_input(g, LM_FLOAT32, LM_SHAPE(4, 6));
  REFUSE(&lm__op_reshape, &a, 1, (&(lm_attrs){.i = {2, -1, -1}}), LM_ERROR_VALUE, "(4, 6)", "only one");

  g = ref_graph(); /* reshape: a zero dim */
  a = ref_input(g, LM_FLOAT32, LM_SHAPE(4, 6));
  REFUSE(&lm__op_reshape, &a, 1, (&(lm_attrs){.i = {2, 0, 6}}), LM_ERROR_VALUE, "(4, 6)", "not positive");

  g = ref_graph(); /* average: shapes differ */
  a = ref_input(g, LM_FLOAT32, LM_SHAPE(4, 3));
  b = ref_input(g, LM_FLOAT32, LM_SHAPE(4, 3));
  c = ref_input(g, LM_FLOAT32, LM_SHAPE(4, 2));
  REFUSE(&lm__op_mean_n, ((int[]){a, b, c}), 3, NULL, LM_ERROR_SHAPE, "average", "(4, 3)", "(4, 2)");

  g = ref_graph(); /* activation: int32 */
  a = ref_input(g, LM_INT32, LM_SHAPE(4, 3));
  REFUSE(&lm__op_activation, &a, 1, (&(lm_attrs){.i = {LM_RELU}}), LM_ERROR_VALUE, "(4, 3)", "relu", "float32");

  g = ref_graph(); /* loss: targets shaped unlike the predictions */
  a = ref_input(g, LM_FLOAT32, LM_SHAPE(4, 3));
  b = ref_input(g, LM_FLOAT32, LM_SHAPE(4, 2));
  REFUSE(&lm__op_loss, ((int[]){a, b}), 2, (&(lm_attrs){.i = {LM_LOSS_MSE, 0}}), LM_ERROR_SHAPE, "loss", "(4, 3)",
         "(4, 2)", "mean_squared_error");

  g = ref_graph(); /* loss: sparse targets with several values per sample */
  a = ref_input(g, LM_FLOAT32, LM_SHAPE(4, 3));
  b = ref_input(g, LM_FLOAT32, LM_SHAPE(4, 3));
  REFUSE(&lm__op_loss, ((int[]){a, b}), 2, (&(lm_attrs){.i = {LM_LOSS_SPARSE_CATEGORICAL_CE, 1}}), LM_ERROR_SHAPE,
         "(4, 3)", "one class id per prediction row");

  g = ref_graph(); /* loss: sample counts differ */
  a = ref_input(g, LM_FLOAT32, LM_SHAPE(4, 3));
  b = ref_input(g, LM_FLOAT32, LM_SHAPE(5, 3));
  REFUSE(&lm__op_loss, ((int[]){a, b}), 2, (&(lm_attrs){.i = {LM_LOSS_BINARY_CE, 0}}), LM_ERROR_SHAPE, "(4, 3)",
         "(5, 3)", "different numbers of samples");

  /* a failure is sticky: the graph refuses further ops and keeps the first message */
  g = ref_graph();
  a = ref_input(g, LM_FLOAT32, LM_SHAPE(4, 3));
  b = ref_input(g, LM_FLOAT32, LM_SHAPE(4, 2));
  assert_int_equal(lm__emit(g, &lm__op_binary, (int[]){a, b}, 2, &(lm_attrs){.i = {LM_BINARY_ADD}}), -1);
  char first[sizeof g->err.msg];
  memcpy(first, g->err.msg, sizeof first);
  assert_int_equal(lm__emit(g, &lm__op_identity, &a, 1, NULL), -1);
  assert_string_equal(g->err.msg, first);
  lm__graph_free(g);
}

/* Unknown (None) dims pass the graph's rule; the plan checks the concrete shapes. */
static void test_plan_shape_error(void **state) {
  (void)state;
  lm_graph *g = ref_graph();
  int a = ref_input(g, LM_FLOAT32, LM_SHAPE(LM_NONE, 3));
  int b = ref_input(g, LM_FLOAT32, LM_SHAPE(LM_NONE, 3));
  int y = lm__emit(g, &lm__op_binary, (int[]){a, b}, 2, &(lm_attrs){.i = {LM_BINARY_ADD}});
  assert_true(y >= 0);
  lm_shape shapes[3] = {LM_SHAPE(4, 3), LM_SHAPE(5, 3)};
  lm_plan *p = lm__plan_new(g, shapes, 0, -1);
  assert_non_null(p);
  assert_int_equal(p->err.code, LM_ERROR_SHAPE);
  print_message("  refused as expected: %s\n", p->err.msg);
  assert_non_null(strstr(p->err.msg, "bad_layer"));
  assert_non_null(strstr(p->err.msg, "(4, 3)"));
  assert_non_null(strstr(p->err.msg, "(5, 3)"));
  lm__plan_free(p);
  /* the same graph plans fine with matching batches */
  shapes[1] = LM_SHAPE(4, 3);
  p = lm__plan_new(g, shapes, 0, -1);
  assert_non_null(p);
  assert_int_equal(p->err.code, LM_OK);
  assert_true(lm__shape_equal(p->shapes[y], LM_SHAPE(4, 3)));
  lm__plan_free(p);
  lm__graph_free(g);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_checker_rejects_scaled_gradient),
      cmocka_unit_test(test_checker_rejects_one_wrong_element),
      cmocka_unit_test(test_checker_rejects_broken_op),
      cmocka_unit_test(test_dense),
      cmocka_unit_test(test_dense_fused_activation),
      cmocka_unit_test(test_activation_edges),
      cmocka_unit_test(test_activations),
      cmocka_unit_test(test_binary),
      cmocka_unit_test(test_mean_n),
      cmocka_unit_test(test_concat),
      cmocka_unit_test(test_reshape),
      cmocka_unit_test(test_dropout_training),
      cmocka_unit_test(test_dropout_inference),
      cmocka_unit_test(test_losses),
      cmocka_unit_test(test_weighted_sum),
      cmocka_unit_test(test_identity),
      cmocka_unit_test(test_chain),
      cmocka_unit_test(test_chain_skips),
      cmocka_unit_test(test_shape_errors),
      cmocka_unit_test(test_plan_shape_error),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
