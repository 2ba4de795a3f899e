/* test_diffusion.c - schedule values, sampler timesteps, and the DDIM/DDPM
 * step coefficients against the closed forms. */
#include "testutil.h"

#include <math.h>

#include "diffusion.h"

static void test_schedule_values(void **state)
{
    (void)state;
    diffusion_schedule s;
    d2_error err;
    assert_int_equal(diffusion_schedule_init(&s, 1000, 1e-4f, 2e-2f, &err), 0);
    TU_ASSERT_NEAR(s.alpha_bar[0], 1.0 - 1e-4, 1e-9);
    double ab = 1.0;
    for (int t = 0; t < 1000; t++)
        ab *= 1.0 - ((double)1e-4f + ((double)2e-2f - (double)1e-4f) * t / 999.0);
    TU_ASSERT_NEAR(s.alpha_bar[999], ab, 1e-12);
    assert_true(s.alpha_bar[999] < 1e-4); // almost pure noise at the end
    for (int t = 1; t < 1000; t++)
        assert_true(s.alpha_bar[t] < s.alpha_bar[t - 1]);
    assert_int_equal(diffusion_schedule_init(&s, 1, 1e-4f, 2e-2f, &err), D2_ERANGE);
    assert_int_equal(diffusion_schedule_init(&s, 100, 0.0f, 2e-2f, &err), D2_ERANGE);
    assert_int_equal(diffusion_schedule_init(&s, 100, 0.1f, 0.01f, &err), D2_ERANGE);
}

static void test_timesteps(void **state)
{
    (void)state;
    diffusion_schedule s;
    d2_error err;
    assert_int_equal(diffusion_schedule_init(&s, 1000, 1e-4f, 2e-2f, &err), 0);
    int tau[50];
    assert_int_equal(diffusion_timesteps(&s, 50, tau, &err), 0);
    assert_int_equal(tau[0], 999);
    assert_int_equal(tau[49], 0);
    for (int i = 1; i < 50; i++) {
        assert_true(tau[i] < tau[i - 1]);
        assert_true(tau[i - 1] - tau[i] >= 20 && tau[i - 1] - tau[i] <= 21);
    }
    int one[1];
    assert_int_equal(diffusion_timesteps(&s, 1, one, &err), 0);
    assert_int_equal(one[0], 999);
    assert_int_equal(diffusion_timesteps(&s, 0, one, &err), D2_ERANGE);
    assert_int_equal(diffusion_timesteps(&s, 1001, one, &err), D2_ERANGE);
}

static void test_ddim_recovers_forward_process(void **state)
{
    (void)state;
    // with the true noise, a deterministic DDIM step lands exactly on the
    // forward-process point for the same z0 and eps at the earlier timestep
    diffusion_schedule s;
    d2_error err;
    assert_int_equal(diffusion_schedule_init(&s, 1000, 1e-4f, 2e-2f, &err), 0);
    const double z0 = 0.7, eps = -1.3;
    const int pairs[4][2] = {{999, 979}, {500, 300}, {20, 0}, {0, -1}};
    for (int k = 0; k < 4; k++) {
        int t = pairs[k][0], tp = pairs[k][1];
        double zt = sqrt(s.alpha_bar[t]) * z0 + sqrt(1 - s.alpha_bar[t]) * eps;
        ddim_coef c = diffusion_ddim_coef(&s, t, tp, 0.0f);
        assert_true(c.sigma == 0.0f);
        double next = c.a * zt + c.b * eps;
        double want = tp >= 0 ? sqrt(s.alpha_bar[tp]) * z0 + sqrt(1 - s.alpha_bar[tp]) * eps : z0;
        TU_ASSERT_NEAR(next, want, 1e-5);
    }
}

static void test_ddpm_coefficients(void **state)
{
    (void)state;
    // eta = 1 on consecutive steps is the DDPM posterior: sigma^2 = beta_tilde
    diffusion_schedule s;
    d2_error err;
    assert_int_equal(diffusion_schedule_init(&s, 1000, 1e-4f, 2e-2f, &err), 0);
    int t = 400, tp = 399;
    ddim_coef c = diffusion_ddim_coef(&s, t, tp, 1.0f);
    double ab_t = s.alpha_bar[t], ab_p = s.alpha_bar[tp];
    double beta = 1.0 - ab_t / ab_p;
    double beta_tilde = (1.0 - ab_p) / (1.0 - ab_t) * beta;
    TU_ASSERT_NEAR((double)c.sigma * c.sigma, beta_tilde, 1e-7);
    // mean of DDPM: (z - beta / sqrt(1 - ab_t) eps) / sqrt(alpha_t)
    double alpha = 1.0 - beta;
    TU_ASSERT_NEAR(c.a, 1.0 / sqrt(alpha), 1e-5);
    TU_ASSERT_NEAR(c.b, -beta / sqrt(1.0 - ab_t) / sqrt(alpha), 1e-5);
    // the last step adds no noise
    ddim_coef last = diffusion_ddim_coef(&s, 0, -1, 1.0f);
    assert_true(last.sigma == 0.0f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_schedule_values),
        cmocka_unit_test(test_timesteps),
        cmocka_unit_test(test_ddim_recovers_forward_process),
        cmocka_unit_test(test_ddpm_coefficients),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
