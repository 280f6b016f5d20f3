/* Recurrent ops: LSTM, GRU and SimpleRNN, each running the whole sequence.
 *
 * Shared layout: x is (B, T, F) and every per-step buffer is (B, T, width), indexed by the
 * input's time index t (the step s that visits it is s = t, or T-1-t going backwards). The
 * input projection of every step is one GEMM, (B*T, F) x (F, gU); each step then adds
 * h_prev W_r with a GEMM whose rows stride over the batch (leading dimension T*gU) and
 * runs the gate math row by row. h_prev of every step is saved (HP), so that backward's
 * weight gradients are again single GEMMs over all B*T rows. A masked step (mask 0) keeps
 * the previous state, as Keras does; its output is that state, or zeros when asked. */
#include "graph/graph.h"
#include "ops/activations.h"
#include "ops/rnn.h"
#include "ops/gemm.h"

typedef enum cell_kind { CELL_SIMPLE, CELL_LSTM, CELL_GRU } cell_kind;

static int gates_of(cell_kind kind) { return kind == CELL_LSTM ? 4 : kind == CELL_GRU ? 3 : 1; }

/* ---- Shape rule ---- */

static lm_shape shape3(int64_t a, int64_t b, int64_t c) { return (lm_shape){.rank = 3, .dim = {a, b, c}}; }
static lm_shape shape2(int64_t a, int64_t b) { return (lm_shape){.rank = 2, .dim = {a, b}}; }

static int dims_fit(int64_t a, int64_t b) { return a < 0 || b < 0 || a == b; }

static lm_status rnn_shape(cell_kind kind, const lm_attrs *a, const lm_shape *in, const lm_dtype *dt, int n,
                           lm_shape *out, lm_dtype *odt, char *err, size_t len) {
  int flags = (int)a->i[2], g = gates_of(kind);
  int has_bias = !!(flags & LM_RNN_BIAS), has_mask = !!(flags & LM_RNN_MASK);
  int reset_after = kind == CELL_GRU && (flags & LM_RNN_RESET_AFTER);
  char b1[96], b2[96];
  if (n != 3 + has_bias + has_mask) {
    snprintf(err, len, "expected %d inputs, got %d", 3 + has_bias + has_mask, n);
    return LM_ERROR_VALUE;
  }
  for (int k = 0; k < 2; k++)
    if (a->i[k] < LM_LINEAR || a->i[k] > LM_SWISH) {
      snprintf(err, len, "unknown activation %lld", (long long)a->i[k]);
      return LM_ERROR_VALUE;
    }
  for (int k = 0; k < n; k++)
    if (dt[k] != LM_FLOAT32) {
      if (k == 0)
        snprintf(err, len, "a recurrent layer needs float32 input (batch, steps, features), got int32 (integer "
                           "sequences go through an Embedding first)");
      else snprintf(err, len, "input %d is int32, expected float32", k);
      return LM_ERROR_VALUE;
    }
  lm_shape x = in[0], w = in[1], wr = in[2];
  if (x.rank != 3) {
    snprintf(err, len, "a recurrent layer needs a 3D input (batch, steps, features), got %s",
             lm_shape_format(x, b1, sizeof b1));
    return LM_ERROR_SHAPE;
  }
  if (x.dim[2] < 0) {
    snprintf(err, len, "the features axis (the last) of the input must be known, got %s",
             lm_shape_format(x, b1, sizeof b1));
    return LM_ERROR_SHAPE;
  }
  int64_t units = wr.rank == 2 ? wr.dim[0] : -1;
  if (units <= 0 || wr.dim[1] != g * units || w.rank != 2 || w.dim[0] != x.dim[2] || w.dim[1] != g * units) {
    snprintf(err, len, "kernel %s and recurrent kernel %s do not fit inputs with %lld features and %d gates",
             lm_shape_format(w, b1, sizeof b1), lm_shape_format(wr, b2, sizeof b2), (long long)x.dim[2], g);
    return LM_ERROR_SHAPE;
  }
  if (has_bias) {
    lm_shape b = in[3];
    int ok = reset_after ? b.rank == 2 && b.dim[0] == 2 && b.dim[1] == g * units : b.rank == 1 && b.dim[0] == g * units;
    if (!ok) {
      snprintf(err, len, "bias %s does not fit %lld units%s", lm_shape_format(b, b1, sizeof b1), (long long)units,
               reset_after ? " (reset_after needs (2, 3 * units))" : "");
      return LM_ERROR_SHAPE;
    }
  }
  if (has_mask) {
    lm_shape m = in[n - 1];
    if (m.rank != 2 || !dims_fit(m.dim[0], x.dim[0]) || !dims_fit(m.dim[1], x.dim[1])) {
      snprintf(err, len, "the mask %s does not fit the input %s (it needs one value per step)",
               lm_shape_format(m, b1, sizeof b1), lm_shape_format(x, b2, sizeof b2));
      return LM_ERROR_SHAPE;
    }
  }
  int64_t B = x.dim[0], T = x.dim[1], U = units, GU = g * units;
  int k = 0;
  out[k++] = flags & LM_RNN_RETURN_SEQUENCES ? shape3(B, T, U) : shape2(B, U);
  out[k++] = shape2(B, U); /* final h */
  if (kind == CELL_LSTM) {
    out[k++] = shape2(B, U); /* final c */
    out[k++] = shape3(B, T, GU); /* Z: pre-activations */
    out[k++] = shape3(B, T, GU); /* A: activations */
    out[k++] = shape3(B, T, U);  /* HP: h before the step */
    out[k++] = shape3(B, T, U);  /* CN: c after the step */
    out[k++] = shape3(B, T, U);  /* TC: act(CN) */
    out[k++] = shape3(B, T, GU); /* dZ */
    out[k++] = shape2(B, 6 * U); /* scratch: dh, dc, d(activations) */
  } else if (kind == CELL_GRU) {
    out[k++] = shape3(B, T, GU); /* Z */
    out[k++] = shape3(B, T, GU); /* A */
    out[k++] = shape3(B, T, GU); /* R: the recurrent projection */
    out[k++] = shape3(B, T, U);  /* HP */
    out[k++] = reset_after ? LM_SHAPE(1) : shape3(B, T, U); /* RH: r * h_prev */
    out[k++] = shape3(B, T, GU); /* dZ */
    out[k++] = reset_after ? shape3(B, T, GU) : LM_SHAPE(1); /* dR */
    out[k++] = shape2(B, 4 * U); /* scratch: dh, d(activations) */
  } else {
    out[k++] = shape3(B, T, U); /* Z */
    out[k++] = shape3(B, T, U); /* A */
    out[k++] = shape3(B, T, U); /* HP */
    out[k++] = shape3(B, T, U); /* dZ */
    out[k++] = shape2(B, U);    /* scratch: dh */
  }
  for (int i = 0; i < k; i++) odt[i] = LM_FLOAT32;
  return LM_OK;
}

