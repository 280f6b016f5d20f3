/* model.summary() in tf-keras's plain-text layout. */
#include "model/internal.h"
#include <lamina/plot.h>

/* tf-keras 2.11's print_row: columns end at positions[]; long fields wrap after the first
 * ")," "}," "]," or "',"; rows of nested models are framed by nested_level '|' on each side. */
static void print_row(FILE *out, const char *const *fields, const int *positions, int n, int nested) {
  const char *left[5];
  size_t need = (size_t)positions[n - 1] + 2 * (size_t)nested + 8;
  for (int c = 0; c < n; c++) {
    left[c] = fields[c];
    need += strlen(fields[c]) + 4;
  }
  char *line = malloc(need);
  if (!line) return;
  for (;;) {
    int any = 0;
    for (int c = 0; c < n; c++) any |= *left[c] != 0;
    if (!any) break;
    int len = 0;
    for (int c = 0; c < n; c++) {
      int start = c ? positions[c - 1] : 0, end = positions[c];
      int space = c != n - 1 ? 2 : 0, cutoff = end - start - space;
      int avail = (int)strlen(left[c]);
      int take = cutoff < 0 ? 0 : avail < cutoff ? avail : cutoff;
      int best = -1;
      static const char *const breaks[] = {"),", "},", "],", "',"};
      for (int b = 0; b < 4; b++) {
        for (int i = 0; i + 1 < take; i++) {
          if (left[c][i] == breaks[b][0] && left[c][i + 1] == breaks[b][1]) {
            if (best < 0 || i + 2 < best) best = i + 2;
            break;
          }
        }
      }
      if (best > 0) take = best;
      if (c == 0) {
        for (int k = 0; k < nested; k++) line[len++] = '|';
        line[len++] = ' ';
      }
      memcpy(line + len, left[c], (size_t)take);
      len += take;
      for (int s = 0; s < space; s++) line[len++] = ' ';
      left[c] += take;
      while (len < end - nested) line[len++] = ' ';
    }
    for (int k = 0; k < nested; k++) line[len++] = '|';
    line[len] = 0;
    fprintf(out, "%s\n", line);
  }
  free(line);
}

static void output_shape_text(const lm_layer *layer, char *buf, size_t len) {
  if (layer->n_nodes == 0) {
    snprintf(buf, len, "multiple");
    return;
  }
  /* A layer called on different shapes has no single output shape. */
  const lm_node *first = layer->nodes[0];
  for (int i = 1; i < layer->n_nodes; i++) {
    const lm_node *node = layer->nodes[i];
    int same = node->n_out == first->n_out;
    for (int k = 0; same && k < node->n_out; k++) same = lm__shape_equal(node->outputs[k]->shape, first->outputs[k]->shape);
    if (!same) {
      snprintf(buf, len, "multiple");
      return;
    }
  }
  int list = first->n_out > 1 || lm__is_input_layer(layer);
  size_t at = 0;
  char shape[96];
  if (list) at += (size_t)snprintf(buf + at, len - at, "[");
  for (int k = 0; k < first->n_out && at < len; k++)
    at += (size_t)snprintf(buf + at, len - at, "%s%s", k ? ", " : "",
                           lm_shape_format(first->outputs[k]->shape, shape, sizeof shape));
  if (list && at < len) snprintf(buf + at, len - at, "]");
}

static int node_in_model(const lm_model *model, const lm_node *node) {
  for (int i = 0; i < model->n_nodes; i++)
    if (model->nodes[i] == node) return 1;
  return 0;
}

/* tf-keras treats a graph whose every depth holds one single-input node, without shared
 * layers, as sequential-like: no "Connected to" column. */
static int sequential_like(const lm_model *model) {
  if (model->sequential) return 1;
  for (int i = 0; i < model->n_nodes; i++)
    if (model->nodes[i]->n_in > 1) return 0;
  for (int i = 0; i < model->n_layers; i++) {
    int used = 0;
    for (int k = 0; k < model->layers[i]->n_nodes; k++) used += node_in_model(model, model->layers[i]->nodes[k]);
    if (used > 1) return 0;
  }
  /* One node per depth: a chain, so every node's input is the previous node's output. */
  for (int i = 1; i < model->n_nodes; i++) {
    const lm_node *prev = model->nodes[i - 1], *node = model->nodes[i];
    if (node->inputs[0]->node != prev) return 0;
  }
  if (model->n_nodes && !lm__is_input_layer(model->nodes[0]->inputs[0]->node->layer)) return 0;
  return model->n_inputs == 1 && model->n_outputs == 1;
}

static void thousands(int64_t v, char *buf, size_t len) {
  char digits[32];
  int n = snprintf(digits, sizeof digits, "%lld", (long long)v), at = 0;
  for (int i = 0; i < n && at < (int)len - 1; i++) {
    if (i && (n - i) % 3 == 0 && at < (int)len - 2) buf[at++] = ',';
    buf[at++] = digits[i];
  }
  buf[at] = 0;
}

typedef struct summary_ctx {
  FILE *out;
  const lm_model *top;
  bool seq, expand_nested, show_trainable;
  int line_length, n_cols;
  int positions[5];
} summary_ctx;

/* '|' * left + fill * width + '|' * right, fill being one UTF-8 character. */
static void frame_line(FILE *out, int left, const char *fill, int width, int right) {
  for (int i = 0; i < left; i++) fputc('|', out);
  for (int i = 0; i < width; i++) fputs(fill, out);
  for (int i = 0; i < right; i++) fputc('|', out);
  fputc('\n', out);
}

