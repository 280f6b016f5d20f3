/* TerminateOnNaN: stops training at a batch whose loss is NaN or infinite (Keras 3's
 * keras/src/callbacks/terminate_on_nan.py). */
#include "train/callbacks/monitor.h"

typedef struct terminate_on_nan {
  lm_callback cb;
  bool raise_error;
} terminate_on_nan;

static void tn_batch_end(lm_callback *cb, int batch, const lm_logs *logs) {
  terminate_on_nan *t = cb->user;
  double loss;
  if (!lm_logs_get(logs, "loss", &loss) || isfinite(loss)) return;
  if (t->raise_error) {
    /* C has no exception to unwind fit with: the error is left for the caller. */
    char v[40];
    lm__fail(NULL, LM_ERROR_NAN,
             "NaN or Inf loss encountered at batch %d. Loss value: %s. Terminating training immediately.", batch,
             lm__py_float(loss, v, sizeof v));
  } else {
    printf("Batch %d: Invalid loss, terminating training\n", batch);
    fflush(stdout);
  }
  lm_model_stop_training(cb->model);
}

lm_callback *lm_terminate_on_nan_new(lm_terminate_on_nan_opts o) {
  terminate_on_nan *t = (terminate_on_nan *)lm__callback_alloc(sizeof *t, NULL);
  if (!t) return NULL;
  t->raise_error = o.raise_error;
  t->cb.on_train_batch_end = tn_batch_end;
  return &t->cb;
}
