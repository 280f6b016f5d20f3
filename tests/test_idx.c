/* IDX reader and Fashion-MNIST loader: round trips, and every kind of corrupt file. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "core/core.h"
#include <dirent.h>
#include <lamina/io.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#define FASHION_DIR "/usr/share/datasets/fashion-mnist"

static char tmpdir[64];

static int make_tmpdir(void **state) {
  strcpy(tmpdir, "/tmp/lamina_idx_XXXXXX");
  return mkdtemp(tmpdir) ? 0 : -1;
}

/* Removes tmpdir and what the tests left in it (files, and subdirectories one level deep). */
static void remove_tree(const char *dir) {
  DIR *d = opendir(dir);
  if (!d) return;
  struct dirent *e;
  while ((e = readdir(d))) {
    if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
    if (unlink(path) != 0) remove_tree(path);
  }
  closedir(d);
  rmdir(dir);
}

static int remove_tmpdir(void **state) {
  remove_tree(tmpdir);
  return 0;
}

/* Full path of a test file; the returned buffer is reused by the next call. */
static const char *tmp_path(const char *name) {
  static char path[2][512];
  static int which;
  which ^= 1;
  snprintf(path[which], sizeof path[which], "%s/%s", tmpdir, name);
  return path[which];
}

static void write_bytes(const char *path, const void *data, size_t n, int gz) {
  if (gz) {
    gzFile f = gzopen(path, "wb");
    assert_non_null(f);
    if (n) assert_int_equal(gzwrite(f, data, (unsigned)n), (int)n);
    assert_int_equal(gzclose(f), Z_OK);
  } else {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    if (n) assert_int_equal(fwrite(data, 1, n, f), n);
    assert_int_equal(fclose(f), 0);
  }
}

/* Builds an IDX image: header, big-endian dims, then data bytes as given. Returns its size. */
static size_t build_idx(uint8_t *buf, int type, int rank, const uint32_t *dims,
                        const void *data, size_t data_len) {
  size_t at = 0;
  buf[at++] = 0;
  buf[at++] = 0;
  buf[at++] = (uint8_t)type;
  buf[at++] = (uint8_t)rank;
  for (int i = 0; i < rank; i++) {
    buf[at++] = (uint8_t)(dims[i] >> 24);
    buf[at++] = (uint8_t)(dims[i] >> 16);
    buf[at++] = (uint8_t)(dims[i] >> 8);
    buf[at++] = (uint8_t)dims[i];
  }
  if (data_len) memcpy(buf + at, data, data_len);
  return at + data_len;
}

static const char *write_idx(const char *name, int gz, int type, int rank, const uint32_t *dims,
                             const void *data, size_t data_len) {
  uint8_t buf[4096];
  size_t n = build_idx(buf, type, rank, dims, data, data_len);
  const char *path = tmp_path(name);
  write_bytes(path, buf, n, gz);
  return path;
}

/* The read fails, and the message names the file and says what is wrong. */
static void expect_failure(const char *path, bool as_int32, const char *reason) {
  lm_array *a = lm_read_idx(path, as_int32, 1.0f);
  if (a) {
    lm_array_free(a);
    fail_msg("reading %s should have failed with \"%s\"", path, reason);
  }
  const char *msg = lm_last_error();
  if (!strstr(msg, path) || !strstr(msg, reason))
    fail_msg("error \"%s\" should name \"%s\" and say \"%s\"", msg, path, reason);
}

static void test_read_u8_plain_and_gzip(void **state) {
  uint8_t data[24];
  for (int i = 0; i < 24; i++) data[i] = (uint8_t)(i * 10 + 5);
  const uint32_t dims[3] = {2, 3, 4};
  for (int gz = 0; gz < 2; gz++) {
    const char *path = write_idx(gz ? "u8.gz" : "u8", gz, 0x08, 3, dims, data, sizeof data);
    lm_array *a = lm_read_idx(path, false, 1.0f / 255.0f);
    assert_non_null(a);
    assert_int_equal(a->dtype, LM_FLOAT32);
    assert_int_equal(a->shape.rank, 3);
    assert_int_equal(a->shape.dim[0], 2);
    assert_int_equal(a->shape.dim[1], 3);
    assert_int_equal(a->shape.dim[2], 4);
    assert_int_equal(a->size, 24);
    for (int i = 0; i < 24; i++) assert_float_equal(lm_array_f32(a)[i], data[i] / 255.0f, 1e-6);
    lm_array_free(a);

    a = lm_read_idx(path, true, 1.0f);
    assert_non_null(a);
    assert_int_equal(a->dtype, LM_INT32);
    for (int i = 0; i < 24; i++) assert_int_equal(lm_array_i32(a)[i], data[i]);
    lm_array_free(a);
  }
}

