/* lamina — ready-made architectures (keras.applications), without pretrained weights.
 *
 * Ownership: the model belongs to the session, like any model (see model.h). */
#ifndef LAMINA_APPLICATIONS_H
#define LAMINA_APPLICATIONS_H

#include <lamina/model.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum lm_pooling { LM_POOLING_NONE = 0, LM_POOLING_AVG, LM_POOLING_MAX } lm_pooling;

typedef struct lm_application_opts {
  int lm_opts_;       /* keeps LM_OPTS() valid with no options; never set */
  bool include_top;   /* Keras defaults to true with ImageNet weights; lamina has no weights to
                       * download, so the classifier head is opt-in (weights=None) */
  lm_shape input_shape; /* without the batch axis; rank 0 means (None, None, 3) */
  lm_pooling pooling;   /* without the top: none, global average or global max */
  int classes;          /* with the top: 1000 */
  const char *name;     /* "xception" */
} lm_application_opts;

/* Xception (Chollet, 2017) exactly as keras.applications.Xception builds it: 20,861,480
 * parameters without the top. Inputs must be at least 71x71. */
#define lm_xception(...) lm_xception_new(LM_OPTS(lm_application_opts, __VA_ARGS__))
LM_API lm_model *lm_xception_new(lm_application_opts opts);

#ifdef __cplusplus
}
#endif
#endif
