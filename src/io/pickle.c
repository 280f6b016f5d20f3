/* A restricted unpickler: numpy object arrays of int lists, and nothing else (see pickle.h
 * for the accepted opcodes). It interprets the pickle machine over typed values; the
 * "objects" it can build are the few a numpy object array needs, and every opcode checks
 * the types it pops, so a hostile stream meets an error, never an out-of-bounds access. */
#include "io/pickle.h"

#define STACK_MAX 65536 /* a real stream peaks near 1000 (pickle's APPENDS batch) */
#define MARK_MAX 64     /* MARK nesting; a real stream reaches 3 */
#define TUPLE_MAX 16    /* the largest tuple numpy writes has 9 items */
#define NAME_MAX_LEN 256

/* ---- Values and objects ---- */
enum { V_NONE, V_INT, V_BOOL, V_STR, V_BYTES, V_OBJ };
typedef struct value {
  uint8_t kind;
  uint32_t len;       /* V_STR, V_BYTES: length of s */
  int64_t i;          /* V_INT, V_BOOL; V_OBJ: the object's index */
  const uint8_t *s;   /* V_STR, V_BYTES: bytes inside the stream */
} value;

enum { G_RECONSTRUCT, G_NDARRAY, G_DTYPE };
enum { O_GLOBAL, O_TUPLE, O_LIST, O_NDARRAY, O_DTYPE };
enum { L_EMPTY, L_INTS, L_LISTS };
typedef struct object {
  uint8_t kind;
  uint8_t mode;       /* O_LIST: L_EMPTY, L_INTS or L_LISTS */
  uint8_t built;      /* O_NDARRAY, O_DTYPE: BUILD has run */
  int which;          /* O_GLOBAL */
  int64_t n, cap;     /* O_LIST: items; O_TUPLE: items (first at `at`); O_NDARRAY: shape[0] */
  int64_t at;         /* O_TUPLE: index into the tuple pool; O_NDARRAY: its data list */
  int32_t *data;      /* O_LIST: ints, or object indices of lists */
} object;

typedef struct machine {
  const uint8_t *buf;
  size_t len, pos, op_pos;
  uint8_t op;
  const char *what;
  value *stack;
  int64_t sp, stack_cap;
  int64_t marks[MARK_MAX];
  int n_marks;
  value *memo;
  int64_t n_memo, memo_cap;
  object *objs;
  int64_t n_objs, objs_cap;
  value *pool; /* tuple items */
  int64_t n_pool, pool_cap;
  lm_status err;
} machine;

