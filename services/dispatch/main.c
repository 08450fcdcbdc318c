/*
 * jrp-dispatch: delivers department actions to their webhooks. See dispatch.h.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "dispatch.h"
#include "log.h"
#include "ops.h"

extern char **environ;

static uv_signal_t sig_int, sig_term;
static dispatch_t *disp;
static ops_server_t *ops;

static void on_stopped(void *arg)
{
    (void)arg;
    uv_close((uv_handle_t *)&sig_int, NULL);
    uv_close((uv_handle_t *)&sig_term, NULL);
    ops_stop(ops, NULL, NULL);
    ops = NULL;
}

static const char *ops_ready(void *arg)
{
    (void)arg;
    return dispatch_not_ready(disp);
}

static void ops_metrics(ops_text_t *t, void *arg)
{
    (void)arg;
    dispatch_write_metrics(disp, t);
}

static void on_signal(uv_signal_t *h, int signum)
{
    (void)h;
    log_info("signal %d: stopping", signum);
    uv_signal_stop(&sig_int);
    uv_signal_stop(&sig_term);
    dispatch_stop(disp, on_stopped, NULL);
}

int main(int argc, char **argv)
{
    char err[1024];
    config_t *cfg = config_create();
    if (!cfg || config_from_args(cfg, &argc, argv, environ, err, sizeof(err))) {
        fprintf(stderr, "jrp-dispatch: %s\n", cfg ? err : "out of memory");
        config_destroy(cfg);
        return 2;
    }
    if (argc > 1) {
        int help = !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help");
        fprintf(help ? stdout : stderr,
                "usage: jrp-dispatch [-c FILE] [-o key=value]...\n"
                "Delivers credit.actions.<department> to each department's webhook.\n"
                "Configuration keys: dispatch.* (see docs/dispatch.md); JRP_* variables apply.\n");
        config_destroy(cfg);
        return help ? 0 : 2;
    }
    log_set_service("dispatch");
    log_set_level_name(config_get(cfg, "log.level"));
    log_set_json(!strcmp(config_get(cfg, "log.format"), "json"));
    signal(SIGPIPE, SIG_IGN);

    uv_loop_t *loop = uv_default_loop();
    disp = dispatch_create(loop, cfg, err, sizeof(err));
    if (!disp) {
        log_error("cannot start: %s", err);
        config_destroy(cfg);
        return 1;
    }
    const char *listen = config_get(cfg, "dispatch.listen");
    ops = ops_start(loop, listen, ops_metrics, ops_ready, NULL, err, sizeof(err));
    if (!ops) {
        log_error("cannot open the ops port dispatch.listen = %s: %s", listen, err);
        dispatch_destroy(disp);
        config_destroy(cfg);
        return 1;
    }
    log_info("ops port %s, bound to port %d (/healthz, /readyz, /metrics)", listen, ops_port(ops));
    uv_signal_init(loop, &sig_int);
    uv_signal_init(loop, &sig_term);
    uv_signal_start(&sig_int, on_signal, SIGINT);
    uv_signal_start(&sig_term, on_signal, SIGTERM);
    if (dispatch_start(disp)) {
        log_error("cannot start the loop");
        _exit(1);
    }
    uv_run(loop, UV_RUN_DEFAULT);
    if (dispatch_failed(disp)) {
        /* Logged where it happened. Offsets stay where the last commit left them: the restarted
         * process re-sends what was not finished, with the same Idempotency-Key. */
        _exit(1);
    }
    dispatch_destroy(disp);
    int rc = uv_loop_close(loop) == 0 ? 0 : 1;
    if (rc)
        log_error("handles left open at exit");
    config_destroy(cfg);
    return rc;
}
