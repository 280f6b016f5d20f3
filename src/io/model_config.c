/* Keras 3's model.to_json(): Functional and Sequential configurations with Keras 3's
 * inbound_nodes ({"args": [keras tensors], "kwargs": {}}), written the way Python's
 * json.dumps writes Keras's dicts so that the text can be compared with Keras's own.
 *
 * Each layer class writes its own get_config() fields through its vtable's get_config
 * hook (after name, trainable and dtype, which every layer has); the facts about a class
 * that Keras decides outside get_config (its module, whether it records a build shape,
 * which call arguments its nodes record) are in the table below. A class missing from both
 * still gets its class name, name, common fields and connections. */
#include "io/model_config.h"
#include <math.h>

/* ---- JSON writer ---- */
static void put(lm_json *j, const char *s, size_t n) {
  if (j->failed) return;
  if (j->len + n + 1 > j->cap) {
    size_t cap = j->cap ? j->cap : 1024;
    while (cap < j->len + n + 1) cap *= 2;
    char *b = lm__realloc(j->buf, cap);
    if (!b) {
      j->failed = true;
      return;
    }
    j->buf = b, j->cap = cap;
  }
  memcpy(j->buf + j->len, s, n);
  j->len += n;
  j->buf[j->len] = '\0';
}

static void puts_(lm_json *j, const char *s) { put(j, s, strlen(s)); }

/* A value (or a key) is about to be written in the current container. */
static void before_item(lm_json *j) {
  if (j->depth > 0) {
    if (!j->first[j->depth - 1]) puts_(j, ", ");
    j->first[j->depth - 1] = false;
  }
}

static void value_start(lm_json *j) {
  if (j->after_key) j->after_key = false;
  else before_item(j);
}

static void open_(lm_json *j, const char *bracket) {
  value_start(j);
  puts_(j, bracket);
  if (j->depth < (int)(sizeof j->first / sizeof j->first[0])) j->first[j->depth] = true;
  else j->failed = true;
  j->depth++;
}

static void close_(lm_json *j, const char *bracket) {
  if (j->depth > 0) j->depth--;
  puts_(j, bracket);
}

void lm__json_begin_object(lm_json *j) { open_(j, "{"); }
void lm__json_end_object(lm_json *j) { close_(j, "}"); }
void lm__json_begin_array(lm_json *j) { open_(j, "["); }
void lm__json_end_array(lm_json *j) { close_(j, "]"); }

static void quoted(lm_json *j, const char *s) {
  /* json.dumps with ensure_ascii: escapes quotes, backslashes, control characters, and
   * non-ASCII as \uXXXX (UTF-8 decoded; surrogate pairs above the BMP). */
  puts_(j, "\"");
  const unsigned char *p = (const unsigned char *)s;
  while (*p) {
    char e[16];
    unsigned c = *p;
    if (c == '"') puts_(j, "\\\""), p++;
    else if (c == '\\') puts_(j, "\\\\"), p++;
    else if (c == '\n') puts_(j, "\\n"), p++;
    else if (c == '\r') puts_(j, "\\r"), p++;
    else if (c == '\t') puts_(j, "\\t"), p++;
    else if (c == '\b') puts_(j, "\\b"), p++;
    else if (c == '\f') puts_(j, "\\f"), p++;
    else if (c < 0x20 || c == 0x7f) {
      snprintf(e, sizeof e, "\\u%04x", c);
      puts_(j, e), p++;
    } else if (c < 0x80) put(j, (const char *)p++, 1);
    else {
      int n = c >= 0xf0 ? 3 : c >= 0xe0 ? 2 : c >= 0xc0 ? 1 : -1;
      uint32_t cp = n == 3 ? c & 7 : n == 2 ? c & 15 : c & 31;
      int k = 1;
      for (; n > 0 && k <= n && (p[k] & 0xc0) == 0x80; k++) cp = cp << 6 | (p[k] & 0x3f);
      if (n < 0 || k <= n) cp = 0xfffd, k = 1; /* malformed UTF-8: the replacement character */
      if (cp >= 0x10000) {
        cp -= 0x10000;
        snprintf(e, sizeof e, "\\u%04x\\u%04x", 0xd800 + (cp >> 10), 0xdc00 + (cp & 0x3ff));
      } else snprintf(e, sizeof e, "\\u%04x", cp);
      puts_(j, e);
      p += k;
    }
  }
  puts_(j, "\"");
}

