/* TensorBoard: Keras 3's keras/src/callbacks/tensorboard.py, writing the event files itself
 * (src/io/tfevents.c) instead of through tf.summary. Layout and tags are Keras's:
 * log_dir/train and log_dir/validation runs, epoch_<key>, batch_<key>,
 * evaluation_<key>_vs_iterations, <layer>/<weight>/histogram and /image, the model's JSON
 * under "keras", log_dir/projector_config.pbtxt. */
#include "io/model_config.h"
#include "io/tfevents.h"
#include "train/train.h"
#include <errno.h>
#include <time.h>

typedef struct tensorboard {
  lm_callback cb;
  char *log_dir, *train_dir, *val_dir;
  int histogram_freq, update_freq, embeddings_freq;
  bool write_graph, write_images, write_steps_per_second;
  lm_names metadata; /* strings owned (copied) */
  lm_summary_writer *train, *val;
  int64_t global_train_batch, global_test_batch;
  double epoch_start, batch_start;
  int64_t epoch_start_iterations;
  bool write_op_graph; /* at the next batch end, once per fit */
  bool failed;
} tensorboard;

static double now_seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Keras would raise: stop training, keep the reason in lm_last_error, say it once. */
static void fail(tensorboard *tb) {
  if (!tb->failed) fprintf(stderr, "TensorBoard: %s\n", lm_last_error());
  tb->failed = true;
  lm_model_stop_training(tb->cb.model);
}

static lm_summary_writer *writer(tensorboard *tb, bool validation) {
  lm_summary_writer **w = validation ? &tb->val : &tb->train;
  if (!*w && !tb->failed) {
    *w = lm_summary_writer_new(validation ? tb->val_dir : tb->train_dir);
    if (!*w) fail(tb);
  }
  return tb->failed ? NULL : *w;
}

static void scalar(tensorboard *tb, bool validation, const char *prefix, const char *key, const char *suffix,
                   int64_t step, double value) {
  lm_summary_writer *w = writer(tb, validation);
  char tag[320];
  snprintf(tag, sizeof tag, "%s%s%s", prefix, key, suffix);
  if (w && lm_summary_scalar(w, tag, step, value)) fail(tb);
}

static void close_writers(tensorboard *tb) {
  lm_summary_writer *w[2] = {tb->train, tb->val};
  tb->train = tb->val = NULL;
  for (int i = 0; i < 2; i++) {
    if (w[i] && lm_summary_writer_close(w[i]) && !tb->failed) fail(tb);
    lm_summary_writer_free(w[i]);
  }
}

static int64_t iterations(const lm_model *m) {
  return m && m->compiled && m->compiled->opt ? m->compiled->opt->iterations : 0;
}

/* ---- The graph: Keras's keras_model_summary("keras", model, step=0) ---- */
static void write_model_json(tensorboard *tb) {
  char *json = NULL;
  if (lm__model_config_json(tb->cb.model, &json)) {
    /* Keras warns and goes on when a model fails to serialize. */
    fprintf(stderr, "UserWarning: Model failed to serialize as JSON. Ignoring... %s\n", lm_last_error());
    return;
  }
  lm_summary_writer *w = writer(tb, false);
  if (w) {
    lm_pb t = {0};
    const char *s = json;
    size_t len = strlen(json);
    lm__pb_tensor_strings(&t, &s, &len, 1, false);
    if (lm__summary_write_tensor(w, "keras", 0, "graph_keras_model", "1", 1, LM_DATA_CLASS_UNKNOWN, &t)) fail(tb);
    lm__pb_free(&t);
  }
  free(json);
}

/* ---- The op graph: what Keras with TensorFlow writes at the first batch (the train
 * function's graph), here lamina's training graph. Nodes are named "<layer>/<op>",
 * weights "<layer>/<weight>", inputs by their Input's name, targets "targets/<output>";
 * each carries its dtype and "_output_shapes" so that TensorBoard labels the edges. ---- */
