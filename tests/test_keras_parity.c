/* Parity with real Keras: every case of tests/fixtures/keras_core.txt (made by
 * tools/keras_fixtures/make_core_fixtures.py with Keras 3 on JAX) is recomputed with
 * lamina and compared to a relative 1e-5 with an absolute floor of 1e-6. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>

#include "fixture.h"
#include "model/internal.h"
#include "ops/activations.h"
#include "train/losses.h"
#include "train/optimizer.h"

#ifndef RTOL
#define RTOL 1e-5
#endif
#ifndef ATOL
#define ATOL 1e-6
#endif

static fx_file fixture;

static int load_fixture(void **state) {
  (void)state;
  char path[4096];
  fx_source_path(path, sizeof path, "tests/fixtures/keras_core.txt");
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
  if (!a) {
    print_error("case %s has no array '%s'\n", c->name, name);
    fail();
  }
  return a;
}

static const char *need_attr(const fx_case *c, const char *key) {
  const char *v = fx_attr_get(c, key);
  if (!v) {
    print_error("case %s has no attribute '%s'\n", c->name, key);
    fail();
  }
  return v;
}

static void check(const fx_case *c, const char *what, const float *got, const fx_array *want, int *bad) {
  char tag[256];
  snprintf(tag, sizeof tag, "%s %s", c->name, what);
  *bad += fx_compare(tag, got, want, RTOL, ATOL);
}

static void check_scalar(const fx_case *c, const char *what, double got, const fx_array *want, int *bad) {
  char tag[256];
  snprintf(tag, sizeof tag, "%s %s", c->name, what);
  *bad += fx_compare_scalar(tag, got, want, RTOL, ATOL);
}

/* Runs fn on every case whose name starts with prefix; expects `expected` such cases. */
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
  if (bad) {
    print_error("%d value(s) differ from Keras in the %s cases\n", bad, prefix);
    fail();
  }
}

/* ---- a. Activations: forward, and backward against JAX's vjp ---- */

static void activation_case(fx_case *c, int *bad) {
  const char *name = need_attr(c, "activation");
  int act = lm_activation_from_name(name);
  if (act < 0) {
    print_error("lamina has no activation '%s'\n", name);
    fail();
  }
  if (act == LM_GELU) assert_string_equal(need_attr(c, "approximate"), "False");
  const fx_array *x = need(c, "x"), *y = need(c, "y");
  assert_int_equal(x->rank, 2);
  const fx_array *r = need(c, "r");
  assert_int_equal(r->n, x->n);
  float *out = calloc((size_t)x->n, sizeof *out), *dx = calloc((size_t)x->n, sizeof *dx);
  assert_true(out && dx);
  lm__act_forward((lm_activation)act, x->f, out, x->dim[0], x->dim[1]);
  /* Forward values are compared without the absolute floor (only a denormal-sized one):
   * each is one well-conditioned function of one input, and the floor would hide an
   * inaccurate tail such as gelu's for negative x (tiny values, large relative error). */
  char tag[160];
  snprintf(tag, sizeof tag, "%s forward", c->name);
  *bad += fx_compare(tag, out, y, RTOL, 1e-30);
  /* The vector-Jacobian product with r; backward accumulates into dx. */
  lm__act_backward((lm_activation)act, x->f, out, r->f, dx, x->dim[0], x->dim[1]);
  check(c, "backward", dx, need(c, "dx"), bad);
  free(out);
  free(dx);
}

static void test_activations(void **state) {
  (void)state;
  each_case("activation/", 10, activation_case);
}

/* ---- b. Losses and d(loss)/d(pred) ---- */

static void loss_case(fx_case *c, int *bad) {
  lm_loss_spec spec;
  lm_error err = {0};
  assert_int_equal(lm__loss_parse(need_attr(c, "loss"), &spec, &err), 0);
  assert_string_equal(need_attr(c, "reduction"), "sum_over_batch_size");
  const char *delta = fx_attr_get(c, "delta");
  if (delta) assert_true(spec.huber_delta == (float)strtod(delta, NULL));
  const fx_array *pred = need(c, "pred"), *target = need(c, "target");
  assert_int_equal(pred->rank, 2);
  int64_t rows = pred->dim[0], cols = pred->dim[1];
  assert_int_equal(target->n, spec.kind == LM_LOSS_SPARSE_CATEGORICAL_CE ? rows : rows * cols);
  float *dpred = calloc((size_t)pred->n, sizeof *dpred);
  assert_non_null(dpred);
  double loss = lm__loss_compute(&spec, pred->f, target->f, rows, cols, dpred, 1.0f);
  check_scalar(c, "loss", loss, need(c, "loss"), bad);
  check(c, "gradient", dpred, need(c, "dpred"), bad);
  /* Without a gradient buffer the loss is the same. */
  check_scalar(c, "loss (no gradient)", lm__loss_compute(&spec, pred->f, target->f, rows, cols, NULL, 1.0f),
               need(c, "loss"), bad);
  free(dpred);
}

