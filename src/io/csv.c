/* CSV files of numbers, scikit-learn's dataset CSVs among them.
 *
 * The file is read whole and split into rows by an RFC 4180 field reader (quotes, ""
 * escapes, CRLF / LF / CR); every row but the first is parsed to doubles straight away,
 * the first is kept as text until the header is settled, since scikit-learn's count row
 * can only be recognized against the rows that follow it. */
#include "io/zip.h"
#include <lamina/io.h>
#include <locale.h>
#include <math.h>

typedef struct row {
  char *text;      /* the fields, unescaped, each NUL-terminated */
  size_t *start;   /* field k is text + start[k] */
  size_t cap_text;
  int n, cap;
} row;

typedef struct reader {
  const char *s, *end;
  char delim;
  int64_t line; /* of the next character */
  const char *path;
} reader;

static int put_char(row *r, size_t *at, char ch) {
  if (*at + 1 >= r->cap_text) {
    size_t ncap = r->cap_text ? 2 * r->cap_text : 256;
    char *p = lm__realloc(r->text, ncap);
    if (!p) return -1;
    r->text = p;
    r->cap_text = ncap;
  }
  r->text[(*at)++] = ch;
  return 0;
}

static int new_field(row *r, size_t at) {
  if (r->n == r->cap) {
    int ncap = r->cap ? 2 * r->cap : 16;
    if (ncap > (1 << 24)) return lm__fail(NULL, LM_ERROR_IO, "a row of more than %d fields", 1 << 24), -1;
    size_t *p = lm__realloc(r->start, (size_t)ncap * sizeof *p);
    if (!p) return -1;
    r->start = p;
    r->cap = ncap;
  }
  r->start[r->n++] = at;
  return 0;
}

static bool at_newline(const reader *rd) { return *rd->s == '\n' || *rd->s == '\r'; }

static void eat_newline(reader *rd) {
  if (*rd->s == '\r' && rd->s + 1 < rd->end && rd->s[1] == '\n') rd->s++;
  rd->s++;
  rd->line++;
}

static int nul_byte(const reader *rd, const row *r) {
  return lm__fail(NULL, LM_ERROR_IO, "%s:%lld: field %d holds a NUL byte (not a text file?)", rd->path, (long long)rd->line, r->n),
         -1;
}

/* Reads the next non-blank row into r; 1 with a row, 0 at the end, -1 on a malformed one. */
static int next_row(reader *rd, row *r, int64_t *line) {
  while (rd->s < rd->end && at_newline(rd)) eat_newline(rd); /* blank lines */
  if (rd->s >= rd->end) return 0;
  *line = rd->line;
  r->n = 0;
  size_t at = 0;
  for (;;) {
    if (new_field(r, at)) return -1;
    if (rd->s < rd->end && *rd->s == '"') {
      int64_t opened = rd->line;
      rd->s++;
      for (;;) {
        if (rd->s >= rd->end)
          return lm__fail(NULL, LM_ERROR_IO, "%s:%lld: a quoted field is never closed", rd->path, (long long)opened), -1;
        if (*rd->s == '"') {
          if (rd->s + 1 < rd->end && rd->s[1] == '"') rd->s++; /* "" is a quote */
          else break;
        } else if (*rd->s == '\n') {
          rd->line++;
        }
        if (!*rd->s) return nul_byte(rd, r);
        if (put_char(r, &at, *rd->s++)) return -1;
      }
      rd->s++;
      if (rd->s < rd->end && *rd->s != rd->delim && !at_newline(rd))
        return lm__fail(NULL, LM_ERROR_IO, "%s:%lld: field %d: text after a closing quote", rd->path, (long long)rd->line, r->n),
               -1;
    } else {
      while (rd->s < rd->end && *rd->s != rd->delim && !at_newline(rd)) {
        if (!*rd->s) return nul_byte(rd, r);
        if (put_char(r, &at, *rd->s++)) return -1;
      }
    }
    if (put_char(r, &at, 0)) return -1;
    if (rd->s < rd->end && *rd->s == rd->delim) {
      rd->s++;
      continue;
    }
    if (rd->s < rd->end) eat_newline(rd);
    return 1;
  }
}

/* A number as Python's float() reads one (surrounding blanks allowed); an empty field is NaN. */
static bool parse_number(const char *f, locale_t c_locale, double *v) {
  while (*f == ' ' || *f == '\t') f++;
  const char *e = f + strlen(f);
  while (e > f && (e[-1] == ' ' || e[-1] == '\t')) e--;
  if (e == f) {
    *v = NAN;
    return true;
  }
  char *stop;
  *v = strtod_l(f, &stop, c_locale);
  return stop == e;
}

