/* Optimizers: Keras 3's update rules. Coefficients are worked out in double once per
 * call, then narrowed to float so the per-element loops stay in float32 (as Keras's own
 * variables are) and vectorize at full width. */
#include "train/optimizer.h"

#include <math.h>
#include <strings.h>

static lm_optimizer *optimizer_new(lm_optimizer_kind kind, double lr, double lr_default) {
  /* !(x >= 0) also rejects NaN. */
  if (!(lr >= 0) || isinf(lr)) {
    lm__fail(NULL, LM_ERROR_VALUE, "learning_rate must be a positive number, got %g", lr);
    return NULL;
  }
  lm_optimizer *opt = lm__calloc(1, sizeof *opt);
  if (!opt) return NULL;
  opt->kind = kind;
  opt->learning_rate = lr > 0 ? lr : lr_default;
  return opt;
}

/* A field left 0 takes Keras's default; a negative or NaN one is an error. */
static int setting(double *dst, double value, double dflt, double max, const char *name) {
  if (!(value >= 0 && value <= max)) {
    lm__fail(NULL, LM_ERROR_VALUE, "%s must be in [0, %g], got %g", name, max, value);
    return -1;
  }
  *dst = value > 0 ? value : dflt;
  return 0;
}

lm_optimizer *lm_sgd_new(lm_sgd_opts o) {
  lm_optimizer *opt = optimizer_new(LM_OPT_SGD, o.learning_rate, 0.01);
  if (opt && setting(&opt->momentum, o.momentum, 0.0, 1.0, "SGD momentum") != 0) {
    free(opt);
    return NULL;
  }
  if (opt) opt->nesterov = o.nesterov;
  return opt;
}

lm_optimizer *lm_rmsprop_new(lm_rmsprop_opts o) {
  lm_optimizer *opt = optimizer_new(LM_OPT_RMSPROP, o.learning_rate, 1e-3);
  if (opt && (setting(&opt->rho, o.rho, 0.9, 1.0, "RMSprop rho") != 0 ||
              setting(&opt->epsilon, o.epsilon, 1e-7, INFINITY, "RMSprop epsilon") != 0)) {
    free(opt);
    return NULL;
  }
  return opt;
}

static lm_optimizer *adam_new(lm_optimizer_kind kind, lm_adam_opts o, double wd_default) {
  lm_optimizer *opt = optimizer_new(kind, o.learning_rate, 1e-3);
  if (opt && (setting(&opt->beta_1, o.beta_1, 0.9, 1.0, "beta_1") != 0 ||
              setting(&opt->beta_2, o.beta_2, 0.999, 1.0, "beta_2") != 0 ||
              setting(&opt->epsilon, o.epsilon, 1e-7, INFINITY, "epsilon") != 0 ||
              setting(&opt->weight_decay, o.weight_decay, wd_default, INFINITY,
                      "weight_decay") != 0)) {
    free(opt);
    return NULL;
  }
  return opt;
}

/* Keras 3's Adam also takes weight_decay (decoupled, as AdamW); it only defaults to 0. */
lm_optimizer *lm_adam_new(lm_adam_opts opts) { return adam_new(LM_OPT_ADAM, opts, 0.0); }
lm_optimizer *lm_adamw_new(lm_adam_opts opts) { return adam_new(LM_OPT_ADAMW, opts, 0.004); }

lm_optimizer *lm_adagrad_new(lm_adagrad_opts o) {
  lm_optimizer *opt = optimizer_new(LM_OPT_ADAGRAD, o.learning_rate, 1e-3);
  if (opt && (setting(&opt->initial_accumulator_value, o.initial_accumulator_value, 0.1,
                      INFINITY, "Adagrad initial_accumulator_value") != 0 ||
              setting(&opt->epsilon, o.epsilon, 1e-7, INFINITY, "Adagrad epsilon") != 0)) {
    free(opt);
    return NULL;
  }
  return opt;
}

lm_optimizer *lm_optimizer_from_name(const char *name) {
  /* Keras accepts both the short names and the class names, in any case. */
  if (name && !strcasecmp(name, "sgd")) return lm_sgd_new((lm_sgd_opts){0});
  if (name && !strcasecmp(name, "rmsprop")) return lm_rmsprop_new((lm_rmsprop_opts){0});
  if (name && !strcasecmp(name, "adam")) return lm_adam_new((lm_adam_opts){0});
  if (name && !strcasecmp(name, "adamw")) return lm_adamw_new((lm_adam_opts){0});
  if (name && !strcasecmp(name, "adagrad")) return lm_adagrad_new((lm_adagrad_opts){0});
  lm__fail(NULL, LM_ERROR_VALUE,
           "Unknown optimizer '%s'. Known optimizers: sgd, rmsprop, adam, adamw, adagrad",
           name ? name : "(null)");
  return NULL;
}

