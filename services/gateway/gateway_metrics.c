/*
 * gateway_metrics: counters by route and status, a latency histogram per route, and the text
 * Prometheus scrapes from /metrics.
 */
#include "gateway_metrics.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const double metrics_bounds[GATEWAY_METRICS_BUCKETS] = {
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};

void gateway_metrics_request(gateway_metrics_t *m, gateway_route_t route, int status,
                             double seconds)
{
    if (route < 0 || route >= GATEWAY_ROUTE_COUNT)
        route = GATEWAY_ROUTE_NONE;
    /* Slots fill in order of first appearance; the last one (status 0) counts any others. */
    size_t i;
    for (i = 0; i < GATEWAY_METRICS_STATUSES - 1; i++) {
        if (m->requests[route][i].status == status)
            break;
        if (m->requests[route][i].count == 0) {
            m->requests[route][i].status = status;
            break;
        }
    }
    m->requests[route][i].count++;
    size_t b = 0;
    while (b < GATEWAY_METRICS_BUCKETS && seconds > metrics_bounds[b])
        b++;
    m->buckets[route][b]++;
    m->seconds_sum[route] += seconds;
    m->seconds_count[route]++;
}

typedef struct metrics_buf_s {
    char *data;
    size_t len, cap;
    int failed;
} metrics_buf_t;

static void metrics_printf(metrics_buf_t *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void metrics_printf(metrics_buf_t *b, const char *fmt, ...)
{
    if (b->failed)
        return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->data + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->failed = 1;
            return;
        }
        if ((size_t)n < b->cap - b->len) {
            b->len += (size_t)n;
            return;
        }
        size_t cap = b->cap * 2 + (size_t)n;
        char *p = realloc(b->data, cap);
        if (!p) {
            b->failed = 1;
            return;
        }
        b->data = p;
        b->cap = cap;
    }
}

static void metrics_counter(metrics_buf_t *b, const char *name, const char *help, uint64_t v)
{
    metrics_printf(b, "# HELP %s %s\n# TYPE %s counter\n%s %llu\n", name, help, name, name,
                   (unsigned long long)v);
}

static void metrics_gauge(metrics_buf_t *b, const char *name, const char *help, uint64_t v)
{
    metrics_printf(b, "# HELP %s %s\n# TYPE %s gauge\n%s %llu\n", name, help, name, name,
                   (unsigned long long)v);
}

