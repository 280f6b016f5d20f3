/* NumPy files: reading what real numpy wrote (tests/fixtures/npy, made by
 * tools/make_npy_fixtures.py), writing byte for byte what numpy writes, .npz round trips,
 * and corrupt, truncated and hostile files, which must fail with a message naming the file
 * and never crash or read out of bounds (this test runs under ASan in the suite). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <lamina/io.h>
#include <unistd.h>

#include "fixture.h"

static char tmpdir[256];

static int setup_dir(void **state) {
  (void)state;
  snprintf(tmpdir, sizeof tmpdir, "/tmp/lamina_npy_XXXXXX");
  return mkdtemp(tmpdir) ? 0 : -1;
}

static int count_files(void) {
  DIR *d = opendir(tmpdir);
  int n = 0;
  struct dirent *e;
  while (d && (e = readdir(d)))
    if (e->d_name[0] != '.') n++;
  if (d) closedir(d);
  return n;
}

static int teardown_dir(void **state) {
  (void)state;
  DIR *d = opendir(tmpdir);
  struct dirent *e;
  char p[512];
  while (d && (e = readdir(d))) {
    if (e->d_name[0] == '.') continue;
    snprintf(p, sizeof p, "%s/%s", tmpdir, e->d_name);
    unlink(p);
  }
  if (d) closedir(d);
  rmdir(tmpdir);
  return 0;
}

static const char *fixture(const char *name) {
  static char path[1024];
  char rel[256];
  snprintf(rel, sizeof rel, "tests/fixtures/npy/%s", name);
  return fx_source_path(path, sizeof path, rel);
}

static const char *tmp(const char *name) {
  static char path[2][512];
  static int k;
  k ^= 1;
  snprintf(path[k], sizeof path[k], "%s/%s", tmpdir, name);
  return path[k];
}

static uint8_t *read_bytes(const char *path, size_t *len) {
  *len = 0;
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  uint8_t *b = malloc((size_t)n + 1);
  *len = fread(b, 1, (size_t)n, f);
  fclose(f);
  return b;
}

static void write_bytes(const char *path, const uint8_t *b, size_t n) {
  FILE *f = fopen(path, "wb");
  assert_non_null(f);
  assert_int_equal(fwrite(b, 1, n, f), n);
  fclose(f);
}

static void assert_shape(const lm_array *a, int rank, int64_t d0, int64_t d1) {
  assert_non_null(a);
  assert_int_equal(a->shape.rank, rank);
  if (rank > 0) assert_int_equal(a->shape.dim[0], d0);
  if (rank > 1) assert_int_equal(a->shape.dim[1], d1);
}

/* ---- Reading numpy's files ---- */

