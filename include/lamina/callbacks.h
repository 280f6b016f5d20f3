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

/* ---- Built-in callbacks: Keras's EarlyStopping, ReduceLROnPlateau, LearningRateScheduler,
 * CSVLogger, TerminateOnNaN and LambdaCallback ----
 *
 * Each constructor returns a heap callback for lm_fit's .callbacks, freed with
 * lm_callback_free, or NULL with lm_last_error() saying why. Strings given to a
 * constructor are copied. A field left out is Keras's default (noted beside it). One
 * callback may serve several fits, one at a time: each fit starts it afresh, as in Keras.
 *
 * Messages of verbose callbacks are Keras's, word for word, on stdout. Keras's warnings
 * (an unknown mode, a monitored key missing from the logs) go to stderr as
 * "UserWarning: <Keras's message>", once until the message changes.
 *
 * mode "auto" picks the direction from the monitored name, without "val_": "loss" or a
 * name ending in "_loss" is minimized; one holding "acc" or "auc" (acc, accuracy,
 * binary_accuracy, ..., auc, class_acc) is maximized; anything else (mae, mse) is
 * minimized. That is Keras 3's answer for every metric lamina logs; where Keras 3 cannot
 * tell (an output-prefixed name such as "val_class_acc", a key a callback added) it
 * raises, and lamina uses the rule above. Improvements are compared in float32, as Keras
 * compares them.
 *
 * The callbacks read the learning rate as Keras holds it (a float32), so that their
 * messages and the "learning_rate" they log match Keras's digits. */

typedef struct lm_early_stopping_opts {
  int lm_opts_; /* keeps LM_OPTS() valid with no options; never set */
  const char *monitor;       /* "val_loss" */
  double min_delta;          /* 0; only its size counts */
  int patience;              /* 0 */
  int verbose;               /* 0; 1 prints "Epoch N: early stopping" and the restore */
  const char *mode;          /* "auto"; "min", "max" */
  /* Keras's baseline (default None): used when nonzero, or when has_baseline is set (for
   * a baseline of exactly 0). Training stops after patience epochs that do not beat it. */
  double baseline;
  bool has_baseline;
  bool restore_best_weights; /* keeps a copy of every weight of the best epoch in memory */
  int start_from_epoch;      /* 0 */
} lm_early_stopping_opts;
#define lm_early_stopping(...) lm_early_stopping_new(LM_OPTS(lm_early_stopping_opts, __VA_ARGS__))
LM_API lm_callback *lm_early_stopping_new(lm_early_stopping_opts opts);

/* Multiplies the learning rate by factor after patience epochs without improvement, and
 * logs the rate (before any change that epoch) as "learning_rate". */
typedef struct lm_reduce_lr_on_plateau_opts {
  int lm_opts_; /* keeps LM_OPTS() valid with no options; never set */
  const char *monitor; /* "val_loss" */
  double factor;       /* 0.1; must be in (0, 1): factor >= 1 is an error, as in Keras */
  int patience;        /* 10; Keras's patience=0 acts as 1 (reduce after each plateau epoch) */
  int verbose;         /* 0 */
  const char *mode;    /* "auto"; "min", "max" */
  double min_delta;    /* 1e-4; set zero_min_delta for Keras's min_delta=0 */
  bool zero_min_delta;
  int cooldown;        /* 0 */
  double min_lr;       /* 0 */
} lm_reduce_lr_on_plateau_opts;
#define lm_reduce_lr_on_plateau(...)                                                        \
  lm_reduce_lr_on_plateau_new(LM_OPTS(lm_reduce_lr_on_plateau_opts, __VA_ARGS__))
LM_API lm_callback *lm_reduce_lr_on_plateau_new(lm_reduce_lr_on_plateau_opts opts);

/* Keras's schedule(epoch, lr): the rate for epoch (0-based) given the current one; user is
 * the options' user pointer. A NaN, infinite or negative rate stops training with
 * lm_last_error() saying so. */
typedef double (*lm_lr_schedule)(int epoch, double learning_rate, void *user);
typedef struct lm_learning_rate_scheduler_opts {
  int lm_opts_; /* keeps LM_OPTS() valid with no options; never set */
  void *user;
  int verbose; /* 0 */
} lm_learning_rate_scheduler_opts;
/* Sets the rate at each epoch's start; logs it as "learning_rate" at the epoch's end. */
#define lm_learning_rate_scheduler(...) lm_learning_rate_scheduler_(__VA_ARGS__, )
#define lm_learning_rate_scheduler_(schedule, ...)                                          \
  lm_learning_rate_scheduler_new((schedule), LM_OPTS(lm_learning_rate_scheduler_opts, __VA_ARGS__))
LM_API lm_callback *lm_learning_rate_scheduler_new(lm_lr_schedule schedule, lm_learning_rate_scheduler_opts opts);

/* Streams each epoch's logs to a CSV file as Keras does: a header "epoch" then the logs'
 * keys sorted (the first epoch's keys; when they hold no "val_" key, "val_<key>" columns
 * follow, filled with NA), one row per epoch (0-based), floats written as Python writes
 * them, "\r\n" line ends, flushed each row. A file that cannot be opened at the start of
 * training stops it before the first epoch, with lm_last_error() saying why: fit then
 * returns an empty History. */
typedef struct lm_csv_logger_opts {
  int lm_opts_; /* keeps LM_OPTS() valid with no options; never set */
  char separator; /* ',' */
  bool append;    /* keep the file's rows (and header) and add to them */
} lm_csv_logger_opts;
#define lm_csv_logger(...) lm_csv_logger_(__VA_ARGS__, )
#define lm_csv_logger_(filename, ...) lm_csv_logger_new((filename), LM_OPTS(lm_csv_logger_opts, __VA_ARGS__))
LM_API lm_callback *lm_csv_logger_new(const char *filename, lm_csv_logger_opts opts);

