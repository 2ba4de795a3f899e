/* lm_loss.c - masked softmax cross-entropy over next bytes, on the host (lm.h): the
 * log-sum-exp of each row in double. */
#include <math.h>
#include <string.h>

#include "lm.h"

double lm_loss_host(const float *logits, const int32_t *labels, int R, float *dlogits,
                    float gscale, int *count)
{
    const int C = LM_VOCAB_OUT;
    int n = 0;
    for (int r = 0; r < R; r++)
        n += labels[r] >= 0;
    *count = n;
    double nats = 0.0;
    const double g = n ? (double)gscale / n : 0.0;
    for (int r = 0; r < R; r++) {
        const float *z = logits + (size_t)r * C;
        float *d = dlogits ? dlogits + (size_t)r * C : NULL;
        if (labels[r] < 0) {
            if (d)
                memset(d, 0, (size_t)C * sizeof *d);
            continue;
        }
        double mx = z[0], s = 0.0;
        for (int c = 1; c < C; c++)
            mx = z[c] > mx ? z[c] : mx;
        for (int c = 0; c < C; c++)
            s += exp((double)z[c] - mx);
        const double lse = mx + log(s);
        nats += lse - z[labels[r]];
        if (d) {
            for (int c = 0; c < C; c++)
                d[c] = (float)(g * exp((double)z[c] - lse));
            d[labels[r]] -= (float)g;
        }
    }
    return nats;
}
