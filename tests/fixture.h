/* A reader for the reference fixtures under tests/fixtures (made by the scripts in
 * tools/keras_fixtures). The format, line by line ('#' lines are comments):
 *
 *   case <name>
 *   attr <key> <value>
 *   shape <array> <rank> <d0> ... <d(rank-1)>
 *   data <array> <n> <v0> ... <v(n-1)>
 *   end
 *
 * Values are float32 numbers printed with %.9g. Everything here is static inline so that
 * a test includes only what it uses without unused-function warnings. */
#ifndef LAMINA_TEST_FIXTURE_H
#define LAMINA_TEST_FIXTURE_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FX_MAX_RANK 8

typedef struct fx_array {
  char name[96];
  int rank;
  int64_t dim[FX_MAX_RANK];
  int64_t n;
  float *f; /* n values, as the float32 numbers Keras used */
} fx_array;

typedef struct fx_attr {
  char key[64];
  char value[256];
} fx_attr;

typedef struct fx_case {
  char name[128];
  fx_attr *attrs;
  int n_attrs;
  fx_array *arrays;
  int n_arrays;
  int checked; /* set by the test that compared it */
} fx_case;

typedef struct fx_file {
  fx_case *cases;
  int n_cases;
  char error[8192]; /* room for a full path and a message */
} fx_file;

/* Writes $LAMINA_SOURCE_DIR/<relative> into buf (or <relative> from the working directory
 * when the variable is not set); returns buf. */
static inline const char *fx_source_path(char *buf, size_t len, const char *relative) {
  const char *root = getenv("LAMINA_SOURCE_DIR");
  if (root && *root) snprintf(buf, len, "%s/%s", root, relative);
  else snprintf(buf, len, "%s", relative);
  return buf;
}

static inline void fx_free(fx_file *f) {
  for (int c = 0; c < f->n_cases; c++) {
    for (int a = 0; a < f->cases[c].n_arrays; a++) free(f->cases[c].arrays[a].f);
    free(f->cases[c].arrays);
    free(f->cases[c].attrs);
  }
  free(f->cases);
  f->cases = NULL;
  f->n_cases = 0;
}

/* The next space-separated token of *p, NUL-terminated in place; NULL at the line's end. */
static inline char *fx__token(char **p) {
  char *s = *p;
  while (*s == ' ' || *s == '\t' || *s == '\r') s++;
  if (!*s) return *p = s, NULL;
  char *e = s;
  while (*e && *e != ' ' && *e != '\t' && *e != '\r') e++;
  if (*e) *e++ = 0;
  *p = e;
  return s;
}

static inline int fx__grow(void **items, int n, size_t size) {
  /* Grows to hold n + 1 items, doubling at powers of two. */
  if (n & (n - 1)) return 0;
  void *q = realloc(*items, (size_t)(n ? 2 * n : 1) * size);
  if (!q) return -1;
  *items = q;
  return 0;
}

static inline fx_array *fx__array_named(fx_case *c, const char *name) {
  for (int a = 0; a < c->n_arrays; a++)
    if (!strcmp(c->arrays[a].name, name)) return &c->arrays[a];
  return NULL;
}

