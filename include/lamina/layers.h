/* lamina — layers and symbolic tensors (the functional API).
 *
 * Ownership: layers, symbolic tensors and models belong to the session, the way Keras's
 * objects belong to its global state. They stay valid until lm_session_clear(), which frees
 * every one of them; user code never frees a layer or a symbolic tensor itself. */
#ifndef LAMINA_LAYERS_H
#define LAMINA_LAYERS_H

#include <lamina/tensor.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct lm_layer lm_layer;
typedef struct lm_tensor lm_tensor; /* a symbolic tensor (Keras's KerasTensor) */
typedef struct lm_model lm_model;

#define LM_MAX_TENSORS 32

/* A list of symbolic tensors, by value: LM_TENSORS(a, b). */
typedef struct lm_tensors {
  int n;
  lm_tensor *t[LM_MAX_TENSORS];
} lm_tensors;
#define LM_TENSORS(...)                                                                    \
  ((lm_tensors){.n = (int)(sizeof((lm_tensor *[]){__VA_ARGS__}) / sizeof(lm_tensor *)),   \
                .t = {__VA_ARGS__}})

typedef enum lm_activation {
  LM_ACTIVATION_DEFAULT = 0, /* the layer's Keras default: linear for Dense, tanh for LSTM */
  LM_LINEAR,
  LM_RELU,
  LM_SIGMOID,
  LM_TANH,
  LM_SOFTMAX,
  LM_ELU,
  LM_SELU,
  LM_GELU, /* exact (erf) form, Keras's default */
  LM_SOFTPLUS,
  LM_SWISH
} lm_activation;

/* Keras's name of an activation ("relu"), and back; -1 for an unknown name. */
LM_API const char *lm_activation_name(lm_activation activation);
LM_API int lm_activation_from_name(const char *name);

typedef enum lm_init_kind {
  LM_INIT_DEFAULT = 0, /* the layer's Keras default */
  LM_GLOROT_UNIFORM,
  LM_GLOROT_NORMAL,
  LM_HE_UNIFORM,
  LM_HE_NORMAL,
  LM_LECUN_UNIFORM,
  LM_LECUN_NORMAL,
  LM_ORTHOGONAL,
  LM_ZEROS,
  LM_ONES,
  LM_CONSTANT,
  LM_RANDOM_UNIFORM,
  LM_RANDOM_NORMAL,
  LM_TRUNCATED_NORMAL
} lm_init_kind;

/* An initializer. a/b: minval/maxval (uniform), mean/stddev (normal), value (constant),
 * gain (orthogonal); all zero means Keras's defaults for the kind. */
typedef struct lm_initializer {
  lm_init_kind kind;
  double a, b;
} lm_initializer;
/* LM_INIT(LM_RANDOM_UNIFORM, .a = -1, .b = 1) */
#define LM_INIT(...) LM_INIT_(__VA_ARGS__, )
#define LM_INIT_(init_kind, ...) ((lm_initializer){.kind = (init_kind), __VA_ARGS__})

/* ---- Input ---- */
typedef struct lm_input_opts {
  int lm_opts_; /* keeps LM_OPTS() valid with no options; never set */
  lm_dtype dtype;
  const char *name;
} lm_input_opts;
/* Input(shape): shape excludes the batch dimension. */
#define lm_input(...) lm_input_(__VA_ARGS__, )
#define lm_input_(shape, ...)  lm_input_new((shape), LM_OPTS(lm_input_opts, __VA_ARGS__))
LM_API lm_tensor *lm_input_new(lm_shape shape, lm_input_opts opts);
/* The InputLayer itself, for lm_sequential_add. */
#define lm_input_layer(...) lm_input_layer_(__VA_ARGS__, )
#define lm_input_layer_(shape, ...)  lm_input_layer_new((shape), LM_OPTS(lm_input_opts, __VA_ARGS__))
LM_API lm_layer *lm_input_layer_new(lm_shape shape, lm_input_opts opts);

/* ---- Calling layers ---- */
/* Calls a layer (or a model, through lm_model_layer) on symbolic tensors: records a node
 * and returns the first output. A failure returns a tensor that carries the error; calls
 * on it pass the error on, and lm_model_new reports it. */
LM_API lm_tensor *lm_call_n(lm_layer *layer, lm_tensors inputs);
/* Every output of the call. */
LM_API lm_tensors lm_call_outputs(lm_layer *layer, lm_tensors inputs);
LM_API lm_layer *lm_model_layer(lm_model *model);
#ifndef __cplusplus
static inline lm_layer *lm__as_layer(lm_layer *layer) { return layer; }
#define lm__LAYER(x) _Generic((x), lm_model *: lm_model_layer, default: lm__as_layer)(x)
#define lm_call(...) lm_call_(__VA_ARGS__, )
#define lm_call_(layer, ...)  lm_call_n(lm__LAYER(layer), LM_TENSORS(__VA_ARGS__))
#endif