static lm_status lstm_shape(const lm_attrs *a, const lm_shape *in, const lm_dtype *dt, int n, lm_shape *out,
                            lm_dtype *odt, char *err, size_t len) {
  return rnn_shape(CELL_LSTM, a, in, dt, n, out, odt, err, len);
}
static lm_status gru_shape(const lm_attrs *a, const lm_shape *in, const lm_dtype *dt, int n, lm_shape *out,
                           lm_dtype *odt, char *err, size_t len) {
  return rnn_shape(CELL_GRU, a, in, dt, n, out, odt, err, len);
}
static lm_status simple_shape(const lm_attrs *a, const lm_shape *in, const lm_dtype *dt, int n, lm_shape *out,
                              lm_dtype *odt, char *err, size_t len) {
  return rnn_shape(CELL_SIMPLE, a, in, dt, n, out, odt, err, len);
}

/* ---- What every recurrence shares ---- */

typedef struct seq {
  int B, T, F, U, flags;
  lm_activation act, ract;
  const float *x, *W, *Wr, *bias, *mask; /* bias, mask: NULL when absent */
  float *dx, *dW, *dWr, *dbias;          /* NULL where no gradient is wanted */
} seq;

static seq seq_of(lm_plan *p, const lm_opnode *node) {
  seq q = {0};
  lm_shape xs = p->shapes[node->in[0]];
  q.B = (int)xs.dim[0], q.T = (int)xs.dim[1], q.F = (int)xs.dim[2];
  q.U = (int)p->shapes[node->in[2]].dim[0];
  q.flags = (int)node->a.i[2];
  q.act = (lm_activation)node->a.i[0], q.ract = (lm_activation)node->a.i[1];
  q.x = lm__f(p, node->in[0]), q.W = lm__f(p, node->in[1]), q.Wr = lm__f(p, node->in[2]);
  q.dx = lm__g(p, node->in[0]), q.dW = lm__g(p, node->in[1]), q.dWr = lm__g(p, node->in[2]);
  int k = 3;
  if (q.flags & LM_RNN_BIAS) {
    q.bias = lm__f(p, node->in[k]);
    q.dbias = lm__g(p, node->in[k]);
    k++;
  }
  if (q.flags & LM_RNN_MASK) q.mask = lm__f(p, node->in[k]);
  return q;
}

/* The time index visited by step s. */
static int time_of(const seq *q, int s) { return q->flags & LM_RNN_GO_BACKWARDS ? q->T - 1 - s : s; }
static int masked(const seq *q, int b, int t) { return q->mask && q->mask[(size_t)b * q->T + t] == 0.0f; }
static size_t row(const seq *q, int b, int t) { return (size_t)b * q->T + t; }

