/* Whole-file reads, atomic writes, and zip archives (see zip.h). */
#include "io/zip.h"
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

/* Inflated members grow their buffer with the output, so a small file cannot make us
 * allocate what its directory claims. */
#define ZIP_MAX_INFLATE_CHUNK ((size_t)1 << 20)

enum { ZIP_LOCAL = 0x04034b50, ZIP_CENTRAL = 0x02014b50, ZIP_END = 0x06054b50, ZIP64_END = 0x06064b50, ZIP64_LOCATOR = 0x07064b50 };

static uint16_t le16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t le32(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24; }
static uint64_t le64(const uint8_t *p) { return (uint64_t)le32(p) | (uint64_t)le32(p + 4) << 32; }
static void put16(uint8_t *p, uint32_t v) { p[0] = (uint8_t)v, p[1] = (uint8_t)(v >> 8); }
static void put32(uint8_t *p, uint32_t v) { put16(p, v), put16(p + 2, v >> 16); }

/* ---- Files ---- */

lm_status lm__read_file(const char *path, uint8_t **data, size_t *len) {
  *data = NULL;
  *len = 0;
  int fd = open(path, O_RDONLY);
  if (fd < 0) return lm__fail(NULL, LM_ERROR_IO, "%s: cannot open: %s", path, strerror(errno));
  struct stat st;
  size_t cap = fstat(fd, &st) == 0 && S_ISREG(st.st_mode) ? (size_t)st.st_size + 1 : 65536;
  uint8_t *buf = malloc(cap);
  if (!buf) {
    close(fd);
    return lm__fail(NULL, LM_ERROR_MEMORY, "%s: out of memory reading %zu bytes", path, cap);
  }
  size_t n = 0;
  for (;;) {
    if (n == cap) { /* a pipe, or a file that grew: double */
      uint8_t *p = realloc(buf, cap * 2);
      if (!p) {
        free(buf);
        close(fd);
        return lm__fail(NULL, LM_ERROR_MEMORY, "%s: out of memory reading %zu bytes", path, cap * 2);
      }
      buf = p;
      cap *= 2;
    }
    ssize_t got = read(fd, buf + n, cap - n);
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) {
      lm_status s = lm__fail(NULL, LM_ERROR_IO, "%s: read error: %s", path, strerror(errno));
      free(buf);
      close(fd);
      return s;
    }
    if (got == 0) break;
    n += (size_t)got;
  }
  close(fd);
  *data = buf;
  *len = n;
  return LM_OK;
}

lm_status lm__wfile_open(lm_wfile *w, const char *path) {
  size_t n = strlen(path) + 16;
  w->f = NULL;
  w->tmp = lm__calloc(n, 1);
  if (!w->tmp) return LM_ERROR_MEMORY;
  snprintf(w->tmp, n, "%s.tmp.XXXXXX", path);
  int fd = mkstemp(w->tmp);
  if (fd >= 0) w->f = fdopen(fd, "wb");
  if (!w->f) {
    lm_status s = lm__fail(NULL, LM_ERROR_IO, "%s: cannot create: %s", path, strerror(errno));
    if (fd >= 0) {
      close(fd);
      unlink(w->tmp);
    }
    free(w->tmp);
    w->tmp = NULL;
    return s;
  }
  return LM_OK;
}

/* After the rename, the directory entry itself must reach the disk. */
static void sync_dir(const char *path) {
  char *dir = lm__strdup(path);
  if (!dir) return;
  char *slash = strrchr(dir, '/');
  if (slash == dir) slash[1] = 0;
  else if (slash) *slash = 0;
  else strcpy(dir, ".");
  int fd = open(dir, O_RDONLY | O_DIRECTORY);
  if (fd >= 0) {
    fsync(fd);
    close(fd);
  }
  free(dir);
}

