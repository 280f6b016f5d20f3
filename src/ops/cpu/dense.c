/* Dense: y = act(x W + b) over the last axis of x (act fused, attrs i7). */
#include "graph/graph.h"
#include "ops/activations.h"
#include "ops/gemm.h"

static lm_status dense_shape(const lm_attrs *a, const lm_shape *in, const lm_dtype *dt, int n, lm_shape *out,
                             lm_dtype *odt, char *err, size_t len) {
  char b1[96], b2[96];
  if (dt[0] != LM_FLOAT32) {
    snprintf(err, len, "Dense needs float32 input, got int32 (add an Embedding or convert the data)");
    return LM_ERROR_VALUE;
  }
  if (in[0].rank < 2) {
    snprintf(err, len, "Dense needs an input of rank >= 2 (batch, features), got %s",
             lm_shape_format(in[0], b1, sizeof b1));
    return LM_ERROR_SHAPE;
  }
  int64_t features = in[0].dim[in[0].rank - 1];
  if (in[1].rank != 2 || features != in[1].dim[0]) {
    snprintf(err, len, "the last axis of the input (%lld) does not match the kernel %s",
             (long long)features, lm_shape_format(in[1], b2, sizeof b2));
    return LM_ERROR_SHAPE;
  }
  if (n == 3 && (in[2].rank != 1 || in[2].dim[0] != in[1].dim[1])) {
    snprintf(err, len, "bias %s does not match kernel %s", lm_shape_format(in[2], b1, sizeof b1),
             lm_shape_format(in[1], b2, sizeof b2));
    return LM_ERROR_SHAPE;
  }
  out[0] = in[0];
  out[0].dim[out[0].rank - 1] = in[1].dim[1];
  odt[0] = LM_FLOAT32;
  return LM_OK;
}

static void dense_dims(lm_plan *p, const lm_opnode *node, int *rows, int *k, int *units) {
  lm_shape w = p->shapes[node->in[1]];
  *k = (int)w.dim[0];
  *units = (int)w.dim[1];
  *rows = (int)(lm__n(p, node->in[0]) / (*k ? *k : 1));
}

static void dense_fwd(lm_plan *p, const lm_opnode *node) {
  int rows, k, units;
  dense_dims(p, node, &rows, &k, &units);
  float *y = lm__f(p, node->out[0]);
  lm__sgemm(false, false, rows, units, k, 1.0f, lm__f(p, node->in[0]), k, lm__f(p, node->in[1]), units, 0.0f, y,
            units);
  lm__bias_act_forward((lm_activation)node->a.i[7], node->n_in == 3 ? lm__f(p, node->in[2]) : NULL, y, rows, units);
}

static void dense_bwd(lm_plan *p, const lm_opnode *node) {
  int rows, k, units;
  dense_dims(p, node, &rows, &k, &units);
  float *dy = lm__g(p, node->out[0]);
  float *dx = lm__g(p, node->in[0]), *dw = lm__g(p, node->in[1]);
  lm__bias_act_backward((lm_activation)node->a.i[7], lm__f(p, node->out[0]), dy,
                        node->n_in == 3 ? lm__g(p, node->in[2]) : NULL, rows, units);
  if (dx) lm__sgemm(false, true, rows, k, units, 1.0f, dy, units, lm__f(p, node->in[1]), units, 1.0f, dx, k);
  if (dw) lm__sgemm(true, false, k, units, rows, 1.0f, lm__f(p, node->in[0]), k, dy, units, 1.0f, dw, units);
}

const lm_op_def lm__op_dense = {"dense", 1, dense_shape, dense_fwd, dense_bwd, 0, true, 0, 0};