static void test_losses(void **state) {
  (void)state;
  each_case("loss/", 9, loss_case);
}

/* ---- c. Metrics over two batches ---- */

static void metric_case(fx_case *c, int *bad) {
  const fx_array *p0 = need(c, "pred0");
  lm_metric m;
  lm_error err = {0};
  assert_int_equal(lm__metric_init(&m, need_attr(c, "metric"), NULL, p0->dim[1], &err), 0);
  lm__metric_reset(&m);
  for (int b = 0; b < 2; b++) {
    char pn[16], tn[16];
    snprintf(pn, sizeof pn, "pred%d", b);
    snprintf(tn, sizeof tn, "target%d", b);
    const fx_array *p = need(c, pn), *t = need(c, tn);
    assert_int_equal(p->rank, 2);
    lm__metric_update(&m, p->f, t->f, p->dim[0], p->dim[1]);
  }
  check_scalar(c, "result", lm__metric_result(&m), need(c, "result"), bad);
}

static void test_metrics(void **state) {
  (void)state;
  each_case("metric/", 6, metric_case);
}

/* ---- d. Optimizers: three steps from Keras's defaults ---- */

static lm_optimizer *optimizer_for(const char *name) {
  if (!strcmp(name, "sgd")) return lm_sgd();
  if (!strcmp(name, "sgd_momentum")) return lm_sgd(.momentum = 0.9);
  if (!strcmp(name, "sgd_nesterov")) return lm_sgd(.momentum = 0.9, .nesterov = true);
  if (!strcmp(name, "rmsprop")) return lm_rmsprop();
  if (!strcmp(name, "adam")) return lm_adam();
  if (!strcmp(name, "adamw")) return lm_adamw();
  if (!strcmp(name, "adagrad")) return lm_adagrad();
  print_error("no lamina optimizer for case '%s'\n", name);
  fail();
  return NULL;
}

/* Keras's get_config() values against the optimizer's settings (float32 in Keras). */
static void check_setting(const fx_case *c, const char *key, double value, int *bad) {
  const char *v = fx_attr_get(c, key);
  if (!v) return;
  double want = (float)strtod(v, NULL);
  if (fabs((float)value - want) > 1e-7 * fabs(want)) {
    fprintf(stderr, "  %s: %s is %.9g, Keras's default %s\n", c->name, key, value, v);
    (*bad)++;
  }
}

static void optimizer_case(fx_case *c, int *bad) {
  lm_optimizer *opt = optimizer_for(need_attr(c, "optimizer"));
  assert_non_null(opt);
  assert_string_equal(lm__optimizer_name(opt), need_attr(c, "class"));
  check_setting(c, "learning_rate", opt->learning_rate, bad);
  check_setting(c, "momentum", opt->momentum, bad);
  check_setting(c, "rho", opt->rho, bad);
  check_setting(c, "epsilon", opt->epsilon, bad);
  check_setting(c, "beta_1", opt->beta_1, bad);
  check_setting(c, "beta_2", opt->beta_2, bad);
  check_setting(c, "weight_decay", opt->weight_decay, bad);
  check_setting(c, "initial_accumulator_value", opt->initial_accumulator_value, bad);
  const char *nesterov = fx_attr_get(c, "nesterov");
  if (nesterov) assert_int_equal(opt->nesterov, !strcmp(nesterov, "True"));
  /* Variants lamina does not implement must be off in Keras's defaults. */
  const char *off[] = {"centered", "amsgrad"};
  for (size_t i = 0; i < sizeof off / sizeof *off; i++) {
    const char *v = fx_attr_get(c, off[i]);
    if (v) assert_string_equal(v, "False");
  }

  const fx_array *w0 = need(c, "w0");
  int64_t n = w0->n;
  float *w = malloc((size_t)n * sizeof *w), *s0 = malloc((size_t)n * sizeof *s0), *s1 = malloc((size_t)n * sizeof *s1);
  assert_true(w && s0 && s1);
  float *slots[2] = {s0, s1};
  assert_true(lm__optimizer_n_slots(opt) <= 2);
  memcpy(w, w0->f, (size_t)n * sizeof *w);
  lm__optimizer_init_slots(opt, slots, n);
  for (int step = 1; step <= 3; step++) {
    char gn[8], wn[8], what[32];
    snprintf(gn, sizeof gn, "g%d", step);
    snprintf(wn, sizeof wn, "w%d", step);
    snprintf(what, sizeof what, "after step %d", step);
    const fx_array *g = need(c, gn);
    assert_int_equal(g->n, n);
    lm__optimizer_update(opt, w, g->f, slots, n);
    opt->iterations++;
    check(c, what, w, need(c, wn), bad);
  }
  free(w);
  free(s0);
  free(s1);
  lm_optimizer_free(opt);
}

