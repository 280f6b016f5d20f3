/* Internal: Keras's model configuration as JSON, both ways.
 *
 * Writing: Keras 3's model.to_json(), byte for byte what Python's json.dumps writes for
 * Keras's dicts: keys in Keras's order, ", " and ": " separators, floats as Python's repr.
 * Each layer class writes its own get_config() fields through its vtable's get_config.
 *
 * Reading: Keras's model_from_json for Keras 3 and Keras 2 (tf.keras, legacy .h5) layouts.
 * Each layer class reads its own fields with a from_config function (the table in
 * model_config.c maps class names to them) through the lm__cfg readers below, which
 * check types and ranges, and refuse fields the class does not know or options lamina does
 * not support, naming the layer, the field and where it is in the text. */
#ifndef LAMINA_IO_MODEL_CONFIG_H
#define LAMINA_IO_MODEL_CONFIG_H

#include "io/json.h"
#include "model/internal.h"
#include <limits.h>

/* Keras 3's model.to_json() for a Functional or Sequential model: *out is malloc'd (the
 * caller frees it). LM_ERROR_STATE for a model that carries an error. */
LM_INTERNAL lm_status lm__model_config_json(const lm_model *model, char **out);

/* ---- The JSON writer ---- */
typedef struct lm_json {
  char *buf;
  size_t len, cap;
  bool failed;    /* out of memory: the text is incomplete */
  bool after_key; /* a key was just written: its value needs no comma */
  int depth;
  bool first[256]; /* per open container: nothing written in it yet */
} lm_json;

/* Values. Inside an object, call lm__json_key first. */
/* Appends n bytes as they are (no separators, no escaping): the buffer also serves plain
 * text writers such as TensorBoard's projector config. */
LM_INTERNAL void lm__json_raw(lm_json *j, const char *s, size_t n);
LM_INTERNAL void lm__json_begin_object(lm_json *j);
LM_INTERNAL void lm__json_end_object(lm_json *j);
LM_INTERNAL void lm__json_begin_array(lm_json *j);
LM_INTERNAL void lm__json_end_array(lm_json *j);
LM_INTERNAL void lm__json_key(lm_json *j, const char *key);
LM_INTERNAL void lm__json_string(lm_json *j, const char *s);
LM_INTERNAL void lm__json_int(lm_json *j, int64_t v);
LM_INTERNAL void lm__json_double(lm_json *j, double v); /* Python repr: 0.3, 1.0, 1e-05; NaN */
LM_INTERNAL void lm__json_bool(lm_json *j, bool v);
LM_INTERNAL void lm__json_null(lm_json *j);
/* Python's repr of a float into buf (at least 32 bytes): the shortest text that reads back
 * the same, "1.0" for integers, exponent form below 1e-4 and from 1e16. */
LM_INTERNAL char *lm__py_float_repr(double v, char *buf, size_t len);

/* Keys with a value, for get_config hooks. */
LM_INTERNAL void lm__json_kv_string(lm_json *j, const char *key, const char *s);
LM_INTERNAL void lm__json_kv_int(lm_json *j, const char *key, int64_t v);
LM_INTERNAL void lm__json_kv_double(lm_json *j, const char *key, double v);
LM_INTERNAL void lm__json_kv_bool(lm_json *j, const char *key, bool v);
LM_INTERNAL void lm__json_kv_null(lm_json *j, const char *key);
/* [a, b, ...] of n ints, as they are (Reshape's target_shape keeps its -1). */
LM_INTERNAL void lm__json_kv_ints(lm_json *j, const char *key, const int64_t *v, int n);
/* Keras's serialized initializer, {"module": "keras.initializers", "class_name":
 * "GlorotUniform", "config": {...}, "registered_name": null}; default_kind stands for
 * LM_INIT_DEFAULT. */
