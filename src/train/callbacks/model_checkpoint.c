/* ModelCheckpoint: saves the model or its weights during fit (Keras 3's
 * keras/src/callbacks/model_checkpoint.py). Files are written through lamina's savers,
 * which write a temporary file and rename it, so a crash mid-save never replaces a good
 * checkpoint. */
#include "train/callbacks/monitor.h"
#include <lamina/saving.h>
#include <errno.h>
#include <sys/stat.h>

typedef struct model_checkpoint {
  lm_callback cb;
  lm__monitor mon;
  char *filepath;
  int verbose, save_freq; /* save_freq 0: every epoch */
  bool save_best_only, save_weights_only, has_threshold;
  double threshold;
  /* per fit */
  bool has_best;
  double best;
  int current_epoch, batches_since_saving, last_batch_seen;
  char warned[1024];
} model_checkpoint;

static bool ends_with(const char *s, const char *suffix) {
  size_t n = strlen(s), m = strlen(suffix);
  return n >= m && !strcmp(s + n - m, suffix);
}

/* ---- Python's str.format for file names: {epoch:02d}, {val_loss:.2f}, {{ and }} ---- */

typedef struct spec {
  char sign; /* '+', ' ' or 0 */
  bool zero;
  int width, precision; /* -1: none */
  char type;            /* d f F e E g G % s, or 0 */
} spec;

static int parse_spec(const char *s, spec *out) {
  *out = (spec){.width = -1, .precision = -1};
  if (*s == '+' || *s == ' ' || *s == '-') out->sign = *s == '-' ? 0 : *s, s++;
  if (*s == '0') out->zero = true, s++;
  if (*s >= '0' && *s <= '9') out->width = (int)strtol(s, (char **)&s, 10);
  if (*s == '.') {
    s++;
    if (*s < '0' || *s > '9') return -1;
    out->precision = (int)strtol(s, (char **)&s, 10);
  }
  if (*s && strchr("dfFeEgG%s", *s)) out->type = *s++;
  return *s ? -1 : 0;
}

/* Formats one value as Python would; is_int says whether Python would hold an int. */
static int format_value(double v, bool is_int, const spec *sp, char *out, size_t len) {
  char body[128];
  char type = sp->type;
  if (is_int && (type == 0 || type == 'd' || type == 's')) snprintf(body, sizeof body, "%.0f", v);
  else if (!is_int && (type == 'd')) return -1; /* Python: Unknown format code 'd' for float */
  else if (type == 0 || type == 's') {
    if (sp->precision >= 0) snprintf(body, sizeof body, "%.*g", sp->precision, v);
    else lm__py_float(v, body, sizeof body);
  } else if (type == '%') {
    snprintf(body, sizeof body, "%.*f%%", sp->precision >= 0 ? sp->precision : 6, v * 100);
  } else {
    int prec = sp->precision >= 0 ? sp->precision : 6;
    switch (type) {
    case 'e': snprintf(body, sizeof body, "%.*e", prec, v); break;
    case 'E': snprintf(body, sizeof body, "%.*E", prec, v); break;
    case 'g': snprintf(body, sizeof body, "%.*g", prec, v); break;
    case 'G': snprintf(body, sizeof body, "%.*G", prec, v); break;
    default: snprintf(body, sizeof body, "%.*f", prec, v); break;
    }
  }
  if (sp->sign && body[0] != '-') {
    memmove(body + 1, body, strlen(body) + 1);
    body[0] = sp->sign;
  }
  /* Numbers align right; a zero flag pads with zeros after the sign. */
  size_t n = strlen(body), width = sp->width > 0 ? (size_t)sp->width : 0;
  size_t pad = width > n ? width - n : 0, at = 0, lead = (body[0] == '-' || body[0] == '+' || body[0] == ' ');
  if (pad + n + 1 > len) return -1;
  if (sp->zero) {
    if (lead) out[at++] = body[0];
    memset(out + at, '0', pad);
    at += pad;
    memcpy(out + at, body + lead, n - lead + 1);
  } else {
    memset(out, ' ', pad);
    memcpy(out + pad, body, n + 1);
  }
  return 0;
}

