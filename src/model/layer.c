/* Layers, symbolic tensors, nodes and the session that owns them. */
#include "model/internal.h"

/* The session: every layer and tensor created since the last lm_session_clear. */
static struct {
  lm_layer *layers;
  lm_tensor *tensors;
  struct {
    char prefix[64];
    int count;
  } *names;
  int n_names, cap_names;
} session;

static void auto_name(const char *prefix, bool one_based, char *out, size_t len) {
  for (int i = 0; i < session.n_names; i++) {
    if (!strcmp(session.names[i].prefix, prefix)) {
      snprintf(out, len, "%s_%d", prefix, session.names[i].count++);
      return;
    }
  }
  if (!lm__grow(&session.names, &session.cap_names, session.n_names + 1, sizeof *session.names)) {
    snprintf(session.names[session.n_names].prefix, sizeof session.names[0].prefix, "%s", prefix);
    session.names[session.n_names++].count = one_based ? 2 : 1;
  }
  if (one_based) snprintf(out, len, "%s_1", prefix);
  else snprintf(out, len, "%s", prefix);
}

void lm__session_reserve_name(const lm_layer *layer) {
  const char *prefix = layer->vt->prefix, *name = layer->name;
  size_t n = strlen(prefix);
  if (strncmp(name, prefix, n)) return;
  int next;
  if (!name[n]) {
    if (layer->vt->one_based) return; /* automatic names are prefix_1, prefix_2, ... */
    next = 1;
  } else {
    const char *d = name + n + 1;
    size_t digits = strspn(d, "0123456789");
    if (name[n] != '_' || !digits || digits > 9 || d[digits] || d[0] == '0') return;
    next = atoi(d) + 1;
  }
  for (int i = 0; i < session.n_names; i++) {
    if (!strcmp(session.names[i].prefix, prefix)) {
      if (session.names[i].count < next) session.names[i].count = next;
      return;
    }
  }
  if (!lm__grow(&session.names, &session.cap_names, session.n_names + 1, sizeof *session.names)) {
    snprintf(session.names[session.n_names].prefix, sizeof session.names[0].prefix, "%s", prefix);
    session.names[session.n_names++].count = next;
  }
}

lm_layer *lm__layer_new(size_t size, const lm_layer_vt *vt, const char *name) {
  lm_layer *layer = lm__calloc(1, size);
  if (!layer) return NULL;
  layer->vt = vt;
  layer->trainable = true;
  if (name && *name) snprintf(layer->name, sizeof layer->name, "%s", name);
  else auto_name(vt->prefix, vt->one_based, layer->name, sizeof layer->name);
  layer->session_next = session.layers;
  session.layers = layer;
  return layer;
}

static const lm_layer_vt error_vt = {.class_name = "Error", .prefix = "error"};

lm_layer *lm__layer_error(const char *class_name, lm_status code, const char *fmt, ...) {
  lm_layer *layer = lm__layer_new(sizeof(lm_layer), &error_vt, class_name);
  if (!layer) return NULL;
  va_list ap;
  va_start(ap, fmt);
  lm__failv(&layer->err, code, fmt, ap);
  va_end(ap);
  return layer;
}

void lm__session_track_tensor(lm_tensor *t) {
  t->session_next = session.tensors;
  session.tensors = t;
}

lm_tensor *lm__tensor_error(const lm_error *err) {
  lm_tensor *t = lm__calloc(1, sizeof *t);
  if (!t) return NULL;
  t->err = *err;
  if (t->err.code == LM_OK) lm__fail(&t->err, LM_ERROR_MEMORY, "out of memory");
  lm__fail(NULL, t->err.code, "%s", t->err.msg);
  lm__session_track_tensor(t);
  return t;
}

static void layer_free(lm_layer *layer) {
  if (layer->vt->destroy) layer->vt->destroy(layer);
  for (int i = 0; i < layer->n_weights; i++) {
    lm_array_free(layer->weights[i]->value);
    free(layer->weights[i]);
  }
  for (int i = 0; i < layer->n_nodes; i++) {
    free(layer->nodes[i]->inputs);
    free(layer->nodes[i]->outputs);
    free(layer->nodes[i]);
  }
  free(layer->weights);
  free(layer->nodes);
  free(layer);
}

void lm_session_clear(void) {
  /* Models first: their compiled state refers to layers' weights. */
  for (lm_layer *l = session.layers; l; l = l->session_next)
    if (l->model) lm_model_free(l->model);
  while (session.layers) {
    lm_layer *next = session.layers->session_next;
    layer_free(session.layers);
    session.layers = next;
  }
  while (session.tensors) {
    lm_tensor *next = session.tensors->session_next;
    free(session.tensors);
    session.tensors = next;
  }
  free(session.names);
  session.names = NULL;
  session.n_names = session.cap_names = 0;
}

/* Elements that weights may still take; -1: no cap (see lm__set_weight_budget). */
static int64_t weight_budget = -1;

int64_t lm__set_weight_budget(int64_t elements) {
  int64_t old = weight_budget;
  weight_budget = elements;
  return old;
}

