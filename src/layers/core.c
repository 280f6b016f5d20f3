/* Core layers: Input, Dense, Activation, Dropout, Flatten, Reshape. */
#include "io/model_config.h"
#include <math.h>

/* ---- InputLayer ---- */
static const lm_layer_vt input_vt = {.class_name = "InputLayer", .prefix = "input", .one_based = true};

bool lm__is_input_layer(const lm_layer *layer) { return layer->vt == &input_vt; }

lm_layer *lm_input_layer_new(lm_shape shape, lm_input_opts opts) {
  if (shape.rank < 0 || shape.rank + 1 > LM_MAX_RANK)
    return lm__layer_error("InputLayer", LM_ERROR_SHAPE, "Input: rank %d is outside 0..%d", shape.rank,
                           LM_MAX_RANK - 1);
  for (int i = 0; i < shape.rank; i++)
    if (shape.dim[i] == 0 || shape.dim[i] < LM_NONE)
      return lm__layer_error("InputLayer", LM_ERROR_SHAPE, "Input: dimension %d is %lld; use a positive size or LM_NONE",
                             i, (long long)shape.dim[i]);
  if (opts.dtype != LM_FLOAT32 && opts.dtype != LM_INT32)
    return lm__layer_error("InputLayer", LM_ERROR_VALUE, "Input: unknown dtype %d", (int)opts.dtype);
  lm_layer *layer = lm__layer_new(sizeof(lm_layer), &input_vt, opts.name);
  lm_node *node = lm__calloc(1, sizeof *node);
  lm_tensor *t = lm__calloc(1, sizeof *t);
  if (node) node->outputs = lm__calloc(1, sizeof *node->outputs);
  if (!layer || !t || !node || !node->outputs ||
      lm__grow(&layer->nodes, &layer->cap_nodes, 1, sizeof *layer->nodes)) {
    if (node) free(node->outputs);
    free(node);
    free(t);
    if (layer) lm__fail(&layer->err, LM_ERROR_MEMORY, "Input: out of memory");
    return layer;
  }
  t->shape.rank = shape.rank + 1;
  t->shape.dim[0] = LM_NONE;
  for (int i = 0; i < shape.rank; i++) t->shape.dim[i + 1] = shape.dim[i];
  t->dtype = opts.dtype;
  t->node = node;
  lm__session_track_tensor(t);
  node->layer = layer;
  node->n_out = 1;
  node->outputs[0] = t;
  layer->nodes[layer->n_nodes++] = node;
  layer->built = true;
  return layer;
}

lm_tensor *lm_input_new(lm_shape shape, lm_input_opts opts) {
  lm_layer *layer = lm_input_layer_new(shape, opts);
  if (layer->err.code) return lm__tensor_error(&layer->err);
  return layer->nodes[0]->outputs[0];
}

/* ---- Dense ---- */
typedef struct dense_layer {
  lm_layer base;
  int units;
  lm_dense_opts opts;
} dense_layer;

static lm_status dense_build(lm_layer *layer, const lm_shape *in, const lm_dtype *dt, int n) {
  dense_layer *d = (dense_layer *)layer;
  char buf[96];
  if (in[0].rank < 2 || in[0].dim[in[0].rank - 1] < 0)
    return lm__fail(&layer->err, LM_ERROR_SHAPE,
                    "Layer \"%s\" (Dense): the last dimension of the inputs should be defined, got input shape %s",
                    layer->name, lm_shape_format(in[0], buf, sizeof buf));
  int64_t features = in[0].dim[in[0].rank - 1];
  if (!lm__layer_add_weight(layer, "kernel", LM_SHAPE(features, d->units), d->opts.kernel_initializer,
                            LM_GLOROT_UNIFORM, true))
    return layer->err.code;
  if (!d->opts.no_bias &&
      !lm__layer_add_weight(layer, "bias", LM_SHAPE(d->units), d->opts.bias_initializer, LM_ZEROS, true))
    return layer->err.code;
  return LM_OK;
}

