/* The logs of one moment, and History: every logged key, one value per epoch. */
#include "train/train.h"
#include <math.h>

void lm__logs_set(lm_logs *logs, const char *key, double value) {
  for (int i = 0; i < logs->n; i++) {
    if (!strcmp(logs->keys[i], key)) {
      logs->values[i] = value;
      return;
    }
  }
  if (logs->n == LM_MAX_LOG_KEYS) return;
  snprintf(logs->keys[logs->n], sizeof logs->keys[0], "%s", key);
  logs->values[logs->n++] = value;
}

int lm_logs_count(const lm_logs *logs) { return logs ? logs->n : 0; }
const char *lm_logs_key(const lm_logs *logs, int i) { return logs && i >= 0 && i < logs->n ? logs->keys[i] : NULL; }
double lm_logs_value(const lm_logs *logs, int i) { return logs && i >= 0 && i < logs->n ? logs->values[i] : NAN; }

bool lm_logs_get(const lm_logs *logs, const char *key, double *value) {
  for (int i = 0; logs && key && i < logs->n; i++) {
    if (!strcmp(logs->keys[i], key)) {
      if (value) *value = logs->values[i];
      return true;
    }
  }
  return false;
}

lm_history *lm__history_new(void) { return lm__calloc(1, sizeof(lm_history)); }

int lm__history_append(lm_history *h, const lm_logs *logs) {
  if (h->n_epochs == h->cap_epochs) {
    int cap = h->cap_epochs ? h->cap_epochs * 2 : 16;
    for (int k = 0; k < h->n_keys; k++) {
      double *v = lm__realloc(h->values[k], (size_t)cap * sizeof *v);
      if (!v) return -1;
      h->values[k] = v;
    }
    h->cap_epochs = cap;
  }
  for (int i = 0; i < logs->n; i++) {
    int k = 0;
    while (k < h->n_keys && strcmp(h->keys[k], logs->keys[i])) k++;
    if (k == h->n_keys) {
      char(*keys)[96] = lm__realloc(h->keys, (size_t)(k + 1) * sizeof *keys);
      if (!keys) return -1;
      h->keys = keys;
      double **values = lm__realloc(h->values, (size_t)(k + 1) * sizeof *values);
      if (!values) return -1;
      h->values = values;
      h->values[k] = lm__calloc((size_t)h->cap_epochs, sizeof(double));
      if (!h->values[k]) return -1;
      for (int e = 0; e < h->n_epochs; e++) h->values[k][e] = NAN;
      snprintf(h->keys[k], sizeof h->keys[0], "%s", logs->keys[i]);
      h->n_keys++;
    }
  }
  for (int k = 0; k < h->n_keys; k++) {
    double v = NAN;
    lm_logs_get(logs, h->keys[k], &v);
    h->values[k][h->n_epochs] = v;
  }
  h->n_epochs++;
  return 0;
}

int lm_history_n_keys(const lm_history *h) { return h ? h->n_keys : 0; }
const char *lm_history_key(const lm_history *h, int i) { return h && i >= 0 && i < h->n_keys ? h->keys[i] : NULL; }
int lm_history_n_epochs(const lm_history *h) { return h ? h->n_epochs : 0; }

const double *lm_history_get(const lm_history *h, const char *key) {
  for (int k = 0; h && key && k < h->n_keys; k++)
    if (!strcmp(h->keys[k], key)) return h->values[k];
  return NULL;
}

double lm_history_last(const lm_history *h, const char *key) {
  const double *v = lm_history_get(h, key);
  return v && h->n_epochs ? v[h->n_epochs - 1] : NAN;
}

void lm_history_free(lm_history *h) {
  if (!h) return;
  for (int k = 0; k < h->n_keys; k++) free(h->values[k]);
  free(h->values);
  free(h->keys);
  free(h);
}
