/* A strict, bounded JSON parser (see json.h). Recursive descent; the recursion is bounded
 * by the depth limit. Finished items wait on one shared stack until their container
 * closes, then move into the document's arena as one array, so a container costs one
 * allocation whatever its size. */
#include "io/json.h"
#include <math.h>

#define DEFAULT_MAX_BYTES ((size_t)64 << 20)
#define DEFAULT_MAX_DEPTH 128
#define HARD_MAX_DEPTH 1024
#define DEFAULT_MAX_VALUES ((size_t)1 << 21)
#define MAX_NUMBER_CHARS 512

/* ---- The arena ---- */
typedef struct chunk {
  struct chunk *next;
  size_t used, cap;
} chunk;

struct lm__json_doc {
  chunk *chunks;
  lm__json_value root;
};

#define CHUNK_HEADER ((sizeof(chunk) + 15) & ~(size_t)15)

static void *arena_alloc(lm__json_doc *doc, size_t size) {
  size = (size + 15) & ~(size_t)15;
  chunk *c = doc->chunks;
  if (!c || c->cap - c->used < size) {
    size_t cap = size > ((size_t)64 << 10) ? size : (size_t)64 << 10;
    c = malloc(CHUNK_HEADER + cap);
    if (!c) return NULL;
    c->used = 0, c->cap = cap;
    c->next = doc->chunks;
    doc->chunks = c;
  }
  void *p = (char *)c + CHUNK_HEADER + c->used;
  c->used += size;
  return p;
}

void lm__json_free(lm__json_doc *doc) {
  if (!doc) return;
  for (chunk *c = doc->chunks; c;) {
    chunk *next = c->next;
    free(c);
    c = next;
  }
  free(doc);
}

const lm__json_value *lm__json_root(const lm__json_doc *doc) { return doc ? &doc->root : NULL; }

/* ---- The parser ---- */
typedef struct parser {
  const unsigned char *s;
  size_t len, pos;
  uint32_t line;
  size_t line_start; /* offset of the current line's first byte */
  lm__json_limits lim;
  size_t n_values;
  lm__json_value *stack; /* finished items of the open containers */
  size_t n_stack, cap_stack;
  lm__json_doc *doc;
  lm_error *err;
  bool failed;
} parser;

static bool fail_at(parser *p, size_t pos, lm_status code, const char *fmt, ...) LM_PRINTF(4, 5);
static bool fail_at(parser *p, size_t pos, lm_status code, const char *fmt, ...) {
  if (p->failed) return false;
  p->failed = true;
  char what[256];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(what, sizeof what, fmt, ap);
  va_end(ap);
  /* Tokens never span lines (raw newlines are refused inside strings), so the column is
   * the distance from the current line's start. */
  size_t col = pos >= p->line_start ? pos - p->line_start + 1 : 1;
  lm__fail(p->err, code, "JSON: line %u, column %zu: %s", (unsigned)p->line, col, what);
  return false;
}
#define FAIL(p, ...) fail_at((p), (p)->pos, LM_ERROR_VALUE, __VA_ARGS__)

/* A byte for a message: 'x', or \xNN when it is not printable ASCII. */
static const char *show_byte(unsigned c, char buf[8]) {
  if (c >= 0x20 && c < 0x7f) snprintf(buf, 8, "'%c'", (char)c);
  else snprintf(buf, 8, "\\x%02x", c);
  return buf;
}

static void skip_ws(parser *p) {
  while (p->pos < p->len) {
    unsigned char c = p->s[p->pos];
    if (c == '\n') {
      p->pos++;
      p->line++;
      p->line_start = p->pos;
    } else if (c == ' ' || c == '\t' || c == '\r') p->pos++;
    else break;
  }
}

static bool at_word(const parser *p, const char *word) {
  size_t n = strlen(word);
  return p->len - p->pos >= n && !memcmp(p->s + p->pos, word, n);
}

static bool count_value(parser *p) {
  if (++p->n_values > p->lim.max_values)
    return fail_at(p, p->pos, LM_ERROR_VALUE, "more than %zu values (the limit)", p->lim.max_values);
  return true;
}

