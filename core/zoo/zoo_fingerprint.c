/* zoo_fingerprint.c - sha256 over a zoo's canonical content: every manifest
 * field that describes what was trained and how, then the feature map and the
 * weights, little-endian. Same zoo -> same fingerprint, whatever the JSON
 * formatting or shard layout. A shard of a build (zoo build --shard) hashes
 * which shard it is, then its own entries and weights. */
#include <string.h>

#include "sha256.h"
#include "zoo_internal.h"

static void put_u32(sha256_ctx *c, uint32_t v) { sha256_update(c, &v, 4); }
static void put_u64(sha256_ctx *c, uint64_t v) { sha256_update(c, &v, 8); }
static void put_f32(sha256_ctx *c, float v) { sha256_update(c, &v, 4); }

static void put_str(sha256_ctx *c, const char *s)
{
    size_t n = s ? strlen(s) : 0;
    put_u32(c, (uint32_t)n);
    if (n)
        sha256_update(c, s, n);
}

void zoo_fingerprint(const zoo *z, char hex[65])
{
    sha256_ctx c;
    sha256_init(&c);
    sha256_update(&c, "d2nwg-zoo-v1", 12);
    if (z->part.count > 0) { /* a shard: which one (a whole zoo hashes as before) */
        sha256_update(&c, "shard", 5);
        put_u32(&c, (uint32_t)z->part.index);
        put_u32(&c, (uint32_t)z->part.count);
        put_u32(&c, (uint32_t)z->part.first);
        put_u32(&c, (uint32_t)z->part.tasks);
    }
    put_str(&c, z->source);
    put_str(&c, z->spec.text);
    put_u32(&c, (uint32_t)z->way);
    if (z->min_way > 0 && z->min_way < z->way) // absent from fixed-way zoos' fingerprints
        put_u32(&c, (uint32_t)z->min_way);
    put_u32(&c, (uint32_t)z->per_class);
    put_u64(&c, z->seed);
    put_u32(&c, (uint32_t)z->train.epochs);
    put_u32(&c, (uint32_t)z->train.batch);
    put_f32(&c, z->train.lr);
    put_f32(&c, z->train.weight_decay);
    put_u32(&c, (uint32_t)z->train.min_steps);
    put_str(&c, z->train_fp);
    put_str(&c, z->test_fp);
    if (zoo_heldout_way(z) != z->way) // absent from the fingerprints of other zoos
        put_u32(&c, (uint32_t)z->heldout_way);
    put_u32(&c, (uint32_t)z->n_heldout);
    for (int i = 0; i < z->n_heldout; i++)
        for (int j = 0; j < zoo_heldout_way(z); j++)
            put_u32(&c, (uint32_t)z->heldout[i][j]);
    put_u32(&c, (uint32_t)z->n);
    for (int i = 0; i < z->n; i++) {
        const zoo_entry *e = &z->e[i];
        put_u32(&c, (uint32_t)e->way);
        for (int j = 0; j < e->way; j++)
            put_u32(&c, (uint32_t)e->classes[j]);
        put_u64(&c, e->seed);
        put_str(&c, e->data_fp);
        put_f32(&c, e->train_acc);
        put_f32(&c, e->query_acc);
        put_f32(&c, e->query_loss);
        put_str(&c, e->data_path);
    }
    put_u32(&c, (uint32_t)z->fmap.in_dim);
    put_u32(&c, (uint32_t)z->fmap.out_dim);
    put_u32(&c, z->fmap.W ? 1u : 0u);
    if (feature_map_cnn_sha256(&z->fmap)) /* a backbone: its file's sha256 */
        put_str(&c, feature_map_cnn_sha256(&z->fmap));
    if (z->fmap.W) {
        sha256_update(&c, z->fmap.W, sizeof(float) * (size_t)z->fmap.out_dim * z->fmap.in_dim);
        sha256_update(&c, z->fmap.mean, sizeof(float) * (size_t)z->fmap.in_dim);
    }
    put_u32(&c, (uint32_t)z->P);
    if (z->n > 0 && z->theta)
        sha256_update(&c, z->theta, sizeof(float) * (size_t)z->n * (size_t)z->P);
    unsigned char d[32];
    sha256_final(&c, d);
    sha256_to_hex(d, hex);
}
