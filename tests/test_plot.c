/* Plots and summaries: lm_model_to_dot against real Keras's model_to_dot text
 * (tests/fixtures/keras_plot.txt, made by tools/keras_fixtures/make_plot_fixtures.py),
 * rendering through Graphviz to PNG / SVG / DOT files, the refusals of bad arguments, and
 * lm_summary_ex's nested and trainable layouts (tf-keras 2.11's print_summary). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <lamina/plot.h>
#include <unistd.h>

#include "fixture.h"
#include "model/internal.h"

/* Graphviz 2.42, fontconfig and glib keep caches they never free (and some they lose);
 * LeakSanitizer should judge lamina, not them. */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void) {
  return "leak:libgvc.so\nleak:libcgraph.so\nleak:libgvplugin\nleak:libfontconfig.so\nleak:libglib-2.0.so\n"
         "leak:libpango\nleak:libcairo.so\nleak:libgobject-2.0.so\nleak:libharfbuzz.so\nleak:libexpat.so\n";
}

/* ---- The models of the fixture, built as the script builds them ---- */

static lm_model *tour(void) {
  lm_tensor *text = lm_input(LM_SHAPE(32), .name = "text");
  lm_tensor *meta = lm_input(LM_SHAPE(8), .name = "meta");
  lm_layer *shared = lm_dense(16, .activation = LM_RELU, .name = "shared");
  lm_tensor *a = lm_call(shared, text);
  lm_tensor *b = lm_call(lm_dense(16, .activation = LM_RELU, .name = "meta_dense"), meta);
  lm_tensor *x = lm_call(lm_concatenate_layer(.name = "concat"), a, b);
  lm_tensor *inner_in = lm_input(LM_SHAPE(32), .name = "inner_in");
  lm_model *block = lm_model_new(LM_TENSORS(inner_in),
                                 LM_TENSORS(lm_call(lm_dense(32, .activation = LM_TANH, .name = "inner_dense"), inner_in)),
                                 .name = "block");
  x = lm_call(block, x);
  lm_tensor *age = lm_call(lm_dense(1, .name = "age"), x);
  lm_tensor *income = lm_call(lm_dense(3, .activation = LM_SOFTMAX, .name = "income"), x);
  lm_tensor *gender = lm_call(lm_dense(1, .activation = LM_SIGMOID, .name = "gender"), x);
  return lm_model_new(LM_TENSORS(text, meta), LM_TENSORS(age, income, gender), .name = "tour");
}

static lm_model *embedder(void) {
  lm_tensor *ids = lm_input(LM_SHAPE(10), .dtype = LM_INT32, .name = "ids");
  lm_tensor *e = lm_call(lm_embedding(50, 8, .name = "embed"), ids);
  lm_tensor *c = lm_call(lm_conv1d(4, 3, .activation = LM_RELU, .name = "conv"), e);
  lm_tensor *p = lm_call(lm_global_max_pooling1d(.name = "pool"), c);
  lm_model *head = lm_sequential(.name = "head");
  lm_sequential_add(head, lm_input_layer(LM_SHAPE(4), .name = "seq_in"));
  lm_sequential_add(head, lm_dense(6, .activation = LM_SWISH, .name = "seq_a"));
  lm_sequential_add(head, lm_dropout(0.5, .name = "seq_drop"));
  lm_sequential_add(head, lm_dense(2, .name = "seq_b"));
  lm_layer *frozen = lm_dense(2, .name = "frozen");
  lm_tensor *out = lm_call(frozen, lm_call(head, p));
  lm_layer_set_trainable(frozen, false);
  return lm_model_new(LM_TENSORS(ids), LM_TENSORS(out), .name = "embedder");
}

static lm_model *plain_sequential(void) {
  lm_model *m = lm_sequential(.name = "seq");
  lm_sequential_add(m, lm_input_layer(LM_SHAPE(5), .name = "x"));
  lm_sequential_add(m, lm_dense(3, .activation = LM_RELU, .name = "d1"));
  lm_sequential_add(m, lm_dense(1, .name = "d2"));
  return m;
}

/* ---- The fixture: "case", "opts", DOT lines, "end" ---- */

static char *read_text(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *s = malloc((size_t)n + 1);
  if (s && fread(s, 1, (size_t)n, f) != (size_t)n) {
    free(s);
    s = NULL;
  }
  if (s) s[n] = 0;
  fclose(f);
  return s;
}

