/* model.summary() in tf-keras's plain-text layout. */
#include "model/internal.h"

/* tf-keras's print_row: columns end at positions[], long fields wrap at ")," "]," "'," */
static void print_row(FILE *out, const char *const *fields, const int *positions, int n) {
  const char *left[4];
  for (int c = 0; c < n; c++) left[c] = fields[c];
  for (;;) {
    int any = 0;
    for (int c = 0; c < n; c++) any |= *left[c] != 0;
    if (!any) break;
    char line[512];
    int len = 0;
    for (int c = 0; c < n; c++) {
      int start = c ? positions[c - 1] : 0, end = positions[c];
      int space = c != n - 1 ? 2 : 0, cutoff = end - start - space;
      int avail = (int)strlen(left[c]);
      int take = avail < cutoff ? avail : cutoff;
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
      if (c == 0) line[len++] = ' ';
      memcpy(line + len, left[c], (size_t)take);
      len += take;
      for (int s = 0; s < space; s++) line[len++] = ' ';
      left[c] += take;
      while (len < end && len < (int)sizeof line - 1) line[len++] = ' ';
    }
    line[len] = 0;
    fprintf(out, "%s\n", line);
  }
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

void lm_summary(const lm_model *model, FILE *out) {
  if (!model || !out) return;
  if (model->base.err.code) {
    fprintf(out, "Model \"%s\" could not be built: %s\n", model->base.name, model->base.err.msg);
    return;
  }
  int seq = sequential_like(model);
  int line_length = seq ? 65 : 98;
  int positions[4] = {29, 55, 65, 0};
  if (!seq) positions[0] = 32, positions[1] = 53, positions[2] = 65, positions[3] = 98;
  int n_cols = seq ? 3 : 4;
  char rule[128];
  fprintf(out, "Model: \"%s\"\n", model->base.name);
  memset(rule, '_', (size_t)line_length);
  rule[line_length] = 0;
  fprintf(out, "%s\n", rule);
  const char *header[4] = {"Layer (type)", "Output Shape", "Param #", "Connected to"};
  print_row(out, header, positions, n_cols);
  memset(rule, '=', (size_t)line_length);
  fprintf(out, "%s\n", rule);
  for (int i = 0; i < model->n_layers; i++) {
    const lm_layer *layer = model->layers[i];
    char name[300], shape[512], params[32], conn[2048] = "[";
    snprintf(name, sizeof name, "%s (%s)", layer->name, layer->vt->class_name);
    output_shape_text(layer, shape, sizeof shape);
    snprintf(params, sizeof params, "%lld", (long long)lm_layer_count_params(layer));
    size_t at = 1;
    for (int k = 0; k < layer->n_nodes; k++) {
      const lm_node *node = layer->nodes[k];
      if (!node_in_model(model, node)) continue;
      for (int j = 0; j < node->n_in && at < sizeof conn; j++)
        at += (size_t)snprintf(conn + at, sizeof conn - at, "%s'%s[%d][%d]'", at > 1 ? ", " : "",
                               node->inputs[j]->node->layer->name, node->inputs[j]->node->index,
                               node->inputs[j]->index);
    }
    if (at < sizeof conn - 1) conn[at++] = ']', conn[at] = 0;
    const char *fields[4] = {name, shape, params, conn};
    print_row(out, fields, positions, n_cols);
    fprintf(out, "%*s\n", line_length, "");
  }
  memset(rule, '=', (size_t)line_length);
  fprintf(out, "%s\n", rule);
  int64_t total = lm_model_count_params(model), trainable = lm_model_count_trainable_params(model);
  char a[32], b[32], c[32];
  thousands(total, a, sizeof a);
  thousands(trainable, b, sizeof b);
  thousands(total - trainable, c, sizeof c);
  fprintf(out, "Total params: %s\nTrainable params: %s\nNon-trainable params: %s\n", a, b, c);
  memset(rule, '_', (size_t)line_length);
  fprintf(out, "%s\n", rule);
}
