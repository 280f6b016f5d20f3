/* A thin wrapper over libhdf5 (see h5.h). */
#include "io/h5.h"
#include <errno.h>
#include <fcntl.h>
#include <hdf5.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* Bounds for what a file may claim before we allocate for it. */
#define H5_MAX_STRINGS (1 << 20)
#define H5_MAX_STRING_BYTES ((size_t)64 << 20)

static void quiet(void) {
  /* libhdf5 prints its error stack to stderr by default; we report our own messages. */
  H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
}

/* In-memory files need distinct names while open. */
static void image_name(char *buf, size_t len) {
  static unsigned long counter;
  snprintf(buf, len, "lamina-image-%lu", ++counter);
}

static lm_status fail(lm_h5 *h, const char *path, const char *fmt, ...) LM_PRINTF(3, 4);
static lm_status fail(lm_h5 *h, const char *path, const char *fmt, ...) {
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  if (path && *path) return lm__fail(NULL, LM_ERROR_IO, "%s: %s: %s", h->what, path, msg);
  return lm__fail(NULL, LM_ERROR_IO, "%s: %s", h->what, msg);
}

lm_status lm__h5_create(lm_h5 *h, const char *what) {
  quiet();
  snprintf(h->what, sizeof h->what, "%s", what);
  char name[64];
  image_name(name, sizeof name);
  hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
  if (fapl < 0 || H5Pset_fapl_core(fapl, 1 << 16, 0) < 0) {
    if (fapl >= 0) H5Pclose(fapl);
    h->file = -1, h->nodes = NULL, h->n_nodes = 0, h->blob = NULL;
    return fail(h, NULL, "libhdf5 cannot make an in-memory file");
  }
  h->nodes = NULL, h->n_nodes = 0, h->blob = NULL;
  h->file = H5Fcreate(name, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
  H5Pclose(fapl);
  if (h->file < 0) return fail(h, NULL, "libhdf5 cannot make an in-memory file");
  return LM_OK;
}

lm_status lm__h5_image(lm_h5 *h, uint8_t **buf, size_t *len) {
  *buf = NULL;
  *len = 0;
  if (H5Fflush(h->file, H5F_SCOPE_GLOBAL) < 0) return fail(h, NULL, "libhdf5 cannot flush the file");
  ssize_t n = H5Fget_file_image(h->file, NULL, 0);
  if (n <= 0) return fail(h, NULL, "libhdf5 cannot give the file's bytes");
  uint8_t *b = malloc((size_t)n);
  if (!b) return lm__fail(NULL, LM_ERROR_MEMORY, "%s: out of memory (%zd bytes)", h->what, n);
  if (H5Fget_file_image(h->file, b, (size_t)n) != n) {
    free(b);
    return fail(h, NULL, "libhdf5 cannot give the file's bytes");
  }
  *buf = b;
  *len = (size_t)n;
  return LM_OK;
}


/* ---- Writing ---- */

lm_status lm__h5_make_group(lm_h5 *h, const char *path) {
  if (!path || !*path) return LM_OK;
  if (H5Lexists(h->file, path, H5P_DEFAULT) > 0) return LM_OK;
  hid_t lcpl = H5Pcreate(H5P_LINK_CREATE), gcpl = H5Pcreate(H5P_GROUP_CREATE);
  hid_t g = -1;
  if (lcpl >= 0 && gcpl >= 0 && H5Pset_create_intermediate_group(lcpl, 1) >= 0 && H5Pset_obj_track_times(gcpl, 0) >= 0)
    g = H5Gcreate2(h->file, path, lcpl, gcpl, H5P_DEFAULT);
  if (lcpl >= 0) H5Pclose(lcpl);
  if (gcpl >= 0) H5Pclose(gcpl);
  if (g < 0) return fail(h, path, "libhdf5 cannot create the group");
  H5Gclose(g);
  return LM_OK;
}

static lm_status write_attr(lm_h5 *h, const char *obj, const char *name, hid_t type, hid_t space, const void *data) {
  hid_t o = H5Oopen(h->file, obj && *obj ? obj : "/", H5P_DEFAULT);
  lm_status st = LM_OK;
  if (o < 0) return fail(h, obj, "libhdf5 cannot open the object to set attribute %s", name);
  if (H5Aexists(o, name) > 0) H5Adelete(o, name);
  hid_t a = H5Acreate2(o, name, type, space, H5P_DEFAULT, H5P_DEFAULT);
  if (a < 0 || (data && H5Awrite(a, type, data) < 0)) st = fail(h, obj, "libhdf5 cannot write attribute %s", name);
  if (a >= 0) H5Aclose(a);
  H5Oclose(o);
  return st;
}

static hid_t vlen_str_type(bool utf8) {
  hid_t t = H5Tcopy(H5T_C_S1);
  if (t >= 0 && (H5Tset_size(t, H5T_VARIABLE) < 0 || H5Tset_cset(t, utf8 ? H5T_CSET_UTF8 : H5T_CSET_ASCII) < 0)) {
    H5Tclose(t);
    return -1;
  }
  return t;
}

lm_status lm__h5_set_attr_str(lm_h5 *h, const char *obj, const char *name, const char *value, bool utf8) {
  hid_t t = vlen_str_type(utf8), s = H5Screate(H5S_SCALAR);
  lm_status st = t < 0 || s < 0 ? fail(h, obj, "libhdf5 cannot make a string type") : write_attr(h, obj, name, t, s, &value);
  if (t >= 0) H5Tclose(t);
  if (s >= 0) H5Sclose(s);
  return st;
}

lm_status lm__h5_set_attr_strs(lm_h5 *h, const char *obj, const char *name, const char *const *values, int n) {
  hsize_t dim = (hsize_t)n;
  hid_t s = H5Screate_simple(1, &dim, NULL);
  hid_t t = n ? vlen_str_type(false) : H5Tcopy(H5T_IEEE_F64LE);
  lm_status st = t < 0 || s < 0 ? fail(h, obj, "libhdf5 cannot make attribute %s", name)
                                : write_attr(h, obj, name, t, s, n ? (const void *)values : NULL);
  if (t >= 0) H5Tclose(t);
  if (s >= 0) H5Sclose(s);
  return st;
}

static lm_status write_dataset(lm_h5 *h, const char *path, hid_t file_type, hid_t mem_type, lm_shape shape,
                               const void *data) {
  hsize_t dims[LM_MAX_RANK];
  for (int i = 0; i < shape.rank; i++) dims[i] = (hsize_t)shape.dim[i];
  hid_t s = shape.rank ? H5Screate_simple(shape.rank, dims, NULL) : H5Screate(H5S_SCALAR);
  hid_t lcpl = H5Pcreate(H5P_LINK_CREATE), dcpl = H5Pcreate(H5P_DATASET_CREATE), d = -1;
  if (s >= 0 && lcpl >= 0 && dcpl >= 0 && H5Pset_create_intermediate_group(lcpl, 1) >= 0 &&
      H5Pset_obj_track_times(dcpl, 0) >= 0)
    d = H5Dcreate2(h->file, path, file_type, s, lcpl, dcpl, H5P_DEFAULT);
  lm_status st = LM_OK;
  if (d < 0 || H5Dwrite(d, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0)
    st = fail(h, path, "libhdf5 cannot write the dataset");
  if (d >= 0) H5Dclose(d);
  if (s >= 0) H5Sclose(s);
  if (lcpl >= 0) H5Pclose(lcpl);
  if (dcpl >= 0) H5Pclose(dcpl);
  return st;
}

lm_status lm__h5_write_f32(lm_h5 *h, const char *path, lm_shape shape, const float *data) {
  return write_dataset(h, path, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, shape, data);
}

lm_status lm__h5_write_i32_scalar(lm_h5 *h, const char *path, int32_t value) {
  return write_dataset(h, path, H5T_STD_I32LE, H5T_NATIVE_INT32, (lm_shape){0}, &value);
}

/* ---- Reading: the snapshot ----
 *
 * The child writes records; strings are a u32 length (the NUL included) and the bytes:
 *   'G' group      path, i64 links
 *   'L' link       path, u32 1 soft / 2 external / 3 other
 *   'D' dataset    path, u32 numeric, string refusal ("" if none), u32 rank, i64 dims,
 *                  then when numeric and not refused: i64 n, n float32, f64 (n == 1: the value)
 *   'O' other      path (a named datatype)
 *   'A' attribute  of the record before: name, u32 0 strings / 1 empty number array /
 *                  2 other, u32 n, n strings
 *   'E' error      message
 *   'Z' end */

#define SNAP_MAX_DEPTH 64
#define SNAP_MAX_NODES 200000
#define SNAP_SOFT 10
#define SNAP_EXTERNAL 11

typedef struct h5_attr {
  const char *name;
  int kind;
  int n;
  const char **s;
} h5_attr;

struct lm_h5_node {
  const char *path;
  int kind; /* LM_H5_GROUP, LM_H5_DATASET, LM_H5_OTHER, SNAP_SOFT, SNAP_EXTERNAL */
  int64_t links;
  bool numeric;
  const char *refused;
  lm_shape shape;
  int64_t n;
  const uint8_t *data; /* n float32, unaligned */
  double scalar;
  h5_attr *attrs;
  int n_attrs, cap_attrs;
};

/* ---- The child ---- */

typedef struct snap_out {
  int fd;
  uint64_t written, budget;
  bool failed;
  size_t n;
  uint8_t buf[1 << 16];
  int64_t nodes;
} snap_out;

static void out_flush(snap_out *o) {
  size_t at = 0;
  while (at < o->n && !o->failed) {
    ssize_t k = write(o->fd, o->buf + at, o->n - at);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) o->failed = true;
    else at += (size_t)k;
  }
  o->n = 0;
}

static void out_bytes(snap_out *o, const void *p, size_t len) {
  if (o->failed) return;
  if (o->written + len > o->budget) {
    o->failed = true;
    return;
  }
  o->written += len;
  const uint8_t *b = p;
  while (len && !o->failed) {
    if (o->n == sizeof o->buf) out_flush(o);
    size_t k = sizeof o->buf - o->n < len ? sizeof o->buf - o->n : len;
    memcpy(o->buf + o->n, b, k);
    o->n += k, b += k, len -= k;
  }
}

static void out_u8(snap_out *o, uint8_t v) { out_bytes(o, &v, 1); }
static void out_u32(snap_out *o, uint32_t v) { out_bytes(o, &v, 4); }
static void out_i64(snap_out *o, int64_t v) { out_bytes(o, &v, 8); }
static void out_str(snap_out *o, const char *s) {
  size_t n = strlen(s) + 1;
  out_u32(o, (uint32_t)n);
  out_bytes(o, s, n);
}

static void out_error(snap_out *o, const char *fmt, ...) LM_PRINTF(2, 3);
static void out_error(snap_out *o, const char *fmt, ...) {
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  o->budget += 1024; /* room for the message even when the budget is what ran out */
  out_u8(o, 'E');
  out_str(o, msg);
}

/* A string attribute's values, variable or fixed length. Returns 0 or -1. */
static int child_strings(snap_out *o, hid_t a, hid_t type, int64_t n) {
  if (H5Tis_variable_str(type) > 0) {
    char **raw = calloc((size_t)n + 1, sizeof *raw);
    hid_t mt = H5Tcopy(H5T_C_S1);
    if (!raw || mt < 0 || H5Tset_size(mt, H5T_VARIABLE) < 0 || H5Tset_cset(mt, H5Tget_cset(type)) < 0 ||
        H5Aread(a, mt, raw) < 0)
      return -1;
    for (int64_t i = 0; i < n; i++) out_str(o, raw[i] ? raw[i] : "");
    return 0; /* the child exits soon: nothing is reclaimed */
  }
  size_t size = H5Tget_size(type);
  if (size == 0 || size > H5_MAX_STRING_BYTES || (size_t)n > H5_MAX_STRING_BYTES / size) return -1;
  char *buf = calloc((size_t)n * size + 1, 1), *one = malloc(size + 1);
  hid_t mt = H5Tcopy(H5T_C_S1);
  if (!buf || !one || mt < 0 || H5Tset_size(mt, size) < 0 || H5Tset_strpad(mt, H5T_STR_NULLPAD) < 0 || H5Aread(a, mt, buf) < 0)
    return -1;
  for (int64_t i = 0; i < n; i++) {
    size_t len = strnlen(buf + (size_t)i * size, size);
    memcpy(one, buf + (size_t)i * size, len);
    one[len] = 0;
    out_str(o, one);
  }
  return 0;
}

static herr_t child_attr(hid_t obj, const char *name, const H5A_info_t *info, void *ctx) {
  (void)info;
  snap_out *o = ctx;
  hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
  hid_t type = a >= 0 ? H5Aget_type(a) : -1, space = a >= 0 ? H5Aget_space(a) : -1;
  int rank = space >= 0 ? H5Sget_simple_extent_ndims(space) : -1;
  int64_t n = space >= 0 ? H5Sget_simple_extent_npoints(space) : -1;
  H5T_class_t cls = type >= 0 ? H5Tget_class(type) : H5T_NO_CLASS;
  out_u8(o, 'A');
  out_str(o, name);
  if (a >= 0 && cls == H5T_STRING && rank >= 0 && rank <= 1 && n >= 0 && n <= H5_MAX_STRINGS) {
    out_u32(o, 0);
    out_u32(o, (uint32_t)n);
    if (n && child_strings(o, a, type, n)) {
      out_error(o, "corrupt attribute %s: libhdf5 cannot read it", name);
      return -1;
    }
  } else {
    out_u32(o, n == 0 && (cls == H5T_FLOAT || cls == H5T_INTEGER) ? 1 : 2);
    out_u32(o, 0);
  }
  if (space >= 0) H5Sclose(space);
  if (type >= 0) H5Tclose(type);
  if (a >= 0) H5Aclose(a);
  return o->failed ? -1 : 0;
}

static int child_attrs(snap_out *o, hid_t obj) {
  hsize_t idx = 0;
  return H5Aiterate2(obj, H5_INDEX_NAME, H5_ITER_NATIVE, &idx, child_attr, o) < 0 ? -1 : 0;
}

static int child_dataset(snap_out *o, hid_t d, const char *path) {
  hid_t type = H5Dget_type(d), space = H5Dget_space(d), dcpl = H5Dget_create_plist(d);
  if (type < 0 || space < 0 || dcpl < 0) return out_error(o, "%s: corrupt dataset: libhdf5 cannot read its header", path), -1;
  H5T_class_t cls = H5Tget_class(type);
  bool numeric = cls == H5T_FLOAT || cls == H5T_INTEGER;
  int rank = H5Sget_simple_extent_ndims(space);
  hsize_t dims[H5S_MAX_RANK];
  if (rank < 0 || H5Sget_simple_extent_dims(space, dims, NULL) < 0)
    return out_error(o, "%s: corrupt dataset: libhdf5 cannot read its shape", path), -1;
  char refused[160] = "";
  int64_t n = 1;
  for (int i = 0; i < rank && i < LM_MAX_RANK; i++)
    n = dims[i] > (hsize_t)(INT64_MAX / 8) || (dims[i] && n > INT64_MAX / 8 / (int64_t)dims[i]) ? INT64_MAX / 8 : n * (int64_t)dims[i];
  if (rank > LM_MAX_RANK) snprintf(refused, sizeof refused, "unsupported dataset of rank %d", rank);
  else if (H5Pget_external_count(dcpl) != 0) snprintf(refused, sizeof refused, "not allowed: a dataset stored in external files");
  else if (H5Pget_layout(dcpl) == H5D_VIRTUAL) snprintf(refused, sizeof refused, "not allowed: a virtual dataset");
  else if (numeric) {
    /* A shape far beyond what is stored (a compressed fill value) would make us allocate
     * what the file only claims; Keras refuses such "shape bombs" as well. */
    uint64_t bytes = (uint64_t)n * H5Tget_size(type), stored = H5Dget_storage_size(d);
    if (bytes > 1000 * stored + ((uint64_t)1 << 20) || (uint64_t)n * 4 > o->budget - o->written)
      snprintf(refused, sizeof refused, "declares %lld values but stores %llu bytes", (long long)n, (unsigned long long)stored);
  }
  out_u8(o, 'D');
  out_str(o, path);
  out_u32(o, numeric);
  out_str(o, refused);
  out_u32(o, (uint32_t)(rank > LM_MAX_RANK ? 0 : rank));
  for (int i = 0; i < rank && i < LM_MAX_RANK; i++) out_i64(o, (int64_t)dims[i]);
  if (numeric && !refused[0]) {
    float *f = malloc((size_t)(n ? n : 1) * sizeof *f);
    double one = 0;
    if (!f || (n && H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, f) < 0) ||
        (n == 1 && H5Dread(d, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, &one) < 0))
      return out_error(o, "%s: corrupt or truncated data: libhdf5 cannot read it", path), -1;
    out_i64(o, n);
    out_bytes(o, f, (size_t)n * sizeof *f);
    out_bytes(o, &one, 8);
    free(f);
  }
  H5Tclose(type), H5Sclose(space), H5Pclose(dcpl);
  return child_attrs(o, d);
}

