/* Convolution ops (channels last). An input of rank 3 (batch, steps, channels) is a 1D
 * convolution, computed as a 2D one of height 1 with no copy; rank 4 is
 * (batch, rows, cols, channels). Kernels follow Keras's layouts.
 *
 * Attributes of both ops: i0, i1 strides (rows, cols), i2, i3 dilation rates (rows,
 * cols), i4 lm_padding (LM_VALID or LM_SAME, Keras's "same": out = ceil(in / stride), the
 * odd padding element at the end). A 1D op reads i1 and i3 and needs i0 = i2 = 1. */
#ifndef LAMINA_OPS_CONV_H
#define LAMINA_OPS_CONV_H

#include "graph/graph.h"
#include <lamina/layers.h> /* lm_padding */

/* in: x, kernel ([KH,] KW, C, F)[, bias (F)]. out: y ([N, OH,] OW, F), and an im2col
 * scratch buffer (nondiff; backward reuses the forward's last chunk). A 1x1 kernel with
 * stride 1 is a plain GEMM and uses no scratch. i5: floats per im2col chunk, 0 for the
 * default (tests make it small to run several chunks). */
extern LM_INTERNAL const lm_op_def lm__op_conv;
/* in: x, kernel ([KH,] KW, C, M)[, bias (C*M)]. out: y with C*M channels, channel c*M + m
 * from input channel c and multiplier m (Keras's DepthwiseConv2D). */
extern LM_INTERNAL const lm_op_def lm__op_depthwise_conv;

#endif