static lm_plot_opts parse_opts(const char *line) {
  lm_plot_opts o = {0};
  static char rankdir[8];
  char buf[512];
  snprintf(buf, sizeof buf, "%s", line);
  for (char *save = NULL, *kv = strtok_r(buf, ",", &save); kv; kv = strtok_r(NULL, ",", &save)) {
    char *eq = strchr(kv, '=');
    assert_non_null(eq);
    *eq = 0;
    const char *v = eq + 1;
    bool on = !strcmp(v, "True");
    if (!strcmp(kv, "dpi")) o.dpi = atoi(v);
    else if (!strcmp(kv, "rankdir")) o.rankdir = strcpy(rankdir, v);
    else if (!strcmp(kv, "show_shapes")) o.show_shapes = on;
    else if (!strcmp(kv, "show_dtype")) o.show_dtype = on;
    else if (!strcmp(kv, "show_layer_names")) o.no_layer_names = !on;
    else if (!strcmp(kv, "show_layer_activations")) o.show_layer_activations = on;
    else if (!strcmp(kv, "show_trainable")) o.show_trainable = on;
    else if (!strcmp(kv, "expand_nested")) o.expand_nested = on;
    else fail_msg("unknown option %s", kv);
  }
  return o;
}

static void test_dot_matches_keras(void **state) {
  (void)state;
  char path[1024];
  fx_source_path(path, sizeof path, "tests/fixtures/keras_plot.txt");
  char *text = read_text(path);
  assert_non_null(text);
  int cases = 0;
  for (char *at = strstr(text, "\ncase "); at; at = strstr(at, "\ncase ")) {
    char name[128];
    assert_int_equal(sscanf(at + 6, "%127s", name), 1);
    char *opts_line = strstr(at, "\nopts ") + 6;
    char *dot = strchr(opts_line, '\n') + 1;
    char *end = strstr(dot, "\nend\n");
    assert_non_null(end);
    char *opts_end = strchr(opts_line, '\n');
    *opts_end = 0;
    lm_plot_opts o = parse_opts(opts_line);
    end[1] = 0; /* the expected DOT text ends with its closing brace and a newline */
    lm_model *m = !strncmp(name, "tour/", 5) ? tour() : !strncmp(name, "embedder/", 9) ? embedder() : plain_sequential();
    assert_int_equal(lm_model_status(m), LM_OK);
    char *got = lm_model_to_dot_opts(m, o);
    assert_non_null(got);
    if (strcmp(got, dot)) {
      /* Point at the first difference. */
      size_t i = 0;
      while (got[i] && got[i] == dot[i]) i++;
      size_t from = i > 80 ? i - 80 : 0;
      print_error("case %s differs at byte %zu:\n  lamina: %.160s\n  keras:  %.160s\n", name, i, got + from, dot + from);
    }
    assert_string_equal(got, dot);
    free(got);
    lm_session_clear();
    at = end + 4;
    cases++;
  }
  assert_int_equal(cases, 8);
  free(text);
}

/* ---- Rendering ---- */

static char tmpdir[256];