typedef struct walk_ctx {
  snap_out *o;
  const char *path;
  int depth;
} walk_ctx;

static int child_group(snap_out *o, hid_t g, const char *path, int depth);

static herr_t child_link(hid_t g, const char *name, const H5L_info_t *info, void *ctx) {
  walk_ctx *w = ctx;
  snap_out *o = w->o;
  if (++o->nodes > SNAP_MAX_NODES) return out_error(o, "more than %d objects", SNAP_MAX_NODES), -1;
  size_t len = strlen(w->path) + strlen(name) + 2;
  char *path = malloc(len);
  if (!path) return -1;
  snprintf(path, len, "%s%s%s", w->path, *w->path ? "/" : "", name);
  int rc = 0;
  if (info->type != H5L_TYPE_HARD) {
    out_u8(o, 'L');
    out_str(o, path);
    out_u32(o, info->type == H5L_TYPE_SOFT ? 1 : info->type == H5L_TYPE_EXTERNAL ? 2 : 3);
  } else {
    hid_t obj = H5Oopen(g, name, H5P_DEFAULT);
    if (obj < 0) {
      out_error(o, "%s: corrupt object: libhdf5 cannot open it", path);
      rc = -1;
    } else {
      H5I_type_t t = H5Iget_type(obj);
      if (t == H5I_GROUP) rc = child_group(o, obj, path, w->depth + 1);
      else if (t == H5I_DATASET) rc = child_dataset(o, obj, path);
      else {
        out_u8(o, 'O');
        out_str(o, path);
      }
      H5Oclose(obj);
    }
  }
  free(path);
  return rc || o->failed ? -1 : 0;
}