lm_status lm__wfile_commit(lm_wfile *w, const char *path, lm_status st) {
  if (!w->f) return st;
  if (st == LM_OK && (fflush(w->f) != 0 || ferror(w->f)))
    st = lm__fail(NULL, LM_ERROR_IO, "%s: write error: %s", path, strerror(errno));
  if (st == LM_OK && fsync(fileno(w->f)) != 0)
    st = lm__fail(NULL, LM_ERROR_IO, "%s: cannot flush to disk: %s", path, strerror(errno));
  if (fclose(w->f) != 0 && st == LM_OK) st = lm__fail(NULL, LM_ERROR_IO, "%s: write error: %s", path, strerror(errno));
  w->f = NULL;
  if (st == LM_OK) {
    mode_t mask = umask(0); /* mkstemp makes the file private; ours is an ordinary file */
    umask(mask);
    chmod(w->tmp, 0666 & ~mask);
    if (rename(w->tmp, path) != 0)
      st = lm__fail(NULL, LM_ERROR_IO, "%s: cannot rename %s into place: %s", path, w->tmp, strerror(errno));
    else sync_dir(path);
  }
  if (st != LM_OK) unlink(w->tmp);
  free(w->tmp);
  w->tmp = NULL;
  return st;
}

lm_status lm__write_file(const char *path, const void *data, size_t len) {
  lm_wfile w;
  lm_status st = lm__wfile_open(&w, path);
  if (st) return st;
  if (len && fwrite(data, 1, len, w.f) != len) st = lm__fail(NULL, LM_ERROR_IO, "%s: write error: %s", path, strerror(errno));
  return lm__wfile_commit(&w, path, st);
}

/* ---- Reading ---- */

/* The zip64 extended information extra field: the 64-bit values of the fields that are
 * 0xFFFFFFFF in the fixed header, in this order. */
static bool zip64_extra(const uint8_t *extra, size_t n, uint64_t *usize, uint64_t *csize, uint64_t *offset) {
  while (n >= 4) {
    uint16_t tag = le16(extra), sz = le16(extra + 2);
    if ((size_t)sz > n - 4) return false;
    if (tag == 1) {
      const uint8_t *p = extra + 4;
      size_t left = sz;
      uint64_t *fields[3] = {usize, csize, offset};
      for (int i = 0; i < 3; i++) {
        if (*fields[i] != 0xFFFFFFFFu) continue;
        if (left < 8) return false;
        *fields[i] = le64(p);
        p += 8, left -= 8;
      }
      return true;
    }
    extra += 4 + sz;
    n -= 4 + sz;
  }
  return true;
}

void lm__zip_close(lm_zip *z) {
  for (int i = 0; z->m && i < z->n; i++) free(z->m[i].name);
  free(z->m);
  z->m = NULL;
  z->n = 0;
}

