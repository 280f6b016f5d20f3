/* Internal: a restricted unpickler for the one thing lamina reads from pickles: a numpy
 * object array of lists of Python ints, as np.save(allow_pickle=True) writes it inside
 * Keras's imdb.npz / reuters.npz members.
 *
 * It accepts only the opcodes such a stream holds under protocols 2 to 5 (Python 2's
 * numpy and Python 3's alike):
 *   PROTO FRAME STOP                                framing
 *   GLOBAL STACK_GLOBAL                             only numpy.ndarray, numpy.dtype and
 *                                                   numpy{.core,._core}.multiarray._reconstruct
 *   SHORT_BINUNICODE BINUNICODE SHORT_BINSTRING     strings (module and class names, the
 *   BINSTRING SHORT_BINBYTES BINBYTES               'b' typecode, the 'O8' dtype, '|')
 *   BININT BININT1 BININT2 LONG1 NONE NEWTRUE NEWFALSE
 *   MARK EMPTY_TUPLE TUPLE TUPLE1 TUPLE2 TUPLE3 EMPTY_LIST APPEND APPENDS
 *   BINPUT LONG_BINPUT MEMOIZE BINGET LONG_BINGET   the memo (indices in order, as pickle
 *                                                   writes them)
 *   REDUCE                                          only _reconstruct(ndarray, (0,), b'b')
 *                                                   and dtype('O8', False, True)
 *   BUILD                                           only on that ndarray and that dtype
 * Anything else (another global, a REDUCE of anything else, protocol 0/1 text opcodes,
 * persistent ids, extensions, out-of-band buffers) is refused, with the opcode and its
 * byte offset in the message. Memory stays proportional to the stream (no opcode can
 * claim more than the bytes behind it), the stack and MARK nesting are bounded, and
 * nothing recurses. Memo sharing (one list object at several positions, as BINGET
 * allows) is honoured. */
#ifndef LAMINA_IO_PICKLE_H
#define LAMINA_IO_PICKLE_H

#include "core/core.h"

/* The unpickled array: n sequences, sequence i being values[offsets[i] .. offsets[i+1]). */
typedef struct lm__int_lists {
  int64_t n;
  int64_t *offsets; /* n + 1 */
  int32_t *values;
} lm__int_lists;

/* Unpickles buf[0..len) (the bytes after an object .npy member's header); `what` names the
 * stream in messages ("imdb.npz (member x_train.npy)"). The result must be a 1-D numpy
 * object array whose every element is a list of ints that fit in int32. On success fills
 * *out (free with lm__int_lists_free); on failure returns LM_ERROR_IO (LM_ERROR_MEMORY)
 * with lm_last_error() naming `what`, the opcode and the problem. */
LM_INTERNAL lm_status lm__unpickle_int_lists(const uint8_t *buf, size_t len, const char *what, lm__int_lists *out);
LM_INTERNAL void lm__int_lists_free(lm__int_lists *lists);

#endif
