/* keras.utils.model_to_dot / plot_model: the layer graph as Graphviz DOT, rendered with
 * Graphviz's C library. Labels, clusters and edges follow Keras 3's model_visualization.py. */
#include "model/internal.h"
#include <errno.h>
#include <graphviz/cgraph.h>
#include <graphviz/gvc.h>
#include <lamina/plot.h>
#include <pthread.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- A growing string ---- */
typedef struct sbuf {
  char *s;
  size_t len, cap;
  bool oom;
} sbuf;

static void sb_put(sbuf *b, const char *s, size_t n) {
  if (b->oom) return;
  if (b->len + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 1024;
    while (b->len + n + 1 > cap) cap *= 2;
    char *p = lm__realloc(b->s, cap);
    if (!p) {
      b->oom = true;
      return;
    }
    b->s = p;
    b->cap = cap;
  }
  memcpy(b->s + b->len, s, n);
  b->len += n;
  b->s[b->len] = 0;
}

static void sb_str(sbuf *b, const char *s) { sb_put(b, s, strlen(s)); }

LM_PRINTF(2, 3) static void sb_fmt(sbuf *b, const char *fmt, ...) {
  char tmp[512];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
  va_end(ap);
  if (n < 0) return;
  if ((size_t)n < sizeof tmp) {
    sb_put(b, tmp, (size_t)n);
    return;
  }
  char *big = lm__calloc((size_t)n + 1, 1);
  if (!big) {
    b->oom = true;
    return;
  }
  va_start(ap, fmt);
  vsnprintf(big, (size_t)n + 1, fmt, ap);
  va_end(ap);
  sb_put(b, big, (size_t)n);
  free(big);
}

/* Layer names go inside HTML-like labels, where &, < and > would break the table. */
static void sb_html(sbuf *b, const char *s) {
  for (; *s; s++) {
    switch (*s) {
    case '&': sb_str(b, "&amp;"); break;
    case '<': sb_str(b, "&lt;"); break;
    case '>': sb_str(b, "&gt;"); break;
    case '"': sb_str(b, "&quot;"); break;
    default: sb_put(b, s, 1);
    }
  }
}

/* A DOT ID: bare when it is a plain identifier and not a DOT keyword (as pydot leaves
 * it), quoted otherwise. */
static void sb_id(sbuf *b, const char *prefix, const char *s) {
  static const char *const keywords[] = {"node", "edge", "graph", "digraph", "subgraph", "strict"};
  int plain = !(*prefix == 0 && (*s == 0 || (*s >= '0' && *s <= '9')));
  for (size_t k = 0; k < sizeof keywords / sizeof *keywords && plain && !*prefix; k++) plain = strcasecmp(s, keywords[k]);
  for (const char *p = s; *p && plain; p++)
    plain = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '_';
  if (plain) {
    sb_str(b, prefix);
    sb_str(b, s);
    return;
  }
  sb_str(b, "\"");
  sb_str(b, prefix);
  for (; *s; s++) {
    if (*s == '"' || *s == '\\') sb_str(b, "\\");
    sb_put(b, s, 1);
  }
  sb_str(b, "\"");
}

/* ---- The graph ---- */
typedef struct edge {
  int src, dst;
} edge;

typedef struct dot_ctx {
  lm_plot_opts opts;
  const lm_layer **ids; /* node id i + 1 is layer ids[i] (Keras uses id(layer)) */
  int n_ids, cap_ids;
  bool oom;
} dot_ctx;

static int layer_id(dot_ctx *c, const lm_layer *layer) {
  for (int i = 0; i < c->n_ids; i++)
    if (c->ids[i] == layer) return i + 1;
  if (lm__grow(&c->ids, &c->cap_ids, c->n_ids + 1, sizeof *c->ids)) {
    c->oom = true;
    return 0;
  }
  c->ids[c->n_ids++] = layer;
  return c->n_ids;
}

static bool has_weights(const lm_layer *layer) {
  if (!layer->model) return layer->n_weights > 0;
  for (int i = 0; i < layer->model->n_layers; i++)
    if (has_weights(layer->model->layers[i])) return true;
  return false;
}

