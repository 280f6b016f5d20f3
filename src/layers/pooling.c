/* Pooling layers: MaxPooling1D/2D, AveragePooling1D/2D and their global forms (Keras's
 * channels-last layers, keepdims=False). They own no weights; the ops do the work. */
#include "io/model_config.h"
#include "ops/pool.h"

typedef struct pool_layer {
  lm_layer base;
  int dims;   /* 1 or 2 spatial axes */
  bool max;   /* max or average */
  int pool[2], strides[2];
  lm_padding padding;
} pool_layer;

/* Checks the rank (Keras's input_spec) and the dtype here rather than in the op, so that the
 * message names the layer's class and the rank it needs. */
static int check_input(lm_layer *layer, lm_graph *g, int x, int dims) {
  const lm_value *v = &g->vals[x];
  char b1[96];
  if (v->dtype != LM_FLOAT32) {
    lm__fail(&g->err, LM_ERROR_VALUE,
             "Layer \"%s\" (%s) needs float32 input, got int32 of shape %s (add an Embedding or convert the data)",
             layer->name, layer->vt->class_name, lm_shape_format(v->shape, b1, sizeof b1));
    return -1;
  }
  if (v->shape.rank == dims + 2) return 0;
  char hint[160] = "";
  if (v->shape.rank == dims + 1) { /* the usual slip: no channels axis */
    lm_shape target = {.rank = v->shape.rank};
    bool known = true;
    for (int d = 1; d < v->shape.rank; d++) known &= (target.dim[d - 1] = v->shape.dim[d]) > 0;
    target.dim[v->shape.rank - 1] = 1;
    char b2[96];
    if (known)
      snprintf(hint, sizeof hint, "; add a channels axis, e.g. with Reshape to %s",
               lm_shape_format(target, b2, sizeof b2));
    else
      snprintf(hint, sizeof hint, "; add a channels axis");
  }
  lm__fail(&g->err, LM_ERROR_SHAPE,
           "Input 0 of layer \"%s\" (%s) is incompatible with the layer: expected ndim=%d %s, found ndim=%d. Full "
           "shape received: %s%s",
           layer->name, layer->vt->class_name, dims + 2,
           dims == 1 ? "(batch, steps, channels)" : "(batch, rows, cols, channels)", v->shape.rank,
           lm_shape_format(v->shape, b1, sizeof b1), hint);
  return -1;
}

static int pool_emit(lm_layer *layer, lm_graph *g, const int *in, int n, int *out) {
  pool_layer *pl = (pool_layer *)layer;
  if (check_input(layer, g, in[0], pl->dims)) return -1;
  lm_attrs a = {0};
  a.i[LM_POOL_DIMS] = pl->dims;
  a.i[LM_POOL_H] = pl->pool[0];
  a.i[LM_POOL_W] = pl->pool[1];
  a.i[LM_POOL_SH] = pl->strides[0];
  a.i[LM_POOL_SW] = pl->strides[1];
  a.i[LM_POOL_PADDING] = pl->padding;
  int outs[2];
  if (lm__graph_op(g, pl->max ? &lm__op_max_pool : &lm__op_avg_pool, in, 1, &a, outs)) return -1;
  out[0] = outs[0];
  return 1;
}

static int global_emit(lm_layer *layer, lm_graph *g, const int *in, int n, int *out) {
  pool_layer *pl = (pool_layer *)layer;
  if (check_input(layer, g, in[0], pl->dims)) return -1;
  int outs[2];
  if (pl->max) {
    /* Keras's GlobalMaxPooling1D ignores a mask */
    if (lm__graph_op(g, &lm__op_global_max_pool, in, 1, NULL, outs)) return -1;
  } else {
    /* GlobalAveragePooling1D averages over the unmasked steps only */
    int args[2] = {in[0], g->vals[in[0]].mask};
    int n_args = pl->dims == 1 && args[1] >= 0 ? 2 : 1;
    if (lm__graph_op(g, &lm__op_global_avg_pool, args, n_args, NULL, outs)) return -1;
  }
  out[0] = outs[0];
  return 1;
}

