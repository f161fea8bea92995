/* log.c: leveled log lines on stderr: text with a UTC timestamp, the same with a syslog
 * priority prefix and no timestamp under journald (which stamps lines itself), or one JSON
 * object per line (--log-format json). */
#include "log.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

static enum log_level current_level = LOG_INFO;
static enum log_format current_format = LOG_TEXT;
static const char *const level_names[] = {"ERROR", "WARNING", "LOG", "DEBUG"};

void log_set_level(enum log_level level)
{
    current_level = level;
}

int log_enabled(enum log_level level)
{
    return level <= current_level;
}

int log_level_from_name(const char *name, enum log_level *out)
{
    static const char *const names[] = {"error", "warning", "info", "debug"};
    for (int i = 0; i < 4; i++)
        if (strcmp(name, names[i]) == 0) {
            *out = (enum log_level)i;
            return 1;
        }
    return 0;
}

int log_set_format_name(const char *name)
{
    if (strcmp(name, "text") == 0)
        current_format = getenv("JOURNAL_STREAM") ? LOG_JOURNAL : LOG_TEXT;
    else if (strcmp(name, "json") == 0)
        current_format = LOG_JSON;
    else
        return 0;
    return 1;
}

/* ASCII bytes at the start of p that JSON takes as they are (no quote, backslash or control). */
static size_t plain_run(const unsigned char *p)
{
    size_t n = 0;
    while (p[n] >= 0x20 && p[n] < 0x80 && p[n] != '"' && p[n] != '\\')
        n++;
    return n;
}

/* The length (2 to 4) of the well-formed UTF-8 sequence at p, its code point in *cp; 0 when
 * p holds none (a stray or overlong byte, a surrogate, past U+10FFFF, cut short). */
static size_t utf8_decode(const unsigned char *p, unsigned *cp)
{
    size_t n = p[0] >= 0xf0 ? 4 : p[0] >= 0xe0 ? 3 : p[0] >= 0xc2 ? 2 : 0;
    if (n == 0 || p[0] > 0xf4)
        return 0;
    unsigned v = p[0] & (0x7f >> n);
    for (size_t i = 1; i < n; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return 0;
        v = v << 6 | (p[i] & 0x3f);
    }
    static const unsigned least[] = {0, 0, 0x80, 0x800, 0x10000};
    if (v < least[n] || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff))
        return 0;
    *cp = v;
    return n;
}

/* Is cp a character a log reader should see escaped: a C1 control, a line or paragraph
 * separator, a zero-width or bidirectional mark or override (which hide text or reorder what
 * a terminal shows), or a noncharacter (journald shows a line holding one as "[blob data]")? */
static bool hidden_char(unsigned cp)
{
    return cp <= 0x9f || cp == 0x061c || (cp >= 0x200b && cp <= 0x200f) ||
           (cp >= 0x2028 && cp <= 0x202e) || (cp >= 0x2060 && cp <= 0x206f) || cp == 0xfeff ||
           (cp >= 0xfdd0 && cp <= 0xfdef) || (cp & 0xfffe) == 0xfffe;
}

size_t json_escape(char *out, size_t at, size_t outsz, const char *msg)
{
    static const char hex[] = "0123456789abcdef";
    for (const unsigned char *p = (const unsigned char *)msg; *p && at + 8 < outsz; p++) {
        size_t run = plain_run(p); /* copied whole: the common case, a few per string */
        if (run > 0) {
            size_t room = outsz - 8 - at; /* the byte-at-a-time loop's bound, kept */
            size_t n = run < room ? run : room;
            memcpy(out + at, p, n);
            at += n;
            p += n - 1;
            continue;
        }
        if (*p == '"' || *p == '\\') {
            out[at++] = '\\';
            out[at++] = (char)*p;
        } else if (*p < 0x20) {
            memcpy(out + at, "\\u00", 4);
            out[at + 4] = hex[*p >> 4];
            out[at + 5] = hex[*p & 15];
            at += 6;
        } else {
            /* a character as written, a hidden one as \uXXXX, a byte of no character as the
             * text \\xNN (JSON is UTF-8 only) */
            unsigned cp = 0;
            size_t n = utf8_decode(p, &cp);
            if (n > 0 && !hidden_char(cp)) {
                memcpy(out + at, p, n);
                at += n;
                p += n - 1;
            } else if (n > 0) {
                at += (size_t)snprintf(out + at, 7, "\\u%04x", cp);
                p += n - 1;
            } else {
                memcpy(out + at, "\\\\x", 3);
                out[at + 3] = hex[*p >> 4];
                out[at + 4] = hex[*p & 15];
                at += 5;
            }
        }
    }
    return at;
}

