/* Graph building: Sequential and functional models, summary, naming, graph and layer
 * errors, Keras's layer order, shared layers, nested models, and the numerical results of
 * the layers without weights (merges, activations, reshapes, dropout). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lamina/lamina.h>

#include "model/internal.h"

#define assert_near(a, b, tol)                                                              \
  do {                                                                                      \
    double a_ = (a), b_ = (b);                                                              \
    if (!(fabs(a_ - b_) <= (tol))) {                                                        \
      print_error("%s = %.9g, expected %.9g (tol %g)\n", #a, a_, b_, (double)(tol));       \
      fail();                                                                               \
    }                                                                                       \
  } while (0)

#define assert_contains(haystack, needle)                                                   \
  do {                                                                                      \
    const char *h_ = (haystack), *n_ = (needle);                                            \
    if (!h_ || !strstr(h_, n_)) {                                                           \
      print_error("\"%s\" does not contain \"%s\"\n", h_ ? h_ : "(null)", n_);             \
      fail();                                                                               \
    }                                                                                       \
  } while (0)

#define assert_shape(t, ...)                                                                \
  do {                                                                                      \
    lm_shape got_ = lm_tensor_shape(t), want_ = LM_SHAPE(__VA_ARGS__);                     \
    assert_int_equal(got_.rank, want_.rank);                                               \
    for (int d_ = 0; d_ < want_.rank; d_++) assert_int_equal(got_.dim[d_], want_.dim[d_]); \
  } while (0)

/* The summary as a string; the caller frees it. */
/* Through a temporary file: gcc's -Wdangling-pointer misreads open_memstream's buffer. */
static char *summary_text(const lm_model *m) {
  FILE *f = tmpfile();
  assert_non_null(f);
  lm_summary(m, f);
  long len = ftell(f);
  char *buf = calloc((size_t)len + 1, 1);
  assert_non_null(buf);
  rewind(f);
  assert_int_equal(fread(buf, 1, (size_t)len, f), (size_t)len);
  fclose(f);
  return buf;
}

/* Predicts a single-input model on x (n samples) and returns the outputs. */
static lm_outputs predict1(lm_model *m, lm_array *x) {
  lm_outputs out = lm_predict(m, LM_FEED(x), .verbose = LM_SILENT);
  if (out.n == 0) print_error("predict failed: %s\n", lm_last_error());
  assert_int_not_equal(out.n, 0);
  return out;
}

/* ---- The book's first example ---- */

static void test_sequential_and_functional_summary(void **state) {
  (void)state;
  lm_session_clear();
  lm_set_seed(1);
  lm_model *seq = lm_sequential();
  assert_int_equal(lm_sequential_add(seq, lm_input_layer(LM_SHAPE(64))), LM_OK);
  assert_int_equal(lm_sequential_add(seq, lm_dense(32, .activation = LM_RELU)), LM_OK);
  assert_int_equal(lm_sequential_add(seq, lm_dense(32, .activation = LM_RELU)), LM_OK);
  assert_int_equal(lm_sequential_add(seq, lm_dense(10, .activation = LM_SOFTMAX)), LM_OK);
  assert_int_equal(lm_model_status(seq), LM_OK);
  assert_int_equal(lm_model_count_params(seq), 3466);
  assert_int_equal(lm_model_count_trainable_params(seq), 3466);
  assert_int_equal(lm_model_n_layers(seq), 3); /* Sequential's layers leave the InputLayer out */
  assert_string_equal(lm_model_name(seq), "sequential");

  char *s = summary_text(seq);
  assert_contains(s, "Model: \"sequential\"");
  assert_contains(s, "Layer (type)");
  assert_contains(s, "Output Shape");
  assert_contains(s, "Param #");
  assert_contains(s, "dense (Dense)");
  assert_contains(s, "dense_1 (Dense)");
  assert_contains(s, "dense_2 (Dense)");
  assert_contains(s, "(None, 32)");
  assert_contains(s, "(None, 10)");
  assert_contains(s, "2080");
  assert_contains(s, "1056");
  assert_contains(s, "330");
  assert_contains(s, "Total params: 3,466");
  assert_contains(s, "Trainable params: 3,466");
  assert_contains(s, "Non-trainable params: 0");
  assert_null(strstr(s, "Connected to"));
  /* the dense row: name, then its shape, then its count on one line */
  const char *row = strstr(s, "dense (Dense)");
  const char *eol = strchr(row, '\n');
  const char *shape = strstr(row, "(None, 32)"), *params = strstr(row, "2080");
  assert_true(shape && shape < eol && params && params < eol && shape < params);
  free(s);

  lm_session_clear();
  lm_set_seed(1);
  lm_tensor *in = lm_input(LM_SHAPE(64));
  lm_tensor *x = lm_call(lm_dense(32, .activation = LM_RELU), in);
  x = lm_call(lm_dense(32, .activation = LM_RELU), x);
  lm_tensor *out = lm_call(lm_dense(10, .activation = LM_SOFTMAX), x);
  lm_model *m = lm_model_new(LM_TENSORS(in), LM_TENSORS(out));
  assert_int_equal(lm_model_status(m), LM_OK);
  assert_int_equal(lm_model_count_params(m), 3466);
  assert_int_equal(lm_model_n_layers(m), 4);
  assert_string_equal(lm_layer_name(lm_model_get_layer(m, 0)), "input_1");
  assert_string_equal(lm_layer_class(lm_model_get_layer(m, 0)), "InputLayer");
  assert_string_equal(lm_model_name(m), "model");
  s = summary_text(m);
  assert_contains(s, "input_1 (InputLayer)");
  assert_contains(s, "[(None, 64)]");
  assert_contains(s, "dense (Dense)");
  assert_contains(s, "2080");
  assert_contains(s, "Total params: 3,466");
  assert_null(strstr(s, "Connected to")); /* a chain is shown like Sequential */
  free(s);
  lm_session_clear();
}