static const char *op_name(uint8_t op) {
  switch (op) {
  case 0x80: return "PROTO";
  case 0x95: return "FRAME";
  case '.': return "STOP";
  case 'c': return "GLOBAL";
  case 0x93: return "STACK_GLOBAL";
  case 0x8c: return "SHORT_BINUNICODE";
  case 'X': return "BINUNICODE";
  case 0x8d: return "BINUNICODE8";
  case 'U': return "SHORT_BINSTRING";
  case 'T': return "BINSTRING";
  case 'C': return "SHORT_BINBYTES";
  case 'B': return "BINBYTES";
  case 0x8e: return "BINBYTES8";
  case 'J': return "BININT";
  case 'K': return "BININT1";
  case 'M': return "BININT2";
  case 0x8a: return "LONG1";
  case 0x8b: return "LONG4";
  case 'N': return "NONE";
  case 0x88: return "NEWTRUE";
  case 0x89: return "NEWFALSE";
  case '(': return "MARK";
  case ')': return "EMPTY_TUPLE";
  case 't': return "TUPLE";
  case 0x85: return "TUPLE1";
  case 0x86: return "TUPLE2";
  case 0x87: return "TUPLE3";
  case ']': return "EMPTY_LIST";
  case 'a': return "APPEND";
  case 'e': return "APPENDS";
  case 'q': return "BINPUT";
  case 'r': return "LONG_BINPUT";
  case 0x94: return "MEMOIZE";
  case 'h': return "BINGET";
  case 'j': return "LONG_BINGET";
  case 'R': return "REDUCE";
  case 'b': return "BUILD";
  /* Refused, named for the message. */
  case 'I': return "INT";
  case 'L': return "LONG";
  case 'F': return "FLOAT";
  case 'G': return "BINFLOAT";
  case 'S': return "STRING";
  case 'V': return "UNICODE";
  case 'l': return "LIST";
  case '}': return "EMPTY_DICT";
  case 'd': return "DICT";
  case 's': return "SETITEM";
  case 'u': return "SETITEMS";
  case 0x8f: return "EMPTY_SET";
  case 0x90: return "ADDITEMS";
  case 0x91: return "FROZENSET";
  case 'i': return "INST";
  case 'o': return "OBJ";
  case 0x81: return "NEWOBJ";
  case 0x92: return "NEWOBJ_EX";
  case 'P': return "PERSID";
  case 'Q': return "BINPERSID";
  case 0x82: return "EXT1";
  case 0x83: return "EXT2";
  case 0x84: return "EXT4";
  case '0': return "POP";
  case '1': return "POP_MARK";
  case '2': return "DUP";
  case 'g': return "GET";
  case 'p': return "PUT";
  case 0x96: return "BYTEARRAY8";
  case 0x97: return "NEXT_BUFFER";
  case 0x98: return "READONLY_BUFFER";
  }
  return "unknown opcode";
}

static int failf(machine *m, lm_status code, const char *fmt, ...) LM_PRINTF(3, 4);
static int failf(machine *m, lm_status code, const char *fmt, ...) {
  if (m->err) return -1;
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  m->err = lm__fail(NULL, code, "%s: pickle opcode 0x%02x (%s) at byte %zu: %s", m->what, m->op, op_name(m->op), m->op_pos,
                    msg);
  return -1;
}
#define FAIL(...) failf(m, LM_ERROR_IO, __VA_ARGS__)

/* Grows *items (of *cap elements of size elem) to hold need, doubling. */
static int grow(machine *m, void *items, int64_t *cap, int64_t need, size_t elem) {
  if (need <= *cap) return 0;
  int64_t ncap = *cap ? *cap : 16;
  while (ncap < need) ncap *= 2;
  void *p = realloc(*(void **)items, (size_t)ncap * elem);
  if (!p) return failf(m, LM_ERROR_MEMORY, "out of memory (%lld items)", (long long)ncap);
  *(void **)items = p;
  *cap = ncap;
  return 0;
}

static const uint8_t *need(machine *m, size_t k) {
  if (m->len - m->pos < k) {
    FAIL("truncated: it needs %zu more bytes, %zu are left", k, m->len - m->pos);
    return NULL;
  }
  const uint8_t *p = m->buf + m->pos;
  m->pos += k;
  return p;
}

static uint64_t le(const uint8_t *p, int n) {
  uint64_t v = 0;
  for (int i = 0; i < n; i++) v |= (uint64_t)p[i] << (8 * i);
  return v;
}

static int push(machine *m, value v) {
  if (m->sp >= STACK_MAX) return FAIL("the stack holds more than %d items", STACK_MAX);
  if (grow(m, &m->stack, &m->stack_cap, m->sp + 1, sizeof *m->stack)) return -1;
  m->stack[m->sp++] = v;
  return 0;
}

/* The bottom of the current MARK frame: items above it may be popped. */
static int64_t floor_sp(const machine *m) { return m->n_marks ? m->marks[m->n_marks - 1] : 0; }

static int pop(machine *m, value *v) {
  if (m->sp <= floor_sp(m)) return FAIL("the stack is empty%s", m->n_marks ? " above the MARK" : "");
  *v = m->stack[--m->sp];
  return 0;
}

