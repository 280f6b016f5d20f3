/* libFuzzer target: lm_read_idx (plain and gzip-compressed IDX files) as floats and as
 * int32 labels. See docs/fuzzing.md. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* memfd_create */
#endif
#include <lamina/io.h>
#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

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
  const char *path = as_file(data, size);
  for (int as_int = 0; as_int < 2; as_int++) {
    lm_array *a = lm_read_idx(path, as_int, 1.0f / 255.0f);
    if (!a) continue;
    volatile uint32_t sum = 0;
    for (int64_t i = 0; i < a->size; i++) sum += ((const uint32_t *)a->data)[i];
    (void)sum;
    lm_array_free(a);
  }
  return 0;
}