static void test_read_numpy_files(void **state) {
  (void)state;
  lm_array *a = lm_load_npy(fixture("f4_2x3.npy"));
  assert_shape(a, 2, 2, 3);
  assert_int_equal(a->dtype, LM_FLOAT32);
  for (int i = 0; i < 6; i++) assert_true(lm_array_f32(a)[i] == i * 0.5f - 1);
  lm_array_free(a);

  a = lm_load_npy(fixture("i4_5.npy"));
  assert_shape(a, 1, 5, 0);
  assert_int_equal(a->dtype, LM_INT32);
  const int32_t want_i4[5] = {3, -1, 0, INT32_MAX, INT32_MIN};
  assert_memory_equal(a->data, want_i4, sizeof want_i4);
  lm_array_free(a);

  a = lm_load_npy(fixture("f4_scalar.npy"));
  assert_shape(a, 0, 0, 0);
  assert_int_equal(a->size, 1);
  assert_true(lm_array_f32(a)[0] == 2.5f);
  lm_array_free(a);

  a = lm_load_npy(fixture("f8_2x2.npy")); /* float64 -> float32 */
  assert_shape(a, 2, 2, 2);
  assert_int_equal(a->dtype, LM_FLOAT32);
  assert_true(lm_array_f32(a)[0] == 1.5f && lm_array_f32(a)[1] == -2.0f);
  assert_true(lm_array_f32(a)[2] == 1e-3f && lm_array_f32(a)[3] == 3e38f);
  lm_array_free(a);

  a = lm_load_npy(fixture("i8_3.npy"));
  assert_int_equal(a->dtype, LM_INT32);
  assert_int_equal(lm_array_i32(a)[0], -5);
  assert_int_equal(lm_array_i32(a)[2], 7);
  lm_array_free(a);

  a = lm_load_npy(fixture("u1_4.npy"));
  assert_int_equal(a->dtype, LM_INT32);
  assert_int_equal(lm_array_i32(a)[2], 200);
  assert_int_equal(lm_array_i32(a)[3], 255);
  lm_array_free(a);

  a = lm_load_npy(fixture("b1_3.npy"));
  assert_int_equal(lm_array_i32(a)[0], 1);
  assert_int_equal(lm_array_i32(a)[1], 0);
  lm_array_free(a);

  a = lm_load_npy(fixture("i2_2.npy"));
  assert_int_equal(lm_array_i32(a)[0], -300);
  assert_int_equal(lm_array_i32(a)[1], 300);
  lm_array_free(a);

  a = lm_load_npy(fixture("be_f4_3.npy")); /* big-endian */
  assert_true(lm_array_f32(a)[0] == 1.0f && lm_array_f32(a)[1] == -2.5f && lm_array_f32(a)[2] == 4.0f);
  lm_array_free(a);

  a = lm_load_npy(fixture("v2_f4_2.npy")); /* format version 2.0 */
  assert_shape(a, 1, 2, 0);
  assert_true(lm_array_f32(a)[0] == 0.25f && lm_array_f32(a)[1] == 8.0f);
  lm_array_free(a);

  a = lm_load_npy(fixture("f4_1x2x3x4.npy"));
  assert_int_equal(a->shape.rank, 4);
  assert_true(lm_array_f32(a)[23] == 23.0f);
  lm_array_free(a);
}

static void expect_load_error(const char *path, const char *words) {
  lm_array *a = lm_load_npy(path);
  assert_null(a);
  if (!strstr(lm_last_error(), path) || !strstr(lm_last_error(), words))
    fail_msg("error for %s lacks \"%s\": %s", path, words, lm_last_error());
}

static void test_refused_numpy_files(void **state) {
  (void)state;
  expect_load_error(fixture("fortran_2x3.npy"), "Fortran");
  expect_load_error(fixture("empty_0.npy"), "empty");
  expect_load_error(fixture("c8_2.npy"), "'<c8' is not supported");
  expect_load_error(fixture("i8_big.npy"), "does not fit in int32");
  expect_load_error("/nonexistent/lamina/x.npy", "cannot open");
  expect_load_error(fixture(""), "read error"); /* a directory */
}

static void test_read_numpy_npz(void **state) {
  (void)state;
  char **names;
  lm_array **arrays;
  int n;
  assert_int_equal(lm_load_npz(fixture("savez.npz"), &names, &arrays, &n), LM_OK);
  assert_int_equal(n, 2);
  assert_string_equal(names[0], "x");
  assert_string_equal(names[1], "labels");
  assert_shape(arrays[0], 2, 2, 3);
  assert_true(lm_array_f32(arrays[0])[5] == 1.5f);
  assert_int_equal(lm_array_i32(arrays[1])[3], INT32_MAX);
  lm_npz_free(names, arrays, n);

  assert_int_equal(lm_load_npz(fixture("savez_compressed.npz"), &names, &arrays, &n), LM_OK);
  assert_int_equal(n, 2);
  assert_string_equal(names[0], "weights");
  assert_string_equal(names[1], "steps");
  assert_shape(arrays[0], 2, 5, 10);
  assert_true(lm_array_f32(arrays[0])[0] == -1.0f && lm_array_f32(arrays[0])[49] == 1.0f);
  assert_int_equal(arrays[1]->dtype, LM_INT32);
  assert_int_equal(lm_array_i32(arrays[1])[6], 6);
  lm_npz_free(names, arrays, n);
}

/* ---- Writing: byte for byte numpy's output ---- */

