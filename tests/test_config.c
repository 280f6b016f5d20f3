/* Model configs as JSON: the strict JSON parser (src/io/json.c), lm_model_to_json against
 * real Keras's to_json (tests/fixtures/config, made by
 * tools/keras_fixtures/make_config_fixtures.py, and tests/fixtures/keras_model_config.txt),
 * lm_model_from_json on Keras 3 and Keras 2 layouts, round trips of every layer class, and
 * hostile input that must give errors, never crashes. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "fixture.h"
#include "io/json.h"
#include "io/model_config.h"
#include <lamina/lamina.h>
#include <math.h>

/* ---- Helpers ---- */

static char *read_text(const char *relative) {
  char path[4096];
  FILE *f = fopen(fx_source_path(path, sizeof path, relative), "rb");
  if (!f) fail_msg("cannot open %s", path);
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *s = malloc((size_t)n + 1);
  assert_non_null(s);
  assert_int_equal(fread(s, 1, (size_t)n, f), (size_t)n);
  s[n] = '\0';
  fclose(f);
  return s;
}

/* The first difference, with some context, for a readable failure. */
static void assert_same_text(const char *what, const char *got, const char *want) {
  size_t i = 0;
  while (got[i] && got[i] == want[i]) i++;
  if (!got[i] && !want[i]) return;
  size_t from = i > 100 ? i - 100 : 0;
  fail_msg("%s differs at byte %zu:\n  lamina: ...%.200s\n  keras:  ...%.200s", what, i, got + from, want + from);
}

static lm__json_doc *parse(const char *text, lm_error *err) {
  memset(err, 0, sizeof *err);
  return lm__json_parse(text, strlen(text), NULL, err);
}

/* Loads JSON that must fail; the error must contain every given fragment. */
static void expect_refused(const char *json, ...) {
  lm_model *m = lm_model_from_json(json);
  assert_non_null(m);
  if (lm_model_status(m) == LM_OK) fail_msg("accepted: %.300s", json);
  va_list ap;
  va_start(ap, json);
  for (const char *want; (want = va_arg(ap, const char *));)
    if (!strstr(lm_model_error(m), want)) fail_msg("error \"%s\" does not mention \"%s\"", lm_model_error(m), want);
  va_end(ap);
  assert_string_equal(lm_last_error(), lm_model_error(m));
}

static lm_model *load_ok(const char *json) {
  lm_model *m = lm_model_from_json(json);
  assert_non_null(m);
  if (lm_model_status(m) != LM_OK) fail_msg("%s", lm_model_error(m));
  return m;
}

/* Two JSON documents are equal as values (numbers compared as doubles, objects by keys). */
static bool same_value(const lm__json_value *a, const lm__json_value *b) {
  if (a->type != b->type) return false;
  switch (a->type) {
  case LM_JSON_NULL: return true;
  case LM_JSON_BOOL: return a->boolean == b->boolean;
  case LM_JSON_NUMBER: return a->number == b->number || (isnan(a->number) && isnan(b->number));
  case LM_JSON_STRING: return !strcmp(a->string, b->string);
  case LM_JSON_ARRAY:
    if (a->n != b->n) return false;
    for (size_t i = 0; i < a->n; i++)
      if (!same_value(&a->items[i], &b->items[i])) return false;
    return true;
  case LM_JSON_OBJECT:
    if (a->n != b->n) return false;
    for (size_t i = 0; i < a->n; i++) {
      const lm__json_value *o = lm__json_get(b, a->items[i].key);
      if (!o || !same_value(&a->items[i], o)) return false;
    }
    return true;
  }
  return false;
}

static void assert_same_json(const char *got, const char *want) {
  lm_error e1, e2;
  lm__json_doc *a = parse(got, &e1), *b = parse(want, &e2);
  if (!a || !b) fail_msg("unparsable: %s %s", e1.msg, e2.msg);
  if (!same_value(lm__json_root(a), lm__json_root(b))) fail_msg("different JSON:\n%s\n%s", got, want);
  lm__json_free(a);
  lm__json_free(b);
}

/* ---- The JSON parser ---- */

static void test_json_values(void **state) {
  lm_error err;
  lm__json_doc *d = parse(" {\"a\": [1, -2.5e3, 0, -0, 1e-400, 9223372036854775807, -9223372036854775808, "
                          "9223372036854775808, NaN, -Infinity, Infinity],\n \"s\": \"x\\\"\\\\\\/\\b\\f\\n\\r\\t"
                          "\\u00e9\\ud83d\\ude00\xc3\xa9\", \"t\": true, \"f\": false, \"n\": null, \"e\": {}, \"l\": []} ",
                          &err);
  if (!d) fail_msg("%s", err.msg);
  const lm__json_value *r = lm__json_root(d), *a = lm__json_get(r, "a");
  assert_int_equal(r->type, LM_JSON_OBJECT);
  assert_int_equal(r->n, 7);
  assert_int_equal(a->n, 11);
  assert_true(a->items[0].is_integer && a->items[0].integer == 1);
  assert_false(a->items[1].is_integer);
  assert_true(a->items[1].number == -2500.0);
  assert_true(a->items[3].is_integer && a->items[3].integer == 0);
  assert_true(a->items[4].number == 0.0 && !a->items[4].is_integer);
  assert_true(a->items[5].is_integer && a->items[5].integer == INT64_MAX);
  assert_true(a->items[6].is_integer && a->items[6].integer == INT64_MIN);
  assert_false(a->items[7].is_integer); /* past int64: a double */
  assert_true(a->items[7].number == 9223372036854775808.0);
  assert_true(isnan(a->items[8].number));
  assert_true(isinf(a->items[9].number) && a->items[9].number < 0);
  assert_true(isinf(a->items[10].number) && a->items[10].number > 0);
  const lm__json_value *s = lm__json_get(r, "s");
  assert_string_equal(s->string, "x\"\\/\b\f\n\r\t\xc3\xa9\xf0\x9f\x98\x80\xc3\xa9");
  assert_int_equal(s->n, strlen(s->string));
  assert_int_equal(s->line, 2); /* members are where their key is */
  assert_true(lm__json_get(r, "t")->boolean);
  assert_int_equal(lm__json_get(r, "n")->type, LM_JSON_NULL);
  assert_int_equal(lm__json_get(r, "e")->n, 0);
  assert_null(lm__json_get(r, "missing"));
  assert_null(lm__json_get(a, "a"));
  assert_string_equal(lm__json_kind(lm__json_get(r, "l")), "a list");
  lm__json_free(d);
  /* Scalars at the top level, and deep nesting up to the limit. */
  d = parse("  42 ", &err);
  assert_non_null(d);
  assert_int_equal(lm__json_root(d)->integer, 42);
  lm__json_free(d);
  char deep[300];
  memset(deep, '[', 128);
  memset(deep + 128, ']', 128);
  deep[256] = '\0';
  d = parse(deep, &err);
  if (!d) fail_msg("%s", err.msg);
  lm__json_free(d);
  /* The buffer need not be NUL-terminated: an exact-size copy (ASan watches its end). */
  const char *text = "{\"k\": [1, 2, \"abc\"]}";
  char *exact = malloc(strlen(text));
  memcpy(exact, text, strlen(text));
  d = lm__json_parse(exact, strlen(text), NULL, &err);
  assert_non_null(d);
  assert_int_equal(lm__json_get(lm__json_root(d), "k")->n, 3);
  lm__json_free(d);
  for (size_t n = 0; n < strlen(text); n++) { /* every truncation fails cleanly */
    memset(&err, 0, sizeof err);
    assert_null(lm__json_parse(exact, n, NULL, &err));
    assert_int_not_equal(err.code, LM_OK);
  }
  free(exact);
  lm__json_free(NULL);
}

