/* fit / evaluate / predict: feeding arrays by position or name, or batches from a data
 * source; batching, the training step, running logs, validation, callbacks and the
 * progress bar. */
#include "train/progbar.h"
#include "train/train.h"
#include <math.h>

/* ---- Feeds: the user's arrays, in model input (or output) order ---- */
typedef struct feeds {
  int n;
  const lm_array *a[LM_MAX_TENSORS];
  int64_t samples;
} feeds;

static const char *io_name(const lm_model *m, int output, int i) {
  return (output ? m->outputs[i] : m->inputs[i])->node->layer->name;
}

static void io_list(const lm_model *m, int output, char *buf, size_t len) {
  size_t at = 0;
  int n = output ? m->n_outputs : m->n_inputs;
  buf[0] = 0;
  for (int i = 0; i < n && at < len; i++) at += (size_t)snprintf(buf + at, len - at, "%s'%s'", i ? ", " : "", io_name(m, output, i));
}

static int resolve(const lm_model *m, const char *fn, const char *what, const lm_feed *f, int output, feeds *out) {
  int n = output ? m->n_outputs : m->n_inputs;
  char names[512];
  io_list(m, output, names, sizeof names);
  memset(out, 0, sizeof *out);
  out->n = n;
  if (!f->by_name) {
    if (f->n != n) {
      lm__fail(NULL, LM_ERROR_VALUE, "%s: model \"%s\" has %d %s [%s], but %s holds %d array(s)", fn, m->base.name, n,
               output ? "output(s)" : "input(s)", names, what, f->n);
      return -1;
    }
    for (int i = 0; i < n; i++) out->a[i] = f->item[i];
  } else {
    for (int k = 0; k < f->n; k++) {
      const char *name = f->item[2 * k];
      int i = 0;
      while (i < n && (!name || strcmp(io_name(m, output, i), name))) i++;
      if (i == n) {
        lm__fail(NULL, LM_ERROR_NAME, "%s: %s names '%s', but model \"%s\" has no %s of that name; they are [%s]", fn, what,
                 name ? name : "(null)", m->base.name, output ? "output" : "input", names);
        return -1;
      }
      out->a[i] = f->item[2 * k + 1];
    }
  }
  for (int i = 0; i < n; i++) {
    const lm_array *a = out->a[i];
    const lm_tensor *t = output ? m->outputs[i] : m->inputs[i];
    char want[96], got[96];
    if (!a) {
      lm__fail(NULL, LM_ERROR_VALUE, "%s: no array was fed for %s '%s'", fn, output ? "output" : "input", io_name(m, output, i));
      return -1;
    }
    if (a->shape.rank < 1 || a->size == 0) {
      lm__fail(NULL, LM_ERROR_SHAPE, "%s: the array for '%s' is empty or has no batch axis", fn, io_name(m, output, i));
      return -1;
    }
    int ok = 1;
    if (!output) {
      ok = a->shape.rank == t->shape.rank;
      for (int d = 1; ok && d < t->shape.rank; d++) ok = t->shape.dim[d] < 0 || t->shape.dim[d] == a->shape.dim[d];
    }
    if (!ok) {
      lm__fail(NULL, LM_ERROR_SHAPE, "%s: input '%s' of model \"%s\" expects shape %s, but was fed an array of shape %s", fn,
               io_name(m, output, i), m->base.name, lm_shape_format(t->shape, want, sizeof want),
               lm_shape_format(a->shape, got, sizeof got));
      return -1;
    }
    if (i == 0) out->samples = a->shape.dim[0];
    else if (a->shape.dim[0] != out->samples) {
      lm__fail(NULL, LM_ERROR_SHAPE, "%s: data cardinality is ambiguous: %s array '%s' holds %lld samples, '%s' holds %lld", fn,
               what, io_name(m, output, 0), (long long)out->samples, io_name(m, output, i), (long long)a->shape.dim[0]);
      return -1;
    }
  }
  return 0;
}

static int check_targets(const lm_model *m, const lm_compiled *c, const char *fn, const feeds *y) {
  for (int o = 0; o < m->n_outputs; o++) {
    lm_shape ps = m->outputs[o]->shape, ts = y->a[o]->shape;
    char a[96], b[96];
    int ok;
    if (c->loss[o].kind == LM_LOSS_SPARSE_CATEGORICAL_CE) {
      ok = ts.rank == ps.rank - 1 || (ts.rank == ps.rank && ts.dim[ts.rank - 1] == 1);
      for (int d = 1; ok && d < ps.rank - 1; d++) ok = ps.dim[d] < 0 || ps.dim[d] == ts.dim[d];
    } else {
      ok = ts.rank == ps.rank;
      for (int d = 1; ok && d < ps.rank; d++) ok = ps.dim[d] < 0 || ps.dim[d] == ts.dim[d];
    }
    if (!ok) {
      lm__fail(NULL, LM_ERROR_SHAPE, "%s: the target for output '%s' has shape %s, which does not fit the output %s and loss %s",
               fn, io_name(m, 1, o), lm_shape_format(ts, a, sizeof a), lm_shape_format(ps, b, sizeof b), c->loss_name[o]);
      return -1;
    }
  }
  return 0;
}

/* ---- Programs and plans ---- */

