/* Execution plans: buffer sharing must save memory without changing any number. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "graph/graph.h"
#include "train/losses.h"
#include <lamina/layers.h>

enum { ROWS = 8, WIDTH = 16, DEPTH = 6 };

/* x -> (dense, tanh) x DEPTH -> mse against t; kernels are inputs that ask for gradients. */
static lm_graph *deep_chain(int *x, int *t, int *kernels, int *out, int *loss) {
  lm_graph *g = lm__graph_new();
  *x = lm__graph_input(g, LM_VALUE_INPUT, LM_FLOAT32, LM_SHAPE(LM_NONE, WIDTH));
  int h = *x;
  for (int d = 0; d < DEPTH; d++) {
    kernels[d] = lm__graph_input(g, LM_VALUE_INPUT, LM_FLOAT32, LM_SHAPE(WIDTH, WIDTH));
    g->vals[kernels[d]].requires_grad = true;
    h = lm__emit(g, &lm__op_dense, (int[]){h, kernels[d]}, 2, NULL);
    h = lm__emit(g, &lm__op_activation, &h, 1, &(lm_attrs){.i = {LM_TANH}});
  }
  *out = h;
  *t = lm__graph_input(g, LM_VALUE_TARGET, LM_FLOAT32, LM_SHAPE(LM_NONE, WIDTH));
  int outs[2];
  assert_int_equal(lm__graph_op(g, &lm__op_loss, (int[]){h, *t}, 2, &(lm_attrs){.i = {LM_LOSS_MSE}}, outs), 0);
  *loss = outs[0];
  g->vals[*out].keep = g->vals[*loss].keep = true;
  return g;
}

static void fill(lm_plan *p, int x, int t, const int *kernels) {
  for (int i = 0; i < ROWS * WIDTH; i++) {
    lm__f(p, x)[i] = (float)((i * 37) % 11) / 11.0f - 0.5f;
    lm__f(p, t)[i] = (float)((i * 13) % 7) / 7.0f - 0.5f;
  }
  for (int d = 0; d < DEPTH; d++)
    for (int i = 0; i < WIDTH * WIDTH; i++) lm__f(p, kernels[d])[i] = (float)(((i + d) * 29) % 17) / 17.0f * 0.5f - 0.25f;
}

static lm_shape *input_shapes(const lm_graph *g) {
  lm_shape *shapes = calloc((size_t)g->n_vals, sizeof *shapes);
  for (int v = 0; v < g->n_vals; v++)
    if (g->vals[v].kind != LM_VALUE_TEMP) shapes[v] = g->vals[v].shape, shapes[v].dim[0] = shapes[v].dim[0] < 0 ? ROWS : shapes[v].dim[0];
  return shapes;
}

/* Bytes of the values of one kind, and of their gradients, if nothing were shared. */
static size_t bytes_of(const lm_plan *p, int temps, int grads) {
  size_t total = 0;
  for (int v = 0; v < p->g->n_vals; v++) {
    if ((p->g->vals[v].kind == LM_VALUE_TEMP) != temps) continue;
    size_t b = ((size_t)lm_shape_size(p->shapes[v]) * 4 + 63) & ~(size_t)63;
    total += grads ? (p->grad[v] ? b : 0) : b;
  }
  return total;
}

static void test_inference_shares_activations(void **state) {
  (void)state;
  int x, t, kernels[DEPTH], out, loss;
  lm_graph *g = deep_chain(&x, &t, kernels, &out, &loss);
  lm_shape *shapes = input_shapes(g);
  lm_plan *infer = lm__plan_new(g, shapes, 0, -1), *train = lm__plan_new(g, shapes, 1, loss);
  assert_int_equal(infer->err.code, LM_OK);
  assert_int_equal(train->err.code, LM_OK);
  /* Inference: the chain's activations fit in a few buffers. */
  assert_true(infer->arena_bytes - bytes_of(infer, 0, 0) < bytes_of(infer, 1, 0) / 3);
  /* Training keeps activations until backward is done with them, and intermediate
   * gradients share buffers. */
  size_t kept = bytes_of(train, 0, 0) + bytes_of(train, 1, 0) + bytes_of(train, 0, 1);
  assert_true(train->arena_bytes - kept < bytes_of(train, 1, 1) / 3);
  fill(infer, x, t, kernels);
  fill(train, x, t, kernels);
  lm__plan_forward(infer);
  lm__plan_forward(train);
  assert_memory_equal(lm__f(infer, out), lm__f(train, out), ROWS * WIDTH * sizeof(float));
  assert_true(lm__f(infer, loss)[0] == lm__f(train, loss)[0]);
  free(shapes);
  lm__plan_free(infer);
  lm__plan_free(train);
  lm__graph_free(g);
}