static void test_json_errors(void **state) {
  const struct {
    const char *text, *want;
  } cases[] = {
      {"", "line 1, column 1: unexpected end of input"},
      {"   \n  ", "line 2, column 3: unexpected end of input"},
      {"{\"a\": 1,}", "trailing comma before '}'"},
      {"[1, 2,]", "trailing comma before ']'"},
      {"[1 2]", "expected ',' or ']' after a list item, found '2'"},
      {"{\"a\" 1}", "expected ':' after the key \"a\""},
      {"{\"a\": 1 \"b\": 2}", "expected ',' or '}'"},
      {"{1: 2}", "expected a string key"},
      {"[01]", "leading zeros"},
      {"[1.]", "digit after the decimal point"},
      {"[1e]", "digit in the exponent"},
      {"[-]", "expected a digit after '-'"},
      {"[+1]", "unexpected '+'"},
      {"[.5]", "unexpected '.'"},
      {"1e999", "out of range"},
      {"-1e400", "out of range"},
      {"[tru]", "unexpected 't'"},
      {"[nul", "unexpected 'n'"},
      {"nan", "unexpected 'n'"},
      {"\"abc", "unterminated string"},
      {"\"a\\\"", "unterminated string"},
      {"\"a\tb\"", "control character \\x09"},
      {"\"a\nb\"", "control character \\x0a"},
      {"\"\\x\"", "invalid escape"},
      {"\"\\u12\"", "four hex digits"},
      {"\"\\u12g4\"", "four hex digits"},
      {"\"\\ud800\"", "lone UTF-16 surrogate \\ud800"},
      {"\"\\ud800\\u0041\"", "lone UTF-16 surrogate"},
      {"\"\\udc00\"", "lone UTF-16 surrogate \\udc00"},
      {"\"\\u0000\"", "\\u0000"},
      {"\"\xff\"", "invalid UTF-8"},
      {"\"\xc0\xaf\"", "invalid UTF-8"},          /* overlong '/' */
      {"\"\xed\xa0\x80\"", "invalid UTF-8"},      /* an encoded surrogate */
      {"\"\xf4\x90\x80\x80\"", "invalid UTF-8"},  /* past U+10FFFF */
      {"\"\xe2\x82\"", "invalid UTF-8"},          /* truncated */
      {"\xef\xbb\xbf{}", "byte-order mark"},
      {"{} {}", "after the JSON value"},
      {"[1] x", "unexpected 'x' after the JSON value"},
      {"// comment\n{}", "unexpected '/'"},
      {"{'a': 1}", "expected a string key in an object, found '''"},
      {"{\"a\": 1, \"a\": 2}", "duplicate key \"a\""},
      {"[{\"x\": 1},\n {\"b\": 1, \"x\": [], \"b\": 2}]", "line 2: duplicate key \"b\" in the object at line 2, column 2"},
      {"[1, [2, {\"k\": tx}]]", "line 1, column 15: unexpected 't'"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    lm_error err;
    lm__json_doc *d = parse(cases[i].text, &err);
    if (d) fail_msg("case %zu accepted: %s", i, cases[i].text);
    assert_int_not_equal(err.code, LM_OK);
    if (!strstr(err.msg, cases[i].want)) fail_msg("case %zu: \"%s\" does not say \"%s\"", i, err.msg, cases[i].want);
    assert_non_null(strstr(err.msg, "JSON: line "));
  }
  /* Duplicate keys in a big object (the sorted check). */
  char big[4096] = "{";
  for (int i = 0; i < 100; i++) snprintf(big + strlen(big), sizeof big - strlen(big), "\"k%d\": %d, ", i % 99, i);
  strcat(big, "\"end\": 0}");
  lm_error err;
  assert_null(parse(big, &err));
  assert_non_null(strstr(err.msg, "duplicate key \"k0\""));
  /* Limits: depth, values, size; a very long number. */
  char deep[1200];
  memset(deep, '[', 1100);
  deep[1100] = '\0';
  assert_null(parse(deep, &err));
  assert_non_null(strstr(err.msg, "nested deeper than 128 levels"));
  memset(&err, 0, sizeof err);
  lm__json_limits lim = {.max_depth = 4};
  assert_null(lm__json_parse("[[[[[]]]]]", 10, &lim, &err));
  assert_non_null(strstr(err.msg, "deeper than 4"));
  lim = (lm__json_limits){.max_depth = 5};
  memset(&err, 0, sizeof err);
  lm__json_doc *d = lm__json_parse("[[[[[]]]]]", 10, &lim, &err);
  assert_non_null(d);
  lm__json_free(d);
  lim = (lm__json_limits){.max_values = 3};
  memset(&err, 0, sizeof err);
  assert_null(lm__json_parse("[1, 2, 3]", 9, &lim, &err));
  assert_non_null(strstr(err.msg, "more than 3 values"));
  lim = (lm__json_limits){.max_bytes = 8};
  memset(&err, 0, sizeof err);
  assert_null(lm__json_parse("[1, 2, 3]", 9, &lim, &err));
  assert_non_null(strstr(err.msg, "more than the limit of 8"));
  char num[700];
  memset(num, '1', 600);
  num[600] = '\0';
  assert_null(parse(num, &err));
  assert_non_null(strstr(err.msg, "number longer than"));
  memset(&err, 0, sizeof err);
  assert_null(lm__json_parse(NULL, 0, NULL, &err));
  assert_int_equal(err.code, LM_ERROR_VALUE);
}

/* ---- Real Keras's JSON: load, compare the architecture, write it back ---- */

typedef struct keras_layer {
  char name[128], cls[64];
  long long params;
} keras_layer;

/* The summary.txt block of one model. */
static int summary_of(const char *model, long long *total, long long *trainable, keras_layer *layers, int cap) {
  char *text = read_text("tests/fixtures/config/summary.txt");
  int n = -1;
  char *save = NULL;
  for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
    char name[128];
    long long t, tr;
    if (sscanf(line, "model %127s %lld %lld", name, &t, &tr) == 3) {
      if (n >= 0) break;
      if (!strcmp(name, model)) n = 0, *total = t, *trainable = tr;
    } else if (n >= 0 && n < cap && sscanf(line, " %127s %63s %lld", layers[n].name, layers[n].cls, &layers[n].params) == 3)
      n++;
  }
  free(text);
  return n;
}

/* Writes a parsed document back as json.dumps would; with strip_masks, without what Keras 3
 * adds for an Embedding's mask_zero (NotEqual op layers, "mask" tensors in call arguments),
 * which lamina leaves implicit (Keras loads both forms to the same model). */
static void rewrite(lm_json *j, const lm__json_value *v, bool strip_masks) {
  switch (v->type) {
  case LM_JSON_NULL: lm__json_null(j); break;
  case LM_JSON_BOOL: lm__json_bool(j, v->boolean); break;
  case LM_JSON_NUMBER:
    if (v->is_integer) lm__json_int(j, v->integer);
    else lm__json_double(j, v->number);
    break;
  case LM_JSON_STRING: lm__json_string(j, v->string); break;
  case LM_JSON_ARRAY:
    lm__json_begin_array(j);
    for (size_t i = 0; i < v->n; i++) {
      const lm__json_value *cls = lm__json_get(&v->items[i], "class_name");
      if (strip_masks && cls && cls->type == LM_JSON_STRING && !strcmp(cls->string, "NotEqual")) continue;
      rewrite(j, &v->items[i], strip_masks);
    }
    lm__json_end_array(j);
    break;
  case LM_JSON_OBJECT:
    lm__json_begin_object(j);
    for (size_t i = 0; i < v->n; i++) {
      lm__json_key(j, v->items[i].key);
      if (strip_masks && !strcmp(v->items[i].key, "mask")) lm__json_null(j);
      else rewrite(j, &v->items[i], strip_masks);
    }
    lm__json_end_object(j);
    break;
  }
}

static char *rewritten(const char *json, bool strip_masks) {
  lm_error err;
  lm__json_doc *d = parse(json, &err);
  if (!d) fail_msg("%s", err.msg);
  lm_json j = {0};
  rewrite(&j, lm__json_root(d), strip_masks);
  lm__json_free(d);
  assert_false(j.failed);
  return j.buf;
}

/* The model's layers (names, classes, parameter counts) and totals are Keras's. */
static void check_summary(lm_model *m, const char *name) {
  keras_layer want[200];
  long long total = 0, trainable = 0;
  int n = summary_of(name, &total, &trainable, want, 200);
  if (n < 0) fail_msg("no summary for %s", name);
  assert_int_equal(lm_model_n_layers(m), n);
  for (int i = 0; i < n; i++) {
    lm_layer *layer = lm_model_get_layer(m, i);
    if (strcmp(lm_layer_name(layer), want[i].name) || strcmp(lm_layer_class(layer), want[i].cls) ||
        lm_layer_count_params(layer) != want[i].params)
      fail_msg("%s layer %d: lamina %s (%s) %lld params, Keras %s (%s) %lld", name, i, lm_layer_name(layer),
               lm_layer_class(layer), (long long)lm_layer_count_params(layer), want[i].name, want[i].cls, want[i].params);
  }
  assert_int_equal(lm_model_count_params(m), total);
  assert_int_equal(lm_model_count_trainable_params(m), trainable);
}