static int dense_emit(lm_layer *layer, lm_graph *g, const int *in, int n, int *out) {
  int args[3] = {in[0], lm__graph_param(g, layer->weights[0]), -1};
  int n_args = 2;
  if (layer->n_weights > 1) args[n_args++] = lm__graph_param(g, layer->weights[1]);
  int z = lm__emit_activated(g, &lm__op_dense, args, n_args, (lm_attrs){0}, layer->activation);
  out[0] = z;
  return z < 0 ? -1 : 1;
}

static void dense_config(const lm_layer *layer, lm_json *j) {
  const dense_layer *d = (const dense_layer *)layer;
  lm__json_kv_int(j, "units", d->units);
  lm__json_kv_activation(j, "activation", layer->activation);
  lm__json_kv_bool(j, "use_bias", !d->opts.no_bias);
  lm__json_kv_initializer(j, "kernel_initializer", d->opts.kernel_initializer, LM_GLOROT_UNIFORM);
  lm__json_kv_initializer(j, "bias_initializer", d->opts.bias_initializer, LM_ZEROS);
  lm__json_kv_null(j, "kernel_regularizer");
  lm__json_kv_null(j, "bias_regularizer");
  lm__json_kv_null(j, "kernel_constraint");
  lm__json_kv_null(j, "bias_constraint");
  lm__json_kv_null(j, "quantization_config");
}

static const lm_layer_vt dense_vt = {.class_name = "Dense", .prefix = "dense", .build = dense_build, .emit = dense_emit, .arity = 1, .passes_mask = true, .get_config = dense_config};

lm_layer *lm_dense_new(int units, lm_dense_opts opts) {
  if (units <= 0)
    return lm__layer_error("Dense", LM_ERROR_VALUE,
                           "Dense: received an invalid value for `units`, expected a positive integer, got %d", units);
  if ((unsigned)opts.activation > LM_SWISH)
    return lm__layer_error("Dense", LM_ERROR_VALUE, "Dense: unknown activation %d", (int)opts.activation);
  dense_layer *d = (dense_layer *)lm__layer_new(sizeof *d, &dense_vt, opts.name);
  if (!d) return NULL;
  d->units = units;
  d->opts = opts;
  d->base.activation = opts.activation ? opts.activation : LM_LINEAR;
  return &d->base;
}

/* ---- Activation ---- */
static int activation_emit(lm_layer *layer, lm_graph *g, const int *in, int n, int *out) {
  out[0] = lm__emit(g, &lm__op_activation, in, 1, &(lm_attrs){.i = {layer->activation}});
  return out[0] < 0 ? -1 : 1;
}

static void activation_config(const lm_layer *layer, lm_json *j) { lm__json_kv_activation(j, "activation", layer->activation); }

static const lm_layer_vt activation_vt = {.class_name = "Activation", .prefix = "activation", .emit = activation_emit, .arity = 1, .passes_mask = true, .get_config = activation_config};

lm_layer *lm_activation_layer_new(lm_activation activation, lm_layer_opts opts) {
  if ((unsigned)activation > LM_SWISH)
    return lm__layer_error("Activation", LM_ERROR_VALUE, "Activation: unknown activation %d", (int)activation);
  lm_layer *layer = lm__layer_new(sizeof(lm_layer), &activation_vt, opts.name);
  if (layer) layer->activation = activation ? activation : LM_LINEAR;
  return layer;
}

/* ---- Dropout ---- */
typedef struct dropout_layer {
  lm_layer base;
  double rate;
  uint64_t seed;
  uint64_t user_seed; /* as given; 0 is Keras's seed=None */
} dropout_layer;

static int dropout_emit(lm_layer *layer, lm_graph *g, const int *in, int n, int *out) {
  dropout_layer *d = (dropout_layer *)layer;
  /* i[1]: a seed the user gave fixes the masks whatever the session seed, as Keras's
   * Dropout(seed=s) does; without one they follow the session seed. */
  lm_attrs a = {.i = {(int64_t)d->seed, d->user_seed != 0}, .f = {(float)d->rate}};
  int outs[2];
  if (lm__graph_op(g, &lm__op_dropout, in, 1, &a, outs)) return -1;
  out[0] = outs[0];
  return 1;
}

