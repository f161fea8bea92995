/* sqlinfo.c: libpg_query's protobuf parse tree, walked generically through protobuf-c's
 * descriptors: every message field, repeated or not, set member of a oneof or not. */
#include "sqlinfo.h"

#include <pg_query.h>
#include <pg_query/pg_query.pb-c.h>
#include <stdint.h>
#include <stdio.h>

/* Parse trees of hostile text can be deep ("((((...))))"); the parser has its own limit
 * (max_stack_depth); this one bounds our recursion independently. */
#define WALK_MAX_DEPTH 2000

/* Is field f of m set? Only the member of a oneof named by its case field is. */
static bool field_present(const ProtobufCMessage *m, const ProtobufCFieldDescriptor *f)
{
    if (!(f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF))
        return true;
    uint32_t which = *(const uint32_t *)((const char *)m + f->quantifier_offset);
    return which == f->id;
}

static bool walk(const ProtobufCMessage *m, sqlinfo_visit_fn visit, void *arg, int depth)
{
    if (!m)
        return true;
    if (depth > WALK_MAX_DEPTH)
        return false;
    visit(arg, m);
    const ProtobufCMessageDescriptor *d = m->descriptor;
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        if (f->type != PROTOBUF_C_TYPE_MESSAGE || !field_present(m, f))
            continue;
        const char *at = (const char *)m + f->offset;
        if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            size_t n = *(const size_t *)((const char *)m + f->quantifier_offset);
            ProtobufCMessage *const *items = *(ProtobufCMessage *const *const *)at;
            for (size_t k = 0; k < n; k++)
                if (!walk(items[k], visit, arg, depth + 1))
                    return false;
        } else if (!walk(*(ProtobufCMessage *const *)at, visit, arg, depth + 1)) {
            return false;
        }
    }
    return true;
}

bool sqlinfo_walk(const char *sql, sqlinfo_visit_fn visit, void *arg, char *err, size_t errsz)
{
    PgQueryProtobufParseResult r = pg_query_parse_protobuf(sql);
    bool ok = false;
    if (r.error) {
        snprintf(err, errsz, "%s", r.error->message ? r.error->message : "syntax error");
    } else {
        PgQuery__ParseResult *tree = pg_query__parse_result__unpack(
            NULL, r.parse_tree.len, (const uint8_t *)r.parse_tree.data);
        if (!tree)
            snprintf(err, errsz, "could not read the parse tree");
        else if (!(ok = walk(&tree->base, visit, arg, 0)))
            snprintf(err, errsz, "statement nested too deeply");
        if (tree)
            pg_query__parse_result__free_unpacked(tree, NULL);
    }
    pg_query_free_protobuf_parse_result(r);
    return ok;
}
