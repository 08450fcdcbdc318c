/*
 * jrpctl rules: check a rule directory (memoranda and measure catalogue) and report every error
 * by file and JSON path. Loading, listing and activating versions come with the engine's store.
 */
#include <stdio.h>
#include <string.h>

#include "ctl.h"
#include "errlist.h"
#include "rules.h"

static int ctl_rules_usage(FILE *out, int rc)
{
    fprintf(out,
            "usage: jrpctl rules check DIR\n\n"
            "  check DIR   validate the rule directory: catalogue.json, escalations.json and\n"
            "              one *.json per memorandum; lists every error by file and JSON path\n");
    return rc;
}

static int ctl_rules_check(int argc, char **argv)
{
    if (argc != 2)
        return ctl_fail("rules check takes one directory (jrpctl rules check --help)");
    errlist_t el;
    errlist_init(&el);
    Jrp__V1__RuleSet *rs = rules_load_dir(argv[1], &el);
    if (!rs) {
        char line[1024];
        for (size_t i = 0; i < el.count; i++) {
            errlist_format(&el, i, line, sizeof(line));
            fprintf(stderr, "%s: %s\n", argv[1], line);
        }
        fprintf(stderr, "jrpctl: %s: rule set refused: %zu error%s\n", argv[1], el.count,
                el.count == 1 ? "" : "s");
        errlist_clear(&el);
        return 1;
    }
    size_t n_measures = 0;
    for (size_t i = 0; i < rs->n_memoranda; i++)
        n_measures += rs->memoranda[i]->n_measures;
    printf("%s: valid: %zu memoranda with %zu measures, %zu catalogue entries, %zu escalations, "
           "digest %.12s\n",
           argv[1], rs->n_memoranda, n_measures, rs->n_catalogue, rs->n_escalations, rs->digest);
    jrp__v1__rule_set__free_unpacked(rs, NULL);
    errlist_clear(&el);
    return 0;
}

int ctl_rules(config_t *cfg, int argc, char **argv)
{
    (void)cfg;
    if (argc < 2)
        return ctl_rules_usage(stderr, 2);
    if (ctl_wants_help(argc, argv))
        return ctl_rules_usage(stdout, 0);
    if (!strcmp(argv[1], "check"))
        return ctl_rules_check(argc - 1, argv + 1);
    return ctl_fail("unknown rules command \"%s\" (jrpctl rules --help)", argv[1]);
}
