/* lm_load_csv: files written here (quoting, line ends, BOM, blank lines, headers, label
 * columns, delimiters, and every malformed case, which must fail naming the file and
 * line), and scikit-learn's own iris / wine / breast-cancer CSVs when python3-sklearn is
 * installed (skipped otherwise; $LAMINA_SKLEARN_DATA overrides their directory). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <lamina/io.h>
#include <locale.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char path[64];

static const char *write_csv(const char *text, size_t len) {
  snprintf(path, sizeof path, "/tmp/lamina_csv_XXXXXX");
  int fd = mkstemp(path);
  assert_true(fd >= 0);
  assert_int_equal(write(fd, text, len), (ssize_t)len);
  close(fd);
  return path;
}
#define CSV(lit) write_csv(lit, sizeof(lit) - 1)

static void expect_x(const lm_csv *c, int64_t rows, int64_t cols, const float *want) {
  assert_non_null(c->x);
  assert_int_equal(c->x->dtype, LM_FLOAT32);
  assert_int_equal(c->x->shape.rank, 2);
  assert_int_equal(c->x->shape.dim[0], rows);
  assert_int_equal(c->x->shape.dim[1], cols);
  for (int64_t i = 0; i < rows * cols; i++) {
    float g = lm_array_f32(c->x)[i];
    if (!(g == want[i] || (isnan(g) && isnan(want[i])))) fail_msg("x[%lld] = %.9g, want %.9g", (long long)i, g, want[i]);
  }
}

static void test_plain_and_quoted(void **state) {
  (void)state;
  lm_csv c;
  /* BOM, CRLF, a blank line, quotes with "" and a newline inside, blanks around numbers,
   * an empty field (NaN), exponent forms, and a missing final line end. */
  const char *p = CSV("\xEF\xBB\xBF"
                      "1,2.5,-3\r\n"
                      "\r\n"
                      "\"4\", 5e-1 ,\"6\"\n"
                      "7,,inf\n"
                      "1e3,0x10,-0");
  assert_int_equal(lm_load_csv(p, &c), LM_OK);
  float want[] = {1, 2.5f, -3, 4, 0.5f, 6, 7, NAN, INFINITY, 1000, 16, -0.0f};
  expect_x(&c, 4, 3, want);
  assert_null(c.y);
  assert_null(c.names);
  assert_null(c.class_names);
  lm_csv_free(&c);

  /* Column names (quoted, with a delimiter and a quote inside) and the last column as labels. */
  p = CSV("\"a,1\",\"b \"\"q\"\"\",label\n0.25,1,2\n0.5,3,0\n");
  assert_int_equal(lm_load_csv(p, &c, .label_column = -1), LM_OK);
  float want2[] = {0.25f, 1, 0.5f, 3};
  expect_x(&c, 2, 2, want2);
  assert_int_equal(c.y->dtype, LM_INT32);
  assert_int_equal(lm_array_i32(c.y)[0], 2);
  assert_int_equal(lm_array_i32(c.y)[1], 0);
  assert_int_equal(c.n_names, 3);
  assert_string_equal(c.names[0], "a,1");
  assert_string_equal(c.names[1], "b \"q\"");
  assert_string_equal(c.names[2], "label");
  lm_csv_free(&c);

  /* The first column as labels (1-based), float labels, a semicolon delimiter, forced header. */
  p = CSV("y;x1;x2\n1.5;10;20\n-2;30;40\n");
  assert_int_equal(lm_load_csv(p, &c, .label_column = 1, .delimiter = ';', .float_labels = true, .header = LM_CSV_NAMES),
                   LM_OK);
  float want3[] = {10, 20, 30, 40};
  expect_x(&c, 2, 2, want3);
  assert_int_equal(c.y->dtype, LM_FLOAT32);
  assert_true(lm_array_f32(c.y)[0] == 1.5f && lm_array_f32(c.y)[1] == -2.0f);
  lm_csv_free(&c);

  /* One data row; a lone CR ends a line too. */
  p = CSV("3,4\r5,6");
  assert_int_equal(lm_load_csv(p, &c, .header = LM_CSV_NO_HEADER), LM_OK);
  float want4[] = {3, 4, 5, 6};
  expect_x(&c, 2, 2, want4);
  lm_csv_free(&c);
  unlink(path);
}

