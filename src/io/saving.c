/* Saving and loading in Keras's files: Keras 3's .weights.h5 and .keras, and the legacy .h5.
 *
 * Keras 3 names each saveable object by where Keras's saving walk finds it, not by its
 * name: model.layers is a list, so layers get their class in snake case, made unique in
 * that list (layers/dense, layers/dense_1, ...); a nested model's layers sit under its own
 * group, an RNN layer keeps its weights in its cell (layers/lstm/cell/vars), Bidirectional
 * in forward_layer/cell and backward_layer/cell, and the optimizer in optimizer/vars:
 * iteration, learning_rate, then its slots in the order of model.trainable_variables. The
 * legacy format names layers by name and matches them by position among those that have
 * weights.
 *
 * Loads are all or nothing: every value is read and checked into a staging area first, and
 * only copied into the model (and the optimizer) once the whole file has been read. */
#include "io/h5.h"
#include "io/json.h"
#include "io/model_config.h"
#include "io/zip.h"
#include "train/train.h"
#include <lamina/saving.h>
#include <math.h>
#include <time.h>

/* The Keras release whose formats these are: written as keras_version. */
#define KERAS_VERSION "3.15.1"
#define MAX_ENTRY_WEIGHTS 16
#define MAX_CONFIG_BYTES ((size_t)64 << 20)

/* ---- Names ---- */

/* snprintf into a fixed buffer of HDF5 paths and names, checked: 0, or -1 with an error that
 * names the start of what did not fit (a layer name nested too deep, say) and the limit;
 * the file layout is never built from a silently shortened name. */
static _Thread_local bool too_long; /* set by fit, taken by layout_failed */
static int fit(char *out, size_t cap, const char *fmt, ...) LM_PRINTF(3, 4);
static int fit(char *out, size_t cap, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(out, cap, fmt, ap);
  va_end(ap);
  if (n >= 0 && (size_t)n < cap) return 0;
  too_long = true;
  lm__fail(NULL, LM_ERROR_VALUE, "saving: the HDF5 path or name \"%.96s...\" is %d bytes, more than the %zu this layout allows",
           out, n, cap - 1);
  return -1;
}

/* The error of a layout that could not be built, for the file `what`: the path that did
 * not fit, or memory. */
static lm_status layout_failed(const char *what) {
  if (!too_long) return lm__fail(NULL, LM_ERROR_MEMORY, "%s: out of memory", what);
  too_long = false;
  char msg[512];
  snprintf(msg, sizeof msg, "%s", lm_last_error());
  return lm__fail(NULL, LM_ERROR_VALUE, "%s: %s", what, msg);
}

/* keras.src.utils.naming.to_snake_case: drop non-word characters, "_" before each
 * capitalized word that follows a character, "_" between a lowercase letter and a
 * capital, then lowercase ("SeparableConv2D" -> "separable_conv2d", "RMSprop" ->
 * "rm_sprop"). */
static void snake_case(const char *in, char *out, size_t cap) {
  char a[256], b[320];
  size_t n = 0, m = 0;
  for (const char *p = in; *p && n + 1 < sizeof a; p++)
    if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '_') a[n++] = *p;
  a[n] = 0;
#define UP(c) ((c) >= 'A' && (c) <= 'Z')
#define LO(c) ((c) >= 'a' && (c) <= 'z')
  for (size_t i = 0; i < n && m + 2 < sizeof b;) { /* (.)([A-Z][a-z]+) -> \1_\2, left to right */
    if (i + 2 < n && UP(a[i + 1]) && LO(a[i + 2])) {
      size_t end = i + 2;
      while (end < n && LO(a[end])) end++;
      b[m++] = a[i];
      b[m++] = '_';
      for (size_t k = i + 1; k < end && m + 1 < sizeof b; k++) b[m++] = a[k];
      i = end;
    } else b[m++] = a[i++];
  }
  b[m] = 0;
  size_t o = 0;
  for (size_t i = 0; i < m && o + 2 < cap; i++) { /* ([a-z])([A-Z]) -> \1_\2, then lower */
    char c = b[i];
    out[o++] = UP(c) ? (char)(c - 'A' + 'a') : c;
    if (LO(c) && i + 1 < m && UP(b[i + 1])) out[o++] = '_';
  }
  out[o] = 0;
#undef UP
#undef LO
}

/* naming.get_unique_name within one container: dense, dense_1, dense_2 ... */
typedef struct unique_names {
  char (*name)[128];
  int *count;
  int n, cap, cap2;
} unique_names;

static int unique_name(unique_names *u, const char *base, char *out, size_t cap) {
  for (int i = 0; i < u->n; i++)
    if (!strcmp(u->name[i], base)) {
      return fit(out, cap, "%s_%d", base, ++u->count[i]);
    }
  if (lm__grow(&u->name, &u->cap, u->n + 1, sizeof *u->name) || lm__grow(&u->count, &u->cap2, u->n + 1, sizeof *u->count))
    return -1;
  if (fit(u->name[u->n], sizeof u->name[0], "%s", base)) return -1;
  u->count[u->n++] = 0;
  return fit(out, cap, "%s", base);
}

static void unique_free(unique_names *u) {
  free(u->name);
  free(u->count);
}

static bool is_rnn(const lm_layer *l) {
  const char *c = l->vt->class_name;
  return !strcmp(c, "LSTM") || !strcmp(c, "GRU") || !strcmp(c, "SimpleRNN");
}

static bool is_bidirectional(const lm_layer *l) { return !strcmp(l->vt->class_name, "Bidirectional"); }

/* Keras's RNN cells: LSTMCell is named lstm_cell, and so on. */
static const char *cell_name(const char *cls) {
  return !strcmp(cls, "LSTM") ? "lstm_cell" : !strcmp(cls, "GRU") ? "gru_cell" : "simple_rnn_cell";
}

/* A Bidirectional's half (kernel, recurrent_kernel, bias): the cell from the gate count. */
static const char *bidi_cell(lm_weight *const *w) {
  int64_t units = w[1]->value->shape.dim[0], cols = w[1]->value->shape.dim[1];
  return cols == 4 * units ? "lstm_cell" : cols == 3 * units ? "gru_cell" : "simple_rnn_cell";
}

/* ---- The optimizer, as Keras names its variables ---- */
static const char *opt_class(const lm_optimizer *o) { return lm__optimizer_name(o); }

static void opt_snake(const lm_optimizer *o, char *out, size_t cap) { snake_case(opt_class(o), out, cap); }

static const char *slot_name(const lm_optimizer *o, int s) {
  switch (o->kind) {
  case LM_OPT_SGD: return "momentum";
  case LM_OPT_RMSPROP: return "velocity";
  case LM_OPT_ADAM:
  case LM_OPT_ADAMW: return s == 0 ? "momentum" : "velocity";
  case LM_OPT_ADAGRAD: return "accumulator";
  }
  return "slot";
}

static const lm_optimizer *model_optimizer(const lm_model *m) {
  return m->compiled && m->compiled->opt ? m->compiled->opt : NULL;
}

/* ---- Every weight of a model, in Keras's order, with its variable path ---- */

typedef struct wref {
  lm_weight *w;
  const lm_layer *layer; /* the layer that lists it */
  char path[512];        /* Keras's variable.path: "dense/kernel", "lstm/lstm_cell/bias" */
} wref;

typedef struct wlist {
  wref *v;
  int n, cap;
} wlist;

/* A layer's own weights in Keras's order: created trainable first, then the others. */
static int own_weights(const lm_layer *l, lm_weight **out) {
  int n = 0;
  for (int pass = 0; pass < 2; pass++)
    for (int i = 0; i < l->n_weights && n < MAX_ENTRY_WEIGHTS; i++)
      if (l->weights[i]->trainable == (pass == 0)) out[n++] = l->weights[i];
  return n;
}

static int weight_path(const lm_layer *l, const lm_weight *w, const char *scope, char *out, size_t cap) {
  if (is_rnn(l)) return fit(out, cap, "%s%s/%s/%s", scope, l->name, cell_name(l->vt->class_name), w->name);
  else if (is_bidirectional(l)) {
    /* lamina names them "forward_lstm/kernel"; Keras's path has the cell in between */
    const char *slash = strchr(w->name, '/');
    int half = (int)(slash ? slash - w->name : 0);
    lm_weight *const *group = l->weights;
    for (int i = 0; i < l->n_weights; i++)
      if (l->weights[i] == w) group = l->weights + (i < l->n_weights / 2 ? 0 : l->n_weights / 2);
    const char *cell = l->n_weights == 6 ? bidi_cell(group) : "cell";
    return fit(out, cap, "%s%s/%.*s/%s/%s", scope, l->name, half, w->name, cell, slash ? slash + 1 : w->name);
  }
  return fit(out, cap, "%s%s/%s", scope, l->name, w->name);
}

/* Layers built inside a Sequential have its name as their scope; a Functional model's
 * layers are built where the user called them, with none. */
static int collect(const lm_model *m, const char *scope, wlist *out) {
  for (int i = 0; i < m->n_layers; i++) {
    const lm_layer *l = m->layers[i];
    if (l->model) {
      char sub[160] = "";
      if (l->model->sequential && fit(sub, sizeof sub, "%s/", l->name)) return -1;
      if (collect(l->model, sub, out)) return -1;
      continue;
    }
    lm_weight *ws[MAX_ENTRY_WEIGHTS];
    int n = own_weights(l, ws);
    for (int k = 0; k < n; k++) {
      bool seen = false;
      for (int j = 0; j < out->n && !seen; j++) seen = out->v[j].w == ws[k];
      if (seen) continue;
      if (lm__grow(&out->v, &out->cap, out->n + 1, sizeof *out->v)) return -1;
      wref *r = &out->v[out->n++];
      r->w = ws[k];
      r->layer = l;
      if (weight_path(l, ws[k], scope, r->path, sizeof r->path)) return -1;
    }
  }
  return 0;
}