static int top(machine *m, value **v) {
  if (m->sp <= floor_sp(m)) return FAIL("the stack is empty%s", m->n_marks ? " above the MARK" : "");
  *v = &m->stack[m->sp - 1];
  return 0;
}

/* Pops the MARK frame: its items are stack[*from .. sp). */
static int pop_mark(machine *m, int64_t *from) {
  if (!m->n_marks) return FAIL("no MARK to pop to");
  *from = m->marks[--m->n_marks];
  return 0;
}

static int64_t new_object(machine *m, uint8_t kind) {
  if (grow(m, &m->objs, &m->objs_cap, m->n_objs + 1, sizeof *m->objs)) return -1;
  object *o = &m->objs[m->n_objs];
  memset(o, 0, sizeof *o);
  o->kind = kind;
  return m->n_objs++;
}

static value obj_value(int64_t id) { return (value){.kind = V_OBJ, .i = id}; }

static object *as_obj(machine *m, const value *v, uint8_t kind) {
  return v->kind == V_OBJ && m->objs[v->i].kind == kind ? &m->objs[v->i] : NULL;
}

static bool str_is(const value *v, const char *s) {
  size_t n = strlen(s);
  return (v->kind == V_STR || v->kind == V_BYTES) && v->len == n && !memcmp(v->s, s, n);
}

static const char *kind_name(machine *m, const value *v) {
  static const char *const names[] = {"None", "an int", "a bool", "a str", "bytes", "?"};
  static const char *const objs[] = {"a global", "a tuple", "a list", "an ndarray", "a dtype"};
  return v->kind == V_OBJ ? objs[m->objs[v->i].kind] : names[v->kind];
}

static int make_tuple(machine *m, int64_t from) {
  int64_t n = m->sp - from;
  if (n > TUPLE_MAX) return FAIL("a tuple of %lld items (at most %d are expected)", (long long)n, TUPLE_MAX);
  /* Never NULL, even for empty tuples: their items pointer is pool + at. */
  if (grow(m, &m->pool, &m->pool_cap, m->n_pool + (n ? n : 1), sizeof *m->pool)) return -1;
  int64_t id = new_object(m, O_TUPLE);
  if (id < 0) return -1;
  m->objs[id].at = m->n_pool;
  m->objs[id].n = n;
  if (n) memcpy(m->pool + m->n_pool, m->stack + from, (size_t)n * sizeof *m->pool);
  m->n_pool += n;
  m->sp = from;
  return push(m, obj_value(id));
}

static int resolve_global(machine *m, const char *module, size_t mlen, const char *name, size_t nlen) {
  static const struct {
    const char *module, *name;
    int which;
  } allowed[] = {{"numpy", "ndarray", G_NDARRAY},
                 {"numpy", "dtype", G_DTYPE},
                 {"numpy.core.multiarray", "_reconstruct", G_RECONSTRUCT},
                 {"numpy._core.multiarray", "_reconstruct", G_RECONSTRUCT}};
  for (size_t k = 0; k < sizeof allowed / sizeof *allowed; k++) {
    if (strlen(allowed[k].module) == mlen && !memcmp(allowed[k].module, module, mlen) && strlen(allowed[k].name) == nlen &&
        !memcmp(allowed[k].name, name, nlen)) {
      int64_t id = new_object(m, O_GLOBAL);
      if (id < 0) return -1;
      m->objs[id].which = allowed[k].which;
      return push(m, obj_value(id));
    }
  }
  char shown[2 * NAME_MAX_LEN + 2];
  size_t at = 0;
  for (size_t i = 0; i < mlen + 1 + nlen && at + 1 < sizeof shown; i++) {
    char ch = i < mlen ? module[i] : i == mlen ? '.' : name[i - mlen - 1];
    shown[at++] = ch >= 0x20 && ch < 0x7f ? ch : '?';
  }
  shown[at] = 0;
  return FAIL("refusing the global %s: only numpy's ndarray, dtype and _reconstruct may appear", shown);
}

