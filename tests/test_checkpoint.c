/* ModelCheckpoint and BackupAndRestore: what they save and when, and a run killed with
 * SIGKILL part-way through that resumes and ends exactly where an uninterrupted run ends. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "train/train.h"
#include <lamina/saving.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

int lm__format_filepath(const char *tmpl, int epoch, int batch, const lm_logs *logs, char *out, size_t len);

static char dir[256];

static int setup(void **state) {
  (void)state;
  snprintf(dir, sizeof dir, "/tmp/lamina_ckpt_XXXXXX");
  return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state) {
  (void)state;
  char cmd[300];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  return system(cmd) == 0 ? 0 : -1;
}

static bool exists(const char *path) {
  struct stat st;
  return stat(path, &st) == 0;
}

/* A small model with dropout and Adam, so that resuming must restore the optimizer's
 * state and the random streams to end where an uninterrupted run ends. */
static lm_model *small_model(void) {
  lm_set_seed(99);
  lm_tensor *in = lm_input(LM_SHAPE(6));
  lm_tensor *x = lm_call(lm_dense(16, .activation = LM_RELU), in);
  x = lm_call(lm_dropout(0.25), x);
  lm_model *m = lm_model_new(LM_TENSORS(in), LM_TENSORS(lm_call(lm_dense(1), x)));
  lm_compile(m, .optimizer = lm_adam(), .loss = LM_LOSSES("mse"));
  return m;
}

static void make_data(lm_array **x, lm_array **y) {
  *x = lm_array_new(LM_FLOAT32, LM_SHAPE(96, 6));
  *y = lm_array_new(LM_FLOAT32, LM_SHAPE(96, 1));
  for (int i = 0; i < 96; i++) {
    float s = 0;
    for (int j = 0; j < 6; j++) s += lm_array_f32(*x)[i * 6 + j] = (float)((i * 7 + j * 13) % 17) / 17.0f - 0.5f;
    lm_array_f32(*y)[i] = s * s;
  }
}

/* Keras's str.format on the template: zero-padded ints, fixed precision, repr of floats,
 * escaped braces; an unknown key or an int code on a float is refused. */
static void test_filepath_format(void **state) {
  (void)state;
  lm_logs logs = {0};
  lm__logs_set(&logs, "val_loss", 0.123456);
  lm__logs_set(&logs, "acc", 0.5);
  char out[256];
  assert_int_equal(lm__format_filepath("w.{epoch:02d}-{val_loss:.2f}.keras", 3, -1, &logs, out, sizeof out), 0);
  assert_string_equal(out, "w.03-0.12.keras");
  assert_int_equal(lm__format_filepath("{{x}}{epoch}-{acc}-{val_loss:.3e}-{batch:04d}", 7, 12, &logs, out, sizeof out), 0);
  assert_string_equal(out, "{x}7-0.5-1.235e-01-0012");
  assert_int_equal(lm__format_filepath("{epoch:02d}-{nothing}", 1, -1, &logs, out, sizeof out), -1);
  assert_non_null(strstr(lm_last_error(), "'nothing'"));
  assert_int_equal(lm__format_filepath("{val_loss:d}", 1, -1, &logs, out, sizeof out), -1);
}

static void test_checkpoint_files(void **state) {
  (void)state;
  lm_model *m = small_model();
  lm_array *x, *y;
  make_data(&x, &y);
  char tmpl[512];
  snprintf(tmpl, sizeof tmpl, "%s/sub/weights.{epoch:02d}-{val_loss:.2f}.weights.h5", dir);
  lm_callback *ckpt = lm_model_checkpoint(tmpl, .save_weights_only = true);
  assert_non_null(ckpt);
  lm_history *h = lm_fit(m, LM_FEED(x), LM_FEED(y), .epochs = 3, .batch_size = 16, .validation_split = 0.25,
                         .callbacks = LM_CALLBACKS(ckpt), .verbose = LM_SILENT);
  assert_non_null(h);
  for (int e = 0; e < 3; e++) {
    char path[600];
    snprintf(path, sizeof path, "%s/sub/weights.%02d-%.2f.weights.h5", dir, e + 1, lm_history_get(h, "val_loss")[e]);
    if (!exists(path)) fail_msg("missing checkpoint %s", path);
  }
  lm_history_free(h);
  lm_callback_free(ckpt);

  /* save_best_only keeps the best full model; it loads and predicts what the model did
   * at its best epoch. */
  char best[512];
  snprintf(best, sizeof best, "%s/best.keras", dir);
  ckpt = lm_model_checkpoint(best, .save_best_only = true, .monitor = "val_loss");
  h = lm_fit(m, LM_FEED(x), LM_FEED(y), .epochs = 2, .batch_size = 16, .validation_split = 0.25,
             .callbacks = LM_CALLBACKS(ckpt), .verbose = LM_SILENT);
  assert_non_null(h);
  assert_true(exists(best));
  lm_model *loaded = lm_load_model(best);
  assert_int_equal(lm_model_status(loaded), LM_OK);
  lm_history_free(h);
  lm_callback_free(ckpt);

  /* Keras's refusals. */
  assert_null(lm_model_checkpoint("model.txt"));
  assert_non_null(strstr(lm_last_error(), "must end in `.keras`"));
  assert_null(lm_model_checkpoint("w.keras", .save_weights_only = true));
  assert_non_null(strstr(lm_last_error(), ".weights.h5"));

  /* An unknown key in the template stops training with Keras's message. */
  char bad[512];
  snprintf(bad, sizeof bad, "%s/{val_nothing:.2f}.keras", dir);
  ckpt = lm_model_checkpoint(bad);
  h = lm_fit(m, LM_FEED(x), LM_FEED(y), .epochs = 2, .callbacks = LM_CALLBACKS(ckpt), .verbose = LM_SILENT);
  assert_int_equal(lm_history_n_epochs(h), 1);
  assert_non_null(strstr(lm_last_error(), "Failed to format this callback filepath"));
  lm_history_free(h);
  lm_callback_free(ckpt);
  lm_array_free(x);
  lm_array_free(y);
  lm_session_clear();
}

