/* Convolution layers: Conv1D, Conv2D, DepthwiseConv2D, SeparableConv1D, SeparableConv2D
 * (channels last, Keras 3's weights, names and checks). */
#include "io/model_config.h"
#include "ops/conv.h"

typedef enum conv_kind { CONV, DEPTHWISE, SEPARABLE } conv_kind;

typedef struct conv_layer {
  lm_layer base;
  conv_kind kind;
  int rank;      /* spatial rank: 1 or 2 */
  int filters;   /* CONV and SEPARABLE */
  int kernel[2]; /* (rows, cols); 1D uses kernel[0] */
  int strides[2], dilation[2];
  lm_padding padding;
  int depth_multiplier;
  bool use_bias;
  lm_initializer kernel_init, pointwise_init, bias_init;
} conv_layer;

static lm_status conv_build(lm_layer *layer, const lm_shape *in, const lm_dtype *dt, int n) {
  conv_layer *cv = (conv_layer *)layer;
  char buf[96];
  const char *cls = layer->vt->class_name;
  lm_shape s = in[0];
  if (dt[0] != LM_FLOAT32)
    return lm__fail(&layer->err, LM_ERROR_VALUE,
                    "Layer \"%s\" (%s) needs float32 input, got int32 of shape %s (convert the data, or put an "
                    "Embedding first)",
                    layer->name, cls, lm_shape_format(s, buf, sizeof buf));
  if (s.rank != cv->rank + 2)
    return lm__fail(&layer->err, LM_ERROR_SHAPE,
                    "Layer \"%s\" (%s) expected an input of rank %d %s, found rank %d: shape %s%s", layer->name, cls,
                    cv->rank + 2, cv->rank == 2 ? "(batch, rows, cols, channels)" : "(batch, steps, channels)", s.rank,
                    lm_shape_format(s, buf, sizeof buf),
                    s.rank == cv->rank + 1 ? "; add a channels axis (a Reshape to (..., 1))" : "");
  int64_t channels = s.dim[s.rank - 1];
  if (channels < 0)
    return lm__fail(&layer->err, LM_ERROR_SHAPE,
                    "Layer \"%s\" (%s): the channels dimension of the inputs should be defined, got input shape %s",
                    layer->name, cls, lm_shape_format(s, buf, sizeof buf));
  int64_t kh = cv->kernel[0], kw = cv->kernel[1], m = cv->depth_multiplier;
  lm_shape depthwise = cv->rank == 2 ? LM_SHAPE(kh, kw, channels, m) : LM_SHAPE(kh, channels, m);
  switch (cv->kind) {
  case CONV: {
    lm_shape kernel = cv->rank == 2 ? LM_SHAPE(kh, kw, channels, cv->filters) : LM_SHAPE(kh, channels, cv->filters);
    if (!lm__layer_add_weight(layer, "kernel", kernel, cv->kernel_init, LM_GLOROT_UNIFORM, true)) return layer->err.code;
    break;
  }
  case DEPTHWISE: /* Keras 3 names DepthwiseConv2D's kernel "kernel" */
    if (!lm__layer_add_weight(layer, "kernel", depthwise, cv->kernel_init, LM_GLOROT_UNIFORM, true))
      return layer->err.code;
    break;
  case SEPARABLE: {
    lm_shape pointwise = cv->rank == 2 ? LM_SHAPE(1, 1, channels * m, cv->filters) : LM_SHAPE(1, channels * m, cv->filters);
    if (!lm__layer_add_weight(layer, "depthwise_kernel", depthwise, cv->kernel_init, LM_GLOROT_UNIFORM, true) ||
        !lm__layer_add_weight(layer, "pointwise_kernel", pointwise, cv->pointwise_init, LM_GLOROT_UNIFORM, true))
      return layer->err.code;
    break;
  }
  }
  int64_t units = cv->kind == DEPTHWISE ? channels * m : cv->filters;
  if (cv->use_bias && !lm__layer_add_weight(layer, "bias", LM_SHAPE(units), cv->bias_init, LM_ZEROS, true))
    return layer->err.code;
  return LM_OK;
}