lm_weight *lm__layer_add_weight(lm_layer *layer, const char *name, lm_shape shape, lm_initializer init,
                                lm_init_kind default_kind, bool trainable) {
  int64_t size = 1;
  bool too_big = false;
  for (int i = 0; i < shape.rank; i++) {
    if (shape.dim[i] > 0 && size > INT64_MAX / shape.dim[i]) too_big = true;
    else size *= shape.dim[i];
  }
  if (too_big || (weight_budget >= 0 && size > weight_budget)) {
    char buf[128];
    lm__fail(&layer->err, LM_ERROR_MEMORY, "Layer \"%s\": weight %s of shape %s is too large%s", layer->name, name,
             lm_shape_format(shape, buf, sizeof buf), too_big ? "" : " for what is left of the weight limit");
    return NULL;
  }
  if (weight_budget >= 0) weight_budget -= size;
  lm_weight *w = lm__calloc(1, sizeof *w);
  if (!w || lm__grow(&layer->weights, &layer->cap_weights, layer->n_weights + 1, sizeof *layer->weights)) {
    free(w);
    lm__fail(&layer->err, LM_ERROR_MEMORY, "Layer \"%s\": out of memory for weight %s", layer->name, name);
    return NULL;
  }
  w->value = lm_array_new(LM_FLOAT32, shape);
  if (!w->value) {
    free(w);
    lm__fail(&layer->err, LM_ERROR_MEMORY, "Layer \"%s\": cannot allocate weight %s: %s", layer->name, name,
             lm_last_error());
    return NULL;
  }
  snprintf(w->name, sizeof w->name, "%s", name);
  w->trainable = trainable;
  w->owner = layer;
  lm__init_fill(init, default_kind, w->value);
  layer->weights[layer->n_weights++] = w;
  return w;
}

lm_array *lm__weight_array(lm_weight *w) { return w->value; }
bool lm__weight_trainable(const lm_weight *w) { return w->trainable && w->owner->trainable; }

/* Every distinct weight under a layer, in first-seen order. */
typedef struct weight_set {
  lm_weight **w;
  int n, cap;
} weight_set;

static void collect_weights(const lm_layer *layer, weight_set *set) {
  if (layer->model) {
    for (int i = 0; i < layer->model->n_layers; i++) collect_weights(layer->model->layers[i], set);
    return;
  }
  for (int i = 0; i < layer->n_weights; i++) {
    int seen = 0;
    for (int j = 0; j < set->n && !seen; j++) seen = set->w[j] == layer->weights[i];
    if (!seen && !lm__grow(&set->w, &set->cap, set->n + 1, sizeof *set->w)) set->w[set->n++] = layer->weights[i];
  }
}

void lm__layer_visit_weights(const lm_layer *layer, lm_weight_visit visit, void *ctx) {
  if (!layer->model) {
    for (int i = 0; i < layer->n_weights; i++) visit(layer->weights[i], ctx);
    return;
  }
  /* A layer used both directly and inside a nested model (or by two nested models) is
   * listed once, as in Keras's model.weights. */
  weight_set set = {0};
  collect_weights(layer, &set);
  for (int i = 0; i < set.n; i++) visit(set.w[i], ctx);
  free(set.w);
}

/* ---- Calling a layer ---- */

static lm_tensors fail_call(lm_error *err) {
  lm_tensors r = {.n = 1};
  r.t[0] = lm__tensor_error(err);
  return r;
}