/* Loads path; 0, or -1 with f->error saying which line is wrong and why. */
static inline int fx_load(fx_file *f, const char *path) {
  memset(f, 0, sizeof *f);
  FILE *fp = fopen(path, "rb");
  if (!fp) {
    snprintf(f->error, sizeof f->error, "cannot open %s (set LAMINA_SOURCE_DIR to the source tree)", path);
    return -1;
  }
  char *text = NULL;
  size_t len = 0, cap = 0;
  for (;;) {
    if (len + 65536 + 1 > cap) {
      cap = 2 * (len + 65536 + 1);
      char *q = realloc(text, cap);
      if (!q) break;
      text = q;
    }
    size_t got = fread(text + len, 1, cap - len - 1, fp);
    len += got;
    if (got == 0) break;
  }
  fclose(fp);
  if (!text) {
    snprintf(f->error, sizeof f->error, "%s: out of memory", path);
    return -1;
  }
  text[len] = 0;

  fx_case *cur = NULL;
  int line_no = 0;
  char *line = text;
  while (line && *line) {
    char *nl = strchr(line, '\n');
    if (nl) *nl = 0;
    line_no++;
    char *p = line;
    line = nl ? nl + 1 : NULL;
    char *kw = fx__token(&p);
    if (!kw || kw[0] == '#') continue;
#define FX_BAD(...)                                                                         \
  do {                                                                                      \
    int at_ = snprintf(f->error, sizeof f->error, "%s:%d: ", path, line_no);               \
    snprintf(f->error + at_, sizeof f->error - (size_t)at_, __VA_ARGS__);                   \
    goto bad;                                                                               \
  } while (0)
    if (!strcmp(kw, "case")) {
      char *name = fx__token(&p);
      if (cur) FX_BAD("'case' inside case '%s' (missing 'end')", cur->name);
      if (!name || strlen(name) >= sizeof cur->name) FX_BAD("'case' needs a name shorter than %zu", sizeof cur->name);
      if (fx__grow((void **)&f->cases, f->n_cases, sizeof *f->cases)) FX_BAD("out of memory");
      cur = &f->cases[f->n_cases++];
      memset(cur, 0, sizeof *cur);
      strcpy(cur->name, name);
    } else if (!cur) {
      FX_BAD("'%s' outside a case", kw);
    } else if (!strcmp(kw, "end")) {
      for (int a = 0; a < cur->n_arrays; a++)
        if (!cur->arrays[a].f) FX_BAD("case '%s': array '%s' has a shape but no data", cur->name, cur->arrays[a].name);
      cur = NULL;
    } else if (!strcmp(kw, "attr")) {
      char *key = fx__token(&p), *value = fx__token(&p);
      if (!key || !value || strlen(key) >= sizeof cur->attrs->key || strlen(value) >= sizeof cur->attrs->value)
        FX_BAD("'attr' needs a key and a value");
      if (fx__grow((void **)&cur->attrs, cur->n_attrs, sizeof *cur->attrs)) FX_BAD("out of memory");
      fx_attr *at = &cur->attrs[cur->n_attrs++];
      strcpy(at->key, key);
      strcpy(at->value, value);
    } else if (!strcmp(kw, "shape")) {
      char *name = fx__token(&p), *rank = fx__token(&p), *end;
      if (!name || strlen(name) >= sizeof cur->arrays->name || !rank) FX_BAD("'shape' needs a name and a rank");
      if (fx__array_named(cur, name)) FX_BAD("array '%s' appears twice", name);
      long r = strtol(rank, &end, 10);
      if (*end || r < 0 || r > FX_MAX_RANK) FX_BAD("bad rank '%s'", rank);
      if (fx__grow((void **)&cur->arrays, cur->n_arrays, sizeof *cur->arrays)) FX_BAD("out of memory");
      fx_array *arr = &cur->arrays[cur->n_arrays++];
      memset(arr, 0, sizeof *arr);
      strcpy(arr->name, name);
      arr->rank = (int)r;
      arr->n = 1;
      for (int d = 0; d < arr->rank; d++) {
        char *tok = fx__token(&p);
        long long v = tok ? strtoll(tok, &end, 10) : -1;
        if (!tok || *end || v < 0) FX_BAD("array '%s': bad dimension %d", name, d);
        arr->dim[d] = v;
        arr->n *= v;
      }
      if (fx__token(&p)) FX_BAD("array '%s': more dimensions than its rank", name);
    } else if (!strcmp(kw, "data")) {
      char *name = fx__token(&p), *count = fx__token(&p), *end;
      fx_array *arr = name ? fx__array_named(cur, name) : NULL;
      if (!arr) FX_BAD("'data' for an array with no 'shape' line before it");
      if (arr->f) FX_BAD("array '%s' has data twice", name);
      long long n = count ? strtoll(count, &end, 10) : -1;
      if (!count || *end || n != arr->n) FX_BAD("array '%s': %s values, but its shape holds %lld", name, count ? count : "no", (long long)arr->n);
      arr->f = malloc((size_t)(n ? n : 1) * sizeof *arr->f);
      if (!arr->f) FX_BAD("out of memory");
      for (int64_t i = 0; i < n; i++) {
        char *tok = fx__token(&p);
        double v = tok ? strtod(tok, &end) : 0;
        if (!tok || *end) FX_BAD("array '%s': value %lld is missing or not a number", name, (long long)i);
        arr->f[i] = (float)v;
      }
      if (fx__token(&p)) FX_BAD("array '%s': more than %lld values", name, n);
    } else {
      FX_BAD("unknown keyword '%s'", kw);
    }
#undef FX_BAD
  }
  if (cur) {
    snprintf(f->error, sizeof f->error, "%s: case '%s' has no 'end'", path, cur->name);
    goto bad;
  }
  free(text);
  return 0;
bad:
  free(text);
  fx_free(f);
  return -1;
}

static inline const fx_array *fx_array_get(const fx_case *c, const char *name) {
  return fx__array_named((fx_case *)c, name);
}

/* The attribute's value, or NULL. */
static inline const char *fx_attr_get(const fx_case *c, const char *key) {
  for (int a = 0; a < c->n_attrs; a++)
    if (!strcmp(c->attrs[a].key, key)) return c->attrs[a].value;
  return NULL;
}

static inline fx_case *fx_case_get(fx_file *f, const char *name) {
  for (int c = 0; c < f->n_cases; c++)
    if (!strcmp(f->cases[c].name, name)) return &f->cases[c];
  return NULL;
}

static inline int fx_has_prefix(const char *s, const char *prefix) {
  return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* Compares got[0..want->n) with the fixture: |got - want| <= atol + rtol * |want|.
 * Prints every mismatch (up to 8) to stderr, tagged with what; returns how many. */
static inline int fx_compare(const char *what, const float *got, const fx_array *want, double rtol, double atol) {
  int bad = 0;
  for (int64_t i = 0; i < want->n; i++) {
    double g = got[i], w = want->f[i];
    if (fabs(g - w) <= atol + rtol * fabs(w)) continue;
    if (bad++ < 8)
      fprintf(stderr, "  %s: %s[%lld] = %.9g, Keras %.9g (diff %.3g, rel %.3g)\n", what, want->name, (long long)i, g,
              w, fabs(g - w), w != 0 ? fabs(g - w) / fabs(w) : INFINITY);
  }
  if (bad > 8) fprintf(stderr, "  %s: %s: %d mismatches in all\n", what, want->name, bad);
  return bad;
}

/* The same for one scalar. */
static inline int fx_compare_scalar(const char *what, double got, const fx_array *want, double rtol, double atol) {
  float g = (float)got;
  if (want->n != 1) {
    fprintf(stderr, "  %s: %s holds %lld values, not a scalar\n", what, want->name, (long long)want->n);
    return 1;
  }
  return fx_compare(what, &g, want, rtol, atol);
}

#endif