static void test_read_other_types(void **state) {
  const uint32_t dims[1] = {2};
  const uint8_t i8[] = {0xFF, 0x7F};                   /* -1, 127 */
  const uint8_t i16[] = {0xFF, 0xFE, 0x01, 0x00};      /* -2, 256 */
  const uint8_t i32[] = {0x80, 0, 0, 0, 0, 0, 0x01, 0}; /* INT32_MIN, 256 */
  const uint8_t f32[] = {0x3F, 0xC0, 0, 0, 0xC0, 0x20, 0, 0}; /* 1.5, -2.5 */
  const uint8_t f64[] = {0x3F, 0xF8, 0, 0, 0, 0, 0, 0, 0xC0, 0x04, 0, 0, 0, 0, 0, 0};

  lm_array *a = lm_read_idx(write_idx("i8", 0, 0x09, 1, dims, i8, 2), true, 1.0f);
  assert_non_null(a);
  assert_int_equal(lm_array_i32(a)[0], -1);
  assert_int_equal(lm_array_i32(a)[1], 127);
  lm_array_free(a);

  a = lm_read_idx(write_idx("i16", 1, 0x0B, 1, dims, i16, 4), false, 0.5f);
  assert_non_null(a);
  assert_float_equal(lm_array_f32(a)[0], -1.0f, 0);
  assert_float_equal(lm_array_f32(a)[1], 128.0f, 0);
  lm_array_free(a);

  a = lm_read_idx(write_idx("i32", 0, 0x0C, 1, dims, i32, 8), true, 1.0f);
  assert_non_null(a);
  assert_int_equal(lm_array_i32(a)[0], INT32_MIN);
  assert_int_equal(lm_array_i32(a)[1], 256);
  lm_array_free(a);

  a = lm_read_idx(write_idx("f32", 0, 0x0D, 1, dims, f32, 8), false, 2.0f);
  assert_non_null(a);
  assert_float_equal(lm_array_f32(a)[0], 3.0f, 0);
  assert_float_equal(lm_array_f32(a)[1], -5.0f, 0);
  lm_array_free(a);

  a = lm_read_idx(write_idx("f64", 1, 0x0E, 1, dims, f64, 16), false, 1.0f);
  assert_non_null(a);
  assert_float_equal(lm_array_f32(a)[0], 1.5f, 0);
  assert_float_equal(lm_array_f32(a)[1], -2.5f, 0);
  lm_array_free(a);

  expect_failure(tmp_path("f32"), true, "cannot be read as int32");
}

static void test_missing_and_empty(void **state) {
  expect_failure(tmp_path("does-not-exist"), false, "No such file or directory");
  write_bytes(tmp_path("empty"), "", 0, 0);
  expect_failure(tmp_path("empty"), false, "empty file");
  write_bytes(tmp_path("empty.gz"), "", 0, 1);
  expect_failure(tmp_path("empty.gz"), false, "empty file");
  assert_int_equal(mkdir(tmp_path("a-directory"), 0700), 0);
  expect_failure(tmp_path("a-directory"), false, "read error");
}

static void test_bad_header(void **state) {
  write_bytes(tmp_path("short-header"), "\0\0", 2, 0);
  expect_failure(tmp_path("short-header"), false, "truncated: expected a 4-byte IDX header");

  write_bytes(tmp_path("bad-magic"), "\x1f\x00\x08\x01\x00\x00\x00\x01\x05", 9, 0);
  expect_failure(tmp_path("bad-magic"), false, "not an IDX file: bad magic bytes 1f 00 08 01");
  write_bytes(tmp_path("text"), "hello, world\n", 13, 1);
  expect_failure(tmp_path("text"), false, "not an IDX file");

  const uint32_t dims[LM_MAX_RANK + 1] = {1, 1, 1, 1, 1, 1, 1, 1, 1};
  const uint8_t one = 7;
  expect_failure(write_idx("type07", 0, 0x07, 1, dims, &one, 1), false,
                 "unsupported IDX data type 0x07");
  expect_failure(write_idx("rank0", 0, 0x08, 0, dims, &one, 1), false, "IDX rank 0 is outside");
  expect_failure(write_idx("rank9", 0, 0x08, 9, dims, &one, 1), false, "IDX rank 9 is outside");

  /* Rank 3 but only one dimension size present. */
  write_bytes(tmp_path("short-dims"), "\0\0\x08\x03\0\0\0\x02", 8, 1);
  expect_failure(tmp_path("short-dims"), false,
                 "truncated: expected 3 dimension sizes (12 bytes) after the header, got 4");
}