/* GLOBAL's two text lines, "module\nname\n". */
static int read_line(machine *m, const char **s, size_t *n) {
  const uint8_t *start = m->buf + m->pos;
  size_t left = m->len - m->pos, max = left < NAME_MAX_LEN ? left : NAME_MAX_LEN;
  const uint8_t *nl = memchr(start, '\n', max);
  if (!nl) return FAIL("a GLOBAL name without an end of line within %d bytes", NAME_MAX_LEN);
  *s = (const char *)start;
  *n = (size_t)(nl - start);
  m->pos += *n + 1;
  return 0;
}

static int append_item(machine *m, object *list, const value *item) {
  int mode;
  int64_t v;
  if (item->kind == V_INT) {
    if (item->i < INT32_MIN || item->i > INT32_MAX) return FAIL("the int %lld does not fit in int32", (long long)item->i);
    mode = L_INTS, v = item->i;
  } else if (as_obj(m, item, O_LIST)) {
    if (item->i > INT32_MAX) return FAIL("too many objects");
    mode = L_LISTS, v = item->i;
  } else {
    return FAIL("a list may hold ints or lists, not %s", kind_name(m, item));
  }
  if (list->mode != L_EMPTY && list->mode != mode) return FAIL("a list mixes ints and lists");
  list->mode = (uint8_t)mode;
  if (grow(m, &list->data, &list->cap, list->n + 1, sizeof *list->data)) return -1;
  list->data[list->n++] = (int32_t)v;
  return 0;
}

/* _reconstruct(ndarray, (0,), b'b') and dtype('O8', False, True), numpy's two REDUCEs. */
static int reduce(machine *m) {
  value args = {0}, fn = {0};
  if (pop(m, &args) || pop(m, &fn)) return -1;
  object *g = as_obj(m, &fn, O_GLOBAL), *t = as_obj(m, &args, O_TUPLE);
  if (!g) return FAIL("refusing to call %s", kind_name(m, &fn));
  if (!t) return FAIL("the arguments are %s, not a tuple", kind_name(m, &args));
  const value *a = m->pool + t->at;
  if (g->which == G_RECONSTRUCT) {
    object *shape = t->n == 3 ? as_obj(m, &a[1], O_TUPLE) : NULL;
    object *cls = t->n == 3 ? as_obj(m, &a[0], O_GLOBAL) : NULL;
    if (!cls || cls->which != G_NDARRAY || !shape || shape->n != 1 || m->pool[shape->at].kind != V_INT || !str_is(&a[2], "b"))
      return FAIL("_reconstruct is called with arguments other than numpy's (ndarray, (0,), b'b')");
    int64_t id = new_object(m, O_NDARRAY);
    return id < 0 ? -1 : push(m, obj_value(id));
  }
  if (g->which == G_DTYPE) {
    if (t->n != 3 || !(str_is(&a[0], "O8") || str_is(&a[0], "O4") || str_is(&a[0], "O")) ||
        (a[1].kind != V_BOOL && a[1].kind != V_INT) || (a[2].kind != V_BOOL && a[2].kind != V_INT))
      return FAIL("only the object dtype ('O8', False, True) may be made");
    int64_t id = new_object(m, O_DTYPE);
    return id < 0 ? -1 : push(m, obj_value(id));
  }
  return FAIL("refusing to call numpy.ndarray directly");
}

/* BUILD: the dtype's state (kept as is: an object dtype has nothing we need) and the
 * ndarray's (version, shape, dtype, fortran_order, items). */
