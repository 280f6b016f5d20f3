/* PNG encoder: signature, IHDR, one IDAT (zlib stream of filtered rows), IEND; chunk CRCs
 * from zlib's crc32. Rows use the "Up" filter (predict from the row above), a cheap win for
 * images whose rows resemble each other, such as weight matrices. */
#include "io/png.h"
#include <zlib.h>

static void put_be32(uint8_t *b, uint32_t v) {
  b[0] = (uint8_t)(v >> 24), b[1] = (uint8_t)(v >> 16), b[2] = (uint8_t)(v >> 8), b[3] = (uint8_t)v;
}

/* Appends length, type, data and the CRC of type + data at *p; returns the end. */
static uint8_t *put_chunk(uint8_t *p, const char type[4], const uint8_t *data, uint32_t n) {
  put_be32(p, n);
  memcpy(p + 4, type, 4);
  if (n) memcpy(p + 8, data, n);
  uLong crc = crc32(0L, Z_NULL, 0);
  crc = crc32(crc, p + 4, 4 + n);
  put_be32(p + 8 + n, (uint32_t)crc);
  return p + 12 + n;
}

lm_status lm__png_encode(const uint8_t *pixels, int height, int width, int channels, uint8_t **out, size_t *len) {
  static const uint8_t color_type[5] = {0, 0, 4, 2, 6};
  *out = NULL, *len = 0;
  if (!pixels || height < 1 || width < 1 || channels < 1 || channels > 4 || height > (1 << 24) ||
      width > (1 << 24) || (uint64_t)height * (uint64_t)width * (uint64_t)channels > ((uint64_t)1 << 31))
    return lm__fail(NULL, LM_ERROR_VALUE, "PNG: cannot encode %d x %d pixels with %d channel(s)", height, width,
                    channels);
  size_t row = (size_t)width * (size_t)channels, raw_len = (row + 1) * (size_t)height;
  uint8_t *raw = lm__calloc(raw_len, 1);
  uLongf z_len = compressBound((uLong)raw_len);
  uint8_t *png = raw ? lm__calloc(8 + 25 + 12 + (size_t)z_len + 12, 1) : NULL;
  if (!png) {
    free(raw);
    return LM_ERROR_MEMORY;
  }
  for (size_t y = 0; y < (size_t)height; y++) {
    const uint8_t *src = pixels + y * row, *up = y ? src - row : NULL;
    uint8_t *dst = raw + y * (row + 1);
    dst[0] = up ? 2 : 0; /* filter type: Up, or None for the first row */
    for (size_t i = 0; i < row; i++) dst[1 + i] = (uint8_t)(src[i] - (up ? up[i] : 0));
  }
  static const uint8_t signature[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  uint8_t ihdr[13];
  put_be32(ihdr, (uint32_t)width);
  put_be32(ihdr + 4, (uint32_t)height);
  ihdr[8] = 8;                   /* bits per sample */
  ihdr[9] = color_type[channels];
  ihdr[10] = ihdr[11] = ihdr[12] = 0; /* deflate, adaptive filtering, no interlace */
  memcpy(png, signature, 8);
  uint8_t *p = put_chunk(png + 8, "IHDR", ihdr, 13);
  /* IDAT's data is compressed in place, after its length and type. */
  if (compress2(p + 8, &z_len, raw, (uLong)raw_len, Z_DEFAULT_COMPRESSION) != Z_OK) {
    free(raw);
    free(png);
    return lm__fail(NULL, LM_ERROR_MEMORY, "PNG: zlib could not compress %zu bytes", raw_len);
  }
  free(raw);
  put_be32(p, (uint32_t)z_len);
  memcpy(p + 4, "IDAT", 4);
  uLong crc = crc32(0L, Z_NULL, 0);
  crc = crc32(crc, p + 4, (uInt)(4 + z_len));
  put_be32(p + 8 + z_len, (uint32_t)crc);
  p += 12 + z_len;
  p = put_chunk(p, "IEND", NULL, 0);
  *out = png;
  *len = (size_t)(p - png);
  return LM_OK;
}