static void test_optimizers(void **state) {
  (void)state;
  each_case("optimizer/", 7, optimizer_case);
}

/* ---- Weights by Keras name ("layer.kernel") ---- */

static lm_array *weight_named(lm_model *model, const char *full) {
  char layer_name[96];
  const char *dot = strchr(full, '.');
  assert_non_null(dot);
  snprintf(layer_name, sizeof layer_name, "%.*s", (int)(dot - full), full);
  lm_layer *layer = lm_model_layer_by_name(model, layer_name);
  if (!layer) {
    print_error("the model has no layer '%s'\n", layer_name);
    fail();
  }
  const char *wname;
  lm_array *a;
  for (int i = 0; (a = lm_layer_weight(layer, i, &wname)); i++)
    if (!strcmp(wname, dot + 1)) return a;
  print_error("layer '%s' has no weight '%s'\n", layer_name, dot + 1);
  fail();
  return NULL;
}

static void set_weight(lm_array *a, const fx_array *value) {
  assert_int_equal(a->shape.rank, value->rank);
  for (int d = 0; d < value->rank; d++) assert_int_equal(a->shape.dim[d], value->dim[d]);
  memcpy(lm_array_f32(a), value->f, (size_t)value->n * sizeof(float));
}

/* The fixture's "<layer>.<weight>:<suffix>" arrays: their model names, by index. */
static int weights_with_suffix(const fx_case *c, const char *suffix, const fx_array **found, char (*names)[96], int max) {
  int n = 0;
  size_t ls = strlen(suffix);
  for (int a = 0; a < c->n_arrays; a++) {
    const char *name = c->arrays[a].name;
    size_t ln = strlen(name);
    if (ln <= ls || strcmp(name + ln - ls, suffix)) continue;
    assert_true(n < max);
    found[n] = &c->arrays[a];
    snprintf(names[n], sizeof names[n], "%.*s", (int)(ln - ls), name);
    n++;
  }
  return n;
}

static lm_array *wrap(const fx_array *a) {
  lm_shape s = {.rank = a->rank};
  for (int d = 0; d < a->rank; d++) s.dim[d] = a->dim[d];
  lm_array *arr = lm_array_wrap(LM_FLOAT32, s, a->f);
  assert_non_null(arr);
  return arr;
}

/* ---- e. Dense: forward, and the gradients of sum(y * r) ---- */

/* A test-only op: the scalar sum(y * r) with r (an fx_array of y's shape) in a.p. */
static lm_status dot_r_shape(const lm_attrs *a, const lm_shape *in, const lm_dtype *dt, int n, lm_shape *out,
                             lm_dtype *odt, char *err, size_t len) {
  const fx_array *r = a->p;
  if (lm_shape_size(in[0]) >= 0 && lm_shape_size(in[0]) != r->n) {
    snprintf(err, len, "r holds %lld values", (long long)r->n);
    return LM_ERROR_SHAPE;
  }
  out[0] = (lm_shape){.rank = 0};
  odt[0] = LM_FLOAT32;
  return LM_OK;
}

static void dot_r_fwd(lm_plan *p, const lm_opnode *node) {
  const fx_array *r = node->a.p;
  const float *y = lm__f(p, node->in[0]);
  double s = 0;
  for (int64_t i = 0; i < r->n; i++) s += (double)y[i] * r->f[i];
  lm__f(p, node->out[0])[0] = (float)s;
}

