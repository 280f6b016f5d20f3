#include "graph/graph.h"
#include "ops/activations.h"

lm_graph *lm__graph_new(void) { return lm__calloc(1, sizeof(lm_graph)); }

void lm__graph_free(lm_graph *g) {
  if (!g) return;
  free(g->vals);
  free(g->ops);
  free(g);
}

static int add_value(lm_graph *g, lm_value_kind kind, lm_dtype dtype, lm_shape shape, int producer) {
  if (lm__grow(&g->vals, &g->cap_vals, g->n_vals + 1, sizeof *g->vals)) {
    lm__fail(&g->err, LM_ERROR_MEMORY, "out of memory growing the graph");
    return -1;
  }
  lm_value *v = &g->vals[g->n_vals];
  memset(v, 0, sizeof *v);
  v->kind = kind;
  v->dtype = dtype;
  v->shape = shape;
  v->producer = producer;
  v->mask = -1;
  return g->n_vals++;
}

int lm__graph_input(lm_graph *g, lm_value_kind kind, lm_dtype dtype, lm_shape shape) {
  return add_value(g, kind, dtype, shape, -1);
}

/* Provided by the layer module: a weight's array. */
struct lm_weight;
LM_INTERNAL lm_array *lm__weight_array(lm_weight *w);

int lm__graph_param(lm_graph *g, lm_weight *w) {
  for (int i = 0; i < g->n_vals; i++)
    if (g->vals[i].kind == LM_VALUE_PARAM && g->vals[i].weight == w) return i;
  lm_array *a = lm__weight_array(w);
  int id = add_value(g, LM_VALUE_PARAM, a->dtype, a->shape, -1);
  if (id >= 0) g->vals[id].weight = w;
  return id;
}

int lm__graph_op(lm_graph *g, const lm_op_def *def, const int *in, int n_in, const lm_attrs *a, int *out) {
  if (g->err.code) return -1;
  lm_shape in_shapes[LM_MAX_OP_IO], out_shapes[LM_MAX_OP_IO];
  lm_dtype in_dtypes[LM_MAX_OP_IO], out_dtypes[LM_MAX_OP_IO];
  if (n_in > LM_MAX_OP_IO) {
    lm__fail(&g->err, LM_ERROR_VALUE, "Layer \"%s\": %d inputs, at most %d are supported",
             g->who ? g->who : "?", n_in, LM_MAX_OP_IO);
    return -1;
  }
  for (int i = 0; i < n_in; i++) {
    in_shapes[i] = g->vals[in[i]].shape;
    in_dtypes[i] = g->vals[in[i]].dtype;
  }
  char why[512] = "";
  lm_attrs attrs = a ? *a : (lm_attrs){0};
  lm_status st = def->shape(&attrs, in_shapes, in_dtypes, n_in, out_shapes, out_dtypes, why, sizeof why);
  if (st != LM_OK) {
    char shapes[384] = "", buf[96];
    size_t at = 0;
    for (int i = 0; i < n_in && at < sizeof shapes; i++)
      at += (size_t)snprintf(shapes + at, sizeof shapes - at, "%s%s", i ? ", " : "",
                             lm_shape_format(in_shapes[i], buf, sizeof buf));
    lm__fail(&g->err, st, "Layer \"%s\" (op %s) cannot take inputs of shape %s: %s",
             g->who ? g->who : "?", def->name, shapes, why);
    return -1;
  }
  if (lm__grow(&g->ops, &g->cap_ops, g->n_ops + 1, sizeof *g->ops)) {
    lm__fail(&g->err, LM_ERROR_MEMORY, "out of memory growing the graph");
    return -1;
  }
  int op_index = g->n_ops;
  lm_opnode node = {.def = def, .n_in = n_in, .n_out = def->n_out, .a = attrs, .index = op_index, .who = g->who};
  for (int i = 0; i < n_in; i++) node.in[i] = in[i];
  for (int k = 0; k < def->n_out; k++) {
    int v = add_value(g, LM_VALUE_TEMP, out_dtypes[k], out_shapes[k], op_index);
    if (v < 0) return -1;
    node.out[k] = v;
    if (out) out[k] = v;
  }
  g->ops[g->n_ops++] = node;
  return 0;
}

int lm__emit(lm_graph *g, const lm_op_def *def, const int *in, int n_in, const lm_attrs *a) {
  int out[LM_MAX_OP_IO];
  if (lm__graph_op(g, def, in, n_in, a, out)) return -1;
  return out[0];
}

int lm__emit_activated(lm_graph *g, const lm_op_def *def, const int *in, int n_in, lm_attrs a, lm_activation act) {
  int fused = def->fuses_activation && lm__act_fusable(act);
  a.i[7] = fused ? act : 0;
  int z = lm__emit(g, def, in, n_in, &a);
  if (z < 0 || fused || act == LM_LINEAR || act == LM_ACTIVATION_DEFAULT) return z;
  return lm__emit(g, &lm__op_activation, &z, 1, &(lm_attrs){.i = {act}});
}
