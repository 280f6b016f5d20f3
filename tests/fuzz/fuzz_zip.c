/* libFuzzer target: the zip reader through lm_load_npz (stored, deflated and zip64
 * members, each parsed as .npy), and lm_imdb_load_data on the same archive (object
 * members through the restricted unpickler). See docs/fuzzing.md. */
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
  char **names;
  lm_array **arrays;
  int n;
  if (lm_load_npz(path, &names, &arrays, &n) == LM_OK) {
    volatile uint32_t sum = 0;
    for (int k = 0; k < n; k++) {
      sum += (uint32_t)names[k][0];
      for (int64_t i = 0; i < arrays[k]->size; i++) sum += ((const uint32_t *)arrays[k]->data)[i];
    }
    (void)sum;
    lm_npz_free(names, arrays, n);
  }
  lm_sequences *xtr, *xte;
  lm_array *ytr, *yte;
  if (lm_imdb_load_data(path, &xtr, &ytr, &xte, &yte, .num_words = 50, .maxlen = 40) == LM_OK) {
    volatile uint32_t sum = 0;
    for (int64_t i = 0; i < xtr->n; i++)
      for (int64_t j = 0; j < xtr->len[i]; j++) sum += (uint32_t)xtr->seq[i][j];
    (void)sum;
    if (xtr->n != ytr->size || xte->n != yte->size) __builtin_trap();
    lm_sequences_free(xtr);
    lm_sequences_free(xte);
    lm_array_free(ytr);
    lm_array_free(yte);
  }
  return 0;
}