static void pool_ints(lm_json *j, const char *key, const int *v, int dims) {
  int64_t w[2] = {v[0], v[1]};
  lm__json_kv_ints(j, key, w, dims);
}

static void pool_config(const lm_layer *layer, lm_json *j) {
  const pool_layer *pl = (const pool_layer *)layer;
  pool_ints(j, "pool_size", pl->pool, pl->dims);
  lm__json_kv_string(j, "padding", pl->padding == LM_SAME ? "same" : "valid");
  pool_ints(j, "strides", pl->strides, pl->dims);
  lm__json_kv_string(j, "data_format", "channels_last");
}

static void global_config(const lm_layer *layer, lm_json *j) {
  lm__json_kv_string(j, "data_format", "channels_last");
  lm__json_kv_bool(j, "keepdims", false);
}

static const lm_layer_vt max1d_vt = {.class_name = "MaxPooling1D", .prefix = "max_pooling1d", .emit = pool_emit, .arity = 1, .get_config = pool_config};
static const lm_layer_vt max2d_vt = {.class_name = "MaxPooling2D", .prefix = "max_pooling2d", .emit = pool_emit, .arity = 1, .get_config = pool_config};
static const lm_layer_vt avg1d_vt = {.class_name = "AveragePooling1D", .prefix = "average_pooling1d", .emit = pool_emit, .arity = 1, .get_config = pool_config};
static const lm_layer_vt avg2d_vt = {.class_name = "AveragePooling2D", .prefix = "average_pooling2d", .emit = pool_emit, .arity = 1, .get_config = pool_config};
static const lm_layer_vt gmax1d_vt = {.class_name = "GlobalMaxPooling1D", .prefix = "global_max_pooling1d", .emit = global_emit, .arity = 1, .get_config = global_config};
static const lm_layer_vt gmax2d_vt = {.class_name = "GlobalMaxPooling2D", .prefix = "global_max_pooling2d", .emit = global_emit, .arity = 1, .get_config = global_config};
static const lm_layer_vt gavg1d_vt = {.class_name = "GlobalAveragePooling1D", .prefix = "global_average_pooling1d", .emit = global_emit, .arity = 1, .get_config = global_config};
static const lm_layer_vt gavg2d_vt = {.class_name = "GlobalAveragePooling2D", .prefix = "global_average_pooling2d", .emit = global_emit, .arity = 1, .get_config = global_config};

/* Keras's int-or-tuple: {a} means (a, a), {a, b} means (a, b), {0} the fallback; 1D layers
 * read the first entry only. */
static void pair(const int v[2], int dims, int fallback_h, int fallback_w, int out[2]) {
  if (dims == 1) {
    out[0] = v[0] ? v[0] : fallback_h;
    out[1] = 1;
  } else if (v[0] || v[1]) {
    out[0] = v[0];
    out[1] = v[1] ? v[1] : v[0];
  } else {
    out[0] = fallback_h;
    out[1] = fallback_w;
  }
}

static lm_layer *pool_new(const lm_layer_vt *vt, int dims, bool max, int pool_size, lm_pool_opts o) {
  const char *cls = vt->class_name;
  if (pool_size < 0)
    return lm__layer_error(cls, LM_ERROR_VALUE, "%s: `pool_size` must be positive, got %d", cls, pool_size);
  int square = pool_size ? pool_size : 2; /* Keras's default pool_size */
  int pool[2], strides[2];
  pair(o.pool_hw, dims, square, square, pool);
  pair(o.strides, dims, pool[0], pool[1], strides); /* strides default to the pool size */
  if (pool[0] < 1 || pool[1] < 1 || strides[0] < 1 || strides[1] < 1) {
    bool bad_pool = pool[0] < 1 || pool[1] < 1;
    const int *v = bad_pool ? pool : strides;
    if (dims == 1)
      return lm__layer_error(cls, LM_ERROR_VALUE, "%s: `%s` must be positive, got %d", cls,
                             bad_pool ? "pool_size" : "strides", v[0]);
    return lm__layer_error(cls, LM_ERROR_VALUE, "%s: `%s` must be positive, got (%d, %d)", cls,
                           bad_pool ? "pool_size" : "strides", v[0], v[1]);
  }
  if (o.padding != LM_VALID && o.padding != LM_SAME)
    return lm__layer_error(cls, LM_ERROR_VALUE, "%s: `padding` must be LM_VALID or LM_SAME, got %d", cls,
                           (int)o.padding);
  pool_layer *pl = (pool_layer *)lm__layer_new(sizeof *pl, vt, o.name);
  if (!pl) return NULL;
  pl->dims = dims;
  pl->max = max;
  memcpy(pl->pool, pool, sizeof pool);
  memcpy(pl->strides, strides, sizeof strides);
  pl->padding = o.padding;
  return &pl->base;
}

