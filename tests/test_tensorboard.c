/* TensorBoard logs: CRC-32C, TFRecord framing, the event protobufs read back field by
 * field, PNG images checked with zlib, histogram buckets, Keras 3's model JSON against
 * fixtures from real Keras, and the callback's files after a fit. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "fixture.h"
#include "io/model_config.h"
#include "io/png.h"
#include "io/tfevents.h"
#include "train/train.h"
#include <dirent.h>
#include <ftw.h>
#include <lamina/lamina.h>
#include <lamina/tensorboard.h>
#include <math.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

/* ---- Scratch directories ---- */
static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
  return remove(path);
}

static void scratch_dir(char *buf, size_t len) {
  snprintf(buf, len, "/tmp/lm_tb_XXXXXX");
  assert_non_null(mkdtemp(buf));
}

static void remove_tree(const char *dir) { nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS); }

/* The only event file in dir (fails the test when there is not exactly one). */
static void event_file(const char *dir, char *out, size_t len) {
  DIR *d = opendir(dir);
  assert_non_null(d);
  int found = 0;
  struct dirent *e;
  while ((e = readdir(d))) {
    if (!strncmp(e->d_name, "events.out.tfevents.", 20)) {
      snprintf(out, len, "%s/%s", dir, e->d_name);
      found++;
    }
  }
  closedir(d);
  assert_int_equal(found, 1);
}

/* ---- Reading events back ---- */
typedef struct record {
  uint8_t *data;
  size_t n;
} record;

typedef struct events {
  record *r;
  int n;
} events;

static void load_events(const char *path, events *ev) {
  FILE *f = fopen(path, "rb");
  assert_non_null(f);
  memset(ev, 0, sizeof *ev);
  uint8_t *buf = NULL;
  size_t cap = 0, n;
  int rc;
  while ((rc = lm__tfrecord_read(f, &buf, &cap, &n)) == 1) {
    ev->r = realloc(ev->r, sizeof *ev->r * (size_t)(ev->n + 1));
    ev->r[ev->n].data = malloc(n ? n : 1);
    memcpy(ev->r[ev->n].data, buf, n);
    ev->r[ev->n++].n = n;
  }
  free(buf);
  fclose(f);
  if (rc) fail_msg("%s: %s", path, lm_last_error());
}

static void free_events(events *ev) {
  for (int i = 0; i < ev->n; i++) free(ev->r[i].data);
  free(ev->r);
}

/* One event's fields that the tests look at. */
typedef struct value {
  double wall_time;
  int64_t step;
  char file_version[32];
  const uint8_t *graph_def;
  size_t graph_def_len;
  char tag[256];
  char plugin[64];
  char content[16];
  int data_class;
  int dtype, rank;
  int64_t dims[4];
  const uint8_t *tensor_content;
  size_t tensor_content_len;
  float float_val;
  int n_float;
  int n_strings;
  const uint8_t *str[8];
  size_t str_len[8];
} value;

static void copy_str(char *dst, size_t cap, const uint8_t *s, size_t n) {
  if (n >= cap) n = cap - 1;
  memcpy(dst, s, n);
  dst[n] = '\0';
}

/* Walks the fields of one protobuf message. */
typedef struct pbit {
  const uint8_t *p, *end;
  int field, wire;
  uint64_t u;
  const uint8_t *d;
  size_t n;
} pbit;

static pbit pb_over(const uint8_t *d, size_t n) { return (pbit){.p = d, .end = d + n}; }

static bool pb_iter(pbit *it) {
  int rc = lm__pb_next(&it->p, it->end, &it->field, &it->wire, &it->u, &it->d, &it->n);
  if (rc < 0) fail_msg("malformed protobuf");
  return rc == 1;
}

static void parse_tensor(value *v, const uint8_t *data, size_t len) {
  for (pbit t = pb_over(data, len); pb_iter(&t);) {
    if (t.field == 1) v->dtype = (int)t.u;
    else if (t.field == 2) {
      for (pbit shape = pb_over(t.d, t.n); pb_iter(&shape);) {
        assert_int_equal(shape.field, 2);
        for (pbit dim = pb_over(shape.d, shape.n); pb_iter(&dim);)
          if (dim.field == 1 && v->rank < 4) v->dims[v->rank] = (int64_t)dim.u;
        v->rank++;
      }
    } else if (t.field == 4) v->tensor_content = t.d, v->tensor_content_len = t.n;
    else if (t.field == 5) {
      assert_int_equal(t.wire, LM_PB_LEN);
      v->n_float = (int)(t.n / 4);
      uint32_t bits = (uint32_t)t.d[0] | (uint32_t)t.d[1] << 8 | (uint32_t)t.d[2] << 16 | (uint32_t)t.d[3] << 24;
      memcpy(&v->float_val, &bits, 4);
    } else if (t.field == 8) {
      if (v->n_strings < 8) v->str[v->n_strings] = t.d, v->str_len[v->n_strings] = t.n;
      v->n_strings++;
    }
  }
}

static void parse_event(const record *r, value *v) {
  memset(v, 0, sizeof *v);
  int n_values = 0;
  for (pbit e = pb_over(r->data, r->n); pb_iter(&e);) {
    if (e.field == 1) memcpy(&v->wall_time, &e.u, 8);
    else if (e.field == 2) v->step = (int64_t)e.u;
    else if (e.field == 3) copy_str(v->file_version, sizeof v->file_version, e.d, e.n);
    else if (e.field == 4) v->graph_def = e.d, v->graph_def_len = e.n;
    else if (e.field == 5) {
      for (pbit sum = pb_over(e.d, e.n); pb_iter(&sum);) {
        assert_int_equal(sum.field, 1);
        n_values++;
        for (pbit val = pb_over(sum.d, sum.n); pb_iter(&val);) {
          if (val.field == 1) copy_str(v->tag, sizeof v->tag, val.d, val.n);
          else if (val.field == 8) parse_tensor(v, val.d, val.n);
          else if (val.field == 9) {
            for (pbit meta = pb_over(val.d, val.n); pb_iter(&meta);) {
              if (meta.field == 4) v->data_class = (int)meta.u;
              else if (meta.field == 1) {
                for (pbit pd = pb_over(meta.d, meta.n); pb_iter(&pd);) {
                  if (pd.field == 1) copy_str(v->plugin, sizeof v->plugin, pd.d, pd.n);
                  else if (pd.field == 2) copy_str(v->content, sizeof v->content, pd.d, pd.n);
                }
              }
            }
          }
        }
      }
    }
  }
  assert_true(n_values <= 1);
}