static void test_summary_connected_to(void **state) {
  (void)state;
  lm_session_clear();
  lm_tensor *a = lm_input(LM_SHAPE(8));
  lm_tensor *b = lm_input(LM_SHAPE(4));
  lm_tensor *ha = lm_call(lm_dense(16), a);
  lm_tensor *hb = lm_call(lm_dense(16), b);
  lm_tensor *c = lm_concatenate(LM_TENSORS(ha, hb));
  lm_tensor *out = lm_call(lm_dense(1), c);
  lm_model *m = lm_model_new(LM_TENSORS(a, b), LM_TENSORS(out));
  assert_int_equal(lm_model_status(m), LM_OK);
  assert_int_equal(lm_model_count_params(m), (8 * 16 + 16) + (4 * 16 + 16) + (32 + 1));
  char *s = summary_text(m);
  assert_contains(s, "Connected to");
  assert_contains(s, "input_1 (InputLayer)");
  assert_contains(s, "input_2 (InputLayer)");
  assert_contains(s, "['input_1[0][0]']");
  assert_contains(s, "['input_2[0][0]']");
  assert_contains(s, "concatenate (Concatenate)");
  assert_contains(s, "(None, 32)");
  /* tf-keras wraps the list after each "'," */
  assert_contains(s, "['dense[0][0]',");
  assert_contains(s, "'dense_1[0][0]']");
  assert_contains(s, "['concatenate[0][0]']");
  assert_contains(s, "Total params: 257");
  free(s);
  lm_session_clear();
}

/* ---- Graph errors ---- */

static void test_graph_disconnected(void **state) {
  (void)state;
  lm_session_clear();
  lm_tensor *in1 = lm_input(LM_SHAPE(4));
  lm_tensor *in2 = lm_input(LM_SHAPE(4));
  lm_tensor *out = lm_call(lm_dense(2), in2);
  lm_model *m = lm_model_new(LM_TENSORS(in1), LM_TENSORS(out));
  assert_non_null(m);
  assert_int_equal(lm_model_status(m), LM_ERROR_GRAPH);
  assert_contains(lm_model_error(m), "Graph disconnected");
  assert_contains(lm_model_error(m), "input_2");
  assert_contains(lm_model_error(m), "dense");
  assert_contains(lm_last_error(), "Graph disconnected");
  /* The error sticks: compile, fit and predict refuse the model without crashing. */
  assert_int_not_equal(lm_compile(m, .loss = LM_LOSSES("mse")), LM_OK);
  float buf[8] = {0};
  lm_array *x = lm_array_wrap(LM_FLOAT32, LM_SHAPE(2, 4), buf);
  lm_outputs o = lm_predict(m, LM_FEED(x), .verbose = LM_SILENT);
  assert_int_equal(o.n, 0);
  assert_contains(lm_last_error(), "Graph disconnected");
  char *s = summary_text(m);
  assert_contains(s, "Graph disconnected");
  free(s);
  lm_array_free(x);

  /* The same output with both inputs is fine (input_1 unused but kept). */
  lm_model *ok = lm_model_new(LM_TENSORS(in1, in2), LM_TENSORS(out));
  assert_int_equal(lm_model_status(ok), LM_OK);
  assert_int_equal(lm_model_n_layers(ok), 3);
  lm_session_clear();
}

static void test_duplicate_names(void **state) {
  (void)state;
  lm_session_clear();
  lm_tensor *in = lm_input(LM_SHAPE(4));
  lm_tensor *x = lm_call(lm_dense(3, .name = "same"), in);
  x = lm_call(lm_dense(2, .name = "same"), x);
  lm_model *m = lm_model_new(LM_TENSORS(in), LM_TENSORS(x));
  assert_int_equal(lm_model_status(m), LM_ERROR_NAME);
  assert_contains(lm_model_error(m), "same");
  assert_contains(lm_model_error(m), "unique");
  lm_session_clear();
}

static void test_automatic_names(void **state) {
  (void)state;
  lm_session_clear();
  lm_layer *d0 = lm_dense(2);
  lm_layer *d1 = lm_dense(2);
  lm_layer *mine = lm_dense(2, .name = "mine");
  lm_layer *d2 = lm_dense(2);
  lm_layer *act = lm_activation_layer(LM_RELU);
  lm_layer *drop = lm_dropout(0.5);
  lm_layer *flat = lm_flatten();
  lm_layer *add = lm_add_layer();
  lm_layer *add1 = lm_add_layer();
  lm_layer *cat = lm_concatenate_layer(.axis = -1);
  assert_string_equal(lm_layer_name(d0), "dense");
  assert_string_equal(lm_layer_name(d1), "dense_1");
  assert_string_equal(lm_layer_name(mine), "mine");
  assert_string_equal(lm_layer_name(d2), "dense_2");
  assert_string_equal(lm_layer_name(act), "activation");
  assert_string_equal(lm_layer_name(drop), "dropout");
  assert_string_equal(lm_layer_name(flat), "flatten");
  assert_string_equal(lm_layer_name(add), "add");
  assert_string_equal(lm_layer_name(add1), "add_1");
  assert_string_equal(lm_layer_name(cat), "concatenate");
  lm_tensor *i1 = lm_input(LM_SHAPE(2));
  lm_tensor *i2 = lm_input(LM_SHAPE(2), .name = "features");
  lm_tensor *i3 = lm_input(LM_SHAPE(2));
  assert_string_equal(lm_tensor_name(i1), "input_1");
  assert_string_equal(lm_tensor_name(i2), "features");
  assert_string_equal(lm_tensor_name(i3), "input_2");
  lm_tensor *y = lm_call(d0, i1);
  assert_string_equal(lm_tensor_name(y), "dense");
  assert_string_equal(lm_layer_class(d0), "Dense");
  assert_string_equal(lm_layer_class(cat), "Concatenate");

  /* Names restart after a session clear. */
  lm_session_clear();
  assert_string_equal(lm_layer_name(lm_dense(1)), "dense");
  assert_string_equal(lm_tensor_name(lm_input(LM_SHAPE(1))), "input_1");
  lm_session_clear();
}

/* ---- Layer errors name the layer and the shapes ---- */