static int model_weights(const lm_model *m, wlist *out) {
  memset(out, 0, sizeof *out);
  char scope[160] = "";
  if ((m->sequential && fit(scope, sizeof scope, "%s/", m->base.name)) || collect(m, scope, out)) {
    free(out->v);
    memset(out, 0, sizeof *out);
    return -1;
  }
  return 0;
}

/* model.trainable_variables: the optimizer's order. */
static int trainable_weights(const wlist *all, wref **out) {
  int n = 0;
  *out = lm__calloc((size_t)all->n + 1, sizeof **out);
  if (!*out) return -1;
  for (int i = 0; i < all->n; i++)
    if (lm__weight_trainable(all->v[i].w)) (*out)[n++] = all->v[i];
  return n;
}

/* ---- Keras 3's layout: one entry per saveable that Keras's walk visits ---- */

typedef struct entry {
  char path[640]; /* the vars group: "layers/lstm/cell/vars" */
  char name[160]; /* its name attribute */
  const lm_layer *layer;
  lm_weight *w[MAX_ENTRY_WEIGHTS];
  int n;
} entry;

typedef struct layout {
  entry *e;
  int n, cap;
  const lm_layer **visited;
  int n_visited, cap_visited;
} layout;

static entry *add_entry(layout *lo, const char *group, const char *name, const lm_layer *layer) {
  if (lm__grow(&lo->e, &lo->cap, lo->n + 1, sizeof *lo->e)) return NULL;
  entry *e = &lo->e[lo->n++];
  memset(e, 0, sizeof *e);
  if (fit(e->path, sizeof e->path, "%s%svars", group, *group ? "/" : "") || fit(e->name, sizeof e->name, "%s", name))
    return NULL;
  e->layer = layer;
  return e;
}

static int walk_model(layout *lo, const lm_model *m, const char *group);

static int walk_layer(layout *lo, const lm_layer *l, const char *group) {
  for (int i = 0; i < lo->n_visited; i++)
    if (lo->visited[i] == l) return 0; /* Keras saves a shared object once, where first met */
  if (lm__grow(&lo->visited, &lo->cap_visited, lo->n_visited + 1, sizeof *lo->visited)) return -1;
  lo->visited[lo->n_visited++] = l;
  if (l->model) return walk_model(lo, l->model, group);
  entry *e = add_entry(lo, group, l->name, l);
  if (!e) return -1;
  char sub[640];
  if (is_rnn(l)) {
    if (fit(sub, sizeof sub, "%s/cell", group) || !(e = add_entry(lo, sub, cell_name(l->vt->class_name), l))) return -1;
    e->n = own_weights(l, e->w);
  } else if (is_bidirectional(l) && l->n_weights % 2 == 0) {
    int half = l->n_weights / 2;
    for (int k = 0; k < 2; k++) {
      lm_weight *const *w = l->weights + k * half;
      const char *slash = half ? strchr(w[0]->name, '/') : NULL;
      char inner[160];
      snprintf(inner, sizeof inner, "%.*s", slash ? (int)(slash - w[0]->name) : 0, w[0]->name);
      if (fit(sub, sizeof sub, "%s/%s", group, k ? "backward_layer" : "forward_layer") || !add_entry(lo, sub, inner, l))
        return -1;
      if (fit(sub, sizeof sub, "%s/%s/cell", group, k ? "backward_layer" : "forward_layer") ||
          !(e = add_entry(lo, sub, half == 3 ? bidi_cell(w) : "cell", l)))
        return -1;
      for (int i = 0; i < half && i < MAX_ENTRY_WEIGHTS; i++) e->w[e->n++] = w[i];
    }
  } else e->n = own_weights(l, e->w);
  if (l->n_weights > MAX_ENTRY_WEIGHTS)
    return lm__fail(NULL, LM_ERROR_VALUE, "layer \"%s\" has %d weights, more than saving supports", l->name, l->n_weights),
           -1;
  return 0;
}

static int walk_model(layout *lo, const lm_model *m, const char *group) {
  if (!add_entry(lo, group, m->base.name, &m->base)) return -1;
  unique_names u = {0};
  int rc = 0;
  for (int i = 0; i < m->n_layers && !rc; i++) {
    char snake[160], uniq[200], sub[640];
    snake_case(m->layers[i]->vt->class_name, snake, sizeof snake);
    if (unique_name(&u, snake, uniq, sizeof uniq)) rc = -1;
    else rc = fit(sub, sizeof sub, "%s%slayers/%s", group, *group ? "/" : "", uniq) ? -1 : walk_layer(lo, m->layers[i], sub);
  }
  unique_free(&u);
  return rc;
}

static void layout_free(layout *lo) {
  free(lo->e);
  free(lo->visited);
  memset(lo, 0, sizeof *lo);
}

static int make_layout(const lm_model *m, layout *lo) {
  memset(lo, 0, sizeof *lo);
  if (walk_model(lo, m, "")) {
    layout_free(lo);
    return -1;
  }
  return 0;
}

/* ---- Writing Keras 3's weights file ---- */

static lm_status write_optimizer_k3(lm_h5 *h, const lm_model *m, const wlist *all) {
  const lm_optimizer *o = model_optimizer(m);
  if (!o) return LM_OK;
  lm_compiled *c = m->compiled;
  char name[64], path[64];
  opt_snake(o, name, sizeof name);
  lm_status st = lm__h5_make_group(h, "optimizer/vars");
  if (!st) st = lm__h5_set_attr_str(h, "optimizer/vars", "name", name, true);
  if (!st) st = lm__h5_write_i32_scalar(h, "optimizer/vars/0", (int32_t)(o->iterations > INT32_MAX ? INT32_MAX : o->iterations));
  float lr = (float)o->learning_rate;
  if (!st) st = lm__h5_write_f32(h, "optimizer/vars/1", (lm_shape){0}, &lr);
  wref *tw;
  int nt = trainable_weights(all, &tw);
  if (nt < 0) return LM_ERROR_MEMORY;
  int var = 2;
  for (int k = 0; k < nt && !st; k++) {
    float **slots = lm__compiled_slots(c, tw[k].w);
    if (!slots) {
      st = LM_ERROR_MEMORY;
      break;
    }
    for (int s = 0; s < c->n_slots && !st; s++) {
      snprintf(path, sizeof path, "optimizer/vars/%d", var++);
      st = lm__h5_write_f32(h, path, tw[k].w->value->shape, slots[s]);
    }
  }
  free(tw);
  return st;
}

static lm_status write_k3(lm_h5 *h, const lm_model *m) {
  layout lo;
  wlist all;
  if (make_layout(m, &lo)) return layout_failed(h->what);
  if (model_weights(m, &all)) {
    layout_free(&lo);
    return layout_failed(h->what);
  }
  lm_status st = LM_OK;
  for (int i = 0; i < lo.n && !st; i++) {
    entry *e = &lo.e[i];
    st = lm__h5_make_group(h, e->path);
    if (!st) st = lm__h5_set_attr_str(h, e->path, "name", e->name, true);
    for (int k = 0; k < e->n && !st; k++) {
      char path[700];
      snprintf(path, sizeof path, "%s/%d", e->path, k);
      st = lm__h5_write_f32(h, path, e->w[k]->value->shape, lm_array_f32(e->w[k]->value));
    }
  }
  if (!st) st = write_optimizer_k3(h, m, &all);
  layout_free(&lo);
  free(all.v);
  return st;
}

/* ---- Writing the legacy layout ---- */

/* _legacy_weights(layer): trainable_weights + non_trainable_weights. */
static int legacy_weights(const lm_layer *l, const wlist *all, wref **out) {
  int n = 0;
  wlist sub = {0}; /* a nested model: the weights of its layers */
  *out = lm__calloc((size_t)all->n + 1, sizeof **out);
  if (!*out || (l->model && model_weights(l->model, &sub))) {
    free(*out);
    *out = NULL;
    return -1;
  }
  for (int pass = 0; pass < 2; pass++)
    for (int i = 0; i < all->n; i++) {
      bool under = all->v[i].layer == l;
      for (int j = 0; j < sub.n && !under; j++) under = sub.v[j].w == all->v[i].w;
      if (under && lm__weight_trainable(all->v[i].w) == (pass == 0)) (*out)[n++] = all->v[i];
    }
  free(sub.v);
  return n;
}

static bool bad_h5_name(const char *s) { return !*s || strchr(s, '/') || !strcmp(s, ".") || !strcmp(s, ".."); }

