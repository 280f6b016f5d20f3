/* NumPy's .npy and .npz files.
 *
 * Every file is untrusted: sizes and offsets in it are checked against the bytes that are
 * really there before anything is allocated or read, so a corrupt or hostile file fails
 * with a message naming it, never with a crash. Files are read whole (their size is what
 * the file system says, not what the file claims); deflated .npz members are inflated into
 * a buffer that grows with the output, so a small file cannot make us allocate gigabytes.
 * Writes go to a temporary name in the same directory and are renamed when complete. */
#include "core/core.h"
#include <errno.h>
#include <fcntl.h>
#include <lamina/io.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "lamina's .npy code assumes a little-endian host"
#endif

/* Beyond this many elements a file is surely corrupt (and byte counts stay far from overflow). */
#define NPY_MAX_ELEMENTS ((uint64_t)1 << 31)
/* numpy refuses headers above 10000 bytes unless told otherwise; we allow more, not much. */
#define NPY_MAX_HEADER 65536
#define ZIP_MAX_INFLATE_CHUNK ((size_t)1 << 20)

/* ---- Little-endian fields ---- */
static uint16_t le16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t le32(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24; }
static uint64_t le64(const uint8_t *p) { return (uint64_t)le32(p) | (uint64_t)le32(p + 4) << 32; }
static void put16(uint8_t *p, uint32_t v) { p[0] = (uint8_t)v, p[1] = (uint8_t)(v >> 8); }
static void put32(uint8_t *p, uint32_t v) { put16(p, v), put16(p + 2, v >> 16); }

/* ---- Reading a whole file ---- */
static lm_status slurp(const char *path, uint8_t **data, size_t *len) {
  *data = NULL;
  *len = 0;
  int fd = open(path, O_RDONLY);
  if (fd < 0) return lm__fail(NULL, LM_ERROR_IO, "%s: cannot open: %s", path, strerror(errno));
  struct stat st;
  size_t cap = fstat(fd, &st) == 0 && S_ISREG(st.st_mode) ? (size_t)st.st_size + 1 : 65536;
  uint8_t *buf = malloc(cap);
  if (!buf) {
    close(fd);
    return lm__fail(NULL, LM_ERROR_MEMORY, "%s: out of memory reading %zu bytes", path, cap);
  }
  size_t n = 0;
  for (;;) {
    if (n == cap) { /* a pipe, or a file that grew: double */
      uint8_t *p = realloc(buf, cap * 2);
      if (!p) {
        free(buf);
        close(fd);
        return lm__fail(NULL, LM_ERROR_MEMORY, "%s: out of memory reading %zu bytes", path, cap * 2);
      }
      buf = p;
      cap *= 2;
    }
    ssize_t got = read(fd, buf + n, cap - n);
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) {
      lm_status s = lm__fail(NULL, LM_ERROR_IO, "%s: read error: %s", path, strerror(errno));
      free(buf);
      close(fd);
      return s;
    }
    if (got == 0) break;
    n += (size_t)got;
  }
  close(fd);
  *data = buf;
  *len = n;
  return LM_OK;
}

/* ---- Writing through a temporary file ---- */
typedef struct tmpfile_t {
  char *tmp;
  FILE *f;
} tmpfile_t;

static lm_status tmp_open(tmpfile_t *t, const char *path) {
  size_t n = strlen(path) + 16;
  t->f = NULL;
  t->tmp = lm__calloc(n, 1);
  if (!t->tmp) return LM_ERROR_MEMORY;
  snprintf(t->tmp, n, "%s.tmp.XXXXXX", path);
  int fd = mkstemp(t->tmp);
  if (fd >= 0) t->f = fdopen(fd, "wb");
  if (!t->f) {
    lm_status s = lm__fail(NULL, LM_ERROR_IO, "%s: cannot create: %s", path, strerror(errno));
    if (fd >= 0) {
      close(fd);
      unlink(t->tmp);
    }
    free(t->tmp);
    return s;
  }
  return LM_OK;
}

