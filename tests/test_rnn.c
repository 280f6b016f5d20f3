/* Recurrent layers: LSTM, GRU, SimpleRNN and Bidirectional.
 *
 * 1. Numerical gradient checks of the sequence ops (src/ops/cpu/rnn.c) for every input
 *    (x, kernel, recurrent kernel, bias), with the output sequence or the last output and
 *    the final states in the objective, going forward and backward, GRU with and without
 *    reset_after, and masks with masked first, middle and last steps.
 * 2. What the ops mean: a post-padded masked sequence ends where its unpadded prefix ends,
 *    a pre-padded one where its suffix does; go_backwards runs the reversed sequence; a
 *    graph with unknown steps runs plans of several lengths.
 * 3. The layers: parameter counts (Keras's numbers), weight names, shapes and default
 *    initializers, return_state outputs, errors for bad input, unknown lengths, and a small
 *    fit that learns.
 * 4. Parity with real Keras: every case of tests/fixtures/keras_rnn.txt (made by
 *    tools/keras_fixtures/make_rnn_fixtures.py): outputs, gradients of a fixed objective for
 *    every weight and float input, and the weights after one SGD step through lm_fit; to a
 *    relative 1e-5 (1e-4 for the 40-step recurrences). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>

#include "fixture.h"
#include "model/internal.h"
#include "ops/rnn.h"

/* ---- A small seeded generator (splitmix64) ---- */

static uint64_t rng_state = 1;

static uint64_t rng_next(void) {
  uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

static float rng_uniform(double lo, double hi) {
  return (float)(lo + (hi - lo) * (double)(rng_next() >> 11) * (1.0 / 9007199254740992.0));
}

/* ---- The objective sum_k sum(y_k * r_k): a test-only op per output ---- */

typedef struct rvec {
  const float *v;
  int64_t n;
} rvec;

static lm_status dot_shape(const lm_attrs *a, const lm_shape *in, const lm_dtype *dt, int n, lm_shape *out,
                           lm_dtype *odt, char *err, size_t len) {
  const rvec *r = a->p;
  if (lm_shape_size(in[0]) >= 0 && lm_shape_size(in[0]) != r->n) {
    snprintf(err, len, "r holds %lld values", (long long)r->n);
    return LM_ERROR_SHAPE;
  }
  out[0] = (lm_shape){.rank = 0};
  odt[0] = LM_FLOAT32;
  return LM_OK;
}

static void dot_fwd(lm_plan *p, const lm_opnode *node) {
  const rvec *r = node->a.p;
  const float *y = lm__f(p, node->in[0]);
  double s = 0;
  for (int64_t i = 0; i < r->n; i++) s += (double)y[i] * r->v[i];
  lm__f(p, node->out[0])[0] = (float)s;
}

static void dot_bwd(lm_plan *p, const lm_opnode *node) {
  const rvec *r = node->a.p;
  float *dy = lm__g(p, node->in[0]), dz = lm__g(p, node->out[0])[0];
  if (!dy) return;
  for (int64_t i = 0; i < r->n; i++) dy[i] += dz * r->v[i];
}

static const lm_op_def dot_op = {"dot_r", 1, dot_shape, dot_fwd, dot_bwd, 0, false, 0, 0};

static const float ONES[LM_MAX_OP_IO] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1};

/* Emits the objective over n values (rs[k] must outlive the graph); returns its id. */
static int emit_objective(lm_graph *g, const int *ys, int n, const rvec *rs) {
  int dots[LM_MAX_OP_IO];
  for (int k = 0; k < n; k++) {
    dots[k] = lm__emit(g, &dot_op, &ys[k], 1, &(lm_attrs){.p = &rs[k]});
    assert_true(dots[k] >= 0);
  }
  int total = lm__emit(g, &lm__op_weighted_sum, dots, n, &(lm_attrs){.p = ONES});
  assert_true(total >= 0);
  return total;
}

/* ---- 1. Gradient checks of the ops ---- */

#define GC_MAX_VALS 64
#define GC_MAX_FEEDS 8
#define REL_TOL 2e-2
#define ABS_TOL 1e-3

typedef struct gc {
  lm_graph *g;
  lm_shape shapes[GC_MAX_VALS];
  int id[GC_MAX_FEEDS];
  float *data[GC_MAX_FEEDS];
  int n_feeds;
  float *r[LM_MAX_OP_IO];
  rvec rv[LM_MAX_OP_IO];
  int n_r;
  lm_plan *plan;
  int loss;
} gc;

static void gc_init(gc *t, uint64_t seed) {
  memset(t, 0, sizeof *t);
  t->g = lm__graph_new();
  assert_non_null(t->g);
  rng_state = seed;
}

static void gc_free(gc *t) {
  lm__plan_free(t->plan);
  lm__graph_free(t->g);
  for (int k = 0; k < t->n_feeds; k++) free(t->data[k]);
  for (int k = 0; k < t->n_r; k++) free(t->r[k]);
}

/* An input value: uniform in [lo, hi], or the given values; grad: checked. */
static int gc_feed(gc *t, lm_shape s, double lo, double hi, const float *values, bool grad) {
  assert_true(t->n_feeds < GC_MAX_FEEDS);
  int id = lm__graph_input(t->g, LM_VALUE_INPUT, LM_FLOAT32, s);
  assert_true(id >= 0 && id < GC_MAX_VALS);
  t->g->vals[id].requires_grad = grad;
  t->shapes[id] = s;
  int64_t n = lm_shape_size(s);
  float *d = malloc((size_t)n * sizeof *d);
  assert_non_null(d);
  for (int64_t i = 0; i < n; i++) d[i] = values ? values[i] : rng_uniform(lo, hi);
  t->id[t->n_feeds] = id;
  t->data[t->n_feeds++] = d;
  return id;
}

/* The objective over the op's first n_obj outputs, with random cotangents. */
static void gc_objective(gc *t, const int *outs, int n_obj) {
  for (int k = 0; k < n_obj; k++) {
    int64_t n = lm_shape_size(t->g->vals[outs[k]].shape);
    assert_true(n > 0);
    t->r[k] = malloc((size_t)n * sizeof(float));
    assert_non_null(t->r[k]);
    for (int64_t i = 0; i < n; i++) t->r[k][i] = rng_uniform(-1, 1);
    t->rv[k] = (rvec){t->r[k], n};
    t->n_r++;
  }
  t->loss = emit_objective(t->g, outs, n_obj, t->rv);
  t->plan = lm__plan_new(t->g, t->shapes, 1, t->loss);
  assert_non_null(t->plan);
  if (t->plan->err.code) fail_msg("plan: %s", t->plan->err.msg);
  for (int k = 0; k < t->n_feeds; k++)
    memcpy(lm__f(t->plan, t->id[k]), t->data[k], (size_t)lm__n(t->plan, t->id[k]) * sizeof(float));
}

