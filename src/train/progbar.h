/* Keras's progress bar (keras.utils.Progbar) for fit/evaluate/predict. */
#ifndef LAMINA_PROGBAR_H
#define LAMINA_PROGBAR_H

#include "core/core.h"

typedef struct lm_progbar {
  FILE *out;
  int64_t target;  /* total steps, or -1 if unknown */
  int verbose;     /* 1: bar, rewritten in place on a terminal; 2: one line at the end */
  int width;       /* 30 */
  int interactive; /* out is a terminal: use \r updates; otherwise print only at the end */
  double start, last_update;
  int64_t seen_so_far;
  int prev_len;
} lm_progbar;

LM_INTERNAL void lm__progbar_init(lm_progbar *p, FILE *out, int64_t target, int verbose);
/* Shows the bar at `current` steps with the given values (already averaged by the
 * caller), in order: "1875/1875 [==============================] - 3s 1ms/step - loss: 0.2973
 * - accuracy: 0.9138". finalize prints the closing line with a newline. */
LM_INTERNAL void lm__progbar_update(lm_progbar *p, int64_t current, int n_values,
                                    const char *const *keys, const double *values, int finalize);
LM_INTERNAL double lm__now(void); /* monotonic seconds */

#endif