/* Z (B*T, gu) = x W (+ bias). */
static void project_inputs(const seq *q, int gu, const float *bias, float *Z) {
  int rows = q->B * q->T;
  if (bias)
    for (int r = 0; r < rows; r++) memcpy(Z + (size_t)r * gu, bias, (size_t)gu * sizeof *Z);
  lm__sgemm(false, false, rows, gu, q->F, 1.0f, q->x, q->F, q->W, gu,
              bias ? 1.0f : 0.0f, Z, gu);
}

/* Where step s leaves row b's new h: the next step's h_prev, or the final state. */
static float *next_h(const seq *q, float *HP, float *hT, int b, int s) {
  return s + 1 < q->T ? HP + row(q, b, time_of(q, s + 1)) * q->U : hT + (size_t)b * q->U;
}

static void zero_hp(const seq *q, float *HP, int t) {
  for (int b = 0; b < q->B; b++) memset(HP + row(q, b, t) * q->U, 0, (size_t)q->U * sizeof *HP);
}

/* Output of step s for row b (return_sequences). */
static void put_output(const seq *q, float *y, int b, int s, int is_masked, const float *h) {
  if (!(q->flags & LM_RNN_RETURN_SEQUENCES)) return;
  float *dst = y + row(q, b, s) * q->U;
  if (is_masked && (q->flags & LM_RNN_ZERO_MASKED)) memset(dst, 0, (size_t)q->U * sizeof *dst);
  else memcpy(dst, h, (size_t)q->U * sizeof *dst);
}

/* The last output without return_sequences: the final state. */
static void put_last_output(const seq *q, float *y, const float *hT) {
  if (q->flags & LM_RNN_RETURN_SEQUENCES) return;
  int t_last = time_of(q, q->T - 1);
  for (int b = 0; b < q->B; b++) {
    float *dst = y + (size_t)b * q->U;
    if (masked(q, b, t_last) && (q->flags & LM_RNN_ZERO_MASKED)) memset(dst, 0, (size_t)q->U * sizeof *dst);
    else memcpy(dst, hT + (size_t)b * q->U, (size_t)q->U * sizeof *dst);
  }
}

/* Adds the output gradient of step s (or of the last output) to dh, row b. */
static void add_output_grad(const seq *q, const float *dy, int b, int s, float *dh) {
  if (!dy) return;
  int rs = q->flags & LM_RNN_RETURN_SEQUENCES;
  if (!rs && s != q->T - 1) return;
  if ((q->flags & LM_RNN_ZERO_MASKED) && masked(q, b, time_of(q, s))) return;
  const float *g = rs ? dy + row(q, b, s) * q->U : dy + (size_t)b * q->U;
  for (int u = 0; u < q->U; u++) dh[u] += g[u];
}

/* Starts the state gradients (scratch rows of `stride` floats) from the final states'. */
static void init_carry(const seq *q, float *S, int stride, int offset, const float *dstate) {
  for (int b = 0; b < q->B; b++) {
    float *d = S + (size_t)b * stride + offset;
    if (dstate) memcpy(d, dstate + (size_t)b * q->U, (size_t)q->U * sizeof *d);
    else memset(d, 0, (size_t)q->U * sizeof *d);
  }
}

static void add_colsum(float *db, const float *M, int rows, int cols) {
  for (int r = 0; r < rows; r++)
    for (int c = 0; c < cols; c++) db[c] += M[(size_t)r * cols + c];
}

/* dx += dZ W^T and dW += x^T dZ over all B*T rows; dZ is (B*T, gu). */
static void input_grads(const seq *q, const float *dZ, int gu) {
  int rows = q->B * q->T;
  if (q->dx)
    lm__sgemm(false, true, rows, q->F, gu, 1.0f, dZ, gu, q->W, gu, 1.0f, q->dx, q->F);
  if (q->dW)
    lm__sgemm(true, false, q->F, gu, rows, 1.0f, q->x, q->F, dZ, gu, 1.0f, q->dW, gu);
}

static void act_fwd(lm_activation act, const float *x, float *y, int n) { lm__act_forward(act, x, y, 1, n); }
/* dx = dy * act'(x) (dx overwritten). */
static void act_grad(lm_activation act, const float *x, const float *y, const float *dy, float *dx, int n) {
  memset(dx, 0, (size_t)n * sizeof *dx);
  lm__act_backward(act, x, y, dy, dx, 1, n);
}

/* ---- LSTM: z = x W + h W_r + b; i, f, o = ract(z_i, z_f, z_o), g = act(z_c);
 *      c = f c_prev + i g; h = o act(c) ---- */

enum { LSTM_Y, LSTM_H, LSTM_C, LSTM_Z, LSTM_A, LSTM_HP, LSTM_CN, LSTM_TC, LSTM_DZ, LSTM_S, LSTM_NOUT };

/* Keras's default activations (sigmoid gates, tanh) take these fused cells: one vectorized
 * pass over a row's units instead of five activation calls and three loops, computing the
 * same products in the same order, so the general path below gives the same bits. Every
 * load is unconditional (cp is any readable row when has_prev is 0) so that the loops
 * vectorize. */
