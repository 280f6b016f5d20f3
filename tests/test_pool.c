/* Pooling: numerical gradient checks of every pooling op, parity with real Keras on the
 * fixtures of tests/fixtures/keras_pool.txt (made by tools/keras_fixtures/make_pool_fixtures.py:
 * outputs, input gradients, one SGD step of small models, inputs of unknown length), and
 * the layers' names, shapes and refusals of bad input. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>

#include "fixture.h"
#include "model/internal.h"
#include "ops/pool.h"

#define RTOL 1e-5
#define ATOL 1e-6

/* ---- A seeded generator (splitmix64) ---- */

static uint64_t rng_state;

static uint64_t rng_next(void) {
  uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

static float rng_uniform(float lo, float hi) {
  return lo + (hi - lo) * (float)((double)(rng_next() >> 11) * (1.0 / 9007199254740992.0));
}

/* ---- A test-only objective: sum(y * r), with r in a.p ---- */

typedef struct vec {
  const float *f;
  int64_t n;
} vec;

static lm_status dot_r_shape(const lm_attrs *a, const lm_shape *in, const lm_dtype *dt, int n, lm_shape *out,
                             lm_dtype *odt, char *err, size_t len) {
  const vec *r = a->p;
  if (lm_shape_size(in[0]) >= 0 && lm_shape_size(in[0]) != r->n) {
    snprintf(err, len, "r holds %lld values", (long long)r->n);
    return LM_ERROR_SHAPE;
  }
  out[0] = (lm_shape){.rank = 0};
  odt[0] = LM_FLOAT32;
  return LM_OK;
}

static void dot_r_fwd(lm_plan *p, const lm_opnode *node) {
  const vec *r = node->a.p;
  const float *y = lm__f(p, node->in[0]);
  double s = 0;
  for (int64_t i = 0; i < r->n; i++) s += (double)y[i] * r->f[i];
  lm__f(p, node->out[0])[0] = (float)s;
}

static void dot_r_bwd(lm_plan *p, const lm_opnode *node) {
  const vec *r = node->a.p;
  float *dy = lm__g(p, node->in[0]), dz = lm__g(p, node->out[0])[0];
  if (!dy) return;
  for (int64_t i = 0; i < r->n; i++) dy[i] += dz * r->f[i];
}

static const lm_op_def dot_r_op = {"dot_r", 1, dot_r_shape, dot_r_fwd, dot_r_bwd, 0, false, 0, 0};

/* ---- Gradient checks of the ops ---- */

/* What one check runs: the op on x (and an optional mask), objective
 * sum(op(x) * r) + sum(x * r2). The second use of x makes the check fail if a backward
 * overwrote its input's gradient instead of adding to it. */
typedef struct op_check {
  const char *what;
  const lm_op_def *def;
  lm_attrs a;
  lm_shape xs;
  bool distinct;      /* inputs 0.1 apart, for max: no ties, and eps never crosses a kink */
  const float *mask;  /* (batch, steps) or NULL */
  lm_dtype mask_dtype;
} op_check;

/* Inputs of a max check: a shuffled grid of distinct values with a random offset. */
static void fill_distinct(float *x, int64_t n) {
  for (int64_t i = 0; i < n; i++) x[i] = 0.1f * (float)(i - n / 2);
  for (int64_t i = n - 1; i > 0; i--) {
    int64_t j = (int64_t)(rng_next() % (uint64_t)(i + 1));
    float t = x[i];
    x[i] = x[j], x[j] = t;
  }
  float off = rng_uniform(-0.03f, 0.03f);
  for (int64_t i = 0; i < n; i++) x[i] += off;
}

/* Poisons every output buffer of the op, so that an element forward forgets to write
 * shows up (as a NaN in the objective, or an out-of-range argmax under ASan). */
static void poison_outputs(lm_plan *p, const lm_opnode *node) {
  for (int k = 0; k < node->n_out; k++) memset(p->data[node->out[k]], 0x7f, (size_t)lm__n(p, node->out[k]) * 4);
}

static double eval(lm_plan *p, const lm_opnode *node, int obj) {
  poison_outputs(p, node);
  lm__plan_forward(p);
  return lm__f(p, obj)[0];
}

static void run_op_check(const op_check *c) {
  lm_graph *g = lm__graph_new();
  assert_non_null(g);
  int x = lm__graph_input(g, LM_VALUE_INPUT, LM_FLOAT32, c->xs), m = -1;
  g->vals[x].requires_grad = true;
  int ins[2] = {x, -1}, outs[2];
  lm_shape ms = LM_SHAPE(c->xs.dim[0], c->xs.dim[1]);
  if (c->mask) ins[1] = m = lm__graph_input(g, LM_VALUE_INPUT, c->mask_dtype, ms);
  if (lm__graph_op(g, c->def, ins, c->mask ? 2 : 1, &c->a, outs)) fail_msg("%s: %s", c->what, g->err.msg);
  int y = outs[0];
  int64_t nx = lm_shape_size(c->xs), ny = lm_shape_size(g->vals[y].shape);
  assert_true(ny > 0);
  float *r = malloc((size_t)ny * sizeof *r), *r2 = malloc((size_t)nx * sizeof *r2);
  float *x0 = malloc((size_t)nx * sizeof *x0), *analytic = malloc((size_t)nx * sizeof *analytic);
  assert_true(r && r2 && x0 && analytic);
  for (int64_t i = 0; i < ny; i++) r[i] = rng_uniform(-1, 1);
  for (int64_t i = 0; i < nx; i++) r2[i] = rng_uniform(-0.5f, 0.5f);
  if (c->distinct) fill_distinct(x0, nx);
  else
    for (int64_t i = 0; i < nx; i++) x0[i] = rng_uniform(-2, 2);
  vec rv = {r, ny}, r2v = {r2, nx};
  int o1 = lm__emit(g, &dot_r_op, &y, 1, &(lm_attrs){.p = &rv});
  int o2 = lm__emit(g, &dot_r_op, &x, 1, &(lm_attrs){.p = &r2v});
  static const float ones[2] = {1, 1};
  int obj = lm__emit(g, &lm__op_weighted_sum, (int[]){o1, o2}, 2, &(lm_attrs){.p = ones});
  assert_true(o1 >= 0 && o2 >= 0 && obj >= 0);
  g->vals[y].keep = true;

  lm_shape shapes[16];
  assert_true(g->n_vals <= 16);
  shapes[x] = c->xs;
  if (m >= 0) shapes[m] = ms;
  lm_plan *p = lm__plan_new(g, shapes, 1, obj);
  assert_non_null(p);
  if (p->err.code) fail_msg("%s: plan: %s", c->what, p->err.msg);
  const lm_opnode *node = &g->ops[0];
  memcpy(lm__f(p, x), x0, (size_t)nx * sizeof *x0);
  if (m >= 0) {
    int64_t nm = lm_shape_size(ms);
    for (int64_t i = 0; i < nm; i++) {
      if (c->mask_dtype == LM_INT32) lm__i(p, m)[i] = (int32_t)c->mask[i];
      else lm__f(p, m)[i] = c->mask[i];
    }
  }
  double f0 = eval(p, node, obj);
  assert_true(isfinite(f0));
  lm__plan_backward(p);
  assert_non_null(lm__g(p, x));
  memcpy(analytic, lm__g(p, x), (size_t)nx * sizeof *analytic);
  if (m >= 0 && lm__g(p, m)) fail_msg("%s: the mask got a gradient buffer", c->what);

  /* The objective is piecewise linear in x: central differences are exact up to rounding
   * while x +- eps stays on one piece (distinct inputs are 0.1 apart). */
  const double eps = 1e-2;
  float *xp = lm__f(p, x);
  int bad = 0;
  double biggest_pool_part = 0;
  for (int64_t i = 0; i < nx; i++) {
    float orig = xp[i];
    xp[i] = (float)(orig + eps);
    double fp = eval(p, node, obj);
    xp[i] = (float)(orig - eps);
    double fm = eval(p, node, obj);
    xp[i] = orig;
    double numeric = (fp - fm) / (2 * eps);
    biggest_pool_part = fmax(biggest_pool_part, fabs(numeric - r2[i]));
    if (fabs(numeric - analytic[i]) > 2e-3 + 1e-3 * fabs(numeric)) {
      if (bad < 6)
        print_message("  %s: dx[%lld]: analytic %.7g, numerical %.7g\n", c->what, (long long)i, (double)analytic[i],
                      numeric);
      bad++;
    }
  }
  if (bad) fail_msg("%s: %d of %lld gradient elements disagree", c->what, bad, (long long)nx);
  if (!(biggest_pool_part > 0.05)) fail_msg("%s: the objective hardly depends on the op", c->what);
  assert_true(eval(p, node, obj) == f0);

  /* A forward-only plan skips the argmax bookkeeping: same outputs, bit for bit. */
  float *y_train = malloc((size_t)ny * sizeof *y_train);
  assert_non_null(y_train);
  memcpy(y_train, lm__f(p, y), (size_t)ny * sizeof *y_train);
  lm_plan *q = lm__plan_new(g, shapes, 0, -1);
  assert_non_null(q);
  assert_int_equal(q->err.code, LM_OK);
  memcpy(lm__f(q, x), x0, (size_t)nx * sizeof *x0);
  if (m >= 0) memcpy(lm__f(q, m), lm__f(p, m), (size_t)lm_shape_size(ms) * 4);
  poison_outputs(q, node);
  lm__plan_forward(q);
  assert_memory_equal(y_train, lm__f(q, y), (size_t)ny * sizeof *y_train);

  lm__plan_free(q);
  lm__plan_free(p);
  lm__graph_free(g);
  free(y_train);
  free(r);
  free(r2);
  free(x0);
  free(analytic);
}

static lm_attrs pool_attrs(int dims, int ph, int pw, int sh, int sw, lm_padding pad) {
  lm_attrs a = {0};
  a.i[LM_POOL_DIMS] = dims;
  a.i[LM_POOL_H] = ph;
  a.i[LM_POOL_W] = pw;
  a.i[LM_POOL_SH] = sh;
  a.i[LM_POOL_SW] = sw;
  a.i[LM_POOL_PADDING] = pad;
  return a;
}

typedef struct pool_config {
  int ph, pw, sh, sw;
  lm_padding pad;
  int64_t h, w; /* w unused in 1D */
} pool_config;

/* Valid and same, strides 1 / 2 / 3 / the pool size, odd sizes and uneven padding. */
static const pool_config configs_1d[] = {
    {2, 1, 2, 1, LM_VALID, 7, 0}, {3, 1, 2, 1, LM_SAME, 8, 0}, {3, 1, 1, 1, LM_VALID, 6, 0},
    {2, 1, 3, 1, LM_SAME, 7, 0},  {4, 1, 3, 1, LM_SAME, 5, 0}, {3, 1, 2, 1, LM_VALID, 7, 0},
    {5, 1, 1, 1, LM_SAME, 4, 0},
};
static const pool_config configs_2d[] = {
    {2, 2, 2, 2, LM_VALID, 5, 6}, {3, 2, 2, 1, LM_SAME, 5, 6},  {3, 3, 1, 1, LM_SAME, 4, 5},
    {2, 3, 3, 3, LM_VALID, 7, 8}, {3, 2, 2, 3, LM_SAME, 6, 7},  {1, 1, 2, 2, LM_VALID, 5, 5},
    {4, 3, 1, 2, LM_VALID, 5, 7},
};

static void check_windowed(const lm_op_def *def, int dims, bool distinct) {
  const pool_config *cf = dims == 1 ? configs_1d : configs_2d;
  int n = dims == 1 ? (int)(sizeof configs_1d / sizeof *cf) : (int)(sizeof configs_2d / sizeof *cf);
  for (int i = 0; i < n; i++) {
    char what[128];
    snprintf(what, sizeof what, "%s %dD pool (%d, %d) strides (%d, %d) %s on %lldx%lld", def->name, dims, cf[i].ph,
             cf[i].pw, cf[i].sh, cf[i].sw, cf[i].pad == LM_SAME ? "same" : "valid", (long long)cf[i].h,
             (long long)(dims == 1 ? 1 : cf[i].w));
    op_check c = {.what = what, .def = def, .distinct = distinct,
                  .a = pool_attrs(dims, cf[i].ph, cf[i].pw, cf[i].sh, cf[i].sw, cf[i].pad)};
    c.xs = dims == 1 ? LM_SHAPE(2, cf[i].h, 3) : LM_SHAPE(2, cf[i].h, cf[i].w, 3);
    run_op_check(&c);
  }
}

static void test_grad_max_pool(void **state) {
  (void)state;
  rng_state = 1;
  check_windowed(&lm__op_max_pool, 1, true);
  check_windowed(&lm__op_max_pool, 2, true);
}

static void test_grad_avg_pool(void **state) {
  (void)state;
  rng_state = 2;
  check_windowed(&lm__op_avg_pool, 1, false);
  check_windowed(&lm__op_avg_pool, 2, false);
}

static void test_grad_global(void **state) {
  (void)state;
  rng_state = 3;
  const lm_shape shapes[] = {LM_SHAPE(3, 5, 4), LM_SHAPE(2, 3, 4, 3), LM_SHAPE(2, 1, 5)};
  for (int i = 0; i < 3; i++) {
    op_check c = {.what = "global_max_pool", .def = &lm__op_global_max_pool, .xs = shapes[i], .distinct = true};
    run_op_check(&c);
    c = (op_check){.what = "global_avg_pool", .def = &lm__op_global_avg_pool, .xs = shapes[i]};
    run_op_check(&c);
  }
  /* With a timestep mask, float32 and int32; one row keeps a single step. */
  static const float mask[] = {1, 1, 0, 1, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1};
  op_check c = {.what = "global_avg_pool, float mask", .def = &lm__op_global_avg_pool, .xs = LM_SHAPE(3, 5, 4),
                .mask = mask, .mask_dtype = LM_FLOAT32};
  run_op_check(&c);
  c.what = "global_avg_pool, int32 mask";
  c.mask_dtype = LM_INT32;
  run_op_check(&c);
}

/* One and two threads give the same bits: forward and backward of windowed pooling on
 * inputs large enough for the parallel path, with ties (a coarse grid of values) so that
 * which maximum wins matters, and overlapping windows that add into the same cells. */
static void same_bits_any_threads(const lm_op_def *def, lm_shape xs, lm_attrs a) {
  lm_graph *g = lm__graph_new();
  assert_non_null(g);
  int x = lm__graph_input(g, LM_VALUE_INPUT, LM_FLOAT32, xs), outs[2];
  g->vals[x].requires_grad = true;
  if (lm__graph_op(g, def, &x, 1, &a, outs)) fail_msg("%s: %s", def->name, g->err.msg);
  int y = outs[0];
  int64_t nx = lm_shape_size(xs), ny = lm_shape_size(g->vals[y].shape);
  float *r = malloc((size_t)ny * sizeof *r), *saved = malloc((size_t)(nx + ny) * sizeof *saved);
  assert_true(r && saved);
  for (int64_t i = 0; i < ny; i++) r[i] = rng_uniform(-1, 1);
  vec rv = {r, ny};
  int obj = lm__emit(g, &dot_r_op, &y, 1, &(lm_attrs){.p = &rv});
  assert_true(obj >= 0);
  g->vals[y].keep = true;
  lm_shape shapes[8];
  shapes[x] = xs;
  lm_plan *p = lm__plan_new(g, shapes, 1, obj);
  assert_non_null(p);
  assert_int_equal(p->err.code, LM_OK);
  for (int64_t i = 0; i < nx; i++) lm__f(p, x)[i] = (float)(int)rng_uniform(-8, 8);
  int before = lm_get_num_threads();
  for (int threads = 1; threads <= 2; threads++) {
    lm_set_num_threads(threads);
    memset(lm__f(p, y), 0x7f, (size_t)ny * sizeof(float));
    lm__plan_forward(p);
    lm__plan_backward(p);
    if (threads == 1) {
      memcpy(saved, lm__f(p, y), (size_t)ny * sizeof *saved);
      memcpy(saved + ny, lm__g(p, x), (size_t)nx * sizeof *saved);
    } else {
      assert_memory_equal(saved, lm__f(p, y), (size_t)ny * sizeof *saved);
      assert_memory_equal(saved + ny, lm__g(p, x), (size_t)nx * sizeof *saved);
    }
  }
  lm_set_num_threads(before);
  lm__plan_free(p);
  lm__graph_free(g);
  free(r);
  free(saved);
}

static void test_threads_same_bits(void **state) {
  (void)state;
  rng_state = 9;
  const lm_shape xs = LM_SHAPE(9, 21, 20, 24);
  const lm_attrs as[] = {pool_attrs(2, 2, 2, 2, 2, LM_VALID), pool_attrs(2, 3, 3, 2, 2, LM_SAME),
                         pool_attrs(2, 3, 2, 1, 1, LM_VALID)};
  for (int i = 0; i < 3; i++) {
    same_bits_any_threads(&lm__op_max_pool, xs, as[i]);
    same_bits_any_threads(&lm__op_avg_pool, xs, as[i]);
  }
  /* a window of more than 255 cells keeps int32 indices */
  same_bits_any_threads(&lm__op_max_pool, LM_SHAPE(4, 40, 40, 8), pool_attrs(2, 16, 17, 3, 3, LM_SAME));
}

/* Shape rules: unknown sizes stay unknown; misfits are refused with the shapes named. */
static void test_shape_rules(void **state) {
  (void)state;
  lm_graph *g = lm__graph_new();
  assert_non_null(g);
  g->who = "pool";
  int seq = lm__graph_input(g, LM_VALUE_INPUT, LM_FLOAT32, LM_SHAPE(LM_NONE, LM_NONE, 4));
  lm_attrs a = pool_attrs(1, 3, 1, 2, 1, LM_VALID);
  int y = lm__emit(g, &lm__op_max_pool, &seq, 1, &a);
  assert_true(y >= 0);
  assert_int_equal(g->vals[y].shape.rank, 3);
  assert_int_equal(g->vals[y].shape.dim[1], LM_NONE);
  assert_int_equal(g->vals[y].shape.dim[2], 4);
  assert_int_equal(g->vals[y + 1].dtype, LM_INT32);
  y = lm__emit(g, &lm__op_global_max_pool, &seq, 1, NULL);
  assert_true(y >= 0);
  assert_int_equal(g->vals[y].shape.rank, 2);
  assert_int_equal(g->vals[y].shape.dim[1], 4);

  int img = lm__graph_input(g, LM_VALUE_INPUT, LM_FLOAT32, LM_SHAPE(LM_NONE, 5, 7, 2));
  a = pool_attrs(2, 3, 2, 2, 3, LM_SAME);
  y = lm__emit(g, &lm__op_avg_pool, &img, 1, &a);
  assert_true(y >= 0);
  assert_int_equal(g->vals[y].shape.dim[1], 3); /* ceil(5 / 2) */
  assert_int_equal(g->vals[y].shape.dim[2], 3); /* ceil(7 / 3) */
  a = pool_attrs(2, 6, 2, 1, 1, LM_VALID);
  assert_true(lm__emit(g, &lm__op_max_pool, &img, 1, &a) < 0);
  assert_non_null(strstr(g->err.msg, "(None, 5, 7, 2)"));
  assert_non_null(strstr(g->err.msg, "pool"));
  /* argmax offsets are int32: a larger sample is refused, not overflowed */
  lm_graph *g2 = lm__graph_new();
  assert_non_null(g2);
  int huge = lm__graph_input(g2, LM_VALUE_INPUT, LM_FLOAT32, LM_SHAPE(LM_NONE, 50000, 50000, 2));
  a = pool_attrs(2, 2, 2, 2, 2, LM_VALID);
  assert_true(lm__emit(g2, &lm__op_max_pool, &huge, 1, &a) < 0);
  assert_non_null(strstr(g2->err.msg, "too large"));
  lm__graph_free(g2);
  lm__graph_free(g);
}

/* ---- Parity with Keras ---- */

static fx_file fixture;

static int load_fixture(void **state) {
  (void)state;
  char path[256]; /* small enough that fx_load's messages cannot truncate (-Wformat-truncation) */
  fx_source_path(path, sizeof path, "tests/fixtures/keras_pool.txt");
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

static int attr_int(const fx_case *c, const char *key) { return (int)strtol(need_attr(c, key), NULL, 10); }

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

/* The array's shape without its batch axis: the Input's shape. */
static lm_shape sample_shape(const fx_array *a) {
  lm_shape s = {.rank = a->rank - 1};
  for (int d = 1; d < a->rank; d++) s.dim[d - 1] = a->dim[d];
  return s;
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

/* The layer a case describes, built through the public macros. */
static lm_layer *case_layer(const fx_case *c) {
  const char *cls = need_attr(c, "class");
  if (!strcmp(cls, "GlobalMaxPooling1D")) return lm_global_max_pooling1d();
  if (!strcmp(cls, "GlobalMaxPooling2D")) return lm_global_max_pooling2d();
  if (!strcmp(cls, "GlobalAveragePooling1D")) return lm_global_average_pooling1d();
  if (!strcmp(cls, "GlobalAveragePooling2D")) return lm_global_average_pooling2d();
  int ph = attr_int(c, "pool_h"), pw = attr_int(c, "pool_w"), sh = attr_int(c, "stride_h"), sw = attr_int(c, "stride_w");
  lm_padding pad = !strcmp(need_attr(c, "padding"), "same") ? LM_SAME : LM_VALID;
  bool default_strides = attr_int(c, "strides_default");
  if (!strcmp(cls, "MaxPooling1D"))
    return default_strides ? lm_max_pooling1d(ph, .padding = pad) : lm_max_pooling1d(ph, .strides = {sh}, .padding = pad);
  if (!strcmp(cls, "AveragePooling1D"))
    return default_strides ? lm_average_pooling1d(ph, .padding = pad)
                           : lm_average_pooling1d(ph, .strides = {sh}, .padding = pad);
  /* 2D: square pools through pool_size, others through pool_hw */
  lm_pool_opts o = {.padding = pad};
  if (!default_strides) o.strides[0] = sh, o.strides[1] = sw;
  int square = ph == pw ? ph : 0;
  if (!square) o.pool_hw[0] = ph, o.pool_hw[1] = pw;
  if (!strcmp(cls, "MaxPooling2D")) return lm_max_pooling2d_new(square, o);
  if (!strcmp(cls, "AveragePooling2D")) return lm_average_pooling2d_new(square, o);
  fail_msg("case %s: unknown class %s", c->name, cls);
  return NULL;
}

/* y through predict, and dx = d sum(y * r) / dx through the plan's backward; with a mask,
 * the input value carries it as an Embedding(mask_zero) output would. */
static void layer_case(fx_case *c, int *bad) {
  const fx_array *x = need(c, "x"), *r = need(c, "r"), *want_y = need(c, "y");
  const fx_array *mask = fx_array_get(c, "mask");
  lm_layer *layer = case_layer(c);
  assert_int_equal(lm_layer_status(layer), LM_OK);
  assert_string_equal(lm_layer_class(layer), need_attr(c, "class"));
  lm_tensor *in = lm_input(sample_shape(x));
  lm_tensor *out = lm_call(layer, in);
  if (lm_tensor_status(out)) fail_msg("%s: %s", c->name, lm_tensor_error(out));
  lm_shape os = lm_tensor_shape(out);
  assert_int_equal(os.rank, want_y->rank);
  for (int d = 1; d < os.rank; d++) assert_int_equal(os.dim[d], want_y->dim[d]);
  lm_model *model = lm_model_new(LM_TENSORS(in), LM_TENSORS(out));
  assert_int_equal(lm_model_status(model), LM_OK);
  assert_int_equal(lm_layer_count_params(layer), 0);

  if (!mask) {
    lm_array *xa = wrap(x);
    lm_outputs o = lm_predict(model, LM_FEED(xa), .verbose = LM_SILENT);
    if (o.n != 1) fail_msg("%s: predict: %s", c->name, lm_last_error());
    check(c, "predict", lm_array_f32(o.a[0]), want_y, bad);
    lm_outputs_free(&o);
    lm_array_free(xa);
  }

  for (int as_int = 0; as_int <= (mask ? 1 : 0); as_int++) {
    lm_graph *g = lm__graph_new();
    assert_non_null(g);
    lm_shape xs = {.rank = x->rank}, ms = {0};
    for (int d = 0; d < x->rank; d++) xs.dim[d] = x->dim[d];
    int vin = lm__graph_input(g, LM_VALUE_INPUT, LM_FLOAT32, xs), vm = -1, vout = -1;
    g->vals[vin].requires_grad = true;
    if (mask) {
      ms = LM_SHAPE(mask->dim[0], mask->dim[1]);
      vm = lm__graph_input(g, LM_VALUE_INPUT, as_int ? LM_INT32 : LM_FLOAT32, ms);
      g->vals[vin].mask = vm;
    }
    assert_int_equal(lm__model_emit(model, g, &vin, &vout), 1);
    vec rv = {r->f, r->n};
    int obj = lm__emit(g, &dot_r_op, &vout, 1, &(lm_attrs){.p = &rv});
    assert_true(obj >= 0);
    lm_shape *shapes = calloc((size_t)g->n_vals, sizeof *shapes);
    assert_non_null(shapes);
    shapes[vin] = xs;
    if (vm >= 0) shapes[vm] = ms;
    lm_plan *p = lm__plan_new(g, shapes, 1, obj);
    free(shapes);
    assert_non_null(p);
    if (p->err.code) fail_msg("%s: %s", c->name, p->err.msg);
    memcpy(lm__f(p, vin), x->f, (size_t)x->n * sizeof(float));
    for (int64_t i = 0; mask && i < mask->n; i++) {
      if (as_int) lm__i(p, vm)[i] = (int32_t)mask->f[i];
      else lm__f(p, vm)[i] = mask->f[i];
    }
    lm__plan_forward(p);
    check(c, as_int ? "graph forward (int32 mask)" : "graph forward", lm__f(p, vout), want_y, bad);
    lm__plan_backward(p);
    assert_non_null(lm__g(p, vin));
    check(c, as_int ? "d input (int32 mask)" : "d input", lm__g(p, vin), need(c, "dx"), bad);
    lm__plan_free(p);
    lm__graph_free(g);
  }
  lm_session_clear();
}

static void test_keras_layers(void **state) {
  (void)state;
  each_case("layer/", 24, layer_case);
}

static void test_keras_masked_average(void **state) {
  (void)state;
  each_case("mask/", 1, layer_case);
}

/* ---- One SGD step of a small model with pooling between Dense layers ---- */

static lm_array *weight_named(lm_model *model, const char *full) {
  char layer_name[96];
  const char *dot = strchr(full, '.');
  assert_non_null(dot);
  snprintf(layer_name, sizeof layer_name, "%.*s", (int)(dot - full), full);
  lm_layer *layer = lm_model_layer_by_name(model, layer_name);
  if (!layer) fail_msg("the model has no layer '%s'", layer_name);
  const char *wname;
  lm_array *a;
  for (int i = 0; (a = lm_layer_weight(layer, i, &wname)); i++)
    if (!strcmp(wname, dot + 1)) return a;
  fail_msg("layer '%s' has no weight '%s'", layer_name, dot + 1);
  return NULL;
}

static lm_model *train_model(const char *name) {
  if (!strcmp(name, "train/pool1d")) {
    lm_tensor *x = lm_input(LM_SHAPE(7, 4), .name = "x");
    lm_tensor *h = lm_call(lm_dense(5, .activation = LM_TANH, .name = "proj"), x);
    h = lm_call(lm_max_pooling1d(3, .strides = {2}, .padding = LM_SAME, .name = "mp"), h);
    h = lm_call(lm_average_pooling1d(2, .strides = {1}, .name = "ap"), h);
    h = lm_call(lm_global_max_pooling1d(.name = "gmp"), h);
    return lm_model_new(LM_TENSORS(x), LM_TENSORS(lm_call(lm_dense(2, .name = "head"), h)));
  }
  if (!strcmp(name, "train/pool2d")) {
    lm_tensor *x = lm_input(LM_SHAPE(5, 6, 2), .name = "x");
    lm_tensor *h = lm_call(lm_dense(4, .activation = LM_TANH, .name = "proj"), x);
    lm_tensor *a = lm_call(lm_max_pooling2d(0, .pool_hw = {2, 3}, .strides = {1, 2}, .name = "mp"), h);
    a = lm_call(lm_global_average_pooling2d(.name = "gap"), a);
    lm_tensor *b = lm_call(lm_average_pooling2d(3, .strides = {2}, .padding = LM_SAME, .name = "ap"), h);
    b = lm_call(lm_global_max_pooling2d(.name = "gmp"), b);
    lm_tensor *cat = lm_concatenate(LM_TENSORS(a, b), .name = "cat");
    return lm_model_new(LM_TENSORS(x), LM_TENSORS(lm_call(lm_dense(3, .name = "head"), cat)));
  }
  fail_msg("no lamina model for case '%s'", name);
  return NULL;
}

static void train_case(fx_case *c, int *bad) {
  lm_model *model = train_model(c->name);
  if (lm_model_status(model)) fail_msg("%s: %s", c->name, lm_model_error(model));
  int n_weights = 0;
  for (int a = 0; a < c->n_arrays; a++) {
    const char *name = c->arrays[a].name, *colon = strrchr(name, ':');
    if (!colon || strcmp(colon, ":before")) continue;
    char base[96];
    snprintf(base, sizeof base, "%.*s", (int)(colon - name), name);
    lm_array *w = weight_named(model, base);
    assert_int_equal(lm_shape_size(w->shape), c->arrays[a].n);
    memcpy(lm_array_f32(w), c->arrays[a].f, (size_t)c->arrays[a].n * sizeof(float));
    n_weights++;
  }
  int total = 0;
  for (int i = 0; i < lm_model_n_layers(model); i++)
    for (int k = 0; lm_layer_weight(lm_model_get_layer(model, i), k, NULL); k++) total++;
  assert_int_equal(n_weights, total);

  assert_int_equal(lm_compile(model, .optimizer = lm_sgd(.learning_rate = 0.1), .loss = LM_LOSSES("mse")), LM_OK);
  lm_array *x = wrap(need(c, "x")), *y = wrap(need(c, "y"));
  int batch = attr_int(c, "batch_size");
  lm_history *h = lm_fit(model, LM_FEED(x), LM_FEED(y), .epochs = 1, .batch_size = batch, .no_shuffle = true,
                         .verbose = LM_SILENT);
  if (!h) fail_msg("%s: fit: %s", c->name, lm_last_error());
  float loss = (float)lm_history_last(h, "loss");
  check(c, "loss", &loss, need(c, "loss"), bad);
  for (int a = 0; a < c->n_arrays; a++) {
    const char *name = c->arrays[a].name, *colon = strrchr(name, ':');
    if (!colon || strcmp(colon, ":after")) continue;
    char base[96];
    snprintf(base, sizeof base, "%.*s", (int)(colon - name), name);
    check(c, name, lm_array_f32(weight_named(model, base)), &c->arrays[a], bad);
  }
  lm_history_free(h);
  lm_array_free(x);
  lm_array_free(y);
  lm_session_clear();
}

static void test_keras_train_steps(void **state) {
  (void)state;
  each_case("train/", 2, train_case);
}

/* ---- Sequences of unknown length: one model, two lengths, two predict calls ---- */

static void unknown_case(fx_case *c, int *bad) {
  lm_tensor *x = lm_input(LM_SHAPE(LM_NONE, 4), .name = "x");
  lm_tensor *a = lm_call(lm_global_max_pooling1d(.name = "gmp"), x);
  lm_tensor *b = lm_call(lm_average_pooling1d(3, .strides = {2}, .padding = LM_SAME, .name = "ap"), x);
  assert_int_equal(lm_tensor_shape(b).dim[1], LM_NONE);
  b = lm_call(lm_max_pooling1d(2, .name = "mp"), b);
  assert_int_equal(lm_tensor_shape(b).dim[1], LM_NONE);
  b = lm_call(lm_global_average_pooling1d(.name = "gap"), b);
  assert_int_equal(lm_tensor_shape(a).rank, 2);
  assert_int_equal(lm_tensor_shape(a).dim[1], 4);
  lm_model *model = lm_model_new(LM_TENSORS(x), LM_TENSORS(a, b));
  assert_int_equal(lm_model_status(model), LM_OK);
  for (int steps = 5; steps <= 9; steps += 4) {
    char name[16];
    snprintf(name, sizeof name, "x%d", steps);
    lm_array *xa = wrap(need(c, name));
    lm_outputs o = lm_predict(model, LM_FEED(xa), .verbose = LM_SILENT);
    if (o.n != 2) fail_msg("predict on %d steps: %s", steps, lm_last_error());
    snprintf(name, sizeof name, "gmp%d", steps);
    check(c, name, lm_array_f32(o.a[0]), need(c, name), bad);
    snprintf(name, sizeof name, "gap%d", steps);
    check(c, name, lm_array_f32(o.a[1]), need(c, name), bad);
    lm_outputs_free(&o);
    lm_array_free(xa);
  }
  lm_session_clear();
}

static void test_keras_unknown_length(void **state) {
  (void)state;
  each_case("unknown/", 1, unknown_case);
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
  assert_true(fixture.n_cases > 0);
}

/* ---- Names, shapes, defaults ---- */

static void expect_shape(lm_tensor *t, lm_shape want) {
  if (lm_tensor_status(t)) fail_msg("%s", lm_tensor_error(t));
  char b1[96], b2[96];
  lm_shape got = lm_tensor_shape(t);
  if (!lm__shape_equal(got, want))
    fail_msg("shape %s, expected %s", lm_shape_format(got, b1, sizeof b1), lm_shape_format(want, b2, sizeof b2));
}

static void test_names_and_shapes(void **state) {
  (void)state;
  lm_layer *layers[] = {
      lm_max_pooling1d(2),        lm_max_pooling2d(2),         lm_average_pooling1d(2),
      lm_average_pooling2d(2),    lm_global_max_pooling1d(),   lm_global_max_pooling2d(),
      lm_global_average_pooling1d(), lm_global_average_pooling2d(), lm_max_pooling2d(2),
  };
  static const char *names[] = {"max_pooling1d", "max_pooling2d", "average_pooling1d", "average_pooling2d",
                                "global_max_pooling1d", "global_max_pooling2d", "global_average_pooling1d",
                                "global_average_pooling2d", "max_pooling2d_1"};
  static const char *classes[] = {"MaxPooling1D", "MaxPooling2D", "AveragePooling1D", "AveragePooling2D",
                                  "GlobalMaxPooling1D", "GlobalMaxPooling2D", "GlobalAveragePooling1D",
                                  "GlobalAveragePooling2D", "MaxPooling2D"};
  for (int i = 0; i < 9; i++) {
    assert_int_equal(lm_layer_status(layers[i]), LM_OK);
    assert_string_equal(lm_layer_name(layers[i]), names[i]);
    assert_string_equal(lm_layer_class(layers[i]), classes[i]);
  }

  lm_tensor *img = lm_input(LM_SHAPE(28, 28, 1));
  expect_shape(lm_call(lm_max_pooling2d(0), img), LM_SHAPE(LM_NONE, 14, 14, 1)); /* Keras's default pool 2 */
  expect_shape(lm_call(lm_max_pooling2d(2, .strides = {1}), img), LM_SHAPE(LM_NONE, 27, 27, 1));
  expect_shape(lm_call(lm_max_pooling2d(3, .strides = {2}, .padding = LM_SAME), img), LM_SHAPE(LM_NONE, 14, 14, 1));
  expect_shape(lm_call(lm_average_pooling2d(0, .pool_hw = {3, 1}), img), LM_SHAPE(LM_NONE, 9, 28, 1));
  expect_shape(lm_call(lm_average_pooling2d(5, .pool_hw = {3}), img), LM_SHAPE(LM_NONE, 9, 9, 1)); /* {3}: (3, 3) */
  expect_shape(lm_call(lm_average_pooling2d(2, .strides = {3, 1}), img), LM_SHAPE(LM_NONE, 9, 27, 1));
  expect_shape(lm_call(lm_global_average_pooling2d(), img), LM_SHAPE(LM_NONE, 1));
  lm_tensor *seq = lm_input(LM_SHAPE(LM_NONE, 128));
  expect_shape(lm_call(lm_max_pooling1d(4, .padding = LM_SAME), seq), LM_SHAPE(LM_NONE, LM_NONE, 128));
  expect_shape(lm_call(lm_global_max_pooling1d(), seq), LM_SHAPE(LM_NONE, 128));
  lm_tensor *s10 = lm_input(LM_SHAPE(10, 3));
  expect_shape(lm_call(lm_max_pooling1d(3, .pool_hw = {4, 9}, .strides = {2, 7}), s10), LM_SHAPE(LM_NONE, 4, 3));

  /* Pooling has no weights; a model full of it counts only its Dense. */
  lm_tensor *x = lm_input(LM_SHAPE(8, 8, 3));
  lm_tensor *h = lm_call(lm_max_pooling2d(2), x);
  h = lm_call(lm_average_pooling2d(2), h);
  h = lm_call(lm_global_max_pooling2d(), h);
  lm_model *m = lm_model_new(LM_TENSORS(x), LM_TENSORS(lm_call(lm_dense(4), h)));
  assert_int_equal(lm_model_status(m), LM_OK);
  assert_int_equal(lm_model_count_params(m), 3 * 4 + 4);
  lm_session_clear();
}

/* ---- Bad input: errors that name the layer and the shapes, never a crash ---- */

static void expect_error(lm_tensor *t, lm_status code, const char *const *needles) {
  assert_non_null(t);
  if (lm_tensor_status(t) != code)
    fail_msg("expected status %d, got %d (%s)", (int)code, (int)lm_tensor_status(t),
             lm_tensor_status(t) ? lm_tensor_error(t) : "no error");
  const char *msg = lm_tensor_error(t);
  for (; *needles; needles++)
    if (!strstr(msg, *needles)) fail_msg("the message lacks \"%s\": %s", *needles, msg);
}

static void test_bad_input(void **state) {
  (void)state;
  /* MaxPooling2D on images without a channels axis */
  lm_tensor *flat = lm_input(LM_SHAPE(28, 28));
  expect_error(lm_call(lm_max_pooling2d(2), flat), LM_ERROR_SHAPE,
               (const char *[]){"max_pooling2d", "MaxPooling2D", "ndim=4", "(None, 28, 28)", "(28, 28, 1)", NULL});
  expect_error(lm_call(lm_global_average_pooling2d(), flat), LM_ERROR_SHAPE,
               (const char *[]){"global_average_pooling2d", "ndim=4", "(None, 28, 28)", NULL});
  lm_tensor *img = lm_input(LM_SHAPE(8, 8, 3));
  expect_error(lm_call(lm_max_pooling1d(2), img), LM_ERROR_SHAPE,
               (const char *[]){"max_pooling1d", "ndim=3", "(None, 8, 8, 3)", NULL});
  expect_error(lm_call(lm_global_max_pooling1d(), lm_input(LM_SHAPE(5))), LM_ERROR_SHAPE,
               (const char *[]){"global_max_pooling1d", "ndim=3", "(None, 5)", NULL});

  /* a pool larger than its input with valid padding */
  lm_tensor *short_seq = lm_input(LM_SHAPE(3, 2));
  expect_error(lm_call(lm_max_pooling1d(5), short_seq), LM_ERROR_SHAPE,
               (const char *[]){"max_pooling1d", "(None, 3, 2)", "pool_size 5", "3 steps", "valid", NULL});
  expect_error(lm_call(lm_average_pooling2d(0, .pool_hw = {2, 9}), img), LM_ERROR_SHAPE,
               (const char *[]){"average_pooling2d", "(None, 8, 8, 3)", "(2, 9)", "8 cols", NULL});
  /* same padding always fits */
  expect_shape(lm_call(lm_max_pooling1d(5, .padding = LM_SAME), short_seq), LM_SHAPE(LM_NONE, 1, 2));

  /* int32 input to a float layer */
  lm_tensor *ids = lm_input(LM_SHAPE(6, 2), .dtype = LM_INT32);
  expect_error(lm_call(lm_average_pooling1d(2), ids), LM_ERROR_VALUE,
               (const char *[]){"average_pooling1d", "float32", "int32", "(None, 6, 2)", NULL});
  expect_error(lm_call(lm_global_max_pooling1d(), ids), LM_ERROR_VALUE,
               (const char *[]){"global_max_pooling1d", "float32", NULL});

  /* bad constructor arguments */
  lm_layer *bad[] = {lm_max_pooling2d(-1), lm_max_pooling1d(2, .strides = {-2}), lm_average_pooling2d(2, .pool_hw = {2, -3}),
                     lm_max_pooling2d(2, .padding = (lm_padding)7)};
  for (int i = 0; i < 4; i++) {
    assert_int_equal(lm_layer_status(bad[i]), LM_ERROR_VALUE);
    expect_error(lm_call(bad[i], img), LM_ERROR_VALUE, (const char *[]){"Pooling", NULL});
  }

  /* a sequence of unknown length shorter than the pool is refused when it arrives */
  lm_tensor *seq = lm_input(LM_SHAPE(LM_NONE, 2));
  lm_model *m = lm_model_new(LM_TENSORS(seq), LM_TENSORS(lm_call(lm_max_pooling1d(4, .name = "pool4"), seq)));
  assert_int_equal(lm_model_status(m), LM_OK);
  float data[2 * 3 * 2] = {0};
  lm_array *xa = lm_array_wrap(LM_FLOAT32, LM_SHAPE(2, 3, 2), data);
  lm_outputs o = lm_predict(m, LM_FEED(xa), .verbose = LM_SILENT);
  assert_int_equal(o.n, 0);
  assert_non_null(strstr(lm_last_error(), "pool4"));
  assert_non_null(strstr(lm_last_error(), "3"));
  lm_array_free(xa);
  /* and the model still works on a long enough one */
  float data8[8 * 2] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
  xa = lm_array_wrap(LM_FLOAT32, LM_SHAPE(1, 8, 2), data8);
  o = lm_predict(m, LM_FEED(xa), .verbose = LM_SILENT);
  assert_int_equal(o.n, 1);
  const float want[] = {7, 8, 15, 16};
  assert_memory_equal(lm_array_f32(o.a[0]), want, sizeof want);
  lm_outputs_free(&o);
  lm_array_free(xa);
  lm_session_clear();
}

/* A GlobalAveragePooling1D after a masking layer averages over the kept steps, and the
 * other pooling layers drop the mask (Keras warns and ignores it). */
static void test_mask_propagation(void **state) {
  (void)state;
  lm_tensor *x = lm_input(LM_SHAPE(4, 2));
  lm_model *m = lm_model_new(LM_TENSORS(x), LM_TENSORS(lm_call(lm_global_average_pooling1d(), x),
                                                       lm_call(lm_max_pooling1d(2), x)));
  assert_int_equal(lm_model_status(m), LM_OK);
  lm_graph *g = lm__graph_new();
  assert_non_null(g);
  int vin = lm__graph_input(g, LM_VALUE_INPUT, LM_FLOAT32, LM_SHAPE(LM_NONE, 4, 2));
  int vm = lm__graph_input(g, LM_VALUE_INPUT, LM_FLOAT32, LM_SHAPE(LM_NONE, 4));
  g->vals[vin].mask = vm;
  int out[2];
  assert_int_equal(lm__model_emit(m, g, &vin, out), 2);
  assert_int_equal(g->vals[out[0]].mask, -1);
  assert_int_equal(g->vals[out[1]].mask, -1);
  lm_shape shapes[8] = {0};
  shapes[vin] = LM_SHAPE(1, 4, 2);
  shapes[vm] = LM_SHAPE(1, 4);
  lm_plan *p = lm__plan_new(g, shapes, 0, -1);
  assert_int_equal(p->err.code, LM_OK);
  const float xv[] = {1, 10, 2, 20, 3, 30, 4, 40}, mv[] = {1, 0, 1, 0};
  memcpy(lm__f(p, vin), xv, sizeof xv);
  memcpy(lm__f(p, vm), mv, sizeof mv);
  lm__plan_forward(p);
  assert_float_equal(lm__f(p, out[0])[0], 2.0, 1e-6); /* (1 + 3) / 2 */
  assert_float_equal(lm__f(p, out[0])[1], 20.0, 1e-6);
  assert_float_equal(lm__f(p, out[1])[0], 2.0, 0); /* max over steps 0-1, mask ignored */
  assert_float_equal(lm__f(p, out[1])[3], 40.0, 0);
  lm__plan_free(p);
  lm__graph_free(g);
  lm_session_clear();
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_grad_max_pool),
      cmocka_unit_test(test_grad_avg_pool),
      cmocka_unit_test(test_grad_global),
      cmocka_unit_test(test_shape_rules),
      cmocka_unit_test(test_threads_same_bits),
      cmocka_unit_test(test_keras_layers),
      cmocka_unit_test(test_keras_masked_average),
      cmocka_unit_test(test_keras_train_steps),
      cmocka_unit_test(test_keras_unknown_length),
      cmocka_unit_test(test_every_case_checked),
      cmocka_unit_test(test_names_and_shapes),
      cmocka_unit_test(test_bad_input),
      cmocka_unit_test(test_mask_propagation),
  };
  return cmocka_run_group_tests(tests, load_fixture, free_fixture);
}
