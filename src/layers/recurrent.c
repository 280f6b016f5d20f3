/* Recurrent layers: LSTM, GRU, SimpleRNN, and the Bidirectional wrapper.
 *
 * Each call emits one sequence op that runs every step (src/ops/cpu/rnn.c). A timestep mask
 * on the input (Embedding with mask_zero) makes masked steps keep the previous state; with
 * return_sequences the output carries that mask on, as Keras's compute_mask does. */
#include "io/model_config.h"
#include "ops/rnn.h"

typedef enum rnn_kind { RNN_SIMPLE, RNN_LSTM, RNN_GRU } rnn_kind;

typedef struct rnn_layer {
  lm_layer base;
  rnn_kind kind;
  int units;
  lm_rnn_opts opts;          /* resolved defaults; name dropped */
  bool zero_output_for_mask; /* set by Bidirectional when it returns sequences, as Keras does */
  lm_weight *kernel, *recurrent_kernel, *bias;
} rnn_layer;

static int gates_of(rnn_kind kind) { return kind == RNN_LSTM ? 4 : kind == RNN_GRU ? 3 : 1; }

static const lm_op_def *op_of(rnn_kind kind) {
  return kind == RNN_LSTM ? &lm__op_lstm : kind == RNN_GRU ? &lm__op_gru : &lm__op_simple_rnn;
}

/* dst = a + b, cut to fit dst[len]; dst may be b. */
static void join(char *dst, size_t len, const char *a, const char *b) {
  char tmp[256];
  size_t na = strlen(a), nb = strlen(b);
  if (na > sizeof tmp - 1) na = sizeof tmp - 1;
  if (nb > sizeof tmp - 1 - na) nb = sizeof tmp - 1 - na;
  memcpy(tmp, a, na);
  memcpy(tmp + na, b, nb);
  size_t n = na + nb < len ? na + nb : len - 1;
  memcpy(dst, tmp, n);
  dst[n] = 0;
}

/* Keras's f"{prefix}{removeprefix(name, prefix)}". */
static void prefixed(char *dst, size_t len, const char *prefix, const char *name) {
  size_t pl = strlen(prefix);
  join(dst, len, prefix, strncmp(name, prefix, pl) ? name : name + pl);
}

/* The input a recurrent layer can take: float32 (batch, steps, features), features known. */
static lm_status check_input(lm_error *err, const char *who, const char *cls, lm_shape in, lm_dtype dt) {
  char buf[96];
  lm_shape_format(in, buf, sizeof buf);
  if (dt != LM_FLOAT32)
    return lm__fail(err, LM_ERROR_VALUE,
                    "Layer \"%s\" (%s) needs float32 input (batch, steps, features), got int32 of shape %s; integer "
                    "sequences go through an Embedding first",
                    who, cls, buf);
  if (in.rank != 3)
    return lm__fail(err, LM_ERROR_SHAPE,
                    "Layer \"%s\" (%s) expects a 3D input (batch, steps, features), got input shape %s", who, cls, buf);
  if (in.dim[2] < 0)
    return lm__fail(err, LM_ERROR_SHAPE,
                    "Layer \"%s\" (%s): the features axis (the last) of the input must be known, got input shape %s",
                    who, cls, buf);
  return LM_OK;
}

static lm_status rnn_build(lm_layer *layer, const lm_shape *in, const lm_dtype *dt, int n) {
  rnn_layer *r = (rnn_layer *)layer;
  if (check_input(&layer->err, layer->name, layer->vt->class_name, in[0], dt[0])) return layer->err.code;
  int64_t features = in[0].dim[2], u = r->units, gu = gates_of(r->kind) * u;
  r->kernel = lm__layer_add_weight(layer, "kernel", LM_SHAPE(features, gu), r->opts.kernel_initializer,
                                   LM_GLOROT_UNIFORM, true);
  if (!r->kernel) return layer->err.code;
  r->recurrent_kernel = lm__layer_add_weight(layer, "recurrent_kernel", LM_SHAPE(u, gu), r->opts.recurrent_initializer,
                                             LM_ORTHOGONAL, true);
  if (!r->recurrent_kernel) return layer->err.code;
  if (r->opts.no_bias) return LM_OK;
  lm_shape bs = r->kind == RNN_GRU && !r->opts.no_reset_after ? LM_SHAPE(2, gu) : LM_SHAPE(gu);
  r->bias = lm__layer_add_weight(layer, "bias", bs, r->opts.bias_initializer, LM_ZEROS, true);
  if (!r->bias) return layer->err.code;
  if (r->kind == RNN_LSTM && !r->opts.no_unit_forget_bias) { /* Keras: the forget gate's block starts at 1 */
    float *b = lm_array_f32(r->bias->value);
    for (int64_t i = u; i < 2 * u; i++) b[i] = 1.0f;
  }
  return LM_OK;
}