static int conv_emit(lm_layer *layer, lm_graph *g, const int *in, int n, int *out) {
  conv_layer *cv = (conv_layer *)layer;
  lm_attrs a = {.i = {1, 1, 1, 1, cv->padding}};
  if (cv->rank == 2) a.i[0] = cv->strides[0], a.i[2] = cv->dilation[0];
  a.i[1] = cv->strides[cv->rank - 1], a.i[3] = cv->dilation[cv->rank - 1];
  int w0 = lm__graph_param(g, layer->weights[0]);
  int bias = cv->use_bias ? lm__graph_param(g, layer->weights[layer->n_weights - 1]) : -1;
  int z;
  if (cv->kind == CONV) {
    z = lm__emit_activated(g, &lm__op_conv, (int[]){in[0], w0, bias}, bias >= 0 ? 3 : 2, a, layer->activation);
  } else if (cv->kind == DEPTHWISE) {
    z = lm__emit_activated(g, &lm__op_depthwise_conv, (int[]){in[0], w0, bias}, bias >= 0 ? 3 : 2, a,
                           layer->activation);
  } else { /* depthwise without bias, then a 1x1 convolution that adds it */
    z = lm__emit(g, &lm__op_depthwise_conv, (int[]){in[0], w0}, 2, &a);
    int w1 = lm__graph_param(g, layer->weights[1]);
    lm_attrs pointwise = {.i = {1, 1, 1, 1, LM_VALID}};
    if (z >= 0)
      z = lm__emit_activated(g, &lm__op_conv, (int[]){z, w1, bias}, bias >= 0 ? 3 : 2, pointwise, layer->activation);
  }
  out[0] = z;
  return z < 0 ? -1 : 1;
}

static void ints_(lm_json *j, const char *key, const int *v, int rank) {
  int64_t w[2] = {v[0], v[1]};
  lm__json_kv_ints(j, key, w, rank);
}

/* Keras 3's get_config, field for field. */
static void conv_config(const lm_layer *layer, lm_json *j) {
  const conv_layer *cv = (const conv_layer *)layer;
  if (cv->kind != CONV) lm__json_kv_int(j, "depth_multiplier", cv->depth_multiplier);
  if (cv->kind != DEPTHWISE) lm__json_kv_int(j, "filters", cv->filters);
  ints_(j, "kernel_size", cv->kernel, cv->rank);
  ints_(j, "strides", cv->strides, cv->rank);
  lm__json_kv_string(j, "padding", cv->padding == LM_SAME ? "same" : "valid");
  lm__json_kv_string(j, "data_format", "channels_last");
  ints_(j, "dilation_rate", cv->dilation, cv->rank);
  if (cv->kind == CONV) lm__json_kv_int(j, "groups", 1);
  lm__json_kv_activation(j, "activation", layer->activation);
  lm__json_kv_bool(j, "use_bias", cv->use_bias);
  if (cv->kind == CONV) lm__json_kv_initializer(j, "kernel_initializer", cv->kernel_init, LM_GLOROT_UNIFORM);
  else lm__json_kv_initializer(j, "depthwise_initializer", cv->kernel_init, LM_GLOROT_UNIFORM);
  if (cv->kind == SEPARABLE) lm__json_kv_initializer(j, "pointwise_initializer", cv->pointwise_init, LM_GLOROT_UNIFORM);
  lm__json_kv_initializer(j, "bias_initializer", cv->bias_init, LM_ZEROS);
  if (cv->kind == CONV) lm__json_kv_null(j, "kernel_regularizer");
  else lm__json_kv_null(j, "depthwise_regularizer");
  if (cv->kind == SEPARABLE) lm__json_kv_null(j, "pointwise_regularizer");
  lm__json_kv_null(j, "bias_regularizer");
  lm__json_kv_null(j, "activity_regularizer");
  if (cv->kind == CONV) lm__json_kv_null(j, "kernel_constraint");
  else lm__json_kv_null(j, "depthwise_constraint");
  if (cv->kind == SEPARABLE) lm__json_kv_null(j, "pointwise_constraint");
  lm__json_kv_null(j, "bias_constraint");
}

static const lm_layer_vt conv1d_vt = {.class_name = "Conv1D", .prefix = "conv1d", .build = conv_build, .emit = conv_emit, .arity = 1, .get_config = conv_config};
static const lm_layer_vt conv2d_vt = {.class_name = "Conv2D", .prefix = "conv2d", .build = conv_build, .emit = conv_emit, .arity = 1, .get_config = conv_config};
static const lm_layer_vt depthwise2d_vt = {.class_name = "DepthwiseConv2D", .prefix = "depthwise_conv2d", .build = conv_build, .emit = conv_emit, .arity = 1, .get_config = conv_config};
static const lm_layer_vt separable1d_vt = {.class_name = "SeparableConv1D", .prefix = "separable_conv1d", .build = conv_build, .emit = conv_emit, .arity = 1, .get_config = conv_config};
static const lm_layer_vt separable2d_vt = {.class_name = "SeparableConv2D", .prefix = "separable_conv2d", .build = conv_build, .emit = conv_emit, .arity = 1, .get_config = conv_config};