#define GNAME 192 /* node names hold at most 150 + 40 characters */

typedef struct graph_writer {
  lm_pb graph, node, attr, value, list, shape, dim;
  char (*names)[GNAME]; /* per value: the tensor name ("node" or "node:k") */
  char (*op_names)[GNAME];
} graph_writer;

static void put_shape(graph_writer *gw, lm_pb *out, int field, lm_shape s) {
  lm_pb *shape = &gw->shape;
  shape->len = 0;
  for (int i = 0; i < s.rank; i++) {
    gw->dim.len = 0;
    lm__pb_uint(&gw->dim, 1, (uint64_t)(s.dim[i] < 0 ? -1 : s.dim[i])); /* TensorShapeProto.Dim.size */
    lm__pb_message(shape, 2, &gw->dim);
  }
  lm__pb_message(out, field, shape);
}

/* NodeDef.attr is map<string, AttrValue>: entries {key 1, value 2} in field 5. */
static void put_attr(graph_writer *gw, const char *key, const lm_pb *value) {
  gw->attr.len = 0;
  lm__pb_string(&gw->attr, 1, key);
  lm__pb_message(&gw->attr, 2, value);
  lm__pb_message(&gw->node, 5, &gw->attr);
}

static void put_node(graph_writer *gw, const char *name, const char *op, const char *const *inputs, int n_in,
                     const lm_graph *g, const int *outs, int n_out) {
  gw->node.len = 0;
  lm__pb_string(&gw->node, 1, name);
  lm__pb_string(&gw->node, 2, op);
  for (int i = 0; i < n_in; i++) lm__pb_string(&gw->node, 3, inputs[i]);
  gw->value.len = 0;
  lm__pb_uint(&gw->value, 6, n_out && g->vals[outs[0]].dtype == LM_INT32 ? 3 : 1); /* AttrValue.type: DT_INT32 / DT_FLOAT */
  put_attr(gw, "T", &gw->value);
  gw->list.len = 0;
  for (int k = 0; k < n_out; k++) put_shape(gw, &gw->list, 7, g->vals[outs[k]].shape); /* ListValue.shape */
  gw->value.len = 0;
  lm__pb_message(&gw->value, 1, &gw->list); /* AttrValue.list */
  put_attr(gw, "_output_shapes", &gw->value);
  lm__pb_message(&gw->graph, 1, &gw->node); /* GraphDef.node */
}

/* A name not used by an earlier node: TensorFlow's "_1", "_2" suffixes. */
static void unique_name(char (*used)[GNAME], int n_used, char *name, size_t len) {
  char base[GNAME];
  snprintf(base, sizeof base, "%s", name);
  for (int k = 1;; k++) {
    bool clash = false;
    for (int i = 0; i < n_used && !clash; i++) clash = !strcmp(used[i], name);
    if (!clash) return;
    snprintf(name, len, "%.150s_%d", base, k);
  }
}

