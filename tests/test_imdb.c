/* keras.datasets.imdb.load_data: lamina's loader against what Keras itself makes of small
 * imdb.npz look-alikes written by real numpy (tests/fixtures/imdb, made by
 * tools/keras_fixtures/make_imdb_fixtures.py): same shuffles, words and labels under every
 * option, for pickles of protocols 2 (Python 2's numpy) to 5, deflated members and 2-D
 * arrays. The restricted unpickler refuses what Keras's refuses, and hostile or truncated
 * pickles fail cleanly (this test runs under ASan). Also to_categorical, and
 * pad_sequences on the loaded sequences. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <lamina/io.h>
#include <limits.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fixture.h"
#include "io/npy.h"
#include "io/pickle.h"
#include "io/zip.h"

static const char *fixture(const char *name) {
  static char path[2][1024];
  static int k;
  char rel[512];
  k ^= 1;
  snprintf(rel, sizeof rel, "tests/fixtures/imdb/%s", name);
  return fx_source_path(path[k], sizeof path[k], rel);
}

/* An option from the case's attrs: absent 0 (Keras's default), None LM_NONE, 0 LM_IMDB_ZERO. */
static int64_t opt(const fx_case *c, const char *key) {
  const char *v = fx_attr_get(c, key);
  if (!v) return 0;
  if (!strcmp(v, "None")) return LM_NONE;
  long long x = strtoll(v, NULL, 10);
  return x == 0 ? LM_IMDB_ZERO : x;
}

static void check_split(const char *what, const lm_sequences *x, const lm_array *y, const fx_case *c, const char *split) {
  char name[64];
  snprintf(name, sizeof name, "x_%s_len", split);
  const fx_array *lens = fx_array_get(c, name);
  snprintf(name, sizeof name, "x_%s", split);
  const fx_array *vals = fx_array_get(c, name);
  snprintf(name, sizeof name, "y_%s", split);
  const fx_array *ys = fx_array_get(c, name);
  assert_non_null(lens);
  assert_non_null(vals);
  assert_non_null(ys);
  if (x->n != lens->n) fail_msg("%s %s: %lld sequences, Keras %lld", what, split, (long long)x->n, (long long)lens->n);
  assert_int_equal(y->dtype, LM_INT32);
  assert_int_equal(y->shape.rank, 1);
  assert_int_equal(y->shape.dim[0], x->n);
  int64_t at = 0;
  for (int64_t i = 0; i < x->n; i++) {
    if (x->len[i] != (int64_t)lens->f[i])
      fail_msg("%s %s: sequence %lld has %lld words, Keras %lld", what, split, (long long)i, (long long)x->len[i],
               (long long)lens->f[i]);
    assert_ptr_equal(x->seq[i], x->values + x->offsets[i]);
    assert_int_equal(x->offsets[i + 1] - x->offsets[i], x->len[i]);
    for (int64_t j = 0; j < x->len[i]; j++, at++)
      if (x->seq[i][j] != (int32_t)vals->f[at])
        fail_msg("%s %s: sequence %lld word %lld is %d, Keras %d", what, split, (long long)i, (long long)j, x->seq[i][j],
                 (int)vals->f[at]);
    if (lm_array_i32(y)[i] != (int32_t)ys->f[i])
      fail_msg("%s %s: label %lld is %d, Keras %d", what, split, (long long)i, lm_array_i32(y)[i], (int)ys->f[i]);
  }
  assert_int_equal(at, vals->n);
}

static void test_keras_cases(void **state) {
  (void)state;
  fx_file f;
  if (fx_load(&f, fixture("expected.txt"))) fail_msg("%s", f.error);
  assert_true(f.n_cases >= 10);
  for (int k = 0; k < f.n_cases; k++) {
    fx_case *c = &f.cases[k];
    lm_imdb_opts o = {.num_words = (int)opt(c, "num_words"),
                      .skip_top = (int)opt(c, "skip_top"),
                      .maxlen = (int)opt(c, "maxlen"),
                      .seed = opt(c, "seed"),
                      .start_char = (int)opt(c, "start_char"),
                      .oov_char = (int)opt(c, "oov_char"),
                      .index_from = (int)opt(c, "index_from")};
    lm_sequences *xtr, *xte;
    lm_array *ytr, *yte;
    lm_status st = lm_imdb_load_data_opts(fixture(fx_attr_get(c, "file")), &xtr, &ytr, &xte, &yte, o);
    if (st != LM_OK) fail_msg("%s: %s", c->name, lm_last_error());
    check_split(c->name, xtr, ytr, c, "train");
    check_split(c->name, xte, yte, c, "test");
    lm_sequences_free(xtr);
    lm_sequences_free(xte);
    lm_array_free(ytr);
    lm_array_free(yte);
    c->checked = 1;
  }
  fx_free(&f);
}