/* scikit-learn's layout, in a file of our own: the count row, then features and a label. */
static void test_sklearn_layout(void **state) {
  (void)state;
  lm_csv c;
  const char *p = CSV("3,2,cat,dog\n0.1,0.2,0\n0.3,0.4,1\n0.5,0.6,1\n");
  assert_int_equal(lm_load_csv(p, &c), LM_OK);
  float want[] = {0.1f, 0.2f, 0.3f, 0.4f, 0.5f, 0.6f};
  expect_x(&c, 3, 2, want);
  int32_t labels[] = {0, 1, 1};
  assert_memory_equal(c.y->data, labels, sizeof labels);
  assert_int_equal(c.n_classes, 2);
  assert_string_equal(c.class_names[0], "cat");
  assert_string_equal(c.class_names[1], "dog");
  lm_csv_free(&c);
  /* All columns as features. */
  assert_int_equal(lm_load_csv(p, &c, .label_column = LM_CSV_NO_LABEL), LM_OK);
  assert_int_equal(c.x->shape.dim[1], 3);
  assert_null(c.y);
  lm_csv_free(&c);
  /* An all-numeric first row as wide as the data is data, even where its counts fit. */
  p = CSV("2,2,7\n1,2,3\n4,5,6\n");
  assert_int_equal(lm_load_csv(p, &c), LM_OK);
  assert_int_equal(c.x->shape.dim[0], 3);
  lm_csv_free(&c);
  /* ... unless the caller says it is scikit-learn's. */
  assert_int_equal(lm_load_csv(p, &c, .header = LM_CSV_SKLEARN), LM_OK);
  assert_int_equal(c.x->shape.dim[0], 2);
  assert_int_equal(c.x->shape.dim[1], 2);
  assert_int_equal(lm_array_i32(c.y)[1], 6);
  assert_int_equal(c.n_classes, 1);
  lm_csv_free(&c);
  unlink(path);
}

static void expect_error_n(const char *text, size_t len, lm_csv_opts o, const char *words) {
  lm_csv c;
  const char *p = write_csv(text, len);
  lm_status st = lm_load_csv_opts(p, &c, o);
  if (st == LM_OK) fail_msg("accepted a bad file (expected \"%s\"): %s", words, text);
  assert_null(c.x);
  assert_null(c.y);
  assert_null(c.names);
  if (!strstr(lm_last_error(), p)) fail_msg("the message does not name the file: %s", lm_last_error());
  if (!strstr(lm_last_error(), words)) fail_msg("the message lacks \"%s\": %s", words, lm_last_error());
  unlink(p);
}

static void expect_error(const char *text, lm_csv_opts o, const char *words) { expect_error_n(text, strlen(text), o, words); }

static void test_errors(void **state) {
  (void)state;
  expect_error("1,2\n3,4\n5\n", (lm_csv_opts){0}, ":3: 1 fields, but the rows before have 2");
  expect_error("1,2\n3\n", (lm_csv_opts){0}, ":1: 2 fields, but the rows after have 1");
  expect_error("a,b\n1,2\n3,x\n", (lm_csv_opts){0}, ":3: field 2 (\"x\") is not a number");
  expect_error("1,2\n\"3,4\n", (lm_csv_opts){0}, ":2: a quoted field is never closed");
  expect_error("1,\"2\"x\n", (lm_csv_opts){0}, "text after a closing quote");
  expect_error("a,b\n1,2.5\n", (lm_csv_opts){.label_column = 2}, "label 2.5 is not an integer");
  expect_error("a,b\n1,2\n", (lm_csv_opts){.label_column = 3}, "label_column 3 is outside");
  expect_error("a,b\n1,2\n", (lm_csv_opts){.label_column = -3}, "label_column -3 is outside");
  expect_error("a\n1\n", (lm_csv_opts){.label_column = 1}, "leaves no feature");
  expect_error("a,b,c\n1,2\n", (lm_csv_opts){0}, "the header names 3 columns, the rows have 2");
  expect_error("a,b\n", (lm_csv_opts){0}, "a header and no data");
  expect_error("", (lm_csv_opts){0}, "no rows");
  expect_error("\n\r\n\n", (lm_csv_opts){0}, "no rows");
  expect_error("5,2,a,b\n1,2,0\n", (lm_csv_opts){.header = LM_CSV_SKLEARN}, "promises 5 samples of 2 features");
  expect_error("x,y\n1,2\n", (lm_csv_opts){.header = LM_CSV_SKLEARN}, "not scikit-learn's header");
  expect_error("1,2\nnan,3\n", (lm_csv_opts){.label_column = 1}, "label nan is not an integer");
  expect_error("a,b\n1,2\n", (lm_csv_opts){.header = LM_CSV_NO_HEADER}, ":1: field 1 (\"a\") is not a number");
  expect_error_n("1\0,2\n", 5, (lm_csv_opts){0}, ":1: field 1 holds a NUL byte");
  lm_csv c;
  assert_int_equal(lm_load_csv("/nonexistent/x.csv", &c), LM_ERROR_IO);
  assert_non_null(strstr(lm_last_error(), "/nonexistent/x.csv"));
  assert_int_equal(lm_load_csv(NULL, &c), LM_ERROR_VALUE);
  assert_int_equal(lm_load_csv_opts("x.csv", &c, (lm_csv_opts){.delimiter = '"'}), LM_ERROR_VALUE);
}