lm_tensors lm_call_outputs(lm_layer *layer, lm_tensors inputs) {
  lm_error err = {0};
  if (!layer) {
    lm__fail(&err, LM_ERROR_VALUE, "lm_call: the layer is NULL (%s)", lm_last_error());
    return fail_call(&err);
  }
  if (layer->err.code) return fail_call(&layer->err);
  if (inputs.n < 1 || inputs.n > LM_MAX_TENSORS) {
    lm__fail(&err, LM_ERROR_VALUE, "Layer \"%s\" was called on %d inputs", layer->name, inputs.n);
    return fail_call(&err);
  }
  for (int i = 0; i < inputs.n; i++) {
    if (!inputs.t[i]) {
      lm__fail(&err, LM_ERROR_VALUE, "Layer \"%s\": input %d is NULL", layer->name, i);
      return fail_call(&err);
    }
    if (inputs.t[i]->err.code) return fail_call(&inputs.t[i]->err);
  }
  if (layer->vt->arity && inputs.n != layer->vt->arity) {
    lm__fail(&err, LM_ERROR_VALUE, "Layer \"%s\" (%s) expects %d input(s), but it was called on %d", layer->name,
             layer->vt->class_name, layer->vt->arity, inputs.n);
    return fail_call(&err);
  }
  if (lm__is_input_layer(layer)) {
    lm__fail(&err, LM_ERROR_VALUE, "Layer \"%s\" is an InputLayer and cannot be called", layer->name);
    return fail_call(&err);
  }
  if (layer->model && layer->model->base.err.code) return fail_call(&layer->model->base.err);
  lm_shape shapes[LM_MAX_TENSORS];
  lm_dtype dtypes[LM_MAX_TENSORS];
  for (int i = 0; i < inputs.n; i++) {
    shapes[i] = inputs.t[i]->shape;
    dtypes[i] = inputs.t[i]->dtype;
  }
  if (!layer->built) {
    if (layer->vt->build && layer->vt->build(layer, shapes, dtypes, inputs.n) != LM_OK) {
      lm_error copy = layer->err;
      memset(&layer->err, 0, sizeof layer->err); /* a failed first call leaves the layer usable */
      return fail_call(&copy);
    }
    layer->built = true;
  }

  /* Emitting into a scratch graph checks the call and yields the output shapes: shape rules
   * live in the ops, once. */
  lm_graph *g = lm__graph_new();
  if (!g) return fail_call(&err);
  g->who = layer->name;
  int in[LM_MAX_TENSORS], out[LM_MAX_OP_IO];
  for (int i = 0; i < inputs.n; i++) in[i] = lm__graph_input(g, LM_VALUE_INPUT, dtypes[i], shapes[i]);
  int n_out = layer->vt->emit(layer, g, in, inputs.n, out);
  if (n_out < 0 || g->err.code) {
    if (!g->err.code) lm__fail(&g->err, LM_ERROR_VALUE, "Layer \"%s\" failed", layer->name);
    lm_tensors r = fail_call(&g->err);
    lm__graph_free(g);
    return r;
  }

  lm_node *node = lm__calloc(1, sizeof *node);
  lm_tensors r = {.n = n_out};
  if (!node || lm__grow(&layer->nodes, &layer->cap_nodes, layer->n_nodes + 1, sizeof *layer->nodes)) goto oom;
  node->layer = layer;
  node->index = layer->n_nodes;
  node->inputs = lm__calloc((size_t)inputs.n, sizeof *node->inputs);
  node->outputs = lm__calloc((size_t)n_out, sizeof *node->outputs);
  if (!node->inputs || !node->outputs) goto oom;
  node->n_in = inputs.n;
  node->n_out = n_out;
  for (int i = 0; i < inputs.n; i++) node->inputs[i] = inputs.t[i];
  for (int k = 0; k < n_out; k++) {
    lm_tensor *t = lm__calloc(1, sizeof *t);
    if (!t) goto oom;
    t->shape = g->vals[out[k]].shape;
    t->dtype = g->vals[out[k]].dtype;
    t->node = node;
    t->index = k;
    lm__session_track_tensor(t);
    node->outputs[k] = r.t[k] = t;
  }
  layer->nodes[layer->n_nodes++] = node;
  lm__graph_free(g);
  return r;
oom:
  lm__graph_free(g);
  if (node) {
    free(node->inputs);
    free(node->outputs);
    free(node);
  }
  lm__fail(&err, LM_ERROR_MEMORY, "out of memory calling layer \"%s\"", layer->name);
  return fail_call(&err);
}

lm_tensor *lm_call_n(lm_layer *layer, lm_tensors inputs) { return lm_call_outputs(layer, inputs).t[0]; }

/* ---- Accessors ---- */

lm_shape lm_tensor_shape(const lm_tensor *t) { return t ? t->shape : (lm_shape){0}; }
lm_dtype lm_tensor_dtype(const lm_tensor *t) { return t ? t->dtype : LM_FLOAT32; }
const char *lm_tensor_name(const lm_tensor *t) { return t && t->node ? t->node->layer->name : ""; }
lm_status lm_tensor_status(const lm_tensor *t) { return t ? t->err.code : LM_ERROR_VALUE; }
const char *lm_tensor_error(const lm_tensor *t) { return t ? t->err.msg : "NULL tensor"; }
const char *lm_layer_name(const lm_layer *layer) { return layer ? layer->name : ""; }
const char *lm_layer_class(const lm_layer *layer) { return layer ? layer->vt->class_name : ""; }
lm_status lm_layer_status(const lm_layer *layer) { return layer ? layer->err.code : LM_ERROR_VALUE; }
const char *lm_layer_error(const lm_layer *layer) { return layer ? layer->err.msg : "NULL layer"; }

static void count_weight(lm_weight *w, void *ctx) { *(int64_t *)ctx += w->value->size; }

int64_t lm_layer_count_params(const lm_layer *layer) {
  int64_t n = 0;
  if (layer) lm__layer_visit_weights(layer, count_weight, &n);
  return n;
}

void lm_layer_set_trainable(lm_layer *layer, bool trainable) {
  if (!layer) return;
  layer->trainable = trainable;
  if (layer->model)
    for (int i = 0; i < layer->model->n_layers; i++) lm_layer_set_trainable(layer->model->layers[i], trainable);
}

lm_tensor *lm_layer_output(const lm_layer *layer, int node, int k) {
  if (!layer || node < 0 || node >= layer->n_nodes || k < 0 || k >= layer->nodes[node]->n_out) return NULL;
  return layer->nodes[node]->outputs[k];
}

lm_array *lm_layer_weight(const lm_layer *layer, int index, const char **name) {
  if (!layer || index < 0 || index >= layer->n_weights) return NULL;
  if (name) *name = layer->weights[index]->name;
  return layer->weights[index]->value;
}
