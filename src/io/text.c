/* Text: the Pang & Lee movie-review CSV, and Keras's Tokenizer / pad_sequences.
 *
 * The tokenizer follows keras.preprocessing.text: text_to_word_sequence (lower, filter
 * characters replaced by the separator, split, empty strings dropped), word counts kept in
 * order of first appearance, and a word index ranked by count with ties in that order
 * (Python's stable sort), starting at 1. */
#include "core/core.h"
#include <errno.h>
#include <lamina/io.h>

/* ---- The review CSV ---- */

void lm_texts_free(lm_texts *texts) {
  if (!texts) return;
  for (int64_t i = 0; i < texts->n; i++) free(texts->text[i]);
  free(texts->text);
  texts->text = NULL;
  texts->n = 0;
}

static lm_status read_all(const char *path, char **data, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f) return lm__fail(NULL, LM_ERROR_IO, "%s: cannot open: %s", path, strerror(errno));
  size_t cap = 1 << 20, n = 0;
  char *buf = malloc(cap);
  while (buf) {
    n += fread(buf + n, 1, cap - n - 1, f);
    if (n < cap - 1) break;
    char *p = realloc(buf, cap * 2);
    if (!p) {
      free(buf);
      buf = NULL;
      break;
    }
    buf = p;
    cap *= 2;
  }
  lm_status st = LM_OK;
  if (!buf) st = lm__fail(NULL, LM_ERROR_MEMORY, "%s: out of memory reading the file", path);
  else if (ferror(f)) st = lm__fail(NULL, LM_ERROR_IO, "%s: read error: %s", path, strerror(errno));
  fclose(f);
  if (st) {
    free(buf);
    return st;
  }
  buf[n] = 0;
  *data = buf;
  *len = n;
  return LM_OK;
}

/* One CSV field starting at *at: quoted ("" is a quote, newlines allowed) or bare. Returns
 * a malloc'd copy, or NULL with *err set. */
static char *csv_field(const char *s, size_t len, size_t *at, int64_t *line, const char **err) {
  size_t i = *at;
  if (i < len && s[i] == '"') {
    size_t cap = 256, n = 0;
    char *out = malloc(cap);
    if (!out) {
      *err = "out of memory";
      return NULL;
    }
    for (i++;; i++) {
      if (i >= len) {
        free(out);
        *err = "a quoted field is not closed before the end of the file";
        return NULL;
      }
      char c = s[i];
      if (c == '"') {
        if (i + 1 < len && s[i + 1] == '"') i++;
        else {
          i++;
          break;
        }
      }
      if (c == '\n') (*line)++;
      if (n + 2 > cap) {
        char *p = realloc(out, cap *= 2);
        if (!p) {
          free(out);
          *err = "out of memory";
          return NULL;
        }
        out = p;
      }
      out[n++] = c;
    }
    out[n] = 0;
    /* After the closing quote: a separator, a row end, or the end of the file. */
    if (i < len && s[i] != ',' && s[i] != '\n' && !(s[i] == '\r' && i + 1 < len && s[i + 1] == '\n') &&
        !(s[i] == '\r' && i + 1 == len)) {
      free(out);
      *err = "text follows a closing quote";
      return NULL;
    }
    *at = i;
    return out;
  }
  size_t start = i;
  while (i < len && s[i] != ',' && s[i] != '\n' && s[i] != '\r') i++;
  if (i < len && s[i] == '\r' && !(i + 1 == len || s[i + 1] == '\n')) {
    *err = "a bare carriage return inside a field";
    return NULL;
  }
  char *out = malloc(i - start + 1);
  if (!out) {
    *err = "out of memory";
    return NULL;
  }
  memcpy(out, s + start, i - start);
  out[i - start] = 0;
  *at = i;
  return out;
}

