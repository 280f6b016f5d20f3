/* Batch and layer normalization.
 *
 * A tensor is viewed as (outer, C, inner) around the normalized axis: C channels, `outer`
 * the dims before the axis, `inner` those after (1 for the last axis). Statistics are
 * summed in double, shifted by one sample of their group so that a single pass gives a
 * stable variance; accumulators for a chunk of channels (or positions) live on the stack,
 * so nothing is allocated and the inner loops run over contiguous memory whichever axis is
 * normalized. The output is formed as Keras's JAX backend forms it, in float:
 * inv = rsqrt(var + eps) * gamma, y = x * inv + (beta - mean * inv). */
#include "ops/norm.h"
#include <math.h>
#include <stdbool.h>

#define CHUNK 256

typedef struct norm_dims {
  int64_t outer, C, inner;
} norm_dims;

static int norm_axis(int64_t axis, int rank) { return (int)(axis < 0 ? axis + rank : axis); }

static norm_dims dims_of(lm_shape s, int64_t axis_attr) {
  int axis = norm_axis(axis_attr, s.rank);
  norm_dims d = {1, 1, 1};
  for (int i = 0; i < s.rank; i++) {
    if (i < axis) d.outer *= s.dim[i];
    else if (i == axis) d.C = s.dim[i];
    else d.inner *= s.dim[i];
  }
  return d;
}

static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

/* ---- Shape rules ---- */

/* x: float32, the axis inside the rank and past the batch axis, a known size there. */
static lm_status check_x(const char *layer, const lm_attrs *a, lm_shape x, lm_dtype dt, char *err, size_t len) {
  char b[96];
  int axis = norm_axis(a->i[0], x.rank);
  if (dt != LM_FLOAT32) {
    snprintf(err, len, "%s needs float32 input, got int32 with shape %s (convert the data, or add an Embedding)",
             layer, lm_shape_format(x, b, sizeof b));
    return LM_ERROR_VALUE;
  }
  if (x.rank < 2 || axis < 1 || axis >= x.rank) {
    snprintf(err, len,
             "axis %lld is out of bounds for input shape %s (%s needs a non-batch axis of an input of rank >= 2)",
             (long long)a->i[0], lm_shape_format(x, b, sizeof b), layer);
    return LM_ERROR_SHAPE;
  }
  if (x.dim[axis] < 0) {
    snprintf(err, len, "axis %lld of the input should have a defined dimension, but the input has shape %s",
             (long long)a->i[0], lm_shape_format(x, b, sizeof b));
    return LM_ERROR_SHAPE;
  }
  return LM_OK;
}

static lm_status check_param(const char *name, lm_shape p, lm_shape x, int64_t axis, char *err, size_t len) {
  int64_t c = x.dim[norm_axis(axis, x.rank)];
  if (p.rank == 1 && p.dim[0] == c) return LM_OK;
  char b1[96], b2[96];
  snprintf(err, len, "%s has shape %s, but the input %s has %lld features on axis %lld", name,
           lm_shape_format(p, b1, sizeof b1), lm_shape_format(x, b2, sizeof b2), (long long)c, (long long)axis);
  return LM_ERROR_SHAPE;
}

static lm_status bn_shape(const lm_attrs *a, const lm_shape *in, const lm_dtype *dt, int n, lm_shape *out,
                          lm_dtype *odt, char *err, size_t len) {
  int want = 3 + (a->i[1] != 0) + (a->i[2] != 0) + (a->i[3] != 0);
  if (n != want) {
    snprintf(err, len, "batch_norm takes %d inputs with these attributes, got %d", want, n);
    return LM_ERROR_VALUE;
  }
  lm_status st = check_x("BatchNormalization", a, in[0], dt[0], err, len);
  if (st) return st;
  static const char *const names[] = {"", "moving_mean", "moving_variance"};
  for (int k = 1; k < 3; k++)
    if ((st = check_param(names[k], in[k], in[0], a->i[0], err, len))) return st;
  int k = 3;
  if (a->i[1] && (st = check_param("gamma", in[k++], in[0], a->i[0], err, len))) return st;
  if (a->i[2] && (st = check_param("beta", in[k++], in[0], a->i[0], err, len))) return st;
  if (a->i[3]) { /* Keras: the mask has one dimension less than the inputs */
    lm_shape m = in[k], x = in[0];
    bool ok = m.rank == x.rank - 1;
    for (int i = 0; ok && i < m.rank; i++) ok = m.dim[i] == x.dim[i] || m.dim[i] < 0 || x.dim[i] < 0;
    if (!ok) {
      char b1[96], b2[96];
      snprintf(err, len, "the mask should have one dimension less than the inputs, got mask shape %s and input shape %s",
               lm_shape_format(m, b1, sizeof b1), lm_shape_format(x, b2, sizeof b2));
      return LM_ERROR_SHAPE;
    }
  }
  out[0] = in[0];
  out[1] = LM_SHAPE(3, in[0].dim[norm_axis(a->i[0], in[0].rank)]);
  odt[0] = odt[1] = LM_FLOAT32;
  return LM_OK;
}

