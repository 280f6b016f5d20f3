/* Losses and metrics over [rows, cols] float buffers, following Keras 3's formulas (its
 * JAX/NumPy backends: clip then log, no epsilon inside the log). Sums run in double so
 * the reported loss does not depend on the batch size through rounding. */
#include "train/losses.h"

#include <math.h>

/* Keras's backend.epsilon(), clipped in float32 as Keras does: 1 - 1e-7 rounds to
 * 1 - 2^-23 in float, and that is the bound Keras really uses. */
#define CLIP_LO ((double)1e-7f)
#define CLIP_HI ((double)(float)(1.0 - 1e-7))

static const struct {
  const char *name;
  lm_loss_kind kind;
} loss_names[] = {
    {"mse", LM_LOSS_MSE},
    {"mean_squared_error", LM_LOSS_MSE},
    {"mae", LM_LOSS_MAE},
    {"mean_absolute_error", LM_LOSS_MAE},
    {"huber", LM_LOSS_HUBER},
    {"binary_crossentropy", LM_LOSS_BINARY_CE},
    {"categorical_crossentropy", LM_LOSS_CATEGORICAL_CE},
    {"sparse_categorical_crossentropy", LM_LOSS_SPARSE_CATEGORICAL_CE},
};
#define KNOWN_LOSSES                                                                       \
  "mse, mean_squared_error, mae, mean_absolute_error, huber, binary_crossentropy, "        \
  "categorical_crossentropy, sparse_categorical_crossentropy (append ':logits' to a "      \
  "crossentropy for from_logits=True)"

int lm__loss_parse(const char *name, lm_loss_spec *spec, lm_error *err) {
  if (!name) {
    lm__fail(err, LM_ERROR_VALUE, "Missing loss name. Known losses: " KNOWN_LOSSES);
    return -1;
  }
  const char *colon = strchr(name, ':');
  size_t len = colon ? (size_t)(colon - name) : strlen(name);
  int logits = colon != NULL;
  if (colon && strcmp(colon, ":logits") != 0) len = (size_t)-1; /* unknown suffix */
  for (size_t i = 0; i < sizeof loss_names / sizeof loss_names[0]; i++) {
    if (strlen(loss_names[i].name) != len || strncmp(name, loss_names[i].name, len) != 0)
      continue;
    lm_loss_kind kind = loss_names[i].kind;
    /* Keras's regression losses have no from_logits; accepting it silently would hide
     * a mistake in the caller's configuration. */
    if (logits && kind != LM_LOSS_BINARY_CE && kind != LM_LOSS_CATEGORICAL_CE &&
        kind != LM_LOSS_SPARSE_CATEGORICAL_CE) {
      lm__fail(err, LM_ERROR_VALUE, "Loss '%s': only crossentropy losses take ':logits'", name);
      return -1;
    }
    *spec = (lm_loss_spec){.kind = kind, .from_logits = logits, .huber_delta = 1.0f};
    return 0;
  }
  lm__fail(err, LM_ERROR_VALUE, "Unknown loss '%s'. Known losses: " KNOWN_LOSSES, name);
  return -1;
}

const char *lm__loss_name(lm_loss_kind kind) {
  switch (kind) {
  case LM_LOSS_MSE: return "mean_squared_error";
  case LM_LOSS_MAE: return "mean_absolute_error";
  case LM_LOSS_HUBER: return "huber";
  case LM_LOSS_BINARY_CE: return "binary_crossentropy";
  case LM_LOSS_CATEGORICAL_CE: return "categorical_crossentropy";
  case LM_LOSS_SPARSE_CATEGORICAL_CE: return "sparse_categorical_crossentropy";
  }
  return "unknown";
}

/* Where the clip is active the output does not depend on the input, so no gradient. */
static double clip_prob(double p, int *inside) {
  *inside = p >= CLIP_LO && p <= CLIP_HI;
  return p < CLIP_LO ? CLIP_LO : p > CLIP_HI ? CLIP_HI : p;
}

static double sigmoid(double x) {
  if (x >= 0) return 1.0 / (1.0 + exp(-x));
  double e = exp(x); /* avoids exp overflow for very negative x */
  return e / (1.0 + e);
}

