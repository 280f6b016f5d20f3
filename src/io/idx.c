/* IDX files (the MNIST format) and the Fashion-MNIST loader.
 *
 * Every file is untrusted: each size in it is checked before it is used, and the data is read
 * in growing chunks, so a tiny file that claims huge dimensions fails as truncated instead of
 * first making us allocate gigabytes. */
#include "core/core.h"
#include <errno.h>
#include <lamina/io.h>
#include <zlib.h>

/* Beyond this many elements an IDX file is surely corrupt (and sizes stay far from overflow:
 * 2^31 elements of 8 bytes fit easily in 64 bits). */
#define IDX_MAX_ELEMENTS ((uint64_t)1 << 31)
#define IDX_FIRST_CHUNK ((size_t)1 << 20)

enum { IDX_U8 = 0x08, IDX_I8 = 0x09, IDX_I16 = 0x0B, IDX_I32 = 0x0C, IDX_F32 = 0x0D, IDX_F64 = 0x0E };

static int idx_type_size(int type) {
  switch (type) {
  case IDX_U8:
  case IDX_I8: return 1;
  case IDX_I16: return 2;
  case IDX_I32:
  case IDX_F32: return 4;
  case IDX_F64: return 8;
  }
  return 0;
}

static uint32_t be32(const uint8_t *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* One element as a double; exact for every integer type and for f32. Sign conversions are
 * spelled out because casting an out-of-range unsigned value to a signed type is
 * implementation-defined. */
static double idx_element(const uint8_t *p, int type) {
  switch (type) {
  case IDX_U8: return p[0];
  case IDX_I8: return p[0] < 0x80 ? p[0] : (int)p[0] - 0x100;
  case IDX_I16: {
    int v = p[0] << 8 | p[1];
    return v < 0x8000 ? v : v - 0x10000;
  }
  case IDX_I32: {
    uint32_t u = be32(p);
    return u < 0x80000000u ? (double)u : (double)u - 4294967296.0;
  }
  case IDX_F32: {
    uint32_t u = be32(p);
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
  }
  case IDX_F64: {
    uint64_t u = (uint64_t)be32(p) << 32 | be32(p + 4);
    double d;
    memcpy(&d, &u, sizeof d);
    return d;
  }
  }
  return 0;
}

/* gzerror's message starts with "path: "; we name the path ourselves. */
static const char *gz_message(gzFile f, const char *path, int *errnum) {
  const char *m = gzerror(f, errnum);
  size_t n = strlen(path);
  if (strncmp(m, path, n) == 0 && m[n] == ':' && m[n + 1] == ' ') m += n + 2;
  return m;
}

/* A gzip stream cut short is reported as Z_BUF_ERROR only after the data runs out, so it
 * shows up as a short read; any other zlib error is a read or decompression failure. */
static int gz_failed(gzFile f) {
  int errnum;
  gzerror(f, &errnum);
  return errnum != Z_OK && errnum != Z_BUF_ERROR;
}

/* Reads up to n bytes, fewer only at end of file; -1 on a read or decompression error. */
static int64_t read_bytes(gzFile f, void *buf, size_t n) {
  size_t got = 0;
  while (got < n) {
    /* gzread takes an unsigned and returns an int, so stay well inside INT_MAX. */
    size_t chunk = n - got < ((size_t)1 << 30) ? n - got : ((size_t)1 << 30);
    int r = gzread(f, (char *)buf + got, (unsigned)chunk);
    if (r < 0 || (r == 0 && gz_failed(f))) return -1;
    if (r == 0) break;
    got += (size_t)r;
  }
  return (int64_t)got;
}

static lm_status read_error(gzFile f, const char *path) {
  int errnum;
  const char *m = gz_message(f, path, &errnum);
  if (errnum == Z_ERRNO) return lm__fail(NULL, LM_ERROR_IO, "%s: read error: %s", path, m);
  if (errnum == Z_BUF_ERROR)
    return lm__fail(NULL, LM_ERROR_IO, "%s: truncated gzip stream: %s", path, m);
  return lm__fail(NULL, LM_ERROR_IO, "%s: corrupt gzip data: %s", path, m);
}

static char *format_dims(const lm_shape *s, char *buf, size_t len) {
  size_t at = 0;
  buf[0] = '\0';
  for (int i = 0; i < s->rank && at < len; i++)
    at += (size_t)snprintf(buf + at, len - at, "%s%lld", i ? " x " : "", (long long)s->dim[i]);
  return buf;
}

static lm_status parse_idx(gzFile f, const char *path, bool as_int32, float scale,
                           lm_array **out) {
  uint8_t head[4 + 4 * LM_MAX_RANK];
  int64_t got = read_bytes(f, head, 4);
  if (got < 0) return read_error(f, path);
  if (got == 0) return lm__fail(NULL, LM_ERROR_IO, "%s: empty file", path);
  if (got < 4)
    return lm__fail(NULL, LM_ERROR_IO, "%s: truncated: expected a 4-byte IDX header, got %lld",
                    path, (long long)got);
  if (head[0] || head[1])
    return lm__fail(NULL, LM_ERROR_IO,
                    "%s: not an IDX file: bad magic bytes %02x %02x %02x %02x (expected 00 00 "
                    "<type> <rank>)",
                    path, head[0], head[1], head[2], head[3]);
  int type = head[2], rank = head[3], esize = idx_type_size(type);
  if (!esize)
    return lm__fail(NULL, LM_ERROR_IO,
                    "%s: unsupported IDX data type 0x%02x (known: 0x08 u8, 0x09 i8, 0x0b i16, "
                    "0x0c i32, 0x0d f32, 0x0e f64)",
                    path, type);
  if (rank < 1 || rank > LM_MAX_RANK)
    return lm__fail(NULL, LM_ERROR_IO, "%s: IDX rank %d is outside 1..%d", path, rank,
                    LM_MAX_RANK);
  if (as_int32 && (type == IDX_F32 || type == IDX_F64))
    return lm__fail(NULL, LM_ERROR_IO, "%s: floating-point IDX data (type 0x%02x) cannot be read "
                    "as int32 labels", path, type);

  got = read_bytes(f, head + 4, (size_t)(4 * rank));
  if (got < 0) return read_error(f, path);
  if (got < 4 * rank)
    return lm__fail(NULL, LM_ERROR_IO,
                    "%s: truncated: expected %d dimension sizes (%d bytes) after the header, "
                    "got %lld bytes",
                    path, rank, 4 * rank, (long long)got);
  lm_shape shape = {.rank = rank};
  for (int i = 0; i < rank; i++) shape.dim[i] = be32(head + 4 + 4 * i);
  char dims[LM_MAX_RANK * 14];
  format_dims(&shape, dims, sizeof dims);
  uint64_t count = 1;
  for (int i = 0; i < rank; i++) {
    if (shape.dim[i] == 0)
      return lm__fail(NULL, LM_ERROR_IO, "%s: dimension %d of %s is 0 (empty arrays are not "
                      "supported)", path, i, dims);
    /* count <= 2^31 and dim < 2^32, so this product cannot overflow 64 bits. */
    count *= (uint64_t)shape.dim[i];
    if (count > IDX_MAX_ELEMENTS)
      return lm__fail(NULL, LM_ERROR_IO,
                      "%s: dimensions %s hold more than 2^31 elements; the file is corrupt",
                      path, dims);
  }

  size_t nbytes = (size_t)count * (size_t)esize;
  size_t cap = nbytes < IDX_FIRST_CHUNK ? nbytes : IDX_FIRST_CHUNK, have = 0;
  uint8_t *raw = malloc(cap);
  lm_status st = LM_OK;
  if (!raw) goto oom;
  for (;;) {
    got = read_bytes(f, raw + have, cap - have);
    if (got < 0) {
      st = read_error(f, path);
      goto done;
    }
    have += (size_t)got;
    if (have < cap || cap == nbytes) break;
    cap = cap > nbytes / 2 ? nbytes : cap * 2;
    uint8_t *grown = realloc(raw, cap);
    if (!grown) goto oom;
    raw = grown;
  }
  if (have < nbytes) {
    st = lm__fail(NULL, LM_ERROR_IO,
                  "%s: truncated: expected %zu bytes of data for dimensions %s, got %zu", path,
                  nbytes, dims, have);
    goto done;
  }
  /* Reading past the data also makes zlib check the gzip trailer (CRC and length); a stream
   * cut off right after the data is reported only now, as Z_BUF_ERROR. */
  uint8_t extra;
  got = read_bytes(f, &extra, 1);
  int errnum;
  gzerror(f, &errnum);
  if (got < 0 || errnum != Z_OK) {
    st = read_error(f, path);
    goto done;
  }
  if (got > 0) {
    st = lm__fail(NULL, LM_ERROR_IO,
                  "%s: trailing data after the %zu bytes of data that dimensions %s describe",
                  path, nbytes, dims);
    goto done;
  }

  lm_array *a = lm_array_new(as_int32 ? LM_INT32 : LM_FLOAT32, shape);
  if (!a) goto oom;
  int64_t n = a->size;
  if (as_int32) {
    int32_t *o = lm_array_i32(a);
    for (int64_t i = 0; i < n; i++) o[i] = (int32_t)idx_element(raw + i * esize, type);
  } else if (type == IDX_U8) {
    float *o = lm_array_f32(a);
    for (int64_t i = 0; i < n; i++) o[i] = (float)raw[i] * scale;
  } else {
    float *o = lm_array_f32(a);
    for (int64_t i = 0; i < n; i++) o[i] = (float)(idx_element(raw + i * esize, type) * scale);
  }
  *out = a;
  goto done;

oom:
  st = lm__fail(NULL, LM_ERROR_MEMORY, "%s: out of memory reading %zu bytes of data", path,
                nbytes);
done:
  free(raw);
  return st;
}

static lm_status read_idx(const char *path, bool as_int32, float scale, lm_array **out) {
  *out = NULL;
  if (!path) return lm__fail(NULL, LM_ERROR_VALUE, "lm_read_idx: path is NULL");
  errno = 0;
  gzFile f = gzopen(path, "rb");
  if (!f)
    return lm__fail(NULL, LM_ERROR_IO, "%s: cannot open: %s", path,
                    errno ? strerror(errno) : "out of memory");
  gzbuffer(f, 1 << 17); /* the default 8 KiB makes reading 47 MB of images needlessly slow */
  lm_status st = parse_idx(f, path, as_int32, scale, out);
  gzclose(f);
  return st;
}

lm_array *lm_read_idx(const char *path, bool as_int32, float scale) {
  lm_array *a;
  read_idx(path, as_int32, scale, &a);
  return a;
}

/* Checks one (images, labels) pair of Fashion-MNIST files against each other. */
static lm_status check_pair(const lm_array *x, const char *xpath, const lm_array *y,
                            const char *ypath) {
  char buf[128];
  if (x->shape.rank != 3 || x->shape.dim[1] != 28 || x->shape.dim[2] != 28)
    return lm__fail(NULL, LM_ERROR_IO, "%s: expected images of shape (n, 28, 28), got %s",
                    xpath, lm_shape_format(x->shape, buf, sizeof buf));
  if (y->shape.rank != 1)
    return lm__fail(NULL, LM_ERROR_IO, "%s: expected labels of shape (n,), got %s", ypath,
                    lm_shape_format(y->shape, buf, sizeof buf));
  if (x->shape.dim[0] != y->shape.dim[0])
    return lm__fail(NULL, LM_ERROR_IO, "%s holds %lld images but %s holds %lld labels", xpath,
                    (long long)x->shape.dim[0], ypath, (long long)y->shape.dim[0]);
  /* Out-of-range labels would later index past the end of a one-hot row. */
  const int32_t *lab = lm_array_i32(y);
  for (int64_t i = 0; i < y->size; i++)
    if (lab[i] < 0 || lab[i] > 9)
      return lm__fail(NULL, LM_ERROR_IO, "%s: label %d at index %lld is outside 0..9", ypath,
                      (int)lab[i], (long long)i);
  return LM_OK;
}

lm_status lm_load_fashion_mnist(const char *dir, lm_array **x_train, lm_array **y_train,
                                lm_array **x_test, lm_array **y_test) {
  static const char *const names[4] = {"train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                                       "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"};
  lm_array **outs[4] = {x_train, y_train, x_test, y_test};
  for (int i = 0; i < 4; i++)
    if (outs[i]) *outs[i] = NULL;
  for (int i = 0; i < 4; i++)
    if (!outs[i])
      return lm__fail(NULL, LM_ERROR_VALUE, "lm_load_fashion_mnist: output %d is NULL", i + 1);
  if (!dir) return lm__fail(NULL, LM_ERROR_VALUE, "lm_load_fashion_mnist: dir is NULL");

  size_t len = strlen(dir);
  const char *sep = len == 0 || dir[len - 1] == '/' ? "" : "/";
  char paths[4][4096];
  lm_array *a[4] = {NULL, NULL, NULL, NULL};
  lm_status st = LM_OK;
  for (int i = 0; i < 4 && st == LM_OK; i++) {
    if ((size_t)snprintf(paths[i], sizeof paths[i], "%s%s%s", dir, sep, names[i]) >=
        sizeof paths[i])
      st = lm__fail(NULL, LM_ERROR_VALUE, "lm_load_fashion_mnist: directory name too long: %s",
                    dir);
    else
      st = read_idx(paths[i], i % 2 == 1, 1.0f / 255.0f, &a[i]);
  }
  if (st == LM_OK) st = check_pair(a[0], paths[0], a[1], paths[1]);
  if (st == LM_OK) st = check_pair(a[2], paths[2], a[3], paths[3]);
  for (int i = 0; i < 4; i++) {
    if (st == LM_OK)
      *outs[i] = a[i];
    else
      lm_array_free(a[i]);
  }
  return st;
}