static bool push(parser *p, const lm__json_value *v) {
  if (p->n_stack == p->cap_stack) {
    size_t cap = p->cap_stack ? p->cap_stack * 2 : 64;
    lm__json_value *s = realloc(p->stack, cap * sizeof *s);
    if (!s) return fail_at(p, p->pos, LM_ERROR_MEMORY, "out of memory");
    p->stack = s, p->cap_stack = cap;
  }
  p->stack[p->n_stack++] = *v;
  return true;
}

/* Moves the items above `base` on the stack into the arena, as v's items. */
static bool pop_items(parser *p, size_t base, lm__json_value *v) {
  v->n = p->n_stack - base;
  if (v->n) {
    v->items = arena_alloc(p->doc, v->n * sizeof *v->items);
    if (!v->items) return fail_at(p, p->pos, LM_ERROR_MEMORY, "out of memory");
    memcpy(v->items, p->stack + base, v->n * sizeof *v->items);
  }
  p->n_stack = base;
  return true;
}

static int hex4(const unsigned char *s) {
  int v = 0;
  for (int i = 0; i < 4; i++) {
    int c = s[i], d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
    if (d < 0) return -1;
    v = v * 16 + d;
  }
  return v;
}

static size_t put_utf8(unsigned char *o, uint32_t cp) {
  if (cp < 0x80) return o[0] = (unsigned char)cp, 1;
  if (cp < 0x800) return o[0] = (unsigned char)(0xc0 | cp >> 6), o[1] = (unsigned char)(0x80 | (cp & 0x3f)), 2;
  if (cp < 0x10000) {
    o[0] = (unsigned char)(0xe0 | cp >> 12), o[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
    o[2] = (unsigned char)(0x80 | (cp & 0x3f));
    return 3;
  }
  o[0] = (unsigned char)(0xf0 | cp >> 18), o[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3f));
  o[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f)), o[3] = (unsigned char)(0x80 | (cp & 0x3f));
  return 4;
}

/* The length of the valid UTF-8 sequence at s[0..n) (no overlong forms, no surrogates,
 * nothing past U+10FFFF), or 0. */
static size_t utf8_len(const unsigned char *s, size_t n) {
  unsigned c = s[0];
  size_t k;
  uint32_t cp, min;
  if (c >= 0xc2 && c <= 0xdf) k = 2, cp = c & 0x1f, min = 0x80;
  else if (c >= 0xe0 && c <= 0xef) k = 3, cp = c & 0x0f, min = 0x800;
  else if (c >= 0xf0 && c <= 0xf4) k = 4, cp = c & 0x07, min = 0x10000;
  else return 0;
  if (n < k) return 0;
  for (size_t i = 1; i < k; i++) {
    if ((s[i] & 0xc0) != 0x80) return 0;
    cp = cp << 6 | (s[i] & 0x3f);
  }
  if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
  return k;
}

/* A string at p->pos (on its opening quote), decoded into the arena. */
static bool parse_string(parser *p, const char **out, size_t *out_len) {
  size_t start = ++p->pos, end = start;
  /* Find the closing quote first: the decoded text is never longer than the raw. */
  for (;;) {
    if (end >= p->len) return fail_at(p, start - 1, LM_ERROR_VALUE, "unterminated string");
    unsigned char c = p->s[end];
    if (c == '"') break;
    if (c < 0x20) {
      char b[8];
      return fail_at(p, end, LM_ERROR_VALUE, "control character %s in a string (it must be escaped)", show_byte(c, b));
    }
    end += c == '\\' ? 2 : 1;
  }
  unsigned char *o = arena_alloc(p->doc, end - start + 1);
  if (!o) return fail_at(p, start, LM_ERROR_MEMORY, "out of memory");
  size_t n = 0, i = start;
  while (i < end) {
    unsigned char c = p->s[i];
    if (c == '\\') {
      unsigned char e = p->s[i + 1]; /* end is past it: the scan stepped over both bytes */
      const char *simple = strchr("\"\\/bfnrt", e);
      if (e && simple) {
        static const char decoded[] = "\"\\/\b\f\n\r\t";
        o[n++] = (unsigned char)decoded[simple - "\"\\/bfnrt"];
        i += 2;
        continue;
      }
      if (e != 'u') {
        char b[8];
        return fail_at(p, i, LM_ERROR_VALUE, "invalid escape: backslash before %s in a string", show_byte(e, b));
      }
      int cp = end - i >= 6 ? hex4(p->s + i + 2) : -1;
      if (cp < 0) return fail_at(p, i, LM_ERROR_VALUE, "\\u must be followed by four hex digits");
      size_t used = 6;
      if (cp >= 0xd800 && cp <= 0xdbff) { /* a high surrogate needs its low half next */
        int lo = end - i >= 12 && p->s[i + 6] == '\\' && p->s[i + 7] == 'u' ? hex4(p->s + i + 8) : -1;
        if (lo < 0xdc00 || lo > 0xdfff)
          return fail_at(p, i, LM_ERROR_VALUE, "lone UTF-16 surrogate \\u%04x in a string", (unsigned)cp);
        cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
        used = 12;
      } else if (cp >= 0xdc00 && cp <= 0xdfff)
        return fail_at(p, i, LM_ERROR_VALUE, "lone UTF-16 surrogate \\u%04x in a string", (unsigned)cp);
      if (cp == 0) return fail_at(p, i, LM_ERROR_VALUE, "\\u0000 (a NUL character) is not allowed in strings");
      n += put_utf8(o + n, (uint32_t)cp);
      i += used;
    } else if (c < 0x80) {
      o[n++] = c, i++;
    } else {
      size_t k = utf8_len(p->s + i, end - i);
      if (!k) return fail_at(p, i, LM_ERROR_VALUE, "invalid UTF-8 in a string");
      memcpy(o + n, p->s + i, k);
      n += k, i += k;
    }
  }
  o[n] = '\0';
  p->pos = end + 1;
  *out = (const char *)o;
  *out_len = n;
  return true;
}