static lm_program *program_new(lm_model *m, lm_compiled *c, const feeds *y) {
  lm_program *p = lm__calloc(1, sizeof *p);
  if (!p || !(p->g = lm__graph_new())) {
    free(p);
    return NULL;
  }
  lm_graph *g = p->g;
  p->n_in = m->n_inputs;
  p->n_out = m->n_outputs;
  p->total = -1;
  for (int i = 0; i < m->n_inputs; i++) p->in[i] = lm__graph_input(g, LM_VALUE_INPUT, m->inputs[i]->dtype, m->inputs[i]->shape);
  if (lm__model_emit(m, g, p->in, p->out) < 0) goto fail;
  if (y) {
    for (int o = 0; o < m->n_outputs; o++) {
      lm_shape ts = y->a[o]->shape;
      ts.dim[0] = LM_NONE;
      p->target_shapes[o] = ts;
      p->target[o] = lm__graph_input(g, LM_VALUE_TARGET, LM_FLOAT32, ts);
      lm_attrs a = {.i = {c->loss[o].kind, c->loss[o].from_logits}, .f = {c->loss[o].huber_delta}};
      int outs[2];
      g->who = io_name(m, 1, o);
      if (lm__graph_op(g, &lm__op_loss, (int[]){p->out[o], p->target[o]}, 2, &a, outs)) goto fail;
      p->loss[o] = outs[0];
    }
    g->who = "loss";
    p->total = lm__emit(g, &lm__op_weighted_sum, p->loss, m->n_outputs, &(lm_attrs){.p = c->loss_weight});
    if (p->total < 0) goto fail;
  }
  if (g->err.code) goto fail;
  /* Read after every run: outputs for predictions and metrics, losses for the logs. */
  for (int o = 0; o < p->n_out; o++) {
    g->vals[p->out[o]].keep = true;
    if (y) g->vals[p->loss[o]].keep = true;
  }
  if (y) g->vals[p->total].keep = true;
  p->slot_of = lm__calloc((size_t)g->n_vals, sizeof *p->slot_of);
  if (!p->slot_of) goto fail;
  for (int v = 0; v < g->n_vals; v++) p->slot_of[v] = -1;
  return p;
fail:
  lm__fail(NULL, g->err.code ? g->err.code : LM_ERROR_MEMORY, "%s", g->err.code ? g->err.msg : "out of memory");
  lm__program_free(p);
  return NULL;
}

/* The optimizer keeps slots per weight; programs map their parameter values onto them. */
static int bind_slots(lm_compiled *c, lm_program *p) {
  for (int v = 0; v < p->g->n_vals; v++) {
    if (p->g->vals[v].kind != LM_VALUE_PARAM) continue;
    float **slots = lm__compiled_slots(c, p->g->vals[v].weight);
    if (!slots) return -1;
    p->slot_of[v] = (int)((slots - c->slots) / (c->n_slots ? c->n_slots : 1));
  }
  return 0;
}

static lm_plan *get_plan(lm_program *p, int training, const feeds *x, const feeds *y, int64_t rows) {
  lm_shape *shapes = lm__calloc((size_t)p->g->n_vals, sizeof *shapes);
  if (!shapes) return NULL;
  for (int i = 0; i < p->n_in; i++) {
    shapes[p->in[i]] = x->a[i]->shape;
    shapes[p->in[i]].dim[0] = rows;
  }
  for (int o = 0; y && o < p->n_out; o++) {
    shapes[p->target[o]] = y->a[o]->shape;
    shapes[p->target[o]].dim[0] = rows;
  }
  for (int s = 0; s < LM_PLAN_CACHE; s++) {
    lm_plan *plan = p->cache[s].plan;
    if (!plan || p->cache[s].training != training) continue;
    int same = 1;
    for (int i = 0; same && i < p->n_in; i++) same = lm__shape_equal(plan->shapes[p->in[i]], shapes[p->in[i]]);
    for (int o = 0; same && y && o < p->n_out; o++) same = lm__shape_equal(plan->shapes[p->target[o]], shapes[p->target[o]]);
    if (same) {
      free(shapes);
      return plan;
    }
  }
  lm_plan *plan = lm__plan_new(p->g, shapes, training, training ? p->total : -1);
  free(shapes);
  if (!plan) return NULL;
  if (plan->err.code) {
    lm__fail(NULL, plan->err.code, "%s", plan->err.msg);
    lm__plan_free(plan);
    return NULL;
  }
  int s = p->next_slot;
  p->next_slot = (s + 1) % LM_PLAN_CACHE;
  lm__plan_free(p->cache[s].plan);
  p->cache[s].plan = plan;
  p->cache[s].training = training;
  return plan;
}

static void drop_plans(lm_program *p) {
  for (int s = 0; p && s < LM_PLAN_CACHE; s++) {
    lm__plan_free(p->cache[s].plan);
    p->cache[s].plan = NULL;
  }
}

/* Copies samples idx[0..rows) of a into the plan buffer, converting the dtype if needed. */
static void gather(void *dst, lm_dtype dst_type, const lm_array *a, const int64_t *idx, int64_t rows) {
  int64_t per = a->size / a->shape.dim[0];
  for (int64_t r = 0; r < rows; r++) {
    const char *src = (const char *)a->data + idx[r] * per * 4;
    char *d = (char *)dst + r * per * 4;
    if (a->dtype == dst_type) memcpy(d, src, (size_t)per * 4);
    else if (dst_type == LM_FLOAT32)
      for (int64_t i = 0; i < per; i++) ((float *)d)[i] = (float)((const int32_t *)src)[i];
    else
      for (int64_t i = 0; i < per; i++) ((int32_t *)d)[i] = (int32_t)((const float *)src)[i];
  }
}