static void expect_same_bytes(const char *a, const char *b) {
  size_t na, nb;
  uint8_t *x = read_bytes(a, &na), *y = read_bytes(b, &nb);
  assert_non_null(x);
  assert_non_null(y);
  assert_int_equal(na, nb);
  assert_memory_equal(x, y, na);
  free(x);
  free(y);
}

static void test_write_like_numpy(void **state) {
  (void)state;
  float f4[6];
  for (int i = 0; i < 6; i++) f4[i] = i * 0.5f - 1;
  lm_array *a = lm_array_wrap(LM_FLOAT32, LM_SHAPE(2, 3), f4);
  assert_int_equal(lm_save_npy(tmp("f4.npy"), a), LM_OK);
  expect_same_bytes(tmp("f4.npy"), fixture("f4_2x3.npy"));
  lm_array_free(a);

  int32_t i4[5] = {3, -1, 0, INT32_MAX, INT32_MIN};
  a = lm_array_wrap(LM_INT32, LM_SHAPE(5), i4);
  assert_int_equal(lm_save_npy(tmp("i4.npy"), a), LM_OK);
  expect_same_bytes(tmp("i4.npy"), fixture("i4_5.npy"));
  lm_array_free(a);

  float s = 2.5f;
  a = lm_array_wrap(LM_FLOAT32, (lm_shape){.rank = 0}, &s);
  assert_int_equal(lm_save_npy(tmp("s.npy"), a), LM_OK);
  expect_same_bytes(tmp("s.npy"), fixture("f4_scalar.npy"));
  lm_array_free(a);

  a = lm_array_new(LM_FLOAT32, LM_SHAPE(1, 2, 3, 4));
  for (int i = 0; i < 24; i++) lm_array_f32(a)[i] = (float)i;
  assert_int_equal(lm_save_npy(tmp("4d.npy"), a), LM_OK);
  expect_same_bytes(tmp("4d.npy"), fixture("f4_1x2x3x4.npy"));
  lm_array_free(a);
  assert_int_equal(count_files(), 4); /* no temporary files left */
}

static void test_npz_round_trip(void **state) {
  (void)state;
  lm_array *w = lm_array_new(LM_FLOAT32, LM_SHAPE(3, 4));
  lm_array *y = lm_array_new(LM_INT32, LM_SHAPE(7));
  for (int i = 0; i < 12; i++) lm_array_f32(w)[i] = (float)i / 7;
  for (int i = 0; i < 7; i++) lm_array_i32(y)[i] = i * i - 9;
  const char *names[] = {"dense/kernel", "y"};
  const lm_array *arrays[] = {w, y};
  assert_int_equal(lm_save_npz(tmp("r.npz"), names, arrays, 2), LM_OK);

  char **got_names;
  lm_array **got;
  int n;
  assert_int_equal(lm_load_npz(tmp("r.npz"), &got_names, &got, &n), LM_OK);
  assert_int_equal(n, 2);
  assert_string_equal(got_names[0], "dense/kernel");
  assert_string_equal(got_names[1], "y");
  assert_memory_equal(got[0]->data, w->data, 12 * 4);
  assert_memory_equal(got[1]->data, y->data, 7 * 4);
  assert_int_equal(got[0]->shape.rank, 2);
  lm_npz_free(got_names, got, n);

  /* Each member is the .npy lm_save_npy writes, stored under "<name>.npy". */
  size_t len;
  uint8_t *zip = read_bytes(tmp("r.npz"), &len);
  assert_memory_equal(zip, "PK\x03\x04", 4);
  assert_memory_equal(zip + 30, "dense/kernel.npy", 16);
  assert_memory_equal(zip + 46, "\x93NUMPY\x01\x00", 8);
  free(zip);

  /* An empty archive is valid (np.savez with no arrays). */
  assert_int_equal(lm_save_npz(tmp("empty.npz"), NULL, NULL, 0), LM_OK);
  assert_int_equal(lm_load_npz(tmp("empty.npz"), &got_names, &got, &n), LM_OK);
  assert_int_equal(n, 0);
  lm_npz_free(got_names, got, n);

  /* Refusals: duplicate or empty names, a NULL array, an unwritable place. */
  const char *dup[] = {"a", "a"};
  assert_int_equal(lm_save_npz(tmp("d.npz"), dup, arrays, 2), LM_ERROR_VALUE);
  const char *empty[] = {"", "b"};
  assert_int_equal(lm_save_npz(tmp("d.npz"), empty, arrays, 2), LM_ERROR_VALUE);
  const lm_array *with_null[] = {w, NULL};
  assert_int_equal(lm_save_npz(tmp("d.npz"), names, with_null, 2), LM_ERROR_VALUE);
  assert_int_equal(lm_save_npz("/nonexistent/lamina/d.npz", names, arrays, 2), LM_ERROR_IO);
  assert_non_null(strstr(lm_last_error(), "/nonexistent/lamina/d.npz"));
  assert_int_equal(lm_save_npy("/nonexistent/lamina/d.npy", w), LM_ERROR_IO);
  assert_int_equal(lm_save_npy(tmp("d.npy"), NULL), LM_ERROR_VALUE);
  assert_int_equal(count_files(), 2);
  lm_array_free(w);
  lm_array_free(y);
}

