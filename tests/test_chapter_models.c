/* The chapter's models, built with lamina, against the parameter counts real Keras reports
 * (tests/fixtures/chapter_models.txt, made by tools/keras_fixtures/make_chapter_fixture.py),
 * and Xception layer for layer (tests/fixtures/xception_layers.txt). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <lamina/lamina.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static lm_model *imdb_conv1d(void) {
  lm_tensor *x = lm_input(LM_SHAPE(500), .dtype = LM_INT32);
  lm_tensor *y = lm_call(lm_embedding(2000, 128), x);
  y = lm_call(lm_conv1d(32, 7, .activation = LM_RELU), y);
  y = lm_call(lm_max_pooling1d(5), y);
  y = lm_call(lm_conv1d(32, 7, .activation = LM_RELU), y);
  y = lm_call(lm_global_max_pooling1d(), y);
  return lm_model_new(LM_TENSORS(x), LM_TENSORS(lm_call(lm_dense(1), y)));
}

static lm_model *siamese_lstm(void) {
  lm_layer *lstm = lm_lstm(32);
  lm_tensor *left = lm_input(LM_SHAPE(LM_NONE, 128)), *right = lm_input(LM_SHAPE(LM_NONE, 128));
  lm_tensor *merged = lm_concatenate(LM_TENSORS(lm_call(lstm, left), lm_call(lstm, right)));
  return lm_model_new(LM_TENSORS(left, right), LM_TENSORS(lm_call(lm_dense(1, .activation = LM_SIGMOID), merged)));
}

static lm_model *question_answering(void) {
  lm_tensor *text = lm_input(LM_SHAPE(LM_NONE), .dtype = LM_INT32, .name = "text");
  lm_tensor *t = lm_call(lm_lstm(32), lm_call(lm_embedding(10000, 64), text));
  lm_tensor *question = lm_input(LM_SHAPE(LM_NONE), .dtype = LM_INT32, .name = "question");
  lm_tensor *q = lm_call(lm_lstm(16), lm_call(lm_embedding(10000, 32), question));
  lm_tensor *answer = lm_call(lm_dense(500, .activation = LM_SOFTMAX), lm_concatenate(LM_TENSORS(t, q)));
  return lm_model_new(LM_TENSORS(text, question), LM_TENSORS(answer));
}

static lm_model *posts(void) {
  lm_tensor *in = lm_input(LM_SHAPE(LM_NONE), .dtype = LM_INT32, .name = "posts");
  lm_tensor *x = lm_call(lm_embedding(50000, 256), in);
  x = lm_call(lm_conv1d(128, 5, .activation = LM_RELU), x);
  x = lm_call(lm_max_pooling1d(5), x);
  x = lm_call(lm_conv1d(256, 5, .activation = LM_RELU), x);
  x = lm_call(lm_conv1d(256, 5, .activation = LM_RELU), x);
  x = lm_call(lm_max_pooling1d(5), x);
  x = lm_call(lm_conv1d(256, 5, .activation = LM_RELU), x);
  x = lm_call(lm_conv1d(256, 5, .activation = LM_RELU), x);
  x = lm_call(lm_global_max_pooling1d(), x);
  x = lm_call(lm_dense(128, .activation = LM_RELU), x);
  lm_tensor *age = lm_call(lm_dense(1, .name = "age"), x);
  lm_tensor *income = lm_call(lm_dense(10, .activation = LM_SOFTMAX, .name = "income"), x);
  lm_tensor *gender = lm_call(lm_dense(1, .activation = LM_SIGMOID, .name = "gender"), x);
  return lm_model_new(LM_TENSORS(in), LM_TENSORS(age, income, gender));
}

static lm_model *separable_classifier(void) {
  lm_tensor *x = lm_input(LM_SHAPE(64, 64, 3));
  lm_tensor *y = lm_call(lm_separable_conv2d(32, 3, .activation = LM_RELU), x);
  y = lm_call(lm_separable_conv2d(64, 3, .activation = LM_RELU), y);
  y = lm_call(lm_max_pooling2d(2), y);
  y = lm_call(lm_separable_conv2d(64, 3, .activation = LM_RELU), y);
  y = lm_call(lm_separable_conv2d(128, 3, .activation = LM_RELU), y);
  y = lm_call(lm_max_pooling2d(2), y);
  y = lm_call(lm_separable_conv2d(64, 3, .activation = LM_RELU), y);
  y = lm_call(lm_separable_conv2d(128, 3, .activation = LM_RELU), y);
  y = lm_call(lm_global_average_pooling2d(), y);
  y = lm_call(lm_dense(32, .activation = LM_RELU), y);
  return lm_model_new(LM_TENSORS(x), LM_TENSORS(lm_call(lm_dense(10, .activation = LM_SOFTMAX), y)));
}

static lm_tensor *conv(lm_tensor *x, int kernel, int stride) {
  return lm_call(lm_conv2d(128, kernel, .strides = {stride}, .padding = LM_SAME, .activation = LM_RELU), x);
}

static lm_model *inception(void) {
  lm_tensor *x = lm_input(LM_SHAPE(64, 64, 3));
  lm_tensor *a = conv(x, 1, 2);
  lm_tensor *b = conv(conv(x, 1, 1), 3, 2);
  lm_tensor *c = conv(lm_call(lm_average_pooling2d(3, .strides = {2}, .padding = LM_SAME), x), 3, 1);
  lm_tensor *d = conv(conv(conv(x, 1, 1), 3, 1), 3, 2);
  lm_tensor *y = lm_call(lm_global_average_pooling2d(), lm_concatenate(LM_TENSORS(a, b, c, d)));
  return lm_model_new(LM_TENSORS(x), LM_TENSORS(lm_call(lm_dense(10, .activation = LM_SOFTMAX), y)));
}

static lm_model *mlp(void) {
  lm_tensor *x = lm_input(LM_SHAPE(64));
  lm_tensor *y = lm_call(lm_dense(32, .activation = LM_RELU), x);
  y = lm_call(lm_dense(32, .activation = LM_RELU), y);
  return lm_model_new(LM_TENSORS(x), LM_TENSORS(lm_call(lm_dense(10, .activation = LM_SOFTMAX), y)));
}

static FILE *fixture(const char *name) {
  char path[1024];
  const char *dir = getenv("LAMINA_SOURCE_DIR");
  snprintf(path, sizeof path, "%s/tests/fixtures/%s", dir ? dir : ".", name);
  FILE *f = fopen(path, "r");
  if (!f) fail_msg("cannot open fixture %s", path);
  return f;
}

/* Compares a model with the fixture's block for `name`: totals, then layer by layer. */
static void check_against_keras(const char *name, lm_model *model) {
  assert_int_equal(lm_model_status(model), LM_OK);
  FILE *f = fixture("chapter_models.txt");
  char line[256], block[64];
  long long total = -1, trainable = -1, keras_total = -1, keras_trainable = -1;
  int found = 0, index = 0;
  while (fgets(line, sizeof line, f)) {
    if (line[0] == '#') continue;
    if (sscanf(line, "model %63s %lld %lld", block, &total, &trainable) == 3) {
      if (found) break;
      if ((found = !strcmp(block, name))) keras_total = total, keras_trainable = trainable;
      continue;
    }
    char cls[64];
    long long params;
    if (!found || sscanf(line, " %63s %lld", cls, &params) != 2) continue;
    lm_layer *layer = lm_model_get_layer(model, index++);
    assert_non_null(layer);
    if (strcmp(lm_layer_class(layer), cls) || lm_layer_count_params(layer) != params)
      fail_msg("%s layer %d: lamina %s with %lld params, Keras %s with %lld", name, index - 1, lm_layer_class(layer),
               (long long)lm_layer_count_params(layer), cls, params);
  }
  fclose(f);
  if (!found) fail_msg("no fixture for %s", name);
  assert_int_equal(index, lm_model_n_layers(model));
  assert_int_equal(lm_model_count_params(model), keras_total);
  assert_int_equal(lm_model_count_trainable_params(model), keras_trainable);
}

