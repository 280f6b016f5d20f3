/* Text: the tokenizer and pad_sequences against Keras's own (tests/fixtures/keras_text.txt,
 * made by tools/keras_fixtures/make_text_fixtures.py), the review CSV parser on small
 * hand-made files (BOM, CRLF, quotes, newlines inside fields, bad rows), and the real
 * Pang & Lee corpus when scripts/fetch-reviews.sh can fetch it (skipped otherwise). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <lamina/io.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fixture.h"

/* ---- The fixture ---- */

/* Undoes the script's escapes (\\ \n \t \r \xHH; a lone "\x" is the empty string). */
static char *unescape(const char *s) {
  char *out = malloc(strlen(s) + 1), *o = out;
  for (; *s; s++) {
    if (*s != '\\') {
      *o++ = *s;
      continue;
    }
    s++;
    if (*s == 'n') *o++ = '\n';
    else if (*s == 't') *o++ = '\t';
    else if (*s == 'r') *o++ = '\r';
    else if (*s == '\\') *o++ = '\\';
    else if (*s == 'x' && s[1] && s[2] && s[1] != ' ') {
      unsigned v;
      sscanf(s + 1, "%2x", &v);
      *o++ = (char)v;
      s += 2;
    } else if (*s == 'x') {
      break; /* the empty string */
    }
  }
  *o = 0;
  return out;
}

typedef struct tcase {
  char name[64];
  int num_words, lower, fit;
  char *oov, *split, *filters;
  char *text[32];
  int n_text;
  char *word[256];
  int index[256];
  int n_word;
  char *count_word[256];
  long count[256];
  int n_count;
  int32_t *seq[32];
  int64_t seq_len[32];
  int n_seq;
  int64_t maxlen;
  char padding[8], truncating[8];
  int value;
  int32_t *out;
  int64_t rows, cols;
} tcase;

static int32_t *parse_ints(const char *s, int64_t n) {
  int32_t *v = calloc((size_t)(n ? n : 1), sizeof *v);
  for (int64_t i = 0; i < n; i++) v[i] = (int32_t)strtol(s, (char **)&s, 10);
  return v;
}

static void case_free(tcase *c) {
  free(c->oov);
  free(c->split);
  free(c->filters);
  for (int i = 0; i < c->n_text; i++) free(c->text[i]);
  for (int i = 0; i < c->n_word; i++) free(c->word[i]);
  for (int i = 0; i < c->n_count; i++) free(c->count_word[i]);
  for (int i = 0; i < c->n_seq; i++) free(c->seq[i]);
  free(c->out);
  memset(c, 0, sizeof *c);
}

/* Reads the next case into c; false at the end of the file. */
static bool next_case(FILE *f, tcase *c) {
  static char line[8192];
  memset(c, 0, sizeof *c);
  bool in_case = false;
  while (fgets(line, sizeof line, f)) {
    line[strcspn(line, "\n")] = 0;
    char *arg = strchr(line, ' ');
    if (arg) *arg++ = 0;
    else arg = line + strlen(line);
    if (line[0] == '#' || !line[0]) continue;
    if (!strcmp(line, "case")) {
      snprintf(c->name, sizeof c->name, "%s", arg);
      in_case = true;
    } else if (!strcmp(line, "end")) {
      return true;
    } else if (!strcmp(line, "num_words")) c->num_words = atoi(arg);
    else if (!strcmp(line, "lower")) c->lower = atoi(arg);
    else if (!strcmp(line, "fit")) c->fit = atoi(arg);
    else if (!strcmp(line, "oov")) c->oov = strcmp(arg, "-") ? unescape(arg) : NULL;
    else if (!strcmp(line, "split")) c->split = unescape(arg);
    else if (!strcmp(line, "filters")) c->filters = strcmp(arg, "DEFAULT") ? unescape(arg) : NULL;
    else if (!strcmp(line, "text")) c->text[c->n_text++] = unescape(arg);
    else if (!strcmp(line, "word")) {
      char *w = strchr(arg, ' ');
      *w = 0;
      c->index[c->n_word] = atoi(arg);
      c->word[c->n_word++] = unescape(w + 1);
    } else if (!strcmp(line, "count")) {
      char *w = strchr(arg, ' ');
      *w = 0;
      c->count_word[c->n_count] = unescape(arg);
      c->count[c->n_count++] = atol(w + 1);
    } else if (!strcmp(line, "seq")) {
      char *rest;
      int64_t n = strtol(arg, &rest, 10);
      c->seq_len[c->n_seq] = n;
      c->seq[c->n_seq++] = parse_ints(rest, n);
    } else if (!strcmp(line, "maxlen")) c->maxlen = atol(arg);
    else if (!strcmp(line, "padding")) snprintf(c->padding, sizeof c->padding, "%s", arg);
    else if (!strcmp(line, "truncating")) snprintf(c->truncating, sizeof c->truncating, "%s", arg);
    else if (!strcmp(line, "value")) c->value = atoi(arg);
    else if (!strcmp(line, "out")) {
      char *rest;
      c->rows = strtol(arg, &rest, 10);
      c->cols = strtol(rest, &rest, 10);
      c->out = parse_ints(rest, c->rows * c->cols);
    } else fail_msg("unknown fixture line %s", line);
  }
  assert_false(in_case);
  return false;
}

