/* Internal: a thin wrapper over libhdf5 for Keras's weight files.
 *
 * Files live in memory (libhdf5's core driver): a write builds the file in memory and hands
 * its bytes back, so that the caller writes them atomically (see zip.h); a read takes the
 * bytes of a file or of a zip member.
 *
 * Reading is isolated: libhdf5 1.10 has memory-safety bugs on corrupt files (a heap
 * overflow in H5HG_read when a variable-length string's length disagrees with its global
 * heap object, found by tests/test_saving.c), so libhdf5 never parses an untrusted file in
 * the calling process. A forked child opens the image, walks every group, attribute and
 * dataset (hard links only: soft and external links, which could reach other files, are
 * recorded and refused; so are datasets with external or virtual storage), and sends a
 * snapshot through a pipe; the parent checks the snapshot as untrusted data too. A child
 * that crashes, loops or sends too much gives an error, never a crash of the caller. The
 * read functions below answer from the snapshot. Like libhdf5 itself, this is not meant
 * for several threads at once.
 *
 * Errors name the file (what), the object path and the problem; libhdf5's own error
 * stack printing is switched off. */
#ifndef LAMINA_IO_H5_H
#define LAMINA_IO_H5_H

#include "core/core.h"

typedef struct lm_h5_node lm_h5_node;

typedef struct lm_h5 {
  int64_t file; /* writing: the hid_t; negative when closed */
  /* reading: the snapshot, nodes sorted by path, pointing into blob */
  lm_h5_node *nodes;
  int64_t n_nodes;
  uint8_t *blob;
  char what[1200];
} lm_h5;

/* How long a read may take before the child is stopped: base seconds plus per_mb for each
 * MiB of the file (defaults 10 and 1; tests lower them). */
LM_INTERNAL void lm__h5_set_read_timeout(double base, double per_mb);

/* A new, empty file in memory. */
LM_INTERNAL lm_status lm__h5_create(lm_h5 *h, const char *what);
/* Reads an HDF5 file image into a snapshot (buf may be freed afterwards). */
LM_INTERNAL lm_status lm__h5_open_image(lm_h5 *h, const uint8_t *buf, size_t len, const char *what);
/* The bytes of a file made by lm__h5_create (malloc'd). */
LM_INTERNAL lm_status lm__h5_image(lm_h5 *h, uint8_t **buf, size_t *len);
LM_INTERNAL void lm__h5_close(lm_h5 *h);

/* ---- Writing (as h5py writes: no timestamps, contiguous datasets) ---- */
/* Creates the group and any missing parents ("layers/dense/vars"). */
LM_INTERNAL lm_status lm__h5_make_group(lm_h5 *h, const char *path);
/* A scalar variable-length string attribute on the object at obj ("" or "/" is the root),
 * UTF-8 or ASCII as h5py writes Python str and bytes. */
LM_INTERNAL lm_status lm__h5_set_attr_str(lm_h5 *h, const char *obj, const char *name, const char *value, bool utf8);
/* A 1-D array of variable-length ASCII strings; with n == 0 an empty float64 array, as
 * h5py writes an empty list. */
LM_INTERNAL lm_status lm__h5_set_attr_strs(lm_h5 *h, const char *obj, const char *name, const char *const *values,
                                           int n);
/* A float32 dataset (rank 0: a scalar), or an int32 scalar. */
LM_INTERNAL lm_status lm__h5_write_f32(lm_h5 *h, const char *path, lm_shape shape, const float *data);
LM_INTERNAL lm_status lm__h5_write_i32_scalar(lm_h5 *h, const char *path, int32_t value);

/* ---- Reading ---- */
typedef enum lm_h5_kind { LM_H5_NONE, LM_H5_GROUP, LM_H5_DATASET, LM_H5_OTHER } lm_h5_kind;
/* What path names ("" is the root): NONE if absent; an error (LM_H5_OTHER with
 * lm_last_error set) for a soft or external link on the way. */
LM_INTERNAL lm_h5_kind lm__h5_kind(lm_h5 *h, const char *path);
/* The number of links in a group, or -1 with an error. */
LM_INTERNAL int64_t lm__h5_n_children(lm_h5 *h, const char *group);
LM_INTERNAL bool lm__h5_has_attr(lm_h5 *h, const char *obj, const char *name);
/* A scalar string attribute (variable or fixed length), malloc'd. */
LM_INTERNAL lm_status lm__h5_get_attr_str(lm_h5 *h, const char *obj, const char *name, char **out);
/* A string array attribute (a scalar string counts as one); an empty numeric array, as
 * Keras writes an empty weight_names, gives n == 0. Free with lm__h5_free_strs. */
LM_INTERNAL lm_status lm__h5_get_attr_strs(lm_h5 *h, const char *obj, const char *name, char ***out, int *n);
LM_INTERNAL void lm__h5_free_strs(char **strs, int n);
/* A numeric dataset's shape (rank 0 for a scalar); refuses other types and storage. */
LM_INTERNAL lm_status lm__h5_dataset_shape(lm_h5 *h, const char *path, lm_shape *shape);
/* Reads a numeric dataset of exactly n elements as float32 (libhdf5 converted float64,
 * float16 or integers), or a one-element one as a double. */
LM_INTERNAL lm_status lm__h5_read_f32(lm_h5 *h, const char *path, float *out, int64_t n);
LM_INTERNAL lm_status lm__h5_read_scalar(lm_h5 *h, const char *path, double *out);

#endif