/* Closes and renames on success; removes the temporary file otherwise. */
static lm_status tmp_close(tmpfile_t *t, const char *path, lm_status st) {
  if (ferror(t->f) && st == LM_OK) st = lm__fail(NULL, LM_ERROR_IO, "%s: write error: %s", path, strerror(errno));
  if (fclose(t->f) != 0 && st == LM_OK) st = lm__fail(NULL, LM_ERROR_IO, "%s: write error: %s", path, strerror(errno));
  if (st == LM_OK) {
    mode_t mask = umask(0); /* mkstemp makes the file private; ours is an ordinary file */
    umask(mask);
    chmod(t->tmp, 0666 & ~mask);
    if (rename(t->tmp, path) != 0)
      st = lm__fail(NULL, LM_ERROR_IO, "%s: cannot rename %s into place: %s", path, t->tmp, strerror(errno));
  }
  if (st != LM_OK) unlink(t->tmp);
  free(t->tmp);
  return st;
}

/* ---- The .npy header ---- */

/* numpy's _write_array_header for version 1.0: the dict with sorted keys, spare room for
 * the first dimension to grow to 21 digits, spaces up to a multiple of 64 bytes, '\n'. */
static size_t npy_header(const lm_array *a, uint8_t *out, size_t cap) {
  char dict[512], shape[256];
  size_t at = 0;
  at += (size_t)snprintf(shape + at, sizeof shape - at, "(");
  for (int i = 0; i < a->shape.rank; i++)
    at += (size_t)snprintf(shape + at, sizeof shape - at, "%s%lld", i ? ", " : "", (long long)a->shape.dim[i]);
  snprintf(shape + at, sizeof shape - at, "%s)", a->shape.rank == 1 ? "," : "");
  int n = snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': False, 'shape': %s, }",
                   a->dtype == LM_INT32 ? "<i4" : "<f4", shape);
  if (a->shape.rank > 0) {
    char first[32];
    int digits = snprintf(first, sizeof first, "%lld", (long long)a->shape.dim[0]);
    for (int i = digits; i < 21; i++) dict[n++] = ' ';
  }
  size_t hlen = (size_t)n + 1, pad = 64 - ((10 + hlen) % 64), total = 10 + hlen + pad;
  if (total > cap) return 0;
  memcpy(out, "\x93NUMPY\x01\x00", 8);
  put16(out + 8, (uint32_t)(hlen + pad));
  memcpy(out + 10, dict, (size_t)n);
  memset(out + 10 + n, ' ', pad);
  out[total - 1] = '\n';
  return total;
}

typedef struct npy_info {
  char kind;     /* 'f', 'i', 'u', 'b' */
  int size;      /* bytes per element */
  bool big;      /* big-endian data */
  bool fortran;
  lm_shape shape;
  uint64_t count;
} npy_info;

typedef struct cursor {
  const char *s, *end;
} cursor;

static void skip_ws(cursor *c) {
  while (c->s < c->end && (*c->s == ' ' || *c->s == '\t' || *c->s == '\n' || *c->s == '\r')) c->s++;
}

static bool take(cursor *c, char ch) {
  skip_ws(c);
  if (c->s < c->end && *c->s == ch) {
    c->s++;
    return true;
  }
  return false;
}

/* A Python string literal in single or double quotes, without escapes (numpy writes none). */
static bool parse_str(cursor *c, char *out, size_t cap) {
  skip_ws(c);
  if (c->s >= c->end || (*c->s != '\'' && *c->s != '"')) return false;
  char q = *c->s++;
  size_t n = 0;
  while (c->s < c->end && *c->s != q) {
    if (*c->s == '\\' || n + 1 >= cap) return false;
    out[n++] = *c->s++;
  }
  if (c->s >= c->end) return false;
  c->s++;
  out[n] = 0;
  return true;
}

static bool parse_word(cursor *c, const char *word) {
  skip_ws(c);
  size_t n = strlen(word);
  if ((size_t)(c->end - c->s) < n || memcmp(c->s, word, n)) return false;
  c->s += n;
  return true;
}