/* Keras's get_layer_activation_name: the activation function's __name__. */
static const char *activation_name(const lm_layer *layer) {
  /* Keras's Bidirectional wrapper has no activation attribute, so no row. */
  if (!layer->activation || !strcmp(layer->vt->class_name, "Bidirectional")) return NULL;
  if (layer->activation == LM_SWISH) return "silu"; /* keras.activations.swish is silu */
  return lm_activation_name(layer->activation);
}

/* Keras formats one tensor's shape as a tuple and several as a list of tuples. */
static void sb_shapes(sbuf *b, lm_tensor *const *t, int n) {
  char shape[160];
  if (n != 1) sb_str(b, "[");
  for (int i = 0; i < n; i++) {
    if (i) sb_str(b, ", ");
    sb_str(b, lm_shape_format(t[i]->shape, shape, sizeof shape));
  }
  if (n != 1) sb_str(b, "]");
}

static void sb_dtypes(sbuf *b, lm_tensor *const *t, int n) {
  if (n != 1) sb_str(b, "[");
  for (int i = 0; i < n; i++) {
    const char *name = t[i]->dtype == LM_INT32 ? "int32" : "float32";
    if (n != 1) sb_fmt(b, "%s'%s'", i ? ", " : "", name);
    else sb_str(b, name);
  }
  if (n != 1) sb_str(b, "]");
}

/* Keras's layer.input / layer.output: the tensors of the first call, or for a model those
 * of its own graph (Keras gives a functional model a node of its inputs and outputs). */
static bool layer_io(const lm_layer *layer, lm_tensor *const **in, int *n_in, lm_tensor *const **out, int *n_out) {
  if (layer->model) {
    *in = layer->model->inputs, *n_in = layer->model->n_inputs;
    *out = layer->model->outputs, *n_out = layer->model->n_outputs;
    return layer->model->n_outputs > 0;
  }
  if (!layer->n_nodes) return false;
  *in = layer->nodes[0]->inputs, *n_in = layer->nodes[0]->n_in;
  *out = layer->nodes[0]->outputs, *n_out = layer->nodes[0]->n_out;
  return true;
}

static const char *const cell = "<td bgcolor=\"white\"><font point-size=\"14\">";

static void make_label(sbuf *b, const lm_layer *layer, const lm_plot_opts *o) {
  const char *cls = layer->vt->class_name;
  int colspan = (o->show_dtype ? 1 : 0) + (o->show_trainable ? 1 : 0) + (o->show_shapes ? 2 : 0);
  if (colspan < 1) colspan = 1;
  sb_str(b, "<<table border=\"0\" cellborder=\"1\" bgcolor=\"black\" cellpadding=\"10\">");
  sb_fmt(b, "<tr><td colspan=\"%d\" bgcolor=\"black\"><font point-size=\"16\" color=\"white\">", colspan);
  if (!o->no_layer_names) {
    sb_str(b, "<b>");
    sb_html(b, layer->name);
    sb_fmt(b, "</b> (%s)", cls);
  } else {
    sb_fmt(b, "<b>%s</b>", cls);
  }
  sb_str(b, "</font></td></tr>");
  const char *act = activation_name(layer);
  if (o->show_layer_activations && act)
    sb_fmt(b,
           "<tr><td bgcolor=\"white\" colspan=\"%d\"><font point-size=\"14\">Activation: <b>%s</b></font></td></tr>",
           colspan, act);

  lm_tensor *const *in = NULL, *const *out = NULL;
  int n_in = 0, n_out = 0;
  bool known = layer_io(layer, &in, &n_in, &out, &n_out);
  sbuf cols = {0};
  if (o->show_shapes) {
    if (strcmp(cls, "InputLayer")) {
      sb_str(&cols, cell);
      sb_str(&cols, "Input shape: <b>");
      if (known) sb_shapes(&cols, in, n_in);
      else sb_str(&cols, "?");
      sb_str(&cols, "</b></font></td>");
    }
    sb_str(&cols, cell);
    sb_str(&cols, "Output shape: <b>");
    if (known) sb_shapes(&cols, out, n_out);
    else sb_str(&cols, "?");
    sb_str(&cols, "</b></font></td>");
  }
  if (o->show_dtype) {
    sb_str(&cols, cell);
    sb_str(&cols, "Output dtype: <b>");
    if (known) sb_dtypes(&cols, out, n_out);
    else sb_str(&cols, "?");
    sb_str(&cols, "</b></font></td>");
  }
  if (o->show_trainable && has_weights(layer)) {
    if (layer->trainable)
      sb_str(&cols, "<td bgcolor=\"forestgreen\"><font point-size=\"14\" color=\"white\"><b>Trainable</b></font></td>");
    else
      sb_str(&cols,
             "<td bgcolor=\"firebrick\"><font point-size=\"14\" color=\"white\"><b>Non-trainable</b></font></td>");
  }
  if (cols.oom) b->oom = true;
  if (cols.len) {
    sb_str(b, "<tr>");
    sb_str(b, cols.s);
    sb_str(b, "</tr>");
  }
  free(cols.s);
  sb_str(b, "</table>>");
}

