/* Internal: .npy images held in memory, for readers of archives that hold them (.npz,
 * Keras's dataset files). */
#ifndef LAMINA_IO_NPY_H
#define LAMINA_IO_NPY_H

#include "core/core.h"

/* Parses a whole .npy image (as lm_load_npy does a file); `what` names it in messages. */
LM_INTERNAL lm_array *lm__npy_parse(const uint8_t *buf, size_t len, const char *what);

/* Object arrays ('|O': pickled Python objects, as Keras's IMDB sequences) are not arrays
 * lamina holds; their pickle is read by src/io/pickle.c. Returns 1 for a one-dimensional
 * object array, with *n its length and *offset where its pickle stream starts; 0 for any
 * other array (parse it with lm__npy_parse); -1 with lm_last_error() set when the image is
 * not a valid .npy or is an object array of another rank. */
LM_INTERNAL int lm__npy_object_array(const uint8_t *buf, size_t len, const char *what, int64_t *n, size_t *offset);

#endif