LM_INTERNAL void lm__json_kv_initializer(lm_json *j, const char *key, lm_initializer init, lm_init_kind default_kind);
/* "activation": "relu" */
LM_INTERNAL void lm__json_kv_activation(lm_json *j, const char *key, lm_activation a);
/* A whole layer as Keras's serialize_keras_object writes it: {"module", "class_name",
 * "config", "registered_name", "build_config"}, with build_shape as the build input shape
 * (NULL: no build_config) and the given trainable flag (a wrapper's, which Keras passes on
 * to the layers it wraps). For Bidirectional's inner layers. */
LM_INTERNAL void lm__json_layer_object(lm_json *j, const lm_layer *layer, const lm_shape *build_shape, bool trainable);

/* ---- Reading a configuration ---- */

/* What one configuration may build: it is untrusted input. Models nest at most
 * LM__CFG_MAX_NESTING deep (a model inside a model inside ...), which keeps what lamina
 * writes back within the JSON parser's depth limit. */
#define LM__CFG_MAX_NESTING 16
typedef struct lm__config_limits {
  int64_t max_weights; /* float elements of all weights together; 0: 2^31 (8 GiB) */
  int max_layers;      /* layers in one model (nested models count apart); 0: 10000 */
  int max_nodes;       /* layer calls in one model; 0: 20000 */
} lm__config_limits;

/* Keras's model_from_json on a parsed document. root is the object model.to_json() writes
 * ({"class_name": "Functional" | "Sequential" | "Model", "config": {...}, ...}; Keras 3 and
 * Keras 2 layouts), or the bare "config" object of a Functional or Sequential model. Returns
 * the model, or one that carries the error (lm_model_status / lm_model_error, also
 * lm_last_error) naming the layer and field at fault and the line and column in the text;
 * NULL only when memory runs out. Layer and model names are kept exactly, and automatic
 * names made afterwards skip them. Like Keras's model_from_json it builds an uncompiled
 * model: "compile_config" is not read. The layers of a model that failed stay in the
 * session until lm_session_clear(). */
LM_INTERNAL lm_model *lm__model_from_config(const lm__json_value *root);
LM_INTERNAL lm_model *lm__model_from_config_limits(const lm__json_value *root, const lm__config_limits *limits);

/* Largest integer a size field (units, filters, kernel_size, input_dim ...) may hold. */
#define LM__CFG_MAX_DIM (1 << 24)
/* "Required": the default of a reader that has none. */
#define LM__CFG_REQUIRED INT_MIN
#define LM__CFG_MAX_KEYS 128

typedef struct lm__loader lm__loader;

/* A layer's "config" object while its class's from_config reads it. Every reader marks
 * its key as read; the loader refuses keys that nobody read. Readers do nothing once an
 * error is recorded, so a from_config reads everything, then checks lm__cfg_ok. */
typedef struct lm__cfg {
  const lm__json_value *config;
  const char *cls;  /* class name */
  const char *name; /* the layer's name, read by the loader */
  const char *prefix; /* put before field names in messages ("kernel_initializer."), or NULL */
  lm__loader *loader;
  lm_error *err;
  bool used[LM__CFG_MAX_KEYS];
} lm__cfg;

typedef lm_layer *(*lm__from_config_fn)(lm__cfg *c);

LM_INTERNAL bool lm__cfg_ok(const lm__cfg *c);
/* Records "layer "name" (Class): field "key": ... (line L, column C)"; at may be NULL. */
LM_INTERNAL bool lm__cfg_fail(lm__cfg *c, const char *key, const lm__json_value *at, const char *fmt, ...) LM_PRINTF(4, 5);
/* The value of key (marked read), or NULL when absent. */
LM_INTERNAL const lm__json_value *lm__cfg_take(lm__cfg *c, const char *key);
/* Typed fields. Absent (or null, for the readers with a default) gives def; def ==
 * LM__CFG_REQUIRED (or NaN for floats) makes the field required. */
