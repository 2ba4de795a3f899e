/* fuzz_safetensors.c - fuzz target for the safetensors reader and the
 * safetensors data-set reader.
 *
 * With libFuzzer:  clang -fsanitize=fuzzer,address -DD2_LIBFUZZER ...
 * Standalone (the Makefile's gcc build): run the target once per file named
 * on the command line ("-" for stdin), e.g. to replay a corpus or a crash:
 *   build/tests/fuzz/fuzz_safetensors crash-1234 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data.h"
#include "safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    st_file f;
    d2_error e = {0};
    if (st_parse(&f, data, size, &e) == 0) {
        /* Touch every accepted tensor through the converters. */
        for (int i = 0; i < f.count; i++) {
            const st_tensor *t = &f.tensors[i];
            if (t->numel == 0 || t->numel > ((size_t)1 << 24))
                continue;
            float *x = malloc(t->numel * sizeof *x);
            int32_t *y = malloc(t->numel * sizeof *y);
            if (x && y) {
                (void)st_to_f32(t, x, &e);
                (void)st_to_i32(t, y, &e);
            }
            free(x);
            free(y);
        }
        for (int i = 0; i < f.nmeta; i++)
            if (st_meta(&f, f.meta_keys[i]) != f.meta_values[i])
                abort(); /* first match is the entry itself (keys are unique) */
        st_free(&f);
    } else if (e.msg[0] == '\0') {
        abort(); /* every refusal must say why */
    }
    dataset d;
    if (data_parse_safetensors(&d, data, size, &e) == 0) {
        if (d.n <= 0 || d.dim <= 0 || d.classes <= 0)
            abort();
        dataset_free(&d);
    }
    return 0;
}

#include "fuzz_main.h"
