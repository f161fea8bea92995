/* sqlkey.c: the literal-insensitive key of SQL text, by one pass of a small scanner, and a memo
 * of recent texts' keys (and the caller's facts of them) that keys the same statement with
 * other constants by a compare. */
#include "sqlkey.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "siphash.h"
#include "sqllex.h"

/* Byte classes of the scanner, as PostgreSQL's lexer has them: letters, digits, '_', '$' and
 * bytes from 128 (C_WORD: what identifiers are made of), isspace (C_SPACE), the word bytes that
 * may open a constant outside a word (C_OPENS: digits, '$', and the E B X N U of E'', B'', X'',
 * N'', U&''), and the bytes kept as they are wherever they stand (C_KEEP: every other word byte,
 * punctuation but ' " - / .). 32 bytes a row. The scanner must never take for a constant what
 * the server reads as SQL, or two statements could share a key. */
enum { C_WORD = 1, C_SPACE = 2, C_OPENS = 4, C_KEEP = 8 };
static const uint8_t byte_class[256] = {
    0, 8, 8, 8, 8, 8, 8, 8, 8, 2, 2, 2, 2, 2, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8,
    2, 8, 0, 8, 5, 8, 8, 0, 8, 8, 8, 8, 8, 0, 0, 0, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 8, 8, 8, 8, 8, 8,
    8, 9, 5, 9, 9, 5, 9, 9, 9, 9, 9, 9, 9, 9, 5, 9, 9, 9, 9, 9, 9, 5, 9, 9, 5, 9, 9, 8, 8, 8, 8, 9,
    8, 9, 5, 9, 9, 5, 9, 9, 9, 9, 9, 9, 9, 9, 5, 9, 9, 9, 9, 9, 9, 5, 9, 9, 5, 9, 9, 8, 8, 8, 8, 8,
    9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9,
    9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9,
    9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9,
    9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9,
};

static inline uint8_t class_of(char c)
{
    return byte_class[(unsigned char)c];
}

static inline bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* Past a number starting at p (digits, a point, an exponent). */
static const char *skip_number(const char *p)
{
    while (is_digit(*p) || *p == '.')
        p++;
    if ((*p == 'e' || *p == 'E') &&
        (is_digit(p[1]) || ((p[1] == '+' || p[1] == '-') && is_digit(p[2])))) {
        p += 2;
        while (is_digit(*p))
            p++;
    }
    return p;
}

/* Past a constant starting at p where a token may start (not inside a word), or NULL; a
 * dollar string ('$') is the caller's (sqllex_past_dollar). */
static const char *skip_constant(const char *p)
{
    if (*p == '\'')
        return sqllex_past_quoted(p, '\'', false);
    if ((*p == 'E' || *p == 'e') && p[1] == '\'')
        return sqllex_past_quoted(p + 1, '\'', true);
    if ((*p == 'B' || *p == 'b' || *p == 'X' || *p == 'x' || *p == 'N' || *p == 'n') &&
        p[1] == '\'')
        return sqllex_past_quoted(p + 1, '\'', false);
    if ((*p == 'U' || *p == 'u') && p[1] == '&' && p[2] == '\'')
        return sqllex_past_quoted(p + 2, '\'', false);
    if (is_digit(*p) || (*p == '.' && is_digit(p[1])))
        return skip_number(p);
    return NULL;
}

uint64_t sqlkey(const char *sql)
{
    static const struct sqlkey_secret none = {0, 0};
    return sqlkey_seeded(sql, &none);
}

enum {
    MEMO_CONSTS = 8,
    MEMO_TEXT_MAX = 1024,
    MEMO_INDEX_BYTES = 24,
    MEMO_WAYS = 4,
    MEMO_SETS_MAX = 1 << 16
};

/* Where the constants of a text lie, as the scanner found them (the first MEMO_CONSTS). */
struct spans {
    uint32_t n; /* constants found, even past MEMO_CONSTS */
    uint32_t start[MEMO_CONSTS], end[MEMO_CONSTS];
};

/* The constant that starts at p, a token start, as the scanner reads it there (NULL: none);
 * a '.' must stand where the scanner looks for one (after a constant or a non-word byte). */
static const char *constant_at(const char *p)
{
    return *p == '$' ? sqllex_past_dollar(p) : skip_constant(p);
}

/* One pass, a token at a time: runs of bytes that stay as they are (words, single spaces,
 * punctuation, comments, quoted names) go into the hash whole when something must change (a
 * constant, white space other than one ' ') and at the end. The hash is SipHash keyed with the
 * secret, fed the normalised text: a NUL byte for each constant, which the text itself cannot
 * hold, so no text's bytes can pass for another's placeholders. Where the constants lie goes
 * to sp. */
