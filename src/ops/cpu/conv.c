/* Convolutions: a general one through im2col + GEMM, and a depthwise one with direct loops
 * (see ops/conv.h). 1D inputs run as 2D ones of height 1. */
#include "ops/conv.h"
#include "ops/activations.h"
#include "ops/gemm.h"
#include "core/threads.h"

/* A 1x1 convolution's forward runs in blocks of about this many output floats (1 MB). */
#define DIRECT_BLOCK_FLOATS ((int64_t)1 << 18)

/* im2col works on chunks of output rows whose column block holds about this many floats
 * (4 MB): small enough to bound the scratch, large enough for an efficient GEMM. */
#define COL_CHUNK_FLOATS ((int64_t)1 << 20)

/* Everything the loops need, from concrete shapes; dims may be LM_NONE in shape rules. */
typedef struct geom {
  int64_t n, h, w, c;   /* input */
  int64_t kh, kw, f;    /* kernel; f is filters (conv) or the depth multiplier (depthwise) */
  int64_t oh, ow;       /* output */
  int64_t sh, sw, dh, dw;
  int64_t pt, pl;       /* padding before: top, left */
  int spatial_rank;     /* 1 or 2 */
} geom;

/* Keras's output size along one axis; LM_NONE for an unknown input, <= 0 when the kernel
 * does not fit. */
static int64_t out_size(int64_t in, int64_t k, int64_t s, int64_t d, int same, int64_t *before) {
  int64_t ek = (k - 1) * d + 1;
  *before = 0;
  if (in < 0) return LM_NONE;
  if (!same) return in >= ek ? (in - ek) / s + 1 : 0;
  int64_t o = (in + s - 1) / s, total = (o - 1) * s + ek - in;
  *before = total > 0 ? total / 2 : 0;
  return o;
}

static const char *kind_name(int depthwise) { return depthwise ? "depthwise convolution" : "convolution"; }

/* Fills g from x's and the kernel's shapes and the attributes; on a misfit writes err. */
static lm_status geom_from(const lm_attrs *a, lm_shape x, lm_dtype xdt, lm_shape k, int depthwise, geom *g,
                           char *err, size_t len) {
  char b1[96], b2[96];
  if (xdt != LM_FLOAT32) {
    snprintf(err, len, "a %s needs float32 input, got int32", kind_name(depthwise));
    return LM_ERROR_VALUE;
  }
  if (x.rank != 3 && x.rank != 4) {
    snprintf(err, len, "a %s needs an input of rank 3 (batch, steps, channels) or 4 (batch, rows, cols, channels), got %s",
             kind_name(depthwise), lm_shape_format(x, b1, sizeof b1));
    return LM_ERROR_SHAPE;
  }
  if (k.rank != x.rank) {
    snprintf(err, len, "the kernel %s does not fit an input of rank %d", lm_shape_format(k, b1, sizeof b1), x.rank);
    return LM_ERROR_SHAPE;
  }
  memset(g, 0, sizeof *g);
  g->spatial_rank = x.rank - 2;
  int two = g->spatial_rank == 2;
  g->n = x.dim[0];
  g->h = two ? x.dim[1] : 1;
  g->w = x.dim[x.rank - 2];
  g->c = x.dim[x.rank - 1];
  g->kh = two ? k.dim[0] : 1;
  g->kw = k.dim[k.rank - 3];
  g->f = k.dim[k.rank - 1];
  g->sh = a->i[0], g->sw = a->i[1], g->dh = a->i[2], g->dw = a->i[3];
  if (g->sh < 1 || g->sw < 1 || g->dh < 1 || g->dw < 1 || (!two && (g->sh != 1 || g->dh != 1))) {
    snprintf(err, len, "strides (%lld, %lld) and dilation rates (%lld, %lld) must be positive", (long long)g->sh,
             (long long)g->sw, (long long)g->dh, (long long)g->dw);
    return LM_ERROR_VALUE;
  }
  if (g->c < 0) {
    snprintf(err, len, "the channels dimension of the input %s must be defined", lm_shape_format(x, b1, sizeof b1));
    return LM_ERROR_SHAPE;
  }
  if (g->c != k.dim[k.rank - 2]) {
    snprintf(err, len, "the input %s has %lld channels, the kernel %s expects %lld", lm_shape_format(x, b1, sizeof b1),
             (long long)g->c, lm_shape_format(k, b2, sizeof b2), (long long)k.dim[k.rank - 2]);
    return LM_ERROR_SHAPE;
  }
  int same = a->i[4] == LM_SAME;
  g->oh = out_size(g->h, g->kh, g->sh, g->dh, same, &g->pt);
  g->ow = out_size(g->w, g->kw, g->sw, g->dw, same, &g->pl);
  if ((g->oh != LM_NONE && g->oh <= 0) || (g->ow != LM_NONE && g->ow <= 0)) {
    if (two)
      snprintf(err, len,
               "computed output size would be zero or negative: input %s, kernel %s, strides (%lld, %lld), "
               "dilation_rate (%lld, %lld), padding %s",
               lm_shape_format(x, b1, sizeof b1), lm_shape_format(k, b2, sizeof b2), (long long)g->sh,
               (long long)g->sw, (long long)g->dh, (long long)g->dw, same ? "same" : "valid");
    else
      snprintf(err, len,
               "computed output size would be zero or negative: input %s, kernel %s, strides (%lld,), "
               "dilation_rate (%lld,), padding %s",
               lm_shape_format(x, b1, sizeof b1), lm_shape_format(k, b2, sizeof b2), (long long)g->sw,
               (long long)g->dw, same ? "same" : "valid");
    return LM_ERROR_SHAPE;
  }
  return LM_OK;
}

