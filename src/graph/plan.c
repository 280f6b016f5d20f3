#include "graph/graph.h"
#include "core/threads.h"

LM_INTERNAL lm_array *lm__weight_array(lm_weight *w);
LM_INTERNAL bool lm__weight_trainable(const lm_weight *w);

static size_t align64(size_t n) { return (n + 63) & ~(size_t)63; }

static size_t value_bytes(const lm_plan *p, int v) { return align64((size_t)lm_shape_size(p->shapes[v]) * 4); }

/* A buffer's life in steps of the plan's clock: forward op o runs at step o, the backward
 * of op o at step 2n-1-o (n ops). It owns its bytes from `birth` to `death`, both included,
 * and from `birth2` to `death2` (a scratch's second use, in backward; empty if birth2 >
 * death2). */
typedef struct life {
  int birth, death, birth2, death2;
  int value, grad; /* which buffer: value's data (grad 0) or its gradient (grad 1) */
  size_t size, off;
} life;

/* Largest first; ties in value order, so that layouts do not depend on qsort. */
static int by_size(const void *a, const void *b) {
  const life *x = a, *y = b;
  if (x->size != y->size) return x->size < y->size ? 1 : -1;
  if (x->value != y->value) return x->value < y->value ? -1 : 1;
  return x->grad - y->grad;
}

static int meet(int b1, int d1, int b2, int d2) { return b1 <= d1 && b2 <= d2 && b1 <= d2 && b2 <= d1; }

static int lives_meet(const life *a, const life *b) {
  return meet(a->birth, a->death, b->birth, b->death) || meet(a->birth, a->death, b->birth2, b->death2) ||
         meet(a->birth2, a->death2, b->birth, b->death) || meet(a->birth2, a->death2, b->birth2, b->death2);
}

