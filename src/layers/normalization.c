/* Normalization layers: BatchNormalization and LayerNormalization. */
#include "io/model_config.h"
#include "ops/norm.h"
#include <math.h>

typedef struct norm_layer {
  lm_layer base;
  lm_norm_opts opts; /* Keras's defaults filled in */
  bool batch;        /* BatchNormalization, else LayerNormalization */
  int rank;          /* of the input it was built for */
  lm_weight *gamma, *beta, *moving_mean, *moving_variance;
} norm_layer;

static lm_status norm_build(lm_layer *layer, const lm_shape *in, const lm_dtype *dt, int n) {
  norm_layer *l = (norm_layer *)layer;
  const char *cls = layer->vt->class_name;
  char buf[96];
  lm_shape s = in[0];
  int axis = l->opts.axis < 0 ? l->opts.axis + s.rank : l->opts.axis;
  lm_shape_format(s, buf, sizeof buf);
  if (dt[0] != LM_FLOAT32)
    return lm__fail(&layer->err, LM_ERROR_VALUE,
                    "Layer \"%s\" (%s) needs float32 input, got int32 input of shape %s (convert the data, or add "
                    "an Embedding)",
                    layer->name, cls, buf);
  if (s.rank < 2 || axis < 1 || axis >= s.rank)
    return lm__fail(&layer->err, LM_ERROR_SHAPE,
                    "Layer \"%s\" (%s): axis %d is out of bounds for input shape %s (it must name a non-batch axis)",
                    layer->name, cls, l->opts.axis, buf);
  if (s.dim[axis] < 0)
    return lm__fail(&layer->err, LM_ERROR_SHAPE,
                    "Layer \"%s\" (%s): axis %d of the input should have a defined dimension, but the input has "
                    "shape %s",
                    layer->name, cls, l->opts.axis, buf);
  l->rank = s.rank;
  /* Keras's order: gamma, beta, then the moving statistics (not trained by gradients). */
  lm_shape ws = LM_SHAPE(s.dim[axis]);
  if (!l->opts.no_scale &&
      !(l->gamma = lm__layer_add_weight(layer, "gamma", ws, l->opts.gamma_initializer, LM_ONES, true)))
    return layer->err.code;
  if (!l->opts.no_center &&
      !(l->beta = lm__layer_add_weight(layer, "beta", ws, l->opts.beta_initializer, LM_ZEROS, true)))
    return layer->err.code;
  if (l->batch &&
      (!(l->moving_mean = lm__layer_add_weight(layer, "moving_mean", ws, l->opts.moving_mean_initializer, LM_ZEROS,
                                               false)) ||
       !(l->moving_variance = lm__layer_add_weight(layer, "moving_variance", ws,
                                                   l->opts.moving_variance_initializer, LM_ONES, false))))
    return layer->err.code;
  return LM_OK;
}

/* Appends the values of the weights that exist; false when the graph ran out of memory. */
static bool add_params(lm_graph *g, lm_weight *const *w, int n_w, int *args, int *n_args) {
  for (int k = 0; k < n_w; k++) {
    if (!w[k]) continue;
    if ((args[(*n_args)++] = lm__graph_param(g, w[k])) < 0) return false;
  }
  return true;
}

static int bn_emit(lm_layer *layer, lm_graph *g, const int *in, int n, int *out) {
  norm_layer *l = (norm_layer *)layer;
  int args[6] = {in[0]}, n_args = 1, outs[2];
  lm_shape s = g->vals[in[0]].shape;
  if (s.rank != l->rank) { /* Keras's input_spec: the statistics' axes were fixed at build */
    char buf[96];
    lm__fail(&g->err, LM_ERROR_SHAPE,
             "Input 0 of layer \"%s\" is incompatible with the layer: expected ndim=%d, found ndim=%d. Full shape "
             "received: %s",
             layer->name, l->rank, s.rank, lm_shape_format(s, buf, sizeof buf));
    return -1;
  }
  if (!add_params(g, (lm_weight *const[]){l->moving_mean, l->moving_variance, l->gamma, l->beta}, 4, args, &n_args))
    return -1;
  int mask = g->vals[in[0]].mask; /* Keras leaves masked timesteps out of the batch statistics */
  if (mask >= 0) args[n_args++] = mask;
  /* The trainable flag is read when the op runs, so freezing the layer between fits takes
   * effect (Keras: a frozen BatchNormalization runs in inference mode). */
  lm_attrs a = {.i = {l->opts.axis, l->gamma != NULL, l->beta != NULL, mask >= 0},
                .f = {(float)l->opts.epsilon, (float)l->opts.momentum, (float)(1.0 - l->opts.momentum)},
                .p = &layer->trainable};
  if (lm__graph_op(g, &lm__op_batch_norm, args, n_args, &a, outs)) return -1;
  out[0] = outs[0];
  return 1;
}

