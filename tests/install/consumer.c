/* Builds against an installed lamina: the smallest real model, trained one epoch. */
#include <lamina/lamina.h>
#include <stdio.h>

int main(void) {
  lm_tensor *in = lm_input(LM_SHAPE(4));
  lm_tensor *out = lm_call(lm_dense(1), in);
  lm_model *model = lm_model_new(LM_TENSORS(in), LM_TENSORS(out));
  lm_compile(model, .optimizer = lm_sgd(), .loss = LM_LOSSES("mse"));
  lm_array *x = lm_array_new(LM_FLOAT32, LM_SHAPE(8, 4)), *y = lm_array_new(LM_FLOAT32, LM_SHAPE(8, 1));
  lm_history *h = lm_fit(model, LM_FEED(x), LM_FEED(y), .verbose = LM_SILENT);
  int ok = h && lm_model_count_params(model) == 5;
  printf("consumer: %s\n", ok ? "ok" : lm_last_error());
  lm_history_free(h);
  lm_array_free(x);
  lm_array_free(y);
  lm_session_clear();
  return ok ? 0 : 1;
}