static int build(machine *m) {
  value state = {0}, *target = NULL;
  if (pop(m, &state) || top(m, &target)) return -1;
  object *t = as_obj(m, &state, O_TUPLE);
  if (!t) return FAIL("the state is %s, not a tuple", kind_name(m, &state));
  const value *s = m->pool + t->at;
  object *o;
  if ((o = as_obj(m, target, O_DTYPE))) {
    if (o->built) return FAIL("the dtype is built twice");
    if (t->n < 2 || !str_is(&s[1], "|")) return FAIL("the dtype's state is not an object dtype's");
    o->built = 1;
    return 0;
  }
  if (!(o = as_obj(m, target, O_NDARRAY))) return FAIL("refusing to BUILD %s", kind_name(m, target));
  if (o->built) return FAIL("the ndarray is built twice");
  if (t->n != 5) return FAIL("the ndarray's state has %lld items, numpy writes 5", (long long)t->n);
  object *shape = as_obj(m, &s[1], O_TUPLE), *dtype = as_obj(m, &s[2], O_DTYPE), *items = as_obj(m, &s[4], O_LIST);
  if (s[0].kind != V_INT || s[0].i != 1) return FAIL("the ndarray's state version is not 1");
  if (!shape || shape->n != 1 || m->pool[shape->at].kind != V_INT || m->pool[shape->at].i < 0)
    return FAIL("the ndarray is not one-dimensional");
  if (!dtype || !dtype->built) return FAIL("the ndarray's dtype is not numpy's object dtype");
  if (s[3].kind != V_BOOL && s[3].kind != V_INT) return FAIL("the ndarray's fortran flag is not a bool");
  if (!items) return FAIL("the ndarray's items are %s, not a list", kind_name(m, &s[4]));
  o->n = m->pool[shape->at].i;
  o->at = s[4].i;
  o->built = 1;
  return 0;
}

static int push_str(machine *m, uint8_t kind, size_t n) {
  if (n > UINT32_MAX) return FAIL("a string of %zu bytes", n);
  const uint8_t *p = need(m, n);
  return p ? push(m, (value){.kind = kind, .s = p, .len = (uint32_t)n}) : -1;
}

static int memo_put(machine *m, uint64_t idx) {
  value *v = NULL;
  if (top(m, &v)) return -1;
  /* pickle numbers its memo 0, 1, 2, ...; anything else is not a stream numpy wrote */
  if (idx > (uint64_t)m->n_memo) return FAIL("memo index %llu skips ahead of %lld", (unsigned long long)idx, (long long)m->n_memo);
  if ((int64_t)idx == m->n_memo) {
    if (grow(m, &m->memo, &m->memo_cap, m->n_memo + 1, sizeof *m->memo)) return -1;
    m->n_memo++;
  }
  m->memo[idx] = *v;
  return 0;
}

static int memo_get(machine *m, uint64_t idx) {
  if (idx >= (uint64_t)m->n_memo) return FAIL("memo index %llu was never stored", (unsigned long long)idx);
  return push(m, m->memo[idx]);
}

