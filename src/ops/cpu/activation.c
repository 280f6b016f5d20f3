#include "graph/graph.h"
#include "ops/activations.h"
#include "core/threads.h"
#include <math.h>

static const float SELU_ALPHA = 1.67326324235437728481f, SELU_SCALE = 1.05070098735548049342f;

LM_VECTORIZE void lm__act_forward(lm_activation act, const float *x, float *y, int64_t rows, int64_t cols) {
  int64_t n = rows * cols;
  switch (act) {
  case LM_ACTIVATION_DEFAULT:
  case LM_LINEAR:
    if (y != x) memcpy(y, x, (size_t)n * sizeof *y);
    break;
  case LM_RELU:
    for (int64_t i = 0; i < n; i++) y[i] = x[i] > 0 ? x[i] : 0;
    break;
  case LM_SIGMOID:
    for (int64_t i = 0; i < n; i++) y[i] = lm__sigmoid_poly(x[i]);
    break;
  case LM_TANH:
    for (int64_t i = 0; i < n; i++) y[i] = lm__tanh_poly(x[i]);
    break;
  case LM_ELU:
    for (int64_t i = 0; i < n; i++) y[i] = x[i] > 0 ? x[i] : expm1f(x[i]);
    break;
  case LM_SELU:
    for (int64_t i = 0; i < n; i++) y[i] = SELU_SCALE * (x[i] > 0 ? x[i] : SELU_ALPHA * expm1f(x[i]));
    break;
  case LM_GELU:
    /* x * Phi(x) with Phi(x) = erfc(-x / sqrt 2) / 2, as JAX computes it: 1 + erf(x / sqrt 2)
     * cancels for negative x and loses the left tail (2.7e-4 relative error at x = -4). */
    for (int64_t i = 0; i < n; i++) y[i] = 0.5f * x[i] * erfcf(-x[i] * (float)M_SQRT1_2);
    break;
  case LM_SOFTPLUS:
    for (int64_t i = 0; i < n; i++) y[i] = (x[i] > 0 ? x[i] : 0) + log1pf(expf(-fabsf(x[i])));
    break;
  case LM_SWISH:
    for (int64_t i = 0; i < n; i++) y[i] = x[i] * lm__sigmoid_poly(x[i]);
    break;
  case LM_SOFTMAX:
    for (int64_t r = 0; r < rows; r++) {
      const float *xr = x + r * cols;
      float *yr = y + r * cols;
      float mx = xr[0], sum = 0;
      /* not fmaxf: libm's, called from an AVX-512 clone, costs ~200 ns a call here */
      for (int64_t c = 1; c < cols; c++) mx = xr[c] > mx ? xr[c] : mx;
      for (int64_t c = 0; c < cols; c++) yr[c] = lm__exp_poly(xr[c] - mx);
      for (int64_t c = 0; c < cols; c++) sum += yr[c];
      float inv = 1.0f / sum;
      for (int64_t c = 0; c < cols; c++) yr[c] *= inv;
    }
    break;
  }
}

LM_VECTORIZE void lm__act_backward(lm_activation act, const float *x, const float *y, const float *dy, float *dx,
                      int64_t rows, int64_t cols) {
  int64_t n = rows * cols;
  switch (act) {
  case LM_ACTIVATION_DEFAULT:
  case LM_LINEAR:
    for (int64_t i = 0; i < n; i++) dx[i] += dy[i];
    break;
  case LM_RELU:
    for (int64_t i = 0; i < n; i++) dx[i] += x[i] > 0 ? dy[i] : 0;
    break;
  case LM_SIGMOID:
    for (int64_t i = 0; i < n; i++) dx[i] += dy[i] * y[i] * (1 - y[i]);
    break;
  case LM_TANH:
    for (int64_t i = 0; i < n; i++) dx[i] += dy[i] * (1 - y[i] * y[i]);
    break;
  case LM_ELU:
    for (int64_t i = 0; i < n; i++) dx[i] += dy[i] * (x[i] > 0 ? 1 : y[i] + 1);
    break;
  case LM_SELU:
    for (int64_t i = 0; i < n; i++) dx[i] += dy[i] * (x[i] > 0 ? SELU_SCALE : y[i] + SELU_SCALE * SELU_ALPHA);
    break;
  case LM_GELU:
    for (int64_t i = 0; i < n; i++) {
      float cdf = 0.5f * erfcf(-x[i] * (float)M_SQRT1_2);
      float pdf = expf(-0.5f * x[i] * x[i]) * (float)(0.5 * M_2_SQRTPI * M_SQRT1_2);
      dx[i] += dy[i] * (cdf + x[i] * pdf);
    }
    break;
  case LM_SOFTPLUS:
    for (int64_t i = 0; i < n; i++) dx[i] += dy[i] * lm__sigmoid_poly(x[i]);
    break;
  case LM_SWISH:
    for (int64_t i = 0; i < n; i++) {
      float s = lm__sigmoid_poly(x[i]);
      dx[i] += dy[i] * (s + x[i] * s * (1 - s));
    }
    break;
  case LM_SOFTMAX:
    for (int64_t r = 0; r < rows; r++) {
      const float *yr = y + r * cols, *dyr = dy + r * cols;
      float *dxr = dx + r * cols;
      float dot = 0;
      for (int64_t c = 0; c < cols; c++) dot += dyr[c] * yr[c];
      for (int64_t c = 0; c < cols; c++) dxr[c] += yr[c] * (dyr[c] - dot);
    }
    break;
  }
}