static lm_status write_legacy_weights(lm_h5 *h, const lm_model *m, const char *group) {
  wlist all;
  if (model_weights(m, &all)) return layout_failed(h->what);
  /* A nested model's weights carry their paths within it; collect gives the top model's. */
  const char **names = lm__calloc((size_t)m->n_layers + 1, sizeof *names);
  lm_status st = names ? LM_OK : LM_ERROR_MEMORY;
  for (int i = 0; i < m->n_layers && !st; i++) {
    names[i] = m->layers[i]->name;
    if (bad_h5_name(names[i]))
      st = lm__fail(NULL, LM_ERROR_NAME, "%s: layer name \"%s\" cannot name an HDF5 group in the legacy format", h->what,
                    names[i]);
  }
  if (!st) st = lm__h5_make_group(h, group);
  if (!st) st = lm__h5_set_attr_strs(h, group, "layer_names", names, m->n_layers);
  if (!st) st = lm__h5_set_attr_str(h, group, "backend", "jax", true);
  if (!st) st = lm__h5_set_attr_str(h, group, "keras_version", KERAS_VERSION, true);
  for (int i = 0; i < m->n_layers && !st; i++) {
    const lm_layer *l = m->layers[i];
    wref *ws;
    int n = legacy_weights(l, &all, &ws);
    if (n < 0) {
      st = LM_ERROR_MEMORY;
      break;
    }
    char g[400];
    snprintf(g, sizeof g, "%s/%s", group, l->name);
    const char **wn = lm__calloc((size_t)n + 1, sizeof *wn);
    if (!wn) st = LM_ERROR_MEMORY;
    for (int k = 0; k < n && !st; k++) wn[k] = ws[k].path;
    if (!st) st = lm__h5_make_group(h, g);
    if (!st) st = lm__h5_set_attr_strs(h, g, "weight_names", wn, n);
    for (int k = 0; k < n && !st; k++) {
      char path[1000];
      snprintf(path, sizeof path, "%s/%s", g, ws[k].path);
      st = lm__h5_write_f32(h, path, ws[k].w->value->shape, lm_array_f32(ws[k].w->value));
    }
    free(wn);
    free(ws);
  }
  if (!st) { /* Keras 3 adds the model's own weights, of which lamina's models have none */
    char g[400];
    snprintf(g, sizeof g, "%s/top_level_model_weights", group);
    st = lm__h5_make_group(h, g);
    if (!st) st = lm__h5_set_attr_strs(h, g, "weight_names", NULL, 0);
  }
  free(names);
  free(all.v);
  return st;
}

static lm_status write_legacy_optimizer(lm_h5 *h, const lm_model *m) {
  const lm_optimizer *o = model_optimizer(m);
  if (!o) return LM_OK;
  lm_compiled *c = m->compiled;
  wlist all;
  wref *tw = NULL;
  int nt = model_weights(m, &all) ? -1 : trainable_weights(&all, &tw);
  if (nt < 0) {
    free(all.v);
    return layout_failed(h->what);
  }
  int nv = 2 + nt * c->n_slots;
  char(*names)[600] = lm__calloc((size_t)nv, sizeof *names);
  const char **ptrs = lm__calloc((size_t)nv, sizeof *ptrs);
  char opt[64];
  opt_snake(o, opt, sizeof opt);
  lm_status st = names && ptrs ? LM_OK : LM_ERROR_MEMORY;
  for (int k = 0; k < nt && !st; k++)
    for (int s = 0; s < c->n_slots; s++) {
      char flat[520];
      snprintf(flat, sizeof flat, "%s", tw[k].path);
      for (char *p = flat; *p; p++)
        if (*p == '/') *p = '_';
      snprintf(names[2 + k * c->n_slots + s], sizeof names[0], "%s/%s_%s", opt, flat, slot_name(o, s));
    }
  if (!st) {
    snprintf(names[0], sizeof names[0], "%s/iteration", opt);
    snprintf(names[1], sizeof names[1], "%s/learning_rate", opt);
    for (int i = 0; i < nv; i++) ptrs[i] = names[i];
    st = lm__h5_make_group(h, "optimizer_weights");
  }
  if (!st) st = lm__h5_set_attr_strs(h, "optimizer_weights", "weight_names", ptrs, nv);
  char path[700];
  if (!st) {
    snprintf(path, sizeof path, "optimizer_weights/%s", names[0]);
    st = lm__h5_write_i32_scalar(h, path, (int32_t)(o->iterations > INT32_MAX ? INT32_MAX : o->iterations));
  }
  if (!st) {
    float lr = (float)o->learning_rate;
    snprintf(path, sizeof path, "optimizer_weights/%s", names[1]);
    st = lm__h5_write_f32(h, path, (lm_shape){0}, &lr);
  }
  for (int k = 0; k < nt && !st; k++) {
    float **slots = lm__compiled_slots(c, tw[k].w);
    if (!slots) st = LM_ERROR_MEMORY;
    for (int s = 0; s < c->n_slots && !st; s++) {
      snprintf(path, sizeof path, "optimizer_weights/%s", names[2 + k * c->n_slots + s]);
      st = lm__h5_write_f32(h, path, tw[k].w->value->shape, slots[s]);
    }
  }
  free(names);
  free(ptrs);
  free(tw);
  free(all.v);
  return st;
}

/* ---- Loading: staging ---- */

typedef struct staged {
  lm_weight *w;
  float *data;
} staged;

typedef struct stage {
  staged *v;
  int n, cap;
  /* the optimizer's state, when the file has it and it fits */
  bool has_opt;
  int64_t iterations;
  double learning_rate;
  wref *tw; /* trainable weights, Keras's order */
  int nt;
  float **slots; /* [nt * n_slots] */
} stage;

static void stage_free(stage *s) {
  for (int i = 0; i < s->n; i++) free(s->v[i].data);
  free(s->v);
  if (s->slots)
    for (int i = 0; s->tw && i < s->nt * 4; i++) free(s->slots[i]);
  free(s->slots);
  free(s->tw);
  memset(s, 0, sizeof *s);
}

static void shape_text(lm_shape s, char *buf, size_t len) {
  size_t at = (size_t)snprintf(buf, len, "(");
  for (int i = 0; i < s.rank && at < len; i++)
    at += (size_t)snprintf(buf + at, len - at, "%s%lld", i ? ", " : "", (long long)s.dim[i]);
  if (at < len) snprintf(buf + at, len - at, "%s)", s.rank == 1 ? "," : "");
}

/* Reads dataset path into a new buffer after checking its shape against want. */
static lm_status read_checked(lm_h5 *h, const char *path, lm_shape want, const char *layer, const char *cls,
                              const char *weight, float **out) {
  *out = NULL;
  lm_shape got;
  lm_status st = lm__h5_dataset_shape(h, path, &got);
  if (st) return st;
  if (!lm__shape_equal(got, want)) {
    char a[160], b[160];
    shape_text(want, a, sizeof a);
    shape_text(got, b, sizeof b);
    return lm__fail(NULL, LM_ERROR_SHAPE, "%s: layer \"%s\" (%s): weight %s has shape %s in the model but %s in the file (%s)",
                    h->what, layer, cls, weight, a, b, path);
  }
  int64_t n = lm_shape_size(want);
  float *buf = lm__alloc_floats(n > 0 ? n : 1);
  if (!buf) return LM_ERROR_MEMORY;
  if ((st = lm__h5_read_f32(h, path, buf, n))) {
    free(buf);
    return st;
  }
  *out = buf;
  return LM_OK;
}

static lm_status stage_weight(stage *s, lm_weight *w, float *data) {
  if (lm__grow(&s->v, &s->cap, s->n + 1, sizeof *s->v)) {
    free(data);
    return LM_ERROR_MEMORY;
  }
  s->v[s->n++] = (staged){w, data};
  return LM_OK;
}

static void stage_commit(stage *s, lm_model *m) {
  for (int i = 0; i < s->n; i++)
    memcpy(lm_array_f32(s->v[i].w->value), s->v[i].data, (size_t)s->v[i].w->value->size * sizeof(float));
  if (!s->has_opt) return;
  lm_compiled *c = m->compiled;
  lm_optimizer *o = c->opt;
  o->iterations = s->iterations;
  /* The file holds the rate as float32: keep the model's own double when it rounds to
   * the same float, so that training resumes bit for bit. */
  if ((float)o->learning_rate != (float)s->learning_rate) o->learning_rate = s->learning_rate;
  for (int k = 0; k < s->nt; k++) {
    float **slots = lm__compiled_slots(c, s->tw[k].w); /* made by stage_slots_ready */
    for (int j = 0; slots && j < c->n_slots; j++)
      memcpy(slots[j], s->slots[k * c->n_slots + j], (size_t)s->tw[k].w->value->size * sizeof(float));
  }
}

/* Prepares the optimizer part of the stage: the trainable weights and room for slots. */
static lm_status stage_optimizer(stage *s, const lm_model *m) {
  wlist all;
  if (model_weights(m, &all)) return LM_ERROR_MEMORY;
  s->nt = trainable_weights(&all, &s->tw);
  free(all.v);
  if (s->nt < 0) return LM_ERROR_MEMORY;
  s->slots = lm__calloc((size_t)(s->nt * 4 + 1), sizeof *s->slots); /* freed over nt * 4 entries */
  if (!s->slots) return LM_ERROR_MEMORY;
  /* Slots exist before commit, so that commit cannot fail half-way for want of memory. */
  for (int k = 0; k < s->nt; k++)
    if (!lm__compiled_slots(m->compiled, s->tw[k].w)) return LM_ERROR_MEMORY;
  return LM_OK;
}

/* ---- Loading Keras 3's weights ---- */

/* Keras's H5IOStore.get: the path, or for files of Keras 2.13's era the same path with
 * "layers" spelled "_layer_checkpoint_dependencies". */
static bool find_group(lm_h5 *h, const char *path, char *out, size_t cap, lm_status *st) {
  *st = LM_OK;
  lm_h5_kind k = lm__h5_kind(h, path);
  if (k == LM_H5_OTHER) return *st = LM_ERROR_IO, false;
  if (k == LM_H5_GROUP) {
    snprintf(out, cap, "%s", path);
    return true;
  }
  if (lm__h5_kind(h, "_layer_checkpoint_dependencies") != LM_H5_GROUP) return false;
  size_t at = 0;
  for (const char *p = path; *p && at + 1 < cap;) {
    if (!strncmp(p, "layers", 6)) {
      at += (size_t)snprintf(out + at, cap - at, "_layer_checkpoint_dependencies");
      p += 6;
    } else out[at++] = *p++;
  }
  out[at < cap ? at : cap - 1] = 0;
  k = lm__h5_kind(h, out);
  if (k == LM_H5_OTHER) return *st = LM_ERROR_IO, false;
  return k == LM_H5_GROUP;
}