int lm__format_filepath(const char *tmpl, int epoch, int batch, const lm_logs *logs, char *out, size_t len);
int lm__format_filepath(const char *tmpl, int epoch, int batch, const lm_logs *logs, char *out, size_t len) {
  size_t at = 0;
  for (const char *p = tmpl; *p;) {
    if ((p[0] == '{' && p[1] == '{') || (p[0] == '}' && p[1] == '}')) {
      if (at + 1 >= len) goto too_long;
      out[at++] = *p;
      p += 2;
      continue;
    }
    if (*p != '{') {
      if (at + 1 >= len) goto too_long;
      out[at++] = *p++;
      continue;
    }
    const char *close = strchr(p, '}');
    if (!close) return lm__fail(NULL, LM_ERROR_VALUE, "Failed to format this callback filepath: \"%s\". Reason: unmatched '{'", tmpl), -1;
    char field[128], name[128];
    size_t flen = (size_t)(close - p - 1);
    if (flen >= sizeof field) return lm__fail(NULL, LM_ERROR_VALUE, "Failed to format this callback filepath: \"%s\". Reason: field too long", tmpl), -1;
    memcpy(field, p + 1, flen);
    field[flen] = 0;
    char *colon = strchr(field, ':');
    snprintf(name, sizeof name, "%.*s", colon ? (int)(colon - field) : (int)flen, field);
    spec sp;
    if (parse_spec(colon ? colon + 1 : "", &sp))
      return lm__fail(NULL, LM_ERROR_VALUE, "Failed to format this callback filepath: \"%s\". Reason: invalid format spec '%s'", tmpl,
                      colon + 1), -1;
    double v;
    bool is_int = true;
    if (!strcmp(name, "epoch")) v = epoch;
    else if (!strcmp(name, "batch") && batch >= 0) v = batch;
    else if (lm_logs_get(logs, name, &v)) is_int = false;
    else return lm__fail(NULL, LM_ERROR_NAME, "Failed to format this callback filepath: \"%s\". Reason: '%s'", tmpl, name), -1;
    if (format_value(v, is_int, &sp, out + at, len - at))
      return lm__fail(NULL, LM_ERROR_VALUE, "Failed to format this callback filepath: \"%s\". Reason: cannot format %s with '%s'", tmpl,
                      name, colon ? colon + 1 : ""), -1;
    at += strlen(out + at);
    p = close + 1;
  }
  out[at] = 0;
  return 0;
too_long:
  return lm__fail(NULL, LM_ERROR_VALUE, "Failed to format this callback filepath: \"%s\". Reason: too long", tmpl), -1;
}

/* mkdir -p of the file's directory. */
static int make_parent_dirs(const char *path) {
  char dir[4096];
  snprintf(dir, sizeof dir, "%s", path);
  char *slash = strrchr(dir, '/');
  if (!slash || slash == dir) return 0;
  *slash = 0;
  for (char *p = dir + 1; *p; p++) {
    if (*p != '/') continue;
    *p = 0;
    if (mkdir(dir, 0777) && errno != EEXIST) return -1;
    *p = '/';
  }
  return mkdir(dir, 0777) && errno != EEXIST ? -1 : 0;
}

static bool should_save(model_checkpoint *mc, int epoch, const lm_logs *logs, const char *filepath) {
  if (!mc->save_best_only) {
    if (mc->verbose > 0) printf("\nEpoch %d: saving model to %s\n", epoch + 1, filepath);
    return true;
  }
  double current;
  if (!lm_logs_get(logs, mc->mon.key, &current)) {
    lm__warn_once(mc->warned, sizeof mc->warned, "Can save best model only with %s available.", mc->mon.key);
    return true;
  }
  char best[64] = "None";
  if (mc->has_best) snprintf(best, sizeof best, "%.5f", mc->best);
  if (!mc->has_best || lm__monitor_improves(&mc->mon, current, mc->best)) {
    if (mc->verbose > 0)
      printf("\nEpoch %d: %s improved from %s to %.5f, saving model to %s\n", epoch + 1, mc->mon.key, best, current, filepath);
    mc->best = current, mc->has_best = true;
    return true;
  }
  if (mc->verbose > 0) printf("\nEpoch %d: %s did not improve from %s\n", epoch + 1, mc->mon.key, best);
  return false;
}