/* Parses numpy's header dict; writes the problem into err on failure. */
static bool parse_header(const char *text, size_t len, npy_info *info, char *err, size_t errlen) {
  cursor c = {text, text + len};
  bool have_descr = false, have_order = false, have_shape = false;
  memset(info, 0, sizeof *info);
  if (!take(&c, '{')) {
    snprintf(err, errlen, "the header is not a Python dict");
    return false;
  }
  while (!take(&c, '}')) {
    char key[32], descr[32];
    if (!parse_str(&c, key, sizeof key) || !take(&c, ':')) {
      snprintf(err, errlen, "the header dict is malformed");
      return false;
    }
    if (!strcmp(key, "descr")) {
      if (!parse_str(&c, descr, sizeof descr)) {
        snprintf(err, errlen, "structured dtypes are not supported (descr is not a plain string)");
        return false;
      }
      char order = descr[0];
      int size = 0;
      char kind = order ? descr[1] : 0;
      if (strchr("<>|=", order) && kind && descr[2] >= '1' && descr[2] <= '8' && !descr[3]) size = descr[2] - '0';
      static const char *const ok[] = {"f4", "f8", "i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8", "b1"};
      bool known = false;
      for (size_t i = 0; i < sizeof ok / sizeof *ok && size; i++) known |= !strcmp(descr + 1, ok[i]);
      if (!known) {
        snprintf(err, errlen, "dtype '%s' is not supported (float32/64, int8..64, uint8..64 or bool)", descr);
        return false;
      }
      info->kind = kind;
      info->size = size;
      info->big = order == '>';
      have_descr = true;
    } else if (!strcmp(key, "fortran_order")) {
      if (parse_word(&c, "True")) info->fortran = true;
      else if (parse_word(&c, "False")) info->fortran = false;
      else {
        snprintf(err, errlen, "fortran_order is neither True nor False");
        return false;
      }
      have_order = true;
    } else if (!strcmp(key, "shape")) {
      if (!take(&c, '(')) {
        snprintf(err, errlen, "shape is not a tuple");
        return false;
      }
      info->shape.rank = 0;
      while (!take(&c, ')')) {
        skip_ws(&c);
        uint64_t v = 0;
        const char *digits = c.s;
        while (c.s < c.end && *c.s >= '0' && *c.s <= '9') {
          v = v * 10 + (uint64_t)(*c.s++ - '0');
          if (v > NPY_MAX_ELEMENTS) {
            snprintf(err, errlen, "a dimension of the shape is too large");
            return false;
          }
        }
        if (c.s == digits) {
          snprintf(err, errlen, "the shape holds something other than non-negative integers");
          return false;
        }
        if (c.s < c.end && *c.s == 'L') c.s++; /* Python 2's longs */
        if (info->shape.rank == LM_MAX_RANK) {
          snprintf(err, errlen, "the shape has more than %d dimensions", LM_MAX_RANK);
          return false;
        }
        info->shape.dim[info->shape.rank++] = (int64_t)v;
        if (!take(&c, ',')) {
          if (!take(&c, ')')) {
            snprintf(err, errlen, "the shape tuple is malformed");
            return false;
          }
          break;
        }
      }
      have_shape = true;
    } else {
      snprintf(err, errlen, "unexpected key '%s' in the header", key);
      return false;
    }
    if (!take(&c, ',')) {
      if (!take(&c, '}')) {
        snprintf(err, errlen, "the header dict is malformed");
        return false;
      }
      break;
    }
  }
  skip_ws(&c);
  if (c.s != c.end) {
    snprintf(err, errlen, "unexpected text after the header dict");
    return false;
  }
  if (!have_descr || !have_order || !have_shape) {
    snprintf(err, errlen, "the header lacks '%s'", !have_descr ? "descr" : !have_order ? "fortran_order" : "shape");
    return false;
  }
  if (info->fortran) {
    snprintf(err, errlen, "Fortran-ordered arrays are not supported (save with np.ascontiguousarray)");
    return false;
  }
  info->count = 1;
  for (int i = 0; i < info->shape.rank; i++) {
    if (info->shape.dim[i] == 0) {
      snprintf(err, errlen, "the array is empty (dimension %d is 0), which lamina cannot hold", i);
      return false;
    }
    info->count *= (uint64_t)info->shape.dim[i];
    if (info->count > NPY_MAX_ELEMENTS) {
      snprintf(err, errlen, "the array has more than %llu elements", (unsigned long long)NPY_MAX_ELEMENTS);
      return false;
    }
  }
  return true;
}

/* One element's raw bits, in host order. */
static uint64_t raw_element(const uint8_t *p, int size, bool big) {
  uint64_t v = 0;
  for (int i = 0; i < size; i++) v |= (uint64_t)p[big ? size - 1 - i : i] << (8 * i);
  return v;
}

