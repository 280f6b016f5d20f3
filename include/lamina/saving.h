/* lamina — saving and loading models: the architecture as Keras's JSON.
 *
 * lm_model_to_json writes what Keras 3's model.to_json() writes for the same model, byte for
 * byte; lm_model_from_json reads that, and the Keras 2 (tf.keras) layout of legacy .h5
 * files, as keras.models.model_from_json does. The text is untrusted input: whatever it
 * holds, loading returns a model that carries an error rather than crashing.
 *
 * Ownership: the JSON text belongs to the caller (free()); models belong to the session
 * (see layers.h), loaded ones too. */
#ifndef LAMINA_SAVING_H
#define LAMINA_SAVING_H

#include <lamina/model.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Keras 3's model.to_json() of a Functional or Sequential model (nested models, shared
 * layers and every layer class included), as a malloc'd NUL-terminated string; NULL on
 * failure (a NULL model, one that carries an error, out of memory) with lm_last_error(). */
LM_API char *lm_model_to_json(const lm_model *model);

/* keras.models.model_from_json: a new model with the layers, names, options and connections
 * the JSON describes, freshly initialized weights, not compiled. Reads Keras 3's to_json
 * output (Functional, Sequential, nested models, shared layers, multi-input and -output,
 * layers with several outputs) and Keras 2's layout (inbound_nodes as [["dense", 0, 0, {}]],
 * batch_input_shape). Layer names are kept exactly, and automatic names given afterwards do
 * not repeat them. An unknown class, an option lamina does not support (a regularizer, "causal"
 * padding, activation "hard_sigmoid", ...), a malformed or hostile text gives a model whose
 * lm_model_status is not LM_OK and whose lm_model_error names the layer, the field and the
 * line and column; NULL only if memory runs out. */
LM_API lm_model *lm_model_from_json(const char *json);

/* ---- Files: weights and whole models, as Keras 3 writes and reads them ----
 *
 * Formats, by the path's ending:
 *   ".weights.h5"  Keras 3's model.save_weights(): an HDF5 file with groups
 *                  layers/<class>/vars/0..n (named after each layer's class, as Keras names
 *                  them: dense, dense_1, lstm/cell, bidirectional/forward_layer/cell, a
 *                  nested model's layers under its own), and, once the model is compiled,
 *                  the optimizer's state in optimizer/vars.
 *   ".h5"          the legacy HDF5 format (Keras 2, and Keras 3's h5 option): weights under
 *                  model_weights/<layer name>/ with layer_names / weight_names attributes
 *                  (lm_load_weights also reads Keras 2's save_weights files, where they sit
 *                  at the root); lm_save_model adds the model_config and training_config
 *                  attributes and the optimizer's weights.
 *   ".keras"       Keras 3's model.save(): a zip of metadata.json, config.json (the model's
 *                  configuration and its compile settings) and model.weights.h5 (weights and
 *                  optimizer state, as ".weights.h5").
 *
 * The optimizer's state travels with the weights of a compiled model: its iteration count,
 * learning rate and slots (momentum, velocity, accumulators) in Keras's variable order, so
 * that training resumed from a loaded model continues as if it had not stopped.
 *
 * Writes go to a temporary file in the same directory, flushed to disk and renamed over
 * path, so a failed save leaves the previous file as it was. Reads treat files as
 * untrusted: a truncated or corrupt file, a weight whose shape differs from the model's
 * (the message names the layer, the weight and both shapes), or layers that do not match
 * give an error naming the file and the problem, never a crash, and leave the model's
 * weights untouched. Errors: the returned status, with lm_last_error() saying why. */

/* Writes the model's weights (and its optimizer's state, once compiled) to a ".weights.h5"
 * (Keras 3) or ".h5" (legacy) file. */
LM_API lm_status lm_save_weights(const lm_model *model, const char *path);
/* Reads weights into a model of the same architecture from a ".weights.h5", ".h5" or
 * ".keras" file; the optimizer's state too when the model is compiled with an optimizer
 * whose variables match the file's (otherwise it is left as it is, as Keras does). Legacy
 * ".h5" weights are matched by position among the layers that have weights, as Keras
 * does. */
LM_API lm_status lm_load_weights(lm_model *model, const char *path);
/* Writes the whole model: architecture, weights, and, when compiled, its compile settings
 * and optimizer state; ".keras" or ".h5". */
LM_API lm_status lm_save_model(const lm_model *model, const char *path);
/* Reads a model written by lm_save_model or by Keras (".keras" or ".h5"), compiled as it
 * was saved, with its optimizer's state. NULL on failure, with lm_last_error() saying why
 * (the layers it made stay in the session until lm_session_clear()). */
LM_API lm_model *lm_load_model(const char *path);

#ifdef __cplusplus
}
#endif
#endif
