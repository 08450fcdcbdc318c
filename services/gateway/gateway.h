/*
 * gateway: jrp's HTTP front door, on the caller's libuv loop. Departments that are not on Kafka
 * send credit events and feedback through it, and every service counter asks it which measures
 * apply to a subject now (the credit check), each check recorded on the checks topic before it
 * is answered. Bearer tokens from `jrpctl token create`, looked up by their SHA-256 in Redis.
 * Kafka through an idempotent producer polled from the loop, Redis through the asynchronous
 * client, so neither ever blocks another request. The API is in docs/gateway.md.
 */
#ifndef JRP_GATEWAY_H
#define JRP_GATEWAY_H

#include <stddef.h>
#include <uv.h>

#include "config.h"
#include "gateway_metrics.h"

typedef struct gateway_s gateway_t;

/*
 * Create the gateway on loop and start serving: listen on gateway.listen (and gateway.ops_listen
 * when set), create the producer and the Redis client (which connects by itself, with backoff:
 * /readyz says when everything is reachable). cfg must outlive the gateway. Returns NULL with the
 * reason in errstr; the loop must then run once more to release what was opened.
 */
gateway_t *gateway_create(uv_loop_t *loop, const config_t *cfg, char *errstr, size_t errstr_size);

/* The ports actually bound (useful with port 0); the ops port is the API port when shared. */
int gateway_port(const gateway_t *gw);
int gateway_ops_port(const gateway_t *gw);

/*
 * Stop gracefully: stop accepting, let every request in flight get its answer, flush the
 * producer, disconnect Redis, close every handle. on_stopped(arg) runs once the loop holds
 * nothing of the gateway. Call once.
 */
void gateway_stop(gateway_t *gw, void (*on_stopped)(void *arg), void *arg);

/* Free everything, after gateway_stop completed. Accepts NULL. */
void gateway_destroy(gateway_t *gw);

/* Non-zero after a fatal Kafka error: the gateway stopped the loop; exit non-zero. */
int gateway_failed(const gateway_t *gw);

/* A copy of the counters (tests and logs). */
void gateway_get_metrics(const gateway_t *gw, gateway_metrics_t *out);

#endif
