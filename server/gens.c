/* gens.c - generator entries: loading, states and finding. */
#include "gens.h"

#include <string.h>

#include "api.h"

void gens_init(gens *gs, const config *cfg)
{
    memset(gs, 0, sizeof *gs);
    for (int i = 0; i < cfg->ngenerators; i++) {
        gen_entry *e = &gs->e[i];
        api_snprintf(e->name, sizeof e->name, "%s", cfg->generators[i].name);
        api_snprintf(e->path, sizeof e->path, "%s", cfg->generators[i].path);
        e->pending = cfg->generators[i].pending;
        e->state = GEN_LOADING;
        api_snprintf(e->message, sizeof e->message, "%s %s",
                     e->pending ? "waiting for the file" : "loading", e->path);
    }
    gs->n = cfg->ngenerators;
}

int gens_load_initial(const gens *gs, const config *cfg, backend_t **be,
                      generator *loaded[CONFIG_MAX_GENERATORS], d2_error *err)
{
    memset(loaded, 0, sizeof(generator *) * CONFIG_MAX_GENERATORS);
    *be = NULL;
    if (backend_create(be, cfg->device, config_backend_threads(cfg), err) != 0)
        return d2_wrap(err, "device %s", cfg->device);
    for (int i = 0; i < gs->n; i++) {
        const gen_entry *e = &gs->e[i];
        if (e->pending)
            continue;
        if (generator_load(&loaded[i], e->path, *be, err) != 0) {
            d2_wrap(err, "generator %s (%s)", e->name, e->path);
            for (int j = 0; j < i; j++)
                generator_free(loaded[j]);
            memset(loaded, 0, sizeof(generator *) * CONFIG_MAX_GENERATORS);
            backend_destroy(*be);
            *be = NULL;
            return err->code ? err->code : D2_EIO;
        }
    }
    return 0;
}

void gens_install(gens *gs, int i, generator *g)
{
    gen_entry *e = &gs->e[i];
    e->g = g;
    e->info = generator_info(g);
    e->loaded_ms = api_now_ms();
    e->message[0] = '\0';
    e->state = GEN_READY;
}

void gens_set_state(gens *gs, int i, int state, const char *message)
{
    gen_entry *e = &gs->e[i];
    e->state = state;
    api_snprintf(e->message, sizeof e->message, "%s", message);
}

void gens_free(gens *gs)
{
    for (int i = 0; i < gs->n; i++) {
        generator_free(gs->e[i].g);
        gs->e[i].g = NULL;
        gs->e[i].info = NULL;
    }
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
        if (gs->e[i].state == GEN_READY && !strcmp(gs->e[i].info->id, id))
            return i;
    return -1;
}

int gens_default(const gens *gs)
{
    for (int i = 0; i < gs->n; i++)
        if (!strcmp(gs->e[i].name, "default"))
            return i;
    return gs->n > 0 ? 0 : -1;
}

int gens_ready_count(const gens *gs)
{
    int n = 0;
    for (int i = 0; i < gs->n; i++)
        n += gs->e[i].state == GEN_READY;
    return n;
}

int gens_unusable(const gens *gs, int i, char *msg, size_t cap)
{
    const gen_entry *e = &gs->e[i];
    if (e->state == GEN_READY)
        return 0;
    if (e->state == GEN_FAILED) {
        api_snprintf(msg, cap,
                     "generator '%s' failed to load: %s (it is tried again when its file "
                     "changes; GET /v1/generators)",
                     e->name, e->message);
        return 60;
    }
    api_snprintf(msg, cap, "generator '%s' is still loading: %s (GET /v1/generators)", e->name,
                 e->message);
    return 10;
}