static bool parse_count(const char *f, int64_t *v) {
  *v = 0;
  if (!*f) return false;
  for (; *f; f++) {
    if (*f < '0' || *f > '9' || *v > INT32_MAX) return false;
    *v = *v * 10 + (*f - '0');
  }
  return true;
}

static char **copy_fields(const row *r, int from) {
  char **out = lm__calloc((size_t)(r->n - from + 1), sizeof *out);
  for (int k = from; out && k < r->n; k++) {
    if (!(out[k - from] = lm__strdup(r->text + r->start[k]))) {
      for (int j = from; j < k; j++) free(out[j - from]);
      free(out);
      return NULL;
    }
  }
  return out;
}

static void free_names(char **names, int n) {
  for (int i = 0; names && i < n; i++) free(names[i]);
  free(names);
}

void lm_csv_free(lm_csv *csv) {
  if (!csv) return;
  lm_array_free(csv->x);
  lm_array_free(csv->y);
  free_names(csv->names, csv->n_names);
  free_names(csv->class_names, csv->n_classes);
  memset(csv, 0, sizeof *csv);
}

lm_status lm_load_csv_opts(const char *path, lm_csv *out, lm_csv_opts o) {
  if (!out) return lm__fail(NULL, LM_ERROR_VALUE, "lm_load_csv: out is NULL");
  memset(out, 0, sizeof *out);
  if (!path) return lm__fail(NULL, LM_ERROR_VALUE, "lm_load_csv: path is NULL");
  char delim = o.delimiter ? o.delimiter : ',';
  if (delim == '"' || delim == '\n' || delim == '\r' || o.header < LM_CSV_AUTO || o.header > LM_CSV_SKLEARN)
    return lm__fail(NULL, LM_ERROR_VALUE, "lm_load_csv: %s: bad options (delimiter 0x%02x, header %d)", path,
                    (unsigned char)delim, (int)o.header);
  uint8_t *buf;
  size_t len;
  lm_status st = lm__read_file(path, &buf, &len);
  if (st) return st;
  locale_t c_locale = newlocale(LC_NUMERIC_MASK, "C", (locale_t)0);
  if (!c_locale) {
    free(buf);
    return lm__fail(NULL, LM_ERROR_MEMORY, "lm_load_csv: %s: cannot make the C locale", path);
  }
  reader rd = {(const char *)buf, (const char *)buf + len, delim, 1, path};
  if (len >= 3 && !memcmp(buf, "\xEF\xBB\xBF", 3)) rd.s += 3;
  row first = {0}, r = {0};
  double *vals = NULL;
  size_t n_vals = 0, cap_vals = 0;
  int64_t rows = 0, first_line = 0, line = 0;
  int cols = 0;
  int got = next_row(&rd, &first, &first_line);
  if (got == 0) st = lm__fail(NULL, LM_ERROR_IO, "%s: the file holds no rows", path);
  /* Every row after the first, as numbers; they fix the column count. */
  while (got == 1 && !st && (got = next_row(&rd, &r, &line)) == 1) {
    if (rows == 0) cols = r.n;
    if (r.n != cols) {
      st = lm__fail(NULL, LM_ERROR_IO, "%s:%lld: %d fields, but the rows before have %d", path, (long long)line, r.n, cols);
      break;
    }
    if (n_vals + (size_t)cols > cap_vals) {
      size_t ncap = cap_vals ? 2 * cap_vals : 4096;
      while (ncap < n_vals + (size_t)cols) ncap *= 2;
      double *p = lm__realloc(vals, ncap * sizeof *p);
      if (!p) {
        st = LM_ERROR_MEMORY;
        break;
      }
      vals = p;
      cap_vals = ncap;
    }
    for (int k = 0; k < cols; k++) {
      const char *f = r.text + r.start[k];
      if (!parse_number(f, c_locale, &vals[n_vals++])) {
        st = lm__fail(NULL, LM_ERROR_IO, "%s:%lld: field %d (\"%.40s\") is not a number", path, (long long)line, k + 1, f);
        break;
      }
    }
    rows++;
  }
  if (got < 0) st = st ? st : LM_ERROR_IO;

  /* The first row: scikit-learn's counts, names, or data. */
  lm_csv_header mode = o.header;
  int64_t n_samples = 0, n_features = 0;
  bool counts = !st && first.n >= 2 && parse_count(first.text + first.start[0], &n_samples) &&
                parse_count(first.text + first.start[1], &n_features);
  bool fits = counts && n_samples == rows && (rows == 0 || n_features + 1 == cols);
  bool numeric = true;
  for (int k = 0; !st && k < first.n && numeric; k++) {
    double v;
    numeric = parse_number(first.text + first.start[k], c_locale, &v);
  }
  /* An all-numeric first row as wide as the data is data, even when it happens to fit. */
  if (!st && mode == LM_CSV_AUTO)
    mode = fits && rows > 0 && (!numeric || first.n != cols) ? LM_CSV_SKLEARN : !numeric ? LM_CSV_NAMES : LM_CSV_NO_HEADER;
  if (!st && mode == LM_CSV_SKLEARN && !fits) {
    if (!counts)
      st = lm__fail(NULL, LM_ERROR_IO, "%s:%lld: not scikit-learn's header (n_samples, n_features, class names...)", path,
                    (long long)first_line);
    else
      st = lm__fail(NULL, LM_ERROR_IO,
                    "%s:%lld: the scikit-learn header promises %lld samples of %lld features (+ a label), the file holds "
                    "%lld rows of %d fields",
                    path, (long long)first_line, (long long)n_samples, (long long)n_features, (long long)rows, cols);
  }
  if (!st && mode == LM_CSV_NAMES && rows > 0 && first.n != cols)
    st = lm__fail(NULL, LM_ERROR_IO, "%s:%lld: the header names %d columns, the rows have %d fields", path,
                  (long long)first_line, first.n, cols);
  if (!st && mode == LM_CSV_NO_HEADER) {
    if (rows > 0 && first.n != cols)
      st = lm__fail(NULL, LM_ERROR_IO, "%s:%lld: %d fields, but the rows after have %d", path, (long long)first_line, first.n,
                    cols);
    cols = first.n;
    /* Insert the first row in front. */
    double *p = st ? NULL : lm__realloc(vals, (n_vals + (size_t)cols) * sizeof *p);
    if (!st && !p) st = LM_ERROR_MEMORY;
    if (!st) {
      vals = p;
      memmove(vals + cols, vals, n_vals * sizeof *vals);
      for (int k = 0; k < cols && !st; k++) {
        const char *f = first.text + first.start[k];
        if (!parse_number(f, c_locale, &vals[k]))
          st = lm__fail(NULL, LM_ERROR_IO, "%s:%lld: field %d (\"%.40s\") is not a number", path, (long long)first_line, k + 1,
                        f);
      }
      n_vals += (size_t)cols;
      rows++;
    }
  }
  if (!st && rows == 0) st = lm__fail(NULL, LM_ERROR_IO, "%s: the file holds a header and no data", path);

  /* The label column. */
  int label = -1;
  if (!st && o.label_column != LM_CSV_NO_LABEL) {
    int64_t k = o.label_column == 0 ? (mode == LM_CSV_SKLEARN ? cols - 1 : -1)
                : o.label_column > 0 ? (int64_t)o.label_column - 1
                                     : (int64_t)cols + o.label_column;
    if (o.label_column != 0 && (k < 0 || k >= cols))
      st = lm__fail(NULL, LM_ERROR_VALUE, "lm_load_csv: %s: label_column %d is outside the file's %d columns", path,
                    o.label_column, cols);
    else if (k >= 0 && cols < 2)
      st = lm__fail(NULL, LM_ERROR_VALUE, "lm_load_csv: %s: a label column leaves no feature in a file of 1 column", path);
    label = (int)k;
  }
  if (!st) {
    int feats = cols - (label >= 0);
    out->x = lm_array_new(LM_FLOAT32, LM_SHAPE(rows, feats));
    if (label >= 0) out->y = lm_array_new(o.float_labels ? LM_FLOAT32 : LM_INT32, LM_SHAPE(rows));
    if (!out->x || (label >= 0 && !out->y)) st = LM_ERROR_MEMORY;
    for (int64_t i = 0; !st && i < rows; i++) {
      const double *v = vals + i * cols;
      float *x = lm_array_f32(out->x) + i * feats;
      for (int k = 0, j = 0; k < cols; k++)
        if (k != label) x[j++] = (float)v[k];
      if (label < 0) continue;
      double y = v[label];
      if (o.float_labels) {
        lm_array_f32(out->y)[i] = (float)y;
      } else if (y == floor(y) && y >= INT32_MIN && y <= INT32_MAX) {
        lm_array_i32(out->y)[i] = (int32_t)y;
      } else {
        st = lm__fail(NULL, LM_ERROR_IO, "%s: data row %lld: the label %g is not an integer (set .float_labels for targets)",
                      path, (long long)i + 1, y);
      }
    }
  }
  if (!st && mode == LM_CSV_NAMES) {
    out->n_names = first.n;
    if (!(out->names = copy_fields(&first, 0))) st = LM_ERROR_MEMORY;
  }
  if (!st && mode == LM_CSV_SKLEARN) {
    out->n_classes = first.n - 2;
    if (!(out->class_names = copy_fields(&first, 2))) st = LM_ERROR_MEMORY;
  }
  freelocale(c_locale);
  free(first.text);
  free(first.start);
  free(r.text);
  free(r.start);
  free(vals);
  free(buf);
  if (st) lm_csv_free(out);
  return st;
}
