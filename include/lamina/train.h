/* lamina — compile, fit, evaluate, predict; optimizers, losses, metrics, History.
 *
 * Ownership: lm_compile takes the optimizer (the model frees it). fit/evaluate/predict
 * borrow the arrays they are fed. lm_fit returns a History the caller frees with
 * lm_history_free; lm_predict returns arrays the caller frees with lm_outputs_free. */
#ifndef LAMINA_TRAIN_H
#define LAMINA_TRAIN_H

#include <lamina/callbacks.h>

#ifdef __cplusplus
extern "C" {
#endif

#define LM_MAX_OUTPUTS 16

/* ---- Optimizers (Keras's defaults when a field is 0) ---- */
typedef struct lm_optimizer lm_optimizer;
typedef struct lm_sgd_opts {
  int lm_opts_; /* keeps LM_OPTS() valid with no options; never set */
  double learning_rate; /* 0.01 */
  double momentum;      /* 0 */
  bool nesterov;
} lm_sgd_opts;
typedef struct lm_rmsprop_opts {
  int lm_opts_; /* keeps LM_OPTS() valid with no options; never set */
  double learning_rate; /* 0.001 */
  double rho;           /* 0.9 */
  double epsilon;       /* 1e-7 */
} lm_rmsprop_opts;
typedef struct lm_adam_opts {
  int lm_opts_; /* keeps LM_OPTS() valid with no options; never set */
  double learning_rate; /* 0.001 */
  double beta_1;        /* 0.9 */
  double beta_2;        /* 0.999 */
  double epsilon;       /* 1e-7 */
  double weight_decay;  /* AdamW only: 0.004 */
} lm_adam_opts;
typedef struct lm_adagrad_opts {
  int lm_opts_; /* keeps LM_OPTS() valid with no options; never set */
  double learning_rate;             /* 0.001 */
  double initial_accumulator_value; /* 0.1 */
  double epsilon;                   /* 1e-7 */
} lm_adagrad_opts;
#define lm_sgd(...) lm_sgd_new(LM_OPTS(lm_sgd_opts, __VA_ARGS__))
#define lm_rmsprop(...) lm_rmsprop_new(LM_OPTS(lm_rmsprop_opts, __VA_ARGS__))
#define lm_adam(...) lm_adam_new(LM_OPTS(lm_adam_opts, __VA_ARGS__))
#define lm_adamw(...) lm_adamw_new(LM_OPTS(lm_adam_opts, __VA_ARGS__))
#define lm_adagrad(...) lm_adagrad_new(LM_OPTS(lm_adagrad_opts, __VA_ARGS__))
LM_API lm_optimizer *lm_sgd_new(lm_sgd_opts opts);
LM_API lm_optimizer *lm_rmsprop_new(lm_rmsprop_opts opts);
LM_API lm_optimizer *lm_adam_new(lm_adam_opts opts);
LM_API lm_optimizer *lm_adamw_new(lm_adam_opts opts);
LM_API lm_optimizer *lm_adagrad_new(lm_adagrad_opts opts);
/* By Keras name ("sgd", "rmsprop", "adam", "adamw", "adagrad") with default settings. */
LM_API lm_optimizer *lm_optimizer_from_name(const char *name);
LM_API void lm_optimizer_free(lm_optimizer *opt);

/* ---- Per-output settings: by position, or by output name ---- */
/* LM_LOSSES("mse") applies to every output; LM_LOSSES("mse", "binary_crossentropy") is in
 * output order; LM_LOSS_DICT("age", "mse", "gender", "binary_crossentropy") is by name.
 * Names: mse, mae, huber, binary_crossentropy, categorical_crossentropy,
 * sparse_categorical_crossentropy (Keras's long names too); append ":logits" for
 * from_logits=True, e.g. "sparse_categorical_crossentropy:logits". */
typedef struct lm_names {
  int n;
  bool by_name; /* item holds name, value pairs */
  const char *item[2 * LM_MAX_OUTPUTS];
} lm_names;
#define LM__NSTR(...) ((int)(sizeof((const char *[]){__VA_ARGS__}) / sizeof(const char *)))
#define LM_LOSSES(...) ((lm_names){.n = LM__NSTR(__VA_ARGS__), .item = {__VA_ARGS__}})
#define LM_LOSS_DICT(...) ((lm_names){.n = LM__NSTR(__VA_ARGS__) / 2, .by_name = true, .item = {__VA_ARGS__}})
/* Metrics: LM_METRICS("acc") for every output; LM_METRIC_DICT("income", "acc", ...) per
 * output (repeat a name for several). Names: acc/accuracy (resolved from the loss, as
 * Keras does), binary_accuracy, categorical_accuracy, sparse_categorical_accuracy,
 * mae, mse, auc. */
#define LM_METRICS(...) LM_LOSSES(__VA_ARGS__)
#define LM_METRIC_DICT(...) LM_LOSS_DICT(__VA_ARGS__)

typedef struct lm_named_weight {
  const char *name;
  double weight;
} lm_named_weight;
typedef struct lm_loss_weights {
  int n;
  bool by_name;
  double w[LM_MAX_OUTPUTS];
  lm_named_weight named[LM_MAX_OUTPUTS];
} lm_loss_weights;
#define LM_LOSS_WEIGHTS(...)                                                                \
  ((lm_loss_weights){.n = (int)(sizeof((double[]){__VA_ARGS__}) / sizeof(double)), .w = {__VA_ARGS__}})
#define LM_LOSS_WEIGHT_DICT(...)                                                            \
  ((lm_loss_weights){.n = (int)(sizeof((lm_named_weight[]){__VA_ARGS__}) / sizeof(lm_named_weight)), \
                     .by_name = true, .named = {__VA_ARGS__}})

typedef struct lm_compile_opts {
  int lm_opts_; /* keeps LM_OPTS() valid with no options; never set */
  lm_optimizer *optimizer; /* taken over by the model; NULL: rmsprop */
  lm_names loss;
  lm_loss_weights loss_weights; /* default 1 each */
  lm_names metrics;
} lm_compile_opts;
#define lm_compile(...) lm_compile_(__VA_ARGS__, )
#define lm_compile_(model, ...)  lm_compile_opts_((model), LM_OPTS(lm_compile_opts, __VA_ARGS__))
LM_API lm_status lm_compile_opts_(lm_model *model, lm_compile_opts opts);

/* ---- Feeding data: by position, or by input / output name ---- */
typedef struct lm_feed {
  int n;
  bool by_name;                          /* item holds name, array pairs */
  const void *item[2 * LM_MAX_TENSORS];
} lm_feed;
#define LM__NPTR(...) ((int)(sizeof((const void *[]){__VA_ARGS__}) / sizeof(const void *)))
#define LM_FEED(...) ((lm_feed){.n = LM__NPTR(__VA_ARGS__), .item = {__VA_ARGS__}})
#define LM_FEED_NAMED(...) ((lm_feed){.n = LM__NPTR(__VA_ARGS__) / 2, .by_name = true, .item = {__VA_ARGS__}})

/* Verbosity: 0 = Keras's "auto" (a progress bar), LM_SILENT, 1 = bar, 2 = a line an epoch. */
#define LM_SILENT (-1)

typedef struct lm_history lm_history;

typedef struct lm_fit_opts {
  int lm_opts_; /* keeps LM_OPTS() valid with no options; never set */
  int epochs;            /* 1 */
  int batch_size;        /* 32 */
  int verbose;
  bool no_shuffle;       /* Keras shuffle=False */
  double validation_split;
  lm_feed validation_x, validation_y;
  int initial_epoch;
  lm_callbacks callbacks;
  int64_t steps_per_epoch;          /* 0: one pass over the data; else this many batches an
                                     * epoch, the next epoch going on where this one stopped */
  struct lm_source *validation_source; /* validation batches from a data source */
  int64_t validation_steps;         /* 0: the whole validation data */
} lm_fit_opts;
/* Returns the History, or NULL on failure with lm_last_error() saying why (fed arrays that do
 * not fit the model, a NaN loss). Such failures do not break the model: fix and call again. */
#define lm_fit(...) lm_fit_(__VA_ARGS__, )
#define lm_fit_(model, x, y, ...)  lm_fit_opts_((model), (x), (y), LM_OPTS(lm_fit_opts, __VA_ARGS__))
LM_API lm_history *lm_fit_opts_(lm_model *model, lm_feed x, lm_feed y, lm_fit_opts opts);

typedef struct lm_eval_opts {
  int lm_opts_; /* keeps LM_OPTS() valid with no options; never set */
  int batch_size;
  int verbose;
  lm_callbacks callbacks;
  int64_t steps; /* 0: the whole data; else at most this many batches */
} lm_eval_opts;
/* Keras's evaluate(return_dict=True): the returned History holds one value per key. */
#define lm_evaluate(...) lm_evaluate_(__VA_ARGS__, )
#define lm_evaluate_(model, x, y, ...)  lm_evaluate_opts_((model), (x), (y), LM_OPTS(lm_eval_opts, __VA_ARGS__))
LM_API lm_history *lm_evaluate_opts_(lm_model *model, lm_feed x, lm_feed y, lm_eval_opts opts);

typedef struct lm_outputs {
  int n;
  lm_array *a[LM_MAX_OUTPUTS];
} lm_outputs;
/* Every output, in output order; n == 0 on failure. */
#define lm_predict(...) lm_predict_(__VA_ARGS__, )
#define lm_predict_(model, x, ...)  lm_predict_opts_((model), (x), LM_OPTS(lm_eval_opts, __VA_ARGS__))
LM_API lm_outputs lm_predict_opts_(lm_model *model, lm_feed x, lm_eval_opts opts);
LM_API void lm_outputs_free(lm_outputs *outputs);

/* ---- Data sources: batches made on demand (Keras's PyDataset and generators) ----
 *
 * For data larger than memory, or made as it is read (decoded, augmented, streamed): fit,
 * evaluate and predict ask the source for batch 0, 1, 2, ... of each pass, and train on
 * them exactly as on arrays (same steps, logs, callbacks, History). The source points
 * batch->x (and batch->y) at arrays it owns, by position or by name as lm_fit's feeds;
 * they must stay valid until its next call, so a source usually refills the same arrays.
 * Batches may differ in size and, where the model's dims are None, in shape. Shuffling is
 * the source's business: on_epoch_end is called at the end of every epoch, where Keras
 * calls PyDataset.on_epoch_end. */
typedef struct lm_batch {
  lm_feed x, y; /* y is not read by predict */
} lm_batch;
#define LM_SOURCE_END 1
typedef struct lm_source lm_source;
struct lm_source {
  /* Batches in a pass over the data (len() of a PyDataset); -1 when unknown, as for a
   * generator: a pass ends when get returns LM_SOURCE_END, and the progress bar shows
   * "Unknown" until the first epoch has counted them. */
  int64_t n_batches;
  /* Fills batch `index` of the pass: 0 with the batch, LM_SOURCE_END when there is no such
   * batch, or -1 on failure (after writing a message into error). */
  int (*get)(lm_source *src, int64_t index, lm_batch *batch);
  void (*on_epoch_end)(lm_source *src, int epoch); /* optional */
  void (*free)(lm_source *src);                    /* optional; called by lm_source_free */
  void *user;                                      /* the source's own state */
  char error[256];
};
LM_API void lm_source_free(lm_source *src);

/* A source over arrays held in memory, batch_size rows a batch (32 when 0), in order or
 * shuffled at every pass with its own seeded stream; with no y it serves predict. The
 * arrays are borrowed and must outlive the source. NULL with lm_last_error() on a bad feed. */
typedef struct lm_array_source_opts {
  int lm_opts_; /* keeps LM_OPTS() valid with no options; never set */
  int batch_size;
  bool shuffle;
  uint64_t seed;
} lm_array_source_opts;
#define lm_array_source(...) lm_array_source_(__VA_ARGS__, )
#define lm_array_source_(x, y, ...) lm_array_source_new((x), (y), LM_OPTS(lm_array_source_opts, __VA_ARGS__))
LM_API lm_source *lm_array_source_new(lm_feed x, lm_feed y, lm_array_source_opts opts);

/* fit / evaluate / predict on a source. The options are lm_fit's and lm_evaluate's:
 * steps_per_epoch (fit) and steps (evaluate, predict) bound the batches taken, 0 meaning a
 * whole pass (for a source of unknown length, until it ends); batch_size and
 * validation_split do not apply to a source and are refused, as Keras refuses them;
 * no_shuffle is ignored. Validation data may be arrays or another source
 * (.validation_source, .validation_steps). When steps_per_epoch outruns a source of known
 * length, the epoch ends early with Keras's "Your input ran out of data" warning. */
#define lm_fit_source(...) lm_fit_source_(__VA_ARGS__, )
#define lm_fit_source_(model, source, ...) lm_fit_source_opts_((model), (source), LM_OPTS(lm_fit_opts, __VA_ARGS__))
LM_API lm_history *lm_fit_source_opts_(lm_model *model, lm_source *source, lm_fit_opts opts);
#define lm_evaluate_source(...) lm_evaluate_source_(__VA_ARGS__, )
#define lm_evaluate_source_(model, source, ...) lm_evaluate_source_opts_((model), (source), LM_OPTS(lm_eval_opts, __VA_ARGS__))
LM_API lm_history *lm_evaluate_source_opts_(lm_model *model, lm_source *source, lm_eval_opts opts);
#define lm_predict_source(...) lm_predict_source_(__VA_ARGS__, )
#define lm_predict_source_(model, source, ...) lm_predict_source_opts_((model), (source), LM_OPTS(lm_eval_opts, __VA_ARGS__))
LM_API lm_outputs lm_predict_source_opts_(lm_model *model, lm_source *source, lm_eval_opts opts);

/* ---- History: every logged key, one value per epoch ---- */
LM_API int lm_history_n_keys(const lm_history *h);
LM_API const char *lm_history_key(const lm_history *h, int index);
LM_API int lm_history_n_epochs(const lm_history *h);
/* The values of key, one per epoch, or NULL if the key was never logged. */
LM_API const double *lm_history_get(const lm_history *h, const char *key);
/* The last value of key; NAN if absent. */
LM_API double lm_history_last(const lm_history *h, const char *key);
LM_API void lm_history_free(lm_history *h);

#ifdef __cplusplus
}
#endif
#endif
