/* lamina — Keras-style deep learning in C. One include for everything. */
#ifndef LAMINA_H
#define LAMINA_H
#include <lamina/tensor.h>
#include <lamina/layers.h>
#include <lamina/model.h>
#include <lamina/callbacks.h>
#include <lamina/train.h>
#include <lamina/io.h>
#include <lamina/applications.h>
#include <lamina/plot.h>
#include <lamina/tensorboard.h>
#include <lamina/saving.h>
#endif
