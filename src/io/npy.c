/* NumPy's .npy and .npz files.
 *
 * Every file is untrusted: sizes and offsets in it are checked against the bytes that are
 * really there before anything is allocated or read, so a corrupt or hostile file fails
 * with a message naming it, never with a crash. Files are read whole (their size is what
 * the file system says, not what the file claims); the zip side of .npz is src/io/zip.c.
 * Writes go to a temporary name in the same directory and are renamed when complete. */
#include "io/npy.h"
#include "io/zip.h"
#include <lamina/io.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "lamina's .npy code assumes a little-endian host"
#endif

/* Beyond this many elements a file is surely corrupt (and byte counts stay far from overflow). */
#define NPY_MAX_ELEMENTS ((uint64_t)1 << 31)
/* numpy refuses headers above 10000 bytes unless told otherwise; we allow more, not much. */
#define NPY_MAX_HEADER 65536

/* ---- Little-endian fields ---- */
static uint16_t le16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t le32(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24; }
static void put16(uint8_t *p, uint32_t v) { p[0] = (uint8_t)v, p[1] = (uint8_t)(v >> 8); }

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
      bool known = !strcmp(descr, "|O"); /* pickled objects: only lm__npy_object_array takes them */
      if (known) size = 8;
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

/* The magic, version and header dict of a .npy image: the data starts at *off. */
static bool npy_head(const uint8_t *buf, size_t len, const char *what, npy_info *info, size_t *off) {
  if (len < 10 || memcmp(buf, "\x93NUMPY", 6)) {
    lm__fail(NULL, LM_ERROR_IO, "%s: not a .npy file (%s)", what, len < 10 ? "too short" : "no \\x93NUMPY magic");
    return false;
  }
  int major = buf[6], minor = buf[7];
  size_t hlen, start;
  if (major == 1 && minor == 0) hlen = le16(buf + 8), start = 10;
  else if ((major == 2 || major == 3) && minor == 0 && len >= 12) hlen = le32(buf + 8), start = 12;
  else {
    lm__fail(NULL, LM_ERROR_IO, "%s: unsupported .npy format version %d.%d", what, major, minor);
    return false;
  }
  if (hlen > NPY_MAX_HEADER) {
    lm__fail(NULL, LM_ERROR_IO, "%s: header of %zu bytes is too large", what, hlen);
    return false;
  }
  if (hlen > len - start) {
    lm__fail(NULL, LM_ERROR_IO, "%s: truncated: the header needs %zu bytes, %zu are left", what, hlen, len - start);
    return false;
  }
  char err[256];
  if (!parse_header((const char *)buf + start, hlen, info, err, sizeof err)) {
    lm__fail(NULL, LM_ERROR_IO, "%s: %s", what, err);
    return false;
  }
  *off = start + hlen;
  return true;
}

int lm__npy_object_array(const uint8_t *buf, size_t len, const char *what, int64_t *n, size_t *offset) {
  npy_info info;
  if (!npy_head(buf, len, what, &info, offset)) return -1;
  if (info.kind != 'O') return 0;
  if (info.shape.rank != 1) {
    lm__fail(NULL, LM_ERROR_IO, "%s: an object array of rank %d (one-dimensional ones are read)", what, info.shape.rank);
    return -1;
  }
  *n = info.shape.dim[0];
  return 1;
}

lm_array *lm__npy_parse(const uint8_t *buf, size_t len, const char *what) {
  npy_info info;
  size_t off;
  if (!npy_head(buf, len, what, &info, &off)) return NULL;
  if (info.kind == 'O') {
    lm__fail(NULL, LM_ERROR_IO,
             "%s: an object array (dtype '|O'): pickled Python objects, which are not arrays of numbers "
             "(lm_imdb_load_data reads Keras's IMDB sequences)",
             what);
    return NULL;
  }
  size_t need = (size_t)info.count * (size_t)info.size;
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
      uint64_t sign = (uint64_t)1 << (8 * info.size - 1), mag = (~v & (sign - 1)) + 1; /* |x| when negative */
      x = !(v & sign) ? (int64_t)v : mag > (uint64_t)INT64_MAX ? INT64_MIN : -(int64_t)mag; /* int64's minimum has no negation */
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
  if (lm__read_file(path, &buf, &len) != LM_OK) return NULL;
  lm_array *a = lm__npy_parse(buf, len, path);
  free(buf);
  return a;
}

