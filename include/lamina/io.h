/* lamina — reading data: IDX files (MNIST, Fashion-MNIST), NumPy .npy / .npz, text and
 * the movie-review corpus, Keras's IMDB dataset, CSV files of numbers.
 *
 * Ownership: readers return arrays the caller frees with lm_array_free. */
#ifndef LAMINA_IO_H
#define LAMINA_IO_H

#include <lamina/tensor.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Reads an IDX file, gzip-compressed or plain (detected from its first bytes). Unsigned-byte
 * data becomes float32 scaled by `scale` (pass 1 to keep 0..255, 1/255.0 to normalize) or,
 * when as_int32 is true, int32 labels. NULL on failure, with lm_last_error() naming the file
 * and what is wrong with it. */
LM_API lm_array *lm_read_idx(const char *path, bool as_int32, float scale);

/* Loads Fashion-MNIST from dir (the Debian package puts it in
 * /usr/share/datasets/fashion-mnist): images float32 (n, 28, 28) in [0, 1], labels int32.
 * Returns LM_OK or the failure, with lm_last_error() saying which file and why. */
LM_API lm_status lm_load_fashion_mnist(const char *dir, lm_array **x_train, lm_array **y_train,
                                       lm_array **x_test, lm_array **y_test);

/* ---- NumPy files: .npy and .npz ----
 *
 * lm_save_npy writes numpy's format 1.0 with numpy's own header bytes ('<f4' or '<i4', C
 * order). lm_load_npy reads format 1.0, 2.0 and 3.0: '<f4' / '<i4' as they are, and
 * float64 to float32, int8/16/64, uint8/16/32/64 and bool to int32 (an integer that does
 * not fit is an error); either byte order; C order only (fortran_order True is refused),
 * and no empty arrays (lamina's arrays have positive dims). Every file is treated as
 * untrusted: a truncated, corrupt or hostile one gives NULL / an error status with
 * lm_last_error() naming the file and the problem. Writes go to a temporary file in the
 * same directory, renamed into place when complete. */
LM_API lm_status lm_save_npy(const char *path, const lm_array *array);
LM_API lm_array *lm_load_npy(const char *path);

/* numpy.savez(path, **{names[i]: arrays[i]}): a zip of stored members "<name>.npy" that
 * numpy.load opens (no zip64: members and the file stay under 4 GiB). Names must be
 * distinct and non-empty. */
LM_API lm_status lm_save_npz(const char *path, const char *const *names, const lm_array *const *arrays, int n);
/* numpy.load(path) of an .npz: every "<name>.npy" member, stored or deflated (np.savez or
 * np.savez_compressed, zip64 included), in the zip's order; members that are not .npy are
 * skipped, as they are not arrays. On success *names and *arrays hold *n entries, which
 * the caller releases with lm_npz_free; on failure they are NULL and 0. */
LM_API lm_status lm_load_npz(const char *path, char ***names, lm_array ***arrays, int *n);
LM_API void lm_npz_free(char **names, lm_array **arrays, int n);

/* ---- Text: the movie-review corpus and a Keras-style tokenizer ----
 *
 * Ownership: lm_texts, lm_sequences and tokenizers belong to the caller, who frees them
 * with lm_texts_free, lm_sequences_free and lm_tokenizer_free. */
typedef struct lm_texts {
  int64_t n;
  char **text; /* n NUL-terminated UTF-8 strings */
} lm_texts;
LM_API void lm_texts_free(lm_texts *texts);

/* Reads Pang & Lee's polarity CSV (Debian's python3-pattern ships it as
 * polarity-en-pang&lee1.csv; scripts/fetch-reviews.sh fetches it): rows "label","text"
 * with labels 1 (positive) and -1 (negative), an optional UTF-8 BOM, CRLF or LF row ends,
 * quoted fields with "" escapes and newlines inside. *texts gets the reviews in file
 * order; *labels an int32 array (n,) holding 1 for positive and 0 for negative, as Keras's
 * IMDB labels. Any other label, a row without two fields or a quote left open is an error
 * naming the file and line. */
LM_API lm_status lm_load_reviews(const char *csv_path, lm_texts *texts, lm_array **labels);

/* Integer sequences of varying length (texts_to_sequences' list of lists): sequence i is
 * seq[i][0 .. len[i]). Those lm_imdb_load_data returns also lie in one block: sequence i
 * is values[offsets[i] .. offsets[i + 1]) and seq[i] points there; offsets and values are
 * NULL otherwise (a caller building its own for lm_pad_sequences sets n, seq and len). */
typedef struct lm_sequences {
  int64_t n;
  int32_t **seq;
  int64_t *len;
  int64_t *offsets; /* n + 1 */
  int32_t *values;
} lm_sequences;
LM_API void lm_sequences_free(lm_sequences *seqs);

