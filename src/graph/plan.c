#include "graph/graph.h"
#include "core/threads.h"

LM_INTERNAL lm_array *lm__weight_array(lm_weight *w);
LM_INTERNAL bool lm__weight_trainable(const lm_weight *w);

static size_t align64(size_t n) { return (n + 63) & ~(size_t)63; }

/* Offsets in the arena, handed out and taken back as values are born and die. */
typedef struct block {
  size_t off, size;
} block;

typedef struct arena_plan {
  block *free;
  int n_free, cap_free;
  size_t top;
  int failed;
} arena_plan;

static size_t arena_take(arena_plan *a, size_t size) {
  int best = -1;
  for (int i = 0; i < a->n_free; i++)
    if (a->free[i].size >= size && (best < 0 || a->free[i].size < a->free[best].size)) best = i;
  if (best < 0) {
    size_t off = a->top;
    a->top += size;
    return off;
  }
  size_t off = a->free[best].off;
  a->free[best].off += size;
  a->free[best].size -= size;
  if (a->free[best].size == 0) a->free[best] = a->free[--a->n_free];
  return off;
}

static void arena_give(arena_plan *a, size_t off, size_t size) {
  /* Merge with neighbours so that large buffers can be reused later. */
  for (int i = 0; i < a->n_free; i++) {
    if (a->free[i].off + a->free[i].size == off) {
      off = a->free[i].off, size += a->free[i].size;
      a->free[i--] = a->free[--a->n_free];
    } else if (off + size == a->free[i].off) {
      size += a->free[i].size;
      a->free[i--] = a->free[--a->n_free];
    }
  }
  if (lm__grow(&a->free, &a->cap_free, a->n_free + 1, sizeof *a->free)) {
    a->failed = 1;
    return;
  }
  a->free[a->n_free++] = (block){off, size};
}

static size_t value_bytes(const lm_plan *p, int v) { return align64((size_t)lm_shape_size(p->shapes[v]) * 4); }

