/*
 * log: one line per call, plain text or JSON, written with a single write() so that lines from
 * concurrent threads or processes sharing the fd do not interleave. Messages are escaped in both
 * modes: a newline inside a message (say from a decoded field) can never forge a second line.
 */
#include "log.h"

#include "ids.h"

#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#define LOG_LINE_MAX 8192 /* a longer line is truncated, still well formed */
#define LOG_MSG_MAX 4096
#define LOG_SERVICE_MAX 64

/*
 * The level and fd are atomics because any thread may log while another reconfigures; the
 * service name is set once at start-up, before threads, and is only read afterwards.
 */
static atomic_int log__level = LOG_INFO;
static atomic_int log__json = 0;
static atomic_int log__fd = STDERR_FILENO;
static char log__service[LOG_SERVICE_MAX] = "jrp";

static const char *const log__names[] = {"debug", "info", "warn", "error", "fatal"};
static const char *const log__upper[] = {"DEBUG", "INFO", "WARN", "ERROR", "FATAL"};

void log_set_level(log_level_t level)
{
    if (level < LOG_DEBUG)
        level = LOG_DEBUG;
    if (level > LOG_FATAL)
        level = LOG_FATAL;
    atomic_store(&log__level, (int)level);
}

log_level_t log_get_level(void)
{
    return (log_level_t)atomic_load(&log__level);
}

/* Case-insensitive, since levels usually come from environment variables typed by hand. */
int log_set_level_name(const char *name)
{
    if (!name)
        return -1;
    for (int l = LOG_DEBUG; l <= LOG_ERROR; l++) {
        if (strcasecmp(name, log__names[l]) == 0) {
            log_set_level((log_level_t)l);
            return 0;
        }
    }
    return -1;
}

void log_set_json(int json)
{
    atomic_store(&log__json, json ? 1 : 0);
}

void log_set_service(const char *service)
{
    snprintf(log__service, sizeof(log__service), "%s", service && service[0] ? service : "jrp");
}

/* A negative fd means stderr again. */
void log_set_fd(int fd)
{
    atomic_store(&log__fd, fd < 0 ? STDERR_FILENO : fd);
}

/* Output under construction: appends stop at cap - 1 so the line always ends in "\n" or "}\n". */
typedef struct {
    char *buf;
    size_t len;
    size_t cap;
} log__out_t;

static int log__put(log__out_t *o, const char *s, size_t n)
{
    if (o->len + n > o->cap)
        return -1;
    memcpy(o->buf + o->len, s, n);
    o->len += n;
    return 0;
}

static int log__puts(log__out_t *o, const char *s)
{
    return log__put(o, s, strlen(s));
}