lm_status lm_save_npy(const char *path, const lm_array *array) {
  if (!path) return lm__fail(NULL, LM_ERROR_VALUE, "lm_save_npy: path is NULL");
  lm_status st = check_array("lm_save_npy", path, array);
  if (st) return st;
  uint8_t head[256];
  size_t hlen = npy_header(array, head, sizeof head);
  lm_wfile w;
  if ((st = lm__wfile_open(&w, path))) return st;
  fwrite(head, 1, hlen, w.f);
  fwrite(array->data, 4, (size_t)array->size, w.f);
  return lm__wfile_commit(&w, path, LM_OK);
}

/* ---- .npz: a zip of .npy members ---- */

static void npz_free_lists(char **names, lm_array **arrays, int n) {
  for (int i = 0; i < n; i++) {
    if (names) free(names[i]);
    if (arrays) lm_array_free(arrays[i]);
  }
  free(names);
  free(arrays);
}

void lm_npz_free(char **names, lm_array **arrays, int n) { npz_free_lists(names, arrays, n); }

lm_status lm_load_npz(const char *path, char ***names_out, lm_array ***arrays_out, int *n_out) {
  if (!path || !names_out || !arrays_out || !n_out)
    return lm__fail(NULL, LM_ERROR_VALUE, "lm_load_npz: path and the three outputs must not be NULL");
  *names_out = NULL;
  *arrays_out = NULL;
  *n_out = 0;
  uint8_t *buf = NULL;
  size_t len = 0;
  lm_status st = lm__read_file(path, &buf, &len);
  if (st) return st;
  lm_zip z;
  if ((st = lm__zip_open(&z, buf, len, path))) {
    free(buf);
    return st;
  }
  char **names = NULL;
  lm_array **arrays = NULL;
  int n = 0, cap_names = 0, cap_arrays = 0;
  for (int e = 0; e < z.n && !st; e++) {
    const char *member = z.m[e].name;
    size_t nlen = strlen(member);
    /* numpy's NpzFile names arrays by member name without ".npy"; other members are not arrays. */
    if (nlen < 4 || strcmp(member + nlen - 4, ".npy")) continue;
    uint8_t *bytes;
    size_t blen;
    if ((st = lm__zip_read(&z, e, NPY_MAX_ELEMENTS * 8 + NPY_MAX_HEADER, &bytes, &blen))) break;
    char what[1200];
    snprintf(what, sizeof what, "%s (member %s)", path, member);
    lm_array *a = lm__npy_parse(bytes, blen, what);
    free(bytes);
    if (!a) {
      st = LM_ERROR_IO;
      break;
    }
    char *name = lm__strdup(member);
    if (!name) {
      lm_array_free(a);
      st = LM_ERROR_MEMORY;
      break;
    }
    name[nlen - 4] = 0;
    for (int i = 0; i < n && !st; i++)
      if (!strcmp(names[i], name)) st = lm__fail(NULL, LM_ERROR_IO, "%s: the array name \"%s\" appears twice", path, name);
    if (!st && (lm__grow(&names, &cap_names, n + 1, sizeof *names) || lm__grow(&arrays, &cap_arrays, n + 1, sizeof *arrays)))
      st = LM_ERROR_MEMORY;
    if (st) {
      free(name);
      lm_array_free(a);
      break;
    }
    names[n] = name;
    arrays[n++] = a;
  }
  lm__zip_close(&z);
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
  lm_wfile w;
  if ((st = lm__wfile_open(&w, path))) return st;
  lm_zip_writer zw;
  lm__zip_writer_init(&zw, w.f, path);
  for (int i = 0; i < n && st == LM_OK; i++) {
    uint8_t head[256];
    char name[1100];
    snprintf(name, sizeof name, "%s.npy", names[i]);
    const void *parts[2] = {head, arrays[i]->data};
    size_t lens[2] = {npy_header(arrays[i], head, sizeof head), (size_t)arrays[i]->size * 4};
    st = lm__zip_add(&zw, name, parts, lens, 2);
  }
  st = lm__zip_finish(&zw, st);
  return lm__wfile_commit(&w, path, st);
}
