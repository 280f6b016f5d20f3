/* lamina — arrays, shapes, dtypes, status codes and the random seed.
 *
 * Ownership: an lm_array made by lm_array_new owns its data; one made by lm_array_wrap
 * borrows the caller's buffer, which must outlive it. Either is released with
 * lm_array_free, which never frees borrowed data. */
#ifndef LAMINA_TENSOR_H
#define LAMINA_TENSOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(LM_BUILDING)
#define LM_API __attribute__((visibility("default")))
#else
#define LM_API
#endif

#define LM_MAX_RANK 8
/* Options structs for keyword-style arguments: LM_OPTS(lm_dense_opts, .activation = LM_RELU).
 * Fields left out are zero, which always means Keras's default. */
#define LM_OPTS(type, ...) ((type){.lm_opts_ = 0, __VA_ARGS__})

/* An unknown dimension (Keras's None): the batch size, or a sequence length. */
#define LM_NONE (-1)

typedef enum lm_dtype { LM_FLOAT32 = 0, LM_INT32 = 1 } lm_dtype;

typedef struct lm_shape {
  int rank;
  int64_t dim[LM_MAX_RANK];
} lm_shape;

#define LM__COUNT(...) LM__COUNT_(__VA_ARGS__, 8, 7, 6, 5, 4, 3, 2, 1, 0)
#define LM__COUNT_(a1, a2, a3, a4, a5, a6, a7, a8, n, ...) n
/* LM_SHAPE(28, 28, LM_NONE): a shape literal. */
#define LM_SHAPE(...) ((lm_shape){.rank = LM__COUNT(__VA_ARGS__), .dim = {__VA_ARGS__}})

typedef enum lm_status {
  LM_OK = 0,
  LM_ERROR_VALUE,  /* an argument is out of range or unknown (a loss name, a rate) */
  LM_ERROR_SHAPE,  /* shapes that do not fit together */
  LM_ERROR_NAME,   /* a name that is missing, unknown or used twice */
  LM_ERROR_GRAPH,  /* a model whose outputs cannot be reached from its inputs */
  LM_ERROR_STATE,  /* a call in the wrong order (fit before compile) */
  LM_ERROR_IO,     /* a file that cannot be read or written, or is corrupt */
  LM_ERROR_MEMORY, /* an allocation failed */
  LM_ERROR_NAN     /* a loss became NaN or infinite */
} lm_status;

LM_API const char *lm_status_string(lm_status status);

/* The message of the most recent failure on this thread ("" if none). Objects also keep
 * their own first error; see lm_model_error() and lm_tensor_error(). */
LM_API const char *lm_last_error(void);

typedef struct lm_array {
  lm_dtype dtype;
  lm_shape shape;
  int64_t size; /* number of elements */
  void *data;
  bool owns_data;
} lm_array;

/* A zero-filled array; NULL (with lm_last_error set) when a dim is not positive. */
LM_API lm_array *lm_array_new(lm_dtype dtype, lm_shape shape);
/* An array over the caller's buffer (not copied, not freed). */
LM_API lm_array *lm_array_wrap(lm_dtype dtype, lm_shape shape, void *data);
LM_API void lm_array_free(lm_array *array);
LM_API int64_t lm_shape_size(lm_shape shape);

static inline float *lm_array_f32(const lm_array *a) { return (float *)a->data; }
static inline int32_t *lm_array_i32(const lm_array *a) { return (int32_t *)a->data; }

/* Seeds every random draw that follows (initializers, dropout, shuffling), like
 * keras.utils.set_random_seed. The default seed is 1337. */
LM_API void lm_set_seed(uint64_t seed);

/* Threads for training and prediction, set for the calling thread: n >= 1, or 0 for every
 * core. The default is OpenMP's (OMP_NUM_THREADS, else every core). Results are the same
 * bits with any number of threads. */
LM_API void lm_set_num_threads(int n);
LM_API int lm_get_num_threads(void);

/* Writes "(None, 28, 28)" into buf; returns buf. */
LM_API char *lm_shape_format(lm_shape shape, char *buf, size_t len);

#ifdef __cplusplus
}
#endif
#endif
