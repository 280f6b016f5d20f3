/* BackupAndRestore: backs up the weights (with the optimizer's state) and the epoch during
 * fit, so that a run killed part-way resumes from its last backup (Keras 3's
 * keras/src/callbacks/backup_and_restore.py). With shuffling and dropout keyed by the
 * seed, the epoch and the optimizer's step count, the resumed run ends with the weights an
 * uninterrupted run would have. */
#include "train/callbacks/monitor.h"
#include <lamina/saving.h>
#include <dirent.h>
#include <errno.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct backup_and_restore {
  lm_callback cb;
  char *dir;
  char weights[4096], metadata[4096], prev_weights[4200], prev_metadata[4200];
  int save_freq; /* 0: every epoch */
  bool double_checkpoint, keep_checkpoint;
  /* per fit */
  int current_epoch, last_batch_seen, batches_since_saving;
} backup_and_restore;

static bool exists(const char *path) {
  struct stat st;
  return stat(path, &st) == 0;
}

/* Copies src to dst through a temporary file, so dst is never half-written. */
static int copy_file(const char *src, const char *dst) {
  char tmp[4300];
  snprintf(tmp, sizeof tmp, "%s.tmp%ld", dst, (long)getpid());
  FILE *in = fopen(src, "rb"), *out = in ? fopen(tmp, "wb") : NULL;
  char buf[65536];
  size_t n;
  int rc = in && out ? 0 : -1;
  while (!rc && (n = fread(buf, 1, sizeof buf, in)) > 0) rc = fwrite(buf, 1, n, out) == n ? 0 : -1;
  if (in) fclose(in);
  if (out && (fflush(out) || fsync(fileno(out)))) rc = -1;
  if (out && fclose(out)) rc = -1;
  if (!rc) rc = rename(tmp, dst);
  if (rc) remove(tmp);
  return rc;
}

static int write_metadata(backup_and_restore *br) {
  char tmp[4300];
  snprintf(tmp, sizeof tmp, "%s.tmp%ld", br->metadata, (long)getpid());
  FILE *f = fopen(tmp, "w");
  if (!f) return -1;
  int ok = fprintf(f, "{\"epoch\": %d, \"batch\": %d}", br->current_epoch, br->last_batch_seen) > 0;
  ok = !fflush(f) && !fsync(fileno(f)) && ok;
  ok = !fclose(f) && ok;
  if (ok && !rename(tmp, br->metadata)) return 0;
  remove(tmp);
  return -1;
}

/* The epoch of training_metadata.json ({"epoch": E, "batch": B}), or -1. */
static int read_metadata_epoch(const char *path) {
  FILE *f = fopen(path, "r");
  if (!f) return -1;
  char text[256] = "";
  size_t n = fread(text, 1, sizeof text - 1, f);
  fclose(f);
  text[n] = 0;
  const char *at = strstr(text, "\"epoch\"");
  int epoch = -1;
  if (!at || sscanf(at, "\"epoch\" : %d", &epoch) != 1) {
    if (!at || sscanf(at, "\"epoch\": %d", &epoch) != 1) return -1;
  }
  return epoch >= 0 ? epoch : -1;
}

static lm_status load_backup(backup_and_restore *br) {
  lm_model *model = br->cb.model;
  if (exists(br->weights)) {
    lm_status st = lm_load_weights(model, br->weights);
    if (st != LM_OK) return st;
  }
  int epoch = exists(br->metadata) ? read_metadata_epoch(br->metadata) : -1;
  if (epoch > 0) lm__model_resume_at(model, epoch);
  return LM_OK;
}

static void br_train_begin(lm_callback *cb, const lm_logs *logs) {
  (void)logs;
  backup_and_restore *br = (backup_and_restore *)cb;
  br->current_epoch = 0;
  br->last_batch_seen = 0;
  br->batches_since_saving = 0;
  if (load_backup(br) == LM_OK) return;
  /* The latest backup is damaged (the process died while it was written): fall back on the
   * previous one, as Keras does. */
  if (!exists(br->prev_weights) || copy_file(br->prev_weights, br->weights) ||
      (exists(br->prev_metadata) ? copy_file(br->prev_metadata, br->metadata) : (remove(br->metadata), 0)) ||
      load_backup(br) != LM_OK)
    lm_model_stop_training(br->cb.model); /* lm_last_error() names the damaged file */
}

