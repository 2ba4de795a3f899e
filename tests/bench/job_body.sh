# job_body.sh - sourced by the daemon benchmarks (from the repository root).
# A 5-way 5-shot support set of 128-d embeddings (what a pipeline with its own
# feature extractor sends), as a job body; $1 = seed, $2 = extra fields.
job_body() {
    awk -v seed="$1" -v extra="$2" 'BEGIN {
        s = seed * 7919 + 17
        printf "{\"dataset\":{\"embeddings\":["
        for (r = 0; r < 25; r++) {
            printf "%s[", (r ? "," : "")
            for (j = 0; j < 128; j++) {
                s = (s * 1103515245 + 12345) % 2147483648
                v = (s / 2147483648.0 - 0.5) * 2 + ((j % 5) == (r % 5) ? 1.5 : 0)
                printf "%s%.5f", (j ? "," : ""), v
            }
            printf "]"
        }
        printf "],\"labels\":["
        for (r = 0; r < 25; r++)
            printf "%s%d", (r ? "," : ""), r % 5
        printf "]},\"seed\":%d%s}", seed, extra
    }'
}