static lm_status ln_shape(const lm_attrs *a, const lm_shape *in, const lm_dtype *dt, int n, lm_shape *out,
                          lm_dtype *odt, char *err, size_t len) {
  int want = 1 + (a->i[1] != 0) + (a->i[2] != 0);
  if (n != want) {
    snprintf(err, len, "layer_norm takes %d inputs with these attributes, got %d", want, n);
    return LM_ERROR_VALUE;
  }
  lm_status st = check_x("LayerNormalization", a, in[0], dt[0], err, len);
  if (st) return st;
  int k = 1;
  if (a->i[1] && (st = check_param("gamma", in[k++], in[0], a->i[0], err, len))) return st;
  if (a->i[2] && (st = check_param("beta", in[k++], in[0], a->i[0], err, len))) return st;
  out[0] = out[1] = in[0];
  out[1].dim[norm_axis(a->i[0], in[0].rank)] = 2;
  odt[0] = odt[1] = LM_FLOAT32;
  return LM_OK;
}

/* ---- Batch normalization ---- */

typedef struct bn_run {
  norm_dims d;
  const float *x, *gamma, *beta;
  float *moving_mean, *moving_var;
  const void *mask; /* element e is kept when mask[e / mask_div] != 0 */
  bool mask_int;
  int64_t mask_div;
  float *mean, *inv, *count; /* rows of the stats output */
  bool batch;                /* batch statistics (else the moving ones) */
  int gamma_in, beta_in;     /* input slots, -1 when absent */
} bn_run;

static bn_run bn_get(lm_plan *p, const lm_opnode *node) {
  bn_run r = {0};
  lm_shape s = p->shapes[node->in[0]];
  r.d = dims_of(s, node->a.i[0]);
  int k = 3, mask_in;
  r.gamma_in = node->a.i[1] ? k++ : -1;
  r.beta_in = node->a.i[2] ? k++ : -1;
  mask_in = node->a.i[3] ? k : -1;
  r.x = lm__f(p, node->in[0]);
  r.moving_mean = lm__f(p, node->in[1]);
  r.moving_var = lm__f(p, node->in[2]);
  r.gamma = r.gamma_in >= 0 ? lm__f(p, node->in[r.gamma_in]) : NULL;
  r.beta = r.beta_in >= 0 ? lm__f(p, node->in[r.beta_in]) : NULL;
  if (mask_in >= 0) {
    r.mask = p->data[node->in[mask_in]];
    r.mask_int = p->g->vals[node->in[mask_in]].dtype == LM_INT32;
    r.mask_div = s.dim[s.rank - 1];
  }
  r.mean = lm__f(p, node->out[1]);
  r.inv = r.mean + r.d.C;
  r.count = r.inv + r.d.C;
  /* Keras: trainable=False makes the layer run in inference mode, even in fit. */
  const bool *trainable = node->a.p;
  r.batch = p->training && (!trainable || *trainable);
  return r;
}

static inline bool kept(const bn_run *r, int64_t e) {
  int64_t m = e / r->mask_div;
  return r->mask_int ? ((const int32_t *)r->mask)[m] != 0 : ((const float *)r->mask)[m] != 0;
}

/* Batch mean and biased variance per channel, as Keras computes them: without a mask
 * jnp.mean and jnp.var; with one, sum(w x) / (n + 1e-7) and sum(w (x - mean)^2) / (n + 1e-7)
 * with n = sum(w). Writes mean, the variance (into the inv row) and the denominator. */