static bool is_digit(const parser *p, size_t at) { return at < p->len && p->s[at] >= '0' && p->s[at] <= '9'; }

static bool parse_number(parser *p, lm__json_value *v) {
  size_t start = p->pos;
  bool neg = p->s[p->pos] == '-';
  if (neg) p->pos++;
  if (at_word(p, "Infinity")) {
    p->pos += 8;
    v->number = neg ? -INFINITY : INFINITY;
    return true;
  }
  if (!is_digit(p, p->pos)) return FAIL(p, "expected a digit after '-'");
  if (p->s[p->pos] == '0' && is_digit(p, p->pos + 1)) return FAIL(p, "numbers cannot have leading zeros");
  while (is_digit(p, p->pos)) p->pos++;
  bool integral = true;
  if (p->pos < p->len && p->s[p->pos] == '.') {
    integral = false;
    p->pos++;
    if (!is_digit(p, p->pos)) return FAIL(p, "expected a digit after the decimal point");
    while (is_digit(p, p->pos)) p->pos++;
  }
  if (p->pos < p->len && (p->s[p->pos] == 'e' || p->s[p->pos] == 'E')) {
    integral = false;
    p->pos++;
    if (p->pos < p->len && (p->s[p->pos] == '+' || p->s[p->pos] == '-')) p->pos++;
    if (!is_digit(p, p->pos)) return FAIL(p, "expected a digit in the exponent");
    while (is_digit(p, p->pos)) p->pos++;
  }
  size_t n = p->pos - start;
  if (n > MAX_NUMBER_CHARS) return fail_at(p, start, LM_ERROR_VALUE, "number longer than %d characters", MAX_NUMBER_CHARS);
  char buf[MAX_NUMBER_CHARS + 1];
  memcpy(buf, p->s + start, n);
  buf[n] = '\0';
  v->number = strtod(buf, NULL);
  if (isinf(v->number)) return fail_at(p, start, LM_ERROR_VALUE, "number %.40s%s is out of range", buf, n > 40 ? "..." : "");
  if (integral) { /* exact, where it fits an int64 */
    uint64_t mag = 0, limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
    bool fits = true;
    for (size_t i = neg; i < n && fits; i++) {
      unsigned d = (unsigned)(buf[i] - '0');
      if (mag > (limit - d) / 10) fits = false;
      else mag = mag * 10 + d;
    }
    if (fits) {
      v->is_integer = true;
      v->integer = neg ? (mag == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)mag) : (int64_t)mag;
    }
  }
  return true;
}

static bool parse_value(parser *p, int depth, lm__json_value *v);

static bool enter(parser *p, int depth) {
  if (depth >= p->lim.max_depth)
    return FAIL(p, "lists and objects nested deeper than %d levels (the limit)", p->lim.max_depth);
  p->pos++;
  skip_ws(p);
  return true;
}

