/*
 * kafka: the librdkafka plumbing every service shares. Clients built from the config table
 * (every kafka.* key passed through) with jrp's safe defaults; produce with the contract's
 * headers; transactional helpers that sort errors into retriable, abortable and fatal; topic
 * creation through the admin API; and a libuv bridge that wakes the loop when a queue has events.
 */
#ifndef JRP_KAFKA_H
#define JRP_KAFKA_H

#include <librdkafka/rdkafka.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "config.h"

/*
 * The configuration every jrp producer starts from: linger.ms 5, lz4, retry.backoff.ms 10 when
 * transactional; then extra (the caller's own defaults, "key", "value", ..., NULL; may be NULL);
 * then the configured kafka.* keys, which may override both; then, forced, enable.idempotence,
 * acks=all, the murmur2_random partitioner (records land where the Java client puts them) and
 * the transactional id and timeout. The caller adds its callbacks and calls rd_kafka_new. NULL
 * with the reason in errstr (docs/operations.md, "Kafka client settings").
 */
rd_kafka_conf_t *kafka_producer_conf(const config_t *cfg, const char *const *extra,
                                     const char *transactional_id, int transaction_timeout_ms,
                                     char *errstr, size_t errstr_size);

/* rd_kafka_init_transactions; 0, or -1 with the reason. */
int kafka_init_transactions(rd_kafka_t *rk, int timeout_ms, char *errstr, size_t errstr_size);

/*
 * The same for consumers: auto.offset.reset earliest, session.timeout.ms 10000, prefetch bounded
 * by bytes and by count; extra; kafka.*; forced: the group and instance (NULL: dynamic
 * membership), no automatic commit or offset store, the eager assignors and the isolation level.
 */
rd_kafka_conf_t *kafka_consumer_conf(const config_t *cfg, const char *const *extra,
                                     const char *group_id, const char *group_instance_id,
                                     int read_uncommitted, char *errstr, size_t errstr_size);

/*
 * A producer with enable.idempotence=true and acks=all. With transactional_id set it is
 * transactional and init_transactions has completed (fencing any predecessor with that id).
 * Returns the handle or NULL with the reason in errstr.
 */
rd_kafka_t *kafka_producer_create(const config_t *cfg, const char *transactional_id,
                                  int transaction_timeout_ms, char *errstr, size_t errstr_size);

/*
 * A consumer in group_id (group_instance_id may be NULL for dynamic membership) with
 * enable.auto.commit=false, auto.offset.reset=earliest, the eager range,roundrobin assignors
 * (cooperative-sticky misbehaves on librdkafka 2.0.2) and isolation.level read_committed unless
 * read_uncommitted is non-zero. Its main queue is redirected to the consumer queue.
 */
rd_kafka_t *kafka_consumer_create(const config_t *cfg, const char *group_id,
                                  const char *group_instance_id, int read_uncommitted, char *errstr,
                                  size_t errstr_size);

/*
 * A reader: a read_committed consumer for rd_kafka_assign() (never subscribes, never commits)
 * that reports RD_KAFKA_RESP_ERR__PARTITION_EOF at the end of each partition. Assign it explicit
 * offsets (the low watermark rather than RD_KAFKA_OFFSET_BEGINNING): on librdkafka 2.0.2 a
 * logical offset can wait 500 ms for its offset query.
 */
rd_kafka_t *kafka_reader_create(const config_t *cfg, char *errstr, size_t errstr_size);

/* rd_kafka_query_watermark_offsets, except that a partition with no leader known yet (just
 * created, or its leader moving) is asked again every 100 ms until timeout_ms has passed. */
rd_kafka_resp_err_t kafka_watermarks(rd_kafka_t *rk, const char *topic, int32_t partition,
                                     int64_t *lo, int64_t *hi, int timeout_ms);

/*
 * rd_kafka_assign(parts) with each RD_KAFKA_OFFSET_BEGINNING replaced by the partition's low
 * watermark first (kafka_reader_create says why). 0, or -1 with the reason.
 */
int kafka_assign_explicit(rd_kafka_t *rk, rd_kafka_topic_partition_list_t *parts, int timeout_ms,
                          char *errstr, size_t errstr_size);

/* Headers of the contract: jrp-schema always, traceparent when given. Caller owns the result
 * until it is handed to kafka_produce. */
rd_kafka_headers_t *kafka_headers(const char *schema, const char *traceparent);

/*
 * Produce one record (value copied). Takes ownership of hdrs (also on failure). msg_opaque is
 * passed to the delivery report. Returns RD_KAFKA_RESP_ERR_NO_ERROR or the error.
 */