static void print_layer(summary_ctx *s, const lm_layer *layer, int nested, bool is_nested_last) {
  char name[300], shape[512], params[32], conn[2048] = "[";
  snprintf(name, sizeof name, "%s (%s)", layer->name, layer->vt->class_name);
  output_shape_text(layer, shape, sizeof shape);
  snprintf(params, sizeof params, "%lld", (long long)lm_layer_count_params(layer));
  /* Connections are looked up among the top model's nodes, as tf-keras does: a layer inside
   * an expanded nested model shows []. */
  size_t at = 1;
  for (int k = 0; k < layer->n_nodes; k++) {
    const lm_node *node = layer->nodes[k];
    if (!node_in_model(s->top, node)) continue;
    for (int j = 0; j < node->n_in && at < sizeof conn; j++)
      at += (size_t)snprintf(conn + at, sizeof conn - at, "%s'%s[%d][%d]'", at > 1 ? ", " : "",
                             node->inputs[j]->node->layer->name, node->inputs[j]->node->index,
                             node->inputs[j]->index);
  }
  if (at < sizeof conn - 1) conn[at++] = ']', conn[at] = 0;
  const char *fields[5] = {name, shape, params};
  int n = 3;
  if (!s->seq) fields[n++] = conn;
  if (s->show_trainable) fields[n++] = layer->trainable ? "Y" : "N";
  print_row(s->out, fields, s->positions, n, nested);

  const lm_model *sub = layer->model;
  if (s->expand_nested && sub && sub->n_layers) {
    int L = s->line_length;
    frame_line(s->out, nested + 1, "\xc2\xaf", L - 2 * nested - 2, nested + 1);
    for (int i = 0; i < sub->n_layers; i++) print_layer(s, sub->layers[i], nested + 1, i == sub->n_layers - 1);
    frame_line(s->out, nested, "\xc2\xaf", L - 2 * nested, nested);
    is_nested_last = true; /* tf-keras reuses the flag its loop left set: no blank row follows */
  }
  if (!is_nested_last) frame_line(s->out, nested, " ", s->line_length - 2 * nested, nested);
}

lm_status lm_summary_opts_(const lm_model *model, FILE *out, lm_summary_opts opts) {
  if (!model || !out) return lm__fail(NULL, LM_ERROR_VALUE, "summary: the model or the stream is NULL");
  if (model->base.err.code) {
    fprintf(out, "Model \"%s\" could not be built: %s\n", model->base.name, model->base.err.msg);
    return model->base.err.code;
  }
  summary_ctx s = {.out = out, .top = model, .expand_nested = opts.expand_nested, .show_trainable = opts.show_trainable};
  s.seq = sequential_like(model);
  s.n_cols = s.seq ? 3 : 4;
  s.line_length = opts.line_length > 0 ? opts.line_length : s.seq ? 65 : 98;
  static const double seq_pos[3] = {0.45, 0.85, 1.0}, graph_pos[4] = {0.33, 0.55, 0.67, 1.0};
  int n_given = 0;
  while (n_given < 4 && opts.positions[n_given] > 0) n_given++;
  if (n_given && n_given != s.n_cols)
    return lm__fail(NULL, LM_ERROR_VALUE, "summary: model \"%s\" has %d columns, but %d positions were given",
                    model->base.name, s.n_cols, n_given);
  const double *pos = n_given ? opts.positions : s.seq ? seq_pos : graph_pos;
  bool relative = pos[s.n_cols - 1] <= 1;
  for (int c = 0; c < s.n_cols; c++) {
    double p = relative ? s.line_length * pos[c] : pos[c];
    /* Every column must take at least one character besides its two spaces, or a long
     * field would never be printed to its end. */
    int min_width = c == s.n_cols - 1 && !s.show_trainable ? 1 : 3;
    if (!(p >= 1 && p <= 100000) || (int)p - (c ? s.positions[c - 1] : 0) < min_width)
      return lm__fail(NULL, LM_ERROR_VALUE,
                      "summary: column %d would end at %g; positions must increase by at least %d within 1..100000", c,
                      p, min_width);
    s.positions[c] = (int)p;
  }
  if (s.show_trainable) {
    s.line_length += 11;
    s.positions[s.n_cols] = s.line_length;
  }
  int n_fields = s.n_cols + (s.show_trainable ? 1 : 0);
  int L = s.line_length;
  fprintf(out, "Model: \"%s\"\n", model->base.name);
  frame_line(out, 0, "_", L, 0);
  const char *header[5] = {"Layer (type)", "Output Shape", "Param #"};
  header[3] = s.seq ? "Trainable" : "Connected to";
  header[4] = "Trainable";
  print_row(out, header, s.positions, n_fields, 0);
  frame_line(out, 0, "=", L, 0);
  for (int i = 0; i < model->n_layers; i++) print_layer(&s, model->layers[i], 0, false);
  frame_line(out, 0, "=", L, 0);
  int64_t total = lm_model_count_params(model), trainable = lm_model_count_trainable_params(model);
  char a[32], b[32], c[32];
  thousands(total, a, sizeof a);
  thousands(trainable, b, sizeof b);
  thousands(total - trainable, c, sizeof c);
  fprintf(out, "Total params: %s\nTrainable params: %s\nNon-trainable params: %s\n", a, b, c);
  frame_line(out, 0, "_", L, 0);
  return LM_OK;
}

void lm_summary(const lm_model *model, FILE *out) { lm_summary_opts_(model, out, (lm_summary_opts){0}); }
