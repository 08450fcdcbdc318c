/*
 * gateway_metrics: the gateway's counters and their Prometheus text exposition. Plain counters
 * updated on the loop thread; rendering reads them on the same thread, so no locking.
 */
#ifndef JRP_GATEWAY_METRICS_H
#define JRP_GATEWAY_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "gateway_api.h"
#include "http.h"

/* Distinct statuses counted per route; more are counted under the last slot's status 0. */
#define GATEWAY_METRICS_STATUSES 16
/* Upper bounds of the latency histogram, in seconds (+Inf is implied). */
#define GATEWAY_METRICS_BUCKETS 14

typedef struct gateway_metrics_s {
    struct {
        int status;
        uint64_t count;
    } requests[GATEWAY_ROUTE_COUNT][GATEWAY_METRICS_STATUSES];
    uint64_t buckets[GATEWAY_ROUTE_COUNT][GATEWAY_METRICS_BUCKETS + 1]; /* last: +Inf */
    double seconds_sum[GATEWAY_ROUTE_COUNT];
    uint64_t seconds_count[GATEWAY_ROUTE_COUNT];

    uint64_t produce_errors;      /* records not delivered or not queued */
    uint64_t redis_errors;        /* commands that failed or answered an error */
    uint64_t checks_recorded;     /* CheckRecords acknowledged by the broker */
    uint64_t checks_unrecorded;   /* checks answered (check_record = queued) but not recorded */
    uint64_t events_accepted;     /* events acknowledged by the broker */
    uint64_t feedback_accepted;   /* feedback acknowledged by the broker */
    uint64_t token_cache_hits;    /* token lookups answered from the cache */
    uint64_t token_lookups;       /* token lookups that went to Redis */
    uint64_t answer_cache_hits;   /* credit checks answered with measures derived before */
    uint64_t timeouts;            /* requests answered 503 at gateway.request_timeout_ms */
    uint64_t kafka_down_refusals; /* requests refused at once while Kafka was known down */
    uint64_t overload_refusals;   /* 429s: too many requests in flight or producer queue full */
} gateway_metrics_t;

/* Count one answered request of route with status, which took seconds. */
void gateway_metrics_request(gateway_metrics_t *m, gateway_route_t route, int status,
                             double seconds);

/* The gauges and server counters shown beside the counters. */
typedef struct gateway_metrics_gauges_s {
    http_stats_t api;
    http_stats_t ops; /* zero when the ops routes share the API port */
    int has_ops;
    uint64_t inflight;
    int kafka_up;
    int redis_up;
} gateway_metrics_gauges_t;

/* Prometheus text (version 0.0.4). Returns a new string (free()) and its length, or NULL. */
char *gateway_metrics_render(const gateway_metrics_t *m, const gateway_metrics_gauges_t *g,
                             size_t *len);

#endif
