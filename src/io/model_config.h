/* Internal: Keras 3's model configuration as JSON (model.to_json()), and the small JSON
 * writer that layers use for their own get_config() fields.
 *
 * Output is byte for byte what Python's json.dumps writes for Keras's dicts: keys in
 * Keras's order, ", " and ": " separators, floats as Python's repr. */
#ifndef LAMINA_IO_MODEL_CONFIG_H
#define LAMINA_IO_MODEL_CONFIG_H

#include "model/internal.h"

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
  bool first[64]; /* per open container: nothing written in it yet */
} lm_json;

/* Values. Inside an object, call lm__json_key first. */
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

#endif