static void save_backup(backup_and_restore *br) {
  lm_model *model = br->cb.model;
  if (mkdir(br->dir, 0777) && errno != EEXIST) {
    lm__fail(NULL, LM_ERROR_IO, "BackupAndRestore: cannot create %s: %s", br->dir, strerror(errno));
    lm_model_stop_training(model);
    return;
  }
  if (br->double_checkpoint) {
    if (exists(br->weights)) copy_file(br->weights, br->prev_weights);
    if (exists(br->metadata)) copy_file(br->metadata, br->prev_metadata);
  }
  if (lm_save_weights(model, br->weights) != LM_OK || write_metadata(br)) {
    if (!lm_last_error()[0]) lm__fail(NULL, LM_ERROR_IO, "BackupAndRestore: cannot write %s", br->metadata);
    lm_model_stop_training(model);
  }
}

static void br_epoch_end(lm_callback *cb, int epoch, const lm_logs *logs) {
  (void)logs;
  backup_and_restore *br = (backup_and_restore *)cb;
  br->current_epoch = epoch + 1;
  br->last_batch_seen = 0;
  if (!br->save_freq) save_backup(br);
}

static void br_batch_end(lm_callback *cb, int batch, const lm_logs *logs) {
  (void)logs;
  backup_and_restore *br = (backup_and_restore *)cb;
  if (!br->save_freq) return;
  br->batches_since_saving += batch <= br->last_batch_seen ? batch + 1 : batch - br->last_batch_seen;
  br->last_batch_seen = batch;
  if (br->batches_since_saving >= br->save_freq) {
    br->batches_since_saving = 0;
    save_backup(br);
  }
}

/* Keras removes the whole backup directory when training ends normally. */
static void br_train_end(lm_callback *cb, const lm_logs *logs) {
  (void)logs;
  backup_and_restore *br = (backup_and_restore *)cb;
  if (br->keep_checkpoint) return;
  const char *files[] = {br->weights, br->metadata, br->prev_weights, br->prev_metadata};
  for (int i = 0; i < 4; i++) remove(files[i]);
  rmdir(br->dir);
}

static void br_free(lm_callback *cb) {
  free(((backup_and_restore *)cb)->dir);
  free(cb);
}

lm_callback *lm_backup_and_restore_new(const char *backup_dir, lm_backup_and_restore_opts opts) {
  if (!backup_dir || !*backup_dir) return lm__fail(NULL, LM_ERROR_VALUE, "Empty `backup_dir` argument passed"), NULL;
  if (opts.save_freq < 0)
    return lm__fail(NULL, LM_ERROR_VALUE,
                    "Invalid value for argument `save_freq`. Received: save_freq=%d. Expected either 'epoch' (0) or a positive "
                    "integer value.",
                    opts.save_freq), NULL;
  if (strlen(backup_dir) > 4000) return lm__fail(NULL, LM_ERROR_VALUE, "BackupAndRestore: backup_dir is too long"), NULL;
  backup_and_restore *br = (backup_and_restore *)lm__callback_alloc(sizeof *br, br_free);
  if (!br || !(br->dir = lm__strdup(backup_dir))) {
    free(br);
    return NULL;
  }
  snprintf(br->weights, sizeof br->weights, "%s/latest.weights.h5", backup_dir);
  snprintf(br->metadata, sizeof br->metadata, "%s/training_metadata.json", backup_dir);
  snprintf(br->prev_weights, sizeof br->prev_weights, "%s.bkp", br->weights);
  snprintf(br->prev_metadata, sizeof br->prev_metadata, "%s.bkp", br->metadata);
  br->save_freq = opts.save_freq;
  br->double_checkpoint = opts.double_checkpoint;
  br->keep_checkpoint = opts.no_delete_checkpoint;
  br->cb.on_train_begin = br_train_begin;
  br->cb.on_epoch_end = br_epoch_end;
  br->cb.on_train_batch_end = br_batch_end;
  br->cb.on_train_end = br_train_end;
  return &br->cb;
}
