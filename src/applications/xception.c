/* keras.applications.Xception, layer for layer and name for name. */
#include "model/internal.h"

/* SeparableConv2D (same padding, no bias) and its BatchNormalization, named as Keras does. */
static lm_tensor *sepconv_bn(lm_tensor *x, int filters, const char *prefix, const char *which) {
  char conv[64], bn[64];
  snprintf(conv, sizeof conv, "%s_%s", prefix, which);
  snprintf(bn, sizeof bn, "%s_%s_bn", prefix, which);
  x = lm_call(lm_separable_conv2d(filters, 3, .padding = LM_SAME, .no_bias = true, .name = conv), x);
  return lm_call(lm_batch_normalization(.name = bn), x);
}

static lm_tensor *relu(lm_tensor *x, const char *prefix, const char *which) {
  char name[64];
  snprintf(name, sizeof name, "%s_%s_act", prefix, which);
  return lm_call(lm_activation_layer(LM_RELU, .name = name), x);
}

/* The strided 1x1 projection that the entry and exit blocks add back. */
static lm_tensor *projection(lm_tensor *x, int filters) {
  x = lm_call(lm_conv2d(filters, 1, .strides = {2}, .padding = LM_SAME, .no_bias = true), x);
  return lm_call(lm_batch_normalization(), x);
}

static lm_tensor *pool(lm_tensor *x, const char *prefix) {
  char name[64];
  snprintf(name, sizeof name, "%s_pool", prefix);
  return lm_call(lm_max_pooling2d(3, .strides = {2}, .padding = LM_SAME, .name = name), x);
}

/* Entry-flow blocks 2-4 and exit block 13: two separable convolutions, pooling, projection. */
static lm_tensor *downsampling_block(lm_tensor *x, const char *prefix, int filters1, int filters2, bool first) {
  lm_tensor *residual = projection(x, filters2);
  if (!first) x = relu(x, prefix, "sepconv1");
  x = sepconv_bn(x, filters1, prefix, "sepconv1");
  x = relu(x, prefix, "sepconv2");
  x = sepconv_bn(x, filters2, prefix, "sepconv2");
  x = pool(x, prefix);
  return lm_add(LM_TENSORS(x, residual));
}

lm_model *lm_xception_new(lm_application_opts opts) {
  lm_shape shape = opts.input_shape.rank ? opts.input_shape : LM_SHAPE(LM_NONE, LM_NONE, 3);
  if (shape.rank != 3 || (shape.dim[0] >= 0 && shape.dim[0] < 71) || (shape.dim[1] >= 0 && shape.dim[1] < 71)) {
    char buf[96];
    return lm__model_error(opts.name ? opts.name : "xception", LM_ERROR_SHAPE,
                           "Xception needs an input of shape (rows, cols, channels) of at least 71x71, got %s",
                           lm_shape_format(shape, buf, sizeof buf));
  }
  lm_tensor *input = lm_input(shape);
  lm_tensor *x = lm_call(lm_conv2d(32, 3, .strides = {2}, .no_bias = true, .name = "block1_conv1"), input);
  x = lm_call(lm_batch_normalization(.name = "block1_conv1_bn"), x);
  x = relu(x, "block1", "conv1");
  x = lm_call(lm_conv2d(64, 3, .no_bias = true, .name = "block1_conv2"), x);
  x = lm_call(lm_batch_normalization(.name = "block1_conv2_bn"), x);
  x = relu(x, "block1", "conv2");

  /* Keras names block 2's second activation "block2_sepconv2_act" and has no first one. */
  x = downsampling_block(x, "block2", 128, 128, true);
  x = downsampling_block(x, "block3", 256, 256, false);
  x = downsampling_block(x, "block4", 728, 728, false);

  for (int i = 0; i < 8; i++) { /* middle flow */
    char prefix[16];
    snprintf(prefix, sizeof prefix, "block%d", i + 5);
    lm_tensor *residual = x;
    x = relu(x, prefix, "sepconv1");
    x = sepconv_bn(x, 728, prefix, "sepconv1");
    x = relu(x, prefix, "sepconv2");
    x = sepconv_bn(x, 728, prefix, "sepconv2");
    x = relu(x, prefix, "sepconv3");
    x = sepconv_bn(x, 728, prefix, "sepconv3");
    x = lm_add(LM_TENSORS(x, residual));
  }

  x = downsampling_block(x, "block13", 728, 1024, false);
  x = sepconv_bn(x, 1536, "block14", "sepconv1");
  x = relu(x, "block14", "sepconv1");
  x = sepconv_bn(x, 2048, "block14", "sepconv2");
  x = relu(x, "block14", "sepconv2");

  if (opts.include_top) {
    x = lm_call(lm_global_average_pooling2d(.name = "avg_pool"), x);
    x = lm_call(lm_dense(opts.classes ? opts.classes : 1000, .activation = LM_SOFTMAX, .name = "predictions"), x);
  } else if (opts.pooling == LM_POOLING_AVG) {
    x = lm_call(lm_global_average_pooling2d(), x);
  } else if (opts.pooling == LM_POOLING_MAX) {
    x = lm_call(lm_global_max_pooling2d(), x);
  }
  return lm_model_new(LM_TENSORS(input), LM_TENSORS(x), .name = opts.name ? opts.name : "xception");
}