static lm_status check_count(int n, char *err, size_t len) {
  if (n == 2 || n == 3) return LM_OK;
  snprintf(err, len, "takes x, kernel and an optional bias, got %d inputs", n);
  return LM_ERROR_VALUE;
}

static lm_status check_bias(const lm_shape *in, int n, int64_t channels, char *err, size_t len) {
  if (n == 3 && (in[2].rank != 1 || in[2].dim[0] != channels)) {
    char b1[96];
    snprintf(err, len, "the bias %s does not match the %lld output channels", lm_shape_format(in[2], b1, sizeof b1),
             (long long)channels);
    return LM_ERROR_SHAPE;
  }
  return LM_OK;
}

static lm_shape out_shape(const geom *g, int64_t channels) {
  if (g->spatial_rank == 2) return LM_SHAPE(g->n, g->oh, g->ow, channels);
  return LM_SHAPE(g->n, g->ow, channels);
}

/* ---- General convolution ---- */

static int is_direct(const geom *g) { /* a 1x1 kernel with stride 1: y = x W */
  return g->kh == 1 && g->kw == 1 && g->sh == 1 && g->sw == 1;
}

/* A 1D convolution with stride 1 and dilation 1 whose windows all lie inside the input
 * (valid padding, or same padding that pads nothing). Read the whole batch as one sequence
 * of n * w rows: tap j of the window at row t is row t + j, so one GEMM per tap over all
 * n * w - kw + 1 positions computes that tap's share, with no im2col copy. Positions whose
 * window crosses into the next sample are computed and thrown away (kw - 1 of every w):
 * the scratch (n * w, filters) holds the positions, and the output takes each sample's
 * first ow of them; in backward the scratch holds dy at the same positions and zeros at
 * the others. */
static int is_window_rows(const geom *g) {
  return g->spatial_rank == 1 && g->sw == 1 && g->dw == 1 && g->pl == 0 && g->ow > 0 && g->w >= 0 &&
         g->ow - 1 + g->kw <= g->w;
}


static lm_status conv_shape(const lm_attrs *a, const lm_shape *in, const lm_dtype *dt, int n, lm_shape *out,
                            lm_dtype *odt, char *err, size_t len) {
  geom g;
  lm_status st = check_count(n, err, len);
  if (st == LM_OK) st = geom_from(a, in[0], dt[0], in[1], 0, &g, err, len);
  if (st == LM_OK) st = check_bias(in, n, g.f, err, len);
  if (st != LM_OK) return st;
  out[0] = out_shape(&g, g.f);
  /* The scratch: (2, output rows per chunk, output columns, kh * kw * c), where an output
   * row is one (sample, oh). Half 0 holds the columns, half 1 is backward's work area.
   * Nothing in it lasts from forward to backward (a scratch output: plans share its bytes
   * in between). */
  if (is_direct(&g)) out[1] = LM_SHAPE(1);
  else if (is_window_rows(&g)) out[1] = LM_SHAPE(g.n >= 0 ? g.n * g.w : LM_NONE, g.f);
  else {
    int64_t kkc = g.kh * g.kw * g.c, chunk = LM_NONE;
    if (g.ow > 0) {
      chunk = (a->i[5] > 0 ? a->i[5] : COL_CHUNK_FLOATS) / (g.ow * kkc);
      if (chunk < 1) chunk = 1;
      if (g.n > 0 && g.oh > 0 && chunk > g.n * g.oh) chunk = g.n * g.oh;
    }
    out[1] = LM_SHAPE(2, chunk, g.ow, kkc);
  }
  odt[0] = odt[1] = LM_FLOAT32;
  return LM_OK;
}

static geom plan_geom(lm_plan *p, const lm_opnode *node) {
  geom g;
  char err[8];
  geom_from(&node->a, p->shapes[node->in[0]], LM_FLOAT32, p->shapes[node->in[1]], 0, &g, err, sizeof err);
  return g;
}

/* The output columns [*lo, *hi) whose tap at kernel offset `off` (kw * dw) lands inside
 * an input row of length w. */
