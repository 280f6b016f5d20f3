#include "core/core.h"
#include <math.h>

static lm_rng global_rng;
static uint64_t global_seed = 1337;
static int global_seeded;

uint64_t lm__mix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

void lm__rng_seed(lm_rng *rng, uint64_t seed) {
  uint64_t x = seed;
  for (int i = 0; i < 4; i++) {
    x = lm__mix64(x);
    rng->s[i] = x;
  }
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

/* xoshiro256** */
uint64_t lm__rng_next(lm_rng *rng) {
  uint64_t *s = rng->s;
  uint64_t result = rotl(s[1] * 5, 7) * 9;
  uint64_t t = s[1] << 17;
  s[2] ^= s[0];
  s[3] ^= s[1];
  s[1] ^= s[2];
  s[0] ^= s[3];
  s[2] ^= t;
  s[3] = rotl(s[3], 45);
  return result;
}

double lm__rng_uniform(lm_rng *rng) { return (double)(lm__rng_next(rng) >> 11) * 0x1.0p-53; }

double lm__rng_normal(lm_rng *rng) {
  double u1 = lm__rng_uniform(rng), u2 = lm__rng_uniform(rng);
  if (u1 < 1e-300) u1 = 1e-300;
  return sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}

lm_rng *lm__global_rng(void) {
  if (!global_seeded) {
    lm__rng_seed(&global_rng, global_seed);
    global_seeded = 1;
  }
  return &global_rng;
}

uint64_t lm__rng_seed_value(void) { return global_seed; }

void lm_set_seed(uint64_t seed) {
  global_seed = seed;
  lm__rng_seed(&global_rng, seed);
  global_seeded = 1;
}