static void feed_batch(lm_plan *plan, const lm_program *p, const feeds *x, const feeds *y, const int64_t *idx, int64_t rows) {
  for (int i = 0; i < p->n_in; i++) gather(plan->data[p->in[i]], p->g->vals[p->in[i]].dtype, x->a[i], idx, rows);
  for (int o = 0; y && o < p->n_out; o++) gather(plan->data[p->target[o]], LM_FLOAT32, y->a[o], idx, rows);
}

/* An op that met bad data (an index out of range) leaves its message in the plan. */
static int ran_clean(lm_plan *plan, const char *fn) {
  if (plan->err.code == LM_OK) return 1;
  lm__fail(NULL, plan->err.code, "%s: %s", fn, plan->err.msg);
  memset(&plan->err, 0, sizeof plan->err);
  return 0;
}

/* ---- Logs and metrics of a pass over data ---- */
typedef struct tracker {
  double loss, out_loss[LM_MAX_OUTPUTS], seen;
  lm_metric metrics[LM_MAX_OUTPUTS][LM_MAX_METRICS_PER_OUTPUT];
} tracker;

static void tracker_reset(tracker *t, const lm_model *m, const lm_compiled *c) {
  t->loss = t->seen = 0;
  for (int o = 0; o < m->n_outputs; o++) {
    t->out_loss[o] = 0;
    int64_t cols = m->outputs[o]->shape.dim[m->outputs[o]->shape.rank - 1];
    for (int k = 0; k < c->n_metrics[o]; k++) lm__metric_init(&t->metrics[o][k], c->metric_names[o][k], &c->loss[o], cols, NULL);
  }
}

static void tracker_update(tracker *t, const lm_model *m, const lm_compiled *c, lm_plan *plan, const lm_program *p, int64_t rows) {
  t->loss += lm__f(plan, p->total)[0] * (double)rows;
  for (int o = 0; o < m->n_outputs; o++) {
    t->out_loss[o] += lm__f(plan, p->loss[o])[0] * (double)rows;
    /* Metrics, like losses, see one row per position of the last axis. */
    lm_shape os = plan->shapes[p->out[o]];
    int64_t cols = os.dim[os.rank - 1], n_rows = lm_shape_size(os) / cols;
    for (int k = 0; k < c->n_metrics[o]; k++)
      lm__metric_update(&t->metrics[o][k], lm__f(plan, p->out[o]), lm__f(plan, p->target[o]), n_rows, cols);
  }
  t->seen += (double)rows;
}

static void tracker_logs(const tracker *t, const lm_model *m, const lm_compiled *c, const char *prefix, lm_logs *logs) {
  char key[320];
  snprintf(key, sizeof key, "%sloss", prefix);
  lm__logs_set(logs, key, t->loss / t->seen);
  for (int o = 0; m->n_outputs > 1 && o < m->n_outputs; o++) {
    snprintf(key, sizeof key, "%s%s_loss", prefix, io_name(m, 1, o));
    lm__logs_set(logs, key, t->out_loss[o] / t->seen);
  }
  for (int o = 0; o < m->n_outputs; o++) {
    for (int k = 0; k < c->n_metrics[o]; k++) {
      if (m->n_outputs > 1) snprintf(key, sizeof key, "%s%s_%s", prefix, io_name(m, 1, o), t->metrics[o][k].name);
      else snprintf(key, sizeof key, "%s%s", prefix, t->metrics[o][k].name);
      lm__logs_set(logs, key, lm__metric_result(&t->metrics[o][k]));
    }
  }
}

/* ---- Callbacks ---- */
#define EACH_CALLBACK(cbs, hook, ...)                                                        \
  for (int cb_i = 0; cb_i < (cbs)->n; cb_i++)                                                \
    if ((cbs)->cb[cb_i] && (cbs)->cb[cb_i]->hook) (cbs)->cb[cb_i]->hook((cbs)->cb[cb_i], __VA_ARGS__)

static void progbar_show(lm_progbar *bar, int64_t step, const lm_logs *logs, int finalize) {
  const char *keys[LM_MAX_LOG_KEYS];
  for (int i = 0; i < logs->n; i++) keys[i] = logs->keys[i];
  lm__progbar_update(bar, step, logs->n, keys, logs->values, finalize);
}

static int check_ready(lm_model *m, const char *fn) {
  if (!m) return lm__fail(NULL, LM_ERROR_VALUE, "%s: the model is NULL", fn), -1;
  if (m->base.err.code) return lm__fail(NULL, m->base.err.code, "%s", m->base.err.msg), -1;
  if (!m->compiled || !m->compiled->opt) { /* predict alone leaves a bare state, with no optimizer */
    lm__fail(NULL, LM_ERROR_STATE, "%s: model \"%s\" must be compiled first (lm_compile)", fn, m->base.name);
    return -1;
  }
  return 0;
}

static lm_program *train_program(lm_model *m, const feeds *y) {
  lm_compiled *c = m->compiled;
  if (c->train) {
    int same = 1;
    for (int o = 0; same && o < m->n_outputs; o++) {
      lm_shape ts = y->a[o]->shape;
      ts.dim[0] = LM_NONE;
      same = lm__shape_equal(ts, c->train->target_shapes[o]);
    }
    if (same) return c->train;
    lm__program_free(c->train);
    c->train = NULL;
  }
  c->train = program_new(m, c, y);
  if (c->train && bind_slots(c, c->train)) {
    lm__program_free(c->train);
    c->train = NULL;
  }
  return c->train;
}