/* One element of an "average over cols" loss: returns the loss, *d its derivative. */
static double elementwise(const lm_loss_spec *spec, double p, double y, double *d) {
  double x = p - y;
  switch (spec->kind) {
  case LM_LOSS_MSE:
    *d = 2.0 * x;
    return x * x;
  case LM_LOSS_MAE:
    *d = (x > 0) - (x < 0);
    return fabs(x);
  case LM_LOSS_HUBER: {
    double delta = spec->huber_delta > 0 ? spec->huber_delta : 1.0;
    if (fabs(x) <= delta) {
      *d = x;
      return 0.5 * x * x;
    }
    *d = delta * ((x > 0) - (x < 0));
    return delta * fabs(x) - 0.5 * delta * delta;
  }
  case LM_LOSS_BINARY_CE:
    if (spec->from_logits) {
      /* Keras's stable form of -(y log s(p) + (1-y) log(1-s(p))). */
      *d = sigmoid(p) - y;
      return fmax(p, 0.0) - p * y + log1p(exp(-fabs(p)));
    } else {
      int inside;
      double c = clip_prob(p, &inside);
      *d = inside ? (c - y) / (c * (1.0 - c)) : 0.0;
      return -(y * log(c) + (1.0 - y) * log(1.0 - c));
    }
  default: /* categorical kinds never reach here */
    *d = 0;
    return 0;
  }
}

/* The target of one class: the dense row, or a one-hot of class k when y is NULL. */
static inline double target_at(const float *y, int64_t k, int64_t j) {
  return y ? (double)y[j] : (double)(j == k);
}

/* Categorical crossentropy of one row; dp (if not NULL) gets gscale * dL/dp. */
static double categorical_row(int from_logits, const float *p, const float *y, int64_t k,
                              int64_t cols, float *dp, double gscale) {
  double loss = 0;
  if (from_logits) {
    double m = -INFINITY, se = 0, sy = 0;
    for (int64_t j = 0; j < cols; j++) m = fmax(m, p[j]);
    for (int64_t j = 0; j < cols; j++) se += exp(p[j] - m);
    double lse = m + log(se);
    for (int64_t j = 0; j < cols; j++) {
      double t = target_at(y, k, j);
      sy += t;
      if (t != 0) loss -= t * (p[j] - lse);
    }
    /* d/dx_j of -sum t (x - lse) is softmax_j * sum(t) - t_j. */
    if (dp)
      for (int64_t j = 0; j < cols; j++)
        dp[j] = (float)(gscale * (exp(p[j] - lse) * sy - target_at(y, k, j)));
    return loss;
  }
  /* Keras: q = p / sum(p); c = clip(q); L = -sum t log c. With g_j = dL/dq_j (zero where
   * clipped), dL/dp_k = (g_k - sum_j g_j q_j) / s because dq_j/dp_k = (delta_jk - q_j)/s. */
  double s = 0, gq = 0;
  for (int64_t j = 0; j < cols; j++) s += p[j];
  for (int64_t j = 0; j < cols; j++) {
    double t = target_at(y, k, j);
    if (t == 0) continue; /* keeps 0 * log(c) from mattering and skips the log */
    int inside;
    double q = p[j] / s, c = clip_prob(q, &inside);
    loss -= t * log(c);
    if (inside) gq += -t / c * q;
  }
  if (dp)
    for (int64_t j = 0; j < cols; j++) {
      double t = target_at(y, k, j), g = 0;
      int inside;
      double c = clip_prob(p[j] / s, &inside);
      if (t != 0 && inside) g = -t / c;
      dp[j] = (float)(gscale * (g - gq) / s);
    }
  return loss;
}

