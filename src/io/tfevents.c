/* TensorBoard event files, written by hand: TFRecord framing with masked CRC-32C around
 * Event protobufs (tensorflow/core/util/event.proto, summary.proto, tensor.proto). */
#include "io/tfevents.h"
#include "io/png.h"
#include <errno.h>
#include <math.h>
#include <stdatomic.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ---- CRC-32C ---- */
static uint32_t crc_table[8][256];
static atomic_int crc_ready;

static void crc_init(void) {
  if (atomic_load_explicit(&crc_ready, memory_order_acquire)) return;
  /* Reflected Castagnoli polynomial; slicing-by-8 tables. Racing threads compute the same
   * values, so concurrent first calls are harmless. */
  for (uint32_t i = 0; i < 256; i++) {
    uint32_t c = i;
    for (int k = 0; k < 8; k++) c = c & 1 ? (c >> 1) ^ 0x82F63B78u : c >> 1;
    crc_table[0][i] = c;
  }
  for (int t = 1; t < 8; t++)
    for (int i = 0; i < 256; i++) crc_table[t][i] = (crc_table[t - 1][i] >> 8) ^ crc_table[0][crc_table[t - 1][i] & 0xff];
  atomic_store_explicit(&crc_ready, 1, memory_order_release);
}

uint32_t lm__crc32c_extend(uint32_t crc, const void *data, size_t n) {
  crc_init();
  const uint8_t *p = data;
  uint32_t c = ~crc;
  for (; n >= 8; p += 8, n -= 8) {
    uint32_t lo = c ^ ((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24);
    c = crc_table[7][lo & 0xff] ^ crc_table[6][(lo >> 8) & 0xff] ^ crc_table[5][(lo >> 16) & 0xff] ^
        crc_table[4][lo >> 24] ^ crc_table[3][p[4]] ^ crc_table[2][p[5]] ^ crc_table[1][p[6]] ^ crc_table[0][p[7]];
  }
  while (n--) c = crc_table[0][(c ^ *p++) & 0xff] ^ (c >> 8);
  return ~c;
}

uint32_t lm__crc32c(const void *data, size_t n) { return lm__crc32c_extend(0, data, n); }

uint32_t lm__crc32c_masked(const void *data, size_t n) {
  uint32_t c = lm__crc32c(data, n);
  return ((c >> 15) | (c << 17)) + 0xa282ead8u;
}

/* ---- Protobuf writing ---- */
void lm__pb_raw(lm_pb *pb, const void *data, size_t n) {
  if (pb->failed) return;
  if (pb->len + n > pb->cap) {
    size_t cap = pb->cap ? pb->cap : 256;
    while (cap < pb->len + n) cap *= 2;
    uint8_t *d = lm__realloc(pb->data, cap);
    if (!d) {
      pb->failed = true;
      return;
    }
    pb->data = d, pb->cap = cap;
  }
  if (n) memcpy(pb->data + pb->len, data, n);
  pb->len += n;
}

void lm__pb_varint(lm_pb *pb, uint64_t v) {
  uint8_t b[10];
  int n = 0;
  do {
    b[n++] = (uint8_t)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
    v >>= 7;
  } while (v);
  lm__pb_raw(pb, b, (size_t)n);
}

void lm__pb_key(lm_pb *pb, int field, int wire) { lm__pb_varint(pb, (uint64_t)field << 3 | (uint64_t)wire); }

void lm__pb_uint(lm_pb *pb, int field, uint64_t v) {
  lm__pb_key(pb, field, LM_PB_VARINT);
  lm__pb_varint(pb, v);
}

static void put_le(uint8_t *b, uint64_t v, int n) {
  for (int i = 0; i < n; i++) b[i] = (uint8_t)(v >> (8 * i));
}

void lm__pb_double(lm_pb *pb, int field, double v) {
  uint64_t u;
  uint8_t b[8];
  memcpy(&u, &v, 8);
  put_le(b, u, 8);
  lm__pb_key(pb, field, LM_PB_I64);
  lm__pb_raw(pb, b, 8);
}

void lm__pb_float(lm_pb *pb, int field, float v) {
  uint32_t u;
  uint8_t b[4];
  memcpy(&u, &v, 4);
  put_le(b, u, 4);
  lm__pb_key(pb, field, LM_PB_I32);
  lm__pb_raw(pb, b, 4);
}

void lm__pb_bytes(lm_pb *pb, int field, const void *data, size_t n) {
  lm__pb_key(pb, field, LM_PB_LEN);
  lm__pb_varint(pb, n);
  lm__pb_raw(pb, data, n);
}

void lm__pb_string(lm_pb *pb, int field, const char *s) { lm__pb_bytes(pb, field, s, strlen(s)); }

void lm__pb_message(lm_pb *pb, int field, const lm_pb *sub) {
  if (sub->failed) pb->failed = true;
  lm__pb_bytes(pb, field, sub->data, sub->len);
}

void lm__pb_free(lm_pb *pb) {
  free(pb->data);
  memset(pb, 0, sizeof *pb);
}

static void pb_clear(lm_pb *pb) {
  pb->len = 0;
  pb->failed = false;
}

/* ---- Protobuf reading ---- */
static int read_varint(const uint8_t **p, const uint8_t *end, uint64_t *v) {
  uint64_t r = 0;
  for (int shift = 0; shift < 64; shift += 7) {
    if (*p >= end) return -1;
    uint8_t b = *(*p)++;
    r |= (uint64_t)(b & 0x7f) << shift;
    if (!(b & 0x80)) {
      *v = r;
      return 0;
    }
  }
  return -1;
}

int lm__pb_next(const uint8_t **p, const uint8_t *end, int *field, int *wire, uint64_t *value, const uint8_t **data,
                size_t *n) {
  if (*p >= end) return 0;
  uint64_t key;
  if (read_varint(p, end, &key) || key >> 3 == 0 || key >> 3 > 0x1fffffff) return -1;
  *field = (int)(key >> 3), *wire = (int)(key & 7);
  *value = 0, *data = NULL, *n = 0;
  switch (*wire) {
  case LM_PB_VARINT: return read_varint(p, end, value) ? -1 : 1;
  case LM_PB_I64:
  case LM_PB_I32: {
    size_t size = *wire == LM_PB_I64 ? 8 : 4;
    if ((size_t)(end - *p) < size) return -1;
    for (size_t i = 0; i < size; i++) *value |= (uint64_t)(*p)[i] << (8 * i);
    *p += size;
    return 1;
  }
  case LM_PB_LEN: {
    uint64_t len;
    if (read_varint(p, end, &len) || len > (uint64_t)(end - *p)) return -1;
    *data = *p, *n = (size_t)len;
    *p += len;
    return 1;
  }
  default: return -1;
  }
}

/* ---- TFRecord ---- */
int lm__tfrecord_write(FILE *f, const void *data, size_t n) {
  uint8_t head[12], tail[4];
  put_le(head, n, 8);
  put_le(head + 8, lm__crc32c_masked(head, 8), 4);
  put_le(tail, lm__crc32c_masked(data, n), 4);
  if (fwrite(head, 1, 12, f) != 12 || (n && fwrite(data, 1, n, f) != n) || fwrite(tail, 1, 4, f) != 4) return -1;
  return 0;
}

static uint32_t get_le32(const uint8_t *b) {
  return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}

int lm__tfrecord_read(FILE *f, uint8_t **buf, size_t *cap, size_t *n) {
  uint8_t head[12], tail[4];
  size_t got = fread(head, 1, 12, f);
  if (got == 0 && feof(f)) return 0;
  if (got != 12) {
    lm__fail(NULL, LM_ERROR_IO, "TFRecord: truncated record header");
    return -1;
  }
  if (get_le32(head + 8) != lm__crc32c_masked(head, 8)) {
    lm__fail(NULL, LM_ERROR_IO, "TFRecord: length CRC mismatch");
    return -1;
  }
  uint64_t len = 0;
  for (int i = 0; i < 8; i++) len |= (uint64_t)head[i] << (8 * i);
  if (len > ((uint64_t)1 << 40)) {
    lm__fail(NULL, LM_ERROR_IO, "TFRecord: implausible record length %llu", (unsigned long long)len);
    return -1;
  }
  if (len > *cap) {
    uint8_t *b = lm__realloc(*buf, (size_t)len);
    if (!b) return -1;
    *buf = b, *cap = (size_t)len;
  }
  if (fread(*buf, 1, (size_t)len, f) != len || fread(tail, 1, 4, f) != 4) {
    lm__fail(NULL, LM_ERROR_IO, "TFRecord: truncated record of %llu bytes", (unsigned long long)len);
    return -1;
  }
  if (get_le32(tail) != lm__crc32c_masked(*buf, (size_t)len)) {
    lm__fail(NULL, LM_ERROR_IO, "TFRecord: data CRC mismatch");
    return -1;
  }
  *n = (size_t)len;
  return 1;
}

/* ---- Tensors ---- */
/* TensorProto: dtype 1, tensor_shape 2 {dim 2 {size 1}}, tensor_content 4, float_val 5,
 * string_val 8. */
static void tensor_head(lm_pb *t, int dtype, const int64_t *dims, int rank) {
  lm_pb shape = {0}, dim = {0};
  pb_clear(t);
  lm__pb_uint(t, 1, (uint64_t)dtype);
  for (int i = 0; i < rank; i++) {
    pb_clear(&dim);
    lm__pb_uint(&dim, 1, (uint64_t)dims[i]);
    lm__pb_message(&shape, 2, &dim);
  }
  lm__pb_message(t, 2, &shape);
  lm__pb_free(&shape);
  lm__pb_free(&dim);
}

void lm__pb_tensor_float_scalar(lm_pb *t, float v) {
  tensor_head(t, LM_TF_FLOAT, NULL, 0);
  uint32_t u;
  uint8_t b[4];
  memcpy(&u, &v, 4);
  put_le(b, u, 4);
  lm__pb_bytes(t, 5, b, 4); /* packed float_val of one element */
}

void lm__pb_tensor_doubles(lm_pb *t, const double *v, const int64_t *dims, int rank) {
  tensor_head(t, LM_TF_DOUBLE, dims, rank);
  int64_t n = 1;
  for (int i = 0; i < rank; i++) n *= dims[i];
  /* tensor_content: the raw little-endian values, as TensorFlow writes non-scalars. */
  lm__pb_key(t, 4, LM_PB_LEN);
  lm__pb_varint(t, (uint64_t)n * 8);
  for (int64_t i = 0; i < n; i++) {
    uint64_t u;
    uint8_t b[8];
    memcpy(&u, &v[i], 8);
    put_le(b, u, 8);
    lm__pb_raw(t, b, 8);
  }
}

void lm__pb_tensor_strings(lm_pb *t, const char *const *s, const size_t *lens, int n, bool vector) {
  int64_t dim = n;
  tensor_head(t, LM_TF_STRING, &dim, vector ? 1 : 0);
  for (int i = 0; i < n; i++) lm__pb_bytes(t, 8, s[i], lens[i]);
}

/* ---- Histograms ---- */
void lm__histogram_buckets(const float *values, int64_t n, int k, double *out) {
  memset(out, 0, sizeof(double) * 3 * (size_t)(k > 0 ? k : 0));
  if (k <= 0) return;
  double lo = INFINITY, hi = -INFINITY;
  int64_t count = 0;
  for (int64_t i = 0; i < n; i++) {
    double v = values[i];
    if (!isfinite(v)) continue;
    if (v < lo) lo = v;
    if (v > hi) hi = v;
    count++;
  }
  if (!count) return;
  if (hi == lo) {
    for (int b = 0; b < k; b++) out[3 * b] = out[3 * b + 1] = hi;
    out[3 * (k - 1) + 2] = (double)count;
    return;
  }
  /* TensorFlow's arithmetic, in float64: width = range / k, index = floor((v - min) /
   * width) clamped to k - 1; edges from linspace(min, max, k + 1) with the last set to max. */
  double range = hi - lo, width = range / k, step = range / k;
  for (int64_t i = 0; i < n; i++) {
    double v = values[i];
    if (!isfinite(v)) continue;
    double f = floor((v - lo) / width);
    int b = f >= (double)(k - 1) ? k - 1 : (int)f;
    out[3 * b + 2] += 1;
  }
  for (int b = 0; b < k; b++) {
    out[3 * b] = lo + b * step;
    out[3 * b + 1] = b == k - 1 ? hi : lo + (b + 1) * step;
  }
}

/* ---- The writer ---- */
struct lm_summary_writer {
  FILE *f;
  char *path;
  bool failed;
  lm_pb event, summary, value, meta, plugin, tensor;
};

static atomic_int writer_count;

int lm__make_dirs(const char *dir) {
  size_t n = strlen(dir);
  char *p = lm__calloc(n + 1, 1);
  if (!p) return -1;
  memcpy(p, dir, n + 1);
  for (size_t i = 1; i <= n; i++) {
    if (p[i] != '/' && p[i] != '\0') continue;
    char c = p[i];
    p[i] = '\0';
    if (mkdir(p, 0777) && errno != EEXIST) {
      free(p);
      return -1;
    }
    p[i] = c;
  }
  struct stat st;
  int rc = stat(p, &st) ? -1 : S_ISDIR(st.st_mode) ? 0 : (errno = ENOTDIR, -1);
  free(p);
  return rc;
}

int lm__write_file_atomic(const char *path, const void *data, size_t n) {
  size_t len = strlen(path) + 32;
  char *tmp = lm__calloc(len, 1);
  if (!tmp) return errno = ENOMEM, -1;
  snprintf(tmp, len, "%s.tmp.%ld", path, (long)getpid());
  FILE *f = fopen(tmp, "wb");
  int rc = -1;
  if (f) {
    bool ok = fwrite(data, 1, n, f) == n && fflush(f) == 0;
    int saved = errno;
    if (fclose(f) == 0 && ok && rename(tmp, path) == 0) rc = 0;
    else {
      if (!ok) errno = saved;
      saved = errno;
      remove(tmp);
      errno = saved;
    }
  }
  free(tmp);
  return rc;
}

static double wall_time(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static lm_status write_event(lm_summary_writer *w, const lm_pb *event) {
  if (event->failed) return lm__fail(NULL, LM_ERROR_MEMORY, "summary writer '%s': out of memory", w->path);
  if (lm__tfrecord_write(w->f, event->data, event->len) || fflush(w->f)) {
    w->failed = true;
    return lm__fail(NULL, LM_ERROR_IO, "summary writer: cannot write '%s': %s", w->path, strerror(errno));
  }
  return LM_OK;
}

static lm_status usable(lm_summary_writer *w, const char *what) {
  if (!w) return lm__fail(NULL, LM_ERROR_VALUE, "%s: the writer is NULL", what);
  if (!w->f) return lm__fail(NULL, LM_ERROR_STATE, "%s: the writer of '%s' is closed", what, w->path);
  if (w->failed)
    return lm__fail(NULL, LM_ERROR_STATE, "%s: the writer of '%s' failed earlier and writes nothing more", what,
                    w->path);
  return LM_OK;
}

lm_summary_writer *lm_summary_writer_new(const char *logdir) {
  if (!logdir || !*logdir) {
    lm__fail(NULL, LM_ERROR_VALUE, "lm_summary_writer_new: the log directory is %s", logdir ? "empty" : "NULL");
    return NULL;
  }
  if (lm__make_dirs(logdir)) {
    lm__fail(NULL, LM_ERROR_IO, "summary writer: cannot create directory '%s': %s", logdir, strerror(errno));
    return NULL;
  }
  lm_summary_writer *w = lm__calloc(1, sizeof *w);
  if (!w) return NULL;
  char host[256] = "localhost";
  if (gethostname(host, sizeof host - 1)) snprintf(host, sizeof host, "localhost");
  host[sizeof host - 1] = '\0';
  double now = wall_time();
  /* TensorFlow's name: time, host, pid, a per-process counter, ".v2" for TF2 writers. */
  int len = snprintf(NULL, 0, "%s/events.out.tfevents.%010lld.%s.%ld.%d.v2", logdir, (long long)now, host,
                     (long)getpid(), 0) + 16;
  w->path = lm__calloc((size_t)len, 1);
  if (!w->path) {
    free(w);
    return NULL;
  }
  snprintf(w->path, (size_t)len, "%s/events.out.tfevents.%010lld.%s.%ld.%d.v2", logdir, (long long)now, host,
           (long)getpid(), atomic_fetch_add(&writer_count, 1));
  w->f = fopen(w->path, "wbx"); /* never append to, or replace, another writer's file */
  if (!w->f) {
    lm__fail(NULL, LM_ERROR_IO, "summary writer: cannot create '%s': %s", w->path, strerror(errno));
    lm_summary_writer_free(w);
    return NULL;
  }
  /* The first record names the format: Event{wall_time, file_version}. */
  lm__pb_double(&w->event, 1, now);
  lm__pb_string(&w->event, 3, "brain.Event:2");
  if (write_event(w, &w->event)) {
    lm_summary_writer_free(w);
    return NULL;
  }
  return w;
}

const char *lm_summary_writer_path(const lm_summary_writer *w) { return w ? w->path : ""; }

lm_status lm__summary_write_tensor(lm_summary_writer *w, const char *tag, int64_t step, const char *plugin,
                                   const void *content, size_t content_len, int data_class, const lm_pb *tensor) {
  lm_status st = usable(w, "summary");
  if (st) return st;
  if (!tag || !*tag) return lm__fail(NULL, LM_ERROR_VALUE, "summary writer '%s': empty tag", w->path);
  /* SummaryMetadata{plugin_data 1 {plugin_name 1, content 2}, data_class 4} */
  pb_clear(&w->plugin);
  lm__pb_string(&w->plugin, 1, plugin);
  if (content_len) lm__pb_bytes(&w->plugin, 2, content, content_len);
  pb_clear(&w->meta);
  lm__pb_message(&w->meta, 1, &w->plugin);
  if (data_class) lm__pb_uint(&w->meta, 4, (uint64_t)data_class);
  /* Summary.Value{tag 1, tensor 8, metadata 9} */
  pb_clear(&w->value);
  lm__pb_string(&w->value, 1, tag);
  lm__pb_message(&w->value, 8, tensor);
  lm__pb_message(&w->value, 9, &w->meta);
  pb_clear(&w->summary);
  lm__pb_message(&w->summary, 1, &w->value);
  /* Event{wall_time 1, step 2, summary 5} */
  pb_clear(&w->event);
  lm__pb_double(&w->event, 1, wall_time());
  lm__pb_uint(&w->event, 2, (uint64_t)step);
  lm__pb_message(&w->event, 5, &w->summary);
  return write_event(w, &w->event);
}

lm_status lm__summary_write_graph(lm_summary_writer *w, int64_t step, const lm_pb *graph_def) {
  lm_status st = usable(w, "graph");
  if (st) return st;
  pb_clear(&w->event);
  lm__pb_double(&w->event, 1, wall_time());
  lm__pb_uint(&w->event, 2, (uint64_t)step);
  lm__pb_message(&w->event, 4, graph_def);
  return write_event(w, &w->event);
}

lm_status lm_summary_scalar(lm_summary_writer *w, const char *tag, int64_t step, double value) {
  lm_status st = usable(w, "lm_summary_scalar");
  if (st) return st;
  lm__pb_tensor_float_scalar(&w->tensor, (float)value);
  return lm__summary_write_tensor(w, tag, step, "scalars", NULL, 0, LM_DATA_CLASS_SCALAR, &w->tensor);
}

#define HISTOGRAM_BUCKETS 30

lm_status lm_summary_histogram(lm_summary_writer *w, const char *tag, int64_t step, const float *values, int64_t n) {
  lm_status st = usable(w, "lm_summary_histogram");
  if (st) return st;
  if (n < 0 || (n > 0 && !values))
    return lm__fail(NULL, LM_ERROR_VALUE, "lm_summary_histogram: %lld values at %p", (long long)n, (const void *)values);
  double buckets[3 * HISTOGRAM_BUCKETS];
  lm__histogram_buckets(values, n, HISTOGRAM_BUCKETS, buckets);
  int64_t dims[2] = {HISTOGRAM_BUCKETS, 3};
  lm__pb_tensor_doubles(&w->tensor, buckets, dims, 2);
  return lm__summary_write_tensor(w, tag, step, "histograms", NULL, 0, LM_DATA_CLASS_TENSOR, &w->tensor);
}

lm_status lm__summary_images(lm_summary_writer *w, const char *tag, int64_t step, const uint8_t *pixels, int n,
                             int height, int width, int channels) {
  lm_status st = usable(w, "lm_summary_image");
  if (st) return st;
  if (n < 1 || n > 1024 || height < 1 || width < 1 || channels < 1 || channels > 4 || !pixels)
    return lm__fail(NULL, LM_ERROR_VALUE,
                    "lm_summary_image: cannot write %d image(s) of %d x %d pixels with %d channel(s) (channels: 1 to 4)",
                    n, height, width, channels);
  char ws[24], hs[24];
  snprintf(ws, sizeof ws, "%d", width);
  snprintf(hs, sizeof hs, "%d", height);
  const char **s = lm__calloc((size_t)n + 2, sizeof *s);
  size_t *lens = lm__calloc((size_t)n + 2, sizeof *lens);
  uint8_t **png = lm__calloc((size_t)n, sizeof *png);
  st = LM_ERROR_MEMORY;
  if (!s || !lens || !png) goto done;
  s[0] = ws, lens[0] = strlen(ws);
  s[1] = hs, lens[1] = strlen(hs);
  size_t image_bytes = (size_t)height * (size_t)width * (size_t)channels;
  for (int i = 0; i < n; i++) {
    if ((st = lm__png_encode(pixels + image_bytes * (size_t)i, height, width, channels, &png[i], &lens[i + 2])))
      goto done;
    s[i + 2] = (const char *)png[i];
  }
  lm__pb_tensor_strings(&w->tensor, s, lens, n + 2, true);
  st = lm__summary_write_tensor(w, tag, step, "images", NULL, 0, LM_DATA_CLASS_BLOB_SEQUENCE, &w->tensor);
done:
  for (int i = 0; png && i < n; i++) free(png[i]);
  free(png);
  free(lens);
  free(s);
  return st;
}

lm_status lm_summary_image(lm_summary_writer *w, const char *tag, int64_t step, const uint8_t *pixels, int height,
                           int width, int channels) {
  return lm__summary_images(w, tag, step, pixels, 1, height, width, channels);
}

lm_status lm_summary_text(lm_summary_writer *w, const char *tag, int64_t step, const char *text) {
  lm_status st = usable(w, "lm_summary_text");
  if (st) return st;
  if (!text) return lm__fail(NULL, LM_ERROR_VALUE, "lm_summary_text: the text is NULL");
  size_t len = strlen(text);
  lm__pb_tensor_strings(&w->tensor, &text, &len, 1, false);
  return lm__summary_write_tensor(w, tag, step, "text", NULL, 0, LM_DATA_CLASS_TENSOR, &w->tensor);
}

lm_status lm_summary_writer_flush(lm_summary_writer *w) {
  lm_status st = usable(w, "lm_summary_writer_flush");
  if (st) return st;
  if (fflush(w->f)) {
    w->failed = true;
    return lm__fail(NULL, LM_ERROR_IO, "summary writer: cannot write '%s': %s", w->path, strerror(errno));
  }
  return LM_OK;
}

lm_status lm_summary_writer_close(lm_summary_writer *w) {
  if (!w) return lm__fail(NULL, LM_ERROR_VALUE, "lm_summary_writer_close: the writer is NULL");
  if (!w->f) return LM_OK;
  int rc = fclose(w->f);
  w->f = NULL;
  if (rc) return lm__fail(NULL, LM_ERROR_IO, "summary writer: cannot close '%s': %s", w->path, strerror(errno));
  return LM_OK;
}

void lm_summary_writer_free(lm_summary_writer *w) {
  if (!w) return;
  if (w->f) fclose(w->f);
  free(w->path);
  lm__pb_free(&w->event);
  lm__pb_free(&w->summary);
  lm__pb_free(&w->value);
  lm__pb_free(&w->meta);
  lm__pb_free(&w->plugin);
  lm__pb_free(&w->tensor);
  free(w);
}