/* Parses a whole .npy image; `what` names it in messages ("x.npy", "a.npz member w.npy"). */
static lm_array *npy_parse(const uint8_t *buf, size_t len, const char *what) {
  if (len < 10 || memcmp(buf, "\x93NUMPY", 6)) {
    lm__fail(NULL, LM_ERROR_IO, "%s: not a .npy file (%s)", what, len < 10 ? "too short" : "no \\x93NUMPY magic");
    return NULL;
  }
  int major = buf[6], minor = buf[7];
  size_t hlen, start;
  if (major == 1 && minor == 0) hlen = le16(buf + 8), start = 10;
  else if ((major == 2 || major == 3) && minor == 0 && len >= 12) hlen = le32(buf + 8), start = 12;
  else {
    lm__fail(NULL, LM_ERROR_IO, "%s: unsupported .npy format version %d.%d", what, major, minor);
    return NULL;
  }
  if (hlen > NPY_MAX_HEADER) {
    lm__fail(NULL, LM_ERROR_IO, "%s: header of %zu bytes is too large", what, hlen);
    return NULL;
  }
  if (hlen > len - start) {
    lm__fail(NULL, LM_ERROR_IO, "%s: truncated: the header needs %zu bytes, %zu are left", what, hlen, len - start);
    return NULL;
  }
  npy_info info;
  char err[256];
  if (!parse_header((const char *)buf + start, hlen, &info, err, sizeof err)) {
    lm__fail(NULL, LM_ERROR_IO, "%s: %s", what, err);
    return NULL;
  }
  size_t off = start + hlen, need = (size_t)info.count * (size_t)info.size;
  if (need > len - off) {
    lm__fail(NULL, LM_ERROR_IO, "%s: truncated: the header promises %zu bytes of data, the file holds %zu", what, need,
             len - off);
    return NULL;
  }
  lm_dtype dtype = info.kind == 'f' ? LM_FLOAT32 : LM_INT32;
  lm_array *a = lm_array_new(dtype, info.shape);
  if (!a) {
    lm__fail(NULL, LM_ERROR_MEMORY, "%s: %s", what, lm_last_error());
    return NULL;
  }
  const uint8_t *p = buf + off;
  if (!info.big && info.size == 4 && (info.kind == 'f' || info.kind == 'i')) {
    memcpy(a->data, p, need);
    return a;
  }
  for (uint64_t i = 0; i < info.count; i++, p += info.size) {
    uint64_t v = raw_element(p, info.size, info.big);
    if (info.kind == 'f') {
      float f;
      if (info.size == 4) {
        uint32_t u = (uint32_t)v;
        memcpy(&f, &u, 4);
      } else {
        double d;
        memcpy(&d, &v, 8);
        f = (float)d;
      }
      lm_array_f32(a)[i] = f;
      continue;
    }
    int64_t x;
    if (info.kind == 'b') x = v != 0;
    else if (info.kind == 'u') x = info.size == 8 && v > INT64_MAX ? INT64_MAX : (int64_t)v;
    else {
      /* Sign-extend: spelled out, since converting a large unsigned value to signed is
       * implementation-defined. */
      uint64_t sign = (uint64_t)1 << (8 * info.size - 1);
      x = v & sign ? -(int64_t)((~v & (sign - 1)) + 1) : (int64_t)v;
    }
    if (x < INT32_MIN || x > INT32_MAX) {
      lm__fail(NULL, LM_ERROR_IO, "%s: element %llu (%lld) does not fit in int32", what, (unsigned long long)i,
               (long long)x);
      lm_array_free(a);
      return NULL;
    }
    lm_array_i32(a)[i] = (int32_t)x;
  }
  return a;
}

static lm_status check_array(const char *who, const char *path, const lm_array *a) {
  if (!a) return lm__fail(NULL, LM_ERROR_VALUE, "%s: %s: the array is NULL", who, path);
  if (!a->data || a->shape.rank < 0 || a->shape.rank > LM_MAX_RANK || a->size != lm_shape_size(a->shape) ||
      (a->dtype != LM_FLOAT32 && a->dtype != LM_INT32))
    return lm__fail(NULL, LM_ERROR_VALUE, "%s: %s: the array is malformed", who, path);
  return LM_OK;
}

lm_array *lm_load_npy(const char *path) {
  if (!path) {
    lm__fail(NULL, LM_ERROR_VALUE, "lm_load_npy: path is NULL");
    return NULL;
  }
  uint8_t *buf = NULL;
  size_t len = 0;
  if (slurp(path, &buf, &len) != LM_OK) return NULL;
  lm_array *a = npy_parse(buf, len, path);
  free(buf);
  return a;
}

lm_status lm_save_npy(const char *path, const lm_array *array) {
  if (!path) return lm__fail(NULL, LM_ERROR_VALUE, "lm_save_npy: path is NULL");
  lm_status st = check_array("lm_save_npy", path, array);
  if (st) return st;
  uint8_t head[256];
  size_t hlen = npy_header(array, head, sizeof head);
  tmpfile_t t;
  if ((st = tmp_open(&t, path))) return st;
  fwrite(head, 1, hlen, t.f);
  fwrite(array->data, 4, (size_t)array->size, t.f);
  return tmp_close(&t, path, LM_OK);
}

