/* Freezing: a layer or a whole nested model set non-trainable keeps its weights through fit,
 * and summary's counts follow the flags. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <lamina/lamina.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void fill(lm_array *a, float scale) {
  for (int64_t i = 0; i < a->size; i++) lm_array_f32(a)[i] = scale * (float)((i * 7919) % 13) / 13.0f - 0.5f * scale;
}

static char *summary_text(lm_model *m) {
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  lm_summary(m, f);
  fclose(f);
  return buf;
}

static void test_frozen_layer_keeps_weights(void **state) {
  (void)state;
  lm_set_seed(21);
  lm_tensor *in = lm_input(LM_SHAPE(6));
  lm_layer *base = lm_dense(8, .activation = LM_TANH), *head = lm_dense(1);
  lm_model *m = lm_model_new(LM_TENSORS(in), LM_TENSORS(lm_call(head, lm_call(base, in))));
  lm_layer_set_trainable(base, false);
  assert_int_equal(lm_model_count_params(m), 56 + 9);
  assert_int_equal(lm_model_count_trainable_params(m), 9);
  char *text = summary_text(m);
  assert_non_null(strstr(text, "Trainable params: 9\n"));
  assert_non_null(strstr(text, "Non-trainable params: 56\n"));
  free(text);

  lm_compile(m, .optimizer = lm_sgd(.learning_rate = 0.1), .loss = LM_LOSSES("mse"));
  lm_array *x = lm_array_new(LM_FLOAT32, LM_SHAPE(32, 6)), *y = lm_array_new(LM_FLOAT32, LM_SHAPE(32, 1));
  fill(x, 2), fill(y, 1);
  float frozen[48], trained = lm_array_f32(lm_layer_weight(head, 0, NULL))[0];
  memcpy(frozen, lm_array_f32(lm_layer_weight(base, 0, NULL)), sizeof frozen);
  lm_history *h = lm_fit(m, LM_FEED(x), LM_FEED(y), .epochs = 2, .verbose = LM_SILENT);
  assert_non_null(h);
  assert_memory_equal(frozen, lm_array_f32(lm_layer_weight(base, 0, NULL)), sizeof frozen);
  assert_true(lm_array_f32(lm_layer_weight(head, 0, NULL))[0] != trained);

  /* Unfrozen, the next fit trains it again. */
  lm_layer_set_trainable(base, true);
  lm_history *h2 = lm_fit(m, LM_FEED(x), LM_FEED(y), .epochs = 1, .verbose = LM_SILENT);
  assert_non_null(h2);
  assert_memory_not_equal(frozen, lm_array_f32(lm_layer_weight(base, 0, NULL)), sizeof frozen);
  lm_history_free(h);
  lm_history_free(h2);
  lm_array_free(x);
  lm_array_free(y);
  lm_session_clear();
}

/* A nested model frozen as a whole, as the chapter freezes a convolutional base. */
static void test_frozen_nested_model(void **state) {
  (void)state;
  lm_set_seed(22);
  lm_tensor *inner_in = lm_input(LM_SHAPE(4));
  lm_layer *inner_dense = lm_dense(5, .activation = LM_RELU);
  lm_model *inner = lm_model_new(LM_TENSORS(inner_in), LM_TENSORS(lm_call(inner_dense, inner_in)), .name = "base");
  lm_tensor *in = lm_input(LM_SHAPE(4));
  lm_model *outer = lm_model_new(LM_TENSORS(in), LM_TENSORS(lm_call(lm_dense(1), lm_call(inner, in))));
  lm_layer_set_trainable(lm_model_layer(inner), false);
  assert_int_equal(lm_model_count_trainable_params(outer), 6);
  assert_int_equal(lm_model_count_params(outer), 25 + 6);
  lm_compile(outer, .optimizer = lm_adam(), .loss = LM_LOSSES("mse"));
  lm_array *x = lm_array_new(LM_FLOAT32, LM_SHAPE(16, 4)), *y = lm_array_new(LM_FLOAT32, LM_SHAPE(16, 1));
  fill(x, 1), fill(y, 3);
  float before[20];
  memcpy(before, lm_array_f32(lm_layer_weight(inner_dense, 0, NULL)), sizeof before);
  lm_history *h = lm_fit(outer, LM_FEED(x), LM_FEED(y), .epochs = 3, .verbose = LM_SILENT);
  assert_non_null(h);
  assert_memory_equal(before, lm_array_f32(lm_layer_weight(inner_dense, 0, NULL)), sizeof before);
  lm_history_free(h);
  lm_array_free(x);
  lm_array_free(y);
  lm_session_clear();
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_frozen_layer_keeps_weights),
      cmocka_unit_test(test_frozen_nested_model),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