typedef struct lm_tokenizer lm_tokenizer;
typedef struct lm_tokenizer_opts {
  int lm_opts_; /* keeps LM_OPTS() valid with no options; never set */
  int num_words;         /* 0: every word; else only indices < num_words are kept (num_words - 1 words) */
  const char *filters;   /* ASCII characters turned into separators; NULL: Keras's
                          * !"#$%&()*+,-./:;<=>?@[\]^_`{|}~ plus tab and newline */
  bool no_lower;         /* Keras lower=False; lowercasing is ASCII only */
  const char *split;     /* the separator; NULL: " " */
  const char *oov_token; /* NULL: none (unknown words are dropped); else index 1, as in Keras */
} lm_tokenizer_opts;
/* keras.preprocessing.text.Tokenizer: words are found as text_to_word_sequence finds them
 * (lowercase, filter characters become the separator, split, drop empty strings); fit
 * counts them and ranks by count, ties in order of first appearance: index 1 is the most
 * frequent word, 0 is reserved for padding. NULL with lm_last_error() on bad options. */
#define lm_tokenizer(...) lm_tokenizer_new(LM_OPTS(lm_tokenizer_opts, __VA_ARGS__))
LM_API lm_tokenizer *lm_tokenizer_new(lm_tokenizer_opts opts);
LM_API void lm_tokenizer_free(lm_tokenizer *tok);
/* fit_on_texts: may be called several times; counts add up and indices are re-ranked. */
LM_API lm_status lm_tokenizer_fit(lm_tokenizer *tok, const char *const *texts, int64_t n);
/* texts_to_sequences: each word's index; words unknown or ranked >= num_words become the
 * OOV index if there is an OOV token, else are dropped. NULL on failure. */
LM_API lm_sequences *lm_tokenizer_texts_to_sequences(const lm_tokenizer *tok, const char *const *texts, int64_t n);
/* len(word_index); the word of an index (index_word[i], NULL if none); the index of a word
 * (0 if unknown); how often fit saw a word (word_counts). */
LM_API int64_t lm_tokenizer_n_words(const lm_tokenizer *tok);
LM_API const char *lm_tokenizer_word(const lm_tokenizer *tok, int64_t index);
LM_API int64_t lm_tokenizer_index(const lm_tokenizer *tok, const char *word);
LM_API int64_t lm_tokenizer_count(const lm_tokenizer *tok, const char *word);
/* Keras's text_to_word_sequence with the tokenizer's filters, lower and split: the words
 * of one text, NULL-terminated (free the array and its strings with lm_words_free). */
LM_API char **lm_tokenizer_words(const lm_tokenizer *tok, const char *text);
LM_API void lm_words_free(char **words);

typedef struct lm_pad_opts {
  int lm_opts_; /* keeps LM_OPTS() valid with no options; never set */
  int64_t maxlen;         /* 0: the longest sequence's length */
  const char *padding;    /* "pre" (default) or "post" */
  const char *truncating; /* "pre" (default: keep the last maxlen) or "post" */
  int32_t value;          /* 0 */
} lm_pad_opts;
/* keras.utils.pad_sequences(sequences, maxlen, dtype="int32", padding, truncating, value):
 * an int32 array (n, maxlen). NULL with lm_last_error() for an unknown padding or
 * truncating, or an empty result (n == 0, or every sequence empty with no maxlen). */
#define lm_pad_sequences(...) lm_pad_sequences_(__VA_ARGS__, )
#define lm_pad_sequences_(seqs, ...) lm_pad_sequences_opts((seqs), LM_OPTS(lm_pad_opts, __VA_ARGS__))
LM_API lm_array *lm_pad_sequences_opts(const lm_sequences *seqs, lm_pad_opts opts);

/* ---- Keras's datasets ---- */