/* The keyword macro, Keras's cache as the default path, and pad_sequences on the result. */
static void test_defaults_and_padding(void **state) {
  (void)state;
  char dir[] = "/tmp/lamina_imdb_XXXXXX", sub[512], link[600];
  assert_non_null(mkdtemp(dir));
  snprintf(sub, sizeof sub, "%s/datasets", dir);
  assert_int_equal(mkdir(sub, 0700), 0);
  snprintf(link, sizeof link, "%s/imdb.npz", sub);
  char *target = realpath(fixture("imdb_small.npz"), NULL);
  assert_non_null(target);
  assert_int_equal(symlink(target, link), 0);
  free(target);
  const char *old = getenv("KERAS_HOME");
  char *saved = old ? strdup(old) : NULL;
  setenv("KERAS_HOME", dir, 1);
  lm_sequences *xtr, *xte, *xtr2, *xte2;
  lm_array *ytr, *yte, *ytr2, *yte2;
  assert_int_equal(lm_imdb_load_data(NULL, &xtr, &ytr, &xte, &yte, .num_words = 100), LM_OK);
  if (saved) setenv("KERAS_HOME", saved, 1);
  else unsetenv("KERAS_HOME");
  free(saved);
  unlink(link);
  rmdir(sub);
  rmdir(dir);
  assert_int_equal(lm_imdb_load_data(fixture("imdb_small.npz"), &xtr2, &ytr2, &xte2, &yte2, .num_words = 100), LM_OK);
  assert_int_equal(xtr->n, 1100);
  assert_int_equal(xte->n, 260);
  assert_memory_equal(xtr->values, xtr2->values, (size_t)xtr->offsets[xtr->n] * 4);
  assert_memory_equal(lm_array_i32(yte), lm_array_i32(yte2), 260 * 4);
  for (int64_t j = 0; j < xtr->offsets[xtr->n]; j++) assert_true(xtr->values[j] >= 1 && xtr->values[j] < 100);

  /* pad_sequences(x_train, maxlen=20): pre-padding, and the last 20 words of longer ones. */
  lm_array *p = lm_pad_sequences(xtr, .maxlen = 20);
  assert_non_null(p);
  assert_int_equal(p->shape.dim[0], 1100);
  assert_int_equal(p->shape.dim[1], 20);
  for (int64_t i = 0; i < xtr->n; i++) {
    int64_t len = xtr->len[i], keep = len < 20 ? len : 20;
    const int32_t *row = lm_array_i32(p) + i * 20;
    for (int64_t j = 0; j < 20 - keep; j++) assert_int_equal(row[j], 0);
    assert_memory_equal(row + 20 - keep, xtr->seq[i] + len - keep, (size_t)keep * 4);
  }
  lm_array_free(p);
  lm_sequences_free(xtr);
  lm_sequences_free(xte);
  lm_sequences_free(xtr2);
  lm_sequences_free(xte2);
  lm_array_free(ytr);
  lm_array_free(yte);
  lm_array_free(ytr2);
  lm_array_free(yte2);
}

static void expect_failure(const char *path, lm_imdb_opts o, lm_status code, const char *const *words) {
  lm_sequences *xtr = (lm_sequences *)1, *xte = (lm_sequences *)1;
  lm_array *ytr = (lm_array *)1, *yte = (lm_array *)1;
  lm_status st = lm_imdb_load_data_opts(path, &xtr, &ytr, &xte, &yte, o);
  if (st != code) fail_msg("%s: status %d, expected %d (%s)", path, st, code, lm_last_error());
  assert_null(xtr);
  assert_null(xte);
  assert_null(ytr);
  assert_null(yte);
  for (; *words; words++)
    if (!strstr(lm_last_error(), *words)) fail_msg("the message lacks \"%s\": %s", *words, lm_last_error());
}