/* Runs one opcode; 1 at STOP with *result set. */
static int step(machine *m, value *result) {
  m->op_pos = m->pos;
  const uint8_t *p = need(m, 1);
  if (!p) {
    m->op = 0;
    return -1;
  }
  m->op = *p;
  value a = {0}, b = {0};
  int64_t from = 0;
  switch (m->op) {
  case 0x80: /* PROTO */
    if (!(p = need(m, 1))) return -1;
    if (m->op_pos != 0) return FAIL("PROTO in the middle of the stream");
    if (*p < 2 || *p > 5) return FAIL("protocol %d (2 to 5 are accepted)", *p);
    return 0;
  case 0x95: /* FRAME: a buffering hint; its length must stay within the stream */
    if (!(p = need(m, 8))) return -1;
    if (le(p, 8) > m->len - m->pos) return FAIL("a frame of %llu bytes runs past the end", (unsigned long long)le(p, 8));
    return 0;
  case '.': /* STOP */
    if (m->n_marks) return FAIL("STOP with a MARK still open");
    if (pop(m, result)) return -1;
    return 1;
  case 'c': { /* GLOBAL */
    const char *mod = NULL, *name = NULL;
    size_t ml = 0, nl = 0;
    if (read_line(m, &mod, &ml) || read_line(m, &name, &nl)) return -1;
    return resolve_global(m, mod, ml, name, nl);
  }
  case 0x93: /* STACK_GLOBAL */
    if (pop(m, &b) || pop(m, &a)) return -1;
    if (a.kind != V_STR || b.kind != V_STR) return FAIL("module and name are not strings");
    return resolve_global(m, (const char *)a.s, a.len, (const char *)b.s, b.len);
  case 0x8c: /* SHORT_BINUNICODE */
  case 'U':  /* SHORT_BINSTRING (Python 2's str) */
  case 'C':  /* SHORT_BINBYTES */
    if (!(p = need(m, 1))) return -1;
    return push_str(m, m->op == 'C' ? V_BYTES : V_STR, *p);
  case 'X': /* BINUNICODE */
  case 'T': /* BINSTRING */
  case 'B': /* BINBYTES */
    if (!(p = need(m, 4))) return -1;
    if (m->op == 'T' && le(p, 4) > INT32_MAX) return FAIL("a negative string length");
    return push_str(m, m->op == 'B' ? V_BYTES : V_STR, (size_t)le(p, 4));
  case 'J': /* BININT: signed 32 bits */
    if (!(p = need(m, 4))) return -1;
    {
      int64_t v = (int64_t)le(p, 4);
      return push(m, (value){.kind = V_INT, .i = v >= INT64_C(0x80000000) ? v - INT64_C(0x100000000) : v});
    }
  case 'K': /* BININT1 */
    if (!(p = need(m, 1))) return -1;
    return push(m, (value){.kind = V_INT, .i = *p});
  case 'M': /* BININT2 */
    if (!(p = need(m, 2))) return -1;
    return push(m, (value){.kind = V_INT, .i = (int64_t)le(p, 2)});
  case 0x8a: { /* LONG1: n bytes, little-endian two's complement */
    if (!(p = need(m, 1))) return -1;
    int n = *p;
    if (n > 8) return FAIL("an int of %d bytes does not fit in 64 bits", n);
    if (!(p = need(m, (size_t)n))) return -1;
    uint64_t v = le(p, n);
    if (n && n < 8 && (p[n - 1] & 0x80)) v |= ~(uint64_t)0 << (8 * n); /* sign-extend */
    int64_t sv = v > INT64_MAX ? -(int64_t)(~v) - 1 : (int64_t)v;
    return push(m, (value){.kind = V_INT, .i = sv});
  }
  case 'N': return push(m, (value){.kind = V_NONE});
  case 0x88: return push(m, (value){.kind = V_BOOL, .i = 1});
  case 0x89: return push(m, (value){.kind = V_BOOL, .i = 0});
  case '(': /* MARK */
    if (m->n_marks == MARK_MAX) return FAIL("MARKs nest deeper than %d", MARK_MAX);
    m->marks[m->n_marks++] = m->sp;
    return 0;
  case ')': return make_tuple(m, m->sp);
  case 't': return pop_mark(m, &from) ? -1 : make_tuple(m, from);
  case 0x85:
  case 0x86:
  case 0x87: {
    int64_t n = m->op - 0x84;
    if (m->sp - floor_sp(m) < n) return FAIL("TUPLE%lld needs %lld items on the stack", (long long)n, (long long)n);
    return make_tuple(m, m->sp - n);
  }
  case ']': {
    int64_t id = new_object(m, O_LIST);
    return id < 0 ? -1 : push(m, obj_value(id));
  }
  case 'a': { /* APPEND */
    value *lv = NULL;
    object *list;
    if (pop(m, &a) || top(m, &lv)) return -1;
    if (!(list = as_obj(m, lv, O_LIST))) return FAIL("APPEND to %s", kind_name(m, lv));
    return append_item(m, list, &a);
  }
  case 'e': { /* APPENDS */
    if (pop_mark(m, &from)) return -1;
    if (from <= floor_sp(m)) return FAIL("APPENDS with no list below its MARK");
    value *lv = &m->stack[from - 1];
    object *list = as_obj(m, lv, O_LIST);
    if (!list) return FAIL("APPENDS to %s", kind_name(m, lv));
    for (int64_t k = from; k < m->sp; k++)
      if (append_item(m, list, &m->stack[k])) return -1;
    m->sp = from;
    return 0;
  }
  case 'q':
    if (!(p = need(m, 1))) return -1;
    return memo_put(m, *p);
  case 'r':
    if (!(p = need(m, 4))) return -1;
    return memo_put(m, le(p, 4));
  case 0x94: return memo_put(m, (uint64_t)m->n_memo);
  case 'h':
    if (!(p = need(m, 1))) return -1;
    return memo_get(m, *p);
  case 'j':
    if (!(p = need(m, 4))) return -1;
    return memo_get(m, le(p, 4));
  case 'R': return reduce(m);
  case 'b': return build(m);
  default:
    return FAIL("this opcode is not part of a numpy object array of int lists");
  }
}

