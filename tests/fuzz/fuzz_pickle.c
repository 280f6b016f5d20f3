/* libFuzzer target: the restricted unpickler (src/io/pickle.c) on arbitrary streams: it
 * must refuse or decode, within bounded memory, and what it decodes must be well formed.
 * Use with tests/fuzz/pickle.dict. See docs/fuzzing.md. */
#include "io/pickle.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  lm__int_lists l;
  if (lm__unpickle_int_lists(data, size, "fuzz", &l) != LM_OK) {
    if (l.offsets || l.values || l.n) __builtin_trap();
    return 0;
  }
  if (l.n < 0 || l.offsets[0] != 0) __builtin_trap();
  volatile uint32_t sum = 0;
  for (int64_t i = 0; i < l.n; i++) {
    if (l.offsets[i + 1] < l.offsets[i]) __builtin_trap();
    for (int64_t j = l.offsets[i]; j < l.offsets[i + 1]; j++) sum += (uint32_t)l.values[j];
  }
  (void)sum;
  lm__int_lists_free(&l);
  return 0;
}