lm_status lm_load_reviews(const char *csv_path, lm_texts *texts, lm_array **labels) {
  if (!csv_path || !texts || !labels) return lm__fail(NULL, LM_ERROR_VALUE, "lm_load_reviews: NULL argument");
  texts->n = 0;
  texts->text = NULL;
  *labels = NULL;
  char *s = NULL;
  size_t len = 0;
  lm_status st = read_all(csv_path, &s, &len);
  if (st) return st;
  size_t at = len >= 3 && !memcmp(s, "\xEF\xBB\xBF", 3) ? 3 : 0;
  int64_t line = 1, n = 0, cap = 0;
  char **text = NULL;
  int32_t *label = NULL;
  const char *err = NULL;
  while (at < len) {
    if (s[at] == '\n' || (s[at] == '\r' && at + 1 < len && s[at + 1] == '\n')) { /* blank line */
      at += s[at] == '\r' ? 2 : 1;
      line++;
      continue;
    }
    int64_t row_line = line;
    char *fields[2] = {NULL, NULL};
    int nf = 0;
    for (;;) {
      char *f = csv_field(s, len, &at, &line, &err);
      if (!f) break;
      if (nf < 2) fields[nf] = f;
      else free(f);
      nf++;
      if (at < len && s[at] == ',') {
        at++;
        continue;
      }
      if (at < len) at += s[at] == '\r' ? 2 : 1; /* the row's end */
      line++;
      break;
    }
    if (!err && nf != 2) err = "a row does not hold exactly two fields (label, text)";
    int32_t y = -2;
    if (!err) {
      if (!strcmp(fields[0], "1")) y = 1;
      else if (!strcmp(fields[0], "-1")) y = 0;
      else if (n == 0 && !strcmp(fields[0], "label")) y = -1; /* a header row */
      else err = "a label is not 1 or -1";
    }
    if (!err && y >= 0) {
      if (n == cap) {
        int64_t ncap = cap ? cap * 2 : 1024;
        char **t = realloc(text, (size_t)ncap * sizeof *t);
        if (t) text = t;
        int32_t *l = t ? realloc(label, (size_t)ncap * sizeof *l) : NULL;
        if (l) label = l;
        if (!t || !l) err = "out of memory";
        else cap = ncap;
      }
      if (!err) {
        text[n] = fields[1];
        fields[1] = NULL;
        label[n++] = y;
      }
    }
    if (err && nf >= 1 && fields[0] && !strcmp(err, "a label is not 1 or -1")) {
      char shown[32];
      snprintf(shown, sizeof shown, "%.20s%s", fields[0], strlen(fields[0]) > 20 ? "..." : "");
      st = lm__fail(NULL, LM_ERROR_IO, "%s:%lld: the label \"%s\" is not 1 or -1", csv_path, (long long)row_line, shown);
    } else if (err) {
      st = lm__fail(NULL, LM_ERROR_IO, "%s:%lld: %s", csv_path, (long long)row_line, err);
    }
    free(fields[0]);
    free(fields[1]);
    if (st) break;
  }
  free(s);
  if (!st && n == 0) st = lm__fail(NULL, LM_ERROR_IO, "%s: no reviews in the file", csv_path);
  lm_array *y = st ? NULL : lm_array_new(LM_INT32, (lm_shape){.rank = 1, .dim = {n}});
  if (!st && !y) st = LM_ERROR_MEMORY;
  if (st) {
    for (int64_t i = 0; i < n; i++) free(text[i]);
    free(text);
    free(label);
    return st;
  }
  memcpy(y->data, label, (size_t)n * sizeof *label);
  free(label);
  texts->n = n;
  texts->text = text;
  *labels = y;
  return LM_OK;
}

/* ---- Tokenizer ---- */

typedef struct word_entry {
  char *word;
  int64_t count;
  int64_t index; /* in word_index; 0 before the first fit ranks it */
} word_entry;