/* ---- Corrupt, truncated and hostile files ---- */

static void test_truncated_files(void **state) {
  (void)state;
  const char *sources[] = {"f4_2x3.npy", "savez.npz", "savez_compressed.npz", "f8_2x2.npy"};
  for (size_t s = 0; s < sizeof sources / sizeof *sources; s++) {
    size_t len;
    uint8_t *b = read_bytes(fixture(sources[s]), &len);
    assert_non_null(b);
    bool npz = strstr(sources[s], ".npz") != NULL;
    for (size_t cut = 0; cut < len; cut++) {
      write_bytes(tmp("cut"), b, cut);
      if (npz) {
        char **names;
        lm_array **arrays;
        int n;
        assert_int_not_equal(lm_load_npz(tmp("cut"), &names, &arrays, &n), LM_OK);
        assert_null(names);
        assert_int_equal(n, 0);
      } else {
        assert_null(lm_load_npy(tmp("cut")));
      }
      assert_non_null(strstr(lm_last_error(), tmp("cut")));
    }
    free(b);
  }
  unlink(tmp("cut"));
}

/* Every byte of each file replaced by a few values: loading either works or fails cleanly
 * (ASan checks there is no out-of-bounds read), and a change in a stored member's data is
 * caught by its CRC. */
static void test_corrupted_bytes(void **state) {
  (void)state;
  const char *sources[] = {"savez.npz", "savez_compressed.npz", "f4_2x3.npy"};
  const uint8_t values[] = {0x00, 0xFF, 0x7F, 0x80, '9', ')'};
  for (size_t s = 0; s < sizeof sources / sizeof *sources; s++) {
    size_t len;
    uint8_t *b = read_bytes(fixture(sources[s]), &len);
    bool npz = strstr(sources[s], ".npz") != NULL;
    for (size_t i = 0; i < len; i++) {
      for (size_t v = 0; v < sizeof values; v++) {
        uint8_t old = b[i];
        if (old == values[v]) continue;
        b[i] = values[v];
        write_bytes(tmp("bad"), b, len);
        if (npz) {
          char **names;
          lm_array **arrays;
          int n;
          if (lm_load_npz(tmp("bad"), &names, &arrays, &n) == LM_OK) lm_npz_free(names, arrays, n);
          else assert_non_null(strstr(lm_last_error(), tmp("bad")));
        } else {
          lm_array_free(lm_load_npy(tmp("bad")));
        }
        b[i] = old;
      }
    }
    free(b);
  }
  /* The last data byte of savez.npz's first member (stored): a CRC mismatch. */
  size_t len;
  uint8_t *b = read_bytes(fixture("savez.npz"), &len);
  size_t name_len = b[26] | b[27] << 8, extra_len = b[28] | b[29] << 8;
  size_t data_end = 30 + name_len + extra_len + 152;
  b[data_end - 1] ^= 0x40;
  write_bytes(tmp("bad"), b, len);
  char **names;
  lm_array **arrays;
  int n;
  assert_int_equal(lm_load_npz(tmp("bad"), &names, &arrays, &n), LM_ERROR_IO);
  assert_non_null(strstr(lm_last_error(), "CRC-32 mismatch"));
  assert_non_null(strstr(lm_last_error(), "member x.npy"));
  free(b);
  unlink(tmp("bad"));
}

