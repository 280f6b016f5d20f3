/* lamina — reading data: IDX files (MNIST, Fashion-MNIST).
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

/* Integer sequences of varying length (texts_to_sequences' list of lists). */
typedef struct lm_sequences {
  int64_t n;
  int32_t **seq;
  int64_t *len;
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

#ifdef __cplusplus
}
#endif
#endif
