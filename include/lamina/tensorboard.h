/* lamina — TensorBoard logs: a summary writer for user code, and Keras's TensorBoard
 * callback.
 *
 * The files are TensorFlow's event files (events.out.tfevents.<secs>.<host>.<pid>.<n>.v2),
 * read by the tensorboard program (pip install tensorboard; tensorboard --logdir DIR): no
 * TensorFlow needed on either side.
 *
 * Ownership: lm_summary_writer_new returns a writer the caller frees with
 * lm_summary_writer_free (which closes it first if needed). lm_tensorboard returns a
 * callback freed with lm_callback_free. Strings passed in are copied. */
#ifndef LAMINA_TENSORBOARD_H
#define LAMINA_TENSORBOARD_H

#include <lamina/train.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- The summary writer (tf.summary.create_file_writer) ---- */
typedef struct lm_summary_writer lm_summary_writer;

/* Creates logdir (and its parents) and a new event file in it. NULL on failure, with
 * lm_last_error() naming the path and the reason. */
LM_API lm_summary_writer *lm_summary_writer_new(const char *logdir);
/* The event file's path. */
LM_API const char *lm_summary_writer_path(const lm_summary_writer *writer);

/* Each call writes one event and flushes it, so TensorBoard sees it at once. They return
 * LM_OK, or LM_ERROR_IO (lm_last_error naming the file) when the write fails; a writer
 * that failed, or was closed, refuses later writes with LM_ERROR_STATE. */

/* tf.summary.scalar: stored as float32, as TensorFlow does. */
LM_API lm_status lm_summary_scalar(lm_summary_writer *writer, const char *tag, int64_t step, double value);
/* tf.summary.histogram: 30 buckets of equal width over [min, max] of the values (NaN and
 * infinite values are left out). */
LM_API lm_status lm_summary_histogram(lm_summary_writer *writer, const char *tag, int64_t step,
                                      const float *values, int64_t n);
/* tf.summary.image of one image: height rows of width pixels, channels (1 gray, 2 gray +
 * alpha, 3 RGB, 4 RGBA) bytes each, row-major; stored as PNG. */
LM_API lm_status lm_summary_image(lm_summary_writer *writer, const char *tag, int64_t step,
                                  const uint8_t *pixels, int height, int width, int channels);
/* tf.summary.text: shown as Markdown by TensorBoard's text dashboard. */
LM_API lm_status lm_summary_text(lm_summary_writer *writer, const char *tag, int64_t step, const char *text);

LM_API lm_status lm_summary_writer_flush(lm_summary_writer *writer);
/* Closes the file; LM_ERROR_IO if the last bytes could not be written. */
LM_API lm_status lm_summary_writer_close(lm_summary_writer *writer);
LM_API void lm_summary_writer_free(lm_summary_writer *writer);

/* ---- The TensorBoard callback (keras.callbacks.TensorBoard) ----
 *
 * Writes what Keras 3 writes, under the same tags:
 * - log_dir/train: the model's configuration as JSON under tag "keras" (TensorBoard's
 *   Graph dashboard draws it), "epoch_<key>" for every training log key and
 *   "epoch_learning_rate" each epoch (step = epoch, 0-based), "batch_<key>" every
 *   update_freq batches (step = batches since fit began, from 1), and with histogram_freq
 *   the histogram of every weight, tag "<layer>/<weight>/histogram" (e.g.
 *   "dense/kernel/histogram"), every histogram_freq epochs.
 * - log_dir/validation: "epoch_<key>" for every "val_<key>", and
 *   "evaluation_<key>_vs_iterations" (step = optimizer updates so far) after each
 *   validation run.
 * - log_dir/projector_config.pbtxt, with embeddings_freq: one embedding per Embedding layer
 *   for the Projector dashboard, its matrix written every embeddings_freq epochs as a TSV
 *   file (log_dir/train/<layer>_embeddings.tsv) that the config points to.
 *
 * A log directory that cannot be created stops training before the first epoch, with
 * lm_last_error() saying why (fit then returns an empty History); a later write failure
 * stops it after the current batch or epoch, the same way. */

/* embeddings_metadata: one file for every Embedding layer (LM_METADATA_FILE("words.tsv")),
 * or one per layer name (LM_METADATA_DICT("embedding", "words.tsv", ...)); paths are
 * relative to log_dir, as TensorBoard reads them. */
#define LM_METADATA_FILE(path) ((lm_names){.n = 1, .item = {(path)}})
#define LM_METADATA_DICT(...) ((lm_names){.n = LM__NSTR(__VA_ARGS__) / 2, .by_name = true, .item = {__VA_ARGS__}})

typedef struct lm_tensorboard_opts {
  int lm_opts_; /* keeps LM_OPTS() valid with no options; never set */
  const char *log_dir;  /* "logs" */
  int histogram_freq;   /* 0: no histograms */
  bool no_graph;        /* Keras write_graph=False */
  bool write_images;    /* weights as images too, tag "<layer>/<weight>/image" */
  bool write_steps_per_second;
  int update_freq;      /* 0: "epoch"; N: every N batches ("batch" is 1) */
  int embeddings_freq;  /* 0: no projector */
  lm_names embeddings_metadata;
} lm_tensorboard_opts;

#define lm_tensorboard(...) lm_tensorboard_new(LM_OPTS(lm_tensorboard_opts, __VA_ARGS__))
/* NULL, with lm_last_error(), for a negative frequency. An embeddings_metadata layer name
 * that the model does not have as an Embedding layer stops training at its start, as
 * Keras raises. */
LM_API lm_callback *lm_tensorboard_new(lm_tensorboard_opts opts);

#ifdef __cplusplus
}
#endif
#endif