static void bn_moments(const bn_run *r) {
  const norm_dims d = r->d;
  const int64_t n_all = d.outer * d.inner;
  for (int64_t c0 = 0; c0 < d.C; c0 += CHUNK) {
    const int64_t nc = min64(CHUNK, d.C - c0);
    double s1[CHUNK] = {0}, s2[CHUNK] = {0}, cnt[CHUNK] = {0};
    float shift[CHUNK];
    for (int64_t c = 0; c < nc; c++) { /* a masked-out first element may hold anything */
      shift[c] = n_all > 0 ? r->x[(c0 + c) * d.inner] : 0.0f;
      if (!isfinite(shift[c])) shift[c] = 0;
    }
    for (int64_t o = 0; o < d.outer; o++) {
      const float *xo = r->x + (o * d.C + c0) * d.inner;
      if (!r->mask && d.inner == 1) {
        for (int64_t c = 0; c < nc; c++) {
          double v = (double)xo[c] - shift[c];
          s1[c] += v;
          s2[c] += v * v;
        }
        continue;
      }
      for (int64_t c = 0; c < nc; c++) {
        const float *xc = xo + c * d.inner;
        const float k = shift[c];
        double a1 = 0, a2 = 0, an = 0;
        if (!r->mask) {
          for (int64_t i = 0; i < d.inner; i++) {
            double v = (double)xc[i] - k;
            a1 += v;
            a2 += v * v;
          }
        } else {
          int64_t e = (o * d.C + c0 + c) * d.inner;
          for (int64_t i = 0; i < d.inner; i++) {
            if (!kept(r, e + i)) continue; /* Keras: where(mask, x, 0) */
            double v = (double)xc[i] - k;
            a1 += v;
            a2 += v * v;
            an += 1;
          }
        }
        s1[c] += a1;
        s2[c] += a2;
        cnt[c] += an;
      }
    }
    for (int64_t c = 0; c < nc; c++) {
      double n = r->mask ? cnt[c] : (double)n_all;
      double den = r->mask ? (double)((float)n + 1e-7f) : n; /* float32 arithmetic, as Keras */
      if (den == 0) { /* no element at all: nothing to normalize */
        r->mean[c0 + c] = r->inv[c0 + c] = r->count[c0 + c] = 0;
        continue;
      }
      double mean = (s1[c] + shift[c] * n) / den, dm = mean - shift[c];
      double ss = s2[c] - 2 * dm * s1[c] + dm * dm * n; /* sum w (x - mean)^2 */
      r->mean[c0 + c] = (float)mean;
      r->inv[c0 + c] = (float)(ss > 0 ? ss / den : 0);
      r->count[c0 + c] = (float)den;
    }
  }
}

/* y = x * scale + shift per channel, scale = inv * gamma, shift = beta - mean * scale. */
static void bn_apply(const bn_run *r, float *y) {
  const norm_dims d = r->d;
  for (int64_t c0 = 0; c0 < d.C; c0 += CHUNK) {
    const int64_t nc = min64(CHUNK, d.C - c0);
    float sc[CHUNK], sh[CHUNK];
    for (int64_t c = 0; c < nc; c++) {
      sc[c] = r->gamma ? r->inv[c0 + c] * r->gamma[c0 + c] : r->inv[c0 + c];
      sh[c] = -r->mean[c0 + c] * sc[c];
      if (r->beta) sh[c] += r->beta[c0 + c];
    }
    for (int64_t o = 0; o < d.outer; o++) {
      const float *xo = r->x + (o * d.C + c0) * d.inner;
      float *yo = y + (o * d.C + c0) * d.inner;
      if (d.inner == 1) {
        for (int64_t c = 0; c < nc; c++) yo[c] = xo[c] * sc[c] + sh[c];
        continue;
      }
      for (int64_t c = 0; c < nc; c++)
        for (int64_t i = 0; i < d.inner; i++) yo[c * d.inner + i] = xo[c * d.inner + i] * sc[c] + sh[c];
    }
  }
}

static void bn_fwd(lm_plan *p, const lm_opnode *node) {
  bn_run r = bn_get(p, node);
  const int64_t C = r.d.C;
  const float eps = node->a.f[0], momentum = node->a.f[1], rest = node->a.f[2];
  if (r.batch) {
    bn_moments(&r);
    /* An empty batch (no element and no mask) leaves the moving statistics alone. */
    if (r.mask || r.d.outer * r.d.inner > 0)
      for (int64_t c = 0; c < C; c++) {
        r.moving_mean[c] = r.moving_mean[c] * momentum + r.mean[c] * rest;
        r.moving_var[c] = r.moving_var[c] * momentum + r.inv[c] * rest;
      }
  } else {
    memcpy(r.mean, r.moving_mean, (size_t)C * sizeof(float));
    memcpy(r.inv, r.moving_var, (size_t)C * sizeof(float));
    memset(r.count, 0, (size_t)C * sizeof(float));
  }
  for (int64_t c = 0; c < C; c++) r.inv[c] = 1.0f / sqrtf(r.inv[c] + eps);
  bn_apply(&r, lm__f(p, node->out[0]));
}

