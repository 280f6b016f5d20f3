/* Keras's Progbar (tf-keras keras/utils/generic_utils.py), verbose 1 and 2, same wording. */
#include "train/progbar.h"
#include <math.h>
#include <time.h>
#include <unistd.h>

/* Keras redraws a live bar at most this often (seconds). */
#define PROGBAR_INTERVAL 0.05

double lm__now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

void lm__progbar_init(lm_progbar *p, FILE *out, int64_t target, int verbose) {
  memset(p, 0, sizeof *p);
  p->out = out ? out : stdout;
  p->target = target;
  p->verbose = verbose;
  p->width = 30;
  p->interactive = isatty(fileno(p->out));
  p->start = lm__now();
  p->last_update = p->start - 2 * PROGBAR_INTERVAL; /* the first update always shows */
}

/* Keras's _format_time: " 3s/step", " 12ms/step", " 85us/step". */
static void put_time(FILE *m, double t, const char *unit) {
  if (t >= 1 || t == 0)
    fprintf(m, " %.0fs/%s", t, unit);
  else if (t >= 1e-3)
    fprintf(m, " %.0fms/%s", t * 1e3, unit);
  else
    fprintf(m, " %.0fus/%s", t * 1e6, unit);
}

static void put_values(FILE *m, int n, const char *const *keys, const double *values) {
  for (int i = 0; i < n; i++) {
    double v = values[i];
    if (isnan(v)) /* glibc prints "-nan"; Python prints "nan" */
      fprintf(m, " - %s: nan", keys[i]);
    else
      fprintf(m, fabs(v) > 1e-3 ? " - %s: %.4f" : " - %s: %.4e", keys[i], v);
  }
}

static int num_digits(int64_t n) {
  int d = 1;
  while (n >= 10) n /= 10, d++;
  return d;
}

/* "  37/1875 [=====>........................]" or "     37/Unknown". */
static void put_bar(FILE *m, const lm_progbar *p, int64_t current) {
  if (p->target < 0) {
    fprintf(m, "%7lld/Unknown", (long long)current);
    return;
  }
  fprintf(m, "%*lld/%lld [", num_digits(p->target), (long long)current, (long long)p->target);
  double prog = p->target > 0 ? (double)current / (double)p->target : 1.0;
  int filled = (int)(p->width * prog);
  if (filled > p->width) filled = p->width;
  if (filled < 0) filled = 0;
  for (int i = 0; i < filled - 1; i++) fputc('=', m);
  if (filled > 0) fputc(current < p->target ? '>' : '=', m);
  for (int i = filled; i < p->width; i++) fputc('.', m);
  fputc(']', m);
}

/* Keras's ETA: "1:02:03", "2:03" or "45s", each field truncated. */
static void put_eta(FILE *m, double eta) {
  long long s = (long long)eta;
  if (eta > 3600)
    fprintf(m, " - ETA: %lld:%02lld:%02lld", s / 3600, s % 3600 / 60, s % 60);
  else if (eta > 60)
    fprintf(m, " - ETA: %lld:%02lld", s / 60, s % 60);
  else
    fprintf(m, " - ETA: %llds", s);
}

void lm__progbar_update(lm_progbar *p, int64_t current, int n_values, const char *const *keys,
                        const double *values, int finalize) {
  p->seen_so_far = current;
  if (p->verbose != 1 && p->verbose != 2) return;
  /* verbose 2, and verbose 1 on a file or pipe (where \r would pile up), print one line at
   * the end. */
  if (!finalize && (p->verbose == 2 || !p->interactive)) return;
  double now = lm__now();
  if (!finalize && now - p->last_update < PROGBAR_INTERVAL) return;
  p->last_update = now;

  double elapsed = now - p->start;
  double per_step = current > 0 ? elapsed / (double)current : 0;
  char *line = NULL;
  size_t len = 0;
  FILE *m = open_memstream(&line, &len);
  if (!m) return; /* a progress bar is not worth failing training over */

  if (p->verbose == 2) {
    /* "1875/1875 - 3s - loss: 0.2973 - accuracy: 0.9138 - 3s/epoch - 1ms/step" */
    if (p->target < 0)
      fprintf(m, "%lld/Unknown", (long long)current);
    else
      fprintf(m, "%*lld/%lld", num_digits(p->target), (long long)current, (long long)p->target);
    fprintf(m, " - %.0fs", elapsed);
    put_values(m, n_values, keys, values);
    if (p->target > 0) {
      fputs(" -", m);
      put_time(m, elapsed, "epoch");
      fputs(" -", m);
      put_time(m, elapsed / (double)p->target, "step");
    }
  } else {
    put_bar(m, p, current);
    if (p->target < 0 || finalize) {
      fprintf(m, " - %.0fs", elapsed);
      put_time(m, per_step, "step");
    } else {
      put_eta(m, per_step * (double)(p->target - current));
    }
    put_values(m, n_values, keys, values);
  }
  if (fclose(m) != 0 || !line) {
    free(line);
    return;
  }

  if (p->verbose == 1 && p->interactive) {
    /* Overwrite the previous line, blanking whatever of it the new one does not cover. */
    int width = (int)len;
    fprintf(p->out, "\r%s%*s", line, p->prev_len > width ? p->prev_len - width : 0, "");
    p->prev_len = width;
  } else {
    fputs(line, p->out);
  }
  if (finalize) {
    fputc('\n', p->out);
    p->prev_len = 0;
  }
  fflush(p->out);
  free(line);
}
