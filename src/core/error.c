#include "core/core.h"

static _Thread_local char last_error[1024];

const char *lm_last_error(void) { return last_error; }

const char *lm_status_string(lm_status status) {
  switch (status) {
  case LM_OK: return "ok";
  case LM_ERROR_VALUE: return "invalid value";
  case LM_ERROR_SHAPE: return "incompatible shapes";
  case LM_ERROR_NAME: return "bad name";
  case LM_ERROR_GRAPH: return "graph disconnected";
  case LM_ERROR_STATE: return "invalid state";
  case LM_ERROR_IO: return "input/output error";
  case LM_ERROR_MEMORY: return "out of memory";
  case LM_ERROR_NAN: return "not a number";
  }
  return "unknown status";
}

lm_status lm__failv(lm_error *err, lm_status code, const char *fmt, va_list ap) {
  char msg[sizeof last_error];
  vsnprintf(msg, sizeof msg, fmt, ap);
  memcpy(last_error, msg, sizeof msg);
  if (err && err->code == LM_OK) {
    err->code = code;
    memcpy(err->msg, msg, sizeof err->msg);
  }
  return code;
}

lm_status lm__fail(lm_error *err, lm_status code, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  lm__failv(err, code, fmt, ap);
  va_end(ap);
  return code;
}

void lm__error_pass(lm_error *dst, const lm_error *src) {
  if (dst->code == LM_OK && src->code != LM_OK) *dst = *src;
}

void *lm__calloc(size_t n, size_t size) {
  void *p = calloc(n ? n : 1, size ? size : 1);
  if (!p) lm__fail(NULL, LM_ERROR_MEMORY, "out of memory allocating %zu x %zu bytes", n, size);
  return p;
}

void *lm__realloc(void *p, size_t size) {
  void *q = realloc(p, size ? size : 1);
  if (!q) lm__fail(NULL, LM_ERROR_MEMORY, "out of memory allocating %zu bytes", size);
  return q;
}

char *lm__strdup(const char *s) {
  size_t n = strlen(s) + 1;
  char *d = lm__calloc(n, 1);
  if (d) memcpy(d, s, n);
  return d;
}

int lm__grow(void *items, int *cap, int need, size_t elem) {
  if (need <= *cap) return 0;
  int ncap = *cap ? *cap : 8;
  while (ncap < need) ncap *= 2;
  void *p = lm__realloc(*(void **)items, (size_t)ncap * elem);
  if (!p) return -1;
  memset((char *)p + (size_t)*cap * elem, 0, (size_t)(ncap - *cap) * elem);
  *(void **)items = p;
  *cap = ncap;
  return 0;
}

float *lm__alloc_floats(int64_t n) {
  size_t bytes = ((size_t)(n > 0 ? n : 1) * sizeof(float) + 63) & ~(size_t)63;
  float *p = aligned_alloc(64, bytes);
  if (!p) lm__fail(NULL, LM_ERROR_MEMORY, "out of memory allocating %zu bytes", bytes);
  return p;
}