static void write_op_graph(tensorboard *tb) {
  const lm_model *m = tb->cb.model;
  const lm_program *p = m && m->compiled ? m->compiled->train : NULL;
  if (!p || !p->g) return;
  const lm_graph *g = p->g;
  graph_writer gw = {0};
  int n_nodes = 0;
  gw.names = lm__calloc((size_t)g->n_vals + 1, sizeof *gw.names);
  gw.op_names = lm__calloc((size_t)(g->n_vals + g->n_ops) + 1, sizeof *gw.op_names);
  if (!gw.names || !gw.op_names) goto done;
  /* Inputs, targets and weights first: they feed the ops. */
  for (int v = 0; v < g->n_vals; v++) {
    const lm_value *val = &g->vals[v];
    char name[GNAME] = "";
    const char *op = "Placeholder";
    if (val->kind == LM_VALUE_PARAM && val->weight) {
      snprintf(name, sizeof name, "%.70s/%.70s", val->weight->owner->name, val->weight->name);
      op = "VarHandleOp";
    } else if (val->kind == LM_VALUE_INPUT) {
      for (int i = 0; i < p->n_in; i++)
        if (p->in[i] == v) snprintf(name, sizeof name, "%.150s", m->inputs[i]->node->layer->name);
    } else if (val->kind == LM_VALUE_TARGET) {
      for (int o = 0; o < p->n_out; o++)
        if (p->target[o] == v) snprintf(name, sizeof name, "targets/%.140s", m->outputs[o]->node->layer->name);
    }
    if (val->kind == LM_VALUE_TEMP) continue;
    if (!name[0]) snprintf(name, sizeof name, "value_%d", v);
    unique_name(gw.op_names, n_nodes, name, sizeof name);
    snprintf(gw.op_names[n_nodes++], sizeof gw.op_names[0], "%s", name);
    snprintf(gw.names[v], sizeof gw.names[0], "%s", name);
    put_node(&gw, name, op, NULL, 0, g, &v, 1);
  }
  for (int i = 0; i < g->n_ops; i++) {
    const lm_opnode *op = &g->ops[i];
    char name[GNAME], type[64];
    const char *scope = op->who ? op->who : "graph";
    /* An op with a fused activation shows both, as TensorFlow's _FusedMatMul does. */
    lm_activation fused = op->def->fuses_activation ? (lm_activation)op->a.i[7] : LM_ACTIVATION_DEFAULT;
    if (fused != LM_ACTIVATION_DEFAULT && fused != LM_LINEAR)
      snprintf(type, sizeof type, "%.30s_%.30s", op->def->name, lm_activation_name(fused));
    else snprintf(type, sizeof type, "%.60s", op->def->name);
    if (op->def == &lm__op_loss) snprintf(name, sizeof name, "loss/%.140s", scope);
    else if (op->def == &lm__op_weighted_sum) snprintf(name, sizeof name, "loss/total");
    else snprintf(name, sizeof name, "%.100s/%.60s", scope, type);
    unique_name(gw.op_names, n_nodes, name, sizeof name);
    snprintf(gw.op_names[n_nodes++], sizeof gw.op_names[0], "%s", name);
    const char *inputs[LM_MAX_OP_IO];
    for (int k = 0; k < op->n_in; k++) inputs[k] = gw.names[op->in[k]];
    for (int k = 0; k < op->n_out; k++) {
      if (k) snprintf(gw.names[op->out[k]], sizeof gw.names[0], "%.150s:%d", name, k);
      else snprintf(gw.names[op->out[k]], sizeof gw.names[0], "%s", name);
    }
    put_node(&gw, name, type, inputs, op->n_in, g, op->out, op->n_out);
  }
  gw.value.len = 0;
  lm__pb_uint(&gw.value, 1, 27); /* VersionDef.producer, as a TF 1.x-era graph */
  lm__pb_message(&gw.graph, 4, &gw.value);
  lm_summary_writer *w = writer(tb, false);
  if (w && lm__summary_write_graph(w, 0, &gw.graph)) fail(tb);
done:
  free(gw.names);
  free(gw.op_names);
  lm__pb_free(&gw.graph);
  lm__pb_free(&gw.node);
  lm__pb_free(&gw.attr);
  lm__pb_free(&gw.value);
  lm__pb_free(&gw.list);
  lm__pb_free(&gw.shape);
  lm__pb_free(&gw.dim);
}

/* ---- Embeddings: the Projector's config and the matrices it points to ---- */
static bool is_embedding(const lm_layer *layer) { return !strcmp(layer->vt->class_name, "Embedding"); }

/* A layer name as a file name: anything but [A-Za-z0-9._-] becomes '_'. */
static void file_safe(char *dst, size_t len, const char *name) {
  size_t i = 0;
  for (; name[i] && i + 1 < len; i++) {
    char c = name[i];
    dst[i] = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '-' ? c : '_';
  }
  dst[i] = '\0';
}