static void test_layer_errors(void **state) {
  (void)state;
  lm_session_clear();
  /* Dense built for 64 features, called on 32. */
  lm_layer *d = lm_dense(8);
  lm_tensor *ok = lm_call(d, lm_input(LM_SHAPE(64)));
  assert_int_equal(lm_tensor_status(ok), LM_OK);
  assert_shape(ok, LM_NONE, 8);
  lm_tensor *bad = lm_call(d, lm_input(LM_SHAPE(32)));
  assert_non_null(bad);
  assert_int_equal(lm_tensor_status(bad), LM_ERROR_SHAPE);
  assert_contains(lm_tensor_error(bad), "\"dense\"");
  assert_contains(lm_tensor_error(bad), "(None, 32)");
  assert_contains(lm_tensor_error(bad), "(64, 8)");
  assert_contains(lm_last_error(), "(None, 32)");
  /* the failed call leaves the layer usable */
  assert_int_equal(lm_layer_status(d), LM_OK);
  assert_int_equal(lm_tensor_status(lm_call(d, lm_input(LM_SHAPE(64)))), LM_OK);

  /* Concatenate of (None, 3, 4) and (None, 5, 6) on the last axis. */
  lm_tensor *c = lm_concatenate(LM_TENSORS(lm_input(LM_SHAPE(3, 4)), lm_input(LM_SHAPE(5, 6))), .axis = -1);
  assert_int_equal(lm_tensor_status(c), LM_ERROR_SHAPE);
  assert_contains(lm_tensor_error(c), "\"concatenate\"");
  assert_contains(lm_tensor_error(c), "(None, 3, 4)");
  assert_contains(lm_tensor_error(c), "(None, 5, 6)");

  /* Add of (None, 32) and (None, 16). */
  lm_tensor *s = lm_add(LM_TENSORS(lm_input(LM_SHAPE(32)), lm_input(LM_SHAPE(16))));
  assert_int_equal(lm_tensor_status(s), LM_ERROR_SHAPE);
  assert_contains(lm_tensor_error(s), "\"add\"");
  assert_contains(lm_tensor_error(s), "(None, 32)");
  assert_contains(lm_tensor_error(s), "(None, 16)");

  /* Dense on an int32 input. */
  lm_tensor *ids = lm_input(LM_SHAPE(5), .dtype = LM_INT32);
  assert_int_equal(lm_tensor_dtype(ids), LM_INT32);
  lm_tensor *di = lm_call(lm_dense(3, .name = "on_ints"), ids);
  assert_int_not_equal(lm_tensor_status(di), LM_OK);
  assert_contains(lm_tensor_error(di), "on_ints");
  assert_contains(lm_tensor_error(di), "int32");

  /* Dropout(1.5): the layer carries the error, and so does every call on it. */
  lm_layer *drop = lm_dropout(1.5);
  assert_non_null(drop);
  assert_int_equal(lm_layer_status(drop), LM_ERROR_VALUE);
  assert_contains(lm_layer_error(drop), "1.5");
  lm_tensor *dt = lm_call(drop, lm_input(LM_SHAPE(4)));
  assert_int_equal(lm_tensor_status(dt), LM_ERROR_VALUE);
  assert_contains(lm_tensor_error(dt), "rate");
  assert_contains(lm_tensor_error(dt), "1.5");
  assert_int_equal(lm_layer_status(lm_dropout(-0.1)), LM_ERROR_VALUE);
  assert_int_equal(lm_layer_status(lm_dense(0)), LM_ERROR_VALUE);

  /* A one-input layer called on two. */
  lm_tensor *two = lm_call(lm_dense(2, .name = "single"), lm_input(LM_SHAPE(4)), lm_input(LM_SHAPE(4)));
  assert_int_equal(lm_tensor_status(two), LM_ERROR_VALUE);
  assert_contains(lm_tensor_error(two), "single");
  assert_contains(lm_tensor_error(two), "2");
  /* A merge layer called on one. */
  lm_tensor *one = lm_add(LM_TENSORS(lm_input(LM_SHAPE(4))));
  assert_int_equal(lm_tensor_status(one), LM_ERROR_VALUE);
  /* Subtract takes exactly two. */
  lm_tensor *a4 = lm_input(LM_SHAPE(4));
  lm_tensor *three = lm_subtract(LM_TENSORS(a4, a4, a4));
  assert_int_equal(lm_tensor_status(three), LM_ERROR_VALUE);
  assert_contains(lm_tensor_error(three), "subtract");
  /* Reshape to a size that does not fit. */
  lm_tensor *r = lm_call(lm_reshape(LM_SHAPE(4)), lm_input(LM_SHAPE(2, 3)));
  assert_int_equal(lm_tensor_status(r), LM_ERROR_SHAPE);
  assert_contains(lm_tensor_error(r), "(None, 2, 3)");
  /* An InputLayer cannot be called. */
  lm_tensor *ic = lm_call(lm_input_layer(LM_SHAPE(4)), lm_input(LM_SHAPE(4)));
  assert_int_not_equal(lm_tensor_status(ic), LM_OK);
  lm_session_clear();
}

static void test_error_propagation(void **state) {
  (void)state;
  lm_session_clear();
  lm_tensor *in = lm_input(LM_SHAPE(8));
  lm_tensor *a = lm_call(lm_dense(4), in);
  lm_tensor *bad = lm_add(LM_TENSORS(a, lm_call(lm_dense(3), in)));
  assert_int_equal(lm_tensor_status(bad), LM_ERROR_SHAPE);
  char first[1024];
  snprintf(first, sizeof first, "%s", lm_tensor_error(bad));
  assert_contains(first, "\"add\"");

  /* Later calls pass the first error on, unchanged. */
  lm_tensor *next = lm_call(lm_dense(2), bad);
  assert_int_equal(lm_tensor_status(next), LM_ERROR_SHAPE);
  assert_string_equal(lm_tensor_error(next), first);
  lm_tensor *then = lm_call(lm_activation_layer(LM_RELU), next);
  assert_string_equal(lm_tensor_error(then), first);
  lm_tensor *merged = lm_concatenate(LM_TENSORS(a, then));
  assert_string_equal(lm_tensor_error(merged), first);

  lm_model *m = lm_model_new(LM_TENSORS(in), LM_TENSORS(a, then));
  assert_non_null(m);
  assert_int_equal(lm_model_status(m), LM_ERROR_SHAPE);
  assert_string_equal(lm_model_error(m), first);
  assert_int_not_equal(lm_compile(m, .loss = LM_LOSSES("mse")), LM_OK);
  assert_contains(lm_last_error(), "\"add\"");

  /* A Sequential that fails keeps the first error too. */
  lm_model *seq = lm_sequential();
  assert_int_equal(lm_sequential_add(seq, lm_dense(4)), LM_ERROR_STATE); /* no InputLayer yet */
  assert_contains(lm_model_error(seq), "InputLayer");
  lm_model *seq2 = lm_sequential();
  assert_int_equal(lm_sequential_add(seq2, lm_input_layer(LM_SHAPE(4))), LM_OK);
  assert_int_equal(lm_sequential_add(seq2, lm_dropout(2.0)), LM_ERROR_VALUE);
  assert_int_not_equal(lm_sequential_add(seq2, lm_dense(4)), LM_OK);
  assert_contains(lm_model_error(seq2), "rate");
  lm_session_clear();
}

