/* routes_ui.c - the dashboard page (GET / and GET /ui/{file}: the files in ui/, embedded
 * at build time) and GET /v1/session, which tells the page what its token
 * may do. */
#include <string.h>

#include "embedded.h"
#include "routes.h"

static const char *type_of(const char *name)
{
    const char *dot = strrchr(name, '.');
    if (!dot)
        return "application/octet-stream";
    if (!strcmp(dot, ".html"))
        return "text/html; charset=utf-8";
    if (!strcmp(dot, ".js"))
        return "text/javascript; charset=utf-8";
    if (!strcmp(dot, ".css"))
        return "text/css; charset=utf-8";
    if (!strcmp(dot, ".svg"))
        return "image/svg+xml";
    return "application/octet-stream";
}

/* The page loads only its own files and talks only to this daemon. */
#define UI_CSP                                                                                  \
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "          \
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

static int send_file(http_req *r, const char *name)
{
    const embedded_file *f = embedded_find(name);
    if (!f)
        return http_errorf(r, 404, "not_found", NULL, 0, "no file %s in the dashboard", r->path);
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(f->len, (void *)f->data, MHD_RESPMEM_PERSISTENT);
    if (resp) {
        MHD_add_response_header(resp, "Content-Type", type_of(name));
        MHD_add_response_header(resp, "Cache-Control", "no-cache");
        MHD_add_response_header(resp, "Content-Security-Policy", UI_CSP);
        MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
        MHD_add_response_header(resp, "Referrer-Policy", "no-referrer");
    }
    return http_send(r, 200, resp);
}

int route_ui_index(server *s, http_req *r)
{
    (void)s;
    return send_file(r, "ui/index.html");
}

int route_ui_file(server *s, http_req *r)
{
    (void)s;
    char name[HTTP_PARAM_LEN + 8];
    api_snprintf(name, sizeof name, "ui/%s", r->param);
    if (strchr(r->param, '/') || r->param[0] == '.' || !strcmp(r->param, "index.html"))
        return http_errorf(r, 404, "not_found", NULL, 0, "no file %s in the dashboard", r->path);
    return send_file(r, name);
}

int route_session(server *s, http_req *r)
{
    const char *hdr = http_header(r, "Authorization"), *principal = NULL;
    static const int scopes[] = {AUTH_SCOPE_WRITE, AUTH_SCOPE_READ, AUTH_SCOPE_METRICS};
    int scope = AUTH_SCOPE_NONE;
    for (int i = 0; i < 3 && scope == AUTH_SCOPE_NONE; i++)
        if (auth_check(&s->auth, hdr, scopes[i], &principal) == 0)
            scope = scopes[i];
    int valid = scope != AUTH_SCOPE_NONE;
    return http_send_json(r, 200, api_session_to_json(s->auth.enabled, valid ? principal : NULL,
                                                      valid ? auth_scope_name(scope) : NULL));
}