lm_status lm__zip_open(lm_zip *z, const uint8_t *buf, size_t len, const char *path) {
  memset(z, 0, sizeof *z);
  z->buf = buf, z->len = len, z->path = path;
  /* The end record: the last signature whose comment reaches exactly to the end. */
  size_t end = (size_t)-1;
  for (size_t i = len >= 22 ? len - 22 : 0; len >= 22; i--) {
    if (le32(buf + i) == ZIP_END && i + 22 + le16(buf + i + 20) == len) {
      end = i;
      break;
    }
    if (i == 0 || len - i > 22 + 65535) break;
  }
  if (end == (size_t)-1) return lm__fail(NULL, LM_ERROR_IO, "%s: not a zip file: no end of central directory record", path);
  uint64_t entries = le16(buf + end + 10), cd_size = le32(buf + end + 12), cd_off = le32(buf + end + 16);
  if (entries == 0xFFFF || cd_size == 0xFFFFFFFFu || cd_off == 0xFFFFFFFFu) {
    if (end < 20 || le32(buf + end - 20) != ZIP64_LOCATOR)
      return lm__fail(NULL, LM_ERROR_IO, "%s: corrupt zip: zip64 sizes without a zip64 locator", path);
    uint64_t e64 = le64(buf + end - 20 + 8);
    if (e64 > len || len - e64 < 56 || le32(buf + e64) != ZIP64_END)
      return lm__fail(NULL, LM_ERROR_IO, "%s: corrupt zip: bad zip64 end of central directory", path);
    entries = le64(buf + e64 + 32);
    cd_size = le64(buf + e64 + 40);
    cd_off = le64(buf + e64 + 48);
  }
  if (cd_off > len || cd_size > len - cd_off)
    return lm__fail(NULL, LM_ERROR_IO, "%s: corrupt zip: the central directory lies outside the file", path);
  /* Each entry takes at least 46 bytes: a count beyond that is a lie, refused before allocating. */
  if (entries > cd_size / 46)
    return lm__fail(NULL, LM_ERROR_IO, "%s: corrupt zip: %llu entries cannot fit a central directory of %llu bytes", path,
                    (unsigned long long)entries, (unsigned long long)cd_size);
  if (entries && !(z->m = lm__calloc((size_t)entries, sizeof *z->m))) return LM_ERROR_MEMORY;
  size_t at = (size_t)cd_off, cd_end = (size_t)(cd_off + cd_size);
  for (uint64_t e = 0; e < entries; e++) {
    lm_status st = LM_OK;
    if (cd_end - at < 46 || le32(buf + at) != ZIP_CENTRAL)
      st = lm__fail(NULL, LM_ERROR_IO, "%s: corrupt zip: central directory entry %llu is malformed", path, (unsigned long long)e);
    const uint8_t *h = buf + at;
    size_t nlen = st ? 0 : le16(h + 28), xlen = st ? 0 : le16(h + 30), clen = st ? 0 : le16(h + 32);
    if (!st && cd_end - at - 46 < nlen + xlen + clen)
      st = lm__fail(NULL, LM_ERROR_IO, "%s: corrupt zip: central directory entry %llu runs past the directory", path,
                    (unsigned long long)e);
    if (!st && (nlen >= 1024 || memchr(h + 46, 0, nlen)))
      st = lm__fail(NULL, LM_ERROR_IO, "%s: member name %llu is too long or holds a NUL", path, (unsigned long long)e);
    if (st) {
      lm__zip_close(z);
      return st;
    }
    lm_zip_member *m = &z->m[z->n];
    if (!(m->name = lm__calloc(nlen + 1, 1))) {
      lm__zip_close(z);
      return LM_ERROR_MEMORY;
    }
    z->n++;
    memcpy(m->name, h + 46, nlen);
    m->flags = le16(h + 8), m->method = le16(h + 10), m->crc = le32(h + 16);
    m->csize = le32(h + 20), m->usize = le32(h + 24), m->offset = le32(h + 42);
    if (!zip64_extra(h + 46 + nlen, xlen, &m->usize, &m->csize, &m->offset)) {
      lm__fail(NULL, LM_ERROR_IO, "%s: member %s: corrupt zip64 extra field", path, m->name);
      lm__zip_close(z);
      return LM_ERROR_IO;
    }
    at += 46 + nlen + xlen + clen;
  }
  return LM_OK;
}

int lm__zip_find(const lm_zip *z, const char *name) {
  for (int i = 0; i < z->n; i++)
    if (!strcmp(z->m[i].name, name)) return i;
  return -1;
}

/* Inflates raw deflate data into exactly `size` bytes, growing the buffer with the output. */
static uint8_t *inflate_member(const uint8_t *src, size_t srclen, size_t size, const char *what) {
  size_t cap = size < ZIP_MAX_INFLATE_CHUNK ? size + 1 : ZIP_MAX_INFLATE_CHUNK;
  uint8_t *out = malloc(cap);
  if (!out) {
    lm__fail(NULL, LM_ERROR_MEMORY, "%s: out of memory inflating", what);
    return NULL;
  }
  z_stream zs = {0};
  if (inflateInit2(&zs, -MAX_WBITS) != Z_OK) {
    free(out);
    lm__fail(NULL, LM_ERROR_MEMORY, "%s: cannot start zlib", what);
    return NULL;
  }
  size_t done = 0;
  int rc = Z_OK;
  const uint8_t *in = src;
  size_t left = srclen;
  while (rc == Z_OK) {
    if (done == cap) {
      if (cap > size) break; /* more output than the directory declared */
      size_t ncap = cap * 2 > size + 1 ? size + 1 : cap * 2;
      uint8_t *p = realloc(out, ncap);
      if (!p) {
        inflateEnd(&zs);
        free(out);
        lm__fail(NULL, LM_ERROR_MEMORY, "%s: out of memory inflating %zu bytes", what, ncap);
        return NULL;
      }
      out = p;
      cap = ncap;
    }
    uInt chunk_in = left > UINT_MAX ? UINT_MAX : (uInt)left;
    uInt chunk_out = cap - done > UINT_MAX ? UINT_MAX : (uInt)(cap - done);
    zs.next_in = (Bytef *)(uintptr_t)in;
    zs.avail_in = chunk_in;
    zs.next_out = out + done;
    zs.avail_out = chunk_out;
    rc = inflate(&zs, Z_NO_FLUSH);
    in += chunk_in - zs.avail_in;
    left -= chunk_in - zs.avail_in;
    done += chunk_out - zs.avail_out;
    if (rc == Z_BUF_ERROR && left == 0) break; /* input ran out before the stream ended */
    if (rc == Z_BUF_ERROR) rc = Z_OK;          /* output full: grow and go on */
  }
  inflateEnd(&zs);
  if (rc != Z_STREAM_END || done != size) {
    free(out);
    if (rc == Z_DATA_ERROR) lm__fail(NULL, LM_ERROR_IO, "%s: corrupt deflate data", what);
    else if (done > size || (rc == Z_OK && done == cap))
      lm__fail(NULL, LM_ERROR_IO, "%s: inflates to more than the %zu bytes the directory declares", what, size);
    else
      lm__fail(NULL, LM_ERROR_IO, "%s: truncated deflate data (%zu of %zu bytes)", what, done, size);
    return NULL;
  }
  return out;
}

