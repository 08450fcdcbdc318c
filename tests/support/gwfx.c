/*
 * gwfx: jrp-gateway in-process for tests. See gwfx.h.
 */
#include "gwfx.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

static void gwfx_on_stopped(void *arg)
{
    gwfx_t *fx = arg;
    uv_close((uv_handle_t *)&fx->wake, NULL);
}

static void gwfx_on_wake(uv_async_t *a)
{
    gwfx_t *fx = a->data;
    gateway_stop(fx->gw, gwfx_on_stopped, fx);
}

static void *gwfx_run(void *arg)
{
    gwfx_t *fx = arg;
    uv_run(&fx->loop, UV_RUN_DEFAULT);
    return NULL;
}

gwfx_t *gwfx_start(const config_t *cfg)
{
    char err[512];
    gwfx_t *fx = calloc(1, sizeof(*fx));
    assert_non_null(fx);
    assert_int_equal(uv_loop_init(&fx->loop), 0);
    fx->gw = gateway_create(&fx->loop, cfg, err, sizeof(err));
    if (!fx->gw)
        fail_msg("gateway_create: %s", err);
    assert_int_equal(uv_async_init(&fx->loop, &fx->wake, gwfx_on_wake), 0);
    fx->wake.data = fx;
    fx->port = gateway_port(fx->gw);
    assert_true(fx->port > 0);
    assert_int_equal(pthread_create(&fx->thread, NULL, gwfx_run, fx), 0);
    return fx;
}

void gwfx_stop(gwfx_t *fx)
{
    assert_int_equal(uv_async_send(&fx->wake), 0);
    assert_int_equal(pthread_join(fx->thread, NULL), 0);
    assert_false(gateway_failed(fx->gw));
    gateway_destroy(fx->gw);
    assert_int_equal(uv_loop_close(&fx->loop), 0);
    free(fx);
}