static void check_keras_model(const char *name) {
  char path[256];
  snprintf(path, sizeof path, "tests/fixtures/config/%s.json", name);
  char *json = read_text(path);
  lm_model *m = load_ok(json);
  check_summary(m, name);
  /* Names, classes, options and connections, all in the text. */
  char *back = lm_model_to_json(m), *same = rewritten(json, false), *keras = rewritten(json, true);
  assert_non_null(back);
  assert_same_text("the parser and writer", same, json); /* the rewriting itself is faithful */
  assert_same_text(name, back, keras);
  /* lamina's text loads to the same architecture again. */
  lm_model *again = load_ok(back);
  char *back2 = lm_model_to_json(again);
  assert_same_text(name, back2, back);
  free(back2);
  free(back);
  free(same);
  free(keras);
  free(json);
  lm_session_clear();
}

static void test_keras_chapter_models(void **state) {
  const char *names[] = {"chapter_imdb_conv1d", "chapter_siamese_lstm", "chapter_question_answering", "chapter_posts",
                         "chapter_separable_classifier", "chapter_inception", "chapter_mlp", "xception"};
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) check_keras_model(names[i]);
}

static void test_keras_layer_zoo(void **state) {
  const char *names[] = {"conv2d_zoo", "conv1d_zoo", "rnn_zoo", "core_zoo", "shared_nested", "sequential_nested",
                         "frozen_nested"};
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) check_keras_model(names[i]);
}

/* The TensorBoard writer's fixtures (tests/fixtures/keras_model_config.txt) load too. */
static void test_keras_model_config_txt(void **state) {
  char *text = read_text("tests/fixtures/keras_model_config.txt");
  int checked = 0;
  char *save = NULL;
  for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
    if (strncmp(line, "config ", 7)) continue;
    char *json = strchr(line + 7, ' ') + 1;
    lm_model *m = load_ok(json);
    char *back = lm_model_to_json(m);
    assert_same_text(line + 7, back, json);
    free(back);
    lm_session_clear();
    checked++;
  }
  free(text);
  assert_int_equal(checked, 5);
}