static void inside(int64_t off, const geom *g, int64_t *lo, int64_t *hi) {
  int64_t a = g->pl - off, b = g->w + g->pl - off; /* ow * sw must lie in [a, b) */
  *lo = a > 0 ? (a + g->sw - 1) / g->sw : 0;
  *hi = b > 0 ? (b + g->sw - 1) / g->sw : 0;
  if (*hi > g->ow) *hi = g->ow;
  if (*lo > *hi) *lo = *hi;
}

/* im2col for a few channels (the first layer on images): per kernel tap, one strided
 * loop over the output row, instead of a tiny copy per tap and pixel. */
static void im2col_few(const geom *g, const float *restrict x, int64_t u0, int64_t count, float *restrict col) {
  const int64_t c = g->c, kkc = g->kh * g->kw * c;
  for (int64_t u = u0; u < u0 + count; u++, col += g->ow * kkc) {
    const int64_t oh = u % g->oh;
    const float *xn = x + u / g->oh * g->h * g->w * c;
    for (int64_t kh = 0; kh < g->kh; kh++) {
      int64_t ih = oh * g->sh - g->pt + kh * g->dh;
      for (int64_t kw = 0; kw < g->kw; kw++) {
        float *dst = col + (kh * g->kw + kw) * c;
        int64_t lo = 0, hi = 0;
        if (ih >= 0 && ih < g->h) inside(kw * g->dw, g, &lo, &hi);
        const float *src = xn + (ih * g->w + kw * g->dw - g->pl) * c;
        /* channels outside, pixels inside: strided loops that stay loops (no memcpy calls) */
        for (int64_t ci = 0; ci < c; ci++) {
          for (int64_t ow = 0; ow < lo; ow++) dst[ow * kkc + ci] = 0;
          for (int64_t ow = lo; ow < hi; ow++) dst[ow * kkc + ci] = src[ow * g->sw * c + ci];
          for (int64_t ow = hi; ow < g->ow; ow++) dst[ow * kkc + ci] = 0;
        }
      }
    }
  }
}

/* Columns of output rows [u0, u0 + count), u = (sample, oh): matrix row (u, ow), column
 * (kh, kw, c). */
static void im2col(const geom *g, const float *restrict x, int64_t u0, int64_t count, float *restrict col) {
  const int64_t c = g->c, kwc = g->kw * c;
  if (c < 8) {
    im2col_few(g, x, u0, count, col);
    return;
  }
  for (int64_t u = u0; u < u0 + count; u++) {
    const int64_t oh = u % g->oh;
    const float *xn = x + u / g->oh * g->h * g->w * c;
    for (int64_t ow = 0; ow < g->ow; ow++) {
      int64_t iw0 = ow * g->sw - g->pl;
      /* With dilation 1 a kernel row inside the image is one contiguous run. */
      int whole_row = g->dw == 1 && iw0 >= 0 && iw0 + g->kw <= g->w;
      for (int64_t kh = 0; kh < g->kh; kh++) {
        int64_t ih = oh * g->sh - g->pt + kh * g->dh;
        if (ih < 0 || ih >= g->h) {
          memset(col, 0, (size_t)kwc * sizeof *col);
          col += kwc;
          continue;
        }
        const float *xr = xn + ih * g->w * c;
        if (whole_row) {
          memcpy(col, xr + iw0 * c, (size_t)kwc * sizeof *col);
          col += kwc;
          continue;
        }
        for (int64_t kw = 0; kw < g->kw; kw++, col += c) {
          int64_t iw = iw0 + kw * g->dw;
          if (iw < 0 || iw >= g->w) memset(col, 0, (size_t)c * sizeof *col);
          else memcpy(col, xr + iw * c, (size_t)c * sizeof *col);
        }
      }
    }
  }
}

/* The adjoint of im2col: dx += the columns, summed where windows overlap. */
static void col2im_add(const geom *g, const float *restrict col, int64_t u0, int64_t count, float *restrict dx) {
  const int64_t c = g->c;
  for (int64_t u = u0; u < u0 + count; u++) {
    const int64_t oh = u % g->oh;
    float *dxn = dx + u / g->oh * g->h * g->w * c;
    for (int64_t ow = 0; ow < g->ow; ow++)
      for (int64_t kh = 0; kh < g->kh; kh++) {
        int64_t ih = oh * g->sh - g->pt + kh * g->dh;
        if (ih < 0 || ih >= g->h) {
          col += g->kw * c;
          continue;
        }
        for (int64_t kw = 0; kw < g->kw; kw++, col += c) {
          int64_t iw = ow * g->sw - g->pl + kw * g->dw;
          if (iw < 0 || iw >= g->w) continue;
          float *d = dxn + (ih * g->w + iw) * c;
          for (int64_t ci = 0; ci < c; ci++) d[ci] += col[ci];
        }
      }
  }
}