static uint32_t crc_of(const uint8_t *p, size_t n, uint32_t crc) {
  for (size_t off = 0; off < n;) { /* crc32 takes at most UINT_MAX bytes at a time */
    size_t k = n - off > (1u << 30) ? (1u << 30) : n - off;
    crc = (uint32_t)crc32(crc, p + off, (uInt)k);
    off += k;
  }
  return crc;
}

lm_status lm__zip_read(const lm_zip *z, int index, uint64_t max_size, uint8_t **data, size_t *len) {
  *data = NULL;
  *len = 0;
  const lm_zip_member *m = &z->m[index];
  const uint8_t *buf = z->buf;
  size_t blen = z->len;
  char what[1200];
  snprintf(what, sizeof what, "%s (member %s)", z->path, m->name);
  if (m->flags & 1) return lm__fail(NULL, LM_ERROR_IO, "%s: encrypted members are not supported", what);
  if (m->method != 0 && m->method != 8)
    return lm__fail(NULL, LM_ERROR_IO, "%s: compression method %u is not supported (stored or deflate)", what, m->method);
  if (m->offset > blen || blen - m->offset < 30 || le32(buf + m->offset) != ZIP_LOCAL)
    return lm__fail(NULL, LM_ERROR_IO, "%s: corrupt zip: no local header at offset %llu", what, (unsigned long long)m->offset);
  size_t start = (size_t)m->offset + 30 + le16(buf + m->offset + 26) + le16(buf + m->offset + 28);
  if (start > blen || m->csize > blen - start)
    return lm__fail(NULL, LM_ERROR_IO, "%s: truncated: %llu bytes of data lie past the end of the file", what,
                    (unsigned long long)m->csize);
  if (m->method == 0 && m->csize != m->usize)
    return lm__fail(NULL, LM_ERROR_IO, "%s: corrupt zip: a stored member's sizes differ", what);
  if (m->usize > max_size || m->usize >= SIZE_MAX)
    return lm__fail(NULL, LM_ERROR_IO, "%s: member of %llu bytes is too large", what, (unsigned long long)m->usize);
  uint8_t *out;
  if (m->method == 8) {
    if (!(out = inflate_member(buf + start, (size_t)m->csize, (size_t)m->usize, what))) return LM_ERROR_IO;
    uint8_t *p = realloc(out, (size_t)m->usize + 1); /* room for the NUL */
    if (!p) {
      free(out);
      return lm__fail(NULL, LM_ERROR_MEMORY, "%s: out of memory", what);
    }
    out = p;
  } else {
    if (!(out = malloc((size_t)m->usize + 1))) return lm__fail(NULL, LM_ERROR_MEMORY, "%s: out of memory", what);
    memcpy(out, buf + start, (size_t)m->usize);
  }
  uint32_t got = crc_of(out, (size_t)m->usize, (uint32_t)crc32(0L, Z_NULL, 0));
  if (got != m->crc) {
    free(out);
    return lm__fail(NULL, LM_ERROR_IO, "%s: CRC-32 mismatch (0x%08x in the directory, 0x%08x computed): corrupt data", what,
                    m->crc, got);
  }
  out[m->usize] = 0;
  *data = out;
  *len = (size_t)m->usize;
  return LM_OK;
}

