/* compile(): losses, loss weights and metrics per output; the programs fit and predict run. */
#include "train/train.h"

static const char *output_name(const lm_model *model, int o) { return model->outputs[o]->node->layer->name; }

static int output_index(const lm_model *model, const char *name) {
  for (int o = 0; o < model->n_outputs; o++)
    if (!strcmp(output_name(model, o), name)) return o;
  return -1;
}

static void list_outputs(const lm_model *model, char *buf, size_t len) {
  size_t at = 0;
  buf[0] = 0;
  for (int o = 0; o < model->n_outputs && at < len; o++)
    at += (size_t)snprintf(buf + at, len - at, "%s'%s'", o ? ", " : "", output_name(model, o));
}

void lm__program_free(lm_program *p) {
  if (!p) return;
  for (int i = 0; i < LM_PLAN_CACHE; i++) lm__plan_free(p->cache[i].plan);
  lm__graph_free(p->g);
  free(p->slot_of);
  free(p);
}

void lm__compiled_free(lm_compiled *c) {
  if (!c) return;
  lm_optimizer_free(c->opt);
  lm__program_free(c->train);
  lm__program_free(c->predict);
  free(c->weights);
  for (int i = 0; c->slots && i < c->n_weights * c->n_slots; i++) free(c->slots[i]);
  free(c->slots);
  free(c);
}

float **lm__compiled_slots(lm_compiled *c, lm_weight *w) {
  int k = 0;
  while (k < c->n_weights && c->weights[k] != w) k++;
  if (k < c->n_weights) return c->slots + k * c->n_slots;
  int cap = c->cap_weights;
  if (lm__grow(&c->weights, &c->cap_weights, k + 1, sizeof *c->weights)) return NULL;
  if (c->cap_weights != cap) {
    float **slots = lm__realloc(c->slots, (size_t)(c->cap_weights * (c->n_slots ? c->n_slots : 1)) * sizeof *slots);
    if (!slots) return NULL;
    c->slots = slots;
  }
  for (int s = 0; s < c->n_slots; s++) {
    float *buf = lm__alloc_floats(w->value->size);
    if (!buf) {
      for (int t = 0; t < s; t++) free(c->slots[k * c->n_slots + t]);
      return NULL;
    }
    c->slots[k * c->n_slots + s] = buf;
  }
  lm__optimizer_init_slots(c->opt, c->slots + k * c->n_slots, w->value->size);
  c->weights[k] = w;
  c->n_weights++;
  return c->slots + k * c->n_slots;
}

/* Resolves a per-output list given once (broadcast), in output order, or by name. */
static lm_status per_output_names(lm_model *model, const lm_names *names, const char *what, int o, const char **out,
                                  int max, int *n_out, lm_error *err) {
  char outs[512];
  *n_out = 0;
  if (!names->by_name) {
    if (names->n == 1 || (names->n > 1 && !strcmp(what, "metric"))) {
      /* one loss for every output; metrics as a list apply to every output, as in Keras */
      for (int i = 0; i < names->n && *n_out < max; i++) out[(*n_out)++] = names->item[i];
      return LM_OK;
    }
    if (names->n != model->n_outputs)
      return lm__fail(err, LM_ERROR_VALUE, "compile: %d %ss were given for a model with %d outputs; give one, "
                      "or one per output", names->n, what, model->n_outputs);
    out[(*n_out)++] = names->item[o];
    return LM_OK;
  }
  for (int i = 0; i < names->n; i++) {
    const char *key = names->item[2 * i];
    if (!key || output_index(model, key) < 0) {
      list_outputs(model, outs, sizeof outs);
      return lm__fail(err, LM_ERROR_NAME, "compile: unknown output name '%s' in the %s dict; the outputs are [%s]",
                      key ? key : "(null)", what, outs);
    }
    if (output_index(model, key) == o && *n_out < max) out[(*n_out)++] = names->item[2 * i + 1];
  }
  return LM_OK;
}

