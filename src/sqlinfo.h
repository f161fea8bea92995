/* sqlinfo.h: the one wrapper around libpg_query. Parses SQL text with PostgreSQL's own parser
 * (protobuf parse trees) and visits every node of the tree, so rules elsewhere (the RLS
 * guard today, statistics tomorrow) never touch libpg_query directly. Pure: no I/O. */
#ifndef LAKEPROXY_SQLINFO_H
#define LAKEPROXY_SQLINFO_H

#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>
#include <stddef.h>

#include <pg_query/pg_query.pb-c.h>

/* Texts longer than this are not parsed (parsing costs about a second per megabyte, on the
 * event loop): they read as not parsing, so the guards refuse them and statistics count them
 * unanalysed. */
#define SQLINFO_MAX_TEXT (64 * 1024)
/* The normalised text kept at most, in bytes (then cut at a character boundary, " ..." added):
 * normalising a text of SQLINFO_MAX_TEXT can make it three times longer, and statistics keep
 * one per fingerprint (stats.max_queries of them). */
#define SQLINFO_MAX_NORMALIZED (8 * 1024)
/* Parse trees nested deeper than this (in protobuf message levels) are not unpacked. */
#define SQLINFO_MAX_DEPTH 2000

/* Parses sql into a tree (free with sqlinfo_free_tree), or NULL with the parser's message,
 * or why it was not parsed (too long, too deep), in err. */
PgQuery__ParseResult *sqlinfo_parse(const char *sql, char *err, size_t errsz);
void sqlinfo_free_tree(PgQuery__ParseResult *tree);

/* Called once per message of the parse tree, parents before children. */
typedef void (*sqlinfo_visit_fn)(void *arg, const ProtobufCMessage *node);

/* Calls fn(arg, child) for each message m holds directly (items of repeated fields too, the
 * set member of a oneof only), in field order. */
void sqlinfo_each_child(const ProtobufCMessage *m, sqlinfo_visit_fn fn, void *arg);

/* Parses sql (one or more statements) and visits every node. False when the text does not
 * parse, with the parser's message in err (size errsz). */
bool sqlinfo_walk(const char *sql, sqlinfo_visit_fn visit, void *arg, char *err, size_t errsz);

/* Is t pg_catalog.NAME for one of names (NULL-ended, lower case), plain: no length or other
 * modifier, no array bounds? For the guards, which look through casts that keep a constant
 * as it is (to text, unbounded varchar) and no other: 'rolex'::varchar(4) is 'role'. An
 * unqualified name is never one: a client's temporary domain named text (pg_temp comes first
 * for types) or a search_path of its own may make it anything. */
bool sqlinfo_is_catalog_type(const PgQuery__TypeName *t, const char *const *names);
/* Does a cast to t keep a string constant as it is (pg_catalog.text, unbounded varchar)? */
bool sqlinfo_keeps_string(const PgQuery__TypeName *t);
/* The string constant n holds, through name => notation, COLLATE and casts that keep it as it
 * is (sqlinfo_keeps_string), or NULL when it is anything else: a cast that may change it
 * ('rolex'::varchar(4) is 'role', a char(n) loses trailing spaces) hides what the server gets. */
const char *sqlinfo_const_string(const PgQuery__Node *n);
/* Argument pos of call f, given positionally or by its name (named arguments follow the
 * positional ones, in any order: set_config(new_value => 'x', setting_name => 'role')); NULL
 * when absent. */
const PgQuery__Node *sqlinfo_call_arg(const PgQuery__FuncCall *f, size_t pos, const char *name);

/* What a statement is, for statistics. */
enum sql_kind {
    SQL_SELECT,
    SQL_INSERT,
    SQL_UPDATE,
    SQL_DELETE,
    SQL_MERGE,
    SQL_COPY,
    SQL_DDL,
    SQL_TXN,     /* BEGIN, COMMIT, ROLLBACK, SAVEPOINT ... */
    SQL_UTILITY, /* SET, SHOW, EXPLAIN, PREPARE, EXECUTE, FETCH ... */
    SQL_UNKNOWN, /* did not parse */
};

const char *sql_kind_name(enum sql_kind k);

/* At most this many tables or columns are listed per statement. */
#define SQLINFO_MAX_NAMES 8

/* The pushdown features of the first statement as PostgreSQL receives it. */
struct sql_pushdown {
    int predicates; /* WHERE and JOIN ... ON conditions (AND-ed terms) */
    int filters;    /* of which in WHERE (of the outermost SELECT and its set operations) */
    int n_cols;     /* columns those conditions name (first SQLINFO_MAX_NAMES) */
    char *cols[SQLINFO_MAX_NAMES];
    bool limit, offset, group_by, order_by, distinct;
    int aggregates;  /* aggregate calls (count, sum, ...) */
    int joins;       /* JOIN clauses and extra FROM items */
    bool unfiltered; /* reads tables with no WHERE condition and no limit: a full pull */
};

/* One statement text, analysed (the first statement when there are several). */
struct sql_analysis {
    uint64_t fingerprint; /* libpg_query's: the same for texts that differ in constants */
    int n_stmts;          /* statements the text holds (0: empty, or it did not parse) */
    char *normalized;     /* constants replaced by $n: never a literal value */
    enum sql_kind kind;
    int n_read, n_written; /* tables read and written, schema-qualified as written */
    char *read[SQLINFO_MAX_NAMES];
    char *written[SQLINFO_MAX_NAMES];
    struct sql_pushdown pd;
};

/* Analyses sql into out (which the caller frees with sqlinfo_analysis_free). Text that does
 * not parse gets kind SQL_UNKNOWN, a fingerprint of its key and no normalised text (never the
 * raw text: it may hold values); so does text whose normalised form cannot be scrubbed of
 * every constant and comment. Always true. */
bool sqlinfo_analyze(const char *sql, struct sql_analysis *out);
void sqlinfo_analysis_free(struct sql_analysis *a);

/* Where one statement of a text is: byte offset and length (without its ';'). */
struct sql_span {
    size_t start, len;
};

/* Splits sql (a simple Query may carry several statements) as PostgreSQL's parser does: the
 * places of its first max statements in spans; returns how many statements it holds, 0 when
 * it does not parse. */
size_t sqlinfo_split(const char *sql, struct sql_span *spans, size_t max);

/* Is m a statement of two-phase commit (PREPARE TRANSACTION, COMMIT PREPARED, ROLLBACK
 * PREPARED)? A prepared transaction outlives its session and may be finished by any session of
 * its role: under pooling, by another client. */
bool sqlinfo_is_two_phase(const ProtobufCMessage *m);

#endif
