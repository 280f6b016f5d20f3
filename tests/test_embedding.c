/* Embedding: the lookup op (its numerical gradient check, bad indices), the padding mask of
 * mask_zero and what it does to the recurrent layers after it, sequences of unknown length,
 * and the layer's weights, parameter count and errors. Parity with real Keras for Embedding
 * (alone, and with mask_zero before LSTM, GRU, SimpleRNN and Bidirectional on padded
 * sequences) is in test_rnn.c, which reads every case of tests/fixtures/keras_rnn.txt. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>

#include "model/internal.h"
#include "ops/rnn.h"

/* ---- The objective sum(y * r): a test-only op ---- */

typedef struct rvec {
  const float *v;
  int64_t n;
} rvec;

static lm_status dot_shape(const lm_attrs *a, const lm_shape *in, const lm_dtype *dt, int n, lm_shape *out,
                           lm_dtype *odt, char *err, size_t len) {
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

/* ---- The op ---- */

typedef struct lookup {
  lm_graph *g;
  lm_plan *plan;
  int idx, table, y, mask, loss;
  rvec r;
  float rbuf[64];
} lookup;

/* indices (2, 3) into a (5, 2) table, the objective sum(y * r). */
static void lookup_new(lookup *t, const int32_t *ids) {
  memset(t, 0, sizeof *t);
  t->g = lm__graph_new();
  t->idx = lm__graph_input(t->g, LM_VALUE_INPUT, LM_INT32, LM_SHAPE(2, 3));
  t->table = lm__graph_input(t->g, LM_VALUE_INPUT, LM_FLOAT32, LM_SHAPE(5, 2));
  t->g->vals[t->table].requires_grad = true;
  t->y = lm__emit(t->g, &lm__op_embedding, (int[]){t->idx, t->table}, 2, NULL);
  t->mask = lm__emit(t->g, &lm__op_index_mask, &t->idx, 1, NULL);
  assert_true(t->y >= 0 && t->mask >= 0);
  t->g->vals[t->mask].keep = true;
  assert_int_equal(t->g->vals[t->y].shape.rank, 3);
  assert_int_equal(t->g->vals[t->y].shape.dim[2], 2);
  for (int i = 0; i < 12; i++) t->rbuf[i] = (float)((i * 7) % 5) * 0.5f - 1.0f;
  t->r = (rvec){t->rbuf, 12};
  t->loss = lm__emit(t->g, &dot_op, &t->y, 1, &(lm_attrs){.p = &t->r});
  lm_shape shapes[16] = {0};
  shapes[t->idx] = LM_SHAPE(2, 3), shapes[t->table] = LM_SHAPE(5, 2);
  t->plan = lm__plan_new(t->g, shapes, 1, t->loss);
  assert_int_equal(t->plan->err.code, LM_OK);
  memcpy(lm__i(t->plan, t->idx), ids, 6 * sizeof *ids);
  for (int i = 0; i < 10; i++) lm__f(t->plan, t->table)[i] = 0.1f * (float)i - 0.45f;
}

static void lookup_free(lookup *t) {
  lm__plan_free(t->plan);
  lm__graph_free(t->g);
}

static void test_lookup_gradient(void **state) {
  (void)state;
  const int32_t ids[6] = {4, 0, 2, 2, 0, 4}; /* repeated rows accumulate; rows 1 and 3 unused */
  lookup t;
  lookup_new(&t, ids);
  lm_plan *p = t.plan;
  lm__plan_forward(p);
  const float *tab = lm__f(p, t.table), *y = lm__f(p, t.y), *m = lm__f(p, t.mask);
  for (int i = 0; i < 6; i++) {
    assert_true(y[2 * i] == tab[2 * ids[i]] && y[2 * i + 1] == tab[2 * ids[i] + 1]);
    assert_true(m[i] == (ids[i] != 0 ? 1.0f : 0.0f));
  }
  lm__plan_backward(p);
  float analytic[10];
  memcpy(analytic, lm__g(p, t.table), sizeof analytic);
  float *x = lm__f(p, t.table);
  for (int i = 0; i < 10; i++) {
    const double eps = 1e-2;
    float orig = x[i];
    x[i] = (float)(orig + eps);
    lm__plan_forward(p);
    double fp = lm__f(p, t.loss)[0];
    x[i] = (float)(orig - eps);
    lm__plan_forward(p);
    double fm = lm__f(p, t.loss)[0];
    x[i] = orig;
    double num = (fp - fm) / (2 * eps);
    if (fabs(num - analytic[i]) > 1e-3 + 1e-3 * fabs(num))
      fail_msg("d table[%d]: analytic %g, numerical %g", i, (double)analytic[i], num);
    if (i / 2 == 1 || i / 2 == 3) assert_true(analytic[i] == 0.0f); /* never looked up */
  }
  /* backward accumulates into freshly zeroed gradients: the same again */
  lm__plan_backward(p);
  assert_memory_equal(analytic, lm__g(p, t.table), sizeof analytic);
  assert_null(lm__g(p, t.idx)); /* indices get no gradient */
  lookup_free(&t);
}

static void test_lookup_out_of_range(void **state) {
  (void)state;
  const int32_t ids[6] = {1, 5, 2, -1, 0, 3};
  lookup t;
  lookup_new(&t, ids);
  t.g->ops[0].who = "words";
  lm__plan_forward(t.plan);
  assert_int_equal(t.plan->err.code, LM_ERROR_VALUE);
  assert_string_equal(t.plan->err.msg, "Embedding \"words\": index 5 at position 1 is outside [0, 5)");
  const float *y = lm__f(t.plan, t.y);
  for (int k = 0; k < 2; k++) assert_true(y[2 * 1 + k] == 0.0f && y[2 * 3 + k] == 0.0f); /* zeros, no read */
  assert_true(y[0] == lm__f(t.plan, t.table)[2]);
  lm__plan_backward(t.plan); /* skips the bad indices */
  for (int k = 0; k < 10; k++) assert_true(isfinite(lm__g(t.plan, t.table)[k]));
  lookup_free(&t);
}

static void test_op_refuses_float_indices(void **state) {
  (void)state;
  lm_graph *g = lm__graph_new();
  g->who = "embedding";
  int x = lm__graph_input(g, LM_VALUE_INPUT, LM_FLOAT32, LM_SHAPE(LM_NONE, 4));
  int tab = lm__graph_input(g, LM_VALUE_INPUT, LM_FLOAT32, LM_SHAPE(10, 3));
  assert_true(lm__emit(g, &lm__op_embedding, (int[]){x, tab}, 2, NULL) < 0);
  assert_non_null(strstr(g->err.msg, "int32"));
  lm__graph_free(g);
}

/* ---- The layer ---- */

static void test_layer_weights(void **state) {
  (void)state;
  lm_set_seed(2);
  lm_tensor *ids = lm_input(LM_SHAPE(LM_NONE), .dtype = LM_INT32);
  lm_layer *e = lm_embedding(10000, 64);
  lm_tensor *y = lm_call(e, ids);
  assert_int_equal(lm_tensor_status(y), LM_OK);
  lm_shape s = lm_tensor_shape(y);
  assert_int_equal(s.rank, 3);
  assert_int_equal(s.dim[1], LM_NONE);
  assert_int_equal(s.dim[2], 64);
  assert_int_equal(lm_layer_count_params(e), 640000);
  assert_string_equal(lm_layer_name(e), "embedding");
  assert_string_equal(lm_layer_class(e), "Embedding");
  const char *name;
  lm_array *w = lm_layer_weight(e, 0, &name);
  assert_string_equal(name, "embeddings");
  assert_int_equal(w->shape.dim[0], 10000);
  double lo = 1, hi = -1;
  for (int64_t i = 0; i < w->size; i++) lo = fmin(lo, lm_array_f32(w)[i]), hi = fmax(hi, lm_array_f32(w)[i]);
  assert_true(lo >= -0.05 && hi <= 0.05 && lo < -0.04 && hi > 0.04); /* uniform(-0.05, 0.05) */
  assert_null(lm_layer_weight(e, 1, NULL));

  lm_layer *c = lm_embedding(4, 2, .embeddings_initializer = LM_INIT(LM_CONSTANT, .a = 0.5));
  lm_tensor *grid = lm_call(c, lm_input(LM_SHAPE(3, 5), .dtype = LM_INT32)); /* any index shape */
  assert_int_equal(lm_tensor_shape(grid).rank, 4);
  assert_int_equal(lm_tensor_shape(grid).dim[3], 2);
  assert_true(lm_array_f32(lm_layer_weight(c, 0, NULL))[7] == 0.5f);
  assert_string_equal(lm_layer_name(c), "embedding_1");
  lm_session_clear();
}

static void test_layer_errors(void **state) {
  (void)state;
  lm_tensor *f = lm_input(LM_SHAPE(5));
  lm_tensor *y = lm_call(lm_embedding(10, 4, .name = "words"), f);
  assert_int_not_equal(lm_tensor_status(y), LM_OK);
  const char *msg = lm_tensor_error(y);
  assert_non_null(strstr(msg, "words"));
  assert_non_null(strstr(msg, "int32"));
  assert_non_null(strstr(msg, "(None, 5)"));
  assert_non_null(strstr(lm_layer_error(lm_embedding(0, 4)), "input_dim"));
  assert_int_not_equal(lm_layer_status(lm_embedding(4, -1)), LM_OK);
  lm_session_clear();
}

static lm_array *ids_array(int rows, int steps, const int32_t *v) {
  lm_array *a = lm_array_new(LM_INT32, LM_SHAPE(rows, steps));
  assert_non_null(a);
  memcpy(a->data, v, (size_t)rows * steps * sizeof *v);
  return a;
}

/* Bad indices are reported by predict, evaluate and fit, which return nothing; the model
 * keeps working with good data. */
static void test_bad_index_reported(void **state) {
  (void)state;
  lm_tensor *ids = lm_input(LM_SHAPE(3), .dtype = LM_INT32);
  lm_tensor *h = lm_call(lm_embedding(10, 4, .name = "words"), ids);
  lm_tensor *y = lm_call(lm_dense(1), lm_call(lm_lstm(2), h));
  lm_model *m = lm_model_new(LM_TENSORS(ids), LM_TENSORS(y));
  assert_int_equal(lm_compile(m, .optimizer = lm_sgd(), .loss = LM_LOSSES("mse")), LM_OK);
  lm_array *bad = ids_array(2, 3, (const int32_t[]){1, 2, 3, 4, 10, 6});
  lm_array *good = ids_array(2, 3, (const int32_t[]){1, 2, 3, 4, 9, 6});
  lm_array *t = lm_array_new(LM_FLOAT32, LM_SHAPE(2, 1));
  lm_outputs o = lm_predict(m, LM_FEED(bad), .verbose = LM_SILENT);
  assert_int_equal(o.n, 0);
  assert_non_null(strstr(lm_last_error(), "Embedding \"words\": index 10 at position 4 is outside [0, 10)"));
  assert_null(lm_fit(m, LM_FEED(bad), LM_FEED(t), .verbose = LM_SILENT));
  assert_non_null(strstr(lm_last_error(), "outside [0, 10)"));
  assert_null(lm_evaluate(m, LM_FEED(bad), LM_FEED(t), .verbose = LM_SILENT));
  o = lm_predict(m, LM_FEED(good), .verbose = LM_SILENT);
  assert_int_equal(o.n, 1);
  lm_outputs_free(&o);
  lm_history *hist = lm_fit(m, LM_FEED(good), LM_FEED(t), .verbose = LM_SILENT);
  assert_non_null(hist);
  lm_history_free(hist);
  lm_array_free(bad);
  lm_array_free(good);
  lm_array_free(t);
  lm_session_clear();
}

/* Input((None,), int32) -> Embedding(mask_zero) -> LSTM: two predict calls with 5 and 9
 * steps. The 9-step batch holds the 5-step sequences post-padded with zeros, which the mask
 * skips: both give the same outputs. A float32 array of whole numbers is accepted too. */
static void test_unknown_length(void **state) {
  (void)state;
  lm_set_seed(4);
  lm_tensor *ids = lm_input(LM_SHAPE(LM_NONE), .dtype = LM_INT32);
  lm_tensor *y = lm_call(lm_lstm(3), lm_call(lm_embedding(20, 4, .mask_zero = true), ids));
  lm_model *m = lm_model_new(LM_TENSORS(ids), LM_TENSORS(y));
  assert_int_equal(lm_model_status(m), LM_OK);
  const int32_t v5[10] = {3, 7, 1, 19, 5, 2, 2, 8, 4, 11};
  int32_t v9[18] = {0};
  for (int b = 0; b < 2; b++) memcpy(v9 + 9 * b, v5 + 5 * b, 5 * sizeof *v5);
  lm_array *a5 = ids_array(2, 5, v5), *a9 = ids_array(2, 9, v9);
  lm_outputs o5 = lm_predict(m, LM_FEED(a5), .verbose = LM_SILENT);
  lm_outputs o9 = lm_predict(m, LM_FEED(a9), .verbose = LM_SILENT);
  assert_int_equal(o5.n, 1), assert_int_equal(o9.n, 1);
  assert_int_equal(o5.a[0]->shape.dim[1], 3);
  for (int i = 0; i < 6; i++) assert_true(fabsf(lm_array_f32(o5.a[0])[i] - lm_array_f32(o9.a[0])[i]) < 1e-6f);
  assert_true(fabsf(lm_array_f32(o5.a[0])[0]) > 1e-4f);

  lm_array *f5 = lm_array_new(LM_FLOAT32, LM_SHAPE(2, 5));
  for (int i = 0; i < 10; i++) lm_array_f32(f5)[i] = (float)v5[i];
  lm_outputs of = lm_predict(m, LM_FEED(f5), .verbose = LM_SILENT);
  assert_int_equal(of.n, 1);
  assert_memory_equal(lm_array_f32(of.a[0]), lm_array_f32(o5.a[0]), 6 * sizeof(float));
  lm_outputs_free(&of);
  lm_outputs_free(&o5);
  lm_outputs_free(&o9);
  lm_array_free(a5);
  lm_array_free(a9);
  lm_array_free(f5);
  lm_session_clear();
}

/* The mask reaches every recurrent layer of a stack through return_sequences (and through
 * Bidirectional), so padded and unpadded sequences end alike; without mask_zero they do
 * not. */
static void test_mask_through_stack(void **state) {
  (void)state;
  for (int mask_zero = 1; mask_zero >= 0; mask_zero--) {
    lm_set_seed(6);
    lm_tensor *ids = lm_input(LM_SHAPE(LM_NONE), .dtype = LM_INT32);
    lm_tensor *h = lm_call(lm_embedding(12, 4, .mask_zero = mask_zero), ids);
    h = lm_call(lm_lstm(3, .return_sequences = true), h);
    h = lm_call(lm_bidirectional(lm_gru(3, .return_sequences = true)), h);
    lm_tensor *y = lm_call(lm_simple_rnn(2, .go_backwards = true), h);
    lm_model *m = lm_model_new(LM_TENSORS(ids), LM_TENSORS(y));
    assert_int_equal(lm_model_status(m), LM_OK);
    lm_array *a = ids_array(1, 3, (const int32_t[]){5, 9, 2});
    lm_array *padded = ids_array(1, 6, (const int32_t[]){0, 5, 9, 0, 2, 0});
    lm_outputs oa = lm_predict(m, LM_FEED(a), .verbose = LM_SILENT);
    lm_outputs op = lm_predict(m, LM_FEED(padded), .verbose = LM_SILENT);
    assert_int_equal(oa.n, 1), assert_int_equal(op.n, 1);
    float d = fmaxf(fabsf(lm_array_f32(oa.a[0])[0] - lm_array_f32(op.a[0])[0]),
                    fabsf(lm_array_f32(oa.a[0])[1] - lm_array_f32(op.a[0])[1]));
    if (mask_zero) assert_true(d < 1e-6f);
    else assert_true(d > 1e-5f);
    lm_outputs_free(&oa);
    lm_outputs_free(&op);
    lm_array_free(a);
    lm_array_free(padded);
    lm_session_clear();
  }
}

/* Training reaches the table through the mask and the recurrence: only used rows move. */
static void test_fit_updates_used_rows(void **state) {
  (void)state;
  lm_set_seed(8);
  lm_tensor *ids = lm_input(LM_SHAPE(4), .dtype = LM_INT32);
  lm_layer *e = lm_embedding(6, 3, .mask_zero = true);
  lm_tensor *y = lm_call(lm_dense(1), lm_call(lm_gru(4), lm_call(e, ids)));
  lm_model *m = lm_model_new(LM_TENSORS(ids), LM_TENSORS(y));
  assert_int_equal(lm_compile(m, .optimizer = lm_sgd(.learning_rate = 0.5), .loss = LM_LOSSES("mse")), LM_OK);
  float before[18];
  memcpy(before, lm_array_f32(lm_layer_weight(e, 0, NULL)), sizeof before);
  lm_array *x = ids_array(2, 4, (const int32_t[]){1, 2, 0, 0, 2, 4, 1, 0});
  lm_array *t = lm_array_new(LM_FLOAT32, LM_SHAPE(2, 1));
  lm_array_f32(t)[0] = 1, lm_array_f32(t)[1] = -1;
  lm_history *h = lm_fit(m, LM_FEED(x), LM_FEED(t), .epochs = 2, .verbose = LM_SILENT);
  assert_non_null(h);
  const float *after = lm_array_f32(lm_layer_weight(e, 0, NULL));
  for (int row = 0; row < 6; row++) {
    int moved = 0;
    for (int k = 0; k < 3; k++) moved |= after[row * 3 + k] != before[row * 3 + k];
    assert_int_equal(moved, row == 1 || row == 2 || row == 4); /* row 0 is padding: masked */
  }
  lm_history_free(h);
  lm_array_free(x);
  lm_array_free(t);
  lm_session_clear();
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_lookup_gradient),     cmocka_unit_test(test_lookup_out_of_range),
      cmocka_unit_test(test_op_refuses_float_indices), cmocka_unit_test(test_layer_weights),
      cmocka_unit_test(test_layer_errors),        cmocka_unit_test(test_bad_index_reported),
      cmocka_unit_test(test_unknown_length),      cmocka_unit_test(test_mask_through_stack),
      cmocka_unit_test(test_fit_updates_used_rows),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