/* The events with this tag, in file order. */
static int find_tag(const events *ev, const char *tag, value *out, int max) {
  int k = 0;
  for (int i = 0; i < ev->n; i++) {
    value v;
    parse_event(&ev->r[i], &v);
    if (!strcmp(v.tag, tag)) {
      if (k < max) out[k] = v;
      k++;
    }
  }
  return k;
}

static double tensor_double(const value *v, int64_t i) {
  double x;
  assert_true((size_t)(i + 1) * 8 <= v->tensor_content_len);
  memcpy(&x, v->tensor_content + 8 * i, 8);
  return x;
}

/* ---- CRC-32C and framing ---- */
static void test_crc32c_vectors(void **state) {
  assert_int_equal(lm__crc32c("123456789", 9), 0xE3069283u);
  assert_int_equal(lm__crc32c("", 0), 0);
  /* RFC 3720, B.4 */
  uint8_t b[48];
  memset(b, 0, 32);
  assert_int_equal(lm__crc32c(b, 32), 0x8A9136AAu);
  memset(b, 0xff, 32);
  assert_int_equal(lm__crc32c(b, 32), 0x62A8AB43u);
  for (int i = 0; i < 32; i++) b[i] = (uint8_t)i;
  assert_int_equal(lm__crc32c(b, 32), 0x46DD794Eu);
  for (int i = 0; i < 32; i++) b[i] = (uint8_t)(31 - i);
  assert_int_equal(lm__crc32c(b, 32), 0x113FDB5Cu);
  /* Running in pieces gives the same crc (the 8-byte path and the byte path agree). */
  for (int i = 0; i < 48; i++) b[i] = (uint8_t)(i * 37 + 11);
  for (size_t cut = 0; cut <= 48; cut += 5)
    assert_int_equal(lm__crc32c_extend(lm__crc32c(b, cut), b + cut, 48 - cut), lm__crc32c(b, 48));
  /* The mask: rotate right 15, add the constant. */
  uint32_t c = 0xE3069283u;
  assert_int_equal(lm__crc32c_masked("123456789", 9), ((c >> 15) | (c << 17)) + 0xa282ead8u);
}

static void test_varint_and_fields(void **state) {
  lm_pb pb = {0};
  lm__pb_varint(&pb, 300);
  assert_int_equal(pb.len, 2);
  assert_int_equal(pb.data[0], 0xAC);
  assert_int_equal(pb.data[1], 0x02);
  pb.len = 0;
  lm__pb_uint(&pb, 2, (uint64_t)-1); /* int64 -1: ten bytes */
  assert_int_equal(pb.len, 11);
  lm__pb_string(&pb, 1, "abc");
  lm__pb_double(&pb, 3, 2.5);
  lm__pb_float(&pb, 15, -1.5f);
  const uint8_t *p = pb.data, *end = pb.data + pb.len, *d;
  int field, wire;
  uint64_t u;
  size_t n;
  assert_int_equal(lm__pb_next(&p, end, &field, &wire, &u, &d, &n), 1);
  assert_int_equal(field, 2);
  assert_true(u == (uint64_t)-1);
  assert_int_equal(lm__pb_next(&p, end, &field, &wire, &u, &d, &n), 1);
  assert_int_equal(field, 1);
  assert_int_equal(n, 3);
  assert_memory_equal(d, "abc", 3);
  assert_int_equal(lm__pb_next(&p, end, &field, &wire, &u, &d, &n), 1);
  double x;
  memcpy(&x, &u, 8);
  assert_true(field == 3 && wire == LM_PB_I64 && x == 2.5);
  assert_int_equal(lm__pb_next(&p, end, &field, &wire, &u, &d, &n), 1);
  uint32_t bits = (uint32_t)u;
  float fx;
  memcpy(&fx, &bits, 4);
  assert_true(field == 15 && wire == LM_PB_I32 && fx == -1.5f);
  assert_int_equal(lm__pb_next(&p, end, &field, &wire, &u, &d, &n), 0);
  /* Truncated input is refused, never read past. */
  uint8_t bad[] = {0x0a, 0x05, 'a', 'b'};
  p = bad;
  assert_int_equal(lm__pb_next(&p, bad + sizeof bad, &field, &wire, &u, &d, &n), -1);
  uint8_t bad_varint[] = {0x08, 0xff, 0xff};
  p = bad_varint;
  assert_int_equal(lm__pb_next(&p, bad_varint + sizeof bad_varint, &field, &wire, &u, &d, &n), -1);
  lm__pb_free(&pb);
}

static void test_tfrecord_framing(void **state) {
  char dir[64], path[128];
  scratch_dir(dir, sizeof dir);
  snprintf(path, sizeof path, "%s/records", dir);
  FILE *f = fopen(path, "wb");
  assert_non_null(f);
  assert_int_equal(lm__tfrecord_write(f, "hello", 5), 0);
  assert_int_equal(lm__tfrecord_write(f, "", 0), 0);
  fclose(f);
  /* Layout: u64 length, masked crc of those 8 bytes, data, masked crc of the data. */
  f = fopen(path, "rb");
  uint8_t b[64];
  size_t got = fread(b, 1, sizeof b, f);
  fclose(f);
  assert_int_equal(got, 12 + 5 + 4 + 12 + 4);
  assert_int_equal(b[0], 5);
  for (int i = 1; i < 8; i++) assert_int_equal(b[i], 0);
  uint32_t lc = lm__crc32c_masked(b, 8), dc = lm__crc32c_masked("hello", 5);
  assert_int_equal(b[8] | b[9] << 8 | b[10] << 16 | (uint32_t)b[11] << 24, lc);
  assert_memory_equal(b + 12, "hello", 5);
  assert_int_equal(b[17] | b[18] << 8 | b[19] << 16 | (uint32_t)b[20] << 24, dc);
  /* Read back; then a flipped data byte is a CRC error. */
  events ev;
  load_events(path, &ev);
  assert_int_equal(ev.n, 2);
  assert_int_equal(ev.r[0].n, 5);
  assert_int_equal(ev.r[1].n, 0);
  free_events(&ev);
  b[13] ^= 1;
  f = fopen(path, "wb");
  fwrite(b, 1, got, f);
  fclose(f);
  f = fopen(path, "rb");
  uint8_t *buf = NULL;
  size_t cap = 0, n;
  assert_int_equal(lm__tfrecord_read(f, &buf, &cap, &n), -1);
  assert_non_null(strstr(lm_last_error(), "CRC"));
  fclose(f);
  /* A truncated file is an error too. */
  f = fopen(path, "wb");
  fwrite(b, 1, 15, f);
  fclose(f);
  f = fopen(path, "rb");
  assert_int_equal(lm__tfrecord_read(f, &buf, &cap, &n), -1);
  fclose(f);
  free(buf);
  remove_tree(dir);
}