static void list_weights(const entry *e, char *buf, size_t len) {
  size_t at = 0;
  buf[0] = 0;
  for (int k = 0; k < e->n && at < len; k++) {
    char s[96];
    shape_text(e->w[k]->value->shape, s, sizeof s);
    at += (size_t)snprintf(buf + at, len - at, "%s%s %s", k ? ", " : "", e->w[k]->name, s);
  }
}

static lm_status stage_optimizer_k3(lm_h5 *h, const lm_model *m, stage *s) {
  const lm_optimizer *o = model_optimizer(m);
  if (!o) return LM_OK;
  char group[64];
  lm_status st;
  if (!find_group(h, "optimizer/vars", group, sizeof group, &st)) return st;
  int64_t have = lm__h5_n_children(h, group);
  if (have < 0) return LM_ERROR_IO;
  if ((st = stage_optimizer(s, m))) return st;
  int n_slots = m->compiled->n_slots;
  /* As Keras: an optimizer with another number of variables (another kind, or one saved
   * before it was built) is skipped, and this one keeps its state. */
  if (have != 2 + (int64_t)s->nt * n_slots) return LM_OK;
  char path[128];
  double v;
  snprintf(path, sizeof path, "%s/0", group);
  if ((st = lm__h5_read_scalar(h, path, &v))) return st;
  if (!(v >= 0 && v < 9e15)) return lm__fail(NULL, LM_ERROR_IO, "%s: %s: invalid iteration count %g", h->what, path, v);
  s->iterations = (int64_t)v;
  snprintf(path, sizeof path, "%s/1", group);
  if ((st = lm__h5_read_scalar(h, path, &v))) return st;
  if (!(v >= 0) || isinf(v)) return lm__fail(NULL, LM_ERROR_IO, "%s: %s: invalid learning rate %g", h->what, path, v);
  s->learning_rate = v;
  for (int k = 0; k < s->nt; k++)
    for (int j = 0; j < n_slots; j++) {
      snprintf(path, sizeof path, "%s/%d", group, 2 + k * n_slots + j);
      char what[700];
      snprintf(what, sizeof what, "%s's optimizer %s", s->tw[k].w->name, slot_name(o, j));
      if ((st = read_checked(h, path, s->tw[k].w->value->shape, s->tw[k].layer->name, s->tw[k].layer->vt->class_name, what,
                             &s->slots[k * n_slots + j])))
        return st;
    }
  s->has_opt = true;
  return LM_OK;
}

static lm_status stage_k3(lm_h5 *h, lm_model *m, stage *s) {
  layout lo;
  if (make_layout(m, &lo)) return layout_failed(h->what);
  lm_status st = LM_OK;
  for (int i = 0; i < lo.n && !st; i++) {
    entry *e = &lo.e[i];
    char group[700], have_list[600];
    if (!find_group(h, e->path, group, sizeof group, &st)) {
      if (!st && e->n) {
        list_weights(e, have_list, sizeof have_list);
        st = lm__fail(NULL, LM_ERROR_IO, "%s: no weights for layer \"%s\" (%s), which expects %d [%s] at %s", h->what,
                      e->layer->name, e->layer->vt->class_name, e->n, have_list, e->path);
      }
      continue;
    }
    int64_t have = lm__h5_n_children(h, group);
    if (have < 0) st = LM_ERROR_IO;
    else if (have != e->n) {
      list_weights(e, have_list, sizeof have_list);
      st = lm__fail(NULL, LM_ERROR_IO, "%s: layer \"%s\" (%s) expects %d weight(s) [%s], but the file holds %lld at %s",
                    h->what, e->layer->name, e->layer->vt->class_name, e->n, have_list, (long long)have, group);
    }
    for (int k = 0; k < e->n && !st; k++) {
      char path[720];
      float *data;
      snprintf(path, sizeof path, "%s/%d", group, k);
      if (!(st = read_checked(h, path, e->w[k]->value->shape, e->layer->name, e->layer->vt->class_name, e->w[k]->name, &data)))
        st = stage_weight(s, e->w[k], data);
    }
  }
  layout_free(&lo);
  if (!st) st = stage_optimizer_k3(h, m, s);
  return st;
}

/* ---- Loading legacy weights ---- */

/* load_attributes_from_hdf5_group: name, or name0, name1 ... when Keras split it. */
static lm_status read_name_list(lm_h5 *h, const char *obj, const char *name, char ***out, int *n) {
  *out = NULL;
  *n = 0;
  if (lm__h5_has_attr(h, obj, name)) return lm__h5_get_attr_strs(h, obj, name, out, n);
  for (int chunk = 0;; chunk++) {
    char key[128];
    snprintf(key, sizeof key, "%s%d", name, chunk);
    if (!lm__h5_has_attr(h, obj, key)) return LM_OK;
    char **part;
    int np;
    lm_status st = lm__h5_get_attr_strs(h, obj, key, &part, &np);
    char **all = st ? NULL : lm__realloc(*out, (size_t)(*n + np + 1) * sizeof *all);
    if (!all) {
      lm__h5_free_strs(part, np);
      lm__h5_free_strs(*out, *n);
      *out = NULL, *n = 0;
      return st ? st : LM_ERROR_MEMORY;
    }
    memcpy(all + *n, part, (size_t)np * sizeof *part);
    free(part);
    *out = all;
    *n += np;
  }
}

static lm_status stage_legacy(lm_h5 *h, lm_model *m, const char *group, stage *s) {
  wlist all;
  if (model_weights(m, &all)) return layout_failed(h->what);
  /* The model's layers that have weights, and the file's. */
  const lm_layer **layers = lm__calloc((size_t)m->n_layers + 1, sizeof *layers);
  char **names = NULL, **kept = NULL;
  int n_layers = 0, n_names = 0, n_kept = 0;
  lm_status st = layers ? LM_OK : LM_ERROR_MEMORY;
  for (int i = 0; i < m->n_layers && !st; i++) {
    wref *ws;
    int n = legacy_weights(m->layers[i], &all, &ws);
    if (n < 0) st = LM_ERROR_MEMORY;
    else if (n > 0) layers[n_layers++] = m->layers[i];
    free(ws);
  }
  if (!st) st = read_name_list(h, group, "layer_names", &names, &n_names);
  if (!st && !(kept = lm__calloc((size_t)n_names + 1, sizeof *kept))) st = LM_ERROR_MEMORY;
  for (int i = 0; i < n_names && !st; i++) {
    char g[1200];
    if (bad_h5_name(names[i])) {
      st = lm__fail(NULL, LM_ERROR_IO, "%s: invalid layer name \"%s\" in layer_names", h->what, names[i]);
      break;
    }
    snprintf(g, sizeof g, "%s%s%s", group, *group ? "/" : "", names[i]);
    if (lm__h5_kind(h, g) != LM_H5_GROUP) {
      st = lm__fail(NULL, LM_ERROR_IO, "%s: layer_names lists \"%s\", but there is no group %s", h->what, names[i], g);
      break;
    }
    char **wn;
    int nw;
    if ((st = read_name_list(h, g, "weight_names", &wn, &nw))) break;
    lm__h5_free_strs(wn, nw);
    if (nw > 0) kept[n_kept++] = names[i];
  }
  if (!st && n_kept != n_layers)
    st = lm__fail(NULL, LM_ERROR_IO,
                  "%s: layer count mismatch: the model has %d layers with weights, the file has %d saved layers", h->what,
                  n_layers, n_kept);
  for (int k = 0; k < n_layers && !st; k++) {
    const lm_layer *l = layers[k];
    wref *ws;
    int n = legacy_weights(l, &all, &ws);
    char g[1200], **wn = NULL;
    int nw = 0;
    snprintf(g, sizeof g, "%s%s%s", group, *group ? "/" : "", kept[k]);
    if (n < 0) st = LM_ERROR_MEMORY;
    else st = read_name_list(h, g, "weight_names", &wn, &nw);
    if (!st && nw != n)
      st = lm__fail(NULL, LM_ERROR_IO,
                    "%s: weight count mismatch for layer #%d (named \"%s\" in the model, \"%s\" in the file): the layer "
                    "expects %d weight(s), the file holds %d",
                    h->what, k, l->name, kept[k], n, nw);
    for (int i = 0; i < nw && !st; i++) {
      char path[2400];
      float *data;
      snprintf(path, sizeof path, "%s/%s", g, wn[i]);
      const char *leaf = strrchr(ws[i].path, '/');
      if (!(st = read_checked(h, path, ws[i].w->value->shape, l->name, l->vt->class_name, leaf ? leaf + 1 : ws[i].path, &data)))
        st = stage_weight(s, ws[i].w, data);
    }
    lm__h5_free_strs(wn, nw);
    free(ws);
  }
  if (!st) { /* lamina's models have no weights of their own: the file's must be none */
    char g[400];
    snprintf(g, sizeof g, "%s%stop_level_model_weights", group, *group ? "/" : "");
    if (lm__h5_kind(h, g) == LM_H5_GROUP) {
      char **wn;
      int nw;
      if (!(st = read_name_list(h, g, "weight_names", &wn, &nw)) && nw)
        st = lm__fail(NULL, LM_ERROR_IO, "%s: %d top-level model weight(s) in the file, the model has none", h->what, nw);
      lm__h5_free_strs(wn, nw);
    }
  }
  lm__h5_free_strs(names, n_names);
  free(kept);
  free(layers);
  free(all.v);
  return st;
}

/* optimizer_weights of a legacy model file: used when they fit, skipped otherwise (as
 * Keras 3 does, which also skips Keras 2's, whose variables differ). */