static double gc_eval(gc *t) {
  lm__plan_forward(t->plan);
  return lm__f(t->plan, t->loss)[0];
}

/* Analytic gradients of every checked feed against central differences. */
static void gc_check(gc *t, const char *what, double eps) {
  lm_plan *p = t->plan;
  double f0 = gc_eval(t);
  assert_true(isfinite(f0));
  lm__plan_backward(p);
  int bad = 0;
  for (int k = 0; k < t->n_feeds; k++) {
    int id = t->id[k];
    if (!t->g->vals[id].requires_grad) continue;
    if (!lm__g(p, id)) fail_msg("%s: value %d has no gradient", what, id);
    int64_t n = lm__n(p, id);
    float *analytic = malloc((size_t)n * sizeof *analytic);
    assert_non_null(analytic);
    memcpy(analytic, lm__g(p, id), (size_t)n * sizeof *analytic);
    float *x = lm__f(p, id);
    double biggest = 0;
    for (int64_t i = 0; i < n; i++) {
      float orig = x[i], xp = (float)(orig + eps), xm = (float)(orig - eps);
      x[i] = xp;
      double fp = gc_eval(t);
      x[i] = xm;
      double fm = gc_eval(t);
      x[i] = orig;
      double num = (fp - fm) / ((double)xp - (double)xm);
      biggest = fmax(biggest, fabs(num));
      if (fabs(analytic[i] - num) > REL_TOL * fmax(fabs(analytic[i]), fabs(num)) + ABS_TOL) {
        if (bad < 6)
          print_message("  %s: d/d(input %d)[%lld]: analytic %.7g, numerical %.7g\n", what, k, (long long)i,
                        (double)analytic[i], num);
        bad++;
      }
    }
    if (!(biggest > 10 * ABS_TOL)) fail_msg("%s: the objective hardly depends on input %d", what, k);
    free(analytic);
  }
  /* backward zeroes what it accumulates: a second pass gives the same gradients */
  assert_true(gc_eval(t) == f0);
  if (bad) fail_msg("%s: %d gradient elements disagree", what, bad);
}

/* Masks of 2 sequences of 4 steps: a masked step first, in the middle and last. */
static const float MASK_2x4[8] = {1, 0, 1, 1, 0, 1, 1, 0};

typedef struct op_case {
  const char *what;
  const lm_op_def *op;
  int gates, flags;
  lm_activation act, ract;
  int n_states; /* final states in the objective: 2 for LSTM */
} op_case;

static void check_op(op_case c, uint64_t seed) {
  const int B = 2, T = 4, F = 3, U = 3;
  gc t;
  gc_init(&t, seed);
  int in[5], n = 0;
  in[n++] = gc_feed(&t, LM_SHAPE(B, T, F), -1.5, 1.5, NULL, true);
  in[n++] = gc_feed(&t, LM_SHAPE(F, c.gates * U), -0.8, 0.8, NULL, true);
  in[n++] = gc_feed(&t, LM_SHAPE(U, c.gates * U), -0.8, 0.8, NULL, true);
  if (c.flags & LM_RNN_BIAS) {
    lm_shape bs = c.flags & LM_RNN_RESET_AFTER ? LM_SHAPE(2, c.gates * U) : LM_SHAPE(c.gates * U);
    in[n++] = gc_feed(&t, bs, -0.5, 0.5, NULL, true);
  }
  if (c.flags & LM_RNN_MASK) in[n++] = gc_feed(&t, LM_SHAPE(B, T), 0, 0, MASK_2x4, false);
  int outs[LM_MAX_OP_IO];
  lm_attrs a = {.i = {c.act ? c.act : LM_TANH, c.ract ? c.ract : LM_SIGMOID, c.flags}};
  if (lm__graph_op(t.g, c.op, in, n, &a, outs)) fail_msg("%s: %s", c.what, t.g->err.msg);
  gc_objective(&t, outs, 1 + c.n_states);
  gc_check(&t, c.what, 1e-3);
  gc_free(&t);
}

enum { RS = LM_RNN_RETURN_SEQUENCES, BACK = LM_RNN_GO_BACKWARDS, BIAS = LM_RNN_BIAS, MASK = LM_RNN_MASK,
       ZERO = LM_RNN_ZERO_MASKED, AFTER = LM_RNN_RESET_AFTER };

static void test_lstm_gradients(void **state) {
  (void)state;
  const op_case cases[] = {
      {"lstm: last output", &lm__op_lstm, 4, BIAS, 0, 0, 2},
      {"lstm: sequences", &lm__op_lstm, 4, BIAS | RS, 0, 0, 2},
      {"lstm: sequences, backwards", &lm__op_lstm, 4, BIAS | RS | BACK, 0, 0, 2},
      {"lstm: no bias", &lm__op_lstm, 4, RS, 0, 0, 2},
      {"lstm: masked sequences", &lm__op_lstm, 4, BIAS | RS | MASK, 0, 0, 2},
      {"lstm: masked, last output, backwards", &lm__op_lstm, 4, BIAS | MASK | BACK, 0, 0, 2},
      {"lstm: masked zero outputs, backwards", &lm__op_lstm, 4, BIAS | RS | MASK | ZERO | BACK, 0, 0, 2},
      {"lstm: elu, swish gates", &lm__op_lstm, 4, BIAS | RS, LM_ELU, LM_SWISH, 2},
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) check_op(cases[i], 100 + i);
}

static void test_gru_gradients(void **state) {
  (void)state;
  const op_case cases[] = {
      {"gru: last output", &lm__op_gru, 3, BIAS | AFTER, 0, 0, 1},
      {"gru: sequences, backwards", &lm__op_gru, 3, BIAS | AFTER | RS | BACK, 0, 0, 1},
      {"gru: no bias", &lm__op_gru, 3, AFTER | RS, 0, 0, 1},
      {"gru: masked sequences", &lm__op_gru, 3, BIAS | AFTER | RS | MASK, 0, 0, 1},
      {"gru: masked zero outputs, backwards", &lm__op_gru, 3, BIAS | AFTER | RS | MASK | ZERO | BACK, 0, 0, 1},
      {"gru reset before: last output", &lm__op_gru, 3, BIAS, 0, 0, 1},
      {"gru reset before: sequences, backwards", &lm__op_gru, 3, BIAS | RS | BACK, 0, 0, 1},
      {"gru reset before: no bias", &lm__op_gru, 3, RS, 0, 0, 1},
      {"gru reset before: masked sequences", &lm__op_gru, 3, BIAS | RS | MASK, 0, 0, 1},
      {"gru reset before: masked, last output, backwards", &lm__op_gru, 3, BIAS | MASK | BACK, 0, 0, 1},
      {"gru: elu, swish gates", &lm__op_gru, 3, BIAS | AFTER | RS, LM_ELU, LM_SWISH, 1},
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) check_op(cases[i], 200 + i);
}