static void dot_r_bwd(lm_plan *p, const lm_opnode *node) {
  const fx_array *r = node->a.p;
  float *dy = lm__g(p, node->in[0]), dz = lm__g(p, node->out[0])[0];
  if (!dy) return;
  for (int64_t i = 0; i < r->n; i++) dy[i] += dz * r->f[i];
}

static const lm_op_def dot_r_op = {"dot_r", 1, dot_r_shape, dot_r_fwd, dot_r_bwd, 0, false, 0, 0};

static void dense_case(fx_case *c, int *bad) {
  const fx_array *kernel = need(c, "kernel"), *bias = need(c, "bias"), *x = need(c, "x"), *r = need(c, "r");
  int act = lm_activation_from_name(need_attr(c, "activation"));
  assert_true(act >= 0);
  int units = (int)strtol(need_attr(c, "units"), NULL, 10);
  lm_tensor *in = lm_input(LM_SHAPE(x->dim[1]));
  lm_layer *dense = lm_dense(units, .activation = (lm_activation)act);
  lm_model *model = lm_model_new(LM_TENSORS(in), LM_TENSORS(lm_call(dense, in)));
  assert_int_equal(lm_model_status(model), LM_OK);
  const char *wname;
  set_weight(lm_layer_weight(dense, 0, &wname), kernel);
  assert_string_equal(wname, "kernel");
  set_weight(lm_layer_weight(dense, 1, &wname), bias);
  assert_string_equal(wname, "bias");

  /* Forward through the public API. */
  lm_array *xa = wrap(x);
  lm_outputs out = lm_predict(model, LM_FEED(xa), .verbose = LM_SILENT);
  assert_int_equal(out.n, 1);
  check(c, "predict", lm_array_f32(out.a[0]), need(c, "y"), bad);
  lm_outputs_free(&out);
  lm_array_free(xa);

  /* Gradients through the graph: the objective sum(y * r) is one more op after the model's
   * (see dot_r_op), and the plan's own backward does the rest. */
  lm_graph *g = lm__graph_new();
  assert_non_null(g);
  int vin = lm__graph_input(g, LM_VALUE_INPUT, LM_FLOAT32, LM_SHAPE(LM_NONE, x->dim[1])), vout = -1;
  g->vals[vin].requires_grad = true;
  assert_true(lm__model_emit(model, g, &vin, &vout) >= 0);
  int vobj = lm__emit(g, &dot_r_op, &vout, 1, &(lm_attrs){.p = r});
  assert_true(vobj >= 0);
  int vk = lm__graph_param(g, dense->weights[0]), vb = lm__graph_param(g, dense->weights[1]);
  lm_shape *shapes = calloc((size_t)g->n_vals, sizeof *shapes);
  assert_non_null(shapes);
  shapes[vin] = LM_SHAPE(x->dim[0], x->dim[1]);
  lm_plan *plan = lm__plan_new(g, shapes, 1, vobj);
  free(shapes);
  assert_non_null(plan);
  assert_int_equal(plan->err.code, LM_OK);
  memcpy(lm__f(plan, vin), x->f, (size_t)x->n * sizeof(float));
  lm__plan_forward(plan);
  check(c, "graph forward", lm__f(plan, vout), need(c, "y"), bad);
  lm__plan_backward(plan);
  assert_true(lm__g(plan, vin) && lm__g(plan, vk) && lm__g(plan, vb));
  check(c, "d kernel", lm__g(plan, vk), need(c, "dkernel"), bad);
  check(c, "d bias", lm__g(plan, vb), need(c, "dbias"), bad);
  check(c, "d input", lm__g(plan, vin), need(c, "dx"), bad);
  lm__plan_free(plan);
  lm__graph_free(g);
  lm_session_clear();
}

static void test_dense(void **state) {
  (void)state;
  each_case("dense/", 2, dense_case);
}

/* ---- f./g. One training step (fit over one batch of every sample) ---- */

