/*
 * topicdrop: delete every topic whose name starts with a prefix, through librdkafka's admin API.
 * For tests and benchmarks, which work in a namespace of their own (topic.prefix) and must not
 * leave it behind: a long-lived broker otherwise accumulates partitions until its heap runs out.
 */
#ifndef JRP_TOPICDROP_H
#define JRP_TOPICDROP_H

#include <stddef.h>

#include "config.h"

/* Delete the topics of cfg's brokers named prefix*, waiting up to timeout_ms for the brokers'
 * answer. Returns how many were asked to go, or -1 with errstr (an empty prefix is refused). */
int topicdrop_prefix(const config_t *cfg, const char *prefix, int timeout_ms, char *errstr,
                     size_t errstr_size);

#endif
