/* What the built-in callbacks share: Keras's MonitorCallback logic, Python's float repr,
 * warnings, and allocation. */
#include "train/callbacks/monitor.h"
#include <math.h>

/* Keras 3 asks the compiled metric for its direction; for every metric lamina logs that
 * comes down to the name. */
static int auto_direction(const char *key) {
  const char *name = strncmp(key, "val_", 4) == 0 ? key + 4 : key;
  size_t n = strlen(name);
  if (!strcmp(name, "loss") || (n >= 5 && !strcmp(name + n - 5, "_loss"))) return -1;
  return strstr(name, "acc") || strstr(name, "auc") ? 1 : -1;
}

void lm__monitor_init(lm__monitor *m, const char *class_name, const char *key, const char *mode, double min_delta) {
  snprintf(m->key, sizeof m->key, "%s", key);
  if (mode && strcmp(mode, "auto") && strcmp(mode, "min") && strcmp(mode, "max")) {
    fprintf(stderr, "UserWarning: %s mode '%s' is unknown, fallback to auto mode.\n", class_name, mode);
    mode = NULL;
  }
  m->direction = mode && !strcmp(mode, "min") ? -1 : mode && !strcmp(mode, "max") ? 1 : auto_direction(key);
  m->min_delta = m->direction < 0 ? -fabs(min_delta) : fabs(min_delta);
}

bool lm__monitor_improves(const lm__monitor *m, double current, double reference) {
  float a = lm__to_f32(current - m->min_delta), b = lm__to_f32(reference);
  return m->direction > 0 ? a > b : a < b;
}

char *lm__py_float(double v, char *buf, size_t len) {
  if (isnan(v)) return snprintf(buf, len, "nan"), buf;
  if (isinf(v)) return snprintf(buf, len, "%sinf", v < 0 ? "-" : ""), buf;
  if (v == 0) return snprintf(buf, len, "%s0.0", signbit(v) ? "-" : ""), buf;
  /* The fewest significant digits that read back as v. */
  char sci[40];
  for (int prec = 0; prec < 17; prec++) {
    snprintf(sci, sizeof sci, "%.*e", prec, v);
    if (strtod(sci, NULL) == v) break;
  }
  char digits[24];
  int nd = 0;
  const char *p = sci + (sci[0] == '-');
  for (; *p && *p != 'e'; p++)
    if (*p != '.') digits[nd++] = *p;
  digits[nd] = 0;
  while (nd > 1 && digits[nd - 1] == '0') digits[--nd] = 0;
  int decpt = atoi(p + 1) + 1; /* v = 0.d1d2... x 10^decpt */
  /* Python's float_repr_style 'short': exponent form outside 1e-4 <= |v| < 1e16. */
  size_t at = (size_t)snprintf(buf, len, "%s", v < 0 ? "-" : "");
#define PUT(...) (at += at < len ? (size_t)snprintf(buf + at, len - at, __VA_ARGS__) : 0)
  if (decpt <= -4 || decpt > 16) {
    int e = decpt - 1;
    PUT("%c%s%se%c%02d", digits[0], nd > 1 ? "." : "", digits + 1, e < 0 ? '-' : '+', e < 0 ? -e : e);
  } else if (decpt <= 0) {
    PUT("0.");
    for (int i = 0; i < -decpt; i++) PUT("0");
    PUT("%s", digits);
  } else if (decpt >= nd) {
    PUT("%s", digits);
    for (int i = nd; i < decpt; i++) PUT("0");
    PUT(".0");
  } else {
    PUT("%.*s.%s", decpt, digits, digits + decpt);
  }
#undef PUT
  return buf;
}

void lm__warn_once(char *last, size_t last_len, const char *fmt, ...) {
  char msg[2048];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  if (!strncmp(last, msg, last_len - 1)) return;
  snprintf(last, last_len, "%s", msg);
  fprintf(stderr, "UserWarning: %s\n", msg);
}

char *lm__logs_keys(const lm_logs *logs, char *buf, size_t len) {
  size_t at = 0;
  buf[0] = 0;
  for (int i = 0; logs && i < logs->n && at < len; i++)
    at += (size_t)snprintf(buf + at, len - at, "%s%s", i ? "," : "", logs->keys[i]);
  return buf;
}

double lm__keras_learning_rate(const lm_model *model) { return (double)lm__to_f32(lm_model_learning_rate(model)); }

static void plain_free(lm_callback *cb) { free(cb); }

lm_callback *lm__callback_alloc(size_t size, void (*free_hook)(lm_callback *cb)) {
  lm_callback *cb = lm__calloc(1, size);
  if (!cb) return NULL;
  cb->user = cb;
  cb->free = free_hook ? free_hook : plain_free;
  return cb;
}
