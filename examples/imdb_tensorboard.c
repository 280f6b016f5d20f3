/* The chapter's TensorBoard example: a 1D convnet reads movie reviews and says whether they
 * are positive, while the TensorBoard callback logs the metrics, the weight histograms and
 * the word embeddings, and EarlyStopping watches the validation accuracy.
 *
 * The reviews are Pang & Lee's 1500 (IMDB's stand-in: the Keras IMDB set is not available
 * offline), fetched by scripts/fetch-reviews.sh from Debian's python3-pattern package.
 * As in the chapter: the 2000 most frequent words, reviews cut to their last 500 words,
 * Embedding(2000, 128) -> Conv1D(32, 7) -> MaxPooling1D(5) -> Conv1D(32, 7) ->
 * GlobalMaxPooling1D -> Dense(1), RMSprop, binary cross-entropy, batch 128, 20% of the
 * training reviews for validation. The last Dense has a sigmoid: the chapter's has none,
 * but binary cross-entropy expects probabilities. 80% of the reviews train, 20% test.
 *
 *   imdb_tensorboard                          # small and quick: 200 reviews, 1 epoch
 *   imdb_tensorboard --samples 1500 --epochs 20 --logdir my_log_dir --plot model.png
 *   tensorboard --logdir my_log_dir
 *
 * Options: --data CSV (skip the fetch), --samples N, --epochs N, --patience N (EarlyStopping
 * on val_acc, default 3), --logdir DIR,
 * --plot FILE (the model's picture, as plot_model), --optional-data (exit 0 with
 * "skipped: no corpus" when the corpus cannot be had). As in the chapter, ModelCheckpoint
 * keeps the best model (by val_loss) in LOGDIR/best_model.keras. */
#define _POSIX_C_SOURCE 200809L /* popen, mkdir */
#include <lamina/lamina.h>
#include <lamina/plot.h>
#include <lamina/tensorboard.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define MAX_FEATURES 2000
#define MAX_LEN 500

/* The corpus path printed by scripts/fetch-reviews.sh, or NULL. */
static char *fetch_reviews(void) {
  const char *src = getenv("LAMINA_SOURCE_DIR");
#ifdef LAMINA_SOURCE_DIR
  if (!src || !*src) src = LAMINA_SOURCE_DIR;
#endif
  if (!src || !*src) src = ".";
  char cmd[2048];
  snprintf(cmd, sizeof cmd, "bash '%s/scripts/fetch-reviews.sh'", src);
  FILE *p = popen(cmd, "r");
  if (!p) return NULL;
  static char path[1024];
  char *got = fgets(path, sizeof path, p);
  if (pclose(p) != 0 || !got) return NULL;
  path[strcspn(path, "\n")] = 0;
  return path;
}

/* A seeded shuffle of review indices (xorshift64*), so runs repeat. */
static void shuffle(int64_t *idx, int64_t n, uint64_t seed) {
  uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
  for (int64_t i = n - 1; i > 0; i--) {
    s ^= s >> 12, s ^= s << 25, s ^= s >> 27;
    int64_t j = (int64_t)((s * 0x2545F4914F6CDD1Dull) >> 33) % (i + 1);
    int64_t t = idx[i];
    idx[i] = idx[j];
    idx[j] = t;
  }
}

/* Padded word indices (n, MAX_LEN) and float targets (n, 1) for reviews idx[0..n). */
static lm_status encode(const lm_tokenizer *tok, const lm_texts *t, const lm_array *labels, const int64_t *idx,
                        int64_t n, lm_array **x, lm_array **y) {
  const char **texts = malloc((size_t)n * sizeof *texts);
  if (!texts) return LM_ERROR_MEMORY;
  for (int64_t i = 0; i < n; i++) texts[i] = t->text[idx[i]];
  lm_sequences *seqs = lm_tokenizer_texts_to_sequences(tok, texts, n);
  free(texts);
  if (!seqs) return LM_ERROR_MEMORY;
  *x = lm_pad_sequences(seqs, .maxlen = MAX_LEN);
  lm_sequences_free(seqs);
  *y = lm_array_new(LM_FLOAT32, LM_SHAPE(n, 1));
  if (!*x || !*y) return LM_ERROR_MEMORY;
  for (int64_t i = 0; i < n; i++) lm_array_f32(*y)[i] = (float)lm_array_i32(labels)[idx[i]];
  return LM_OK;
}