void lm__json_key(lm_json *j, const char *key) {
  before_item(j);
  quoted(j, key);
  puts_(j, ": ");
  j->after_key = true;
}

void lm__json_string(lm_json *j, const char *s) {
  value_start(j);
  quoted(j, s);
}

void lm__json_int(lm_json *j, int64_t v) {
  char b[32];
  value_start(j);
  snprintf(b, sizeof b, "%lld", (long long)v);
  puts_(j, b);
}

char *lm__py_float_repr(double v, char *buf, size_t len) {
  if (isnan(v)) return snprintf(buf, len, "NaN"), buf;
  if (isinf(v)) return snprintf(buf, len, v > 0 ? "Infinity" : "-Infinity"), buf;
  if (v == 0) return snprintf(buf, len, signbit(v) ? "-0.0" : "0.0"), buf;
  /* The shortest %e form that reads back to v, split into digits and a decimal exponent. */
  char e[40];
  for (int p = 0; p < 17; p++) {
    snprintf(e, sizeof e, "%.*e", p, v);
    if (strtod(e, NULL) == v) break;
  }
  char digits[24];
  int n = 0, neg = e[0] == '-';
  const char *s = e + neg;
  for (; *s && *s != 'e'; s++)
    if (*s != '.') digits[n++] = *s;
  while (n > 1 && digits[n - 1] == '0') n--;
  digits[n] = '\0';
  int exp = atoi(s + 1);
  char out[64];
  size_t o = 0;
  if (neg) out[o++] = '-';
  if (exp < -4 || exp >= 16) {
    out[o++] = digits[0];
    if (n > 1) {
      out[o++] = '.';
      for (int i = 1; i < n; i++) out[o++] = digits[i];
    }
    snprintf(out + o, sizeof out - o, "e%c%02d", exp < 0 ? '-' : '+', exp < 0 ? -exp : exp);
  } else if (exp < 0) {
    out[o++] = '0', out[o++] = '.';
    for (int i = 0; i < -exp - 1; i++) out[o++] = '0';
    for (int i = 0; i < n; i++) out[o++] = digits[i];
    out[o] = '\0';
  } else {
    for (int i = 0; i <= exp; i++) out[o++] = i < n ? digits[i] : '0';
    out[o++] = '.';
    if (n > exp + 1)
      for (int i = exp + 1; i < n; i++) out[o++] = digits[i];
    else out[o++] = '0';
    out[o] = '\0';
  }
  snprintf(buf, len, "%s", out);
  return buf;
}

void lm__json_double(lm_json *j, double v) {
  char b[40];
  value_start(j);
  puts_(j, lm__py_float_repr(v, b, sizeof b));
}

void lm__json_bool(lm_json *j, bool v) {
  value_start(j);
  puts_(j, v ? "true" : "false");
}

void lm__json_null(lm_json *j) {
  value_start(j);
  puts_(j, "null");
}

void lm__json_kv_string(lm_json *j, const char *key, const char *s) { lm__json_key(j, key), lm__json_string(j, s); }
void lm__json_kv_int(lm_json *j, const char *key, int64_t v) { lm__json_key(j, key), lm__json_int(j, v); }
void lm__json_kv_double(lm_json *j, const char *key, double v) { lm__json_key(j, key), lm__json_double(j, v); }
void lm__json_kv_bool(lm_json *j, const char *key, bool v) { lm__json_key(j, key), lm__json_bool(j, v); }
void lm__json_kv_null(lm_json *j, const char *key) { lm__json_key(j, key), lm__json_null(j); }

void lm__json_kv_ints(lm_json *j, const char *key, const int64_t *v, int n) {
  lm__json_key(j, key);
  lm__json_begin_array(j);
  for (int i = 0; i < n; i++) lm__json_int(j, v[i]);
  lm__json_end_array(j);
}