static void machine_free(machine *m) {
  for (int64_t k = 0; k < m->n_objs; k++)
    if (m->objs[k].kind == O_LIST) free(m->objs[k].data);
  free(m->objs);
  free(m->stack);
  free(m->memo);
  free(m->pool);
}

void lm__int_lists_free(lm__int_lists *lists) {
  if (!lists) return;
  free(lists->offsets);
  free(lists->values);
  memset(lists, 0, sizeof *lists);
}

lm_status lm__unpickle_int_lists(const uint8_t *buf, size_t len, const char *what, lm__int_lists *out) {
  memset(out, 0, sizeof *out);
  machine mm = {.buf = buf, .len = len, .what = what}, *m = &mm;
  value result = {0};
  int rc = 0;
  if (len < 2 || buf[0] != 0x80) {
    m->op = len ? buf[0] : 0;
    FAIL("the stream does not start with PROTO (protocols 2 to 5 are accepted)");
  } else {
    while ((rc = step(m, &result)) == 0) {}
  }
  if (rc == 1) {
    object *arr = as_obj(m, &result, O_NDARRAY);
    if (!arr || !arr->built) {
      FAIL("the pickle holds %s, not a numpy object array", arr ? "an unbuilt ndarray" : kind_name(m, &result));
    } else if (m->pos != m->len) {
      FAIL("%zu bytes follow STOP", m->len - m->pos);
    } else {
      object *items = &m->objs[arr->at];
      if (items->n != arr->n) {
        FAIL("the array's shape says %lld items but it holds %lld", (long long)arr->n, (long long)items->n);
      } else if (items->mode == L_INTS) {
        FAIL("the array's items are ints, not lists of ints");
      } else {
        int64_t total = 0;
        for (int64_t k = 0; k < items->n; k++) {
          object *seq = &m->objs[items->data[k]];
          if (seq->mode == L_LISTS) {
            FAIL("item %lld of the array is a list of lists, not of ints", (long long)k);
            break;
          }
          total += seq->n;
        }
        out->offsets = m->err ? NULL : malloc((size_t)(items->n + 1) * sizeof *out->offsets);
        out->values = m->err ? NULL : malloc((size_t)(total ? total : 1) * sizeof *out->values);
        if (!m->err && (!out->offsets || !out->values)) failf(m, LM_ERROR_MEMORY, "out of memory (%lld ints)", (long long)total);
        if (!m->err) {
          out->n = items->n;
          out->offsets[0] = 0;
          for (int64_t k = 0; k < items->n; k++) {
            object *seq = &m->objs[items->data[k]];
            if (seq->n) memcpy(out->values + out->offsets[k], seq->data, (size_t)seq->n * sizeof *out->values);
            out->offsets[k + 1] = out->offsets[k] + seq->n;
          }
        }
      }
    }
  }
  machine_free(m);
  if (m->err) {
    lm__int_lists_free(out);
    return m->err;
  }
  return LM_OK;
}
