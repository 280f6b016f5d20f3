/* Internal: compiled state, logs and History shared by the training loop's files. */
#ifndef LAMINA_TRAIN_INTERNAL_H
#define LAMINA_TRAIN_INTERNAL_H

#include "model/internal.h"
#include "train/losses.h"
#include "train/optimizer.h"

#define LM_MAX_LOG_KEYS 96
#define LM_MAX_METRICS_PER_OUTPUT 8
#define LM_PLAN_CACHE 6

struct lm_logs {
  int n;
  char keys[LM_MAX_LOG_KEYS][96];
  double values[LM_MAX_LOG_KEYS];
};

LM_INTERNAL void lm__logs_set(lm_logs *logs, const char *key, double value);

struct lm_history {
  int n_keys, n_epochs;
  char (*keys)[96];
  double **values; /* values[key][epoch], NAN where a key was missing that epoch */
  int cap_epochs;
};

LM_INTERNAL lm_history *lm__history_new(void);
LM_INTERNAL int lm__history_append(lm_history *h, const lm_logs *logs);

/* A graph built from the model for a purpose (prediction, or training with losses), with
 * its plans cached by input shape. */
typedef struct lm_program {
  lm_graph *g;
  int n_in, n_out;
  int in[LM_MAX_TENSORS];
  int out[LM_MAX_OUTPUTS];
  int target[LM_MAX_OUTPUTS];
  int loss[LM_MAX_OUTPUTS];
  int total; /* -1 for a prediction program */
  lm_shape target_shapes[LM_MAX_OUTPUTS]; /* as built, batch dim LM_NONE */
  int *slot_of; /* per value: index of a PARAM's weight in lm_compiled.weights, else -1 */
  struct {
    lm_plan *plan;
    int training;
  } cache[LM_PLAN_CACHE];
  int next_slot;
} lm_program;

struct lm_compiled {
  lm_optimizer *opt;
  int n_out;
  lm_loss_spec loss[LM_MAX_OUTPUTS];
  float loss_weight[LM_MAX_OUTPUTS];
  const char *loss_name[LM_MAX_OUTPUTS];
  char metric_names[LM_MAX_OUTPUTS][LM_MAX_METRICS_PER_OUTPUT][64];
  int n_metrics[LM_MAX_OUTPUTS];
  lm_program *train; /* built on first fit/evaluate, rebuilt if target ranks change */
  lm_program *predict;
  /* optimizer state per trainable weight */
  lm_weight **weights;
  float **slots; /* slots[weight * n_slots + k] */
  int n_weights, cap_weights, n_slots;
};

LM_INTERNAL void lm__program_free(lm_program *p);

#endif
