/*
 * harness: what end-to-end tests need around real Kafka and Redis: a private namespace (topic and
 * key prefixes, engine instance and group) written to a config file, jrpctl and jrp-engine run as
 * subprocesses, events produced as a source department would, and topics read back as a
 * read_committed department consumer sees them.
 */
#ifndef JRP_HARNESS_H
#define JRP_HARNESS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "config.h"
#include "jrp/v1/action.pb-c.h"
#include "jrp/v1/alert.pb-c.h"
#include "jrp/v1/decision.pb-c.h"
#include "jrp/v1/event.pb-c.h"

typedef struct harness_s {
    char name[96]; /* unique: used as topic prefix, Redis prefix, instance and group */
    char conf_path[256];
    config_t *cfg; /* the same settings, for in-process clients */
    pid_t engine_pid;
    char engine_log[256];
} harness_t;

/* A new namespace; extra is NULL or "key = value\n" lines appended to the config. Fails the test
 * when the local servers are not configured. */
harness_t *harness_create(const char *tag, const char *extra);
/* Stops the engine (SIGTERM) if running and frees. */
void harness_destroy(harness_t *h);

/* Run "$JRP_BIN/jrpctl <args> -c conf"; returns the exit code; output into out (may be NULL). */
int harness_jrpctl(harness_t *h, char *out, size_t out_size, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Load $JRP_ROOT/deploy/rules (or dir) as a new active version; fails the test on error. */
void harness_load_rules(harness_t *h, const char *dir);

/* Start jrp-engine; harness_engine_signal sends sig and waits for the exit (SIGKILL: at once). */
void harness_engine_start(harness_t *h);
int harness_engine_signal(harness_t *h, int sig);

/*
 * Start another service binary from $JRP_BIN (e.g. "jrp-dispatch") with -c conf plus extra
 * arguments (NULL-terminated, may be none); its output is appended to log_path (NULL: the
 * engine log). The child dies with the test. Stop it with harness_service_stop.
 */
pid_t harness_service_start(harness_t *h, const char *binary, const char *log_path, ...);
/* Send sig and wait up to 30 s for the exit (then SIGKILL); returns the exit code or 128+sig. */
int harness_service_stop(pid_t pid, int sig);
/*
 * The ops port a service bound (its log says "bound to port N"), waiting up to timeout_ms for
 * the line; -1 if it never came. log_path NULL: the engine log.
 */
int harness_log_port(harness_t *h, const char *log_path, int timeout_ms);
/* GET http://127.0.0.1:port/path; the status (-1 if no answer) and the body into out. */
int harness_http_get(int port, const char *path, char *out, size_t out_size);
/* The same with request headers: NULL or "Name: value\r\n" lines. */
int harness_http_get_headers(int port, const char *path, const char *headers, char *out,
                             size_t out_size);
/* Produce events as protobuf, keyed by subject key (murmur2), and wait for acknowledgement. */
void harness_send(harness_t *h, Jrp__V1__CreditEvent **events, size_t n);
/* The same at per_second events a second, from one producer: a steady stream. */
void harness_send_paced(harness_t *h, Jrp__V1__CreditEvent **events, size_t n, int per_second);
/* Produce raw bytes with a key to the events topic (for dead-letter tests). */
void harness_send_raw(harness_t *h, const char *key, const void *value, size_t len);

/* Build an event (strings copied; free with jrp__v1__credit_event__free_unpacked). */
Jrp__V1__CreditEvent *harness_event(const char *event_id, Jrp__V1__EventKind kind,
                                    Jrp__V1__SubjectType type, const char *id,
                                    const char *list_code, int64_t occurred_at_ms);

/* Records read from a topic (read_committed, from the beginning). */
typedef struct harness_records_s {
    size_t n;
    char **keys;
    void **values; /* decoded messages (Action, Decision, ...) or raw bytes if desc was NULL */
    size_t *lens;
    char **header_dump; /* "name=value;..." per record */
} harness_records_t;

/*
 * Read suffix (e.g. "actions.transport") until at least min records arrived and then quiet_ms pass
 * with nothing new (quiet_ms 0: return as soon as min arrived), or timeout_ms in all. desc
 * decodes values (NULL keeps raw bytes).
 */
void harness_read(harness_t *h, const char *suffix, const void *desc, size_t min, int quiet_ms,
                  int timeout_ms, harness_records_t *out);
void harness_records_free(harness_records_t *r, const void *desc);

/* Wait until decisions for at least n events are committed; returns the count seen then (it
 * does not wait for more: use harness_read with a quiet period to check nothing follows). */
size_t harness_wait_decisions(harness_t *h, size_t n, int timeout_ms);

/* Wall-clock ms. */
int64_t harness_now_ms(void);

#endif
