/* tu_readme.h - the README's code blocks, for the tests that run them. */
#ifndef D2_TU_README_H
#define D2_TU_README_H

#include "fileio.h"
#include "testutil.h"

/* The first ```python block of README.md that contains every string of
 * `must` (NULL-terminated) and not `must_not` (may be NULL); malloc'd. Fails
 * the test, naming `what`, when there is none. */
static inline char *tu_readme_python_block(const char *const *must, const char *must_not,
                                           const char *what)
{
    unsigned char *text;
    size_t len;
    d2_error e = {0};
    if (d2_read_file("README.md", &text, &len, 1 << 22, &e))
        fail_msg("README.md: %s", e.msg);
    char *s = (char *)text, *found = NULL;
    for (char *p = strstr(s, "```python\n"); p && !found; p = strstr(p + 1, "```python\n")) {
        char *body = p + strlen("```python\n"), *end = strstr(body, "\n```");
        if (!end)
            break;
        *end = '\0';
        int ok = !must_not || !strstr(body, must_not);
        for (int i = 0; ok && must[i]; i++)
            ok = strstr(body, must[i]) != NULL;
        if (ok)
            found = strdup(body);
        *end = '\n';
    }
    free(text);
    if (!found)
        fail_msg("README.md has no ```python block %s", what);
    return found;
}

#endif