/* ---- .npz: a zip of .npy members ---- */

enum { ZIP_LOCAL = 0x04034b50, ZIP_CENTRAL = 0x02014b50, ZIP_END = 0x06054b50, ZIP64_END = 0x06064b50, ZIP64_LOCATOR = 0x07064b50 };

static void npz_free_lists(char **names, lm_array **arrays, int n) {
  for (int i = 0; i < n; i++) {
    if (names) free(names[i]);
    if (arrays) lm_array_free(arrays[i]);
  }
  free(names);
  free(arrays);
}

void lm_npz_free(char **names, lm_array **arrays, int n) { npz_free_lists(names, arrays, n); }

/* Inflates raw deflate data into exactly `size` bytes, growing the buffer with the output. */
static uint8_t *inflate_member(const uint8_t *src, size_t srclen, size_t size, const char *what) {
  size_t cap = size < ZIP_MAX_INFLATE_CHUNK ? size + 1 : ZIP_MAX_INFLATE_CHUNK;
  uint8_t *out = malloc(cap);
  if (!out) {
    lm__fail(NULL, LM_ERROR_MEMORY, "%s: out of memory inflating", what);
    return NULL;
  }
  z_stream z = {0};
  if (inflateInit2(&z, -MAX_WBITS) != Z_OK) {
    free(out);
    lm__fail(NULL, LM_ERROR_MEMORY, "%s: cannot start zlib", what);
    return NULL;
  }
  size_t done = 0;
  int rc = Z_OK;
  const uint8_t *in = src;
  size_t left = srclen;
  while (rc == Z_OK) {
    if (done == cap) {
      if (cap > size) break; /* more output than the directory declared */
      size_t ncap = cap * 2 > size + 1 ? size + 1 : cap * 2;
      uint8_t *p = realloc(out, ncap);
      if (!p) {
        inflateEnd(&z);
        free(out);
        lm__fail(NULL, LM_ERROR_MEMORY, "%s: out of memory inflating %zu bytes", what, ncap);
        return NULL;
      }
      out = p;
      cap = ncap;
    }
    uInt chunk_in = left > UINT_MAX ? UINT_MAX : (uInt)left;
    uInt chunk_out = cap - done > UINT_MAX ? UINT_MAX : (uInt)(cap - done);
    z.next_in = (Bytef *)(uintptr_t)in;
    z.avail_in = chunk_in;
    z.next_out = out + done;
    z.avail_out = chunk_out;
    rc = inflate(&z, Z_NO_FLUSH);
    in += chunk_in - z.avail_in;
    left -= chunk_in - z.avail_in;
    done += chunk_out - z.avail_out;
    if (rc == Z_BUF_ERROR && left == 0) break; /* input ran out before the stream ended */
    if (rc == Z_BUF_ERROR) rc = Z_OK;          /* output full: grow and go on */
  }
  inflateEnd(&z);
  if (rc != Z_STREAM_END || done != size) {
    free(out);
    if (rc == Z_DATA_ERROR) lm__fail(NULL, LM_ERROR_IO, "%s: corrupt deflate data", what);
    else if (done > size || (rc == Z_OK && done == cap))
      lm__fail(NULL, LM_ERROR_IO, "%s: inflates to more than the %zu bytes the directory declares", what, size);
    else
      lm__fail(NULL, LM_ERROR_IO, "%s: truncated deflate data (%zu of %zu bytes)", what, done, size);
    return NULL;
  }
  return out;
}

/* The zip64 extended information extra field: the 64-bit values of the fields that are
 * 0xFFFFFFFF in the fixed header, in this order. */
static bool zip64_extra(const uint8_t *extra, size_t n, uint64_t *usize, uint64_t *csize, uint64_t *offset) {
  while (n >= 4) {
    uint16_t tag = le16(extra), sz = le16(extra + 2);
    if ((size_t)sz > n - 4) return false;
    if (tag == 1) {
      const uint8_t *p = extra + 4;
      size_t left = sz;
      uint64_t *fields[3] = {usize, csize, offset};
      for (int i = 0; i < 3; i++) {
        if (!fields[i] || *fields[i] != 0xFFFFFFFFu) continue;
        if (left < 8) return false;
        *fields[i] = le64(p);
        p += 8, left -= 8;
      }
      return true;
    }
    extra += 4 + sz;
    n -= 4 + sz;
  }
  return true;
}