/* ---- Tensor and layer accessors ---- */
LM_API lm_shape lm_tensor_shape(const lm_tensor *t); /* batch dim first, LM_NONE if unknown */
LM_API lm_dtype lm_tensor_dtype(const lm_tensor *t);
LM_API const char *lm_tensor_name(const lm_tensor *t);
LM_API lm_status lm_tensor_status(const lm_tensor *t);
LM_API const char *lm_tensor_error(const lm_tensor *t);
LM_API const char *lm_layer_name(const lm_layer *layer);
LM_API const char *lm_layer_class(const lm_layer *layer);
LM_API lm_status lm_layer_status(const lm_layer *layer);
LM_API const char *lm_layer_error(const lm_layer *layer);
LM_API int64_t lm_layer_count_params(const lm_layer *layer);
LM_API void lm_layer_set_trainable(lm_layer *layer, bool trainable);
/* The layer's weights in Keras's order (kernel, bias); borrowed, valid while the layer is.
 * Writing into them changes the layer. NULL past the end or before the layer is built. */
LM_API lm_array *lm_layer_weight(const lm_layer *layer, int index, const char **name);

/* Keras's layer.output: output k of the layer's call number node (0 for the first call);
 * NULL if there is no such call. */
LM_API lm_tensor *lm_layer_output(const lm_layer *layer, int node, int k);

/* Frees every layer, tensor and model of the session and restarts automatic names. */
LM_API void lm_session_clear(void);

/* ---- Core layers ---- */
typedef struct lm_dense_opts {
  int lm_opts_; /* keeps LM_OPTS() valid with no options; never set */
  lm_activation activation;
  bool no_bias; /* Keras use_bias=False */
  lm_initializer kernel_initializer, bias_initializer;
  const char *name;
} lm_dense_opts;
#define lm_dense(...) lm_dense_(__VA_ARGS__, )
#define lm_dense_(units, ...)  lm_dense_new((units), LM_OPTS(lm_dense_opts, __VA_ARGS__))
LM_API lm_layer *lm_dense_new(int units, lm_dense_opts opts);

typedef struct lm_layer_opts {
  int lm_opts_; /* keeps LM_OPTS() valid with no options; never set */
  const char *name;
} lm_layer_opts;
#define lm_activation_layer(...) lm_activation_layer_(__VA_ARGS__, )
#define lm_activation_layer_(activation, ...)                                                 \
  lm_activation_layer_new((activation), LM_OPTS(lm_layer_opts, __VA_ARGS__))
LM_API lm_layer *lm_activation_layer_new(lm_activation activation, lm_layer_opts opts);

typedef struct lm_dropout_opts {
  int lm_opts_; /* keeps LM_OPTS() valid with no options; never set */
  uint64_t seed; /* 0: drawn from the session seed (lm_set_seed), at creation and at load, as
                   Keras's seed=None; otherwise the masks follow this seed alone */
  const char *name;
} lm_dropout_opts;
#define lm_dropout(...) lm_dropout_(__VA_ARGS__, )
#define lm_dropout_(rate, ...)  lm_dropout_new((rate), LM_OPTS(lm_dropout_opts, __VA_ARGS__))
LM_API lm_layer *lm_dropout_new(double rate, lm_dropout_opts opts);

#define lm_flatten(...) lm_flatten_new(LM_OPTS(lm_layer_opts, __VA_ARGS__))
LM_API lm_layer *lm_flatten_new(lm_layer_opts opts);
/* target_shape excludes the batch dim; one dim may be -1 (inferred). */
#define lm_reshape(...) lm_reshape_(__VA_ARGS__, )
#define lm_reshape_(target_shape, ...)  lm_reshape_new((target_shape), LM_OPTS(lm_layer_opts, __VA_ARGS__))
LM_API lm_layer *lm_reshape_new(lm_shape target_shape, lm_layer_opts opts);

/* ---- Merge layers: layer objects, and the Keras-style functions that call them ---- */
typedef struct lm_concat_opts {
  int lm_opts_; /* keeps LM_OPTS() valid with no options; never set */
  int axis; /* Keras's default -1; 0 (the batch axis) also means -1 */
  const char *name;
} lm_concat_opts;
#define lm_concatenate_layer(...) lm_concatenate_new(LM_OPTS(lm_concat_opts, __VA_ARGS__))
LM_API lm_layer *lm_concatenate_new(lm_concat_opts opts);
#define lm_concatenate(...) lm_concatenate_(__VA_ARGS__, )
#define lm_concatenate_(tensors, ...)  lm_call_n(lm_concatenate_new(LM_OPTS(lm_concat_opts, __VA_ARGS__)), (tensors))