LM_INTERNAL bool lm__cfg_int(lm__cfg *c, const char *key, int *out, int def, int min, int max);
LM_INTERNAL bool lm__cfg_float(lm__cfg *c, const char *key, double *out, double def, double min, double max);
LM_INTERNAL bool lm__cfg_bool(lm__cfg *c, const char *key, bool *out, bool def);
/* One of the NULL-terminated choices: *out is its index. */
LM_INTERNAL bool lm__cfg_choice(lm__cfg *c, const char *key, int *out, int def, const char *const *choices);
/* Keras's int-or-tuple: an int, or a list of n ints, each in [min, max]; an int fills all n. */
LM_INTERNAL bool lm__cfg_ints(lm__cfg *c, const char *key, int *out, int n, int def, int min, int max);
/* An activation by Keras's name; "hard_sigmoid" and others lamina lacks are refused. */
LM_INTERNAL bool lm__cfg_activation(lm__cfg *c, const char *key, lm_activation *out, lm_activation def);
/* A serialized initializer ({"class_name": "GlorotUniform", "config": {...}}, with or
 * without module, or a name such as "glorot_uniform"); absent or null gives LM_INIT_DEFAULT. */
LM_INTERNAL bool lm__cfg_initializer(lm__cfg *c, const char *key, lm_initializer *out);
/* Fields lamina has no use for unless they hold their neutral value: each key must be
 * absent or null (regularizers, constraints, ...); the list ends with NULL. */
LM_INTERNAL bool lm__cfg_nulls(lm__cfg *c, ...) __attribute__((sentinel));
/* Fields that must be absent, null, or hold exactly this value (data_format "channels_last",
 * stateful false, dropout 0.0 ...), with the reason lamina needs it. */
LM_INTERNAL bool lm__cfg_fixed_string(lm__cfg *c, const char *key, const char *want, const char *why);
LM_INTERNAL bool lm__cfg_fixed_bool(lm__cfg *c, const char *key, bool want, const char *why);
LM_INTERNAL bool lm__cfg_fixed_number(lm__cfg *c, const char *key, double want, const char *why);
/* A batch shape as Keras writes it ([null, 28, 28]): the batch dimension null, the others
 * null or positive, at most 2^40 elements per sample. */
LM_INTERNAL bool lm__cfg_batch_shape(lm__cfg *c, const lm__json_value *v, lm_shape *out);
/* A nested layer entry ({"class_name": ..., "config": {...}}): Bidirectional's layers. */
LM_INTERNAL lm_layer *lm__cfg_layer(lm__cfg *c, const char *key, const lm__json_value *entry);

/* The from_config of each layer class (src/layers/). */
LM_INTERNAL lm_layer *lm__input_layer_from_config(lm__cfg *c);
LM_INTERNAL lm_layer *lm__dense_from_config(lm__cfg *c);
LM_INTERNAL lm_layer *lm__activation_from_config(lm__cfg *c);
LM_INTERNAL lm_layer *lm__dropout_from_config(lm__cfg *c);
LM_INTERNAL lm_layer *lm__flatten_from_config(lm__cfg *c);
LM_INTERNAL lm_layer *lm__reshape_from_config(lm__cfg *c);
LM_INTERNAL lm_layer *lm__merge_from_config(lm__cfg *c); /* Concatenate, Add, Subtract, ... */
LM_INTERNAL lm_layer *lm__conv_from_config(lm__cfg *c);  /* Conv1D/2D, DepthwiseConv2D, SeparableConv1D/2D */
LM_INTERNAL lm_layer *lm__pool_from_config(lm__cfg *c);  /* Max/AveragePooling1D/2D and the global ones */
LM_INTERNAL lm_layer *lm__norm_from_config(lm__cfg *c);  /* BatchNormalization, LayerNormalization */
LM_INTERNAL lm_layer *lm__embedding_from_config(lm__cfg *c);
LM_INTERNAL lm_layer *lm__rnn_from_config(lm__cfg *c); /* LSTM, GRU, SimpleRNN */
LM_INTERNAL lm_layer *lm__bidirectional_from_config(lm__cfg *c);

#endif