static void dropout_config(const lm_layer *layer, lm_json *j) {
  const dropout_layer *d = (const dropout_layer *)layer;
  lm__json_kv_double(j, "rate", d->rate);
  if (d->user_seed) lm__json_kv_int(j, "seed", (int64_t)d->user_seed);
  else lm__json_kv_null(j, "seed");
  lm__json_kv_null(j, "noise_shape");
}

static const lm_layer_vt dropout_vt = {.class_name = "Dropout", .prefix = "dropout", .emit = dropout_emit, .arity = 1, .passes_mask = true, .get_config = dropout_config};

lm_layer *lm_dropout_new(double rate, lm_dropout_opts opts) {
  if (!(rate >= 0 && rate < 1))
    return lm__layer_error("Dropout", LM_ERROR_VALUE,
                           "Dropout: invalid value received for argument `rate`, expected a float value "
                           "between 0 and 1, got %g",
                           rate);
  dropout_layer *d = (dropout_layer *)lm__layer_new(sizeof *d, &dropout_vt, opts.name);
  if (!d) return NULL;
  d->rate = rate;
  d->user_seed = opts.seed;
  /* Drawn now, so that the stream follows lm_set_seed and the layer's creation order. */
  d->seed = opts.seed ? opts.seed : lm__rng_next(lm__global_rng()) >> 1;
  return &d->base;
}

/* ---- Flatten and Reshape ---- */
typedef struct reshape_layer {
  lm_layer base;
  lm_shape target;
} reshape_layer;

static int reshape_emit(lm_layer *layer, lm_graph *g, const int *in, int n, int *out) {
  reshape_layer *r = (reshape_layer *)layer;
  lm_attrs a = {.i = {r->target.rank}};
  for (int i = 0; i < r->target.rank; i++) a.i[1 + i] = r->target.dim[i];
  out[0] = lm__emit(g, &lm__op_reshape, in, 1, &a);
  return out[0] < 0 ? -1 : 1;
}

static void flatten_config(const lm_layer *layer, lm_json *j) { lm__json_kv_string(j, "data_format", "channels_last"); }

static void reshape_config(const lm_layer *layer, lm_json *j) {
  const reshape_layer *r = (const reshape_layer *)layer;
  lm__json_kv_ints(j, "target_shape", r->target.dim, r->target.rank);
}

static const lm_layer_vt flatten_vt = {.class_name = "Flatten", .prefix = "flatten", .emit = reshape_emit, .arity = 1, .get_config = flatten_config};
static const lm_layer_vt reshape_vt = {.class_name = "Reshape", .prefix = "reshape", .emit = reshape_emit, .arity = 1, .get_config = reshape_config};

lm_layer *lm_flatten_new(lm_layer_opts opts) {
  reshape_layer *r = (reshape_layer *)lm__layer_new(sizeof *r, &flatten_vt, opts.name);
  if (r) r->target = LM_SHAPE(-1);
  return &r->base;
}

lm_layer *lm_reshape_new(lm_shape target, lm_layer_opts opts) {
  if (target.rank < 1 || target.rank > 7)
    return lm__layer_error("Reshape", LM_ERROR_SHAPE, "Reshape: target rank %d is outside 1..7", target.rank);
  reshape_layer *r = (reshape_layer *)lm__layer_new(sizeof *r, &reshape_vt, opts.name);
  if (r) r->target = target;
  return &r->base;
}

/* ---- from_config ---- */

lm_layer *lm__input_layer_from_config(lm__cfg *c) {
  const lm__json_value *shape = lm__cfg_take(c, "batch_shape"), *k2 = lm__cfg_take(c, "batch_input_shape");
  if (shape && k2) {
    lm__cfg_fail(c, "batch_input_shape", k2, "cannot come with \"batch_shape\"");
    return NULL;
  }
  if (!shape) shape = k2;
  if (!shape) {
    lm__cfg_fail(c, "batch_shape", NULL, "is required");
    return NULL;
  }
  int dtype;
  lm__cfg_choice(c, "dtype", &dtype, 0, (const char *const[]){"float32", "int32", NULL});
  lm__cfg_fixed_bool(c, "sparse", false, "lamina has dense tensors only");
  lm__cfg_fixed_bool(c, "ragged", false, "lamina has dense tensors only");
  lm__cfg_fixed_bool(c, "optional", false, "every input of a lamina model is required");
  lm_shape s = {0};
  if (!lm__cfg_batch_shape(c, shape, &s)) return NULL;
  return lm_input_layer_new(s, (lm_input_opts){.name = c->name, .dtype = dtype == 1 ? LM_INT32 : LM_FLOAT32});
}