static int setup_dir(void **state) {
  (void)state;
  snprintf(tmpdir, sizeof tmpdir, "/tmp/lamina_plot_XXXXXX");
  return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown_dir(void **state) {
  (void)state;
  DIR *d = opendir(tmpdir);
  if (d) {
    struct dirent *e;
    char p[512];
    while ((e = readdir(d))) {
      if (e->d_name[0] == '.') continue;
      snprintf(p, sizeof p, "%s/%s", tmpdir, e->d_name);
      unlink(p);
    }
    closedir(d);
  }
  rmdir(tmpdir);
  return 0;
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

static uint32_t be32(const unsigned char *p) { return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]; }

static void test_render_png_svg_dot(void **state) {
  (void)state;
  lm_model *m = tour();
  char path[512];
  snprintf(path, sizeof path, "%s/tour.png", tmpdir);
  assert_int_equal(lm_plot_model(m, path, .show_shapes = true, .show_layer_activations = true), LM_OK);
  FILE *f = fopen(path, "rb");
  assert_non_null(f);
  unsigned char head[24];
  assert_int_equal(fread(head, 1, sizeof head, f), sizeof head);
  fseek(f, 0, SEEK_END);
  long size = ftell(f);
  fclose(f);
  assert_memory_equal(head, "\x89PNG\r\n\x1a\n", 8);
  assert_memory_equal(head + 12, "IHDR", 4);
  uint32_t w = be32(head + 16), h = be32(head + 20);
  /* Nine labelled boxes on five ranks: several hundred pixels each way at 96 dpi. */
  assert_true(w > 400 && w < 4000);
  assert_true(h > 400 && h < 4000);
  assert_true(size > 10000);

  /* Higher dpi, bigger picture. */
  snprintf(path, sizeof path, "%s/tour_big.png", tmpdir);
  assert_int_equal(lm_plot_model(m, path, .show_shapes = true, .show_layer_activations = true, .dpi = 192), LM_OK);
  f = fopen(path, "rb");
  assert_int_equal(fread(head, 1, sizeof head, f), sizeof head);
  fclose(f);
  assert_true(be32(head + 16) > w * 3 / 2);

  snprintf(path, sizeof path, "%s/tour.svg", tmpdir);
  assert_int_equal(lm_plot_model(m, path, .expand_nested = true), LM_OK);
  char *svg = read_text(path);
  assert_non_null(strstr(svg, "<svg"));
  assert_non_null(strstr(svg, "inner_dense"));
  assert_non_null(strstr(svg, "stroke-dasharray")); /* the nested model's dashed cluster */
  free(svg);

  snprintf(path, sizeof path, "%s/tour.dot", tmpdir);
  assert_int_equal(lm_plot_model(m, path), LM_OK);
  char *dot = read_text(path);
  assert_non_null(strstr(dot, "digraph G {"));
  assert_non_null(strstr(dot, "pos=")); /* laid out by Graphviz, as pydot's write(format="dot") */
  free(dot);

  /* No extension: PNG, as in Keras. */
  snprintf(path, sizeof path, "%s/noext", tmpdir);
  assert_int_equal(lm_plot_model(m, path), LM_OK);
  f = fopen(path, "rb");
  assert_int_equal(fread(head, 1, 8, f), 8);
  fclose(f);
  assert_memory_equal(head, "\x89PNG\r\n\x1a\n", 8);
  assert_int_equal(count_files(), 5); /* no temporary file left behind */
  lm_session_clear();
}

static void test_bad_arguments(void **state) {
  (void)state;
  lm_model *m = tour();
  char path[512];
  snprintf(path, sizeof path, "%s/model.bmpx", tmpdir);
  assert_int_equal(lm_plot_model(m, path), LM_ERROR_VALUE);
  assert_non_null(strstr(lm_last_error(), ".bmpx"));

  assert_null(lm_model_to_dot(m, .rankdir = "UP"));
  assert_non_null(strstr(lm_last_error(), "rankdir"));
  assert_null(lm_model_to_dot(m, .splines = "wiggly"));
  assert_null(lm_model_to_dot(m, .dpi = -3));
  assert_null(lm_model_to_dot_opts(NULL, (lm_plot_opts){0}));

  /* A directory that does not exist: an IO error naming the path, and nothing written. */
  assert_int_equal(lm_plot_model(m, "/nonexistent_dir_lamina/model.png"), LM_ERROR_IO);
  assert_non_null(strstr(lm_last_error(), "/nonexistent_dir_lamina/model.png"));
  assert_int_equal(lm_plot_model(m, ""), LM_ERROR_VALUE);

  /* A model that could not be built is refused, with its error. */
  lm_tensor *a = lm_input(LM_SHAPE(3));
  lm_tensor *b = lm_input(LM_SHAPE(4));
  lm_model *broken = lm_model_new(LM_TENSORS(a), LM_TENSORS(lm_call(lm_dense(2), b)));
  assert_int_not_equal(lm_model_status(broken), LM_OK);
  assert_null(lm_model_to_dot(broken));
  assert_non_null(strstr(lm_last_error(), "Graph disconnected"));
  snprintf(path, sizeof path, "%s/broken.png", tmpdir);
  assert_int_not_equal(lm_plot_model(broken, path), LM_OK);

  /* An empty Sequential has nothing to draw. */
  assert_null(lm_model_to_dot(lm_sequential()));
  assert_int_equal(count_files(), 0);
  lm_session_clear();
}

/* Layer names are escaped inside the HTML-like labels, and odd model names are quoted. */
static void test_escaping(void **state) {
  (void)state;
  lm_tensor *in = lm_input(LM_SHAPE(2), .name = "a<b>&c");
  lm_tensor *inner_in = lm_input(LM_SHAPE(2));
  lm_model *inner = lm_model_new(LM_TENSORS(inner_in), LM_TENSORS(lm_call(lm_dense(2), inner_in)), .name = "my model");
  lm_model *m = lm_model_new(LM_TENSORS(in), LM_TENSORS(lm_call(inner, in)));
  char *dot = lm_model_to_dot(m, .expand_nested = true);
  assert_non_null(dot);
  assert_non_null(strstr(dot, "<b>a&lt;b&gt;&amp;c</b> (InputLayer)"));
  assert_non_null(strstr(dot, "subgraph \"cluster_my model\" {"));
  assert_non_null(strstr(dot, "label=\"my model\";"));
  free(dot);
  /* A model named like a DOT keyword gets a quoted label. */
  lm_tensor *kin = lm_input(LM_SHAPE(2));
  lm_model *kw = lm_model_new(LM_TENSORS(kin), LM_TENSORS(lm_call(lm_dense(2), kin)), .name = "node");
  lm_tensor *kin2 = lm_input(LM_SHAPE(2));
  lm_model *outer = lm_model_new(LM_TENSORS(kin2), LM_TENSORS(lm_call(kw, kin2)));
  dot = lm_model_to_dot(outer, .expand_nested = true);
  assert_non_null(strstr(dot, "subgraph cluster_node {\nstyle=dashed;\nlabel=\"node\";"));
  free(dot);
  char path[512];
  snprintf(path, sizeof path, "%s/escaped.svg", tmpdir);
  assert_int_equal(lm_plot_model(m, path, .expand_nested = true), LM_OK);
  char *svg = read_text(path);
  assert_non_null(strstr(svg, "a&lt;b&gt;&amp;c"));
  free(svg);
  unlink(path);
  lm_session_clear();
}

/* ---- Summaries ---- */

static char *summary_text(const lm_model *m, lm_summary_opts o, lm_status *st) {
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  *st = lm_summary_opts_(m, f, o);
  fclose(f);
  return buf;
}

/* tf-keras 2.11's print_summary(expand_nested=True, show_trainable=True) of the tour model:
 * the nested model's rows sit in a '|' frame, its layers show no connections (they are
 * looked up among the outer model's nodes), and no blank row follows the frame. */
static const char *const tour_nested =
    "Model: \"tour\"\n"
    "_____________________________________________________________________________________________________________\n"
    " Layer (type)                   Output Shape         Param #     Connected to                     Trainable  \n"
    "=============================================================================================================\n"
    " text (InputLayer)              [(None, 32)]         0           []                               Y          \n"
    "                                                                                                             \n"
    " meta (InputLayer)              [(None, 8)]          0           []                               Y          \n"
    "                                                                                                             \n"
    " shared (Dense)                 (None, 16)           528         ['text[0][0]']                   Y          \n"
    "                                                                                                             \n"
    " meta_dense (Dense)             (None, 16)           144         ['meta[0][0]']                   Y          \n"
    "                                                                                                             \n"
    " concat (Concatenate)           (None, 32)           0           ['shared[0][0]',                 Y          \n"
    "                                                                  'meta_dense[0][0]']                        \n"
    "                                                                                                             \n"
    " block (Functional)             (None, 32)           1056        ['concat[0][0]']                 N          \n"
    "{TOP}\n"
    "| inner_in (InputLayer)        [(None, 32)]         0           []                               N          |\n"
    "|                                                                                                           |\n"
    "| inner_dense (Dense)          (None, 32)           1056        []                               N          |\n"
    "{BOTTOM}\n"
    " age (Dense)                    (None, 1)            33          ['block[0][0]']                  Y          \n"
    "                                                                                                             \n"
    " income (Dense)                 (None, 3)            99          ['block[0][0]']                  Y          \n"
    "                                                                                                             \n"
    " gender (Dense)                 (None, 1)            33          ['block[0][0]']                  Y          \n"
    "                                                                                                             \n"
    "=============================================================================================================\n"
    "Total params: 1,893\n"
    "Trainable params: 837\n"
    "Non-trainable params: 1,056\n"
    "_____________________________________________________________________________________________________________\n";

static void test_summary_nested(void **state) {
  (void)state;
  lm_model *m = tour();
  lm_layer_set_trainable(lm_model_layer_by_name(m, "block"), false);
  lm_status st;
  char *got = summary_text(m, (lm_summary_opts){.expand_nested = true, .show_trainable = true}, &st);
  assert_int_equal(st, LM_OK);
  /* The frame: '|' + 107 macrons + '|' above, 109 macrons below (line length 98 + 11). */
  char top[512] = "|", bottom[512] = "", want[8192];
  for (int i = 0; i < 107; i++) strcat(top, "\xc2\xaf");
  strcat(top, "|");
  for (int i = 0; i < 109; i++) strcat(bottom, "\xc2\xaf");
  const char *t = strstr(tour_nested, "{TOP}"), *b = strstr(tour_nested, "{BOTTOM}");
  snprintf(want, sizeof want, "%.*s%s%.*s%s%s", (int)(t - tour_nested), tour_nested, top, (int)(b - t - 5), t + 5,
           bottom, b + 8);
  assert_string_equal(got, want);
  free(got);

  /* By default the nested model is one row, and lm_summary prints exactly that. */
  char *plain = summary_text(m, (lm_summary_opts){0}, &st);
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  lm_summary(m, f);
  fclose(f);
  assert_string_equal(plain, buf);
  assert_null(strstr(plain, "inner_dense"));
  assert_non_null(strstr(plain, " block (Functional)             (None, 32)           1056        ['concat[0][0]']"));
  free(plain);
  free(buf);
  lm_session_clear();
}

/* A sequential-like model: three columns (65 wide) plus Trainable, custom widths. */
static void test_summary_sequential_options(void **state) {
  (void)state;
  lm_model *m = plain_sequential();
  lm_layer_set_trainable(lm_model_layer_by_name(m, "d2"), false);
  lm_status st;
  char *got = summary_text(m, (lm_summary_opts){.show_trainable = true}, &st);
  assert_int_equal(st, LM_OK);
  const char *want = "Model: \"seq\"\n"
                     "____________________________________________________________________________\n"
                     " Layer (type)                Output Shape              Param #   Trainable  \n"
                     "============================================================================\n"
                     " d1 (Dense)                  (None, 3)                 18        Y          \n"
                     "                                                                            \n"
                     " d2 (Dense)                  (None, 1)                 4         N          \n"
                     "                                                                            \n"
                     "============================================================================\n"
                     "Total params: 22\n"
                     "Trainable params: 18\n"
                     "Non-trainable params: 4\n"
                     "____________________________________________________________________________\n";
  assert_string_equal(got, want);
  free(got);

  got = summary_text(m, (lm_summary_opts){.line_length = 40, .positions = {16, 30, 40}}, &st);
  assert_int_equal(st, LM_OK);
  const char *want2 = "Model: \"seq\"\n"
                      "________________________________________\n"
                      " Layer (type)   Output Shape  Param #   \n"
                      "========================================\n"
                      " d1 (Dense)     (None, 3)     18        \n"
                      "                                        \n"
                      " d2 (Dense)     (None, 1)     4         \n"
                      "                                        \n"
                      "========================================\n"
                      "Total params: 22\n"
                      "Trainable params: 18\n"
                      "Non-trainable params: 4\n"
                      "________________________________________\n";
  assert_string_equal(got, want2);
  free(got);

  /* Four positions for a three-column table, and decreasing positions, are refused. */
  got = summary_text(m, (lm_summary_opts){.positions = {0.3, 0.5, 0.7, 1.0}}, &st);
  assert_int_equal(st, LM_ERROR_VALUE);
  assert_string_equal(got, "");
  free(got);
  got = summary_text(m, (lm_summary_opts){.positions = {0.5, 0.3, 1.0}}, &st);
  assert_int_equal(st, LM_ERROR_VALUE);
  free(got);
  /* Columns too narrow to print anything (a long name would never end). */
  got = summary_text(m, (lm_summary_opts){.positions = {2, 30, 40}}, &st);
  assert_int_equal(st, LM_ERROR_VALUE);
  free(got);
  got = summary_text(m, (lm_summary_opts){.line_length = 4}, &st);
  assert_int_equal(st, LM_ERROR_VALUE);
  free(got);
  assert_int_equal(lm_summary_ex(NULL, stdout), LM_ERROR_VALUE);
  lm_session_clear();
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_dot_matches_keras),
      cmocka_unit_test_setup_teardown(test_render_png_svg_dot, setup_dir, teardown_dir),
      cmocka_unit_test_setup_teardown(test_bad_arguments, setup_dir, teardown_dir),
      cmocka_unit_test_setup_teardown(test_escaping, setup_dir, teardown_dir),
      cmocka_unit_test(test_summary_nested),
      cmocka_unit_test(test_summary_sequential_options),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