/* ---- Keras's model.layers order ---- */

static void test_layer_order(void **state) {
  (void)state;
  lm_session_clear();
  lm_tensor *in = lm_input(LM_SHAPE(4));
  /* Created in the order short, a, b; the graph is in -> a -> b and in -> short, merged. */
  lm_layer *shortcut = lm_dense(3, .name = "short");
  lm_layer *la = lm_dense(5, .name = "a");
  lm_layer *lb = lm_dense(3, .name = "b");
  lm_tensor *s = lm_call(shortcut, in);
  lm_tensor *x = lm_call(la, in);
  x = lm_call(lb, x);
  lm_tensor *out = lm_add(LM_TENSORS(x, s), .name = "merge");
  lm_model *m = lm_model_new(LM_TENSORS(in), LM_TENSORS(out));
  assert_int_equal(lm_model_status(m), LM_OK);
  /* Keras: inputs first, then by decreasing depth, ties by discovery from the outputs. */
  const char *want[] = {"input_1", "a", "b", "short", "merge"};
  assert_int_equal(lm_model_n_layers(m), 5);
  for (int i = 0; i < 5; i++) assert_string_equal(lm_layer_name(lm_model_get_layer(m, i)), want[i]);
  assert_ptr_equal(lm_model_layer_by_name(m, "short"), shortcut);
  assert_null(lm_model_layer_by_name(m, "nope"));
  assert_null(lm_model_get_layer(m, 5));

  /* A plain diamond: in -> (left, right) -> add -> out. */
  lm_session_clear();
  in = lm_input(LM_SHAPE(4));
  lm_tensor *left = lm_call(lm_dense(2, .name = "left"), in);
  lm_tensor *right = lm_call(lm_dense(2, .name = "right"), in);
  out = lm_call(lm_dense(1, .name = "out"), lm_add(LM_TENSORS(left, right)));
  m = lm_model_new(LM_TENSORS(in), LM_TENSORS(out));
  const char *want2[] = {"input_1", "left", "right", "add", "out"};
  assert_int_equal(lm_model_n_layers(m), 5);
  for (int i = 0; i < 5; i++) assert_string_equal(lm_layer_name(lm_model_get_layer(m, i)), want2[i]);
  lm_tensors ins = lm_model_inputs(m), outs = lm_model_outputs(m);
  assert_int_equal(ins.n, 1);
  assert_ptr_equal(ins.t[0], in);
  assert_int_equal(outs.n, 1);
  assert_ptr_equal(outs.t[0], out);
  lm_session_clear();
}

/* ---- Shared layers and nested models ---- */

static void test_shared_layer(void **state) {
  (void)state;
  lm_session_clear();
  lm_set_seed(3);
  lm_tensor *in1 = lm_input(LM_SHAPE(8));
  lm_tensor *in2 = lm_input(LM_SHAPE(8));
  lm_layer *shared = lm_dense(4, .name = "shared");
  lm_tensor *y1 = lm_call(shared, in1);
  lm_array *k_after_first = lm_layer_weight(shared, 0, NULL);
  lm_tensor *y2 = lm_call(shared, in2);
  assert_ptr_equal(lm_layer_weight(shared, 0, NULL), k_after_first); /* built once */
  lm_tensor *out = lm_add(LM_TENSORS(y1, y2));
  lm_model *m = lm_model_new(LM_TENSORS(in1, in2), LM_TENSORS(out));
  assert_int_equal(lm_model_status(m), LM_OK);
  assert_int_equal(shared->n_nodes, 2);
  assert_ptr_equal(shared->nodes[0]->inputs[0], in1);
  assert_ptr_equal(shared->nodes[1]->inputs[0], in2);
  assert_int_equal(lm_layer_count_params(shared), 8 * 4 + 4);
  assert_int_equal(lm_model_count_params(m), 8 * 4 + 4); /* counted once */
  assert_int_equal(lm_model_n_layers(m), 4);              /* input_1, input_2, shared, add */
  const char *name = NULL;
  assert_non_null(lm_layer_weight(shared, 1, &name));
  assert_string_equal(name, "bias");
  assert_null(lm_layer_weight(shared, 2, NULL));
  char *s = summary_text(m);
  assert_contains(s, "shared (Dense)");
  assert_contains(s, "input_1[0][0]");
  assert_contains(s, "input_2[0][0]");
  assert_contains(s, "'shared[0][0]'");
  assert_contains(s, "'shared[1][0]'");
  free(s);

  /* Both uses compute with the same weights: in1 == in2 gives out == 2 * shared(x). */
  float kb[8 * 4 + 4];
  float *k = lm_array_f32(lm_layer_weight(shared, 0, NULL)), *b = lm_array_f32(lm_layer_weight(shared, 1, NULL));
  for (int i = 0; i < 4; i++) b[i] = 0.25f * (float)(i + 1);
  memcpy(kb, k, sizeof(float) * 32);
  memcpy(kb + 32, b, sizeof(float) * 4);
  float xs[3 * 8];
  for (int i = 0; i < 24; i++) xs[i] = (float)((i * 7) % 11) / 5.0f - 1.0f;
  lm_array *x = lm_array_wrap(LM_FLOAT32, LM_SHAPE(3, 8), xs);
  lm_outputs o = lm_predict(m, LM_FEED(x, x), .verbose = LM_SILENT);
  assert_int_equal(o.n, 1);
  for (int r = 0; r < 3; r++)
    for (int u = 0; u < 4; u++) {
      double z = kb[32 + u];
      for (int f = 0; f < 8; f++) z += (double)xs[r * 8 + f] * kb[f * 4 + u];
      assert_near(lm_array_f32(o.a[0])[r * 4 + u], 2 * z, 1e-5);
    }
  lm_outputs_free(&o);
  lm_array_free(x);
  lm_session_clear();
}

