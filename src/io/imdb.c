/* keras.datasets.imdb.load_data on a local imdb.npz, and keras.utils.to_categorical.
 *
 * The file is Keras's own: x_train / x_test are object arrays of int lists (pickled inside
 * the .npy members, read by the restricted unpickler in pickle.c), y_train / y_test int64
 * labels. The processing is Keras 3's, step for step: numpy's legacy RandomState(seed)
 * shuffles train then test, start_char and index_from shift the words, maxlen drops the
 * sequences not shorter than it, and words outside [skip_top, num_words) become oov_char
 * (or are dropped). */
#include "io/npy.h"
#include "io/pickle.h"
#include "io/zip.h"
#include <lamina/io.h>

/* ---- numpy's legacy RandomState: MT19937 and its bounded draws ---- */
typedef struct mt19937 {
  uint32_t key[624];
  int pos;
} mt19937;

static void mt_seed(mt19937 *s, uint32_t seed) { /* numpy's mt19937_seed (init_genrand) */
  for (int i = 0; i < 624; i++) {
    s->key[i] = seed;
    seed = 1812433253u * (seed ^ (seed >> 30)) + (uint32_t)i + 1;
  }
  s->pos = 624;
}

static uint32_t mt_next(mt19937 *s) {
  if (s->pos == 624) {
    for (int i = 0; i < 624; i++) {
      uint32_t y = (s->key[i] & 0x80000000u) | (s->key[(i + 1) % 624] & 0x7fffffffu);
      s->key[i] = s->key[(i + 397) % 624] ^ (y >> 1) ^ (y & 1 ? 0x9908b0dfu : 0);
    }
    s->pos = 0;
  }
  uint32_t y = s->key[s->pos++];
  y ^= y >> 11;
  y ^= (y << 7) & 0x9d2c5680u;
  y ^= (y << 15) & 0xefc60000u;
  return y ^ (y >> 18);
}

/* numpy's random_interval: uniform in [0, max] by masking and rejection (32-bit draws,
 * enough for any count lamina holds). */
static uint32_t mt_interval(mt19937 *s, uint32_t max) {
  if (max == 0) return 0;
  uint32_t mask = max, v;
  mask |= mask >> 1, mask |= mask >> 2, mask |= mask >> 4, mask |= mask >> 8, mask |= mask >> 16;
  while ((v = mt_next(s) & mask) > max) {}
  return v;
}

/* RandomState.shuffle of np.arange(n): Fisher-Yates from the end. */
static void shuffle_indices(mt19937 *s, int64_t *idx, int64_t n) {
  for (int64_t i = 0; i < n; i++) idx[i] = i;
  for (int64_t i = n - 1; i > 0; i--) {
    int64_t j = mt_interval(s, (uint32_t)i), t = idx[i];
    idx[i] = idx[j], idx[j] = t;
  }
}

/* ---- Reading the four members ---- */

/* A member's sequences: an object array of int lists, or a 2-D integer array (what numpy
 * makes of equal-length lists), whose rows Keras iterates the same way. */
static lm_status read_sequences(const lm_zip *z, int e, const char *what, lm__int_lists *out) {
  uint8_t *bytes;
  size_t len;
  lm_status st = lm__zip_read(z, e, (uint64_t)1 << 34, &bytes, &len);
  if (st) return st;
  int64_t n;
  size_t off;
  int obj = lm__npy_object_array(bytes, len, what, &n, &off);
  if (obj == 1) {
    st = lm__unpickle_int_lists(bytes + off, len - off, what, out);
    if (!st && out->n != n) {
      st = lm__fail(NULL, LM_ERROR_IO, "%s: the header says %lld sequences, the pickle holds %lld", what, (long long)n,
                    (long long)out->n);
      lm__int_lists_free(out);
    }
  } else if (obj == 0) {
    lm_array *a = lm__npy_parse(bytes, len, what);
    if (!a) st = LM_ERROR_IO;
    else if (a->dtype != LM_INT32 || a->shape.rank != 2)
      st = lm__fail(NULL, LM_ERROR_IO, "%s: holds a %s array of rank %d, not sequences of word indices", what,
                    a->dtype == LM_INT32 ? "integer" : "float", a->shape.rank);
    else {
      int64_t rows = a->shape.dim[0], cols = a->shape.dim[1];
      out->n = rows;
      out->offsets = lm__calloc((size_t)rows + 1, sizeof *out->offsets);
      out->values = lm__calloc((size_t)a->size, sizeof *out->values);
      if (!out->offsets || !out->values) {
        lm__int_lists_free(out);
        st = LM_ERROR_MEMORY;
      } else {
        memcpy(out->values, a->data, (size_t)a->size * sizeof *out->values);
        for (int64_t i = 0; i <= rows; i++) out->offsets[i] = i * cols;
      }
    }
    lm_array_free(a);
  } else {
    st = LM_ERROR_IO;
  }
  free(bytes);
  return st;
}