void lm_optimizer_free(lm_optimizer *opt) { free(opt); }

const char *lm__optimizer_name(const lm_optimizer *opt) {
  switch (opt->kind) {
  case LM_OPT_SGD: return "SGD";
  case LM_OPT_RMSPROP: return "RMSprop";
  case LM_OPT_ADAM: return "Adam";
  case LM_OPT_ADAMW: return "AdamW";
  case LM_OPT_ADAGRAD: return "Adagrad";
  }
  return "unknown";
}

int lm__optimizer_n_slots(const lm_optimizer *opt) {
  switch (opt->kind) {
  case LM_OPT_SGD: return opt->momentum != 0 ? 1 : 0;
  case LM_OPT_RMSPROP: return 1;
  case LM_OPT_ADAM:
  case LM_OPT_ADAMW: return 2;
  case LM_OPT_ADAGRAD: return 1;
  }
  return 0;
}

void lm__optimizer_init_slots(const lm_optimizer *opt, float **slots, int64_t n) {
  float v = opt->kind == LM_OPT_ADAGRAD ? (float)opt->initial_accumulator_value : 0.0f;
  for (int s = 0; s < lm__optimizer_n_slots(opt); s++)
    for (int64_t i = 0; i < n; i++) slots[s][i] = v;
}

LM_VECTORIZE void lm__optimizer_update(const lm_optimizer *opt, float *w, const float *g, float **slots,
                          int64_t n) {
  const float lr = (float)opt->learning_rate;
  /* Keras applies decoupled weight decay before the gradient step: w -= w * wd * lr. */
  if (opt->weight_decay > 0) {
    const float keep = (float)(1.0 - opt->weight_decay * opt->learning_rate);
    for (int64_t i = 0; i < n; i++) w[i] *= keep;
  }
  switch (opt->kind) {
  case LM_OPT_SGD: {
    if (opt->momentum == 0) {
      for (int64_t i = 0; i < n; i++) w[i] -= lr * g[i];
      break;
    }
    float *m = slots[0];
    const float mu = (float)opt->momentum;
    if (opt->nesterov) {
      for (int64_t i = 0; i < n; i++) {
        m[i] = mu * m[i] - lr * g[i];
        w[i] += mu * m[i] - lr * g[i];
      }
    } else {
      for (int64_t i = 0; i < n; i++) {
        m[i] = mu * m[i] - lr * g[i];
        w[i] += m[i];
      }
    }
    break;
  }
  case LM_OPT_RMSPROP: {
    float *v = slots[0];
    const float rho = (float)opt->rho, one_minus_rho = (float)(1.0 - opt->rho);
    const float eps = (float)opt->epsilon;
    for (int64_t i = 0; i < n; i++) {
      v[i] = rho * v[i] + one_minus_rho * g[i] * g[i];
      w[i] -= lr * g[i] / sqrtf(v[i] + eps);
    }
    break;
  }
  case LM_OPT_ADAM:
  case LM_OPT_ADAMW: {
    float *m = slots[0], *v = slots[1];
    double t = (double)(opt->iterations + 1);
    const float alpha = (float)(opt->learning_rate * sqrt(1.0 - pow(opt->beta_2, t)) /
                                (1.0 - pow(opt->beta_1, t)));
    const float c1 = (float)(1.0 - opt->beta_1), c2 = (float)(1.0 - opt->beta_2);
    const float eps = (float)opt->epsilon;
    for (int64_t i = 0; i < n; i++) {
      m[i] += (g[i] - m[i]) * c1;
      v[i] += (g[i] * g[i] - v[i]) * c2;
      w[i] -= alpha * m[i] / (sqrtf(v[i]) + eps);
    }
    break;
  }
  case LM_OPT_ADAGRAD: {
    float *acc = slots[0];
    const float eps = (float)opt->epsilon;
    for (int64_t i = 0; i < n; i++) {
      acc[i] += g[i] * g[i];
      w[i] -= lr * g[i] / sqrtf(acc[i] + eps);
    }
    break;
  }
  }
}
