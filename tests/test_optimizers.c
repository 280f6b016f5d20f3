/* Optimizers: defaults, names, and the first two steps of each against values worked out
 * in plain Python with Keras 3's update rules (w0 = [1, -2], g1 = [0.5, 1], g2 = [-0.25, 2],
 * iterations incremented between the steps as the training loop does). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>

#include "train/optimizer.h"

#define assert_near(a, b, tol)                                                              \
  do {                                                                                      \
    double a_ = (a), b_ = (b);                                                              \
    if (!(fabs(a_ - b_) <= (tol))) {                                                        \
      print_error("%s = %.17g, expected %.17g (tol %g)\n", #a, a_, b_, (double)(tol));     \
      fail();                                                                               \
    }                                                                                       \
  } while (0)

/* Runs two steps and compares w after each with want[step][i]. */
static void two_steps(lm_optimizer *opt, int slots_expected, const double want[2][2]) {
  assert_non_null(opt);
  assert_int_equal(lm__optimizer_n_slots(opt), slots_expected);
  float w[2] = {1, -2}, s0[2] = {42, 42}, s1[2] = {42, 42}; /* garbage: init must fill */
  float *slots[2] = {s0, s1};
  const float g[2][2] = {{0.5f, 1}, {-0.25f, 2}};
  lm__optimizer_init_slots(opt, slots, 2);
  for (int step = 0; step < 2; step++) {
    lm__optimizer_update(opt, w, g[step], slots, 2);
    opt->iterations++;
    for (int i = 0; i < 2; i++) assert_near(w[i], want[step][i], 2e-6);
  }
  lm_optimizer_free(opt);
}

static void test_sgd(void **state) {
  (void)state;
  /* w -= lr g */
  two_steps(lm_sgd(.learning_rate = 0.1), 0, (const double[2][2]){{0.95, -2.1}, {0.975, -2.3}});
  /* default lr 0.01 */
  two_steps(lm_sgd(.momentum = 0), 0, (const double[2][2]){{0.995, -2.01}, {0.9975, -2.03}});
  /* m = 0.9 m - lr g; w += m */
  two_steps(lm_sgd(.learning_rate = 0.1, .momentum = 0.9), 1,
            (const double[2][2]){{0.95, -2.1}, {0.93, -2.39}});
  /* nesterov: w += 0.9 m - lr g */
  two_steps(lm_sgd(.learning_rate = 0.1, .momentum = 0.9, .nesterov = true), 1,
            (const double[2][2]){{0.905, -2.19}, {0.912, -2.651}});
}

static void test_rmsprop(void **state) {
  (void)state;
  /* v = rho v + (1-rho) g^2; w -= lr g / sqrt(v + eps); defaults 1e-3, 0.9, 1e-7 */
  two_steps(lm_rmsprop(.learning_rate = 0), 1,
            (const double[2][2]){{0.9968377286643679, -2.003162276079031},
                                 {0.9983121456617157, -2.0060194186446285}});
  two_steps(lm_rmsprop(.learning_rate = 0.01, .rho = 0.5), 1,
            (const double[2][2]){{0.9858578700331199, -2.014142134209518},
                                 {0.9940228314877522, -2.0274754672465547}});
}

static void test_adam(void **state) {
  (void)state;
  /* alpha = lr sqrt(1-b2^t)/(1-b1^t); m += (g-m)(1-b1); v += (g^2-v)(1-b2);
   * w -= alpha m / (sqrt(v) + eps) */
  two_steps(lm_adam(.epsilon = 0), 2,
            (const double[2][2]){{0.9990000063245154, -2.0009999968377326},
                                 {0.9987336707920792, -2.0019651774984464}});
  two_steps(lm_adam(.learning_rate = 0.1, .beta_1 = 0.5, .beta_2 = 0.75), 2,
            (const double[2][2]){{0.900000039999984, -2.099999980000004},
                                 {0.900000039999984, -2.201162800494481}});
}