#define lm_add_layer(...) lm_add_new(LM_OPTS(lm_layer_opts, __VA_ARGS__))
#define lm_subtract_layer(...) lm_subtract_new(LM_OPTS(lm_layer_opts, __VA_ARGS__))
#define lm_multiply_layer(...) lm_multiply_new(LM_OPTS(lm_layer_opts, __VA_ARGS__))
#define lm_average_layer(...) lm_average_new(LM_OPTS(lm_layer_opts, __VA_ARGS__))
#define lm_maximum_layer(...) lm_maximum_new(LM_OPTS(lm_layer_opts, __VA_ARGS__))
LM_API lm_layer *lm_add_new(lm_layer_opts opts);
LM_API lm_layer *lm_subtract_new(lm_layer_opts opts);
LM_API lm_layer *lm_multiply_new(lm_layer_opts opts);
LM_API lm_layer *lm_average_new(lm_layer_opts opts);
LM_API lm_layer *lm_maximum_new(lm_layer_opts opts);
#define lm_add(...) lm_add_(__VA_ARGS__, )
#define lm_add_(tensors, ...)  lm_call_n(lm_add_new(LM_OPTS(lm_layer_opts, __VA_ARGS__)), (tensors))
#define lm_subtract(...) lm_subtract_(__VA_ARGS__, )
#define lm_subtract_(tensors, ...)  lm_call_n(lm_subtract_new(LM_OPTS(lm_layer_opts, __VA_ARGS__)), (tensors))
#define lm_multiply(...) lm_multiply_(__VA_ARGS__, )
#define lm_multiply_(tensors, ...)  lm_call_n(lm_multiply_new(LM_OPTS(lm_layer_opts, __VA_ARGS__)), (tensors))
#define lm_average(...) lm_average_(__VA_ARGS__, )
#define lm_average_(tensors, ...)  lm_call_n(lm_average_new(LM_OPTS(lm_layer_opts, __VA_ARGS__)), (tensors))
#define lm_maximum(...) lm_maximum_(__VA_ARGS__, )
#define lm_maximum_(tensors, ...)  lm_call_n(lm_maximum_new(LM_OPTS(lm_layer_opts, __VA_ARGS__)), (tensors))

/* ---- Convolution (channels last: (batch, steps, channels), (batch, rows, cols, channels)) ---- */
typedef enum lm_padding { LM_VALID = 0, LM_SAME = 1 } lm_padding;

/* Pairs follow Keras's int-or-tuple: {2} means (2, 2), {2, 1} means (2, 1); {0} means the
 * default. 1D layers read the first entry only. */
typedef struct lm_conv_opts {
  int lm_opts_; /* keeps LM_OPTS() valid with no options; never set */
  int kernel_hw[2];     /* overrides the square kernel_size argument: {3, 1} */
  int strides[2];       /* 1 */
  int dilation_rate[2]; /* 1 */
  lm_padding padding;   /* LM_VALID */
  lm_activation activation;
  bool no_bias;
  int depth_multiplier; /* depthwise and separable: 1 */
  lm_initializer kernel_initializer, bias_initializer, depthwise_initializer, pointwise_initializer;
  const char *name;
} lm_conv_opts;
/* Conv1D(filters, kernel_size), Conv2D(filters, kernel_size), DepthwiseConv2D(kernel_size),
 * SeparableConv1D / SeparableConv2D(filters, kernel_size): kernel shapes, names and
 * parameter counts as Keras's (kernel (k, in, filters) / (kh, kw, in, filters); depthwise
 * (kh, kw, in, depth_multiplier); pointwise (1, 1, in * depth_multiplier, filters)). */
#define lm_conv1d(...) lm_conv1d_(__VA_ARGS__, )
#define lm_conv1d_(filters, kernel_size, ...) lm_conv1d_new((filters), (kernel_size), LM_OPTS(lm_conv_opts, __VA_ARGS__))
#define lm_conv2d(...) lm_conv2d_(__VA_ARGS__, )
#define lm_conv2d_(filters, kernel_size, ...) lm_conv2d_new((filters), (kernel_size), LM_OPTS(lm_conv_opts, __VA_ARGS__))
#define lm_depthwise_conv2d(...) lm_depthwise_conv2d_(__VA_ARGS__, )
#define lm_depthwise_conv2d_(kernel_size, ...) lm_depthwise_conv2d_new((kernel_size), LM_OPTS(lm_conv_opts, __VA_ARGS__))
#define lm_separable_conv1d(...) lm_separable_conv1d_(__VA_ARGS__, )
#define lm_separable_conv1d_(filters, kernel_size, ...)                                                         \
  lm_separable_conv1d_new((filters), (kernel_size), LM_OPTS(lm_conv_opts, __VA_ARGS__))
