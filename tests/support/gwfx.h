/*
 * gwfx: jrp-gateway in-process for integration tests, on its own libuv loop in a thread, so a
 * test can call it over real sockets and stop it gracefully (checking nothing is left open).
 */
#ifndef JRP_GWFX_H
#define JRP_GWFX_H

#include <pthread.h>
#include <uv.h>

#include "config.h"
#include "gateway.h"

typedef struct gwfx_s {
    uv_loop_t loop;
    uv_async_t wake;
    gateway_t *gw;
    pthread_t thread;
    int port; /* the API port it bound */
} gwfx_t;

/* Create the gateway from cfg (which must outlive it) and run it; fails the test on error. */
gwfx_t *gwfx_start(const config_t *cfg);
/* Stop gracefully, join, and check that the loop closes with nothing left open. */
void gwfx_stop(gwfx_t *fx);

#endif