static int lstm_default_cell(const seq *q) { return q->act == LM_TANH && q->ract == LM_SIGMOID; }

LM_VECTORIZE static void lstm_cell_fwd(int U, int m, int has_prev, const float *z, const float *cp, const float *hp,
                                       float *a, float *cn, float *tc, float *hn) {
  /* Loops of one activation each: GCC 12 gives up on a loop that inlines three. */
  for (int u = 0; u < 2 * U; u++) a[u] = lm__sigmoid_poly(z[u]); /* i, f */
  for (int u = 2 * U; u < 3 * U; u++) a[u] = lm__tanh_poly(z[u]); /* g */
  for (int u = 3 * U; u < 4 * U; u++) a[u] = lm__sigmoid_poly(z[u]); /* o */
  if (m) { /* a masked step keeps the state */
    for (int u = 0; u < U; u++) {
      float cpu = cp[u], c = has_prev ? cpu : 0.0f;
      cn[u] = c, tc[u] = lm__tanh_poly(c), hn[u] = hp[u];
    }
    return;
  }
  /* ivdep: the buffers are distinct rows; without it GCC 12 gives up on the alias checks. */
#pragma GCC ivdep
  for (int u = 0; u < U; u++) {
    float cpu = cp[u], c_prev = has_prev ? cpu : 0.0f;
    float c = a[U + u] * c_prev + a[u] * a[2 * U + u], t = lm__tanh_poly(c);
    cn[u] = c, tc[u] = t, hn[u] = a[3 * U + u] * t;
  }
}

/* dh, dc: the carried gradients (dc becomes d c_prev, dh is cleared); dz: the gates'. */
LM_VECTORIZE static void lstm_cell_bwd(int U, int has_prev, const float *a, const float *tc, const float *cp, float *dh,
                                       float *dc, float *dz) {
#pragma GCC ivdep
  for (int u = 0; u < U; u++) {
    float i = a[u], f = a[U + u], g = a[2 * U + u], o = a[3 * U + u], t = tc[u], cpu = cp[u];
    float d_o = dh[u] * t, d_t = dh[u] * o;
    float c = dc[u] + d_t * (1 - t * t);
    float d_i = c * g, d_f = has_prev ? c * cpu : 0.0f, d_g = c * i;
    dc[u] = c * f;
    dz[u] = d_i * i * (1 - i);
    dz[U + u] = d_f * f * (1 - f);
    dz[2 * U + u] = d_g * (1 - g * g);
    dz[3 * U + u] = d_o * o * (1 - o);
    dh[u] = 0;
  }
}

static void lstm_fwd(lm_plan *p, const lm_opnode *node) {
  seq q = seq_of(p, node);
  const int U = q.U, G = 4 * U;
  const int ldz = q.T * G, ldh = q.T * U;
  float *y = lm__f(p, node->out[LSTM_Y]), *hT = lm__f(p, node->out[LSTM_H]), *cT = lm__f(p, node->out[LSTM_C]);
  float *Z = lm__f(p, node->out[LSTM_Z]), *A = lm__f(p, node->out[LSTM_A]), *HP = lm__f(p, node->out[LSTM_HP]);
  float *CN = lm__f(p, node->out[LSTM_CN]), *TC = lm__f(p, node->out[LSTM_TC]);
  if (q.T == 0) return;
  project_inputs(&q, G, q.bias, Z);
  zero_hp(&q, HP, time_of(&q, 0));
  for (int s = 0; s < q.T; s++) {
    int t = time_of(&q, s), tp = s ? time_of(&q, s - 1) : -1;
    if (s) /* h_prev W_r for the whole batch, added to this step's rows of Z */
      lm__sgemm(false, false, q.B, G, U, 1.0f, HP + (size_t)t * U, ldh, q.Wr, G,
                  1.0f, Z + (size_t)t * G, ldz);
    for (int b = 0; b < q.B; b++) {
      size_t r = row(&q, b, t);
      const float *z = Z + r * G, *hp = HP + r * U;
      const float *cp = tp >= 0 ? CN + row(&q, b, tp) * U : NULL;
      float *a = A + r * G, *cn = CN + r * U, *tc = TC + r * U, *hn = next_h(&q, HP, hT, b, s);
      int m = masked(&q, b, t);
      if (lstm_default_cell(&q)) {
        lstm_cell_fwd(U, m, cp != NULL, z, cp ? cp : z, hp, a, cn, tc, hn);
        put_output(&q, y, b, s, m, hn);
        continue;
      }
      act_fwd(q.ract, z, a, U);
      act_fwd(q.ract, z + U, a + U, U);
      act_fwd(q.act, z + 2 * U, a + 2 * U, U);
      act_fwd(q.ract, z + 3 * U, a + 3 * U, U);
      for (int u = 0; u < U; u++) {
        float c_prev = cp ? cp[u] : 0.0f;
        cn[u] = m ? c_prev : a[U + u] * c_prev + a[u] * a[2 * U + u];
      }
      act_fwd(q.act, cn, tc, U);
      for (int u = 0; u < U; u++) hn[u] = m ? hp[u] : a[3 * U + u] * tc[u];
      put_output(&q, y, b, s, m, hn);
    }
  }
  int t_last = time_of(&q, q.T - 1);
  for (int b = 0; b < q.B; b++) memcpy(cT + (size_t)b * U, CN + row(&q, b, t_last) * U, (size_t)U * sizeof *cT);
  put_last_output(&q, y, hT);
}