static lm_status stage_legacy_optimizer(lm_h5 *h, const lm_model *m, stage *s) {
  if (!model_optimizer(m) || lm__h5_kind(h, "optimizer_weights") != LM_H5_GROUP) return LM_OK;
  char **wn;
  int nw;
  lm_status st = read_name_list(h, "optimizer_weights", "weight_names", &wn, &nw);
  if (st) return st;
  if ((st = stage_optimizer(s, m))) {
    lm__h5_free_strs(wn, nw);
    return st;
  }
  int n_slots = m->compiled->n_slots;
  if (nw == 2 + s->nt * n_slots) {
    char path[1200];
    double it = -1, lr = -1;
    bool fits = true;
    snprintf(path, sizeof path, "optimizer_weights/%s", wn[0]);
    if (lm__h5_read_scalar(h, path, &it) || !(it >= 0 && it < 9e15)) fits = false;
    snprintf(path, sizeof path, "optimizer_weights/%s", wn[1]);
    if (fits && (lm__h5_read_scalar(h, path, &lr) || !(lr >= 0) || isinf(lr))) fits = false;
    for (int i = 2; i < nw && fits; i++) {
      int k = (i - 2) / n_slots;
      lm_shape got;
      snprintf(path, sizeof path, "optimizer_weights/%s", wn[i]);
      fits = !lm__h5_dataset_shape(h, path, &got) && lm__shape_equal(got, s->tw[k].w->value->shape);
    }
    for (int i = 2; i < nw && fits && !st; i++) {
      int k = (i - 2) / n_slots;
      snprintf(path, sizeof path, "optimizer_weights/%s", wn[i]);
      st = read_checked(h, path, s->tw[k].w->value->shape, s->tw[k].layer->name, s->tw[k].layer->vt->class_name, wn[i],
                        &s->slots[i - 2]);
    }
    if (fits && !st) {
      s->has_opt = true;
      s->iterations = (int64_t)it;
      s->learning_rate = lr;
    }
  }
  lm__h5_free_strs(wn, nw);
  return st;
}

/* ---- Paths ---- */

static bool ends_with(const char *s, const char *suffix) {
  size_t n = strlen(s), k = strlen(suffix);
  return n >= k && !strcmp(s + n - k, suffix);
}

static lm_status check_model(const lm_model *m, const char *fn) {
  if (!m) return lm__fail(NULL, LM_ERROR_VALUE, "%s: the model is NULL", fn);
  if (m->base.err.code)
    return lm__fail(NULL, LM_ERROR_STATE, "%s: model \"%s\" carries an error: %s", fn, m->base.name, m->base.err.msg);
  return LM_OK;
}

/* Writes an in-memory HDF5 file to path, atomically. */
static lm_status write_h5_file(lm_h5 *h, const char *path, lm_status st) {
  uint8_t *img = NULL;
  size_t len = 0;
  if (!st) st = lm__h5_image(h, &img, &len);
  lm__h5_close(h);
  if (!st) st = lm__write_file(path, img, len);
  free(img);
  return st;
}

static lm_status open_h5_file(lm_h5 *h, const char *path) {
  uint8_t *buf;
  size_t len;
  lm_status st = lm__read_file(path, &buf, &len);
  if (st) return st;
  st = lm__h5_open_image(h, buf, len, path);
  free(buf);
  return st;
}

lm_status lm_save_weights(const lm_model *m, const char *path) {
  lm_status st = check_model(m, "lm_save_weights");
  if (st) return st;
  if (!path) return lm__fail(NULL, LM_ERROR_VALUE, "lm_save_weights: path is NULL");
  bool k3 = ends_with(path, ".weights.h5");
  if (!k3 && !ends_with(path, ".h5"))
    return lm__fail(NULL, LM_ERROR_VALUE, "lm_save_weights: %s: the file name must end in .weights.h5 (Keras 3) or .h5 (legacy)",
                    path);
  lm_h5 h;
  if ((st = lm__h5_create(&h, path))) return st;
  st = k3 ? write_k3(&h, m) : write_legacy_weights(&h, m, "");
  return write_h5_file(&h, path, st);
}

/* Reads the zip member `name` of a .keras file into memory. */
static lm_status keras_member(const lm_zip *z, const char *path, const char *name, uint64_t max, uint8_t **data, size_t *len) {
  int i = lm__zip_find(z, name);
  if (i < 0) return lm__fail(NULL, LM_ERROR_IO, "%s: not a Keras model file: the archive has no %s", path, name);
  return lm__zip_read(z, i, max, data, len);
}

/* The largest model.weights.h5 worth reading: the weights (and optimizer slots) with room
 * for HDF5's own structures. */
static uint64_t weights_file_bound(const lm_model *m) {
  return (uint64_t)lm_model_count_params(m) * 4 * 4 + ((uint64_t)64 << 20);
}

static lm_status load_keras_weights(lm_model *m, const char *path, stage *s) {
  uint8_t *buf, *h5buf = NULL;
  size_t len, h5len = 0;
  lm_status st = lm__read_file(path, &buf, &len);
  if (st) return st;
  lm_zip z;
  if ((st = lm__zip_open(&z, buf, len, path))) {
    free(buf);
    return st;
  }
  if (lm__zip_find(&z, "model.weights.npz") >= 0 && lm__zip_find(&z, "model.weights.h5") < 0)
    st = lm__fail(NULL, LM_ERROR_IO, "%s: weights saved as .npz (weights_format=\"npz\") are not supported; save as h5", path);
  if (!st) st = keras_member(&z, path, "model.weights.h5", weights_file_bound(m), &h5buf, &h5len);
  lm__zip_close(&z);
  free(buf);
  if (st) return st;
  char what[1200];
  snprintf(what, sizeof what, "%s (member model.weights.h5)", path);
  lm_h5 h;
  st = lm__h5_open_image(&h, h5buf, h5len, what);
  free(h5buf);
  if (st) return st;
  st = stage_k3(&h, m, s);
  lm__h5_close(&h);
  return st;
}

lm_status lm_load_weights(lm_model *m, const char *path) {
  lm_status st = check_model(m, "lm_load_weights");
  if (st) return st;
  if (!path) return lm__fail(NULL, LM_ERROR_VALUE, "lm_load_weights: path is NULL");
  stage s = {0};
  if (ends_with(path, ".keras")) st = load_keras_weights(m, path, &s);
  else if (ends_with(path, ".h5") || ends_with(path, ".hdf5")) {
    lm_h5 h;
    if ((st = open_h5_file(&h, path))) return st;
    if (ends_with(path, ".weights.h5")) st = stage_k3(&h, m, &s);
    else if (lm__h5_has_attr(&h, "", "layer_names")) st = stage_legacy(&h, m, "", &s);
    else if (lm__h5_kind(&h, "model_weights") == LM_H5_GROUP) {
      st = stage_legacy(&h, m, "model_weights", &s);
      if (!st) st = stage_legacy_optimizer(&h, m, &s);
    }
    else if (lm__h5_kind(&h, "layers") == LM_H5_GROUP || lm__h5_kind(&h, "vars") == LM_H5_GROUP) st = stage_k3(&h, m, &s);
    else st = lm__fail(NULL, LM_ERROR_IO, "%s: no Keras weights in this HDF5 file (no layer_names, model_weights or layers)", path);
    lm__h5_close(&h);
  } else
    st = lm__fail(NULL, LM_ERROR_VALUE, "lm_load_weights: %s: the file name must end in .weights.h5, .h5 or .keras", path);
  if (!st) stage_commit(&s, m);
  stage_free(&s);
  return st;
}

/* ---- Compile settings as Keras writes them ---- */

static void write_optimizer_config(lm_json *j, const lm_optimizer *o, bool legacy) {
  char name[64];
  opt_snake(o, name, sizeof name);
  lm__json_begin_object(j);
  if (!legacy) lm__json_kv_string(j, "module", "keras.optimizers");
  lm__json_kv_string(j, "class_name", opt_class(o));
  lm__json_key(j, "config");
  lm__json_begin_object(j);
  lm__json_kv_string(j, "name", name);
  lm__json_kv_double(j, "learning_rate", o->learning_rate);
  if (o->weight_decay > 0) lm__json_kv_double(j, "weight_decay", o->weight_decay);
  else lm__json_kv_null(j, "weight_decay");
  lm__json_kv_null(j, "clipnorm");
  lm__json_kv_null(j, "global_clipnorm");
  lm__json_kv_null(j, "clipvalue");
  lm__json_kv_bool(j, "use_ema", false);
  lm__json_kv_double(j, "ema_momentum", 0.99);
  lm__json_kv_null(j, "ema_overwrite_frequency");
  lm__json_kv_null(j, "loss_scale_factor");
  lm__json_kv_null(j, "gradient_accumulation_steps");
  switch (o->kind) {
  case LM_OPT_SGD:
    lm__json_kv_double(j, "momentum", o->momentum);
    lm__json_kv_bool(j, "nesterov", o->nesterov);
    break;
  case LM_OPT_RMSPROP:
    lm__json_kv_double(j, "rho", o->rho);
    lm__json_kv_double(j, "momentum", 0.0);
    lm__json_kv_double(j, "epsilon", o->epsilon);
    lm__json_kv_bool(j, "centered", false);
    break;
  case LM_OPT_ADAM:
  case LM_OPT_ADAMW:
    lm__json_kv_double(j, "beta_1", o->beta_1);
    lm__json_kv_double(j, "beta_2", o->beta_2);
    lm__json_kv_double(j, "epsilon", o->epsilon);
    lm__json_kv_bool(j, "amsgrad", false);
    break;
  case LM_OPT_ADAGRAD:
    lm__json_kv_double(j, "initial_accumulator_value", o->initial_accumulator_value);
    lm__json_kv_double(j, "epsilon", o->epsilon);
    break;
  }
  lm__json_end_object(j);
  if (!legacy) lm__json_kv_null(j, "registered_name");
  lm__json_end_object(j);
}