static lm_status read_labels(const lm_zip *z, int e, const char *what, int64_t n, lm_array **out) {
  uint8_t *bytes;
  size_t len;
  lm_status st = lm__zip_read(z, e, (uint64_t)1 << 34, &bytes, &len);
  if (st) return st;
  lm_array *a = lm__npy_parse(bytes, len, what);
  free(bytes);
  if (!a) return LM_ERROR_IO;
  if (a->dtype != LM_INT32 || a->shape.rank != 1 || a->shape.dim[0] != n) {
    char s[96];
    st = lm__fail(NULL, LM_ERROR_IO, "%s: the labels are a %s array of shape %s; %lld integer labels are expected", what,
                  a->dtype == LM_INT32 ? "integer" : "float", lm_shape_format(a->shape, s, sizeof s), (long long)n);
    lm_array_free(a);
    return st;
  }
  *out = a;
  return LM_OK;
}

/* ---- Keras's processing ---- */

typedef struct split {
  lm__int_lists raw;
  lm_array *labels;
  /* after shuffling, shifting and filtering */
  int64_t n;
  int64_t *offsets;
  int32_t *values;
  int32_t *y;
} split;

static void split_free(split *s) {
  lm__int_lists_free(&s->raw);
  lm_array_free(s->labels);
  free(s->offsets);
  free(s->values);
  free(s->y);
}

typedef struct settings {
  int64_t num_words, skip_top, maxlen, start_char, oov_char, index_from;
  bool has_start, has_oov;
} settings;

/* x = [[start_char] + [w + index_from for w in x] for x in x[perm]], then remove_long_seq. */
static lm_status shuffle_shift(split *s, mt19937 *rng, const settings *k, const char *path, const char *name) {
  int64_t n = s->raw.n, extra = k->has_start, total = s->raw.offsets[n] + n * extra;
  int64_t *perm = lm__calloc((size_t)n, sizeof *perm);
  s->offsets = lm__calloc((size_t)n + 1, sizeof *s->offsets);
  s->values = lm__calloc((size_t)(total ? total : 1), sizeof *s->values);
  s->y = lm__calloc((size_t)n, sizeof *s->y);
  if (!perm || !s->offsets || !s->values || !s->y) {
    free(perm);
    return LM_ERROR_MEMORY;
  }
  shuffle_indices(rng, perm, n);
  int64_t kept = 0, at = 0;
  for (int64_t r = 0; r < n; r++) {
    int64_t i = perm[r], lo = s->raw.offsets[i], len = s->raw.offsets[i + 1] - lo;
    if (k->maxlen && len + extra >= k->maxlen) continue;
    s->offsets[kept] = at;
    if (extra) s->values[at++] = (int32_t)k->start_char;
    for (int64_t j = 0; j < len; j++) {
      int64_t w = (int64_t)s->raw.values[lo + j] + k->index_from;
      if (w > INT32_MAX || w < INT32_MIN) {
        free(perm);
        return lm__fail(NULL, LM_ERROR_VALUE, "%s: %s: word index %d + index_from %lld does not fit in int32", path, name,
                        s->raw.values[lo + j], (long long)k->index_from);
      }
      s->values[at++] = (int32_t)w;
    }
    s->y[kept++] = lm_array_i32(s->labels)[i];
  }
  s->offsets[kept] = at;
  s->n = kept;
  free(perm);
  lm__int_lists_free(&s->raw);
  if (kept == 0 && k->maxlen)
    return lm__fail(NULL, LM_ERROR_VALUE,
                    "%s: after filtering for sequences shorter than maxlen=%lld, no sequence was kept. Increase maxlen.", path,
                    (long long)k->maxlen);
  if (kept == 0) return lm__fail(NULL, LM_ERROR_IO, "%s: %s holds no sequence", path, name);
  return LM_OK;
}

/* Words outside [skip_top, num_words) become oov_char, or are dropped without one. */
static void limit_words(split *s, const settings *k) {
  int64_t at = 0;
  for (int64_t i = 0; i < s->n; i++) {
    int64_t lo = s->offsets[i], hi = s->offsets[i + 1];
    s->offsets[i] = at;
    for (int64_t j = lo; j < hi; j++) {
      int32_t w = s->values[j];
      if (w >= k->skip_top && w < k->num_words) s->values[at++] = w;
      else if (k->has_oov) s->values[at++] = (int32_t)k->oov_char;
    }
  }
  s->offsets[s->n] = at;
}