static int child_group(snap_out *o, hid_t g, const char *path, int depth) {
  /* Deep nesting, or a hard link back to an ancestor, ends here. */
  if (depth > SNAP_MAX_DEPTH) return out_error(o, "%s: groups nested more than %d deep", path, SNAP_MAX_DEPTH), -1;
  H5G_info_t info;
  if (H5Gget_info(g, &info) < 0) return out_error(o, "%s: corrupt group: libhdf5 cannot list it", path), -1;
  out_u8(o, 'G');
  out_str(o, path);
  out_i64(o, (int64_t)info.nlinks);
  if (child_attrs(o, g)) return -1;
  walk_ctx w = {o, path, depth};
  hsize_t idx = 0;
  return H5Literate(g, H5_INDEX_NAME, H5_ITER_NATIVE, &idx, child_link, &w) < 0 ? -1 : 0;
}

static void child_main(int fd, const uint8_t *buf, size_t len) {
  /* Whatever libhdf5 (or a sanitizer) says about a bad file goes nowhere, and a crash ends
   * the child: the caller's own handlers (a test framework's, which would jump back into
   * the caller's code) are dropped. */
  int nul = open("/dev/null", O_WRONLY);
  if (nul >= 0) dup2(nul, 1), dup2(nul, 2);
  const int sigs[] = {SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT, SIGPIPE, SIGTRAP, SIGSYS};
  for (size_t i = 0; i < sizeof sigs / sizeof *sigs; i++) signal(sigs[i], SIG_DFL);
  quiet();
  snap_out *o = calloc(1, sizeof *o);
  if (!o) _exit(3);
  o->fd = fd;
  o->budget = (uint64_t)len * 16 + ((uint64_t)256 << 20);
  char name[64];
  image_name(name, sizeof name);
  hid_t fapl = H5Pcreate(H5P_FILE_ACCESS), f = -1;
  if (fapl >= 0 && H5Pset_fapl_core(fapl, 1 << 16, 0) >= 0 && H5Pset_file_image(fapl, (void *)(uintptr_t)buf, len) >= 0)
    f = H5Fopen(name, H5F_ACC_RDONLY, fapl);
  if (f < 0) out_error(o, "corrupt or truncated HDF5 file (%zu bytes): libhdf5 cannot open it", len);
  else {
    hid_t root = H5Gopen2(f, "/", H5P_DEFAULT);
    if (root < 0) out_error(o, "corrupt HDF5 file: libhdf5 cannot open its root group");
    else if (child_group(o, root, "", 0) == 0 && !o->failed) out_u8(o, 'Z');
    else if (o->written + 64 > o->budget) out_error(o, "the file holds more than %llu bytes of data", (unsigned long long)o->budget);
  }
  out_flush(o);
  _exit(0);
}