/* With batch statistics, mean and variance depend on x: for a channel with gamma g,
 * inv = (var + eps)^-1/2, den the statistics' denominator and w the mask,
 *   dvar  = -g inv^3 / 2 * sum dy (x - mean)
 *   dmean = -g inv sum dy + dvar * (-2 / den) sum w (x - mean)
 *   dx    = g inv dy + w (dmean / den + 2 dvar / den (x - mean)).
 * With moving statistics only the first term of dx remains. */
static void bn_bwd(lm_plan *p, const lm_opnode *node) {
  bn_run r = bn_get(p, node);
  const norm_dims d = r.d;
  const float *dy = lm__g(p, node->out[0]);
  if (!dy) return;
  float *dx = lm__g(p, node->in[0]);
  float *dgamma = r.gamma_in >= 0 ? lm__g(p, node->in[r.gamma_in]) : NULL;
  float *dbeta = r.beta_in >= 0 ? lm__g(p, node->in[r.beta_in]) : NULL;
  /* the moving statistics only matter (and only get a gradient) in inference mode */
  float *dmm = r.batch ? NULL : lm__g(p, node->in[1]), *dmv = r.batch ? NULL : lm__g(p, node->in[2]);
  for (int64_t c0 = 0; c0 < d.C; c0 += CHUNK) {
    const int64_t nc = min64(CHUNK, d.C - c0);
    const float *mean = r.mean + c0;
    double sum_dy[CHUNK] = {0}, sum_dyx[CHUNK] = {0}, sum_wx[CHUNK] = {0};
    /* a frozen layer under training usually needs dx alone: no sums then */
    const bool sums = r.batch || dgamma || dbeta || dmm || dmv;
    for (int64_t o = 0; sums && o < d.outer; o++) {
      const int64_t at = (o * d.C + c0) * d.inner;
      const float *xo = r.x + at, *dyo = dy + at;
      if (!r.mask && d.inner == 1) {
        for (int64_t c = 0; c < nc; c++) {
          sum_dy[c] += dyo[c];
          sum_dyx[c] += (double)dyo[c] * ((double)xo[c] - mean[c]);
        }
        continue;
      }
      for (int64_t c = 0; c < nc; c++) {
        double a = 0, b = 0, s = 0;
        for (int64_t i = 0; i < d.inner; i++) {
          double v = (double)xo[c * d.inner + i] - mean[c];
          a += dyo[c * d.inner + i];
          b += dyo[c * d.inner + i] * v;
          if (r.mask && r.batch && kept(&r, at + c * d.inner + i)) s += v;
        }
        sum_dy[c] += a;
        sum_dyx[c] += b;
        sum_wx[c] += s;
      }
    }
    float k1[CHUNK], kmean[CHUNK], kvar[CHUNK];
    for (int64_t c = 0; c < nc; c++) {
      double g = r.gamma ? r.gamma[c0 + c] : 1.0, inv = r.inv[c0 + c];
      double dvar = -0.5 * g * inv * inv * inv * sum_dyx[c];
      k1[c] = (float)(g * inv);
      if (dgamma) dgamma[c0 + c] += (float)(inv * sum_dyx[c]);
      if (dbeta) dbeta[c0 + c] += (float)sum_dy[c];
      if (dmm) dmm[c0 + c] += (float)(-g * inv * sum_dy[c]);
      if (dmv) dmv[c0 + c] += (float)dvar;
      double den = r.count[c0 + c];
      if (r.batch && den > 0) {
        double dmean = -g * inv * sum_dy[c] - 2 * dvar * sum_wx[c] / den;
        kmean[c] = (float)(dmean / den);
        kvar[c] = (float)(2 * dvar / den);
      } else {
        kmean[c] = kvar[c] = 0;
      }
    }
    if (!dx) continue;
    for (int64_t o = 0; o < d.outer; o++) {
      const int64_t at = (o * d.C + c0) * d.inner;
      const float *xo = r.x + at, *dyo = dy + at;
      float *dxo = dx + at;
      if (!r.batch) {
        for (int64_t c = 0; c < nc; c++)
          for (int64_t i = 0; i < d.inner; i++) dxo[c * d.inner + i] += k1[c] * dyo[c * d.inner + i];
      } else if (!r.mask && d.inner == 1) {
        for (int64_t c = 0; c < nc; c++) dxo[c] += k1[c] * dyo[c] + kmean[c] + kvar[c] * (xo[c] - mean[c]);
      } else {
        for (int64_t c = 0; c < nc; c++)
          for (int64_t i = 0; i < d.inner; i++) {
            int64_t e = c * d.inner + i;
            bool in_stats = !r.mask || kept(&r, at + e);
            dxo[e] += k1[c] * dyo[e] + (in_stats ? kmean[c] + kvar[c] * (xo[e] - mean[c]) : 0.0f);
          }
      }
    }
  }
}

