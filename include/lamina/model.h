/* lamina — models: functional graphs, Sequential, summary.
 *
 * Ownership: a model belongs to the session like its layers (see layers.h).
 * lm_model_free releases what compile and fit attached to it (optimizer, plans, buffers)
 * early; the graph itself goes with lm_session_clear(). */
#ifndef LAMINA_MODEL_H
#define LAMINA_MODEL_H

#include <lamina/layers.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct lm_model_opts {
  int lm_opts_; /* keeps LM_OPTS() valid with no options; never set */
  const char *name;
} lm_model_opts;

/* Model(inputs, outputs): finds the graph by walking back from the outputs. Never NULL
 * unless memory runs out: a model that could not be built carries its error (a
 * disconnected output, a duplicate layer name, a failed layer call), see lm_model_status. */
#define lm_model_new(...) lm_model_new_(__VA_ARGS__, )
#define lm_model_new_(inputs, outputs, ...)                                                   \
  lm_model_new_opts((inputs), (outputs), LM_OPTS(lm_model_opts, __VA_ARGS__))
LM_API lm_model *lm_model_new_opts(lm_tensors inputs, lm_tensors outputs, lm_model_opts opts);

/* Sequential(): layers are added in order; the first is an InputLayer (lm_input_layer). */
#define lm_sequential(...) lm_sequential_new(LM_OPTS(lm_model_opts, __VA_ARGS__))
LM_API lm_model *lm_sequential_new(lm_model_opts opts);
LM_API lm_status lm_sequential_add(lm_model *model, lm_layer *layer);

LM_API lm_status lm_model_status(const lm_model *model);
LM_API const char *lm_model_error(const lm_model *model);
LM_API const char *lm_model_name(const lm_model *model);
LM_API void lm_model_free(lm_model *model);

LM_API int lm_model_n_layers(const lm_model *model);
LM_API lm_layer *lm_model_get_layer(const lm_model *model, int index);
LM_API lm_layer *lm_model_layer_by_name(const lm_model *model, const char *name);
LM_API lm_tensors lm_model_inputs(const lm_model *model);
LM_API lm_tensors lm_model_outputs(const lm_model *model);
LM_API int64_t lm_model_count_params(const lm_model *model);
LM_API int64_t lm_model_count_trainable_params(const lm_model *model);

/* Keras's summary table: Layer (type), Output Shape, Param #, and Connected to for graph
 * models; totals of trainable and non-trainable parameters. */
LM_API void lm_summary(const lm_model *model, FILE *out);

#ifdef __cplusplus
}
#endif
#endif