static void test_refusals(void **state) {
  (void)state;
  /* Keras's restricted unpickler refuses both of these files; so does lamina's. */
  expect_failure(fixture("evil_system.npz"), (lm_imdb_opts){0}, LM_ERROR_IO,
                 (const char *const[]){"evil_system.npz", "x_train.npy", "GLOBAL", "posix.system", NULL});
  expect_failure(fixture("evil_codecs.npz"), (lm_imdb_opts){0}, LM_ERROR_IO,
                 (const char *const[]){"evil_codecs.npz", "GLOBAL", "_codecs.encode", NULL});
  /* Keras: "After filtering for sequences shorter than maxlen=2, no sequence was kept." */
  expect_failure(fixture("imdb_small.npz"), (lm_imdb_opts){.maxlen = 2}, LM_ERROR_VALUE,
                 (const char *const[]){"maxlen=2", "no sequence was kept", NULL});
  expect_failure(fixture("imdb_small.npz"), (lm_imdb_opts){.num_words = -5}, LM_ERROR_VALUE,
                 (const char *const[]){"num_words", NULL});
  expect_failure(fixture("imdb_small.npz"), (lm_imdb_opts){.skip_top = LM_NONE}, LM_ERROR_VALUE,
                 (const char *const[]){"skip_top", NULL});
  expect_failure(fixture("nothing_here.npz"), (lm_imdb_opts){0}, LM_ERROR_IO, (const char *const[]){"nothing_here.npz", NULL});
  /* An .npz without the members: tests/fixtures/npy/savez.npz holds other arrays. */
  char path[1024];
  expect_failure(fx_source_path(path, sizeof path, "tests/fixtures/npy/savez.npz"), (lm_imdb_opts){0}, LM_ERROR_IO,
                 (const char *const[]){"no member", NULL});
  lm_sequences *b;
  lm_array *c, *d;
  assert_int_equal(lm_imdb_load_data_opts(fixture("imdb_small.npz"), NULL, &c, &b, &d, (lm_imdb_opts){0}), LM_ERROR_VALUE);
}

/* ---- The unpickler on its own ---- */

/* x_train.npy's pickle from one of the fixtures. */
static uint8_t *member_pickle(const char *file, size_t *len) {
  uint8_t *buf, *data;
  size_t blen, dlen;
  lm_zip z;
  assert_int_equal(lm__read_file(fixture(file), &buf, &blen), LM_OK);
  assert_int_equal(lm__zip_open(&z, buf, blen, file), LM_OK);
  int e = lm__zip_find(&z, "x_train.npy");
  assert_true(e >= 0);
  assert_int_equal(lm__zip_read(&z, e, 1 << 24, &data, &dlen), LM_OK);
  lm__zip_close(&z);
  free(buf);
  size_t hl = (size_t)(data[8] | data[9] << 8), off = 10 + hl;
  uint8_t *p = malloc(dlen - off);
  memcpy(p, data + off, dlen - off);
  *len = dlen - off;
  free(data);
  return p;
}

static lm_status unpickle(const void *bytes, size_t len, lm__int_lists *out) {
  return lm__unpickle_int_lists(bytes, len, "test", out);
}

static void expect_refused(const char *bytes, size_t len, const char *words) {
  lm__int_lists l;
  lm_status st = unpickle(bytes, len, &l);
  if (st == LM_OK) fail_msg("a stream meant to be refused was accepted (expected \"%s\")", words);
  assert_null(l.offsets);
  assert_null(l.values);
  if (!strstr(lm_last_error(), words)) fail_msg("the message lacks \"%s\": %s", words, lm_last_error());
}

/* Every prefix of real streams (protocols 2 and 5) fails cleanly, and byte flips never
 * crash: they fail, or decode to some well-formed array. */
static void test_truncations_and_flips(void **state) {
  (void)state;
  static const char *const files[] = {"imdb_p2.npz", "imdb_p5.npz"};
  for (int f = 0; f < 2; f++) {
    size_t len;
    uint8_t *p = member_pickle(files[f], &len);
    lm__int_lists l;
    assert_int_equal(unpickle(p, len, &l), LM_OK);
    assert_int_equal(l.n, 60);
    assert_int_equal(l.offsets[18] - l.offsets[17], 1500); /* the long review: APPENDS batches of 1000 */
    lm__int_lists_free(&l);
    for (size_t cut = 0; cut < len; cut++) {
      uint8_t *q = malloc(cut ? cut : 1); /* exactly cut bytes, so ASan sees any overread */
      memcpy(q, p, cut);
      assert_int_not_equal(unpickle(q, cut, &l), LM_OK);
      free(q);
    }
    uint64_t x = 88172645463325252ull;
    for (int k = 0; k < 5000; k++) {
      x ^= x << 13, x ^= x >> 7, x ^= x << 17;
      uint8_t *q = malloc(len);
      memcpy(q, p, len);
      q[x % len] ^= (uint8_t)(1u << (x >> 32) % 8);
      if (unpickle(q, len, &l) == LM_OK) {
        assert_true(l.n >= 0);
        for (int64_t i = 0; i < l.n; i++) assert_true(l.offsets[i] <= l.offsets[i + 1]);
        lm__int_lists_free(&l);
      }
      free(q);
    }
    free(p);
  }
}