static void test_simple_rnn_gradients(void **state) {
  (void)state;
  const op_case cases[] = {
      {"simple_rnn: last output", &lm__op_simple_rnn, 1, BIAS, 0, 0, 1},
      {"simple_rnn: sequences, backwards", &lm__op_simple_rnn, 1, BIAS | RS | BACK, 0, 0, 1},
      {"simple_rnn: no bias", &lm__op_simple_rnn, 1, RS, 0, 0, 1},
      {"simple_rnn: masked sequences", &lm__op_simple_rnn, 1, BIAS | RS | MASK, 0, 0, 1},
      {"simple_rnn: masked zero outputs, backwards", &lm__op_simple_rnn, 1, BIAS | RS | MASK | ZERO | BACK, 0, 0, 1},
      {"simple_rnn: elu", &lm__op_simple_rnn, 1, BIAS | RS, LM_ELU, 0, 1},
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) check_op(cases[i], 300 + i);
}

static void test_reverse_steps_gradient(void **state) {
  (void)state;
  gc t;
  gc_init(&t, 400);
  int x = gc_feed(&t, LM_SHAPE(2, 3, 2), -1, 1, NULL, true);
  int y = lm__emit(t.g, &lm__op_reverse_steps, &x, 1, NULL);
  assert_true(y >= 0);
  gc_objective(&t, &y, 1);
  gc_check(&t, "reverse_steps", 1e-3);
  const float *px = lm__f(t.plan, x), *py = lm__f(t.plan, y);
  for (int b = 0; b < 2; b++)
    for (int s = 0; s < 3; s++)
      for (int k = 0; k < 2; k++) assert_true(py[(b * 3 + s) * 2 + k] == px[(b * 3 + 2 - s) * 2 + k]);
  gc_free(&t);
}

/* ---- 2. What the ops compute ---- */

typedef struct run {
  lm_graph *g;
  lm_plan *plan;
  int outs[LM_MAX_OP_IO];
} run;

/* Runs the op forward on x (B, T, F) with fixed weights; mask may be NULL. */
static run run_op(const lm_op_def *op, int gates, int flags, const float *x, int B, int T, int F, int U,
                  const float *W, const float *Wr, const float *bias, const float *mask) {
  run r = {.g = lm__graph_new()};
  assert_non_null(r.g);
  lm_shape shapes[32] = {0};
  int in[5], n = 0;
  const float *src[5];
  in[n] = lm__graph_input(r.g, LM_VALUE_INPUT, LM_FLOAT32, LM_SHAPE(B, T, F)), src[n++] = x;
  in[n] = lm__graph_input(r.g, LM_VALUE_INPUT, LM_FLOAT32, LM_SHAPE(F, gates * U)), src[n++] = W;
  in[n] = lm__graph_input(r.g, LM_VALUE_INPUT, LM_FLOAT32, LM_SHAPE(U, gates * U)), src[n++] = Wr;
  if (bias) {
    lm_shape bs = flags & LM_RNN_RESET_AFTER ? LM_SHAPE(2, gates * U) : LM_SHAPE(gates * U);
    in[n] = lm__graph_input(r.g, LM_VALUE_INPUT, LM_FLOAT32, bs), src[n++] = bias;
    flags |= LM_RNN_BIAS;
  }
  if (mask) {
    in[n] = lm__graph_input(r.g, LM_VALUE_INPUT, LM_FLOAT32, LM_SHAPE(B, T)), src[n++] = mask;
    flags |= LM_RNN_MASK;
  }
  for (int k = 0; k < n; k++) shapes[in[k]] = r.g->vals[in[k]].shape;
  if (lm__graph_op(r.g, op, in, n, &(lm_attrs){.i = {LM_TANH, LM_SIGMOID, flags}}, r.outs)) fail_msg("%s", r.g->err.msg);
  for (int k = 0; k < op->n_out; k++) r.g->vals[r.outs[k]].keep = true;
  r.plan = lm__plan_new(r.g, shapes, 0, -1);
  assert_int_equal(r.plan->err.code, LM_OK);
  for (int k = 0; k < n; k++) memcpy(lm__f(r.plan, in[k]), src[k], (size_t)lm__n(r.plan, in[k]) * sizeof(float));
  lm__plan_forward(r.plan);
  return r;
}

static void run_free(run *r) {
  lm__plan_free(r->plan);
  lm__graph_free(r->g);
}

static void random_fill(float *v, int n, double lo, double hi) {
  for (int i = 0; i < n; i++) v[i] = rng_uniform(lo, hi);
}

static void assert_close(const float *a, const float *b, int n, double tol, const char *what) {
  for (int i = 0; i < n; i++)
    if (!(fabs(a[i] - b[i]) <= tol)) fail_msg("%s: [%d] %.9g vs %.9g", what, i, (double)a[i], (double)b[i]);
}

/* Padding a sequence with masked steps changes nothing: post-padding ends at the prefix's
 * state, pre-padding starts the suffix from zeros; sequences repeat the carried state (or
 * zeros when asked). */
static void test_mask_means_padding(void **state) {
  (void)state;
  enum { T = 5, F = 2, U = 3, P = 2 }; /* P padded steps */
  const lm_op_def *ops[3] = {&lm__op_lstm, &lm__op_gru, &lm__op_simple_rnn};
  const int gates[3] = {4, 3, 1}, extra[3] = {0, AFTER, 0};
  rng_state = 7;
  for (int k = 0; k < 3; k++) {
    int G = gates[k] * U;
    float x[T * F], W[F * 4 * U], Wr[U * 4 * U], b[2 * 4 * U];
    random_fill(x, T * F, -1, 1), random_fill(W, F * G, -0.8, 0.8), random_fill(Wr, U * G, -0.8, 0.8);
    random_fill(b, 2 * G, -0.3, 0.3);
    for (int pre = 0; pre < 2; pre++) {
      float mask[T];
      for (int t = 0; t < T; t++) mask[t] = pre ? t >= P : t < T - P;
      const float *real = pre ? x + P * F : x; /* the unpadded steps */
      for (int zero = 0; zero < 2; zero++) {
        int flags = RS | extra[k] | (zero ? ZERO : 0);
        run full = run_op(ops[k], gates[k], flags, x, 1, T, F, U, W, Wr, b, mask);
        run cut = run_op(ops[k], gates[k], flags, real, 1, T - P, F, U, W, Wr, b, NULL);
        const float *yf = lm__f(full.plan, full.outs[0]), *yc = lm__f(cut.plan, cut.outs[0]);
        assert_close(lm__f(full.plan, full.outs[1]), lm__f(cut.plan, cut.outs[1]), U, 1e-6, "final h");
        if (ops[k] == &lm__op_lstm)
          assert_close(lm__f(full.plan, full.outs[2]), lm__f(cut.plan, cut.outs[2]), U, 1e-6, "final c");
        for (int t = 0; t < T; t++) {
          const float *want;
          float zeros[U] = {0};
          if (mask[t]) want = yc + (t - (pre ? P : 0)) * U;
          else if (zero || pre) want = zeros;          /* zeros asked, or the initial state */
          else want = yc + (T - P - 1) * U;            /* the carried last state */
          assert_close(yf + t * U, want, U, 1e-6, "masked sequence");
        }
        run_free(&full);
        run_free(&cut);
      }
    }
  }
}