/* For lm_imdb_opts fields whose Keras value may be 0 while 0 here means "Keras's default". */
#define LM_IMDB_ZERO (-2)
typedef struct lm_imdb_opts {
  int lm_opts_; /* keeps LM_OPTS() valid with no options; never set */
  int num_words;  /* 0 (or LM_NONE): every word; else words >= num_words become oov_char */
  int skip_top;   /* 0: words below skip_top become oov_char (the start mark included) */
  int maxlen;     /* 0 (or LM_NONE): no limit; else sequences of maxlen or more words (with
                   * the start mark) are dropped, with their labels, as Keras does */
  int64_t seed;   /* 0: 113; LM_IMDB_ZERO: 0; the shuffle is numpy's RandomState(seed) */
  int start_char; /* 0: 1; LM_NONE: no start mark */
  int oov_char;   /* 0: 2; LM_NONE: words cut by num_words / skip_top are dropped */
  int index_from; /* 0: 3; LM_NONE or LM_IMDB_ZERO: word indices are not shifted */
} lm_imdb_opts;
/* keras.datasets.imdb.load_data(path, num_words, skip_top, maxlen, seed, start_char,
 * oov_char, index_from) on a local copy of Keras's imdb.npz (nothing is downloaded; a NULL
 * path means Keras's cache, $KERAS_HOME/datasets/imdb.npz or ~/.keras/datasets/imdb.npz).
 * Same shuffles, same words and same labels as Keras: x as lm_sequences in one block, y as
 * int32 arrays (n,) of 0 / 1. The .npz's ragged arrays are pickles; they are read by a
 * restricted unpickler that accepts a numpy object array of int lists and nothing else, so
 * a hostile file fails with a message naming it and the refused opcode. On failure the
 * four outputs are NULL. Free with lm_sequences_free and lm_array_free. Where Keras would
 * fail on max() of an empty sequence (no start_char, an empty review), empty sequences
 * are passed over instead. */
#define lm_imdb_load_data(...) lm_imdb_load_data_(__VA_ARGS__, )
#define lm_imdb_load_data_(path, x_train, y_train, x_test, y_test, ...)                                   \
  lm_imdb_load_data_opts((path), (x_train), (y_train), (x_test), (y_test), LM_OPTS(lm_imdb_opts, __VA_ARGS__))
LM_API lm_status lm_imdb_load_data_opts(const char *path, lm_sequences **x_train, lm_array **y_train,
                                        lm_sequences **x_test, lm_array **y_test, lm_imdb_opts opts);

/* keras.utils.to_categorical(y, num_classes): float32 one-hot rows, shape y's shape (less a
 * trailing axis of 1, as Keras drops it) + (num_classes,). y is int32, or float32 truncated
 * toward zero as numpy's int64 cast does; num_classes 0 means the largest label + 1. A
 * label outside 0 .. num_classes - 1 is an error (numpy would wrap a negative one). */
LM_API lm_array *lm_to_categorical(const lm_array *y, int num_classes);

/* ---- CSV files of numbers ---- */

/* What the first row of a CSV file is. */
typedef enum lm_csv_header {
  LM_CSV_AUTO = 0,  /* scikit-learn's count row (see below) when it fits the file (and is
                     * not an all-numeric row as wide as the data), column names when any
                     * field of the first row is not a number, else data */
  LM_CSV_NO_HEADER, /* every row is data */
  LM_CSV_NAMES,     /* column names */
  LM_CSV_SKLEARN    /* scikit-learn's datasets/data CSVs: n_samples, n_features, then the
                     * class names; n_samples rows of n_features values and an integer
                     * label follow */
} lm_csv_header;
#define LM_CSV_NO_LABEL INT32_MIN
typedef struct lm_csv_opts {
  int lm_opts_; /* keeps LM_OPTS() valid with no options; never set */
  lm_csv_header header;
  char delimiter;   /* 0: ',' */
  int label_column; /* 0: the last column in scikit-learn's format, none otherwise;
                     * k > 0: column k, counting from 1; -k: the k-th from the end;
                     * LM_CSV_NO_LABEL: none */
  bool float_labels; /* labels as float32 (regression targets) instead of int32 classes */
} lm_csv_opts;
typedef struct lm_csv {
  lm_array *x;           /* float32 (rows, feature columns) */
  lm_array *y;           /* (rows,): int32 class labels (or float32); NULL without a label column */
  int n_names;
  char **names;          /* the header's column names (labels' included), else NULL */
  int n_classes;
  char **class_names;    /* scikit-learn's header's class names, else NULL */
} lm_csv;
/* Reads a CSV file of numbers (RFC 4180: quoted fields with "" escapes, CRLF or LF, an
 * optional UTF-8 BOM; blank lines are skipped): numbers as C's strtod reads them in the C
 * locale (nan and inf included), an empty field is NaN. Every data row must have as many
 * fields as the first. A label column must hold integers unless float_labels. On failure,
 * lm_last_error() names the file, the line and the field; *out is left empty. Free with
 * lm_csv_free. */
#define lm_load_csv(...) lm_load_csv_(__VA_ARGS__, )
#define lm_load_csv_(path, out, ...) lm_load_csv_opts((path), (out), LM_OPTS(lm_csv_opts, __VA_ARGS__))
LM_API lm_status lm_load_csv_opts(const char *path, lm_csv *out, lm_csv_opts opts);
LM_API void lm_csv_free(lm_csv *csv);

#ifdef __cplusplus
}
#endif
#endif