/* Emits the op; writes the output, then the states if return_state. Returns the count. */
static int rnn_emit_op(rnn_layer *r, lm_graph *g, int x, int *out) {
  int mask = g->vals[x].mask;
  int args[5] = {x, lm__graph_param(g, r->kernel), lm__graph_param(g, r->recurrent_kernel)}, n = 3;
  int flags = 0;
  if (r->opts.return_sequences) flags |= LM_RNN_RETURN_SEQUENCES;
  if (r->opts.go_backwards) flags |= LM_RNN_GO_BACKWARDS;
  if (r->zero_output_for_mask) flags |= LM_RNN_ZERO_MASKED;
  if (r->kind == RNN_GRU && !r->opts.no_reset_after) flags |= LM_RNN_RESET_AFTER;
  if (r->bias) {
    args[n++] = lm__graph_param(g, r->bias);
    flags |= LM_RNN_BIAS;
  }
  if (mask >= 0) {
    args[n++] = mask;
    flags |= LM_RNN_MASK;
  }
  lm_attrs a = {.i = {r->opts.activation, r->opts.recurrent_activation, flags}};
  int outs[LM_MAX_OP_IO];
  if (lm__graph_op(g, op_of(r->kind), args, n, &a, outs)) return -1;
  int n_out = 1;
  out[0] = outs[0];
  if (r->opts.return_state) {
    out[n_out++] = outs[1];                        /* h */
    if (r->kind == RNN_LSTM) out[n_out++] = outs[2]; /* c */
  }
  if (r->opts.return_sequences && mask >= 0) g->vals[out[0]].mask = mask;
  return n_out;
}

static int rnn_emit(lm_layer *layer, lm_graph *g, const int *in, int n, int *out) {
  return rnn_emit_op((rnn_layer *)layer, g, in[0], out);
}

/* Keras 3's get_config of LSTM, GRU and SimpleRNN, field for field. */
static void rnn_config(const lm_layer *layer, lm_json *j) {
  const rnn_layer *r = (const rnn_layer *)layer;
  const lm_rnn_opts *o = &r->opts;
  lm__json_kv_bool(j, "return_sequences", o->return_sequences);
  lm__json_kv_bool(j, "return_state", o->return_state);
  lm__json_kv_bool(j, "go_backwards", o->go_backwards);
  lm__json_kv_bool(j, "stateful", false);
  lm__json_kv_bool(j, "unroll", false);
  lm__json_kv_bool(j, "zero_output_for_mask", r->zero_output_for_mask);
  lm__json_kv_int(j, "units", r->units);
  lm__json_kv_activation(j, "activation", o->activation);
  if (r->kind != RNN_SIMPLE) lm__json_kv_activation(j, "recurrent_activation", o->recurrent_activation);
  lm__json_kv_bool(j, "use_bias", !o->no_bias);
  lm__json_kv_initializer(j, "kernel_initializer", o->kernel_initializer, LM_GLOROT_UNIFORM);
  lm__json_kv_initializer(j, "recurrent_initializer", o->recurrent_initializer, LM_ORTHOGONAL);
  lm__json_kv_initializer(j, "bias_initializer", o->bias_initializer, LM_ZEROS);
  if (r->kind == RNN_LSTM) lm__json_kv_bool(j, "unit_forget_bias", !o->no_unit_forget_bias);
  static const char *const nulls[] = {"kernel_regularizer", "recurrent_regularizer", "bias_regularizer",
                                      "activity_regularizer", "kernel_constraint", "recurrent_constraint",
                                      "bias_constraint"};
  for (size_t i = 0; i < sizeof nulls / sizeof nulls[0]; i++) lm__json_kv_null(j, nulls[i]);
  lm__json_kv_double(j, "dropout", 0.0);
  lm__json_kv_double(j, "recurrent_dropout", 0.0);
  if (r->kind == RNN_GRU) lm__json_kv_bool(j, "reset_after", !o->no_reset_after);
  if (r->kind != RNN_SIMPLE) lm__json_kv_null(j, "seed");
}

