/* Embedding: int32 indices -> rows of a trainable table, with Keras's mask_zero.
 *
 * Keras casts float indices to int; lamina refuses them instead (the error says to make the
 * Input int32), because a silently truncated 2.9 is a bug more often than an intent. Data
 * fed as float32 arrays into an int32 Input is converted by fit/evaluate/predict. */
#include "io/model_config.h"
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

static void embedding_config(const lm_layer *layer, lm_json *j) {
  const embedding_layer *e = (const embedding_layer *)layer;
  lm__json_kv_int(j, "input_dim", e->input_dim);
  lm__json_kv_int(j, "output_dim", e->output_dim);
  lm__json_kv_initializer(j, "embeddings_initializer", e->opts.embeddings_initializer, LM_RANDOM_UNIFORM);
  lm__json_kv_null(j, "embeddings_regularizer");
  lm__json_kv_null(j, "activity_regularizer");
  lm__json_kv_null(j, "embeddings_constraint");
  lm__json_kv_bool(j, "mask_zero", e->opts.mask_zero);
  lm__json_kv_null(j, "quantization_config");
}

static const lm_layer_vt embedding_vt = {.class_name = "Embedding", .prefix = "embedding", .build = embedding_build,
                                         .emit = embedding_emit, .arity = 1, .get_config = embedding_config};

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

lm_layer *lm__embedding_from_config(lm__cfg *c) {
  int input_dim = 0, output_dim = 0;
  lm_embedding_opts o = {.name = c->name};
  lm__cfg_int(c, "input_dim", &input_dim, LM__CFG_REQUIRED, 1, LM__CFG_MAX_DIM);
  lm__cfg_int(c, "output_dim", &output_dim, LM__CFG_REQUIRED, 1, LM__CFG_MAX_DIM);
  lm__cfg_initializer(c, "embeddings_initializer", &o.embeddings_initializer);
  lm__cfg_bool(c, "mask_zero", &o.mask_zero, false);
  lm__cfg_fixed_bool(c, "sparse", false, "lamina's embeddings are dense");
  lm__cfg_nulls(c, "embeddings_regularizer", "activity_regularizer", "embeddings_constraint", "quantization_config",
                "lora_rank", NULL);
  /* Keras 2's expected sequence length: Keras 3 reads and ignores it too. */
  int input_length;
  lm__cfg_int(c, "input_length", &input_length, 0, 1, INT_MAX);
  if (!lm__cfg_ok(c)) return NULL;
  return lm_embedding_new(input_dim, output_dim, o);
}