/* Lays out the arena: see the comment on lm_plan in graph.h. */
static int assign_buffers(lm_plan *p, const char *needs_grad) {
  const lm_graph *g = p->g;
  int nv = g->n_vals, n = g->n_ops, training = p->loss >= 0, end = 2 * n;
  int *last_use = lm__calloc((size_t)nv, sizeof *last_use);
  char *bwd_runs = lm__calloc((size_t)n + 1, 1);
  size_t *data_off = lm__calloc((size_t)nv, sizeof *data_off), *grad_off = lm__calloc((size_t)nv, sizeof *grad_off);
  life *lives = lm__calloc((size_t)nv * 2 + 1, sizeof *lives);
  int *placed = lm__calloc((size_t)nv * 2 + 1, sizeof *placed);
  p->grad_birth = lm__calloc((size_t)nv, sizeof *p->grad_birth);
  int rc = -1, n_lives = 0;
  if (!last_use || !bwd_runs || !data_off || !grad_off || !lives || !placed || !p->grad_birth) goto done;
  for (int v = 0; v < nv; v++) last_use[v] = -1, p->grad_birth[v] = -1;
  for (int o = 0; o < n; o++)
    for (int i = 0; i < g->ops[o].n_in; i++) last_use[g->ops[o].in[i]] = o;

  /* Which gradients exist: those of weights, of inputs that asked and of the loss are kept
   * through all of backward (zeroed together once per backward); an intermediate's, when
   * something consumes the value, lives from its last consumer's backward to its
   * producer's. An op's backward runs when one of its outputs has a gradient (see
   * lm__plan_backward). */
  size_t kept = 0;
  for (int v = 0; v < nv; v++) {
    if (!needs_grad[v]) continue;
    if (g->vals[v].kind != LM_VALUE_TEMP || v == p->loss) {
      grad_off[v] = kept;
      kept += value_bytes(p, v);
    } else if (last_use[v] >= 0) {
      p->grad_birth[v] = last_use[v];
    }
  }
  for (int o = 0; training && o < n; o++) {
    const lm_opnode *node = &g->ops[o];
    if (!node->def->backward) continue;
    for (int k = 0; k < node->n_out; k++) {
      int v = node->out[k];
      if (needs_grad[v] && (p->grad_birth[v] >= 0 || v == p->loss)) bwd_runs[o] = 1;
    }
  }

  /* Activations. A value is born at its producer's forward and read by its consumers'
   * forwards; an op's backward may read any of its inputs and outputs (less those its
   * backward_unread names), so a value lives on until the backward of the earliest op
   * among its producer and consumers whose backward runs and reads it (the last of them
   * to run). An op's scratch output lives only during the op's forward and its backward.
   * Inputs, targets and kept values live through the whole run; with
   * LM_PLAN_KEEP_ACTIVATIONS so does every value of a training plan, so that backward can
   * run again on one forward. */
  for (int v = 0; v < nv; v++) {
    const lm_value *val = &g->vals[v];
    if (val->kind == LM_VALUE_PARAM) continue;
    life l = {.birth = -1, .death = end, .birth2 = 1, .death2 = 0, .value = v, .size = value_bytes(p, v)};
    if (val->kind == LM_VALUE_TEMP) {
      int P = val->producer, kp = 0;
      const lm_opnode *prod = &g->ops[P];
      while (prod->out[kp] != v) kp++;
      l.birth = P;
      if (!val->keep && !(training && (p->flags & LM_PLAN_KEEP_ACTIVATIONS))) {
        l.death = last_use[v] > P ? last_use[v] : P;
        int first_reader = -1; /* earliest op, in forward order, whose backward reads v */
        if (bwd_runs[P] && !(prod->def->backward_unread & LM_UNREAD_OUT(kp))) first_reader = P;
        for (int o = P + 1; first_reader < 0 && o <= last_use[v]; o++) {
          if (!bwd_runs[o]) continue;
          for (int i = 0; i < g->ops[o].n_in; i++)
            if (g->ops[o].in[i] == v && !(g->ops[o].def->backward_unread & LM_UNREAD_IN(i))) first_reader = o;
        }
        if (first_reader >= 0) l.death = 2 * n - 1 - first_reader;
        if ((prod->def->scratch_outputs & (1u << kp)) && last_use[v] < 0) {
          l.death = P;
          if (bwd_runs[P]) l.birth2 = l.death2 = 2 * n - 1 - P;
        }
      }
    }
    lives[n_lives++] = l;
  }
  for (int v = 0; v < nv; v++)
    if (p->grad_birth[v] >= 0)
      lives[n_lives++] = (life){.birth = 2 * n - 1 - p->grad_birth[v], .death = 2 * n - 1 - g->vals[v].producer,
                                .birth2 = 1, .death2 = 0, .value = v, .grad = 1, .size = value_bytes(p, v)};

  /* Offsets, largest buffer first (greedy by size): each goes into the smallest gap that
   * fits it among the buffers already placed whose lives meet its own, else above them.
   * Knowing every life in advance packs tighter than handing out bytes in time order. */
  qsort(lives, (size_t)n_lives, sizeof *lives, by_size);
  size_t top = 0;
  int n_placed = 0; /* placed[0..n_placed): lives already placed, by offset */
  for (int i = 0; i < n_lives; i++) {
    life *l = &lives[i];
    size_t at = 0, best = SIZE_MAX, best_gap = SIZE_MAX;
    int pos = n_placed;
    for (int j = 0; j < n_placed; j++) {
      const life *m = &lives[placed[j]];
      if (!lives_meet(l, m)) continue;
      if (m->off >= at && m->off - at >= l->size && m->off - at < best_gap) best = at, best_gap = m->off - at;
      if (m->off + m->size > at) at = m->off + m->size;
    }
    l->off = best != SIZE_MAX ? best : at;
    if (l->off + l->size > top) top = l->off + l->size;
    if (l->grad) grad_off[l->value] = l->off;
    else data_off[l->value] = l->off;
    while (pos > 0 && lives[placed[pos - 1]].off > l->off) pos--;
    memmove(placed + pos + 1, placed + pos, (size_t)(n_placed - pos) * sizeof *placed);
    placed[pos] = i;
    n_placed++;
  }

  p->kept_grad_offset = top;
  p->kept_grad_bytes = kept;
  p->arena_bytes = top + kept;
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
    if (p->grad_birth[v] >= 0) p->grad[v] = (float *)(p->arena + grad_off[v]);
    else if (g->vals[v].kind != LM_VALUE_TEMP || v == p->loss) p->grad[v] = (float *)(p->arena + p->kept_grad_offset + grad_off[v]);
  }
  rc = 0;
done:
  free(last_use);
  free(bwd_runs);
  free(data_off);
  free(grad_off);
  free(lives);
  free(placed);
  return rc;
}

lm_plan *lm__plan_new(lm_graph *g, const lm_shape *in_shapes, int training, int loss) {
  return lm__plan_new_flags(g, in_shapes, training, loss, 0);
}

lm_plan *lm__plan_new_flags(lm_graph *g, const lm_shape *in_shapes, int training, int loss, unsigned flags) {
  lm_plan *p = lm__calloc(1, sizeof *p);
  if (!p) return NULL;
  p->g = g;
  p->flags = flags;
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