/* Models Keras builds and lamina cannot: refused, naming the layer and the field. */
static void test_keras_refused(void **state) {
  char *list = read_text("tests/fixtures/config/refuse.txt");
  int checked = 0;
  char *save = NULL;
  for (char *line = strtok_r(list, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
    char name[64], field[64], path[256];
    if (sscanf(line, "refuse %63s %63s", name, field) != 2) continue;
    snprintf(path, sizeof path, "tests/fixtures/config/refuse_%s.json", name);
    char *json = read_text(path);
    lm_model *m = lm_model_from_json(json);
    if (!lm_model_status(m)) fail_msg("%s was accepted", name);
    if (!strstr(lm_model_error(m), field) || !strstr(lm_model_error(m), "line 1, column"))
      fail_msg("%s: \"%s\" does not name %s and where", name, lm_model_error(m), field);
    free(json);
    lm_session_clear();
    checked++;
  }
  free(list);
  assert_int_equal(checked, 14);
}

/* ---- lamina -> JSON -> lamina ---- */

static lm_array *filled(lm_shape shape, lm_dtype dt, uint32_t seed, int modulo) {
  lm_array *a = lm_array_new(dt, shape);
  for (int64_t i = 0; i < a->size; i++) {
    seed = seed * 1664525u + 1013904223u;
    if (dt == LM_INT32) ((int32_t *)a->data)[i] = (int32_t)((seed >> 8) % (uint32_t)modulo);
    else lm_array_f32(a)[i] = (float)((seed >> 8) % 2001) / 1000.0f - 1.0f;
  }
  return a;
}

typedef struct layer_pair {
  lm_layer *a, *b;
} layer_pair;

/* Writes m, loads the text, and checks the copy: same text, layers, parameter counts, and
 * (with m's weights copied in, in order) the same predictions on x. */
static void round_trip(lm_model *m, lm_feed x) {
  if (lm_model_status(m)) fail_msg("%s", lm_model_error(m));
  char *json = lm_model_to_json(m);
  assert_non_null(json);
  lm_model *copy = load_ok(json);
  char *again = lm_model_to_json(copy);
  assert_same_text(lm_model_name(m), again, json);
  assert_int_equal(lm_model_n_layers(copy), lm_model_n_layers(m));
  assert_int_equal(lm_model_count_params(copy), lm_model_count_params(m));
  assert_int_equal(lm_model_count_trainable_params(copy), lm_model_count_trainable_params(m));
  /* Copy the weights layer by layer (nested models by their layers) and predict. */
  for (int i = 0; i < lm_model_n_layers(m); i++) {
    lm_layer *a = lm_model_get_layer(m, i), *b = lm_model_get_layer(copy, i);
    assert_string_equal(lm_layer_name(a), lm_layer_name(b));
    assert_string_equal(lm_layer_class(a), lm_layer_class(b));
    assert_int_equal(lm_layer_count_params(a), lm_layer_count_params(b));
    layer_pair stack[16] = {{a, b}};
    for (int top = 1; top > 0;) {
      top--;
      lm_layer *la = stack[top].a, *lb = stack[top].b;
      if (la->model) {
        for (int k = 0; k < la->model->n_layers && top < 16; k++)
          stack[top++] = (layer_pair){la->model->layers[k], lb->model->layers[k]};
        continue;
      }
      const char *wa, *wb;
      for (int w = 0; lm_layer_weight(la, w, &wa); w++) {
        lm_array *va = lm_layer_weight(la, w, &wa), *vb = lm_layer_weight(lb, w, &wb);
        assert_non_null(vb);
        assert_string_equal(wa, wb);
        assert_int_equal(va->size, vb->size);
        memcpy(vb->data, va->data, (size_t)va->size * 4);
      }
    }
  }
  lm_outputs pa = lm_predict(m, x, .verbose = LM_SILENT), pb = lm_predict(copy, x, .verbose = LM_SILENT);
  if (!pa.n) fail_msg("predict: %s", lm_last_error());
  assert_int_equal(pa.n, pb.n);
  for (int o = 0; o < pa.n; o++) {
    assert_int_equal(pa.a[o]->size, pb.a[o]->size);
    if (memcmp(pa.a[o]->data, pb.a[o]->data, (size_t)pa.a[o]->size * 4)) fail_msg("%s: output %d differs", lm_model_name(m), o);
    assert_memory_equal(pa.a[o]->data, pb.a[o]->data, (size_t)pa.a[o]->size * 4);
  }
  lm_outputs_free(&pa);
  lm_outputs_free(&pb);
  free(again);
  free(json);
}

static void test_round_trip_core(void **state) {
  lm_set_seed(1);
  lm_tensor *x = lm_input(LM_SHAPE(6), .name = "x");
  lm_tensor *h = lm_call(lm_dense(8, .activation = LM_SELU, .kernel_initializer = LM_INIT(LM_HE_UNIFORM),
                                  .bias_initializer = LM_INIT(LM_CONSTANT, .a = 0.25)),
                         x);
  h = lm_call(lm_dropout(0.3, .seed = 11), h);
  lm_tensor *r = lm_call(lm_reshape(LM_SHAPE(2, -1)), h);
  r = lm_call(lm_activation_layer(LM_SWISH), r);
  lm_tensor *f = lm_call(lm_flatten(), r);
  lm_tensor *a = lm_call(lm_dense(8, .no_bias = true, .kernel_initializer = LM_INIT(LM_RANDOM_UNIFORM, .a = -1, .b = 2)), f);
  lm_tensor *b = lm_call(lm_dense(8, .activation = LM_GELU, .kernel_initializer = LM_INIT(LM_TRUNCATED_NORMAL, .a = 0.1, .b = 0.3)), f);
  lm_tensor *s = lm_add(LM_TENSORS(a, b));
  s = lm_subtract(LM_TENSORS(s, a));
  s = lm_multiply(LM_TENSORS(s, b, a));
  s = lm_average(LM_TENSORS(s, a));
  s = lm_maximum(LM_TENSORS(s, b));
  lm_tensor *c = lm_concatenate(LM_TENSORS(r, lm_call(lm_reshape(LM_SHAPE(2, 4)), s)), .axis = 1);
  lm_model *m = lm_model_new(LM_TENSORS(x), LM_TENSORS(s, c), .name = "core");
  lm_array *data = filled(LM_SHAPE(5, 6), LM_FLOAT32, 1, 0);
  round_trip(m, LM_FEED(data));
  lm_array_free(data);
  lm_session_clear();
}

static void test_round_trip_conv_pool_norm(void **state) {
  lm_set_seed(2);
  lm_tensor *img = lm_input(LM_SHAPE(12, 10, 3), .name = "img");
  lm_tensor *a = lm_call(lm_conv2d(4, 3, .kernel_hw = {3, 2}, .strides = {2, 1}, .padding = LM_SAME, .activation = LM_RELU,
                                   .kernel_initializer = LM_INIT(LM_LECUN_NORMAL)),
                         img);
  a = lm_call(lm_depthwise_conv2d(3, .depth_multiplier = 2, .dilation_rate = {2}, .padding = LM_SAME, .no_bias = true), a);
  a = lm_call(lm_separable_conv2d(5, 2, .depth_multiplier = 3, .activation = LM_TANH,
                                  .pointwise_initializer = LM_INIT(LM_ORTHOGONAL, .a = 0.7)),
              a);
  a = lm_call(lm_batch_normalization(.momentum = 0.8, .epsilon = 1e-4, .no_center = true,
                                     .moving_variance_initializer = LM_INIT(LM_CONSTANT, .a = 2)),
              a);
  lm_tensor *p = lm_call(lm_max_pooling2d(2, .pool_hw = {2, 1}, .strides = {1, 1}, .padding = LM_SAME), a);
  p = lm_call(lm_average_pooling2d(2), p);
  lm_tensor *g1 = lm_call(lm_global_max_pooling2d(), p), *g2 = lm_call(lm_global_average_pooling2d(), a);
  lm_tensor *seq = lm_input(LM_SHAPE(16, 4), .name = "seq");
  lm_tensor *b = lm_call(lm_conv1d(6, 3, .dilation_rate = {2}, .activation = LM_ELU), seq);
  b = lm_call(lm_separable_conv1d(4, 3, .strides = {2}, .padding = LM_SAME), b);
  b = lm_call(lm_layer_normalization(.epsilon = 1e-5, .no_scale = true), b);
  b = lm_call(lm_batch_normalization(.axis = 1), b);
  lm_tensor *q = lm_call(lm_max_pooling1d(2), b);
  q = lm_call(lm_average_pooling1d(3, .strides = {1}, .padding = LM_SAME), q);
  lm_tensor *g3 = lm_call(lm_global_max_pooling1d(), q), *g4 = lm_call(lm_global_average_pooling1d(), b);
  lm_tensor *out = lm_call(lm_dense(2), lm_concatenate(LM_TENSORS(g1, g2, g3, g4)));
  lm_model *m = lm_model_new(LM_TENSORS(img, seq), LM_TENSORS(out, g2), .name = "conv");
  lm_array *x1 = filled(LM_SHAPE(3, 12, 10, 3), LM_FLOAT32, 3, 0), *x2 = filled(LM_SHAPE(3, 16, 4), LM_FLOAT32, 4, 0);
  round_trip(m, LM_FEED(x1, x2));
  lm_array_free(x1);
  lm_array_free(x2);
  lm_session_clear();
}

static void test_round_trip_recurrent(void **state) {
  lm_set_seed(3);
  lm_tensor *tok = lm_input(LM_SHAPE(LM_NONE), .dtype = LM_INT32, .name = "tok");
  lm_tensor *e = lm_call(lm_embedding(20, 6, .mask_zero = true, .embeddings_initializer = LM_INIT(LM_RANDOM_NORMAL, .b = 0.5)), tok);
  lm_tensor *a = lm_call(lm_lstm(5, .return_sequences = true, .no_unit_forget_bias = true,
                                 .recurrent_activation = LM_TANH, .recurrent_initializer = LM_INIT(LM_GLOROT_NORMAL)),
                         e);
  a = lm_call(lm_gru(4, .return_sequences = true, .no_reset_after = true, .go_backwards = true), a);
  a = lm_call(lm_simple_rnn(3, .return_sequences = true, .activation = LM_RELU, .no_bias = true), a);
  lm_tensors st = lm_call_outputs(lm_lstm(3, .return_state = true), LM_TENSORS(a));
  lm_tensor *b = lm_call(lm_bidirectional(lm_gru(2, .return_sequences = true), .merge_mode = LM_MERGE_AVE), a);
  b = lm_call(lm_bidirectional(lm_simple_rnn(2), .merge_mode = LM_MERGE_MUL), b);
  lm_tensors bs = lm_call_outputs(lm_bidirectional(lm_lstm(2, .return_state = true, .go_backwards = true)), LM_TENSORS(a));
  lm_tensor *c = lm_call(lm_bidirectional(lm_lstm(2), .merge_mode = LM_MERGE_SUM), e);
  lm_tensors gs = lm_call_outputs(lm_gru(2, .return_state = true), LM_TENSORS(e));
  lm_model *m = lm_model_new(LM_TENSORS(tok), LM_TENSORS(st.t[0], st.t[1], st.t[2], b, bs.t[0], bs.t[1], bs.t[2], bs.t[3], bs.t[4], c, gs.t[1]),
                             .name = "recurrent");
  lm_array *ids = filled(LM_SHAPE(4, 7), LM_INT32, 5, 20);
  for (int i = 0; i < 3; i++) ((int32_t *)ids->data)[i * 7 + 6] = 0; /* masked steps */
  round_trip(m, LM_FEED(ids));
  lm_array_free(ids);
  lm_session_clear();
}

static void test_round_trip_nested_shared(void **state) {
  lm_set_seed(4);
  lm_tensor *ii = lm_input(LM_SHAPE(4), .name = "ii");
  lm_model *inner = lm_model_new(LM_TENSORS(ii), LM_TENSORS(lm_call(lm_dense(4, .activation = LM_TANH), ii)), .name = "inner");
  lm_model *seq = lm_sequential(.name = "seq");
  lm_sequential_add(seq, lm_input_layer(LM_SHAPE(4)));
  lm_sequential_add(seq, lm_dense(4));
  /* A Functional inside a Sequential. (A model used both here and in the outer model would
   * come back as two copies: Keras's JSON writes it out twice.) */
  lm_tensor *ji = lm_input(LM_SHAPE(4), .name = "ji");
  lm_sequential_add(seq, lm_model_layer(lm_model_new(LM_TENSORS(ji), LM_TENSORS(lm_call(lm_dense(4), ji)), .name = "in_seq")));
  lm_layer *shared = lm_dense(4, .name = "shared");
  lm_tensor *x = lm_input(LM_SHAPE(4), .name = "x"), *y = lm_input(LM_SHAPE(4), .name = "y");
  lm_tensor *a = lm_call(shared, x), *b = lm_call(shared, lm_call(inner, y)), *c = lm_call(shared, lm_call(inner, a));
  lm_tensor *d = lm_call(seq, lm_add(LM_TENSORS(b, c)));
  lm_tensor *e = lm_call(inner, d); /* an output straight from a nested Functional */
  lm_model *frozen = lm_sequential(.name = "frozen");
  lm_sequential_add(frozen, lm_input_layer(LM_SHAPE(4)));
  lm_sequential_add(frozen, lm_dense(2));
  lm_layer_set_trainable(lm_model_layer(frozen), false);
  lm_tensor *f = lm_call(frozen, e);
  lm_model *m = lm_model_new(LM_TENSORS(x, y), LM_TENSORS(e, f, lm_call(seq, d), c), .name = "outer");
  lm_array *x1 = filled(LM_SHAPE(3, 4), LM_FLOAT32, 6, 0), *x2 = filled(LM_SHAPE(3, 4), LM_FLOAT32, 7, 0);
  round_trip(m, LM_FEED(x1, x2));
  lm_array_free(x1);
  lm_array_free(x2);
  lm_session_clear();
}

static void test_round_trip_sequential(void **state) {
  lm_set_seed(5);
  lm_model *m = lm_sequential(.name = "plain");
  lm_sequential_add(m, lm_input_layer(LM_SHAPE(8, 8, 1), .name = "pixels"));
  lm_sequential_add(m, lm_conv2d(3, 3, .padding = LM_SAME));
  lm_sequential_add(m, lm_max_pooling2d(2));
  lm_sequential_add(m, lm_flatten());
  lm_sequential_add(m, lm_dropout(0.5));
  lm_sequential_add(m, lm_dense(3, .activation = LM_SOFTMAX));
  lm_array *x = filled(LM_SHAPE(2, 8, 8, 1), LM_FLOAT32, 8, 0);
  round_trip(m, LM_FEED(x));
  lm_array_free(x);
  lm_session_clear();
}

/* ---- Keras 2 (tf.keras) layouts ----
 * tests/fixtures/config/k2_*.json are written by hand in tf.keras 2.x's layout (tf.keras is
 * not installed here): k2_functional (two inputs, a layer shared by both, VarianceScaling,
 * a frozen layer), k2_sequential (batch_input_shape on the first layer, no InputLayer;
 * Bidirectional without backward_layer; initializers by name), k2_nested (a nested model
 * called twice: tf.keras counts a nested model's nodes from 1). */
static void test_keras2_layouts(void **state) {
  char *k2_functional = read_text("tests/fixtures/config/k2_functional.json");
  char *k2_sequential = read_text("tests/fixtures/config/k2_sequential.json");
  char *k2_nested = read_text("tests/fixtures/config/k2_nested.json");
  lm_model *m = load_ok(k2_functional);
  check_summary(m, "k2_functional"); /* as Keras 3's legacy loader builds it */
  assert_string_equal(lm_model_name(m), "model");
  assert_int_equal(lm_model_n_layers(m), 6);
  lm_layer *shared = lm_model_layer_by_name(m, "shared"), *out = lm_model_layer_by_name(m, "out");
  assert_int_equal(lm_layer_count_params(shared), 36);
  assert_int_equal(lm_layer_count_params(out), 9);
  assert_non_null(lm_layer_output(shared, 1, 0)); /* called twice */
  assert_int_equal(lm_model_count_trainable_params(m), 36); /* "out" is frozen */
  assert_int_equal(lm_model_count_params(m), 45);
  assert_int_equal(lm_model_inputs(m).n, 2);
  char *json = lm_model_to_json(m);
  /* Keras 3's layout now; VarianceScaling(2, fan_in, truncated_normal) is HeNormal. */
  assert_non_null(strstr(json, "\"keras_history\": [\"shared\", 1, 0]"));
  assert_non_null(strstr(json, "\"class_name\": \"HeNormal\""));
  lm_model *again = load_ok(json);
  char *json2 = lm_model_to_json(again);
  assert_string_equal(json, json2);
  assert_same_json(json, json2);
  free(json);
  free(json2);

  m = load_ok(k2_sequential);
  assert_int_equal(lm_model_n_layers(m), 6);
  lm_tensors in = lm_model_inputs(m);
  assert_string_equal(lm_tensor_name(in.t[0]), "embedding_input"); /* tf.keras's name */
  assert_int_equal(lm_tensor_dtype(in.t[0]), LM_INT32);
  assert_int_equal(lm_layer_count_params(lm_model_layer_by_name(m, "bidirectional")), 2 * 4 * 6 * (8 + 6 + 1));
  lm_array *ids = filled(LM_SHAPE(2, 10), LM_INT32, 9, 100);
  lm_outputs p = lm_predict(m, LM_FEED(ids), .verbose = LM_SILENT);
  assert_int_equal(p.n, 1);
  assert_int_equal(p.a[0]->size, 2);
  lm_outputs_free(&p);
  lm_array_free(ids);
  json = lm_model_to_json(m);
  /* tf.keras names the wrapped layers forward_lstm and backward_lstm. */
  assert_non_null(strstr(json, "\"name\": \"forward_lstm\""));
  assert_non_null(strstr(json, "\"name\": \"backward_lstm\""));
  free(json);

  m = load_ok(k2_nested);
  assert_int_equal(lm_model_n_layers(m), 3);
  lm_layer *inner = lm_model_layer_by_name(m, "inner");
  assert_non_null(lm_layer_output(inner, 1, 0));
  lm_tensors outs = lm_model_outputs(m);
  assert_ptr_equal(outs.t[1], lm_layer_output(inner, 0, 0)); /* ["inner", 1, 0]: its first call */
  json = lm_model_to_json(m);
  assert_non_null(strstr(json, "\"output_layers\": [[\"seq\", 0, 0], [\"inner\", 1, 0]]"));
  free(json);
  /* Node 0 of a nested model is its own in this layout: no outer model can use it. */
  char *at = strstr(k2_nested, "[[\"inner\", 2, 0, {}]]");
  at[11] = '0';
  expect_refused(k2_nested, "layer \"inner\" has no node 0", NULL);
  free(k2_functional);
  free(k2_sequential);
  free(k2_nested);
  lm_session_clear();
}

/* ---- Names ---- */

static void test_names_kept_and_skipped(void **state) {
  const char *json =
      "{\"class_name\": \"Functional\", \"config\": {\"name\": \"model_3\", \"layers\": ["
      "{\"class_name\": \"InputLayer\", \"config\": {\"batch_shape\": [null, 2], \"name\": \"input_2\"}, "
      "\"name\": \"input_2\", \"inbound_nodes\": []}, "
      "{\"class_name\": \"Dense\", \"config\": {\"name\": \"dense_4\", \"units\": 2}, \"name\": \"dense_4\", "
      "\"inbound_nodes\": [[[\"input_2\", 0, 0, {}]]]}, "
      "{\"class_name\": \"Dense\", \"config\": {\"name\": \"dense\", \"units\": 2}, \"name\": \"dense\", "
      "\"inbound_nodes\": [[[\"dense_4\", 0, 0, {}]]]}, "
      "{\"class_name\": \"Dense\", \"config\": {\"name\": \"dense_x\", \"units\": 2}, \"name\": \"dense_x\", "
      "\"inbound_nodes\": [[[\"dense\", 0, 0, {}]]]}], "
      "\"input_layers\": [[\"input_2\", 0, 0]], \"output_layers\": [[\"dense_x\", 0, 0]]}}";
  lm_model *m = load_ok(json);
  assert_string_equal(lm_model_name(m), "model_3");
  /* New layers take names the loaded ones do not have. */
  assert_string_equal(lm_layer_name(lm_dense(3)), "dense_5");
  assert_string_equal(lm_layer_name(lm_dense(3)), "dense_6");
  assert_string_equal(lm_tensor_name(lm_input(LM_SHAPE(2))), "input_3");
  lm_tensor *x = lm_input(LM_SHAPE(2));
  lm_model *next = lm_model_new(LM_TENSORS(x), LM_TENSORS(lm_call(lm_dense(1), x)));
  assert_string_equal(lm_model_name(next), "model_4");
  /* The same text twice: two models with the same layer names, each consistent. */
  lm_model *twice = load_ok(json);
  assert_ptr_not_equal(twice, m);
  assert_string_equal(lm_layer_name(lm_model_get_layer(twice, 1)), "dense_4");
  lm_session_clear();
  /* Names Keras would not write: refused. */
  expect_refused("{\"class_name\": \"Sequential\", \"config\": {\"layers\": [{\"class_name\": \"InputLayer\", "
                 "\"config\": {\"batch_shape\": [null, 2], \"name\": \"a/b\"}}]}}",
                 "contains '/'", NULL);
  char longname[600];
  snprintf(longname, sizeof longname,
           "{\"class_name\": \"Sequential\", \"config\": {\"layers\": [{\"class_name\": \"InputLayer\", "
           "\"config\": {\"batch_shape\": [null, 2], \"name\": \"%0200d\"}}]}}",
           0);
  expect_refused(longname, "1 to 127 bytes", NULL);
  lm_session_clear();
}

/* ---- Hostile and malformed configs ---- */

/* A functional model whose layers are the given entries (after input "x" of shape (4,)). */
static char *with_layers(const char *entries, const char *outputs) {
  static const char head[] =
      "{\"class_name\": \"Functional\", \"config\": {\"name\": \"m\", \"trainable\": true, \"layers\": ["
      "{\"class_name\": \"InputLayer\", \"config\": {\"batch_shape\": [null, 4], \"dtype\": \"float32\", \"name\": "
      "\"x\"}, \"name\": \"x\", \"inbound_nodes\": []}";
  size_t n = strlen(head) + strlen(entries) + strlen(outputs) + 200;
  char *s = malloc(n);
  snprintf(s, n, "%s%s%s], \"input_layers\": [\"x\", 0, 0], \"output_layers\": %s}}", head, *entries ? ", " : "",
           entries, outputs);
  return s;
}

/* A Keras 3 layer entry: class, config fields (after name), one node's args. */
static char *entry(const char *cls, const char *name, const char *fields, const char *args) {
  char *s = malloc(4096);
  snprintf(s, 4096,
           "{\"module\": \"keras.layers\", \"class_name\": \"%s\", \"config\": {\"name\": \"%s\"%s%s}, "
           "\"registered_name\": null, \"name\": \"%s\", \"inbound_nodes\": [%s]}",
           cls, name, *fields ? ", " : "", fields, name, args);
  return s;
}

#define KT(name, node, tensor)                                                                                         \
  "{\"class_name\": \"__keras_tensor__\", \"config\": {\"shape\": [null, 4], \"dtype\": \"float32\", "                \
  "\"keras_history\": [\"" name "\", " #node ", " #tensor "]}}"
#define NODE(...) "{\"args\": [" __VA_ARGS__ "], \"kwargs\": {}}"

static void refuse_layer(const char *cls, const char *fields, const char *args, const char *outputs, ...) {
  char *e = entry(cls, "L", fields, args);
  char *json = with_layers(e, outputs);
  lm_model *m = lm_model_from_json(json);
  if (!lm_model_status(m)) fail_msg("accepted: %s", json);
  va_list ap;
  va_start(ap, outputs);
  for (const char *want; (want = va_arg(ap, const char *));)
    if (!strstr(lm_model_error(m), want)) fail_msg("error \"%s\" does not mention \"%s\"\nin %s", lm_model_error(m), want, json);
  va_end(ap);
  free(e);
  free(json);
}

static void test_hostile_fields(void **state) {
  const char *out = "[\"L\", 0, 0]", *x = NODE(KT("x", 0, 0));
  /* The fixture itself loads. */
  char *ok_e = entry("Dense", "L", "\"units\": 3", x), *ok = with_layers(ok_e, out);
  load_ok(ok);
  free(ok_e);
  free(ok);
  /* Wrong types, ranges, missing fields. */
  refuse_layer("Dense", "\"units\": \"3\"", x, out, "layer \"L\" (Dense): field \"units\" must be an integer, got a string",
               "line 1, column", NULL);
  refuse_layer("Dense", "\"units\": 3.5", x, out, "\"units\" must be an integer, got a number", NULL);
  refuse_layer("Dense", "\"units\": 3.0", x, out, "\"units\" must be an integer", NULL);
  refuse_layer("Dense", "\"units\": -1", x, out, "\"units\" must be an integer in [1, 16777216], got -1", NULL);
  refuse_layer("Dense", "\"units\": 99999999999999999999", x, out, "\"units\" must be an integer", NULL);
  refuse_layer("Dense", "", x, out, "field \"units\" is required", NULL);
  refuse_layer("Dense", "\"units\": 3, \"use_bias\": 1", x, out, "\"use_bias\" must be true or false", NULL);
  refuse_layer("Dense", "\"units\": 3, \"activation\": 5", x, out, "\"activation\" must be the name", NULL);
  refuse_layer("Dense", "\"units\": 3, \"activation\": \"hard_sigmoid\"", x, out, "hard_sigmoid", NULL);
  refuse_layer("Dense", "\"units\": 3, \"kernel_initializer\": 7", x, out, "\"kernel_initializer\" must be an initializer", NULL);
  refuse_layer("Dense", "\"units\": 3, \"kernel_initializer\": {\"class_name\": \"Nope\"}", x, out, "initializer \"Nope\"", NULL);
  refuse_layer("Dense", "\"units\": 3, \"kernel_initializer\": {\"class_name\": \"RandomUniform\", \"config\": {\"minval\": "
               "\"a\"}}", x, out, "\"kernel_initializer.minval\" must be a number", NULL);
  refuse_layer("Dense", "\"units\": 3, \"kernel_initializer\": {\"class_name\": \"RandomUniform\", \"config\": {\"lo\": 1}}",
               x, out, "\"kernel_initializer.lo\" is not a field of RandomUniform", NULL);
  refuse_layer("Dense", "\"units\": 3, \"kernel_initializer\": {\"class_name\": \"VarianceScaling\", \"config\": "
               "{\"scale\": 3.0}}", x, out, "VarianceScaling with scale 3", NULL);
  refuse_layer("Dense", "\"units\": 3, \"bias_regularizer\": {\"class_name\": \"L2\"}", x, out, "\"bias_regularizer\" must be null", NULL);
  refuse_layer("Dense", "\"units\": 3, \"frobnicate\": null", x, out, "unsupported field \"frobnicate\"", NULL);
  refuse_layer("Dense", "\"units\": 3, \"trainable\": \"yes\"", x, out, "\"trainable\" must be true or false", NULL);
  refuse_layer("Dense", "\"units\": 3, \"dtype\": \"float64\"", x, out, "float32 only", NULL);
  refuse_layer("Dense", "\"units\": 3, \"dtype\": {\"class_name\": \"DTypePolicy\", \"config\": {\"name\": "
               "\"mixed_bfloat16\"}}", x, out, "mixed_bfloat16", NULL);
  refuse_layer("Conv1D", "\"filters\": 2, \"kernel_size\": [3, 3]", x, out, "\"kernel_size\" must be an integer or a list of 1", NULL);
  refuse_layer("Conv2D", "\"filters\": 2, \"kernel_size\": 3, \"padding\": \"causal\"", x, out, "\"causal\" is not supported", NULL);
  refuse_layer("Reshape", "\"target_shape\": [-1, -1]", x, out, "one -1", NULL);
  refuse_layer("Reshape", "\"target_shape\": [16777216, 16777216, 16777216]", x, out, "2^40", NULL);
  refuse_layer("BatchNormalization", "\"axis\": 0", x, out, "non-batch axis", NULL);
  refuse_layer("BatchNormalization", "\"momentum\": 0", x, out, "\"momentum\" must be a number", NULL);
  refuse_layer("LayerNormalization", "\"axis\": [1, 2]", x, out, "single axis", NULL);
  refuse_layer("Dropout", "\"rate\": 0.5, \"seed\": -3", x, out, "\"seed\" must be null or a positive integer", NULL);
  refuse_layer("Dropout", "\"rate\": 1.5", x, out, "\"rate\" must be a number in [0, 1]", NULL);
  refuse_layer("Dropout", "\"rate\": NaN", x, out, "\"rate\" must be a number in [0, 1], got nan", NULL);
  refuse_layer("Bidirectional", "\"layer\": {\"class_name\": \"Dense\", \"config\": {\"name\": \"d\", \"units\": 2}}", x, out,
               "must be an LSTM, GRU or SimpleRNN", NULL);
  refuse_layer("Bidirectional", "", x, out, "field \"layer\" is required", NULL);
  refuse_layer("Bidirectional", "\"layer\": {\"class_name\": \"LSTM\", \"config\": {\"name\": \"f\", \"units\": 2}}, "
               "\"backward_layer\": {\"class_name\": \"LSTM\", \"config\": {\"name\": \"b\", \"units\": 3, \"go_backwards\": "
               "true}}", x, out, "\"backward_layer\" must be the forward layer's configuration", NULL);
  refuse_layer("LSTM", "\"units\": 2, \"unroll\": true", x, out, "\"unroll\" must be false", NULL);
  refuse_layer("Frobnicator", "", x, out, "unknown layer class \"Frobnicator\"", NULL);
  /* Connections. */
  refuse_layer("Dense", "\"units\": 3", NODE(KT("nobody", 0, 0)), out, "layer \"nobody\", which is not among its layers", NULL);
  refuse_layer("Dense", "\"units\": 3", NODE(KT("x", -1, 0)), out, "non-negative", NULL);
  refuse_layer("Dense", "\"units\": 3", NODE(KT("x", 0, -2)), out, "non-negative", NULL);
  refuse_layer("Dense", "\"units\": 3", NODE(KT("x", 1, 0)), out, "layer \"x\" has no node 1", NULL);
  refuse_layer("Dense", "\"units\": 3", NODE(KT("x", 0, 1)), out, "has 1 output(s), no output 1", NULL);
  refuse_layer("Dense", "\"units\": 3", NODE(KT("L", 0, 0)), out, "can never be called", "cycle", NULL);
  refuse_layer("Dense", "\"units\": 3", NODE(KT("x", 0, 0)) ", " NODE(KT("L", 5, 0)), out, "node 1 of layer \"L\" can never", NULL);
  refuse_layer("Dense", "\"units\": 3", x, "[\"L\", 1, 0]", "never created", NULL);
  refuse_layer("Dense", "\"units\": 3", x, "[\"L\", 0, 3]", "no output 3", NULL);
  refuse_layer("Dense", "\"units\": 3", x, "{\"a\": [\"L\", 0, 0]}", "output_layers as a list", NULL);
  refuse_layer("Dense", "\"units\": 3", x, "[]", "1 to 32 tensors", NULL);
  refuse_layer("Dense", "\"units\": 3", "{\"args\": [" KT("x", 0, 0) "], \"kwargs\": {\"initial_state\": null}}", out,
               "call argument \"initial_state\"", NULL);
  refuse_layer("Dense", "\"units\": 3", "{\"args\": [" KT("x", 0, 0) ", 5], \"kwargs\": {}}", out, "one tensor or one list", NULL);
  refuse_layer("Dense", "\"units\": 3", "{\"args\": [{\"x\": 1}], \"kwargs\": {}}", out, "not a keras tensor", NULL);
  refuse_layer("Dense", "\"units\": 3", "{\"args\": [[]], \"kwargs\": {}}", out, "a tensor or a list of tensors", NULL);
  refuse_layer("Dense", "\"units\": 3", NODE(KT("x", 0, 0)) ", [[\"x\", 0, 0, {}]]", out, "Keras 2 and Keras 3 nodes are mixed", NULL);
  refuse_layer("Dense", "\"units\": 3", "7", out, "a node must be an object or a list", NULL);
  refuse_layer("Dense", "\"units\": 3", "{\"args\": [" KT("x", 0, 0) "], \"extra\": 1}", out, "unknown field \"extra\"", NULL);
  refuse_layer("Add", "", NODE(KT("x", 0, 0)), out, "should be called on a list of at least 2 inputs", NULL);
  refuse_layer("Conv2D", "\"filters\": 2, \"kernel_size\": 3", x, out, "calling layer \"L\"", "rank 4", NULL);
  /* Layers too large for the weight limit, and inputs too large to describe. */
  refuse_layer("Embedding", "\"input_dim\": 16777216, \"output_dim\": 16777216", NODE("{\"class_name\": \"__keras_tensor__\", "
               "\"config\": {\"keras_history\": [\"x\", 0, 0]}}"), out, "weight embeddings of shape (16777216, 16777216) is too large", NULL);
  expect_refused("{\"class_name\": \"Functional\", \"config\": {\"name\": \"m\", \"layers\": [{\"class_name\": "
                 "\"InputLayer\", \"config\": {\"batch_shape\": [null, 1000000, 1000000, 1000000], \"name\": \"x\"}, "
                 "\"name\": \"x\", \"inbound_nodes\": []}], \"input_layers\": [\"x\", 0, 0], \"output_layers\": "
                 "[\"x\", 0, 0]}}",
                 "more than 2^40 elements per sample", NULL);
  expect_refused("{\"class_name\": \"Functional\", \"config\": {\"name\": \"m\", \"layers\": [{\"class_name\": "
                 "\"InputLayer\", \"config\": {\"batch_shape\": [32, 4], \"name\": \"x\"}, \"name\": \"x\", "
                 "\"inbound_nodes\": []}], \"input_layers\": [\"x\", 0, 0], \"output_layers\": [\"x\", 0, 0]}}",
                 "batch dimension must be null", NULL);
  lm_session_clear();
}

static void test_hostile_structure(void **state) {
  const char *cases[][2] = {
      {"[]", "must be an object, got a list"},
      {"{}", "neither a model"},
      {"{\"class_name\": \"Functional\"}", "needs a \"config\" object, got missing"},
      {"{\"class_name\": \"Functional\", \"config\": []}", "needs a \"config\" object"},
      {"{\"class_name\": \"Dense\", \"config\": {}}", "class_name must be \"Functional\""},
      {"{\"class_name\": 5, \"config\": {}}", "class_name must be"},
      {"{\"class_name\": \"Functional\", \"config\": {\"layers\": 3}}", "needs a \"layers\" list"},
      {"{\"class_name\": \"Functional\", \"config\": {\"layers\": [], \"input_layers\": [], \"output_layers\": []}}",
       "input_layers must name 1 to 32"},
      {"{\"class_name\": \"Functional\", \"config\": {\"layers\": [5]}}", "a layer entry must be an object"},
      {"{\"class_name\": \"Functional\", \"config\": {\"layers\": [{\"config\": {}}]}}", "needs a \"class_name\" string"},
      {"{\"class_name\": \"Functional\", \"config\": {\"layers\": [{\"class_name\": \"Dense\"}]}}", "needs a \"config\" object"},
      {"{\"class_name\": \"Functional\", \"config\": {\"layers\": [{\"class_name\": \"Dense\", \"config\": {\"units\": 2}}]}}",
       "needs a \"name\" string"},
      {"{\"class_name\": \"Functional\", \"config\": {\"layers\": [{\"class_name\": \"InputLayer\", \"config\": "
       "{\"name\": \"x\"}, \"name\": \"x\", \"inbound_nodes\": []}]}}",
       "field \"batch_shape\" is required"},
      {"{\"class_name\": \"Functional\", \"config\": {\"layers\": [{\"class_name\": \"InputLayer\", \"config\": "
       "{\"name\": \"x\", \"batch_shape\": [null, 2]}, \"name\": \"y\", \"inbound_nodes\": []}]}}",
       "must have \"name\": \"x\""},
      {"{\"class_name\": \"Functional\", \"config\": {\"layers\": [{\"class_name\": \"InputLayer\", \"config\": "
       "{\"name\": \"x\", \"batch_shape\": [null, 2]}, \"name\": \"x\", \"inbound_nodes\": [[[\"x\", 0, 0]]]}]}}",
       "cannot have inbound nodes"},
      {"{\"class_name\": \"Functional\", \"config\": {\"layers\": [{\"class_name\": \"InputLayer\", \"config\": "
       "{\"name\": \"x\", \"batch_shape\": [null, 2]}, \"name\": \"x\", \"inbound_nodes\": []}, {\"class_name\": "
       "\"InputLayer\", \"config\": {\"name\": \"x\", \"batch_shape\": [null, 2]}, \"name\": \"x\", \"inbound_nodes\": "
       "[]}]}}",
       "two layers named \"x\""},
      {"{\"class_name\": \"Functional\", \"config\": {\"layers\": [{\"class_name\": \"InputLayer\", \"config\": "
       "{\"name\": \"x\", \"batch_shape\": [null, 0]}, \"name\": \"x\", \"inbound_nodes\": []}]}}",
       "must be null or a positive integer"},
      {"{\"class_name\": \"Functional\", \"config\": {\"layers\": [{\"class_name\": \"InputLayer\", \"config\": "
       "{\"name\": \"x\", \"batch_shape\": [null, 2], \"dtype\": \"int64\"}, \"name\": \"x\", \"inbound_nodes\": []}]}}",
       "\"int64\" is not supported"},
      {"{\"class_name\": \"Functional\", \"config\": {\"layers\": [{\"class_name\": \"InputLayer\", \"config\": "
       "{\"name\": \"x\", \"batch_shape\": [null, 2], \"sparse\": true}, \"name\": \"x\", \"inbound_nodes\": []}]}}",
       "\"sparse\" must be false"},
      {"{\"class_name\": \"Functional\", \"config\": {\"layers\": [{\"module\": \"my_project.layers\", \"class_name\": "
       "\"Dense\", \"config\": {}}]}}",
       "custom layers are not supported"},
      {"{\"class_name\": \"Functional\", \"config\": {\"layers\": [{\"class_name\": \"Dense\", \"registered_name\": "
       "\"custom>Dense\", \"config\": {}}]}}",
       "custom layers are not supported"},
      {"{\"class_name\": \"Functional\", \"config\": {\"layers\": [{\"class_name\": \"Dense\", \"config\": {}, "
       "\"surprise\": 1}]}}",
       "unknown field \"surprise\""},
      {"{\"class_name\": \"Functional\", \"config\": {\"layers\": [], \"weird\": 1}}", "unknown field \"weird\""},
      {"{\"class_name\": \"Functional\", \"config\": {\"layers\": []}, \"extra\": 1}", "unknown field \"extra\""},
      {"{\"class_name\": \"Functional\", \"registered_name\": \"x>Y\", \"config\": {\"layers\": []}}", "custom models"},
      {"{\"class_name\": \"Sequential\", \"config\": {\"layers\": []}}", "no layers and no input shape"},
      {"{\"class_name\": \"Sequential\", \"config\": {\"layers\": [{\"class_name\": \"Dense\", \"config\": {\"name\": "
       "\"d\", \"units\": 2}}]}}",
       "has no input shape"},
      {"{\"class_name\": \"Sequential\", \"config\": {\"layers\": [{\"class_name\": \"Dense\", \"config\": {\"name\": "
       "\"d\", \"units\": 2, \"batch_input_shape\": [null, 2]}}, {\"class_name\": \"InputLayer\", \"config\": {\"name\": \"i\", \"batch_shape\": [null, 2]}}]}, "
       "\"build_config\": {}}",
       "must come first"},
      {"{\"class_name\": \"Sequential\", \"config\": {\"layers\": [{\"class_name\": \"InputLayer\", \"config\": {\"name\": "
       "\"i\", \"batch_shape\": [null, 2]}}, {\"class_name\": \"Dense\", \"config\": {\"name\": \"d\", \"units\": 2}, "
       "\"inbound_nodes\": []}]}}",
       "unknown field \"inbound_nodes\""},
      {"{\"class_name\": \"Sequential\", \"config\": {\"layers\": [{\"class_name\": \"InputLayer\", \"config\": {\"name\": "
       "\"i\", \"batch_shape\": [null, 2]}}, {\"class_name\": \"Conv2D\", \"config\": {\"name\": \"c\", \"filters\": 2, "
       "\"kernel_size\": 3}}]}}",
       "adding layer \"c\""},
      {"{\"class_name\": \"Sequential\", \"config\": {\"layers\": [{\"class_name\": \"InputLayer\", \"config\": {\"name\": "
       "\"i\", \"batch_shape\": [null, 2]}}], \"dtype\": \"float16\"}}",
       "float32 only"},
      {"{\"class_name\": \"Sequential\", \"config\": {\"layers\": [{\"class_name\": \"InputLayer\", \"config\": {\"name\": "
       "\"i\", \"batch_shape\": [null, 2]}}, {\"class_name\": \"Bidirectional\", \"config\": {\"name\": \"b\", \"layer\": "
       "{\"class_name\": \"Sequential\", \"config\": {\"layers\": []}}}}]}}",
       "a model cannot be wrapped"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    lm_model *m = lm_model_from_json(cases[i][0]);
    if (!lm_model_status(m)) fail_msg("case %zu accepted: %s", i, cases[i][0]);
    if (!strstr(lm_model_error(m), cases[i][1]))
      fail_msg("case %zu: \"%s\" does not mention \"%s\"", i, lm_model_error(m), cases[i][1]);
  }
  /* JSON syntax errors come through with their place. */
  expect_refused("{\"class_name\": \"Functional\",\n \"config\": {,}}", "model config: JSON: line 2, column 13", NULL);
  expect_refused(NULL, "the text is NULL", NULL);
  /* Models nested deeper than the JSON depth limit. */
  size_t cap = 64 * 1024, n = 0;
  char *deep = malloc(cap);
  for (int i = 0; i < 50; i++)
    n += (size_t)snprintf(deep + n, cap - n, "{\"class_name\": \"Sequential\", \"config\": {\"layers\": [");
  n += (size_t)snprintf(deep + n, cap - n, "{\"class_name\": \"InputLayer\", \"config\": {\"name\": \"i\", \"batch_shape\": [null, 2]}}");
  for (int i = 0; i < 50; i++) n += (size_t)snprintf(deep + n, cap - n, "]}}");
  expect_refused(deep, "nested deeper than 128 levels", NULL);
  n = 0; /* within the JSON limit, but more nested models than lamina takes */
  for (int i = 0; i < 20; i++)
    n += (size_t)snprintf(deep + n, cap - n, "{\"class_name\": \"Sequential\", \"config\": {\"layers\": [");
  n += (size_t)snprintf(deep + n, cap - n, "{\"class_name\": \"InputLayer\", \"config\": {\"name\": \"i\", \"batch_shape\": [null, 2]}}");
  for (int i = 0; i < 20; i++) n += (size_t)snprintf(deep + n, cap - n, "]}}");
  expect_refused(deep, "models nested more than 16 deep", NULL);
  free(deep);
  lm_session_clear();
}

/* Nested models a few levels deep load and write back. */
static void test_nested_depth(void **state) {
  lm_tensor *x = lm_input(LM_SHAPE(3), .name = "in0");
  lm_model *m = lm_model_new(LM_TENSORS(x), LM_TENSORS(lm_call(lm_dense(3), x)), .name = "level0");
  for (int level = 1; level < 8; level++) {
    char name[32];
    snprintf(name, sizeof name, "in%d", level);
    lm_tensor *i = lm_input(LM_SHAPE(3), .name = name);
    snprintf(name, sizeof name, "level%d", level);
    m = lm_model_new(LM_TENSORS(i), LM_TENSORS(lm_call(m, lm_call(lm_dense(3), i))), .name = name);
  }
  lm_array *data = filled(LM_SHAPE(2, 3), LM_FLOAT32, 10, 0);
  round_trip(m, LM_FEED(data));
  lm_array_free(data);
  lm_session_clear();
}

static void test_api_errors(void **state) {
  assert_null(lm_model_to_json(NULL));
  assert_non_null(strstr(lm_last_error(), "NULL"));
  lm_tensor *x = lm_input(LM_SHAPE(3));
  lm_model *bad = lm_model_new(LM_TENSORS(x), LM_TENSORS(lm_call(lm_dense(2), lm_input(LM_SHAPE(3)))));
  assert_null(lm_model_to_json(bad));
  assert_non_null(strstr(lm_last_error(), "carries an error"));
  /* A model loaded from a failed config can be asked for its error, and nothing else breaks. */
  lm_model *m = lm_model_from_json("{\"class_name\": \"Functional\"}");
  assert_int_equal(lm_model_status(m), LM_ERROR_VALUE);
  assert_null(lm_model_to_json(m));
  lm_session_clear();
}

/* "shared_object_id": where Keras's config.json puts it (a dtype policy or an initializer
 * serialized more than once, a layer entry), an integer is accepted and changes nothing;
 * anything else is refused, naming it. */
static void test_shared_object_ids(void **state) {
  (void)state;
  const char *out = "[\"L\", 0, 0]", *x = NODE(KT("x", 0, 0));
  const char *fields = "\"units\": 3, \"dtype\": {\"module\": \"keras\", \"class_name\": \"DTypePolicy\", \"config\": "
                       "{\"name\": \"float32\"}, \"registered_name\": null, \"shared_object_id\": 140097979697936}, "
                       "\"kernel_initializer\": {\"module\": \"keras.initializers\", \"class_name\": \"GlorotUniform\", "
                       "\"config\": {\"seed\": null}, \"registered_name\": null, \"shared_object_id\": 7}";
  char *e = entry("Dense", "L", fields, x);
  /* The layer entry itself: {..., "shared_object_id": N} before its last "}". */
  size_t n = strlen(e);
  char *marked = malloc(n + 64);
  snprintf(marked, n + 64, "%.*s, \"shared_object_id\": 12}", (int)(n - 1), e);
  char *json = with_layers(marked, out);
  lm_model *m = load_ok(json);
  assert_int_equal(lm_model_count_params(m), 4 * 3 + 3);
  free(json);
  free(marked);
  free(e);
  lm_session_clear();
  /* Not an integer, or in a field where Keras never writes it. */
  refuse_layer("Dense", "\"units\": 3, \"dtype\": {\"class_name\": \"DTypePolicy\", \"config\": {\"name\": \"float32\"}, "
               "\"shared_object_id\": \"7\"}", x, out, "\"dtype\" has an unknown field \"shared_object_id\"",
               "must be an integer", NULL);
  refuse_layer("Dense", "\"units\": 3, \"kernel_initializer\": {\"class_name\": \"Zeros\", \"config\": {}, "
               "\"shared_object_id\": 1.5}", x, out, "\"kernel_initializer\" has a field \"shared_object_id\"", NULL);
  refuse_layer("Dense", "\"units\": 3, \"kernel_initializer\": {\"class_name\": \"Zeros\", \"config\": "
               "{\"shared_object_id\": 1}}", x, out, "\"kernel_initializer.shared_object_id\" is not a field of Zeros", NULL);
  refuse_layer("Dense", "\"units\": 3, \"shared_object_id\": 1", x, out, "unsupported field \"shared_object_id\"", NULL);
  e = entry("Dense", "L", "\"units\": 3", x);
  n = strlen(e);
  marked = malloc(n + 64);
  snprintf(marked, n + 64, "%.*s, \"shared_object_id\": null}", (int)(n - 1), e);
  json = with_layers(marked, out);
  expect_refused(json, "shared_object_id must be an integer, got null", NULL);
  free(json);
  free(marked);
  free(e);
  lm_session_clear();
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_json_values),
      cmocka_unit_test(test_json_errors),
      cmocka_unit_test(test_keras_chapter_models),
      cmocka_unit_test(test_keras_layer_zoo),
      cmocka_unit_test(test_keras_model_config_txt),
      cmocka_unit_test(test_keras_refused),
      cmocka_unit_test(test_round_trip_core),
      cmocka_unit_test(test_round_trip_conv_pool_norm),
      cmocka_unit_test(test_round_trip_recurrent),
      cmocka_unit_test(test_round_trip_nested_shared),
      cmocka_unit_test(test_round_trip_sequential),
      cmocka_unit_test(test_keras2_layouts),
      cmocka_unit_test(test_names_kept_and_skipped),
      cmocka_unit_test(test_hostile_fields),
      cmocka_unit_test(test_shared_object_ids),
      cmocka_unit_test(test_hostile_structure),
      cmocka_unit_test(test_nested_depth),
      cmocka_unit_test(test_api_errors),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