static bool parse_array(parser *p, int depth, lm__json_value *v) {
  if (!enter(p, depth)) return false;
  size_t base = p->n_stack;
  v->type = LM_JSON_ARRAY;
  if (p->pos < p->len && p->s[p->pos] == ']') {
    p->pos++;
    return true;
  }
  for (;;) {
    lm__json_value item;
    if (!parse_value(p, depth + 1, &item) || !push(p, &item)) return false;
    skip_ws(p);
    if (p->pos >= p->len) return FAIL(p, "unexpected end of input in a list (missing ']')");
    unsigned char c = p->s[p->pos++];
    if (c == ']') break;
    if (c != ',') {
      char b[8];
      return fail_at(p, p->pos - 1, LM_ERROR_VALUE, "expected ',' or ']' after a list item, found %s", show_byte(c, b));
    }
    skip_ws(p);
    if (p->pos < p->len && p->s[p->pos] == ']') return FAIL(p, "trailing comma before ']'");
  }
  return pop_items(p, base, v);
}

static int cmp_keys(const void *a, const void *b) {
  return strcmp((*(const lm__json_value *const *)a)->key, (*(const lm__json_value *const *)b)->key);
}

/* A duplicate key makes the document ambiguous (Python keeps the last, others the first). */
static bool check_duplicates(parser *p, const lm__json_value *v) {
  const lm__json_value *dup = NULL;
  if (v->n <= 16) {
    for (size_t i = 0; i < v->n && !dup; i++)
      for (size_t j = i + 1; j < v->n && !dup; j++)
        if (!strcmp(v->items[i].key, v->items[j].key)) dup = &v->items[j];
  } else {
    const lm__json_value **sorted = malloc(v->n * sizeof *sorted);
    if (!sorted) return fail_at(p, p->pos, LM_ERROR_MEMORY, "out of memory");
    for (size_t i = 0; i < v->n; i++) sorted[i] = &v->items[i];
    qsort(sorted, v->n, sizeof *sorted, cmp_keys);
    for (size_t i = 1; i < v->n && !dup; i++)
      if (!strcmp(sorted[i - 1]->key, sorted[i]->key)) dup = sorted[i];
    free(sorted);
  }
  if (!dup) return true;
  p->failed = true;
  lm__fail(p->err, LM_ERROR_VALUE, "JSON: line %u: duplicate key \"%.80s\" in the object at line %u, column %u",
           (unsigned)dup->line, dup->key, (unsigned)v->line, (unsigned)v->col);
  return false;
}

static bool parse_object(parser *p, int depth, lm__json_value *v) {
  if (!enter(p, depth)) return false;
  size_t base = p->n_stack;
  v->type = LM_JSON_OBJECT;
  if (p->pos < p->len && p->s[p->pos] == '}') {
    p->pos++;
    return true;
  }
  for (;;) {
    if (p->pos >= p->len) return FAIL(p, "unexpected end of input in an object (missing '}')");
    if (p->s[p->pos] != '"') {
      char b[8];
      return FAIL(p, "expected a string key in an object, found %s", show_byte(p->s[p->pos], b));
    }
    uint32_t key_line = p->line;
    size_t key_len;
    const char *key;
    if (!parse_string(p, &key, &key_len)) return false;
    skip_ws(p);
    if (p->pos >= p->len || p->s[p->pos] != ':') return FAIL(p, "expected ':' after the key \"%.80s\"", key);
    p->pos++;
    lm__json_value item;
    if (!parse_value(p, depth + 1, &item)) return false;
    item.key = key;
    item.line = key_line; /* a member is where its key is */
    if (!push(p, &item)) return false;
    skip_ws(p);
    if (p->pos >= p->len) return FAIL(p, "unexpected end of input in an object (missing '}')");
    unsigned char c = p->s[p->pos++];
    if (c == '}') break;
    if (c != ',') {
      char b[8];
      return fail_at(p, p->pos - 1, LM_ERROR_VALUE, "expected ',' or '}' after an object member, found %s",
                     show_byte(c, b));
    }
    skip_ws(p);
    if (p->pos < p->len && p->s[p->pos] == '}') return FAIL(p, "trailing comma before '}'");
  }
  return pop_items(p, base, v) && check_duplicates(p, v);
}