lm_status lm_load_npz(const char *path, char ***names_out, lm_array ***arrays_out, int *n_out) {
  if (!path || !names_out || !arrays_out || !n_out)
    return lm__fail(NULL, LM_ERROR_VALUE, "lm_load_npz: path and the three outputs must not be NULL");
  *names_out = NULL;
  *arrays_out = NULL;
  *n_out = 0;
  uint8_t *buf = NULL;
  size_t len = 0;
  lm_status st = slurp(path, &buf, &len);
  if (st) return st;

  /* The end record: the last signature whose comment reaches exactly to the end. */
  size_t end = (size_t)-1;
  for (size_t i = len >= 22 ? len - 22 : 0; len >= 22; i--) {
    if (le32(buf + i) == ZIP_END && i + 22 + le16(buf + i + 20) == len) {
      end = i;
      break;
    }
    if (i == 0 || len - i > 22 + 65535) break;
  }
  char **names = NULL;
  lm_array **arrays = NULL;
  int n = 0, cap_names = 0, cap_arrays = 0;
  if (end == (size_t)-1) {
    st = lm__fail(NULL, LM_ERROR_IO, "%s: not a zip (.npz) file: no end of central directory record", path);
    goto done;
  }
  uint64_t entries = le16(buf + end + 10), cd_size = le32(buf + end + 12), cd_off = le32(buf + end + 16);
  if (entries == 0xFFFF || cd_size == 0xFFFFFFFFu || cd_off == 0xFFFFFFFFu) {
    if (end < 20 || le32(buf + end - 20) != ZIP64_LOCATOR) {
      st = lm__fail(NULL, LM_ERROR_IO, "%s: corrupt zip: zip64 sizes without a zip64 locator", path);
      goto done;
    }
    uint64_t e64 = le64(buf + end - 20 + 8);
    if (e64 > len || len - e64 < 56 || le32(buf + e64) != ZIP64_END) {
      st = lm__fail(NULL, LM_ERROR_IO, "%s: corrupt zip: bad zip64 end of central directory", path);
      goto done;
    }
    entries = le64(buf + e64 + 32);
    cd_size = le64(buf + e64 + 40);
    cd_off = le64(buf + e64 + 48);
  }
  if (cd_off > len || cd_size > len - cd_off) {
    st = lm__fail(NULL, LM_ERROR_IO, "%s: corrupt zip: the central directory lies outside the file", path);
    goto done;
  }
  size_t at = (size_t)cd_off, cd_end = (size_t)(cd_off + cd_size);
  for (uint64_t e = 0; e < entries; e++) {
    if (cd_end - at < 46 || le32(buf + at) != ZIP_CENTRAL) {
      st = lm__fail(NULL, LM_ERROR_IO, "%s: corrupt zip: central directory entry %llu is malformed", path,
                    (unsigned long long)e);
      goto done;
    }
    const uint8_t *h = buf + at;
    uint16_t flags = le16(h + 8), method = le16(h + 10);
    uint32_t crc = le32(h + 16);
    uint64_t csize = le32(h + 20), usize = le32(h + 24), offset = le32(h + 42);
    size_t nlen = le16(h + 28), xlen = le16(h + 30), clen = le16(h + 32);
    if (cd_end - at - 46 < nlen + xlen + clen) {
      st = lm__fail(NULL, LM_ERROR_IO, "%s: corrupt zip: central directory entry %llu runs past the directory", path,
                    (unsigned long long)e);
      goto done;
    }
    char name[1024];
    if (nlen >= sizeof name || memchr(h + 46, 0, nlen)) {
      st = lm__fail(NULL, LM_ERROR_IO, "%s: member name %llu is too long or holds a NUL", path, (unsigned long long)e);
      goto done;
    }
    memcpy(name, h + 46, nlen);
    name[nlen] = 0;
    if (!zip64_extra(h + 46 + nlen, xlen, &usize, &csize, &offset)) {
      st = lm__fail(NULL, LM_ERROR_IO, "%s: member %s: corrupt zip64 extra field", path, name);
      goto done;
    }
    at += 46 + nlen + xlen + clen;
    /* numpy's NpzFile names arrays by member name without ".npy"; other members are not arrays. */
    if (nlen < 4 || strcmp(name + nlen - 4, ".npy")) continue;
    char what[1200];
    snprintf(what, sizeof what, "%s (member %s)", path, name);
    if (flags & 1) {
      st = lm__fail(NULL, LM_ERROR_IO, "%s: encrypted members are not supported", what);
      goto done;
    }
    if (method != 0 && method != 8) {
      st = lm__fail(NULL, LM_ERROR_IO, "%s: compression method %u is not supported (stored or deflate)", what, method);
      goto done;
    }
    if (offset > len || len - offset < 30 || le32(buf + offset) != ZIP_LOCAL) {
      st = lm__fail(NULL, LM_ERROR_IO, "%s: corrupt zip: no local header at offset %llu", what,
                    (unsigned long long)offset);
      goto done;
    }
    size_t data = (size_t)offset + 30 + le16(buf + offset + 26) + le16(buf + offset + 28);
    if (data > len || csize > len - data) {
      st = lm__fail(NULL, LM_ERROR_IO, "%s: truncated: %llu bytes of data lie past the end of the file", what,
                    (unsigned long long)csize);
      goto done;
    }
    if (method == 0 && csize != usize) {
      st = lm__fail(NULL, LM_ERROR_IO, "%s: corrupt zip: a stored member's sizes differ", what);
      goto done;
    }
    if (usize > NPY_MAX_ELEMENTS * 8 + NPY_MAX_HEADER) {
      st = lm__fail(NULL, LM_ERROR_IO, "%s: member of %llu bytes is too large", what, (unsigned long long)usize);
      goto done;
    }
    uint8_t *inflated = NULL;
    const uint8_t *bytes = buf + data;
    if (method == 8) {
      inflated = inflate_member(buf + data, (size_t)csize, (size_t)usize, what);
      if (!inflated) {
        st = LM_ERROR_IO;
        goto done;
      }
      bytes = inflated;
    }
    uint32_t got_crc = (uint32_t)crc32(0L, Z_NULL, 0);
    for (size_t off = 0; off < usize;) { /* crc32 takes at most UINT_MAX bytes at a time */
      size_t k = usize - off > (1u << 30) ? (1u << 30) : (size_t)(usize - off);
      got_crc = (uint32_t)crc32(got_crc, bytes + off, (uInt)k);
      off += k;
    }
    if (got_crc != crc) {
      free(inflated);
      st = lm__fail(NULL, LM_ERROR_IO, "%s: CRC-32 mismatch (0x%08x in the directory, 0x%08x computed): corrupt data",
                    what, crc, got_crc);
      goto done;
    }
    lm_array *a = npy_parse(bytes, (size_t)usize, what);
    free(inflated);
    if (!a) {
      st = LM_ERROR_IO;
      goto done;
    }
    name[nlen - 4] = 0;
    for (int i = 0; i < n; i++) {
      if (!strcmp(names[i], name)) {
        lm_array_free(a);
        st = lm__fail(NULL, LM_ERROR_IO, "%s: the array name \"%s\" appears twice", path, name);
        goto done;
      }
    }
    if (lm__grow(&names, &cap_names, n + 1, sizeof *names) || lm__grow(&arrays, &cap_arrays, n + 1, sizeof *arrays)) {
      lm_array_free(a);
      st = LM_ERROR_MEMORY;
      goto done;
    }
    names[n] = lm__strdup(name);
    arrays[n] = a;
    if (!names[n++]) {
      st = LM_ERROR_MEMORY;
      goto done;
    }
  }
done:
  free(buf);
  if (st) {
    npz_free_lists(names, arrays, n);
    return st;
  }
  *names_out = names;
  *arrays_out = arrays;
  *n_out = n;
  return LM_OK;
}

