/* test_rls.c: resolving a client's RLS attributes from users, groups and other sources, and
 * the messages that carry them: the statement text never holds a value, and every value,
 * however hostile, arrives in the Bind message byte for byte. */
#include <criterion/criterion.h>
#include <string.h>

#include "buf.h"
#include "config.h"
#include "params.h"
#include "rls.h"

static struct config *load(const char *yaml)
{
    struct config_errors errs = {0};
    struct config *cfg = config_parse_string(yaml, strlen(yaml), "t.yaml", &errs);
    cr_assert_not_null(cfg, "%s", errs.n ? errs.msgs[0] : "");
    return cfg;
}

static const char *const policy =
    "databases: {app: {host: h, user: u}}\n"
    "groups:\n  eu: {role: eu_reader, attributes: {tenant_id: '9', region: eu}}\n"
    "users:\n"
    "  ada: {password: x, attributes: {tenant_id: '1'}, groups: [eu]}\n"
    "  bo: {password: x, groups: [eu]}\n"
    "  cy: {password: x, role: own_role}\n"
    "rls:\n  switch_role: true\n  default_role: app_user\n"
    "  attributes: {tenant_id: attribute, region: attribute, who: user, db: database,\n"
    "               addr: client_addr, app: application_name, locale: option}\n";

/* The value resolved for setting name, or NULL. */
static const char *value_of(const struct rls_setting *s, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(s[i].name, name) == 0)
            return s[i].value;
    return NULL;
}

Test(rls, attributes_come_from_the_user_then_its_groups_then_other_sources)
{
    struct config *cfg = load(policy);
    struct param_set opts = {0};
    param_put(&opts, "app.locale", "fr");
    struct rls_identity id = {.user = "ada",
                              .database = "app",
                              .client_addr = "10.0.0.7",
                              .application_name = "billing",
                              .options = &opts};
    struct rls_setting s[RLS_MAX_SETTINGS];
    size_t n;
    char err[200];
    cr_assert(rls_resolve(cfg, &id, s, &n, err, sizeof(err)), "%s", err);
    cr_assert_eq(n, 8, "role and seven attributes");
    cr_expect_str_eq(s[0].name, "role", "the role comes first");
    cr_expect_str_eq(s[0].value, "eu_reader", "ada has no role: her group's");
    cr_expect_str_eq(value_of(s, n, "app.tenant_id"), "1", "her own attribute wins");
    cr_expect_str_eq(value_of(s, n, "app.region"), "eu", "the group fills the rest");
    cr_expect_str_eq(value_of(s, n, "app.who"), "ada");
    cr_expect_str_eq(value_of(s, n, "app.db"), "app");
    cr_expect_str_eq(value_of(s, n, "app.addr"), "10.0.0.7");
    cr_expect_str_eq(value_of(s, n, "app.app"), "billing");
    cr_expect_str_eq(value_of(s, n, "app.locale"), "fr");
    id.user = "cy";
    id.options = NULL;
    cr_assert(rls_resolve(cfg, &id, s, &n, err, sizeof(err)));
    cr_expect_str_eq(s[0].value, "own_role");
    cr_expect_str_eq(value_of(s, n, "app.tenant_id"), "", "missing: '', which matches nothing");
    cr_expect_str_eq(value_of(s, n, "app.locale"), "");
    id.user = "stranger"; /* auth_query users are not under users: */
    cr_assert(rls_resolve(cfg, &id, s, &n, err, sizeof(err)));
    cr_expect_str_eq(s[0].value, "app_user", "the default role");
    param_clear(&opts);
    config_free(cfg);
}

Test(rls, no_role_no_service)
{
    struct config *cfg = load("databases: {app: {host: h, user: u}}\n"
                              "users:\n  ada: {password: x, role: r}\n"
                              "rls: {switch_role: true}\n");
    struct rls_identity id = {.user = "someone_else", .database = "app"};
    struct rls_setting s[RLS_MAX_SETTINGS];
    size_t n;
    char err[200];
    cr_expect_not(rls_resolve(cfg, &id, s, &n, err, sizeof(err)));
    cr_expect(strstr(err, "no database role"), "%s", err);
    config_free(cfg);
}

