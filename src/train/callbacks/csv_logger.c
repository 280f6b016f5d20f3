/* CSVLogger: one row of logs per epoch, written as training goes (Keras 3's
 * keras/src/callbacks/csv_logger.py with Python's csv module, excel dialect). */
#include "train/callbacks/monitor.h"
#include <errno.h>

#define CSV_MAX_KEYS (2 * LM_MAX_LOG_KEYS) /* the logs' keys, and their val_ twins */

typedef struct csv_logger {
  lm_callback cb;
  char *filename;
  char sep;
  bool append;
  bool append_header; /* Keras's: set once, cleared when appending to a file with content */
  FILE *file;
  int n_keys; /* -1 until the first epoch of a fit fixes the columns */
  char keys[CSV_MAX_KEYS][100];
} csv_logger;

/* Python's csv.QUOTE_MINIMAL: quotes a field holding the separator, a quote or a line end. */
static void put_field(csv_logger *c, const char *field, bool first) {
  if (!first) fputc(c->sep, c->file);
  if (!strchr(field, c->sep) && !strpbrk(field, "\"\r\n")) {
    fputs(field, c->file);
    return;
  }
  fputc('"', c->file);
  for (const char *p = field; *p; p++) {
    if (*p == '"') fputc('"', c->file);
    fputc(*p, c->file);
  }
  fputc('"', c->file);
}

static void csv_close(csv_logger *c) {
  if (c->file) fclose(c->file);
  c->file = NULL;
}

static void csv_fail(csv_logger *c, const char *what) {
  lm__fail(NULL, LM_ERROR_IO, "CSVLogger: cannot %s '%s': %s", what, c->filename, strerror(errno));
  csv_close(c);
  lm_model_stop_training(c->cb.model);
}

static void csv_train_begin(lm_callback *cb, const lm_logs *logs) {
  csv_logger *c = cb->user;
  csv_close(c);
  c->n_keys = -1;
  if (c->append) {
    FILE *f = fopen(c->filename, "rb");
    if (f) {
      /* Keras writes the header only when the file's first line is empty. */
      c->append_header = fgetc(f) == EOF;
      fclose(f);
    }
  }
  c->file = fopen(c->filename, c->append ? "ab" : "wb");
  if (!c->file) csv_fail(c, c->append ? "open for appending" : "open for writing");
}

static int by_name(const void *a, const void *b) { return strcmp(a, b); }

static void csv_epoch_end(lm_callback *cb, int epoch, const lm_logs *logs) {
  csv_logger *c = cb->user;
  if (!c->file) return;
  if (c->n_keys < 0) {
    /* The columns: this epoch's keys, sorted; with no val_ key, val_ twins follow. */
    int n = lm_logs_count(logs);
    bool has_val = false;
    for (int i = 0; i < n; i++) {
      snprintf(c->keys[i], sizeof c->keys[i], "%s", lm_logs_key(logs, i));
      has_val |= !strncmp(c->keys[i], "val_", 4);
    }
    qsort(c->keys, (size_t)n, sizeof c->keys[0], by_name);
    c->n_keys = n;
    for (int i = 0; !has_val && i < n; i++) { /* logs keys are shorter than 96, so val_<key> fits */
      char *twin = c->keys[c->n_keys++];
      size_t len = strnlen(c->keys[i], sizeof c->keys[0] - 5);
      memcpy(twin, "val_", 4);
      memcpy(twin + 4, c->keys[i], len);
      twin[4 + len] = 0;
    }
    if (c->append_header) {
      put_field(c, "epoch", true);
      for (int i = 0; i < c->n_keys; i++) put_field(c, c->keys[i], false);
      fputs("\r\n", c->file);
    }
  }
  fprintf(c->file, "%d", epoch);
  for (int i = 0; i < c->n_keys; i++) {
    double v;
    char num[40];
    put_field(c, lm_logs_get(logs, c->keys[i], &v) ? lm__py_float(v, num, sizeof num) : "NA", false);
  }
  fputs("\r\n", c->file);
  if (fflush(c->file) || ferror(c->file)) csv_fail(c, "write to");
}

static void csv_train_end(lm_callback *cb, const lm_logs *logs) {
  csv_logger *c = cb->user;
  if (c->file && fclose(c->file))
    lm__fail(NULL, LM_ERROR_IO, "CSVLogger: cannot close '%s': %s", c->filename, strerror(errno));
  c->file = NULL;
}

static void csv_free(lm_callback *cb) {
  csv_logger *c = cb->user;
  csv_close(c);
  free(c->filename);
  free(c);
}

lm_callback *lm_csv_logger_new(const char *filename, lm_csv_logger_opts o) {
  char sep = o.separator ? o.separator : ',';
  if (!filename || !*filename || sep == '"' || sep == '\r' || sep == '\n') {
    lm__fail(NULL, LM_ERROR_VALUE, "CSVLogger: %s",
             !filename || !*filename ? "the filename is empty" : "the separator cannot be a quote or a line end");
    return NULL;
  }
  csv_logger *c = (csv_logger *)lm__callback_alloc(sizeof *c, csv_free);
  if (!c) return NULL;
  if (!(c->filename = lm__strdup(filename))) {
    free(c);
    return NULL;
  }
  c->sep = sep;
  c->append = o.append;
  c->append_header = true;
  c->n_keys = -1;
  c->cb.on_train_begin = csv_train_begin;
  c->cb.on_epoch_end = csv_epoch_end;
  c->cb.on_train_end = csv_train_end;
  return &c->cb;
}