static FILE *open_fixture(void) {
  char path[1024];
  fx_source_path(path, sizeof path, "tests/fixtures/keras_text.txt");
  FILE *f = fopen(path, "r");
  if (!f) fail_msg("cannot open %s (set LAMINA_SOURCE_DIR)", path);
  return f;
}

static void test_tokenizer_matches_keras(void **state) {
  (void)state;
  FILE *f = open_fixture();
  tcase c;
  int n_cases = 0;
  while (next_case(f, &c)) {
    if (strncmp(c.name, "tok/", 4)) {
      case_free(&c);
      continue;
    }
    lm_tokenizer *tok = lm_tokenizer(.num_words = c.num_words, .oov_token = c.oov, .no_lower = !c.lower,
                                     .split = c.split, .filters = c.filters);
    assert_non_null(tok);
    assert_int_equal(lm_tokenizer_fit(tok, (const char *const *)c.text, c.fit), LM_OK);
    assert_int_equal(lm_tokenizer_n_words(tok), c.n_word);
    for (int i = 0; i < c.n_word; i++) {
      const char *w = lm_tokenizer_word(tok, c.index[i]);
      if (!w || strcmp(w, c.word[i])) fail_msg("%s: index %d is \"%s\", Keras has \"%s\"", c.name, c.index[i], w, c.word[i]);
      assert_int_equal(lm_tokenizer_index(tok, c.word[i]), c.index[i]);
    }
    assert_null(lm_tokenizer_word(tok, c.n_word + 1));
    assert_null(lm_tokenizer_word(tok, 0));
    assert_int_equal(lm_tokenizer_index(tok, "never-seen-word"), 0);
    for (int i = 0; i < c.n_count; i++) assert_int_equal(lm_tokenizer_count(tok, c.count_word[i]), c.count[i]);
    lm_sequences *s = lm_tokenizer_texts_to_sequences(tok, (const char *const *)c.text, c.n_text);
    assert_non_null(s);
    assert_int_equal(s->n, c.n_seq);
    for (int i = 0; i < c.n_seq; i++) {
      if (s->len[i] != c.seq_len[i]) fail_msg("%s: text %d gives %lld indices, Keras %lld", c.name, i, (long long)s->len[i], (long long)c.seq_len[i]);
      if (c.seq_len[i]) assert_memory_equal(s->seq[i], c.seq[i], (size_t)c.seq_len[i] * 4);
    }
    lm_sequences_free(s);
    lm_tokenizer_free(tok);
    case_free(&c);
    n_cases++;
  }
  fclose(f);
  assert_int_equal(n_cases, 7);
}

static void test_pad_matches_keras(void **state) {
  (void)state;
  FILE *f = open_fixture();
  tcase c;
  int n_cases = 0;
  while (next_case(f, &c)) {
    if (strncmp(c.name, "pad/", 4)) {
      case_free(&c);
      continue;
    }
    lm_sequences s = {.n = c.n_seq, .seq = c.seq, .len = c.seq_len};
    lm_array *a = lm_pad_sequences(&s, .maxlen = c.maxlen, .padding = c.padding, .truncating = c.truncating,
                                   .value = c.value);
    assert_non_null(a);
    assert_int_equal(a->dtype, LM_INT32);
    assert_int_equal(a->shape.dim[0], c.rows);
    assert_int_equal(a->shape.dim[1], c.cols);
    assert_memory_equal(a->data, c.out, (size_t)(c.rows * c.cols) * 4);
    lm_array_free(a);
    case_free(&c);
    n_cases++;
  }
  fclose(f);
  assert_int_equal(n_cases, 5);
}