static uint64_t scan(const char *sql, const struct sqlkey_secret *secret, struct spans *sp)
{
    struct siphash k;
    siphash_init(&k, secret->k0, secret->k1);
    const char *run = sql;        /* the bytes kept from here to p are not hashed yet */
    const char *const_end = NULL; /* where the last constant ended: a token starts there */
    const char *p = sql;
    sp->n = 0;
    for (;;) {
        uint8_t cls = class_of(*p);
        const char *end = NULL;
        if (cls & C_WORD) { /* a word starts here: a constant, or kept whole */
            if (*p == '$' && !(end = sqllex_past_dollar(p))) {
                /* a parameter ($ and its digits) or a lone $: the server reads a $ after it
                 * afresh (it may open a dollar string), so the word ends there */
                do
                    p++;
                while (is_digit(*p));
                continue;
            }
            if (!end && (!(cls & C_OPENS) || !(end = skip_constant(p)))) {
                do
                    p++;
                while (class_of(*p) & C_WORD);
                continue;
            }
        } else if (cls & C_KEEP) {
            p++;
            continue;
        } else if (!*p) {
            break;
        } else if (cls & C_SPACE) {
            if (*p == ' ' && !(class_of(p[1]) & C_SPACE)) { /* one space: kept as it is */
                p++;
                continue;
            }
            siphash_bytes(&k, run, (size_t)(p - run));
            siphash_byte(&k, ' ');
            while (class_of(*p) & C_SPACE)
                p++;
            run = p;
            continue;
        } else if (*p == '\'' ||
                   (*p == '.' && (p == const_end || !(p > sql && (class_of(p[-1]) & C_WORD))))) {
            end = skip_constant(p); /* a string, or maybe a number like .5 */
        }
        if (end) {
            siphash_bytes(&k, run, (size_t)(p - run));
            siphash_byte(&k, 0); /* the placeholder */
            if (sp->n < MEMO_CONSTS) {
                sp->start[sp->n] = (uint32_t)(p - sql);
                sp->end[sp->n] = (uint32_t)(end - sql);
            }
            sp->n++;
            p = run = const_end = end;
        } else if ((p[0] == '-' && p[1] == '-') || (p[0] == '/' && p[1] == '*')) {
            p = sqllex_past_comment(p); /* kept as it is (its quotes open no string) */
        } else if (*p == '"') {         /* a quoted identifier is kept as it is */
            const char *q = strchr(p + 1, '"');
            p = q ? q + 1 : p + strlen(p);
        } else { /* - / . alone */
            p++;
        }
    }
    siphash_bytes(&k, run, (size_t)(p - run));
    return siphash_end(&k);
}

uint64_t sqlkey_seeded(const char *sql, const struct sqlkey_secret *secret)
{
    struct spans sp;
    return scan(sql, secret, &sp);
}

/* A text the memo has seen: its key, its facts, and where its constants lie. */
struct memo_entry {
    uint64_t key;
    char *text; /* NULL: an empty way */
    uint32_t len;
    bool numbers;   /* every constant a number: facts found for one text that matches hold for
                       all (sqlkey_facts_fn) */
    bool has_facts; /* facts found (only ever when numbers) */
    uint32_t facts;
    uint64_t used;
    struct spans sp;
};

struct sqlkey_memo {
    struct sqlkey_secret secret;
    size_t n_sets; /* a power of two */
    sqlkey_facts_fn facts_of;
    uint64_t clock;
    uint64_t hits;
    struct memo_entry *ways; /* n_sets * MEMO_WAYS */
};

struct sqlkey_memo *sqlkey_memo_new(const struct sqlkey_secret *secret, size_t n_sets,
                                    sqlkey_facts_fn facts_of)
{
    struct sqlkey_memo *m = calloc(1, sizeof(*m));
    size_t sets = 1;
    while (sets < n_sets && sets < MEMO_SETS_MAX)
        sets *= 2;
    if (m)
        m->ways = calloc(sets * MEMO_WAYS, sizeof(*m->ways));
    if (!m || !m->ways) {
        free(m);
        return NULL;
    }
    m->secret = *secret;
    m->n_sets = sets;
    m->facts_of = facts_of;
    return m;
}

void sqlkey_memo_free(struct sqlkey_memo *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < m->n_sets * MEMO_WAYS; i++)
        free(m->ways[i].text);
    free(m->ways);
    free(m);
}

/* The set a text of len bytes belongs in, by its first MEMO_INDEX_BYTES bytes (all of it when
 * shorter): only texts whose first constant lies past them are kept, so every text that
 * matches an entry falls in its set. */
