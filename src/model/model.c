/* Functional models: mapping the graph of nodes as Keras does, Sequential, nesting. */
#include "model/internal.h"

typedef struct node_depth {
  lm_node *node;
  int depth;
} node_depth;

typedef struct layer_info {
  lm_layer *layer;
  int index; /* discovery order, Keras's layer_indices */
  int depth;
} layer_info;

typedef struct graph_map {
  lm_node **post; /* DFS post-order: Keras's nodes_in_decreasing_depth */
  int n_post, cap_post;
  layer_info *layers;
  int n_layers, cap_layers;
  node_depth *depths; /* insertion-ordered, as Keras's dict */
  int n_depths, cap_depths;
} graph_map;

static int find_layer(graph_map *m, const lm_layer *layer) {
  for (int i = 0; i < m->n_layers; i++)
    if (m->layers[i].layer == layer) return i;
  return -1;
}

static int find_node(lm_node **nodes, int n, const lm_node *node) {
  for (int i = 0; i < n; i++)
    if (nodes[i] == node) return i;
  return -1;
}

static int find_depth(graph_map *m, const lm_node *node) {
  for (int i = 0; i < m->n_depths; i++)
    if (m->depths[i].node == node) return i;
  return -1;
}

static int add_layer(graph_map *m, lm_layer *layer, int index) {
  if (lm__grow(&m->layers, &m->cap_layers, m->n_layers + 1, sizeof *m->layers)) return -1;
  m->layers[m->n_layers++] = (layer_info){layer, index, 0};
  return m->n_layers - 1;
}

/* Keras's _build_map_helper. Nodes are created after their inputs, so there is no cycle. */
static int build_map(graph_map *m, lm_tensor *t) {
  lm_node *node = t->node;
  if (find_node(m->post, m->n_post, node) >= 0) return 0;
  if (find_layer(m, node->layer) < 0 && add_layer(m, node->layer, m->n_layers) < 0) return -1;
  for (int i = 0; i < node->n_in; i++)
    if (build_map(m, node->inputs[i])) return -1;
  if (lm__grow(&m->post, &m->cap_post, m->n_post + 1, sizeof *m->post)) return -1;
  m->post[m->n_post++] = node;
  return 0;
}

static int set_depth(graph_map *m, lm_node *node, int depth) {
  int i = find_depth(m, node);
  if (i < 0) {
    if (lm__grow(&m->depths, &m->cap_depths, m->n_depths + 1, sizeof *m->depths)) return -1;
    m->depths[m->n_depths++] = (node_depth){node, depth};
  } else if (depth > m->depths[i].depth) m->depths[i].depth = depth;
  return 0;
}

static void graph_map_free(graph_map *m) {
  free(m->post);
  free(m->layers);
  free(m->depths);
}

static void describe_tensor(const lm_tensor *t, char *buf, size_t len) {
  char shape[96];
  snprintf(buf, len, "%s (shape %s)", t->node->layer->name, lm_shape_format(t->shape, shape, sizeof shape));
}

/* Keras's _map_graph_network: orders layers by depth (then discovery) and nodes by depth,
 * and refuses outputs that need a tensor the inputs cannot produce. */