/* im2col and its adjoint over units [u0, u0 + count), on every thread. im2col's units are
 * independent. col2im's units overlap in dx only within a sample and fewer than `reach`
 * units apart, so it runs in two waves of pieces of `reach` units, even pieces then odd
 * ones: pieces of one wave never touch the same dx row, and every dx element adds its
 * contributions in the same order whatever the thread count. */
static void im2col_threaded(const geom *g, const float *x, int64_t u0, int64_t count, float *col) {
  const int64_t per = g->ow * g->kh * g->kw * g->c;
#pragma omp parallel for num_threads(lm__num_threads()) schedule(static) if (count * per > LM_PARALLEL_MIN)
  for (int64_t i = 0; i < count; i++) im2col(g, x, u0 + i, 1, col + i * per);
}

static void col2im_add_threaded(const geom *g, const float *col, int64_t u0, int64_t count, float *dx) {
  const int64_t per = g->ow * g->kh * g->kw * g->c, reach = (g->kh - 1) * g->dh / g->sh + 1;
  const int64_t pieces = (count + reach - 1) / reach;
  for (int wave = 0; wave < 2; wave++) {
#pragma omp parallel for num_threads(lm__num_threads()) schedule(static) if (count * per > LM_PARALLEL_MIN)
    for (int64_t q = wave; q < pieces; q += 2) {
      int64_t first = q * reach, n = count - first < reach ? count - first : reach;
      col2im_add(g, col + first * per, u0 + first, n, dx);
    }
  }
}

static void conv_fwd(lm_plan *p, const lm_opnode *node) {
  geom g = plan_geom(p, node);
  const float *x = lm__f(p, node->in[0]), *k = lm__f(p, node->in[1]);
  const float *b = node->n_in == 3 ? lm__f(p, node->in[2]) : NULL;
  float *y = lm__f(p, node->out[0]);
  const lm_activation act = (lm_activation)node->a.i[7];
  const int f = (int)g.f, kkc = (int)(g.kh * g.kw * g.c);
  if (is_direct(&g)) {
    /* In blocks of rows: each block's product is still in cache when its epilogue runs. */
    int64_t rows = g.n * g.oh * g.ow, block = DIRECT_BLOCK_FLOATS / f + 1;
    for (int64_t r0 = 0; r0 < rows; r0 += block) {
      int64_t n = rows - r0 < block ? rows - r0 : block;
      lm__sgemm(false, false, n, f, g.c, 1.0f, x + r0 * g.c, g.c, k, f, 0.0f, y + r0 * f, f);
      lm__bias_act_forward(act, b, y + r0 * f, n, f);
    }
    return;
  }
  if (is_window_rows(&g)) {
    float *pos = lm__f(p, node->out[1]);
    const int64_t positions = g.n * g.w - g.kw + 1;
    for (int64_t j = 0; j < g.kw; j++)
      lm__sgemm(false, false, positions, f, g.c, 1.0f, x + j * g.c, g.c, k + j * g.c * f, f, j ? 1.0f : 0.0f, pos, f);
#pragma omp parallel for num_threads(lm__num_threads()) schedule(static) if (g.n * g.ow * f > LM_PARALLEL_MIN)
    for (int64_t n = 0; n < g.n; n++) {
      memcpy(y + n * g.ow * f, pos + n * g.w * f, (size_t)(g.ow * f) * sizeof *y);
      lm__bias_act_forward(act, b, y + n * g.ow * f, g.ow, f);
    }
    return;
  }
  float *col = lm__f(p, node->out[1]);
  int64_t chunk = p->shapes[node->out[1]].dim[1], units = g.n * g.oh;
  for (int64_t u0 = 0; u0 < units; u0 += chunk) {
    int64_t count = units - u0 < chunk ? units - u0 : chunk, rows = count * g.ow;
    float *yc = y + u0 * g.ow * f;
    im2col_threaded(&g, x, u0, count, col);
    lm__sgemm(false, false, rows, f, kkc, 1.0f, col, kkc, k, f, 0.0f, yc, f);
    lm__bias_act_forward(act, b, yc, rows, f);
  }
}