/* Numbers are read in the C locale, whatever the program's is. */
static void test_locale(void **state) {
  (void)state;
  const char *saved = setlocale(LC_NUMERIC, NULL);
  char *keep = saved ? strdup(saved) : NULL;
  if (!setlocale(LC_NUMERIC, "de_DE.UTF-8") && !setlocale(LC_NUMERIC, "fr_FR.UTF-8")) {
    free(keep);
    skip();
  }
  lm_csv c;
  const char *p = CSV("1.5,2.25\n");
  lm_status st = lm_load_csv(p, &c);
  setlocale(LC_NUMERIC, keep ? keep : "C");
  free(keep);
  assert_int_equal(st, LM_OK);
  float want[] = {1.5f, 2.25f};
  expect_x(&c, 1, 2, want);
  lm_csv_free(&c);
  unlink(p);
}

static const char *sklearn_file(const char *name) {
  static char paths[4][1024];
  static int k;
  char *p = paths[k++ % 4];
  const char *dir = getenv("LAMINA_SKLEARN_DATA");
  snprintf(p, sizeof paths[0], "%s/%s", dir && *dir ? dir : "/usr/lib/python3/dist-packages/sklearn/datasets/data", name);
  return access(p, R_OK) == 0 ? p : NULL;
}

/* The real files: sizes, class names, class counts and column sums as scikit-learn has them. */
static void test_sklearn_files(void **state) {
  (void)state;
  const char *iris = sklearn_file("iris.csv");
  if (!iris) skip();
  lm_csv c;
  assert_int_equal(lm_load_csv(iris, &c), LM_OK);
  assert_int_equal(c.x->shape.dim[0], 150);
  assert_int_equal(c.x->shape.dim[1], 4);
  assert_int_equal(c.n_classes, 3);
  assert_string_equal(c.class_names[0], "setosa");
  assert_string_equal(c.class_names[2], "virginica");
  int count[3] = {0};
  double sum[4] = {0};
  for (int i = 0; i < 150; i++) {
    int32_t y = lm_array_i32(c.y)[i];
    assert_true(y >= 0 && y < 3);
    count[y]++;
    for (int k = 0; k < 4; k++) sum[k] += lm_array_f32(c.x)[i * 4 + k];
  }
  assert_int_equal(count[0], 50);
  assert_int_equal(count[1], 50);
  assert_int_equal(count[2], 50);
  static const double want[4] = {876.5, 458.6, 563.7, 179.9}; /* iris.data.sum(axis=0) */
  for (int k = 0; k < 4; k++) assert_true(fabs(sum[k] - want[k]) < 1e-3);
  float first[] = {5.1f, 3.5f, 1.4f, 0.2f};
  assert_memory_equal(c.x->data, first, sizeof first);
  lm_csv_free(&c);

  const char *wine = sklearn_file("wine_data.csv"), *cancer = sklearn_file("breast_cancer.csv");
  if (wine) {
    assert_int_equal(lm_load_csv(wine, &c), LM_OK);
    assert_int_equal(c.x->shape.dim[0], 178);
    assert_int_equal(c.x->shape.dim[1], 13);
    assert_string_equal(c.class_names[1], "class_1");
    lm_csv_free(&c);
  }
  if (cancer) {
    assert_int_equal(lm_load_csv(cancer, &c), LM_OK);
    assert_int_equal(c.x->shape.dim[0], 569);
    assert_int_equal(c.x->shape.dim[1], 30);
    assert_string_equal(c.class_names[0], "malignant");
    int malignant = 0;
    for (int i = 0; i < 569; i++) malignant += lm_array_i32(c.y)[i] == 0;
    assert_int_equal(malignant, 212);
    lm_csv_free(&c);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_plain_and_quoted), cmocka_unit_test(test_sklearn_layout), cmocka_unit_test(test_errors),
      cmocka_unit_test(test_locale),           cmocka_unit_test(test_sklearn_files),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
