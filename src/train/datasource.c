/* Data sources (the struct is in train.h; fit.c's feeders call them): freeing one, and a
 * source over arrays in memory — the simplest PyDataset, and a model for writing others. */
#include "core/core.h"
#include <lamina/train.h>

void lm_source_free(lm_source *src) {
  if (src && src->free) src->free(src);
}

typedef struct array_source {
  lm_source base; /* first, so that the lm_source the caller holds is the whole */
  lm_feed feed[2]; /* x, y as given (names kept) */
  int n[2];
  int64_t samples, batch_size;
  bool shuffle;
  lm_rng rng;
  int64_t *perm;
  lm_array *batch[2][LM_MAX_TENSORS]; /* views into the arrays, or gathered rows when shuffled */
} array_source;

static const lm_array *feed_array(const lm_feed *f, int i) { return f->item[f->by_name ? 2 * i + 1 : i]; }

static void shuffle(array_source *s) {
  for (int64_t i = 0; i < s->samples; i++) s->perm[i] = i;
  for (int64_t i = s->samples - 1; i > 0; i--) {
    int64_t j = (int64_t)(lm__rng_next(&s->rng) % (uint64_t)(i + 1)), t = s->perm[i];
    s->perm[i] = s->perm[j], s->perm[j] = t;
  }
}

static int array_get(lm_source *src, int64_t index, lm_batch *b) {
  array_source *s = (array_source *)src;
  if (index < 0 || index >= (s->samples + s->batch_size - 1) / s->batch_size) return LM_SOURCE_END;
  int64_t start = index * s->batch_size, rows = s->samples - start < s->batch_size ? s->samples - start : s->batch_size;
  lm_feed *out[2] = {&b->x, &b->y};
  for (int k = 0; k < 2; k++) {
    *out[k] = s->feed[k];
    for (int i = 0; i < s->n[k]; i++) {
      const lm_array *a = feed_array(&s->feed[k], i);
      lm_array *d = s->batch[k][i];
      int64_t per = a->size / a->shape.dim[0];
      if (s->shuffle)
        for (int64_t r = 0; r < rows; r++)
          memcpy((char *)d->data + r * per * 4, (const char *)a->data + s->perm[start + r] * per * 4, (size_t)per * 4);
      else
        d->data = (char *)a->data + start * per * 4;
      d->shape.dim[0] = rows;
      d->size = rows * per;
      out[k]->item[s->feed[k].by_name ? 2 * i + 1 : i] = d;
    }
  }
  return 0;
}

static void array_epoch_end(lm_source *src, int epoch) {
  array_source *s = (array_source *)src;
  if (s->shuffle) shuffle(s);
}

static void array_free(lm_source *src) {
  array_source *s = (array_source *)src;
  for (int k = 0; k < 2; k++)
    for (int i = 0; i < s->n[k]; i++) lm_array_free(s->batch[k][i]);
  free(s->perm);
  free(s);
}

lm_source *lm_array_source_new(lm_feed x, lm_feed y, lm_array_source_opts o) {
  if (o.batch_size < 0 || x.n < 1 || x.n > LM_MAX_TENSORS || y.n < 0 || y.n > LM_MAX_TENSORS) {
    lm__fail(NULL, LM_ERROR_VALUE, "lm_array_source: bad settings: %d x arrays, %d y arrays, batch_size %d", x.n, y.n,
             o.batch_size);
    return NULL;
  }
  array_source *s = lm__calloc(1, sizeof *s);
  if (!s) return NULL;
  s->feed[0] = x, s->feed[1] = y;
  s->batch_size = o.batch_size ? o.batch_size : 32;
  s->shuffle = o.shuffle;
  s->samples = -1;
  lm__rng_seed(&s->rng, o.seed);
  for (int k = 0; k < 2; k++) {
    for (int i = 0; i < s->feed[k].n; i++) {
      const lm_array *a = feed_array(&s->feed[k], i);
      if (!a || !a->data || a->shape.rank < 1 || a->size <= 0 || (s->samples >= 0 && a->shape.dim[0] != s->samples)) {
        lm__fail(NULL, LM_ERROR_SHAPE, "lm_array_source: %s array %d is NULL, empty, without a batch axis, or of another length",
                 k ? "y" : "x", i);
        array_free(&s->base);
        return NULL;
      }
      s->samples = a->shape.dim[0];
      lm_shape shape = a->shape;
      int64_t rows = s->batch_size < s->samples ? s->batch_size : s->samples;
      shape.dim[0] = rows;
      s->batch[k][i] = o.shuffle ? lm_array_new(a->dtype, shape) : lm_array_wrap(a->dtype, shape, a->data);
      if (!s->batch[k][i]) {
        array_free(&s->base);
        return NULL;
      }
      s->n[k] = i + 1;
    }
  }
  if (o.shuffle) {
    if (!(s->perm = lm__calloc((size_t)s->samples, sizeof *s->perm))) {
      array_free(&s->base);
      return NULL;
    }
    shuffle(s);
  }
  s->base.n_batches = (s->samples + s->batch_size - 1) / s->batch_size;
  s->base.get = array_get;
  s->base.on_epoch_end = array_epoch_end;
  s->base.free = array_free;
  return &s->base;
}