static void test_bad_dims(void **state) {
  const uint8_t one = 7;
  const uint32_t huge[4] = {0xFFFFFFFFu, 0xFFFFFFFFu, 0xFFFFFFFFu, 0xFFFFFFFFu};
  expect_failure(write_idx("overflow", 0, 0x08, 4, huge, &one, 1), false,
                 "more than 2^31 elements");
  const uint32_t just_over[2] = {65536, 32769};
  expect_failure(write_idx("just-over", 0, 0x08, 2, just_over, &one, 1), false,
                 "dimensions 65536 x 32769 hold more than 2^31 elements");
  const uint32_t zero[3] = {5, 0, 3};
  expect_failure(write_idx("zero-dim", 0, 0x08, 3, zero, &one, 1), false,
                 "dimension 1 of 5 x 0 x 3 is 0");
  /* At the limit (16 GiB of f64 claimed) a 1-byte file must fail as truncated, without first
   * allocating the whole claimed size. */
  const uint32_t limit[2] = {32768, 65536};
  expect_failure(write_idx("claims-16g", 1, 0x0E, 2, limit, &one, 1), false,
                 "truncated: expected 17179869184 bytes of data for dimensions 32768 x 65536, "
                 "got 1");
}

static void test_truncated_and_trailing_data(void **state) {
  uint8_t data[25] = {0};
  const uint32_t dims[2] = {4, 6};
  for (int gz = 0; gz < 2; gz++) {
    expect_failure(write_idx(gz ? "short.gz" : "short", gz, 0x08, 2, dims, data, 10), false,
                   "truncated: expected 24 bytes of data for dimensions 4 x 6, got 10");
    expect_failure(write_idx(gz ? "long.gz" : "long", gz, 0x08, 2, dims, data, 25), false,
                   "trailing data after the 24 bytes");
  }
  /* i32 labels whose last element is cut in half. */
  const uint32_t two[1] = {2};
  expect_failure(write_idx("short-i32", 0, 0x0C, 1, two, data, 6), true,
                 "truncated: expected 8 bytes of data for dimensions 2, got 6");
}

static void test_corrupt_gzip(void **state) {
  uint8_t data[3000];
  for (size_t i = 0; i < sizeof data; i++) data[i] = (uint8_t)(i * 7 % 251);
  const uint32_t dims[2] = {30, 100};
  const char *path = write_idx("good.gz", 1, 0x08, 2, dims, data, sizeof data);
  uint8_t gz[8192];
  FILE *f = fopen(path, "rb");
  assert_non_null(f);
  size_t n = fread(gz, 1, sizeof gz, f);
  fclose(f);
  assert_true(n > 100 && n < sizeof gz);

  /* A gzip stream cut off in the middle. */
  write_bytes(tmp_path("cut.gz"), gz, n / 2, 0);
  expect_failure(tmp_path("cut.gz"), false, "truncated: expected 3000 bytes");
  /* Complete data but no gzip trailer (CRC and length): the file cannot be verified. */
  write_bytes(tmp_path("no-trailer.gz"), gz, n - 8, 0);
  expect_failure(tmp_path("no-trailer.gz"), false,
                 "truncated gzip stream: unexpected end of file");
  /* A wrong CRC. */
  gz[n - 8] ^= 0xFF;
  write_bytes(tmp_path("bad-crc.gz"), gz, n, 0);
  expect_failure(tmp_path("bad-crc.gz"), false, "corrupt gzip data");
  gz[n - 8] ^= 0xFF;
  /* Garbage in the deflate stream. */
  memset(gz + 20, 0xFF, 40);
  write_bytes(tmp_path("garbage.gz"), gz, n, 0);
  expect_failure(tmp_path("garbage.gz"), false, "corrupt gzip data");
}