static void conv_bwd(lm_plan *p, const lm_opnode *node) {
  geom g = plan_geom(p, node);
  const float *x = lm__f(p, node->in[0]), *k = lm__f(p, node->in[1]);
  float *dy = lm__g(p, node->out[0]), *dx = lm__g(p, node->in[0]), *dk = lm__g(p, node->in[1]);
  float *db = node->n_in == 3 ? lm__g(p, node->in[2]) : NULL;
  if (!dy) return;
  const int f = (int)g.f, kkc = (int)(g.kh * g.kw * g.c);
  int64_t units = g.n * g.oh;
  lm__bias_act_backward((lm_activation)node->a.i[7], lm__f(p, node->out[0]), dy, db, units * g.ow, f);
  if (is_direct(&g)) {
    const int64_t c = g.c, rows = units * g.ow;
    if (dk) lm__sgemm(true, false, c, f, rows, 1.0f, x, c, dy, f, 1.0f, dk, f);
    if (dx) lm__sgemm(false, true, rows, c, f, 1.0f, dy, f, k, f, 1.0f, dx, c);
    return;
  }
  if (is_window_rows(&g)) {
    float *pos = lm__f(p, node->out[1]);
    const int64_t c = g.c, positions = g.n * g.w - g.kw + 1;
#pragma omp parallel for num_threads(lm__num_threads()) schedule(static) if (g.n * g.w * f > LM_PARALLEL_MIN)
    for (int64_t n = 0; n < g.n; n++) {
      memcpy(pos + n * g.w * f, dy + n * g.ow * f, (size_t)(g.ow * f) * sizeof *pos);
      memset(pos + (n * g.w + g.ow) * f, 0, (size_t)((g.w - g.ow) * f) * sizeof *pos);
    }
    for (int64_t j = 0; j < g.kw; j++) {
      if (dk) lm__sgemm(true, false, c, f, positions, 1.0f, x + j * c, c, pos, f, 1.0f, dk + j * c * f, f);
      if (dx) lm__sgemm(false, true, positions, c, f, 1.0f, pos, f, k + j * c * f, f, 1.0f, dx + j * c, c);
    }
    return;
  }
  lm_shape ss = p->shapes[node->out[1]];
  int64_t chunk = ss.dim[1];
  /* The scratch is the plan's to share between forward and backward (scratch_outputs):
   * every chunk's columns are rebuilt in half 0; half 1 takes the column gradients. */
  float *col = lm__f(p, node->out[1]), *work = col + lm_shape_size(ss) / 2;
  for (int64_t u0 = 0; u0 < units; u0 += chunk) {
    int64_t count = units - u0 < chunk ? units - u0 : chunk, rows = count * g.ow;
    const float *dyc = dy + u0 * g.ow * f;
    if (dk) {
      im2col_threaded(&g, x, u0, count, col);
      lm__sgemm(true, false, kkc, f, rows, 1.0f, col, kkc, dyc, f, 1.0f, dk, f);
    }
    if (dx) {
      lm__sgemm(false, true, rows, kkc, f, 1.0f, dyc, f, k, f, 0.0f, work, kkc);
      col2im_add_threaded(&g, work, u0, count, dx);
    }
  }
}

const lm_op_def lm__op_conv = {"conv", 2, conv_shape, conv_fwd, conv_bwd, 1u << 1, true, 0, 1u << 1};

/* ---- Depthwise convolution ----
 *
 * Every loop runs along the contiguous channel axis. With stride 1 an output row's pixels
 * are contiguous in x too, so one kernel tap is a single long multiply-add over the row,
 * taken in chunks of P floats (a whole number of pixels, a multiple of 16) against the
 * tap's weights repeated to P floats: few channels vectorize as well as many. With other
 * strides a chunk is one pixel (P = c). Several depth multipliers take a plain per-pixel
 * path.
 *
 * Threads split the batch into DW_PIECES fixed pieces; the kernel and bias gradients sum
 * each piece into its own rows of the scratch (out[1]), which are then added in piece
 * order, so results do not depend on the number of threads. */

#define DW_PIECES 32
#define DW_TILE 4096 /* floats of an output row worked on at once (stays in L1) */

/* The chunk length: with multiplier 1 and stride 1, c times the smallest number of pixels
 * that makes a multiple of 16 floats, doubled up to at least 128 (independent sums for
 * the kernel gradient); else c * m. */
static int64_t dw_chunk(const geom *g) {
  if (g->f != 1 || g->sw != 1) return g->c * g->f;
  int64_t p = g->c, r = 16;
  while (r > 1 && p % 2 == 0) p /= 2, r /= 2; /* r = 16 / gcd(c, 16) */
  p = g->c * r;
  while (p < 128) p *= 2;
  return p;
}

static lm_status depthwise_shape(const lm_attrs *a, const lm_shape *in, const lm_dtype *dt, int n, lm_shape *out,
                                 lm_dtype *odt, char *err, size_t len) {
  geom g;
  lm_status st = check_count(n, err, len);
  if (st == LM_OK) st = geom_from(a, in[0], dt[0], in[1], 1, &g, err, len);
  if (st == LM_OK) st = check_bias(in, n, g.c * g.f, err, len);
  if (st != LM_OK) return st;
  out[0] = out_shape(&g, g.c * g.f);
  /* The scratch: row 0 the kernel repeated to chunks, then one row per piece for the
   * partial gradients of the kernel (kh * kw chunks) and of the bias (one chunk). */
  out[1] = LM_SHAPE(DW_PIECES + 1, (g.kh * g.kw + 1) * dw_chunk(&g));
  odt[0] = odt[1] = LM_FLOAT32;
  return LM_OK;
}

