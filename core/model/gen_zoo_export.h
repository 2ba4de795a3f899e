/* gen_zoo_export.h - a generator's zoo entry as a complete checkpoint file:
 * what model retrieval hands back, in the same form as a generated one. */
#ifndef D2_MODEL_GEN_ZOO_EXPORT_H
#define D2_MODEL_GEN_ZOO_EXPORT_H

#include <stddef.h>

#include "generator.h"

/* Zoo entry `index` of g as safetensors bytes (malloc'd): the frozen feature
 * map as module 0, then the entry's head, PyTorch nn.Sequential names, exactly
 * as generator_checkpoint_bytes lays out a generated candidate. __metadata__
 * says where it came from: d2nwg.source "zoo", the generator id, the zoo
 * fingerprint, d2nwg.zoo_index and d2nwg.classes (the zoo task's classes as a
 * JSON array), the spec and version. Deterministic. D2_ERANGE for an index
 * outside the zoo. */
int generator_zoo_checkpoint_bytes(const generator *g, int index, unsigned char **bytes,
                                   size_t *len, d2_error *err);
/* Number of entries in g's zoo index. */
int generator_zoo_size(const generator *g);

#endif