static void pbtxt_raw(lm_json *j, const char *s) { lm__json_raw(j, s, strlen(s)); }

/* text_format's string escaping: C escapes, bytes outside printable ASCII in octal. */
static void pbtxt_string(lm_json *j, const char *s) {
  char e[8];
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    switch (*p) {
    case '\n': pbtxt_raw(j, "\\n"); break;
    case '\r': pbtxt_raw(j, "\\r"); break;
    case '\t': pbtxt_raw(j, "\\t"); break;
    case '"': pbtxt_raw(j, "\\\""); break;
    case '\'': pbtxt_raw(j, "\\'"); break;
    case '\\': pbtxt_raw(j, "\\\\"); break;
    default:
      if (*p < 0x20 || *p >= 0x7f) {
        snprintf(e, sizeof e, "\\%03o", *p);
        pbtxt_raw(j, e);
      } else lm__json_raw(j, (const char *)p, 1);
    }
  }
}

static void pbtxt_field(lm_json *j, const char *name, const char *value) {
  pbtxt_raw(j, "  ");
  pbtxt_raw(j, name);
  pbtxt_raw(j, ": \"");
  pbtxt_string(j, value);
  pbtxt_raw(j, "\"\n");
}

static const char *metadata_for(const tensorboard *tb, const char *layer_name) {
  if (!tb->metadata.by_name) return tb->metadata.n ? tb->metadata.item[0] : NULL;
  for (int i = 0; i < tb->metadata.n; i++)
    if (!strcmp(tb->metadata.item[2 * i], layer_name)) return tb->metadata.item[2 * i + 1];
  return NULL;
}

static void tsv_path(const tensorboard *tb, const lm_layer *layer, char *rel, size_t rel_len, char *abs, size_t abs_len) {
  char safe[160];
  file_safe(safe, sizeof safe, layer->name);
  snprintf(rel, rel_len, "train/%s_embeddings.tsv", safe);
  snprintf(abs, abs_len, "%s/%s", tb->log_dir, rel);
}

/* Keras's _configure_embeddings: one entry per Embedding layer of model.layers. */
static void configure_embeddings(tensorboard *tb) {
  const lm_model *m = tb->cb.model;
  /* Keras refuses metadata for layer names that are not Embedding layers. */
  char unknown[512] = "";
  size_t used = 0;
  for (int i = 0; tb->metadata.by_name && i < tb->metadata.n; i++) {
    const lm_layer *layer = lm_model_layer_by_name(m, tb->metadata.item[2 * i]);
    if (!layer || !is_embedding(layer))
      used += (size_t)snprintf(unknown + used, used < sizeof unknown ? sizeof unknown - used : 0, "%s'%s'",
                               used ? ", " : "", tb->metadata.item[2 * i]);
  }
  if (used) {
    lm__fail(NULL, LM_ERROR_VALUE,
             "Unrecognized `Embedding` layer names passed to `keras.callbacks.TensorBoard` `embeddings_metadata` "
             "argument: dict_keys([%s])",
             unknown);
    fail(tb);
    return;
  }
  lm_json text = {0};
  for (int i = 0; i < m->n_layers; i++) {
    const lm_layer *layer = m->layers[i];
    if (!is_embedding(layer) || layer->n_weights < 1) continue;
    char rel[256], abs[1024], name[320];
    tsv_path(tb, layer, rel, sizeof rel, abs, sizeof abs);
    snprintf(name, sizeof name, "%s/%s", layer->name, layer->weights[0]->name);
    pbtxt_raw(&text, "embeddings {\n");
    pbtxt_field(&text, "tensor_name", name);
    const char *meta = metadata_for(tb, layer->name);
    if (meta) pbtxt_field(&text, "metadata_path", meta);
    pbtxt_field(&text, "tensor_path", rel);
    pbtxt_raw(&text, "}\n");
  }
  char path[1024];
  snprintf(path, sizeof path, "%s/projector_config.pbtxt", tb->log_dir);
  if (text.failed) fail(tb);
  else if (lm__make_dirs(tb->log_dir) || lm__write_file_atomic(path, text.buf ? text.buf : "", text.len)) {
    lm__fail(NULL, LM_ERROR_IO, "TensorBoard: cannot write '%s': %s", path, strerror(errno));
    fail(tb);
  }
  free(text.buf);
}

