/* gens.c - loading and finding generators. */
#include "gens.h"

#include <string.h>

#include "api.h"

int gens_load(gens *gs, const config *cfg, d2_error *err)
{
    memset(gs, 0, sizeof *gs);
    if (backend_create(&gs->be, cfg->device, config_backend_threads(cfg), err) != 0)
        return d2_wrap(err, "device %s", cfg->device);
    for (int i = 0; i < cfg->ngenerators; i++) {
        gen_entry *e = &gs->e[i];
        snprintf(e->name, sizeof e->name, "%s", cfg->generators[i].name);
        snprintf(e->path, sizeof e->path, "%s", cfg->generators[i].path);
        if (generator_load(&e->g, e->path, gs->be, err) != 0) {
            d2_wrap(err, "generator %s (%s)", e->name, e->path);
            gens_free(gs);
            return err->code ? err->code : D2_EIO;
        }
        e->info = generator_info(e->g);
        e->loaded_ms = api_now_ms();
        gs->n = i + 1;
    }
    return 0;
}

void gens_free(gens *gs)
{
    for (int i = 0; i < gs->n; i++)
        generator_free(gs->e[i].g);
    gs->n = 0;
    if (gs->be)
        backend_destroy(gs->be);
    gs->be = NULL;
}

int gens_find(const gens *gs, const char *name_or_id)
{
    for (int i = 0; i < gs->n; i++)
        if (!strcmp(gs->e[i].name, name_or_id))
            return i;
    return gens_find_id(gs, name_or_id);
}

int gens_find_id(const gens *gs, const char *id)
{
    for (int i = 0; i < gs->n; i++)
        if (!strcmp(gs->e[i].info->id, id))
            return i;
    return -1;
}
