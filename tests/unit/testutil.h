/* testutil.h - small helpers shared by the cmocka test programs. */
#ifndef D2_TESTUTIL_H
#define D2_TESTUTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

/* A fresh temporary directory for one test program (removed by the caller with
 * tu_rmrf if wanted). */
static inline char *tu_tmpdir(const char *tag)
{
    char tmpl[256];
    const char *base = getenv("TMPDIR");
    snprintf(tmpl, sizeof tmpl, "%s/d2nwg-%s-XXXXXX", base && *base ? base : "/tmp", tag);
    char *dir = mkdtemp(tmpl);
    assert_non_null(dir);
    return strdup(dir);
}

static inline void tu_rmrf(const char *path)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", path);
    int rc = system(cmd);
    (void)rc;
}

static inline void tu_write_bytes(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

/* Path of a built binary: $D2NWG_BUILD/name (default build/name). */
static inline void tu_build_path(char *out, size_t n, const char *name)
{
    const char *b = getenv("D2NWG_BUILD");
    snprintf(out, n, "%s/%s", b && *b ? b : "build", name);
}

/* A shared generator of tests/fixture.sh (built on first use): "quick" or
 * "anyway"; its bundle path, and its zoo's directory; build gets the build
 * directory. Returns 0, or -1 with a message on stderr. */
static inline int tu_fixture(const char *name, char *build, size_t nb, char *gen, size_t ng,
                             char *zoo, size_t nz)
{
    tu_build_path(build, nb, "");
    size_t bl = strlen(build);
    if (bl && build[bl - 1] == '/')
        build[bl - 1] = '\0';
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "sh tests/fixture.sh '%s' %s", build, name);
    FILE *p = popen(cmd, "r");
    int ok = p && fgets(gen, (int)ng, p);
    if (!p || pclose(p) != 0 || !ok) {
        fprintf(stderr, "tests/fixture.sh %s %s failed\n", build, name);
        return -1;
    }
    gen[strcspn(gen, "\n")] = '\0';
    snprintf(zoo, nz, "%s/fixtures/%s/zoo", build, name);
    return 0;
}

static inline int tu_quick_fixture(char *build, size_t nb, char *gen, size_t ng, char *zoo,
                                   size_t nz)
{
    return tu_fixture("quick", build, nb, gen, ng, zoo, nz);
}

/* Run a shell command with stderr joined to stdout; the output (at most n - 1
 * bytes, NUL-terminated) in out; its exit status (128 when it did not exit). */
static inline int tu_capture(char *out, size_t n, const char *cmd)
{
    char full[8400];
    snprintf(full, sizeof full, "%s 2>&1", cmd);
    FILE *p = popen(full, "r");
    assert_non_null(p);
    size_t len = fread(out, 1, n - 1, p);
    out[len] = '\0';
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

#define TU_ASSERT_NEAR(a, b, tol)                                                          \
    do {                                                                                   \
        double _a = (a), _b = (b), _t = (tol);                                             \
        if (!(_a - _b <= _t && _b - _a <= _t))                                             \
            fail_msg("%s = %.9g, expected %.9g (tolerance %.3g)", #a, _a, _b, _t);         \
    } while (0)

#endif