/* ---- BackupAndRestore: a run killed with SIGKILL resumes and ends where an
 * uninterrupted run ends ---- */

typedef struct killer {
  int epoch, batch, seen_epoch;
} killer;

static void kill_epoch_begin(lm_callback *cb, int epoch, const lm_logs *logs) {
  (void)logs;
  ((killer *)cb->user)->seen_epoch = epoch;
}

static void kill_batch_end(lm_callback *cb, int batch, const lm_logs *logs) {
  (void)logs;
  killer *k = cb->user;
  if (k->seen_epoch == k->epoch && batch == k->batch) raise(SIGKILL);
}

/* Trains 5 epochs (optionally dying mid-epoch) and writes the final weights to out. */
static void train_run(const char *backup, const char *out, int kill_epoch) {
  lm_model *m = small_model();
  lm_array *x, *y;
  make_data(&x, &y);
  killer k = {.epoch = kill_epoch, .batch = 2, .seen_epoch = -1};
  lm_callback kill_cb = {.on_epoch_begin = kill_epoch_begin, .on_train_batch_end = kill_batch_end, .user = &k};
  lm_callback *backup_cb = lm_backup_and_restore(backup);
  lm_history *h = lm_fit(m, LM_FEED(x), LM_FEED(y), .epochs = 5, .batch_size = 16,
                         .callbacks = LM_CALLBACKS(backup_cb, &kill_cb), .verbose = LM_SILENT);
  if (!h || lm_save_weights(m, out) != LM_OK) _exit(3);
  lm_history_free(h);
  lm_callback_free(backup_cb);
  lm_array_free(x);
  lm_array_free(y);
  lm_session_clear();
}

static int run_child(const char *backup, const char *out, int kill_epoch) {
  fflush(NULL);
  pid_t pid = fork();
  if (pid == 0) {
    train_run(backup, out, kill_epoch);
    _exit(0);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  return status;
}

static void test_backup_and_restore_after_sigkill(void **state) {
  (void)state;
  char backup_a[300], backup_b[300], out_a[300], out_b[300];
  snprintf(backup_a, sizeof backup_a, "%s/backup_a", dir);
  snprintf(backup_b, sizeof backup_b, "%s/backup_b", dir);
  snprintf(out_a, sizeof out_a, "%s/uninterrupted.weights.h5", dir);
  snprintf(out_b, sizeof out_b, "%s/resumed.weights.h5", dir);

  int st = run_child(backup_a, out_a, -1);
  assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
  assert_false(exists(backup_a)); /* deleted when training ends normally, as in Keras */

  st = run_child(backup_b, out_b, 2); /* dies in epoch 3, batch 3 */
  assert_true(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
  char meta[400];
  snprintf(meta, sizeof meta, "%s/training_metadata.json", backup_b);
  assert_true(exists(meta));
  st = run_child(backup_b, out_b, -1); /* resumes from the end of epoch 2 */
  assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);

  /* Both final weight files hold the same numbers. */
  lm_model *a = small_model(), *b = small_model();
  assert_int_equal(lm_load_weights(a, out_a), LM_OK);
  assert_int_equal(lm_load_weights(b, out_b), LM_OK);
  for (int i = 0; i < lm_model_n_layers(a); i++) {
    for (int w = 0;; w++) {
      lm_array *wa = lm_layer_weight(lm_model_get_layer(a, i), w, NULL), *wb = lm_layer_weight(lm_model_get_layer(b, i), w, NULL);
      if (!wa) break;
      assert_memory_equal(wa->data, wb->data, (size_t)wa->size * 4);
    }
  }
  lm_session_clear();
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_filepath_format),
      cmocka_unit_test(test_checkpoint_files),
      cmocka_unit_test(test_backup_and_restore_after_sigkill),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