static int resolve_xy(lm_model *m, const char *fn, lm_feed *x, lm_feed *y, feeds *fx, feeds *fy) {
  if (resolve(m, fn, "x", x, 0, fx) || resolve(m, fn, "y", y, 1, fy) || check_targets(m, m->compiled, fn, fy)) return -1;
  if (fx->samples != fy->samples) {
    lm__fail(NULL, LM_ERROR_SHAPE, "%s: data cardinality is ambiguous: x holds %lld samples but y holds %lld", fn,
             (long long)fx->samples, (long long)fy->samples);
    return -1;
  }
  return 0;
}

/* ---- Feeders: where batches come from. One loop serves arrays and data sources. ---- */
typedef struct feeder {
  const char *fn; /* for messages: "fit", "fit (validation data)", "evaluate", "predict" */
  lm_model *m;
  bool with_y;
  int64_t n_batches; /* in a pass; -1 when unknown */
  /* arrays: samples perm[0 .. n) (absolute indices), batch_size at a time */
  const feeds *x, *y;
  int64_t lo, n, batch_size;
  int64_t *perm;
  bool shuffle;
  /* a source: the current batch's arrays, fed in order */
  lm_source *src;
  feeds bx, by;
  int64_t *iota;
  int64_t iota_cap;
} feeder;

static void feeder_arrays(feeder *f, lm_model *m, const char *fn, const feeds *x, const feeds *y, int64_t lo, int64_t hi,
                          int batch_size, bool shuffle) {
  *f = (feeder){.fn = fn, .m = m, .with_y = y != NULL, .x = x, .y = y, .lo = lo, .n = hi - lo, .batch_size = batch_size,
                .shuffle = shuffle, .n_batches = (hi - lo + batch_size - 1) / batch_size};
}

static void feeder_source(feeder *f, lm_model *m, const char *fn, lm_source *src, bool with_y) {
  *f = (feeder){.fn = fn, .m = m, .with_y = with_y, .src = src, .n_batches = src->n_batches < 0 ? -1 : src->n_batches};
}

static void feeder_free(feeder *f) {
  free(f->perm);
  free(f->iota);
}

/* Starts a pass over the data: arrays are (re)shuffled, as Keras does at every epoch. */
/* Starts a pass. The shuffle is keyed (by the seed, the epoch and the optimizer's step
 * count) rather than drawn from a running stream, so that a run resumed from a backup
 * shuffles exactly as the uninterrupted run did. */
static int feeder_begin(feeder *f, uint64_t key) {
  if (f->src) return 0;
  if (!f->perm && !(f->perm = lm__calloc((size_t)f->n, sizeof *f->perm))) return -1;
  for (int64_t i = 0; i < f->n; i++) f->perm[i] = f->lo + i;
  if (f->shuffle) {
    lm_rng rng;
    lm__rng_seed(&rng, key);
    for (int64_t i = f->n - 1; i > 0; i--) {
      int64_t j = (int64_t)(lm__rng_next(&rng) % (uint64_t)(i + 1)), tmp = f->perm[i];
      f->perm[i] = f->perm[j], f->perm[j] = tmp;
    }
  }
  return 0;
}

/* Batch `index` of the pass: 1 with *x, *y, the sample indices and the row count set; 0
 * when the data has no such batch; -1 on failure. */
static int feeder_next(feeder *f, int64_t index, const feeds **x, const feeds **y, const int64_t **idx, int64_t *rows) {
  if (!f->src) {
    int64_t start = index * f->batch_size;
    if (start >= f->n) return 0;
    *rows = f->n - start < f->batch_size ? f->n - start : f->batch_size;
    *idx = f->perm + start;
    *x = f->x, *y = f->y;
    return 1;
  }
  lm_batch b = {0};
  f->src->error[0] = 0;
  int r = f->src->get(f->src, index, &b);
  if (r == LM_SOURCE_END) return 0;
  f->src->error[sizeof f->src->error - 1] = 0;
  if (r != 0) {
    lm__fail(NULL, LM_ERROR_VALUE, "%s: the data source failed at batch %lld%s%s", f->fn, (long long)index,
             f->src->error[0] ? ": " : "", f->src->error);
    return -1;
  }
  char fn[128];
  snprintf(fn, sizeof fn, "%s (data source, batch %lld)", f->fn, (long long)index);
  if (f->with_y ? resolve_xy(f->m, fn, &b.x, &b.y, &f->bx, &f->by) : resolve(f->m, fn, "x", &b.x, 0, &f->bx)) return -1;
  if (f->bx.samples > f->iota_cap) {
    int64_t *p = lm__realloc(f->iota, (size_t)f->bx.samples * sizeof *p);
    if (!p) return -1;
    f->iota = p;
    for (int64_t i = f->iota_cap; i < f->bx.samples; i++) f->iota[i] = i;
    f->iota_cap = f->bx.samples;
  }
  *rows = f->bx.samples;
  *idx = f->iota;
  *x = &f->bx, *y = f->with_y ? &f->by : NULL;
  return 1;
}

static void feeder_epoch_end(feeder *f, int epoch) {
  if (f->src && f->src->on_epoch_end) f->src->on_epoch_end(f->src, epoch);
}

static void ran_out_warning(bool *warned) {
  if (*warned) return;
  *warned = true;
  fprintf(stderr, "UserWarning: Your input ran out of data; interrupting training. Make sure that your dataset or "
                  "generator can generate at least `steps_per_epoch * epochs` batches. You may need to use the "
                  "`.repeat()` function when building your dataset.\n");
}

/* Runs the model over up to `steps` batches of a pass (0: all) without updating it; fills
 * logs with prefix. */
