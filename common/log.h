/*
 * log: levelled logging to stderr as plain text or JSON lines. A person's identity number must
 * never appear whole in a log line: callers pass subjects through log_subject() (or ids_mask()).
 */
#ifndef JRP_LOG_H
#define JRP_LOG_H

#include <stddef.h>

typedef enum { LOG_DEBUG = 0, LOG_INFO, LOG_WARN, LOG_ERROR, LOG_FATAL } log_level_t;

/* Process-wide settings; defaults: info, plain, stderr, service "jrp". */
void log_set_level(log_level_t level);
log_level_t log_get_level(void);
int log_set_level_name(const char *name); /* "debug", "info", "warn", "error": 0 or -1 */
void log_set_json(int json);
void log_set_service(const char *service); /* copied */
/* Send lines to fd instead of stderr (tests capture through a pipe). */
void log_set_fd(int fd);

/*
 * Write one line: "2026-11-26T15:43:07.123Z INFO  engine: message" or
 * {"ts":"…","level":"info","service":"engine","msg":"…"}. JSON output escapes the message.
 */
void log_write(log_level_t level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_debug(...)                                                                             \
    do {                                                                                           \
        if (log_get_level() <= LOG_DEBUG)                                                          \
            log_write(LOG_DEBUG, __VA_ARGS__);                                                     \
    } while (0)
#define log_info(...) log_write(LOG_INFO, __VA_ARGS__)
#define log_warn(...) log_write(LOG_WARN, __VA_ARGS__)
#define log_error(...) log_write(LOG_ERROR, __VA_ARGS__)

/*
 * Format a subject for a log line: "person:110105********002X"; enterprise and vehicle ids are
 * not personal data and are kept whole. type is the jrp.v1.SubjectType number.
 */
const char *log_subject(int type, const char *id, char *buf, size_t size);

#endif
