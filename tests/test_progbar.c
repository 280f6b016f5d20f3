/* Progress bar formatting, checked against Keras's Progbar wording. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "train/progbar.h"

/* A progress bar writing into memory (never a terminal, so non-interactive by default). */
typedef struct capture {
  lm_progbar p;
  FILE *f;
  char *buf;
  size_t len;
} capture;

static void open_capture(capture *c, int64_t target, int verbose) {
  c->buf = NULL;
  c->len = 0;
  c->f = open_memstream(&c->buf, &c->len);
  assert_non_null(c->f);
  lm__progbar_init(&c->p, c->f, target, verbose);
  assert_int_equal(c->p.interactive, 0);
  assert_int_equal(c->p.width, 30);
}

static const char *text(capture *c) {
  fflush(c->f);
  return c->buf ? c->buf : "";
}

static void close_capture(capture *c) {
  fclose(c->f);
  free(c->buf);
}

static void expect_contains(const char *s, const char *want) {
  if (!strstr(s, want)) fail_msg("\"%s\" should contain \"%s\"", s, want);
}

static void expect_prefix(const char *s, const char *want) {
  if (strncmp(s, want, strlen(want)) != 0) fail_msg("\"%s\" should start with \"%s\"", s, want);
}

/* The one unit of Keras's step time: " 85us/step", " 12ms/step" or " 3s/step". */
static void expect_step_time(const char *s) {
  if (!strstr(s, "us/step") && !strstr(s, "ms/step") && !strstr(s, "s/step"))
    fail_msg("\"%s\" should show the time per step", s);
}

static void test_verbose1_file_prints_only_final_line(void **state) {
  capture c;
  open_capture(&c, 10, 1);
  const char *keys[2] = {"loss", "acc"};
  double values[2] = {0.7, 0.6};
  for (int i = 1; i < 10; i++) lm__progbar_update(&c.p, i, 2, keys, values, 0);
  assert_string_equal(text(&c), "");
  values[0] = 0.5;
  values[1] = 0.875;
  lm__progbar_update(&c.p, 10, 2, keys, values, 1);
  const char *s = text(&c);
  /* "10/10 [==============================] - 0s 3us/step - loss: 0.5000 - acc: 0.8750\n" */
  expect_prefix(s, "10/10 [==============================] - 0s ");
  expect_step_time(s);
  expect_contains(s, " - loss: 0.5000 - acc: 0.8750\n");
  assert_null(strchr(s, '\r'));
  assert_ptr_equal(strchr(s, '\n'), s + strlen(s) - 1); /* one line */
  close_capture(&c);
}

static void test_value_formats(void **state) {
  capture c;
  open_capture(&c, 4, 1);
  const char *keys[5] = {"a", "b", "c", "d", "e"};
  const double values[5] = {1e-4, 0.0, -0.25, 1234.5678, 0.001};
  lm__progbar_update(&c.p, 4, 5, keys, values, 1);
  expect_contains(text(&c), " - a: 1.0000e-04 - b: 0.0000e+00 - c: -0.2500 - d: 1234.5678"
                            " - e: 1.0000e-03\n");
  close_capture(&c);
}

static void test_verbose2(void **state) {
  capture c;
  open_capture(&c, 1875, 2);
  const char *keys[2] = {"loss", "accuracy"};
  const double values[2] = {0.2973, 0.9138};
  lm__progbar_update(&c.p, 1000, 2, keys, values, 0);
  assert_string_equal(text(&c), "");
  lm__progbar_update(&c.p, 1875, 2, keys, values, 1);
  const char *s = text(&c);
  /* "1875/1875 - 0s - loss: 0.2973 - accuracy: 0.9138 - 0s/epoch - 2us/step\n" */
  expect_prefix(s, "1875/1875 - 0s - loss: 0.2973 - accuracy: 0.9138 - ");
  expect_contains(s, "/epoch - ");
  expect_contains(s, "/step\n");
  assert_null(strchr(s, '['));
  close_capture(&c);
}

