/*
 * service: the shared main() of the consuming services. See service.h.
 */
#include "service.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

extern char **environ;

/* One service per process: the signal and ops callbacks find it here. */
static struct {
    const service_def_t *def;
    void *svc;
    ops_server_t *ops;
    uv_signal_t sig_int, sig_term;
} service__run;

static void service__stopped(void *arg)
{
    (void)arg;
    uv_close((uv_handle_t *)&service__run.sig_int, NULL);
    uv_close((uv_handle_t *)&service__run.sig_term, NULL);
    ops_stop(service__run.ops, NULL, NULL);
    service__run.ops = NULL;
}

static void service__on_signal(uv_signal_t *h, int signum)
{
    (void)h;
    log_info("signal %d: stopping", signum);
    uv_signal_stop(&service__run.sig_int);
    uv_signal_stop(&service__run.sig_term);
    service__run.def->stop(service__run.svc, service__stopped, NULL);
}

static const char *service__ready(void *arg)
{
    (void)arg;
    return service__run.def->not_ready(service__run.svc);
}

static void service__metrics(ops_text_t *t, void *arg)
{
    (void)arg;
    service__run.def->write_metrics(service__run.svc, t);
}

int service_main(const service_def_t *def, int argc, char **argv)
{
    char err[1024], key[128];
    config_t *cfg = config_create();
    if (!cfg || config_from_args(cfg, &argc, argv, environ, err, sizeof(err))) {
        fprintf(stderr, "jrp-%s: %s\n", def->name, cfg ? err : "out of memory");
        config_destroy(cfg);
        return 2;
    }
    if (argc > 1) {
        int help = !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help");
        fprintf(help ? stdout : stderr, "usage: jrp-%s [-c FILE] [-o key=value]...\n%s", def->name,
                def->about);
        config_destroy(cfg);
        return help ? 0 : 2;
    }
    log_set_service(def->name);
    log_set_level_name(config_get(cfg, "log.level"));
    log_set_json(!strcmp(config_get(cfg, "log.format"), "json"));
    signal(SIGPIPE, SIG_IGN);

    uv_loop_t *loop = uv_default_loop();
    service__run.def = def;
    service__run.svc = def->create(loop, cfg, err, sizeof(err));
    if (!service__run.svc) {
        log_error("cannot start: %s", err);
        config_destroy(cfg);
        return 1;
    }
    snprintf(key, sizeof(key), "%s.listen", def->name);
    const char *listen = config_get(cfg, key);
    service__run.ops =
        ops_start(loop, listen, service__metrics, service__ready, NULL, err, sizeof(err));
    if (!service__run.ops) {
        log_error("cannot open the ops port %s = %s: %s", key, listen, err);
        def->destroy(service__run.svc);
        config_destroy(cfg);
        return 1;
    }
    log_info("ops port %s, bound to port %d (/healthz, /readyz, /metrics)", listen,
             ops_port(service__run.ops));
    uv_signal_init(loop, &service__run.sig_int);
    uv_signal_init(loop, &service__run.sig_term);
    uv_signal_start(&service__run.sig_int, service__on_signal, SIGINT);
    uv_signal_start(&service__run.sig_term, service__on_signal, SIGTERM);
    if (def->start(service__run.svc)) {
        log_error("cannot start the loop");
        _exit(1);
    }
    uv_run(loop, UV_RUN_DEFAULT);
    if (def->failed(service__run.svc)) {
        /* Exit at once: the supervisor restarts us; what was not committed is done again (and an
         * open transaction is fenced by the successor). The cause was logged where it happened. */
        log_error("exiting after a fatal error");
        _exit(1);
    }
    def->destroy(service__run.svc);
    int rc = uv_loop_close(loop) == 0 ? 0 : 1;
    if (rc)
        log_error("handles left open at exit");
    config_destroy(cfg);
    return rc;
}