/* Copies msg into out from at (up to outsz - 2, room for the line's end), each control byte
 * as \n, \r, \t or \xNN, and each byte of no character or of a hidden one (hidden_char) as
 * \xNN: a client's bytes in a message (a user name, an option word) can never begin a log
 * line of their own, nor make journald show the line as "[blob data]". */
static size_t text_escape(char *out, size_t at, size_t outsz, const char *msg)
{
    static const char hex[] = "0123456789abcdef";
    for (const unsigned char *p = (const unsigned char *)msg; *p && at + 6 < outsz; p++) {
        unsigned cp = 0;
        size_t n = *p >= 0x80 ? utf8_decode(p, &cp) : 0;
        if (*p >= 0x20 && *p < 0x7f)
            out[at++] = (char)*p;
        else if (n > 0 && !hidden_char(cp)) {
            memcpy(out + at, p, n);
            at += n;
            p += n - 1;
        } else if (*p == '\n' || *p == '\r' || *p == '\t') {
            out[at++] = '\\';
            out[at++] = *p == '\n' ? 'n' : *p == '\r' ? 'r' : 't';
        } else {
            memcpy(out + at, "\\x", 2);
            out[at + 2] = hex[*p >> 4];
            out[at + 3] = hex[*p & 15];
            at += 4;
        }
    }
    return at;
}

size_t log_format_line(char *out, size_t outsz, enum log_format fmt, enum log_level level,
                       const struct timeval *tv, const char *msg)
{
    static const int syslog_prio[] = {3, 4, 6, 7};
    static const char *const json_levels[] = {"error", "warning", "info", "debug"};
    char stamp[32];
    struct tm tm;
    gmtime_r(&tv->tv_sec, &tm);
    strftime(stamp, sizeof(stamp), "%Y-%m-%d %H:%M:%S", &tm);
    int n;
    if (fmt == LOG_JOURNAL || fmt == LOG_TEXT) {
        if (fmt == LOG_JOURNAL)
            n = snprintf(out, outsz, "<%d>%s ", syslog_prio[level], level_names[level]);
        else
            n = snprintf(out, outsz, "%s.%03d UTC %s ", stamp, (int)(tv->tv_usec / 1000),
                         level_names[level]);
        size_t at = n > 0 && (size_t)n + 2 < outsz ? (size_t)n : 0;
        at = text_escape(out, at, outsz, msg);
        out[at++] = '\n';
        out[at] = '\0';
        return at;
    }
    stamp[10] = 'T';
    n = snprintf(out, outsz, "{\"time\":\"%s.%03dZ\",\"level\":\"%s\",\"msg\":\"", stamp,
                 (int)(tv->tv_usec / 1000), json_levels[level]);
    size_t at = n > 0 && (size_t)n < outsz ? (size_t)n : 0;
    at = json_escape(out, at, outsz - 1, msg); /* stops where the end ("}\n\0) still fits */
    if (at + 3 < outsz)
        at += (size_t)snprintf(out + at, outsz - at, "\"}\n");
    return at;
}

void log_msg(enum log_level level, const char *fmt, ...)
{
    if (!log_enabled(level))
        return;
    char msg[2048], line[4200];
    struct timeval tv;
    gettimeofday(&tv, NULL);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    size_t n = log_format_line(line, sizeof(line), current_format, level, &tv, msg);
    fwrite(line, 1, n, stderr);
}