/* Writes a zip of stored members, as numpy.savez does (without zip64, so each member and
 * the whole file must stay under 4 GiB). */
lm_status lm_save_npz(const char *path, const char *const *names, const lm_array *const *arrays, int n) {
  if (!path) return lm__fail(NULL, LM_ERROR_VALUE, "lm_save_npz: path is NULL");
  if (n < 0 || n > 65535 || (n > 0 && (!names || !arrays)))
    return lm__fail(NULL, LM_ERROR_VALUE, "lm_save_npz: %s: %d arrays with %s", path, n,
                    n < 0 || n > 65535 ? "a count outside 0..65535" : "NULL name or array lists");
  lm_status st;
  for (int i = 0; i < n; i++) {
    if ((st = check_array("lm_save_npz", path, arrays[i]))) return st;
    if (!names[i] || !*names[i] || strlen(names[i]) > 1000)
      return lm__fail(NULL, LM_ERROR_VALUE, "lm_save_npz: %s: name %d is empty, NULL or too long", path, i);
    for (int j = 0; j < i; j++)
      if (!strcmp(names[i], names[j]))
        return lm__fail(NULL, LM_ERROR_VALUE, "lm_save_npz: %s: the name \"%s\" is given twice", path, names[i]);
    if ((uint64_t)arrays[i]->size * 4 + 256 >= 0xFFFFFFFFu)
      return lm__fail(NULL, LM_ERROR_VALUE, "lm_save_npz: %s: array \"%s\" is too large for a zip without zip64", path,
                      names[i]);
  }
  uint8_t *central = NULL;
  size_t clen = 0, ccap = 0;
  uint64_t offset = 0;
  tmpfile_t t;
  if ((st = tmp_open(&t, path))) return st;
  for (int i = 0; i < n && st == LM_OK; i++) {
    const lm_array *a = arrays[i];
    uint8_t head[256];
    size_t hlen = npy_header(a, head, sizeof head), dlen = (size_t)a->size * 4;
    uint64_t size = hlen + dlen;
    uint32_t crc = (uint32_t)crc32(0L, head, (uInt)hlen);
    for (size_t off = 0; off < dlen;) {
      size_t k = dlen - off > (1u << 30) ? (1u << 30) : dlen - off;
      crc = (uint32_t)crc32(crc, (const Bytef *)a->data + off, (uInt)k);
      off += k;
    }
    char name[1100];
    size_t nlen = (size_t)snprintf(name, sizeof name, "%s.npy", names[i]);
    bool utf8 = false;
    for (size_t k = 0; k < nlen; k++) utf8 |= (unsigned char)name[k] >= 0x80;
    if (offset + 30 + nlen + size >= 0xFFFFFFFFu) {
      st = lm__fail(NULL, LM_ERROR_VALUE, "lm_save_npz: %s: the file would pass 4 GiB, which needs zip64", path);
      break;
    }
    /* Local header: version 2.0, no flags but UTF-8 names, stored, 1980-01-01 00:00. */
    uint8_t local[30] = {0};
    put32(local, ZIP_LOCAL);
    put16(local + 4, 20);
    put16(local + 6, utf8 ? 0x800 : 0);
    put16(local + 12, 0x21);
    put32(local + 14, crc);
    put32(local + 18, (uint32_t)size);
    put32(local + 22, (uint32_t)size);
    put16(local + 26, (uint32_t)nlen);
    fwrite(local, 1, 30, t.f);
    fwrite(name, 1, nlen, t.f);
    fwrite(head, 1, hlen, t.f);
    fwrite(a->data, 1, dlen, t.f);

    if (clen + 46 + nlen > ccap) {
      size_t ncap = (ccap ? ccap * 2 : 4096) + 46 + nlen;
      uint8_t *p = lm__realloc(central, ncap);
      if (!p) {
        st = LM_ERROR_MEMORY;
        break;
      }
      central = p;
      ccap = ncap;
    }
    uint8_t *c = central + clen;
    memset(c, 0, 46);
    put32(c, ZIP_CENTRAL);
    put16(c + 4, 20);
    put16(c + 6, 20);
    memcpy(c + 8, local + 6, 22); /* flags .. sizes, as in the local header */
    put16(c + 28, (uint32_t)nlen);
    put32(c + 38, 0644u << 16); /* Unix permissions, for unzip */
    c[5] = 3;                   /* made by Unix */
    put32(c + 42, (uint32_t)offset);
    memcpy(c + 46, name, nlen);
    clen += 46 + nlen;
    offset += 30 + nlen + size;
  }
  if (st == LM_OK) {
    if (offset + clen >= 0xFFFFFFFFu) st = lm__fail(NULL, LM_ERROR_VALUE, "lm_save_npz: %s: too large for zip", path);
    else {
      if (clen) fwrite(central, 1, clen, t.f);
      uint8_t endrec[22] = {0};
      put32(endrec, ZIP_END);
      put16(endrec + 8, (uint32_t)n);
      put16(endrec + 10, (uint32_t)n);
      put32(endrec + 12, (uint32_t)clen);
      put32(endrec + 16, (uint32_t)offset);
      fwrite(endrec, 1, 22, t.f);
    }
  }
  free(central);
  return tmp_close(&t, path, st);
}
