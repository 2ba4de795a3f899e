/* fuzz_api_job.c - fuzz target for the daemon's request parsing: a body as it
 * arrives (api_parse_body: size, UTF-8, duplicate keys) into a job request and
 * a retrieve request, with the default limits. Every refusal must name a status
 * and a code; every acceptance must hold a data set that passes validation.
 *
 * With libFuzzer:  clang -fsanitize=fuzzer,address -DD2_LIBFUZZER ...
 * Standalone: build/tests/fuzz/fuzz_api_job FILE... */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    api_limits lim = api_limits_default();
    api_error e;
    memset(&e, 0, sizeof e);
    json_t *root = NULL;
    if (api_parse_body(data, size, &root, &e) != 0) {
        if (e.status < 400 || !e.code[0])
            abort(); /* a refusal says what and why */
        return 0;
    }
    api_job_request jr;
    api_job_request_init(&jr);
    memset(&e, 0, sizeof e);
    if (api_job_request_parse(root, &lim, &jr, &e) == 0) {
        if (jr.has_dataset && (jr.data.n <= 0 || jr.data.dim <= 0 || jr.data.classes <= 0))
            abort();
        if (!jr.has_dataset && !jr.dataset_id[0])
            abort();
    } else if (e.status < 400 || !e.code[0]) {
        abort();
    }
    api_job_request_free(&jr);
    api_retrieve_request rr;
    api_retrieve_request_init(&rr);
    memset(&e, 0, sizeof e);
    if (api_retrieve_request_parse(root, &lim, &rr, &e) != 0 && (e.status < 400 || !e.code[0]))
        abort();
    api_retrieve_request_free(&rr);
    json_decref(root);
    return 0;
}

#include "fuzz_main.h"
