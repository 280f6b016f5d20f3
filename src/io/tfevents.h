/* Internal: TensorBoard event files — CRC-32C, TFRecord framing, hand-encoded protobuf
 * (Event, Summary, TensorProto) and the summary writer's building blocks. */
#ifndef LAMINA_IO_TFEVENTS_H
#define LAMINA_IO_TFEVENTS_H

#include "core/core.h"
#include <lamina/tensorboard.h>

/* CRC-32C (Castagnoli); lm__crc32c_extend continues a running crc (start from 0). */
LM_INTERNAL uint32_t lm__crc32c_extend(uint32_t crc, const void *data, size_t n);
LM_INTERNAL uint32_t lm__crc32c(const void *data, size_t n);
/* TFRecord's masked CRC: rotate right by 15, add 0xa282ead8. */
LM_INTERNAL uint32_t lm__crc32c_masked(const void *data, size_t n);

/* A growable protobuf buffer. A failed allocation sets failed; later writes do nothing. */
typedef struct lm_pb {
  uint8_t *data;
  size_t len, cap;
  bool failed;
} lm_pb;

enum { LM_PB_VARINT = 0, LM_PB_I64 = 1, LM_PB_LEN = 2, LM_PB_I32 = 5 };

LM_INTERNAL void lm__pb_raw(lm_pb *pb, const void *data, size_t n);
LM_INTERNAL void lm__pb_varint(lm_pb *pb, uint64_t v);
LM_INTERNAL void lm__pb_key(lm_pb *pb, int field, int wire);
LM_INTERNAL void lm__pb_uint(lm_pb *pb, int field, uint64_t v); /* varint field (int64, enum, bool) */
LM_INTERNAL void lm__pb_double(lm_pb *pb, int field, double v);
LM_INTERNAL void lm__pb_float(lm_pb *pb, int field, float v);
LM_INTERNAL void lm__pb_bytes(lm_pb *pb, int field, const void *data, size_t n);
LM_INTERNAL void lm__pb_string(lm_pb *pb, int field, const char *s);
/* A nested message: field, length, then the bytes of sub. */
LM_INTERNAL void lm__pb_message(lm_pb *pb, int field, const lm_pb *sub);
LM_INTERNAL void lm__pb_free(lm_pb *pb);

/* Reading protobuf (tests, tools): one field at a time from [*p, end). Returns 1 and sets
 * field, wire and either *value (varint, fixed) or *data and *n (length-delimited); 0 at the
 * end; -1 on malformed input (never reads past end). */
LM_INTERNAL int lm__pb_next(const uint8_t **p, const uint8_t *end, int *field, int *wire, uint64_t *value,
                            const uint8_t **data, size_t *n);

/* mkdir -p: creates dir and its missing parents; -1 with errno set on failure. */
LM_INTERNAL int lm__make_dirs(const char *dir);
/* Writes a whole file through a temporary name and a rename, so that readers never see a
 * half-written one. -1 with errno set on failure. */
LM_INTERNAL int lm__write_file_atomic(const char *path, const void *data, size_t n);

/* TFRecord: u64 length, masked crc of the length, data, masked crc of the data. */
LM_INTERNAL int lm__tfrecord_write(FILE *f, const void *data, size_t n);
/* Reads the next record into *buf (grown as needed). 1: a record; 0: clean end of file;
 * -1: truncated or a CRC mismatch (message in lm_last_error). */
LM_INTERNAL int lm__tfrecord_read(FILE *f, uint8_t **buf, size_t *cap, size_t *n);

/* TensorFlow dtypes and TensorBoard data classes used by the writers. */
enum { LM_TF_FLOAT = 1, LM_TF_DOUBLE = 2, LM_TF_STRING = 7 };
enum { LM_DATA_CLASS_UNKNOWN = 0, LM_DATA_CLASS_SCALAR = 1, LM_DATA_CLASS_TENSOR = 2, LM_DATA_CLASS_BLOB_SEQUENCE = 3 };

/* Builds a TensorProto into t (cleared first). shape: rank dims (rank 0: a scalar). */
LM_INTERNAL void lm__pb_tensor_float_scalar(lm_pb *t, float v);
LM_INTERNAL void lm__pb_tensor_doubles(lm_pb *t, const double *v, const int64_t *dims, int rank);
LM_INTERNAL void lm__pb_tensor_strings(lm_pb *t, const char *const *s, const size_t *lens, int n, bool vector);

/* Writes one Event{wall_time, step, summary{value{tag, metadata{plugin_data{plugin,
 * content}, data_class}, tensor}}} and flushes. */
LM_INTERNAL lm_status lm__summary_write_tensor(lm_summary_writer *w, const char *tag, int64_t step, const char *plugin,
                                               const void *content, size_t content_len, int data_class,
                                               const lm_pb *tensor);
/* Writes Event{wall_time, step, graph_def: the serialized GraphDef}, TensorBoard's op graph. */
LM_INTERNAL lm_status lm__summary_write_graph(lm_summary_writer *w, int64_t step, const lm_pb *graph_def);
/* n images of height x width x channels bytes, one after another, as one summary (TensorFlow's
 * tf.summary.image: a string tensor [width, height, png...]). */
LM_INTERNAL lm_status lm__summary_images(lm_summary_writer *w, const char *tag, int64_t step, const uint8_t *pixels,
                                         int n, int height, int width, int channels);

/* TensorBoard's histogram buckets (tf.summary.histogram): k rows (left, right, count) over
 * [min, max], the last bucket closed; a single distinct value gives k rows [v, v] with the
 * count in the last; no data gives zeros. NaN values are skipped. out holds 3k doubles. */
LM_INTERNAL void lm__histogram_buckets(const float *values, int64_t n, int k, double *out);

#endif
