/* Internal: a small, strict JSON parser for untrusted input (model configs, .keras files).
 *
 * RFC 8259 JSON, plus the three words Python's json.dumps writes for non-finite floats
 * (NaN, Infinity, -Infinity), since Keras configs may hold them. Everything else is refused
 * with the line and column (1-based, in bytes) of the problem: a byte-order mark, comments,
 * trailing commas, single quotes, leading zeros, control characters or invalid UTF-8 in
 * strings, lone surrogates, the escape \u0000 (strings here are C strings), duplicate keys
 * in one object, numbers that overflow a double, and trailing text. The parse is bounded:
 * input size, nesting depth and the number of values have limits, so hostile input costs
 * at most O(size) time and a known amount of memory, and never reads outside the buffer
 * (which need not be NUL-terminated).
 *
 * The document owns every value and string; lm__json_free releases it all at once. */
#ifndef LAMINA_IO_JSON_H
#define LAMINA_IO_JSON_H

#include "core/core.h"

typedef enum lm__json_type {
  LM_JSON_NULL,
  LM_JSON_BOOL,
  LM_JSON_NUMBER,
  LM_JSON_STRING,
  LM_JSON_ARRAY,
  LM_JSON_OBJECT
} lm__json_type;

typedef struct lm__json_value lm__json_value;
struct lm__json_value {
  lm__json_type type;
  bool boolean;    /* LM_JSON_BOOL */
  bool is_integer; /* a number written without fraction or exponent that fits an int64 */
  uint32_t line, col; /* where the value starts */
  int64_t integer;    /* the number when is_integer */
  double number;      /* every number (NaN and infinities included) */
  const char *string; /* LM_JSON_STRING: UTF-8, NUL-terminated, no NUL inside */
  size_t n;           /* string length in bytes, or the number of items / members */
  lm__json_value *items; /* arrays: the items; objects: the members, each with its key */
  const char *key;       /* a member of an object: its key (else NULL) */
};

typedef struct lm__json_limits {
  size_t max_bytes;  /* input size; 0: 64 MiB */
  int max_depth;     /* nested arrays and objects; 0: 128 (at most 1024) */
  size_t max_values; /* values in the document; 0: 2^21 */
} lm__json_limits;

typedef struct lm__json_doc lm__json_doc;

/* Parses text[0..len). NULL on failure, with err (and lm_last_error) saying what and where:
 * "JSON: line 3, column 14: expected ',' or '}' after an object member". limits may be NULL
 * for the defaults. */
LM_INTERNAL lm__json_doc *lm__json_parse(const char *text, size_t len, const lm__json_limits *limits, lm_error *err);
LM_INTERNAL const lm__json_value *lm__json_root(const lm__json_doc *doc);
LM_INTERNAL void lm__json_free(lm__json_doc *doc);

/* The member `key` of an object; NULL if v is not an object or has no such member. */
LM_INTERNAL const lm__json_value *lm__json_get(const lm__json_value *v, const char *key);
/* "null", "a boolean", "a number", "a string", "a list", "an object". */
LM_INTERNAL const char *lm__json_kind(const lm__json_value *v);

#endif