/* The matrix of each Embedding layer as TSV, one row per index, where the config says. */
static void log_embeddings(tensorboard *tb) {
  const lm_model *m = tb->cb.model;
  for (int i = 0; i < m->n_layers && !tb->failed; i++) {
    const lm_layer *layer = m->layers[i];
    if (!is_embedding(layer) || layer->n_weights < 1) continue;
    const lm_array *a = layer->weights[0]->value;
    int64_t cols = a->shape.rank >= 2 ? a->shape.dim[a->shape.rank - 1] : a->size, rows = cols ? a->size / cols : 0;
    char rel[256], abs[1024];
    tsv_path(tb, layer, rel, sizeof rel, abs, sizeof abs);
    lm_json text = {0};
    char num[32];
    for (int64_t r = 0; r < rows; r++)
      for (int64_t c = 0; c < cols; c++) {
        snprintf(num, sizeof num, "%.9g%s", (double)lm_array_f32(a)[r * cols + c], c + 1 < cols ? "\t" : "\n");
        pbtxt_raw(&text, num);
      }
    if (text.failed) fail(tb);
    else if (lm__make_dirs(tb->train_dir) || lm__write_file_atomic(abs, text.buf ? text.buf : "", text.len)) {
      lm__fail(NULL, LM_ERROR_IO, "TensorBoard: cannot write '%s': %s", abs, strerror(errno));
      fail(tb);
    }
    free(text.buf);
  }
}

/* ---- Weights ---- */
/* Keras's weight.path: "<layer>/<weight>", with the recurrent cell between them
 * ("lstm/lstm_cell/kernel"); a Bidirectional wrapper's weights are named
 * "forward_<layer>/<weight>" here, and their cell is told by the gates of the matching
 * recurrent kernel (4 LSTM, 3 GRU, 1 SimpleRNN). */
static const char *cell_of_class(const char *cls) {
  return !strcmp(cls, "LSTM") ? "lstm_cell" : !strcmp(cls, "GRU") ? "gru_cell" : !strcmp(cls, "SimpleRNN") ? "simple_rnn_cell" : NULL;
}

static void weight_path(const lm_weight *w, char *out, size_t len) {
  const lm_layer *owner = w->owner;
  const char *cell = cell_of_class(owner->vt->class_name);
  const char *slash = strrchr(w->name, '/');
  if (!cell && slash && !strcmp(owner->vt->class_name, "Bidirectional")) {
    size_t prefix = (size_t)(slash - w->name);
    for (int i = 0; i < owner->n_weights; i++) {
      const lm_weight *v = owner->weights[i];
      if (strncmp(v->name, w->name, prefix) || strcmp(v->name + prefix, "/recurrent_kernel")) continue;
      lm_shape s = v->value->shape;
      int64_t gates = s.rank == 2 && s.dim[0] ? s.dim[1] / s.dim[0] : 0;
      cell = gates == 4 ? "lstm_cell" : gates == 3 ? "gru_cell" : gates == 1 ? "simple_rnn_cell" : NULL;
    }
    if (cell) {
      snprintf(out, len, "%s/%.*s/%s/%s", owner->name, (int)prefix, w->name, cell, slash + 1);
      return;
    }
  }
  if (cell) snprintf(out, len, "%s/%s/%s", owner->name, cell, w->name);
  else snprintf(out, len, "%s/%s", owner->name, w->name);
}

