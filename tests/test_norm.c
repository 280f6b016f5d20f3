/* BatchNormalization and LayerNormalization.
 *
 * - Numerical gradient checks of both ops (central differences of the plan's forward against
 *   its backward): batch statistics, moving statistics (inference and a frozen layer in a
 *   training plan), masks, ranks 2 to 4, the last axis and axis 1, more channels than a chunk.
 * - Parity with real Keras (tests/fixtures/keras_norm.txt, made by
 *   tools/keras_fixtures/make_norm_fixtures.py), to 1e-5 relative: layer outputs and
 *   gradients in training and inference mode, the moving statistics after one and two
 *   training calls, and the weights after SGD steps of Input -> Dense -> BN -> Dense
 *   (also with the BatchNormalization layer frozen).
 * - Freezing, parameter counts, weight names and order, and refusals of bad input. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fixture.h"
#include "model/internal.h"
#include "ops/norm.h"

#define RTOL 1e-5
#define ATOL 1e-6

/* ---- Seeded numbers (splitmix64) ---- */

static uint64_t rng_state;

static double uniform(double lo, double hi) {
  uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  return lo + (hi - lo) * (double)(z >> 11) * (1.0 / 9007199254740992.0);
}

/* ---- A test op: the scalar sum(y * r), r a fixed array in a.p ---- */

static lm_status vdot_shape(const lm_attrs *a, const lm_shape *in, const lm_dtype *dt, int n, lm_shape *out,
                            lm_dtype *odt, char *err, size_t len) {
  out[0] = (lm_shape){.rank = 0};
  odt[0] = LM_FLOAT32;
  return LM_OK;
}

static void vdot_fwd(lm_plan *p, const lm_opnode *node) {
  const float *y = lm__f(p, node->in[0]), *r = node->a.p;
  double s = 0;
  for (int64_t i = 0; i < lm__n(p, node->in[0]); i++) s += (double)y[i] * r[i];
  lm__f(p, node->out[0])[0] = (float)s;
}

static void vdot_bwd(lm_plan *p, const lm_opnode *node) {
  const float *r = node->a.p, dz = lm__g(p, node->out[0])[0];
  float *dy = lm__g(p, node->in[0]);
  if (dy)
    for (int64_t i = 0; i < lm__n(p, node->in[0]); i++) dy[i] += dz * r[i];
}

static const lm_op_def vdot_op = {"vdot", 1, vdot_shape, vdot_fwd, vdot_bwd, 0, false, 0, 0};

/* ---- The gradient checker ---- */

#define MAX_FEEDS 12

typedef struct gcheck {
  lm_graph *g;
  int id[MAX_FEEDS];
  float *data[MAX_FEEDS];
  lm_shape shape[MAX_FEEDS];
  int n;
  float *r; /* the objective's weights */
  int y, loss;
  lm_plan *plan;
} gcheck;

static void gk_init(gcheck *t, uint64_t seed) {
  memset(t, 0, sizeof *t);
  rng_state = seed;
  t->g = lm__graph_new();
  assert_non_null(t->g);
}

static void gk_free(gcheck *t) {
  lm__plan_free(t->plan);
  lm__graph_free(t->g);
  for (int k = 0; k < t->n; k++) free(t->data[k]);
  free(t->r);
}

/* A fed input of a concrete shape (fed with LM_NONE batch in the graph), uniform in [lo, hi]. */
static int gk_input(gcheck *t, lm_shape s, lm_dtype dt, bool grad, double lo, double hi) {
  assert_true(t->n < MAX_FEEDS);
  lm_shape sym = s;
  int id = lm__graph_input(t->g, LM_VALUE_INPUT, dt, sym);
  t->g->vals[id].requires_grad = grad;
  int64_t n = lm_shape_size(s);
  float *d = calloc((size_t)n + 1, sizeof *d);
  assert_non_null(d);
  for (int64_t i = 0; i < n; i++) d[i] = (float)uniform(lo, hi);
  t->id[t->n] = id, t->data[t->n] = d, t->shape[t->n] = s;
  t->n++;
  return id;
}

static float *gk_data(gcheck *t, int id) {
  for (int k = 0; k < t->n; k++)
    if (t->id[k] == id) return t->data[k];
  fail_msg("value %d is not fed", id);
  return NULL;
}

/* Inputs of a norm op, gradients asked for x and the affine weights: x with per-channel
 * offsets so that normalizing matters. */
static int gk_x(gcheck *t, lm_shape s) { return gk_input(t, s, LM_FLOAT32, true, -1.0, 2.5); }

static void gk_objective(gcheck *t, int y) {
  t->y = y;
  int64_t n = lm_shape_size(t->g->vals[y].shape);
  if (n < 0) n = lm_shape_size(t->shape[0]); /* batch unknown in the graph: x's size */
  t->r = malloc((size_t)n * sizeof *t->r);
  assert_non_null(t->r);
  for (int64_t i = 0; i < n; i++) t->r[i] = (float)uniform(-1, 1);
  t->loss = lm__emit(t->g, &vdot_op, &y, 1, &(lm_attrs){.p = t->r});
  assert_true(t->loss >= 0);
}

static int gk_emit(gcheck *t, const lm_op_def *def, const int *in, int n, const lm_attrs *a) {
  int outs[LM_MAX_OP_IO];
  if (lm__graph_op(t->g, def, in, n, a, outs)) fail_msg("%s refused: %s", def->name, t->g->err.msg);
  return outs[0];
}

static double gk_eval(gcheck *t) {
  lm__plan_forward(t->plan);
  return lm__f(t->plan, t->loss)[0];
}