/* Keras's int-or-tuple: {0, 0} is the default, {a} or {a, 0} is (a, a); 1D reads p[0]. */
static void pair(const int p[2], int def, int rank, int out[2]) {
  if (p[0] == 0 && p[1] == 0) out[0] = out[1] = def;
  else if (p[1] == 0 || rank == 1) out[0] = out[1] = p[0];
  else out[0] = p[0], out[1] = p[1];
  if (rank == 1) out[1] = out[0];
}

static lm_layer *conv_new(const lm_layer_vt *vt, conv_kind kind, int rank, int filters, int kernel_size,
                          lm_conv_opts opts) {
  const char *cls = vt->class_name;
  if (kind != DEPTHWISE && filters <= 0)
    return lm__layer_error(cls, LM_ERROR_VALUE,
                           "%s: invalid value for argument `filters`, expected a strictly positive value, got %d", cls,
                           filters);
  int kernel[2], strides[2], dilation[2];
  if (opts.kernel_hw[0] || opts.kernel_hw[1]) pair(opts.kernel_hw, 0, rank, kernel);
  else kernel[0] = kernel[1] = kernel_size;
  pair(opts.strides, 1, rank, strides);
  pair(opts.dilation_rate, 1, rank, dilation);
  const char *axes = rank == 2 ? "(rows, cols)" : "(steps,)";
  if (kernel[0] <= 0 || kernel[1] <= 0)
    return lm__layer_error(cls, LM_ERROR_VALUE, "%s: the `kernel_size` %s must be positive, got (%d, %d)", cls, axes,
                           kernel[0], kernel[1]);
  if (strides[0] <= 0 || strides[1] <= 0)
    return lm__layer_error(cls, LM_ERROR_VALUE, "%s: the `strides` %s must be positive, got (%d, %d)", cls, axes,
                           strides[0], strides[1]);
  if (dilation[0] <= 0 || dilation[1] <= 0)
    return lm__layer_error(cls, LM_ERROR_VALUE, "%s: the `dilation_rate` %s must be positive, got (%d, %d)", cls, axes,
                           dilation[0], dilation[1]);
  /* Keras refuses both together for Conv1D/Conv2D only (its depthwise and separable
   * layers accept them). */
  if (kind == CONV && (strides[0] > 1 || strides[1] > 1) && (dilation[0] > 1 || dilation[1] > 1)) {
    if (rank == 2)
      return lm__layer_error(cls, LM_ERROR_VALUE,
                             "%s: `strides > 1` not supported in conjunction with `dilation_rate > 1`. Received: "
                             "strides=(%d, %d) and dilation_rate=(%d, %d)",
                             cls, strides[0], strides[1], dilation[0], dilation[1]);
    return lm__layer_error(cls, LM_ERROR_VALUE,
                           "%s: `strides > 1` not supported in conjunction with `dilation_rate > 1`. Received: "
                           "strides=(%d,) and dilation_rate=(%d,)",
                           cls, strides[0], dilation[0]);
  }
  if (opts.padding != LM_VALID && opts.padding != LM_SAME)
    return lm__layer_error(cls, LM_ERROR_VALUE, "%s: unknown padding %d (LM_VALID or LM_SAME)", cls, (int)opts.padding);
  if ((unsigned)opts.activation > LM_SWISH)
    return lm__layer_error(cls, LM_ERROR_VALUE, "%s: unknown activation %d", cls, (int)opts.activation);
  if (opts.depth_multiplier < 0)
    return lm__layer_error(cls, LM_ERROR_VALUE, "%s: `depth_multiplier` must be positive, got %d", cls,
                           opts.depth_multiplier);
  conv_layer *cv = (conv_layer *)lm__layer_new(sizeof *cv, vt, opts.name);
  if (!cv) return NULL;
  cv->kind = kind;
  cv->rank = rank;
  cv->filters = filters;
  if (rank == 1) kernel[1] = 1, strides[1] = strides[0], dilation[1] = dilation[0];
  memcpy(cv->kernel, kernel, sizeof kernel);
  memcpy(cv->strides, strides, sizeof strides);
  memcpy(cv->dilation, dilation, sizeof dilation);
  cv->padding = opts.padding;
  cv->depth_multiplier = opts.depth_multiplier ? opts.depth_multiplier : 1;
  cv->use_bias = !opts.no_bias;
  /* Depthwise and pointwise kernels take their own initializers, else kernel_initializer. */
  cv->kernel_init = kind != CONV && opts.depthwise_initializer.kind ? opts.depthwise_initializer : opts.kernel_initializer;
  cv->pointwise_init = opts.pointwise_initializer.kind ? opts.pointwise_initializer : opts.kernel_initializer;
  cv->bias_init = opts.bias_initializer;
  cv->base.activation = opts.activation ? opts.activation : LM_LINEAR;
  return &cv->base;
}