/* Lays out the arena: see the comment on lm_plan in graph.h. */
static int assign_buffers(lm_plan *p, const char *needs_grad) {
  const lm_graph *g = p->g;
  int nv = g->n_vals, training = p->loss >= 0;
  int *last_use = lm__calloc((size_t)nv, sizeof *last_use);
  size_t *data_off = lm__calloc((size_t)nv, sizeof *data_off), *grad_off = lm__calloc((size_t)nv, sizeof *grad_off);
  p->grad_birth = lm__calloc((size_t)nv, sizeof *p->grad_birth);
  arena_plan data = {0}, grads = {0};
  int rc = -1;
  if (!last_use || !data_off || !grad_off || !p->grad_birth) goto done;
  for (int v = 0; v < nv; v++) last_use[v] = -1, p->grad_birth[v] = -1;
  for (int o = 0; o < g->n_ops; o++)
    for (int i = 0; i < g->ops[o].n_in; i++) last_use[g->ops[o].in[i]] = o;

  /* Activations. A value lives from its producer to its last consumer; inputs, kept values
   * and (in training) everything backward reads stay for the whole run. */
  for (int v = 0; v < nv; v++)
    if (g->vals[v].kind == LM_VALUE_INPUT || g->vals[v].kind == LM_VALUE_TARGET) data_off[v] = arena_take(&data, value_bytes(p, v));
  for (int o = 0; o < g->n_ops; o++) {
    const lm_opnode *node = &g->ops[o];
    for (int k = 0; k < node->n_out; k++) data_off[node->out[k]] = arena_take(&data, value_bytes(p, node->out[k]));
    if (training) continue;
    for (int i = 0; i < node->n_in; i++) {
      int v = node->in[i];
      int dup = 0;
      for (int j = 0; j < i; j++) dup |= node->in[j] == v;
      if (!dup && last_use[v] == o && g->vals[v].kind == LM_VALUE_TEMP && !g->vals[v].keep)
        arena_give(&data, data_off[v], value_bytes(p, v));
    }
    for (int k = 0; k < node->n_out; k++) {
      int v = node->out[k];
      if (last_use[v] < 0 && !g->vals[v].keep) arena_give(&data, data_off[v], value_bytes(p, v));
    }
  }

  /* Gradients of weights, of inputs that asked, and of the loss live through all of
   * backward; an intermediate's lives from its last consumer's backward to its producer's. */
  size_t kept = 0;
  for (int v = 0; v < nv; v++) {
    if (!needs_grad[v]) continue;
    if (g->vals[v].kind != LM_VALUE_TEMP || v == p->loss) {
      grad_off[v] = kept;
      kept += value_bytes(p, v);
    }
  }
  for (int o = g->n_ops - 1; o >= 0; o--) {
    const lm_opnode *node = &g->ops[o];
    for (int i = 0; i < node->n_in; i++) {
      int v = node->in[i];
      if (needs_grad[v] && g->vals[v].kind == LM_VALUE_TEMP && last_use[v] == o && p->grad_birth[v] < 0) {
        grad_off[v] = arena_take(&grads, value_bytes(p, v));
        p->grad_birth[v] = o;
      }
    }
    for (int k = 0; k < node->n_out; k++) {
      int v = node->out[k];
      if (p->grad_birth[v] >= 0) arena_give(&grads, grad_off[v], value_bytes(p, v));
    }
  }
  if (data.failed || grads.failed) goto done;

  p->kept_grad_offset = data.top;
  p->kept_grad_bytes = kept;
  p->arena_bytes = data.top + kept + grads.top;
  p->arena = aligned_alloc(64, p->arena_bytes ? p->arena_bytes : 64);
  if (!p->arena) {
    lm__fail(&p->err, LM_ERROR_MEMORY, "out of memory: the plan needs %zu bytes", p->arena_bytes);
    goto done;
  }
  memset(p->arena, 0, p->arena_bytes);
  for (int v = 0; v < nv; v++) {
    if (g->vals[v].kind == LM_VALUE_PARAM) p->data[v] = lm__weight_array(g->vals[v].weight)->data;
    else p->data[v] = p->arena + data_off[v];
    if (!needs_grad[v]) continue;
    if (p->grad_birth[v] >= 0) p->grad[v] = (float *)(p->arena + data.top + kept + grad_off[v]);
    else if (g->vals[v].kind != LM_VALUE_TEMP || v == p->loss) p->grad[v] = (float *)(p->arena + data.top + grad_off[v]);
  }
  rc = 0;
done:
  free(last_use);
  free(data_off);
  free(grad_off);
  free(data.free);
  free(grads.free);
  return rc;
}

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

  if (assign_buffers(p, needs_grad)) goto fail;
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
  free(p->grad_birth);
  free(p->arena);
  free(p);
}

void lm__plan_forward(lm_plan *p) {
  const lm_graph *g = p->g;
  for (int o = 0; o < g->n_ops; o++) g->ops[o].def->forward(p, &g->ops[o]);
  p->step++;
}

/* Zeroes large gradient buffers on every thread: a lone memset of a layer's gradient is
 * several percent of a convnet's step. */
static void zero(void *buf, size_t bytes) {
  enum { PIECE = 1 << 20 };
  int64_t pieces = (int64_t)((bytes + PIECE - 1) / PIECE);
#pragma omp parallel for num_threads(lm__num_threads()) schedule(static) if (pieces > 1)
  for (int64_t i = 0; i < pieces; i++) {
    size_t off = (size_t)i * PIECE;
    memset((char *)buf + off, 0, bytes - off < PIECE ? bytes - off : PIECE);
  }
}

void lm__plan_backward(lm_plan *p) {
  const lm_graph *g = p->g;
  zero(p->arena + p->kept_grad_offset, p->kept_grad_bytes);
  if (p->loss < 0 || !p->grad[p->loss]) return;
  p->grad[p->loss][0] = 1.0f;
  for (int o = g->n_ops - 1; o >= 0; o--) {
    const lm_opnode *node = &g->ops[o];
    /* Shared gradient buffers start at zero where their life begins. */
    for (int i = 0; i < node->n_in; i++)
      if (p->grad_birth[node->in[i]] == o) zero(p->grad[node->in[i]], (size_t)lm__n(p, node->in[i]) * 4);
    if (!node->def->backward) continue;
    int any = 0;
    for (int k = 0; k < node->n_out; k++) any |= p->grad[node->out[k]] != NULL;
    if (any) node->def->backward(p, node);
  }
}