static void gk_plan(gcheck *t, int training) {
  lm_shape *shapes = calloc((size_t)t->g->n_vals, sizeof *shapes);
  assert_non_null(shapes);
  for (int k = 0; k < t->n; k++) shapes[t->id[k]] = t->shape[k];
  t->plan = lm__plan_new(t->g, shapes, training, t->loss);
  free(shapes);
  assert_non_null(t->plan);
  if (t->plan->err.code) fail_msg("plan: %s", t->plan->err.msg);
  for (int k = 0; k < t->n; k++)
    memcpy(t->plan->data[t->id[k]], t->data[k], (size_t)lm_shape_size(t->shape[k]) * sizeof(float));
}

/* Compares every asked-for gradient with central differences; analytic gradients are scaled
 * by `scale` first (1 for a real check, else a negative control). Returns the mismatches. */
static int gk_run(gcheck *t, const char *what, int training, double scale) {
  if (!t->plan) gk_plan(t, training);
  lm_plan *p = t->plan;
  gk_eval(t);
  lm__plan_backward(p);
  int bad = 0;
  for (int k = 0; k < t->n; k++) {
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
      const double eps = 2e-3;
      float orig = x[i], xp = (float)(orig + eps), xm = (float)(orig - eps);
      x[i] = xp;
      double fp = gk_eval(t);
      x[i] = xm;
      double fm = gk_eval(t);
      x[i] = orig;
      double numeric = (fp - fm) / ((double)xp - (double)xm), a = analytic[i] * scale;
      biggest = fmax(biggest, fabs(numeric));
      if (!(fabs(a - numeric) <= 1e-2 * fmax(fabs(a), fabs(numeric)) + 2e-3)) {
        if (bad < 4 && scale == 1)
          print_message("  %s: d/d(value %d)[%lld]: analytic %.7g, numerical %.7g\n", what, id, (long long)i, a,
                        numeric);
        bad++;
      }
    }
    if (!(biggest > 0.02)) fail_msg("%s: the objective hardly depends on value %d", what, id);
    free(analytic);
  }
  return bad;
}

static void gk_check(gcheck *t, const char *what, int training) {
  int bad = gk_run(t, what, training, 1.0);
  if (bad) fail_msg("%s: %d gradient elements disagree", what, bad);
}

/* Batch norm on x of shape s over `axis`: moving statistics and (optionally) gamma, beta fed
 * as inputs; mask_dt < 0 for no mask. Returns y. */
typedef struct bn_graph {
  int x, mm, mv, gamma, beta, mask, y;
} bn_graph;

static bn_graph bn_build(gcheck *t, lm_shape s, int axis, bool affine, int mask_dt, const bool *trainable) {
  bn_graph b = {.gamma = -1, .beta = -1, .mask = -1};
  int ax = axis < 0 ? axis + s.rank : axis;
  lm_shape cs = LM_SHAPE(s.dim[ax]);
  b.x = gk_x(t, s);
  b.mm = gk_input(t, cs, LM_FLOAT32, false, -0.5, 0.5);
  b.mv = gk_input(t, cs, LM_FLOAT32, false, 0.5, 2.0);
  int in[6] = {b.x, b.mm, b.mv}, n = 3;
  if (affine) {
    in[n++] = b.gamma = gk_input(t, cs, LM_FLOAT32, true, 0.5, 1.5);
    in[n++] = b.beta = gk_input(t, cs, LM_FLOAT32, true, -0.5, 0.5);
  }
  if (mask_dt >= 0) {
    lm_shape ms = s;
    ms.rank--;
    in[n++] = b.mask = gk_input(t, ms, (lm_dtype)mask_dt, false, 0, 1);
    float *m = gk_data(t, b.mask);
    for (int64_t i = 0; i < lm_shape_size(ms); i++) {
      bool keep = i % 3 != 1; /* every third step masked */
      if (mask_dt == LM_INT32) ((int32_t *)m)[i] = keep ? 7 : 0;
      else m[i] = keep ? 1.0f : 0.0f;
    }
  }
  lm_attrs a = {.i = {axis, affine, affine, mask_dt >= 0}, .f = {1e-3f, 0.99f, (float)(1.0 - 0.99)}, .p = trainable};
  b.y = gk_emit(t, &lm__op_batch_norm, in, n, &a);
  gk_objective(t, b.y);
  return b;
}

static void test_gradcheck_batch_norm_training(void **state) {
  (void)state;
  static const struct {
    const char *what;
    lm_shape s;
    int axis;
    bool affine;
    int mask_dt;
  } cases[] = {
      {"bn train rank 2 axis -1", {2, {6, 3}}, -1, true, -1},
      {"bn train rank 4 axis -1", {4, {2, 3, 2, 3}}, -1, true, -1},
      {"bn train rank 4 axis 1", {4, {2, 3, 2, 2}}, 1, true, -1},
      {"bn train rank 2 no gamma/beta", {2, {5, 2}}, -1, false, -1},
      {"bn train rank 3 masked (float mask)", {3, {3, 4, 2}}, -1, true, LM_FLOAT32},
      {"bn train rank 3 axis 1 masked (int32 mask)", {3, {3, 4, 3}}, 1, true, LM_INT32},
  };
  for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
    gcheck t;
    gk_init(&t, 100 + k);
    bn_graph b = bn_build(&t, cases[k].s, cases[k].axis, cases[k].affine, cases[k].mask_dt, NULL);
    gk_check(&t, cases[k].what, 1);
    /* The training forward moved the moving statistics (inputs here) every time it ran. */
    assert_memory_not_equal(lm__f(t.plan, b.mm), gk_data(&t, b.mm), lm__n(t.plan, b.mm) * sizeof(float));
    gk_free(&t);
  }
}

