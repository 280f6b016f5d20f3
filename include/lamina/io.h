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

#ifdef __cplusplus
}
#endif
#endif
