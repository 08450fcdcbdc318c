/*
 * jrp-gateway: HTTP intake of credit events and feedback, and the credit check. See gateway.h.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "gateway.h"
#include "log.h"

extern char **environ;

static uv_signal_t sig_int, sig_term;
static gateway_t *gw;

static void on_stopped(void *arg)
{
    (void)arg;
    uv_close((uv_handle_t *)&sig_int, NULL);
    uv_close((uv_handle_t *)&sig_term, NULL);
}

static void on_signal(uv_signal_t *h, int signum)
{
    (void)h;
    log_info("signal %d: stopping", signum);
    uv_signal_stop(&sig_int);
    uv_signal_stop(&sig_term);
    gateway_stop(gw, on_stopped, NULL);
}

int main(int argc, char **argv)
{
    char err[1024];
    config_t *cfg = config_create();
    if (!cfg || config_from_args(cfg, &argc, argv, environ, err, sizeof(err))) {
        fprintf(stderr, "jrp-gateway: %s\n", cfg ? err : "out of memory");
        config_destroy(cfg);
        return 2;
    }
    if (argc > 1) {
        int help = !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help");
        fprintf(help ? stdout : stderr,
                "usage: jrp-gateway [-c FILE] [-o key=value]...\n"
                "HTTP API: POST /v1/events, GET /v1/subjects/{type}/{id}/measures, POST "
                "/v1/feedback;\nops: /healthz, /readyz, /metrics. Configuration keys: gateway.* "
                "(docs/gateway.md); JRP_* variables apply.\n");
        config_destroy(cfg);
        return help ? 0 : 2;
    }
    log_set_service("gateway");
    log_set_level_name(config_get(cfg, "log.level"));
    log_set_json(!strcmp(config_get(cfg, "log.format"), "json"));
    signal(SIGPIPE, SIG_IGN);

    uv_loop_t *loop = uv_default_loop();
    gw = gateway_create(loop, cfg, err, sizeof(err));
    if (!gw) {
        log_error("cannot start: %s", err);
        uv_run(loop, UV_RUN_DEFAULT); /* let what was opened close */
        (void)uv_loop_close(loop);
        config_destroy(cfg);
        return 1;
    }
    if (uv_signal_init(loop, &sig_int) || uv_signal_init(loop, &sig_term) ||
        uv_signal_start(&sig_int, on_signal, SIGINT) ||
        uv_signal_start(&sig_term, on_signal, SIGTERM)) {
        log_error("cannot install signal handlers");
        _exit(1);
    }
    uv_run(loop, UV_RUN_DEFAULT);
    if (gateway_failed(gw)) {
        /* A fatal Kafka error: exit at once; the supervisor restarts us. */
        log_error("exiting after a fatal error");
        _exit(1);
    }
    gateway_destroy(gw);
    int rc = uv_loop_close(loop) == 0 ? 0 : 1;
    if (rc)
        log_error("the loop still had open handles at exit");
    config_destroy(cfg);
    return rc;
}