/* ---- Writing ---- */

void lm__zip_writer_init(lm_zip_writer *w, FILE *f, const char *path) {
  memset(w, 0, sizeof *w);
  w->f = f;
  w->path = path;
}

lm_status lm__zip_add(lm_zip_writer *w, const char *name, const void *const *parts, const size_t *lens, int n_parts) {
  if (w->err) return w->err;
  size_t nlen = strlen(name);
  uint64_t size = 0;
  uint32_t crc = (uint32_t)crc32(0L, Z_NULL, 0);
  for (int i = 0; i < n_parts; i++) {
    size += lens[i];
    crc = crc_of(parts[i], lens[i], crc);
  }
  if (nlen == 0 || nlen > 65535)
    return w->err = lm__fail(NULL, LM_ERROR_VALUE, "%s: zip member name \"%s\" is empty or too long", w->path, name);
  if (w->n >= 65535 || w->offset + 30 + nlen + size >= 0xFFFFFFFFu)
    return w->err = lm__fail(NULL, LM_ERROR_VALUE, "%s: the file would pass 4 GiB or 65535 members, which needs zip64", w->path);
  bool utf8 = false;
  for (size_t k = 0; k < nlen; k++) utf8 |= (unsigned char)name[k] >= 0x80;
  /* Local header: version 2.0, no flags but UTF-8 names, stored, 1980-01-01 00:00. */
  uint8_t local[30] = {0};
  put32(local, ZIP_LOCAL);
  put16(local + 4, 20);
  put16(local + 6, utf8 ? 0x800 : 0);
  put16(local + 12, 0x21);
  put32(local + 14, crc);
  put32(local + 18, (uint32_t)size);
  put32(local + 22, (uint32_t)size);
  put16(local + 26, (uint32_t)nlen);
  fwrite(local, 1, 30, w->f);
  fwrite(name, 1, nlen, w->f);
  for (int i = 0; i < n_parts; i++)
    if (lens[i]) fwrite(parts[i], 1, lens[i], w->f);

  if (w->clen + 46 + nlen > w->ccap) {
    size_t ncap = (w->ccap ? w->ccap * 2 : 4096) + 46 + nlen;
    uint8_t *p = lm__realloc(w->central, ncap);
    if (!p) return w->err = LM_ERROR_MEMORY;
    w->central = p;
    w->ccap = ncap;
  }
  uint8_t *c = w->central + w->clen;
  memset(c, 0, 46);
  put32(c, ZIP_CENTRAL);
  put16(c + 4, 20);
  put16(c + 6, 20);
  memcpy(c + 8, local + 6, 22); /* flags .. sizes, as in the local header */
  put16(c + 28, (uint32_t)nlen);
  put32(c + 38, 0644u << 16); /* Unix permissions, for unzip */
  c[5] = 3;                   /* made by Unix */
  put32(c + 42, (uint32_t)w->offset);
  memcpy(c + 46, name, nlen);
  w->clen += 46 + nlen;
  w->offset += 30 + nlen + size;
  w->n++;
  return LM_OK;
}

lm_status lm__zip_finish(lm_zip_writer *w, lm_status st) {
  if (st == LM_OK) st = w->err;
  if (st == LM_OK && w->offset + w->clen >= 0xFFFFFFFFu)
    st = lm__fail(NULL, LM_ERROR_VALUE, "%s: too large for a zip without zip64", w->path);
  if (st == LM_OK) {
    if (w->clen) fwrite(w->central, 1, w->clen, w->f);
    uint8_t endrec[22] = {0};
    put32(endrec, ZIP_END);
    put16(endrec + 8, (uint32_t)w->n);
    put16(endrec + 10, (uint32_t)w->n);
    put32(endrec + 12, (uint32_t)w->clen);
    put32(endrec + 16, (uint32_t)w->offset);
    fwrite(endrec, 1, 22, w->f);
  }
  free(w->central);
  w->central = NULL;
  return st;
}