/* A shape: unknown dims (LM_NONE) are None. */
static void shape_(lm_json *j, lm_shape s) {
  lm__json_begin_array(j);
  for (int i = 0; i < s.rank; i++) {
    if (s.dim[i] < 0) lm__json_null(j);
    else lm__json_int(j, s.dim[i]);
  }
  lm__json_end_array(j);
}

void lm__json_kv_activation(lm_json *j, const char *key, lm_activation a) {
  /* Keras 3 serializes swish as its canonical function, silu. */
  lm__json_kv_string(j, key, a == LM_SWISH ? "silu" : a == LM_ACTIVATION_DEFAULT ? "linear" : lm_activation_name(a));
}

void lm__json_kv_initializer(lm_json *j, const char *key, lm_initializer init, lm_init_kind default_kind) {
  static const char *const names[] = {
      [LM_GLOROT_UNIFORM] = "GlorotUniform", [LM_GLOROT_NORMAL] = "GlorotNormal", [LM_HE_UNIFORM] = "HeUniform",
      [LM_HE_NORMAL] = "HeNormal",           [LM_LECUN_UNIFORM] = "LecunUniform", [LM_LECUN_NORMAL] = "LecunNormal",
      [LM_ORTHOGONAL] = "Orthogonal",        [LM_ZEROS] = "Zeros",                [LM_ONES] = "Ones",
      [LM_CONSTANT] = "Constant",            [LM_RANDOM_UNIFORM] = "RandomUniform", [LM_RANDOM_NORMAL] = "RandomNormal",
      [LM_TRUNCATED_NORMAL] = "TruncatedNormal"};
  lm_init_kind kind = init.kind == LM_INIT_DEFAULT ? default_kind : init.kind;
  /* A default kind carries the layer's default arguments (Embedding's uniform(-0.05, 0.05)). */
  bool zero = init.a == 0 && init.b == 0;
  lm__json_key(j, key);
  if ((unsigned)kind >= sizeof names / sizeof names[0] || !names[kind]) {
    lm__json_null(j);
    return;
  }
  lm__json_begin_object(j);
  lm__json_kv_string(j, "module", "keras.initializers");
  lm__json_kv_string(j, "class_name", names[kind]);
  lm__json_key(j, "config");
  lm__json_begin_object(j);
  switch (kind) {
  case LM_GLOROT_UNIFORM:
  case LM_GLOROT_NORMAL:
  case LM_HE_UNIFORM:
  case LM_HE_NORMAL:
  case LM_LECUN_UNIFORM:
  case LM_LECUN_NORMAL:
    lm__json_kv_null(j, "seed");
    lm__json_kv_null(j, "input_axes");
    lm__json_kv_null(j, "output_axes");
    break;
  case LM_ORTHOGONAL:
    lm__json_kv_null(j, "seed");
    lm__json_kv_double(j, "gain", zero ? 1.0 : init.a);
    break;
  case LM_CONSTANT: lm__json_kv_double(j, "value", init.a); break;
  case LM_RANDOM_UNIFORM:
    lm__json_kv_null(j, "seed");
    lm__json_kv_double(j, "minval", zero ? -0.05 : init.a);
    lm__json_kv_double(j, "maxval", zero ? 0.05 : init.b);
    break;
  case LM_RANDOM_NORMAL:
  case LM_TRUNCATED_NORMAL:
    lm__json_kv_null(j, "seed");
    lm__json_kv_double(j, "mean", zero ? 0.0 : init.a);
    lm__json_kv_double(j, "stddev", zero ? 0.05 : init.b);
    break;
  default: break;
  }
  lm__json_end_object(j);
  lm__json_kv_null(j, "registered_name");
  lm__json_end_object(j);
}

/* ---- What Keras decides per class outside get_config ---- */
enum { KW_TRAINING = 1, KW_MASK = 2 };

typedef struct class_facts {
  const char *class_name;
  bool build_config; /* the class overrides build(): Keras records its first input shapes */
  unsigned kwargs;   /* call arguments each node records: "training": false, "mask": null */
} class_facts;