/* Hands the split over as lm_sequences (one block, with seq/len views) and int32 labels. */
static lm_status finish(split *s, lm_sequences **xs, lm_array **ys) {
  lm_sequences *q = lm__calloc(1, sizeof *q);
  lm_array *y = lm_array_new(LM_INT32, LM_SHAPE(s->n));
  if (!q || !y || !(q->seq = lm__calloc((size_t)s->n, sizeof *q->seq)) || !(q->len = lm__calloc((size_t)s->n, sizeof *q->len))) {
    if (q) free(q->seq);
    free(q);
    lm_array_free(y);
    return LM_ERROR_MEMORY;
  }
  q->n = s->n;
  q->offsets = s->offsets;
  q->values = s->values;
  s->offsets = NULL, s->values = NULL;
  for (int64_t i = 0; i < q->n; i++) {
    q->seq[i] = q->values + q->offsets[i];
    q->len[i] = q->offsets[i + 1] - q->offsets[i];
  }
  memcpy(y->data, s->y, (size_t)s->n * sizeof *s->y);
  *xs = q;
  *ys = y;
  return LM_OK;
}

/* Keras's cache: $KERAS_HOME/datasets/imdb.npz, else ~/.keras/datasets/imdb.npz. */
static const char *default_path(char *buf, size_t len) {
  const char *home = getenv("KERAS_HOME");
  if (home && *home) snprintf(buf, len, "%s/datasets/imdb.npz", home);
  else snprintf(buf, len, "%s/.keras/datasets/imdb.npz", getenv("HOME") ? getenv("HOME") : ".");
  return buf;
}

/* Options: 0 is Keras's default, LM_NONE Python's None, LM_IMDB_ZERO the value 0. */
static lm_status read_settings(const lm_imdb_opts *o, settings *k, uint32_t *seed, const char *path) {
  struct {
    const char *name;
    int64_t v, dflt;
    bool none_ok;
    int64_t *out;
    bool *has;
  } f[] = {{"num_words", o->num_words, 0, true, &k->num_words, NULL},
           {"skip_top", o->skip_top, 0, false, &k->skip_top, NULL},
           {"maxlen", o->maxlen, 0, true, &k->maxlen, NULL},
           {"start_char", o->start_char, 1, true, &k->start_char, &k->has_start},
           {"oov_char", o->oov_char, 2, true, &k->oov_char, &k->has_oov},
           {"index_from", o->index_from, 3, true, &k->index_from, NULL}};
  for (size_t i = 0; i < sizeof f / sizeof *f; i++) {
    int64_t v = f[i].v;
    if (f[i].has) *f[i].has = v != LM_NONE;
    if (v == LM_NONE && f[i].none_ok) v = 0;
    else if (v == LM_IMDB_ZERO) v = 0;
    else if (v == 0) v = f[i].dflt;
    else if (v < 0)
      return lm__fail(NULL, LM_ERROR_VALUE, "lm_imdb_load_data: %s: %s is %lld (0 for Keras's default%s, LM_IMDB_ZERO for 0)",
                      path, f[i].name, (long long)f[i].v, f[i].none_ok ? ", LM_NONE for None" : "");
    *f[i].out = v;
  }
  int64_t sd = o->seed == LM_IMDB_ZERO ? 0 : o->seed == 0 ? 113 : o->seed;
  if (sd < 0 || sd > (int64_t)UINT32_MAX)
    return lm__fail(NULL, LM_ERROR_VALUE, "lm_imdb_load_data: %s: seed %lld is outside 0 .. 2**32 - 1 (LM_IMDB_ZERO for 0)", path,
                    (long long)o->seed);
  *seed = (uint32_t)sd;
  return LM_OK;
}