rd_kafka_resp_err_t kafka_produce(rd_kafka_t *rk, const char *topic, int32_t partition,
                                  const void *key, size_t key_len, const void *value,
                                  size_t value_len, rd_kafka_headers_t *hdrs, void *msg_opaque);

/* How to react to a transactional error (librdkafka's examples/transactions.c). */
/*
 * Produce one record (key partitioned like the Java client, murmur2) through a short-lived
 * idempotent producer and wait until the broker acknowledged it or timeout_ms passed. For tools
 * that write a single record (a token, a check). 0, or -1 with the reason in errstr.
 */
int kafka_produce_one(const config_t *cfg, const char *topic, const char *key, const void *value,
                      size_t value_len, const char *schema, int timeout_ms, char *errstr,
                      size_t errstr_size);

typedef enum {
    KAFKA_ERR_OK = 0,
    KAFKA_ERR_RETRIABLE, /* call the same operation again */
    KAFKA_ERR_ABORT,     /* abort the transaction and redo the batch from the committed offsets */
    KAFKA_ERR_FATAL,     /* the producer is unusable: exit non-zero, the supervisor restarts us */
} kafka_err_class_t;

/* Classify and destroy error (NULL = OK); writes its text into errstr. */
kafka_err_class_t kafka_error_classify(rd_kafka_error_t *error, char *errstr, size_t errstr_size);

/*
 * Commit the open transaction, with the consumer's current positions as its input offsets when
 * consumer is not NULL. Retries retriable errors until timeout_ms. Returns the class of the
 * final error (KAFKA_ERR_OK on success); on KAFKA_ERR_ABORT the caller aborts and rewinds.
 */
kafka_err_class_t kafka_txn_commit(rd_kafka_t *producer, rd_kafka_t *consumer, int timeout_ms,
                                   char *errstr, size_t errstr_size);

/*
 * The same with explicit input offsets (the next offset to read per partition) and the group's
 * metadata; both NULL commits without offsets. Safe to call from a thread other than the one
 * producing, as long as nothing is produced meanwhile.
 */
kafka_err_class_t kafka_txn_commit_offsets(rd_kafka_t *producer,
                                           const rd_kafka_topic_partition_list_t *offsets,
                                           const rd_kafka_consumer_group_metadata_t *cgmd,
                                           int timeout_ms, char *errstr, size_t errstr_size);

/* The first half of kafka_txn_commit_offsets: the input offsets alone, into the open
 * transaction (retriable errors retried until timeout_ms; KAFKA_ERR_ABORT if they persist). */
kafka_err_class_t kafka_txn_send_offsets(rd_kafka_t *producer,
                                         const rd_kafka_topic_partition_list_t *offsets,
                                         const rd_kafka_consumer_group_metadata_t *cgmd,
                                         int timeout_ms, char *errstr, size_t errstr_size);

/* Abort the open transaction; KAFKA_ERR_OK or KAFKA_ERR_FATAL. */
kafka_err_class_t kafka_txn_abort(rd_kafka_t *producer, int timeout_ms, char *errstr,
                                  size_t errstr_size);

/*
 * Rewind the consumer's assigned partitions to the group's committed offsets (after an abort).
 * 0 or -1.
 */
int kafka_rewind_to_committed(rd_kafka_t *consumer, int timeout_ms, char *errstr,
                              size_t errstr_size);

/* A topic to create: name, partitions, and optional config pairs ("cleanup.policy", "compact"). */
typedef struct kafka_topic_spec_s {
    const char *name;
    int partitions;
    int replication_factor;    /* -1 = broker default */
    const char *const *config; /* NULL-terminated key, value, key, value, ... or NULL */
} kafka_topic_spec_t;

/* Create the topics that do not exist yet (existing ones are left as they are). 0 or -1. */
int kafka_topics_ensure(rd_kafka_t *rk, const kafka_topic_spec_t *specs, size_t n, int timeout_ms,
                        char *errstr, size_t errstr_size);

/*
 * libuv bridge: when queue receives events, librdkafka writes to a pipe watched by a uv_poll_t,
 * and on_ready(arg) runs on the loop to poll the queue. The bridge does not own the queue.
 */
typedef struct kafka_uv_s kafka_uv_t;
kafka_uv_t *kafka_uv_create(uv_loop_t *loop, rd_kafka_queue_t *queue, void (*on_ready)(void *arg),
                            void *arg);
/* Make on_ready run again on a next turn of the loop, after the timers and sockets due: for a
 * callback that stopped with events still queued (librdkafka wakes the pipe only when the queue
 * goes from empty to non-empty). */
void kafka_uv_kick(kafka_uv_t *ku);
/* Disable the queue's io events and close the handle; freed in its close callback. */
void kafka_uv_destroy(kafka_uv_t *ku);

#endif
