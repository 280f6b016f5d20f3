/* Pooling ops, channels last. 1D inputs (batch, steps, channels) are pooled as 2D inputs
 * (batch, steps, 1, channels); everything below reads "rows, cols" as "steps, 1" for them. */
#ifndef LAMINA_OPS_POOL_H
#define LAMINA_OPS_POOL_H

#include "graph/graph.h"
#include <lamina/layers.h> /* lm_padding */

/* Attribute slots of lm__op_max_pool and lm__op_avg_pool. */
enum {
  LM_POOL_DIMS = 0,   /* 1: x is (batch, steps, ch); 2: x is (batch, rows, cols, ch) */
  LM_POOL_H = 1,      /* pool rows (steps) */
  LM_POOL_W = 2,      /* pool cols; 1 for 1D */
  LM_POOL_SH = 3,     /* stride over rows */
  LM_POOL_SW = 4,     /* stride over cols; 1 for 1D */
  LM_POOL_PADDING = 5 /* lm_padding: same pads (total / 2 before, the rest after) */
};

/* in: x. out: y, argmax (int32, nondiff: per output element, the offset of the winning
 * input element within its sample, written only when x needs a gradient). Padded cells
 * never win. */
extern LM_INTERNAL const lm_op_def lm__op_max_pool;
/* in: x. out: y, the mean of each window's cells that lie inside x (padded cells are not
 * counted, as in Keras and TF). */
extern LM_INTERNAL const lm_op_def lm__op_avg_pool;
/* in: x of rank >= 3, (batch, ..., ch): the max over every axis between batch and ch.
 * out: y (batch, ch), argmax (int32, nondiff, as for max_pool). */
extern LM_INTERNAL const lm_op_def lm__op_global_max_pool;
/* in: x of rank >= 3, (batch, ..., ch)[, mask (batch, steps), float32 or int32, for rank 3
 * only]: the mean over every axis between batch and ch; with a mask, the mean over the
 * steps whose mask is nonzero (0/0 = NaN when a row has none, as in Keras). out: y. */
extern LM_INTERNAL const lm_op_def lm__op_global_avg_pool;

#endif
