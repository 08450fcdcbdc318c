/*
 * jrpctl config: the configuration as the tools see it. `config keys` prints the one table of
 * keys (common/config.c) as the Markdown of docs/configuration.md, which is generated from it
 * (make docs) and checked against it by the tests, so the page cannot drift from the code.
 */
#include <stdio.h>
#include <string.h>

#include "config.h"
#include "ctl.h"

static const char ctl_config_usage[] =
    "usage: jrpctl config keys\n"
    "Prints every configuration key (name, type, default, bounds, meaning) as Markdown.\n";

static const char *ctl_config_type(const config_def_t *d, char *buf, size_t size)
{
    switch (d->type) {
    case CONFIG_INT:
        snprintf(buf, size, "integer %lld..%lld", d->min, d->max);
        break;
    case CONFIG_DECIMAL:
        snprintf(buf, size, "decimal %lld..%lld", d->min, d->max);
        break;
    case CONFIG_BOOL:
        snprintf(buf, size, "boolean");
        break;
    case CONFIG_HOSTPORT:
        snprintf(buf, size, "host:port");
        break;
    case CONFIG_ENUM:
        snprintf(buf, size, "one of %s", d->choices ? d->choices : "");
        break;
    case CONFIG_SECRET:
        snprintf(buf, size, "secret");
        break;
    default:
        snprintf(buf, size, "text");
    }
    return buf;
}

/* Markdown table cells: a '|' would end the cell. */
static void ctl_config_cell(const char *s)
{
    for (; *s; s++) {
        if (*s == '|')
            fputs("\\|", stdout);
        else
            putchar(*s);
    }
}

static int ctl_config_keys(void)
{
    printf(
        "# Configuration keys\n\n"
        "Generated from the table in `common/config.c` by `jrpctl config keys` (`make docs`); a "
        "test\n"
        "fails when this page and the table differ. Set keys in a `-c FILE` (`key = value` "
        "lines),\n"
        "as `JRP_*` environment variables (`JRP_` + the key upper-cased, `.` and `-` as `_`) or "
        "with\n"
        "`-o key=value`; later wins in that order. A `*` stands for one word (a department code).\n"
        "Every `kafka.*` key goes to librdkafka unchanged (its own documentation lists them).\n\n"
        "| key | type | default | meaning |\n|---|---|---|---|\n");
    for (size_t i = 0; i < config_defs_count; i++) {
        const config_def_t *d = &config_defs[i];
        char type[160];
        printf("| `%s` | ", d->name);
        ctl_config_cell(ctl_config_type(d, type, sizeof(type)));
        fputs(" | ", stdout);
        if (d->def && *d->def) {
            putchar('`');
            ctl_config_cell(d->def);
            putchar('`');
        } else {
            fputs("(unset)", stdout);
        }
        fputs(" | ", stdout);
        ctl_config_cell(d->help ? d->help : "");
        fputs(" |\n", stdout);
    }
    return fflush(stdout) == 0 ? 0 : ctl_fail("writing the table failed");
}

int ctl_config(config_t *cfg, int argc, char **argv)
{
    (void)cfg;
    if (ctl_wants_help(argc, argv)) {
        fputs(ctl_config_usage, stdout);
        return 0;
    }
    if (argc == 2 && !strcmp(argv[1], "keys"))
        return ctl_config_keys();
    return ctl_fail("config: want \"keys\" (jrpctl config --help)");
}