/* Splits the built messages: the Parse text and the Bind parameter values. */
static void decode(const struct buf *b, const char **text, const char **second, const char *vals[],
                   uint32_t lens[], uint16_t *nvals, char *types)
{
    struct rd r;
    rd_init(&r, b->data, b->len);
    size_t t = 0;
    while (r.left > 0) {
        uint8_t type;
        uint32_t len;
        const uint8_t *body;
        cr_assert(rd_u8(&r, &type) && rd_u32(&r, &len) && rd_bytes(&r, len - 4, &body));
        types[t++] = (char)type;
        struct rd m;
        rd_init(&m, body, len - 4);
        const char *name, *portal;
        uint16_t nf;
        if (type == 'P') {
            cr_assert(rd_str(&m, &name) && rd_str(&m, *text ? second : text));
        } else if (type == 'B' && !*second) { /* (the first Bind carries the values) */
            cr_assert(rd_str(&m, &portal) && rd_str(&m, &name) && rd_u16(&m, &nf) &&
                      rd_u16(&m, nvals));
            for (uint16_t i = 0; i < *nvals; i++) {
                const uint8_t *v;
                cr_assert(rd_u32(&m, &lens[i]) && rd_bytes(&m, lens[i], &v));
                vals[i] = (const char *)v;
            }
        }
    }
    types[t] = '\0';
}

Test(rls, values_travel_as_bind_parameters_never_as_sql)
{
    static const char *const hostile[] = {
        "x'); SELECT set_config('role', 'postgres', false); --",
        "back\\slash\\'",
        "semi;colon",
        "$$dollar$$",
        "E'\\x00'",
        "\xe8\xa1\xa8\x5c'",
    };
    for (size_t h = 0; h < sizeof(hostile) / sizeof(hostile[0]); h++) {
        struct rls_setting s[2] = {{"app.tenant_id", hostile[h]}, {"app.user", "u"}};
        struct buf b;
        buf_init(&b);
        rls_build_prefix(s, 2, &b);
        cr_assert_not(b.failed);
        const char *text = NULL, *second = NULL, *vals[8];
        uint32_t lens[8];
        uint16_t nvals = 0;
        char types[16];
        decode(&b, &text, &second, vals, lens, &nvals, types);
        cr_expect_str_eq(types, "PBEPBECS",
                         "Parse, Bind, Execute (set_config), again (DISCARD SEQUENCES), Close, "
                         "Sync");
        cr_expect_str_eq(text, "SELECT pg_catalog.set_config($1,$2,false),"
                               "pg_catalog.set_config($3,$4,false)");
        cr_expect_str_eq(second, "DISCARD SEQUENCES");
        cr_assert_eq(nvals, 4);
        cr_expect_eq(lens[1], strlen(hostile[h]));
        cr_expect(memcmp(vals[1], hostile[h], lens[1]) == 0, "value %zu altered", h);
        cr_expect(memcmp(vals[0], "app.tenant_id", lens[0]) == 0);
        buf_free(&b);
    }
}

Test(rls, only_option_attributes_are_client_settable)
{
    struct config *cfg = load(policy);
    cr_expect(rls_client_settable(cfg, "app.locale"));
    cr_expect_not(rls_client_settable(cfg, "app.tenant_id"));
    cr_expect_not(rls_client_settable(cfg, "app.nothing"));
    cr_expect_not(rls_client_settable(cfg, "other.locale"));
    cr_expect_not(rls_client_settable(cfg, "app"));
    config_free(cfg);
    cfg = load("databases: {app: {host: h, user: u}}\n");
    cr_expect_not(rls_client_settable(cfg, "app.locale"), "no rls: section, nothing settable");
    config_free(cfg);
}