static void save(model_checkpoint *mc, int epoch, int batch, const lm_logs *logs) {
  char path[4096];
  lm_model *model = mc->cb.model;
  if (lm__format_filepath(mc->filepath, epoch + 1, batch >= 0 ? batch + 1 : -1, logs, path, sizeof path)) {
    lm_model_stop_training(model);
    return;
  }
  if (!should_save(mc, epoch, logs, path)) return;
  struct stat st;
  if (!stat(path, &st) && S_ISDIR(st.st_mode)) {
    lm__fail(NULL, LM_ERROR_IO, "Please specify a non-directory filepath for ModelCheckpoint. Filepath used is an existing directory: %s",
             path);
    lm_model_stop_training(model);
    return;
  }
  lm_status st_save = make_parent_dirs(path) ? lm__fail(NULL, LM_ERROR_IO, "ModelCheckpoint: cannot create the directory of %s: %s", path,
                                                         strerror(errno))
                      : mc->save_weights_only ? lm_save_weights(model, path)
                                              : lm_save_model(model, path);
  if (st_save != LM_OK) {
    lm_model_stop_training(model); /* the message stays in lm_last_error() */
    return;
  }
  if (mc->verbose > 0) printf("\nEpoch %d: finished saving model to %s\n", epoch + 1, path);
}

static void mc_train_begin(lm_callback *cb, const lm_logs *logs) {
  (void)logs;
  model_checkpoint *mc = (model_checkpoint *)cb;
  mc->has_best = mc->has_threshold;
  mc->best = mc->threshold;
  mc->batches_since_saving = 0;
  mc->last_batch_seen = -1;
  mc->current_epoch = 0;
}

static void mc_epoch_begin(lm_callback *cb, int epoch, const lm_logs *logs) {
  (void)logs;
  ((model_checkpoint *)cb)->current_epoch = epoch;
}

static void mc_batch_end(lm_callback *cb, int batch, const lm_logs *logs) {
  model_checkpoint *mc = (model_checkpoint *)cb;
  if (!mc->save_freq) return;
  int add = mc->last_batch_seen < 0 || batch <= mc->last_batch_seen ? batch + 1 : batch - mc->last_batch_seen;
  mc->batches_since_saving += add;
  mc->last_batch_seen = batch;
  if (mc->batches_since_saving >= mc->save_freq) {
    mc->batches_since_saving = 0;
    save(mc, mc->current_epoch, batch, logs);
  }
}

static void mc_epoch_end(lm_callback *cb, int epoch, const lm_logs *logs) {
  model_checkpoint *mc = (model_checkpoint *)cb;
  if (!mc->save_freq) save(mc, epoch, -1, logs);
}

static void mc_free(lm_callback *cb) {
  model_checkpoint *mc = (model_checkpoint *)cb;
  free(mc->filepath);
  free(mc);
}

lm_callback *lm_model_checkpoint_new(const char *filepath, lm_model_checkpoint_opts opts) {
  if (!filepath || !*filepath) return lm__fail(NULL, LM_ERROR_VALUE, "ModelCheckpoint: the filepath is empty"), NULL;
  if (opts.save_freq < 0)
    return lm__fail(NULL, LM_ERROR_VALUE, "Unrecognized save_freq: %d. Expected save_freq are 'epoch' (0) or positive integer values",
                    opts.save_freq), NULL;
  if (opts.save_weights_only && !ends_with(filepath, ".weights.h5"))
    return lm__fail(NULL, LM_ERROR_VALUE,
                    "When using `save_weights_only=True` in `ModelCheckpoint`, the filepath provided must end in `.weights.h5` "
                    "(Keras weights format). Received: filepath=%s",
                    filepath), NULL;
  if (!opts.save_weights_only && !ends_with(filepath, ".keras") && !ends_with(filepath, ".h5"))
    return lm__fail(NULL, LM_ERROR_VALUE,
                    "The filepath provided must end in `.keras` (Keras model format). Received: filepath=%s", filepath), NULL;
  model_checkpoint *mc = (model_checkpoint *)lm__callback_alloc(sizeof *mc, mc_free);
  if (!mc || !(mc->filepath = lm__strdup(filepath))) {
    free(mc);
    return NULL;
  }
  lm__monitor_init(&mc->mon, "ModelCheckpoint", opts.monitor ? opts.monitor : "val_loss", opts.mode, 0);
  mc->verbose = opts.verbose;
  mc->save_freq = opts.save_freq;
  mc->save_best_only = opts.save_best_only;
  mc->save_weights_only = opts.save_weights_only;
  mc->has_threshold = opts.has_initial_value_threshold || opts.initial_value_threshold != 0;
  mc->threshold = opts.initial_value_threshold;
  mc->cb.on_train_begin = mc_train_begin;
  mc->cb.on_epoch_begin = mc_epoch_begin;
  mc->cb.on_train_batch_end = mc_batch_end;
  mc->cb.on_epoch_end = mc_epoch_end;
  return &mc->cb;
}