static lm_status map_network(lm_model *model) {
  graph_map m = {0};
  lm_error *err = &model->base.err;
  for (int i = 0; i < model->n_outputs; i++)
    if (build_map(&m, model->outputs[i])) goto oom;
  for (int i = m.n_post - 1; i >= 0; i--) {
    lm_node *node = m.post[i];
    if (set_depth(&m, node, 0)) goto oom;
    int depth = m.depths[find_depth(&m, node)].depth;
    layer_info *li = &m.layers[find_layer(&m, node->layer)];
    if (li->depth > depth) depth = li->depth;
    li->depth = depth;
    m.depths[find_depth(&m, node)].depth = depth;
    for (int k = 0; k < node->n_in; k++)
      if (set_depth(&m, node->inputs[k]->node, depth + 1)) goto oom;
  }
  /* Inputs that no output needs still belong to the model, at depth 0. */
  for (int i = 0; i < model->n_inputs; i++) {
    lm_node *node = model->inputs[i]->node;
    if (find_layer(&m, node->layer) < 0) {
      if (add_layer(&m, node->layer, -1) < 0 || set_depth(&m, node, 0)) goto oom;
    }
  }
  int max_depth = 0;
  for (int i = 0; i < m.n_depths; i++)
    if (m.depths[i].depth > max_depth) max_depth = m.depths[i].depth;

  /* Layers: by decreasing depth, then by discovery order. */
  free(model->layers);
  free(model->nodes);
  model->layers = lm__calloc((size_t)m.n_layers + 1, sizeof *model->layers);
  model->nodes = lm__calloc((size_t)m.n_depths + 1, sizeof *model->nodes);
  model->n_layers = model->n_nodes = 0;
  if (!model->layers || !model->nodes) goto oom;
  for (int d = max_depth; d >= 0; d--) {
    for (;;) {
      int best = -1;
      for (int i = 0; i < m.n_layers; i++)
        if (m.layers[i].depth == d && m.layers[i].layer &&
            (best < 0 || m.layers[i].index < m.layers[best].index))
          best = i;
      if (best < 0) break;
      if (!(model->sequential && lm__is_input_layer(m.layers[best].layer)))
        model->layers[model->n_layers++] = m.layers[best].layer;
      m.layers[best].layer = NULL;
    }
  }

  /* Nodes to run, by decreasing depth; each must find its inputs already computed. */
  lm_tensor **computable = lm__calloc((size_t)(m.n_depths * LM_MAX_TENSORS + model->n_inputs + 1), sizeof *computable);
  int n_computable = 0;
  if (!computable) goto oom;
  for (int i = 0; i < model->n_inputs; i++) computable[n_computable++] = model->inputs[i];
  char done[1024] = "";
  size_t done_len = 0;
  for (int d = max_depth; d >= 0; d--) {
    for (int i = 0; i < m.n_depths; i++) {
      if (m.depths[i].depth != d) continue;
      lm_node *node = m.depths[i].node;
      if (lm__is_input_layer(node->layer)) continue;
      for (int k = 0; k < node->n_in; k++) {
        int found = 0;
        for (int c = 0; c < n_computable && !found; c++) found = computable[c] == node->inputs[k];
        if (!found) {
          char what[160];
          describe_tensor(node->inputs[k], what, sizeof what);
          lm__fail(err, LM_ERROR_GRAPH,
                   "Graph disconnected: cannot obtain value for tensor %s at layer \"%s\". The following "
                   "previous layers were accessed without issue: [%s]",
                   what, node->layer->name, done);
          free(computable);
          graph_map_free(&m);
          return err->code;
        }
      }
      for (int k = 0; k < node->n_out; k++) computable[n_computable++] = node->outputs[k];
      model->nodes[model->n_nodes++] = node;
      if (done_len < sizeof done - 1)
        done_len += (size_t)snprintf(done + done_len, sizeof done - done_len, "%s'%s'", done_len ? ", " : "",
                                     node->layer->name);
    }
  }
  free(computable);
  graph_map_free(&m);

  for (int i = 0; i < model->n_layers; i++) {
    int count = 0;
    for (int j = 0; j < model->n_layers; j++) count += !strcmp(model->layers[i]->name, model->layers[j]->name);
    if (count > 1)
      return lm__fail(err, LM_ERROR_NAME,
                      "The name \"%s\" is used %d times in the model \"%s\". All layer names should be unique.",
                      model->layers[i]->name, count, model->base.name);
  }
  return LM_OK;
oom:
  graph_map_free(&m);
  return lm__fail(err, LM_ERROR_MEMORY, "out of memory mapping model \"%s\"", model->base.name);
}

int lm__model_emit(lm_model *model, lm_graph *g, const int *in, int *out) {
  /* tensor -> value, filled in execution order */
  int cap = model->n_inputs;
  for (int i = 0; i < model->n_nodes; i++) cap += model->nodes[i]->n_out;
  lm_tensor **keys = lm__calloc((size_t)cap + 1, sizeof *keys);
  int *vals = lm__calloc((size_t)cap + 1, sizeof *vals), n = 0, rc = -1;
  const char *outer_who = g->who;
  if (!keys || !vals) goto done;
  for (int i = 0; i < model->n_inputs; i++) keys[n] = model->inputs[i], vals[n++] = in[i];
  for (int i = 0; i < model->n_nodes; i++) {
    lm_node *node = model->nodes[i];
    int args[LM_MAX_TENSORS], res[LM_MAX_OP_IO];
    for (int k = 0; k < node->n_in; k++) {
      args[k] = -1;
      for (int j = n - 1; j >= 0 && args[k] < 0; j--)
        if (keys[j] == node->inputs[k]) args[k] = vals[j];
    }
    g->who = node->layer->name;
    int n_out = node->layer->vt->emit(node->layer, g, args, node->n_in, res);
    if (n_out != node->n_out) {
      if (!g->err.code) lm__fail(&g->err, LM_ERROR_SHAPE, "Layer \"%s\" produced %d outputs, expected %d",
                                 node->layer->name, n_out, node->n_out);
      goto done;
    }
    for (int k = 0; k < n_out; k++) {
      if (node->layer->vt->passes_mask && g->vals[res[k]].mask < 0) g->vals[res[k]].mask = g->vals[args[0]].mask;
      keys[n] = node->outputs[k], vals[n++] = res[k];
    }
  }
  for (int o = 0; o < model->n_outputs; o++) {
    out[o] = -1;
    for (int j = n - 1; j >= 0 && out[o] < 0; j--)
      if (keys[j] == model->outputs[o]) out[o] = vals[j];
  }
  rc = model->n_outputs;
done:
  g->who = outer_who;
  free(keys);
  free(vals);
  return rc;
}