static void test_adamw(void **state) {
  (void)state;
  /* w -= w wd lr, then Adam; default wd 0.004 */
  two_steps(lm_adamw(.learning_rate = 0), 2,
            (const double[2][2]){{0.9989960063245154, -2.0009919968377323},
                                 {0.9987256748080539, -2.0019491735304586}});
  two_steps(lm_adamw(.learning_rate = 0.1, .weight_decay = 0.5), 2,
            (const double[2][2]){{0.850000632451532, -1.999999683773234},
                                 {0.7808670475853452, -1.9965177656559392}});
  /* Keras 3's Adam takes weight_decay too, applied the same way. */
  two_steps(lm_adam(.learning_rate = 0.1, .weight_decay = 0.5), 2,
            (const double[2][2]){{0.850000632451532, -1.999999683773234},
                                 {0.7808670475853452, -1.9965177656559392}});
}

static void test_adagrad(void **state) {
  (void)state;
  /* acc starts at 0.1; acc += g^2; w -= lr g / sqrt(acc + eps) */
  two_steps(lm_adagrad(.learning_rate = 0), 1,
            (const double[2][2]){{0.9991548458660078, -2.0009534625459064},
                                 {0.9995440952909068, -2.001839077422764}});
  two_steps(lm_adagrad(.learning_rate = 0.1, .initial_accumulator_value = 0.5), 1,
            (const double[2][2]){{0.9422649769300389, -2.0816496553711175},
                                 {0.9699999850345307, -2.1669299411380862}});
}

static void test_defaults_and_names(void **state) {
  (void)state;
  struct {
    const char *name, *cls;
    double lr;
  } cases[] = {{"sgd", "SGD", 0.01},        {"rmsprop", "RMSprop", 1e-3},
               {"adam", "Adam", 1e-3},      {"adamw", "AdamW", 1e-3},
               {"adagrad", "Adagrad", 1e-3}, {"Adam", "Adam", 1e-3},
               {"RMSprop", "RMSprop", 1e-3}};
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    lm_optimizer *opt = lm_optimizer_from_name(cases[i].name);
    assert_non_null(opt);
    assert_string_equal(lm__optimizer_name(opt), cases[i].cls);
    assert_near(opt->learning_rate, cases[i].lr, 0);
    assert_int_equal(opt->iterations, 0);
    lm_optimizer_free(opt);
  }
  lm_optimizer *o = lm_optimizer_from_name("rmsprop");
  assert_near(o->rho, 0.9, 0);
  assert_near(o->epsilon, 1e-7, 0);
  lm_optimizer_free(o);
  o = lm_optimizer_from_name("adamw");
  assert_near(o->beta_1, 0.9, 0);
  assert_near(o->beta_2, 0.999, 0);
  assert_near(o->epsilon, 1e-7, 0);
  assert_near(o->weight_decay, 0.004, 0);
  lm_optimizer_free(o);
  o = lm_optimizer_from_name("adam");
  assert_near(o->weight_decay, 0, 0);
  lm_optimizer_free(o);
  o = lm_optimizer_from_name("adagrad");
  assert_near(o->initial_accumulator_value, 0.1, 0);
  assert_near(o->epsilon, 1e-7, 0);
  lm_optimizer_free(o);
  o = lm_optimizer_from_name("sgd");
  assert_near(o->momentum, 0, 0);
  assert_false(o->nesterov);
  lm_optimizer_free(o);
  lm_optimizer_free(NULL);
}

static void test_errors(void **state) {
  (void)state;
  assert_null(lm_optimizer_from_name("adamax_plus"));
  assert_non_null(strstr(lm_last_error(), "'adamax_plus'"));
  assert_null(lm_optimizer_from_name(NULL));
  assert_null(lm_sgd(.learning_rate = -1));
  assert_null(lm_sgd(.learning_rate = NAN));
  assert_null(lm_sgd(.momentum = 1.5));
  assert_null(lm_rmsprop(.rho = -0.1));
  assert_null(lm_adam(.beta_1 = 2));
  assert_null(lm_adamw(.weight_decay = -1));
  assert_null(lm_adagrad(.epsilon = -1e-7));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_sgd),     cmocka_unit_test(test_rmsprop),
      cmocka_unit_test(test_adam),    cmocka_unit_test(test_adamw),
      cmocka_unit_test(test_adagrad), cmocka_unit_test(test_defaults_and_names),
      cmocka_unit_test(test_errors),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
