/* Internal: how many threads lamina's loops use (see threads.c for the rule that keeps
 * results independent of it). Kernels write
 *   #pragma omp parallel for num_threads(lm__num_threads()) if (work > LM_PARALLEL_MIN)
 * over pieces of work fixed by the shapes. */
#ifndef LAMINA_THREADS_H
#define LAMINA_THREADS_H

#include "core/core.h"

/* Below about this many floats touched, a parallel region costs more than it saves. */
#define LM_PARALLEL_MIN ((int64_t)1 << 15)

LM_INTERNAL int lm__num_threads(void);

#endif