/* ---- PNG ---- */
static uint32_t be32(const uint8_t *b) { return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3]; }

/* Decodes what lm__png_encode writes (filters None and Up), checking every chunk's CRC
 * with zlib; zlib's uncompress checks the stream's Adler-32. */
static uint8_t *png_decode(const uint8_t *png, size_t len, int *h, int *w, int *channels) {
  static const uint8_t sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  static const int channels_of[7] = {1, 0, 3, 0, 2, 0, 4};
  assert_true(len > 8);
  assert_memory_equal(png, sig, 8);
  size_t pos = 8;
  uint8_t *idat = NULL;
  size_t idat_len = 0;
  int saw_end = 0;
  while (pos + 12 <= len && !saw_end) {
    uint32_t n = be32(png + pos);
    assert_true(pos + 12 + n <= len);
    const uint8_t *type = png + pos + 4, *data = type + 4;
    uLong crc = crc32(crc32(0L, Z_NULL, 0), type, 4 + n);
    assert_int_equal(be32(data + n), (uint32_t)crc);
    if (!memcmp(type, "IHDR", 4)) {
      assert_int_equal(n, 13);
      *w = (int)be32(data), *h = (int)be32(data + 4);
      assert_int_equal(data[8], 8);
      *channels = channels_of[data[9]];
      assert_true(*channels > 0);
      assert_int_equal(data[10] | data[11] | data[12], 0);
    } else if (!memcmp(type, "IDAT", 4)) {
      idat = realloc(idat, idat_len + n);
      memcpy(idat + idat_len, data, n);
      idat_len += n;
    } else if (!memcmp(type, "IEND", 4)) saw_end = 1;
    pos += 12 + n;
  }
  assert_true(saw_end);
  assert_int_equal(pos, len);
  size_t row = (size_t)*w * (size_t)*channels;
  uLongf raw_len = (uLongf)((row + 1) * (size_t)*h);
  uint8_t *raw = malloc(raw_len), *px = malloc(row * (size_t)*h);
  assert_int_equal(uncompress(raw, &raw_len, idat, idat_len), Z_OK);
  assert_int_equal(raw_len, (row + 1) * (size_t)*h);
  for (size_t y = 0; y < (size_t)*h; y++) {
    uint8_t filter = raw[y * (row + 1)];
    assert_true(filter == 0 || filter == 2);
    for (size_t i = 0; i < row; i++) {
      uint8_t up = filter == 2 && y ? px[(y - 1) * row + i] : 0;
      px[y * row + i] = (uint8_t)(raw[y * (row + 1) + 1 + i] + up);
    }
  }
  free(raw);
  free(idat);
  return px;
}

static void test_png_round_trip(void **state) {
  for (int c = 1; c <= 4; c++) {
    int h = 7, w = 5;
    uint8_t px[7 * 5 * 4];
    for (int i = 0; i < h * w * c; i++) px[i] = (uint8_t)(i * 29 + c * 7);
    uint8_t *png;
    size_t len;
    assert_int_equal(lm__png_encode(px, h, w, c, &png, &len), LM_OK);
    int dh, dw, dc;
    uint8_t *back = png_decode(png, len, &dh, &dw, &dc);
    assert_int_equal(dh, h);
    assert_int_equal(dw, w);
    assert_int_equal(dc, c);
    assert_memory_equal(back, px, (size_t)(h * w * c));
    free(back);
    free(png);
  }
  uint8_t one = 1, *png;
  size_t len;
  assert_int_equal(lm__png_encode(&one, 1, 1, 5, &png, &len), LM_ERROR_VALUE);
  assert_int_equal(lm__png_encode(&one, 0, 1, 1, &png, &len), LM_ERROR_VALUE);
  assert_null(png);
}

/* ---- Histogram buckets ---- */
static void test_histogram_buckets(void **state) {
  double out[3 * 30];
  /* 0..9 over 5 buckets: width 1.8, two values each; the max lands in the last bucket. */
  float v[10];
  for (int i = 0; i < 10; i++) v[i] = (float)i;
  lm__histogram_buckets(v, 10, 5, out);
  for (int b = 0; b < 5; b++) {
    assert_true(fabs(out[3 * b] - 1.8 * b) < 1e-12);
    assert_true(fabs(out[3 * b + 1] - (b == 4 ? 9.0 : 1.8 * (b + 1))) < 1e-12);
    assert_true(out[3 * b + 2] == 2);
  }
  assert_true(out[3 * 4 + 1] == 9.0); /* the last edge is exactly max */
  /* Reference from TensorBoard's histogram_pb (numpy, same rules as tf.summary.histogram). */
  float w[7] = {-0.3f, 0.1f, 0.25f, 0.25f, 0.7f, -0.05f, 0.69f};
  lm__histogram_buckets(w, 7, 4, out);
  const double counts[4] = {1, 2, 2, 2};
  double lo = (double)-0.3f, hi = (double)0.7f, step = (hi - lo) / 4;
  for (int b = 0; b < 4; b++) {
    assert_true(out[3 * b] == lo + b * step);
    assert_true(out[3 * b + 2] == counts[b]);
  }
  /* One distinct value: every bucket [v, v], the count in the last. */
  float same[3] = {2.5f, 2.5f, 2.5f};
  lm__histogram_buckets(same, 3, 30, out);
  for (int b = 0; b < 30; b++) {
    assert_true(out[3 * b] == 2.5 && out[3 * b + 1] == 2.5);
    assert_true(out[3 * b + 2] == (b == 29 ? 3 : 0));
  }
  /* No data: zeros. NaN and infinities are left out. */
  lm__histogram_buckets(NULL, 0, 30, out);
  for (int i = 0; i < 90; i++) assert_true(out[i] == 0);
  float odd[4] = {NAN, 1.0f, INFINITY, 3.0f};
  lm__histogram_buckets(odd, 4, 2, out);
  assert_true(out[0] == 1.0 && out[1] == 2.0 && out[2] == 1 && out[3] == 2.0 && out[4] == 3.0 && out[5] == 1);
}

