/* The chapter's question-answering model: two inputs (a text and a question), each
 * embedded and encoded by an LSTM, concatenated, and a softmax over 500 answers. The
 * inputs are fed by name. The answers here follow from the question's first word, so the
 * model has something to learn.
 *
 *   question_answering [--samples N] [--epochs N] */
#include <lamina/lamina.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { TEXT_VOCABULARY = 10000, QUESTION_VOCABULARY = 10000, ANSWER_VOCABULARY = 500 };

static uint32_t next(uint32_t *s) { return *s = *s * 1664525u + 1013904223u; }

int main(int argc, char **argv) {
  int samples = 512, epochs = 3, text_length = 40, question_length = 8;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!strcmp(argv[i], "--samples")) samples = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--epochs")) epochs = atoi(argv[i + 1]);
  }
  lm_set_seed(1);
  lm_tensor *text_input = lm_input(LM_SHAPE(LM_NONE), .dtype = LM_INT32, .name = "text");
  lm_tensor *embedded_text = lm_call(lm_embedding(TEXT_VOCABULARY, 64), text_input);
  lm_tensor *encoded_text = lm_call(lm_lstm(32), embedded_text);

  lm_tensor *question_input = lm_input(LM_SHAPE(LM_NONE), .dtype = LM_INT32, .name = "question");
  lm_tensor *embedded_question = lm_call(lm_embedding(QUESTION_VOCABULARY, 32), question_input);
  lm_tensor *encoded_question = lm_call(lm_lstm(16), embedded_question);

  lm_tensor *concatenated = lm_concatenate(LM_TENSORS(encoded_text, encoded_question), .axis = -1);
  lm_tensor *answer = lm_call(lm_dense(ANSWER_VOCABULARY, .activation = LM_SOFTMAX), concatenated);
  lm_model *model = lm_model_new(LM_TENSORS(text_input, question_input), LM_TENSORS(answer));
  if (lm_model_status(model) != LM_OK) {
    fprintf(stderr, "%s\n", lm_model_error(model));
    return 1;
  }
  lm_summary(model, stdout);
  lm_compile(model, .optimizer = lm_rmsprop(), .loss = LM_LOSSES("categorical_crossentropy"), .metrics = LM_METRICS("acc"));

  lm_array *text = lm_array_new(LM_INT32, LM_SHAPE(samples, text_length));
  lm_array *question = lm_array_new(LM_INT32, LM_SHAPE(samples, question_length));
  lm_array *answers = lm_array_new(LM_FLOAT32, LM_SHAPE(samples, ANSWER_VOCABULARY));
  uint32_t s = 7;
  for (int n = 0; n < samples; n++) {
    for (int t = 0; t < text_length; t++) lm_array_i32(text)[n * text_length + t] = 1 + (int)(next(&s) >> 8) % (TEXT_VOCABULARY - 1);
    for (int t = 0; t < question_length; t++)
      lm_array_i32(question)[n * question_length + t] = 1 + (int)(next(&s) >> 8) % 20; /* a small question vocabulary */
    lm_array_f32(answers)[n * ANSWER_VOCABULARY + lm_array_i32(question)[n * question_length] % ANSWER_VOCABULARY] = 1;
  }

  /* Fed by name, as the chapter does with a dict. */
  lm_history *h = lm_fit(model, LM_FEED_NAMED("text", text, "question", question), LM_FEED(answers),
                         .epochs = epochs, .batch_size = 64, .verbose = 2);
  if (!h) {
    fprintf(stderr, "fit: %s\n", lm_last_error());
    return 1;
  }
  const double *loss = lm_history_get(h, "loss");
  int last = lm_history_n_epochs(h) - 1, ok = loss[last] < loss[0];
  printf("loss %.4f -> %.4f, acc %.4f\n", loss[0], loss[last], lm_history_last(h, "acc"));
  lm_history_free(h);
  lm_array_free(text);
  lm_array_free(question);
  lm_array_free(answers);
  lm_session_clear();
  return ok ? 0 : 1;
}