static geom plan_geom_dw(lm_plan *p, const lm_opnode *node) {
  geom g;
  char err[8];
  geom_from(&node->a, p->shapes[node->in[0]], LM_FLOAT32, p->shapes[node->in[1]], 1, &g, err, sizeof err);
  return g;
}

/* The kernel taps [*lo, *hi) of output position o that fall inside the input (one axis). */
static void taps(int64_t o, int64_t s, int64_t pad, int64_t d, int64_t k, int64_t in, int64_t *lo, int64_t *hi) {
  int64_t start = o * s - pad;
  *lo = start >= 0 ? 0 : (-start + d - 1) / d;
  *hi = in - start > 0 ? (in - start + d - 1) / d : 0;
  if (*hi > k) *hi = k;
  if (*lo > *hi) *lo = *hi;
}

/* Row 0 of the scratch: ke[tap * P + t] = k[tap * c + t % c] (multiplier 1). */
static float *dw_kernel_chunks(const geom *g, const float *k, float *scratch, int64_t P) {
  for (int64_t tap = 0; tap < g->kh * g->kw; tap++)
    for (int64_t t = 0; t < P; t++) scratch[tap * P + t] = k[tap * g->c + t % g->c];
  return scratch;
}

/* d[i * dstep + t] += s[i * sstep + t] * ke[t] over len floats, in chunks of P. */
static inline void dw_axpy(float *restrict d, const float *restrict s, const float *restrict ke, int64_t len,
                           int64_t P, int64_t dstep, int64_t sstep) {
  for (; len > 0; len -= P, d += dstep, s += sstep) {
    int64_t l = len < P ? len : P;
    for (int64_t t = 0; t < l; t++) d[t] += s[t] * ke[t];
  }
}

/* e[t] += a[i * astep + t] * b[i * P + t] over len floats, in chunks of P. */
static inline void dw_dot(float *restrict e, const float *restrict a, const float *restrict b, int64_t len, int64_t P,
                          int64_t astep) {
  for (; len > 0; len -= P, a += astep, b += P) {
    int64_t l = len < P ? len : P;
    for (int64_t t = 0; t < l; t++) e[t] += a[t] * b[t];
  }
}

/* The taps' column ranges: output columns [*lo, *hi) within [p0, p1) whose tap kw lands
 * inside the input, and the input column of *lo. */
static int dw_cols(const geom *g, int64_t kw, int64_t p0, int64_t p1, int64_t *lo, int64_t *hi, int64_t *iw) {
  inside(kw * g->dw, g, lo, hi);
  if (*lo < p0) *lo = p0;
  if (*hi > p1) *hi = p1;
  *iw = *lo * g->sw - g->pl + kw * g->dw;
  return *lo < *hi;
}

/* Output pixels per tile: a whole number of chunks. */
static int64_t dw_tile(const geom *g, int64_t P) {
  int64_t chunks = DW_TILE / P;
  return (chunks > 1 ? chunks : 1) * (P / g->c);
}

/* Forward of samples [n0, n1), multiplier 1: per output row, the bias, then each tap
 * added over the row. */
LM_VECTORIZE static void dw_fwd_m1(const geom *g, const float *x, const float *ke, int64_t P, const float *b,
                                   float *y, int64_t n0, int64_t n1) {
  const int64_t c = g->c, tp = dw_tile(g, P);
  for (int64_t n = n0; n < n1; n++)
    for (int64_t oh = 0; oh < g->oh; oh++) {
      float *yr = y + (n * g->oh + oh) * g->ow * c;
      if (b)
        for (int64_t ow = 0; ow < g->ow; ow++) memcpy(yr + ow * c, b, (size_t)c * sizeof *yr);
      else memset(yr, 0, (size_t)(g->ow * c) * sizeof *yr);
      int64_t kh0, kh1;
      taps(oh, g->sh, g->pt, g->dh, g->kh, g->h, &kh0, &kh1);
      for (int64_t p0 = 0; p0 < g->ow; p0 += tp) {
        int64_t p1 = p0 + tp < g->ow ? p0 + tp : g->ow;
        for (int64_t kh = kh0; kh < kh1; kh++) {
          const float *xr = x + (n * g->h + oh * g->sh - g->pt + kh * g->dh) * g->w * c;
          for (int64_t kw = 0; kw < g->kw; kw++) {
            int64_t lo, hi, iw;
            if (dw_cols(g, kw, p0, p1, &lo, &hi, &iw))
              dw_axpy(yr + lo * c, xr + iw * c, ke + (kh * g->kw + kw) * P, (hi - lo) * c, P, P, P * g->sw);
          }
        }
      }
    }
}