static void lstm_bwd(lm_plan *p, const lm_opnode *node) {
  seq q = seq_of(p, node);
  const int U = q.U, G = 4 * U, SW = 6 * U;
  const int ldz = q.T * G;
  const float *dy = lm__g(p, node->out[LSTM_Y]), *dhT = lm__g(p, node->out[LSTM_H]), *dcT = lm__g(p, node->out[LSTM_C]);
  const float *Z = lm__f(p, node->out[LSTM_Z]), *A = lm__f(p, node->out[LSTM_A]), *HP = lm__f(p, node->out[LSTM_HP]);
  const float *CN = lm__f(p, node->out[LSTM_CN]), *TC = lm__f(p, node->out[LSTM_TC]);
  float *dZ = lm__f(p, node->out[LSTM_DZ]), *S = lm__f(p, node->out[LSTM_S]);
  if (q.T == 0) return;
  /* Scratch row b: dh (U), dc (U), gradients of the activations i, f, g, o (4U). */
  init_carry(&q, S, SW, 0, dhT);
  init_carry(&q, S, SW, U, dcT);
  for (int s = q.T - 1; s >= 0; s--) {
    int t = time_of(&q, s), tp = s ? time_of(&q, s - 1) : -1;
    for (int b = 0; b < q.B; b++) {
      size_t r = row(&q, b, t);
      float *dh = S + (size_t)b * SW, *dc = dh + U, *da = dc + U, *dz = dZ + r * G;
      add_output_grad(&q, dy, b, s, dh);
      if (masked(&q, b, t)) { /* the state passed through: dh and dc carry on unchanged */
        memset(dz, 0, (size_t)G * sizeof *dz);
        continue;
      }
      const float *z = Z + r * G, *a = A + r * G, *cn = CN + r * U, *tc = TC + r * U;
      const float *cp = tp >= 0 ? CN + row(&q, b, tp) * U : NULL;
      if (lstm_default_cell(&q)) {
        lstm_cell_bwd(U, cp != NULL, a, tc, cp ? cp : a, dh, dc, dz);
        continue;
      }
      for (int u = 0; u < U; u++) {
        da[3 * U + u] = dh[u] * tc[u];     /* d o */
        da[2 * U + u] = dh[u] * a[3 * U + u]; /* d act(c), for now */
      }
      lm__act_backward(q.act, cn, tc, da + 2 * U, dc, 1, U);
      for (int u = 0; u < U; u++) {
        da[u] = dc[u] * a[2 * U + u];           /* d i */
        da[U + u] = cp ? dc[u] * cp[u] : 0.0f;  /* d f */
        da[2 * U + u] = dc[u] * a[u];           /* d g */
        dc[u] *= a[U + u];                      /* d c_prev */
      }
      act_grad(q.ract, z, a, da, dz, U);
      act_grad(q.ract, z + U, a + U, da + U, dz + U, U);
      act_grad(q.act, z + 2 * U, a + 2 * U, da + 2 * U, dz + 2 * U, U);
      act_grad(q.ract, z + 3 * U, a + 3 * U, da + 3 * U, dz + 3 * U, U);
      memset(dh, 0, (size_t)U * sizeof *dh);
    }
    if (s) /* dh_prev += dZ_t W_r^T (masked rows have dZ = 0 and keep their carried dh) */
      lm__sgemm(false, true, q.B, U, G, 1.0f, dZ + (size_t)t * G, ldz, q.Wr, G, 1.0f,
                  S, SW);
  }
  input_grads(&q, dZ, G);
  if (q.dWr)
    lm__sgemm(true, false, U, G, q.B * q.T, 1.0f, HP, U, dZ, G, 1.0f, q.dWr, G);
  if (q.dbias) add_colsum(q.dbias, dZ, q.B * q.T, G);
}

const lm_op_def lm__op_lstm = {"lstm", LSTM_NOUT, lstm_shape, lstm_fwd, lstm_bwd, ~0u << LSTM_Z, false, 0, 0};

/* ---- GRU: z, r = ract(x W_zr + b_zr + h W_rzr (+ b_rzr));
 *      reset_after: hh = act(x W_h + b_h + r * (h W_rh + b_rh)); else act(x W_h + b_h + (r * h) W_rh);
 *      h = z h_prev + (1 - z) hh ---- */