static void write_loss(lm_json *j, const lm_loss_spec *l, bool legacy) {
  if (!l->from_logits) {
    lm__json_string(j, lm__loss_name(l->kind));
    return;
  }
  static const char *classes[] = {[LM_LOSS_BINARY_CE] = "BinaryCrossentropy", [LM_LOSS_CATEGORICAL_CE] = "CategoricalCrossentropy",
                                  [LM_LOSS_SPARSE_CATEGORICAL_CE] = "SparseCategoricalCrossentropy"};
  lm__json_begin_object(j);
  if (!legacy) lm__json_kv_string(j, "module", "keras.losses");
  lm__json_kv_string(j, "class_name", classes[l->kind]);
  lm__json_key(j, "config");
  lm__json_begin_object(j);
  lm__json_kv_string(j, "name", lm__loss_name(l->kind));
  lm__json_kv_string(j, "reduction", "sum_over_batch_size");
  lm__json_kv_bool(j, "from_logits", true);
  if (l->kind == LM_LOSS_SPARSE_CATEGORICAL_CE) lm__json_kv_null(j, "ignore_class");
  else {
    lm__json_kv_double(j, "label_smoothing", 0.0);
    lm__json_kv_int(j, "axis", -1);
  }
  lm__json_end_object(j);
  if (!legacy) lm__json_kv_null(j, "registered_name");
  lm__json_end_object(j);
}

/* Keras's compile_config (legacy: training_config, with optimizer_config at the end). */
static void write_compile_config(lm_json *j, const lm_model *m, bool legacy) {
  const lm_compiled *c = m->compiled;
  lm__json_begin_object(j);
  if (!legacy) {
    lm__json_key(j, "optimizer");
    write_optimizer_config(j, c->opt, false);
  }
  lm__json_key(j, "loss");
  if (m->n_outputs == 1) write_loss(j, &c->loss[0], legacy);
  else {
    lm__json_begin_object(j);
    for (int o = 0; o < m->n_outputs; o++) {
      lm__json_key(j, m->outputs[o]->node->layer->name);
      write_loss(j, &c->loss[o], legacy);
    }
    lm__json_end_object(j);
  }
  bool weighted = false;
  for (int o = 0; o < m->n_outputs; o++) weighted |= c->loss_weight[o] != 1.0f;
  lm__json_key(j, "loss_weights");
  if (!weighted) lm__json_null(j);
  else {
    lm__json_begin_array(j);
    for (int o = 0; o < m->n_outputs; o++) lm__json_double(j, c->loss_weight[o]);
    lm__json_end_array(j);
  }
  int any = 0;
  for (int o = 0; o < m->n_outputs; o++) any += c->n_metrics[o];
  lm__json_key(j, "metrics");
  if (!any) lm__json_null(j);
  else if (m->n_outputs == 1) {
    lm__json_begin_array(j);
    for (int k = 0; k < c->n_metrics[0]; k++) lm__json_string(j, c->metric_names[0][k]);
    lm__json_end_array(j);
  } else {
    lm__json_begin_object(j);
    for (int o = 0; o < m->n_outputs; o++) {
      if (!c->n_metrics[o]) continue;
      lm__json_key(j, m->outputs[o]->node->layer->name);
      lm__json_begin_array(j);
      for (int k = 0; k < c->n_metrics[o]; k++) lm__json_string(j, c->metric_names[o][k]);
      lm__json_end_array(j);
    }
    lm__json_end_object(j);
  }
  lm__json_kv_null(j, "weighted_metrics");
  lm__json_kv_bool(j, "run_eagerly", false);
  lm__json_kv_int(j, "steps_per_execution", 1);
  lm__json_kv_bool(j, "jit_compile", true);
  if (legacy) {
    lm__json_key(j, "optimizer_config");
    write_optimizer_config(j, c->opt, true);
  }
  lm__json_end_object(j);
}

/* model.to_json() with compile_config filled in: *out is malloc'd. */
static lm_status config_json(const lm_model *m, const char *path, char **out) {
  *out = NULL;
  char *text;
  lm_status st = lm__model_config_json(m, &text);
  if (st) return st;
  lm_json cc = {0};
  if (model_optimizer(m)) write_compile_config(&cc, m, false);
  else { /* Keras writes {} for a model that was not compiled */
    lm__json_begin_object(&cc);
    lm__json_end_object(&cc);
  }
  if (cc.failed) {
    free(text);
    free(cc.buf);
    return lm__fail(NULL, LM_ERROR_MEMORY, "%s: out of memory", path);
  }
  /* The configuration ends with its compile_config member (Keras's order): replace its
   * value; or, if it has none, add one. The last occurrence of the key is the top-level
   * one, since nested models come before it and keys inside strings are escaped. */
  size_t len = strlen(text);
  const char *key = "\"compile_config\": ", *at = NULL;
  for (const char *p = strstr(text, key); p; p = strstr(p + 1, key)) at = p;
  size_t head = at ? (size_t)(at - text) : 0;
  while (len > 0 && text[len - 1] != '}') len--;
  if (!at || len == 0) {
    if (len == 0) {
      free(text);
      free(cc.buf);
      return lm__fail(NULL, LM_ERROR_STATE, "%s: the model configuration is not a JSON object", path);
    }
    head = len - 1; /* before the final '}' */
  }
  size_t cap = head + cc.len + 64;
  char *res = lm__calloc(cap, 1);
  if (res) snprintf(res, cap, "%.*s%s%s%s}", (int)head, text, at ? "" : ", ", key, cc.buf);
  free(text);
  free(cc.buf);
  if (!res) return LM_ERROR_MEMORY;
  *out = res;
  return LM_OK;
}

/* ---- Reading compile settings ---- */

typedef struct cfg_reader {
  const char *what; /* the file, for messages */
  lm_status st;
} cfg_reader;

static bool cfg_fail(cfg_reader *r, const char *fmt, ...) LM_PRINTF(2, 3);
static bool cfg_fail(cfg_reader *r, const char *fmt, ...) {
  if (r->st) return false;
  char msg[800];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  r->st = lm__fail(NULL, LM_ERROR_VALUE, "%s: compile settings: %s", r->what, msg);
  return false;
}

static bool is_null(const lm__json_value *v) { return !v || v->type == LM_JSON_NULL; }

/* A number field of the optimizer config in [lo, hi]; absent or null keeps *out. */
static void opt_number(cfg_reader *r, const lm__json_value *cfg, const char *key, double *out, double lo, double hi) {
  const lm__json_value *v = lm__json_get(cfg, key);
  if (is_null(v)) return;
  if (v->type != LM_JSON_NUMBER || !(v->number >= lo && v->number <= hi)) {
    cfg_fail(r, "optimizer %s must be a number in [%g, %g], got %s", key, lo, hi, lm__json_kind(v));
    return;
  }
  *out = v->number;
}

/* Options lamina's optimizers lack must be absent or hold Keras's neutral value: null,
 * false, or 0. */
typedef enum neutral { NEUTRAL_NULL, NEUTRAL_FALSE, NEUTRAL_ZERO } neutral;

static void opt_neutral(cfg_reader *r, const lm__json_value *cfg, const char *key, neutral want) {
  const lm__json_value *v = lm__json_get(cfg, key);
  if (is_null(v) || (want == NEUTRAL_FALSE && v->type == LM_JSON_BOOL && !v->boolean) ||
      (want == NEUTRAL_ZERO && v->type == LM_JSON_NUMBER && v->number == 0))
    return;
  cfg_fail(r, "optimizer option %s is not supported by lamina (it must be %s)", key,
           want == NEUTRAL_NULL ? "null" : want == NEUTRAL_FALSE ? "false" : "0");
}

static lm_optimizer *optimizer_from_config(cfg_reader *r, const lm__json_value *v) {
  if (v && v->type == LM_JSON_STRING) {
    lm_optimizer *o = lm_optimizer_from_name(v->string);
    if (!o) cfg_fail(r, "%s", lm_last_error());
    return o;
  }
  if (!v || v->type != LM_JSON_OBJECT) return cfg_fail(r, "no optimizer"), NULL;
  const lm__json_value *cls = lm__json_get(v, "class_name"), *cfg = lm__json_get(v, "config");
  if (!cls || cls->type != LM_JSON_STRING || (cfg && cfg->type != LM_JSON_OBJECT))
    return cfg_fail(r, "the optimizer needs a class_name and a config object"), NULL;
  lm_optimizer *o = NULL;
  if (!strcmp(cls->string, "SGD")) o = lm_sgd_new((lm_sgd_opts){0});
  else if (!strcmp(cls->string, "RMSprop")) o = lm_rmsprop_new((lm_rmsprop_opts){0});
  else if (!strcmp(cls->string, "Adam")) o = lm_adam_new((lm_adam_opts){0});
  else if (!strcmp(cls->string, "AdamW")) o = lm_adamw_new((lm_adam_opts){0});
  else if (!strcmp(cls->string, "Adagrad")) o = lm_adagrad_new((lm_adagrad_opts){0});
  else return cfg_fail(r, "optimizer %s is not supported (SGD, RMSprop, Adam, AdamW, Adagrad)", cls->string), NULL;
  if (!o) return cfg_fail(r, "%s", lm_last_error()), NULL;
  if (!cfg) return o;
  const lm__json_value *lr = lm__json_get(cfg, "learning_rate");
  if (lr && lr->type == LM_JSON_OBJECT) cfg_fail(r, "learning rate schedules are not supported");
  opt_number(r, cfg, "learning_rate", &o->learning_rate, 0, 1e30);
  double wd = o->weight_decay;
  opt_number(r, cfg, "weight_decay", &wd, 0, 1e30);
  o->weight_decay = is_null(lm__json_get(cfg, "weight_decay")) ? (o->kind == LM_OPT_ADAMW ? 0.004 : 0) : wd;
  opt_neutral(r, cfg, "clipnorm", NEUTRAL_NULL);
  opt_neutral(r, cfg, "global_clipnorm", NEUTRAL_NULL);
  opt_neutral(r, cfg, "clipvalue", NEUTRAL_NULL);
  opt_neutral(r, cfg, "use_ema", NEUTRAL_FALSE);
  opt_neutral(r, cfg, "loss_scale_factor", NEUTRAL_NULL);
  opt_neutral(r, cfg, "gradient_accumulation_steps", NEUTRAL_NULL);
  switch (o->kind) {
  case LM_OPT_SGD: {
    opt_number(r, cfg, "momentum", &o->momentum, 0, 1);
    const lm__json_value *n = lm__json_get(cfg, "nesterov");
    if (!is_null(n) && n->type != LM_JSON_BOOL) cfg_fail(r, "optimizer nesterov must be true or false");
    else if (!is_null(n)) o->nesterov = n->boolean;
    break;
  }
  case LM_OPT_RMSPROP:
    opt_number(r, cfg, "rho", &o->rho, 0, 1);
    opt_number(r, cfg, "epsilon", &o->epsilon, 0, 1e30);
    opt_neutral(r, cfg, "momentum", NEUTRAL_ZERO);
    opt_neutral(r, cfg, "centered", NEUTRAL_FALSE);
    break;
  case LM_OPT_ADAM:
  case LM_OPT_ADAMW:
    opt_number(r, cfg, "beta_1", &o->beta_1, 0, 1);
    opt_number(r, cfg, "beta_2", &o->beta_2, 0, 1);
    opt_number(r, cfg, "epsilon", &o->epsilon, 0, 1e30);
    opt_neutral(r, cfg, "amsgrad", NEUTRAL_FALSE);
    break;
  case LM_OPT_ADAGRAD:
    opt_number(r, cfg, "initial_accumulator_value", &o->initial_accumulator_value, 0, 1e30);
    opt_number(r, cfg, "epsilon", &o->epsilon, 0, 1e30);
    break;
  }
  if (r->st) {
    lm_optimizer_free(o);
    return NULL;
  }
  return o;
}