/* ---- The parent: run the child, check what it sends ---- */

typedef struct reader {
  const uint8_t *p, *end;
  bool bad;
} reader;

static bool take(reader *r, void *dst, size_t n) {
  if (r->bad || (size_t)(r->end - r->p) < n) return !(r->bad = true);
  memcpy(dst, r->p, n);
  r->p += n;
  return true;
}

static uint32_t take_u32(reader *r) {
  uint32_t v = 0;
  take(r, &v, 4);
  return v;
}

static int64_t take_i64(reader *r) {
  int64_t v = 0;
  take(r, &v, 8);
  return v;
}

static const char *take_str(reader *r) {
  uint32_t n = take_u32(r);
  if (r->bad || n == 0 || (size_t)(r->end - r->p) < n || r->p[n - 1] != 0 || strlen((const char *)r->p) != n - 1) {
    r->bad = true;
    return "";
  }
  const char *s = (const char *)r->p;
  r->p += n;
  return s;
}

static int node_cmp(const void *a, const void *b) {
  return strcmp(((const lm_h5_node *)a)->path, ((const lm_h5_node *)b)->path);
}

void lm__h5_close(lm_h5 *h) {
  if (h->file >= 0) H5Fclose(h->file);
  h->file = -1;
  for (int64_t i = 0; h->nodes && i < h->n_nodes; i++) {
    for (int k = 0; k < h->nodes[i].n_attrs; k++) free(h->nodes[i].attrs[k].s);
    free(h->nodes[i].attrs);
  }
  free(h->nodes);
  free(h->blob);
  h->nodes = NULL, h->blob = NULL, h->n_nodes = 0;
}