const lm_op_def lm__op_batch_norm = {"batch_norm", 2, bn_shape, bn_fwd, bn_bwd, 1u << 1, false, 0, 0};

/* ---- Layer normalization ---- */

typedef struct ln_run {
  norm_dims d;
  const float *x, *gamma, *beta;
  float *stats; /* (outer, 2, inner): mean, then inv */
  int gamma_in, beta_in;
} ln_run;

static ln_run ln_get(lm_plan *p, const lm_opnode *node) {
  ln_run r = {0};
  r.d = dims_of(p->shapes[node->in[0]], node->a.i[0]);
  int k = 1;
  r.gamma_in = node->a.i[1] ? k++ : -1;
  r.beta_in = node->a.i[2] ? k++ : -1;
  r.x = lm__f(p, node->in[0]);
  r.gamma = r.gamma_in >= 0 ? lm__f(p, node->in[r.gamma_in]) : NULL;
  r.beta = r.beta_in >= 0 ? lm__f(p, node->in[r.beta_in]) : NULL;
  r.stats = lm__f(p, node->out[1]);
  return r;
}

/* mean and inv = rsqrt(var + eps) from shifted sums over C elements */
static void ln_stat(double s1, double s2, float shift, int64_t C, float eps, float *mean, float *inv) {
  double m = s1 / (double)C, var = s2 / (double)C - m * m;
  *mean = (float)(shift + m);
  *inv = 1.0f / sqrtf((float)(var > 0 ? var : 0) + eps);
}

static void ln_fwd(lm_plan *p, const lm_opnode *node) {
  ln_run r = ln_get(p, node);
  const norm_dims d = r.d;
  const float eps = node->a.f[0];
  float *y = lm__f(p, node->out[0]);
  if (d.C == 0) return;
  if (d.inner == 1) { /* the last axis: one contiguous row per sample */
    for (int64_t o = 0; o < d.outer; o++) {
      const float *xo = r.x + o * d.C;
      float *yo = y + o * d.C, *mo = r.stats + 2 * o;
      double s1 = 0, s2 = 0;
      for (int64_t c = 0; c < d.C; c++) {
        double v = (double)xo[c] - xo[0];
        s1 += v;
        s2 += v * v;
      }
      ln_stat(s1, s2, xo[0], d.C, eps, &mo[0], &mo[1]);
      const float mean = mo[0], inv = mo[1];
      for (int64_t c = 0; c < d.C; c++) {
        float sc = r.gamma ? inv * r.gamma[c] : inv;
        yo[c] = xo[c] * sc + (-mean * sc + (r.beta ? r.beta[c] : 0.0f));
      }
    }
    return;
  }
  for (int64_t o = 0; o < d.outer; o++) {
    const float *xo = r.x + o * d.C * d.inner;
    float *yo = y + o * d.C * d.inner, *mo = r.stats + o * 2 * d.inner, *io = mo + d.inner;
    for (int64_t i0 = 0; i0 < d.inner; i0 += CHUNK) {
      const int64_t ni = min64(CHUNK, d.inner - i0);
      double s1[CHUNK] = {0}, s2[CHUNK] = {0};
      float shift[CHUNK];
      for (int64_t i = 0; i < ni; i++) shift[i] = xo[i0 + i];
      for (int64_t c = 0; c < d.C; c++) {
        const float *xc = xo + c * d.inner + i0;
        for (int64_t i = 0; i < ni; i++) {
          double v = (double)xc[i] - shift[i];
          s1[i] += v;
          s2[i] += v * v;
        }
      }
      for (int64_t i = 0; i < ni; i++) ln_stat(s1[i], s2[i], shift[i], d.C, eps, &mo[i0 + i], &io[i0 + i]);
      for (int64_t c = 0; c < d.C; c++) {
        const float g = r.gamma ? r.gamma[c] : 1.0f, b = r.beta ? r.beta[c] : 0.0f;
        const float *xc = xo + c * d.inner + i0;
        float *yc = yo + c * d.inner + i0;
        for (int64_t i = 0; i < ni; i++) {
          float sc = r.gamma ? io[i0 + i] * g : io[i0 + i];
          yc[i] = xc[i] * sc + (-mo[i0 + i] * sc + b);
        }
      }
    }
  }
}