lm_status lm_compile_opts_(lm_model *model, lm_compile_opts opts) {
  if (!model) return lm__fail(NULL, LM_ERROR_VALUE, "compile: the model is NULL");
  if (model->base.err.code) {
    lm_optimizer_free(opts.optimizer);
    return lm__fail(NULL, model->base.err.code, "%s", model->base.err.msg);
  }
  lm_error err = {0};
  lm_compiled *c = lm__calloc(1, sizeof *c);
  if (!c) return LM_ERROR_MEMORY;
  c->opt = opts.optimizer ? opts.optimizer : lm_rmsprop();
  c->n_out = model->n_outputs;
  if (c->opt) c->n_slots = lm__optimizer_n_slots(c->opt);
  if (!c->opt) {
    lm__compiled_free(c);
    return lm__fail(NULL, LM_ERROR_MEMORY, "compile: no optimizer");
  }
  if (opts.loss.n < 1) {
    lm__compiled_free(c);
    return lm__fail(NULL, LM_ERROR_VALUE, "compile: no loss was given (.loss = LM_LOSSES(\"mse\"))");
  }
  for (int o = 0; o < model->n_outputs && !err.code; o++) {
    const char *loss[4];
    int n = 0;
    if (per_output_names(model, &opts.loss, "loss", o, loss, 1, &n, &err)) break;
    if (n == 0) {
      lm__fail(&err, LM_ERROR_VALUE, "compile: no loss for output '%s'", output_name(model, o));
      break;
    }
    if (lm__loss_parse(loss[0], &c->loss[o], &err)) break;
    c->loss_name[o] = lm__loss_name(c->loss[o].kind);

    c->loss_weight[o] = 1.0f;
    const lm_loss_weights *w = &opts.loss_weights;
    if (w->n && !w->by_name) {
      if (w->n != model->n_outputs) {
        lm__fail(&err, LM_ERROR_VALUE, "compile: %d loss weights were given for a model with %d outputs", w->n,
                 model->n_outputs);
        break;
      }
      c->loss_weight[o] = (float)w->w[o];
    }
    for (int i = 0; w->by_name && i < w->n; i++) {
      if (!w->named[i].name || output_index(model, w->named[i].name) < 0) {
        char outs[512];
        list_outputs(model, outs, sizeof outs);
        lm__fail(&err, LM_ERROR_NAME, "compile: unknown output name '%s' in loss_weights; the outputs are [%s]",
                 w->named[i].name ? w->named[i].name : "(null)", outs);
        break;
      }
      if (output_index(model, w->named[i].name) == o) c->loss_weight[o] = (float)w->named[i].weight;
    }

    const char *metrics[LM_MAX_METRICS_PER_OUTPUT];
    if (opts.metrics.n &&
        per_output_names(model, &opts.metrics, "metric", o, metrics, LM_MAX_METRICS_PER_OUTPUT, &c->n_metrics[o], &err))
      break;
    int64_t cols = model->outputs[o]->shape.dim[model->outputs[o]->shape.rank - 1];
    for (int m = 0; m < c->n_metrics[o]; m++) {
      lm_metric probe;
      if (!metrics[m] || lm__metric_init(&probe, metrics[m] ? metrics[m] : "(null)", &c->loss[o], cols, &err)) break;
      snprintf(c->metric_names[o][m], sizeof c->metric_names[o][m], "%s", metrics[m]);
    }
  }
  if (err.code) {
    lm__compiled_free(c);
    return lm__fail(NULL, err.code, "%s", err.msg);
  }
  lm__compiled_free(model->compiled);
  model->compiled = c;
  return LM_OK;
}

double lm_model_learning_rate(const lm_model *model) {
  return model && model->compiled && model->compiled->opt ? model->compiled->opt->learning_rate : 0;
}

void lm_model_set_learning_rate(lm_model *model, double lr) {
  if (model && model->compiled && model->compiled->opt) model->compiled->opt->learning_rate = lr;
}

void lm_model_stop_training(lm_model *model) {
  if (model) model->stop_training = true;
}