/* Parses the child's records into nodes; an error message in the stream becomes ours. */
static lm_status parse_snapshot(lm_h5 *h, size_t len) {
  reader r = {h->blob, h->blob + len, false};
  int64_t cap = 0;
  bool done = false;
  while (!r.bad && !done && r.p < r.end) {
    uint8_t tag = *r.p++;
    if (tag == 'Z') {
      done = true;
      break;
    }
    if (tag == 'E') {
      const char *msg = take_str(&r);
      return fail(h, NULL, "%s", r.bad ? "corrupt HDF5 file" : msg);
    }
    if (tag == 'A') {
      if (h->n_nodes == 0) break;
      lm_h5_node *nd = &h->nodes[h->n_nodes - 1];
      if (lm__grow(&nd->attrs, &nd->cap_attrs, nd->n_attrs + 1, sizeof *nd->attrs)) return LM_ERROR_MEMORY;
      h5_attr *a = &nd->attrs[nd->n_attrs++];
      memset(a, 0, sizeof *a);
      a->name = take_str(&r);
      a->kind = (int)take_u32(&r);
      uint32_t n = take_u32(&r);
      if (r.bad || a->kind < 0 || a->kind > 2 || n > H5_MAX_STRINGS || (a->kind != 0 && n) || n > (size_t)(r.end - r.p) / 5) break;
      if (n && !(a->s = lm__calloc(n, sizeof *a->s))) return LM_ERROR_MEMORY;
      for (uint32_t i = 0; i < n && !r.bad; i++) a->s[i] = take_str(&r);
      a->n = (int)n;
      continue;
    }
    if (tag != 'G' && tag != 'L' && tag != 'D' && tag != 'O') break;
    if (h->n_nodes >= SNAP_MAX_NODES) break;
    if (h->n_nodes == cap) {
      int64_t ncap = cap ? cap * 2 : 64;
      lm_h5_node *p = lm__realloc(h->nodes, (size_t)ncap * sizeof *p);
      if (!p) return LM_ERROR_MEMORY;
      h->nodes = p, cap = ncap;
    }
    lm_h5_node *nd = &h->nodes[h->n_nodes++];
    memset(nd, 0, sizeof *nd);
    nd->path = take_str(&r);
    if (tag == 'G') {
      nd->kind = LM_H5_GROUP;
      nd->links = take_i64(&r);
    } else if (tag == 'L') {
      uint32_t t = take_u32(&r);
      nd->kind = t == 1 ? SNAP_SOFT : SNAP_EXTERNAL;
    } else if (tag == 'O') nd->kind = LM_H5_OTHER;
    else {
      nd->kind = LM_H5_DATASET;
      nd->numeric = take_u32(&r) != 0;
      nd->refused = take_str(&r);
      uint32_t rank = take_u32(&r);
      if (rank > LM_MAX_RANK) r.bad = true;
      nd->shape.rank = (int)(r.bad ? 0 : rank);
      int64_t count = 1;
      for (int i = 0; i < nd->shape.rank && !r.bad; i++) {
        nd->shape.dim[i] = take_i64(&r);
        if (nd->shape.dim[i] < 0) r.bad = true;
        else count = nd->shape.dim[i] && count > INT64_MAX / 8 / nd->shape.dim[i] ? INT64_MAX / 8 : count * nd->shape.dim[i];
      }
      if (nd->numeric && !nd->refused[0] && !r.bad) {
        nd->n = take_i64(&r);
        if (nd->n != count || nd->n < 0 || (uint64_t)nd->n > (uint64_t)(r.end - r.p) / 4) r.bad = true;
        else {
          nd->data = r.p;
          r.p += nd->n * 4;
          take(&r, &nd->scalar, 8);
        }
      }
    }
  }
  if (r.bad || !done) return fail(h, NULL, "corrupt HDF5 file: libhdf5 could not read all of it");
  qsort(h->nodes, (size_t)h->n_nodes, sizeof *h->nodes, node_cmp);
  return LM_OK;
}