static const lm_layer_vt lstm_vt = {.class_name = "LSTM", .prefix = "lstm", .build = rnn_build, .emit = rnn_emit, .arity = 1, .get_config = rnn_config};
static const lm_layer_vt gru_vt = {.class_name = "GRU", .prefix = "gru", .build = rnn_build, .emit = rnn_emit, .arity = 1, .get_config = rnn_config};
static const lm_layer_vt simple_vt = {.class_name = "SimpleRNN", .prefix = "simple_rnn", .build = rnn_build, .emit = rnn_emit, .arity = 1, .get_config = rnn_config};

static const lm_layer_vt *vt_of(rnn_kind kind) {
  return kind == RNN_LSTM ? &lstm_vt : kind == RNN_GRU ? &gru_vt : &simple_vt;
}

static bool is_rnn(const lm_layer *layer) {
  return layer->vt == &lstm_vt || layer->vt == &gru_vt || layer->vt == &simple_vt;
}

static lm_layer *rnn_new(rnn_kind kind, int units, lm_rnn_opts opts) {
  const char *cls = vt_of(kind)->class_name;
  if (units <= 0)
    return lm__layer_error(cls, LM_ERROR_VALUE,
                           "%s: received an invalid value for argument `units`, expected a positive integer, got %d",
                           cls, units);
  if ((unsigned)opts.activation > LM_SWISH || (unsigned)opts.recurrent_activation > LM_SWISH)
    return lm__layer_error(cls, LM_ERROR_VALUE, "%s: unknown activation %d or recurrent activation %d", cls,
                           (int)opts.activation, (int)opts.recurrent_activation);
  rnn_layer *r = (rnn_layer *)lm__layer_new(sizeof *r, vt_of(kind), opts.name);
  if (!r) return NULL;
  r->kind = kind;
  r->units = units;
  r->opts = opts;
  r->opts.name = NULL; /* the caller's string is not kept */
  if (!r->opts.activation) r->opts.activation = LM_TANH;
  if (!r->opts.recurrent_activation) r->opts.recurrent_activation = LM_SIGMOID;
  r->base.activation = r->opts.activation;
  return &r->base;
}

lm_layer *lm_lstm_new(int units, lm_rnn_opts opts) { return rnn_new(RNN_LSTM, units, opts); }
lm_layer *lm_gru_new(int units, lm_rnn_opts opts) { return rnn_new(RNN_GRU, units, opts); }
lm_layer *lm_simple_rnn_new(int units, lm_rnn_opts opts) { return rnn_new(RNN_SIMPLE, units, opts); }

/* ---- Bidirectional ---- */

typedef struct bidi_layer {
  lm_layer base;
  rnn_layer *fwd, *bwd; /* their weights belong to this layer once built */
  lm_merge_mode mode;
} bidi_layer;

static lm_status bidi_build(lm_layer *layer, const lm_shape *in, const lm_dtype *dt, int n) {
  bidi_layer *bi = (bidi_layer *)layer;
  if (check_input(&layer->err, layer->name, "Bidirectional", in[0], dt[0])) return layer->err.code;
  rnn_layer *inner[2] = {bi->fwd, bi->bwd};
  for (int k = 0; k < 2; k++) {
    lm_layer *l = &inner[k]->base;
    if (rnn_build(l, in, dt, n) != LM_OK) {
      lm__error_pass(&layer->err, &l->err);
      memset(&l->err, 0, sizeof l->err);
      return layer->err.code;
    }
    l->built = true;
    /* Keras lists the forward layer's weights, then the backward layer's, as the wrapper's
     * own; they move here (named "forward_lstm/kernel") so that counting, training flags
     * and freeing go through the wrapper. */
    for (int i = 0; i < l->n_weights; i++) {
      lm_weight *w = l->weights[i];
      if (lm__grow(&layer->weights, &layer->cap_weights, layer->n_weights + 1, sizeof *layer->weights))
        return lm__fail(&layer->err, LM_ERROR_MEMORY, "Layer \"%s\": out of memory", layer->name);
      char owner[sizeof l->name + 1];
      join(owner, sizeof owner, l->name, "/");
      join(w->name, sizeof w->name, owner, w->name);
      w->owner = layer;
      layer->weights[layer->n_weights++] = w;
    }
    l->n_weights = 0;
  }
  return LM_OK;
}