/* Keras's _log_weight_as_image: squeeze; a vector is one column image (n x 1); a matrix is
 * one image with its longer side across; a 3-D kernel (channels last) is one image per
 * output channel; a 4-D one is taken as images when its last dim is 1, 3 or 4. Values
 * become bytes as tf.summary.image converts floats: clamp(v * 255.5) truncated. At most 3
 * images, tf.summary.image's max_outputs. */
static void weight_image(tensorboard *tb, lm_summary_writer *w, const char *tag, int64_t step, const lm_array *a) {
  int64_t d[LM_MAX_RANK];
  int r = 0;
  for (int i = 0; i < a->shape.rank; i++)
    if (a->shape.dim[i] != 1) d[r++] = a->shape.dim[i];
  int64_t n, h, wd, c;
  bool transpose = false, channels_first = false;
  if (r == 1) n = 1, h = d[0], wd = 1, c = 1;
  else if (r == 2) {
    transpose = d[0] > d[1];
    n = 1, h = transpose ? d[1] : d[0], wd = transpose ? d[0] : d[1], c = 1;
  } else if (r == 3) n = d[2], h = d[0], wd = d[1], c = 1, channels_first = true;
  else if (r == 4 && (d[3] == 1 || d[3] == 3 || d[3] == 4)) n = d[0], h = d[1], wd = d[2], c = d[3];
  else return;
  if (n > 3) n = 3;
  if (h > 4096 || wd > 4096) return; /* not an image anyone can look at */
  uint8_t *px = lm__calloc((size_t)(n * h * wd * c), 1);
  if (!px) return;
  const float *v = lm_array_f32(a);
  for (int64_t k = 0; k < n; k++)
    for (int64_t y = 0; y < h; y++)
      for (int64_t x = 0; x < wd; x++)
        for (int64_t ch = 0; ch < c; ch++) {
          int64_t src = channels_first ? (y * wd + x) * d[2] + k           /* (h, w, n) -> image k */
                        : transpose    ? x * h + y                         /* (w, h) read across */
                                       : ((k * h + y) * wd + x) * c + ch;
          double s = v[src] * 255.5;
          px[((k * h + y) * wd + x) * c + ch] = (uint8_t)(s <= 0 ? 0 : s >= 255 ? 255 : s);
        }
  if (lm__summary_images(w, tag, step, px, (int)n, (int)h, (int)wd, (int)c)) fail(tb);
  free(px);
}

typedef struct weight_log {
  tensorboard *tb;
  lm_summary_writer *w;
  int64_t step;
} weight_log;

static void log_weight(lm_weight *weight, void *ctx) {
  weight_log *wl = ctx;
  if (wl->tb->failed) return;
  char path[300], tag[320];
  weight_path(weight, path, sizeof path);
  snprintf(tag, sizeof tag, "%s/histogram", path);
  if (lm_summary_histogram(wl->w, tag, wl->step, lm_array_f32(weight->value), weight->value->size)) {
    fail(wl->tb);
    return;
  }
  if (wl->tb->write_images) {
    snprintf(tag, sizeof tag, "%s/image", path);
    weight_image(wl->tb, wl->w, tag, wl->step, weight->value);
  }
}

static void log_weights(tensorboard *tb, int epoch) {
  weight_log wl = {tb, writer(tb, false), epoch};
  const lm_model *m = tb->cb.model;
  for (int i = 0; wl.w && i < m->n_layers && !tb->failed; i++) lm__layer_visit_weights(m->layers[i], log_weight, &wl);
}

/* ---- Hooks ---- */
static void tb_train_begin(lm_callback *cb, const lm_logs *logs) {
  tensorboard *tb = cb->user;
  /* Keras's set_model: fresh writers (new event files) for each fit. */
  close_writers(tb);
  tb->failed = false;
  tb->global_train_batch = 0;
  if (!cb->model) return;
  /* Made now rather than at the first write, so that a log directory that cannot be
   * created stops training before it starts. */
  if (!writer(tb, false)) return;
  tb->write_op_graph = tb->write_graph;
  if (tb->write_graph) write_model_json(tb);
  if (tb->embeddings_freq && !tb->failed) configure_embeddings(tb);
}

