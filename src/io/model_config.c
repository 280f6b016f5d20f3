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
void lm__json_raw(lm_json *j, const char *s, size_t n) {
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

static void puts_(lm_json *j, const char *s) { lm__json_raw(j, s, strlen(s)); }

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
    } else if (c < 0x80) lm__json_raw(j, (const char *)p++, 1);
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

static void build_shape(lm_json *j, const lm_shape *shape) {
  lm__json_key(j, "build_config");
  lm__json_begin_object(j);
  lm__json_key(j, "input_shape");
  shape_(j, *shape);
  lm__json_end_object(j);
}

void lm__json_layer_object(lm_json *j, const lm_layer *layer, const lm_shape *build, bool trainable) {
  lm__json_begin_object(j);
  lm__json_kv_string(j, "module", "keras.layers");
  lm__json_kv_string(j, "class_name", layer->vt->class_name);
  lm__json_key(j, "config");
  lm__json_begin_object(j);
  lm__json_kv_string(j, "name", layer->name);
  lm__json_kv_bool(j, "trainable", trainable);
  dtype_policy(j);
  if (layer->vt->get_config) layer->vt->get_config(layer, j);
  lm__json_end_object(j);
  lm__json_kv_null(j, "registered_name");
  if (build) build_shape(j, build);
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

/* An entry of input_layers / output_layers. Keras counts a nested Functional's nodes from
 * 1 here (its node 0 is the one linking its own inputs to its outputs), though not in
 * inbound_nodes; a nested Sequential has no such node. */
static void endpoint(lm_json *j, const lm_model *m, const lm_tensor *t) {
  const lm_layer *layer = t->node->layer;
  lm__json_begin_array(j);
  lm__json_string(j, layer->name);
  lm__json_int(j, node_index(m, t->node) + (is_model(layer) && !layer->model->sequential));
  lm__json_int(j, t->index);
  lm__json_end_array(j);
}

/* input_layers / output_layers: one [name, node, tensor], or a list of them. */
static void endpoints(lm_json *j, const lm_model *m, lm_tensor *const *t, int n) {
  if (n == 1) {
    endpoint(j, m, t[0]);
    return;
  }
  lm__json_begin_array(j);
  for (int i = 0; i < n; i++) endpoint(j, m, t[i]);
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

/* ======================================================================================
 * Reading: Keras's model_from_json, for Keras 3's layout and Keras 2's (tf.keras).
 *
 * As Keras does, every layer of a model is created first, then the calls recorded in the
 * layers' inbound_nodes are replayed, layer by layer in the config's order, each node as
 * soon as the tensors it takes exist (a shared layer may be called at several depths), until
 * a whole pass makes no progress. A node's inputs name [layer, node index, tensor index].
 * ====================================================================================== */

#define MAX_SAMPLE_ELEMENTS ((int64_t)1 << 40) /* per-sample elements of any tensor */

struct lm__loader {
  lm_error err;
  lm__config_limits lim;
};

typedef enum node_format { FORMAT_UNKNOWN, FORMAT_KERAS3, FORMAT_KERAS2 } node_format;

/* " (line L, column C)" for a value, or "". */
static const char *at_(const lm__json_value *v, char *buf, size_t len) {
  if (v) snprintf(buf, len, " (line %u, column %u)", (unsigned)v->line, (unsigned)v->col);
  else buf[0] = '\0';
  return buf;
}

static bool load_fail(lm__loader *L, const lm__json_value *at, lm_status code, const char *fmt, ...) LM_PRINTF(4, 5);
static bool load_fail(lm__loader *L, const lm__json_value *at, lm_status code, const char *fmt, ...) {
  if (L->err.code) return false;
  char what[900], loc[64];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(what, sizeof what, fmt, ap);
  va_end(ap);
  lm__fail(&L->err, code, "model config: %s%s", what, at_(at, loc, sizeof loc));
  return false;
}

/* ---- The field readers of lm__cfg ---- */

bool lm__cfg_ok(const lm__cfg *c) { return c->err->code == LM_OK; }

bool lm__cfg_fail(lm__cfg *c, const char *key, const lm__json_value *at, const char *fmt, ...) {
  if (c->err->code) return false;
  char what[700], loc[64];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(what, sizeof what, fmt, ap);
  va_end(ap);
  if (key)
    lm__fail(c->err, LM_ERROR_VALUE, "model config: layer \"%.128s\" (%s): field \"%s%.64s\" %s%s", c->name, c->cls,
             c->prefix ? c->prefix : "", key, what, at_(at, loc, sizeof loc));
  else
    lm__fail(c->err, LM_ERROR_VALUE, "model config: layer \"%.128s\" (%s): %s%s", c->name, c->cls, what,
             at_(at, loc, sizeof loc));
  return false;
}

const lm__json_value *lm__cfg_take(lm__cfg *c, const char *key) {
  for (size_t i = 0; i < c->config->n && i < LM__CFG_MAX_KEYS; i++) {
    if (!strcmp(c->config->items[i].key, key)) {
      c->used[i] = true;
      return &c->config->items[i];
    }
  }
  return NULL;
}

/* The value of key, NULL when absent or null; *missing tells a required field apart. */
static const lm__json_value *take_value(lm__cfg *c, const char *key, bool required, bool *ok) {
  *ok = lm__cfg_ok(c);
  if (!*ok) return NULL;
  const lm__json_value *v = lm__cfg_take(c, key);
  if (v && v->type == LM_JSON_NULL) v = NULL;
  if (!v && required) *ok = lm__cfg_fail(c, key, NULL, "is required");
  return v;
}

static bool int_in(lm__cfg *c, const char *key, const lm__json_value *v, int min, int max, int *out) {
  if (v->type != LM_JSON_NUMBER || !v->is_integer)
    return lm__cfg_fail(c, key, v, "must be an integer, got %s", lm__json_kind(v));
  if (v->integer < min || v->integer > max)
    return lm__cfg_fail(c, key, v, "must be an integer in [%d, %d], got %lld", min, max, (long long)v->integer);
  *out = (int)v->integer;
  return true;
}

bool lm__cfg_int(lm__cfg *c, const char *key, int *out, int def, int min, int max) {
  bool ok;
  const lm__json_value *v = take_value(c, key, def == LM__CFG_REQUIRED, &ok);
  if (!v) {
    if (ok) *out = def;
    return ok;
  }
  return int_in(c, key, v, min, max, out);
}

bool lm__cfg_float(lm__cfg *c, const char *key, double *out, double def, double min, double max) {
  bool ok;
  const lm__json_value *v = take_value(c, key, isnan(def), &ok);
  if (!v) {
    if (ok) *out = def;
    return ok;
  }
  if (v->type != LM_JSON_NUMBER) return lm__cfg_fail(c, key, v, "must be a number, got %s", lm__json_kind(v));
  if (!(v->number >= min && v->number <= max))
    return lm__cfg_fail(c, key, v, "must be a number in [%g, %g], got %g", min, max, v->number);
  *out = v->number;
  return true;
}

bool lm__cfg_bool(lm__cfg *c, const char *key, bool *out, bool def) {
  if (!lm__cfg_ok(c)) return false;
  const lm__json_value *v = lm__cfg_take(c, key);
  if (!v) return *out = def, true;
  if (v->type != LM_JSON_BOOL) return lm__cfg_fail(c, key, v, "must be true or false, got %s", lm__json_kind(v));
  *out = v->boolean;
  return true;
}

bool lm__cfg_choice(lm__cfg *c, const char *key, int *out, int def, const char *const *choices) {
  bool ok;
  const lm__json_value *v = take_value(c, key, def == LM__CFG_REQUIRED, &ok);
  if (!v) {
    if (ok) *out = def;
    return ok;
  }
  char list[256] = "";
  size_t at = 0;
  for (int i = 0; choices[i]; i++) {
    if (v->type == LM_JSON_STRING && !strcmp(v->string, choices[i])) return *out = i, true;
    if (at < sizeof list)
      at += (size_t)snprintf(list + at, sizeof list - at, "%s\"%s\"", i ? ", " : "", choices[i]);
  }
  if (v->type != LM_JSON_STRING) return lm__cfg_fail(c, key, v, "must be one of %s, got %s", list, lm__json_kind(v));
  return lm__cfg_fail(c, key, v, "must be one of %s; \"%.64s\" is not supported", list, v->string);
}

bool lm__cfg_ints(lm__cfg *c, const char *key, int *out, int n, int def, int min, int max) {
  bool ok;
  const lm__json_value *v = take_value(c, key, def == LM__CFG_REQUIRED, &ok);
  if (!v) {
    for (int i = 0; ok && i < n; i++) out[i] = def;
    return ok;
  }
  if (v->type == LM_JSON_NUMBER) {
    if (!int_in(c, key, v, min, max, &out[0])) return false;
    for (int i = 1; i < n; i++) out[i] = out[0];
    return true;
  }
  if (v->type != LM_JSON_ARRAY || v->n != (size_t)n)
    return lm__cfg_fail(c, key, v, "must be an integer or a list of %d integers, got %s%s", n, lm__json_kind(v),
                        v->type == LM_JSON_ARRAY ? " of another length" : "");
  for (int i = 0; i < n; i++)
    if (!int_in(c, key, &v->items[i], min, max, &out[i])) return false;
  return true;
}

bool lm__cfg_activation(lm__cfg *c, const char *key, lm_activation *out, lm_activation def) {
  bool ok;
  const lm__json_value *v = take_value(c, key, false, &ok);
  if (!v) {
    if (ok) *out = def;
    return ok;
  }
  if (v->type != LM_JSON_STRING)
    return lm__cfg_fail(c, key, v, "must be the name of a built-in activation, got %s (custom activations are not supported)",
                        lm__json_kind(v));
  int a = lm_activation_from_name(v->string);
  if (a < LM_LINEAR)
    return lm__cfg_fail(c, key, v,
                        "names activation \"%.64s\", which lamina does not have (it has linear, relu, sigmoid, tanh, "
                        "softmax, elu, selu, gelu, softplus, swish / silu)",
                        v->string);
  *out = (lm_activation)a;
  return true;
}

/* Keras's config.json (not model.to_json()) marks an object that it serializes more than
 * once (a dtype policy or an initializer that layers share, a layer called in several
 * places) with an integer "shared_object_id", for its ObjectSharingScope. lamina builds
 * values, not shared objects, so the mark is accepted where Keras writes it and has no
 * effect. */
static bool is_sharing_id(const lm__json_value *f) {
  return !strcmp(f->key, "shared_object_id") && f->type == LM_JSON_NUMBER && f->is_integer;
}

/* ---- Initializers ---- */
static const struct {
  const char *class_name, *alias;
  lm_init_kind kind;
} init_names[] = {
    {"GlorotUniform", "glorot_uniform", LM_GLOROT_UNIFORM}, {"GlorotNormal", "glorot_normal", LM_GLOROT_NORMAL},
    {"HeUniform", "he_uniform", LM_HE_UNIFORM},             {"HeNormal", "he_normal", LM_HE_NORMAL},
    {"LecunUniform", "lecun_uniform", LM_LECUN_UNIFORM},    {"LecunNormal", "lecun_normal", LM_LECUN_NORMAL},
    {"Orthogonal", "orthogonal", LM_ORTHOGONAL},            {"Zeros", "zeros", LM_ZEROS},
    {"Ones", "ones", LM_ONES},                              {"Constant", "constant", LM_CONSTANT},
    {"RandomUniform", "random_uniform", LM_RANDOM_UNIFORM}, {"RandomNormal", "random_normal", LM_RANDOM_NORMAL},
    {"TruncatedNormal", "truncated_normal", LM_TRUNCATED_NORMAL},
};

/* An initializer's own config, read through a nested lm__cfg so that its fields are
 * checked like a layer's (errors name them "kernel_initializer.minval"). */
static bool init_config(lm__cfg *c, const char *key, const lm__json_value *cfg, const char *cls, lm_initializer *out) {
  char prefix[80];
  snprintf(prefix, sizeof prefix, "%.64s.", key);
  lm__cfg ic = {.config = cfg, .cls = c->cls, .name = c->name, .prefix = prefix, .loader = c->loader, .err = c->err};
  if (cfg->n > LM__CFG_MAX_KEYS) return lm__cfg_fail(c, key, cfg, "has too many fields");
  const lm__json_value *seed = lm__cfg_take(&ic, "seed");
  if (seed && seed->type != LM_JSON_NULL)
    return lm__cfg_fail(&ic, "seed", seed,
                        "must be null: lamina draws every initializer from the session's seeded stream "
                        "(lm_set_seed), so a per-initializer seed cannot be honoured");
  lm__cfg_nulls(&ic, "input_axes", "output_axes", NULL);
  double a = 0, b = 0;
  switch (out->kind) {
  case LM_ORTHOGONAL: lm__cfg_float(&ic, "gain", &a, 1.0, 1e-30, 1e30); break;
  case LM_CONSTANT: lm__cfg_float(&ic, "value", &a, 0.0, -1e30, 1e30); break;
  case LM_RANDOM_UNIFORM:
    lm__cfg_float(&ic, "minval", &a, -0.05, -1e30, 1e30);
    lm__cfg_float(&ic, "maxval", &b, 0.05, -1e30, 1e30);
    break;
  case LM_RANDOM_NORMAL:
  case LM_TRUNCATED_NORMAL:
    lm__cfg_float(&ic, "mean", &a, 0.0, -1e30, 1e30);
    lm__cfg_float(&ic, "stddev", &b, 0.05, 0, 1e30);
    break;
  default: break;
  }
  if (!lm__cfg_ok(&ic)) return false;
  for (size_t i = 0; i < cfg->n; i++)
    if (!ic.used[i])
      return lm__cfg_fail(&ic, cfg->items[i].key, &cfg->items[i], "is not a field of %s that lamina supports", cls);
  /* lamina reads all-zero arguments as the kind's defaults, so these cannot be expressed. */
  if (a == 0 && b == 0 && (out->kind == LM_RANDOM_UNIFORM || out->kind == LM_RANDOM_NORMAL || out->kind == LM_TRUNCATED_NORMAL))
    return lm__cfg_fail(c, key, cfg, "(%s) with both arguments 0 is not supported", cls);
  out->a = a, out->b = b;
  return true;
}

/* Keras's VarianceScaling under the names of the initializers lamina has. */
static bool variance_scaling(lm__cfg *c, const char *key, const lm__json_value *cfg, lm_initializer *out) {
  const lm__json_value *scale = lm__json_get(cfg, "scale"), *mode = lm__json_get(cfg, "mode"),
                       *dist = lm__json_get(cfg, "distribution");
  double s = scale && scale->type == LM_JSON_NUMBER ? scale->number : 1.0;
  const char *m = mode && mode->type == LM_JSON_STRING ? mode->string : "fan_in";
  const char *d = dist && dist->type == LM_JSON_STRING ? dist->string : "truncated_normal";
  bool uniform = !strcmp(d, "uniform"), normal = !strcmp(d, "truncated_normal") || !strcmp(d, "normal");
  lm_init_kind kind = LM_INIT_DEFAULT;
  if (s == 1.0 && !strcmp(m, "fan_avg")) kind = uniform ? LM_GLOROT_UNIFORM : normal ? LM_GLOROT_NORMAL : kind;
  else if (s == 2.0 && !strcmp(m, "fan_in")) kind = uniform ? LM_HE_UNIFORM : normal ? LM_HE_NORMAL : kind;
  else if (s == 1.0 && !strcmp(m, "fan_in")) kind = uniform ? LM_LECUN_UNIFORM : normal ? LM_LECUN_NORMAL : kind;
  if (!kind)
    return lm__cfg_fail(c, key, cfg,
                        "(VarianceScaling with scale %g, mode \"%.16s\", distribution \"%.24s\") is not supported: lamina "
                        "has the Glorot, He and LeCun forms only",
                        s, m, d);
  for (size_t i = 0; i < cfg->n; i++) {
    const char *f = cfg->items[i].key;
    if (strcmp(f, "scale") && strcmp(f, "mode") && strcmp(f, "distribution") && strcmp(f, "seed") &&
        strcmp(f, "input_axes") && strcmp(f, "output_axes"))
      return lm__cfg_fail(c, key, &cfg->items[i], "(VarianceScaling) has a field \"%.64s\" that lamina does not support", f);
    if ((!strcmp(f, "scale") && cfg->items[i].type != LM_JSON_NUMBER) ||
        ((!strcmp(f, "mode") || !strcmp(f, "distribution")) && cfg->items[i].type != LM_JSON_STRING) ||
        (strcmp(f, "scale") && strcmp(f, "mode") && strcmp(f, "distribution") && cfg->items[i].type != LM_JSON_NULL))
      return lm__cfg_fail(c, key, &cfg->items[i], "(VarianceScaling): field \"%.64s\" has the wrong type (%s)", f,
                          lm__json_kind(&cfg->items[i]));
  }
  *out = (lm_initializer){.kind = kind};
  return true;
}

bool lm__cfg_initializer(lm__cfg *c, const char *key, lm_initializer *out) {
  *out = (lm_initializer){0};
  if (!lm__cfg_ok(c)) return false;
  const lm__json_value *v = lm__cfg_take(c, key);
  if (!v) return true;
  const char *cls = NULL;
  const lm__json_value *cfg = NULL;
  if (v->type == LM_JSON_STRING) cls = v->string;
  else if (v->type == LM_JSON_OBJECT) {
    for (size_t i = 0; i < v->n; i++) {
      const lm__json_value *f = &v->items[i];
      if (!strcmp(f->key, "class_name") && f->type == LM_JSON_STRING) cls = f->string;
      else if (!strcmp(f->key, "config") && (f->type == LM_JSON_OBJECT || f->type == LM_JSON_NULL)) cfg = f;
      else if (!strcmp(f->key, "module") && (f->type == LM_JSON_STRING || f->type == LM_JSON_NULL)) continue;
      else if (!strcmp(f->key, "registered_name") && f->type == LM_JSON_NULL) continue;
      else if (is_sharing_id(f)) continue;
      else
        return lm__cfg_fail(c, key, f, "has a field \"%.64s\" (%s) that a built-in initializer does not have", f->key,
                            lm__json_kind(f));
    }
    if (!cls) return lm__cfg_fail(c, key, v, "has no \"class_name\"");
  } else
    return lm__cfg_fail(c, key, v, "must be an initializer (an object or a name), got %s", lm__json_kind(v));
  if (cfg && cfg->type == LM_JSON_NULL) cfg = NULL;
  if (!strcmp(cls, "VarianceScaling") || !strcmp(cls, "variance_scaling")) {
    static const lm__json_value empty = {.type = LM_JSON_OBJECT};
    return variance_scaling(c, key, cfg ? cfg : &empty, out);
  }
  for (size_t i = 0; i < sizeof init_names / sizeof init_names[0]; i++) {
    if (strcmp(cls, init_names[i].class_name) && strcmp(cls, init_names[i].alias)) continue;
    out->kind = init_names[i].kind;
    if (!cfg) {
      /* A bare name takes the kind's defaults; those without arguments are complete. */
      if (out->kind == LM_RANDOM_UNIFORM) out->a = -0.05, out->b = 0.05;
      if (out->kind == LM_RANDOM_NORMAL || out->kind == LM_TRUNCATED_NORMAL) out->b = 0.05;
      if (out->kind == LM_ORTHOGONAL) out->a = 1.0;
      return true;
    }
    return init_config(c, key, cfg, cls, out);
  }
  return lm__cfg_fail(c, key, v, "names initializer \"%.64s\", which lamina does not have", cls);
}

bool lm__cfg_nulls(lm__cfg *c, ...) {
  va_list ap;
  va_start(ap, c);
  for (const char *key; (key = va_arg(ap, const char *));) {
    if (!lm__cfg_ok(c)) break;
    const lm__json_value *v = lm__cfg_take(c, key);
    if (v && v->type != LM_JSON_NULL) lm__cfg_fail(c, key, v, "must be null: lamina does not support it (got %s)", lm__json_kind(v));
  }
  va_end(ap);
  return lm__cfg_ok(c);
}

bool lm__cfg_fixed_string(lm__cfg *c, const char *key, const char *want, const char *why) {
  if (!lm__cfg_ok(c)) return false;
  const lm__json_value *v = lm__cfg_take(c, key);
  if (!v || v->type == LM_JSON_NULL || (v->type == LM_JSON_STRING && !strcmp(v->string, want))) return true;
  if (v->type == LM_JSON_STRING)
    return lm__cfg_fail(c, key, v, "must be \"%s\" (%s), got \"%.64s\"", want, why, v->string);
  return lm__cfg_fail(c, key, v, "must be \"%s\" (%s), got %s", want, why, lm__json_kind(v));
}

bool lm__cfg_fixed_bool(lm__cfg *c, const char *key, bool want, const char *why) {
  if (!lm__cfg_ok(c)) return false;
  const lm__json_value *v = lm__cfg_take(c, key);
  if (!v || v->type == LM_JSON_NULL || (v->type == LM_JSON_BOOL && v->boolean == want)) return true;
  return lm__cfg_fail(c, key, v, "must be %s (%s), got %s%s", want ? "true" : "false", why,
                      v->type == LM_JSON_BOOL ? "" : lm__json_kind(v), v->type == LM_JSON_BOOL ? (v->boolean ? "true" : "false") : "");
}

bool lm__cfg_fixed_number(lm__cfg *c, const char *key, double want, const char *why) {
  if (!lm__cfg_ok(c)) return false;
  const lm__json_value *v = lm__cfg_take(c, key);
  if (!v || v->type == LM_JSON_NULL || (v->type == LM_JSON_NUMBER && v->number == want)) return true;
  if (v->type == LM_JSON_NUMBER) return lm__cfg_fail(c, key, v, "must be %g (%s), got %g", want, why, v->number);
  return lm__cfg_fail(c, key, v, "must be %g (%s), got %s", want, why, lm__json_kind(v));
}

/* ---- Layers ---- */

static const struct {
  const char *class_name;
  lm__from_config_fn from_config;
} classes[] = {
    {"InputLayer", lm__input_layer_from_config},
    {"Dense", lm__dense_from_config},
    {"Activation", lm__activation_from_config},
    {"Dropout", lm__dropout_from_config},
    {"Flatten", lm__flatten_from_config},
    {"Reshape", lm__reshape_from_config},
    {"Concatenate", lm__merge_from_config},
    {"Add", lm__merge_from_config},
    {"Subtract", lm__merge_from_config},
    {"Multiply", lm__merge_from_config},
    {"Average", lm__merge_from_config},
    {"Maximum", lm__merge_from_config},
    {"Embedding", lm__embedding_from_config},
    {"Conv1D", lm__conv_from_config},
    {"Conv2D", lm__conv_from_config},
    {"DepthwiseConv2D", lm__conv_from_config},
    {"SeparableConv1D", lm__conv_from_config},
    {"SeparableConv2D", lm__conv_from_config},
    {"MaxPooling1D", lm__pool_from_config},
    {"MaxPooling2D", lm__pool_from_config},
    {"AveragePooling1D", lm__pool_from_config},
    {"AveragePooling2D", lm__pool_from_config},
    {"GlobalMaxPooling1D", lm__pool_from_config},
    {"GlobalMaxPooling2D", lm__pool_from_config},
    {"GlobalAveragePooling1D", lm__pool_from_config},
    {"GlobalAveragePooling2D", lm__pool_from_config},
    {"BatchNormalization", lm__norm_from_config},
    {"LayerNormalization", lm__norm_from_config},
    {"LSTM", lm__rnn_from_config},
    {"GRU", lm__rnn_from_config},
    {"SimpleRNN", lm__rnn_from_config},
    {"Bidirectional", lm__bidirectional_from_config},
};

static bool is_model_class(const char *cls) {
  return !strcmp(cls, "Functional") || !strcmp(cls, "Model") || !strcmp(cls, "Sequential");
}

/* Keras 3 refuses "/" in names, and lamina keeps names in 127 bytes. */
static bool check_name(lm__loader *L, const lm__json_value *v, const char *what) {
  if (!v || v->type != LM_JSON_STRING)
    return load_fail(L, v, LM_ERROR_VALUE, "%s needs a \"name\" string, got %s", what, lm__json_kind(v));
  if (!v->n || v->n > 127)
    return load_fail(L, v, LM_ERROR_NAME, "%s: the name \"%.40s%s\" must have 1 to 127 bytes, it has %zu", what, v->string,
                     v->n > 40 ? "..." : "", v->n);
  if (strchr(v->string, '/'))
    return load_fail(L, v, LM_ERROR_NAME, "%s: the name \"%s\" contains '/', which Keras does not allow in names", what,
                     v->string);
  return true;
}

/* The layer's dtype: "float32", or a float32 DTypePolicy (Keras 3) / Policy (Keras 2). */
static bool read_dtype(lm__cfg *c) {
  const lm__json_value *v = lm__cfg_take(c, "dtype");
  if (!v || v->type == LM_JSON_NULL) return true;
  const char *name = NULL;
  if (v->type == LM_JSON_STRING) name = v->string;
  else if (v->type == LM_JSON_OBJECT) {
    const lm__json_value *cls = lm__json_get(v, "class_name"), *cfg = lm__json_get(v, "config");
    const lm__json_value *pname = lm__json_get(cfg, "name");
    if (!cls || cls->type != LM_JSON_STRING ||
        (strcmp(cls->string, "DTypePolicy") && strcmp(cls->string, "FloatDTypePolicy") && strcmp(cls->string, "Policy")))
      return lm__cfg_fail(c, "dtype", v, "must be a DTypePolicy");
    for (size_t i = 0; i < v->n; i++) {
      const char *k = v->items[i].key;
      if (strcmp(k, "module") && strcmp(k, "class_name") && strcmp(k, "config") && strcmp(k, "registered_name") &&
          !is_sharing_id(&v->items[i]))
        return lm__cfg_fail(c, "dtype", &v->items[i], "has an unknown field \"%.64s\"%s", k,
                            strcmp(k, "shared_object_id") ? "" : " (shared_object_id must be an integer)");
    }
    if (!pname || pname->type != LM_JSON_STRING || cfg->n != 1)
      return lm__cfg_fail(c, "dtype", v, "must be a DTypePolicy with just a \"name\"");
    name = pname->string;
  } else
    return lm__cfg_fail(c, "dtype", v, "must be a dtype name or a DTypePolicy, got %s", lm__json_kind(v));
  if (strcmp(name, "float32"))
    return lm__cfg_fail(c, "dtype", v, "is \"%.64s\": lamina's layers compute in float32 only", name);
  return true;
}

/* A shape as Keras writes it ([null, 28, 28]); the batch dimension must be null. */
static bool read_batch_shape(lm__loader *L, const char *who, const lm__json_value *v, lm_shape *out) {
  if (!v || v->type != LM_JSON_ARRAY)
    return load_fail(L, v, LM_ERROR_SHAPE, "%s: the input shape must be a list, got %s", who, lm__json_kind(v));
  if (v->n < 1 || v->n > LM_MAX_RANK)
    return load_fail(L, v, LM_ERROR_SHAPE, "%s: the input shape has %zu dimensions; lamina takes 1 to %d, batch included", who,
                     v->n, LM_MAX_RANK);
  if (v->items[0].type != LM_JSON_NULL)
    return load_fail(L, &v->items[0], LM_ERROR_SHAPE,
                     "%s: the batch dimension must be null; lamina does not fix the batch size", who);
  out->rank = (int)v->n - 1;
  int64_t per_sample = 1;
  for (size_t i = 1; i < v->n; i++) {
    const lm__json_value *d = &v->items[i];
    if (d->type == LM_JSON_NULL) {
      out->dim[i - 1] = LM_NONE;
      continue;
    }
    if (d->type != LM_JSON_NUMBER || !d->is_integer || d->integer < 1 || d->integer > INT32_MAX)
      return load_fail(L, d, LM_ERROR_SHAPE, "%s: dimension %zu of the input shape must be null or a positive integer", who, i);
    out->dim[i - 1] = d->integer;
    per_sample *= d->integer;
    if (per_sample > MAX_SAMPLE_ELEMENTS)
      return load_fail(L, v, LM_ERROR_SHAPE, "%s: the input shape has more than 2^40 elements per sample", who);
  }
  return true;
}

bool lm__cfg_batch_shape(lm__cfg *c, const lm__json_value *v, lm_shape *out) {
  char who[160];
  snprintf(who, sizeof who, "layer \"%.128s\" (%s)", c->name, c->cls);
  return lm__cfg_ok(c) && read_batch_shape(c->loader, who, v, out);
}

typedef enum entry_place { IN_FUNCTIONAL, IN_SEQUENTIAL, IN_WRAPPER } entry_place;

static lm_model *model_from_config(lm__loader *L, const char *cls, const lm__json_value *cfg, int depth);

/* Checks the fields of a layer entry that are not its config. */
static bool entry_fields(lm__loader *L, const lm__json_value *e, entry_place place, bool model) {
  for (size_t i = 0; i < e->n; i++) {
    const lm__json_value *f = &e->items[i];
    const char *k = f->key;
    bool ok = !strcmp(k, "class_name") || !strcmp(k, "config") || !strcmp(k, "module") ||
              !strcmp(k, "registered_name") || !strcmp(k, "build_config") || !strcmp(k, "shared_object_id") ||
              (model && !strcmp(k, "compile_config")) ||
              (place == IN_FUNCTIONAL && (!strcmp(k, "name") || !strcmp(k, "inbound_nodes")));
    if (!ok) return load_fail(L, f, LM_ERROR_VALUE, "a layer entry has an unknown field \"%.64s\"", k);
    if (!strcmp(k, "module") && f->type != LM_JSON_NULL && (f->type != LM_JSON_STRING || !strstr(f->string, "keras")))
      return load_fail(L, f, LM_ERROR_VALUE, "module %s%.64s%s is not Keras's: custom layers are not supported",
                       f->type == LM_JSON_STRING ? "\"" : "", f->type == LM_JSON_STRING ? f->string : lm__json_kind(f),
                       f->type == LM_JSON_STRING ? "\"" : "");
    if (!strcmp(k, "build_config") && f->type != LM_JSON_NULL && f->type != LM_JSON_OBJECT)
      return load_fail(L, f, LM_ERROR_VALUE, "build_config must be an object, got %s", lm__json_kind(f));
    if (!strcmp(k, "compile_config") && f->type != LM_JSON_NULL && f->type != LM_JSON_OBJECT)
      return load_fail(L, f, LM_ERROR_VALUE, "compile_config must be an object, got %s", lm__json_kind(f));
    if (!strcmp(k, "shared_object_id") && !is_sharing_id(f))
      return load_fail(L, f, LM_ERROR_VALUE, "shared_object_id must be an integer, got %s", lm__json_kind(f));
  }
  return true;
}

/* Creates the layer of one entry ({"class_name", "config", ...}). For Keras 2's Sequential,
 * *batch_shape gets the first layer's "batch_input_shape" (NULL when it has none). */
static lm_layer *layer_from_entry(lm__loader *L, const lm__json_value *e, entry_place place, int depth,
                                  const lm__json_value **batch_shape) {
  if (batch_shape) *batch_shape = NULL;
  if (e->type != LM_JSON_OBJECT) {
    load_fail(L, e, LM_ERROR_VALUE, "a layer entry must be an object, got %s", lm__json_kind(e));
    return NULL;
  }
  const lm__json_value *cls = lm__json_get(e, "class_name"), *cfg = lm__json_get(e, "config");
  const lm__json_value *reg = lm__json_get(e, "registered_name");
  if (!cls || cls->type != LM_JSON_STRING) {
    load_fail(L, cls ? cls : e, LM_ERROR_VALUE, "a layer entry needs a \"class_name\" string");
    return NULL;
  }
  bool model = is_model_class(cls->string);
  if (!entry_fields(L, e, place, model)) return NULL;
  if (reg && reg->type != LM_JSON_NULL && (reg->type != LM_JSON_STRING || strcmp(reg->string, cls->string))) {
    load_fail(L, reg, LM_ERROR_VALUE, "class %.64s has registered_name %s%.64s%s: custom layers are not supported",
              cls->string, reg->type == LM_JSON_STRING ? "\"" : "", reg->type == LM_JSON_STRING ? reg->string : lm__json_kind(reg),
              reg->type == LM_JSON_STRING ? "\"" : "");
    return NULL;
  }
  if (model) {
    if (place == IN_WRAPPER) {
      load_fail(L, cls, LM_ERROR_VALUE, "a model cannot be wrapped");
      return NULL;
    }
    lm_model *m = model_from_config(L, cls->string, cfg, depth + 1);
    return m ? &m->base : NULL;
  }
  lm__from_config_fn fn = NULL;
  for (size_t i = 0; i < sizeof classes / sizeof classes[0] && !fn; i++)
    if (!strcmp(classes[i].class_name, cls->string)) fn = classes[i].from_config;
  if (!fn) {
    load_fail(L, cls, LM_ERROR_VALUE, "unknown layer class \"%.64s\": lamina cannot build it", cls->string);
    return NULL;
  }
  if (!cfg || cfg->type != LM_JSON_OBJECT) {
    load_fail(L, cfg ? cfg : e, LM_ERROR_VALUE, "the %s entry needs a \"config\" object", cls->string);
    return NULL;
  }
  if (cfg->n > LM__CFG_MAX_KEYS) {
    load_fail(L, cfg, LM_ERROR_VALUE, "the %s config has %zu fields, more than any Keras layer", cls->string, cfg->n);
    return NULL;
  }
  lm__cfg c = {.config = cfg, .cls = cls->string, .name = "", .loader = L, .err = &L->err};
  const lm__json_value *name = lm__cfg_take(&c, "name");
  char who[96];
  snprintf(who, sizeof who, "a %.64s layer", cls->string);
  if (!check_name(L, name, who)) return NULL;
  c.name = name->string;
  bool trainable = true;
  lm__cfg_bool(&c, "trainable", &trainable, true);
  bool input = fn == lm__input_layer_from_config;
  if (!input) {
    read_dtype(&c);
    /* Keras 2 gives the first layer of a Sequential its input shape; elsewhere Keras
     * ignores it, and so does lamina. */
    const lm__json_value *bs = lm__cfg_take(&c, "batch_input_shape");
    if (!bs) bs = lm__cfg_take(&c, "batch_shape");
    if (batch_shape) *batch_shape = bs;
  }
  if (!lm__cfg_ok(&c)) return NULL;
  lm_layer *layer = fn(&c);
  if (!lm__cfg_ok(&c)) return NULL;
  for (size_t i = 0; i < cfg->n; i++) {
    if (!c.used[i]) {
      lm__cfg_fail(&c, NULL, &cfg->items[i], "unsupported field \"%.64s\": lamina's %s has no such option", cfg->items[i].key,
                   cls->string);
      return NULL;
    }
  }
  if (!layer) {
    lm__fail(&L->err, LM_ERROR_MEMORY, "model config: out of memory creating layer \"%s\"", c.name);
    return NULL;
  }
  if (layer->err.code) { /* the constructor refused the arguments */
    lm__fail(&L->err, layer->err.code, "model config: layer \"%s\" (%s): %s%s", c.name, cls->string, layer->err.msg,
             at_(cfg, who, sizeof who));
    return NULL;
  }
  if (!trainable) lm_layer_set_trainable(layer, false);
  lm__session_reserve_name(layer);
  return layer;
}

lm_layer *lm__cfg_layer(lm__cfg *c, const char *key, const lm__json_value *entry) {
  if (!lm__cfg_ok(c)) return NULL;
  if (!entry || entry->type != LM_JSON_OBJECT) {
    lm__cfg_fail(c, key, entry, "must be a layer entry (an object with class_name and config), got %s", lm__json_kind(entry));
    return NULL;
  }
  return layer_from_entry(c->loader, entry, IN_WRAPPER, 0, NULL);
}

/* ---- Functional models ---- */

typedef struct functional_load {
  lm__loader *L;
  int n;
  lm_layer **layers; /* NULL for a mask op */
  const char **names;
  const lm__json_value **entries;
  const lm__json_value **nodes; /* each layer's inbound_nodes */
  int *next;                    /* the next node of each layer to replay */
  int *by_name;                 /* layer indices sorted by name */
  lm_tensor **op_input;         /* a mask op once replayed: the indices it compares with 0 */
  node_format format;
  const char *model_name;
} functional_load;

static functional_load *sort_ctx;
static int cmp_by_name(const void *a, const void *b) {
  return strcmp(sort_ctx->names[*(const int *)a], sort_ctx->names[*(const int *)b]);
}

static int find_layer(const functional_load *F, const char *name) {
  int lo = 0, hi = F->n - 1;
  while (lo <= hi) {
    int mid = lo + (hi - lo) / 2, c = strcmp(F->names[F->by_name[mid]], name);
    if (!c) return F->by_name[mid];
    if (c < 0) lo = mid + 1;
    else hi = mid - 1;
  }
  return -1;
}

/* One input of a node: [layer name, node index, tensor index]. */
typedef struct tensor_ref {
  const lm__json_value *at;
  int layer, node, tensor;
} tensor_ref;

static bool read_ref(functional_load *F, const lm__json_value *h, tensor_ref *r) {
  if (h->type != LM_JSON_ARRAY || h->n < 3 || h->items[0].type != LM_JSON_STRING || h->items[1].type != LM_JSON_NUMBER ||
      !h->items[1].is_integer || h->items[2].type != LM_JSON_NUMBER || !h->items[2].is_integer)
    return load_fail(F->L, h, LM_ERROR_VALUE, "model \"%s\": a tensor reference must be [layer name, node index, tensor index]",
                     F->model_name);
  r->at = h;
  r->layer = find_layer(F, h->items[0].string);
  if (r->layer < 0)
    return load_fail(F->L, h, LM_ERROR_NAME, "model \"%s\" refers to layer \"%.128s\", which is not among its layers",
                     F->model_name, h->items[0].string);
  if (h->items[1].integer < 0 || h->items[1].integer > INT_MAX || h->items[2].integer < 0 || h->items[2].integer > INT_MAX)
    return load_fail(F->L, h, LM_ERROR_VALUE, "model \"%s\": node and tensor indices must be non-negative, got [\"%s\", %lld, %lld]",
                     F->model_name, h->items[0].string, (long long)h->items[1].integer, (long long)h->items[2].integer);
  r->node = (int)h->items[1].integer;
  r->tensor = (int)h->items[2].integer;
  return true;
}

/* A Keras 3 keras tensor: {"class_name": "__keras_tensor__", "config": {"shape", "dtype",
 * "keras_history"}}. The shape and dtype are not needed: the history finds the tensor. */
static bool read_keras_tensor(functional_load *F, const lm__json_value *t, tensor_ref *r) {
  const lm__json_value *cls = lm__json_get(t, "class_name"), *cfg = lm__json_get(t, "config");
  if (!cls || cls->type != LM_JSON_STRING || strcmp(cls->string, "__keras_tensor__") || !cfg || cfg->type != LM_JSON_OBJECT)
    return load_fail(F->L, t, LM_ERROR_VALUE, "model \"%s\": a call argument is not a keras tensor (only tensors are supported)",
                     F->model_name);
  const lm__json_value *h = lm__json_get(cfg, "keras_history");
  if (!h) return load_fail(F->L, cfg, LM_ERROR_VALUE, "model \"%s\": a keras tensor has no keras_history", F->model_name);
  return read_ref(F, h, r);
}

/* Reads a node's input references into refs (at most LM_MAX_TENSORS); -1 on error. */
static int read_node(functional_load *F, int li, const lm__json_value *node, tensor_ref *refs) {
  const char *name = F->names[li];
  node_format fmt = node->type == LM_JSON_ARRAY ? FORMAT_KERAS2 : node->type == LM_JSON_OBJECT ? FORMAT_KERAS3 : FORMAT_UNKNOWN;
  if (!fmt) return load_fail(F->L, node, LM_ERROR_VALUE, "layer \"%s\": a node must be an object or a list", name), -1;
  if (F->format && F->format != fmt)
    return load_fail(F->L, node, LM_ERROR_VALUE, "layer \"%s\": Keras 2 and Keras 3 nodes are mixed in one model", name), -1;
  F->format = fmt;
  int n = 0;
  if (fmt == FORMAT_KERAS3) {
    const lm__json_value *args = lm__json_get(node, "args");
    for (size_t i = 0; i < node->n; i++)
      if (strcmp(node->items[i].key, "args") && strcmp(node->items[i].key, "kwargs"))
        return load_fail(F->L, &node->items[i], LM_ERROR_VALUE, "layer \"%s\": a node has an unknown field \"%.64s\"", name,
                         node->items[i].key), -1;
    if (!args || args->type != LM_JSON_ARRAY || args->n != 1)
      return load_fail(F->L, args ? args : node, LM_ERROR_VALUE,
                       "layer \"%s\": a node's \"args\" must hold one tensor or one list of tensors", name), -1;
    const lm__json_value *a = &args->items[0];
    if (a->type == LM_JSON_OBJECT) return read_keras_tensor(F, a, &refs[0]) ? 1 : -1;
    if (a->type != LM_JSON_ARRAY || a->n < 1)
      return load_fail(F->L, a, LM_ERROR_VALUE, "layer \"%s\": a node's argument must be a tensor or a list of tensors", name), -1;
    if (a->n > LM_MAX_TENSORS)
      return load_fail(F->L, a, LM_ERROR_VALUE, "layer \"%s\" is called on %zu tensors; lamina takes at most %d", name, a->n,
                       LM_MAX_TENSORS), -1;
    for (size_t i = 0; i < a->n; i++)
      if (!read_keras_tensor(F, &a->items[i], &refs[n++])) return -1;
    return n;
  }
  /* Keras 2: [[name, node, tensor, {kwargs}], ...] */
  if (node->n < 1 || node->n > LM_MAX_TENSORS)
    return load_fail(F->L, node, LM_ERROR_VALUE, "layer \"%s\": a node takes 1 to %d tensors, got %zu", name, LM_MAX_TENSORS,
                     node->n), -1;
  for (size_t i = 0; i < node->n; i++) {
    const lm__json_value *h = &node->items[i];
    if (h->type != LM_JSON_ARRAY || (h->n != 3 && h->n != 4))
      return load_fail(F->L, h, LM_ERROR_VALUE, "layer \"%s\": a Keras 2 node input must be [name, node, tensor, {kwargs}]", name), -1;
    if (!read_ref(F, h, &refs[n++])) return -1;
  }
  return n;
}

/* The node a reference means among the layer's own nodes, or -1 for an impossible one. In
 * Keras 2 a nested model's node 0 is the one linking its own inputs to outputs, which
 * lamina's models do not have; so is it in Keras 3's input_layers / output_layers for a
 * nested Functional. An InputLayer has its one node. */
static int own_node_index(const functional_load *F, const tensor_ref *r, bool endpoint) {
  const lm_layer *layer = F->layers[r->layer];
  if (lm__is_input_layer(layer)) return F->format == FORMAT_KERAS2 ? 0 : r->node == 0 ? 0 : -1;
  bool shifted = layer->model && (F->format == FORMAT_KERAS2 || (endpoint && !layer->model->sequential));
  return r->node - shifted;
}

/* The tensor a reference names: NULL while its node has not been replayed yet (*ready
 * false), or on an error. */
static lm_tensor *resolve(functional_load *F, const tensor_ref *r, bool endpoint, bool *ready) {
  const lm_layer *layer = F->layers[r->layer];
  *ready = false;
  if (!layer) {
    load_fail(F->L, r->at, LM_ERROR_VALUE, "model \"%s\": the output of op \"%s\" can serve as a mask only", F->model_name,
              F->names[r->layer]);
    return NULL;
  }
  int k = own_node_index(F, r, endpoint);
  if (k < 0) {
    load_fail(F->L, r->at, LM_ERROR_VALUE, "model \"%s\": layer \"%s\" has no node %d%s", F->model_name, layer->name, r->node,
              layer->model ? " (a nested model's node 0 is its own, in this layout)" : "");
    return NULL;
  }
  if (k >= layer->n_nodes) return NULL;
  const lm_node *node = layer->nodes[k];
  if (r->tensor >= node->n_out) {
    load_fail(F->L, r->at, LM_ERROR_VALUE, "model \"%s\": node %d of layer \"%s\" has %d output(s), no output %d", F->model_name,
              r->node, layer->name, node->n_out, r->tensor);
    return NULL;
  }
  *ready = true;
  return node->outputs[r->tensor];
}

/* Whether x is what an Embedding with mask_zero of this model is called on. */
static bool embedding_mask_of(const functional_load *F, const lm_tensor *x) {
  for (int j = 0; j < F->n; j++) {
    const lm_layer *layer = F->layers[j];
    const lm__json_value *mz = lm__json_get(lm__json_get(F->entries[j], "config"), "mask_zero");
    if (!layer || strcmp(layer->vt->class_name, "Embedding") || !mz || mz->type != LM_JSON_BOOL || !mz->boolean) continue;
    for (int k = 0; k < layer->n_nodes; k++)
      if (layer->nodes[k]->inputs[0] == x) return true;
  }
  return false;
}

/* A node's call arguments: the training flag, and a mask. lamina's layers carry masks with
 * their tensors, so an explicit mask is accepted only where it is the one lamina derives
 * anyway: Keras 3 writes the mask of an Embedding(mask_zero=True) as a NotEqual(indices, 0)
 * op. 1: fine, 0: the mask op has not run yet, -1: error. */
static int check_kwargs(functional_load *F, const lm__json_value *kw, const char *layer) {
  if (kw->type != LM_JSON_OBJECT)
    return load_fail(F->L, kw, LM_ERROR_VALUE, "layer \"%s\": call arguments must be an object, got %s", layer, lm__json_kind(kw)), -1;
  for (size_t i = 0; i < kw->n; i++) {
    const lm__json_value *a = &kw->items[i];
    if (!strcmp(a->key, "training") && (a->type == LM_JSON_BOOL || a->type == LM_JSON_NULL)) continue;
    if (!strcmp(a->key, "mask") && a->type == LM_JSON_NULL) continue;
    if (!strcmp(a->key, "mask") && a->type == LM_JSON_OBJECT && F->format == FORMAT_KERAS3) {
      tensor_ref r = {0};
      if (!read_keras_tensor(F, a, &r)) return -1;
      if (F->layers[r.layer] || r.node || r.tensor)
        return load_fail(F->L, a, LM_ERROR_VALUE,
                         "layer \"%s\": an explicit mask is supported only as an Embedding's mask_zero mask (a NotEqual op)",
                         layer), -1;
      if (!F->op_input[r.layer]) return 0;
      if (!embedding_mask_of(F, F->op_input[r.layer]))
        return load_fail(F->L, a, LM_ERROR_VALUE,
                         "layer \"%s\": its mask \"%s\" does not compare the indices of an Embedding with mask_zero", layer,
                         F->names[r.layer]), -1;
      continue;
    }
    return load_fail(F->L, a, LM_ERROR_VALUE, "layer \"%s\": the call argument \"%.64s\" (%s) is not supported", layer, a->key,
                     lm__json_kind(a)), -1;
  }
  return 1;
}

static bool check_outputs_size(functional_load *F, const lm_layer *layer, lm_tensors out) {
  for (int k = 0; k < out.n; k++) {
    const lm_shape *s = &out.t[k]->shape;
    int64_t n = 1;
    for (int d = 1; d < s->rank; d++) {
      if (s->dim[d] <= 0) continue;
      if (n > MAX_SAMPLE_ELEMENTS / s->dim[d])
        return load_fail(F->L, NULL, LM_ERROR_SHAPE, "model \"%s\": output %d of layer \"%s\" has more than 2^40 elements per sample",
                         F->model_name, k, layer->name);
      n *= s->dim[d];
    }
  }
  return true;
}

/* Keras 3's NotEqual(indices, 0): the mask of an Embedding with mask_zero, made explicit. */
static bool is_mask_op(const lm__json_value *e) {
  const lm__json_value *cls = lm__json_get(e, "class_name");
  return cls && cls->type == LM_JSON_STRING && !strcmp(cls->string, "NotEqual");
}

/* Another of Keras's operations (module keras.src.ops...): Keras 3 writes them into a
 * functional configuration where a layer's compute_mask used them. */
static bool is_other_op(const lm__json_value *e) {
  const lm__json_value *module = lm__json_get(e, "module");
  return module && module->type == LM_JSON_STRING && !strncmp(module->string, "keras.src.ops.", 14);
}

static bool mask_op_entry(functional_load *F, int i, const lm__json_value *e) {
  const lm__json_value *cfg = lm__json_get(e, "config"), *module = lm__json_get(e, "module"),
                       *reg = lm__json_get(e, "registered_name"), *name = lm__json_get(cfg, "name"),
                       *entry_name = lm__json_get(e, "name"), *nodes = lm__json_get(e, "inbound_nodes");
  for (size_t k = 0; k < e->n; k++) {
    const char *f = e->items[k].key;
    if (strcmp(f, "module") && strcmp(f, "class_name") && strcmp(f, "config") && strcmp(f, "registered_name") &&
        strcmp(f, "name") && strcmp(f, "inbound_nodes"))
      return load_fail(F->L, &e->items[k], LM_ERROR_VALUE, "a NotEqual op has an unknown field \"%.64s\"", f);
  }
  if ((module && (module->type != LM_JSON_STRING || strcmp(module->string, "keras.src.ops.numpy"))) ||
      (reg && reg->type != LM_JSON_NULL && (reg->type != LM_JSON_STRING || strcmp(reg->string, "NotEqual"))))
    return load_fail(F->L, e, LM_ERROR_VALUE, "a NotEqual entry that is not Keras's op");
  if (!cfg || cfg->type != LM_JSON_OBJECT || cfg->n != 1 || !check_name(F->L, name, "a NotEqual op")) {
    if (!F->L->err.code) load_fail(F->L, cfg ? cfg : e, LM_ERROR_VALUE, "a NotEqual op's config holds just its name");
    return false;
  }
  if (!entry_name || entry_name->type != LM_JSON_STRING || strcmp(entry_name->string, name->string))
    return load_fail(F->L, entry_name ? entry_name : e, LM_ERROR_NAME, "the entry of op \"%s\" must have \"name\": \"%s\"",
                     name->string, name->string);
  if (!nodes || nodes->type != LM_JSON_ARRAY || nodes->n != 1)
    return load_fail(F->L, nodes ? nodes : e, LM_ERROR_VALUE, "op \"%s\" needs exactly one inbound node", name->string);
  F->names[i] = name->string;
  F->nodes[i] = nodes;
  return true;
}

/* Replays the mask op: args [indices, 0]. */
static int replay_mask_op(functional_load *F, int li, const lm__json_value *node) {
  const lm__json_value *args = lm__json_get(node, "args"), *kwargs = lm__json_get(node, "kwargs");
  if (node->type != LM_JSON_OBJECT || !args || args->type != LM_JSON_ARRAY || args->n != 2 ||
      args->items[1].type != LM_JSON_NUMBER || args->items[1].number != 0 || (kwargs && (kwargs->type != LM_JSON_OBJECT || kwargs->n)))
    return load_fail(F->L, node, LM_ERROR_VALUE, "op \"%s\": only NotEqual(indices, 0), a mask_zero mask, is supported",
                     F->names[li]), -1;
  tensor_ref r = {0};
  if (!read_keras_tensor(F, &args->items[0], &r)) return -1;
  F->format = FORMAT_KERAS3;
  bool ready;
  lm_tensor *x = resolve(F, &r, false, &ready);
  if (F->L->err.code) return -1;
  if (!ready) return 0;
  F->op_input[li] = x;
  return 1;
}

/* Replays the next node of layer li if its inputs exist: 1 done, 0 not yet, -1 error. */
static int replay_node(functional_load *F, int li) {
  const lm__json_value *node = &F->nodes[li]->items[F->next[li]];
  if (!F->layers[li]) return replay_mask_op(F, li, node);
  tensor_ref refs[LM_MAX_TENSORS];
  int n = read_node(F, li, node, refs);
  if (n < 0) return -1;
  lm_tensors in = {.n = n};
  for (int i = 0; i < n; i++) {
    bool ready;
    in.t[i] = resolve(F, &refs[i], false, &ready);
    if (F->L->err.code) return -1;
    if (!ready) return 0;
  }
  lm_layer *layer = F->layers[li];
  if (F->format == FORMAT_KERAS3) {
    const lm__json_value *kw = lm__json_get(node, "kwargs");
    int r = kw ? check_kwargs(F, kw, layer->name) : 1;
    if (r <= 0) return r;
  } else {
    for (size_t i = 0; i < node->n; i++)
      if (node->items[i].n == 4 && check_kwargs(F, &node->items[i].items[3], layer->name) < 0) return -1;
  }
  lm_tensors out = lm_call_outputs(layer, in);
  if (out.t[0]->err.code) {
    char loc[64];
    lm__fail(&F->L->err, out.t[0]->err.code, "model config: model \"%s\": calling layer \"%s\" (node %d): %s%s", F->model_name,
             layer->name, F->next[li], out.t[0]->err.msg, at_(node, loc, sizeof loc));
    return -1;
  }
  return check_outputs_size(F, layer, out) ? 1 : -1;
}

/* input_layers / output_layers: one [name, node, tensor] or a list of them. */
static bool read_endpoints(functional_load *F, const lm__json_value *v, const char *what, lm_tensors *out) {
  out->n = 0;
  if (!v || v->type != LM_JSON_ARRAY)
    return load_fail(F->L, v, LM_ERROR_VALUE, "model \"%s\" needs %s as a list, got %s", F->model_name, what, lm__json_kind(v));
  bool single = v->n == 3 && v->items[0].type == LM_JSON_STRING;
  size_t n = single ? 1 : v->n;
  if (n < 1 || n > LM_MAX_TENSORS)
    return load_fail(F->L, v, LM_ERROR_VALUE, "model \"%s\": %s must name 1 to %d tensors, got %zu", F->model_name, what,
                     LM_MAX_TENSORS, n);
  for (size_t i = 0; i < n; i++) {
    tensor_ref r = {0};
    if (!read_ref(F, single ? v : &v->items[i], &r)) return false;
    bool ready;
    lm_tensor *t = resolve(F, &r, true, &ready);
    if (F->L->err.code) return false;
    if (!ready)
      return load_fail(F->L, r.at, LM_ERROR_GRAPH, "model \"%s\": %s names node %d of layer \"%s\", which was never created",
                       F->model_name, what, r.node, F->names[r.layer]);
    out->t[out->n++] = t;
  }
  return true;
}

static lm_model *functional_from_config(lm__loader *L, const lm__json_value *cfg, int depth) {
  const lm__json_value *name = lm__json_get(cfg, "name"), *trainable = lm__json_get(cfg, "trainable");
  const lm__json_value *layers = lm__json_get(cfg, "layers");
  for (size_t i = 0; i < cfg->n; i++) {
    const char *k = cfg->items[i].key;
    if (strcmp(k, "name") && strcmp(k, "trainable") && strcmp(k, "layers") && strcmp(k, "input_layers") &&
        strcmp(k, "output_layers")) {
      load_fail(L, &cfg->items[i], LM_ERROR_VALUE, "a Functional model's config has an unknown field \"%.64s\"", k);
      return NULL;
    }
  }
  if (name && name->type != LM_JSON_NULL && !check_name(L, name, "a Functional model")) return NULL;
  const char *model_name = name && name->type == LM_JSON_STRING ? name->string : "(unnamed)";
  if (trainable && trainable->type != LM_JSON_BOOL && trainable->type != LM_JSON_NULL) {
    load_fail(L, trainable, LM_ERROR_VALUE, "model \"%s\": trainable must be true or false", model_name);
    return NULL;
  }
  if (!layers || layers->type != LM_JSON_ARRAY) {
    load_fail(L, layers ? layers : cfg, LM_ERROR_VALUE, "model \"%s\" needs a \"layers\" list", model_name);
    return NULL;
  }
  if (layers->n > (size_t)L->lim.max_layers) {
    load_fail(L, layers, LM_ERROR_VALUE, "model \"%s\" has %zu layers, more than the limit of %d", model_name, layers->n,
              L->lim.max_layers);
    return NULL;
  }
  functional_load F = {.L = L, .n = (int)layers->n, .model_name = model_name};
  size_t n1 = layers->n + 1;
  F.layers = lm__calloc(n1, sizeof *F.layers);
  F.names = lm__calloc(n1, sizeof *F.names);
  F.entries = lm__calloc(n1, sizeof *F.entries);
  F.nodes = lm__calloc(n1, sizeof *F.nodes);
  F.next = lm__calloc(n1, sizeof *F.next);
  F.by_name = lm__calloc(n1, sizeof *F.by_name);
  F.op_input = lm__calloc(n1, sizeof *F.op_input);
  lm_model *model = NULL;
  if (!F.layers || !F.names || !F.entries || !F.nodes || !F.next || !F.by_name || !F.op_input) {
    lm__fail(&L->err, LM_ERROR_MEMORY, "model config: out of memory");
    goto done;
  }
  long total_nodes = 0;
  for (int i = 0; i < F.n; i++) {
    const lm__json_value *e = &layers->items[i];
    F.entries[i] = e;
    F.by_name[i] = i;
    if (e->type == LM_JSON_OBJECT && is_mask_op(e)) {
      if (!mask_op_entry(&F, i, e)) goto done;
      total_nodes++;
      continue;
    }
    if (e->type == LM_JSON_OBJECT && is_other_op(e)) {
      const lm__json_value *cls = lm__json_get(e, "class_name"), *op_name = lm__json_get(e, "name");
      load_fail(L, e, LM_ERROR_VALUE,
                "model \"%s\": op \"%.127s\" (%.64s): Keras computes a mask with it (as for a merge of masked "
                "sequences); of Keras's mask ops lamina rebuilds only NotEqual, the mask of an Embedding with mask_zero",
                model_name, op_name && op_name->type == LM_JSON_STRING ? op_name->string : "?",
                cls && cls->type == LM_JSON_STRING ? cls->string : "?");
      goto done;
    }
    if (!(F.layers[i] = layer_from_entry(L, e, IN_FUNCTIONAL, depth, NULL))) goto done;
    F.names[i] = F.layers[i]->name;
    const lm__json_value *entry_name = lm__json_get(e, "name"), *nodes = lm__json_get(e, "inbound_nodes");
    if (!entry_name || entry_name->type != LM_JSON_STRING || strcmp(entry_name->string, F.layers[i]->name)) {
      load_fail(L, entry_name ? entry_name : e, LM_ERROR_NAME, "model \"%s\": the entry of layer \"%s\" must have \"name\": \"%s\"",
                model_name, F.layers[i]->name, F.layers[i]->name);
      goto done;
    }
    if (!nodes || nodes->type != LM_JSON_ARRAY) {
      load_fail(L, nodes ? nodes : e, LM_ERROR_VALUE, "model \"%s\": layer \"%s\" needs an \"inbound_nodes\" list", model_name,
                F.layers[i]->name);
      goto done;
    }
    if (lm__is_input_layer(F.layers[i]) && nodes->n) {
      load_fail(L, nodes, LM_ERROR_VALUE, "model \"%s\": InputLayer \"%s\" cannot have inbound nodes", model_name, F.layers[i]->name);
      goto done;
    }
    total_nodes += (long)nodes->n;
    if (total_nodes > L->lim.max_nodes) {
      load_fail(L, nodes, LM_ERROR_VALUE, "model \"%s\" has more than %d layer calls (the limit)", model_name, L->lim.max_nodes);
      goto done;
    }
    F.nodes[i] = nodes;
  }
  sort_ctx = &F;
  qsort(F.by_name, (size_t)F.n, sizeof *F.by_name, cmp_by_name);
  for (int i = 1; i < F.n; i++) {
    if (!strcmp(F.names[F.by_name[i - 1]], F.names[F.by_name[i]])) {
      load_fail(L, F.entries[F.by_name[i]], LM_ERROR_NAME, "model \"%s\" has two layers named \"%s\"", model_name,
                F.names[F.by_name[i]]);
      goto done;
    }
  }
  /* Replay the nodes as Keras does: pass after pass over the layers in order, each layer's
   * nodes in order until one has inputs that do not exist yet. */
  for (long left = total_nodes; left > 0;) {
    bool progress = false;
    for (int i = 0; i < F.n; i++) {
      while (F.next[i] < (int)F.nodes[i]->n) {
        int r = replay_node(&F, i);
        if (r < 0) goto done;
        if (!r) break;
        F.next[i]++, left--, progress = true;
      }
    }
    if (progress) continue;
    for (int i = 0; i < F.n; i++) {
      if (F.next[i] < (int)F.nodes[i]->n) {
        load_fail(L, &F.nodes[i]->items[F.next[i]], LM_ERROR_GRAPH,
                  "model \"%s\": node %d of layer \"%s\" can never be called: its inputs come from nodes that are never "
                  "created (a cycle in inbound_nodes, or a node index past the end)",
                  model_name, F.next[i], F.names[i]);
        break;
      }
    }
    goto done;
  }
  lm_tensors inputs, outputs;
  if (!read_endpoints(&F, lm__json_get(cfg, "input_layers"), "input_layers", &inputs) ||
      !read_endpoints(&F, lm__json_get(cfg, "output_layers"), "output_layers", &outputs))
    goto done;
  lm_model *m = lm_model_new_opts(inputs, outputs, (lm_model_opts){.name = name && name->type == LM_JSON_STRING ? name->string : NULL});
  if (!m) {
    lm__fail(&L->err, LM_ERROR_MEMORY, "model config: out of memory");
    goto done;
  }
  if (m->base.err.code) {
    lm__fail(&L->err, m->base.err.code, "model config: model \"%s\": %s", model_name, m->base.err.msg);
    goto done;
  }
  if (trainable && trainable->type == LM_JSON_BOOL && !trainable->boolean) lm_layer_set_trainable(&m->base, false);
  lm__session_reserve_name(&m->base);
  model = m;
done:
  free(F.layers);
  free(F.names);
  free(F.entries);
  free(F.nodes);
  free(F.next);
  free(F.by_name);
  free(F.op_input);
  return model;
}

/* ---- Sequential models ---- */

static lm_model *sequential_from_config(lm__loader *L, const lm__json_value *cfg, int depth) {
  const lm__json_value *name = NULL, *trainable = NULL, *layers = cfg, *build_shape = NULL;
  if (cfg->type == LM_JSON_OBJECT) { /* Keras 2.2 and older wrote the bare list */
    layers = lm__json_get(cfg, "layers");
    name = lm__json_get(cfg, "name");
    trainable = lm__json_get(cfg, "trainable");
    build_shape = lm__json_get(cfg, "build_input_shape");
    lm__cfg c = {.config = cfg, .cls = "Sequential", .name = name && name->type == LM_JSON_STRING ? name->string : "",
                 .loader = L, .err = &L->err};
    if (cfg->n > LM__CFG_MAX_KEYS) {
      load_fail(L, cfg, LM_ERROR_VALUE, "a Sequential config has too many fields");
      return NULL;
    }
    lm__cfg_take(&c, "layers"), lm__cfg_take(&c, "name"), lm__cfg_take(&c, "trainable"), lm__cfg_take(&c, "build_input_shape");
    if (!read_dtype(&c)) return NULL;
    for (size_t i = 0; i < cfg->n; i++)
      if (!c.used[i]) {
        load_fail(L, &cfg->items[i], LM_ERROR_VALUE, "a Sequential model's config has an unknown field \"%.64s\"", cfg->items[i].key);
        return NULL;
      }
  }
  if (name && name->type != LM_JSON_NULL && !check_name(L, name, "a Sequential model")) return NULL;
  const char *model_name = name && name->type == LM_JSON_STRING ? name->string : "(unnamed)";
  if (trainable && trainable->type != LM_JSON_BOOL && trainable->type != LM_JSON_NULL) {
    load_fail(L, trainable, LM_ERROR_VALUE, "model \"%s\": trainable must be true or false", model_name);
    return NULL;
  }
  if (!layers || layers->type != LM_JSON_ARRAY) {
    load_fail(L, layers ? layers : cfg, LM_ERROR_VALUE, "Sequential \"%s\" needs a \"layers\" list", model_name);
    return NULL;
  }
  if (layers->n > (size_t)L->lim.max_layers) {
    load_fail(L, layers, LM_ERROR_VALUE, "model \"%s\" has %zu layers, more than the limit of %d", model_name, layers->n,
              L->lim.max_layers);
    return NULL;
  }
  lm_model *m = lm_sequential_new((lm_model_opts){.name = name && name->type == LM_JSON_STRING ? name->string : NULL});
  if (!m) {
    lm__fail(&L->err, LM_ERROR_MEMORY, "model config: out of memory");
    return NULL;
  }
  for (size_t i = 0; i < layers->n; i++) {
    const lm__json_value *batch_shape = NULL;
    lm_layer *layer = layer_from_entry(L, &layers->items[i], IN_SEQUENTIAL, depth, &batch_shape);
    if (!layer) return NULL;
    if (lm__is_input_layer(layer) && i > 0) {
      load_fail(L, &layers->items[i], LM_ERROR_VALUE, "Sequential \"%s\": InputLayer \"%s\" must come first", model_name, layer->name);
      return NULL;
    }
    if (i == 0 && !lm__is_input_layer(layer)) {
      /* The input shape comes from Keras 2's batch_input_shape, as tf.keras names it, or
       * from Keras 3's build_input_shape. */
      const lm__json_value *shape = batch_shape ? batch_shape : build_shape;
      if (!shape || shape->type == LM_JSON_NULL) {
        load_fail(L, &layers->items[0], LM_ERROR_SHAPE,
                  "Sequential \"%s\" has no input shape (no InputLayer, batch_input_shape or build_input_shape)", model_name);
        return NULL;
      }
      lm_shape s;
      if (!read_batch_shape(L, "Sequential input", shape, &s)) return NULL;
      char input_name[160];
      snprintf(input_name, sizeof input_name, "%s_input", layer->name);
      /* Embedding indices: Keras casts the float input, lamina wants int32 from the start. */
      bool ints = !strcmp(layer->vt->class_name, "Embedding");
      lm_layer *in = lm_input_layer_new(s, (lm_input_opts){.name = batch_shape && strlen(input_name) < 128 ? input_name : NULL,
                                                           .dtype = ints ? LM_INT32 : LM_FLOAT32});
      if (!in || in->err.code || lm_sequential_add(m, in)) {
        load_fail(L, shape, LM_ERROR_SHAPE, "Sequential \"%s\": cannot make its input: %s", model_name,
                  in ? (in->err.code ? in->err.msg : m->base.err.msg) : "out of memory");
        return NULL;
      }
      lm__session_reserve_name(in);
    }
    if (lm_sequential_add(m, layer)) {
      load_fail(L, &layers->items[i], m->base.err.code, "Sequential \"%s\": adding layer \"%s\": %s", model_name, layer->name,
                m->base.err.msg);
      return NULL;
    }
    if (m->n_outputs) {
      functional_load F = {.L = L, .model_name = model_name};
      if (!check_outputs_size(&F, layer, lm_model_outputs(m))) return NULL;
    }
  }
  if (!m->n_inputs) {
    if (!build_shape || build_shape->type == LM_JSON_NULL) {
      load_fail(L, cfg, LM_ERROR_SHAPE, "Sequential \"%s\" has no layers and no input shape", model_name);
      return NULL;
    }
    lm_shape s;
    if (!read_batch_shape(L, "Sequential input", build_shape, &s)) return NULL;
    lm_layer *in = lm_input_layer_new(s, (lm_input_opts){0});
    if (!in || in->err.code || lm_sequential_add(m, in)) {
      load_fail(L, build_shape, LM_ERROR_SHAPE, "Sequential \"%s\": cannot make its input", model_name);
      return NULL;
    }
  }
  if (trainable && trainable->type == LM_JSON_BOOL && !trainable->boolean) lm_layer_set_trainable(&m->base, false);
  lm__session_reserve_name(&m->base);
  return m;
}

static lm_model *model_from_config(lm__loader *L, const char *cls, const lm__json_value *cfg, int depth) {
  if (depth > LM__CFG_MAX_NESTING) {
    load_fail(L, cfg, LM_ERROR_VALUE, "models nested more than %d deep", LM__CFG_MAX_NESTING);
    return NULL;
  }
  if (!cfg || (cfg->type != LM_JSON_OBJECT && !(cfg->type == LM_JSON_ARRAY && !strcmp(cls, "Sequential")))) {
    load_fail(L, cfg, LM_ERROR_VALUE, "a %s model needs a \"config\" object, got %s", cls, lm__json_kind(cfg));
    return NULL;
  }
  if (!strcmp(cls, "Sequential")) return sequential_from_config(L, cfg, depth);
  return functional_from_config(L, cfg, depth);
}

lm_model *lm__model_from_config_limits(const lm__json_value *root, const lm__config_limits *limits) {
  lm__loader L = {0};
  if (limits) L.lim = *limits;
  if (L.lim.max_weights <= 0) L.lim.max_weights = (int64_t)1 << 31;
  if (L.lim.max_layers <= 0) L.lim.max_layers = 10000;
  if (L.lim.max_nodes <= 0) L.lim.max_nodes = 20000;
  lm_model *m = NULL;
  int64_t budget = lm__set_weight_budget(L.lim.max_weights);
  if (!root || root->type != LM_JSON_OBJECT) load_fail(&L, root, LM_ERROR_VALUE, "the configuration must be an object, got %s", lm__json_kind(root));
  else if (lm__json_get(root, "class_name")) {
    const lm__json_value *cls = lm__json_get(root, "class_name"), *reg = lm__json_get(root, "registered_name");
    for (size_t i = 0; i < root->n; i++) {
      const char *k = root->items[i].key;
      if (strcmp(k, "module") && strcmp(k, "class_name") && strcmp(k, "config") && strcmp(k, "registered_name") &&
          strcmp(k, "build_config") && strcmp(k, "compile_config") && strcmp(k, "keras_version") && strcmp(k, "backend")) {
        load_fail(&L, &root->items[i], LM_ERROR_VALUE, "the model has an unknown field \"%.64s\"", k);
        break;
      }
    }
    if (L.err.code) {
    } else if (cls->type != LM_JSON_STRING || !is_model_class(cls->string))
      load_fail(&L, cls, LM_ERROR_VALUE, "class_name must be \"Functional\", \"Model\" or \"Sequential\", got %s%.64s%s",
                cls->type == LM_JSON_STRING ? "\"" : "", cls->type == LM_JSON_STRING ? cls->string : lm__json_kind(cls),
                cls->type == LM_JSON_STRING ? "\"" : "");
    else if (reg && reg->type != LM_JSON_NULL && (reg->type != LM_JSON_STRING || strcmp(reg->string, cls->string)))
      load_fail(&L, reg, LM_ERROR_VALUE, "registered_name must be null or \"%s\": custom models are not supported", cls->string);
    else
      m = model_from_config(&L, cls->string, lm__json_get(root, "config"), 0);
  } else if (lm__json_get(root, "layers"))
    m = model_from_config(&L, lm__json_get(root, "input_layers") ? "Functional" : "Sequential", root, 0);
  else
    load_fail(&L, root, LM_ERROR_VALUE, "neither a model (class_name and config) nor a model's config (layers)");
  lm__set_weight_budget(budget);
  if (m && !L.err.code) return m;
  if (!L.err.code) lm__fail(&L.err, LM_ERROR_MEMORY, "model config: out of memory");
  lm_model *bad = lm__model_error(NULL, L.err.code, "%s", L.err.msg);
  lm__fail(NULL, L.err.code, "%s", L.err.msg);
  return bad;
}

lm_model *lm__model_from_config(const lm__json_value *root) { return lm__model_from_config_limits(root, NULL); }

/* ---- The public API (include/lamina/saving.h) ---- */

char *lm_model_to_json(const lm_model *model) {
  char *out = NULL;
  return lm__model_config_json(model, &out) == LM_OK ? out : NULL;
}

lm_model *lm_model_from_json(const char *json) {
  lm_error err = {0};
  lm__json_doc *doc = json ? lm__json_parse(json, strlen(json), NULL, &err) : NULL;
  if (!json) lm__fail(&err, LM_ERROR_VALUE, "lm_model_from_json: the text is NULL");
  if (!doc) {
    lm_model *bad = lm__model_error(NULL, err.code, "model config: %s", err.msg);
    lm__fail(NULL, err.code, "model config: %s", err.msg);
    return bad;
  }
  lm_model *m = lm__model_from_config(lm__json_root(doc));
  lm__json_free(doc);
  return m;
}
