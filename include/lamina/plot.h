/* lamina — looking at a model: summary tables and Graphviz plots.
 *
 * Ownership: lm_model_to_dot returns a string the caller frees with free(). */
#ifndef LAMINA_PLOT_H
#define LAMINA_PLOT_H

#include <lamina/model.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- Summary ---- */
typedef struct lm_summary_opts {
  int lm_opts_; /* keeps LM_OPTS() valid with no options; never set */
  /* Nested models are one row by default; expanded, their layers follow in a box of '|'
   * borders, as tf-keras's print_summary draws them. */
  bool expand_nested;
  bool show_trainable; /* a "Trainable" column of Y / N */
  int line_length;     /* 0: 65 for sequential-like models, 98 for graphs (+11 with show_trainable) */
  /* Column ends: fractions of line_length when the last is <= 1, else absolute columns;
   * 3 entries for sequential-like models, 4 for graphs (the Trainable column is added
   * after them). All zero: tf-keras's defaults. */
  double positions[4];
} lm_summary_opts;
/* model.summary(expand_nested=..., show_trainable=...) in tf-keras 2.11's layout;
 * lm_summary(model, out) is lm_summary_ex with no options. LM_ERROR_VALUE (and nothing
 * printed) for positions that do not fit the table. */
#define lm_summary_ex(...) lm_summary_ex_(__VA_ARGS__, )
#define lm_summary_ex_(model, out, ...) lm_summary_opts_((model), (out), LM_OPTS(lm_summary_opts, __VA_ARGS__))
LM_API lm_status lm_summary_opts_(const lm_model *model, FILE *out, lm_summary_opts opts);

/* ---- plot_model ---- */
typedef struct lm_plot_opts {
  int lm_opts_; /* keeps LM_OPTS() valid with no options; never set */
  bool show_shapes;            /* "Input shape" / "Output shape" cells */
  bool show_dtype;             /* an "Output dtype" cell */
  bool no_layer_names;         /* Keras show_layer_names=False: the class name alone */
  const char *rankdir;         /* "TB" (top to bottom); "LR", "BT", "RL" */
  bool expand_nested;          /* nested models as dashed clusters of their layers */
  int dpi;                     /* 96 */
  bool show_layer_activations; /* an "Activation" row for layers that apply one */
  bool show_trainable;         /* a green "Trainable" / red "Non-trainable" cell */
  const char *splines;         /* "ortho"; "curved", "polyline", "spline", "line" */
} lm_plot_opts;

/* keras.utils.model_to_dot as DOT text: one node per layer labelled with Keras's
 * HTML-like table, edges from each layer's inbound nodes in the model, nested models as
 * `subgraph cluster_<name>` (dashed) when expand_nested. Node ids are numbers given in
 * order of appearance (Keras uses Python object ids). NULL on failure (a model that could
 * not be built, a bad rankdir), with lm_last_error() saying why. */
#define lm_model_to_dot(...) lm_model_to_dot_(__VA_ARGS__, )
#define lm_model_to_dot_(model, ...) lm_model_to_dot_opts((model), LM_OPTS(lm_plot_opts, __VA_ARGS__))
LM_API char *lm_model_to_dot_opts(const lm_model *model, lm_plot_opts opts);

/* keras.utils.plot_model: renders the DOT above with Graphviz (libgvc) in the format
 * named by the path's extension: .png (also when there is none), .svg, .pdf, .jpg, .gif,
 * or .dot / .gv (Graphviz's laid-out DOT, as Keras writes it). The file is written under a
 * temporary name and renamed, so a failed plot leaves no partial file. Defaults follow
 * model_to_dot, with tf-keras's dpi of 96 (Keras 3 uses 200, and show_layer_names=False
 * in plot_model). Renders take turns (Graphviz is not thread-safe) in one Graphviz context
 * kept for the process; Graphviz 2.42 itself leaks a few kB per render, which
 * LeakSanitizer users may suppress with "leak:libgvc.so" (and libfontconfig, libglib). */
#define lm_plot_model(...) lm_plot_model_(__VA_ARGS__, )
#define lm_plot_model_(model, path, ...) lm_plot_model_opts((model), (path), LM_OPTS(lm_plot_opts, __VA_ARGS__))
LM_API lm_status lm_plot_model_opts(const lm_model *model, const char *path, lm_plot_opts opts);

#ifdef __cplusplus
}
#endif
#endif