static void tb_train_end(lm_callback *cb, const lm_logs *logs) { close_writers(cb->user); }

static void tb_test_end(lm_callback *cb, const lm_logs *logs) {
  tensorboard *tb = cb->user;
  if (tb->failed || !cb->model || !cb->model->compiled) return;
  int64_t step = iterations(cb->model);
  for (int i = 0; i < lm_logs_count(logs); i++)
    scalar(tb, true, "evaluation_", lm_logs_key(logs, i), "_vs_iterations", step, lm_logs_value(logs, i));
}

static void tb_train_batch_begin(lm_callback *cb, int batch, const lm_logs *logs) {
  tensorboard *tb = cb->user;
  tb->global_train_batch++;
  if (tb->write_steps_per_second) tb->batch_start = now_seconds();
}

static void tb_train_batch_end(lm_callback *cb, int batch, const lm_logs *logs) {
  tensorboard *tb = cb->user;
  if (tb->write_op_graph && !tb->failed) {
    tb->write_op_graph = false;
    write_op_graph(tb);
  }
  /* With update_freq "epoch" Keras has no default writer at batch level: nothing is written. */
  if (tb->failed || !tb->update_freq || tb->global_train_batch % tb->update_freq) return;
  int64_t step = tb->global_train_batch;
  if (tb->write_steps_per_second) {
    double dt = now_seconds() - tb->batch_start;
    scalar(tb, false, "batch_", "steps_per_second", "", step, dt > 0 ? 1.0 / dt : 0.0);
  }
  for (int i = 0; i < lm_logs_count(logs); i++)
    scalar(tb, false, "batch_", lm_logs_key(logs, i), "", step, lm_logs_value(logs, i));
}

static void tb_test_batch_begin(lm_callback *cb, int batch, const lm_logs *logs) {
  ((tensorboard *)cb->user)->global_test_batch++;
}

static void tb_epoch_begin(lm_callback *cb, int epoch, const lm_logs *logs) {
  tensorboard *tb = cb->user;
  if (!tb->write_steps_per_second) return;
  tb->epoch_start_iterations = iterations(cb->model);
  tb->epoch_start = now_seconds();
}

static void tb_epoch_end(lm_callback *cb, int epoch, const lm_logs *logs) {
  tensorboard *tb = cb->user;
  if (tb->failed || !cb->model) return;
  /* Keras's _log_epoch_metrics: training keys and the learning rate in train/, val_ keys
   * without their prefix in validation/. */
  bool lr_seen = false;
  double lr = (float)lm_model_learning_rate(cb->model);
  int n = lm_logs_count(logs);
  for (int i = 0; i < n; i++) {
    const char *key = lm_logs_key(logs, i);
    if (!strncmp(key, "val_", 4)) continue;
    bool is_lr = !strcmp(key, "learning_rate");
    lr_seen |= is_lr;
    scalar(tb, false, "epoch_", key, "", epoch, is_lr ? lr : lm_logs_value(logs, i));
  }
  if (!lr_seen && cb->model->compiled) scalar(tb, false, "epoch_", "learning_rate", "", epoch, lr);
  if (tb->write_steps_per_second) {
    double dt = now_seconds() - tb->epoch_start;
    double steps = (double)(iterations(cb->model) - tb->epoch_start_iterations);
    scalar(tb, false, "epoch_", "steps_per_second", "", epoch, dt > 0 ? steps / dt : 0.0);
  }
  for (int i = 0; i < n; i++) {
    const char *key = lm_logs_key(logs, i);
    if (!strncmp(key, "val_", 4)) scalar(tb, true, "epoch_", key + 4, "", epoch, lm_logs_value(logs, i));
  }
  if (tb->histogram_freq && epoch % tb->histogram_freq == 0 && !tb->failed) log_weights(tb, epoch);
  if (tb->embeddings_freq && epoch % tb->embeddings_freq == 0 && !tb->failed) log_embeddings(tb);
}