static void make_node(dot_ctx *c, sbuf *b, const lm_layer *layer) {
  sb_fmt(b, "%d [label=", layer_id(c, layer));
  make_label(b, layer, &c->opts);
  sb_str(b, ", fontname=Helvetica, border=0, margin=0];\n");
}

/* pydot's get_edge check: an edge is added once per graph (clusters keep their own). */
static void add_edge(dot_ctx *c, sbuf *b, edge **edges, int *n, int *cap, const lm_layer *src, const lm_layer *dst) {
  int s = layer_id(c, src), d = layer_id(c, dst);
  for (int i = 0; i < *n; i++)
    if ((*edges)[i].src == s && (*edges)[i].dst == d) return;
  if (lm__grow(edges, cap, *n + 1, sizeof **edges)) {
    c->oom = true;
    return;
  }
  (*edges)[(*n)++] = (edge){s, d};
  sb_fmt(b, "%d -> %d [penwidth=2];\n", s, d);
}

static bool node_in_model(const lm_model *model, const lm_node *node) {
  for (int i = 0; i < model->n_nodes; i++)
    if (model->nodes[i] == node) return true;
  return false;
}

static void model_dot(dot_ctx *c, sbuf *b, const lm_model *model, bool subgraph) {
  const lm_plot_opts *o = &c->opts;
  if (subgraph) {
    sb_str(b, "subgraph ");
    sb_id(b, "cluster_", model->base.name);
    sb_str(b, " {\nstyle=dashed;\nlabel=");
    sb_id(b, "", model->base.name);
    sb_str(b, ";\nlabeljust=l;\n");
  } else {
    sb_fmt(b, "digraph G {\nrankdir=%s;\nconcentrate=true;\ndpi=%d;\nsplines=%s;\nnode [shape=record];\n",
           o->rankdir, o->dpi, o->splines);
  }
  for (int i = 0; i < model->n_layers; i++) {
    const lm_layer *layer = model->layers[i];
    if (o->expand_nested && layer->model) model_dot(c, b, layer->model, true);
    else make_node(c, b, layer);
  }

  edge *edges = NULL;
  int n_edges = 0, cap_edges = 0;
  if (model->sequential && !o->expand_nested) {
    for (int i = 0; i + 1 < model->n_layers; i++)
      add_edge(c, b, &edges, &n_edges, &cap_edges, model->layers[i], model->layers[i + 1]);
  } else {
    /* An expanded Sequential has no InputLayer box: its first layer's edge comes from
     * outside, drawn by the enclosing graph. */
    for (int i = model->sequential ? 1 : 0; i < model->n_layers; i++) {
      const lm_layer *layer = model->layers[i];
      for (int k = 0; k < layer->n_nodes; k++) {
        const lm_node *node = layer->nodes[k];
        if (!node_in_model(model, node)) continue;
        for (int j = 0; j < node->n_in; j++) {
          const lm_tensor *t = node->inputs[j];
          const lm_layer *src = t->node->layer, *dst = layer;
          int out_index = t->index;
          if (o->expand_nested) {
            /* Into nested models: from the layer that makes the output, to the InputLayer
             * (or a Sequential's first layer) that takes the input. */
            while (src->model) {
              const lm_tensor *inner = src->model->outputs[out_index];
              src = inner->node->layer;
              out_index = inner->index;
            }
            while (dst->model) {
              if (dst->model->sequential) dst = dst->model->layers[0];
              else dst = dst->model->inputs[j < dst->model->n_inputs ? j : 0]->node->layer;
            }
          }
          add_edge(c, b, &edges, &n_edges, &cap_edges, src, dst);
        }
      }
    }
  }
  free(edges);
  sb_str(b, "}\n");
}