static int run_test(lm_model *m, feeder *f, int64_t steps, const lm_callbacks *cbs, lm_progbar *bar, const char *prefix,
                    lm_logs *out) {
  lm_compiled *c = m->compiled;
  tracker *t = lm__calloc(1, sizeof *t);
  int rc = -1;
  if (!t || feeder_begin(f, 0)) goto done;
  tracker_reset(t, m, c);
  lm_logs logs = {0};
  EACH_CALLBACK(cbs, on_test_begin, &logs);
  int64_t limit = steps > 0 && (f->n_batches < 0 || steps < f->n_batches) ? steps : f->n_batches, batch = 0;
  for (; limit < 0 || batch < limit; batch++) {
    const feeds *x, *y;
    const int64_t *idx;
    int64_t rows;
    int r = feeder_next(f, batch, &x, &y, &idx, &rows);
    if (r < 0) goto done;
    if (r == 0) break;
    EACH_CALLBACK(cbs, on_test_batch_begin, (int)batch, &logs);
    lm_program *p = train_program(m, y);
    lm_plan *plan = p ? get_plan(p, 0, x, y, rows) : NULL;
    if (!plan) goto done;
    feed_batch(plan, p, x, y, idx, rows);
    lm__plan_forward(plan);
    if (!ran_clean(plan, f->fn)) goto done;
    tracker_update(t, m, c, plan, p, rows);
    tracker_logs(t, m, c, "", &logs);
    EACH_CALLBACK(cbs, on_test_batch_end, (int)batch, &logs);
    if (bar) progbar_show(bar, batch + 1, &logs, batch + 1 == limit);
  }
  if (batch == 0) {
    lm__fail(NULL, LM_ERROR_VALUE, "%s: the data gave no batch", f->fn);
    goto done;
  }
  if (bar && batch != limit) { /* the count was unknown, or the data ended early */
    bar->target = batch;
    progbar_show(bar, batch, &logs, 1);
  }
  EACH_CALLBACK(cbs, on_test_end, &logs);
  tracker_logs(t, m, c, prefix, out);
  rc = 0;
done:
  free(t);
  return rc;
}

/* Rows [lo, hi) of a, without copying. */
static lm_array *row_view(const lm_array *a, int64_t lo, int64_t hi) {
  lm_shape s = a->shape;
  s.dim[0] = hi - lo;
  return lm_array_wrap(a->dtype, s, (char *)a->data + lo * (a->size / a->shape.dim[0]) * 4);
}

static void free_views(lm_array **views) {
  for (int i = 0; i < 2 * LM_MAX_TENSORS; i++) lm_array_free(views[i]);
}

/* Shows callbacks the validation arrays, as Keras's callback.validation_data did (none for
 * a validation source). */
static int share_validation(const lm_callbacks *cbs, const feeder *vf, lm_array **views) {
  const feeds *vx = vf && !vf->src ? vf->x : NULL, *vy = vf && !vf->src ? vf->y : NULL;
  for (int i = 0; vx && i < vx->n; i++)
    if (!(views[i] = row_view(vx->a[i], vf->lo, vf->lo + vf->n))) return -1;
  for (int i = 0; vy && i < vy->n; i++)
    if (!(views[LM_MAX_TENSORS + i] = row_view(vy->a[i], vf->lo, vf->lo + vf->n))) return -1;
  for (int k = 0; k < cbs->n; k++) {
    lm_callback *cb = cbs->cb[k];
    if (!cb) continue;
    cb->n_validation_x = vx ? vx->n : 0;
    cb->n_validation_y = vy ? vy->n : 0;
    for (int i = 0; i < cb->n_validation_x; i++) cb->validation_x[i] = views[i];
    for (int i = 0; i < cb->n_validation_y; i++) cb->validation_y[i] = views[LM_MAX_TENSORS + i];
  }
  return 0;
}

static int verbosity(int v) { return v == LM_SILENT ? 0 : v == 0 ? 1 : v; }

