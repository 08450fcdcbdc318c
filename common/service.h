/*
 * service: the main() every consuming service (engine, dispatch, ledger) shares: configuration
 * from -c/-o/JRP_*, --help, logging, SIGPIPE ignored, the ops port on <name>.listen (healthz,
 * readyz, metrics), SIGINT/SIGTERM to a graceful stop, and exit 1 at once after a fatal error
 * (offsets and transactions stay where the last commit left them; the restart carries on).
 */
#ifndef JRP_SERVICE_H
#define JRP_SERVICE_H

#include <stddef.h>
#include <uv.h>

#include "config.h"
#include "ops.h"

typedef struct service_def_s {
    const char *name;  /* "ledger": the binary is jrp-ledger, its ops port ledger.listen */
    const char *about; /* the --help lines after the usage line, each ending in '\n' */
    void *(*create)(uv_loop_t *loop, const config_t *cfg, char *errstr, size_t errstr_size);
    int (*start)(void *svc);
    void (*stop)(void *svc, void (*on_stopped)(void *arg), void *arg);
    void (*destroy)(void *svc);
    int (*failed)(const void *svc);
    const char *(*not_ready)(const void *svc);
    void (*write_metrics)(const void *svc, ops_text_t *t);
} service_def_t;

/* Run the service; returns the process's exit code (or does not return after a fatal error). */
int service_main(const service_def_t *def, int argc, char **argv);

/*
 * The typed functions of a service (prefix_create, prefix_start, ...) as a service_def_t's
 * untyped ones: SERVICE_ADAPTERS(ledger, ledger_t) defines ledger__svc_create and the rest, and
 * SERVICE_DEF(ledger, "ledger", about) the definition that uses them.
 */
#define SERVICE_ADAPTERS(prefix, type)                                                             \
    static void *prefix##__svc_create(uv_loop_t *l, const config_t *c, char *e, size_t n)          \
    {                                                                                              \
        return prefix##_create(l, c, e, n);                                                        \
    }                                                                                              \
    static int prefix##__svc_start(void *s)                                                        \
    {                                                                                              \
        return prefix##_start((type *)s);                                                          \
    }                                                                                              \
    static void prefix##__svc_stop(void *s, void (*f)(void *), void *a)                            \
    {                                                                                              \
        prefix##_stop((type *)s, f, a);                                                            \
    }                                                                                              \
    static void prefix##__svc_destroy(void *s)                                                     \
    {                                                                                              \
        prefix##_destroy((type *)s);                                                               \
    }                                                                                              \
    static int prefix##__svc_failed(const void *s)                                                 \
    {                                                                                              \
        return prefix##_failed((const type *)s);                                                   \
    }                                                                                              \
    static const char *prefix##__svc_not_ready(const void *s)                                      \
    {                                                                                              \
        return prefix##_not_ready((const type *)s);                                                \
    }                                                                                              \
    static void prefix##__svc_metrics(const void *s, ops_text_t *t)                                \
    {                                                                                              \
        prefix##_write_metrics((const type *)s, t);                                                \
    }

#define SERVICE_DEF(prefix, name, about)                                                           \
    {                                                                                              \
        name, about, prefix##__svc_create, prefix##__svc_start, prefix##__svc_stop,                \
            prefix##__svc_destroy, prefix##__svc_failed, prefix##__svc_not_ready,                  \
            prefix##__svc_metrics                                                                  \
    }

#endif
