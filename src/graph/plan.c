#include "graph/graph.h"

LM_INTERNAL lm_array *lm__weight_array(lm_weight *w);
LM_INTERNAL bool lm__weight_trainable(const lm_weight *w);

static size_t align64(size_t n) { return (n + 63) & ~(size_t)63; }

lm_plan *lm__plan_new(lm_graph *g, const lm_shape *in_shapes, int training, int loss) {
  lm_plan *p = lm__calloc(1, sizeof *p);
  if (!p) return NULL;
  p->g = g;
  p->training = training;
  p->loss = loss;
  p->seed = lm__rng_seed_value();
  int nv = g->n_vals;
  p->shapes = lm__calloc((size_t)nv, sizeof *p->shapes);
  p->data = lm__calloc((size_t)nv, sizeof *p->data);
  p->grad = lm__calloc((size_t)nv, sizeof *p->grad);
  char *needs_grad = lm__calloc((size_t)nv, 1);
  if (!p->shapes || !p->data || !p->grad || !needs_grad) goto fail;

  for (int v = 0; v < nv; v++) {
    const lm_value *val = &g->vals[v];
    if (val->kind == LM_VALUE_INPUT || val->kind == LM_VALUE_TARGET) {
      p->shapes[v] = in_shapes[v];
      needs_grad[v] = loss >= 0 && val->requires_grad && val->dtype == LM_FLOAT32;
    }
    else if (val->kind == LM_VALUE_PARAM) {
      p->shapes[v] = lm__weight_array(val->weight)->shape;
      needs_grad[v] = loss >= 0 && lm__weight_trainable(val->weight);
    }
  }
  for (int o = 0; o < g->n_ops; o++) {
    const lm_opnode *node = &g->ops[o];
    lm_shape in[LM_MAX_OP_IO], out[LM_MAX_OP_IO];
    lm_dtype in_dt[LM_MAX_OP_IO], out_dt[LM_MAX_OP_IO];
    int any_grad = 0;
    for (int i = 0; i < node->n_in; i++) {
      in[i] = p->shapes[node->in[i]];
      in_dt[i] = g->vals[node->in[i]].dtype;
      any_grad |= needs_grad[node->in[i]];
    }
    char why[512] = "";
    if (node->def->shape(&node->a, in, in_dt, node->n_in, out, out_dt, why, sizeof why) != LM_OK) {
      char buf[96];
      lm__fail(&p->err, LM_ERROR_SHAPE, "Layer \"%s\" (op %s) cannot run on input of shape %s: %s",
               node->who ? node->who : "?", node->def->name, lm_shape_format(in[0], buf, sizeof buf), why);
      goto fail;
    }
    for (int k = 0; k < node->n_out; k++) {
      p->shapes[node->out[k]] = out[k];
      needs_grad[node->out[k]] = any_grad && node->def->backward && out_dt[k] == LM_FLOAT32 &&
                                 !(node->def->nondiff_outputs & (1u << k));
    }
  }

  /* One arena: values' data first, then every gradient contiguously so that a single
   * memset clears them all before backward. */
  size_t data_bytes = 0, grad_bytes = 0;
  for (int v = 0; v < nv; v++) {
    size_t bytes = align64((size_t)lm_shape_size(p->shapes[v]) * 4);
    if (g->vals[v].kind != LM_VALUE_PARAM) data_bytes += bytes;
    if (needs_grad[v]) grad_bytes += bytes;
  }
  p->grad_offset = data_bytes;
  p->arena_bytes = data_bytes + grad_bytes;
  p->arena = aligned_alloc(64, p->arena_bytes ? p->arena_bytes : 64);
  if (!p->arena) {
    lm__fail(&p->err, LM_ERROR_MEMORY, "out of memory: the plan needs %zu bytes", p->arena_bytes);
    goto fail;
  }
  memset(p->arena, 0, p->arena_bytes);
  size_t at = 0, gat = data_bytes;
  for (int v = 0; v < nv; v++) {
    size_t bytes = align64((size_t)lm_shape_size(p->shapes[v]) * 4);
    if (g->vals[v].kind == LM_VALUE_PARAM) p->data[v] = lm__weight_array(g->vals[v].weight)->data;
    else {
      p->data[v] = p->arena + at;
      at += bytes;
    }
    if (needs_grad[v]) {
      p->grad[v] = (float *)(p->arena + gat);
      gat += bytes;
    }
  }
  free(needs_grad);
  return p;
fail:
  free(needs_grad);
  if (p->err.code == LM_OK) lm__fail(&p->err, LM_ERROR_MEMORY, "out of memory building a plan");
  return p; /* carries its error; the caller checks p->err */
}

void lm__plan_free(lm_plan *p) {
  if (!p) return;
  free(p->shapes);
  free(p->data);
  free(p->grad);
  free(p->arena);
  free(p);
}

void lm__plan_forward(lm_plan *p) {
  const lm_graph *g = p->g;
  for (int o = 0; o < g->n_ops; o++) g->ops[o].def->forward(p, &g->ops[o]);
  p->step++;
}

void lm__plan_backward(lm_plan *p) {
  const lm_graph *g = p->g;
  memset(p->arena + p->grad_offset, 0, p->arena_bytes - p->grad_offset);
  if (p->loss < 0 || !p->grad[p->loss]) return;
  p->grad[p->loss][0] = 1.0f;
  for (int o = g->n_ops - 1; o >= 0; o--) {
    const lm_opnode *node = &g->ops[o];
    if (!node->def->backward) continue;
    int any = 0;
    for (int k = 0; k < node->n_out; k++) any |= p->grad[node->out[k]] != NULL;
    if (any) node->def->backward(p, node);
  }
}