/* mkdir -p */
static void make_dirs(const char *dir) {
  char path[1024];
  snprintf(path, sizeof path, "%s", dir);
  for (char *p = path + 1; *p; p++) {
    if (*p != '/') continue;
    *p = 0;
    mkdir(path, 0777);
    *p = '/';
  }
  mkdir(path, 0777);
}

/* The vocabulary, one word a line by index (row 0 is the padding), for the Projector. */
static void write_vocabulary(const lm_tokenizer *tok, const char *logdir) {
  char path[1024];
  make_dirs(logdir);
  snprintf(path, sizeof path, "%s/words.tsv", logdir);
  FILE *f = fopen(path, "w");
  if (!f) return;
  fprintf(f, "<pad>\n");
  for (int64_t i = 1; i < MAX_FEATURES; i++) {
    const char *w = lm_tokenizer_word(tok, i);
    fprintf(f, "%s\n", w ? w : "<none>");
  }
  fclose(f);
}

int main(int argc, char **argv) {
  const char *data = NULL, *logdir = "logs/imdb", *plot = NULL;
  int epochs = 1, patience = 3;
  int64_t samples = 200;
  bool optional_data = false;
  for (int i = 1; i < argc; i++) {
    bool has_value = i + 1 < argc;
    if (!strcmp(argv[i], "--optional-data")) optional_data = true;
    else if (!strcmp(argv[i], "--data") && has_value) data = argv[++i];
    else if (!strcmp(argv[i], "--logdir") && has_value) logdir = argv[++i];
    else if (!strcmp(argv[i], "--plot") && has_value) plot = argv[++i];
    else if (!strcmp(argv[i], "--epochs") && has_value) epochs = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--patience") && has_value) patience = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--samples") && has_value) samples = atoll(argv[++i]);
    else {
      fprintf(stderr,
              "usage: %s [--data CSV] [--samples N] [--epochs N] [--patience N] [--logdir DIR] [--plot FILE] "
              "[--optional-data]\n",
              argv[0]);
      return 2;
    }
  }
  if (epochs < 1 || samples < 20) {
    fprintf(stderr, "imdb_tensorboard: --epochs must be >= 1 and --samples >= 20\n");
    return 2;
  }

  /* ---- The reviews ---- */
  if (!data) data = fetch_reviews();
  lm_texts reviews = {0};
  lm_array *labels = NULL;
  if (!data || lm_load_reviews(data, &reviews, &labels) != LM_OK) {
    const char *why = data ? lm_last_error() : "scripts/fetch-reviews.sh could not fetch it (see above)";
    if (optional_data) {
      printf("skipped: no corpus (%s)\n", why);
      return 0;
    }
    fprintf(stderr, "imdb_tensorboard: no movie-review corpus: %s\n(give --data CSV, or --optional-data to skip)\n",
            why);
    return 1;
  }
  if (samples > reviews.n) samples = reviews.n;
  int64_t *idx = malloc((size_t)reviews.n * sizeof *idx);
  for (int64_t i = 0; i < reviews.n; i++) idx[i] = i;
  shuffle(idx, reviews.n, 113); /* Keras's IMDB seed */
  int64_t n_train = samples * 8 / 10, n_test = samples - n_train;

  /* The word index comes from the training reviews only. */
  lm_tokenizer *tok = lm_tokenizer(.num_words = MAX_FEATURES);
  const char **train_texts = malloc((size_t)n_train * sizeof *train_texts);
  for (int64_t i = 0; i < n_train; i++) train_texts[i] = reviews.text[idx[i]];
  lm_tokenizer_fit(tok, train_texts, n_train);
  free(train_texts);
  lm_array *x_train = NULL, *y_train = NULL, *x_test = NULL, *y_test = NULL;
  if (encode(tok, &reviews, labels, idx, n_train, &x_train, &y_train) ||
      encode(tok, &reviews, labels, idx + n_train, n_test, &x_test, &y_test)) {
    fprintf(stderr, "imdb_tensorboard: %s\n", lm_last_error());
    return 1;
  }
  printf("%lld reviews: %lld to train (20%% of them to validate), %lld to test; %lld distinct words, the "
         "%d most frequent kept\n",
         (long long)samples, (long long)n_train, (long long)n_test, (long long)lm_tokenizer_n_words(tok),
         MAX_FEATURES);

  /* ---- The model ---- */
  lm_set_seed(1337);
  lm_tensor *in = lm_input(LM_SHAPE(MAX_LEN), .dtype = LM_INT32, .name = "words");
  lm_tensor *x = lm_call(lm_embedding(MAX_FEATURES, 128, .name = "embed"), in);
  x = lm_call(lm_conv1d(32, 7, .activation = LM_RELU), x);
  x = lm_call(lm_max_pooling1d(5), x);
  x = lm_call(lm_conv1d(32, 7, .activation = LM_RELU), x);
  x = lm_call(lm_global_max_pooling1d(), x);
  lm_tensor *out = lm_call(lm_dense(1, .activation = LM_SIGMOID), x);
  lm_model *model = lm_model_new(LM_TENSORS(in), LM_TENSORS(out), .name = "imdb_convnet");
  if (lm_model_status(model) != LM_OK) {
    fprintf(stderr, "imdb_tensorboard: %s\n", lm_model_error(model));
    return 1;
  }
  lm_summary(model, stdout);
  if (plot && lm_plot_model(model, plot, .show_shapes = true) != LM_OK)
    fprintf(stderr, "imdb_tensorboard: plot_model: %s\n", lm_last_error());
  lm_compile(model, .optimizer = lm_rmsprop(), .loss = LM_LOSSES("binary_crossentropy"), .metrics = LM_METRICS("acc"));

  /* ---- Training with the callbacks ---- */
  write_vocabulary(tok, logdir); /* the Projector's labels for the embedding rows */
  lm_callback *tensorboard =
      lm_tensorboard(.log_dir = logdir, .histogram_freq = 1, .embeddings_freq = 1,
                     .embeddings_metadata = LM_METADATA_DICT("embed", "words.tsv"));
  lm_callback *early_stopping = lm_early_stopping(.monitor = "val_acc", .patience = patience, .verbose = 1);
  char best_path[1024];
  snprintf(best_path, sizeof best_path, "%s/best_model.keras", logdir);
  lm_callback *checkpoint = lm_model_checkpoint(best_path, .monitor = "val_loss", .save_best_only = true);
  if (!tensorboard || !early_stopping || !checkpoint) {
    fprintf(stderr, "imdb_tensorboard: %s\n", lm_last_error());
    return 1;
  }
  lm_history *h = lm_fit(model, LM_FEED(x_train), LM_FEED(y_train), .epochs = epochs, .batch_size = 128,
                         .validation_split = 0.2, .callbacks = LM_CALLBACKS(tensorboard, early_stopping, checkpoint));
  if (!h || lm_history_n_epochs(h) == 0) {
    fprintf(stderr, "imdb_tensorboard: fit: %s\n", lm_last_error());
    return 1;
  }
  lm_history *test = lm_evaluate(model, LM_FEED(x_test), LM_FEED(y_test), .verbose = LM_SILENT);
  if (!test) {
    fprintf(stderr, "imdb_tensorboard: evaluate: %s\n", lm_last_error());
    return 1;
  }
  printf("Test: loss %.4f - acc %.4f (%lld reviews)\n", lm_history_last(test, "loss"), lm_history_last(test, "acc"),
         (long long)n_test);
  printf("Logs in %s: tensorboard --logdir %s; best model in %s\n", logdir, logdir, best_path);
  int ok = lm_history_last(h, "loss") == lm_history_last(h, "loss"); /* not NaN */

  lm_history_free(test);
  lm_history_free(h);
  lm_callback_free(tensorboard);
  lm_callback_free(early_stopping);
  lm_callback_free(checkpoint);
  lm_array_free(x_train);
  lm_array_free(y_train);
  lm_array_free(x_test);
  lm_array_free(y_test);
  lm_tokenizer_free(tok);
  lm_texts_free(&reviews);
  lm_array_free(labels);
  free(idx);
  lm_session_clear();
  return ok ? 0 : 1;
}