double lm__loss_compute(const lm_loss_spec *spec, const float *pred, const float *target,
                        int64_t rows, int64_t cols, float *dpred, float scale) {
  if (rows <= 0 || cols <= 0) return 0;
  double total = 0, per_row = (double)scale / (double)rows;
  for (int64_t r = 0; r < rows; r++) {
    const float *p = pred + r * cols;
    float *dp = dpred ? dpred + r * cols : NULL;
    switch (spec->kind) {
    case LM_LOSS_CATEGORICAL_CE:
      total += categorical_row(spec->from_logits, p, target + r * cols, -1, cols, dp, per_row);
      break;
    case LM_LOSS_SPARSE_CATEGORICAL_CE: {
      /* A class id outside [0, cols) (or NaN) gives an all-zero one-hot row, as JAX's
       * one_hot does in Keras: the row contributes 0 loss and no gradient, and nothing
       * is read out of bounds. The id is truncated like Keras's cast to int32. */
      double t = target[r];
      if (t >= 0 && t < (double)cols) {
        total += categorical_row(spec->from_logits, p, NULL, (int64_t)t, cols, dp, per_row);
      } else if (dp) {
        memset(dp, 0, (size_t)cols * sizeof *dp);
      }
      break;
    }
    default: {
      const float *y = target + r * cols;
      double row = 0, g = per_row / (double)cols, d;
      for (int64_t j = 0; j < cols; j++) {
        row += elementwise(spec, p[j], y[j], &d);
        if (dp) dp[j] = (float)(g * d);
      }
      total += row / (double)cols;
    }
    }
  }
  return total / (double)rows;
}

/* ---- Metrics ---- */

static const struct {
  const char *name;
  int kind; /* an lm_metric_kind, or -1 for accuracy resolved from the loss */
} metric_names[] = {
    {"acc", -1},
    {"accuracy", -1},
    {"binary_accuracy", LM_METRIC_BINARY_ACCURACY},
    {"categorical_accuracy", LM_METRIC_CATEGORICAL_ACCURACY},
    {"sparse_categorical_accuracy", LM_METRIC_SPARSE_CATEGORICAL_ACCURACY},
    {"mae", LM_METRIC_MAE},
    {"mean_absolute_error", LM_METRIC_MAE},
    {"mse", LM_METRIC_MSE},
    {"mean_squared_error", LM_METRIC_MSE},
    {"auc", LM_METRIC_AUC},
    {"AUC", LM_METRIC_AUC},
};

int lm__metric_init(lm_metric *m, const char *name, const lm_loss_spec *loss, int64_t cols,
                    lm_error *err) {
  memset(m, 0, sizeof *m);
  for (size_t i = 0; name && i < sizeof metric_names / sizeof metric_names[0]; i++) {
    if (strcmp(name, metric_names[i].name) != 0) continue;
    int kind = metric_names[i].kind;
    if (kind < 0) {
      if ((loss && loss->kind == LM_LOSS_BINARY_CE) || cols == 1)
        kind = LM_METRIC_BINARY_ACCURACY;
      else if (loss && loss->kind == LM_LOSS_SPARSE_CATEGORICAL_CE)
        kind = LM_METRIC_SPARSE_CATEGORICAL_ACCURACY;
      else
        kind = LM_METRIC_CATEGORICAL_ACCURACY;
    }
    m->kind = (lm_metric_kind)kind;
    snprintf(m->name, sizeof m->name, "%s", kind == LM_METRIC_AUC ? "auc" : name);
    return 0;
  }
  lm__fail(err, LM_ERROR_VALUE,
           "Unknown metric '%s'. Known metrics: acc, accuracy, binary_accuracy, "
           "categorical_accuracy, sparse_categorical_accuracy, mae, mean_absolute_error, "
           "mse, mean_squared_error, auc",
           name ? name : "(null)");
  return -1;
}

void lm__metric_reset(lm_metric *m) {
  m->total = m->count = 0;
  memset(m->tp, 0, sizeof m->tp);
  memset(m->fp, 0, sizeof m->fp);
  memset(m->tn, 0, sizeof m->tn);
  memset(m->fn, 0, sizeof m->fn);
}

static int64_t argmax(const float *x, int64_t n) {
  int64_t best = 0;
  for (int64_t j = 1; j < n; j++)
    if (x[j] > x[best]) best = j; /* strict: the first maximum wins, as in Keras */
  return best;
}

/* Keras's AUC update for evenly spaced thresholds with epsilon ends: a prediction p
 * (clipped to [0, 1]) exceeds thresholds 0..b where b = max(ceil(p*199) - 1, 0), computed
 * in float32 as Keras does. Labels are y_true cast to bool (nonzero is positive). */
