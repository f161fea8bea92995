/* log.h: leveled log lines to stderr. Never pass secrets or query literals. */
#ifndef LAKEPROXY_LOG_H
#define LAKEPROXY_LOG_H

enum log_level { LOG_ERROR, LOG_WARNING, LOG_INFO, LOG_DEBUG };

void log_set_level(enum log_level level);
/* Sets the level from its config name; false for an unknown name. */
int log_level_from_name(const char *name, enum log_level *out);
void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int log_enabled(enum log_level level);

#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)
#define log_warning(...) log_msg(LOG_WARNING, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...)                                                                            \
    do {                                                                                          \
        if (log_enabled(LOG_DEBUG))                                                               \
            log_msg(LOG_DEBUG, __VA_ARGS__);                                                      \
    } while (0)

#endif