#define lm_separable_conv2d(...) lm_separable_conv2d_(__VA_ARGS__, )
#define lm_separable_conv2d_(filters, kernel_size, ...)                                                         \
  lm_separable_conv2d_new((filters), (kernel_size), LM_OPTS(lm_conv_opts, __VA_ARGS__))
LM_API lm_layer *lm_conv1d_new(int filters, int kernel_size, lm_conv_opts opts);
LM_API lm_layer *lm_conv2d_new(int filters, int kernel_size, lm_conv_opts opts);
LM_API lm_layer *lm_depthwise_conv2d_new(int kernel_size, lm_conv_opts opts);
LM_API lm_layer *lm_separable_conv1d_new(int filters, int kernel_size, lm_conv_opts opts);
LM_API lm_layer *lm_separable_conv2d_new(int filters, int kernel_size, lm_conv_opts opts);

/* ---- Pooling ---- */
typedef struct lm_pool_opts {
  int lm_opts_; /* keeps LM_OPTS() valid with no options; never set */
  int pool_hw[2]; /* overrides the square pool_size argument */
  int strides[2]; /* default: the pool size */
  lm_padding padding;
  const char *name;
} lm_pool_opts;
#define lm_max_pooling1d(...) lm_max_pooling1d_(__VA_ARGS__, )
#define lm_max_pooling1d_(pool_size, ...) lm_max_pooling1d_new((pool_size), LM_OPTS(lm_pool_opts, __VA_ARGS__))
#define lm_max_pooling2d(...) lm_max_pooling2d_(__VA_ARGS__, )
#define lm_max_pooling2d_(pool_size, ...) lm_max_pooling2d_new((pool_size), LM_OPTS(lm_pool_opts, __VA_ARGS__))
#define lm_average_pooling1d(...) lm_average_pooling1d_(__VA_ARGS__, )
#define lm_average_pooling1d_(pool_size, ...) lm_average_pooling1d_new((pool_size), LM_OPTS(lm_pool_opts, __VA_ARGS__))
#define lm_average_pooling2d(...) lm_average_pooling2d_(__VA_ARGS__, )
#define lm_average_pooling2d_(pool_size, ...) lm_average_pooling2d_new((pool_size), LM_OPTS(lm_pool_opts, __VA_ARGS__))
LM_API lm_layer *lm_max_pooling1d_new(int pool_size, lm_pool_opts opts);
LM_API lm_layer *lm_max_pooling2d_new(int pool_size, lm_pool_opts opts);
LM_API lm_layer *lm_average_pooling1d_new(int pool_size, lm_pool_opts opts);
LM_API lm_layer *lm_average_pooling2d_new(int pool_size, lm_pool_opts opts);
#define lm_global_max_pooling1d(...) lm_global_max_pooling1d_new(LM_OPTS(lm_layer_opts, __VA_ARGS__))
#define lm_global_max_pooling2d(...) lm_global_max_pooling2d_new(LM_OPTS(lm_layer_opts, __VA_ARGS__))
#define lm_global_average_pooling1d(...) lm_global_average_pooling1d_new(LM_OPTS(lm_layer_opts, __VA_ARGS__))
#define lm_global_average_pooling2d(...) lm_global_average_pooling2d_new(LM_OPTS(lm_layer_opts, __VA_ARGS__))
LM_API lm_layer *lm_global_max_pooling1d_new(lm_layer_opts opts);
LM_API lm_layer *lm_global_max_pooling2d_new(lm_layer_opts opts);
LM_API lm_layer *lm_global_average_pooling1d_new(lm_layer_opts opts);
LM_API lm_layer *lm_global_average_pooling2d_new(lm_layer_opts opts);