static void test_tokenizer_edges(void **state) {
  (void)state;
  /* Refit adds counts and re-ranks: "b" overtakes "a". */
  lm_tokenizer *tok = lm_tokenizer();
  const char *first[] = {"a a b"}, *second[] = {"b b c"};
  assert_int_equal(lm_tokenizer_fit(tok, first, 1), LM_OK);
  assert_int_equal(lm_tokenizer_index(tok, "a"), 1);
  assert_int_equal(lm_tokenizer_fit(tok, second, 1), LM_OK);
  assert_int_equal(lm_tokenizer_index(tok, "b"), 1);
  assert_int_equal(lm_tokenizer_index(tok, "a"), 2);
  assert_int_equal(lm_tokenizer_index(tok, "c"), 3);
  char **words = lm_tokenizer_words(tok, "Hello, World!  it's--fine");
  assert_string_equal(words[0], "hello");
  assert_string_equal(words[1], "world");
  assert_string_equal(words[2], "it's");
  assert_string_equal(words[3], "fine");
  assert_null(words[4]);
  lm_words_free(words);
  words = lm_tokenizer_words(tok, "...");
  assert_null(words[0]);
  lm_words_free(words);
  assert_int_equal(lm_tokenizer_fit(tok, NULL, 0), LM_OK);
  const char *with_null[] = {"x", NULL};
  assert_int_equal(lm_tokenizer_fit(tok, with_null, 2), LM_ERROR_VALUE);
  assert_null(lm_tokenizer_texts_to_sequences(tok, with_null, 2));
  lm_tokenizer_free(tok);

  /* Bad options and bad padding arguments, refused with Keras's words. */
  assert_null(lm_tokenizer(.num_words = -1));
  assert_null(lm_tokenizer(.split = ""));
  int32_t one[1] = {5};
  int32_t *seqs[1] = {one};
  int64_t lens[1] = {1};
  lm_sequences s = {.n = 1, .seq = seqs, .len = lens};
  assert_null(lm_pad_sequences(&s, .padding = "middle"));
  assert_non_null(strstr(lm_last_error(), "Padding type \"middle\" not understood"));
  assert_null(lm_pad_sequences(&s, .truncating = "both"));
  assert_non_null(strstr(lm_last_error(), "Truncating type \"both\" not understood"));
  assert_null(lm_pad_sequences(&s, .maxlen = -2));
  lens[0] = 0;
  assert_null(lm_pad_sequences(&s)); /* every sequence empty: no columns */
  lm_array *a = lm_pad_sequences(&s, .maxlen = 2, .value = 9);
  assert_int_equal(lm_array_i32(a)[0], 9);
  assert_int_equal(lm_array_i32(a)[1], 9);
  lm_array_free(a);
  lm_sequences none = {0};
  assert_null(lm_pad_sequences(&none));
}

/* ---- The review CSV ---- */

static char csv_path[256];

static void write_file(const char *text, size_t n) {
  snprintf(csv_path, sizeof csv_path, "/tmp/lamina_text_%d.csv", (int)getpid());
  FILE *f = fopen(csv_path, "wb");
  assert_non_null(f);
  fwrite(text, 1, n, f);
  fclose(f);
}

