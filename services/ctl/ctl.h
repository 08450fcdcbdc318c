/*
 * ctl: jrpctl's commands. Each command is a function taking the configuration and its own
 * arguments (argv[0] is the command's name) and returning the process exit code.
 */
#ifndef JRP_CTL_H
#define JRP_CTL_H

#include "config.h"

typedef struct ctl_command_s {
    const char *name;    /* "rules" */
    const char *summary; /* one line for jrpctl --help */
    int (*run)(config_t *cfg, int argc, char **argv);
} ctl_command_t;

int ctl_rules(config_t *cfg, int argc, char **argv);
int ctl_events(config_t *cfg, int argc, char **argv);
int ctl_tail(config_t *cfg, int argc, char **argv);
int ctl_token(config_t *cfg, int argc, char **argv);
int ctl_dlq(config_t *cfg, int argc, char **argv);
int ctl_rebuild(config_t *cfg, int argc, char **argv);
int ctl_topics(config_t *cfg, int argc, char **argv);
int ctl_replay(config_t *cfg, int argc, char **argv);
int ctl_check(config_t *cfg, int argc, char **argv);
int ctl_config(config_t *cfg, int argc, char **argv);
int ctl_report(config_t *cfg, int argc, char **argv);

/* Print "jrpctl: message" on stderr; returns 1 (the exit code of a failed command). */
int ctl_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* True if argv has -h or --help. */
int ctl_wants_help(int argc, char **argv);

#endif