/* Backward of samples [n0, n1), multiplier 1: dx added in place; the kernel and bias
 * gradients summed into part (kh * kw + 1 chunks, overwritten). */
LM_VECTORIZE static void dw_bwd_m1(const geom *g, const float *x, const float *ke, int64_t P, const float *dy,
                                   float *dx, float *part, bool dk, bool db, int64_t n0, int64_t n1) {
  const int64_t c = g->c, tp = dw_tile(g, P), kk = g->kh * g->kw;
  memset(part, 0, (size_t)((kk + 1) * P) * sizeof *part);
  for (int64_t n = n0; n < n1; n++)
    for (int64_t oh = 0; oh < g->oh; oh++) {
      const float *dyr = dy + (n * g->oh + oh) * g->ow * c;
      if (db) {
        float *restrict e = part + kk * P;
        for (int64_t ow = 0; ow < g->ow; ow += P / c) {
          const float *restrict d = dyr + ow * c;
          int64_t l = (g->ow - ow) * c < P ? (g->ow - ow) * c : P;
          for (int64_t t = 0; t < l; t++) e[t] += d[t];
        }
      }
      int64_t kh0, kh1;
      taps(oh, g->sh, g->pt, g->dh, g->kh, g->h, &kh0, &kh1);
      for (int64_t p0 = 0; p0 < g->ow; p0 += tp) {
        int64_t p1 = p0 + tp < g->ow ? p0 + tp : g->ow;
        for (int64_t kh = kh0; kh < kh1; kh++) {
          int64_t row = (n * g->h + oh * g->sh - g->pt + kh * g->dh) * g->w * c;
          for (int64_t kw = 0; kw < g->kw; kw++) {
            int64_t lo, hi, iw, tap = kh * g->kw + kw;
            if (!dw_cols(g, kw, p0, p1, &lo, &hi, &iw)) continue;
            if (dk) dw_dot(part + tap * P, x + row + iw * c, dyr + lo * c, (hi - lo) * c, P, P * g->sw);
            if (dx) dw_axpy(dx + row + iw * c, dyr + lo * c, ke + tap * P, (hi - lo) * c, P, P * g->sw, P);
          }
        }
      }
    }
}

/* Forward of samples [n0, n1) with several multipliers: output channel j reads input
 * channel j / m. */
static void dw_fwd_mult(const geom *g, const float *x, const float *k, const float *b, float *y, int64_t n0,
                        int64_t n1) {
  const int64_t c = g->c, m = g->f, cm = c * m;
  for (int64_t n = n0; n < n1; n++) {
    const float *xn = x + n * g->h * g->w * c;
    for (int64_t oh = 0; oh < g->oh; oh++) {
      int64_t kh0, kh1;
      taps(oh, g->sh, g->pt, g->dh, g->kh, g->h, &kh0, &kh1);
      for (int64_t ow = 0; ow < g->ow; ow++) {
        int64_t kw0, kw1;
        taps(ow, g->sw, g->pl, g->dw, g->kw, g->w, &kw0, &kw1);
        float *restrict yp = y + ((n * g->oh + oh) * g->ow + ow) * cm;
        if (b) memcpy(yp, b, (size_t)cm * sizeof *yp);
        else memset(yp, 0, (size_t)cm * sizeof *yp);
        for (int64_t kh = kh0; kh < kh1; kh++) {
          int64_t ih = oh * g->sh - g->pt + kh * g->dh;
          for (int64_t kw = kw0; kw < kw1; kw++) {
            int64_t iw = ow * g->sw - g->pl + kw * g->dw;
            const float *restrict xp = xn + (ih * g->w + iw) * c, *restrict kp = k + (kh * g->kw + kw) * cm;
            for (int64_t ci = 0; ci < c; ci++)
              for (int64_t mi = 0; mi < m; mi++) yp[ci * m + mi] += xp[ci] * kp[ci * m + mi];
          }
        }
      }
    }
  }
}