/* The training loop, whatever feeds it. */
static lm_history *fit_loop(lm_model *m, feeder *tf, feeder *vf, const lm_fit_opts *o) {
  const char *fn = "fit";
  lm_compiled *c = m->compiled;
  int epochs = o->epochs ? o->epochs : 1, verbose = verbosity(o->verbose);
  drop_plans(c->train); /* trainable flags may have changed since the last fit */
  lm_history *h = lm__history_new();
  tracker *t = lm__calloc(1, sizeof *t);
  const lm_callbacks *cbs = &o->callbacks;
  lm_array *val_views[2 * LM_MAX_TENSORS] = {0};
  bool warned = false;
  if (!h || !t || share_validation(cbs, vf, val_views)) goto fail;
  for (int i = 0; i < cbs->n; i++)
    if (cbs->cb[i]) cbs->cb[i]->model = m;
  m->stop_training = false;
  lm_logs logs = {0};
  EACH_CALLBACK(cbs, on_train_begin, &logs);
  /* Batches an epoch: steps_per_epoch, else a pass (-1: until the source ends it). With
   * steps_per_epoch an epoch goes on where the last stopped, and a new pass starts when the
   * data is used up, as in Keras's EpochIterator. The bar's target is learnt in the first
   * epoch when unknown, as Keras's ProgbarLogger does. */
  int64_t steps = o->steps_per_epoch > 0 ? o->steps_per_epoch : tf->n_batches, known = steps, pos = 0;
  /* A callback that restored a backup (BackupAndRestore) says where to go on from. */
  int first_epoch = m->resume_epoch > o->initial_epoch ? m->resume_epoch : o->initial_epoch;
  m->resume_epoch = 0;
  for (int epoch = first_epoch; epoch < epochs && !m->stop_training; epoch++) {
    memset(&logs, 0, sizeof logs);
    EACH_CALLBACK(cbs, on_epoch_begin, epoch, &logs);
    uint64_t shuffle_key = lm__mix64(lm__rng_seed_value() ^ lm__mix64((uint64_t)epoch) ^ lm__mix64((uint64_t)c->opt->iterations + 0x5bd1e995u));
    if (pos == 0 && feeder_begin(tf, shuffle_key)) goto fail;
    tracker_reset(t, m, c);
    lm_progbar bar;
    if (verbose) {
      printf("Epoch %d/%d\n", epoch + 1, epochs);
      fflush(stdout);
    }
    lm__progbar_init(&bar, stdout, known, verbose);
    int64_t done = 0;
    while (steps < 0 || done < steps) {
      if (tf->n_batches >= 0 && pos >= tf->n_batches) {
        if (o->steps_per_epoch) ran_out_warning(&warned);
        break;
      }
      const feeds *x, *y;
      const int64_t *idx;
      int64_t rows;
      int r = feeder_next(tf, pos, &x, &y, &idx, &rows);
      if (r < 0) goto fail;
      if (r == 0) {
        if (o->steps_per_epoch) ran_out_warning(&warned);
        pos = -1; /* start a new pass next epoch */
        break;
      }
      pos++;
      int64_t step = done++;
      EACH_CALLBACK(cbs, on_train_batch_begin, (int)step, &logs);
      lm_program *p = train_program(m, y);
      lm_plan *plan = p ? get_plan(p, 1, x, y, rows) : NULL;
      if (!plan) goto fail;
      feed_batch(plan, p, x, y, idx, rows);
      /* Dropout masks follow the model's step count, not the plan's: a new mask every step,
       * across fit calls and batch sizes. */
      plan->step = (uint64_t)c->opt->iterations;
      lm__plan_forward(plan);
      if (!ran_clean(plan, fn)) goto fail;
      float total = lm__f(plan, p->total)[0];
      if (!isfinite(total)) {
        lm__fail(NULL, LM_ERROR_NAN,
                 "fit: the loss became %s at epoch %d, batch %lld; training stopped before that update "
                 "(check the learning rate and the data for NaN or infinite values)",
                 isnan(total) ? "nan" : "inf", epoch + 1, (long long)step);
        goto fail;
      }
      lm__plan_backward(plan);
      for (int v = 0; v < p->g->n_vals; v++) {
        if (p->slot_of[v] < 0 || !plan->grad[v]) continue;
        lm_weight *w = p->g->vals[v].weight;
        lm__optimizer_update(c->opt, lm_array_f32(w->value), plan->grad[v], c->slots + p->slot_of[v] * c->n_slots,
                             w->value->size);
      }
      c->opt->iterations++;
      tracker_update(t, m, c, plan, p, rows);
      tracker_logs(t, m, c, "", &logs);
      EACH_CALLBACK(cbs, on_train_batch_end, (int)step, &logs);
      if (verbose == 1 && (known < 0 || done < known)) progbar_show(&bar, done, &logs, 0);
      if (m->stop_training) break; /* a callback stopped training mid-epoch: Keras ends the epoch here */
    }
    if (done == 0) {
      lm__fail(NULL, LM_ERROR_VALUE, "fit: the data gave no batch in epoch %d", epoch + 1);
      goto fail;
    }
    if (!o->steps_per_epoch || pos < 0 || (tf->n_batches >= 0 && pos >= tf->n_batches)) pos = 0;
    if (known < 0) known = done;
    feeder_epoch_end(tf, epoch);
    if (vf && run_test(m, vf, o->validation_steps, cbs, NULL, "val_", &logs)) goto fail;
    EACH_CALLBACK(cbs, on_epoch_end, epoch, &logs);
    if (bar.target < 0) bar.target = done;
    if (verbose) progbar_show(&bar, bar.target, &logs, 1); /* after the callbacks, as Keras's ProgbarLogger comes last */
    if (lm__history_append(h, &logs)) goto fail;
  }
  EACH_CALLBACK(cbs, on_train_end, &logs);
  /* The next fit starts with new plans anyway: give their memory back now, so that a
   * predict or evaluate after fit does not hold both. */
  drop_plans(c->train);
  free_views(val_views);
  free(t);
  return h;
fail:
  drop_plans(c->train);
  free_views(val_views);
  free(t);
  lm_history_free(h);
  return NULL;
}

/* Validation data for fit: arrays (validation_x / y, or validation_split of x and y) or a
 * source. 1 with *vf set, 0 for none, -1 on bad data. */
