/*
 * topicscan: read a whole topic once, from its beginning (or from a point in time) to the end it
 * had when the scan started, calling back for every committed record. For tools that rebuild a
 * cache from a compacted topic or look through the dead-letter topic: no group is joined and no
 * offset is committed.
 */
#ifndef JRP_TOPICSCAN_H
#define JRP_TOPICSCAN_H

#include <librdkafka/rdkafka.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"

/* Called for each record (tombstones included: m->payload NULL). m is valid only during the
 * call. Return 0 to go on, or a negative value to stop the scan with that value. */
typedef int topicscan_cb(const rd_kafka_message_t *m, void *arg);

typedef struct topicscan_opts_s {
    int64_t since_ms;  /* > 0: start each partition at its first record at or after this time */
    int32_t partition; /* >= 0: only this partition; -1 = every partition */
    int64_t from;      /* with partition >= 0: start at this offset (-1 = the beginning) */
    int64_t max;       /* > 0: stop after this many records */
    int idle_ms;       /* fail when no record arrives for this long (0 = 60 s) */
} topicscan_opts_t;

/* Every partition, from the beginning. */
#define TOPICSCAN_OPTS_INIT                                                                        \
    {                                                                                              \
        0, -1, -1, 0, 0                                                                            \
    }

/*
 * Scan topic (a full name). *n_partitions (may be NULL) receives the topic's partition count.
 * Returns 0 when every partition was read to its end, 1 when the topic does not exist (nothing
 * read), the callback's value when it stopped the scan, or -1 with the reason in errstr.
 */
int topicscan_run(const config_t *cfg, const char *topic, const topicscan_opts_t *opts,
                  topicscan_cb *cb, void *arg, int32_t *n_partitions, char *errstr,
                  size_t errstr_size);

/* The partition count of topic: > 0, 0 when it does not exist, -1 with errstr. */
int32_t topicscan_partitions(rd_kafka_t *rk, const char *topic, char *errstr, size_t errstr_size);

#endif
