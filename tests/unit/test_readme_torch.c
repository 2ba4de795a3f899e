/* test_readme_torch.c - the README's PyTorch-only block (the one that reads
 * the safetensors header with struct/json and the tensors with
 * torch.frombuffer) run as written with Debian's python3-torch on a head that
 * `d2nwg generate` wrote, then fed a test batch: PyTorch's logits must equal
 * d2nwg's own forward pass (feature map, then head) within 1e-4. Skipped, by
 * name, where /usr/bin/python3 cannot import torch. */
#include "fileio.h"
#include "testutil.h"
#include "tu_readme.h"

#include <limits.h>
#include <math.h>
#include <sys/wait.h>

#include "data.h"
#include "safetensors.h"
#include "target.h"

#define PY "/usr/bin/python3"

typedef struct fx {
    char bin[PATH_MAX + 8], gen[PATH_MAX + 8], zoo[1024], dir[512];
} fx;

static int setup(void **state)
{
    fx *f = calloc(1, sizeof *f);
    char build[480];
    if (!f || tu_quick_fixture(build, sizeof build, f->gen, sizeof f->gen, f->zoo, sizeof f->zoo))
        return -1;
    char rel[600], abs_gen[PATH_MAX], abs_bin[PATH_MAX];
    snprintf(rel, sizeof rel, "%s/d2nwg", build);
    if (!realpath(rel, abs_bin) || !realpath(f->gen, abs_gen))
        return -1;
    /* the commands run in the test's folder: absolute paths */
    snprintf(f->bin, sizeof f->bin, "%s", abs_bin);
    snprintf(f->gen, sizeof f->gen, "%s", abs_gen);
    char *d = tu_tmpdir("readme_torch");
    snprintf(f->dir, sizeof f->dir, "%s", d);
    free(d);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx *f = *state;
    tu_rmrf(f->dir);
    free(f);
    return 0;
}

static int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int sh(const char *fmt, ...)
{
    char cmd[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

/* d2nwg's logits for the rows of batch: the checkpoint's feature map, then its head. */
static float *d2nwg_logits(const char *head, const dataset *batch, int *out_dim)
{
    d2_error e = {0};
    target_spec spec;
    assert_int_equal(target_spec_parse(&spec, "pca:128 | linear 128->5", &e), 0);
    st_file f;
    assert_int_equal(st_load(&f, head, &e), 0);
    float *theta = malloc(sizeof(float) * spec.numel);
    assert_non_null(theta);
    feature_map fm = {0};
    dataset feat = {0};
    assert_int_equal(target_read_theta(&spec, &f, theta, &e), 0);
    assert_int_equal(target_read_feature_map(&spec, &f, &fm, &e), 0);
    assert_int_equal(feature_map_apply(&fm, batch, &feat, &e), 0);
    *out_dim = spec.out_dim;
    float *logits = malloc(sizeof(float) * (size_t)batch->n * (size_t)spec.out_dim);
    assert_non_null(logits);
    assert_int_equal(target_forward(&spec, theta, feat.x, feat.n, logits, &e), 0);
    dataset_free(&feat);
    feature_map_free(&fm);
    st_free(&f);
    free(theta);
    return logits;
}

static void test_torch_logits_match_d2nwg(void **state)
{
    fx *f = *state;
    if (sh(PY " -c 'import torch, numpy' 2>/dev/null") != 0) {
        print_message("skipped test_torch_logits_match_d2nwg: " PY " cannot import torch "
                      "(Debian: apt-get install python3-torch, which `make deps` does)\n");
        skip();
    }
    assert_int_equal(sh("cd %s && %s sample --shots 5 --classes 0,1,7,8,9 --seed 5 --out "
                        "support.csv 2>/dev/null && %s sample --shots 4 --classes 2,3,4,5,6 "
                        "--split train --seed 6 --out batch.csv 2>/dev/null && %s generate "
                        "--generator %s --support support.csv --out head.safetensors --steps 10 "
                        "--quiet", f->dir, f->bin, f->bin, f->bin, f->gen), 0);
    static const char *const need[] = {"torch.frombuffer", NULL};
    char *block = tu_readme_python_block(need, "from safetensors", "with torch.frombuffer");
    const char *tail =
        "\n# test_readme_torch.c: the same model on a test batch\n"
        "import numpy as np\n"
        "rows = np.loadtxt('batch.csv', delimiter=',', skiprows=1, dtype=np.float32)\n"
        "with torch.no_grad():\n"
        "    out = model(torch.from_numpy(rows[:, 1:].copy()))\n"
        "np.savetxt('torch_logits.txt', out.numpy(), fmt='%.9g')\n";
    char path[700];
    snprintf(path, sizeof path, "%s/block.py", f->dir);
    size_t bl = strlen(block), tl = strlen(tail);
    char *script = malloc(bl + tl + 1);
    assert_non_null(script);
    memcpy(script, block, bl);
    memcpy(script + bl, tail, tl + 1);
    tu_write_bytes(path, script, bl + tl);
    free(script);
    free(block);
    assert_int_equal(sh("cd %s && " PY " block.py > block.out 2>&1 || cat block.out", f->dir), 0);

    dataset batch = {0};
    d2_error e = {0};
    snprintf(path, sizeof path, "%s/batch.csv", f->dir);
    assert_int_equal(data_load_support(&batch, path, NULL, &e), 0);
    assert_int_equal(batch.n, 20);
    int way = 0;
    float *want = d2nwg_logits(strcat(strcpy(path, f->dir), "/head.safetensors"), &batch, &way);
    assert_int_equal(way, 5);
    snprintf(path, sizeof path, "%s/torch_logits.txt", f->dir);
    FILE *in = fopen(path, "r");
    assert_non_null(in);
    double worst = 0.0;
    for (int i = 0; i < batch.n * way; i++) {
        double got;
        assert_int_equal(fscanf(in, "%lf", &got), 1);
        double d = fabs(got - want[i]) / (1.0 + fabs(want[i]));
        worst = !(d <= worst) ? d : worst; /* a NaN on either side stays NaN and fails */
    }
    double extra;
    assert_int_equal(fscanf(in, "%lf", &extra), EOF); /* no more values than n x way */
    fclose(in);
    print_message("PyTorch vs d2nwg logits, %d x %d: largest difference %.3g\n", batch.n, way,
                  worst);
    assert_true(worst <= 1e-4);
    free(want);
    dataset_free(&batch);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_torch_logits_match_d2nwg),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
