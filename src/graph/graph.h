/* The autodiff graph: values and the ops between them, and execution plans that bind
 * concrete shapes and buffers. Layers emit ops here; the training loop runs plans; an op
 * never knows which layer emitted it. */
#ifndef LAMINA_GRAPH_H
#define LAMINA_GRAPH_H

#include "core/core.h"
#include <lamina/layers.h> /* lm_activation */

#define LM_MAX_OP_IO 16

typedef enum lm_value_kind {
  LM_VALUE_INPUT,  /* fed from the user's arrays */
  LM_VALUE_TARGET, /* fed from the user's targets (training graphs only) */
  LM_VALUE_PARAM,  /* bound to a layer weight's storage */
  LM_VALUE_TEMP    /* produced by an op */
} lm_value_kind;

typedef struct lm_weight lm_weight;

typedef struct lm_value {
  lm_value_kind kind;
  lm_dtype dtype;
  lm_shape shape; /* may hold LM_NONE dims; concrete shapes live in the plan */
  int producer;   /* index of the producing op, -1 for inputs, targets and params */
  lm_weight *weight;
  bool requires_grad; /* an INPUT whose gradient a plan should compute (gradient checks) */
  bool keep;          /* read after the plan runs (outputs, losses): never reused */
  int mask;           /* value holding this one's timestep mask (batch, steps), 1 or 0; -1 none */
} lm_value;

/* Op attributes: small, copied into the node. Each op documents which slots it uses. */
typedef struct lm_attrs {
  int64_t i[8];
  float f[4];
  const void *p;
} lm_attrs;

typedef struct lm_plan lm_plan;
typedef struct lm_opnode lm_opnode;

typedef struct lm_op_def {
  const char *name;
  int n_out;
  /* Output shapes and dtypes from input shapes (dims may be LM_NONE). On a misfit it
   * writes a message into err (without the layer's name, which the caller adds). */
  lm_status (*shape)(const lm_attrs *a, const lm_shape *in, const lm_dtype *in_dtype, int n_in,
                     lm_shape *out, lm_dtype *out_dtype, char *err, size_t err_len);
  void (*forward)(lm_plan *plan, const lm_opnode *node);
  /* Adds the gradient of each input that has a grad buffer (plan grad pointer non-NULL);
   * NULL for ops that have no gradient to pass back. */
  void (*backward)(lm_plan *plan, const lm_opnode *node);
  unsigned nondiff_outputs; /* bit k set: output k carries no gradient (masks, saved stats) */
  /* The op applies attrs i7 (an lm_activation, 0 for none) to its first output in place,
   * and backward takes that activation's derivative from the output (lm__act_fusable). */
  bool fuses_activation;
  /* Values backward never reads (LM_UNREAD_IN(i): input i, LM_UNREAD_OUT(k): output k), so
   * that plans can reuse their bytes before this op's backward; 0: it may read them all. */
  unsigned backward_unread;
  /* Bit k: output k is a scratch that forward and backward each fill before reading it and
   * that nothing else reads: it lives only during this op's forward and its backward. */
  unsigned scratch_outputs;
} lm_op_def;

#define LM_UNREAD_IN(i) (1u << (i))
#define LM_UNREAD_OUT(k) (1u << (16 + (k)))
#define LM_UNREAD_ALL (~0u)

struct lm_opnode {
  const lm_op_def *def;
  int in[LM_MAX_OP_IO];
  int n_in;
  int out[LM_MAX_OP_IO];
  int n_out;
  lm_attrs a;
  int index;            /* position in the graph, a stable key for random streams */
  const char *who;      /* the emitting layer's name, for messages */
};

typedef struct lm_graph {
  lm_value *vals;
  int n_vals, cap_vals;
  lm_opnode *ops;
  int n_ops, cap_ops;
  const char *who; /* name of the layer currently emitting, for messages */
  lm_error err;
} lm_graph;

LM_INTERNAL lm_graph *lm__graph_new(void);
LM_INTERNAL void lm__graph_free(lm_graph *g);
LM_INTERNAL int lm__graph_input(lm_graph *g, lm_value_kind kind, lm_dtype dtype, lm_shape shape);
/* The value bound to a weight; one value per weight however often it is used, so that a
 * shared weight accumulates the gradients of every use. */
LM_INTERNAL int lm__graph_param(lm_graph *g, lm_weight *w);
/* Appends an op after checking its shape rule; writes the output value ids to out.
 * Returns 0, or -1 with g->err naming g->who and the input shapes. */
LM_INTERNAL int lm__graph_op(lm_graph *g, const lm_op_def *def, const int *in, int n_in,
                             const lm_attrs *a, int *out);
/* Shorthand for single-output ops: the output id, or -1. */
LM_INTERNAL int lm__emit(lm_graph *g, const lm_op_def *def, const int *in, int n_in,
                         const lm_attrs *a);
/* def, then activation act on its first output: inside the op where it can (which saves a
 * pass over memory and the pre-activation buffer), else as an activation op. The final
 * output id, or -1. */
