/* Embedding: int32 indices -> rows of a trainable table, with Keras's mask_zero.
 *
 * Keras casts float indices to int; lamina refuses them instead (the error says to make the
 * Input int32), because a silently truncated 2.9 is a bug more often than an intent. Data
 * fed as float32 arrays into an int32 Input is converted by fit/evaluate/predict. */
#include "model/internal.h"
#include "ops/rnn.h"

typedef struct embedding_layer {
  lm_layer base;
  int input_dim, output_dim;
  lm_embedding_opts opts;
} embedding_layer;

static lm_status embedding_build(lm_layer *layer, const lm_shape *in, const lm_dtype *dt, int n) {
  embedding_layer *e = (embedding_layer *)layer;
  if (!lm__layer_add_weight(layer, "embeddings", LM_SHAPE(e->input_dim, e->output_dim), e->opts.embeddings_initializer,
                            LM_RANDOM_UNIFORM, true))
    return layer->err.code;
  return LM_OK;
}

static int embedding_emit(lm_layer *layer, lm_graph *g, const int *in, int n, int *out) {
  embedding_layer *e = (embedding_layer *)layer;
  int y = lm__emit(g, &lm__op_embedding, (int[]){in[0], lm__graph_param(g, layer->weights[0])}, 2, NULL);
  if (y < 0) return -1;
  if (e->opts.mask_zero) { /* Keras's compute_mask: indices != 0 */
    int m = lm__emit(g, &lm__op_index_mask, in, 1, NULL);
    if (m < 0) return -1;
    g->vals[y].mask = m;
  }
  out[0] = y;
  return 1;
}

static const lm_layer_vt embedding_vt = {
    .class_name = "Embedding", .prefix = "embedding", .build = embedding_build, .emit = embedding_emit, .arity = 1};

lm_layer *lm_embedding_new(int input_dim, int output_dim, lm_embedding_opts opts) {
  if (input_dim <= 0 || output_dim <= 0)
    return lm__layer_error("Embedding", LM_ERROR_VALUE,
                           "Embedding: both `input_dim` and `output_dim` should be positive, received input_dim=%d "
                           "and output_dim=%d",
                           input_dim, output_dim);
  embedding_layer *e = (embedding_layer *)lm__layer_new(sizeof *e, &embedding_vt, opts.name);
  if (!e) return NULL;
  e->input_dim = input_dim;
  e->output_dim = output_dim;
  e->opts = opts;
  e->opts.name = NULL; /* not kept: the caller's string */
  return &e->base;
}
