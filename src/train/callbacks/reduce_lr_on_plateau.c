/* ReduceLROnPlateau: lowers the learning rate when the monitored value stalls (Keras 3's
 * keras/src/callbacks/reduce_lr_on_plateau.py, step for step). */
#include "train/callbacks/monitor.h"
#include <math.h>

typedef struct reduce_lr {
  lm_callback cb;
  lm__monitor mon;
  double factor, min_lr;
  int patience, verbose, cooldown;
  /* per fit */
  int wait, cooldown_counter;
  bool has_best;
  double best;
  char warned[1024];
} reduce_lr;

static void rl_train_begin(lm_callback *cb, const lm_logs *logs) {
  reduce_lr *r = cb->user;
  r->has_best = false;
  r->cooldown_counter = r->wait = 0;
}

/* Keras's _reduce_optimizer_lr: only while the rate is above min_lr (compared in float32). */
static bool reduce(reduce_lr *r, int epoch) {
  double old_lr = lm__keras_learning_rate(r->cb.model);
  if (!(lm__to_f32(old_lr) > lm__to_f32(r->min_lr))) return false;
  double new_lr = fmax(old_lr * r->factor, r->min_lr);
  lm_model_set_learning_rate(r->cb.model, new_lr);
  if (r->verbose > 0) {
    char lr[40];
    printf("\nEpoch %d: ReduceLROnPlateau reducing learning rate to %s.\n", epoch + 1,
           lm__py_float(new_lr, lr, sizeof lr));
    fflush(stdout);
  }
  return true;
}

static void rl_epoch_end(lm_callback *cb, int epoch, const lm_logs *logs) {
  reduce_lr *r = cb->user;
  if (logs) lm__logs_set(lm__logs_mut(logs), "learning_rate", lm__keras_learning_rate(cb->model));
  double current;
  if (!lm_logs_get(logs, r->mon.key, &current)) {
    char keys[1024];
    lm__warn_once(r->warned, sizeof r->warned,
                  "Learning rate reduction is conditioned on metric `%s` which is not available. Available metrics "
                  "are: %s.",
                  r->mon.key, lm__logs_keys(logs, keys, sizeof keys));
    return;
  }
  bool in_cooldown = r->cooldown_counter > 0;
  if (in_cooldown) {
    r->cooldown_counter--;
    r->wait = 0;
  }
  if (!r->has_best || lm__monitor_improves(&r->mon, current, r->best)) {
    r->best = current;
    r->has_best = true;
    r->wait = 0;
  } else if (r->cooldown_counter <= 0 && ++r->wait >= r->patience && reduce(r, epoch)) {
    r->cooldown_counter = r->cooldown;
    r->wait = 0;
  }
}

lm_callback *lm_reduce_lr_on_plateau_new(lm_reduce_lr_on_plateau_opts o) {
  const char *monitor = o.monitor ? o.monitor : "val_loss";
  double factor = o.factor != 0 ? o.factor : 0.1;
  if (factor >= 1.0) {
    char f[40];
    lm__fail(NULL, LM_ERROR_VALUE, "ReduceLROnPlateau does not support a factor >= 1.0. Received factor=%s",
             lm__py_float(factor, f, sizeof f));
    return NULL;
  }
  if (!(factor > 0) || o.patience < 0 || o.cooldown < 0 || !(o.min_lr >= 0) || isnan(o.min_delta) ||
      strlen(monitor) >= sizeof ((lm__monitor *)0)->key) {
    lm__fail(NULL, LM_ERROR_VALUE,
             "ReduceLROnPlateau: invalid settings: monitor '%s', factor %g (must be in (0, 1)), patience %d, "
             "cooldown %d, min_lr %g, min_delta %g",
             monitor, factor, o.patience, o.cooldown, o.min_lr, o.min_delta);
    return NULL;
  }
  reduce_lr *r = (reduce_lr *)lm__callback_alloc(sizeof *r, NULL);
  if (!r) return NULL;
  lm__monitor_init(&r->mon, "ReduceLROnPlateau", monitor, o.mode,
                   o.zero_min_delta ? 0 : o.min_delta != 0 ? o.min_delta : 1e-4);
  r->factor = factor;
  r->min_lr = o.min_lr;
  r->patience = o.patience ? o.patience : 10;
  r->verbose = o.verbose;
  r->cooldown = o.cooldown;
  r->cb.on_train_begin = rl_train_begin;
  r->cb.on_epoch_end = rl_epoch_end;
  return &r->cb;
}