static int fit_validation(lm_model *m, const lm_fit_opts *o, const feeds *fx, const feeds *fy, int64_t *n_train, feeds *vx,
                          feeds *vy, feeder *vf) {
  int batch_size = o->batch_size ? o->batch_size : 32;
  if (o->validation_source && (o->validation_x.n || o->validation_y.n)) {
    lm__fail(NULL, LM_ERROR_VALUE, "fit: validation data given twice (validation_source and validation_x / y)");
    return -1;
  }
  if (o->validation_source) {
    if (!o->validation_source->get) {
      lm__fail(NULL, LM_ERROR_VALUE, "fit: the validation source has no get function");
      return -1;
    }
    feeder_source(vf, m, "fit (validation data)", o->validation_source, true);
    return 1;
  }
  if (o->validation_x.n || o->validation_y.n) {
    lm_feed x = o->validation_x, y = o->validation_y;
    if (resolve_xy(m, "fit (validation data)", &x, &y, vx, vy)) return -1;
    feeder_arrays(vf, m, "fit (validation data)", vx, vy, 0, vx->samples, batch_size, false);
    return 1;
  }
  if (o->validation_split > 0) {
    if (!fx) {
      lm__fail(NULL, LM_ERROR_VALUE, "fit: validation_split is only supported for arrays, not for a data source");
      return -1;
    }
    /* Keras takes the last fraction, before any shuffling. */
    int64_t split_at = (int64_t)floor((double)fx->samples * (1.0 - o->validation_split));
    if (split_at <= 0 || split_at >= fx->samples) {
      lm__fail(NULL, LM_ERROR_VALUE, "fit: validation_split %g of %lld samples leaves an empty training or validation set",
               o->validation_split, (long long)fx->samples);
      return -1;
    }
    *n_train = split_at;
    feeder_arrays(vf, m, "fit (validation data)", fx, fy, split_at, fx->samples, batch_size, false);
    return 1;
  }
  return 0;
}

static int check_fit_opts(const lm_fit_opts *o) {
  int epochs = o->epochs ? o->epochs : 1, batch_size = o->batch_size ? o->batch_size : 32;
  if (epochs < 0 || batch_size < 0 || o->initial_epoch < 0 || !(o->validation_split >= 0 && o->validation_split < 1) ||
      o->steps_per_epoch < 0 || o->validation_steps < 0) {
    lm__fail(NULL, LM_ERROR_VALUE,
             "fit: invalid settings: epochs %d, batch_size %d, initial_epoch %d, validation_split %g, steps_per_epoch %lld, "
             "validation_steps %lld",
             epochs, batch_size, o->initial_epoch, o->validation_split, (long long)o->steps_per_epoch,
             (long long)o->validation_steps);
    return -1;
  }
  return 0;
}

lm_history *lm_fit_opts_(lm_model *m, lm_feed x, lm_feed y, lm_fit_opts o) {
  if (check_ready(m, "fit") || check_fit_opts(&o)) return NULL;
  feeds fx, fy, vx, vy;
  if (resolve_xy(m, "fit", &x, &y, &fx, &fy)) return NULL;
  int64_t n_train = fx.samples;
  feeder tf, vf;
  int has_val = fit_validation(m, &o, &fx, &fy, &n_train, &vx, &vy, &vf);
  if (has_val < 0) return NULL;
  feeder_arrays(&tf, m, "fit", &fx, &fy, 0, n_train, o.batch_size ? o.batch_size : 32, !o.no_shuffle);
  lm_history *h = fit_loop(m, &tf, has_val ? &vf : NULL, &o);
  feeder_free(&tf);
  if (has_val) feeder_free(&vf);
  return h;
}

static int check_source(const char *fn, const lm_source *src) {
  if (!src || !src->get) {
    lm__fail(NULL, LM_ERROR_VALUE, "%s: the data source is NULL or has no get function", fn);
    return -1;
  }
  return 0;
}

lm_history *lm_fit_source_opts_(lm_model *m, lm_source *src, lm_fit_opts o) {
  if (check_ready(m, "fit") || check_fit_opts(&o) || check_source("fit", src)) return NULL;
  if (o.batch_size) {
    lm__fail(NULL, LM_ERROR_VALUE, "fit: batch_size does not apply to a data source, whose batches are made by the source");
    return NULL;
  }
  feeds vx, vy;
  int64_t unused;
  feeder tf, vf;
  int has_val = fit_validation(m, &o, NULL, NULL, &unused, &vx, &vy, &vf);
  if (has_val < 0) return NULL;
  feeder_source(&tf, m, "fit", src, true);
  lm_history *h = fit_loop(m, &tf, has_val ? &vf : NULL, &o);
  feeder_free(&tf);
  if (has_val) feeder_free(&vf);
  return h;
}

static lm_history *evaluate_loop(lm_model *m, feeder *f, const lm_eval_opts *o) {
  int verbose = verbosity(o->verbose);
  int64_t target = o->steps > 0 && (f->n_batches < 0 || o->steps < f->n_batches) ? o->steps : f->n_batches;
  lm_progbar bar;
  lm__progbar_init(&bar, stdout, target, verbose);
  lm_logs logs = {0};
  lm_history *h = lm__history_new();
  if (!h || run_test(m, f, o->steps, &o->callbacks, verbose ? &bar : NULL, "", &logs) || lm__history_append(h, &logs)) {
    lm_history_free(h);
    return NULL;
  }
  return h;
}

lm_history *lm_evaluate_opts_(lm_model *m, lm_feed x, lm_feed y, lm_eval_opts o) {
  if (check_ready(m, "evaluate")) return NULL;
  feeds fx, fy;
  if (resolve_xy(m, "evaluate", &x, &y, &fx, &fy)) return NULL;
  feeder f;
  feeder_arrays(&f, m, "evaluate", &fx, &fy, 0, fx.samples, o.batch_size > 0 ? o.batch_size : 32, false);
  lm_history *h = evaluate_loop(m, &f, &o);
  feeder_free(&f);
  return h;
}

lm_history *lm_evaluate_source_opts_(lm_model *m, lm_source *src, lm_eval_opts o) {
  if (check_ready(m, "evaluate") || check_source("evaluate", src)) return NULL;
  feeder f;
  feeder_source(&f, m, "evaluate", src, true);
  lm_history *h = evaluate_loop(m, &f, &o);
  feeder_free(&f);
  return h;
}