static int ln_emit(lm_layer *layer, lm_graph *g, const int *in, int n, int *out) {
  norm_layer *l = (norm_layer *)layer;
  int args[3] = {in[0]}, n_args = 1, outs[2];
  if (!add_params(g, (lm_weight *const[]){l->gamma, l->beta}, 2, args, &n_args)) return -1;
  lm_attrs a = {.i = {l->opts.axis, l->gamma != NULL, l->beta != NULL}, .f = {(float)l->opts.epsilon}};
  if (lm__graph_op(g, &lm__op_layer_norm, args, n_args, &a, outs)) return -1;
  out[0] = outs[0];
  return 1;
}

/* Keras 3's get_config: BatchNormalization's axis is an int, LayerNormalization's a list. */
static void norm_config(const lm_layer *layer, lm_json *j) {
  const norm_layer *l = (const norm_layer *)layer;
  const lm_norm_opts *o = &l->opts;
  if (l->batch) lm__json_kv_int(j, "axis", o->axis);
  else {
    int64_t axis = o->axis;
    lm__json_kv_ints(j, "axis", &axis, 1);
  }
  if (l->batch) lm__json_kv_double(j, "momentum", o->momentum);
  lm__json_kv_double(j, "epsilon", o->epsilon);
  lm__json_kv_bool(j, "center", !o->no_center);
  lm__json_kv_bool(j, "scale", !o->no_scale);
  if (!l->batch) lm__json_kv_bool(j, "rms_scaling", false);
  lm__json_kv_initializer(j, "beta_initializer", o->beta_initializer, LM_ZEROS);
  lm__json_kv_initializer(j, "gamma_initializer", o->gamma_initializer, LM_ONES);
  if (l->batch) {
    lm__json_kv_initializer(j, "moving_mean_initializer", o->moving_mean_initializer, LM_ZEROS);
    lm__json_kv_initializer(j, "moving_variance_initializer", o->moving_variance_initializer, LM_ONES);
  }
  lm__json_kv_null(j, "beta_regularizer");
  lm__json_kv_null(j, "gamma_regularizer");
  lm__json_kv_null(j, "beta_constraint");
  lm__json_kv_null(j, "gamma_constraint");
  if (l->batch) {
    lm__json_kv_bool(j, "synchronized", false);
    lm__json_kv_bool(j, "renorm", false);
    lm__json_kv_null(j, "renorm_clipping");
    lm__json_kv_double(j, "renorm_momentum", 0.99);
  }
}

static const lm_layer_vt bn_vt = {.class_name = "BatchNormalization", .prefix = "batch_normalization",
                                  .build = norm_build, .emit = bn_emit, .arity = 1, .passes_mask = true,
                                  .get_config = norm_config};
static const lm_layer_vt ln_vt = {.class_name = "LayerNormalization", .prefix = "layer_normalization",
                                  .build = norm_build, .emit = ln_emit, .arity = 1, .passes_mask = true,
                                  .get_config = norm_config};