/* A loss as Keras serializes it: a name, or {"class_name": ..., "config": {...}}; written
 * into buf as lamina's name ("binary_crossentropy:logits"). */
static bool loss_name(cfg_reader *r, const lm__json_value *v, char *buf, size_t cap) {
  if (v && v->type == LM_JSON_STRING) {
    snprintf(buf, cap, "%s", v->string);
    return true;
  }
  if (!v || v->type != LM_JSON_OBJECT) return cfg_fail(r, "a loss must be a name or a serialized loss, got %s", lm__json_kind(v));
  const lm__json_value *cls = lm__json_get(v, "class_name"), *cfg = lm__json_get(v, "config");
  if (!cls || cls->type != LM_JSON_STRING) return cfg_fail(r, "a serialized loss needs a class_name");
  static const struct {
    const char *cls, *name;
  } known[] = {{"MeanSquaredError", "mean_squared_error"}, {"MeanAbsoluteError", "mean_absolute_error"}, {"Huber", "huber"},
               {"BinaryCrossentropy", "binary_crossentropy"}, {"CategoricalCrossentropy", "categorical_crossentropy"},
               {"SparseCategoricalCrossentropy", "sparse_categorical_crossentropy"}};
  const char *name = NULL;
  for (size_t i = 0; i < sizeof known / sizeof *known; i++)
    if (!strcmp(cls->string, known[i].cls)) name = known[i].name;
  if (!name) return cfg_fail(r, "loss %s is not supported", cls->string);
  bool logits = false;
  const lm__json_value *f;
  if (cfg && cfg->type == LM_JSON_OBJECT) {
    if ((f = lm__json_get(cfg, "from_logits")) && f->type == LM_JSON_BOOL) logits = f->boolean;
    if ((f = lm__json_get(cfg, "label_smoothing")) && !is_null(f) && !(f->type == LM_JSON_NUMBER && f->number == 0))
      return cfg_fail(r, "loss %s: label_smoothing is not supported", cls->string);
    if ((f = lm__json_get(cfg, "axis")) && !is_null(f) && !(f->type == LM_JSON_NUMBER && f->number == -1))
      return cfg_fail(r, "loss %s: only axis -1 is supported", cls->string);
    if ((f = lm__json_get(cfg, "ignore_class")) && !is_null(f))
      return cfg_fail(r, "loss %s: ignore_class is not supported", cls->string);
    if ((f = lm__json_get(cfg, "delta")) && !is_null(f) && !(f->type == LM_JSON_NUMBER && f->number == 1))
      return cfg_fail(r, "loss %s: only delta 1.0 is supported", cls->string);
    if ((f = lm__json_get(cfg, "reduction")) && !is_null(f) &&
        !(f->type == LM_JSON_STRING && (!strcmp(f->string, "sum_over_batch_size") || !strcmp(f->string, "auto"))))
      return cfg_fail(r, "loss %s: only the reduction sum_over_batch_size is supported", cls->string);
  }
  snprintf(buf, cap, "%s%s", name, logits ? ":logits" : "");
  return true;
}

static bool metric_name(cfg_reader *r, const lm__json_value *v, const char **out) {
  if (v && v->type == LM_JSON_STRING) {
    *out = v->string;
    return true;
  }
  const lm__json_value *cls = v && v->type == LM_JSON_OBJECT ? lm__json_get(v, "class_name") : NULL;
  if (!cls || cls->type != LM_JSON_STRING) return cfg_fail(r, "a metric must be a name or a serialized metric");
  static const struct {
    const char *cls, *name;
  } known[] = {{"MeanAbsoluteError", "mae"}, {"MeanSquaredError", "mse"}, {"BinaryAccuracy", "binary_accuracy"},
               {"CategoricalAccuracy", "categorical_accuracy"}, {"SparseCategoricalAccuracy", "sparse_categorical_accuracy"},
               {"AUC", "auc"}};
  for (size_t i = 0; i < sizeof known / sizeof *known; i++)
    if (!strcmp(cls->string, known[i].cls)) {
      *out = known[i].name;
      return true;
    }
  return cfg_fail(r, "metric %s is not supported", cls->string);
}

/* Compiles m as compile_config (or a legacy training_config) says; no config, null or {}
 * leaves it uncompiled. */
static lm_status compile_from_config(lm_model *m, const lm__json_value *cc, bool legacy, const char *what) {
  if (is_null(cc) || (cc->type == LM_JSON_OBJECT && cc->n == 0)) return LM_OK;
  cfg_reader r = {what, LM_OK};
  if (cc->type != LM_JSON_OBJECT) return cfg_fail(&r, "not a JSON object"), r.st;
  char losses[LM_MAX_OUTPUTS][96];
  lm_compile_opts opts = {0};
  const lm__json_value *loss = lm__json_get(cc, "loss");
  if (is_null(loss)) cfg_fail(&r, "no loss");
  else if (loss->type == LM_JSON_OBJECT && !lm__json_get(loss, "class_name")) { /* by output name */
    if (loss->n > LM_MAX_OUTPUTS) cfg_fail(&r, "too many losses");
    opts.loss.by_name = true;
    for (size_t i = 0; i < loss->n && !r.st; i++) {
      opts.loss.item[2 * i] = loss->items[i].key;
      if (loss_name(&r, &loss->items[i], losses[i], sizeof losses[i])) opts.loss.item[2 * i + 1] = losses[i];
      opts.loss.n++;
    }
  } else if (loss->type == LM_JSON_ARRAY) {
    if (loss->n > LM_MAX_OUTPUTS || loss->n == 0) cfg_fail(&r, "%zu losses", loss->n);
    for (size_t i = 0; i < loss->n && !r.st; i++)
      if (loss_name(&r, &loss->items[i], losses[i], sizeof losses[i])) opts.loss.item[opts.loss.n++] = losses[i];
  } else if (loss_name(&r, loss, losses[0], sizeof losses[0]))
    opts.loss.item[opts.loss.n++] = losses[0];

  const lm__json_value *lw = lm__json_get(cc, "loss_weights");
  if (!is_null(lw)) {
    if ((lw->type != LM_JSON_ARRAY && lw->type != LM_JSON_OBJECT) || lw->n > LM_MAX_OUTPUTS)
      cfg_fail(&r, "loss_weights must be a list or a dict of at most %d numbers", LM_MAX_OUTPUTS);
    opts.loss_weights.by_name = lw->type == LM_JSON_OBJECT;
    for (size_t i = 0; i < lw->n && !r.st; i++) {
      if (lw->items[i].type != LM_JSON_NUMBER || !isfinite(lw->items[i].number)) {
        cfg_fail(&r, "loss_weights must hold numbers");
        break;
      }
      if (opts.loss_weights.by_name) opts.loss_weights.named[i] = (lm_named_weight){lw->items[i].key, lw->items[i].number};
      else opts.loss_weights.w[i] = lw->items[i].number;
      opts.loss_weights.n++;
    }
  }
  const lm__json_value *wm = lm__json_get(cc, "weighted_metrics");
  if (!is_null(wm) && !((wm->type == LM_JSON_ARRAY || wm->type == LM_JSON_OBJECT) && wm->n == 0))
    cfg_fail(&r, "weighted_metrics are not supported");
  const lm__json_value *mt = lm__json_get(cc, "metrics");
  if (!is_null(mt)) {
    lm_names *mn = &opts.metrics;
    if (mt->type == LM_JSON_OBJECT) { /* {output: name or [names]} */
      mn->by_name = true;
      for (size_t i = 0; i < mt->n && !r.st; i++) {
        const lm__json_value *v = &mt->items[i];
        size_t k = v->type == LM_JSON_ARRAY ? v->n : 1;
        for (size_t j = 0; j < k && !r.st; j++) {
          if (mn->n >= LM_MAX_OUTPUTS) {
            cfg_fail(&r, "too many metrics");
            break;
          }
          mn->item[2 * mn->n] = v->key;
          if (metric_name(&r, v->type == LM_JSON_ARRAY ? &v->items[j] : v, &mn->item[2 * mn->n + 1])) mn->n++;
        }
      }
    } else if (mt->type == LM_JSON_ARRAY) {
      bool nested = mt->n > 0 && mt->items[0].type == LM_JSON_ARRAY;
      if (nested) { /* one list per output, in output order */
        if ((int)mt->n != m->n_outputs) cfg_fail(&r, "%zu metric lists for %d outputs", mt->n, m->n_outputs);
        mn->by_name = true;
        for (size_t o = 0; o < mt->n && !r.st; o++) {
          const lm__json_value *v = &mt->items[o];
          if (v->type != LM_JSON_ARRAY) {
            cfg_fail(&r, "metrics mix lists and names");
            break;
          }
          for (size_t j = 0; j < v->n && !r.st; j++) {
            if (mn->n >= LM_MAX_OUTPUTS) {
              cfg_fail(&r, "too many metrics");
              break;
            }
            mn->item[2 * mn->n] = m->outputs[o]->node->layer->name;
            if (metric_name(&r, &v->items[j], &mn->item[2 * mn->n + 1])) mn->n++;
          }
        }
      } else {
        for (size_t i = 0; i < mt->n && !r.st; i++) {
          if (mn->n >= 2 * LM_MAX_OUTPUTS) {
            cfg_fail(&r, "too many metrics");
            break;
          }
          if (metric_name(&r, &mt->items[i], &mn->item[mn->n])) mn->n++;
        }
      }
    } else cfg_fail(&r, "metrics must be a list or a dict");
  }
  if (!r.st) {
    const lm__json_value *ov = lm__json_get(cc, legacy ? "optimizer_config" : "optimizer");
    opts.optimizer = optimizer_from_config(&r, ov);
  }
  if (r.st) {
    lm_optimizer_free(opts.optimizer);
    return r.st;
  }
  lm_status st = lm_compile_opts_(m, opts);
  if (st) {
    char msg[1024];
    snprintf(msg, sizeof msg, "%s", lm_last_error());
    return lm__fail(NULL, st, "%s: compile settings: %s", what, msg);
  }
  return LM_OK;
}

