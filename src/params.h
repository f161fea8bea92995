/* params.h: session parameters: which startup parameters a client may set, how they are
 * reapplied on a pooled server connection, and the name -> value sets that track them. */
#ifndef LAKEPROXY_PARAMS_H
#define LAKEPROXY_PARAMS_H

#include <stdbool.h>
#include <stdint.h>

#include "buf.h"
#include "objects.h"
#include "proto.h"

const char *param_get(const struct param_set *s, const char *name);
/* Sets name to value (replacing); false when the set is full. */
bool param_put(struct param_set *s, const char *name, const char *value);
void param_clear(struct param_set *s);
/* Drops a name if present. */
void param_remove(struct param_set *s, const char *name);
/* Makes dst (empty) hold what src holds; false when out of memory. */
bool param_copy(struct param_set *dst, const struct param_set *src);

/* The server's spelling of a parameter clients may set, or NULL when it is not one. */
const char *params_settable_name(const char *name);

/* What a server's record of applied settings holds for one whose value there is not known: no
 * value a client wants equals it (one with a control character fails on the server when it is
 * applied at the client's first server), so the next link sets or resets it. */
#define PARAM_UNKNOWN "\x01unknown"

/* Appends a ParameterStatus of setting name: the client's value wanted (NULL: none) spelt as
 * the server would report it, else the server's own value. */
void params_put_status(struct buf *b, const char *name, const char *wanted,
                       const char *server_value);

/* For the settings in mask that a read-back returned to the client's startup values (wanted):
 * appends to status a ParameterStatus of each one the server reports (in reported), spelt as
 * the server would, and puts each into to_set, to be set again on a server that stays with the
 * client. False when out of memory. */
bool params_restored_msgs(uint32_t mask, const struct param_set *wanted,
                          const struct param_set *reported, struct buf *status,
                          struct param_set *to_set);

/* The settable settings (as params_settable_bit) that a server whose reported settings are
 * reported does not report. */
uint32_t params_unreported_settable(const struct param_set *reported);

/* The bits (params_settable_bit) of the settings in given that the server does not report
 * (not in reported, its ParameterStatus values). */
uint32_t params_unreported_mask(const struct param_set *given, const struct param_set *reported);

/* Is a CommandComplete's body (len bytes, its tag with the NUL) that of a statement that may
 * have RESET settings: RESET (RESET ALL too), SET (SET ... TO DEFAULT), DISCARD ALL, or a DO
 * block or CALL, whose code is out of sight? */
bool params_tag_may_reset(const uint8_t *body, size_t len);

/* Marks every parameter clients may set as PARAM_UNKNOWN in applied (a server whose settings
 * a statement may have changed unseen). */
void params_mark_unknown(struct param_set *applied);

/* Marks the settable parameters in mask (params_settable_bit) as PARAM_UNKNOWN in applied. */
void params_mark_unknown_of(struct param_set *applied, uint32_t mask);

/* The bit of settable parameter canon (as params_settable_name spells it) in a set of them
 * (a uint32_t mask), 0 when it is not one. */
uint32_t params_settable_bit(const char *canon);

/* Records old, a client's value of settable parameter canon (its bit) before a change that
 * may yet be undone, in before, or in *absent that it had none. */
void params_save_before(struct param_set *before, uint32_t *absent, const char *canon, uint32_t bit,
                        const char *old);

/* Puts back into wanted what params_save_before recorded of the settable parameters in mask
 * (a parameter whose value could not be recorded, out of memory, stays as it is). */
void params_restore_before(struct param_set *wanted, const struct param_set *before,
                           uint32_t absent, uint32_t mask);

/* Appends to sql one query reading the settings in mask back from pg_settings (in a read
 * committed transaction of its own): a row each of name, setting (in the server's own unit)
 * and whether a RESET (or SET ... TO DEFAULT, RESET ALL, DISCARD ALL) put it there: its source
 * is not a SET of the session. A value compared with reset_val could not tell a RESET from a
 * SET to the server's default. False when mask is empty. */
bool params_build_readback_sql(uint32_t mask, struct buf *sql);

/* Takes one DataRow body (len bytes) answering params_build_readback_sql(asked): its setting
 * is what the server holds (applied) and what the client wants (wanted), except that for a
 * setting that may have been RESET (its bit in reset) and that no SET of the session put
 * there, the client wants its startup value (at_startup) or none, as a RESET on its own
 * session would have left it; *to_startup then says that is a startup value (the server holds
 * its own default). Returns the setting's bit; 0, changing nothing, when the row is not an
 * answer for a setting in asked (or out of memory). */
uint32_t params_take_readback(const uint8_t *body, uint32_t len, uint32_t asked, uint32_t reset,
                              const struct param_set *at_startup, struct param_set *wanted,
                              struct param_set *applied, bool *to_startup);

/* Settings outside the tracked list that the caller accepts anyway (the rls attributes a
 * client may set): names for which accept(arg, name) is true go to out, lower-cased. */
struct param_custom {
    bool (*accept)(const void *arg, const char *name);
    const void *arg;
    struct param_set *out;
};

/* Collects the session parameters of a v3 startup packet into out: the tracked ones given
 * directly (application_name, client_encoding, DateStyle, ...) and "-c name=value" /
 * "--name=value" settings inside `options`. user, database and _pq_.* are skipped. Unknown
 * parameters (unless custom accepts them) are refused: false with a message in err (size
 * errsz) naming the parameter. */
bool params_from_startup(const struct startup *st, struct param_set *out,
                         const struct param_custom *custom, char *err, size_t errsz);

/* Appends to sql the set_config / RESET statements that make a server whose proxy-applied
 * settings are `applied` (and whose reported values are `reported`) match `wanted`. Values are
 * quoted as E'' literals, safe whatever standard_conforming_strings says. Returns false when
 * nothing needs to change. */
bool params_build_sync_sql(const struct param_set *wanted, const struct param_set *applied,
                           const struct param_set *reported, struct buf *sql);

/* Does a session with these parameters have the server read query text as lakeproxy's parser
 * does: standard_conforming_strings on and no client-only encoding (SJIS, BIG5 ...) in which a
 * quote can hide inside a character? Absent parameters count as the defaults, which do. */
bool params_text_readable(struct param_set *p);

/* Appends value as a SQL E'...' literal. */
void params_quote_literal(struct buf *sql, const char *value);

#endif