lm_layer *lm_max_pooling1d_new(int pool_size, lm_pool_opts opts) { return pool_new(&max1d_vt, 1, true, pool_size, opts); }
lm_layer *lm_max_pooling2d_new(int pool_size, lm_pool_opts opts) { return pool_new(&max2d_vt, 2, true, pool_size, opts); }
lm_layer *lm_average_pooling1d_new(int pool_size, lm_pool_opts opts) {
  return pool_new(&avg1d_vt, 1, false, pool_size, opts);
}
lm_layer *lm_average_pooling2d_new(int pool_size, lm_pool_opts opts) {
  return pool_new(&avg2d_vt, 2, false, pool_size, opts);
}

static lm_layer *global_new(const lm_layer_vt *vt, int dims, bool max, lm_layer_opts o) {
  pool_layer *pl = (pool_layer *)lm__layer_new(sizeof *pl, vt, o.name);
  if (!pl) return NULL;
  pl->dims = dims;
  pl->max = max;
  return &pl->base;
}

lm_layer *lm_global_max_pooling1d_new(lm_layer_opts opts) { return global_new(&gmax1d_vt, 1, true, opts); }
lm_layer *lm_global_max_pooling2d_new(lm_layer_opts opts) { return global_new(&gmax2d_vt, 2, true, opts); }
lm_layer *lm_global_average_pooling1d_new(lm_layer_opts opts) { return global_new(&gavg1d_vt, 1, false, opts); }
lm_layer *lm_global_average_pooling2d_new(lm_layer_opts opts) { return global_new(&gavg2d_vt, 2, false, opts); }

lm_layer *lm__pool_from_config(lm__cfg *c) {
  const lm_layer_vt *vts[] = {&max1d_vt, &max2d_vt, &avg1d_vt, &avg2d_vt, &gmax1d_vt, &gmax2d_vt, &gavg1d_vt, &gavg2d_vt};
  int k = -1;
  for (int i = 0; i < 8; i++)
    if (!strcmp(vts[i]->class_name, c->cls)) k = i;
  if (k < 0) return NULL;
  int dims = k % 2 + 1;
  bool max = k % 4 < 2;
  lm__cfg_fixed_string(c, "data_format", "channels_last", "lamina is channels-last");
  if (k >= 4) {
    lm__cfg_fixed_bool(c, "keepdims", false, "lamina's global pooling drops the pooled axes");
    return lm__cfg_ok(c) ? global_new(vts[k], dims, max, (lm_layer_opts){.name = c->name}) : NULL;
  }
  int pool[2] = {2, 2}, strides[2] = {0, 0}, padding = 0;
  lm__cfg_ints(c, "pool_size", pool, dims, 2, 1, LM__CFG_MAX_DIM);
  lm__cfg_ints(c, "strides", strides, dims, 0, 1, LM__CFG_MAX_DIM); /* null: the pool size */
  lm__cfg_choice(c, "padding", &padding, 0, (const char *const[]){"valid", "same", NULL});
  if (!lm__cfg_ok(c)) return NULL;
  lm_pool_opts o = {.pool_hw = {pool[0], dims == 2 ? pool[1] : 0}, .strides = {strides[0], dims == 2 ? strides[1] : 0},
                    .padding = padding ? LM_SAME : LM_VALID, .name = c->name};
  return pool_new(vts[k], dims, max, pool[0], o);
}