enum { GRU_Y, GRU_H, GRU_Z, GRU_A, GRU_R, GRU_HP, GRU_RH, GRU_DZ, GRU_DR, GRU_S, GRU_NOUT };

static void gru_fwd(lm_plan *p, const lm_opnode *node) {
  seq q = seq_of(p, node);
  const int U = q.U, G = 3 * U, after = q.flags & LM_RNN_RESET_AFTER;
  const int ldz = q.T * G, ldh = q.T * U;
  float *y = lm__f(p, node->out[GRU_Y]), *hT = lm__f(p, node->out[GRU_H]);
  float *Z = lm__f(p, node->out[GRU_Z]), *A = lm__f(p, node->out[GRU_A]), *R = lm__f(p, node->out[GRU_R]);
  float *HP = lm__f(p, node->out[GRU_HP]), *RH = lm__f(p, node->out[GRU_RH]);
  const float *b_rec = after && q.bias ? q.bias + G : NULL; /* bias row 1 */
  if (q.T == 0) return;
  project_inputs(&q, G, q.bias, Z); /* bias row 0, or the whole bias */
  zero_hp(&q, HP, time_of(&q, 0));
  for (int s = 0; s < q.T; s++) {
    int t = time_of(&q, s);
    float *Rt = R + (size_t)t * G;
    if (after) { /* R_t = h_prev W_r + b_rec */
      for (int b = 0; b < q.B; b++) {
        if (b_rec) memcpy(Rt + (size_t)b * ldz, b_rec, (size_t)G * sizeof *R);
        else memset(Rt + (size_t)b * ldz, 0, (size_t)G * sizeof *R);
      }
      lm__sgemm(false, false, q.B, G, U, 1.0f, HP + (size_t)t * U, ldh, q.Wr, G, 1.0f,
                  Rt, ldz);
    } else { /* R_t[:, :2U] = h_prev W_r[:, :2U] */
      lm__sgemm(false, false, q.B, 2 * U, U, 1.0f, HP + (size_t)t * U, ldh, q.Wr, G,
                  0.0f, Rt, ldz);
    }
    for (int b = 0; b < q.B; b++) {
      size_t r = row(&q, b, t);
      float *z = Z + r * G, *a = A + r * G;
      const float *rr = R + r * G, *hp = HP + r * U;
      for (int u = 0; u < 2 * U; u++) z[u] += rr[u];
      act_fwd(q.ract, z, a, U);
      act_fwd(q.ract, z + U, a + U, U);
      if (after) {
        for (int u = 0; u < U; u++) z[2 * U + u] += a[U + u] * rr[2 * U + u];
        act_fwd(q.act, z + 2 * U, a + 2 * U, U);
      } else {
        float *rh = RH + r * U;
        for (int u = 0; u < U; u++) rh[u] = a[U + u] * hp[u];
      }
    }
    if (!after) { /* R_t[:, 2U:] = (r * h_prev) W_r[:, 2U:] */
      lm__sgemm(false, false, q.B, U, U, 1.0f, RH + (size_t)t * U, ldh, q.Wr + 2 * U,
                  G, 0.0f, Rt + 2 * U, ldz);
      for (int b = 0; b < q.B; b++) {
        size_t r = row(&q, b, t);
        float *z = Z + r * G, *a = A + r * G;
        const float *rr = R + r * G;
        for (int u = 0; u < U; u++) z[2 * U + u] += rr[2 * U + u];
        act_fwd(q.act, z + 2 * U, a + 2 * U, U);
      }
    }
    for (int b = 0; b < q.B; b++) {
      size_t r = row(&q, b, t);
      const float *a = A + r * G, *hp = HP + r * U;
      float *hn = next_h(&q, HP, hT, b, s);
      int m = masked(&q, b, t);
      for (int u = 0; u < U; u++) hn[u] = m ? hp[u] : a[u] * hp[u] + (1.0f - a[u]) * a[2 * U + u];
      put_output(&q, y, b, s, m, hn);
    }
  }
  put_last_output(&q, y, hT);
}