/* A small fake Fashion-MNIST directory: nimg images, nlab labels in the training files. */
static const char *write_fake_fashion(int nimg, int nlab, uint8_t bad_label) {
  static char dir[512];
  snprintf(dir, sizeof dir, "%s/fashion-%d-%d-%d", tmpdir, nimg, nlab, bad_label);
  assert_int_equal(mkdir(dir, 0700), 0);
  static uint8_t pixels[3 * 28 * 28];
  for (size_t i = 0; i < sizeof pixels; i++) pixels[i] = (uint8_t)i;
  const uint8_t labels[3] = {9, 0, bad_label};
  static uint8_t buf[4096];
  const char *names[4] = {"train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                          "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"};
  for (int i = 0; i < 4; i++) {
    uint32_t dims[3] = {(uint32_t)(i == 0 ? nimg : i == 1 ? nlab : 3), 28, 28};
    size_t n = i % 2 ? build_idx(buf, 0x08, 1, dims, labels, dims[0])
                     : build_idx(buf, 0x08, 3, dims, pixels, dims[0] * 28 * 28);
    char path[600];
    snprintf(path, sizeof path, "%s/%s", dir, names[i]);
    write_bytes(path, buf, n, 1);
  }
  return dir;
}

static void expect_fashion_failure(const char *dir, const char *reason) {
  lm_array *x = (lm_array *)1, *y = (lm_array *)1, *xt = (lm_array *)1, *yt = (lm_array *)1;
  assert_int_equal(lm_load_fashion_mnist(dir, &x, &y, &xt, &yt), LM_ERROR_IO);
  assert_null(x);
  assert_null(y);
  assert_null(xt);
  assert_null(yt);
  if (!strstr(lm_last_error(), reason))
    fail_msg("error \"%s\" should say \"%s\"", lm_last_error(), reason);
}

static void test_fake_fashion(void **state) {
  const char *dir = write_fake_fashion(3, 3, 4);
  lm_array *x, *y, *xt, *yt;
  char slash[600];
  snprintf(slash, sizeof slash, "%s/", dir); /* a trailing slash must not matter */
  assert_int_equal(lm_load_fashion_mnist(slash, &x, &y, &xt, &yt), LM_OK);
  assert_int_equal(x->shape.rank, 3);
  assert_int_equal(x->shape.dim[0], 3);
  assert_int_equal(y->shape.dim[0], 3);
  assert_int_equal(lm_array_i32(y)[0], 9);
  assert_float_equal(lm_array_f32(x)[255], 1.0f, 1e-6);
  lm_array_free(x);
  lm_array_free(y);
  lm_array_free(xt);
  lm_array_free(yt);

  char reason[1200];
  dir = write_fake_fashion(3, 2, 4);
  snprintf(reason, sizeof reason,
           "%s/train-images-idx3-ubyte.gz holds 3 images but %s/train-labels-idx1-ubyte.gz "
           "holds 2 labels", dir, dir);
  expect_fashion_failure(dir, reason);

  dir = write_fake_fashion(3, 3, 10);
  expect_fashion_failure(dir, "train-labels-idx1-ubyte.gz: label 10 at index 2 is outside 0..9");

  expect_fashion_failure(tmp_path("no-such-dir"), "no-such-dir/train-images-idx3-ubyte.gz: "
                         "cannot open: No such file or directory");
}

static void test_real_fashion_mnist(void **state) {
  struct stat st;
  if (stat(FASHION_DIR, &st) != 0) skip();
  lm_array *x, *y, *xt, *yt;
  assert_int_equal(lm_load_fashion_mnist(FASHION_DIR, &x, &y, &xt, &yt), LM_OK);
  lm_array *xs[2] = {x, xt}, *ys[2] = {y, yt};
  const int64_t counts[2] = {60000, 10000};
  for (int s = 0; s < 2; s++) {
    assert_int_equal(xs[s]->dtype, LM_FLOAT32);
    assert_int_equal(xs[s]->shape.rank, 3);
    assert_int_equal(xs[s]->shape.dim[0], counts[s]);
    assert_int_equal(xs[s]->shape.dim[1], 28);
    assert_int_equal(xs[s]->shape.dim[2], 28);
    assert_int_equal(ys[s]->dtype, LM_INT32);
    assert_int_equal(ys[s]->shape.rank, 1);
    assert_int_equal(ys[s]->shape.dim[0], counts[s]);
    float lo = 1, hi = 0;
    for (int64_t i = 0; i < xs[s]->size; i++) {
      float v = lm_array_f32(xs[s])[i];
      lo = v < lo ? v : lo;
      hi = v > hi ? v : hi;
    }
    assert_true(lo == 0.0f && hi == 1.0f);
    int seen[10] = {0};
    for (int64_t i = 0; i < ys[s]->size; i++) {
      int32_t l = lm_array_i32(ys[s])[i];
      assert_in_range(l, 0, 9);
      seen[l]++;
    }
    for (int c = 0; c < 10; c++) assert_int_equal(seen[c], counts[s] / 10); /* balanced */
  }
  assert_int_equal(lm_array_i32(y)[0], 9); /* ankle boot */
  lm_array_free(x);
  lm_array_free(y);
  lm_array_free(xt);
  lm_array_free(yt);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_read_u8_plain_and_gzip),
      cmocka_unit_test(test_read_other_types),
      cmocka_unit_test(test_missing_and_empty),
      cmocka_unit_test(test_bad_header),
      cmocka_unit_test(test_bad_dims),
      cmocka_unit_test(test_truncated_and_trailing_data),
      cmocka_unit_test(test_corrupt_gzip),
      cmocka_unit_test(test_fake_fashion),
      cmocka_unit_test(test_real_fashion_mnist),
  };
  return cmocka_run_group_tests(tests, make_tmpdir, remove_tmpdir);
}
