/* LearningRateScheduler: the rate of each epoch from a user function (Keras 3's
 * keras/src/callbacks/learning_rate_scheduler.py). */
#include "train/callbacks/monitor.h"

typedef struct lr_scheduler {
  lm_callback cb;
  lm_lr_schedule schedule;
  void *user;
  int verbose;
} lr_scheduler;

static void ls_epoch_begin(lm_callback *cb, int epoch, const lm_logs *logs) {
  lr_scheduler *s = cb->user;
  double lr = s->schedule(epoch, lm__keras_learning_rate(cb->model), s->user);
  if (!(lr >= 0) || isinf(lr)) {
    /* Keras would train on with it; a NaN or negative rate only wrecks the weights. */
    char v[40];
    lm__fail(NULL, LM_ERROR_VALUE, "LearningRateScheduler: the schedule returned %s for epoch %d; training stopped",
             lm__py_float(lr, v, sizeof v), epoch);
    lm_model_stop_training(cb->model);
    return;
  }
  lm_model_set_learning_rate(cb->model, lr);
  if (s->verbose > 0) {
    char v[40];
    printf("\nEpoch %d: LearningRateScheduler setting learning rate to %s.\n", epoch + 1,
           lm__py_float(lr, v, sizeof v));
    fflush(stdout);
  }
}

static void ls_epoch_end(lm_callback *cb, int epoch, const lm_logs *logs) {
  if (logs) lm__logs_set(lm__logs_mut(logs), "learning_rate", lm__keras_learning_rate(cb->model));
}

lm_callback *lm_learning_rate_scheduler_new(lm_lr_schedule schedule, lm_learning_rate_scheduler_opts o) {
  if (!schedule) {
    lm__fail(NULL, LM_ERROR_VALUE, "LearningRateScheduler: the schedule function is NULL");
    return NULL;
  }
  lr_scheduler *s = (lr_scheduler *)lm__callback_alloc(sizeof *s, NULL);
  if (!s) return NULL;
  s->schedule = schedule;
  s->user = o.user;
  s->verbose = o.verbose;
  s->cb.on_epoch_begin = ls_epoch_begin;
  s->cb.on_epoch_end = ls_epoch_end;
  return &s->cb;
}