static void gru_bwd(lm_plan *p, const lm_opnode *node) {
  seq q = seq_of(p, node);
  const int U = q.U, G = 3 * U, SW = 4 * U, after = q.flags & LM_RNN_RESET_AFTER;
  const int ldz = q.T * G;
  const float *dy = lm__g(p, node->out[GRU_Y]), *dhT = lm__g(p, node->out[GRU_H]);
  const float *Z = lm__f(p, node->out[GRU_Z]), *A = lm__f(p, node->out[GRU_A]), *R = lm__f(p, node->out[GRU_R]);
  const float *HP = lm__f(p, node->out[GRU_HP]), *RH = lm__f(p, node->out[GRU_RH]);
  float *dZ = lm__f(p, node->out[GRU_DZ]), *dR = lm__f(p, node->out[GRU_DR]), *S = lm__f(p, node->out[GRU_S]);
  if (q.T == 0) return;
  /* Scratch row b: dh (U), then d z, d r, d hh (3U); without reset_after the d hh slot
   * later takes d(r * h_prev). */
  init_carry(&q, S, SW, 0, dhT);
  for (int s = q.T - 1; s >= 0; s--) {
    int t = time_of(&q, s);
    for (int b = 0; b < q.B; b++) {
      size_t r = row(&q, b, t);
      float *dh = S + (size_t)b * SW, *da = dh + U, *dz = dZ + r * G;
      add_output_grad(&q, dy, b, s, dh);
      if (masked(&q, b, t)) {
        memset(dz, 0, (size_t)G * sizeof *dz);
        if (after) memset(dR + r * G, 0, (size_t)G * sizeof *dR);
        continue;
      }
      const float *z = Z + r * G, *a = A + r * G, *hp = HP + r * U;
      for (int u = 0; u < U; u++) {
        da[u] = dh[u] * (hp[u] - a[2 * U + u]);  /* d z */
        da[2 * U + u] = dh[u] * (1.0f - a[u]);   /* d hh */
        dh[u] *= a[u];                           /* the direct path to h_prev */
      }
      act_grad(q.ract, z, a, da, dz, U);
      act_grad(q.act, z + 2 * U, a + 2 * U, da + 2 * U, dz + 2 * U, U);
      if (after) {
        const float *rr = R + r * G;
        float *dr = dR + r * G;
        for (int u = 0; u < U; u++) da[U + u] = dz[2 * U + u] * rr[2 * U + u]; /* d r */
        act_grad(q.ract, z + U, a + U, da + U, dz + U, U);
        for (int u = 0; u < 2 * U; u++) dr[u] = dz[u];
        for (int u = 0; u < U; u++) dr[2 * U + u] = dz[2 * U + u] * a[U + u];
      }
    }
    if (after) {
      if (s) /* dh_prev += dR_t W_r^T */
        lm__sgemm(false, true, q.B, U, G, 1.0f, dR + (size_t)t * G, ldz, q.Wr, G, 1.0f,
                    S, SW);
      continue;
    }
    /* d(r * h_prev) = dZ_h W_rh^T, into the scratch's last slot */
    lm__sgemm(false, true, q.B, U, U, 1.0f, dZ + (size_t)t * G + 2 * U, ldz,
                q.Wr + 2 * U, G, 0.0f, S + 3 * U, SW);
    for (int b = 0; b < q.B; b++) {
      size_t r = row(&q, b, t);
      if (masked(&q, b, t)) continue;
      float *dh = S + (size_t)b * SW, *da = dh + U, *drh = dh + 3 * U, *dz = dZ + r * G;
      const float *z = Z + r * G, *a = A + r * G, *hp = HP + r * U;
      for (int u = 0; u < U; u++) {
        dh[u] += drh[u] * a[U + u];
        da[U + u] = drh[u] * hp[u]; /* d r */
      }
      act_grad(q.ract, z + U, a + U, da + U, dz + U, U);
    }
    if (s) /* dh_prev += dZ_zr W_r[:, :2U]^T */
      lm__sgemm(false, true, q.B, U, 2 * U, 1.0f, dZ + (size_t)t * G, ldz, q.Wr, G, 1.0f,
                  S, SW);
  }
  int rows = q.B * q.T;
  input_grads(&q, dZ, G);
  if (q.dbias) add_colsum(q.dbias, dZ, rows, G);
  if (after) {
    if (q.dWr) lm__sgemm(true, false, U, G, rows, 1.0f, HP, U, dR, G, 1.0f, q.dWr, G);
    if (q.dbias) add_colsum(q.dbias + G, dR, rows, G);
  } else if (q.dWr) {
    lm__sgemm(true, false, U, 2 * U, rows, 1.0f, HP, U, dZ, G, 1.0f, q.dWr, G);
    lm__sgemm(true, false, U, U, rows, 1.0f, RH, U, dZ + 2 * U, G, 1.0f, q.dWr + 2 * U, G);
  }
}

const lm_op_def lm__op_gru = {"gru", GRU_NOUT, gru_shape, gru_fwd, gru_bwd, ~0u << GRU_Z, false, 0, 0};

/* ---- SimpleRNN: h = act(x W + h_prev W_r + b) ---- */

enum { SRNN_Y, SRNN_H, SRNN_Z, SRNN_A, SRNN_HP, SRNN_DZ, SRNN_S, SRNN_NOUT };