/* libhdf5 loops forever on some corrupt files (found by tests/test_saving.c): reading
 * a sound file takes well under a second per MiB, so a child that takes longer is stopped. */
static double timeout_base = 10.0, timeout_per_mb = 1.0;

void lm__h5_set_read_timeout(double base, double per_mb) {
  timeout_base = base;
  timeout_per_mb = per_mb;
}

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

lm_status lm__h5_open_image(lm_h5 *h, const uint8_t *buf, size_t len, const char *what) {
  memset(h, 0, sizeof *h);
  h->file = -1;
  snprintf(h->what, sizeof h->what, "%s", what);
  /* Checked here so that the message says what is wrong rather than libhdf5's generic
   * failure: the signature sits at 0, 512, 1024, ... */
  static const uint8_t sig[8] = {0x89, 'H', 'D', 'F', '\r', '\n', 0x1a, '\n'};
  bool found = false;
  for (size_t at = 0; at + 8 <= len && !found; at = at ? at * 2 : 512) found = !memcmp(buf + at, sig, 8);
  if (!found) return fail(h, NULL, "not an HDF5 file (no HDF5 signature)");
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) return fail(h, NULL, "cannot start reading: %s", strerror(errno));
  pid_t pid = fork();
  if (pid < 0) {
    close(fds[0]), close(fds[1]);
    return fail(h, NULL, "cannot start reading: %s", strerror(errno));
  }
  if (pid == 0) {
    close(fds[0]);
    child_main(fds[1], buf, len);
  }
  close(fds[1]);
  size_t cap = 1 << 16, n = 0;
  uint64_t limit = (uint64_t)len * 16 + ((uint64_t)256 << 20) + 4096;
  uint8_t *blob = malloc(cap);
  lm_status st = blob ? LM_OK : LM_ERROR_MEMORY;
  double deadline = now_s() + timeout_base + (double)len / (1 << 20) * timeout_per_mb;
  while (!st) {
    struct pollfd pf = {fds[0], POLLIN, 0};
    int pr = poll(&pf, 1, 1000);
    if (pr < 0 && errno == EINTR) continue;
    if (now_s() > deadline) {
      st = fail(h, NULL, "corrupt HDF5 file: libhdf5 did not finish reading it in %.0f seconds",
                timeout_base + (double)len / (1 << 20) * timeout_per_mb);
      break;
    }
    if (pr <= 0) continue;
    if (n == cap) {
      size_t ncap = cap * 2;
      uint8_t *p = ncap > limit ? NULL : realloc(blob, ncap);
      if (!p) {
        st = fail(h, NULL, "the file's contents are too large to read");
        break;
      }
      blob = p, cap = ncap;
    }
    ssize_t k = read(fds[0], blob + n, cap - n);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) break;
    n += (size_t)k;
  }
  close(fds[0]);
  if (st) kill(pid, SIGKILL);
  int status = 0;
  pid_t w;
  do w = waitpid(pid, &status, 0);
  while (w < 0 && errno == EINTR);
  if (st) {
    free(blob);
    return st;
  }
  h->blob = blob;
  st = parse_snapshot(h, n);
  if (st && st != LM_ERROR_MEMORY && w == pid && WIFSIGNALED(status)) {
    lm__h5_close(h);
    return fail(h, NULL, "corrupt HDF5 file: libhdf5 failed on it (signal %d)", WTERMSIG(status));
  }
  if (st) lm__h5_close(h);
  return st;
}