static bool parse_value(parser *p, int depth, lm__json_value *v) {
  memset(v, 0, sizeof *v);
  skip_ws(p);
  if (p->pos >= p->len) return FAIL(p, "unexpected end of input, expected a value");
  v->line = p->line;
  v->col = (uint32_t)(p->pos - p->line_start + 1 < UINT32_MAX ? p->pos - p->line_start + 1 : UINT32_MAX);
  if (!count_value(p)) return false;
  unsigned char c = p->s[p->pos];
  switch (c) {
  case '{': return parse_object(p, depth, v);
  case '[': return parse_array(p, depth, v);
  case '"': v->type = LM_JSON_STRING; return parse_string(p, &v->string, &v->n);
  case 't':
  case 'f':
  case 'n': {
    const char *word = c == 't' ? "true" : c == 'f' ? "false" : "null";
    if (!at_word(p, word)) break;
    p->pos += strlen(word);
    v->type = c == 'n' ? LM_JSON_NULL : LM_JSON_BOOL;
    v->boolean = c == 't';
    return true;
  }
  case 'N':
  case 'I':
    v->type = LM_JSON_NUMBER;
    if (at_word(p, "NaN")) {
      p->pos += 3;
      v->number = NAN;
      return true;
    }
    if (at_word(p, "Infinity")) {
      p->pos += 8;
      v->number = INFINITY;
      return true;
    }
    break;
  default:
    if (c == '-' || (c >= '0' && c <= '9')) {
      v->type = LM_JSON_NUMBER;
      return parse_number(p, v);
    }
  }
  char b[8];
  return FAIL(p, "unexpected %s, expected a value", show_byte(c, b));
}

lm__json_doc *lm__json_parse(const char *text, size_t len, const lm__json_limits *limits, lm_error *err) {
  parser p = {.s = (const unsigned char *)text, .len = len, .line = 1, .err = err};
  if (limits) p.lim = *limits;
  if (!p.lim.max_bytes) p.lim.max_bytes = DEFAULT_MAX_BYTES;
  if (p.lim.max_depth <= 0) p.lim.max_depth = DEFAULT_MAX_DEPTH;
  if (p.lim.max_depth > HARD_MAX_DEPTH) p.lim.max_depth = HARD_MAX_DEPTH;
  if (!p.lim.max_values) p.lim.max_values = DEFAULT_MAX_VALUES;
  if (!text) {
    lm__fail(err, LM_ERROR_VALUE, "JSON: the text is NULL");
    return NULL;
  }
  if (len > p.lim.max_bytes) {
    lm__fail(err, LM_ERROR_VALUE, "JSON: the text is %zu bytes, more than the limit of %zu", len, p.lim.max_bytes);
    return NULL;
  }
  p.doc = calloc(1, sizeof *p.doc);
  if (!p.doc) {
    lm__fail(err, LM_ERROR_MEMORY, "JSON: out of memory");
    return NULL;
  }
  if (len >= 3 && !memcmp(text, "\xef\xbb\xbf", 3)) FAIL(&p, "a byte-order mark is not allowed before the JSON text");
  else if (parse_value(&p, 0, &p.doc->root)) {
    skip_ws(&p);
    if (p.pos < p.len) {
      char b[8];
      FAIL(&p, "unexpected %s after the JSON value", show_byte(p.s[p.pos], b));
    }
  }
  free(p.stack);
  if (p.failed) {
    lm__json_free(p.doc);
    return NULL;
  }
  return p.doc;
}

const lm__json_value *lm__json_get(const lm__json_value *v, const char *key) {
  if (!v || v->type != LM_JSON_OBJECT || !key) return NULL;
  for (size_t i = 0; i < v->n; i++)
    if (!strcmp(v->items[i].key, key)) return &v->items[i];
  return NULL;
}

const char *lm__json_kind(const lm__json_value *v) {
  if (!v) return "missing";
  switch (v->type) {
  case LM_JSON_NULL: return "null";
  case LM_JSON_BOOL: return "a boolean";
  case LM_JSON_NUMBER: return v->is_integer ? "an integer" : "a number";
  case LM_JSON_STRING: return "a string";
  case LM_JSON_ARRAY: return "a list";
  case LM_JSON_OBJECT: return "an object";
  }
  return "?";
}