/* ---- The writer ---- */
static void test_writer_events(void **state) {
  char dir[64], sub[128], path[512];
  scratch_dir(dir, sizeof dir);
  snprintf(sub, sizeof sub, "%s/a/b/run", dir); /* parents are created */
  lm_summary_writer *w = lm_summary_writer_new(sub);
  assert_non_null(w);
  /* events.out.tfevents.<10 digits>.<host>.<pid>.<n>.v2 */
  const char *name = strrchr(lm_summary_writer_path(w), '/') + 1;
  assert_int_equal(strncmp(name, "events.out.tfevents.", 20), 0);
  for (int i = 20; i < 30; i++) assert_true(name[i] >= '0' && name[i] <= '9');
  assert_int_equal(name[30], '.');
  assert_non_null(strstr(name, ".v2"));
  char pid[32];
  snprintf(pid, sizeof pid, ".%ld.", (long)getpid());
  assert_non_null(strstr(name, pid));

  assert_int_equal(lm_summary_scalar(w, "loss", 3, 0.25), LM_OK);
  float vals[6] = {1, 2, 3, 4, 5, 6};
  assert_int_equal(lm_summary_histogram(w, "dense/kernel/histogram", 4, vals, 6), LM_OK);
  uint8_t img[2 * 3 * 3];
  for (int i = 0; i < 18; i++) img[i] = (uint8_t)(i * 14);
  assert_int_equal(lm_summary_image(w, "pic", 5, img, 2, 3, 3), LM_OK);
  assert_int_equal(lm_summary_text(w, "note", 6, "hello *world*"), LM_OK);
  /* Each event is flushed: a reader sees it before the writer is closed. */
  events ev;
  event_file(sub, path, sizeof path);
  load_events(path, &ev);
  assert_int_equal(ev.n, 5);
  free_events(&ev);
  assert_int_equal(lm_summary_writer_close(w), LM_OK);
  assert_int_equal(lm_summary_scalar(w, "late", 7, 1), LM_ERROR_STATE);
  lm_summary_writer_free(w);

  load_events(path, &ev);
  assert_int_equal(ev.n, 5);
  value v;
  parse_event(&ev.r[0], &v);
  assert_string_equal(v.file_version, "brain.Event:2");
  assert_true(v.wall_time > 1.6e9);

  parse_event(&ev.r[1], &v);
  assert_string_equal(v.tag, "loss");
  assert_int_equal(v.step, 3);
  assert_string_equal(v.plugin, "scalars");
  assert_int_equal(v.data_class, LM_DATA_CLASS_SCALAR);
  assert_int_equal(v.dtype, LM_TF_FLOAT);
  assert_int_equal(v.rank, 0);
  assert_int_equal(v.n_float, 1);
  assert_true(v.float_val == 0.25f);

  parse_event(&ev.r[2], &v);
  assert_string_equal(v.tag, "dense/kernel/histogram");
  assert_int_equal(v.step, 4);
  assert_string_equal(v.plugin, "histograms");
  assert_int_equal(v.data_class, LM_DATA_CLASS_TENSOR);
  assert_int_equal(v.dtype, LM_TF_DOUBLE);
  assert_int_equal(v.rank, 2);
  assert_int_equal(v.dims[0], 30);
  assert_int_equal(v.dims[1], 3);
  assert_int_equal(v.tensor_content_len, 30 * 3 * 8);
  double total = 0;
  for (int b = 0; b < 30; b++) total += tensor_double(&v, 3 * b + 2);
  assert_true(total == 6);
  assert_true(tensor_double(&v, 0) == 1.0 && tensor_double(&v, 3 * 29 + 1) == 6.0);

  parse_event(&ev.r[3], &v);
  assert_string_equal(v.tag, "pic");
  assert_string_equal(v.plugin, "images");
  assert_int_equal(v.data_class, LM_DATA_CLASS_BLOB_SEQUENCE);
  assert_int_equal(v.dtype, LM_TF_STRING);
  assert_int_equal(v.rank, 1);
  assert_int_equal(v.dims[0], 3);
  assert_int_equal(v.n_strings, 3);
  assert_true(v.str_len[0] == 1 && v.str[0][0] == '3'); /* width first */
  assert_true(v.str_len[1] == 1 && v.str[1][0] == '2');
  int h, wd, c;
  uint8_t *px = png_decode(v.str[2], v.str_len[2], &h, &wd, &c);
  assert_true(h == 2 && wd == 3 && c == 3);
  assert_memory_equal(px, img, sizeof img);
  free(px);

  parse_event(&ev.r[4], &v);
  assert_string_equal(v.tag, "note");
  assert_string_equal(v.plugin, "text");
  assert_int_equal(v.dtype, LM_TF_STRING);
  assert_int_equal(v.rank, 0);
  assert_int_equal(v.n_strings, 1);
  assert_int_equal(v.str_len[0], 13);
  assert_memory_equal(v.str[0], "hello *world*", 13);
  free_events(&ev);

  /* Two writers on one directory never share a file. */
  lm_summary_writer *a = lm_summary_writer_new(sub), *b = lm_summary_writer_new(sub);
  assert_non_null(a);
  assert_non_null(b);
  assert_string_not_equal(lm_summary_writer_path(a), lm_summary_writer_path(b));
  lm_summary_writer_free(a);
  lm_summary_writer_free(b);
  remove_tree(dir);
}

static void test_writer_errors(void **state) {
  char dir[64], file[128], bad[192];
  scratch_dir(dir, sizeof dir);
  snprintf(file, sizeof file, "%s/plain_file", dir);
  FILE *f = fopen(file, "w");
  fputs("x", f);
  fclose(f);
  /* A directory under a regular file cannot be made: NULL, and the message names it. */
  snprintf(bad, sizeof bad, "%s/logs", file);
  assert_null(lm_summary_writer_new(bad));
  assert_non_null(strstr(lm_last_error(), bad));
  assert_null(lm_summary_writer_new(file));
  assert_non_null(strstr(lm_last_error(), file));
  assert_null(lm_summary_writer_new(NULL));
  assert_null(lm_summary_writer_new(""));
  if (geteuid() != 0) { /* root writes anywhere */
    char ro[128];
    snprintf(ro, sizeof ro, "%s/readonly", dir);
    mkdir(ro, 0555);
    assert_null(lm_summary_writer_new(ro));
    assert_non_null(strstr(lm_last_error(), ro));
  }
  lm_summary_writer *w = lm_summary_writer_new(dir);
  assert_non_null(w);
  uint8_t px[4] = {0};
  assert_int_equal(lm_summary_image(w, "img", 0, px, 2, 2, 5), LM_ERROR_VALUE);
  assert_int_equal(lm_summary_image(w, "img", 0, NULL, 2, 2, 1), LM_ERROR_VALUE);
  assert_int_equal(lm_summary_histogram(w, "h", 0, NULL, 3), LM_ERROR_VALUE);
  assert_int_equal(lm_summary_text(w, "t", 0, NULL), LM_ERROR_VALUE);
  assert_int_equal(lm_summary_scalar(w, "", 0, 1), LM_ERROR_VALUE);
  assert_int_equal(lm_summary_histogram(w, "empty", 0, NULL, 0), LM_OK);
  assert_int_equal(lm_summary_writer_flush(w), LM_OK);
  lm_summary_writer_free(w);
  assert_int_equal(lm_summary_scalar(NULL, "x", 0, 1), LM_ERROR_VALUE);
  assert_int_equal(lm_summary_writer_close(NULL), LM_ERROR_VALUE);
  lm_summary_writer_free(NULL);
  remove_tree(dir);
}

