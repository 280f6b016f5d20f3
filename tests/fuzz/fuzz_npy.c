/* libFuzzer target: lm_load_npy on arbitrary bytes, and the header reader of object
 * arrays (Keras's IMDB members). Every input must give an array or an error, never a
 * crash, an out-of-bounds access or a leak. See docs/fuzzing.md. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* memfd_create */
#endif
#include <lamina/io.h>
#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>

#include "io/npy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The input as a file (a memfd: no disk), for readers that take a path. */
static const char *as_file(const uint8_t *data, size_t size) {
  static int fd = -1;
  static char path[64];
  if (fd < 0) {
    fd = memfd_create("fuzz", 0);
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
  }
  if (ftruncate(fd, 0) != 0 || pwrite(fd, data, size, 0) != (ssize_t)size) return "/nonexistent";
  return path;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  lm_array *a = lm_load_npy(as_file(data, size));
  if (a) {
    int64_t n = 1;
    for (int i = 0; i < a->shape.rank; i++) n *= a->shape.dim[i];
    if (n != a->size) __builtin_trap();
    volatile uint32_t sum = 0; /* reads every element: ASan checks the buffer's extent */
    for (int64_t i = 0; i < a->size; i++) sum += ((const uint32_t *)a->data)[i];
    (void)sum;
    lm_array_free(a);
  }
  int64_t count;
  size_t offset;
  if (lm__npy_object_array(data, size, "fuzz", &count, &offset) == 1 && (offset > size || count < 0)) __builtin_trap();
  return 0;
}
