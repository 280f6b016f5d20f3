/* Losses and metrics as plain kernels over [rows, cols] float buffers. The graph's loss op
 * and the training loop's metric trackers call these; they know nothing of models. */
#ifndef LAMINA_LOSSES_H
#define LAMINA_LOSSES_H

#include "core/core.h"

typedef enum lm_loss_kind {
  LM_LOSS_MSE,
  LM_LOSS_MAE,
  LM_LOSS_HUBER,
  LM_LOSS_BINARY_CE,
  LM_LOSS_CATEGORICAL_CE,
  LM_LOSS_SPARSE_CATEGORICAL_CE
} lm_loss_kind;

typedef struct lm_loss_spec {
  lm_loss_kind kind;
  int from_logits;
  float huber_delta; /* 1.0 */
} lm_loss_spec;

/* Parses a Keras loss name ("mse", "mean_squared_error", "mae", "mean_absolute_error",
 * "huber", "binary_crossentropy", "categorical_crossentropy",
 * "sparse_categorical_crossentropy"), optionally with ":logits" appended for from_logits.
 * Returns 0, or -1 with err naming the unknown loss. */
LM_INTERNAL int lm__loss_parse(const char *name, lm_loss_spec *spec, lm_error *err);
LM_INTERNAL const char *lm__loss_name(lm_loss_kind kind);

/* pred is [rows, cols] (cols = product of the non-batch dims). target has the same layout,
 * except for the sparse loss where it holds one class id per row (as a float).
 * Returns the mean over rows of the per-sample loss, Keras's "sum_over_batch_size":
 * per sample, mse/mae/huber/binary_ce average over cols, categorical_ce sums.
 * Probabilities are clipped to [1e-7, 1 - 1e-7] and categorical predictions normalized
 * to sum 1 per row, as Keras does. If dpred is not NULL it receives (overwritten)
 * scale * d(returned loss)/d(pred), the exact derivative of what was computed. */
LM_INTERNAL double lm__loss_compute(const lm_loss_spec *spec, const float *pred, const float *target,
                                    int64_t rows, int64_t cols, float *dpred, float scale);

typedef enum lm_metric_kind {
  LM_METRIC_BINARY_ACCURACY,
  LM_METRIC_CATEGORICAL_ACCURACY,
  LM_METRIC_SPARSE_CATEGORICAL_ACCURACY,
  LM_METRIC_MAE,
  LM_METRIC_MSE,
  LM_METRIC_AUC
} lm_metric_kind;

#define LM_AUC_THRESHOLDS 200

/* A streaming metric: update per batch, result at any time, reset per epoch. */
typedef struct lm_metric {
  lm_metric_kind kind;
  char name[64]; /* the log name: the name the user gave ("acc", "accuracy", "auc") */
  double total, count;
  double tp[LM_AUC_THRESHOLDS], fp[LM_AUC_THRESHOLDS], tn[LM_AUC_THRESHOLDS],
      fn[LM_AUC_THRESHOLDS];
} lm_metric;

/* Resolves a metric name against the output's loss and width (cols), as Keras does for
 * "acc"/"accuracy": binary for binary_crossentropy or cols == 1, sparse for the sparse
 * loss, categorical otherwise. Returns 0, or -1 with err naming the unknown metric. */
LM_INTERNAL int lm__metric_init(lm_metric *m, const char *name, const lm_loss_spec *loss,
                                int64_t cols, lm_error *err);
LM_INTERNAL void lm__metric_reset(lm_metric *m);
/* pred/target laid out as for lm__loss_compute. */
LM_INTERNAL void lm__metric_update(lm_metric *m, const float *pred, const float *target,
                                   int64_t rows, int64_t cols);
LM_INTERNAL double lm__metric_result(const lm_metric *m);

#endif
