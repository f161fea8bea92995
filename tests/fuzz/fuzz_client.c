/* fuzz_client.c: a client's message stream through the relay and every parser it reaches. */
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "fuzz.h"
#include "guard.h"
#include "masklike.h"
#include "masksql.h"
#include "pipeline.h"
#include "prepared.h"
#include "relay.h"
#include "stmtsql.h"

/* The guards see the text as lakeproxy would: NUL-terminated, the first NUL ending it. */
static void check_sql(const char *sql)
{
    static const char *const cols[] = {"email", "ssn"}, *const tables[] = {"customers"};
    struct guard_verdict gv;
    struct masksql_verdict mv;
    struct masksql_policy p = {.columns = cols, .n_columns = 2, .tables = tables, .n_tables = 1};
    char name[64];
    bool all;
    guard_check(sql, "app", &gv);
    masksql_check(sql, &p, &mv);
    stmtsql_deallocate(sql, name, &all);
}

/* The last Parse body after its name (for the LIKE pattern check of the Binds after it). */
static uint8_t last_parse[4096];
static size_t last_parse_len;

static void parse_parse(const uint8_t *body, uint32_t len)
{
    struct rd r;
    const char *name, *sql;
    uint16_t n;
    uint32_t oid;
    char proxy[STMT_NAME_LEN];
    rd_init(&r, body, len);
    if (!rd_str(&r, &name) || !rd_str(&r, &sql))
        return;
    size_t rest = r.left + strlen(sql) + 1;
    stmt_proxy_name((const uint8_t *)sql, rest, NULL, proxy);
    last_parse_len = rest < sizeof(last_parse) ? rest : 0;
    memcpy(last_parse, sql, last_parse_len);
    check_sql(sql);
    if (rd_u16(&r, &n))
        for (uint16_t i = 0; i < n && rd_u32(&r, &oid); i++)
            ;
}

static void parse_bind(const uint8_t *body, uint32_t len)
{
    struct rd r;
    const char *portal, *stmt;
    const uint8_t *v;
    uint16_t n, f;
    int32_t l;
    rd_init(&r, body, len);
    if (!rd_str(&r, &portal) || !rd_str(&r, &stmt))
        return;
    static const struct masklike like = {.n = 3, .param = {1, 2, 65535}};
    masklike_binds_ok(&like, last_parse_len ? last_parse : NULL, last_parse_len, r.p, r.left);
    if (!rd_u16(&r, &n))
        return;
    for (uint16_t i = 0; i < n && rd_u16(&r, &f); i++)
        ;
    if (!rd_u16(&r, &n))
        return;
    for (uint16_t i = 0; i < n && rd_i32(&r, &l); i++)
        if (l > 0 && !rd_bytes(&r, (size_t)l, &v))
            return;
}

static enum relay_verdict inspect(void *arg, uint8_t type, uint32_t len, const uint8_t *body)
{
    (void)arg;
    if (!body)
        return len <= 65536 ? RV_NEED_BODY : RV_STREAM;
    if (type == 'Q' && len > 0 && memchr(body, 0, len))
        check_sql((const char *)body);
    else if (type == 'P')
        parse_parse(body, len);
    else if (type == 'B')
        parse_bind(body, len);
    return type == 'X' ? RV_DROP_STOP : RV_PASS;
}

int fuzz_client_stream(const uint8_t *data, size_t size)
{
    fuzz_pump(data, size, inspect);
    return 0;
}

#ifdef FUZZ_MAIN
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    return fuzz_client_stream(data, size);
}
#endif