static void auc_update(lm_metric *m, const float *pred, const float *target, int64_t n) {
  double pos[LM_AUC_THRESHOLDS] = {0}, neg[LM_AUC_THRESHOLDS] = {0}, npos = 0, nneg = 0;
  for (int64_t i = 0; i < n; i++) {
    float p = pred[i];
    if (!(p > 0.0f)) p = 0.0f; /* also maps NaN to 0 */
    if (p > 1.0f) p = 1.0f;
    int b = (int)ceilf(p * (float)(LM_AUC_THRESHOLDS - 1)) - 1;
    if (b < 0) b = 0;
    if (target[i] != 0.0f) {
      pos[b] += 1;
      npos += 1;
    } else {
      neg[b] += 1;
      nneg += 1;
    }
  }
  double tp = 0, fp = 0;
  for (int t = LM_AUC_THRESHOLDS - 1; t >= 0; t--) {
    tp += pos[t];
    fp += neg[t];
    m->tp[t] += tp;
    m->fp[t] += fp;
    m->fn[t] += npos - tp;
    m->tn[t] += nneg - fp;
  }
}

void lm__metric_update(lm_metric *m, const float *pred, const float *target, int64_t rows,
                       int64_t cols) {
  if (rows <= 0 || cols <= 0) return;
  if (m->kind == LM_METRIC_AUC) {
    auc_update(m, pred, target, rows * cols);
    return;
  }
  /* Every other metric is Keras's MeanMetricWrapper: one value per sample (a mean over
   * cols where the metric is per element), averaged over all samples since reset. */
  for (int64_t r = 0; r < rows; r++) {
    const float *p = pred + r * cols, *y = target + r * cols;
    double v = 0;
    switch (m->kind) {
    case LM_METRIC_BINARY_ACCURACY:
      /* Keras compares y_true itself with the thresholded prediction, so a soft label
       * such as 0.7 never counts as a match. */
      for (int64_t j = 0; j < cols; j++) v += (p[j] > 0.5f ? 1.0f : 0.0f) == y[j];
      v /= (double)cols;
      break;
    case LM_METRIC_CATEGORICAL_ACCURACY:
      v = argmax(p, cols) == argmax(y, cols);
      break;
    case LM_METRIC_SPARSE_CATEGORICAL_ACCURACY:
      /* Compared as floats, like Keras (which casts the argmax to y_true's dtype): no
       * cast of an arbitrary float to int. */
      v = (double)argmax(p, cols) == (double)target[r];
      break;
    case LM_METRIC_MAE:
      for (int64_t j = 0; j < cols; j++) v += fabs((double)p[j] - y[j]);
      v /= (double)cols;
      break;
    case LM_METRIC_MSE:
      for (int64_t j = 0; j < cols; j++) v += ((double)p[j] - y[j]) * ((double)p[j] - y[j]);
      v /= (double)cols;
      break;
    case LM_METRIC_AUC: break;
    }
    m->total += v;
  }
  m->count += (double)rows;
}

static double div_no_nan(double a, double b) { return b != 0 ? a / b : 0; }

double lm__metric_result(const lm_metric *m) {
  if (m->kind != LM_METRIC_AUC) return div_no_nan(m->total, m->count);
  /* ROC curve, trapezoidal ("interpolation") summation over the thresholds, which run
   * from low to high so the false-positive rate decreases. */
  double auc = 0;
  for (int i = 0; i + 1 < LM_AUC_THRESHOLDS; i++) {
    double tpr0 = div_no_nan(m->tp[i], m->tp[i] + m->fn[i]);
    double tpr1 = div_no_nan(m->tp[i + 1], m->tp[i + 1] + m->fn[i + 1]);
    double fpr0 = div_no_nan(m->fp[i], m->fp[i] + m->tn[i]);
    double fpr1 = div_no_nan(m->fp[i + 1], m->fp[i + 1] + m->tn[i + 1]);
    auc += (fpr0 - fpr1) * (tpr0 + tpr1) / 2;
  }
  return auc;
}