/* Per position, with xhat = (x - mean) inv and h = dy * gamma over the C elements:
 * dx = inv (h - mean(h) - xhat mean(h xhat)). */
static void ln_bwd(lm_plan *p, const lm_opnode *node) {
  ln_run r = ln_get(p, node);
  const norm_dims d = r.d;
  const float *dy = lm__g(p, node->out[0]);
  float *dx = lm__g(p, node->in[0]);
  float *dgamma = r.gamma_in >= 0 ? lm__g(p, node->in[r.gamma_in]) : NULL;
  float *dbeta = r.beta_in >= 0 ? lm__g(p, node->in[r.beta_in]) : NULL;
  if (!dy || d.C == 0) return;
  if (d.inner == 1) {
    for (int64_t o = 0; o < d.outer; o++) {
      const float *xo = r.x + o * d.C, *dyo = dy + o * d.C;
      const float mean = r.stats[2 * o], inv = r.stats[2 * o + 1];
      double sh = 0, shx = 0;
      for (int64_t c = 0; c < d.C; c++) {
        float xhat = (xo[c] - mean) * inv, h = dyo[c] * (r.gamma ? r.gamma[c] : 1.0f);
        sh += h;
        shx += (double)h * xhat;
        if (dgamma) dgamma[c] += dyo[c] * xhat;
        if (dbeta) dbeta[c] += dyo[c];
      }
      if (!dx) continue;
      const float mh = (float)(sh / (double)d.C), mhx = (float)(shx / (double)d.C);
      float *dxo = dx + o * d.C;
      for (int64_t c = 0; c < d.C; c++) {
        float xhat = (xo[c] - mean) * inv;
        dxo[c] += inv * (dyo[c] * (r.gamma ? r.gamma[c] : 1.0f) - mh - xhat * mhx);
      }
    }
    return;
  }
  for (int64_t o = 0; o < d.outer; o++) {
    const int64_t at = o * d.C * d.inner;
    const float *xo = r.x + at, *dyo = dy + at, *mo = r.stats + o * 2 * d.inner, *io = mo + d.inner;
    float *dxo = dx ? dx + at : NULL;
    for (int64_t i0 = 0; i0 < d.inner; i0 += CHUNK) {
      const int64_t ni = min64(CHUNK, d.inner - i0);
      double sh[CHUNK] = {0}, shx[CHUNK] = {0};
      for (int64_t c = 0; c < d.C; c++) {
        const float g = r.gamma ? r.gamma[c] : 1.0f;
        const int64_t e = c * d.inner + i0;
        double sg = 0, sb = 0;
        for (int64_t i = 0; i < ni; i++) {
          float xhat = (xo[e + i] - mo[i0 + i]) * io[i0 + i], h = dyo[e + i] * g;
          sh[i] += h;
          shx[i] += (double)h * xhat;
          sg += (double)dyo[e + i] * xhat;
          sb += dyo[e + i];
        }
        if (dgamma) dgamma[c] += (float)sg;
        if (dbeta) dbeta[c] += (float)sb;
      }
      if (!dxo) continue;
      float mh[CHUNK], mhx[CHUNK];
      for (int64_t i = 0; i < ni; i++) {
        mh[i] = (float)(sh[i] / (double)d.C);
        mhx[i] = (float)(shx[i] / (double)d.C);
      }
      for (int64_t c = 0; c < d.C; c++) {
        const float g = r.gamma ? r.gamma[c] : 1.0f;
        const int64_t e = c * d.inner + i0;
        for (int64_t i = 0; i < ni; i++) {
          float iv = io[i0 + i], xhat = (xo[e + i] - mo[i0 + i]) * iv;
          dxo[e + i] += iv * (dyo[e + i] * g - mh[i] - xhat * mhx[i]);
        }
      }
    }
  }
}

const lm_op_def lm__op_layer_norm = {"layer_norm", 2, ln_shape, ln_fwd, ln_bwd, 1u << 1, false, 0, 0};