/* ---- Model JSON against Keras ---- */
static void test_py_float_repr(void **state) {
  const struct {
    double v;
    const char *want;
  } cases[] = {{1e-5, "1e-05"},         {0.3, "0.3"},          {1.0, "1.0"},
               {1e16, "1e+16"},         {1e15, "1000000000000000.0"}, {123456789.0, "123456789.0"},
               {0.1 + 0.2, "0.30000000000000004"}, {5e-324, "5e-324"}, {1.5e300, "1.5e+300"},
               {(double)0.01f, "0.009999999776482582"}, {-2.5, "-2.5"}, {0.0001, "0.0001"},
               {-0.0, "-0.0"},           {0.0, "0.0"},          {NAN, "NaN"}};
  char buf[40];
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
    assert_string_equal(lm__py_float_repr(cases[i].v, buf, sizeof buf), cases[i].want);
}

static lm_model *fixture_model(const char *name) {
  if (!strcmp(name, "mlp")) {
    lm_tensor *x = lm_input(LM_SHAPE(8), .name = "x");
    lm_tensor *h = lm_call(lm_dense(16, .activation = LM_RELU, .name = "h1"), x);
    h = lm_call(lm_dropout(0.25, .name = "drop"), h);
    lm_tensor *y = lm_call(lm_dense(1, .activation = LM_SIGMOID, .name = "out"), h);
    return lm_model_new(LM_TENSORS(x), LM_TENSORS(y), .name = "mlp");
  }
  if (!strcmp(name, "multi")) {
    lm_tensor *a_in = lm_input(LM_SHAPE(8), .name = "a_in"), *b_in = lm_input(LM_SHAPE(4), .name = "b_in");
    lm_tensor *a = lm_call(lm_dense(16, .activation = LM_ELU, .name = "da"), a_in);
    lm_tensor *b = lm_call(lm_dense(16, .no_bias = true, .kernel_initializer = LM_INIT(LM_HE_NORMAL), .name = "db"), b_in);
    lm_tensor *c = lm_concatenate(LM_TENSORS(a, b), .name = "cat");
    lm_tensor *d = lm_call(lm_dropout(0.3, .seed = 5, .name = "drop"), c);
    lm_tensor *e = lm_call(lm_reshape(LM_SHAPE(8, 4), .name = "resh"), d);
    lm_tensor *f = lm_call(lm_flatten(.name = "flat"), e);
    lm_tensor *g = lm_call(lm_activation_layer(LM_TANH, .name = "act"), f);
    lm_tensor *s = lm_add(LM_TENSORS(g, g), .name = "add");
    s = lm_subtract(LM_TENSORS(s, g), .name = "sub");
    s = lm_multiply(LM_TENSORS(s, g, g), .name = "mul");
    s = lm_average(LM_TENSORS(s, g), .name = "avg");
    s = lm_maximum(LM_TENSORS(s, g), .name = "max");
    lm_tensor *e2 = lm_concatenate(LM_TENSORS(e, e), .axis = 1, .name = "cat1");
    lm_layer *shared = lm_dense(32, .activation = LM_SELU, .kernel_initializer = LM_INIT(LM_LECUN_UNIFORM), .name = "shared");
    lm_tensor *h = lm_call(shared, s);
    h = lm_call(shared, h);
    lm_tensor *o = lm_call(lm_dense(3, .activation = LM_SOFTMAX, .kernel_initializer = LM_INIT(LM_ORTHOGONAL, .a = 2.0),
                                    .bias_initializer = LM_INIT(LM_CONSTANT, .a = 0.1), .name = "out"),
                           h);
    return lm_model_new(LM_TENSORS(a_in, b_in), LM_TENSORS(o, g, e2), .name = "multi");
  }
  if (!strcmp(name, "nested")) {
    lm_layer *shared = lm_dense(3, .name = "sh", .kernel_initializer = LM_INIT(LM_RANDOM_NORMAL, .a = 0.5, .b = 2.0),
                                .bias_initializer = LM_INIT(LM_ONES));
    lm_tensor *i0 = lm_input(LM_SHAPE(3), .name = "i0");
    lm_model_new(LM_TENSORS(i0), LM_TENSORS(lm_call(shared, i0)), .name = "other");
    lm_tensor *ii = lm_input(LM_SHAPE(3), .name = "ii");
    lm_model *inner = lm_model_new(
        LM_TENSORS(ii), LM_TENSORS(lm_call(lm_dense(3, .kernel_initializer = LM_INIT(LM_GLOROT_NORMAL), .name = "d_in"), ii)),
        .name = "inner");
    lm_model *seq = lm_sequential(.name = "seq");
    lm_sequential_add(seq, lm_input_layer(LM_SHAPE(3), .name = "si"));
    lm_sequential_add(seq, lm_dense(3, .activation = LM_SWISH,
                                    .kernel_initializer = LM_INIT(LM_TRUNCATED_NORMAL, .a = 0.0, .b = 0.5), .name = "sd"));
    lm_tensor *x = lm_input(LM_SHAPE(3), .name = "x");
    lm_tensor *a = lm_call(inner, x), *b = lm_call(inner, a), *c = lm_call(shared, b), *d = lm_call(seq, c);
    return lm_model_new(LM_TENSORS(x), LM_TENSORS(d), .name = "outer");
  }
  if (!strcmp(name, "sequential")) {
    lm_model *m = lm_sequential(.name = "seqmodel");
    lm_sequential_add(m, lm_input_layer(LM_SHAPE(4), .name = "si"));
    lm_sequential_add(m, lm_dense(4, .activation = LM_GELU, .kernel_initializer = LM_INIT(LM_RANDOM_UNIFORM, .a = -1, .b = 1),
                                  .name = "d1"));
    lm_sequential_add(m, lm_dense(2, .activation = LM_SOFTPLUS, .kernel_initializer = LM_INIT(LM_HE_UNIFORM),
                                  .bias_initializer = LM_INIT(LM_ZEROS), .name = "d2"));
    lm_sequential_add(m, lm_dense(2, .activation = LM_LINEAR, .kernel_initializer = LM_INIT(LM_LECUN_NORMAL), .name = "d3"));
    return m;
  }
  if (!strcmp(name, "frozen")) {
    lm_tensor *x = lm_input(LM_SHAPE(5), .name = "x");
    lm_layer *d = lm_dense(2, .name = "frozen_dense");
    lm_layer_set_trainable(d, false);
    return lm_model_new(LM_TENSORS(x), LM_TENSORS(lm_call(d, x)), .name = "frozen");
  }
  return NULL;
}