static lm_outputs predict_loop(lm_model *m, feeder *f, const lm_eval_opts *o) {
  lm_outputs res = {0};
  if (!m->compiled) {
    /* Prediction needs no compile; keep the program on a bare compiled state. */
    m->compiled = lm__calloc(1, sizeof *m->compiled);
    if (!m->compiled) return res;
  }
  lm_compiled *c = m->compiled;
  if (!c->predict && !(c->predict = program_new(m, c, NULL))) return res;
  lm_program *p = c->predict;
  int verbose = verbosity(o->verbose);
  int64_t limit = o->steps > 0 && (f->n_batches < 0 || o->steps < f->n_batches) ? o->steps : f->n_batches;
  /* Outputs grow with the batches (the sample count of a source is not known up front). */
  float *buf[LM_MAX_OUTPUTS] = {0};
  lm_shape shape[LM_MAX_OUTPUTS];
  int64_t per[LM_MAX_OUTPUTS], n = 0, cap = f->src ? 0 : f->n, batch = 0;
  lm_progbar bar;
  lm__progbar_init(&bar, stdout, limit, verbose);
  const lm_callbacks *cbs = &o->callbacks;
  lm_logs logs = {0};
  if (feeder_begin(f, 0)) goto fail;
  EACH_CALLBACK(cbs, on_predict_begin, &logs);
  for (; limit < 0 || batch < limit; batch++) {
    const feeds *x, *y;
    const int64_t *idx;
    int64_t rows;
    int r = feeder_next(f, batch, &x, &y, &idx, &rows);
    if (r < 0) goto fail;
    if (r == 0) break;
    EACH_CALLBACK(cbs, on_predict_batch_begin, (int)batch, &logs);
    lm_plan *plan = get_plan(p, 0, x, NULL, rows);
    if (!plan) goto fail;
    feed_batch(plan, p, x, NULL, idx, rows);
    lm__plan_forward(plan);
    if (!ran_clean(plan, "predict")) goto fail;
    if (n + rows > cap) {
      cap = cap * 2 > n + rows ? cap * 2 : n + rows;
      for (int k = 0; batch > 0 && k < m->n_outputs; k++) {
        float *q = lm__realloc(buf[k], (size_t)(cap * per[k]) * sizeof *q);
        if (!q) goto fail;
        buf[k] = q;
      }
    }
    for (int k = 0; k < m->n_outputs; k++) {
      int64_t pk = lm__n(plan, p->out[k]) / rows;
      if (batch == 0) {
        per[k] = pk;
        shape[k] = plan->shapes[p->out[k]];
        if (!(buf[k] = lm__realloc(NULL, (size_t)(cap * pk) * sizeof *buf[k]))) goto fail;
      } else if (pk != per[k]) {
        lm__fail(NULL, LM_ERROR_SHAPE, "predict: output '%s' changed shape between batches", io_name(m, 1, k));
        goto fail;
      }
      memcpy(buf[k] + n * pk, lm__f(plan, p->out[k]), (size_t)(rows * pk) * sizeof(float));
    }
    n += rows;
    EACH_CALLBACK(cbs, on_predict_batch_end, (int)batch, &logs);
    if (verbose) progbar_show(&bar, batch + 1, &logs, batch + 1 == limit);
  }
  if (batch == 0) {
    lm__fail(NULL, LM_ERROR_VALUE, "predict: the data gave no batch");
    goto fail;
  }
  if (verbose && batch != limit) {
    bar.target = batch;
    progbar_show(&bar, batch, &logs, 1);
  }
  EACH_CALLBACK(cbs, on_predict_end, &logs);
  res.n = m->n_outputs;
  for (int k = 0; k < m->n_outputs; k++) {
    shape[k].dim[0] = n;
    if (!(res.a[k] = lm_array_wrap(LM_FLOAT32, shape[k], buf[k]))) goto fail;
    res.a[k]->owns_data = true;
    buf[k] = NULL;
  }
  return res;
fail:
  for (int k = 0; k < LM_MAX_OUTPUTS; k++) free(buf[k]);
  lm_outputs_free(&res);
  return res;
}

static int check_predict_ready(lm_model *m) {
  if (!m) return lm__fail(NULL, LM_ERROR_VALUE, "predict: the model is NULL"), -1;
  if (m->base.err.code) return lm__fail(NULL, m->base.err.code, "%s", m->base.err.msg), -1;
  return 0;
}

lm_outputs lm_predict_opts_(lm_model *m, lm_feed x, lm_eval_opts o) {
  lm_outputs res = {0};
  feeds fx;
  if (check_predict_ready(m) || resolve(m, "predict", "x", &x, 0, &fx)) return res;
  feeder f;
  feeder_arrays(&f, m, "predict", &fx, NULL, 0, fx.samples, o.batch_size > 0 ? o.batch_size : 32, false);
  res = predict_loop(m, &f, &o);
  feeder_free(&f);
  return res;
}

lm_outputs lm_predict_source_opts_(lm_model *m, lm_source *src, lm_eval_opts o) {
  lm_outputs res = {0};
  if (check_predict_ready(m) || check_source("predict", src)) return res;
  feeder f;
  feeder_source(&f, m, "predict", src, false);
  res = predict_loop(m, &f, &o);
  feeder_free(&f);
  return res;
}

void lm_outputs_free(lm_outputs *outputs) {
  if (!outputs) return;
  for (int k = 0; k < outputs->n; k++) lm_array_free(outputs->a[k]);
  memset(outputs, 0, sizeof *outputs);
}

void lm_callback_free(lm_callback *cb) {
  if (cb && cb->free) cb->free(cb);
}
