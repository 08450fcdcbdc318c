/*
 * jrp-engine: turns credit events into department actions, exactly once. See engine.h.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "engine.h"
#include "log.h"
#include "ops.h"

extern char **environ;

static uv_signal_t sig_int, sig_term;
static engine_t *eng;
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
    return engine_not_ready(eng);
}

static void ops_metrics(ops_text_t *t, void *arg)
{
    (void)arg;
    engine_write_metrics(eng, t);
}

static void on_signal(uv_signal_t *h, int signum)
{
    log_info("signal %d: stopping", signum);
    uv_signal_stop(&sig_int);
    uv_signal_stop(&sig_term);
    (void)h;
    engine_stop(eng, on_stopped, NULL);
}

int main(int argc, char **argv)
{
    char err[1024];
    config_t *cfg = config_create();
    if (!cfg || config_from_args(cfg, &argc, argv, environ, err, sizeof(err))) {
        fprintf(stderr, "jrp-engine: %s\n", cfg ? err : "out of memory");
        return 2;
    }
    if (argc > 1) {
        int help = !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help");
        fprintf(help ? stdout : stderr,
                "usage: jrp-engine [-c FILE] [-o key=value]...\n"
                "Consumes credit.events and writes department actions, decisions and state.\n"
                "Configuration keys: engine.* (see docs/operations.md); JRP_* variables apply.\n");
        config_destroy(cfg);
        return help ? 0 : 2;
    }
    log_set_service("engine");
    log_set_level_name(config_get(cfg, "log.level"));
    log_set_json(!strcmp(config_get(cfg, "log.format"), "json"));
    signal(SIGPIPE, SIG_IGN);

    uv_loop_t *loop = uv_default_loop();
    eng = engine_create(loop, cfg, err, sizeof(err));
    if (!eng) {
        log_error("cannot start: %s", err);
        config_destroy(cfg);
        return 1;
    }
    const char *listen = config_get(cfg, "engine.listen");
    ops = ops_start(loop, listen, ops_metrics, ops_ready, NULL, err, sizeof(err));
    if (!ops) {
        log_error("cannot open the ops port engine.listen = %s: %s", listen, err);
        engine_destroy(eng);
        config_destroy(cfg);
        return 1;
    }
    log_info("ops port %s, bound to port %d (/healthz, /readyz, /metrics)", listen, ops_port(ops));
    uv_signal_init(loop, &sig_int);
    uv_signal_init(loop, &sig_term);
    uv_signal_start(&sig_int, on_signal, SIGINT);
    uv_signal_start(&sig_term, on_signal, SIGTERM);
    if (engine_start(eng)) {
        log_error("cannot start the loop");
        return 1;
    }
    uv_run(loop, UV_RUN_DEFAULT);
    if (engine_failed(eng)) {
        /* A fatal Kafka error: exit at once; the supervisor restarts us and the transaction
         * we leave open is fenced by our successor. */
        log_error("exiting after a fatal error");
        _exit(1);
    }
    engine_destroy(eng);
    int rc = uv_loop_close(loop) == 0 ? 0 : 1;
    config_destroy(cfg);
    return rc;
}