/* The first difference, with some context, for a readable failure. */
static void assert_same_text(const char *what, const char *got, const char *want) {
  size_t i = 0;
  while (got[i] && got[i] == want[i]) i++;
  if (!got[i] && !want[i]) return;
  size_t from = i > 80 ? i - 80 : 0;
  fail_msg("%s differs at byte %zu:\n  lamina: ...%.160s\n  keras:  ...%.160s", what, i, got + from, want + from);
}

static void test_model_config_matches_keras(void **state) {
  char path[4096];
  FILE *f = fopen(fx_source_path(path, sizeof path, "tests/fixtures/keras_model_config.txt"), "r");
  if (!f) fail_msg("cannot open %s", path);
  size_t cap = 1 << 20;
  char *line = malloc(cap);
  int checked = 0;
  while (fgets(line, (int)cap, f)) {
    if (strncmp(line, "config ", 7)) continue;
    char *name = line + 7, *json = strchr(name, ' ');
    assert_non_null(json);
    *json++ = '\0';
    json[strcspn(json, "\n")] = '\0';
    lm_model *m = fixture_model(name);
    if (!m) fail_msg("no C model for fixture %s", name);
    if (lm_model_status(m)) fail_msg("%s: %s", name, lm_model_error(m));
    char *got = NULL;
    assert_int_equal(lm__model_config_json(m, &got), LM_OK);
    assert_same_text(name, got, json);
    free(got);
    lm_session_clear();
    checked++;
  }
  free(line);
  fclose(f);
  assert_int_equal(checked, 5);
}

static void test_model_config_errors(void **state) {
  char *out = (char *)1;
  assert_int_equal(lm__model_config_json(NULL, &out), LM_ERROR_VALUE);
  assert_null(out);
  lm_tensor *x = lm_input(LM_SHAPE(3), .name = "x");
  lm_tensor *bad = lm_call(lm_dense(2), lm_input(LM_SHAPE(3, 4)));
  lm_model *m = lm_model_new(LM_TENSORS(x), LM_TENSORS(bad)); /* disconnected */
  assert_int_not_equal(lm_model_status(m), LM_OK);
  assert_int_equal(lm__model_config_json(m, &out), LM_ERROR_STATE);
  /* Layer names with quotes and non-ASCII are escaped as json.dumps does. */
  lm_tensor *y = lm_call(lm_dense(2, .name = "d\"\xc3\xa9\n"), x);
  m = lm_model_new(LM_TENSORS(x), LM_TENSORS(y), .name = "m");
  assert_int_equal(lm__model_config_json(m, &out), LM_OK);
  assert_non_null(strstr(out, "\"name\": \"d\\\"\\u00e9\\n\""));
  free(out);
  lm_session_clear();
}

/* ---- The callback ---- */
static lm_array *random_array(lm_shape shape, uint32_t seed) {
  lm_array *a = lm_array_new(LM_FLOAT32, shape);
  for (int64_t i = 0; i < a->size; i++) {
    seed = seed * 1664525u + 1013904223u;
    lm_array_f32(a)[i] = (float)(seed >> 8) / 16777216.0f - 0.5f;
  }
  return a;
}

