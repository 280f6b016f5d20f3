/* The chapter's Inception module: four parallel branches (a strided 1x1 convolution; 1x1
 * then a strided 3x3; strided average pooling then 3x3; 1x1, 3x3, strided 3x3), joined on
 * the channels axis. The book's listing omits padding="same", without which the branches'
 * shapes differ and cannot be concatenated; Keras refuses it too.
 *
 *   inception_module [--samples N] [--epochs N] */
#include <lamina/lamina.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static lm_tensor *conv(lm_tensor *x, int kernel, int stride) {
  return lm_call(lm_conv2d(128, kernel, .strides = {stride}, .padding = LM_SAME, .activation = LM_RELU), x);
}

static uint32_t next(uint32_t *s) { return *s = *s * 1664525u + 1013904223u; }

int main(int argc, char **argv) {
  int samples = 32, epochs = 1;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!strcmp(argv[i], "--samples")) samples = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--epochs")) epochs = atoi(argv[i + 1]);
  }
  lm_set_seed(3);
  lm_tensor *x = lm_input(LM_SHAPE(64, 64, 3));
  lm_tensor *branch_a = conv(x, 1, 2);
  lm_tensor *branch_b = conv(conv(x, 1, 1), 3, 2);
  lm_tensor *branch_c = conv(lm_call(lm_average_pooling2d(3, .strides = {2}, .padding = LM_SAME), x), 3, 1);
  lm_tensor *branch_d = conv(conv(conv(x, 1, 1), 3, 1), 3, 2);
  lm_tensor *output = lm_concatenate(LM_TENSORS(branch_a, branch_b, branch_c, branch_d), .axis = -1);

  lm_tensor *pooled = lm_call(lm_global_average_pooling2d(), output);
  lm_tensor *classes = lm_call(lm_dense(10, .activation = LM_SOFTMAX), pooled);
  lm_model *model = lm_model_new(LM_TENSORS(x), LM_TENSORS(classes), .name = "inception");
  if (lm_model_status(model) != LM_OK) {
    fprintf(stderr, "%s\n", lm_model_error(model));
    return 1;
  }
  lm_summary(model, stdout);
  lm_compile(model, .optimizer = lm_rmsprop(), .loss = LM_LOSSES("sparse_categorical_crossentropy"),
             .metrics = LM_METRICS("acc"));

  /* Images whose class is the brightest of ten horizontal bands. */
  lm_array *images = lm_array_new(LM_FLOAT32, LM_SHAPE(samples, 64, 64, 3));
  lm_array *labels = lm_array_new(LM_INT32, LM_SHAPE(samples));
  uint32_t s = 5;
  for (int n = 0; n < samples; n++) {
    int label = (int)(next(&s) >> 8) % 10;
    lm_array_i32(labels)[n] = label;
    for (int i = 0; i < 64 * 64 * 3; i++) {
      int row = i / (64 * 3);
      lm_array_f32(images)[(int64_t)n * 64 * 64 * 3 + i] =
          (float)((next(&s) >> 8) % 256) / 512.0f + (row * 10 / 64 == label ? 0.5f : 0.0f);
    }
  }
  lm_history *h = lm_fit(model, LM_FEED(images), LM_FEED(labels), .epochs = epochs, .batch_size = 16, .verbose = 2);
  if (!h) fprintf(stderr, "fit: %s\n", lm_last_error());
  int ok = h != NULL;
  lm_history_free(h);
  lm_array_free(images);
  lm_array_free(labels);
  lm_session_clear();
  return ok ? 0 : 1;
}