static void simple_fwd(lm_plan *p, const lm_opnode *node) {
  seq q = seq_of(p, node);
  const int U = q.U, ldh = q.T * U;
  float *y = lm__f(p, node->out[SRNN_Y]), *hT = lm__f(p, node->out[SRNN_H]);
  float *Z = lm__f(p, node->out[SRNN_Z]), *A = lm__f(p, node->out[SRNN_A]), *HP = lm__f(p, node->out[SRNN_HP]);
  if (q.T == 0) return;
  project_inputs(&q, U, q.bias, Z);
  zero_hp(&q, HP, time_of(&q, 0));
  for (int s = 0; s < q.T; s++) {
    int t = time_of(&q, s);
    if (s)
      lm__sgemm(false, false, q.B, U, U, 1.0f, HP + (size_t)t * U, ldh, q.Wr, U, 1.0f,
                  Z + (size_t)t * U, ldh);
    for (int b = 0; b < q.B; b++) {
      size_t r = row(&q, b, t);
      const float *hp = HP + r * U;
      float *a = A + r * U, *hn = next_h(&q, HP, hT, b, s);
      act_fwd(q.act, Z + r * U, a, U);
      int m = masked(&q, b, t);
      memcpy(hn, m ? hp : a, (size_t)U * sizeof *hn);
      put_output(&q, y, b, s, m, hn);
    }
  }
  put_last_output(&q, y, hT);
}

static void simple_bwd(lm_plan *p, const lm_opnode *node) {
  seq q = seq_of(p, node);
  const int U = q.U, ldh = q.T * U;
  const float *dy = lm__g(p, node->out[SRNN_Y]), *dhT = lm__g(p, node->out[SRNN_H]);
  const float *Z = lm__f(p, node->out[SRNN_Z]), *A = lm__f(p, node->out[SRNN_A]), *HP = lm__f(p, node->out[SRNN_HP]);
  float *dZ = lm__f(p, node->out[SRNN_DZ]), *S = lm__f(p, node->out[SRNN_S]);
  if (q.T == 0) return;
  init_carry(&q, S, U, 0, dhT); /* scratch row b: dh */
  for (int s = q.T - 1; s >= 0; s--) {
    int t = time_of(&q, s);
    for (int b = 0; b < q.B; b++) {
      size_t r = row(&q, b, t);
      float *dh = S + (size_t)b * U, *dz = dZ + r * U;
      add_output_grad(&q, dy, b, s, dh);
      if (masked(&q, b, t)) {
        memset(dz, 0, (size_t)U * sizeof *dz);
        continue;
      }
      act_grad(q.act, Z + r * U, A + r * U, dh, dz, U);
      memset(dh, 0, (size_t)U * sizeof *dh);
    }
    if (s)
      lm__sgemm(false, true, q.B, U, U, 1.0f, dZ + (size_t)t * U, ldh, q.Wr, U, 1.0f, S,
                  U);
  }
  input_grads(&q, dZ, U);
  if (q.dWr)
    lm__sgemm(true, false, U, U, q.B * q.T, 1.0f, HP, U, dZ, U, 1.0f, q.dWr, U);
  if (q.dbias) add_colsum(q.dbias, dZ, q.B * q.T, U);
}

const lm_op_def lm__op_simple_rnn = {"simple_rnn", SRNN_NOUT, simple_shape, simple_fwd, simple_bwd, ~0u << SRNN_Z, false, 0, 0};

/* ---- Reversing the steps axis ---- */

static lm_status reverse_shape(const lm_attrs *a, const lm_shape *in, const lm_dtype *dt, int n, lm_shape *out,
                               lm_dtype *odt, char *err, size_t len) {
  char b1[96];
  if (in[0].rank < 2 || dt[0] != LM_FLOAT32) {
    snprintf(err, len, "reversing the steps needs a float32 input (batch, steps, ...), got %s",
             lm_shape_format(in[0], b1, sizeof b1));
    return LM_ERROR_SHAPE;
  }
  out[0] = in[0];
  odt[0] = LM_FLOAT32;
  return LM_OK;
}

static void reverse_run(lm_plan *p, const lm_opnode *node, int backward) {
  lm_shape s = p->shapes[node->in[0]];
  int64_t B = s.dim[0], T = s.dim[1], inner = lm__dims_product(&s, 2, s.rank);
  for (int64_t b = 0; b < B; b++)
    for (int64_t t = 0; t < T; t++) {
      size_t to = (size_t)((b * T + t) * inner), from = (size_t)((b * T + T - 1 - t) * inner);
      if (!backward) {
        memcpy(lm__f(p, node->out[0]) + to, lm__f(p, node->in[0]) + from, (size_t)inner * sizeof(float));
      } else {
        float *dx = lm__g(p, node->in[0]) + from;
        const float *dy = lm__g(p, node->out[0]) + to;
        for (int64_t i = 0; i < inner; i++) dx[i] += dy[i];
      }
    }
}

static void reverse_fwd(lm_plan *p, const lm_opnode *node) { reverse_run(p, node, 0); }
static void reverse_bwd(lm_plan *p, const lm_opnode *node) {
  if (lm__g(p, node->in[0])) reverse_run(p, node, 1);
}

const lm_op_def lm__op_reverse_steps = {"reverse_steps", 1, reverse_shape, reverse_fwd, reverse_bwd, 0, false,
                                        LM_UNREAD_ALL, 0};
