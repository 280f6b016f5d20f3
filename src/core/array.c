#include "core/core.h"

int64_t lm_shape_size(lm_shape shape) {
  int64_t n = 1;
  for (int i = 0; i < shape.rank; i++) n *= shape.dim[i];
  return n;
}

int lm__shape_equal(lm_shape a, lm_shape b) {
  if (a.rank != b.rank) return 0;
  for (int i = 0; i < a.rank; i++)
    if (a.dim[i] != b.dim[i]) return 0;
  return 1;
}

int64_t lm__dims_product(const lm_shape *s, int from, int to) {
  int64_t n = 1;
  for (int i = from; i < to; i++) {
    if (s->dim[i] < 0) return -1;
    n *= s->dim[i];
  }
  return n;
}

char *lm_shape_format(lm_shape shape, char *buf, size_t len) {
  size_t at = 0;
  at += (size_t)snprintf(buf + at, at < len ? len - at : 0, "(");
  for (int i = 0; i < shape.rank; i++) {
    if (shape.dim[i] < 0)
      at += (size_t)snprintf(buf + at, at < len ? len - at : 0, "%sNone", i ? ", " : "");
    else
      at += (size_t)snprintf(buf + at, at < len ? len - at : 0, "%s%lld", i ? ", " : "",
                             (long long)shape.dim[i]);
  }
  if (shape.rank == 1) at += (size_t)snprintf(buf + at, at < len ? len - at : 0, ",");
  snprintf(buf + at, at < len ? len - at : 0, ")");
  return buf;
}

static lm_array *array_make(lm_dtype dtype, lm_shape shape) {
  if (shape.rank < 0 || shape.rank > LM_MAX_RANK) {
    lm__fail(NULL, LM_ERROR_SHAPE, "array rank %d is outside 0..%d", shape.rank, LM_MAX_RANK);
    return NULL;
  }
  for (int i = 0; i < shape.rank; i++) {
    if (shape.dim[i] <= 0) {
      char buf[128];
      lm__fail(NULL, LM_ERROR_SHAPE, "array shape %s has a dimension that is not positive",
               lm_shape_format(shape, buf, sizeof buf));
      return NULL;
    }
  }
  lm_array *a = lm__calloc(1, sizeof *a);
  if (!a) return NULL;
  a->dtype = dtype;
  a->shape = shape;
  a->size = lm_shape_size(shape);
  return a;
}

lm_array *lm_array_new(lm_dtype dtype, lm_shape shape) {
  lm_array *a = array_make(dtype, shape);
  if (!a) return NULL;
  a->data = lm__calloc((size_t)a->size, 4);
  if (!a->data) {
    free(a);
    return NULL;
  }
  a->owns_data = true;
  return a;
}

lm_array *lm_array_wrap(lm_dtype dtype, lm_shape shape, void *data) {
  lm_array *a = array_make(dtype, shape);
  if (a) a->data = data;
  return a;
}

void lm_array_free(lm_array *a) {
  if (!a) return;
  if (a->owns_data) free(a->data);
  free(a);
}