/* ---- Reading: answers from the snapshot ---- */

static const lm_h5_node *find(const lm_h5 *h, const char *path) {
  lm_h5_node key = {.path = path};
  return h->nodes ? bsearch(&key, h->nodes, (size_t)h->n_nodes, sizeof *h->nodes, node_cmp) : NULL;
}

static const char *norm(const char *path) { return !path || !strcmp(path, "/") ? "" : path; }

lm_h5_kind lm__h5_kind(lm_h5 *h, const char *path) {
  path = norm(path);
  size_t n = strlen(path);
  if (n >= 2048 || path[0] == '/') {
    fail(h, path, "invalid object path");
    return LM_H5_OTHER;
  }
  /* Each component on the way: a link that is not hard is refused. */
  char part[2048];
  for (size_t i = 1; i <= n; i++) {
    if (path[i] != '/' && path[i] != 0) continue;
    memcpy(part, path, i);
    part[i] = 0;
    const lm_h5_node *nd = find(h, part);
    if (!nd) return LM_H5_NONE;
    if (nd->kind == SNAP_SOFT || nd->kind == SNAP_EXTERNAL) {
      fail(h, part, "not allowed: %s link", nd->kind == SNAP_SOFT ? "a soft" : "an external");
      return LM_H5_OTHER;
    }
    if (path[i] == 0) return (lm_h5_kind)nd->kind;
    if (nd->kind != LM_H5_GROUP) return LM_H5_NONE;
  }
  return n == 0 ? LM_H5_GROUP : LM_H5_NONE;
}