static void test_callback_logs(void **state) {
  lm_set_seed(7);
  char dir[64], logdir[128], train[192], val[192], path[512];
  scratch_dir(dir, sizeof dir);
  snprintf(logdir, sizeof logdir, "%s/logs", dir);
  snprintf(train, sizeof train, "%s/train", logdir);
  snprintf(val, sizeof val, "%s/validation", logdir);

  lm_tensor *x = lm_input(LM_SHAPE(6), .name = "x");
  lm_tensor *h = lm_call(lm_dense(5, .activation = LM_RELU, .name = "hidden"), x);
  lm_tensor *y = lm_call(lm_dense(1, .name = "out"), h);
  lm_model *m = lm_model_new(LM_TENSORS(x), LM_TENSORS(y), .name = "tb_model");
  assert_int_equal(lm_compile(m, .optimizer = lm_sgd(.learning_rate = 0.05), .loss = LM_LOSSES("mse"),
                              .metrics = LM_METRICS("mae")),
                   LM_OK);
  lm_array *xs = random_array(LM_SHAPE(40, 6), 1), *ys = random_array(LM_SHAPE(40, 1), 2);
  lm_callback *cb = lm_tensorboard(.log_dir = logdir, .histogram_freq = 2, .update_freq = 3, .write_images = true,
                                   .write_steps_per_second = true);
  assert_non_null(cb);
  /* 32 training samples at batch 8: 4 steps an epoch; 8 validation samples, one batch. */
  lm_history *hist = lm_fit(m, LM_FEED(xs), LM_FEED(ys), .epochs = 3, .batch_size = 8, .validation_split = 0.2,
                            .verbose = LM_SILENT, .callbacks = LM_CALLBACKS(cb));
  assert_non_null(hist);

  events ev;
  value v[16];
  event_file(train, path, sizeof path);
  load_events(path, &ev);
  /* epoch_<key> at steps 0, 1, 2 with the History's values (as float32). */
  const char *keys[] = {"loss", "mae"};
  for (int k = 0; k < 2; k++) {
    char tag[64];
    snprintf(tag, sizeof tag, "epoch_%s", keys[k]);
    assert_int_equal(find_tag(&ev, tag, v, 16), 3);
    for (int e = 0; e < 3; e++) {
      assert_int_equal(v[e].step, e);
      assert_true(v[e].float_val == (float)lm_history_get(hist, keys[k])[e]);
    }
  }
  assert_int_equal(find_tag(&ev, "epoch_learning_rate", v, 16), 3);
  assert_true(v[2].float_val == 0.05f);
  assert_int_equal(find_tag(&ev, "epoch_steps_per_second", v, 16), 3);
  assert_int_equal(find_tag(&ev, "epoch_val_loss", v, 16), 0);
  /* batch_<key> every 3 batches of 12: steps 3, 6, 9, 12. */
  assert_int_equal(find_tag(&ev, "batch_loss", v, 16), 4);
  for (int i = 0; i < 4; i++) assert_int_equal(v[i].step, 3 * (i + 1));
  assert_int_equal(find_tag(&ev, "batch_steps_per_second", v, 16), 4);
  /* Histograms at epochs 0 and 2, every weight, Keras's tags; images beside them. */
  const char *weights[] = {"hidden/kernel", "hidden/bias", "out/kernel", "out/bias"};
  for (int i = 0; i < 4; i++) {
    char tag[64];
    snprintf(tag, sizeof tag, "%s/histogram", weights[i]);
    assert_int_equal(find_tag(&ev, tag, v, 16), 2);
    assert_int_equal(v[0].step, 0);
    assert_int_equal(v[1].step, 2);
    assert_string_equal(v[0].plugin, "histograms");
    /* As in Keras, a weight that squeezes to a scalar (out/bias, shape (1,)) has no image. */
    snprintf(tag, sizeof tag, "%s/image", weights[i]);
    assert_int_equal(find_tag(&ev, tag, v, 16), i == 3 ? 0 : 2);
    if (i < 3) assert_string_equal(v[0].plugin, "images");
  }
  /* The last histogram counts every value of the final kernel. */
  assert_int_equal(find_tag(&ev, "hidden/kernel/histogram", v, 16), 2);
  double total = 0;
  for (int b = 0; b < 30; b++) total += tensor_double(&v[1], 3 * b + 2);
  assert_true(total == 30);
  /* hidden/kernel is (6, 5): one image, its longer side across (5 high, 6 wide). */
  assert_int_equal(find_tag(&ev, "hidden/kernel/image", v, 16), 2);
  assert_int_equal(v[0].n_strings, 3);
  assert_true(v[0].str[0][0] == '6' && v[0].str[1][0] == '5');
  /* The model's JSON under "keras", step 0, plugin graph_keras_model with content "1". */
  assert_int_equal(find_tag(&ev, "keras", v, 16), 1);
  assert_int_equal(v[0].step, 0);
  assert_string_equal(v[0].plugin, "graph_keras_model");
  assert_string_equal(v[0].content, "1");
  assert_int_equal(v[0].n_strings, 1);
  char *json = NULL;
  assert_int_equal(lm__model_config_json(m, &json), LM_OK);
  assert_int_equal(v[0].str_len[0], strlen(json));
  assert_memory_equal(v[0].str[0], json, strlen(json));
  free(json);
  /* The op graph (Event.graph_def), once, at the first batch: every node's inputs are
   * earlier nodes, names are unique, and the layers' ops and weights are there. */
  int n_graphs = 0;
  for (int i = 0; i < ev.n; i++) {
    value g;
    parse_event(&ev.r[i], &g);
    if (!g.graph_def) continue;
    n_graphs++;
    char names[64][192];
    int n_nodes = 0;
    for (pbit gd = pb_over(g.graph_def, g.graph_def_len); pb_iter(&gd);) {
      if (gd.field != 1) continue;
      assert_true(n_nodes < 64);
      for (pbit nd = pb_over(gd.d, gd.n); pb_iter(&nd);) {
        if (nd.field == 1) copy_str(names[n_nodes], sizeof names[0], nd.d, nd.n);
        if (nd.field == 3) {
          char in[192];
          copy_str(in, sizeof in, nd.d, nd.n);
          in[strcspn(in, ":")] = '\0';
          int found = 0;
          for (int k = 0; k < n_nodes; k++) found |= !strcmp(names[k], in);
          if (!found) fail_msg("op graph: input %s of node %s is not an earlier node", in, names[n_nodes]);
        }
      }
      for (int k = 0; k < n_nodes; k++) assert_string_not_equal(names[k], names[n_nodes]);
      n_nodes++;
    }
    /* hidden's relu is fused into its dense op */
    const char *want[] = {"x", "hidden/kernel", "hidden/bias", "hidden/dense_relu", "out/dense",
                          "targets/out", "loss/out", "loss/total"};
    for (size_t k = 0; k < sizeof want / sizeof want[0]; k++) {
      int found = 0;
      for (int j = 0; j < n_nodes; j++) found |= !strcmp(names[j], want[k]);
      if (!found) fail_msg("op graph: no node %s", want[k]);
    }
  }
  assert_int_equal(n_graphs, 1);
  free_events(&ev);

  /* validation/: epoch_<key> from val_<key>, evaluation_<key>_vs_iterations at the
   * optimizer's step count (4, 8, 12). */
  event_file(val, path, sizeof path);
  load_events(path, &ev);
  assert_int_equal(find_tag(&ev, "epoch_loss", v, 16), 3);
  for (int e = 0; e < 3; e++) assert_true(v[e].float_val == (float)lm_history_get(hist, "val_loss")[e]);
  assert_int_equal(find_tag(&ev, "epoch_mae", v, 16), 3);
  assert_int_equal(find_tag(&ev, "epoch_learning_rate", v, 16), 0);
  assert_int_equal(find_tag(&ev, "evaluation_loss_vs_iterations", v, 16), 3);
  for (int e = 0; e < 3; e++) {
    assert_int_equal(v[e].step, 4 * (e + 1));
    assert_true(v[e].float_val == (float)lm_history_get(hist, "val_loss")[e]);
  }
  assert_int_equal(find_tag(&ev, "evaluation_mae_vs_iterations", v, 16), 3);
  free_events(&ev);
  lm_history_free(hist);

  /* A second fit starts new event files, as Keras's set_model does. */
  hist = lm_fit(m, LM_FEED(xs), LM_FEED(ys), .epochs = 1, .batch_size = 8, .verbose = LM_SILENT,
                .callbacks = LM_CALLBACKS(cb));
  assert_non_null(hist);
  lm_history_free(hist);
  int n_files = 0;
  DIR *d = opendir(train);
  for (struct dirent *e; (e = readdir(d));) n_files += !strncmp(e->d_name, "events.out", 10);
  closedir(d);
  assert_int_equal(n_files, 2);

  lm_callback_free(cb);
  lm_array_free(xs);
  lm_array_free(ys);
  lm_session_clear();
  remove_tree(dir);
}