static bool one_of(const char *s, const char *const *options) {
  for (; *options; options++)
    if (!strcmp(s, *options)) return true;
  return false;
}

char *lm_model_to_dot_opts(const lm_model *model, lm_plot_opts opts) {
  if (!model) {
    lm__fail(NULL, LM_ERROR_VALUE, "model_to_dot: the model is NULL");
    return NULL;
  }
  if (model->base.err.code) {
    lm__fail(NULL, model->base.err.code, "model_to_dot: model \"%s\" could not be built: %s", model->base.name,
             model->base.err.msg);
    return NULL;
  }
  if (!model->n_outputs) {
    lm__fail(NULL, LM_ERROR_STATE, "model_to_dot: model \"%s\" has no layers yet", model->base.name);
    return NULL;
  }
  static const char *const rankdirs[] = {"TB", "LR", "BT", "RL", NULL};
  static const char *const splines[] = {"ortho", "curved", "polyline", "spline", "line", "true", "false", "none", NULL};
  if (!opts.rankdir) opts.rankdir = "TB";
  if (!opts.splines) opts.splines = "ortho";
  if (!opts.dpi) opts.dpi = 96;
  if (!one_of(opts.rankdir, rankdirs)) {
    lm__fail(NULL, LM_ERROR_VALUE, "model_to_dot: rankdir must be \"TB\", \"LR\", \"BT\" or \"RL\", got \"%s\"",
             opts.rankdir);
    return NULL;
  }
  if (!one_of(opts.splines, splines)) {
    lm__fail(NULL, LM_ERROR_VALUE,
             "model_to_dot: splines must be \"ortho\", \"curved\", \"polyline\", \"spline\" or \"line\", got \"%s\"",
             opts.splines);
    return NULL;
  }
  if (opts.dpi < 1 || opts.dpi > 2400) {
    lm__fail(NULL, LM_ERROR_VALUE, "model_to_dot: dpi must be in 1..2400, got %d", opts.dpi);
    return NULL;
  }
  dot_ctx c = {.opts = opts};
  sbuf b = {0};
  model_dot(&c, &b, model, false);
  free(c.ids);
  if (b.oom || c.oom) {
    free(b.s);
    lm__fail(NULL, LM_ERROR_MEMORY, "model_to_dot: out of memory");
    return NULL;
  }
  return b.s;
}

/* ---- Rendering ---- */

/* Graphviz reports through a global handler; the last message names what went wrong. */
static char gv_message[512];
static int gv_capture(char *msg) {
  size_t n = strlen(gv_message);
  if (n < sizeof gv_message - 1) snprintf(gv_message + n, sizeof gv_message - n, "%s", msg);
  return 0;
}

/* One Graphviz context for the process, never freed: Graphviz 2.42's pango plugin keeps a
 * pointer to a font name that gvFreeContext frees, and reads it in the next context.
 * Graphviz is not thread-safe, so renders take turns. */
static pthread_mutex_t gv_lock = PTHREAD_MUTEX_INITIALIZER;
static GVC_t *gv_context;