static const lm_h5_node *expect(lm_h5 *h, const char *path, lm_h5_kind want) {
  lm_h5_kind k = lm__h5_kind(h, path);
  if (k == LM_H5_OTHER && want != LM_H5_OTHER) return NULL;
  if (k != want) {
    fail(h, path, k == LM_H5_NONE ? "missing %s" : "not a %s", want == LM_H5_GROUP ? "group" : "dataset");
    return NULL;
  }
  return find(h, norm(path));
}

int64_t lm__h5_n_children(lm_h5 *h, const char *group) {
  const lm_h5_node *nd = expect(h, group, LM_H5_GROUP);
  return nd ? nd->links : -1;
}

static const h5_attr *attr_of(lm_h5 *h, const char *obj, const char *name) {
  lm_h5_kind k = lm__h5_kind(h, obj);
  if (k != LM_H5_GROUP && k != LM_H5_DATASET) return NULL;
  const lm_h5_node *nd = find(h, norm(obj));
  for (int i = 0; nd && i < nd->n_attrs; i++)
    if (!strcmp(nd->attrs[i].name, name)) return &nd->attrs[i];
  return NULL;
}

bool lm__h5_has_attr(lm_h5 *h, const char *obj, const char *name) { return attr_of(h, obj, name) != NULL; }

lm_status lm__h5_get_attr_strs(lm_h5 *h, const char *obj, const char *name, char ***out, int *n_out) {
  *out = NULL;
  *n_out = 0;
  lm_h5_kind k = lm__h5_kind(h, obj);
  if (k == LM_H5_OTHER) return LM_ERROR_IO;
  if (k == LM_H5_NONE) return fail(h, obj, "missing object");
  const h5_attr *a = attr_of(h, obj, name);
  if (!a) return fail(h, obj, "missing attribute %s", name);
  if (a->kind == 1) return LM_OK; /* Keras's empty list: an empty float64 array */
  if (a->kind != 0) return fail(h, obj, "attribute %s is not a list of strings", name);
  char **strs = a->n ? lm__calloc((size_t)a->n, sizeof *strs) : NULL;
  if (a->n && !strs) return LM_ERROR_MEMORY;
  for (int i = 0; i < a->n; i++)
    if (!(strs[i] = lm__strdup(a->s[i]))) {
      lm__h5_free_strs(strs, i);
      return LM_ERROR_MEMORY;
    }
  *out = strs;
  *n_out = a->n;
  return LM_OK;
}

lm_status lm__h5_get_attr_str(lm_h5 *h, const char *obj, const char *name, char **out) {
  *out = NULL;
  char **strs;
  int n;
  lm_status st = lm__h5_get_attr_strs(h, obj, name, &strs, &n);
  if (st) return st;
  if (n != 1) {
    lm__h5_free_strs(strs, n);
    return fail(h, obj, "attribute %s is not a single string", name);
  }
  *out = strs[0];
  free(strs);
  return LM_OK;
}

void lm__h5_free_strs(char **strs, int n) {
  for (int i = 0; strs && i < n; i++) free(strs[i]);
  free(strs);
}

static const lm_h5_node *numeric(lm_h5 *h, const char *path) {
  const lm_h5_node *nd = expect(h, path, LM_H5_DATASET);
  if (!nd) return NULL;
  if (nd->refused && nd->refused[0]) return fail(h, path, "%s", nd->refused), NULL;
  if (!nd->numeric) return fail(h, path, "not a numeric dataset"), NULL;
  return nd;
}

lm_status lm__h5_dataset_shape(lm_h5 *h, const char *path, lm_shape *shape) {
  const lm_h5_node *nd = numeric(h, path);
  if (!nd) return LM_ERROR_IO;
  *shape = nd->shape;
  return LM_OK;
}

lm_status lm__h5_read_f32(lm_h5 *h, const char *path, float *out, int64_t n) {
  const lm_h5_node *nd = numeric(h, path);
  if (!nd) return LM_ERROR_IO;
  if (nd->n != n) return fail(h, path, "holds %lld values, %lld expected", (long long)nd->n, (long long)n);
  if (n) memcpy(out, nd->data, (size_t)n * sizeof *out);
  return LM_OK;
}

lm_status lm__h5_read_scalar(lm_h5 *h, const char *path, double *out) {
  const lm_h5_node *nd = numeric(h, path);
  if (!nd) return LM_ERROR_IO;
  if (nd->n != 1) return fail(h, path, "is not a scalar");
  *out = nd->scalar;
  return LM_OK;
}