static lm_model *train_model(const char *case_name, lm_names *losses, lm_loss_weights *weights) {
  if (!strcmp(case_name, "train/dense_relu_softmax_sgd")) {
    lm_tensor *x = lm_input(LM_SHAPE(4), .name = "x");
    lm_tensor *h = lm_call(lm_dense(8, .activation = LM_RELU, .name = "hidden"), x);
    lm_tensor *y = lm_call(lm_dense(3, .activation = LM_SOFTMAX, .name = "probs"), h);
    *losses = LM_LOSSES("categorical_crossentropy");
    *weights = (lm_loss_weights){0};
    return lm_model_new(LM_TENSORS(x), LM_TENSORS(y));
  }
  if (!strcmp(case_name, "train/two_outputs_mse_bce_sgd")) {
    lm_tensor *x = lm_input(LM_SHAPE(4), .name = "x");
    lm_tensor *h = lm_call(lm_dense(5, .activation = LM_TANH, .name = "trunk"), x);
    lm_tensor *reg = lm_call(lm_dense(2, .name = "reg"), h);
    lm_tensor *cls = lm_call(lm_dense(1, .activation = LM_SIGMOID, .name = "cls"), h);
    *losses = LM_LOSSES("mse", "binary_crossentropy");
    *weights = LM_LOSS_WEIGHTS(0.5, 2.0);
    return lm_model_new(LM_TENSORS(x), LM_TENSORS(reg, cls));
  }
  print_error("no lamina model for case '%s'\n", case_name);
  fail();
  return NULL;
}

static void train_case(fx_case *c, int *bad) {
  lm_names losses;
  lm_loss_weights loss_weights;
  lm_model *model = train_model(c->name, &losses, &loss_weights);
  assert_int_equal(lm_model_status(model), LM_OK);
  assert_string_equal(need_attr(c, "optimizer"), "sgd");

  const fx_array *before[16], *after[16];
  char names_b[16][96], names_a[16][96];
  int nb = weights_with_suffix(c, ":before", before, names_b, 16);
  int na = weights_with_suffix(c, ":after", after, names_a, 16);
  assert_int_equal(nb, na);
  int n_weights = 0;
  for (int i = 0; i < lm_model_n_layers(model); i++)
    for (int k = 0; lm_layer_weight(lm_model_get_layer(model, i), k, NULL); k++) n_weights++;
  assert_int_equal(nb, n_weights); /* every weight of the model is set */
  for (int i = 0; i < nb; i++) set_weight(weight_named(model, names_b[i]), before[i]);

  double lr = strtod(need_attr(c, "learning_rate"), NULL);
  assert_int_equal(lm_compile(model, .optimizer = lm_sgd(.learning_rate = lr), .loss = losses,
                              .loss_weights = loss_weights),
                   LM_OK);
  lm_feed x = LM_FEED(wrap(need(c, "x"))), y;
  if (fx_array_get(c, "y")) y = LM_FEED(wrap(need(c, "y")));
  else y = LM_FEED(wrap(need(c, "y_reg")), wrap(need(c, "y_cls")));
  int batch_size = (int)strtol(need_attr(c, "batch_size"), NULL, 10);
  assert_int_equal(batch_size, (int)need(c, "x")->dim[0]); /* one step */
  lm_history *h = lm_fit(model, x, y, .epochs = 1, .batch_size = batch_size, .no_shuffle = true, .verbose = LM_SILENT);
  if (!h) {
    print_error("fit failed: %s\n", lm_last_error());
    fail();
  }
  check_scalar(c, "loss", lm_history_last(h, "loss"), need(c, "loss"), bad);
  for (int i = 0; i < na; i++) {
    char what[1700];
    snprintf(what, sizeof what, "weight %s after the step", names_a[i]);
    check(c, what, lm_array_f32(weight_named(model, names_a[i])), after[i], bad);
  }
  lm_history_free(h);
  for (int i = 0; i < x.n; i++) lm_array_free((lm_array *)x.item[i]);
  for (int i = 0; i < y.n; i++) lm_array_free((lm_array *)y.item[i]);
  lm_session_clear();
}

static void test_train_steps(void **state) {
  (void)state;
  each_case("train/", 2, train_case);
}

/* Last: a case no test looked at would pass silently. */
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
      cmocka_unit_test(test_activations), cmocka_unit_test(test_losses),
      cmocka_unit_test(test_metrics),     cmocka_unit_test(test_optimizers),
      cmocka_unit_test(test_dense),       cmocka_unit_test(test_train_steps),
      cmocka_unit_test(test_every_case_checked),
  };
  return cmocka_run_group_tests(tests, load_fixture, free_fixture);
}
