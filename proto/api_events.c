/* api_events.c - the data of GET /v1/events' frames (the `job` event's data
 * is api_job_to_json). */
#include "api.h"

#include <string.h>

json_t *api_event_progress_to_json(const char *job_id, double progress)
{
    return json_pack("{s:s, s:f}", "id", job_id, "progress", progress);
}

int api_event_progress_from_json(const json_t *o, char job_id[API_ID_LEN], double *progress,
                                 api_error *e)
{
    const char *id = json_string_value(json_object_get(o, "id"));
    json_t *p = json_object_get(o, "progress");
    if (!id || !json_is_number(p))
        return api_fail(e, 400, "invalid_argument", "progress",
                        "a progress event without id or progress");
    api_snprintf(job_id, API_ID_LEN, "%s", id);
    *progress = json_number_value(p);
    return 0;
}

json_t *api_event_generator_to_json(const char *name, const char *id, const char *state)
{
    return json_pack("{s:s, s:s, s:s}", "name", name, "id", id, "state", state);
}

json_t *api_events_lost_to_json(int64_t last_id, int64_t oldest_id)
{
    return json_pack("{s:I, s:I}", "last_event_id", (json_int_t)last_id, "oldest_event_id",
                     (json_int_t)oldest_id);
}

json_t *api_session_to_json(int auth, const char *principal, const char *scope)
{
    return json_pack("{s:b, s:s?, s:s?}", "auth", auth, "principal", principal, "scope", scope);
}