/* Stops training when a batch's "loss" is NaN or infinite, printing "Batch N: Invalid
 * loss, terminating training". (fit itself refuses an update whose loss is not finite and
 * fails; this callback serves loops that log such losses.) raise_error: no message, and
 * lm_last_error() holds Keras's RuntimeError text instead; training stops the same way. */
typedef struct lm_terminate_on_nan_opts {
  int lm_opts_; /* keeps LM_OPTS() valid with no options; never set */
  bool raise_error;
} lm_terminate_on_nan_opts;
#define lm_terminate_on_nan(...) lm_terminate_on_nan_new(LM_OPTS(lm_terminate_on_nan_opts, __VA_ARGS__))
LM_API lm_callback *lm_terminate_on_nan_new(lm_terminate_on_nan_opts opts);

/* Keras's LambdaCallback: plain functions for any hook, each given Keras's arguments and
 * the user pointer. free_user, if set, is called on user by lm_callback_free. */
typedef struct lm_lambda_callback_opts {
  int lm_opts_; /* keeps LM_OPTS() valid with no options; never set */
  void (*on_train_begin)(const lm_logs *logs, void *user);
  void (*on_train_end)(const lm_logs *logs, void *user);
  void (*on_epoch_begin)(int epoch, const lm_logs *logs, void *user);
  void (*on_epoch_end)(int epoch, const lm_logs *logs, void *user);
  void (*on_train_batch_begin)(int batch, const lm_logs *logs, void *user);
  void (*on_train_batch_end)(int batch, const lm_logs *logs, void *user);
  void (*on_test_begin)(const lm_logs *logs, void *user);
  void (*on_test_end)(const lm_logs *logs, void *user);
  void (*on_test_batch_begin)(int batch, const lm_logs *logs, void *user);
  void (*on_test_batch_end)(int batch, const lm_logs *logs, void *user);
  void (*on_predict_begin)(const lm_logs *logs, void *user);
  void (*on_predict_end)(const lm_logs *logs, void *user);
  void (*on_predict_batch_begin)(int batch, const lm_logs *logs, void *user);
  void (*on_predict_batch_end)(int batch, const lm_logs *logs, void *user);
  void *user;
  void (*free_user)(void *user);
} lm_lambda_callback_opts;
#define lm_lambda_callback(...) lm_lambda_callback_new(LM_OPTS(lm_lambda_callback_opts, __VA_ARGS__))
LM_API lm_callback *lm_lambda_callback_new(lm_lambda_callback_opts opts);

/* ---- ModelCheckpoint and BackupAndRestore (they save through include/lamina/saving.h) ---- */

/* Keras's ModelCheckpoint(filepath, ...): filepath is a template formatted as Python's
 * str.format with epoch (1-based), batch (with save_freq) and the logs' keys, e.g.
 * "weights.{epoch:02d}-{val_loss:.2f}.weights.h5". It must end in ".keras" or ".h5" (a
 * full model) or, with save_weights_only, in ".weights.h5". Files are written to a
 * temporary name and renamed, so an interrupted save never replaces a good checkpoint. A
 * save that fails stops training with lm_last_error() saying why. */
typedef struct lm_model_checkpoint_opts {
  int lm_opts_; /* keeps LM_OPTS() valid with no options; never set */
  const char *monitor; /* "val_loss" */
  int verbose;         /* 0; 1 prints Keras's messages */
  bool save_best_only;
  bool save_weights_only;
  const char *mode; /* "auto"; "min", "max" */
  int save_freq;    /* 0: every epoch (Keras's "epoch"); N: every N batches */
  /* Keras's initial_value_threshold (default None): used when nonzero, or when
   * has_initial_value_threshold is set (for exactly 0). */
  double initial_value_threshold;
  bool has_initial_value_threshold;
} lm_model_checkpoint_opts;
#define lm_model_checkpoint(...) lm_model_checkpoint_(__VA_ARGS__, )
#define lm_model_checkpoint_(filepath, ...) lm_model_checkpoint_new((filepath), LM_OPTS(lm_model_checkpoint_opts, __VA_ARGS__))
LM_API lm_callback *lm_model_checkpoint_new(const char *filepath, lm_model_checkpoint_opts opts);

/* Keras's BackupAndRestore(backup_dir): saves latest.weights.h5 (with the optimizer's state)
 * and training_metadata.json in backup_dir at each epoch's end (or every save_freq
 * batches); a fit started again with the same callback resumes from the last backup. With
 * shuffling and dropout keyed by the seed, the epoch and the step count, the resumed run
 * ends with the weights of an uninterrupted one. The directory is removed when training
 * ends, unless no_delete_checkpoint. */
typedef struct lm_backup_and_restore_opts {
  int lm_opts_; /* keeps LM_OPTS() valid with no options; never set */
  int save_freq;            /* 0: every epoch; N: every N batches */
  bool double_checkpoint;   /* keep the previous backup too, used if the latest is damaged */
  bool no_delete_checkpoint; /* Keras delete_checkpoint=False */
} lm_backup_and_restore_opts;
#define lm_backup_and_restore(...) lm_backup_and_restore_(__VA_ARGS__, )
#define lm_backup_and_restore_(backup_dir, ...)                                                  \
  lm_backup_and_restore_new((backup_dir), LM_OPTS(lm_backup_and_restore_opts, __VA_ARGS__))
LM_API lm_callback *lm_backup_and_restore_new(const char *backup_dir, lm_backup_and_restore_opts opts);

#ifdef __cplusplus
}
#endif
#endif