static void tb_free(lm_callback *cb) {
  tensorboard *tb = cb->user;
  close_writers(tb);
  free(tb->log_dir);
  free(tb->train_dir);
  free(tb->val_dir);
  for (int i = 0; i < 2 * LM_MAX_OUTPUTS; i++) free((char *)tb->metadata.item[i]);
  free(tb);
}

static char *join_path(const char *dir, const char *name) {
  size_t n = strlen(dir) + strlen(name) + 2;
  char *p = lm__calloc(n, 1);
  if (p) snprintf(p, n, "%s/%s", dir, name);
  return p;
}

lm_callback *lm_tensorboard_new(lm_tensorboard_opts o) {
  if (o.histogram_freq < 0 || o.update_freq < 0 || o.embeddings_freq < 0) {
    lm__fail(NULL, LM_ERROR_VALUE, "TensorBoard: frequencies must be 0 or positive, got histogram_freq %d, "
             "update_freq %d, embeddings_freq %d", o.histogram_freq, o.update_freq, o.embeddings_freq);
    return NULL;
  }
  int n_meta = o.embeddings_metadata.by_name ? 2 * o.embeddings_metadata.n : o.embeddings_metadata.n;
  if (n_meta < 0 || n_meta > 2 * LM_MAX_OUTPUTS || (!o.embeddings_metadata.by_name && n_meta > 1)) {
    lm__fail(NULL, LM_ERROR_VALUE,
             "TensorBoard: embeddings_metadata takes one file (LM_METADATA_FILE) or up to %d layer names and files "
             "(LM_METADATA_DICT), got %d entries",
             LM_MAX_OUTPUTS, o.embeddings_metadata.n);
    return NULL;
  }
  for (int i = 0; i < n_meta; i++)
    if (!o.embeddings_metadata.item[i]) {
      lm__fail(NULL, LM_ERROR_VALUE, "TensorBoard: embeddings_metadata entry %d is NULL", i);
      return NULL;
    }
  tensorboard *tb = lm__calloc(1, sizeof *tb);
  if (!tb) return NULL;
  const char *dir = o.log_dir && *o.log_dir ? o.log_dir : "logs";
  tb->log_dir = lm__strdup(dir);
  tb->train_dir = join_path(dir, "train");
  tb->val_dir = join_path(dir, "validation");
  tb->histogram_freq = o.histogram_freq;
  tb->update_freq = o.update_freq;
  tb->embeddings_freq = o.embeddings_freq;
  tb->write_graph = !o.no_graph;
  tb->write_images = o.write_images;
  tb->write_steps_per_second = o.write_steps_per_second;
  tb->metadata.n = o.embeddings_metadata.n;
  tb->metadata.by_name = o.embeddings_metadata.by_name;
  bool ok = tb->log_dir && tb->train_dir && tb->val_dir;
  for (int i = 0; i < n_meta; i++) ok &= (tb->metadata.item[i] = lm__strdup(o.embeddings_metadata.item[i])) != NULL;
  tb->cb = (lm_callback){.on_train_begin = tb_train_begin,
                         .on_train_end = tb_train_end,
                         .on_epoch_begin = tb_epoch_begin,
                         .on_epoch_end = tb_epoch_end,
                         .on_train_batch_begin = tb_train_batch_begin,
                         .on_train_batch_end = tb_train_batch_end,
                         .on_test_end = tb_test_end,
                         .on_test_batch_begin = tb_test_batch_begin,
                         .free = tb_free,
                         .user = tb};
  if (!ok) {
    tb_free(&tb->cb);
    return NULL;
  }
  return &tb->cb;
}