static int model_layer_emit(lm_layer *layer, lm_graph *g, const int *in, int n, int *out) {
  lm_model *model = layer->model;
  if (n != model->n_inputs) {
    lm__fail(&g->err, LM_ERROR_VALUE, "Model \"%s\" expects %d input(s), but it was called on %d", layer->name,
             model->n_inputs, n);
    return -1;
  }
  return lm__model_emit(model, g, in, out);
}

static void model_destroy(lm_layer *layer) {
  lm_model *model = layer->model;
  free(model->inputs);
  free(model->outputs);
  free(model->layers);
  free(model->nodes);
}

static const lm_layer_vt functional_vt = {.class_name = "Functional", .prefix = "model", .emit = model_layer_emit, .destroy = model_destroy};
static const lm_layer_vt sequential_vt = {.class_name = "Sequential", .prefix = "sequential", .emit = model_layer_emit, .destroy = model_destroy};

static lm_model *model_alloc(const lm_layer_vt *vt, const char *name) {
  lm_model *model = (lm_model *)lm__layer_new(sizeof *model, vt, name);
  if (!model) return NULL;
  model->base.model = model;
  model->base.built = true;
  return model;
}

static lm_status set_io(lm_model *model, lm_tensors inputs, lm_tensors outputs) {
  lm_error *err = &model->base.err;
  free(model->inputs);
  free(model->outputs);
  model->inputs = lm__calloc((size_t)inputs.n + 1, sizeof *model->inputs);
  model->outputs = lm__calloc((size_t)outputs.n + 1, sizeof *model->outputs);
  if (!model->inputs || !model->outputs) return lm__fail(err, LM_ERROR_MEMORY, "out of memory");
  model->n_inputs = inputs.n;
  model->n_outputs = outputs.n;
  for (int i = 0; i < inputs.n; i++) {
    lm_tensor *t = inputs.t[i];
    if (!t) return lm__fail(err, LM_ERROR_VALUE, "Model \"%s\": input %d is NULL", model->base.name, i);
    if (t->err.code) {
      lm__error_pass(err, &t->err);
      return err->code;
    }
    if (!lm__is_input_layer(t->node->layer))
      return lm__fail(err, LM_ERROR_VALUE,
                      "Model \"%s\": input %d comes from layer \"%s\", but model inputs must be Input tensors "
                      "(lm_input)",
                      model->base.name, i, t->node->layer->name);
    model->inputs[i] = t;
  }
  for (int i = 0; i < outputs.n; i++) {
    lm_tensor *t = outputs.t[i];
    if (!t) return lm__fail(err, LM_ERROR_VALUE, "Model \"%s\": output %d is NULL", model->base.name, i);
    if (t->err.code) {
      lm__error_pass(err, &t->err);
      return err->code;
    }
    model->outputs[i] = t;
  }
  return map_network(model);
}

lm_model *lm_model_new_opts(lm_tensors inputs, lm_tensors outputs, lm_model_opts opts) {
  lm_model *model = model_alloc(&functional_vt, opts.name);
  if (!model) return NULL;
  if (inputs.n < 1 || outputs.n < 1 || outputs.n > LM_MAX_OUTPUTS) {
    lm__fail(&model->base.err, LM_ERROR_VALUE, "Model \"%s\" needs at least one input and 1..%d outputs, got %d and %d",
             model->base.name, LM_MAX_OUTPUTS, inputs.n, outputs.n);
    return model;
  }
  set_io(model, inputs, outputs);
  if (model->base.err.code) lm__fail(NULL, model->base.err.code, "%s", model->base.err.msg);
  return model;
}