static void test_model_as_layer(void **state) {
  (void)state;
  lm_session_clear();
  lm_set_seed(11);
  lm_tensor *in = lm_input(LM_SHAPE(5));
  lm_tensor *h = lm_call(lm_dense(3, .activation = LM_TANH), in);
  lm_tensor *y = lm_call(lm_dense(2), h);
  lm_model *inner = lm_model_new(LM_TENSORS(in), LM_TENSORS(y), .name = "inner");
  assert_int_equal(lm_model_status(inner), LM_OK);

  lm_tensor *in2 = lm_input(LM_SHAPE(5));
  lm_tensor *z = lm_call(inner, in2);
  assert_int_equal(lm_tensor_status(z), LM_OK);
  assert_shape(z, LM_NONE, 2);
  lm_tensor *z2 = lm_call(lm_activation_layer(LM_LINEAR), z);
  lm_model *outer = lm_model_new(LM_TENSORS(in2), LM_TENSORS(z2), .name = "outer");
  assert_int_equal(lm_model_status(outer), LM_OK);
  assert_int_equal(lm_model_count_params(outer), lm_model_count_params(inner));
  assert_int_equal(lm_model_count_params(outer), 5 * 3 + 3 + 3 * 2 + 2);
  assert_ptr_equal(lm_model_layer_by_name(outer, "inner"), lm_model_layer(inner));
  assert_string_equal(lm_layer_class(lm_model_layer(inner)), "Functional");
  char *s = summary_text(outer);
  assert_contains(s, "inner (Functional)");
  assert_contains(s, "(None, 2)");
  assert_contains(s, "Total params: 26");
  free(s);

  float xs[4 * 5];
  for (int i = 0; i < 20; i++) xs[i] = sinf((float)i);
  lm_array *x = lm_array_wrap(LM_FLOAT32, LM_SHAPE(4, 5), xs);
  lm_outputs a = predict1(inner, x), b = predict1(outer, x);
  assert_int_equal(a.a[0]->size, 8);
  assert_int_equal(b.a[0]->size, 8);
  for (int i = 0; i < 8; i++) assert_near(lm_array_f32(b.a[0])[i], lm_array_f32(a.a[0])[i], 1e-6);
  lm_outputs_free(&a);
  lm_outputs_free(&b);

  /* Changing the inner model's weights changes the outer model's predictions. */
  lm_layer *last = lm_model_get_layer(inner, lm_model_n_layers(inner) - 1);
  lm_array_f32(lm_layer_weight(last, 1, NULL))[0] += 1.0f;
  a = predict1(inner, x);
  b = predict1(outer, x);
  for (int i = 0; i < 8; i++) assert_near(lm_array_f32(b.a[0])[i], lm_array_f32(a.a[0])[i], 1e-6);
  lm_outputs_free(&a);
  lm_outputs_free(&b);

  /* A model called on the wrong number of inputs. */
  lm_tensor *bad = lm_call(inner, lm_input(LM_SHAPE(5)), lm_input(LM_SHAPE(5)));
  assert_int_not_equal(lm_tensor_status(bad), LM_OK);
  assert_contains(lm_tensor_error(bad), "inner");
  lm_array_free(x);
  lm_session_clear();
}

/* A layer used directly and inside a nested model: its weights count once (Keras's
 * model.weights holds each variable once), while each row of the summary shows its own. */
static void test_nested_shared_weights_counted_once(void **state) {
  (void)state;
  lm_session_clear();
  lm_layer *d = lm_dense(3);
  lm_tensor *in0 = lm_input(LM_SHAPE(4));
  lm_model *inner = lm_model_new(LM_TENSORS(in0), LM_TENSORS(lm_call(d, in0)), .name = "inner");
  lm_tensor *x = lm_input(LM_SHAPE(4));
  lm_tensor *y = lm_call(d, x);
  lm_tensor *z = lm_call(inner, x);
  lm_model *outer = lm_model_new(LM_TENSORS(x), LM_TENSORS(lm_add(LM_TENSORS(y, z))));
  assert_int_equal(lm_model_status(outer), LM_OK);
  assert_int_equal(lm_model_count_params(inner), 15);
  assert_int_equal(lm_model_count_params(outer), 15);
  assert_int_equal(lm_model_count_trainable_params(outer), 15);
  char *s = summary_text(outer);
  assert_contains(s, "inner (Functional)");
  assert_contains(s, "Total params: 15\n");
  free(s);
  /* and both uses compute with the one kernel: out = 2 * d(x) */
  float *k = lm_array_f32(lm_layer_weight(d, 0, NULL));
  for (int i = 0; i < 12; i++) k[i] = (float)(i % 3) - 1.0f; /* columns: -1, 0, 1 */
  float xs[4] = {1, 2, 3, 4};
  lm_array *xa = lm_array_wrap(LM_FLOAT32, LM_SHAPE(1, 4), xs);
  lm_outputs o = predict1(outer, xa);
  assert_near(lm_array_f32(o.a[0])[0], -20, 1e-6);
  assert_near(lm_array_f32(o.a[0])[1], 0, 1e-6);
  assert_near(lm_array_f32(o.a[0])[2], 20, 1e-6);
  lm_outputs_free(&o);
  lm_array_free(xa);
  lm_session_clear();
}

/* ---- Shapes and numerical results of layers without weights ---- */

