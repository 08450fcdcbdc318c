/*
 * ops: /healthz, /readyz and /metrics on a service's <service>.listen, over the common HTTP
 * server. The text helpers write Prometheus exposition format 0.0.4.
 */
#include "ops.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "http.h"

struct ops_server_s {
    http_server_t *http;
    ops_metrics_fn *metrics;
    ops_ready_fn *ready;
    void *arg;
    void (*on_closed)(void *arg);
    void *closed_arg;
};

void ops_printf(ops_text_t *t, const char *fmt, ...)
{
    if (t->failed)
        return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n =
            vsnprintf(t->data ? t->data + t->len : NULL, t->data ? t->cap - t->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0) {
            t->failed = 1;
            return;
        }
        if (t->data && (size_t)n < t->cap - t->len) {
            t->len += (size_t)n;
            return;
        }
        size_t cap = t->cap * 2 + (size_t)n + 256;
        char *p = realloc(t->data, cap);
        if (!p) {
            t->failed = 1;
            return;
        }
        t->data = p;
        t->cap = cap;
    }
}

void ops_family(ops_text_t *t, const char *name, const char *type, const char *help)
{
    ops_printf(t, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* Integers print without a fraction; Prometheus accepts both, people read the first better. */
static void ops_value(ops_text_t *t, double v)
{
    if (isinf(v))
        ops_printf(t, v > 0 ? "+Inf" : "-Inf");
    else if (isnan(v))
        ops_printf(t, "NaN");
    else if (v == floor(v) && fabs(v) < 9.007199254740992e15)
        ops_printf(t, "%.0f", v);
    else
        ops_printf(t, "%.9g", v);
}

void ops_sample(ops_text_t *t, const char *name, const char *labels, double value)
{
    if (labels && *labels)
        ops_printf(t, "%s{%s} ", name, labels);
    else
        ops_printf(t, "%s ", name);
    ops_value(t, value);
    ops_printf(t, "\n");
}

void ops_counter(ops_text_t *t, const char *name, const char *help, uint64_t value)
{
    ops_family(t, name, "counter", help);
    ops_printf(t, "%s %llu\n", name, (unsigned long long)value);
}

void ops_gauge(ops_text_t *t, const char *name, const char *help, double value)
{
    ops_family(t, name, "gauge", help);
    ops_sample(t, name, NULL, value);
}

static const double ops_bounds[OPS_HISTOGRAM_BUCKETS] = {
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};

void ops_histogram_observe(ops_histogram_t *h, double seconds)
{
    size_t b = 0;
    while (b < OPS_HISTOGRAM_BUCKETS && seconds > ops_bounds[b])
        b++;
    h->buckets[b]++;
    h->sum += seconds;
    h->count++;
}

void ops_histogram_write(ops_text_t *t, const char *name, const char *labels,
                         const ops_histogram_t *h)
{
    const char *sep = labels && *labels ? "," : "";
    const char *lab = labels ? labels : "";
    uint64_t cum = 0;
    for (size_t b = 0; b <= OPS_HISTOGRAM_BUCKETS; b++) {
        cum += h->buckets[b];
        if (b < OPS_HISTOGRAM_BUCKETS)
            ops_printf(t, "%s_bucket{%s%sle=\"%g\"} %llu\n", name, lab, sep, ops_bounds[b],
                       (unsigned long long)cum);
        else
            ops_printf(t, "%s_bucket{%s%sle=\"+Inf\"} %llu\n", name, lab, sep,
                       (unsigned long long)cum);
    }
    char series[256];
    snprintf(series, sizeof(series), "%s_sum", name);
    ops_sample(t, series, labels, h->sum);
    snprintf(series, sizeof(series), "%s_count", name);
    ops_sample(t, series, labels, (double)h->count);
}

/* Resident set size from /proc/self/statm, in bytes; 0 if unknown. */
static uint64_t ops_rss_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f)
        return 0;
    unsigned long size = 0, resident = 0;
    int n = fscanf(f, "%lu %lu", &size, &resident);
    fclose(f);
    return n == 2 ? (uint64_t)resident * (uint64_t)sysconf(_SC_PAGESIZE) : 0;
}

