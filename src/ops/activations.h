/* Activation kernels over [rows, cols] buffers (softmax normalizes each row). */
#ifndef LAMINA_ACTIVATIONS_H
#define LAMINA_ACTIVATIONS_H

#include "core/core.h"
#include <lamina/layers.h>

LM_INTERNAL void lm__act_forward(lm_activation act, const float *x, float *y, int64_t rows, int64_t cols);
/* dx += dy * act'(x), using whichever of x and y is cheaper. */
LM_INTERNAL void lm__act_backward(lm_activation act, const float *x, const float *y, const float *dy,
                                  float *dx, int64_t rows, int64_t cols);

/* Activations whose derivative follows from their output alone (relu, sigmoid, tanh,
 * softmax, elu, selu, linear): an op may apply them to its own output in place. */
LM_INTERNAL bool lm__act_fusable(lm_activation act);
/* dy *= act'(x), computed from y = act(x), in place: the gradient before a fused activation. */
LM_INTERNAL void lm__act_grad_from_output(lm_activation act, const float *y, float *dy, int64_t rows, int64_t cols);

#endif
