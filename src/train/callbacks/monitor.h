/* Internal: what the built-in callbacks share — Keras's MonitorCallback (mode, min_delta,
 * "is this an improvement"), Python's float formatting, warnings, and their allocation. */
#ifndef LAMINA_TRAIN_CALLBACKS_MONITOR_H
#define LAMINA_TRAIN_CALLBACKS_MONITOR_H

#include "train/train.h"
#include <float.h>
#include <math.h>

typedef struct lm__monitor {
  char key[96];     /* the monitored log key */
  int direction;    /* +1: higher is better, -1: lower is better */
  double min_delta; /* signed as Keras signs it: negative when lower is better */
} lm__monitor;

/* Resolves mode ("auto", "min", "max"; NULL is "auto") for key. An unknown mode falls back to
 * "auto" with Keras's warning, naming class_name. */
LM_INTERNAL void lm__monitor_init(lm__monitor *m, const char *class_name, const char *key, const char *mode,
                                  double min_delta);
/* Keras's _is_improvement(current, reference), compared in float32 as Keras's ops do. */
LM_INTERNAL bool lm__monitor_improves(const lm__monitor *m, double current, double reference);

/* A double as float32, as the cast behaves on IEEE hardware, without casting an
 * out-of-range value (undefined in C). */
static inline float lm__to_f32(double x) { return x > FLT_MAX ? INFINITY : x < -FLT_MAX ? -INFINITY : (float)x; }

/* Python's repr() of a float ("0.1", "1e-05", "nan"): the shortest digits that read back
 * as v. Returns buf. */
LM_INTERNAL char *lm__py_float(double v, char *buf, size_t len);

/* Prints "UserWarning: <message>" to stderr unless it is the message last printed through
 * the same last buffer (Python shows a repeated warning once). */
LM_INTERNAL void lm__warn_once(char *last, size_t last_len, const char *fmt, ...) LM_PRINTF(3, 4);

/* "loss,val_loss,...": the logs' keys joined by commas, as Keras lists them. */
LM_INTERNAL char *lm__logs_keys(const lm_logs *logs, char *buf, size_t len);

/* The learning rate as Keras holds it: a float32. */
LM_INTERNAL double lm__keras_learning_rate(const lm_model *model);

/* The logs a hook received, writable: fit hands callbacks its own logs, and Keras's
 * callbacks add keys ("learning_rate") to them. */
static inline lm_logs *lm__logs_mut(const lm_logs *logs) { return (lm_logs *)(uintptr_t)logs; }

/* A zeroed callback whose state of size bytes (starting with the lm_callback) is one block
 * that user points to; free_hook releases what it holds and then the block (NULL: free()). */
LM_INTERNAL lm_callback *lm__callback_alloc(size_t size, void (*free_hook)(lm_callback *cb));

#endif
