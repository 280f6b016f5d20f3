/* Internal structures of layers, symbolic tensors, nodes and models. */
#ifndef LAMINA_MODEL_INTERNAL_H
#define LAMINA_MODEL_INTERNAL_H

#include "graph/graph.h"
#include <lamina/lamina.h>

struct lm_weight {
  char name[64]; /* "kernel", "bias" */
  lm_array *value;
  bool trainable;
  lm_layer *owner;
};

typedef struct lm_node lm_node;
typedef struct lm_json lm_json; /* src/io/model_config.h */

typedef struct lm_layer_vt {
  const char *class_name; /* Keras's class name: "Dense" */
  const char *prefix;     /* automatic names: dense, dense_1, ... */
  /* Creates the weights on the first call, from the inputs' symbolic shapes. */
  lm_status (*build)(lm_layer *layer, const lm_shape *in, const lm_dtype *dtype, int n_in);
  /* Emits the ops of one call; writes output value ids, returns how many, or -1 with g->err. */
  int (*emit)(lm_layer *layer, lm_graph *g, const int *in, int n_in, int *out);
  void (*destroy)(lm_layer *layer);
  bool one_based; /* automatic names start at _1 (Keras's input_1) */
  int arity;      /* inputs a call takes; 0 for any number (merge layers, models) */
  bool passes_mask; /* outputs keep the first input's timestep mask (Keras supports_masking) */
  /* Writes the class's own fields of Keras's get_config(), after name, trainable and dtype
   * (src/io/model_config.h); NULL when it has none. */
  void (*get_config)(const lm_layer *layer, lm_json *j);
} lm_layer_vt;

struct lm_layer {
  const lm_layer_vt *vt;
  char name[128];
  bool trainable;
  bool built;
  lm_weight **weights;
  int n_weights, cap_weights;
  lm_node **nodes; /* inbound nodes, in call order (Keras's _inbound_nodes) */
  int n_nodes, cap_nodes;
  lm_activation activation; /* for layers that apply one, shown by plots */
  lm_model *model;          /* non-NULL when this layer is a model */
  lm_error err;
  lm_layer *session_next;
};

struct lm_node {
  lm_layer *layer;
  int index; /* position in layer->nodes */
  lm_tensor **inputs;
  int n_in;
  lm_tensor **outputs;
  int n_out;
};

struct lm_tensor {
  lm_shape shape; /* batch dim included */
  lm_dtype dtype;
  lm_node *node;  /* producer; NULL for a tensor that carries an error */
  int index;      /* which output of the node */
  lm_error err;
  lm_tensor *session_next;
};

typedef struct lm_compiled lm_compiled;

struct lm_model {
  lm_layer base; /* a model is a layer: base.model == this */
  lm_tensor **inputs;
  int n_inputs;
  lm_tensor **outputs;
  int n_outputs;
  lm_layer **layers; /* Keras's model.layers order */
  int n_layers;
  lm_node **nodes; /* the nodes to run, in execution order */
  int n_nodes;
  bool sequential;
  bool stop_training;
  int resume_epoch; /* set by BackupAndRestore at train begin: fit starts at this epoch */
  lm_compiled *compiled;
};

/* Layer construction: allocates `size` bytes (a struct starting with lm_layer), sets the
 * vtable and the user's name or the next automatic one, and registers it in the session. */
LM_INTERNAL lm_layer *lm__layer_new(size_t size, const lm_layer_vt *vt, const char *name);
/* Adds a weight filled by an initializer (default_kind used when init.kind is DEFAULT). */
LM_INTERNAL lm_weight *lm__layer_add_weight(lm_layer *layer, const char *name, lm_shape shape,
                                            lm_initializer init, lm_init_kind default_kind, bool trainable);
/* Caps the elements lm__layer_add_weight may allocate from now on, all weights together
 * (building from an untrusted config); -1 lifts the cap. Returns what was left of the
 * previous cap. */
LM_INTERNAL int64_t lm__set_weight_budget(int64_t elements);
/* Later automatic names skip the layer's name when it has their form (prefix or prefix_N):
 * layers loaded from a config keep their names, and new ones must not repeat them. */
LM_INTERNAL void lm__session_reserve_name(const lm_layer *layer);
LM_INTERNAL void lm__init_fill(lm_initializer init, lm_init_kind default_kind, lm_array *a);
LM_INTERNAL lm_array *lm__weight_array(lm_weight *w);
LM_INTERNAL bool lm__weight_trainable(const lm_weight *w);
/* A model that carries an error from the start (a builder refusing its arguments). */
LM_INTERNAL lm_model *lm__model_error(const char *name, lm_status code, const char *fmt, ...) LM_PRINTF(3, 4);
LM_INTERNAL lm_layer *lm__layer_error(const char *class_name, lm_status code, const char *fmt, ...) LM_PRINTF(3, 4);

/* Every distinct weight of a layer (a model's are its layers', without repeats). */
typedef void (*lm_weight_visit)(lm_weight *w, void *ctx);
LM_INTERNAL void lm__layer_visit_weights(const lm_layer *layer, lm_weight_visit visit, void *ctx);

/* Emits the graph of a model for the given input values; writes its output values. */
LM_INTERNAL int lm__model_emit(lm_model *model, lm_graph *g, const int *in, int *out);
LM_INTERNAL bool lm__is_input_layer(const lm_layer *layer);
LM_INTERNAL lm_tensor *lm__tensor_error(const lm_error *err);
LM_INTERNAL void lm__session_track_tensor(lm_tensor *t);
LM_INTERNAL void lm__session_track_model(lm_model *m);
/* Asks the fit that is starting to begin at epoch (a restored backup). */
LM_INTERNAL void lm__model_resume_at(lm_model *model, int epoch);
/* Frees what compile attached (the train module owns lm_compiled). */
LM_INTERNAL void lm__compiled_free(lm_compiled *c);

#endif