struct lm_tokenizer {
  int num_words;
  bool lower;
  bool is_filter[256];
  char *split;
  size_t split_len;
  char *oov_token;
  word_entry *words; /* in order of first appearance (Keras's word_counts) */
  int64_t n_words, cap_words;
  int64_t *slots; /* open addressing: entry + 1, 0 when free */
  int64_t n_slots;
  int64_t *by_index; /* by_index[i - 1]: entry of index i (-1: the OOV token) */
  int64_t n_index;
};

static uint64_t hash_bytes(const char *s, size_t n) {
  uint64_t h = 1469598103934665603ull; /* FNV-1a */
  for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
  return h;
}

static int64_t find_word(const lm_tokenizer *t, const char *w, size_t n) {
  if (!t->n_slots) return -1;
  for (uint64_t h = hash_bytes(w, n) & (uint64_t)(t->n_slots - 1);; h = (h + 1) & (uint64_t)(t->n_slots - 1)) {
    int64_t e = t->slots[h] - 1;
    if (e < 0) return -1;
    if (!strncmp(t->words[e].word, w, n) && t->words[e].word[n] == 0) return e;
  }
}

static int rehash(lm_tokenizer *t, int64_t n_slots) {
  int64_t *slots = calloc((size_t)n_slots, sizeof *slots);
  if (!slots) return -1;
  for (int64_t e = 0; e < t->n_words; e++) {
    uint64_t h = hash_bytes(t->words[e].word, strlen(t->words[e].word)) & (uint64_t)(n_slots - 1);
    while (slots[h]) h = (h + 1) & (uint64_t)(n_slots - 1);
    slots[h] = e + 1;
  }
  free(t->slots);
  t->slots = slots;
  t->n_slots = n_slots;
  return 0;
}

static int64_t add_word(lm_tokenizer *t, const char *w, size_t n) {
  int64_t e = find_word(t, w, n);
  if (e >= 0) return e;
  if ((t->n_words + 1) * 2 > t->n_slots && rehash(t, t->n_slots ? t->n_slots * 2 : 1024)) return -1;
  if (t->n_words == t->cap_words) {
    int64_t ncap = t->cap_words ? t->cap_words * 2 : 1024;
    word_entry *p = realloc(t->words, (size_t)ncap * sizeof *p);
    if (!p) return -1;
    t->words = p;
    t->cap_words = ncap;
  }
  char *copy = malloc(n + 1);
  if (!copy) return -1;
  memcpy(copy, w, n);
  copy[n] = 0;
  e = t->n_words++;
  t->words[e] = (word_entry){.word = copy};
  uint64_t h = hash_bytes(w, n) & (uint64_t)(t->n_slots - 1);
  while (t->slots[h]) h = (h + 1) & (uint64_t)(t->n_slots - 1);
  t->slots[h] = e + 1;
  return e;
}

lm_tokenizer *lm_tokenizer_new(lm_tokenizer_opts opts) {
  if (opts.num_words < 0) {
    lm__fail(NULL, LM_ERROR_VALUE, "Tokenizer: num_words must be >= 0, got %d", opts.num_words);
    return NULL;
  }
  const char *split = opts.split ? opts.split : " ";
  if (!*split) {
    lm__fail(NULL, LM_ERROR_VALUE, "Tokenizer: split must not be empty");
    return NULL;
  }
  lm_tokenizer *t = lm__calloc(1, sizeof *t);
  if (!t) return NULL;
  t->num_words = opts.num_words;
  t->lower = !opts.no_lower;
  const char *filters = opts.filters ? opts.filters : "!\"#$%&()*+,-./:;<=>?@[\\]^_`{|}~\t\n";
  for (const unsigned char *f = (const unsigned char *)filters; *f; f++) t->is_filter[*f] = true;
  t->split = lm__strdup(split);
  t->split_len = strlen(split);
  t->oov_token = opts.oov_token ? lm__strdup(opts.oov_token) : NULL;
  if (!t->split || (opts.oov_token && !t->oov_token)) {
    lm_tokenizer_free(t);
    return NULL;
  }
  return t;
}