bool lm__act_fusable(lm_activation act) {
  return act == LM_ACTIVATION_DEFAULT || act == LM_LINEAR || act == LM_RELU || act == LM_SIGMOID || act == LM_TANH ||
         act == LM_SOFTMAX || act == LM_ELU || act == LM_SELU;
}

/* The same products as lm__act_backward's, so fused and separate activations agree bit for bit. */
LM_VECTORIZE void lm__act_grad_from_output(lm_activation act, const float *y, float *dy, int64_t rows, int64_t cols) {
  int64_t n = rows * cols;
  switch (act) {
  case LM_RELU:
    for (int64_t i = 0; i < n; i++) dy[i] = y[i] > 0 ? dy[i] : 0;
    break;
  case LM_SIGMOID:
    for (int64_t i = 0; i < n; i++) dy[i] = dy[i] * y[i] * (1 - y[i]);
    break;
  case LM_TANH:
    for (int64_t i = 0; i < n; i++) dy[i] = dy[i] * (1 - y[i] * y[i]);
    break;
  case LM_ELU:
    for (int64_t i = 0; i < n; i++) dy[i] = dy[i] * (y[i] > 0 ? 1 : y[i] + 1);
    break;
  case LM_SELU:
    for (int64_t i = 0; i < n; i++) dy[i] = dy[i] * (y[i] > 0 ? SELU_SCALE : y[i] + SELU_SCALE * SELU_ALPHA);
    break;
  case LM_SOFTMAX:
    for (int64_t r = 0; r < rows; r++) {
      const float *yr = y + r * cols;
      float *dyr = dy + r * cols, dot = 0;
      for (int64_t c = 0; c < cols; c++) dot += dyr[c] * yr[c];
      for (int64_t c = 0; c < cols; c++) dyr[c] = yr[c] * (dyr[c] - dot);
    }
    break;
  default: /* linear; other activations are never fused */
    break;
  }
}

/* Rows per piece of the threaded epilogues; elementwise work gives the same bits however
 * the pieces are shared out. The bias gradient adds each of BIAS_PIECES fixed row ranges
 * into its own partial sums (up to BIAS_MAX_COLUMNS columns), then the partials in order. */
enum { EPILOGUE_ROWS = 128, BIAS_PIECES = 16, BIAS_MAX_COLUMNS = 1024 };

LM_VECTORIZE static void add_bias(float *y, const float *bias, int64_t rows, int64_t cols) {
  for (int64_t r = 0; r < rows; r++)
    for (int64_t c = 0; c < cols; c++) y[r * cols + c] += bias[c];
}

LM_VECTORIZE static void add_column_sums(float *sums, const float *dy, int64_t rows, int64_t cols) {
  for (int64_t r = 0; r < rows; r++)
    for (int64_t c = 0; c < cols; c++) sums[c] += dy[r * cols + c];
}

void lm__bias_act_forward(lm_activation act, const float *bias, float *y, int64_t rows, int64_t cols) {
  int linear = act == LM_ACTIVATION_DEFAULT || act == LM_LINEAR;
  if (linear && !bias) return;
  int64_t pieces = (rows + EPILOGUE_ROWS - 1) / EPILOGUE_ROWS;
#pragma omp parallel for num_threads(lm__num_threads()) schedule(static) if (rows * cols > LM_PARALLEL_MIN)
  for (int64_t p = 0; p < pieces; p++) {
    int64_t r0 = p * EPILOGUE_ROWS, n = rows - r0 < EPILOGUE_ROWS ? rows - r0 : EPILOGUE_ROWS;
    float *yp = y + r0 * cols;
    if (bias) add_bias(yp, bias, n, cols);
    if (!linear) lm__act_forward(act, yp, yp, n, cols);
  }
}