static void ops_handle(http_request_t *req, void *arg)
{
    ops_server_t *ops = arg;
    const char *method = http_request_method(req);
    const char *path = http_request_path(req);
    int get = strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0;
    int known = strcmp(path, "/healthz") == 0 || strcmp(path, "/readyz") == 0 ||
                strcmp(path, "/metrics") == 0;
    if (!known) {
        http_respond_error(req, 404, "not_found", "no such path on the ops port", NULL);
        return;
    }
    if (!get) {
        http_respond_error(req, 405, "method_not_allowed", "the ops port answers GET only", NULL);
        return;
    }
    if (strcmp(path, "/healthz") == 0) {
        http_respond(req, 200, "text/plain; charset=utf-8", "ok\n", 3, NULL);
        return;
    }
    if (strcmp(path, "/readyz") == 0) {
        const char *why = ops->ready ? ops->ready(ops->arg) : NULL;
        if (why) {
            char body[512];
            int n = snprintf(body, sizeof(body), "not ready: %s\n", why);
            http_respond(req, 503, "text/plain; charset=utf-8", body,
                         n < (int)sizeof(body) ? (size_t)n : sizeof(body) - 1, NULL);
        } else {
            http_respond(req, 200, "text/plain; charset=utf-8", "ready\n", 6, NULL);
        }
        return;
    }
    ops_text_t t = {0};
    if (ops->metrics)
        ops->metrics(&t, ops->arg);
    ops_gauge(&t, "process_resident_memory_bytes", "Resident memory size in bytes.",
              (double)ops_rss_bytes());
    if (t.failed)
        http_respond_error(req, 500, "internal", "out of memory writing metrics", NULL);
    else
        http_respond(req, 200, "text/plain; version=0.0.4; charset=utf-8", t.data, t.len, NULL);
    free(t.data);
}

ops_server_t *ops_start(uv_loop_t *loop, const char *hostport, ops_metrics_fn *metrics,
                        ops_ready_fn *ready, void *arg, char *err, size_t err_size)
{
    char host[256];
    const char *colon = strrchr(hostport, ':');
    char *end = NULL;
    long port = colon ? strtol(colon + 1, &end, 10) : -1;
    if (!colon || colon == hostport || (size_t)(colon - hostport) >= sizeof(host) || !end || *end ||
        end == colon + 1 || port < 0 || port > 65535) {
        snprintf(err, err_size, "bad listen address \"%s\": want host:port", hostport);
        return NULL;
    }
    memcpy(host, hostport, (size_t)(colon - hostport));
    host[colon - hostport] = '\0';
    ops_server_t *ops = calloc(1, sizeof(*ops));
    if (!ops) {
        snprintf(err, err_size, "out of memory");
        return NULL;
    }
    ops->metrics = metrics;
    ops->ready = ready;
    ops->arg = arg;
    http_limits_t limits;
    http_limits_default(&limits);
    limits.max_body_bytes = 1024;
    limits.max_connections = 64;
    ops->http = http_server_create(loop, host, (int)port, &limits, ops_handle, ops, err, err_size);
    if (!ops->http) {
        free(ops);
        return NULL;
    }
    return ops;
}

int ops_port(const ops_server_t *ops)
{
    return http_server_port(ops->http);
}

static void ops_closed(void *arg)
{
    ops_server_t *ops = arg;
    if (ops->on_closed)
        ops->on_closed(ops->closed_arg);
    free(ops);
}

void ops_stop(ops_server_t *ops, void (*on_closed)(void *arg), void *arg)
{
    if (!ops)
        return;
    ops->on_closed = on_closed;
    ops->closed_arg = arg;
    http_server_close(ops->http, ops_closed, ops);
}