/* Backward of samples [n0, n1) with several multipliers; part as in dw_bwd_m1 (P = c m). */
static void dw_bwd_mult(const geom *g, const float *x, const float *k, const float *dy, float *dx, float *part,
                        bool dk, bool db, int64_t n0, int64_t n1) {
  const int64_t c = g->c, m = g->f, cm = c * m, kk = g->kh * g->kw;
  memset(part, 0, (size_t)((kk + 1) * cm) * sizeof *part);
  for (int64_t n = n0; n < n1; n++) {
    const float *xn = x + n * g->h * g->w * c;
    float *dxn = dx ? dx + n * g->h * g->w * c : NULL;
    for (int64_t oh = 0; oh < g->oh; oh++) {
      int64_t kh0, kh1;
      taps(oh, g->sh, g->pt, g->dh, g->kh, g->h, &kh0, &kh1);
      for (int64_t ow = 0; ow < g->ow; ow++) {
        int64_t kw0, kw1;
        taps(ow, g->sw, g->pl, g->dw, g->kw, g->w, &kw0, &kw1);
        const float *restrict dyp = dy + ((n * g->oh + oh) * g->ow + ow) * cm;
        if (db)
          for (int64_t j = 0; j < cm; j++) part[kk * cm + j] += dyp[j];
        for (int64_t kh = kh0; kh < kh1; kh++) {
          int64_t ih = oh * g->sh - g->pt + kh * g->dh;
          for (int64_t kw = kw0; kw < kw1; kw++) {
            int64_t iw = ow * g->sw - g->pl + kw * g->dw, tap = (kh * g->kw + kw) * cm, at = (ih * g->w + iw) * c;
            const float *restrict xp = xn + at, *restrict kp = k + tap;
            if (dk) {
              float *restrict dkp = part + tap;
              for (int64_t ci = 0; ci < c; ci++)
                for (int64_t mi = 0; mi < m; mi++) dkp[ci * m + mi] += xp[ci] * dyp[ci * m + mi];
            }
            if (dxn) {
              float *restrict dxp = dxn + at;
              for (int64_t ci = 0; ci < c; ci++) {
                float s = 0;
                for (int64_t mi = 0; mi < m; mi++) s += kp[ci * m + mi] * dyp[ci * m + mi];
                dxp[ci] += s;
              }
            }
          }
        }
      }
    }
  }
}

static void depthwise_fwd(lm_plan *p, const lm_opnode *node) {
  geom g = plan_geom_dw(p, node);
  const float *x = lm__f(p, node->in[0]), *k = lm__f(p, node->in[1]);
  const float *b = node->n_in == 3 ? lm__f(p, node->in[2]) : NULL;
  float *y = lm__f(p, node->out[0]);
  const int64_t P = dw_chunk(&g), work = g.n * g.oh * g.ow * g.c * g.f * g.kh * g.kw;
  const float *ke = g.f == 1 ? dw_kernel_chunks(&g, k, lm__f(p, node->out[1]), P) : k;
  /* Samples are independent: any split gives the same bits. */
#pragma omp parallel for num_threads(lm__num_threads()) schedule(static) if (work > LM_PARALLEL_MIN)
  for (int64_t n = 0; n < g.n; n++) {
    if (g.f == 1) dw_fwd_m1(&g, x, ke, P, b, y, n, n + 1);
    else dw_fwd_mult(&g, x, k, b, y, n, n + 1);
  }
}

static void depthwise_bwd(lm_plan *p, const lm_opnode *node) {
  geom g = plan_geom_dw(p, node);
  const float *x = lm__f(p, node->in[0]), *k = lm__f(p, node->in[1]), *dy = lm__g(p, node->out[0]);
  float *dx = lm__g(p, node->in[0]), *dk = lm__g(p, node->in[1]);
  float *db = node->n_in == 3 ? lm__g(p, node->in[2]) : NULL;
  if (!dy) return;
  const int64_t P = dw_chunk(&g), cm = g.c * g.f, kk = g.kh * g.kw, row = (kk + 1) * P;
  const int64_t work = g.n * g.oh * g.ow * cm * kk;
  float *scratch = lm__f(p, node->out[1]);
  const float *ke = g.f == 1 ? dw_kernel_chunks(&g, k, scratch, P) : k;
  float *parts = scratch + row;
  /* Fixed pieces of the batch, each with its own partial sums. */
#pragma omp parallel for num_threads(lm__num_threads()) schedule(static) if (work > LM_PARALLEL_MIN)
  for (int i = 0; i < DW_PIECES; i++) {
    int64_t n0 = g.n * i / DW_PIECES, n1 = g.n * (i + 1) / DW_PIECES;
    if (g.f == 1) dw_bwd_m1(&g, x, ke, P, dy, dx, parts + i * row, dk != NULL, db != NULL, n0, n1);
    else dw_bwd_mult(&g, x, k, dy, dx, parts + i * row, dk != NULL, db != NULL, n0, n1);
  }
  /* The partials in piece order; each chunk folds onto the c * m channels. */
  for (int i = 0; i < DW_PIECES; i++) {
    if (g.n * i / DW_PIECES == g.n * (i + 1) / DW_PIECES) continue; /* an empty piece */
    const float *part = parts + i * row;
    for (int64_t tap = 0; tap <= kk; tap++) {
      float *dst = tap < kk ? dk : db;
      if (!dst) continue;
      if (tap < kk) dst += tap * cm;
      for (int64_t q = 0; q < P; q += cm)
        for (int64_t j = 0; j < cm; j++) dst[j] += part[tap * P + q + j];
    }
  }
}

const lm_op_def lm__op_depthwise_conv = {"depthwise_conv", 2, depthwise_shape, depthwise_fwd, depthwise_bwd, 1u << 1,
                                         false, LM_UNREAD_OUT(0), 1u << 1};
