/* LambdaCallback: plain functions at any hook (Keras 3's
 * keras/src/callbacks/lambda_callback.py), with a user pointer as the C closure. */
#include "train/callbacks/monitor.h"

typedef struct lambda_callback {
  lm_callback cb;
  lm_lambda_callback_opts fn;
} lambda_callback;

#define FN(cb) (&((lambda_callback *)(cb)->user)->fn)
/* One hook per shape of arguments: (logs) or (index, logs). */
#define HOOK0(name)                                                                         \
  static void lc_##name(lm_callback *cb, const lm_logs *logs) { FN(cb)->name(logs, FN(cb)->user); }
#define HOOK1(name)                                                                         \
  static void lc_##name(lm_callback *cb, int i, const lm_logs *logs) { FN(cb)->name(i, logs, FN(cb)->user); }
HOOK0(on_train_begin)
HOOK0(on_train_end)
HOOK1(on_epoch_begin)
HOOK1(on_epoch_end)
HOOK1(on_train_batch_begin)
HOOK1(on_train_batch_end)
HOOK0(on_test_begin)
HOOK0(on_test_end)
HOOK1(on_test_batch_begin)
HOOK1(on_test_batch_end)
HOOK0(on_predict_begin)
HOOK0(on_predict_end)
HOOK1(on_predict_batch_begin)
HOOK1(on_predict_batch_end)

static void lc_free(lm_callback *cb) {
  lambda_callback *l = cb->user;
  if (l->fn.free_user) l->fn.free_user(l->fn.user);
  free(l);
}

lm_callback *lm_lambda_callback_new(lm_lambda_callback_opts o) {
  lambda_callback *l = (lambda_callback *)lm__callback_alloc(sizeof *l, lc_free);
  if (!l) return NULL;
  l->fn = o;
  /* Only the hooks given are installed, so fit skips the others. */
#define SET(name) l->cb.name = o.name ? lc_##name : NULL
  SET(on_train_begin);
  SET(on_train_end);
  SET(on_epoch_begin);
  SET(on_epoch_end);
  SET(on_train_batch_begin);
  SET(on_train_batch_end);
  SET(on_test_begin);
  SET(on_test_end);
  SET(on_test_batch_begin);
  SET(on_test_batch_end);
  SET(on_predict_begin);
  SET(on_predict_end);
  SET(on_predict_batch_begin);
  SET(on_predict_batch_end);
#undef SET
  return &l->cb;
}