/* ---- Normalization ---- */
typedef struct lm_norm_opts {
  int lm_opts_; /* keeps LM_OPTS() valid with no options; never set */
  int axis;        /* -1 (0, the batch axis, also means -1) */
  double momentum; /* BatchNormalization: 0.99 */
  double epsilon;  /* 1e-3 */
  bool no_center;  /* Keras center=False: no beta */
  bool no_scale;   /* Keras scale=False: no gamma */
  lm_initializer beta_initializer, gamma_initializer, moving_mean_initializer, moving_variance_initializer;
  const char *name;
} lm_norm_opts;
/* BatchNormalization: batch statistics in training, moving statistics in inference and
 * whenever the layer is not trainable (as in Keras); moving_mean and moving_variance are
 * non-trainable weights. LayerNormalization normalizes each sample over `axis`. */
#define lm_batch_normalization(...) lm_batch_normalization_new(LM_OPTS(lm_norm_opts, __VA_ARGS__))
#define lm_layer_normalization(...) lm_layer_normalization_new(LM_OPTS(lm_norm_opts, __VA_ARGS__))
LM_API lm_layer *lm_batch_normalization_new(lm_norm_opts opts);
LM_API lm_layer *lm_layer_normalization_new(lm_norm_opts opts);

/* ---- Sequences ---- */
typedef struct lm_embedding_opts {
  int lm_opts_; /* keeps LM_OPTS() valid with no options; never set */
  bool mask_zero; /* index 0 is padding: later recurrent layers skip those steps */
  lm_initializer embeddings_initializer; /* uniform(-0.05, 0.05) */
  const char *name;
} lm_embedding_opts;
/* Embedding(input_dim, output_dim) on int32 indices of any shape, e.g. Input((None,)). */
#define lm_embedding(...) lm_embedding_(__VA_ARGS__, )
#define lm_embedding_(input_dim, output_dim, ...)                                                              \
  lm_embedding_new((input_dim), (output_dim), LM_OPTS(lm_embedding_opts, __VA_ARGS__))
LM_API lm_layer *lm_embedding_new(int input_dim, int output_dim, lm_embedding_opts opts);

typedef struct lm_rnn_opts {
  int lm_opts_; /* keeps LM_OPTS() valid with no options; never set */
  lm_activation activation;           /* tanh */
  lm_activation recurrent_activation; /* sigmoid (LSTM, GRU) */
  bool return_sequences;
  bool return_state; /* outputs: output, then the final state(s): h (and c for LSTM) */
  bool go_backwards;
  bool no_bias;
  bool no_unit_forget_bias; /* LSTM: Keras unit_forget_bias=False */
  bool no_reset_after;      /* GRU: Keras reset_after=False */
  lm_initializer kernel_initializer, recurrent_initializer, bias_initializer;
  const char *name;
} lm_rnn_opts;
/* LSTM (gates i, f, c, o), GRU (z, r, h), SimpleRNN on (batch, steps, features), steps
 * may be unknown. Kernel (features, g*units), recurrent_kernel (units, g*units), bias as
 * Keras's (GRU with reset_after: (2, 3*units)). */
#define lm_lstm(...) lm_lstm_(__VA_ARGS__, )
#define lm_lstm_(units, ...) lm_lstm_new((units), LM_OPTS(lm_rnn_opts, __VA_ARGS__))
#define lm_gru(...) lm_gru_(__VA_ARGS__, )
#define lm_gru_(units, ...) lm_gru_new((units), LM_OPTS(lm_rnn_opts, __VA_ARGS__))
#define lm_simple_rnn(...) lm_simple_rnn_(__VA_ARGS__, )
#define lm_simple_rnn_(units, ...) lm_simple_rnn_new((units), LM_OPTS(lm_rnn_opts, __VA_ARGS__))
LM_API lm_layer *lm_lstm_new(int units, lm_rnn_opts opts);
LM_API lm_layer *lm_gru_new(int units, lm_rnn_opts opts);
LM_API lm_layer *lm_simple_rnn_new(int units, lm_rnn_opts opts);

typedef enum lm_merge_mode { LM_MERGE_CONCAT = 0, LM_MERGE_SUM, LM_MERGE_MUL, LM_MERGE_AVE } lm_merge_mode;
typedef struct lm_bidirectional_opts {
  int lm_opts_; /* keeps LM_OPTS() valid with no options; never set */
  lm_merge_mode merge_mode;
  const char *name;
} lm_bidirectional_opts;
/* Bidirectional(layer): the layer forward, and a copy of its configuration backward. The
 * wrapper takes over `layer`, which must not have been called. */
#define lm_bidirectional(...) lm_bidirectional_(__VA_ARGS__, )
#define lm_bidirectional_(layer, ...) lm_bidirectional_new((layer), LM_OPTS(lm_bidirectional_opts, __VA_ARGS__))
LM_API lm_layer *lm_bidirectional_new(lm_layer *layer, lm_bidirectional_opts opts);

#ifdef __cplusplus
}
#endif
#endif