lm_layer *lm__dense_from_config(lm__cfg *c) {
  int units = 0;
  bool use_bias = true;
  lm_dense_opts o = {.name = c->name};
  lm__cfg_int(c, "units", &units, LM__CFG_REQUIRED, 1, LM__CFG_MAX_DIM);
  lm__cfg_activation(c, "activation", &o.activation, LM_LINEAR);
  lm__cfg_bool(c, "use_bias", &use_bias, true);
  lm__cfg_initializer(c, "kernel_initializer", &o.kernel_initializer);
  lm__cfg_initializer(c, "bias_initializer", &o.bias_initializer);
  lm__cfg_nulls(c, "kernel_regularizer", "bias_regularizer", "activity_regularizer", "kernel_constraint", "bias_constraint",
                "quantization_config", "lora_rank", NULL);
  if (!lm__cfg_ok(c)) return NULL;
  o.no_bias = !use_bias;
  return lm_dense_new(units, o);
}

lm_layer *lm__activation_from_config(lm__cfg *c) {
  lm_activation a = LM_LINEAR;
  if (!lm__cfg_activation(c, "activation", &a, LM_LINEAR)) return NULL;
  return lm_activation_layer_new(a, (lm_layer_opts){.name = c->name});
}

lm_layer *lm__dropout_from_config(lm__cfg *c) {
  double rate = 0;
  lm__cfg_float(c, "rate", &rate, NAN, 0, 1);
  lm__cfg_nulls(c, "noise_shape", NULL);
  const lm__json_value *seed = lm__cfg_take(c, "seed");
  /* lamina reads seed 0 as "no seed", so Keras's seed=0 cannot be kept. */
  if (seed && seed->type != LM_JSON_NULL && (seed->type != LM_JSON_NUMBER || !seed->is_integer || seed->integer < 1))
    lm__cfg_fail(c, "seed", seed, "must be null or a positive integer");
  if (!lm__cfg_ok(c)) return NULL;
  return lm_dropout_new(rate, (lm_dropout_opts){.name = c->name, .seed = seed && seed->is_integer ? (uint64_t)seed->integer : 0});
}

lm_layer *lm__flatten_from_config(lm__cfg *c) {
  if (!lm__cfg_fixed_string(c, "data_format", "channels_last", "lamina is channels-last")) return NULL;
  return lm_flatten_new((lm_layer_opts){.name = c->name});
}

lm_layer *lm__reshape_from_config(lm__cfg *c) {
  const lm__json_value *v = lm__cfg_take(c, "target_shape");
  if (!v || v->type != LM_JSON_ARRAY || v->n < 1 || v->n > 7) {
    lm__cfg_fail(c, "target_shape", v, "must be a list of 1 to 7 dimensions, got %s", lm__json_kind(v));
    return NULL;
  }
  lm_shape s = {.rank = (int)v->n};
  int64_t size = 1;
  int unknown = 0;
  for (size_t i = 0; i < v->n; i++) {
    const lm__json_value *d = &v->items[i];
    if (d->type != LM_JSON_NUMBER || !d->is_integer || d->integer == 0 || d->integer < -1 || d->integer > LM__CFG_MAX_DIM) {
      lm__cfg_fail(c, "target_shape", d, "must hold positive sizes up to %d and at most one -1", LM__CFG_MAX_DIM);
      return NULL;
    }
    s.dim[i] = d->integer;
    if (d->integer < 0) unknown++;
    else size *= d->integer;
    if (unknown > 1 || size > ((int64_t)1 << 40)) {
      lm__cfg_fail(c, "target_shape", v, unknown > 1 ? "can have one -1 only" : "has more than 2^40 elements");
      return NULL;
    }
  }
  return lm_reshape_new(s, (lm_layer_opts){.name = c->name});
}