lm_model *lm__model_error(const char *name, lm_status code, const char *fmt, ...) {
  lm_model *model = model_alloc(&functional_vt, name);
  if (!model) return NULL;
  va_list ap;
  va_start(ap, fmt);
  lm__failv(&model->base.err, code, fmt, ap);
  va_end(ap);
  return model;
}

lm_model *lm_sequential_new(lm_model_opts opts) {
  lm_model *model = model_alloc(&sequential_vt, opts.name);
  if (model) model->sequential = true;
  return model;
}

lm_status lm_sequential_add(lm_model *model, lm_layer *layer) {
  if (!model) return lm__fail(NULL, LM_ERROR_VALUE, "lm_sequential_add: the model is NULL");
  lm_error *err = &model->base.err;
  if (err->code) return err->code;
  if (!model->sequential)
    return lm__fail(err, LM_ERROR_STATE, "lm_sequential_add: model \"%s\" is not Sequential", model->base.name);
  if (!layer)
    return lm__fail(err, LM_ERROR_VALUE, "Sequential \"%s\": the added layer is NULL (%s)", model->base.name,
                    lm_last_error());
  if (layer->err.code) {
    lm__error_pass(err, &layer->err);
    return err->code;
  }
  if (lm__is_input_layer(layer)) {
    if (model->n_inputs)
      return lm__fail(err, LM_ERROR_STATE, "Sequential \"%s\" already has an input; add the InputLayer first",
                      model->base.name);
    lm_tensor *t = layer->nodes[0]->outputs[0];
    return set_io(model, LM_TENSORS(t), LM_TENSORS(t));
  }
  if (!model->n_inputs)
    return lm__fail(err, LM_ERROR_STATE,
                    "Sequential \"%s\": add an InputLayer (lm_input_layer(shape)) before layer \"%s\", so that its "
                    "input shape is known",
                    model->base.name, layer->name);
  lm_tensor *out = lm_call_n(layer, LM_TENSORS(model->outputs[0]));
  if (out->err.code) {
    lm__error_pass(err, &out->err);
    return err->code;
  }
  return set_io(model, LM_TENSORS(model->inputs[0]), LM_TENSORS(out));
}

lm_layer *lm_model_layer(lm_model *model) { return model ? &model->base : NULL; }
lm_status lm_model_status(const lm_model *model) { return model ? model->base.err.code : LM_ERROR_VALUE; }
const char *lm_model_error(const lm_model *model) { return model ? model->base.err.msg : lm_last_error(); }
const char *lm_model_name(const lm_model *model) { return model ? model->base.name : ""; }
int lm_model_n_layers(const lm_model *model) { return model ? model->n_layers : 0; }
lm_layer *lm_model_get_layer(const lm_model *model, int index) {
  return model && index >= 0 && index < model->n_layers ? model->layers[index] : NULL;
}
lm_layer *lm_model_layer_by_name(const lm_model *model, const char *name) {
  for (int i = 0; model && name && i < model->n_layers; i++)
    if (!strcmp(model->layers[i]->name, name)) return model->layers[i];
  return NULL;
}

lm_tensors lm_model_inputs(const lm_model *model) {
  lm_tensors r = {0};
  for (int i = 0; model && i < model->n_inputs && i < LM_MAX_TENSORS; i++) r.t[r.n++] = model->inputs[i];
  return r;
}

lm_tensors lm_model_outputs(const lm_model *model) {
  lm_tensors r = {0};
  for (int i = 0; model && i < model->n_outputs && i < LM_MAX_TENSORS; i++) r.t[r.n++] = model->outputs[i];
  return r;
}

int64_t lm_model_count_params(const lm_model *model) { return model ? lm_layer_count_params(&model->base) : 0; }

static void count_trainable(lm_weight *w, void *ctx) {
  if (lm__weight_trainable(w)) *(int64_t *)ctx += w->value->size;
}

int64_t lm_model_count_trainable_params(const lm_model *model) {
  int64_t n = 0;
  if (model) lm__layer_visit_weights(&model->base, count_trainable, &n);
  return n;
}

void lm__model_resume_at(lm_model *model, int epoch) {
  if (model) model->resume_epoch = epoch;
}

void lm_model_free(lm_model *model) {
  if (!model) return;
  lm__compiled_free(model->compiled);
  model->compiled = NULL;
}
