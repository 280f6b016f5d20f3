/* The main job: a multi-output network on Fashion-MNIST.
 *
 * One trunk, two heads, as in the chapter's multi-output models: "class" predicts the
 * garment (softmax over 10), "footwear" says whether it is a shoe (sigmoid). Losses are
 * given per output name with loss weights, 10% of the training set is held out for
 * validation, and both heads are scored on the test set.
 *
 *   fashion_mnist_multi_output [--data DIR] [--epochs N] [--samples N]
 *
 * Exits 1 if the class head scores below 85% test accuracy on the full data. */
#define _POSIX_C_SOURCE 199309L
#include <lamina/lamina.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Sandal, Sneaker, Ankle boot. */
static int is_footwear(int label) { return label == 5 || label == 7 || label == 9; }

static lm_array *footwear_targets(const lm_array *labels) {
  lm_array *y = lm_array_new(LM_FLOAT32, LM_SHAPE(labels->shape.dim[0], 1));
  for (int64_t i = 0; y && i < labels->size; i++) lm_array_f32(y)[i] = (float)is_footwear(lm_array_i32(labels)[i]);
  return y;
}

/* The first n samples of a (view, no copy). */
static lm_array *head(lm_array *a, int64_t n) {
  lm_shape s = a->shape;
  if (n <= 0 || n >= s.dim[0]) n = s.dim[0];
  s.dim[0] = n;
  return lm_array_wrap(a->dtype, s, a->data);
}

int main(int argc, char **argv) {
  const char *dir = "/usr/share/datasets/fashion-mnist";
  int epochs = 10;
  int64_t samples = 0;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!strcmp(argv[i], "--data")) dir = argv[i + 1];
    else if (!strcmp(argv[i], "--epochs")) epochs = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--samples")) samples = atoll(argv[i + 1]);
    else {
      fprintf(stderr, "usage: %s [--data DIR] [--epochs N] [--samples N]\n", argv[0]);
      return 2;
    }
  }

  lm_array *x_train_all, *y_train_all, *x_test_all, *y_test_all;
  if (lm_load_fashion_mnist(dir, &x_train_all, &y_train_all, &x_test_all, &y_test_all) != LM_OK) {
    fprintf(stderr, "cannot load Fashion-MNIST: %s\n", lm_last_error());
    return 1;
  }
  lm_array *x_train = head(x_train_all, samples), *y_train = head(y_train_all, samples);
  lm_array *x_test = head(x_test_all, samples ? samples / 6 : 0), *y_test = head(y_test_all, samples ? samples / 6 : 0);
  lm_array *foot_train = footwear_targets(y_train), *foot_test = footwear_targets(y_test);
  printf("Fashion-MNIST: %lld training and %lld test images from %s\n", (long long)x_train->shape.dim[0],
         (long long)x_test->shape.dim[0], dir);

  lm_set_seed(42);
  lm_tensor *image = lm_input(LM_SHAPE(28, 28), .name = "image");
  lm_tensor *x = lm_call(lm_flatten(), image);
  x = lm_call(lm_dense(256, .activation = LM_RELU), x);
  x = lm_call(lm_dropout(0.2), x);
  x = lm_call(lm_dense(128, .activation = LM_RELU), x);
  lm_tensor *garment = lm_call(lm_dense(10, .activation = LM_SOFTMAX, .name = "class"), x);
  lm_tensor *footwear = lm_call(lm_dense(1, .activation = LM_SIGMOID, .name = "footwear"), x);
  lm_model *model = lm_model_new(LM_TENSORS(image), LM_TENSORS(garment, footwear), .name = "fashion");
  if (lm_model_status(model) != LM_OK) {
    fprintf(stderr, "%s\n", lm_model_error(model));
    return 1;
  }
  lm_summary(model, stdout);

  if (lm_compile(model, .optimizer = lm_adam(),
                 .loss = LM_LOSS_DICT("class", "sparse_categorical_crossentropy", "footwear", "binary_crossentropy"),
                 .loss_weights = LM_LOSS_WEIGHT_DICT({"class", 1.0}, {"footwear", 0.5}),
                 .metrics = LM_METRICS("acc")) != LM_OK) {
    fprintf(stderr, "compile: %s\n", lm_last_error());
    return 1;
  }

  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  lm_history *history = lm_fit(model, LM_FEED(x_train), LM_FEED_NAMED("class", y_train, "footwear", foot_train),
                               .epochs = epochs, .batch_size = 128, .validation_split = 0.1);
  clock_gettime(CLOCK_MONOTONIC, &t1);
  if (!history) {
    fprintf(stderr, "fit: %s\n", lm_last_error());
    return 1;
  }
  printf("Trained %d epochs in %.1f s\n", epochs, (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec));

  lm_history *test = lm_evaluate(model, LM_FEED(x_test), LM_FEED(y_test, foot_test), .batch_size = 512, .verbose = LM_SILENT);
  if (!test) {
    fprintf(stderr, "evaluate: %s\n", lm_last_error());
    return 1;
  }
  double class_acc = lm_history_last(test, "class_acc"), foot_acc = lm_history_last(test, "footwear_acc");
  printf("Test: loss %.4f - class_loss %.4f - class_acc %.4f - footwear_loss %.4f - footwear_acc %.4f\n",
         lm_history_last(test, "loss"), lm_history_last(test, "class_loss"), class_acc,
         lm_history_last(test, "footwear_loss"), foot_acc);
  int ok = samples || class_acc >= 0.85;
  if (!ok) printf("FAILED: class accuracy %.4f is below 0.85\n", class_acc);

  lm_history_free(history);
  lm_history_free(test);
  lm_array *views[] = {x_train, y_train, x_test, y_test, foot_train, foot_test,
                       x_train_all, y_train_all, x_test_all, y_test_all};
  for (size_t i = 0; i < sizeof views / sizeof *views; i++) lm_array_free(views[i]);
  lm_session_clear();
  return ok ? 0 : 1;
}