static int bidi_emit(lm_layer *layer, lm_graph *g, const int *in, int n, int *out) {
  bidi_layer *bi = (bidi_layer *)layer;
  int yf[3], yb[3];
  int nf = rnn_emit_op(bi->fwd, g, in[0], yf);
  int nb = nf < 0 ? -1 : rnn_emit_op(bi->bwd, g, in[0], yb);
  if (nb < 0) return -1;
  int back = yb[0];
  if (bi->fwd->opts.return_sequences) { /* back in input order before merging, as Keras flips y_rev */
    back = lm__emit(g, &lm__op_reverse_steps, &back, 1, NULL);
    if (back < 0) return -1;
  }
  int pair[2] = {yf[0], back}, y;
  switch (bi->mode) {
  case LM_MERGE_SUM: y = lm__emit(g, &lm__op_binary, pair, 2, &(lm_attrs){.i = {LM_BINARY_ADD}}); break;
  case LM_MERGE_MUL: y = lm__emit(g, &lm__op_binary, pair, 2, &(lm_attrs){.i = {LM_BINARY_MULTIPLY}}); break;
  case LM_MERGE_AVE: y = lm__emit(g, &lm__op_mean_n, pair, 2, NULL); break;
  default: y = lm__emit(g, &lm__op_concat, pair, 2, &(lm_attrs){.i = {-1}}); break;
  }
  if (y < 0) return -1;
  int mask = g->vals[in[0]].mask;
  if (bi->fwd->opts.return_sequences && mask >= 0) g->vals[y].mask = mask;
  int n_out = 0;
  out[n_out++] = y;
  for (int k = 1; k < nf; k++) out[n_out++] = yf[k]; /* forward states, then backward states */
  for (int k = 1; k < nb; k++) out[n_out++] = yb[k];
  return n_out;
}

static const char *const merge_modes[] = {"concat", "sum", "mul", "ave", NULL};

static void bidi_config(const lm_layer *layer, lm_json *j) {
  const bidi_layer *bi = (const bidi_layer *)layer;
  const lm_shape *build = layer->n_nodes ? &layer->nodes[0]->inputs[0]->shape : NULL;
  lm__json_kv_string(j, "merge_mode", merge_modes[bi->mode]);
  lm__json_key(j, "layer");
  lm__json_layer_object(j, &bi->fwd->base, build, layer->trainable);
  lm__json_key(j, "backward_layer");
  lm__json_layer_object(j, &bi->bwd->base, build, layer->trainable);
}

static const lm_layer_vt bidi_vt = {.class_name = "Bidirectional", .prefix = "bidirectional", .build = bidi_build,
                                    .emit = bidi_emit, .arity = 1, .get_config = bidi_config};

