/* Internal: whole-file reads, atomic writes, and zip archives (the one zip reader and
 * writer: .npz and .keras use it).
 *
 * Every file is untrusted: the reader checks each size and offset against the bytes that
 * are really there before reading or allocating, so a corrupt or hostile archive fails with
 * a message naming the file, never with a crash. */
#ifndef LAMINA_IO_ZIP_H
#define LAMINA_IO_ZIP_H

#include "core/core.h"

/* ---- Files ---- */

/* Reads a whole file into *data (malloc'd, the caller frees it). Its size is what the
 * file system says, not what the file claims. Errors name the path. */
LM_INTERNAL lm_status lm__read_file(const char *path, uint8_t **data, size_t *len);

/* A file written under a temporary name in the same directory ("<path>.tmp.XXXXXX"), then
 * flushed, fsync'd and renamed over path: a write that fails half-way leaves the previous
 * file as it was. */
typedef struct lm_wfile {
  char *tmp;
  FILE *f;
} lm_wfile;
LM_INTERNAL lm_status lm__wfile_open(lm_wfile *w, const char *path);
/* Ends the write: with st == LM_OK and no write error, makes the file path (mode 0666 less
 * the umask, as an ordinary file); otherwise removes the temporary file. Returns the first
 * failure. */
LM_INTERNAL lm_status lm__wfile_commit(lm_wfile *w, const char *path, lm_status st);
/* lm__wfile_open + one write of len bytes + lm__wfile_commit. */
LM_INTERNAL lm_status lm__write_file(const char *path, const void *data, size_t len);

/* ---- Reading a zip held in memory ---- */
typedef struct lm_zip_member {
  char *name;
  uint16_t flags, method;
  uint32_t crc;
  uint64_t csize, usize, offset; /* offset: of the local header */
} lm_zip_member;

typedef struct lm_zip {
  const uint8_t *buf; /* borrowed: must outlive the lm_zip */
  size_t len;
  const char *path; /* for messages */
  lm_zip_member *m;
  int n;
} lm_zip;

/* Reads the central directory (zip64 included). Member names are checked here; each
 * member's local header, method and data are checked when it is read. */
LM_INTERNAL lm_status lm__zip_open(lm_zip *z, const uint8_t *buf, size_t len, const char *path);
LM_INTERNAL void lm__zip_close(lm_zip *z);
/* The index of the member called name, or -1. */
LM_INTERNAL int lm__zip_find(const lm_zip *z, const char *name);
/* A member's bytes, stored or deflated, CRC-checked: *data is malloc'd (one byte more than
 * *len, a NUL, so text members read as strings). Members above max_size bytes are refused
 * before anything is allocated. Errors name the file and the member. */
LM_INTERNAL lm_status lm__zip_read(const lm_zip *z, int index, uint64_t max_size, uint8_t **data, size_t *len);

/* ---- Writing a zip of stored members, as numpy.savez and Keras do ----
 * Without zip64: each member and the whole archive stay under 4 GiB. */
typedef struct lm_zip_writer {
  FILE *f;          /* where the archive goes (an lm_wfile's f) */
  const char *path; /* for messages */
  uint8_t *central;
  size_t clen, ccap;
  uint64_t offset;
  int n;
  lm_status err;
} lm_zip_writer;

LM_INTERNAL void lm__zip_writer_init(lm_zip_writer *w, FILE *f, const char *path);
/* Adds a member made of n_parts byte ranges written one after another (a .npy header and
 * its data, say). Date 1980-01-01 00:00, Unix mode 0644, the UTF-8 flag for non-ASCII names. */
LM_INTERNAL lm_status lm__zip_add(lm_zip_writer *w, const char *name, const void *const *parts, const size_t *lens,
                                  int n_parts);
/* Writes the central directory and the end record, and frees the writer's memory. With
 * st != LM_OK (a failure on the caller's side) it only frees. */
LM_INTERNAL lm_status lm__zip_finish(lm_zip_writer *w, lm_status st);

#endif
