/*
 * jrpctl: the operator's tool. Parses -c/-o (anywhere on the line), then runs one command.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "ctl.h"

extern char **environ;

static const ctl_command_t ctl_commands[] = {
    {"rules", "check, load, list, show and activate rule sets", ctl_rules},
    {"events", "send credit events from JSON lines (events send FILE)", ctl_events},
    {"tail", "print a topic's records as JSON lines (tail TOPIC)", ctl_tail},
    {"token", "create, revoke and list the gateway's bearer tokens", ctl_token},
    {"dlq", "list, show and redrive dead letters", ctl_dlq},
    {"rebuild", "bring Redis back from Kafka (states, rules, tokens)", ctl_rebuild},
    {"topics", "create every topic jrp uses (topics ensure)", ctl_topics},
    {"replay", "re-decide a period in memory and compare with the record (audits)", ctl_replay},
    {"check", "the credit check: measures in force for a subject (check TYPE ID)", ctl_check},
    {"config", "the configuration keys (config keys: the table as Markdown)", ctl_config},
    {"report", "the effects list of a period (report --from --to [--format json|csv])", ctl_report},
};

int ctl_fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("jrpctl: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return 1;
}

int ctl_wants_help(int argc, char **argv)
{
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help"))
            return 1;
    return 0;
}

static void usage(FILE *out)
{
    fprintf(out, "usage: jrpctl [-c FILE] [-o key=value]... COMMAND [ARGS]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof(ctl_commands) / sizeof(ctl_commands[0]); i++)
        fprintf(out, "  %-10s %s\n", ctl_commands[i].name, ctl_commands[i].summary);
    fprintf(out,
            "\nEvery command takes --help, -c FILE and -o key=value; JRP_* variables apply.\n");
}

int main(int argc, char **argv)
{
    char err[1024];
    config_t *cfg = config_create();
    if (!cfg)
        return ctl_fail("out of memory");
    if (config_from_args(cfg, &argc, argv, environ, err, sizeof(err))) {
        config_destroy(cfg);
        return ctl_fail("%s", err);
    }
    int rc;
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") ||
        !strcmp(argv[1], "help")) {
        usage(argc < 2 ? stderr : stdout);
        rc = argc < 2 ? 2 : 0;
    } else {
        const ctl_command_t *cmd = NULL;
        for (size_t i = 0; i < sizeof(ctl_commands) / sizeof(ctl_commands[0]); i++)
            if (!strcmp(argv[1], ctl_commands[i].name))
                cmd = &ctl_commands[i];
        rc = cmd ? cmd->run(cfg, argc - 1, argv + 1)
                 : ctl_fail("unknown command \"%s\" (jrpctl --help lists them)", argv[1]);
    }
    config_destroy(cfg);
    return rc;
}