/* go_backwards is the forward recurrence on the reversed steps, outputs in that order. */
static void test_go_backwards_is_reversal(void **state) {
  (void)state;
  enum { B = 2, T = 4, F = 3, U = 2 };
  const lm_op_def *ops[3] = {&lm__op_lstm, &lm__op_gru, &lm__op_simple_rnn};
  const int gates[3] = {4, 3, 1};
  rng_state = 8;
  for (int k = 0; k < 3; k++) {
    int G = gates[k] * U;
    float x[B * T * F], xr[B * T * F], W[F * 4 * U], Wr[U * 4 * U], b[4 * U];
    random_fill(x, B * T * F, -1, 1), random_fill(W, F * G, -0.8, 0.8), random_fill(Wr, U * G, -0.8, 0.8);
    random_fill(b, G, -0.3, 0.3);
    for (int i = 0; i < B; i++)
      for (int t = 0; t < T; t++) memcpy(xr + (i * T + t) * F, x + (i * T + T - 1 - t) * F, F * sizeof(float));
    run back = run_op(ops[k], gates[k], RS | BACK, x, B, T, F, U, W, Wr, b, NULL);
    run fwd = run_op(ops[k], gates[k], RS, xr, B, T, F, U, W, Wr, b, NULL);
    assert_close(lm__f(back.plan, back.outs[0]), lm__f(fwd.plan, fwd.outs[0]), B * T * U, 0, "backwards");
    run_free(&back);
    run_free(&fwd);
  }
}

/* One graph with unknown batch and steps; plans of different lengths. */
static void test_unknown_steps_in_the_graph(void **state) {
  (void)state;
  enum { F = 2, U = 3 };
  lm_graph *g = lm__graph_new();
  int x = lm__graph_input(g, LM_VALUE_INPUT, LM_FLOAT32, LM_SHAPE(LM_NONE, LM_NONE, F));
  int w = lm__graph_input(g, LM_VALUE_INPUT, LM_FLOAT32, LM_SHAPE(F, 4 * U));
  int wr = lm__graph_input(g, LM_VALUE_INPUT, LM_FLOAT32, LM_SHAPE(U, 4 * U));
  int outs[LM_MAX_OP_IO];
  assert_int_equal(lm__graph_op(g, &lm__op_lstm, (int[]){x, w, wr}, 3, &(lm_attrs){.i = {LM_TANH, LM_SIGMOID, RS}}, outs), 0);
  assert_int_equal(g->vals[outs[0]].shape.dim[1], LM_NONE);
  assert_int_equal(g->vals[outs[0]].shape.dim[2], U);
  for (int T = 1; T <= 9; T += 4) {
    lm_shape shapes[32] = {0};
    shapes[x] = LM_SHAPE(3, T, F), shapes[w] = LM_SHAPE(F, 4 * U), shapes[wr] = LM_SHAPE(U, 4 * U);
    lm_plan *p = lm__plan_new(g, shapes, 0, -1);
    assert_int_equal(p->err.code, LM_OK);
    assert_int_equal(p->shapes[outs[0]].dim[1], T);
    for (int v = 0; v < 3; v++)
      for (int64_t i = 0; i < lm__n(p, v); i++) lm__f(p, v)[i] = 0.1f * (float)(i % 7) - 0.3f;
    lm__plan_forward(p);
    for (int64_t i = 0; i < lm__n(p, outs[0]); i++) assert_true(isfinite(lm__f(p, outs[0])[i]));
    lm__plan_free(p);
  }
  lm__graph_free(g);
}

static void test_op_shape_errors(void **state) {
  (void)state;
  lm_graph *g = lm__graph_new();
  g->who = "lstm";
  int x2 = lm__graph_input(g, LM_VALUE_INPUT, LM_FLOAT32, LM_SHAPE(LM_NONE, 8));
  int w = lm__graph_input(g, LM_VALUE_INPUT, LM_FLOAT32, LM_SHAPE(8, 12));
  int wr = lm__graph_input(g, LM_VALUE_INPUT, LM_FLOAT32, LM_SHAPE(3, 12));
  int outs[LM_MAX_OP_IO];
  lm_attrs a = {.i = {LM_TANH, LM_SIGMOID, 0}};
  assert_int_not_equal(lm__graph_op(g, &lm__op_lstm, (int[]){x2, w, wr}, 3, &a, outs), 0);
  assert_non_null(strstr(g->err.msg, "lstm"));
  assert_non_null(strstr(g->err.msg, "(batch, steps, features)"));
  assert_non_null(strstr(g->err.msg, "(None, 8)"));
  lm__graph_free(g);

  g = lm__graph_new();
  int x = lm__graph_input(g, LM_VALUE_INPUT, LM_FLOAT32, LM_SHAPE(LM_NONE, 5, 7));
  w = lm__graph_input(g, LM_VALUE_INPUT, LM_FLOAT32, LM_SHAPE(8, 12));
  wr = lm__graph_input(g, LM_VALUE_INPUT, LM_FLOAT32, LM_SHAPE(3, 12));
  assert_int_not_equal(lm__graph_op(g, &lm__op_lstm, (int[]){x, w, wr}, 3, &a, outs), 0);
  assert_non_null(strstr(g->err.msg, "7 features"));
  lm__graph_free(g);

  g = lm__graph_new(); /* a mask of the wrong length */
  x = lm__graph_input(g, LM_VALUE_INPUT, LM_FLOAT32, LM_SHAPE(LM_NONE, 5, 8));
  w = lm__graph_input(g, LM_VALUE_INPUT, LM_FLOAT32, LM_SHAPE(8, 12));
  wr = lm__graph_input(g, LM_VALUE_INPUT, LM_FLOAT32, LM_SHAPE(3, 12));
  int m = lm__graph_input(g, LM_VALUE_INPUT, LM_FLOAT32, LM_SHAPE(LM_NONE, 6));
  a.i[2] = MASK;
  assert_int_not_equal(lm__graph_op(g, &lm__op_simple_rnn, (int[]){x, w, wr, m}, 4, &a, outs), 0);
  lm__graph_free(g);
}