static void write_npy(const char *path, const char *dict, const void *data, size_t n) {
  uint8_t head[512];
  size_t hlen = strlen(dict);
  memcpy(head, "\x93NUMPY\x01\x00", 8);
  head[8] = (uint8_t)hlen, head[9] = (uint8_t)(hlen >> 8);
  memcpy(head + 10, dict, hlen);
  FILE *f = fopen(path, "wb");
  fwrite(head, 1, 10 + hlen, f);
  if (n) fwrite(data, 1, n, f);
  fclose(f);
}

static void test_hostile_headers(void **state) {
  (void)state;
  const float two[2] = {1, 2};
  struct {
    const char *dict, *words;
  } cases[] = {
      {"{'descr': '<f4', 'fortran_order': False, 'shape': (2147483647, 2147483647), }\n", "more than"},
      {"{'descr': '<f4', 'fortran_order': False, 'shape': (1000000000,), }\n", "truncated"},
      {"{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999999,), }\n", "too large"},
      {"{'descr': '<f4', 'fortran_order': False, 'shape': (-2,), }\n", "non-negative integers"},
      {"{'descr': '<f4', 'fortran_order': False, 'shape': (1,2,3,4,5,6,7,8,9), }\n", "more than 8 dimensions"},
      {"{'descr': '<f4', 'fortran_order': False}\n", "lacks 'shape'"},
      {"{'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'extra': 1}\n", "unexpected key"},
      {"{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (2,), }\n", "structured"},
      {"{'descr': '<f4', 'fortran_order': Maybe, 'shape': (2,), }\n", "fortran_order"},
      {"{'descr': '<f4', 'fortran_order': False, 'shape': (2,), } trailing\n", "after the header"},
      {"{'descr': '<f4', 'fortran_order': False, 'shape': (2,), \n", "malformed"},
      {"['descr']\n", "not a Python dict"},
      {"{'descr': 'xyz', 'fortran_order': False, 'shape': (2,), }\n", "not supported"},
      {"{'descr': '<f4', 'fortran_order': False, 'shape': (2, , 3), }\n", "non-negative integers"},
      {"{'descr': '<f4', 'fortran_order': False, 'shape': (2,)),}\n", "malformed"},
      {"{'descr': '<f4, 'fortran_order': False, 'shape': (2,)}\n", "not supported"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    write_npy(tmp("h.npy"), cases[i].dict, two, sizeof two);
    expect_load_error(tmp("h.npy"), cases[i].words);
  }
  /* A header length that runs past the file, and an unknown format version. */
  write_npy(tmp("h.npy"), "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }\n", two, sizeof two);
  size_t len;
  uint8_t *b = read_bytes(tmp("h.npy"), &len);
  b[8] = 0xFF, b[9] = 0x7F;
  write_bytes(tmp("h.npy"), b, len);
  expect_load_error(tmp("h.npy"), "truncated");
  b[8] = 60, b[9] = 0, b[6] = 9;
  write_bytes(tmp("h.npy"), b, len);
  expect_load_error(tmp("h.npy"), "version 9.0");
  static const char not_npy[] = "PK\x03\x04 not numpy";
  write_bytes(tmp("h.npy"), (const uint8_t *)not_npy, sizeof not_npy - 1);
  expect_load_error(tmp("h.npy"), "not a .npy file");
  free(b);
  /* Double quotes and no trailing comma are Python too. */
  write_npy(tmp("h.npy"), "{\"shape\": (2,), \"fortran_order\": False, \"descr\": \"<f4\"}\n", two, sizeof two);
  lm_array *a = lm_load_npy(tmp("h.npy"));
  assert_non_null(a);
  assert_true(lm_array_f32(a)[1] == 2.0f);
  lm_array_free(a);
  unlink(tmp("h.npy"));
}

/* A zip whose directory claims a member inflates to 1 GiB: refused after inflating what is
 * there, without allocating the claimed size. */
static void test_hostile_zip(void **state) {
  (void)state;
  size_t len;
  uint8_t *b = read_bytes(fixture("savez_compressed.npz"), &len);
  /* Find the central directory entry of the first member and raise its size. */
  size_t cd = 0;
  for (size_t i = 0; i + 4 <= len; i++)
    if (!memcmp(b + i, "PK\x01\x02", 4)) {
      cd = i;
      break;
    }
  assert_true(cd > 0);
  uint8_t saved[4];
  memcpy(saved, b + cd + 24, 4);
  memcpy(b + cd + 24, "\x00\x00\x00\x40", 4); /* 1 GiB uncompressed */
  write_bytes(tmp("z.npz"), b, len);
  char **names;
  lm_array **arrays;
  int n;
  assert_int_equal(lm_load_npz(tmp("z.npz"), &names, &arrays, &n), LM_ERROR_IO);
  assert_non_null(strstr(lm_last_error(), "truncated deflate data"));
  memcpy(b + cd + 24, saved, 4);

  /* A local header offset past the end, and a directory outside the file. */
  memcpy(b + cd + 42, "\xFF\xFF\xFF\x7F", 4);
  write_bytes(tmp("z.npz"), b, len);
  assert_int_equal(lm_load_npz(tmp("z.npz"), &names, &arrays, &n), LM_ERROR_IO);
  assert_non_null(strstr(lm_last_error(), "no local header"));
  memcpy(b + cd + 42, "\0\0\0\0", 4);
  memcpy(b + len - 6, "\xFF\xFF\xFF\x7F", 4);
  write_bytes(tmp("z.npz"), b, len);
  assert_int_equal(lm_load_npz(tmp("z.npz"), &names, &arrays, &n), LM_ERROR_IO);
  assert_non_null(strstr(lm_last_error(), "outside the file"));
  free(b);

  /* Not a zip at all, and an .npy given to the .npz reader. */
  write_bytes(tmp("z.npz"), (const uint8_t *)"hello", 5);
  assert_int_equal(lm_load_npz(tmp("z.npz"), &names, &arrays, &n), LM_ERROR_IO);
  assert_non_null(strstr(lm_last_error(), "not a zip"));
  assert_int_equal(lm_load_npz(fixture("f4_2x3.npy"), &names, &arrays, &n), LM_ERROR_IO);
  assert_int_equal(lm_load_npz(NULL, &names, &arrays, &n), LM_ERROR_VALUE);
  unlink(tmp("z.npz"));
}

/* A zip64 archive built by hand: the directory entry's sizes and offset live in its zip64
 * extra field, and the end record points to a zip64 end record (as zip tools write for
 * archives over 4 GiB). */
static void put_le(uint8_t *p, uint64_t v, int n) {
  for (int i = 0; i < n; i++) p[i] = (uint8_t)(v >> (8 * i));
}

static void test_zip64_directory(void **state) {
  (void)state;
  size_t npy_len;
  uint8_t *npy = read_bytes(fixture("f4_2x3.npy"), &npy_len);
  uint8_t zip[1024] = {0};
  size_t at = 0;
  const char name[] = "w.npy";
  uint32_t crc = 0;
  { /* CRC-32 of the member, bit by bit (zlib's polynomial) */
    crc = 0xFFFFFFFFu;
    for (size_t i = 0; i < npy_len; i++) {
      crc ^= npy[i];
      for (int k = 0; k < 8; k++) crc = crc & 1 ? (crc >> 1) ^ 0xEDB88320u : crc >> 1;
    }
    crc ^= 0xFFFFFFFFu;
  }
  put_le(zip + at, 0x04034b50, 4), put_le(zip + at + 4, 45, 2), put_le(zip + at + 14, crc, 4);
  put_le(zip + at + 18, npy_len, 4), put_le(zip + at + 22, npy_len, 4), put_le(zip + at + 26, 5, 2);
  memcpy(zip + at + 30, name, 5);
  memcpy(zip + at + 35, npy, npy_len);
  size_t cd = at + 35 + npy_len;
  at = cd;
  put_le(zip + at, 0x02014b50, 4), put_le(zip + at + 4, 45, 2), put_le(zip + at + 6, 45, 2);
  put_le(zip + at + 16, crc, 4), put_le(zip + at + 20, 0xFFFFFFFFu, 4), put_le(zip + at + 24, 0xFFFFFFFFu, 4);
  put_le(zip + at + 28, 5, 2), put_le(zip + at + 30, 28, 2), put_le(zip + at + 42, 0xFFFFFFFFu, 4);
  memcpy(zip + at + 46, name, 5);
  uint8_t *x = zip + at + 51; /* tag 1: uncompressed, compressed, offset */
  put_le(x, 1, 2), put_le(x + 2, 24, 2), put_le(x + 4, npy_len, 8), put_le(x + 12, npy_len, 8), put_le(x + 20, 0, 8);
  at += 46 + 5 + 28;
  size_t cd_size = at - cd, e64 = at;
  put_le(zip + at, 0x06064b50, 4), put_le(zip + at + 4, 44, 8), put_le(zip + at + 24, 1, 8);
  put_le(zip + at + 32, 1, 8), put_le(zip + at + 40, cd_size, 8), put_le(zip + at + 48, cd, 8);
  at += 56;
  put_le(zip + at, 0x07064b50, 4), put_le(zip + at + 8, e64, 8), put_le(zip + at + 16, 1, 4);
  at += 20;
  put_le(zip + at, 0x06054b50, 4), put_le(zip + at + 8, 0xFFFF, 2), put_le(zip + at + 10, 0xFFFF, 2);
  put_le(zip + at + 12, 0xFFFFFFFFu, 4), put_le(zip + at + 16, 0xFFFFFFFFu, 4);
  at += 22;
  write_bytes(tmp("z64.npz"), zip, at);
  char **names;
  lm_array **arrays;
  int n;
  assert_int_equal(lm_load_npz(tmp("z64.npz"), &names, &arrays, &n), LM_OK);
  assert_int_equal(n, 1);
  assert_string_equal(names[0], "w");
  assert_true(lm_array_f32(arrays[0])[5] == 1.5f);
  lm_npz_free(names, arrays, n);

  /* The same with the zip64 extra cut short: refused. */
  put_le(x + 2, 8, 2);
  write_bytes(tmp("z64.npz"), zip, at);
  assert_int_equal(lm_load_npz(tmp("z64.npz"), &names, &arrays, &n), LM_ERROR_IO);
  /* And with the locator gone. */
  put_le(x + 2, 24, 2);
  put_le(zip + at - 22 - 20, 0, 4);
  write_bytes(tmp("z64.npz"), zip, at);
  assert_int_equal(lm_load_npz(tmp("z64.npz"), &names, &arrays, &n), LM_ERROR_IO);
  assert_non_null(strstr(lm_last_error(), "zip64"));
  free(npy);
  unlink(tmp("z64.npz"));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_read_numpy_files),
      cmocka_unit_test(test_refused_numpy_files),
      cmocka_unit_test(test_read_numpy_npz),
      cmocka_unit_test_setup_teardown(test_write_like_numpy, setup_dir, teardown_dir),
      cmocka_unit_test_setup_teardown(test_npz_round_trip, setup_dir, teardown_dir),
      cmocka_unit_test_setup_teardown(test_truncated_files, setup_dir, teardown_dir),
      cmocka_unit_test_setup_teardown(test_corrupted_bytes, setup_dir, teardown_dir),
      cmocka_unit_test_setup_teardown(test_hostile_headers, setup_dir, teardown_dir),
      cmocka_unit_test_setup_teardown(test_hostile_zip, setup_dir, teardown_dir),
      cmocka_unit_test_setup_teardown(test_zip64_directory, setup_dir, teardown_dir),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
