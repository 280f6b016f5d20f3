/* lamina — callbacks: user code at every hook of fit, evaluate and predict.
 *
 * Ownership: fit borrows the callbacks it is given; the caller frees them afterwards with
 * lm_callback_free (which calls the callback's own free hook). */
#ifndef LAMINA_CALLBACKS_H
#define LAMINA_CALLBACKS_H

#include <lamina/model.h>

#ifdef __cplusplus
extern "C" {
#endif

/* A key/value view of the logs of one moment ("loss", "val_acc", ...), valid only during
 * the hook that receives it. */
typedef struct lm_logs lm_logs;
LM_API int lm_logs_count(const lm_logs *logs);
LM_API const char *lm_logs_key(const lm_logs *logs, int index);
LM_API double lm_logs_value(const lm_logs *logs, int index);
/* true and *value set when key is present. */
LM_API bool lm_logs_get(const lm_logs *logs, const char *key, double *value);

typedef struct lm_callback lm_callback;
/* Every hook is optional. epoch and batch are 0-based, as in Keras. */
struct lm_callback {
  void (*on_train_begin)(lm_callback *cb, const lm_logs *logs);
  void (*on_train_end)(lm_callback *cb, const lm_logs *logs);
  void (*on_epoch_begin)(lm_callback *cb, int epoch, const lm_logs *logs);
  void (*on_epoch_end)(lm_callback *cb, int epoch, const lm_logs *logs);
  void (*on_train_batch_begin)(lm_callback *cb, int batch, const lm_logs *logs);
  void (*on_train_batch_end)(lm_callback *cb, int batch, const lm_logs *logs);
  void (*on_test_begin)(lm_callback *cb, const lm_logs *logs);
  void (*on_test_end)(lm_callback *cb, const lm_logs *logs);
  void (*on_test_batch_begin)(lm_callback *cb, int batch, const lm_logs *logs);
  void (*on_test_batch_end)(lm_callback *cb, int batch, const lm_logs *logs);
  void (*on_predict_begin)(lm_callback *cb, const lm_logs *logs);
  void (*on_predict_end)(lm_callback *cb, const lm_logs *logs);
  void (*on_predict_batch_begin)(lm_callback *cb, int batch, const lm_logs *logs);
  void (*on_predict_batch_end)(lm_callback *cb, int batch, const lm_logs *logs);
  void (*free)(lm_callback *cb);
  void *user;     /* the callback's own state */
  lm_model *model; /* set by fit before on_train_begin */
  /* Set by fit before on_train_begin: the validation arrays in model input and output
   * order (views into the fed arrays for validation_split, valid during fit); 0 when fit
   * has no validation data. */
  int n_validation_x, n_validation_y;
  const lm_array *validation_x[LM_MAX_TENSORS], *validation_y[LM_MAX_TENSORS];
};

#define LM_MAX_CALLBACKS 16
typedef struct lm_callbacks {
  int n;
  lm_callback *cb[LM_MAX_CALLBACKS];
} lm_callbacks;
#define LM_CALLBACKS(...)                                                                   \
  ((lm_callbacks){.n = (int)(sizeof((lm_callback *[]){__VA_ARGS__}) / sizeof(lm_callback *)), \
                  .cb = {__VA_ARGS__}})

/* Asks fit to stop after the current epoch (Keras's model.stop_training = True). */
LM_API void lm_model_stop_training(lm_model *model);
LM_API double lm_model_learning_rate(const lm_model *model);
LM_API void lm_model_set_learning_rate(lm_model *model, double learning_rate);
LM_API void lm_callback_free(lm_callback *cb);

#ifdef __cplusplus
}
#endif
#endif