static size_t memo_set(const struct sqlkey_memo *m, const char *sql, size_t len)
{
    uint64_t w[MEMO_INDEX_BYTES / 8] = {0};
    if (len >= MEMO_INDEX_BYTES) /* (most texts: a copy of fixed size, three loads) */
        memcpy(w, sql, MEMO_INDEX_BYTES);
    else
        memcpy(w, sql, len);
    uint64_t h = (w[0] * 0x9e3779b97f4a7c15ull) ^ (w[1] * 0xc2b2ae3d27d4eb4full) ^
                 (w[2] * 0x165667b19e3779f9ull);
    return (size_t)(h >> 32) & (m->n_sets - 1);
}

/* Is byte b of the same kind as byte like: a digit for a digit, else the same byte? */
static bool same_kind(char b, char like)
{
    return is_digit(like) ? is_digit(b) : b == like;
}

/* Does sql (len bytes) read as e's text with other constants, so that it has e's key (and
 * facts)? Its bytes between constants are e's, and each of its constants starts and ends with
 * the same kind of byte as e's there (same_kind) and ends where the scanner ends it. A byte
 * before or after a constant that the scanner looks at to read it or its neighbours is the
 * same as in e's text, so the scanner reads sql as it read e's text, constants aside. */
static bool memo_matches(const struct memo_entry *e, const char *sql, size_t len)
{
    const char *t = sql, *t_end = sql + len;
    uint32_t from = 0; /* in e's text: where the bytes kept as they are resume */
    for (uint32_t i = 0; i < e->sp.n; i++) {
        size_t seg = e->sp.start[i] - from;
        if ((size_t)(t_end - t) < seg || memcmp(t, e->text + from, seg) != 0)
            return false;
        t += seg;
        if (!same_kind(*t, e->text[e->sp.start[i]]))
            return false;
        t = constant_at(t);
        if (!t || !same_kind(t[-1], e->text[e->sp.end[i] - 1]))
            return false;
        from = e->sp.end[i];
    }
    return (size_t)(t_end - t) == e->len - from && memcmp(t, e->text + from, e->len - from) == 0;
}

/* Is every constant of sql (where sp says) a number? */
static bool numbers_only(const char *sql, const struct spans *sp)
{
    for (uint32_t i = 0; i < sp->n; i++)
        if (!is_digit(sql[sp->start[i]]) && sql[sp->start[i]] != '.')
            return false;
    return true;
}

/* Remembers sql's key and constants in the set's least recently used way (when it fits the
 * memo's bounds and memory allows), and returns its entry (else NULL). */
static struct memo_entry *memo_put(struct sqlkey_memo *m, struct memo_entry *set, const char *sql,
                                   size_t len, uint64_t key, const struct spans *sp)
{
    if (len > MEMO_TEXT_MAX || sp->n > MEMO_CONSTS ||
        (sp->n > 0 && sp->start[0] < MEMO_INDEX_BYTES))
        return NULL;
    struct memo_entry *e = &set[0];
    for (int w = 1; w < MEMO_WAYS; w++)
        if (!set[w].text || (e->text && set[w].used < e->used))
            e = &set[w];
    char *copy = realloc(e->text, len + 1);
    if (!copy)
        return NULL;
    memcpy(copy, sql, len + 1);
    *e = (struct memo_entry){.key = key,
                             .text = copy,
                             .len = (uint32_t)len,
                             .numbers = numbers_only(sql, sp),
                             .used = ++m->clock,
                             .sp = *sp};
    return e;
}

/* The entry of sql's shape (len bytes), or NULL; its key is *key either way. */
static struct memo_entry *memo_find(struct sqlkey_memo *m, const char *sql, size_t len,
                                    uint64_t *key)
{
    struct memo_entry *set = &m->ways[memo_set(m, sql, len) * MEMO_WAYS];
    for (int w = 0; w < MEMO_WAYS; w++)
        if (set[w].text && memo_matches(&set[w], sql, len)) {
            set[w].used = ++m->clock;
            m->hits++;
            *key = set[w].key;
            return &set[w];
        }
    struct spans sp;
    *key = scan(sql, &m->secret, &sp);
    return memo_put(m, set, sql, len, *key, &sp);
}

struct sqlkey_shape sqlkey_memo_shape(struct sqlkey_memo *m, const char *sql)
{
    struct sqlkey_shape sh = {.has_facts = m->facts_of != NULL};
    struct memo_entry *e = memo_find(m, sql, strlen(sql), &sh.key);
    if (!sh.has_facts)
        return sh;
    if (e && e->has_facts) {
        sh.facts = e->facts;
        return sh;
    }
    sh.facts = m->facts_of(sql);
    if (e && e->numbers) { /* they hold for every text that matches e */
        e->facts = sh.facts;
        e->has_facts = true;
    }
    return sh;
}

uint64_t sqlkey_memo_key(struct sqlkey_memo *m, const char *sql)
{
    uint64_t key;
    memo_find(m, sql, strlen(sql), &key);
    return key;
}

uint64_t sqlkey_memo_hits(const struct sqlkey_memo *m)
{
    return m->hits;
}
