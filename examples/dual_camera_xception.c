/* The chapter's dual-camera model: one Xception base (no top, no pretrained weights)
 * called on the left and right cameras' images, so both share its weights; the two
 * feature maps are concatenated and scored. Keras's Xception accepts any size from 71x71
 * up; the example uses the smallest to stay quick.
 *
 *   dual_camera_xception [--size N] [--samples N] */
#include <lamina/lamina.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint32_t next(uint32_t *s) { return *s = *s * 1664525u + 1013904223u; }

int main(int argc, char **argv) {
  int size = 71, samples = 2;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!strcmp(argv[i], "--size")) size = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--samples")) samples = atoi(argv[i + 1]);
  }
  lm_set_seed(6);
  lm_model *xception_base = lm_xception();
  if (lm_model_status(xception_base) != LM_OK) {
    fprintf(stderr, "%s\n", lm_model_error(xception_base));
    return 1;
  }
  lm_tensor *left_input = lm_input(LM_SHAPE(size, size, 3), .name = "left");
  lm_tensor *right_input = lm_input(LM_SHAPE(size, size, 3), .name = "right");
  lm_tensor *left_features = lm_call(xception_base, left_input);
  lm_tensor *right_features = lm_call(xception_base, right_input);
  lm_tensor *merged_features = lm_concatenate(LM_TENSORS(left_features, right_features), .axis = -1);
  lm_tensor *pooled = lm_call(lm_global_average_pooling2d(), merged_features);
  lm_tensor *distance = lm_call(lm_dense(1, .name = "distance"), pooled);
  lm_model *model = lm_model_new(LM_TENSORS(left_input, right_input), LM_TENSORS(distance), .name = "dual_camera");
  if (lm_model_status(model) != LM_OK) {
    fprintf(stderr, "%s\n", lm_model_error(model));
    return 1;
  }
  lm_summary(model, stdout);
  lm_compile(model, .optimizer = lm_rmsprop(), .loss = LM_LOSSES("mse"));

  lm_array *left = lm_array_new(LM_FLOAT32, LM_SHAPE(samples, size, size, 3));
  lm_array *right = lm_array_new(LM_FLOAT32, LM_SHAPE(samples, size, size, 3));
  lm_array *target = lm_array_new(LM_FLOAT32, LM_SHAPE(samples, 1));
  uint32_t s = 17;
  for (int64_t i = 0; i < left->size; i++) {
    lm_array_f32(left)[i] = (float)((next(&s) >> 8) % 256) / 255.0f;
    lm_array_f32(right)[i] = (float)((next(&s) >> 8) % 256) / 255.0f;
  }
  for (int n = 0; n < samples; n++) lm_array_f32(target)[n] = (float)n;
  lm_history *h = lm_fit(model, LM_FEED_NAMED("left", left, "right", right), LM_FEED(target), .epochs = 1,
                         .batch_size = samples, .verbose = 2);
  if (!h) fprintf(stderr, "fit: %s\n", lm_last_error());
  /* One base, counted once: Xception's 20,861,480 plus the scoring layer's 4,097. */
  long long params = (long long)lm_model_count_params(model);
  printf("%lld parameters\n", params);
  int ok = h && params == 20861480LL + 4097;
  lm_history_free(h);
  lm_array_free(left);
  lm_array_free(right);
  lm_array_free(target);
  lm_session_clear();
  return ok ? 0 : 1;
}