static void test_callback_embeddings(void **state) {
  lm_set_seed(3);
  char dir[64], path[512];
  scratch_dir(dir, sizeof dir);
  lm_tensor *x = lm_input(LM_SHAPE(4), .dtype = LM_INT32, .name = "tokens");
  lm_tensor *e = lm_call(lm_embedding(10, 3, .name = "words"), x);
  lm_tensor *y = lm_call(lm_dense(1, .name = "out"), lm_call(lm_flatten(), e));
  lm_model *m = lm_model_new(LM_TENSORS(x), LM_TENSORS(y));
  if (lm_model_status(m)) fail_msg("%s", lm_model_error(m));
  assert_int_equal(lm_compile(m, .optimizer = lm_sgd(), .loss = LM_LOSSES("mse")), LM_OK);
  lm_array *xs = lm_array_new(LM_INT32, LM_SHAPE(12, 4)), *ys = random_array(LM_SHAPE(12, 1), 5);
  for (int i = 0; i < 48; i++) lm_array_i32(xs)[i] = (i * 7) % 10;
  lm_callback *cb = lm_tensorboard(.log_dir = dir, .embeddings_freq = 1, .no_graph = true,
                                   .embeddings_metadata = LM_METADATA_DICT("words", "words.tsv"));
  lm_history *hist = lm_fit(m, LM_FEED(xs), LM_FEED(ys), .epochs = 2, .verbose = LM_SILENT, .callbacks = LM_CALLBACKS(cb));
  assert_non_null(hist);
  assert_int_equal(lm_history_n_epochs(hist), 2);
  lm_history_free(hist);
  lm_callback_free(cb);

  snprintf(path, sizeof path, "%s/projector_config.pbtxt", dir);
  FILE *f = fopen(path, "r");
  assert_non_null(f);
  char text[1024] = "";
  size_t n = fread(text, 1, sizeof text - 1, f);
  text[n] = '\0';
  fclose(f);
  assert_string_equal(text, "embeddings {\n"
                            "  tensor_name: \"words/embeddings\"\n"
                            "  metadata_path: \"words.tsv\"\n"
                            "  tensor_path: \"train/words_embeddings.tsv\"\n"
                            "}\n");
  /* The TSV holds the final matrix: 10 rows of 3 tab-separated values. */
  snprintf(path, sizeof path, "%s/train/words_embeddings.tsv", dir);
  f = fopen(path, "r");
  assert_non_null(f);
  const float *w = lm_array_f32(lm_layer_weight(lm_model_layer_by_name(m, "words"), 0, NULL));
  for (int r = 0; r < 10; r++)
    for (int c = 0; c < 3; c++) {
      float got;
      char sep;
      assert_int_equal(fscanf(f, "%f%c", &got, &sep), 2);
      assert_true(got == w[r * 3 + c]);
      assert_int_equal(sep, c < 2 ? '\t' : '\n');
    }
  assert_int_equal(fgetc(f), EOF);
  fclose(f);
  /* no_graph: no "keras" tag; no validation data: no validation run. */
  char train[192];
  snprintf(train, sizeof train, "%s/train", dir);
  event_file(train, path, sizeof path);
  events ev;
  value v[4];
  load_events(path, &ev);
  assert_int_equal(find_tag(&ev, "keras", v, 4), 0);
  assert_int_equal(find_tag(&ev, "epoch_loss", v, 4), 2);
  free_events(&ev);
  snprintf(path, sizeof path, "%s/validation", dir);
  assert_int_equal(access(path, F_OK), -1);

  /* Metadata for a layer that is not an Embedding: Keras's error, training never starts. */
  cb = lm_tensorboard(.log_dir = dir, .embeddings_freq = 1, .embeddings_metadata = LM_METADATA_DICT("out", "m.tsv"));
  hist = lm_fit(m, LM_FEED(xs), LM_FEED(ys), .epochs = 2, .verbose = LM_SILENT, .callbacks = LM_CALLBACKS(cb));
  assert_non_null(hist);
  assert_int_equal(lm_history_n_epochs(hist), 0);
  assert_non_null(strstr(lm_last_error(), "Unrecognized `Embedding` layer names"));
  assert_non_null(strstr(lm_last_error(), "'out'"));
  lm_history_free(hist);
  lm_callback_free(cb);

  lm_array_free(xs);
  lm_array_free(ys);
  lm_session_clear();
  remove_tree(dir);
}

static void test_callback_errors(void **state) {
  assert_null(lm_tensorboard(.histogram_freq = -1));
  assert_non_null(strstr(lm_last_error(), "histogram_freq -1"));
  assert_null(lm_tensorboard(.embeddings_metadata = {.n = 2, .item = {"a", "b"}}));

  char dir[64], file[128], bad[192];
  scratch_dir(dir, sizeof dir);
  snprintf(file, sizeof file, "%s/file", dir);
  FILE *f = fopen(file, "w");
  fclose(f);
  snprintf(bad, sizeof bad, "%s/logs", file);
  lm_tensor *x = lm_input(LM_SHAPE(2));
  lm_model *m = lm_model_new(LM_TENSORS(x), LM_TENSORS(lm_call(lm_dense(1), x)));
  lm_compile(m, .loss = LM_LOSSES("mse"));
  lm_array *xs = random_array(LM_SHAPE(8, 2), 1), *ys = random_array(LM_SHAPE(8, 1), 2);
  /* The log directory cannot be made: training stops before its first epoch, and says why. */
  lm_callback *cb = lm_tensorboard(.log_dir = bad);
  lm_history *h = lm_fit(m, LM_FEED(xs), LM_FEED(ys), .epochs = 3, .verbose = LM_SILENT, .callbacks = LM_CALLBACKS(cb));
  assert_non_null(h);
  assert_int_equal(lm_history_n_epochs(h), 0);
  assert_non_null(strstr(lm_last_error(), bad));
  lm_history_free(h);
  lm_callback_free(cb);
  /* The same without the graph: the directory is still made (and refused) at the start. */
  cb = lm_tensorboard(.log_dir = bad, .no_graph = true);
  h = lm_fit(m, LM_FEED(xs), LM_FEED(ys), .epochs = 3, .verbose = LM_SILENT, .callbacks = LM_CALLBACKS(cb));
  assert_non_null(h);
  assert_int_equal(lm_history_n_epochs(h), 0);
  lm_history_free(h);
  lm_callback_free(cb);
  lm_array_free(xs);
  lm_array_free(ys);
  lm_session_clear();
  remove_tree(dir);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_crc32c_vectors),
      cmocka_unit_test(test_varint_and_fields),
      cmocka_unit_test(test_tfrecord_framing),
      cmocka_unit_test(test_png_round_trip),
      cmocka_unit_test(test_histogram_buckets),
      cmocka_unit_test(test_writer_events),
      cmocka_unit_test(test_writer_errors),
      cmocka_unit_test(test_py_float_repr),
      cmocka_unit_test(test_model_config_matches_keras),
      cmocka_unit_test(test_model_config_errors),
      cmocka_unit_test(test_callback_logs),
      cmocka_unit_test(test_callback_embeddings),
      cmocka_unit_test(test_callback_errors),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