void lm_tokenizer_free(lm_tokenizer *tok) {
  if (!tok) return;
  for (int64_t e = 0; e < tok->n_words; e++) free(tok->words[e].word);
  free(tok->words);
  free(tok->slots);
  free(tok->by_index);
  free(tok->split);
  free(tok->oov_token);
  free(tok);
}

/* text_to_word_sequence: calls visit(word, length) for each word; returns 0, or -1 when
 * visit fails or memory runs out. */
typedef int (*word_visit)(void *ctx, const char *w, size_t n);

static int each_word(const lm_tokenizer *t, const char *text, word_visit visit, void *ctx) {
  size_t len = strlen(text), cap = len * t->split_len + 1, n = 0;
  char *buf = malloc(cap);
  if (!buf) return -1;
  for (size_t i = 0; i < len; i++) {
    unsigned char c = (unsigned char)text[i];
    if (t->lower && c >= 'A' && c <= 'Z') c = (unsigned char)(c - 'A' + 'a');
    if (t->is_filter[c]) {
      memcpy(buf + n, t->split, t->split_len);
      n += t->split_len;
    } else {
      buf[n++] = (char)c;
    }
  }
  size_t start = 0, i = 0;
  int rc = 0;
  while (rc == 0 && i + t->split_len <= n) {
    if (!memcmp(buf + i, t->split, t->split_len)) {
      if (i > start) rc = visit(ctx, buf + start, i - start);
      i += t->split_len;
      start = i;
    } else {
      i++;
    }
  }
  if (rc == 0 && n > start) rc = visit(ctx, buf + start, n - start);
  free(buf);
  return rc;
}

static int count_visit(void *ctx, const char *w, size_t n) {
  lm_tokenizer *t = ctx;
  int64_t e = add_word(t, w, n);
  if (e < 0) return -1;
  t->words[e].count++;
  return 0;
}

typedef struct rank_key {
  int64_t count, entry;
} rank_key;

static int by_count(const void *a, const void *b) {
  const rank_key *x = a, *y = b;
  if (x->count != y->count) return x->count > y->count ? -1 : 1;
  /* Ties keep the order of first appearance, as Python's stable sort does. */
  return x->entry < y->entry ? -1 : x->entry > y->entry;
}

lm_status lm_tokenizer_fit(lm_tokenizer *tok, const char *const *texts, int64_t n) {
  if (!tok || (n > 0 && !texts) || n < 0) return lm__fail(NULL, LM_ERROR_VALUE, "Tokenizer.fit_on_texts: bad arguments");
  for (int64_t i = 0; i < n; i++) {
    if (!texts[i]) return lm__fail(NULL, LM_ERROR_VALUE, "Tokenizer.fit_on_texts: text %lld is NULL", (long long)i);
    if (each_word(tok, texts[i], count_visit, tok))
      return lm__fail(NULL, LM_ERROR_MEMORY, "Tokenizer.fit_on_texts: out of memory");
  }
  /* Rank every word again, as Keras rebuilds word_index after each fit. */
  int64_t base = tok->oov_token ? 2 : 1, n_index = tok->n_words + base - 1;
  rank_key *keys = malloc((size_t)(tok->n_words ? tok->n_words : 1) * sizeof *keys);
  int64_t *order = malloc((size_t)(n_index ? n_index : 1) * sizeof *order);
  if (!keys || !order) {
    free(keys);
    free(order);
    return lm__fail(NULL, LM_ERROR_MEMORY, "Tokenizer.fit_on_texts: out of memory");
  }
  for (int64_t e = 0; e < tok->n_words; e++) keys[e] = (rank_key){tok->words[e].count, e};
  qsort(keys, (size_t)tok->n_words, sizeof *keys, by_count);
  if (tok->oov_token) order[0] = -1; /* index 1 */
  for (int64_t r = 0; r < tok->n_words; r++) {
    order[r + base - 1] = keys[r].entry;
    tok->words[keys[r].entry].index = r + base;
  }
  free(keys);
  free(tok->by_index);
  tok->by_index = order;
  tok->n_index = n_index;
  return LM_OK;
}

