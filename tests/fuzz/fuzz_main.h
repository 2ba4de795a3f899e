/* fuzz_main.h - the standalone driver shared by the fuzz targets: without
 * libFuzzer (the Makefile's gcc build, -DD2_LIBFUZZER absent) a target runs
 * LLVMFuzzerTestOneInput once per file named on the command line ("-" for
 * stdin), to replay a corpus or a crash. Include it at the end of a target. */
#ifndef D2_FUZZ_MAIN_H
#define D2_FUZZ_MAIN_H

#ifndef D2_LIBFUZZER
static int fuzz_run_stream(FILE *in, const char *name)
{
    size_t cap = 1 << 16, n = 0;
    unsigned char *buf = malloc(cap);
    if (!buf)
        return 1;
    for (;;) {
        if (n == cap) {
            unsigned char *p = realloc(buf, cap * 2);
            if (!p) {
                free(buf);
                fprintf(stderr, "%s: out of memory\n", name);
                return 1;
            }
            buf = p;
            cap *= 2;
        }
        size_t r = fread(buf + n, 1, cap - n, in);
        if (r == 0)
            break;
        n += r;
    }
    int bad = ferror(in);
    if (!bad)
        LLVMFuzzerTestOneInput(buf, n);
    else
        fprintf(stderr, "%s: read error\n", name);
    free(buf);
    return bad ? 1 : 0;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s FILE... (\"-\" reads stdin)\n", argv[0]);
        return 0;
    }
    int rc = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-") == 0) {
            rc |= fuzz_run_stream(stdin, "<stdin>");
            continue;
        }
        FILE *in = fopen(argv[i], "rb");
        if (!in) {
            fprintf(stderr, "%s: cannot open\n", argv[i]);
            rc = 1;
            continue;
        }
        rc |= fuzz_run_stream(in, argv[i]);
        fclose(in);
        printf("%s: ok\n", argv[i]);
    }
    return rc;
}
#endif

#endif