static void test_reshape_flatten_concatenate_shapes(void **state) {
  (void)state;
  lm_session_clear();
  lm_tensor *in = lm_input(LM_SHAPE(6));
  lm_tensor *r = lm_call(lm_reshape(LM_SHAPE(2, 3)), in);
  assert_shape(r, LM_NONE, 2, 3);
  lm_tensor *r2 = lm_call(lm_reshape(LM_SHAPE(-1, 2)), r);
  assert_shape(r2, LM_NONE, 3, 2);
  lm_tensor *f = lm_call(lm_flatten(), r2);
  assert_shape(f, LM_NONE, 6);
  lm_tensor *img = lm_input(LM_SHAPE(4, 5, 3));
  assert_shape(lm_call(lm_flatten(), img), LM_NONE, 60);
  assert_shape(lm_call(lm_reshape(LM_SHAPE(20, -1)), img), LM_NONE, 20, 3);

  lm_tensor *p = lm_input(LM_SHAPE(2, 3)), *q = lm_input(LM_SHAPE(2, 5)), *t = lm_input(LM_SHAPE(4, 3));
  assert_shape(lm_concatenate(LM_TENSORS(p, q)), LM_NONE, 2, 8);
  assert_shape(lm_concatenate(LM_TENSORS(p, q), .axis = -1), LM_NONE, 2, 8);
  assert_shape(lm_concatenate(LM_TENSORS(p, q), .axis = 2), LM_NONE, 2, 8);
  assert_shape(lm_concatenate(LM_TENSORS(p, t), .axis = 1), LM_NONE, 6, 3);
  assert_shape(lm_concatenate(LM_TENSORS(p, t, p), .axis = -2), LM_NONE, 8, 3);
  assert_int_equal(lm_tensor_status(lm_concatenate(LM_TENSORS(p, q), .axis = 1)), LM_ERROR_SHAPE);

  /* Values: reshape keeps row-major order; concatenate on axis 1 stacks the rows. */
  lm_tensor *a = lm_input(LM_SHAPE(6)), *b = lm_input(LM_SHAPE(3, 2));
  lm_tensor *ra = lm_call(lm_reshape(LM_SHAPE(3, 2)), a);
  lm_tensor *cat1 = lm_concatenate(LM_TENSORS(ra, b), .axis = 1);   /* (None, 6, 2) */
  lm_tensor *cat2 = lm_concatenate(LM_TENSORS(ra, b), .axis = -1);  /* (None, 3, 4) */
  lm_tensor *flat = lm_call(lm_flatten(), cat2);
  assert_shape(cat1, LM_NONE, 6, 2);
  assert_shape(flat, LM_NONE, 12);
  lm_model *m = lm_model_new(LM_TENSORS(a, b), LM_TENSORS(cat1, flat));
  assert_int_equal(lm_model_status(m), LM_OK);
  float av[2 * 6], bv[2 * 6];
  for (int i = 0; i < 12; i++) av[i] = (float)i, bv[i] = (float)(100 + i);
  lm_array *xa = lm_array_wrap(LM_FLOAT32, LM_SHAPE(2, 6), av), *xb = lm_array_wrap(LM_FLOAT32, LM_SHAPE(2, 3, 2), bv);
  lm_outputs o = lm_predict(m, LM_FEED(xa, xb), .verbose = LM_SILENT);
  assert_int_equal(o.n, 2);
  assert_int_equal(o.a[0]->shape.rank, 3);
  assert_int_equal(o.a[0]->shape.dim[0], 2);
  assert_int_equal(o.a[0]->shape.dim[1], 6);
  assert_int_equal(o.a[1]->shape.dim[1], 12);
  for (int s = 0; s < 2; s++) {
    const float *c1 = lm_array_f32(o.a[0]) + s * 12, *c2 = lm_array_f32(o.a[1]) + s * 12;
    for (int i = 0; i < 6; i++) assert_near(c1[i], av[s * 6 + i], 0); /* rows of a first */
    for (int i = 0; i < 6; i++) assert_near(c1[6 + i], bv[s * 6 + i], 0);
    for (int row = 0; row < 3; row++) {
      assert_near(c2[row * 4 + 0], av[s * 6 + row * 2 + 0], 0);
      assert_near(c2[row * 4 + 1], av[s * 6 + row * 2 + 1], 0);
      assert_near(c2[row * 4 + 2], bv[s * 6 + row * 2 + 0], 0);
      assert_near(c2[row * 4 + 3], bv[s * 6 + row * 2 + 1], 0);
    }
  }
  lm_outputs_free(&o);
  lm_array_free(xa);
  lm_array_free(xb);
  lm_session_clear();
}

static void test_merge_values(void **state) {
  (void)state;
  lm_session_clear();
  lm_tensor *a = lm_input(LM_SHAPE(3)), *b = lm_input(LM_SHAPE(3)), *c = lm_input(LM_SHAPE(3));
  lm_tensor *avg = lm_average(LM_TENSORS(a, b, c));
  lm_tensor *mx = lm_maximum(LM_TENSORS(a, b, c));
  lm_tensor *mul = lm_multiply(LM_TENSORS(a, b, c));
  lm_tensor *sub = lm_subtract(LM_TENSORS(a, b));
  lm_tensor *add = lm_add(LM_TENSORS(a, b, c));
  lm_model *m = lm_model_new(LM_TENSORS(a, b, c), LM_TENSORS(avg, mx, mul, sub, add));
  assert_int_equal(lm_model_status(m), LM_OK);
  assert_int_equal(lm_model_count_params(m), 0);
  float av[] = {1, -2, 3, 0.5f, 0, -1}, bv[] = {4, 5, -6, -0.5f, 2, -3}, cv[] = {-1, 2, 0.5f, 1, 1, 10};
  lm_array *xa = lm_array_wrap(LM_FLOAT32, LM_SHAPE(2, 3), av);
  lm_array *xb = lm_array_wrap(LM_FLOAT32, LM_SHAPE(2, 3), bv);
  lm_array *xc = lm_array_wrap(LM_FLOAT32, LM_SHAPE(2, 3), cv);
  lm_outputs o = lm_predict(m, LM_FEED(xa, xb, xc), .verbose = LM_SILENT);
  assert_int_equal(o.n, 5);
  for (int i = 0; i < 6; i++) {
    double x = av[i], y = bv[i], z = cv[i];
    assert_near(lm_array_f32(o.a[0])[i], (x + y + z) / 3, 1e-6);
    assert_near(lm_array_f32(o.a[1])[i], fmax(x, fmax(y, z)), 0);
    assert_near(lm_array_f32(o.a[2])[i], x * y * z, 1e-6);
    assert_near(lm_array_f32(o.a[3])[i], x - y, 0);
    assert_near(lm_array_f32(o.a[4])[i], x + y + z, 1e-6);
  }
  lm_outputs_free(&o);
  lm_array_free(xa);
  lm_array_free(xb);
  lm_array_free(xc);
  lm_session_clear();
}