char *gateway_metrics_render(const gateway_metrics_t *m, const gateway_metrics_gauges_t *g,
                             size_t *len)
{
    metrics_buf_t b = {malloc(8192), 0, 8192, 0};
    if (!b.data)
        return NULL;
    b.data[0] = '\0';

    metrics_printf(&b, "# HELP jrp_gateway_requests_total Requests answered by the gateway, by "
                       "route and status.\n# TYPE jrp_gateway_requests_total counter\n");
    for (int r = 0; r < GATEWAY_ROUTE_COUNT; r++)
        for (size_t i = 0; i < GATEWAY_METRICS_STATUSES; i++) {
            if (!m->requests[r][i].count)
                continue;
            char status[16];
            if (m->requests[r][i].status)
                snprintf(status, sizeof(status), "%d", m->requests[r][i].status);
            else
                snprintf(status, sizeof(status), "other");
            metrics_printf(&b, "jrp_gateway_requests_total{route=\"%s\",status=\"%s\"} %llu\n",
                           gateway_api_route_name((gateway_route_t)r), status,
                           (unsigned long long)m->requests[r][i].count);
        }

    metrics_printf(&b, "# HELP jrp_gateway_request_duration_seconds Time from a whole request "
                       "to its answer, by route.\n"
                       "# TYPE jrp_gateway_request_duration_seconds histogram\n");
    for (int r = 0; r < GATEWAY_ROUTE_COUNT; r++) {
        if (!m->seconds_count[r])
            continue;
        const char *name = gateway_api_route_name((gateway_route_t)r);
        uint64_t cum = 0;
        for (size_t k = 0; k < GATEWAY_METRICS_BUCKETS; k++) {
            cum += m->buckets[r][k];
            metrics_printf(&b,
                           "jrp_gateway_request_duration_seconds_bucket{route=\"%s\",le=\"%g\"} "
                           "%llu\n",
                           name, metrics_bounds[k], (unsigned long long)cum);
        }
        cum += m->buckets[r][GATEWAY_METRICS_BUCKETS];
        metrics_printf(
            &b,
            "jrp_gateway_request_duration_seconds_bucket{route=\"%s\",le=\"+Inf\"} %llu\n"
            "jrp_gateway_request_duration_seconds_sum{route=\"%s\"} %.6f\n"
            "jrp_gateway_request_duration_seconds_count{route=\"%s\"} %llu\n",
            name, (unsigned long long)cum, name, m->seconds_sum[r], name,
            (unsigned long long)m->seconds_count[r]);
    }

    metrics_counter(&b, "jrp_gateway_produce_errors_total",
                    "Kafka records the gateway could not queue or the broker did not acknowledge.",
                    m->produce_errors);
    metrics_counter(&b, "jrp_gateway_redis_errors_total",
                    "Redis commands that failed, were refused while disconnected, or answered an "
                    "error.",
                    m->redis_errors);
    metrics_counter(&b, "jrp_gateway_checks_recorded_total",
                    "Credit checks recorded on the checks topic (acknowledged by the broker).",
                    m->checks_recorded);
    metrics_counter(&b, "jrp_gateway_checks_unrecorded_total",
                    "Credit checks answered before their record was acknowledged "
                    "(gateway.check_record = queued) whose record then failed: audit gaps.",
                    m->checks_unrecorded);
    metrics_counter(&b, "jrp_gateway_events_accepted_total",
                    "Credit events acknowledged by the broker.", m->events_accepted);
    metrics_counter(&b, "jrp_gateway_feedback_accepted_total",
                    "Feedback records acknowledged by the broker.", m->feedback_accepted);
    metrics_counter(&b, "jrp_gateway_token_cache_hits_total",
                    "Bearer tokens found in the gateway's short-lived cache.", m->token_cache_hits);
    metrics_counter(&b, "jrp_gateway_token_lookups_total", "Bearer tokens looked up in Redis.",
                    m->token_lookups);
    metrics_counter(&b, "jrp_gateway_answer_cache_hits_total",
                    "Credit checks whose measures were derived before from the same state bytes "
                    "(each one still recorded).",
                    m->answer_cache_hits);
    metrics_counter(&b, "jrp_gateway_request_timeouts_total",
                    "Requests answered 503 because Kafka or Redis did not answer in time.",
                    m->timeouts);
    metrics_counter(&b, "jrp_gateway_kafka_down_refusals_total",
                    "Requests refused at once with 503 while no Kafka broker was reachable.",
                    m->kafka_down_refusals);
    metrics_counter(&b, "jrp_gateway_overload_refusals_total",
                    "Requests refused with 429: too many in flight, or the producer queue full.",
                    m->overload_refusals);

    metrics_gauge(&b, "jrp_gateway_connections_open", "Open API connections.",
                  g->api.connections_open);
    metrics_counter(&b, "jrp_gateway_connections_total", "API connections accepted.",
                    g->api.connections_total);
    metrics_counter(&b, "jrp_gateway_http_rejected_total",
                    "API requests answered by the HTTP layer itself (400, 408, 413, 414, 431, "
                    "503 over max_connections).",
                    g->api.rejected_total);
    if (g->has_ops) {
        metrics_gauge(&b, "jrp_gateway_ops_connections_open", "Open ops-port connections.",
                      g->ops.connections_open);
        metrics_counter(&b, "jrp_gateway_ops_connections_total", "Ops-port connections accepted.",
                        g->ops.connections_total);
    }
    metrics_gauge(&b, "jrp_gateway_requests_in_flight", "API requests waiting for Kafka or Redis.",
                  g->inflight);
    metrics_gauge(&b, "jrp_gateway_kafka_up",
                  "1 unless the gateway knows no Kafka broker is reachable.",
                  (uint64_t)g->kafka_up);
    metrics_gauge(&b, "jrp_gateway_redis_up", "1 while the Redis connection is established.",
                  (uint64_t)g->redis_up);

    if (b.failed) {
        free(b.data);
        return NULL;
    }
    *len = b.len;
    return b.data;
}