/* From Keras 3.15's to_json() of every class lamina has (module "keras.layers" for all). */
static const class_facts facts[] = {
    {"Dense", true, 0},
    {"Activation", false, 0},
    {"Dropout", false, KW_TRAINING},
    {"Flatten", true, 0},
    {"Reshape", false, 0},
    {"Concatenate", true, 0},
    {"Add", true, 0},
    {"Subtract", true, 0},
    {"Multiply", true, 0},
    {"Average", true, 0},
    {"Maximum", true, 0},
    {"Embedding", true, 0},
    {"Conv1D", true, 0},
    {"Conv2D", true, 0},
    {"SeparableConv1D", true, 0},
    {"SeparableConv2D", true, 0},
    {"DepthwiseConv2D", true, 0},
    {"MaxPooling1D", false, 0},
    {"MaxPooling2D", false, 0},
    {"AveragePooling1D", false, 0},
    {"AveragePooling2D", false, 0},
    {"GlobalMaxPooling1D", false, 0},
    {"GlobalMaxPooling2D", false, 0},
    {"GlobalAveragePooling1D", false, KW_MASK},
    {"GlobalAveragePooling2D", false, 0},
    {"BatchNormalization", true, KW_MASK},
    {"LayerNormalization", true, 0},
    {"LSTM", true, KW_TRAINING | KW_MASK},
    {"GRU", true, KW_TRAINING | KW_MASK},
    {"SimpleRNN", true, KW_TRAINING | KW_MASK},
    {"Bidirectional", true, KW_MASK},
    {"Functional", false, KW_MASK},
    {"Sequential", false, KW_MASK},
};

static const class_facts *facts_of(const lm_layer *layer) {
  static const class_facts unknown = {"", true, 0};
  for (size_t i = 0; i < sizeof facts / sizeof facts[0]; i++)
    if (!strcmp(facts[i].class_name, layer->vt->class_name)) return &facts[i];
  return &unknown; /* most Keras layers with weights override build() */
}

/* ---- Model configuration ---- */
static void model_config(lm_json *j, const lm_model *m);

static bool is_model(const lm_layer *layer) { return layer->model != NULL; }

/* The nodes a model serializes: its own (those it runs) and its inputs' nodes. */
static bool own_node(const lm_model *m, const lm_node *node) {
  for (int i = 0; i < m->n_nodes; i++)
    if (m->nodes[i] == node) return true;
  for (int i = 0; i < m->n_inputs; i++)
    if (m->inputs[i]->node == node) return true;
  return false;
}

/* Keras's node index within this model: earlier nodes of the layer that belong to other
 * models do not count. */
static int node_index(const lm_model *m, const lm_node *node) {
  int k = 0;
  for (int i = 0; i < node->index && i < node->layer->n_nodes; i++) k += own_node(m, node->layer->nodes[i]);
  return k;
}

static void history(lm_json *j, const lm_model *m, const lm_tensor *t) {
  lm__json_begin_array(j);
  lm__json_string(j, t->node->layer->name);
  lm__json_int(j, node_index(m, t->node));
  lm__json_int(j, t->index);
  lm__json_end_array(j);
}

static void dtype_name(lm_json *j, lm_dtype dt) { lm__json_string(j, dt == LM_INT32 ? "int32" : "float32"); }

static void keras_tensor(lm_json *j, const lm_model *m, const lm_tensor *t) {
  lm__json_begin_object(j);
  lm__json_kv_string(j, "class_name", "__keras_tensor__");
  lm__json_key(j, "config");
  lm__json_begin_object(j);
  lm__json_key(j, "shape");
  shape_(j, t->shape);
  lm__json_key(j, "dtype");
  dtype_name(j, t->dtype);
  lm__json_key(j, "keras_history");
  history(j, m, t);
  lm__json_end_object(j);
  lm__json_end_object(j);
}

/* A call's first argument: the tensor itself, or the list a multi-input call was given. */
static void call_args(lm_json *j, const lm_model *m, const lm_node *node) {
  lm__json_key(j, "args");
  lm__json_begin_array(j);
  if (node->n_in == 1) keras_tensor(j, m, node->inputs[0]);
  else {
    lm__json_begin_array(j);
    for (int i = 0; i < node->n_in; i++) keras_tensor(j, m, node->inputs[i]);
    lm__json_end_array(j);
  }
  lm__json_end_array(j);
}

