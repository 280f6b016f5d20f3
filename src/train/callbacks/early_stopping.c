/* EarlyStopping: stops fit when the monitored value stops improving (Keras 3's
 * keras/src/callbacks/early_stopping.py, step for step). */
#include "train/callbacks/monitor.h"

typedef struct early_stopping {
  lm_callback cb;
  lm__monitor mon;
  int patience, verbose, start_from_epoch;
  bool has_baseline, restore_best_weights;
  double baseline;
  /* per fit */
  int wait, stopped_epoch, best_epoch;
  bool has_best;
  double best;
  /* restore_best_weights: one copy of every weight, in lm__layer_visit_weights order */
  float *best_weights;
  int64_t best_size;
  bool has_best_weights;
  char warned[1024];
} early_stopping;

typedef struct weights_walk {
  float *buf;  /* NULL: only count */
  int64_t at;
  int to_model; /* copy buf into the weights instead */
} weights_walk;

static void walk_weight(lm_weight *w, void *ctx) {
  weights_walk *k = ctx;
  int64_t n = w->value->size;
  if (k->buf && w->value->dtype == LM_FLOAT32) {
    float *v = lm_array_f32(w->value);
    if (k->to_model) memcpy(v, k->buf + k->at, (size_t)n * sizeof *v);
    else memcpy(k->buf + k->at, v, (size_t)n * sizeof *v);
  }
  k->at += n;
}

/* Keras's model.get_weights(), into one buffer reused from epoch to epoch. */
static void save_weights(early_stopping *es) {
  lm_layer *layer = es->cb.model ? lm_model_layer(es->cb.model) : NULL;
  if (!layer) return;
  weights_walk count = {0};
  lm__layer_visit_weights(layer, walk_weight, &count);
  if (count.at != es->best_size) {
    free(es->best_weights);
    es->best_size = 0;
    if (!(es->best_weights = lm__alloc_floats(count.at))) return;
    es->best_size = count.at;
  }
  weights_walk copy = {.buf = es->best_weights};
  lm__layer_visit_weights(layer, walk_weight, &copy);
  es->has_best_weights = true;
}

static void restore_weights(early_stopping *es) {
  lm_layer *layer = es->cb.model ? lm_model_layer(es->cb.model) : NULL;
  if (!layer) return;
  weights_walk count = {0};
  lm__layer_visit_weights(layer, walk_weight, &count);
  if (count.at != es->best_size) return; /* the model changed under us: leave it be */
  weights_walk copy = {.buf = es->best_weights, .to_model = 1};
  lm__layer_visit_weights(layer, walk_weight, &copy);
}

static void es_train_begin(lm_callback *cb, const lm_logs *logs) {
  early_stopping *es = cb->user;
  es->wait = es->stopped_epoch = es->best_epoch = 0;
  es->has_best = es->has_best_weights = false;
}

static void es_epoch_end(lm_callback *cb, int epoch, const lm_logs *logs) {
  early_stopping *es = cb->user;
  double current;
  if (!lm_logs_get(logs, es->mon.key, &current)) {
    char keys[1024];
    lm__warn_once(es->warned, sizeof es->warned,
                  "Early stopping conditioned on metric `%s` which is not available. Available metrics are: %s",
                  es->mon.key, lm__logs_keys(logs, keys, sizeof keys));
    return;
  }
  if (epoch < es->start_from_epoch) return;
  if (es->restore_best_weights && !es->has_best_weights) {
    /* The first monitored epoch is the best so far. */
    save_weights(es);
    es->best_epoch = epoch;
  }
  es->wait++;
  if (!es->has_best || lm__monitor_improves(&es->mon, current, es->best)) {
    es->best = current;
    es->has_best = true;
    es->best_epoch = epoch;
    if (es->restore_best_weights) save_weights(es);
    /* wait restarts only when both the baseline and the previous best are beaten */
    if (!es->has_baseline || lm__monitor_improves(&es->mon, current, es->baseline)) es->wait = 0;
    return;
  }
  if (es->wait >= es->patience && epoch > 0) {
    es->stopped_epoch = epoch;
    lm_model_stop_training(cb->model);
  }
}

static void es_train_end(lm_callback *cb, const lm_logs *logs) {
  early_stopping *es = cb->user;
  if (es->stopped_epoch > 0 && es->verbose > 0) printf("Epoch %d: early stopping\n", es->stopped_epoch + 1);
  if (es->restore_best_weights && es->has_best_weights) {
    if (es->verbose > 0) printf("Restoring model weights from the end of the best epoch: %d.\n", es->best_epoch + 1);
    restore_weights(es);
  }
  fflush(stdout);
}

static void es_free(lm_callback *cb) {
  early_stopping *es = cb->user;
  free(es->best_weights);
  free(es);
}

lm_callback *lm_early_stopping_new(lm_early_stopping_opts o) {
  const char *monitor = o.monitor ? o.monitor : "val_loss";
  if (strlen(monitor) >= sizeof ((lm__monitor *)0)->key || o.patience < 0 || o.start_from_epoch < 0) {
    lm__fail(NULL, LM_ERROR_VALUE, "EarlyStopping: invalid settings: monitor '%s', patience %d, start_from_epoch %d",
             monitor, o.patience, o.start_from_epoch);
    return NULL;
  }
  early_stopping *es = (early_stopping *)lm__callback_alloc(sizeof *es, es_free);
  if (!es) return NULL;
  lm__monitor_init(&es->mon, "EarlyStopping", monitor, o.mode, o.min_delta);
  es->patience = o.patience;
  es->verbose = o.verbose;
  es->start_from_epoch = o.start_from_epoch;
  es->has_baseline = o.has_baseline || o.baseline != 0;
  es->baseline = o.baseline;
  es->restore_best_weights = o.restore_best_weights;
  es->cb.on_train_begin = es_train_begin;
  es->cb.on_epoch_end = es_epoch_end;
  es->cb.on_train_end = es_train_end;
  return &es->cb;
}