#define S(lit) lit, sizeof(lit) - 1

static void test_hostile_streams(void **state) {
  (void)state;
  /* The smallest accepted stream: _reconstruct(ndarray, (0,), b'b') built with
   * (1, (2,), dtype('O8', False, True) built with (3, '|'), False, [[7, 300], []]). */
  /* (Literals are split where a hex escape would swallow the letter after it.) */
  static const char ok[] = "\x80\x02"
                           "cnumpy.core.multiarray\n_reconstruct\n"
                           "cnumpy\nndarray\nK\x00\x85U\x01"
                           "b\x87R"
                           "(K\x01K\x02\x85"
                           "cnumpy\ndtype\nU\x02O8\x89\x88\x87R(K\x03U\x01|tb\x89"
                           "](]q\x00(K\x07M\x2c\x01"
                           "e]e"
                           "tb.";
  lm__int_lists l;
  if (unpickle(ok, sizeof ok - 1, &l) != LM_OK) fail_msg("%s", lm_last_error());
  assert_int_equal(l.n, 2);
  assert_int_equal(l.offsets[1], 2);
  assert_int_equal(l.offsets[2], 2);
  assert_int_equal(l.values[0], 7);
  assert_int_equal(l.values[1], 300);
  lm__int_lists_free(&l);

  expect_refused(S("\x80\x02" "cos\nsystem\nq\x00X\x02\x00\x00\x00lsq\x01\x85R."), "refusing the global os.system");
  expect_refused(S("\x80\x04\x8c\x08"
                   "builtins\x8c\x04"
                   "eval\x93."),
                 "refusing the global builtins.eval");
  expect_refused(S("\x80\x02]K\x01\x85R."), "refusing to call a list");
  expect_refused(S("\x80\x02(cnumpy\nndarray\ni."), "INST");
  expect_refused(S("\x80\x02}."), "EMPTY_DICT");
  expect_refused(S("\x80\x02K\x01Q."), "BINPERSID");
  expect_refused(S("\x80\x02\x82\x01."), "EXT1");
  expect_refused(S("\x80\x01]."), "protocol 1");
  expect_refused(S("]."), "does not start with PROTO");
  expect_refused(S("\x80\x02K\x01q\x05."), "memo index 5 skips ahead");
  expect_refused(S("\x80\x02h\x00."), "memo index 0 was never stored");
  expect_refused(S("\x80\x02]\x8a\x05\x00\x00\x00\x00\x01"
                   "a."),
                 "does not fit in int32");
  expect_refused(S("\x80\x02](K\x01]e."), "mixes ints and lists");
  expect_refused(S("\x80\x02](N" "e."), "not None");
  expect_refused(S("\x80\x02\x8a\x09\x00\x00\x00\x00\x00\x00\x00\x00\x00."), "9 bytes");
  expect_refused(S("\x80\x02K\x01."), "not a numpy object array");
  expect_refused(S("\x80\x02)."), "a tuple, not a numpy object array"); /* found by fuzz_pickle: empty tuples */
  expect_refused(S("\x80\x02t."), "no MARK");
  expect_refused(S("\x80\x02(]."), "MARK still open");
  expect_refused(S("\x80\x02X\xff\xff\xff\x7f"), "truncated");
  expect_refused(S("\x80\x04\x95\xff\xff\xff\xff\x00\x00\x00\x00."), "frame");
  expect_refused(S("\x80\x02(K\x01K\x02K\x03K\x04K\x05K\x06K\x07K\x08K\x09K\x0aK\x0bK\x0cK\x0dK\x0eK\x0fK\x10K\x11t."),
                 "a tuple of 17 items");
  expect_refused(S("\x80\x02"
                   "cnumpy\ndtype\nX\x02\x00\x00\x00"
                   "f8\x89\x88\x87R."),
                 "object dtype");
  char tail[sizeof ok + 1];
  memcpy(tail, ok, sizeof ok - 1);
  tail[sizeof ok - 1] = 'N';
  expect_refused(tail, sizeof ok, "1 bytes follow STOP");

  /* Deep MARK nesting and a stack that never shrinks are bounded. */
  char deep[200];
  size_t n = 0;
  deep[n++] = '\x80', deep[n++] = 2;
  while (n < 150) deep[n++] = '(';
  deep[n++] = '.';
  expect_refused(deep, n, "MARKs nest deeper than 64");
  size_t big = 2 + 2 * 70000 + 1;
  char *wide = malloc(big);
  wide[0] = '\x80', wide[1] = 2;
  for (size_t i = 2; i + 1 < big; i += 2) wide[i] = 'K', wide[i + 1] = 1;
  wide[big - 1] = '.';
  expect_refused(wide, big, "the stack holds more than 65536 items");
  free(wide);
}