/* ---- 3. The layers ---- */

static void test_param_counts(void **state) {
  (void)state;
  /* Siamese LSTM(32) on 128 features, then a Dense(1) on both branches: Keras's numbers. */
  lm_tensor *a = lm_input(LM_SHAPE(LM_NONE, 128)), *b = lm_input(LM_SHAPE(LM_NONE, 128));
  lm_layer *shared = lm_lstm(32);
  lm_tensor *ya = lm_call(shared, a), *yb = lm_call(shared, b);
  lm_layer *head = lm_dense(1);
  lm_tensor *out = lm_call(head, lm_concatenate(LM_TENSORS(ya, yb)));
  lm_model *m = lm_model_new(LM_TENSORS(a, b), LM_TENSORS(out));
  assert_int_equal(lm_model_status(m), LM_OK);
  assert_int_equal(lm_layer_count_params(shared), 20608);
  assert_int_equal(lm_layer_count_params(head), 65);
  assert_int_equal(lm_model_count_params(m), 20608 + 65);
  assert_string_equal(lm_layer_name(shared), "lstm");
  assert_int_equal(lm_tensor_shape(ya).rank, 2);
  assert_int_equal(lm_tensor_shape(ya).dim[1], 32);

  lm_tensor *x = lm_input(LM_SHAPE(7, 5));
  lm_layer *g1 = lm_gru(8), *g2 = lm_gru(8, .no_reset_after = true), *s = lm_simple_rnn(8);
  lm_layer *bi = lm_bidirectional(lm_lstm(32));
  lm_call(g1, x), lm_call(g2, x), lm_call(s, x), lm_call(bi, x);
  assert_int_equal(lm_layer_count_params(g1), 3 * (5 * 8 + 8 * 8 + 2 * 8));
  assert_int_equal(lm_layer_count_params(g2), 3 * (5 * 8 + 8 * 8 + 8));
  assert_int_equal(lm_layer_count_params(s), 5 * 8 + 8 * 8 + 8);
  assert_int_equal(lm_layer_count_params(bi), 2 * 4 * 32 * (5 + 32 + 1));
  assert_string_equal(lm_layer_name(g1), "gru");
  assert_string_equal(lm_layer_name(g2), "gru_1");
  assert_string_equal(lm_layer_name(s), "simple_rnn");
  assert_string_equal(lm_layer_name(bi), "bidirectional");
  assert_string_equal(lm_layer_class(bi), "Bidirectional");
  assert_string_equal(lm_layer_class(s), "SimpleRNN");
  lm_session_clear();
}

static void test_weights_and_initializers(void **state) {
  (void)state;
  lm_set_seed(11);
  enum { F = 5, U = 6 };
  lm_tensor *x = lm_input(LM_SHAPE(4, F));
  lm_layer *l = lm_lstm(U), *l2 = lm_lstm(U, .no_unit_forget_bias = true), *g = lm_gru(U);
  lm_layer *g2 = lm_gru(U, .no_reset_after = true), *nb = lm_simple_rnn(U, .no_bias = true);
  lm_call(l, x), lm_call(l2, x), lm_call(g, x), lm_call(g2, x), lm_call(nb, x);
  const char *name;
  lm_array *k = lm_layer_weight(l, 0, &name);
  assert_string_equal(name, "kernel");
  assert_int_equal(k->shape.dim[0], F), assert_int_equal(k->shape.dim[1], 4 * U);
  float limit = 1.0001f * sqrtf(6.0f / (F + 4 * U)); /* glorot_uniform */
  for (int64_t i = 0; i < k->size; i++) assert_true(fabsf(lm_array_f32(k)[i]) <= limit);
  lm_array *rk = lm_layer_weight(l, 1, &name);
  assert_string_equal(name, "recurrent_kernel");
  /* orthogonal (U, 4U): orthonormal rows */
  const float *q = lm_array_f32(rk);
  for (int i = 0; i < U; i++)
    for (int j = 0; j < U; j++) {
      double dot = 0;
      for (int c = 0; c < 4 * U; c++) dot += (double)q[i * 4 * U + c] * q[j * 4 * U + c];
      assert_true(fabs(dot - (i == j)) < 1e-5);
    }
  lm_array *b = lm_layer_weight(l, 2, &name);
  assert_string_equal(name, "bias");
  for (int i = 0; i < 4 * U; i++) assert_true(lm_array_f32(b)[i] == (i >= U && i < 2 * U ? 1.0f : 0.0f));
  b = lm_layer_weight(l2, 2, NULL);
  for (int i = 0; i < 4 * U; i++) assert_true(lm_array_f32(b)[i] == 0.0f);
  b = lm_layer_weight(g, 2, NULL);
  assert_int_equal(b->shape.rank, 2), assert_int_equal(b->shape.dim[0], 2), assert_int_equal(b->shape.dim[1], 3 * U);
  b = lm_layer_weight(g2, 2, NULL);
  assert_int_equal(b->shape.rank, 1), assert_int_equal(b->shape.dim[0], 3 * U);
  assert_null(lm_layer_weight(nb, 2, NULL));
  assert_non_null(lm_layer_weight(nb, 1, NULL));

  /* Bidirectional: forward's weights, then backward's */
  lm_layer *bi = lm_bidirectional(lm_gru(U, .name = "enc"));
  lm_call(bi, x);
  const char *want[6] = {"forward_enc/kernel", "forward_enc/recurrent_kernel", "forward_enc/bias",
                         "backward_enc/kernel", "backward_enc/recurrent_kernel", "backward_enc/bias"};
  for (int i = 0; i < 6; i++) {
    assert_non_null(lm_layer_weight(bi, i, &name));
    assert_string_equal(name, want[i]);
  }
  assert_null(lm_layer_weight(bi, 6, NULL));
  lm_layer_set_trainable(bi, false);
  lm_model *m = lm_model_new(LM_TENSORS(x), LM_TENSORS(lm_call(bi, x)));
  assert_int_equal(lm_model_count_trainable_params(m), 0);
  lm_session_clear();
}