static void test_unknown_target(void **state) {
  capture c;
  open_capture(&c, -1, 1);
  const char *keys[1] = {"loss"};
  const double values[1] = {0.5};
  lm__progbar_update(&c.p, 37, 1, keys, values, 1);
  const char *s = text(&c);
  expect_prefix(s, "     37/Unknown - 0s ");
  expect_step_time(s);
  expect_contains(s, " - loss: 0.5000\n");
  close_capture(&c);
}

static void test_interactive_bar(void **state) {
  capture c;
  open_capture(&c, 1875, 1);
  c.p.interactive = 1;
  const char *keys[1] = {"loss"};
  double values[1] = {123456.0};
  /* 10 steps in 100 s leave 1865 steps of 10 s. */
  c.p.start = lm__now() - 100;
  lm__progbar_update(&c.p, 10, 1, keys, values, 0);
  const char *s = text(&c);
  assert_string_equal(s, "\r  10/1875 [..............................] - ETA: 5:10:50 - loss: "
                         "123456.0000");
  size_t first = strlen(s);
  /* Throttled: a second update right after the first shows nothing. */
  lm__progbar_update(&c.p, 11, 1, keys, values, 0);
  assert_int_equal(strlen(text(&c)), first);

  c.p.last_update -= 1;
  c.p.start = lm__now() - 938 * 5;
  values[0] = 0.5;
  lm__progbar_update(&c.p, 938, 1, keys, values, 0);
  s = text(&c) + first;
  expect_prefix(s, "\r 938/1875 [==============>...............] - ETA: 1:18:05 - loss: "
                         "0.5000");

  c.p.last_update -= 1;
  c.p.start = lm__now() - 1800;
  lm__progbar_update(&c.p, 1800, 1, keys, values, 0);
  expect_contains(text(&c), "[===========================>..] - ETA: 1:15 - loss");
  c.p.last_update -= 1;
  c.p.start = lm__now() - 1870;
  lm__progbar_update(&c.p, 1870, 1, keys, values, 0);
  expect_contains(text(&c), " - ETA: 5s - loss");

  /* The final line is not throttled and ends the line. */
  size_t before = strlen(text(&c));
  c.p.start = lm__now() - 3;
  lm__progbar_update(&c.p, 1875, 1, keys, values, 1);
  s = text(&c) + before;
  expect_prefix(s, "\r1875/1875 [==============================] - 3s 2ms/step - loss: 0.5000");
  assert_int_equal(s[strlen(s) - 1], '\n');
  close_capture(&c);
}

/* A line shorter than the one it overwrites is padded with spaces to blank the rest. */
static void test_interactive_padding(void **state) {
  capture c;
  open_capture(&c, 10, 1);
  c.p.interactive = 1;
  const char *keys[1] = {"loss"};
  double values[1] = {1e9};
  lm__progbar_update(&c.p, 5, 1, keys, values, 0);
  size_t prev = strlen(text(&c)) - 1;
  values[0] = 0.5;
  lm__progbar_update(&c.p, 10, 1, keys, values, 1);
  const char *s = strrchr(text(&c), '\r') + 1;
  assert_int_equal(strlen(s) - 1, prev);
  expect_contains(s, "- loss: 0.5000 ");
  assert_string_equal(s + strlen(s) - 2, " \n");
  close_capture(&c);
}

static void test_verbose0_silent(void **state) {
  capture c;
  open_capture(&c, 10, 0);
  const char *keys[1] = {"loss"};
  const double values[1] = {0.5};
  lm__progbar_update(&c.p, 10, 1, keys, values, 1);
  assert_string_equal(text(&c), "");
  close_capture(&c);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_verbose1_file_prints_only_final_line),
      cmocka_unit_test(test_value_formats),
      cmocka_unit_test(test_verbose2),
      cmocka_unit_test(test_unknown_target),
      cmocka_unit_test(test_interactive_bar),
      cmocka_unit_test(test_interactive_padding),
      cmocka_unit_test(test_verbose0_silent),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