/* Found by tests/fuzz/fuzz_npy (docs/fuzzing.md): an int64 label of -2**63 negated out of
 * range while being sign-extended. It must be an ordinary "does not fit" error. */
static void test_npy_int64_minimum(void **state) {
  (void)state;
  uint8_t npy[128 + 8];
  static const char head[] = "{'descr': '<i8', 'fortran_order': False, 'shape': (1,), }";
  memcpy(npy, "\x93NUMPY\x01\x00", 8);
  npy[8] = 118, npy[9] = 0;
  memset(npy + 10, ' ', 118);
  memcpy(npy + 10, head, sizeof head - 1);
  npy[127] = '\n';
  memset(npy + 128, 0, 8);
  npy[135] = 0x80; /* little-endian INT64_MIN */
  assert_null(lm__npy_parse(npy, sizeof npy, "y_train.npy"));
  assert_non_null(strstr(lm_last_error(), "does not fit in int32"));
  int64_t n;
  size_t off;
  assert_int_equal(lm__npy_object_array(npy, sizeof npy, "y_train.npy", &n, &off), 0);
}

/* keras.utils.to_categorical */
static void test_to_categorical(void **state) {
  (void)state;
  int32_t labels[] = {0, 2, 1, 2};
  lm_array *y = lm_array_wrap(LM_INT32, LM_SHAPE(4), labels);
  lm_array *c = lm_to_categorical(y, 0);
  assert_non_null(c);
  assert_int_equal(c->dtype, LM_FLOAT32);
  assert_int_equal(c->shape.rank, 2);
  assert_int_equal(c->shape.dim[1], 3);
  static const float want[] = {1, 0, 0, 0, 0, 1, 0, 1, 0, 0, 0, 1};
  assert_memory_equal(c->data, want, sizeof want);
  lm_array_free(c);
  c = lm_to_categorical(y, 5);
  assert_int_equal(c->shape.dim[1], 5);
  assert_true(lm_array_f32(c)[5 + 2] == 1.0f);
  lm_array_free(c);
  assert_null(lm_to_categorical(y, 2)); /* label 2 with 2 classes: numpy's IndexError */
  assert_non_null(strstr(lm_last_error(), "outside 0 .. 1"));
  lm_array_free(y);

  /* (n, 1) labels lose their trailing axis; floats are truncated as numpy's int64 cast. */
  float f[] = {1.9f, 0.2f, 3.0f};
  y = lm_array_wrap(LM_FLOAT32, LM_SHAPE(3, 1), f);
  c = lm_to_categorical(y, 0);
  assert_int_equal(c->shape.rank, 2);
  assert_int_equal(c->shape.dim[0], 3);
  assert_int_equal(c->shape.dim[1], 4);
  assert_true(lm_array_f32(c)[1] == 1.0f && lm_array_f32(c)[4] == 1.0f && lm_array_f32(c)[11] == 1.0f);
  lm_array_free(c);
  f[1] = -1.0f;
  assert_null(lm_to_categorical(y, 0));
  f[1] = NAN;
  assert_null(lm_to_categorical(y, 0));
  assert_null(lm_to_categorical(NULL, 0));
  lm_array_free(y);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_keras_cases),         cmocka_unit_test(test_defaults_and_padding),
      cmocka_unit_test(test_refusals),            cmocka_unit_test(test_truncations_and_flips),
      cmocka_unit_test(test_hostile_streams),     cmocka_unit_test(test_to_categorical),
      cmocka_unit_test(test_npy_int64_minimum),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