lm_layer *lm_conv1d_new(int filters, int kernel_size, lm_conv_opts opts) {
  return conv_new(&conv1d_vt, CONV, 1, filters, kernel_size, opts);
}

lm_layer *lm_conv2d_new(int filters, int kernel_size, lm_conv_opts opts) {
  return conv_new(&conv2d_vt, CONV, 2, filters, kernel_size, opts);
}

lm_layer *lm_depthwise_conv2d_new(int kernel_size, lm_conv_opts opts) {
  return conv_new(&depthwise2d_vt, DEPTHWISE, 2, 0, kernel_size, opts);
}

lm_layer *lm_separable_conv1d_new(int filters, int kernel_size, lm_conv_opts opts) {
  return conv_new(&separable1d_vt, SEPARABLE, 1, filters, kernel_size, opts);
}

lm_layer *lm_separable_conv2d_new(int filters, int kernel_size, lm_conv_opts opts) {
  return conv_new(&separable2d_vt, SEPARABLE, 2, filters, kernel_size, opts);
}

lm_layer *lm__conv_from_config(lm__cfg *c) {
  const lm_layer_vt *vts[] = {&conv1d_vt, &conv2d_vt, &depthwise2d_vt, &separable1d_vt, &separable2d_vt};
  const lm_layer_vt *vt = NULL;
  for (size_t i = 0; i < sizeof vts / sizeof vts[0]; i++)
    if (!strcmp(vts[i]->class_name, c->cls)) vt = vts[i];
  if (!vt) return NULL;
  conv_kind kind = vt == &depthwise2d_vt ? DEPTHWISE : vt == &separable1d_vt || vt == &separable2d_vt ? SEPARABLE : CONV;
  int rank = vt == &conv1d_vt || vt == &separable1d_vt ? 1 : 2;
  int filters = 0, kernel[2] = {0}, strides[2] = {1, 1}, dilation[2] = {1, 1}, padding = 0;
  bool use_bias = true;
  lm_conv_opts o = {.name = c->name};
  if (kind != CONV) lm__cfg_int(c, "depth_multiplier", &o.depth_multiplier, 1, 1, LM__CFG_MAX_DIM);
  if (kind != DEPTHWISE) lm__cfg_int(c, "filters", &filters, LM__CFG_REQUIRED, 1, LM__CFG_MAX_DIM);
  lm__cfg_ints(c, "kernel_size", kernel, rank, LM__CFG_REQUIRED, 1, LM__CFG_MAX_DIM);
  lm__cfg_ints(c, "strides", strides, rank, 1, 1, LM__CFG_MAX_DIM);
  lm__cfg_choice(c, "padding", &padding, 0, (const char *const[]){"valid", "same", NULL});
  lm__cfg_fixed_string(c, "data_format", "channels_last", "lamina is channels-last");
  lm__cfg_ints(c, "dilation_rate", dilation, rank, 1, 1, LM__CFG_MAX_DIM);
  lm__cfg_fixed_number(c, "groups", 1, "lamina has no grouped convolutions");
  lm__cfg_activation(c, "activation", &o.activation, LM_LINEAR);
  lm__cfg_bool(c, "use_bias", &use_bias, true);
  if (kind == CONV) lm__cfg_initializer(c, "kernel_initializer", &o.kernel_initializer);
  else lm__cfg_initializer(c, "depthwise_initializer", &o.depthwise_initializer);
  if (kind == SEPARABLE) lm__cfg_initializer(c, "pointwise_initializer", &o.pointwise_initializer);
  lm__cfg_initializer(c, "bias_initializer", &o.bias_initializer);
  lm__cfg_nulls(c, "kernel_regularizer", "depthwise_regularizer", "pointwise_regularizer", "bias_regularizer",
                "activity_regularizer", "kernel_constraint", "depthwise_constraint", "pointwise_constraint",
                "bias_constraint", "lora_rank", NULL);
  if (!lm__cfg_ok(c)) return NULL;
  o.kernel_hw[0] = kernel[0], o.kernel_hw[1] = rank == 2 ? kernel[1] : 0;
  o.strides[0] = strides[0], o.strides[1] = rank == 2 ? strides[1] : 0;
  o.dilation_rate[0] = dilation[0], o.dilation_rate[1] = rank == 2 ? dilation[1] : 0;
  o.padding = padding ? LM_SAME : LM_VALID;
  o.no_bias = !use_bias;
  return conv_new(vt, kind, rank, filters, kernel[0], o);
}