lm_layer *lm_bidirectional_new(lm_layer *layer, lm_bidirectional_opts opts) {
  if (!layer) return lm__layer_error("Bidirectional", LM_ERROR_VALUE, "Bidirectional: the layer is NULL (%s)", lm_last_error());
  if (layer->err.code) return lm__layer_error("Bidirectional", layer->err.code, "%s", layer->err.msg);
  if (!is_rnn(layer))
    return lm__layer_error("Bidirectional", LM_ERROR_VALUE,
                           "Bidirectional: the wrapped layer must be an LSTM, GRU or SimpleRNN, got \"%s\" (%s)",
                           layer->name, layer->vt->class_name);
  if (layer->built || layer->n_nodes)
    return lm__layer_error("Bidirectional", LM_ERROR_STATE,
                           "Bidirectional: layer \"%s\" has already been called; wrap a new layer", layer->name);
  if ((unsigned)opts.merge_mode > LM_MERGE_AVE)
    return lm__layer_error("Bidirectional", LM_ERROR_VALUE,
                           "Bidirectional: invalid merge mode %d; use concat, sum, mul or ave", (int)opts.merge_mode);
  rnn_layer *fwd = (rnn_layer *)layer;
  /* Keras rebuilds both from the layer's config: forward_<name>, and backward_<name> with
   * go_backwards flipped. */
  lm_rnn_opts back_opts = fwd->opts;
  back_opts.go_backwards = !back_opts.go_backwards;
  char back_name[sizeof layer->name];
  prefixed(back_name, sizeof back_name, "backward_", layer->name);
  back_opts.name = back_name;
  lm_layer *back = rnn_new(fwd->kind, fwd->units, back_opts);
  if (!back || back->err.code) return back;
  bidi_layer *bi = (bidi_layer *)lm__layer_new(sizeof *bi, &bidi_vt, opts.name);
  if (!bi) return NULL;
  prefixed(layer->name, sizeof layer->name, "forward_", layer->name);
  bi->fwd = fwd;
  bi->bwd = (rnn_layer *)back;
  bi->mode = opts.merge_mode;
  /* Keras makes masked steps output zeros when the wrapper returns sequences. */
  bi->fwd->zero_output_for_mask = bi->bwd->zero_output_for_mask = fwd->opts.return_sequences;
  bi->base.activation = fwd->opts.activation;
  return &bi->base;
}

/* ---- from_config ---- */

lm_layer *lm__rnn_from_config(lm__cfg *c) {
  rnn_kind kind = !strcmp(c->cls, "LSTM") ? RNN_LSTM : !strcmp(c->cls, "GRU") ? RNN_GRU : RNN_SIMPLE;
  int units = 0;
  bool use_bias = true, unit_forget_bias = true, reset_after = true, zero_output = false;
  lm_rnn_opts o = {.name = c->name};
  lm__cfg_int(c, "units", &units, LM__CFG_REQUIRED, 1, LM__CFG_MAX_DIM);
  lm__cfg_bool(c, "return_sequences", &o.return_sequences, false);
  lm__cfg_bool(c, "return_state", &o.return_state, false);
  lm__cfg_bool(c, "go_backwards", &o.go_backwards, false);
  lm__cfg_fixed_bool(c, "stateful", false, "lamina's recurrent layers start each batch from zero states");
  lm__cfg_fixed_bool(c, "unroll", false, "lamina runs every sequence as a loop");
  lm__cfg_fixed_bool(c, "time_major", false, "lamina's sequences are batch-major");
  lm__cfg_bool(c, "zero_output_for_mask", &zero_output, false);
  lm__cfg_activation(c, "activation", &o.activation, LM_TANH);
  if (kind != RNN_SIMPLE) lm__cfg_activation(c, "recurrent_activation", &o.recurrent_activation, LM_SIGMOID);
  lm__cfg_bool(c, "use_bias", &use_bias, true);
  lm__cfg_initializer(c, "kernel_initializer", &o.kernel_initializer);
  lm__cfg_initializer(c, "recurrent_initializer", &o.recurrent_initializer);
  lm__cfg_initializer(c, "bias_initializer", &o.bias_initializer);
  if (kind == RNN_LSTM) lm__cfg_bool(c, "unit_forget_bias", &unit_forget_bias, true);
  if (kind == RNN_GRU) lm__cfg_bool(c, "reset_after", &reset_after, true);
  lm__cfg_nulls(c, "kernel_regularizer", "recurrent_regularizer", "bias_regularizer", "activity_regularizer",
                "kernel_constraint", "recurrent_constraint", "bias_constraint", NULL);
  lm__cfg_fixed_number(c, "dropout", 0, "lamina's recurrent layers have no dropout");
  lm__cfg_fixed_number(c, "recurrent_dropout", 0, "lamina's recurrent layers have no dropout");
  /* The seed only drives the dropout masks, which lamina's recurrent layers do not have;
   * Keras 2's implementation picks a kernel with the same result. */
  const lm__json_value *seed = lm__cfg_take(c, "seed");
  if (seed && seed->type != LM_JSON_NULL && (seed->type != LM_JSON_NUMBER || !seed->is_integer))
    lm__cfg_fail(c, "seed", seed, "must be null or an integer");
  int implementation;
  lm__cfg_int(c, "implementation", &implementation, 2, 1, 2);
  if (!lm__cfg_ok(c)) return NULL;
  o.no_bias = !use_bias, o.no_unit_forget_bias = !unit_forget_bias, o.no_reset_after = !reset_after;
  lm_layer *layer = rnn_new(kind, units, o);
  if (layer && !layer->err.code) ((rnn_layer *)layer)->zero_output_for_mask = zero_output;
  return layer;
}

