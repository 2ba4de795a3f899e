/* gens.c - loading and finding generators. */
#include "gens.h"

#include <string.h>

#include "api.h"

/* T of the bundle's diffusion schedule: the most sampler steps it takes. */
static int config_max_steps(const char *config_json)
{
    json_t *c = config_json ? json_loads(config_json, 0, NULL) : NULL;
    json_t *t = json_object_get(json_object_get(c, "diffusion"), "T");
    int T = json_is_integer(t) ? (int)json_integer_value(t) : 0;
    json_decref(c);
    return T > 0 ? T : 0;
}

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
        e->max_steps = config_max_steps(e->info->config_json);
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