/* Shared gradient buffers are re-zeroed each step: two backward passes give the same
 * gradients, equal to a fresh plan's. */
static void test_shared_gradients_repeat(void **state) {
  (void)state;
  int x, t, kernels[DEPTH], out, loss;
  lm_graph *g = deep_chain(&x, &t, kernels, &out, &loss);
  lm_shape *shapes = input_shapes(g);
  lm_plan *p = lm__plan_new(g, shapes, 1, loss);
  fill(p, x, t, kernels);
  float first[WIDTH * WIDTH];
  lm__plan_forward(p);
  lm__plan_backward(p);
  memcpy(first, lm__g(p, kernels[0]), sizeof first);
  float norm = 0;
  for (int i = 0; i < WIDTH * WIDTH; i++) norm += first[i] * first[i];
  assert_true(norm > 0);
  lm__plan_forward(p);
  lm__plan_backward(p);
  assert_memory_equal(first, lm__g(p, kernels[0]), sizeof first);
  free(shapes);
  lm__plan_free(p);
  lm__graph_free(g);
}


/* Over the whole step, gradients take the bytes of activations that backward is done
 * with: a training plan needs less than one that keeps every activation to the end, with
 * the same loss and gradients, bit for bit. */
static void test_training_shares_activations_with_gradients(void **state) {
  (void)state;
  int x, t, kernels[DEPTH], out, loss;
  lm_graph *g = deep_chain(&x, &t, kernels, &out, &loss);
  lm_shape *shapes = input_shapes(g);
  lm_plan *p = lm__plan_new(g, shapes, 1, loss);
  lm_plan *q = lm__plan_new_flags(g, shapes, 1, loss, LM_PLAN_KEEP_ACTIVATIONS);
  assert_int_equal(p->err.code, LM_OK);
  assert_int_equal(q->err.code, LM_OK);
  /* Backward's first op needs every activation and one fresh gradient; after that each
   * intermediate gradient fits where an activation backward is done with was, so the 12
   * intermediate gradients cost one activation's bytes in all (before: two, and a plan
   * keeping every activation still needs them). */
  size_t data = bytes_of(p, 0, 0) + bytes_of(p, 1, 0), kept_grads = p->kept_grad_bytes; /* kernels', loss's */
  size_t one = (size_t)ROWS * WIDTH * sizeof(float); /* an activation, or its gradient */
  assert_true(bytes_of(p, 1, 1) - 64 == 12 * one);    /* the intermediate gradients */
  assert_true(p->arena_bytes == data + kept_grads + one);
  assert_true(q->arena_bytes >= data + kept_grads + 2 * one);
  for (int k = 0; k < 2; k++) {
    lm_plan *r = k ? q : p;
    fill(r, x, t, kernels);
    lm__plan_forward(r);
    lm__plan_backward(r);
  }
  assert_true(lm__f(p, loss)[0] == lm__f(q, loss)[0]);
  assert_memory_equal(lm__f(p, out), lm__f(q, out), one);
  for (int d = 0; d < DEPTH; d++)
    assert_memory_equal(lm__g(p, kernels[d]), lm__g(q, kernels[d]), WIDTH * WIDTH * sizeof(float));
  free(shapes);
  lm__plan_free(p);
  lm__plan_free(q);
  lm__graph_free(g);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_inference_shares_activations),
      cmocka_unit_test(test_shared_gradients_repeat),
      cmocka_unit_test(test_training_shares_activations_with_gradients),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