/* The backward layer of a config must be the forward one run backward: lamina derives it.
 * (Trainable flags of the wrapped layers follow the wrapper's, which owns their weights.) */
static bool mirrors(const rnn_layer *a, const rnn_layer *b) {
  const lm_rnn_opts *x = &a->opts, *y = &b->opts;
  return a->kind == b->kind && a->units == b->units && x->activation == y->activation &&
         x->recurrent_activation == y->recurrent_activation && x->return_sequences == y->return_sequences &&
         x->return_state == y->return_state && x->go_backwards == y->go_backwards && x->no_bias == y->no_bias &&
         x->no_unit_forget_bias == y->no_unit_forget_bias && x->no_reset_after == y->no_reset_after &&
         !memcmp(&x->kernel_initializer, &y->kernel_initializer, sizeof x->kernel_initializer) &&
         !memcmp(&x->recurrent_initializer, &y->recurrent_initializer, sizeof x->recurrent_initializer) &&
         !memcmp(&x->bias_initializer, &y->bias_initializer, sizeof x->bias_initializer);
}

lm_layer *lm__bidirectional_from_config(lm__cfg *c) {
  int mode = LM_MERGE_CONCAT;
  const lm__json_value *m = lm__cfg_take(c, "merge_mode");
  if (m && m->type == LM_JSON_NULL) { /* Keras then returns the two directions apart */
    lm__cfg_fail(c, "merge_mode", m, "is null (separate outputs), which lamina does not support");
    return NULL;
  }
  if (m) {
    int found = -1;
    for (int i = 0; merge_modes[i]; i++)
      if (m->type == LM_JSON_STRING && !strcmp(m->string, merge_modes[i])) found = i;
    if (found < 0) {
      lm__cfg_fail(c, "merge_mode", m, "must be one of \"concat\", \"sum\", \"mul\", \"ave\"");
      return NULL;
    }
    mode = found;
  }
  const lm__json_value *fwd_entry = lm__cfg_take(c, "layer"), *bwd_entry = lm__cfg_take(c, "backward_layer");
  if (!fwd_entry) lm__cfg_fail(c, "layer", NULL, "is required");
  lm_layer *fwd = lm__cfg_layer(c, "layer", fwd_entry);
  if (!fwd) return NULL;
  if (!is_rnn(fwd)) {
    lm__cfg_fail(c, "layer", fwd_entry, "must be an LSTM, GRU or SimpleRNN, got %s", fwd->vt->class_name);
    return NULL;
  }
  rnn_layer *want = NULL;
  if (bwd_entry && bwd_entry->type != LM_JSON_NULL) {
    lm_layer *bwd = lm__cfg_layer(c, "backward_layer", bwd_entry);
    if (!bwd) return NULL;
    if (!is_rnn(bwd)) {
      lm__cfg_fail(c, "backward_layer", bwd_entry, "must be an LSTM, GRU or SimpleRNN, got %s", bwd->vt->class_name);
      return NULL;
    }
    want = (rnn_layer *)bwd;
  }
  lm_layer *layer = lm_bidirectional_new(fwd, (lm_bidirectional_opts){.merge_mode = (lm_merge_mode)mode, .name = c->name});
  if (!layer || layer->err.code || !want) return layer;
  bidi_layer *bi = (bidi_layer *)layer;
  if (!mirrors(bi->bwd, want)) {
    lm__cfg_fail(c, "backward_layer", bwd_entry,
                 "must be the forward layer's configuration with go_backwards flipped: lamina does not support a "
                 "different backward layer");
    return NULL;
  }
  /* The backward layer keeps its name (its weights are saved under it). */
  snprintf(bi->bwd->base.name, sizeof bi->bwd->base.name, "%s", want->base.name);
  return layer;
}