static void test_activation_values(void **state) {
  (void)state;
  lm_session_clear();
  static const lm_activation acts[] = {LM_LINEAR, LM_RELU, LM_SIGMOID, LM_TANH, LM_SOFTMAX,
                                       LM_ELU,    LM_SELU, LM_GELU,    LM_SOFTPLUS, LM_SWISH};
  enum { N_ACT = sizeof acts / sizeof acts[0], COLS = 5 };
  lm_tensor *in = lm_input(LM_SHAPE(COLS));
  lm_tensors outs = {0};
  for (int k = 0; k < N_ACT; k++) outs.t[outs.n++] = lm_call(lm_activation_layer(acts[k]), in);
  lm_model *m = lm_model_new(LM_TENSORS(in), outs);
  assert_int_equal(lm_model_status(m), LM_OK);
  float xs[2 * COLS] = {-2.0f, -0.5f, 0.0f, 0.7f, 3.0f, -20.0f, -1e-3f, 1e-3f, 1.5f, 20.0f};
  lm_array *x = lm_array_wrap(LM_FLOAT32, LM_SHAPE(2, COLS), xs);
  lm_outputs o = predict1(m, x);
  assert_int_equal(o.n, N_ACT);
  const double selu_alpha = 1.6732632423543772848170429916717, selu_scale = 1.0507009873554804934193349852946;
  for (int k = 0; k < N_ACT; k++) {
    const float *y = lm_array_f32(o.a[k]);
    for (int r = 0; r < 2; r++) {
      double smax = -INFINITY, ssum = 0;
      for (int c = 0; c < COLS; c++) smax = fmax(smax, xs[r * COLS + c]);
      for (int c = 0; c < COLS; c++) ssum += exp(xs[r * COLS + c] - smax);
      for (int c = 0; c < COLS; c++) {
        double v = xs[r * COLS + c], want = 0;
        switch (acts[k]) {
        case LM_ACTIVATION_DEFAULT:
        case LM_LINEAR: want = v; break;
        case LM_RELU: want = v > 0 ? v : 0; break;
        case LM_SIGMOID: want = 1 / (1 + exp(-v)); break;
        case LM_TANH: want = tanh(v); break;
        case LM_SOFTMAX: want = exp(v - smax) / ssum; break;
        case LM_ELU: want = v > 0 ? v : expm1(v); break;
        case LM_SELU: want = selu_scale * (v > 0 ? v : selu_alpha * expm1(v)); break;
        case LM_GELU: want = 0.5 * v * (1 + erf(v / sqrt(2.0))); break;
        case LM_SOFTPLUS: want = log1p(exp(v)); break;
        case LM_SWISH: want = v / (1 + exp(-v)); break;
        }
        double tol = 1e-6 * fmax(1.0, fabs(want));
        if (fabs(y[r * COLS + c] - want) > tol) {
          print_error("%s(%g) = %.9g, expected %.9g\n", lm_activation_name(acts[k]), v, (double)y[r * COLS + c], want);
          fail();
        }
      }
    }
  }
  /* Spot values computed by hand. */
  assert_near(lm_array_f32(o.a[1])[0], 0.0, 0);                 /* relu(-2) */
  assert_near(lm_array_f32(o.a[2])[2], 0.5, 1e-7);              /* sigmoid(0) */
  assert_near(lm_array_f32(o.a[7])[4], 2.9959503, 1e-5);        /* gelu(3) = 1.5 * (1 + erf(2.1213)) */
  assert_near(lm_array_f32(o.a[8])[2], log(2.0), 1e-7);         /* softplus(0) */
  assert_near(lm_array_f32(o.a[6])[3], selu_scale * 0.7, 1e-6); /* selu(0.7) */
  lm_outputs_free(&o);

  /* Names of activations. */
  assert_string_equal(lm_activation_name(LM_GELU), "gelu");
  assert_int_equal(lm_activation_from_name("softmax"), LM_SOFTMAX);
  assert_int_equal(lm_activation_from_name("silu"), LM_SWISH);
  assert_int_equal(lm_activation_from_name("nope"), -1);
  assert_int_equal(lm_layer_status(lm_activation_layer((lm_activation)42)), LM_ERROR_VALUE);
  lm_array_free(x);
  lm_session_clear();
}

/* Dense with an activation gives the same result as Dense followed by Activation. */
static void test_dense_values(void **state) {
  (void)state;
  lm_session_clear();
  lm_tensor *in = lm_input(LM_SHAPE(3));
  lm_layer *d = lm_dense(2, .activation = LM_RELU);
  lm_layer *nb = lm_dense(2, .no_bias = true, .kernel_initializer = LM_INIT(LM_ONES));
  lm_tensor *y = lm_call(d, in), *z = lm_call(nb, in);
  lm_model *m = lm_model_new(LM_TENSORS(in), LM_TENSORS(y, z));
  assert_int_equal(lm_model_status(m), LM_OK);
  assert_int_equal(lm_layer_count_params(nb), 6);
  assert_null(lm_layer_weight(nb, 1, NULL));
  float *k = lm_array_f32(lm_layer_weight(d, 0, NULL)), *b = lm_array_f32(lm_layer_weight(d, 1, NULL));
  const float kv[] = {1, -1, 2, 0.5f, -3, 1};
  memcpy(k, kv, sizeof kv);
  b[0] = 0.5f, b[1] = -0.25f;
  float xs[] = {1, 2, 3, -1, 0, 1};
  lm_array *x = lm_array_wrap(LM_FLOAT32, LM_SHAPE(2, 3), xs);
  lm_outputs o = predict1(m, x);
  /* sample 0: [1*1 + 2*2 + 3*-3 + 0.5, 1*-1 + 2*0.5 + 3*1 - 0.25] = [-3.5, 2.75] -> relu [0, 2.75] */
  /* sample 1: [-1 + 0 - 3 + 0.5, 1 + 0 + 1 - 0.25] = [-3.5, 1.75] -> relu [0, 1.75] */
  const float want[] = {0, 2.75f, 0, 1.75f};
  for (int i = 0; i < 4; i++) assert_near(lm_array_f32(o.a[0])[i], want[i], 1e-6);
  const float sums[] = {6, 6, 0, 0};
  for (int i = 0; i < 4; i++) assert_near(lm_array_f32(o.a[1])[i], sums[i], 1e-6);
  lm_outputs_free(&o);
  lm_array_free(x);
  lm_session_clear();
}