lm_status lm_imdb_load_data_opts(const char *path, lm_sequences **x_train, lm_array **y_train, lm_sequences **x_test,
                                 lm_array **y_test, lm_imdb_opts opts) {
  if (!x_train || !y_train || !x_test || !y_test)
    return lm__fail(NULL, LM_ERROR_VALUE, "lm_imdb_load_data: the four outputs must not be NULL");
  *x_train = *x_test = NULL;
  *y_train = *y_test = NULL;
  char fallback[4096];
  if (!path) path = default_path(fallback, sizeof fallback);
  settings k = {0};
  uint32_t seed = 113;
  lm_status st = read_settings(&opts, &k, &seed, path);
  if (st) return st;

  uint8_t *buf = NULL;
  size_t len = 0;
  if ((st = lm__read_file(path, &buf, &len))) return st;
  lm_zip z;
  if ((st = lm__zip_open(&z, buf, len, path))) {
    free(buf);
    return st;
  }
  split s[2] = {0};
  static const char *const xs[2] = {"x_train", "x_test"}, *const ys[2] = {"y_train", "y_test"};
  for (int i = 0; i < 2 && !st; i++) {
    char member[32], what[4200];
    snprintf(member, sizeof member, "%s.npy", xs[i]);
    int e = lm__zip_find(&z, member);
    snprintf(member, sizeof member, "%s.npy", ys[i]);
    int ey = lm__zip_find(&z, member);
    if (e < 0 || ey < 0) {
      st = lm__fail(NULL, LM_ERROR_IO, "%s: no member %s.npy: not Keras's imdb.npz", path, e < 0 ? xs[i] : ys[i]);
      break;
    }
    snprintf(what, sizeof what, "%s (member %s.npy)", path, xs[i]);
    if ((st = read_sequences(&z, e, what, &s[i].raw))) break;
    snprintf(what, sizeof what, "%s (member %s.npy)", path, ys[i]);
    st = read_labels(&z, ey, what, s[i].raw.n, &s[i].labels);
  }
  lm__zip_close(&z);
  free(buf);

  mt19937 rng;
  mt_seed(&rng, seed);
  for (int i = 0; i < 2 && !st; i++) st = shuffle_shift(&s[i], &rng, &k, path, xs[i]);
  if (!st) {
    if (!k.num_words) { /* max(max(x) for x in xs); empty sequences have no max and are passed over */
      int64_t top = INT64_MIN;
      for (int i = 0; i < 2; i++)
        for (int64_t j = 0; j < s[i].offsets[s[i].n]; j++)
          if (s[i].values[j] > top) top = s[i].values[j];
      k.num_words = top;
    }
    for (int i = 0; i < 2; i++) limit_words(&s[i], &k);
    if (!(st = finish(&s[0], x_train, y_train)) && (st = finish(&s[1], x_test, y_test))) {
      lm_sequences_free(*x_train);
      lm_array_free(*y_train);
      *x_train = NULL, *y_train = NULL;
    }
  }
  split_free(&s[0]);
  split_free(&s[1]);
  return st;
}

lm_array *lm_to_categorical(const lm_array *y, int num_classes) {
  if (!y || !y->data || y->size <= 0) {
    lm__fail(NULL, LM_ERROR_VALUE, "lm_to_categorical: the labels are NULL or empty");
    return NULL;
  }
  if (num_classes < 0) {
    lm__fail(NULL, LM_ERROR_VALUE, "lm_to_categorical: num_classes %d is negative (0: the largest label + 1)", num_classes);
    return NULL;
  }
  /* np.array(y, dtype="int64"): floats are truncated toward zero. */
  int64_t top = INT64_MIN;
  for (int64_t i = 0; i < y->size; i++) {
    double v = y->dtype == LM_INT32 ? lm_array_i32(y)[i] : lm_array_f32(y)[i];
    if (!(v > -2147483649.0 && v < 2147483648.0)) {
      lm__fail(NULL, LM_ERROR_VALUE, "lm_to_categorical: label %lld is %g, not a class index", (long long)i, v);
      return NULL;
    }
    int64_t c = (int64_t)v;
    if (c < 0 || (num_classes && c >= num_classes)) {
      lm__fail(NULL, LM_ERROR_VALUE, "lm_to_categorical: label %lld is %lld, outside 0 .. %lld", (long long)i, (long long)c,
               (long long)(num_classes ? num_classes - 1 : INT32_MAX));
      return NULL;
    }
    if (c > top) top = c;
  }
  int64_t classes = num_classes ? num_classes : top + 1;
  lm_shape s = y->shape;
  if (s.rank > 1 && s.dim[s.rank - 1] == 1) s.rank--; /* Keras drops a trailing axis of 1 */
  if (s.rank == LM_MAX_RANK) {
    lm__fail(NULL, LM_ERROR_SHAPE, "lm_to_categorical: labels of rank %d leave no room for the class axis", y->shape.rank);
    return NULL;
  }
  s.dim[s.rank++] = classes;
  lm_array *out = lm_array_new(LM_FLOAT32, s);
  if (!out) return NULL;
  float *o = lm_array_f32(out);
  for (int64_t i = 0; i < y->size; i++) {
    double v = y->dtype == LM_INT32 ? lm_array_i32(y)[i] : lm_array_f32(y)[i];
    o[i * classes + (int64_t)v] = 1.0f;
  }
  return out;
}
