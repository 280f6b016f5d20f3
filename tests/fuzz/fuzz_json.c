/* libFuzzer target: the JSON parser and the model-config loader on arbitrary bytes.
 *
 *   cmake -S . -B build/fuzz -DCMAKE_C_COMPILER=clang -DLAMINA_FUZZ=ON -DLAMINA_TESTS=OFF \
 *         -DLAMINA_EXAMPLES=OFF && cmake --build build/fuzz --target fuzz_json
 *   build/fuzz/fuzz_json -dict=tests/fuzz/fuzz_json.dict corpus/ tests/fixtures/config/
 *
 * Besides the sanitizers' checks, an oracle: a config that loads must write JSON that parses,
 * loads again and writes the same text. */
#include "io/json.h"
#include "io/model_config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(bool ok, const char *what, const char *detail) {
  if (ok) return;
  fprintf(stderr, "fuzz_json: %s: %s\n", what, detail);
  abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  lm_error err = {0};
  lm__json_limits lim = {.max_bytes = 1 << 20};
  lm__json_doc *doc = lm__json_parse((const char *)data, size, &lim, &err);
  check(doc || err.code != LM_OK, "a failed parse without an error", "");
  if (!doc) return 0;
  /* Small limits keep each run fast; they are part of what is tested. */
  lm__config_limits cl = {.max_weights = 1 << 16, .max_layers = 64, .max_nodes = 128};
  lm_model *m = lm__model_from_config_limits(lm__json_root(doc), &cl);
  lm__json_free(doc);
  check(m != NULL, "no model", lm_last_error());
  if (lm_model_status(m) == LM_OK) {
    char *json = lm_model_to_json(m);
    check(json != NULL, "an accepted model cannot be written", lm_last_error());
    lm_error e2 = {0};
    lm__json_doc *again = lm__json_parse(json, strlen(json), NULL, &e2);
    check(again != NULL, "the written JSON does not parse", e2.msg);
    lm_model *copy = lm__model_from_config_limits(lm__json_root(again), &cl);
    lm__json_free(again);
    check(lm_model_status(copy) == LM_OK, "the written JSON does not load", lm_model_error(copy));
    char *json2 = lm_model_to_json(copy);
    check(json2 && !strcmp(json, json2), "the written JSON changes on a second round trip", json);
    free(json);
    free(json2);
  } else
    check(lm_model_error(m)[0] != '\0', "an error without a message", "");
  lm_session_clear();
  return 0;
}