int64_t lm_tokenizer_n_words(const lm_tokenizer *tok) { return tok ? tok->n_index : 0; }

const char *lm_tokenizer_word(const lm_tokenizer *tok, int64_t index) {
  if (!tok || index < 1 || index > tok->n_index) return NULL;
  int64_t e = tok->by_index[index - 1];
  return e < 0 ? tok->oov_token : tok->words[e].word;
}

int64_t lm_tokenizer_index(const lm_tokenizer *tok, const char *word) {
  if (!tok || !word) return 0;
  int64_t e = find_word(tok, word, strlen(word));
  if (e >= 0 && tok->words[e].index) return tok->words[e].index;
  if (tok->oov_token && tok->n_index && !strcmp(word, tok->oov_token)) return 1;
  return 0;
}

int64_t lm_tokenizer_count(const lm_tokenizer *tok, const char *word) {
  if (!tok || !word) return 0;
  int64_t e = find_word(tok, word, strlen(word));
  return e >= 0 ? tok->words[e].count : 0;
}

typedef struct seq_ctx {
  const lm_tokenizer *tok;
  int32_t *seq;
  int64_t n, cap;
} seq_ctx;

static int seq_visit(void *ctx, const char *w, size_t n) {
  seq_ctx *c = ctx;
  const lm_tokenizer *t = c->tok;
  int64_t e = find_word(t, w, n);
  int64_t i = e >= 0 ? t->words[e].index : 0;
  if (i && t->num_words && i >= t->num_words) i = 0;
  if (!i && t->oov_token) i = 1;
  if (!i) return 0;
  if (c->n == c->cap) {
    int64_t ncap = c->cap ? c->cap * 2 : 64;
    int32_t *p = realloc(c->seq, (size_t)ncap * sizeof *p);
    if (!p) return -1;
    c->seq = p;
    c->cap = ncap;
  }
  c->seq[c->n++] = (int32_t)(i > INT32_MAX ? INT32_MAX : i);
  return 0;
}

void lm_sequences_free(lm_sequences *seqs) {
  if (!seqs) return;
  if (seqs->values) { /* one block (lm_imdb_load_data): seq[i] point into it */
    free(seqs->values);
    free(seqs->offsets);
  } else if (seqs->seq) {
    for (int64_t i = 0; i < seqs->n; i++) free(seqs->seq[i]);
  }
  free(seqs->seq);
  free(seqs->len);
  free(seqs);
}

lm_sequences *lm_tokenizer_texts_to_sequences(const lm_tokenizer *tok, const char *const *texts, int64_t n) {
  if (!tok || n < 0 || (n > 0 && !texts)) {
    lm__fail(NULL, LM_ERROR_VALUE, "Tokenizer.texts_to_sequences: bad arguments");
    return NULL;
  }
  lm_sequences *s = lm__calloc(1, sizeof *s);
  if (!s) return NULL;
  s->seq = lm__calloc((size_t)(n ? n : 1), sizeof *s->seq);
  s->len = lm__calloc((size_t)(n ? n : 1), sizeof *s->len);
  if (!s->seq || !s->len) {
    lm_sequences_free(s);
    return NULL;
  }
  for (int64_t i = 0; i < n; i++) {
    if (!texts[i]) {
      lm__fail(NULL, LM_ERROR_VALUE, "Tokenizer.texts_to_sequences: text %lld is NULL", (long long)i);
      lm_sequences_free(s);
      return NULL;
    }
    seq_ctx c = {.tok = tok};
    int rc = each_word(tok, texts[i], seq_visit, &c);
    s->seq[i] = c.seq;
    s->len[i] = c.n;
    s->n = i + 1;
    if (rc) {
      lm__fail(NULL, LM_ERROR_MEMORY, "Tokenizer.texts_to_sequences: out of memory");
      lm_sequences_free(s);
      return NULL;
    }
  }
  return s;
}

