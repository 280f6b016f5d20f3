/* Merge layers: Concatenate, Add, Subtract, Multiply, Average, Maximum. */
#include "io/model_config.h"

typedef struct merge_layer {
  lm_layer base;
  int kind; /* lm_binary_kind, or -1 for Average */
  int axis; /* Concatenate */
} merge_layer;

static int merge_check(lm_layer *layer, lm_graph *g, int n, int exact) {
  if (exact ? n != exact : n < 2) {
    lm__fail(&g->err, LM_ERROR_VALUE, "Layer \"%s\" (%s) should be called on %s 2 inputs, got %d", layer->name,
             layer->vt->class_name, exact ? "exactly" : "a list of at least", n);
    return -1;
  }
  return 0;
}

static int binary_emit(lm_layer *layer, lm_graph *g, const int *in, int n, int *out) {
  merge_layer *m = (merge_layer *)layer;
  if (merge_check(layer, g, n, m->kind == LM_BINARY_SUBTRACT ? 2 : 0)) return -1;
  int acc = in[0];
  for (int k = 1; k < n && acc >= 0; k++)
    acc = lm__emit(g, &lm__op_binary, (int[]){acc, in[k]}, 2, &(lm_attrs){.i = {m->kind}});
  out[0] = acc;
  return acc < 0 ? -1 : 1;
}

static int average_emit(lm_layer *layer, lm_graph *g, const int *in, int n, int *out) {
  if (merge_check(layer, g, n, 0)) return -1;
  out[0] = lm__emit(g, &lm__op_mean_n, in, n, NULL);
  return out[0] < 0 ? -1 : 1;
}

static int concat_emit(lm_layer *layer, lm_graph *g, const int *in, int n, int *out) {
  if (merge_check(layer, g, n, 0)) return -1;
  out[0] = lm__emit(g, &lm__op_concat, in, n, &(lm_attrs){.i = {((merge_layer *)layer)->axis}});
  return out[0] < 0 ? -1 : 1;
}

static const lm_layer_vt add_vt = {.class_name = "Add", .prefix = "add", .emit = binary_emit};
static const lm_layer_vt subtract_vt = {.class_name = "Subtract", .prefix = "subtract", .emit = binary_emit};
static const lm_layer_vt multiply_vt = {.class_name = "Multiply", .prefix = "multiply", .emit = binary_emit};
static const lm_layer_vt maximum_vt = {.class_name = "Maximum", .prefix = "maximum", .emit = binary_emit};
static const lm_layer_vt average_vt = {.class_name = "Average", .prefix = "average", .emit = average_emit};
static void concat_config(const lm_layer *layer, lm_json *j) { lm__json_kv_int(j, "axis", ((const merge_layer *)layer)->axis); }

static const lm_layer_vt concat_vt = {.class_name = "Concatenate", .prefix = "concatenate", .emit = concat_emit, .get_config = concat_config};

static lm_layer *merge_new(const lm_layer_vt *vt, int kind, const char *name) {
  merge_layer *m = (merge_layer *)lm__layer_new(sizeof *m, vt, name);
  if (m) m->kind = kind;
  return &m->base;
}

lm_layer *lm_add_new(lm_layer_opts opts) { return merge_new(&add_vt, LM_BINARY_ADD, opts.name); }
lm_layer *lm_subtract_new(lm_layer_opts opts) { return merge_new(&subtract_vt, LM_BINARY_SUBTRACT, opts.name); }
lm_layer *lm_multiply_new(lm_layer_opts opts) { return merge_new(&multiply_vt, LM_BINARY_MULTIPLY, opts.name); }
lm_layer *lm_maximum_new(lm_layer_opts opts) { return merge_new(&maximum_vt, LM_BINARY_MAXIMUM, opts.name); }
lm_layer *lm_average_new(lm_layer_opts opts) { return merge_new(&average_vt, -1, opts.name); }

lm_layer *lm_concatenate_new(lm_concat_opts opts) {
  merge_layer *m = (merge_layer *)merge_new(&concat_vt, 0, opts.name);
  if (m) m->axis = opts.axis ? opts.axis : -1;
  return &m->base;
}

lm_layer *lm__merge_from_config(lm__cfg *c) {
  lm_layer_opts o = {.name = c->name};
  if (!strcmp(c->cls, "Concatenate")) {
    int axis = -1;
    if (!lm__cfg_int(c, "axis", &axis, -1, -LM_MAX_RANK, LM_MAX_RANK)) return NULL;
    if (axis == 0) { /* lamina reads axis 0 as the default, -1; Keras refuses the batch axis too */
      lm__cfg_fail(c, "axis", lm__cfg_take(c, "axis"), "cannot be 0, the batch axis");
      return NULL;
    }
    return lm_concatenate_new((lm_concat_opts){.axis = axis, .name = c->name});
  }
  if (!strcmp(c->cls, "Add")) return lm_add_new(o);
  if (!strcmp(c->cls, "Subtract")) return lm_subtract_new(o);
  if (!strcmp(c->cls, "Multiply")) return lm_multiply_new(o);
  if (!strcmp(c->cls, "Average")) return lm_average_new(o);
  return lm_maximum_new(o);
}
