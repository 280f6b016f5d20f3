/* Sequence ops: the recurrences of LSTM, GRU and SimpleRNN (one op runs every step),
 * time reversal for Bidirectional, and the embedding lookup with its padding mask. */
#ifndef LAMINA_OPS_RNN_H
#define LAMINA_OPS_RNN_H

#include "graph/graph.h"

/* Flags of the recurrent ops (attrs i2). */
enum {
  LM_RNN_RETURN_SEQUENCES = 1 << 0, /* output 0 is (batch, steps, units), else (batch, units) */
  LM_RNN_GO_BACKWARDS = 1 << 1,     /* steps run last to first; sequences come out in that order */
  LM_RNN_BIAS = 1 << 2,             /* a bias input follows the recurrent kernel */
  LM_RNN_MASK = 1 << 3,             /* a (batch, steps) float mask is the last input */
  LM_RNN_ZERO_MASKED = 1 << 4,      /* masked steps output zeros, not the carried state */
  LM_RNN_RESET_AFTER = 1 << 5       /* GRU: r * (h W_rh + b_rh); bias is (2, 3 units) */
};

/* The recurrent ops. in: x (batch, steps, features) float32, kernel (features, g*units),
 * recurrent_kernel (units, g*units)[, bias][, mask]. attrs: i0 activation, i1 recurrent
 * activation (LSTM, GRU), i2 flags. A masked step keeps the previous state. Outputs: the
 * output, the final state(s), then buffers saved for backward and backward's scratch (no
 * gradient flows through those).
 *   lstm (gates i, f, c, o): y, h, c | Z, A (batch, steps, 4u), h_prev, c, act(c) (batch,
 *        steps, u), dZ (batch, steps, 4u), scratch (batch, 6u)
 *   gru (z, r, h):           y, h | Z, A, R (batch, steps, 3u), h_prev (batch, steps, u),
 *        r*h_prev (reset_after=False), dZ, dR, scratch (batch, 4u)
 *   simple_rnn:              y, h | Z, A, h_prev (batch, steps, u), dZ, scratch (batch, u) */
extern LM_INTERNAL const lm_op_def lm__op_lstm;
extern LM_INTERNAL const lm_op_def lm__op_gru;
extern LM_INTERNAL const lm_op_def lm__op_simple_rnn;

/* in: x (batch, steps, ...); y = x reversed along the steps axis. */
extern LM_INTERNAL const lm_op_def lm__op_reverse_steps;

/* in: indices (int32, any shape), table (input_dim, output_dim); y = table[indices], shaped
 * indices + (output_dim,). An index outside [0, input_dim) sets the plan's error and yields
 * zeros. */
extern LM_INTERNAL const lm_op_def lm__op_embedding;
/* in: indices (int32); y = 1 where the index is not 0, else 0 (float32, same shape). */
extern LM_INTERNAL const lm_op_def lm__op_index_mask;

#endif