#define CHAPTER_TEST(name)                                                                                \
  static void test_##name(void **state) {                                                                 \
    (void)state;                                                                                          \
    check_against_keras(#name, name());                                                                   \
    lm_session_clear();                                                                                   \
  }
CHAPTER_TEST(imdb_conv1d)
CHAPTER_TEST(siamese_lstm)
CHAPTER_TEST(question_answering)
CHAPTER_TEST(posts)
CHAPTER_TEST(separable_classifier)
CHAPTER_TEST(inception)
CHAPTER_TEST(mlp)

/* Xception: every layer's name (but the Input's, which Keras 3 calls input_layer), class and
 * parameter count, in Keras's order. */
static void test_xception(void **state) {
  (void)state;
  lm_model *model = lm_xception();
  assert_int_equal(lm_model_status(model), LM_OK);
  FILE *f = fixture("xception_layers.txt");
  char line[256], name[96], cls[64];
  long long params, total = -1;
  int index = 0;
  while (fgets(line, sizeof line, f)) {
    if (line[0] == '#') continue;
    if (sscanf(line, "total %lld", &total) == 1) continue;
    if (sscanf(line, "%95s %63s %lld", name, cls, &params) != 3) continue;
    lm_layer *layer = lm_model_get_layer(model, index++);
    assert_non_null(layer);
    if ((index > 1 && strcmp(lm_layer_name(layer), name)) || strcmp(lm_layer_class(layer), cls) ||
        lm_layer_count_params(layer) != params)
      fail_msg("layer %d: lamina %s (%s) %lld params, Keras %s (%s) %lld", index - 1, lm_layer_name(layer),
               lm_layer_class(layer), (long long)lm_layer_count_params(layer), name, cls, params);
  }
  fclose(f);
  assert_int_equal(index, lm_model_n_layers(model));
  assert_int_equal(lm_model_count_params(model), total);
  /* Too small an input is refused with the reason. */
  lm_model *tiny = lm_xception(.input_shape = LM_SHAPE(32, 32, 3));
  assert_int_equal(lm_model_status(tiny), LM_ERROR_SHAPE);
  assert_non_null(strstr(lm_model_error(tiny), "71x71"));
  lm_session_clear();
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_imdb_conv1d),          cmocka_unit_test(test_siamese_lstm),
      cmocka_unit_test(test_question_answering),   cmocka_unit_test(test_posts),
      cmocka_unit_test(test_separable_classifier), cmocka_unit_test(test_inception),
      cmocka_unit_test(test_mlp),                  cmocka_unit_test(test_xception),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