void lm__bias_act_backward(lm_activation act, const float *y, float *dy, float *db, int64_t rows, int64_t cols) {
  int linear = act == LM_ACTIVATION_DEFAULT || act == LM_LINEAR;
  if (db && cols > BIAS_MAX_COLUMNS) { /* rare: the derivative, then one serial pass of sums */
    lm__bias_act_backward(act, y, dy, NULL, rows, cols);
    add_column_sums(db, dy, rows, cols);
    return;
  }
  if (linear && !db) return;
  float partial[BIAS_PIECES][BIAS_MAX_COLUMNS];
  int64_t pieces = db ? BIAS_PIECES : (rows + EPILOGUE_ROWS - 1) / EPILOGUE_ROWS;
  /* One pass: each piece of rows takes the activation's derivative, then adds its rows. */
#pragma omp parallel for num_threads(lm__num_threads()) schedule(static) if (rows * cols > LM_PARALLEL_MIN)
  for (int64_t p = 0; p < pieces; p++) {
    int64_t r0 = rows * p / pieces, r1 = rows * (p + 1) / pieces;
    if (db) memset(partial[p], 0, (size_t)cols * sizeof(float));
    for (int64_t r = r0; r < r1; r += EPILOGUE_ROWS) { /* in cache-sized steps */
      int64_t n = r1 - r < EPILOGUE_ROWS ? r1 - r : EPILOGUE_ROWS;
      if (!linear) lm__act_grad_from_output(act, y + r * cols, dy + r * cols, n, cols);
      if (db) add_column_sums(partial[p], dy + r * cols, n, cols);
    }
  }
  for (int64_t p = 0; db && p < pieces; p++)
    for (int64_t c = 0; c < cols; c++) db[c] += partial[p][c];
}

/* Indexed by lm_activation. */
static const char *const ACT_NAMES[] = {"default", "linear", "relu", "sigmoid", "tanh", "softmax",
                                        "elu",     "selu",   "gelu", "softplus", "swish"};

const char *lm_activation_name(lm_activation act) {
  return (unsigned)act < sizeof ACT_NAMES / sizeof *ACT_NAMES ? ACT_NAMES[act] : "unknown";
}

int lm_activation_from_name(const char *name) {
  if (!name) return -1;
  for (int i = LM_LINEAR; i < (int)(sizeof ACT_NAMES / sizeof *ACT_NAMES); i++)
    if (!strcmp(name, ACT_NAMES[i])) return i;
  if (!strcmp(name, "silu")) return LM_SWISH;
  return -1;
}

/* Activation op: attrs i0 = activation. Softmax normalizes the last axis. */
static lm_status act_shape(const lm_attrs *a, const lm_shape *in, const lm_dtype *dt, int n, lm_shape *out,
                           lm_dtype *odt, char *err, size_t len) {
  if (dt[0] != LM_FLOAT32) {
    snprintf(err, len, "activation %s needs float32 input, got int32", lm_activation_name((lm_activation)a->i[0]));
    return LM_ERROR_VALUE;
  }
  if (in[0].rank < 1) {
    snprintf(err, len, "activation needs at least one dimension");
    return LM_ERROR_SHAPE;
  }
  out[0] = in[0];
  odt[0] = LM_FLOAT32;
  return LM_OK;
}

static void act_rows(lm_plan *p, const lm_opnode *node, int64_t *rows, int64_t *cols) {
  lm_shape s = p->shapes[node->in[0]];
  *cols = s.dim[s.rank - 1];
  *rows = *cols ? lm_shape_size(s) / *cols : 0;
}

static void act_fwd(lm_plan *p, const lm_opnode *node) {
  int64_t rows, cols;
  act_rows(p, node, &rows, &cols);
  lm__act_forward((lm_activation)node->a.i[0], lm__f(p, node->in[0]), lm__f(p, node->out[0]), rows, cols);
}

static void act_bwd(lm_plan *p, const lm_opnode *node) {
  float *dx = lm__g(p, node->in[0]);
  if (!dx) return;
  int64_t rows, cols;
  act_rows(p, node, &rows, &cols);
  lm__act_backward((lm_activation)node->a.i[0], lm__f(p, node->in[0]), lm__f(p, node->out[0]),
                   lm__g(p, node->out[0]), dx, rows, cols);
}

const lm_op_def lm__op_activation = {"activation", 1, act_shape, act_fwd, act_bwd, 0, false, 0, 0};
