/* Loss ops: one per model output, and the weighted sum that makes the total loss. */
#include "graph/graph.h"
#include "train/losses.h"

static lm_loss_spec spec_of(const lm_attrs *a) {
  return (lm_loss_spec){.kind = (lm_loss_kind)a->i[0], .from_logits = (int)a->i[1], .huber_delta = a->f[0]};
}

/* in: pred, target. out: the scalar loss, and d(loss)/d(pred) saved by forward. */
static lm_status loss_shape(const lm_attrs *a, const lm_shape *in, const lm_dtype *dt, int n, lm_shape *out,
                            lm_dtype *odt, char *err, size_t len) {
  char b1[96], b2[96];
  lm_shape pred = in[0], target = in[1];
  int ok = pred.rank >= 1 && target.rank >= 1;
  if ((lm_loss_kind)a->i[0] == LM_LOSS_SPARSE_CATEGORICAL_CE) {
    /* One class id per row of the last axis: targets shaped like the predictions without
     * their last axis, or with a last axis of 1. */
    int trailing_one = target.rank == pred.rank && target.dim[target.rank - 1] == 1;
    ok = ok && (target.rank == pred.rank - 1 || trailing_one);
    for (int d = 1; ok && d < pred.rank - 1; d++) ok = pred.dim[d] == target.dim[d] || target.dim[d] < 0 || pred.dim[d] < 0;
    if (!ok) {
      snprintf(err, len, "sparse_categorical_crossentropy needs one class id per prediction row: targets shaped %s "
               "(without the class axis), got %s", lm_shape_format(pred, b1, sizeof b1), lm_shape_format(target, b2, sizeof b2));
      return LM_ERROR_SHAPE;
    }
  } else {
    ok = ok && pred.rank == target.rank;
    for (int d = 1; ok && d < pred.rank; d++) ok = pred.dim[d] == target.dim[d] || target.dim[d] < 0 || pred.dim[d] < 0;
    if (!ok) {
      snprintf(err, len, "%s needs targets shaped like the predictions %s, got %s",
               lm__loss_name((lm_loss_kind)a->i[0]), lm_shape_format(pred, b1, sizeof b1),
               lm_shape_format(target, b2, sizeof b2));
      return LM_ERROR_SHAPE;
    }
  }
  if (pred.dim[0] >= 0 && target.dim[0] >= 0 && pred.dim[0] != target.dim[0]) {
    snprintf(err, len, "predictions %s and targets %s hold different numbers of samples",
             lm_shape_format(pred, b1, sizeof b1), lm_shape_format(target, b2, sizeof b2));
    return LM_ERROR_SHAPE;
  }
  out[0] = (lm_shape){.rank = 0};
  out[1] = pred;
  odt[0] = odt[1] = LM_FLOAT32;
  return LM_OK;
}

static void loss_fwd(lm_plan *p, const lm_opnode *node) {
  lm_loss_spec spec = spec_of(&node->a);
  /* Keras reduces the last axis per sample, then averages over every other position. */
  lm_shape ps = p->shapes[node->in[0]];
  int64_t cols = ps.rank > 1 ? ps.dim[ps.rank - 1] : 1, rows = cols ? lm_shape_size(ps) / cols : 0;
  float *dpred = lm__g(p, node->in[0]) ? lm__f(p, node->out[1]) : NULL;
  lm__f(p, node->out[0])[0] =
      (float)lm__loss_compute(&spec, lm__f(p, node->in[0]), lm__f(p, node->in[1]), rows, cols, dpred, 1.0f);
}

static void loss_bwd(lm_plan *p, const lm_opnode *node) {
  float *dpred = lm__g(p, node->in[0]);
  if (!dpred) return;
  float dy = lm__g(p, node->out[0])[0];
  const float *saved = lm__f(p, node->out[1]);
  int64_t n = lm__n(p, node->in[0]);
  for (int64_t i = 0; i < n; i++) dpred[i] += dy * saved[i];
}

const lm_op_def lm__op_loss = {"loss", 2, loss_shape, loss_fwd, loss_bwd, 1u << 1, false, 0, 0};

/* in: n scalars; a.p: const float weights[n]. */
static lm_status wsum_shape(const lm_attrs *a, const lm_shape *in, const lm_dtype *dt, int n, lm_shape *out,
                            lm_dtype *odt, char *err, size_t len) {
  out[0] = (lm_shape){.rank = 0};
  odt[0] = LM_FLOAT32;
  return LM_OK;
}

static void wsum_fwd(lm_plan *p, const lm_opnode *node) {
  const float *w = node->a.p;
  float total = 0;
  for (int k = 0; k < node->n_in; k++) total += w[k] * lm__f(p, node->in[k])[0];
  lm__f(p, node->out[0])[0] = total;
}

static void wsum_bwd(lm_plan *p, const lm_opnode *node) {
  const float *w = node->a.p;
  float dy = lm__g(p, node->out[0])[0];
  for (int k = 0; k < node->n_in; k++)
    if (lm__g(p, node->in[k])) lm__g(p, node->in[k])[0] += w[k] * dy;
}

const lm_op_def lm__op_weighted_sum = {"weighted_sum", 1, wsum_shape, wsum_fwd, wsum_bwd, 0, false, LM_UNREAD_ALL, 0};
