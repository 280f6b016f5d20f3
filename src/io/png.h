/* Internal: a small PNG encoder (8-bit gray, gray + alpha, RGB, RGBA) over zlib. */
#ifndef LAMINA_IO_PNG_H
#define LAMINA_IO_PNG_H

#include "core/core.h"

/* Encodes height rows of width pixels of channels bytes (1: gray, 2: gray + alpha, 3: RGB,
 * 4: RGBA). *out is malloc'd (free it); LM_ERROR_VALUE for bad sizes, LM_ERROR_MEMORY. */
LM_INTERNAL lm_status lm__png_encode(const uint8_t *pixels, int height, int width, int channels, uint8_t **out,
                                     size_t *len);

#endif
