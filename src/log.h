/* log.h: leveled log lines to stderr, as text or JSON. Never pass secrets or query literals. */
#ifndef LAKEPROXY_LOG_H
#define LAKEPROXY_LOG_H

#include <stddef.h>
#include <sys/time.h>

enum log_level { LOG_ERROR, LOG_WARNING, LOG_INFO, LOG_DEBUG };

/* text: "2026-11-30 10:00:00.000 UTC LOG message"; journal: "<6>LOG message" (chosen for
 * text when stderr is journald's); json: {"time":...,"level":"info","msg":"..."}. */
enum log_format { LOG_TEXT, LOG_JOURNAL, LOG_JSON };

/* Sets the format from "text" or "json"; false for anything else. */
int log_set_format_name(const char *name);

/* Appends msg to out (size outsz) at offset at as the inside of a JSON string, valid UTF-8
 * whatever msg holds: quotes and backslashes escaped, control characters and characters that
 * hide or reorder text as \uXXXX, a byte of no UTF-8 character as the text \\xNN; ends at
 * least 3 bytes short of outsz (outsz - 3 at most). Returns the new offset. (Shared with the
 * query log.) */
size_t json_escape(char *out, size_t at, size_t outsz, const char *msg);

/* One line (with '\n') of msg at level in format fmt into out; returns its length. */
size_t log_format_line(char *out, size_t outsz, enum log_format fmt, enum log_level level,
                       const struct timeval *tv, const char *msg);

void log_set_level(enum log_level level);
/* Sets the level from its config name; false for an unknown name. */
int log_level_from_name(const char *name, enum log_level *out);
void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int log_enabled(enum log_level level);

#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)
#define log_warning(...) log_msg(LOG_WARNING, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...)                                                                             \
    do {                                                                                           \
        if (log_enabled(LOG_DEBUG))                                                                \
            log_msg(LOG_DEBUG, __VA_ARGS__);                                                       \
    } while (0)

#endif