static void dtype_policy(lm_json *j) {
  lm__json_key(j, "dtype");
  lm__json_begin_object(j);
  lm__json_kv_string(j, "module", "keras");
  lm__json_kv_string(j, "class_name", "DTypePolicy");
  lm__json_key(j, "config");
  lm__json_begin_object(j);
  lm__json_kv_string(j, "name", "float32");
  lm__json_end_object(j);
  lm__json_kv_null(j, "registered_name");
  lm__json_end_object(j);
}

static void input_layer_entry(lm_json *j, const lm_layer *layer, bool functional) {
  const lm_tensor *t = layer->nodes[0]->outputs[0];
  lm__json_begin_object(j);
  lm__json_kv_string(j, "module", "keras.layers");
  lm__json_kv_string(j, "class_name", "InputLayer");
  lm__json_key(j, "config");
  lm__json_begin_object(j);
  lm__json_key(j, "batch_shape");
  shape_(j, t->shape);
  lm__json_key(j, "dtype");
  dtype_name(j, t->dtype);
  lm__json_kv_bool(j, "sparse", false);
  lm__json_kv_bool(j, "ragged", false);
  lm__json_kv_string(j, "name", layer->name);
  lm__json_kv_bool(j, "optional", false);
  lm__json_end_object(j);
  lm__json_kv_null(j, "registered_name");
  if (functional) {
    lm__json_kv_string(j, "name", layer->name);
    lm__json_key(j, "inbound_nodes");
    lm__json_begin_array(j);
    lm__json_end_array(j);
  }
  lm__json_end_object(j);
}

/* The build shapes Keras records: the first call's input shape, or the list of them. */
static void build_config(lm_json *j, const lm_layer *layer) {
  lm__json_key(j, "build_config");
  lm__json_begin_object(j);
  lm__json_key(j, "input_shape");
  const lm_node *node = layer->n_nodes ? layer->nodes[0] : NULL;
  if (!node || node->n_in == 0) lm__json_null(j);
  else if (node->n_in == 1) shape_(j, node->inputs[0]->shape);
  else {
    lm__json_begin_array(j);
    for (int i = 0; i < node->n_in; i++) shape_(j, node->inputs[i]->shape);
    lm__json_end_array(j);
  }
  lm__json_end_object(j);
}

/* A Sequential records its input shape; a Functional model, null. */
static void model_build_config(lm_json *j, const lm_model *m) {
  lm__json_key(j, "build_config");
  lm__json_begin_object(j);
  lm__json_key(j, "input_shape");
  if (m->sequential && m->n_inputs) shape_(j, m->inputs[0]->shape);
  else lm__json_null(j);
  lm__json_end_object(j);
}

/* One entry of config["layers"]; parent is NULL inside a Sequential (no connections). */
static void layer_entry(lm_json *j, const lm_layer *layer, const lm_model *parent) {
  if (lm__is_input_layer(layer)) {
    input_layer_entry(j, layer, parent != NULL);
    return;
  }
  const class_facts *f = facts_of(layer);
  lm__json_begin_object(j);
  if (is_model(layer)) {
    const lm_model *sub = layer->model;
    lm__json_kv_string(j, "module", sub->sequential ? "keras" : "keras.src.models.functional");
    lm__json_kv_string(j, "class_name", sub->sequential ? "Sequential" : "Functional");
    lm__json_key(j, "config");
    model_config(j, sub);
    if (sub->sequential) lm__json_kv_null(j, "registered_name");
    else lm__json_kv_string(j, "registered_name", "Functional");
    model_build_config(j, sub);
    lm__json_key(j, "compile_config");
    lm__json_begin_object(j);
    lm__json_end_object(j);
  } else {
    lm__json_kv_string(j, "module", "keras.layers");
    lm__json_kv_string(j, "class_name", layer->vt->class_name);
    lm__json_key(j, "config");
    lm__json_begin_object(j);
    lm__json_kv_string(j, "name", layer->name);
    lm__json_kv_bool(j, "trainable", layer->trainable);
    dtype_policy(j);
    if (layer->vt->get_config) layer->vt->get_config(layer, j);
    lm__json_end_object(j);
    lm__json_kv_null(j, "registered_name");
    if (f->build_config && layer->n_nodes) build_config(j, layer);
  }
  if (parent) {
    lm__json_kv_string(j, "name", layer->name);
    lm__json_key(j, "inbound_nodes");
    lm__json_begin_array(j);
    for (int i = 0; i < layer->n_nodes; i++) {
      const lm_node *node = layer->nodes[i];
      if (!own_node(parent, node)) continue;
      lm__json_begin_object(j);
      call_args(j, parent, node);
      lm__json_key(j, "kwargs");
      lm__json_begin_object(j);
      if (f->kwargs & KW_TRAINING) lm__json_kv_bool(j, "training", false);
      if (f->kwargs & KW_MASK) lm__json_kv_null(j, "mask"); /* masks are not tracked symbolically */
      lm__json_end_object(j);
      lm__json_end_object(j);
    }
    lm__json_end_array(j);
  }
  lm__json_end_object(j);
}