static void test_return_state_outputs(void **state) {
  (void)state;
  lm_tensor *x = lm_input(LM_SHAPE(LM_NONE, 4));
  lm_tensors o = lm_call_outputs(lm_lstm(3, .return_state = true, .return_sequences = true), LM_TENSORS(x));
  assert_int_equal(o.n, 3);
  assert_int_equal(lm_tensor_shape(o.t[0]).rank, 3);
  assert_int_equal(lm_tensor_shape(o.t[0]).dim[1], LM_NONE);
  assert_int_equal(lm_tensor_shape(o.t[1]).rank, 2);
  assert_int_equal(lm_tensor_shape(o.t[2]).dim[1], 3);
  o = lm_call_outputs(lm_gru(3, .return_state = true), LM_TENSORS(x));
  assert_int_equal(o.n, 2);
  o = lm_call_outputs(lm_simple_rnn(3), LM_TENSORS(x));
  assert_int_equal(o.n, 1);
  o = lm_call_outputs(lm_bidirectional(lm_lstm(3, .return_state = true)), LM_TENSORS(x));
  assert_int_equal(o.n, 5); /* output, forward h and c, backward h and c */
  assert_int_equal(lm_tensor_shape(o.t[0]).dim[1], 6);
  o = lm_call_outputs(lm_bidirectional(lm_gru(3, .return_sequences = true), .merge_mode = LM_MERGE_SUM), LM_TENSORS(x));
  assert_int_equal(o.n, 1);
  assert_int_equal(lm_tensor_shape(o.t[0]).rank, 3);
  assert_int_equal(lm_tensor_shape(o.t[0]).dim[2], 3);
  lm_session_clear();
}

static void expect_error(lm_tensor *t, const char *a, const char *b, const char *c) {
  assert_int_not_equal(lm_tensor_status(t), LM_OK);
  const char *msg = lm_tensor_error(t);
  const char *parts[3] = {a, b, c};
  for (int i = 0; i < 3; i++)
    if (parts[i] && !strstr(msg, parts[i])) fail_msg("error \"%s\" does not mention \"%s\"", msg, parts[i]);
}

static void test_bad_input(void **state) {
  (void)state;
  lm_tensor *flat = lm_input(LM_SHAPE(8));
  expect_error(lm_call(lm_lstm(4), flat), "lstm", "(batch, steps, features)", "(None, 8)");
  expect_error(lm_call(lm_gru(4, .name = "enc"), flat), "enc", "GRU", "(batch, steps, features)");
  expect_error(lm_call(lm_bidirectional(lm_simple_rnn(4)), flat), "bidirectional", "(batch, steps, features)", NULL);
  lm_tensor *open = lm_input(LM_SHAPE(5, LM_NONE));
  expect_error(lm_call(lm_lstm(4, .name = "unknown_features"), open), "unknown_features", "features", "(None, 5, None)");
  lm_tensor *ids = lm_input(LM_SHAPE(5, 3), .dtype = LM_INT32);
  expect_error(lm_call(lm_lstm(4, .name = "ints"), ids), "ints", "int32", "Embedding");

  /* a built layer called on inputs with other features */
  lm_layer *l = lm_lstm(4);
  lm_tensor *ok = lm_call(l, lm_input(LM_SHAPE(5, 3)));
  assert_int_equal(lm_tensor_status(ok), LM_OK);
  expect_error(lm_call(l, lm_input(LM_SHAPE(5, 6))), "lstm_", "6 features", NULL);

  assert_int_not_equal(lm_layer_status(lm_lstm(0)), LM_OK);
  assert_non_null(strstr(lm_layer_error(lm_gru(-2)), "units"));
  assert_int_not_equal(lm_layer_status(lm_simple_rnn(3, .activation = (lm_activation)99)), LM_OK);
  lm_layer *bad = lm_bidirectional(lm_dense(3));
  assert_non_null(strstr(lm_layer_error(bad), "Dense"));
  assert_non_null(strstr(lm_layer_error(lm_bidirectional(l)), "already been called"));
  assert_int_not_equal(lm_layer_status(lm_bidirectional(lm_lstm(2), .merge_mode = (lm_merge_mode)9)), LM_OK);
  assert_int_not_equal(lm_layer_status(lm_bidirectional(NULL)), LM_OK);
  expect_error(lm_call(lm_bidirectional(lm_lstm(0)), flat), "units", NULL, NULL);
  lm_session_clear();
}

/* Input((None, 3)) -> LSTM(return_sequences): predictions for 5 and 9 steps, the first 5
 * steps of the longer run equal to the shorter run (an RNN is causal). */
static void test_unknown_length_predict(void **state) {
  (void)state;
  lm_set_seed(3);
  lm_tensor *x = lm_input(LM_SHAPE(LM_NONE, 3));
  lm_model *m = lm_model_new(LM_TENSORS(x), LM_TENSORS(lm_call(lm_lstm(4, .return_sequences = true), x)));
  assert_int_equal(lm_model_status(m), LM_OK);
  lm_array *x5 = lm_array_new(LM_FLOAT32, LM_SHAPE(2, 5, 3)), *x9 = lm_array_new(LM_FLOAT32, LM_SHAPE(2, 9, 3));
  rng_state = 5;
  for (int b = 0; b < 2; b++)
    for (int t = 0; t < 9; t++)
      for (int f = 0; f < 3; f++) {
        float v = rng_uniform(-1, 1);
        lm_array_f32(x9)[(b * 9 + t) * 3 + f] = v;
        if (t < 5) lm_array_f32(x5)[(b * 5 + t) * 3 + f] = v;
      }
  lm_outputs o5 = lm_predict(m, LM_FEED(x5), .verbose = LM_SILENT);
  lm_outputs o9 = lm_predict(m, LM_FEED(x9), .verbose = LM_SILENT);
  assert_int_equal(o5.n, 1), assert_int_equal(o9.n, 1);
  assert_int_equal(o5.a[0]->shape.dim[1], 5), assert_int_equal(o9.a[0]->shape.dim[1], 9);
  for (int b = 0; b < 2; b++)
    assert_close(lm_array_f32(o9.a[0]) + b * 9 * 4, lm_array_f32(o5.a[0]) + b * 5 * 4, 5 * 4, 1e-6, "prefix");
  lm_outputs_free(&o5);
  lm_outputs_free(&o9);
  lm_array_free(x5);
  lm_array_free(x9);
  lm_session_clear();
}

/* A GRU learns the mean of its sequence: the loss falls. */
static void test_fit_learns(void **state) {
  (void)state;
  lm_set_seed(5);
  enum { N = 64, T = 6 };
  lm_tensor *x = lm_input(LM_SHAPE(T, 1));
  lm_tensor *h = lm_call(lm_bidirectional(lm_gru(8, .return_sequences = true)), x);
  lm_tensor *y = lm_call(lm_dense(1), lm_call(lm_simple_rnn(8), h));
  lm_model *m = lm_model_new(LM_TENSORS(x), LM_TENSORS(y));
  assert_int_equal(lm_compile(m, .optimizer = lm_adam(.learning_rate = 0.01), .loss = LM_LOSSES("mse")), LM_OK);
  lm_array *xs = lm_array_new(LM_FLOAT32, LM_SHAPE(N, T, 1)), *ys = lm_array_new(LM_FLOAT32, LM_SHAPE(N, 1));
  rng_state = 9;
  for (int i = 0; i < N; i++) {
    double s = 0;
    for (int t = 0; t < T; t++) s += lm_array_f32(xs)[i * T + t] = rng_uniform(-1, 1);
    lm_array_f32(ys)[i] = (float)(s / T);
  }
  lm_history *hist = lm_fit(m, LM_FEED(xs), LM_FEED(ys), .epochs = 30, .batch_size = 16, .verbose = LM_SILENT);
  assert_non_null(hist);
  const double *loss = lm_history_get(hist, "loss");
  assert_true(loss[29] < 0.5 * loss[0]);
  lm_history_free(hist);
  lm_array_free(xs);
  lm_array_free(ys);
  lm_session_clear();
}