/* ---- Whole models ---- */

static lm_status write_keras_archive(const lm_model *m, const char *path) {
  char *config = NULL;
  uint8_t *h5img = NULL;
  size_t h5len = 0;
  lm_status st = config_json(m, path, &config);
  if (st) return st;
  lm_h5 h;
  char what[1200];
  snprintf(what, sizeof what, "%s (member model.weights.h5)", path);
  if (!(st = lm__h5_create(&h, what))) {
    st = write_k3(&h, m);
    if (!st) st = lm__h5_image(&h, &h5img, &h5len);
    lm__h5_close(&h);
  }
  if (st) {
    free(config);
    return st;
  }
  char date[64], metadata[160];
  time_t now = time(NULL);
  struct tm tm;
  localtime_r(&now, &tm);
  strftime(date, sizeof date, "%Y-%m-%d@%H:%M:%S", &tm);
  snprintf(metadata, sizeof metadata, "{\"keras_version\": \"%s\", \"date_saved\": \"%s\"}", KERAS_VERSION, date);
  lm_wfile w;
  if (!(st = lm__wfile_open(&w, path))) {
    lm_zip_writer z;
    lm__zip_writer_init(&z, w.f, path);
    const char *names[3] = {"metadata.json", "config.json", "model.weights.h5"};
    const void *data[3] = {metadata, config, h5img};
    size_t lens[3] = {strlen(metadata), strlen(config), h5len};
    for (int i = 0; i < 3 && !st; i++) st = lm__zip_add(&z, names[i], &data[i], &lens[i], 1);
    st = lm__zip_finish(&z, st);
    st = lm__wfile_commit(&w, path, st);
  }
  free(config);
  free(h5img);
  return st;
}

static lm_status write_legacy_model(const lm_model *m, const char *path) {
  char *config = NULL;
  lm_status st = lm__model_config_json(m, &config);
  if (st) return st;
  lm_h5 h;
  if ((st = lm__h5_create(&h, path))) {
    free(config);
    return st;
  }
  st = lm__h5_set_attr_str(&h, "", "backend", "jax", true);
  if (!st) st = lm__h5_set_attr_str(&h, "", "keras_version", KERAS_VERSION, true);
  if (!st) st = lm__h5_set_attr_str(&h, "", "model_config", config, false);
  if (!st && model_optimizer(m)) {
    lm_json tc = {0};
    write_compile_config(&tc, m, true);
    st = tc.failed ? LM_ERROR_MEMORY : lm__h5_set_attr_str(&h, "", "training_config", tc.buf, false);
    free(tc.buf);
  }
  if (!st) st = write_legacy_weights(&h, m, "model_weights");
  if (!st) st = write_legacy_optimizer(&h, m);
  free(config);
  return write_h5_file(&h, path, st);
}

lm_status lm_save_model(const lm_model *m, const char *path) {
  lm_status st = check_model(m, "lm_save_model");
  if (st) return st;
  if (!path) return lm__fail(NULL, LM_ERROR_VALUE, "lm_save_model: path is NULL");
  if (ends_with(path, ".keras")) return write_keras_archive(m, path);
  if (ends_with(path, ".h5") && !ends_with(path, ".weights.h5")) return write_legacy_model(m, path);
  return lm__fail(NULL, LM_ERROR_VALUE, "lm_save_model: %s: the file name must end in .keras or .h5", path);
}

/* Builds the model of a configuration text. NULL on failure. */
static lm_model *model_from_text(const char *text, size_t len, const char *what, bool legacy, lm__json_doc **doc_out) {
  lm_error err = {0};
  lm__json_doc *doc = lm__json_parse(text, len, NULL, &err);
  *doc_out = doc;
  if (!doc) {
    lm__fail(NULL, LM_ERROR_IO, "%s: the model configuration%s is not valid JSON: %s", what, legacy ? " (model_config)" : "",
             err.msg);
    return NULL;
  }
  lm_model *m = lm__model_from_config(lm__json_root(doc));
  if (!m || m->base.err.code) {
    char msg[1024];
    snprintf(msg, sizeof msg, "%s", m ? m->base.err.msg : lm_last_error());
    lm__fail(NULL, m ? m->base.err.code : LM_ERROR_MEMORY, "%s: %s", what, msg);
    return NULL;
  }
  return m;
}

static lm_model *load_keras_archive(const char *path) {
  uint8_t *buf, *config = NULL;
  size_t len, clen = 0;
  if (lm__read_file(path, &buf, &len)) return NULL;
  lm_zip z;
  lm_status st = lm__zip_open(&z, buf, len, path);
  if (!st) {
    st = keras_member(&z, path, "config.json", MAX_CONFIG_BYTES, &config, &clen);
    lm__zip_close(&z);
  }
  free(buf);
  if (st) return NULL;
  char what[1200];
  snprintf(what, sizeof what, "%s (member config.json)", path);
  lm__json_doc *doc;
  lm_model *m = model_from_text((const char *)config, clen, what, false, &doc);
  free(config);
  if (m) st = compile_from_config(m, lm__json_get(lm__json_root(doc), "compile_config"), false, what);
  lm__json_free(doc);
  if (!m || st) return NULL;
  stage s = {0};
  st = load_keras_weights(m, path, &s);
  if (!st) stage_commit(&s, m);
  stage_free(&s);
  return st ? NULL : m;
}

static lm_model *load_legacy_model(const char *path) {
  lm_h5 h;
  if (open_h5_file(&h, path)) return NULL;
  char *config = NULL, *training = NULL;
  lm_model *m = NULL;
  lm__json_doc *doc = NULL;
  stage s = {0};
  lm_status st;
  if (!lm__h5_has_attr(&h, "", "model_config")) {
    st = lm__fail(NULL, LM_ERROR_IO, "%s: no model config in the file (weights only? use lm_load_weights)", path);
    goto done;
  }
  if ((st = lm__h5_get_attr_str(&h, "", "model_config", &config))) goto done;
  if (!(m = model_from_text(config, strlen(config), path, true, &doc))) {
    st = LM_ERROR_IO;
    goto done;
  }
  lm__json_free(doc);
  doc = NULL;
  if (lm__h5_kind(&h, "model_weights") != LM_H5_GROUP) {
    st = lm__fail(NULL, LM_ERROR_IO, "%s: no model_weights group", path);
    goto done;
  }
  if ((st = stage_legacy(&h, m, "model_weights", &s))) goto done;
  if (lm__h5_has_attr(&h, "", "training_config")) {
    if ((st = lm__h5_get_attr_str(&h, "", "training_config", &training))) goto done;
    lm_error err = {0};
    doc = lm__json_parse(training, strlen(training), NULL, &err);
    if (!doc) {
      st = lm__fail(NULL, LM_ERROR_IO, "%s: training_config is not valid JSON: %s", path, err.msg);
      goto done;
    }
    if ((st = compile_from_config(m, lm__json_root(doc), true, path))) goto done;
    if ((st = stage_legacy_optimizer(&h, m, &s))) goto done;
  }
  stage_commit(&s, m);
done:
  lm__json_free(doc);
  stage_free(&s);
  free(config);
  free(training);
  lm__h5_close(&h);
  return st ? NULL : m;
}

lm_model *lm_load_model(const char *path) {
  if (!path) {
    lm__fail(NULL, LM_ERROR_VALUE, "lm_load_model: path is NULL");
    return NULL;
  }
  if (ends_with(path, ".keras")) return load_keras_archive(path);
  if (ends_with(path, ".h5") || ends_with(path, ".hdf5")) return load_legacy_model(path);
  lm__fail(NULL, LM_ERROR_VALUE, "lm_load_model: %s: the file name must end in .keras or .h5", path);
  return NULL;
}