static void test_gradcheck_batch_norm_moving_statistics(void **state) {
  (void)state;
  static bool frozen = false;
  for (int k = 0; k < 4; k++) {
    /* k even: an inference plan; odd: a training plan with the layer frozen */
    lm_shape s = k < 2 ? LM_SHAPE(5, 3) : LM_SHAPE(2, 3, 2, 2);
    int axis = k < 2 ? -1 : 1;
    gcheck t;
    gk_init(&t, 200 + (uint64_t)k);
    bn_graph b = bn_build(&t, s, axis, true, -1, k % 2 ? &frozen : NULL);
    if (k % 2 == 0) { /* the moving statistics are differentiable inputs here */
      t.g->vals[b.mm].requires_grad = true;
      t.g->vals[b.mv].requires_grad = true;
    }
    gk_check(&t, k % 2 ? "bn frozen in a training plan" : "bn inference", k % 2);
    assert_memory_equal(lm__f(t.plan, b.mm), gk_data(&t, b.mm), lm__n(t.plan, b.mm) * sizeof(float));
    assert_memory_equal(lm__f(t.plan, b.mv), gk_data(&t, b.mv), lm__n(t.plan, b.mv) * sizeof(float));
    if (k % 2) assert_null(lm__g(t.plan, b.mm)); /* no gradient flows to frozen statistics */
    gk_free(&t);
  }
}

static int ln_build(gcheck *t, lm_shape s, int axis, bool gamma, bool beta, float eps) {
  int ax = axis < 0 ? axis + s.rank : axis;
  lm_shape cs = LM_SHAPE(s.dim[ax]);
  int in[3] = {gk_x(t, s)}, n = 1;
  if (gamma) in[n++] = gk_input(t, cs, LM_FLOAT32, true, 0.5, 1.5);
  if (beta) in[n++] = gk_input(t, cs, LM_FLOAT32, true, -0.5, 0.5);
  int y = gk_emit(t, &lm__op_layer_norm, in, n, &(lm_attrs){.i = {axis, gamma, beta}, .f = {eps}});
  gk_objective(t, y);
  return y;
}

static void test_gradcheck_layer_norm(void **state) {
  (void)state;
  static const struct {
    const char *what;
    lm_shape s;
    int axis;
    bool gamma, beta;
  } cases[] = {
      {"ln rank 2 axis -1", {2, {4, 5}}, -1, true, true},
      {"ln rank 4 axis -1", {4, {2, 2, 3, 4}}, -1, true, true},
      {"ln rank 4 axis 1", {4, {2, 4, 2, 3}}, 1, true, true},
      {"ln rank 3 axis 1, gamma only", {3, {2, 5, 3}}, 1, true, false},
      {"ln rank 2, no gamma/beta", {2, {3, 6}}, -1, false, false},
  };
  for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
    gcheck t;
    gk_init(&t, 300 + k);
    ln_build(&t, cases[k].s, cases[k].axis, cases[k].gamma, cases[k].beta, 1e-3f);
    gk_check(&t, cases[k].what, 1);
    gk_free(&t);
  }
}

/* The checker can fail: gradients off by 10% are flagged. */
static void test_gradcheck_negative_control(void **state) {
  (void)state;
  gcheck t;
  gk_init(&t, 400);
  bn_build(&t, LM_SHAPE(6, 3), -1, true, -1, NULL);
  int bad = gk_run(&t, "bn scaled by 1.1 (expected to mismatch)", 1, 1.1);
  assert_true(bad >= (18 + 3 + 3) / 2);
  gk_free(&t);
}

/* ---- Forward values against a plain double-precision reference, across channel chunks ---- */

static void test_forward_reference_many_channels(void **state) {
  (void)state;
  for (int k = 0; k < 4; k++) {
    /* 300 channels on the last axis, and 300 positions after axis 1: more than a chunk */
    bool batch = k < 2, last = k % 2 == 0;
    lm_shape s = LM_SHAPE(3, 2, 300);
    int axis = last ? -1 : 1;
    gcheck t;
    gk_init(&t, 500 + (uint64_t)k);
    int y;
    if (batch) y = bn_build(&t, s, axis, true, -1, NULL).y;
    else y = ln_build(&t, s, axis, true, true, 1e-3f);
    /* A large common offset, which a one-pass variance without a shift would lose; not for
     * layer norm over the 2 entries of axis 1, whose variance can be tiny: inv is then large
     * and Keras's float form x * inv + (beta - mean * inv) cancels by itself. */
    float *x0 = gk_data(&t, t.id[0]), offset = k == 3 ? 0.0f : 1000.0f;
    for (int64_t i = 0; i < lm_shape_size(s); i++) x0[i] += offset;
    gk_plan(&t, 1);
    gk_eval(&t);
    const float *x = lm__f(t.plan, t.id[0]), *out = lm__f(t.plan, y);
    const float *gamma = gk_data(&t, t.id[batch ? 3 : 1]), *beta = gk_data(&t, t.id[batch ? 4 : 2]);
    int ax = axis < 0 ? axis + s.rank : axis;
    int64_t outer = 1, C = s.dim[ax], inner = 1;
    for (int d = 0; d < ax; d++) outer *= s.dim[d];
    for (int d = ax + 1; d < s.rank; d++) inner *= s.dim[d];
    int bad = 0;
    /* groups: per channel (batch norm) or per position (layer norm) */
    int64_t groups = batch ? C : outer * inner, per = batch ? outer * inner : C;
    for (int64_t gi = 0; gi < groups; gi++) {
      double sum = 0, sq = 0;
      for (int64_t j = 0; j < per; j++) {
        int64_t e = batch ? ((j / inner) * C + gi) * inner + j % inner
                          : ((gi / inner) * C + j) * inner + gi % inner;
        sum += x[e];
      }
      double mean = sum / (double)per;
      for (int64_t j = 0; j < per; j++) {
        int64_t e = batch ? ((j / inner) * C + gi) * inner + j % inner
                          : ((gi / inner) * C + j) * inner + gi % inner;
        sq += (x[e] - mean) * (x[e] - mean);
      }
      double inv = 1 / sqrt(sq / (double)per + 1e-3);
      for (int64_t j = 0; j < per; j++) {
        int64_t e = batch ? ((j / inner) * C + gi) * inner + j % inner
                          : ((gi / inner) * C + j) * inner + gi % inner;
        int64_t c = batch ? gi : j;
        double want = (x[e] - mean) * inv * gamma[c] + beta[c];
        if (fabs(out[e] - want) > 2e-3 * fabs(want) + 2e-3 && bad++ < 4) /* x ~ 1000: float's own limit */
          print_message("  case %d, element %lld: %.7g, reference %.7g\n", k, (long long)e, (double)out[e], want);
      }
    }
    assert_int_equal(bad, 0);
    gk_free(&t);
  }
}

