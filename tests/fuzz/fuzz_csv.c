/* libFuzzer target: the CSV readers. lm_load_csv: the first byte picks the options (header
 * mode, delimiter, label column, float labels), the rest is the file; lm_load_reviews (the
 * movie-review corpus's "label","text" CSV, src/io/text.c) reads the same file. See
 * docs/fuzzing.md. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* memfd_create */
#endif
#include <lamina/io.h>
#include <stdio.h>
#include <string.h>
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
  if (size < 1) return 0;
  static const char delims[] = {0, ';', '\t', ' '};
  static const int label_cols[] = {0, 1, -1, 2, -2, LM_CSV_NO_LABEL, 3, 0};
  uint8_t b = data[0];
  lm_csv_opts o = {.header = (lm_csv_header)(b & 3), .delimiter = delims[(b >> 2) & 3], .label_column = label_cols[(b >> 4) & 7],
                   .float_labels = b >> 7};
  lm_csv c;
  const char *path = as_file(data + 1, size - 1);
  if (lm_load_csv_opts(path, &c, o) == LM_OK) {
    volatile float sum = 0;
    for (int64_t i = 0; i < c.x->size; i++) sum += ((const float *)c.x->data)[i];
    if (c.y && c.y->size != c.x->shape.dim[0]) __builtin_trap();
    for (int k = 0; k < c.n_names; k++) sum += (float)c.names[k][0];
    for (int k = 0; k < c.n_classes; k++) sum += (float)c.class_names[k][0];
    (void)sum;
    lm_csv_free(&c);
  }
  lm_texts texts;
  lm_array *labels;
  if (lm_load_reviews(path, &texts, &labels) == LM_OK) {
    if (labels->size != texts.n) __builtin_trap();
    volatile size_t total = 0;
    for (int64_t i = 0; i < texts.n; i++) total += strlen(texts.text[i]);
    (void)total;
    lm_texts_free(&texts);
    lm_array_free(labels);
  }
  return 0;
}
