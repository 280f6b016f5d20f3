/* The machine's sgemm peak, the bound for GEMM-heavy models: the best of several
 * 2048 x 2048 x 2048 products through oneDNN's sgemm (lamina's GEMM), with the threads
 * given. Prints one JSON line.
 *
 *   sgemm_peak [--threads 2] */
#include <dnnl.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
  int threads = 2;
  const long n = 2048;
  for (int i = 1; i + 1 < argc; i += 2)
    if (!strcmp(argv[i], "--threads")) threads = atoi(argv[i + 1]);
  omp_set_num_threads(threads);
  float *a = malloc(sizeof(float) * n * n), *b = malloc(sizeof(float) * n * n), *c = malloc(sizeof(float) * n * n);
  if (!a || !b || !c) return 1;
  for (long i = 0; i < n * n; i++) a[i] = b[i] = (float)(i % 13) * 0.01f;
  double best = 1e30;
  for (int rep = 0; rep < 8; rep++) {
    double t = now_s();
    if (dnnl_sgemm('N', 'N', n, n, n, 1.0f, a, n, b, n, 0.0f, c, n) != dnnl_success) return 1;
    t = now_s() - t;
    if (t < best) best = t;
  }
  printf("{\"threads\": %d, \"n\": %ld, \"gflops\": %.1f}\n", threads, n, 2.0 * n * n * n / best * 1e-9);
  free(a);
  free(b);
  free(c);
  return 0;
}