LM_INTERNAL int lm__emit_activated(lm_graph *g, const lm_op_def *def, const int *in, int n_in, lm_attrs a,
                                   lm_activation act);

/* A plan binds a graph to concrete input shapes: every value gets its shape and a buffer
 * from one arena, and values on the path from trainable weights to `loss` get gradient
 * buffers. Buffers are shared between buffers whose lifetimes do not overlap, over the
 * whole step (forward op o at step o, then op o's backward at step 2n-1-o): a value lives
 * from its producer's forward to its last forward use or, in training, to the last
 * backward that may read it (an op's backward may read all its inputs and outputs); an
 * intermediate value's gradient lives from its last consumer's backward to its
 * producer's. So gradients reuse the bytes of activations backward is done with, and
 * backward runs once per forward. Gradients of weights, of inputs that asked and of the
 * loss sit apart and are zeroed together at the start of backward. Built once per input
 * shape; running it allocates nothing. */
struct lm_plan {
  lm_graph *g;
  int training;   /* dropout active, batch statistics, gradients */
  lm_shape *shapes;
  void **data;    /* per value; params point at the weight's storage */
  float **grad;   /* per value, NULL where no gradient flows */
  char *arena;
  size_t arena_bytes;
  size_t kept_grad_offset, kept_grad_bytes; /* gradients zeroed once per backward */
  int *grad_birth; /* per value: the op whose backward first writes a shared gradient, else -1 */
  int loss;       /* value seeded with gradient 1 in backward, -1 for none */
  unsigned flags; /* LM_PLAN_* */
  uint64_t step;  /* advances each run, keys the dropout streams */
  uint64_t seed;
  lm_error err; /* also set by an op that meets bad data while running (an index out of range) */
};

/* in_shapes: the concrete shape of every INPUT and TARGET value, indexed by value id
 * (other entries ignored). loss < 0 builds a forward-only plan. */
LM_INTERNAL lm_plan *lm__plan_new(lm_graph *g, const lm_shape *in_shapes, int training, int loss);
/* Every value of a training plan lives through the whole step, as if nothing read by
 * backward were shared: backward may run several times on one forward (tests of an op's
 * backward), at the cost of memory. */
#define LM_PLAN_KEEP_ACTIVATIONS 1u
LM_INTERNAL lm_plan *lm__plan_new_flags(lm_graph *g, const lm_shape *in_shapes, int training, int loss,
                                        unsigned flags);
LM_INTERNAL void lm__plan_free(lm_plan *p);
LM_INTERNAL void lm__plan_forward(lm_plan *p);
/* Zeroes the gradients, seeds d(loss) = 1 and runs every backward in reverse order. Once
 * per forward: backward reuses the bytes of values it is done with (unless the plan was
 * built with LM_PLAN_KEEP_ACTIVATIONS). */
LM_INTERNAL void lm__plan_backward(lm_plan *p);

static inline float *lm__f(lm_plan *p, int v) { return (float *)p->data[v]; }
static inline int32_t *lm__i(lm_plan *p, int v) { return (int32_t *)p->data[v]; }
static inline float *lm__g(lm_plan *p, int v) { return p->grad[v]; }
static inline int64_t lm__n(lm_plan *p, int v) { return lm_shape_size(p->shapes[v]); }

/* The op table. */
extern LM_INTERNAL const lm_op_def lm__op_dense;      /* in: x, kernel[, bias]; y = x W + b over x's last axis */
extern LM_INTERNAL const lm_op_def lm__op_activation; /* in: x; i0 lm_activation (softmax over the last axis) */
extern LM_INTERNAL const lm_op_def lm__op_binary;     /* in: a, b; i0 lm_binary_kind; broadcasting */
extern LM_INTERNAL const lm_op_def lm__op_mean_n;     /* in: n inputs of one shape; average */
extern LM_INTERNAL const lm_op_def lm__op_concat;     /* in: n; i0 axis */
extern LM_INTERNAL const lm_op_def lm__op_reshape;    /* in: x; i0 rank, i1.. target dims (no batch; -1 inferred) */
extern LM_INTERNAL const lm_op_def lm__op_dropout;    /* in: x; f0 rate; out: y, mask */
extern LM_INTERNAL const lm_op_def lm__op_loss;       /* in: pred, target; i0 lm_loss_kind, i1 from_logits; f0 huber delta. Reduces the last axis, averages the rest */
extern LM_INTERNAL const lm_op_def lm__op_weighted_sum; /* in: n scalars; weights from a.p (const float*) */
extern LM_INTERNAL const lm_op_def lm__op_identity;   /* in: x */

typedef enum lm_binary_kind {
  LM_BINARY_ADD,
  LM_BINARY_SUBTRACT,
  LM_BINARY_MULTIPLY,
  LM_BINARY_MAXIMUM,
  LM_BINARY_MINIMUM
} lm_binary_kind;

#endif