static lm_status render(const char *dot, const char *format, FILE *f, const char *path) {
  pthread_mutex_lock(&gv_lock);
  gv_message[0] = 0;
  agusererrf old = agseterrf(gv_capture);
  agerrlevel_t old_level = agseterr(AGERR); /* warnings (e.g. about ortho splines) are not failures */
  lm_status st = LM_OK;
  if (!gv_context) gv_context = gvContext();
  GVC_t *gvc = gv_context;
  Agraph_t *g = gvc ? agmemread(dot) : NULL;
  if (!gvc || !g) {
    st = lm__fail(NULL, LM_ERROR_VALUE, "plot_model: Graphviz could not read the graph for %s: %s", path,
                  gv_message[0] ? gv_message : "unknown error");
  } else if (gvLayout(gvc, g, "dot") != 0) {
    st = lm__fail(NULL, LM_ERROR_VALUE, "plot_model: Graphviz could not lay out the graph for %s: %s", path,
                  gv_message[0] ? gv_message : "the dot layout plugin is missing");
  } else {
    if (gvRender(gvc, g, format, f) != 0)
      st = lm__fail(NULL, LM_ERROR_IO, "plot_model: Graphviz could not render %s as %s: %s", path, format,
                    gv_message[0] ? gv_message : "no renderer for this format is installed");
    gvFreeLayout(gvc, g);
  }
  if (g) agclose(g);
  agseterr(old_level);
  agseterrf(old);
  pthread_mutex_unlock(&gv_lock);
  return st;
}

lm_status lm_plot_model_opts(const lm_model *model, const char *path, lm_plot_opts opts) {
  if (!path || !*path) return lm__fail(NULL, LM_ERROR_VALUE, "plot_model: the path is empty");
  const char *slash = strrchr(path, '/'), *dotp = strrchr(path, '.');
  const char *ext = dotp && (!slash || dotp > slash) ? dotp + 1 : "png";
  static const struct {
    const char *ext, *format;
  } formats[] = {{"png", "png"}, {"svg", "svg"}, {"pdf", "pdf"}, {"jpg", "jpg"}, {"jpeg", "jpg"},
                 {"gif", "gif"}, {"dot", "dot"}, {"gv", "dot"}, {"ps", "ps"}};
  const char *format = NULL;
  for (size_t i = 0; i < sizeof formats / sizeof *formats && !format; i++)
    if (!strcasecmp(ext, formats[i].ext)) format = formats[i].format;
  if (!format)
    return lm__fail(NULL, LM_ERROR_VALUE,
                    "plot_model: cannot tell the format of %s from its extension \".%s\" (use .png, .svg, .pdf, .jpg, "
                    ".gif or .dot)",
                    path, ext);
  char *dot = lm_model_to_dot_opts(model, opts);
  if (!dot) return lm__fail(NULL, LM_ERROR_VALUE, "plot_model: %s", lm_last_error());

  size_t n = strlen(path);
  char *tmp = lm__calloc(n + 16, 1);
  if (!tmp) {
    free(dot);
    return LM_ERROR_MEMORY;
  }
  snprintf(tmp, n + 16, "%s.tmp.XXXXXX", path);
  int fd = mkstemp(tmp);
  FILE *f = fd >= 0 ? fdopen(fd, "wb") : NULL;
  lm_status st;
  if (!f) {
    st = lm__fail(NULL, LM_ERROR_IO, "plot_model: cannot create %s: %s", path, strerror(errno));
    if (fd >= 0) close(fd);
  } else {
    st = render(dot, format, f, path);
    if (fflush(f) != 0 || ferror(f)) {
      if (st == LM_OK) st = lm__fail(NULL, LM_ERROR_IO, "plot_model: cannot write %s: %s", path, strerror(errno));
    }
    if (fclose(f) != 0 && st == LM_OK)
      st = lm__fail(NULL, LM_ERROR_IO, "plot_model: cannot write %s: %s", path, strerror(errno));
    /* mkstemp makes the file private; a plot is an ordinary file. */
    if (st == LM_OK) {
      mode_t mask = umask(0);
      umask(mask);
      chmod(tmp, 0666 & ~mask);
    }
    if (st == LM_OK && rename(tmp, path) != 0)
      st = lm__fail(NULL, LM_ERROR_IO, "plot_model: cannot rename %s to %s: %s", tmp, path, strerror(errno));
  }
  if (st != LM_OK && fd >= 0) unlink(tmp);
  free(tmp);
  free(dot);
  return st;
}