typedef struct words_ctx {
  char **w;
  size_t n, cap;
} words_ctx;

static int words_visit(void *ctx, const char *w, size_t n) {
  words_ctx *c = ctx;
  if (c->n + 2 > c->cap) {
    size_t ncap = c->cap ? c->cap * 2 : 16;
    char **p = realloc(c->w, ncap * sizeof *p);
    if (!p) return -1;
    c->w = p;
    c->cap = ncap;
  }
  char *copy = malloc(n + 1);
  if (!copy) return -1;
  memcpy(copy, w, n);
  copy[n] = 0;
  c->w[c->n++] = copy;
  c->w[c->n] = NULL;
  return 0;
}

void lm_words_free(char **words) {
  if (!words) return;
  for (char **w = words; *w; w++) free(*w);
  free(words);
}

char **lm_tokenizer_words(const lm_tokenizer *tok, const char *text) {
  if (!tok || !text) {
    lm__fail(NULL, LM_ERROR_VALUE, "text_to_word_sequence: NULL argument");
    return NULL;
  }
  words_ctx c = {.w = calloc(16, sizeof(char *)), .cap = 16};
  if (!c.w) {
    lm__fail(NULL, LM_ERROR_MEMORY, "text_to_word_sequence: out of memory");
    return NULL;
  }
  if (each_word(tok, text, words_visit, &c)) {
    lm_words_free(c.w);
    lm__fail(NULL, LM_ERROR_MEMORY, "text_to_word_sequence: out of memory");
    return NULL;
  }
  return c.w;
}

/* ---- pad_sequences ---- */

lm_array *lm_pad_sequences_opts(const lm_sequences *seqs, lm_pad_opts opts) {
  const char *padding = opts.padding ? opts.padding : "pre", *truncating = opts.truncating ? opts.truncating : "pre";
  if (strcmp(padding, "pre") && strcmp(padding, "post")) {
    lm__fail(NULL, LM_ERROR_VALUE, "pad_sequences: Padding type \"%s\" not understood", padding);
    return NULL;
  }
  if (strcmp(truncating, "pre") && strcmp(truncating, "post")) {
    lm__fail(NULL, LM_ERROR_VALUE, "pad_sequences: Truncating type \"%s\" not understood", truncating);
    return NULL;
  }
  if (!seqs || seqs->n <= 0) {
    lm__fail(NULL, LM_ERROR_VALUE, "pad_sequences: no sequences");
    return NULL;
  }
  if (opts.maxlen < 0) {
    lm__fail(NULL, LM_ERROR_VALUE, "pad_sequences: maxlen must be positive, got %lld", (long long)opts.maxlen);
    return NULL;
  }
  int64_t maxlen = opts.maxlen;
  if (!maxlen)
    for (int64_t i = 0; i < seqs->n; i++)
      if (seqs->len[i] > maxlen) maxlen = seqs->len[i];
  if (!maxlen) {
    lm__fail(NULL, LM_ERROR_VALUE, "pad_sequences: every sequence is empty, so the result would have no columns");
    return NULL;
  }
  lm_array *a = lm_array_new(LM_INT32, (lm_shape){.rank = 2, .dim = {seqs->n, maxlen}});
  if (!a) return NULL;
  int32_t *out = lm_array_i32(a);
  for (int64_t i = 0; i < seqs->n; i++) {
    int32_t *row = out + i * maxlen;
    int64_t len = seqs->len[i], keep = len < maxlen ? len : maxlen;
    int64_t at = !strcmp(padding, "pre") ? maxlen - keep : 0;
    for (int64_t j = 0; j < maxlen; j++) row[j] = opts.value;
    if (keep) memcpy(row + at, seqs->seq[i] + (!strcmp(truncating, "pre") ? len - keep : 0), (size_t)keep * sizeof *row);
  }
  return a;
}