/* Length of the valid UTF-8 sequence at s (n bytes left), or 0 if it is not valid UTF-8. */
static size_t log__utf8_len(const unsigned char *s, size_t n)
{
    size_t len;
    unsigned min;
    unsigned cp;
    if (s[0] < 0x80) {
        return 1;
    } else if ((s[0] & 0xE0) == 0xC0) {
        len = 2;
        min = 0x80;
        cp = s[0] & 0x1F;
    } else if ((s[0] & 0xF0) == 0xE0) {
        len = 3;
        min = 0x800;
        cp = s[0] & 0x0F;
    } else if ((s[0] & 0xF8) == 0xF0) {
        len = 4;
        min = 0x10000;
        cp = s[0] & 0x07;
    } else {
        return 0;
    }
    if (len > n)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    /* Overlong forms, surrogates and code points past U+10FFFF are not valid UTF-8. */
    if (cp < min || (cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF)
        return 0;
    return len;
}

/* Drop a UTF-8 sequence cut short at the end of s (by truncation), so it is not shown as junk. */
static void log__trim_utf8(char *s)
{
    size_t end = strlen(s), k = end;
    while (k > 0 && end - k < 3 && ((unsigned char)s[k - 1] & 0xC0) == 0x80)
        k--;
    if (k > 0 && (unsigned char)s[k - 1] >= 0xC0 &&
        log__utf8_len((const unsigned char *)s + k - 1, end - k + 1) == 0)
        s[k - 1] = '\0';
}

/*
 * Append s escaped. JSON: quotes, backslashes and control characters escaped, invalid UTF-8
 * replaced by U+FFFD, since a JSON parser rejects the whole line otherwise. Plain: control
 * characters and invalid UTF-8 written as \n, \t, \xNN so one call stays one line of text.
 * Stops before an escape or a character that does not fit, never cutting one in half.
 */
static void log__escape(log__out_t *o, const char *s, int json)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t n = strlen(s);
    char tmp[8];
    for (size_t i = 0; i < n;) {
        unsigned char c = p[i];
        const char *rep = NULL;
        size_t step = 1;
        if (c == '\n')
            rep = "\\n";
        else if (c == '\r')
            rep = "\\r";
        else if (c == '\t')
            rep = "\\t";
        else if (json && c == '"')
            rep = "\\\"";
        else if (json && c == '\\')
            rep = "\\\\";
        else if (c < 0x20 || c == 0x7f) {
            snprintf(tmp, sizeof(tmp), json ? "\\u%04x" : "\\x%02x", c);
            rep = tmp;
        } else if (c >= 0x80) {
            step = log__utf8_len(p + i, n - i);
            if (step == 0) {
                snprintf(tmp, sizeof(tmp), json ? "\\ufffd" : "\\x%02x", c);
                rep = tmp;
                step = 1;
            }
        }
        int rc = rep ? log__puts(o, rep) : log__put(o, (const char *)p + i, step);
        if (rc < 0)
            return;
        i += step;
    }
}

/* "2026-11-26T15:43:07.123Z" in UTC. */
static void log__timestamp(char *buf, size_t size)
{
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    size_t n = strftime(buf, size, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf + n, size - n, ".%03dZ", (int)(ts.tv_nsec / 1000000L) % 1000);
}

static void log__write_all(int fd, const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, buf, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return; /* nowhere to report a failure to log */
        }
        buf += n;
        len -= (size_t)n;
    }
}

void log_write(log_level_t level, const char *fmt, ...)
{
    if (level < LOG_DEBUG || level > LOG_FATAL || (int)level < atomic_load(&log__level))
        return;
    int saved_errno = errno; /* callers log errno-dependent messages and then look at errno */

    char msg[LOG_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    int full = vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (full >= (int)sizeof(msg))
        log__trim_utf8(msg);

    char ts[32];
    log__timestamp(ts, sizeof(ts));

    char line[LOG_LINE_MAX];
    int json = atomic_load(&log__json);
    /* Reserve room for the closing "\"}\n" or "\n", which are appended whatever happens. */
    log__out_t o = {line, 0, sizeof(line) - 4};
    if (json) {
        log__puts(&o, "{\"ts\":\"");
        log__puts(&o, ts);
        log__puts(&o, "\",\"level\":\"");
        log__puts(&o, log__names[level]);
        log__puts(&o, "\",\"service\":\"");
        log__escape(&o, log__service, 1);
        log__puts(&o, "\",\"msg\":\"");
        log__escape(&o, msg, 1);
        o.cap = sizeof(line);
        log__puts(&o, "\"}\n");
    } else {
        char head[96];
        snprintf(head, sizeof(head), "%s %-5s ", ts, log__upper[level]);
        log__puts(&o, head);
        log__escape(&o, log__service, 0);
        log__puts(&o, ": ");
        log__escape(&o, msg, 0);
        o.cap = sizeof(line);
        log__puts(&o, "\n");
    }
    log__write_all(atomic_load(&log__fd), line, o.len);
    errno = saved_errno;
}

/* Unknown types are masked too: when in doubt an id is treated as personal data. */
const char *log_subject(int type, const char *id, char *buf, size_t size)
{
    if (!buf || size == 0)
        return "";
    char masked[64];
    const char *shown = id ? id : "";
    if (type != IDS_SUBJECT_ENTERPRISE && type != IDS_SUBJECT_VEHICLE) {
        ids_mask(shown, masked, sizeof(masked));
        shown = masked;
    }
    snprintf(buf, size, "%s:%s", ids_subject_type_name((ids_subject_type_t)type), shown);
    return buf;
}