/* ---- 4. Parity with Keras ---- */

static fx_file fixture;

static int load_fixture(void **state) {
  (void)state;
  char path[4096];
  fx_source_path(path, sizeof path, "tests/fixtures/keras_rnn.txt");
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

static long attr_int(const fx_case *c, const char *key) {
  const char *v = fx_attr_get(c, key);
  return v ? strtol(v, NULL, 10) : 0;
}

static lm_rnn_opts opts_of(const fx_case *c) {
  lm_rnn_opts o = {0};
  o.return_sequences = attr_int(c, "return_sequences");
  o.return_state = attr_int(c, "return_state");
  o.go_backwards = attr_int(c, "go_backwards");
  o.no_bias = fx_attr_get(c, "use_bias") && !attr_int(c, "use_bias");
  o.no_reset_after = fx_attr_get(c, "reset_after") && !attr_int(c, "reset_after");
  const char *act = fx_attr_get(c, "activation");
  if (act) {
    int a = lm_activation_from_name(act);
    assert_true(a > 0);
    o.activation = (lm_activation)a;
  }
  return o;
}

static lm_layer *recurrent_of(const char *cls, int units, lm_rnn_opts o) {
  if (!strcmp(cls, "LSTM")) return lm_lstm_new(units, o);
  if (!strcmp(cls, "GRU")) return lm_gru_new(units, o);
  if (!strcmp(cls, "SimpleRNN")) return lm_simple_rnn_new(units, o);
  fail_msg("no recurrent layer %s", cls);
  return NULL;
}

static lm_merge_mode merge_of(const char *mode) {
  if (!strcmp(mode, "sum")) return LM_MERGE_SUM;
  if (!strcmp(mode, "mul")) return LM_MERGE_MUL;
  if (!strcmp(mode, "ave")) return LM_MERGE_AVE;
  assert_string_equal(mode, "concat");
  return LM_MERGE_CONCAT;
}

/* The case's model: Input -> [Embedding ->] recurrent layer or Bidirectional. */
static lm_model *model_of(const fx_case *c, const fx_array *x) {
  const char *layer = fx_attr_get(c, "layer");
  assert_non_null(layer);
  lm_tensor *in, *h;
  if (!strcmp(layer, "Embedding")) {
    in = h = lm_input(LM_SHAPE(x->dim[1]), .dtype = LM_INT32);
    h = lm_call(lm_embedding((int)attr_int(c, "input_dim"), (int)attr_int(c, "output_dim"),
                             .mask_zero = attr_int(c, "mask_zero")),
                h);
    layer = fx_attr_get(c, "next_layer");
    if (!layer) return lm_model_new(LM_TENSORS(in), LM_TENSORS(h));
  } else {
    in = h = lm_input(LM_SHAPE(x->dim[1], x->dim[2]));
  }
  int units = (int)attr_int(c, "units");
  lm_layer *l;
  if (!strcmp(layer, "Bidirectional"))
    l = lm_bidirectional(recurrent_of(fx_attr_get(c, "inner"), units, opts_of(c)),
                         .merge_mode = merge_of(fx_attr_get(c, "merge_mode")));
  else l = recurrent_of(layer, units, opts_of(c));
  lm_tensors outs = lm_call_outputs(l, LM_TENSORS(h));
  return lm_model_new(LM_TENSORS(in), outs);
}

/* The model's weights in order (Keras's model.weights). */
static int model_weights(lm_model *m, lm_weight **w, int max) {
  int n = 0;
  for (int i = 0; i < lm_model_n_layers(m); i++) {
    lm_layer *l = lm_model_get_layer(m, i);
    for (int k = 0; k < l->n_weights; k++) {
      assert_true(n < max);
      w[n++] = l->weights[k];
    }
  }
  return n;
}

static lm_array *input_array(const fx_array *x, int as_int) {
  lm_shape s = {.rank = x->rank};
  for (int d = 0; d < x->rank; d++) s.dim[d] = x->dim[d];
  lm_array *a = lm_array_new(as_int ? LM_INT32 : LM_FLOAT32, s);
  assert_non_null(a);
  for (int64_t i = 0; i < x->n; i++) {
    if (as_int) lm_array_i32(a)[i] = (int32_t)x->f[i];
    else lm_array_f32(a)[i] = x->f[i];
  }
  return a;
}

static lm_array *wrap(const fx_array *a) {
  lm_shape s = {.rank = a->rank};
  for (int d = 0; d < a->rank; d++) s.dim[d] = a->dim[d];
  return lm_array_wrap(LM_FLOAT32, s, a->f);
}

static void parity_case(fx_case *c, int *bad) {
  double rtol = attr_int(c, "long") ? 1e-4 : 1e-5, atol = attr_int(c, "long") ? 1e-5 : 1e-6;
  const fx_array *x = need(c, "x");
  int int_input = !strcmp(fx_attr_get(c, "layer"), "Embedding");
  lm_model *m = model_of(c, x);
  if (lm_model_status(m) != LM_OK) fail_msg("%s: %s", c->name, lm_model_error(m));
  int n_out = (int)attr_int(c, "outputs");
  assert_int_equal(lm_model_outputs(m).n, n_out);
  assert_int_equal(lm_model_count_params(m), attr_int(c, "params"));

  /* Weights: Keras's order, names and shapes. */
  lm_weight *w[16];
  int n_w = model_weights(m, w, 16);
  char names[256];
  snprintf(names, sizeof names, "%s", fx_attr_get(c, "weights"));
  char *save = NULL, *tok = strtok_r(names, ",", &save);
  for (int i = 0; i < n_w; i++, tok = strtok_r(NULL, ",", &save)) {
    assert_non_null(tok);
    const char *slash = strrchr(w[i]->name, '/');
    assert_string_equal(slash ? slash + 1 : w[i]->name, tok);
    char an[16];
    snprintf(an, sizeof an, "w%d", i);
    const fx_array *v = need(c, an);
    assert_int_equal(w[i]->value->shape.rank, v->rank);
    for (int d = 0; d < v->rank; d++) assert_int_equal(w[i]->value->shape.dim[d], v->dim[d]);
    memcpy(lm_array_f32(w[i]->value), v->f, (size_t)v->n * sizeof(float));
  }
  assert_null(tok);

  char tag[512];
  /* Outputs through predict. */
  lm_array *xa = input_array(x, int_input);
  lm_outputs out = lm_predict(m, LM_FEED(xa), .verbose = LM_SILENT);
  if (out.n != n_out) fail_msg("%s: predict: %s", c->name, lm_last_error());
  for (int k = 0; k < n_out; k++) {
    char an[16];
    snprintf(an, sizeof an, "y%d", k);
    snprintf(tag, sizeof tag, "%s predict", c->name);
    *bad += fx_compare(tag, lm_array_f32(out.a[k]), need(c, an), rtol, atol);
  }
  lm_outputs_free(&out);

  /* Gradients of sum_k sum(y_k * r_k) through the graph. */
  lm_graph *g = lm__graph_new();
  int vin = lm__graph_input(g, LM_VALUE_INPUT, int_input ? LM_INT32 : LM_FLOAT32, lm_model_inputs(m).t[0]->shape);
  g->vals[vin].requires_grad = !int_input;
  int vout[LM_MAX_OP_IO];
  assert_int_equal(lm__model_emit(m, g, &vin, vout), n_out);
  rvec rs[LM_MAX_OP_IO];
  for (int k = 0; k < n_out; k++) {
    char an[16];
    snprintf(an, sizeof an, "r%d", k);
    const fx_array *r = need(c, an);
    rs[k] = (rvec){r->f, r->n};
  }
  int obj = emit_objective(g, vout, n_out, rs);
  lm_shape *shapes = calloc((size_t)g->n_vals, sizeof *shapes);
  assert_non_null(shapes);
  shapes[vin] = xa->shape;
  lm_plan *plan = lm__plan_new(g, shapes, 1, obj);
  free(shapes);
  assert_int_equal(plan->err.code, LM_OK);
  memcpy(plan->data[vin], xa->data, (size_t)xa->size * 4);
  lm__plan_forward(plan);
  lm__plan_backward(plan);
  for (int i = 0; i < n_w; i++) {
    char an[16];
    snprintf(an, sizeof an, "g%d", i);
    snprintf(tag, sizeof tag, "%s d %s", c->name, w[i]->name);
    const float *grad = lm__g(plan, lm__graph_param(g, w[i]));
    assert_non_null(grad);
    *bad += fx_compare(tag, grad, need(c, an), rtol, atol);
  }
  if (!int_input) {
    snprintf(tag, sizeof tag, "%s d input", c->name);
    *bad += fx_compare(tag, lm__g(plan, vin), need(c, "dx"), rtol, atol);
  }
  lm__plan_free(plan);
  lm__graph_free(g);

  /* One SGD step through fit: mse on every output. */
  if (attr_int(c, "fit")) {
    assert_int_equal(lm_compile(m, .optimizer = lm_sgd(.learning_rate = 0.1), .loss = LM_LOSSES("mse")), LM_OK);
    lm_feed y = {.n = n_out};
    for (int k = 0; k < n_out; k++) {
      char an[16];
      snprintf(an, sizeof an, "t%d", k);
      y.item[k] = wrap(need(c, an));
    }
    lm_history *h = lm_fit(m, LM_FEED(xa), y, .epochs = 1, .batch_size = (int)x->dim[0], .no_shuffle = true,
                           .verbose = LM_SILENT);
    if (!h) fail_msg("%s: fit: %s", c->name, lm_last_error());
    float loss = (float)lm_history_last(h, "loss");
    snprintf(tag, sizeof tag, "%s fit loss", c->name);
    *bad += fx_compare(tag, &loss, need(c, "loss"), rtol, atol);
    for (int i = 0; i < n_w; i++) {
      char an[24];
      snprintf(an, sizeof an, "w%d:after", i);
      snprintf(tag, sizeof tag, "%s %s after one step", c->name, w[i]->name);
      *bad += fx_compare(tag, lm_array_f32(w[i]->value), need(c, an), rtol, atol);
    }
    lm_history_free(h);
    for (int k = 0; k < n_out; k++) lm_array_free((lm_array *)y.item[k]);
  }
  lm_array_free(xa);
  lm_session_clear();
}

static void each_case(const char *prefix, int min_expected) {
  int seen = 0, bad = 0;
  for (int i = 0; i < fixture.n_cases; i++) {
    fx_case *c = &fixture.cases[i];
    if (!fx_has_prefix(c->name, prefix)) continue;
    int before = bad;
    parity_case(c, &bad);
    if (bad != before) fprintf(stderr, "FAILED: %s\n", c->name);
    c->checked = 1;
    seen++;
  }
  assert_true(seen >= min_expected);
  if (bad) fail_msg("%d value(s) differ from Keras in the %s cases", bad, prefix);
}

static void test_keras_lstm(void **state) { (void)state; each_case("lstm/", 6); }
static void test_keras_gru(void **state) { (void)state; each_case("gru/", 6); }
static void test_keras_simple_rnn(void **state) { (void)state; each_case("simple_rnn/", 3); }
static void test_keras_bidirectional(void **state) { (void)state; each_case("bidirectional/", 6); }
/* Embedding, alone and with mask_zero before recurrent layers on padded sequences */
static void test_keras_embedding_masks(void **state) { (void)state; each_case("embedding/", 10); }

static void test_every_case_checked(void **state) {
  (void)state;
  int unchecked = 0;
  for (int i = 0; i < fixture.n_cases; i++)
    if (!fixture.cases[i].checked) {
      fprintf(stderr, "  case %s was not checked\n", fixture.cases[i].name);
      unchecked++;
    }
  assert_int_equal(unchecked, 0);
  assert_true(fixture.n_cases > 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_lstm_gradients),
      cmocka_unit_test(test_gru_gradients),
      cmocka_unit_test(test_simple_rnn_gradients),
      cmocka_unit_test(test_reverse_steps_gradient),
      cmocka_unit_test(test_mask_means_padding),
      cmocka_unit_test(test_go_backwards_is_reversal),
      cmocka_unit_test(test_unknown_steps_in_the_graph),
      cmocka_unit_test(test_op_shape_errors),
      cmocka_unit_test(test_param_counts),
      cmocka_unit_test(test_weights_and_initializers),
      cmocka_unit_test(test_return_state_outputs),
      cmocka_unit_test(test_bad_input),
      cmocka_unit_test(test_unknown_length_predict),
      cmocka_unit_test(test_fit_learns),
      cmocka_unit_test(test_keras_lstm),
      cmocka_unit_test(test_keras_gru),
      cmocka_unit_test(test_keras_simple_rnn),
      cmocka_unit_test(test_keras_bidirectional),
      cmocka_unit_test(test_keras_embedding_masks),
      cmocka_unit_test(test_every_case_checked),
  };
  return cmocka_run_group_tests(tests, load_fixture, free_fixture);
}
