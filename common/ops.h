/*
 * ops: the operations port every service opens on <service>.listen: GET /healthz (the process
 * runs its loop), GET /readyz (the service says whether it can do its work: Kafka and Redis
 * reachable, assignment received, ...) and GET /metrics (Prometheus text exposition 0.0.4).
 *
 * The service fills the metrics text from its own counters in a callback, with the helpers
 * below; nothing here keeps state between scrapes.
 */
#ifndef JRP_OPS_H
#define JRP_OPS_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

/* A growing text buffer for one /metrics answer. */
typedef struct ops_text_s {
    char *data;
    size_t len, cap;
    int failed; /* out of memory: the scrape answers 500 */
} ops_text_t;

void ops_printf(ops_text_t *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* "# HELP" and "# TYPE" lines, once per metric family. type: "counter", "gauge", "histogram". */
void ops_family(ops_text_t *t, const char *name, const char *type, const char *help);
/* One sample: name{labels} value. labels is NULL or the text between the braces, e.g.
 * "department=\"transport\"". */
void ops_sample(ops_text_t *t, const char *name, const char *labels, double value);
/* Family and one unlabelled sample. */
void ops_counter(ops_text_t *t, const char *name, const char *help, uint64_t value);
void ops_gauge(ops_text_t *t, const char *name, const char *help, double value);

/* A latency histogram with fixed bounds (seconds): 0.5 ms ... 10 s, plus +Inf. */
#define OPS_HISTOGRAM_BUCKETS 14
typedef struct ops_histogram_s {
    uint64_t buckets[OPS_HISTOGRAM_BUCKETS + 1]; /* per bucket, not cumulative; last is +Inf */
    double sum;
    uint64_t count;
} ops_histogram_t;
void ops_histogram_observe(ops_histogram_t *h, double seconds);
/* The _bucket (cumulative), _sum and _count samples; call ops_family(..., "histogram", ...)
 * once before the first series of a family. */
void ops_histogram_write(ops_text_t *t, const char *name, const char *labels,
                         const ops_histogram_t *h);

/* Fill t with the whole /metrics text. */
typedef void ops_metrics_fn(ops_text_t *t, void *arg);
/* NULL when ready; otherwise a short reason, answered with 503. */
typedef const char *ops_ready_fn(void *arg);

typedef struct ops_server_s ops_server_t;

/*
 * Listen on hostport ("host:port"; port 0 picks one) on loop. Either callback may be NULL
 * (/readyz then answers 200; /metrics only the process metrics). NULL with err filled on
 * failure.
 */
ops_server_t *ops_start(uv_loop_t *loop, const char *hostport, ops_metrics_fn *metrics,
                        ops_ready_fn *ready, void *arg, char *err, size_t err_size);
/* The port actually bound. */
int ops_port(const ops_server_t *ops);
/* Close the listener and connections; on_closed (may be NULL) runs once everything is closed
 * and the server is freed. */
void ops_stop(ops_server_t *ops, void (*on_closed)(void *arg), void *arg);

#endif