/* input_layers / output_layers: one [name, node, tensor], or a list of them. */
static void endpoints(lm_json *j, const lm_model *m, lm_tensor *const *t, int n) {
  if (n == 1) {
    history(j, m, t[0]);
    return;
  }
  lm__json_begin_array(j);
  for (int i = 0; i < n; i++) history(j, m, t[i]);
  lm__json_end_array(j);
}

static void model_config(lm_json *j, const lm_model *m) {
  lm__json_begin_object(j);
  lm__json_kv_string(j, "name", m->base.name);
  lm__json_kv_bool(j, "trainable", m->base.trainable);
  if (m->sequential) {
    dtype_policy(j);
    lm__json_key(j, "layers");
    lm__json_begin_array(j);
    if (m->n_inputs) layer_entry(j, m->inputs[0]->node->layer, NULL);
    for (int i = 0; i < m->n_layers; i++) layer_entry(j, m->layers[i], NULL);
    lm__json_end_array(j);
    if (m->n_inputs) {
      lm__json_key(j, "build_input_shape");
      shape_(j, m->inputs[0]->shape);
    }
  } else {
    lm__json_key(j, "layers");
    lm__json_begin_array(j);
    for (int i = 0; i < m->n_layers; i++) layer_entry(j, m->layers[i], m);
    lm__json_end_array(j);
    lm__json_key(j, "input_layers");
    endpoints(j, m, m->inputs, m->n_inputs);
    lm__json_key(j, "output_layers");
    endpoints(j, m, m->outputs, m->n_outputs);
  }
  lm__json_end_object(j);
}

lm_status lm__model_config_json(const lm_model *m, char **out) {
  *out = NULL;
  if (!m) return lm__fail(NULL, LM_ERROR_VALUE, "model config: the model is NULL");
  if (m->base.err.code)
    return lm__fail(NULL, LM_ERROR_STATE, "model config: model \"%s\" carries an error: %s", m->base.name,
                    m->base.err.msg);
  lm_json j = {0};
  lm__json_begin_object(&j);
  lm__json_kv_string(&j, "module", m->sequential ? "keras" : "keras.src.models.functional");
  lm__json_kv_string(&j, "class_name", m->sequential ? "Sequential" : "Functional");
  lm__json_key(&j, "config");
  model_config(&j, m);
  if (m->sequential) lm__json_kv_null(&j, "registered_name");
  else lm__json_kv_string(&j, "registered_name", "Functional");
  model_build_config(&j, m);
  lm__json_key(&j, "compile_config");
  lm__json_begin_object(&j);
  lm__json_end_object(&j);
  lm__json_end_object(&j);
  if (j.failed) {
    free(j.buf);
    return lm__fail(NULL, LM_ERROR_MEMORY, "model config: cannot write model \"%s\" (out of memory, or models nested too deep)",
                    m->base.name);
  }
  *out = j.buf;
  return LM_OK;
}