/* ---- Keras parity ---- */

static fx_file fixture;

static int load_fixture(void **state) {
  (void)state;
  char path[4096];
  if (fx_load(&fixture, fx_source_path(path, sizeof path, "tests/fixtures/keras_norm.txt"))) {
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

static int attr_int(const fx_case *c, const char *key) {
  const char *v = fx_attr_get(c, key);
  if (!v) fail_msg("case %s has no attribute '%s'", c->name, key);
  return (int)strtol(v, NULL, 10);
}

static double attr_double(const fx_case *c, const char *key) {
  const char *v = fx_attr_get(c, key);
  if (!v) fail_msg("case %s has no attribute '%s'", c->name, key);
  return strtod(v, NULL);
}

static void check(const fx_case *c, const char *what, const float *got, const char *array, int *bad) {
  char tag[256];
  snprintf(tag, sizeof tag, "%s %s", c->name, what);
  *bad += fx_compare(tag, got, need(c, array), RTOL, ATOL);
}

static lm_array *layer_weight(lm_layer *layer, const char *name) {
  const char *wname;
  lm_array *a;
  for (int i = 0; (a = lm_layer_weight(layer, i, &wname)); i++)
    if (!strcmp(wname, name)) return a;
  fail_msg("layer %s has no weight %s", lm_layer_name(layer), name);
  return NULL;
}

static void set_weight(lm_array *a, const fx_array *v) {
  assert_int_equal(a->size, v->n);
  memcpy(lm_array_f32(a), v->f, (size_t)v->n * sizeof(float));
}

/* Runs every case whose name starts with prefix through fn; expects `expected` of them. */
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

/* A built layer emitted into a graph of its own: x (asking for its gradient), an optional
 * mask, and the objective sum(y * r). */
typedef struct layer_graph {
  lm_graph *g;
  int x, mask, y, loss;
} layer_graph;

static layer_graph layer_graph_new(lm_layer *layer, const fx_array *x, bool masked, const float *r) {
  layer_graph lg = {.g = lm__graph_new(), .mask = -1};
  assert_non_null(lg.g);
  lm_shape s = {.rank = x->rank};
  for (int d = 0; d < x->rank; d++) s.dim[d] = d ? x->dim[d] : LM_NONE;
  /* build the layer through the public call, as a model would */
  lm_shape in_shape = {.rank = x->rank - 1};
  for (int d = 1; d < x->rank; d++) in_shape.dim[d - 1] = x->dim[d];
  lm_tensor *t = lm_call(layer, lm_input_new(in_shape, (lm_input_opts){0}));
  assert_int_equal(lm_tensor_status(t), LM_OK);
  lg.x = lm__graph_input(lg.g, LM_VALUE_INPUT, LM_FLOAT32, s);
  lg.g->vals[lg.x].requires_grad = true;
  if (masked) {
    lm_shape ms = s;
    ms.rank--;
    lg.mask = lm__graph_input(lg.g, LM_VALUE_INPUT, LM_FLOAT32, ms);
    lg.g->vals[lg.x].mask = lg.mask;
  }
  lg.g->who = layer->name;
  assert_int_equal(layer->vt->emit(layer, lg.g, &lg.x, 1, &lg.y), 1);
  lg.loss = lm__emit(lg.g, &vdot_op, &lg.y, 1, &(lm_attrs){.p = r});
  assert_true(lg.loss >= 0);
  return lg;
}

static lm_plan *layer_plan(layer_graph *lg, const fx_array *x, int training) {
  lm_shape *shapes = calloc((size_t)lg->g->n_vals, sizeof *shapes);
  assert_non_null(shapes);
  shapes[lg->x].rank = x->rank;
  for (int d = 0; d < x->rank; d++) shapes[lg->x].dim[d] = x->dim[d];
  if (lg->mask >= 0) {
    shapes[lg->mask] = shapes[lg->x];
    shapes[lg->mask].rank--;
  }
  lm_plan *p = lm__plan_new(lg->g, shapes, training, lg->loss);
  free(shapes);
  assert_non_null(p);
  if (p->err.code) fail_msg("plan: %s", p->err.msg);
  return p;
}

static void feed(lm_plan *p, int id, const fx_array *a) {
  assert_int_equal(lm__n(p, id), a->n);
  memcpy(lm__f(p, id), a->f, (size_t)a->n * sizeof(float));
}

static float *param_grad(lm_plan *p, layer_graph *lg, lm_layer *layer, const char *name) {
  for (int i = 0; i < layer->n_weights; i++)
    if (!strcmp(layer->weights[i]->name, name)) {
      float *g = lm__g(p, lm__graph_param(lg->g, layer->weights[i]));
      assert_non_null(g);
      return g;
    }
  fail_msg("no weight %s", name);
  return NULL;
}

/* Gradients of gamma and beta (where the layer has them) against "d<name><suffix>". */
static void check_param_grads(fx_case *c, lm_plan *p, layer_graph *lg, lm_layer *layer, const char *suffix,
                              int *bad) {
  static const char *const names[] = {"gamma", "beta"};
  for (int k = 0; k < 2; k++) {
    char array[64];
    snprintf(array, sizeof array, "d%s%s", names[k], suffix);
    if (!fx_array_get(c, array)) continue;
    check(c, array, param_grad(p, lg, layer, names[k]), array, bad);
  }
}

static void bn_case(fx_case *c, int *bad) {
  bool center = attr_int(c, "center"), scale = attr_int(c, "scale"), masked = attr_int(c, "mask");
  lm_layer *bn = lm_batch_normalization(.axis = attr_int(c, "axis"), .momentum = attr_double(c, "momentum"),
                                        .epsilon = attr_double(c, "epsilon"), .no_center = !center,
                                        .no_scale = !scale);
  const fx_array *x1 = need(c, "x1"), *x2 = need(c, "x2");
  layer_graph lg = layer_graph_new(bn, x1, masked, need(c, "r")->f);
  /* Keras's weights, in Keras's order */
  static const char *const order[] = {"gamma", "beta", "moving_mean", "moving_variance"};
  int n = 0;
  for (int k = 0; k < 4; k++) {
    char start[64];
    snprintf(start, sizeof start, "start.%s", order[k]);
    if (!fx_array_get(c, start)) continue;
    const char *wname;
    lm_array *w = lm_layer_weight(bn, n++, &wname);
    assert_non_null(w);
    assert_string_equal(wname, order[k]);
    set_weight(w, need(c, start));
  }
  assert_int_equal(bn->n_weights, n);

  lm_plan *train = layer_plan(&lg, x1, 1);
  feed(train, lg.x, x1);
  if (masked) feed(train, lg.mask, need(c, "mask"));
  lm__plan_forward(train);
  check(c, "training output", lm__f(train, lg.y), "y1", bad);
  check(c, "moving mean after one step", lm_array_f32(layer_weight(bn, "moving_mean")), "moving_mean1", bad);
  check(c, "moving variance after one step", lm_array_f32(layer_weight(bn, "moving_variance")), "moving_variance1",
        bad);
  lm__plan_backward(train);
  check(c, "training dx", lm__g(train, lg.x), "dx1", bad);
  check_param_grads(c, train, &lg, bn, "1", bad);
  feed(train, lg.x, x2);
  lm__plan_forward(train);
  check(c, "second training output", lm__f(train, lg.y), "y2", bad);
  check(c, "moving mean after two steps", lm_array_f32(layer_weight(bn, "moving_mean")), "moving_mean2", bad);
  check(c, "moving variance after two steps", lm_array_f32(layer_weight(bn, "moving_variance")), "moving_variance2",
        bad);

  lm_plan *infer = layer_plan(&lg, x1, 0);
  feed(infer, lg.x, x1);
  if (masked) feed(infer, lg.mask, need(c, "mask"));
  lm__plan_forward(infer);
  check(c, "inference output", lm__f(infer, lg.y), "y_inf", bad);
  lm__plan_backward(infer);
  check(c, "inference dx", lm__g(infer, lg.x), "dx_inf", bad);
  check_param_grads(c, infer, &lg, bn, "_inf", bad);
  /* inference left the statistics where two training steps put them */
  check(c, "moving mean after inference", lm_array_f32(layer_weight(bn, "moving_mean")), "moving_mean2", bad);
  lm__plan_free(train);
  lm__plan_free(infer);
  lm__graph_free(lg.g);
  lm_session_clear();
}

static void test_keras_batch_normalization(void **state) {
  (void)state;
  each_case("bn/", 8, bn_case);
}

static void ln_case(fx_case *c, int *bad) {
  bool center = attr_int(c, "center"), scale = attr_int(c, "scale");
  lm_layer *ln = lm_layer_normalization(.axis = attr_int(c, "axis"), .epsilon = attr_double(c, "epsilon"),
                                        .no_center = !center, .no_scale = !scale);
  const fx_array *x = need(c, "x");
  layer_graph lg = layer_graph_new(ln, x, false, need(c, "r")->f);
  assert_int_equal(ln->n_weights, center + scale);
  if (scale) set_weight(layer_weight(ln, "gamma"), need(c, "start.gamma"));
  if (center) set_weight(layer_weight(ln, "beta"), need(c, "start.beta"));
  for (int training = 0; training < 2; training++) { /* the same in both modes */
    lm_plan *p = layer_plan(&lg, x, training);
    feed(p, lg.x, x);
    lm__plan_forward(p);
    check(c, "output", lm__f(p, lg.y), "y", bad);
    lm__plan_backward(p);
    check(c, "dx", lm__g(p, lg.x), "dx", bad);
    check_param_grads(c, p, &lg, ln, "", bad);
    lm__plan_free(p);
  }
  lm__graph_free(lg.g);
  lm_session_clear();
}

static void test_keras_layer_normalization(void **state) {
  (void)state;
  each_case("ln/", 6, ln_case);
}

static lm_array *wrap(const fx_array *a) {
  lm_shape s = {.rank = a->rank};
  for (int d = 0; d < a->rank; d++) s.dim[d] = a->dim[d];
  lm_array *arr = lm_array_wrap(LM_FLOAT32, s, a->f);
  assert_non_null(arr);
  return arr;
}

static lm_model *dense_bn_dense(lm_layer **bn) {
  lm_tensor *x = lm_input(LM_SHAPE(4), .name = "x");
  lm_tensor *h = lm_call(lm_dense(5, .name = "d1"), x);
  *bn = lm_batch_normalization(.name = "bn");
  h = lm_call(*bn, h);
  lm_model *m = lm_model_new(LM_TENSORS(x), LM_TENSORS(lm_call(lm_dense(2, .name = "d2"), h)));
  assert_int_equal(lm_model_status(m), LM_OK);
  return m;
}

/* "<layer>.<weight><suffix>" of the model */
static void each_weight(fx_case *c, lm_model *m, const char *suffix, bool set, int *bad) {
  int n = 0;
  for (int i = 0; i < lm_model_n_layers(m); i++) {
    lm_layer *layer = lm_model_get_layer(m, i);
    const char *wname;
    lm_array *w;
    for (int k = 0; (w = lm_layer_weight(layer, k, &wname)); k++, n++) {
      char array[160];
      snprintf(array, sizeof array, "%s.%s%s", lm_layer_name(layer), wname, suffix);
      if (set) set_weight(w, need(c, array));
      else check(c, array, lm_array_f32(w), array, bad);
    }
  }
  assert_int_equal(n, 2 + 4 + 2);
}

static void train_case(fx_case *c, int *bad) {
  lm_layer *bn;
  lm_model *m = dense_bn_dense(&bn);
  each_weight(c, m, ":before", true, bad);
  if (attr_int(c, "frozen")) lm_layer_set_trainable(bn, false);
  assert_int_equal(lm_compile(m, .optimizer = lm_sgd(.learning_rate = attr_double(c, "learning_rate")),
                              .loss = LM_LOSSES("mse")),
                   LM_OK);
  lm_array *x = wrap(need(c, "x")), *y = wrap(need(c, "y"));
  int batch = attr_int(c, "batch_size");
  assert_int_equal(x->shape.dim[0], batch * attr_int(c, "steps"));
  lm_history *h = lm_fit(m, LM_FEED(x), LM_FEED(y), .epochs = 1, .batch_size = batch, .no_shuffle = true,
                         .verbose = LM_SILENT);
  if (!h) fail_msg("fit: %s", lm_last_error());
  float loss = (float)lm_history_last(h, "loss");
  check(c, "loss (mean over the steps)", &loss, "loss", bad);
  each_weight(c, m, ":after", false, bad);
  lm_history_free(h);
  lm_array_free(x);
  lm_array_free(y);
  lm_session_clear();
}

static void test_keras_train_steps(void **state) {
  (void)state;
  each_case("train/", 3, train_case);
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

/* ---- Freezing ---- */

static char *summary_text(const lm_model *m) {
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  assert_non_null(f);
  lm_summary(m, f);
  fclose(f);
  assert_non_null(buf);
  return buf;
}

static void fill(lm_array *a, uint64_t seed, double lo, double hi) {
  rng_state = seed;
  for (int64_t i = 0; i < a->size; i++) lm_array_f32(a)[i] = (float)uniform(lo, hi);
}

static void test_frozen_batch_normalization(void **state) {
  (void)state;
  lm_set_seed(7);
  lm_layer *bn;
  lm_model *m = dense_bn_dense(&bn);
  fill(layer_weight(bn, "moving_mean"), 1, -0.5, 0.5);
  fill(layer_weight(bn, "moving_variance"), 2, 0.5, 2.0);
  fill(layer_weight(bn, "gamma"), 3, 0.5, 1.5);
  lm_layer_set_trainable(bn, false);
  assert_int_equal(lm_model_count_params(m), 25 + 20 + 12);
  assert_int_equal(lm_model_count_trainable_params(m), 25 + 12);
  char *text = summary_text(m);
  assert_non_null(strstr(text, "Non-trainable params: 20\n")); /* all 4 weights of the frozen layer */
  free(text);

  lm_compile(m, .optimizer = lm_sgd(.learning_rate = 0.1), .loss = LM_LOSSES("mse"));
  lm_array *x = lm_array_new(LM_FLOAT32, LM_SHAPE(16, 4)), *y = lm_array_new(LM_FLOAT32, LM_SHAPE(16, 2));
  fill(x, 4, -1, 2), fill(y, 5, -1, 1);
  float saved[4][5];
  for (int k = 0; k < 4; k++) memcpy(saved[k], lm_array_f32(lm_layer_weight(bn, k, NULL)), sizeof saved[k]);
  /* A frozen layer normalizes with the moving statistics: the loss fit reports for one full
   * batch is the loss evaluate computes in inference mode. */
  lm_history *e = lm_evaluate(m, LM_FEED(x), LM_FEED(y), .batch_size = 16, .verbose = LM_SILENT);
  lm_history *h = lm_fit(m, LM_FEED(x), LM_FEED(y), .epochs = 1, .batch_size = 16, .verbose = LM_SILENT);
  assert_true(e && h);
  assert_float_equal(lm_history_last(h, "loss"), lm_history_last(e, "loss"), 1e-6);
  lm_history_free(h);
  h = lm_fit(m, LM_FEED(x), LM_FEED(y), .epochs = 2, .batch_size = 4, .verbose = LM_SILENT);
  assert_non_null(h);
  for (int k = 0; k < 4; k++) assert_memory_equal(saved[k], lm_array_f32(lm_layer_weight(bn, k, NULL)), sizeof saved[k]);
  lm_history_free(h);

  /* Unfrozen without recompiling, the next fit uses batch statistics and moves them all. */
  lm_layer_set_trainable(bn, true);
  h = lm_fit(m, LM_FEED(x), LM_FEED(y), .epochs = 1, .batch_size = 16, .verbose = LM_SILENT);
  assert_non_null(h);
  assert_true(fabs(lm_history_last(h, "loss") - lm_history_last(e, "loss")) > 1e-4);
  for (int k = 0; k < 4; k++)
    assert_memory_not_equal(saved[k], lm_array_f32(lm_layer_weight(bn, k, NULL)), sizeof saved[k]);
  lm_history_free(h);
  lm_history_free(e);
  lm_array_free(x);
  lm_array_free(y);
  lm_session_clear();
}

/* predict uses the moving statistics: y = (x - mm) / sqrt(mv + eps) * gamma + beta */
static void test_predict_uses_moving_statistics(void **state) {
  (void)state;
  lm_tensor *in = lm_input(LM_SHAPE(3));
  lm_layer *bn = lm_batch_normalization(.epsilon = 0.01);
  lm_model *m = lm_model_new(LM_TENSORS(in), LM_TENSORS(lm_call(bn, in)));
  const float gamma[3] = {1, 2, 0.5f}, beta[3] = {0, 1, -1}, mm[3] = {0.5f, -1, 2}, mv[3] = {1, 4, 0.25f};
  memcpy(lm_array_f32(layer_weight(bn, "gamma")), gamma, sizeof gamma);
  memcpy(lm_array_f32(layer_weight(bn, "beta")), beta, sizeof beta);
  memcpy(lm_array_f32(layer_weight(bn, "moving_mean")), mm, sizeof mm);
  memcpy(lm_array_f32(layer_weight(bn, "moving_variance")), mv, sizeof mv);
  lm_array *x = lm_array_new(LM_FLOAT32, LM_SHAPE(2, 3));
  fill(x, 9, -2, 2);
  lm_outputs out = lm_predict(m, LM_FEED(x), .verbose = LM_SILENT);
  assert_int_equal(out.n, 1);
  for (int i = 0; i < 6; i++) {
    int c = i % 3;
    double want = (lm_array_f32(x)[i] - mm[c]) / sqrt(mv[c] + 0.01) * gamma[c] + beta[c];
    assert_float_equal(lm_array_f32(out.a[0])[i], want, 1e-5);
  }
  assert_memory_equal(lm_array_f32(layer_weight(bn, "moving_mean")), mm, sizeof mm);
  lm_outputs_free(&out);
  lm_array_free(x);
  lm_session_clear();
}

/* ---- Weights, names, counts ---- */

static void test_weights_and_counts(void **state) {
  (void)state;
  lm_tensor *in = lm_input(LM_SHAPE(8, 8, 32));
  lm_layer *bn = lm_batch_normalization();
  lm_tensor *h = lm_call(bn, in);
  assert_int_equal(lm_tensor_status(h), LM_OK);
  assert_string_equal(lm_layer_name(bn), "batch_normalization");
  assert_string_equal(lm_layer_class(bn), "BatchNormalization");
  assert_int_equal(lm_layer_count_params(bn), 128);
  static const char *const names[] = {"gamma", "beta", "moving_mean", "moving_variance"};
  static const float init[] = {1, 0, 0, 1};
  static const bool trainable[] = {true, true, false, false};
  for (int k = 0; k < 4; k++) {
    const char *wname;
    lm_array *w = lm_layer_weight(bn, k, &wname);
    assert_non_null(w);
    assert_string_equal(wname, names[k]);
    assert_int_equal(w->shape.rank, 1);
    assert_int_equal(w->shape.dim[0], 32);
    assert_true(lm_array_f32(w)[0] == init[k] && lm_array_f32(w)[31] == init[k]);
    assert_int_equal(bn->weights[k]->trainable, trainable[k]);
  }
  lm_layer *ln = lm_layer_normalization();
  lm_tensor *y = lm_call(ln, h);
  assert_string_equal(lm_layer_name(ln), "layer_normalization");
  assert_string_equal(lm_layer_class(ln), "LayerNormalization");
  assert_int_equal(lm_layer_count_params(ln), 64);
  lm_layer *bn2 = lm_batch_normalization(.axis = 1, .no_scale = true);
  lm_tensor *z = lm_call(bn2, y);
  assert_string_equal(lm_layer_name(bn2), "batch_normalization_1");
  assert_int_equal(lm_layer_count_params(bn2), 3 * 8);
  const char *first;
  lm_layer_weight(bn2, 0, &first);
  assert_string_equal(first, "beta");
  lm_model *m = lm_model_new(LM_TENSORS(in), LM_TENSORS(z));
  assert_int_equal(lm_model_status(m), LM_OK);
  assert_int_equal(lm_model_count_params(m), 128 + 64 + 24);
  assert_int_equal(lm_model_count_trainable_params(m), 64 + 64 + 8);
  char *text = summary_text(m);
  assert_non_null(strstr(text, "batch_normalization (BatchN")); /* wrapped as in Keras */
  assert_non_null(strstr(text, "Non-trainable params: 80\n"));
  free(text);
  /* shapes pass through */
  lm_shape s = lm_tensor_shape(z);
  assert_int_equal(s.rank, 4);
  assert_int_equal(s.dim[3], 32);
  lm_session_clear();
}

/* ---- Bad input ---- */

static void expect_error(lm_tensor *t, const char *a, const char *b) {
  assert_int_not_equal(lm_tensor_status(t), LM_OK);
  const char *msg = lm_tensor_error(t);
  if (!strstr(msg, a) || (b && !strstr(msg, b))) fail_msg("message '%s' lacks '%s' or '%s'", msg, a, b ? b : "");
}

static void test_bad_input(void **state) {
  (void)state;
  /* an axis the input does not have */
  expect_error(lm_call(lm_batch_normalization(.axis = 2, .name = "bn_axis"), lm_input(LM_SHAPE(4))), "bn_axis",
               "(None, 4)");
  expect_error(lm_call(lm_layer_normalization(.axis = -3, .name = "ln_axis"), lm_input(LM_SHAPE(4))), "ln_axis",
               "(None, 4)");
  /* the batch axis has no size to normalize over */
  expect_error(lm_call(lm_batch_normalization(.name = "bn_rank1"), lm_input((lm_shape){.rank = 0})), "bn_rank1", "(None,)");
  /* an unknown size on the normalized axis */
  expect_error(lm_call(lm_batch_normalization(.axis = 1, .name = "bn_none"), lm_input(LM_SHAPE(LM_NONE, 3))),
               "bn_none", "(None, None, 3)");
  expect_error(lm_call(lm_layer_normalization(.name = "ln_none"), lm_input(LM_SHAPE(3, LM_NONE))), "ln_none",
               "defined dimension");
  /* int32 input */
  expect_error(lm_call(lm_batch_normalization(.name = "bn_int"), lm_input(LM_SHAPE(5), .dtype = LM_INT32)),
               "bn_int", "float32");
  expect_error(lm_call(lm_layer_normalization(.name = "ln_int"), lm_input(LM_SHAPE(5), .dtype = LM_INT32)),
               "ln_int", "float32");
  /* a shared layer called on another number of channels, or another rank */
  lm_layer *shared = lm_batch_normalization(.name = "bn_shared");
  assert_int_equal(lm_tensor_status(lm_call(shared, lm_input(LM_SHAPE(4)))), LM_OK);
  expect_error(lm_call(shared, lm_input(LM_SHAPE(6))), "bn_shared", "(None, 6)");
  expect_error(lm_call(shared, lm_input(LM_SHAPE(2, 4))), "bn_shared", "ndim=2, found ndim=3");
  lm_layer *ln_shared = lm_layer_normalization(.name = "ln_shared");
  assert_int_equal(lm_tensor_status(lm_call(ln_shared, lm_input(LM_SHAPE(4)))), LM_OK);
  expect_error(lm_call(ln_shared, lm_input(LM_SHAPE(2, 3))), "ln_shared", "(None, 2, 3)");
  /* a failed first call leaves the layer usable */
  lm_layer *retry = lm_batch_normalization(.name = "bn_retry");
  expect_error(lm_call(retry, lm_input(LM_SHAPE(3), .dtype = LM_INT32)), "bn_retry", NULL);
  assert_int_equal(lm_tensor_status(lm_call(retry, lm_input(LM_SHAPE(3)))), LM_OK);
  /* options out of range */
  assert_int_not_equal(lm_layer_status(lm_batch_normalization(.momentum = -0.5)), LM_OK);
  assert_int_not_equal(lm_layer_status(lm_batch_normalization(.momentum = 1.5)), LM_OK);
  assert_int_not_equal(lm_layer_status(lm_layer_normalization(.epsilon = -1)), LM_OK);
  assert_int_not_equal(lm_layer_status(lm_layer_normalization(.epsilon = NAN)), LM_OK);
  assert_non_null(strstr(lm_layer_error(lm_batch_normalization(.momentum = 2)), "momentum"));

  /* the op's own rule: a mask that does not fit the input */
  lm_graph *g = lm__graph_new();
  int x = lm__graph_input(g, LM_VALUE_INPUT, LM_FLOAT32, LM_SHAPE(LM_NONE, 4, 3));
  int c = lm__graph_input(g, LM_VALUE_INPUT, LM_FLOAT32, LM_SHAPE(3));
  int mask = lm__graph_input(g, LM_VALUE_INPUT, LM_FLOAT32, LM_SHAPE(LM_NONE, 5));
  g->who = "bn_mask";
  int outs[2];
  assert_int_not_equal(lm__graph_op(g, &lm__op_batch_norm, (int[]){x, c, c, mask}, 4,
                                    &(lm_attrs){.i = {-1, 0, 0, 1}, .f = {1e-3f, 0.99f, 0.01f}}, outs),
                       0);
  assert_non_null(strstr(g->err.msg, "bn_mask"));
  assert_non_null(strstr(g->err.msg, "(None, 5)"));
  lm__graph_free(g);
  lm_session_clear();
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_gradcheck_batch_norm_training),
      cmocka_unit_test(test_gradcheck_batch_norm_moving_statistics),
      cmocka_unit_test(test_gradcheck_layer_norm),
      cmocka_unit_test(test_gradcheck_negative_control),
      cmocka_unit_test(test_forward_reference_many_channels),
      cmocka_unit_test(test_keras_batch_normalization),
      cmocka_unit_test(test_keras_layer_normalization),
      cmocka_unit_test(test_keras_train_steps),
      cmocka_unit_test(test_every_case_checked),
      cmocka_unit_test(test_frozen_batch_normalization),
      cmocka_unit_test(test_predict_uses_moving_statistics),
      cmocka_unit_test(test_weights_and_counts),
      cmocka_unit_test(test_bad_input),
  };
  return cmocka_run_group_tests(tests, load_fixture, free_fixture);
}
