/* Normalization ops: batch normalization and layer normalization. */
#ifndef LAMINA_OPS_NORM_H
#define LAMINA_OPS_NORM_H

#include "graph/graph.h"

/* Batch normalization over every axis but one (the channel axis).
 * in: x, moving_mean, moving_variance, then gamma if i1, beta if i2, and the timestep
 *     mask if i3 (shape of x without its last axis, float32 or int32, nonzero = keep).
 * attrs: i0 channel axis (negative counts from the end; not the batch axis);
 *        f0 epsilon, f1 momentum, f2 1 - momentum (each rounded to float as Keras does);
 *        p: const bool *, the layer's trainable flag, read at run time (NULL: trainable).
 * Batch statistics when plan->training and the flag is set: the forward then also moves
 * moving_mean and moving_variance (a side effect on its inputs, the weights' storage), with
 * the biased batch variance as Keras 3 does; masked positions do not count. Otherwise the
 * moving statistics are used and the op is affine.
 * out: y; stats (3, C), saved for backward (nondiff): the mean and 1/sqrt(var + eps) that
 *      were used, and the batch statistics' denominator (0 with the moving statistics). */
extern LM_INTERNAL const lm_op_def lm__op_batch_norm;

/* Layer normalization of each sample over one axis.
 * in: x, then gamma if i1, beta if i2 (shape (C,), C = x's size on the axis).
 * attrs: i0 axis (negative counts from the end; not the batch axis); f0 epsilon.
 * out: y; stats (x's shape with 2 on the axis): mean and 1/sqrt(var + eps) per position
 *      (nondiff). */
extern LM_INTERNAL const lm_op_def lm__op_layer_norm;

#endif