/* ---- Dropout ---- */

static void test_dropout(void **state) {
  (void)state;
  lm_session_clear();
  lm_set_seed(5);
  enum { N = 4000 };
  const double rate = 0.3;
  lm_tensor *in = lm_input(LM_SHAPE(N));
  lm_tensor *y = lm_call(lm_dropout(rate), in);
  lm_model *m = lm_model_new(LM_TENSORS(in), LM_TENSORS(y));
  assert_int_equal(lm_model_status(m), LM_OK);
  float *ones = malloc(sizeof(float) * N);
  for (int i = 0; i < N; i++) ones[i] = 1.0f;
  lm_array *x = lm_array_wrap(LM_FLOAT32, LM_SHAPE(1, N), ones);

  /* Inference: the identity. */
  lm_outputs o = predict1(m, x);
  for (int i = 0; i < N; i++) assert_near(lm_array_f32(o.a[0])[i], 1.0, 0);
  lm_outputs_free(&o);

  /* Training mode, through the model's own graph: about `rate` zeros, the rest 1/(1-rate). */
  lm_graph *g = lm__graph_new();
  int vin = lm__graph_input(g, LM_VALUE_INPUT, LM_FLOAT32, LM_SHAPE(LM_NONE, N)), vout = -1;
  assert_int_equal(lm__model_emit(m, g, &vin, &vout), 1);
  lm_shape *shapes = calloc((size_t)g->n_vals, sizeof *shapes);
  shapes[vin] = LM_SHAPE(1, N);
  lm_plan *p = lm__plan_new(g, shapes, 1, -1);
  assert_int_equal(p->err.code, LM_OK);
  memcpy(p->data[vin], ones, sizeof(float) * N);
  int zeros[2] = {0, 0}, differ = 0;
  float first[N];
  for (int step = 0; step < 2; step++) {
    lm__plan_forward(p);
    const float *out = lm__f(p, vout);
    for (int i = 0; i < N; i++) {
      if (out[i] == 0) zeros[step]++;
      else assert_near(out[i], 1.0 / (1.0 - rate), 1e-6);
      if (step == 0) first[i] = out[i];
      else differ += first[i] != out[i];
    }
  }
  for (int step = 0; step < 2; step++) assert_near((double)zeros[step] / N, rate, 0.03);
  assert_true(differ > N / 10); /* a new mask each step */
  lm__plan_free(p);
  free(shapes);
  lm__graph_free(g);

  /* Training with dropout runs, and predict stays deterministic afterwards. */
  lm_session_clear();
  lm_set_seed(5);
  in = lm_input(LM_SHAPE(4));
  lm_tensor *h = lm_call(lm_dense(8, .activation = LM_RELU), in);
  h = lm_call(lm_dropout(0.5), h);
  lm_tensor *out = lm_call(lm_dense(1), h);
  m = lm_model_new(LM_TENSORS(in), LM_TENSORS(out));
  assert_int_equal(lm_compile(m, .optimizer = lm_sgd(), .loss = LM_LOSSES("mse")), LM_OK);
  float xs[16 * 4], ys[16];
  for (int i = 0; i < 16; i++) {
    for (int j = 0; j < 4; j++) xs[i * 4 + j] = (float)((i + j) % 5) / 4.0f;
    ys[i] = xs[i * 4] - xs[i * 4 + 1];
  }
  lm_array *tx = lm_array_wrap(LM_FLOAT32, LM_SHAPE(16, 4), xs), *ty = lm_array_wrap(LM_FLOAT32, LM_SHAPE(16, 1), ys);
  lm_history *hist = lm_fit(m, LM_FEED(tx), LM_FEED(ty), .epochs = 2, .batch_size = 8, .verbose = LM_SILENT);
  assert_non_null(hist);
  assert_int_equal(lm_history_n_epochs(hist), 2);
  lm_history_free(hist);
  lm_outputs p1 = predict1(m, tx), p2 = predict1(m, tx);
  assert_memory_equal(lm_array_f32(p1.a[0]), lm_array_f32(p2.a[0]), sizeof(float) * 16);
  lm_outputs_free(&p1);
  lm_outputs_free(&p2);
  lm_array_free(tx);
  lm_array_free(ty);
  lm_array_free(x);
  free(ones);
  lm_session_clear();
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_sequential_and_functional_summary),
      cmocka_unit_test(test_summary_connected_to),
      cmocka_unit_test(test_graph_disconnected),
      cmocka_unit_test(test_duplicate_names),
      cmocka_unit_test(test_automatic_names),
      cmocka_unit_test(test_layer_errors),
      cmocka_unit_test(test_error_propagation),
      cmocka_unit_test(test_layer_order),
      cmocka_unit_test(test_shared_layer),
      cmocka_unit_test(test_model_as_layer),
      cmocka_unit_test(test_nested_shared_weights_counted_once),
      cmocka_unit_test(test_reshape_flatten_concatenate_shapes),
      cmocka_unit_test(test_merge_values),
      cmocka_unit_test(test_activation_values),
      cmocka_unit_test(test_dense_values),
      cmocka_unit_test(test_dropout),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