static void test_csv_parsing(void **state) {
  (void)state;
  static const char good[] = "\xEF\xBB\xBF\"1\",\"a fine film , with \"\"quotes\"\"\nand a second line .\"\r\n"
                             "\"-1\",\"dull\"\r\n"
                             "-1,bare field\n"
                             "\r\n"
                             "\"1\",\"\"";
  write_file(good, sizeof good - 1);
  lm_texts t;
  lm_array *y;
  assert_int_equal(lm_load_reviews(csv_path, &t, &y), LM_OK);
  assert_int_equal(t.n, 4);
  assert_string_equal(t.text[0], "a fine film , with \"quotes\"\nand a second line .");
  assert_string_equal(t.text[1], "dull");
  assert_string_equal(t.text[2], "bare field");
  assert_string_equal(t.text[3], "");
  assert_int_equal(y->shape.rank, 1);
  assert_int_equal(y->shape.dim[0], 4);
  const int32_t want[4] = {1, 0, 0, 1};
  assert_memory_equal(y->data, want, sizeof want);
  lm_texts_free(&t);
  lm_array_free(y);

  /* A header row is skipped. */
  static const char header[] = "\"label\",\"text\"\n\"1\",\"ok\"\n";
  write_file(header, sizeof header - 1);
  assert_int_equal(lm_load_reviews(csv_path, &t, &y), LM_OK);
  assert_int_equal(t.n, 1);
  lm_texts_free(&t);
  lm_array_free(y);

  struct {
    const char *csv, *words;
  } bad[] = {
      {"\"1\",\"fine\"\n\"2\",\"what\"\n", ":2: the label \"2\" is not 1 or -1"},
      {"\"1\",\"multi\nline\"\n\"0\",\"x\"\n", ":3: the label \"0\""},
      {"\"1\",\"never closed\n", "not closed"},
      {"\"1\",\"a\",\"b\"\n", "exactly two fields"},
      {"\"1\"\n", "exactly two fields"},
      {"\"1\",\"ok\"x\n", "text follows a closing quote"},
      {"", "no reviews"},
      {"\xEF\xBB\xBF", "no reviews"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    write_file(bad[i].csv, strlen(bad[i].csv));
    assert_int_equal(lm_load_reviews(csv_path, &t, &y), LM_ERROR_IO);
    if (!strstr(lm_last_error(), csv_path) || !strstr(lm_last_error(), bad[i].words))
      fail_msg("case %zu: \"%s\" lacks \"%s\"", i, lm_last_error(), bad[i].words);
    assert_null(y);
    assert_int_equal(t.n, 0);
  }
  unlink(csv_path);
  assert_int_equal(lm_load_reviews("/nonexistent/reviews.csv", &t, &y), LM_ERROR_IO);
  assert_non_null(strstr(lm_last_error(), "/nonexistent/reviews.csv: cannot open"));
  assert_int_equal(lm_load_reviews(NULL, &t, &y), LM_ERROR_VALUE);
}

/* ---- The real corpus ---- */

/* The path scripts/fetch-reviews.sh prints, after fetching the corpus if needed; NULL
 * when it cannot (no network, no apt). */
static char *fetch_corpus(void) {
  char src[1024], cmd[1200];
  fx_source_path(src, sizeof src, "scripts/fetch-reviews.sh");
  snprintf(cmd, sizeof cmd, "bash '%s' 2>/dev/null", src);
  FILE *p = popen(cmd, "r");
  if (!p) return NULL;
  static char path[1024];
  char *got = fgets(path, sizeof path, p);
  int rc = pclose(p);
  if (!got || rc != 0) return NULL;
  path[strcspn(path, "\n")] = 0;
  return path;
}

static void test_real_corpus(void **state) {
  (void)state;
  const char *path = fetch_corpus();
  if (!path) {
    print_message("skipped: scripts/fetch-reviews.sh could not fetch the corpus\n");
    skip();
  }
  lm_texts t;
  lm_array *y;
  assert_int_equal(lm_load_reviews(path, &t, &y), LM_OK);
  assert_int_equal(t.n, 1500);
  int64_t pos = 0;
  for (int64_t i = 0; i < t.n; i++) pos += lm_array_i32(y)[i];
  assert_int_equal(pos, 750);
  assert_int_equal(strncmp(t.text[0], "films adapted from comic books have had plenty of success", 57), 0);
  /* Reviews average about 745 words; the vocabulary is about 40 thousand words. */
  lm_tokenizer *tok = lm_tokenizer(.num_words = 2000);
  assert_int_equal(lm_tokenizer_fit(tok, (const char *const *)t.text, t.n), LM_OK);
  assert_true(lm_tokenizer_n_words(tok) > 30000 && lm_tokenizer_n_words(tok) < 60000);
  assert_string_equal(lm_tokenizer_word(tok, 1), "the");
  lm_sequences *s = lm_tokenizer_texts_to_sequences(tok, (const char *const *)t.text, t.n);
  int64_t total = 0;
  for (int64_t i = 0; i < s->n; i++) {
    total += s->len[i];
    for (int64_t j = 0; j < s->len[i]; j++) assert_true(s->seq[i][j] >= 1 && s->seq[i][j] < 2000);
  }
  assert_true(total / t.n > 500 && total / t.n < 800);
  lm_array *x = lm_pad_sequences(s, .maxlen = 500);
  assert_int_equal(x->shape.dim[0], 1500);
  assert_int_equal(x->shape.dim[1], 500);
  lm_array_free(x);
  lm_sequences_free(s);
  lm_tokenizer_free(tok);
  lm_texts_free(&t);
  lm_array_free(y);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_tokenizer_matches_keras), cmocka_unit_test(test_pad_matches_keras),
      cmocka_unit_test(test_tokenizer_edges),         cmocka_unit_test(test_csv_parsing),
      cmocka_unit_test(test_real_corpus),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