static lm_layer *norm_new(const lm_layer_vt *vt, lm_norm_opts opts) {
  if (opts.axis == 0) opts.axis = -1; /* the batch axis is never normalized over: 0 is the default */
  if (opts.momentum == 0) opts.momentum = 0.99;
  if (opts.epsilon == 0) opts.epsilon = 1e-3;
  if (!(opts.momentum > 0 && opts.momentum <= 1))
    return lm__layer_error(vt->class_name, LM_ERROR_VALUE, "%s: momentum must be in (0, 1], got %g", vt->class_name,
                           opts.momentum);
  if (!(opts.epsilon > 0 && isfinite(opts.epsilon)))
    return lm__layer_error(vt->class_name, LM_ERROR_VALUE, "%s: epsilon must be positive, got %g", vt->class_name,
                           opts.epsilon);
  if (opts.axis < -LM_MAX_RANK || opts.axis >= LM_MAX_RANK)
    return lm__layer_error(vt->class_name, LM_ERROR_VALUE, "%s: axis %d is out of range for any input",
                           vt->class_name, opts.axis);
  norm_layer *l = (norm_layer *)lm__layer_new(sizeof *l, vt, opts.name);
  if (!l) return NULL;
  l->opts = opts;
  l->batch = vt == &bn_vt;
  return &l->base;
}

lm_layer *lm_batch_normalization_new(lm_norm_opts opts) { return norm_new(&bn_vt, opts); }
lm_layer *lm_layer_normalization_new(lm_norm_opts opts) { return norm_new(&ln_vt, opts); }

lm_layer *lm__norm_from_config(lm__cfg *c) {
  bool batch = !strcmp(c->cls, "BatchNormalization");
  lm_norm_opts o = {.name = c->name};
  bool center = true, scale = true;
  /* An int, or (Keras 2 after build, Keras 3's LayerNormalization) a list of one. */
  const lm__json_value *axis = lm__cfg_take(c, "axis");
  o.axis = -1;
  if (axis && axis->type == LM_JSON_ARRAY && axis->n == 1) axis = &axis->items[0];
  else if (axis && axis->type == LM_JSON_ARRAY)
    lm__cfg_fail(c, "axis", axis, "must name one axis: lamina normalizes over a single axis");
  if (axis && lm__cfg_ok(c)) {
    if (axis->type != LM_JSON_NUMBER || !axis->is_integer || axis->integer == 0 || axis->integer < -LM_MAX_RANK ||
        axis->integer >= LM_MAX_RANK)
      lm__cfg_fail(c, "axis", axis, "must be a non-batch axis (an integer other than 0, from %d to %d)", -LM_MAX_RANK,
                   LM_MAX_RANK - 1);
    else o.axis = (int)axis->integer;
  }
  /* lamina reads 0 as "the default", so momentum and epsilon must be positive. */
  if (batch) lm__cfg_float(c, "momentum", &o.momentum, 0.99, 1e-300, 1);
  lm__cfg_float(c, "epsilon", &o.epsilon, 1e-3, 1e-300, 1e30);
  lm__cfg_bool(c, "center", &center, true);
  lm__cfg_bool(c, "scale", &scale, true);
  lm__cfg_initializer(c, "beta_initializer", &o.beta_initializer);
  lm__cfg_initializer(c, "gamma_initializer", &o.gamma_initializer);
  if (batch) {
    lm__cfg_initializer(c, "moving_mean_initializer", &o.moving_mean_initializer);
    lm__cfg_initializer(c, "moving_variance_initializer", &o.moving_variance_initializer);
    lm__cfg_fixed_bool(c, "synchronized", false, "lamina trains on one device");
    lm__cfg_fixed_bool(c, "renorm", false, "lamina has no batch renormalization");
    lm__cfg_nulls(c, "renorm_clipping", "virtual_batch_size", "adjustment", NULL);
    double unused;
    lm__cfg_float(c, "renorm_momentum", &unused, 0.99, 0, 1); /* without renorm, it does nothing */
    const lm__json_value *fused = lm__cfg_take(c, "fused"); /* Keras 2: which kernel, same result */
    if (fused && fused->type != LM_JSON_BOOL && fused->type != LM_JSON_NULL)
      lm__cfg_fail(c, "fused", fused, "must be true, false or null");
  } else
    lm__cfg_fixed_bool(c, "rms_scaling", false, "lamina's LayerNormalization centers and scales");
  lm__cfg_nulls(c, "beta_regularizer", "gamma_regularizer", "beta_constraint", "gamma_constraint", NULL);
  if (!lm__cfg_ok(c)) return NULL;
  o.no_center = !center, o.no_scale = !scale;
  return batch ? lm_batch_normalization_new(o) : lm_layer_normalization_new(o);
}
