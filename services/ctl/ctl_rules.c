/*
 * jrpctl rules: check a rule directory (memoranda and measure catalogue) reporting every error by
 * file and JSON path; load it as a new immutable version (Kafka's credit.rules first, then Redis)
 * and activate it; list, show and re-activate versions (rollback).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include "ctl.h"
#include "errlist.h"
#include "pbjson.h"
#include "rules.h"
#include "rulesync.h"
#include "store.h"

static int ctl_rules_usage(FILE *out, int rc)
{
    fprintf(out,
            "usage: jrpctl rules check DIR\n\n"
            "  check DIR   validate the rule directory: catalogue.json, escalations.json and\n"
            "              one *.json per memorandum; lists every error by file and JSON path\n");
    return rc;
}

/* Load and validate DIR, printing every error; NULL if refused. */
static Jrp__V1__RuleSet *ctl_rules_read(const char *dir)
{
    errlist_t el;
    errlist_init(&el);
    Jrp__V1__RuleSet *rs = rules_load_dir(dir, &el);
    if (!rs) {
        char line[1024];
        for (size_t i = 0; i < el.count; i++) {
            errlist_format(&el, i, line, sizeof(line));
            fprintf(stderr, "%s: %s\n", dir, line);
        }
        fprintf(stderr, "jrpctl: %s: rule set refused: %zu error%s; nothing changed\n", dir,
                el.count, el.count == 1 ? "" : "s");
    }
    errlist_clear(&el);
    return rs;
}

static int64_t ctl_now_ms(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

static int ctl_rules_load(config_t *cfg, int argc, char **argv)
{
    const char *dir = NULL;
    int force = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--force"))
            force = 1;
        else if (!dir)
            dir = argv[i];
        else
            return ctl_fail("rules load takes one directory (jrpctl rules --help)");
    }
    if (!dir)
        return ctl_fail("rules load needs a directory (jrpctl rules --help)");
    Jrp__V1__RuleSet *rs = ctl_rules_read(dir);
    if (!rs)
        return 1;
    char err[1024];
    int rc = 1;
    store_t *store = store_create(cfg, err, sizeof(err));
    const char **depts = NULL;
    size_t n_depts = 0;
    if (!store) {
        ctl_fail("%s", err);
        goto done;
    }
    int64_t active = 0;
    if (store_rules_active(store, &active, err, sizeof(err))) {
        ctl_fail("%s", err);
        goto done;
    }
    if (active && !force) {
        Jrp__V1__RuleSet *cur = NULL;
        if (store_rules_get(store, active, &cur, err, sizeof(err)) == 0) {
            int same = !strcmp(cur->digest, rs->digest);
            jrp__v1__rule_set__free_unpacked(cur, NULL);
            if (same) {
                printf("%s: identical to the active version %lld; nothing loaded\n", dir,
                       (long long)active);
                rc = 0;
                goto done;
            }
        }
    }
    int64_t version;
    if (rulesync_next_version(cfg, store, &version, err, sizeof(err))) {
        ctl_fail("%s", err);
        goto done;
    }
    rs->version = version;
    rs->created_at_ms = ctl_now_ms();
    if (rulesync_departments(rs, &depts, &n_depts) ||
        rulesync_ensure_topics(cfg, depts, n_depts, NULL, err, sizeof(err))) {
        ctl_fail("creating topics: %s", err);
        goto done;
    }
    /* Kafka first: it is the durable copy; Redis is rebuilt from it when needed. */
    if (rulesync_publish(cfg, rs, 1, err, sizeof(err))) {
        ctl_fail("publishing to Kafka: %s; nothing changed", err);
        goto done;
    }
    if (store_rules_put(store, rs, err, sizeof(err)) ||
        store_rules_activate(store, version, err, sizeof(err))) {
        ctl_fail("version %lld is in Kafka but Redis was not updated (%s): run jrpctl rebuild",
                 (long long)version, err);
        goto done;
    }
    printf("loaded %s as rule set version %lld (digest %.12s, %zu memoranda), now active\n", dir,
           (long long)version, rs->digest, rs->n_memoranda);
    rc = 0;
done:
    free(depts);
    store_destroy(store);
    jrp__v1__rule_set__free_unpacked(rs, NULL);
    return rc;
}

static int ctl_rules_list(config_t *cfg, int argc, char **argv)
{
    (void)argv;
    if (argc != 1)
        return ctl_fail("rules list takes no arguments");
    char err[1024];
    store_t *store = store_create(cfg, err, sizeof(err));
    if (!store)
        return ctl_fail("%s", err);
    int64_t *versions = NULL, active = 0;
    size_t n = 0;
    int rc = 1;
    if (store_rules_versions(store, &versions, &n, err, sizeof(err)) ||
        store_rules_active(store, &active, err, sizeof(err))) {
        ctl_fail("%s", err);
        goto done;
    }
    if (n == 0) {
        printf("no rule sets loaded (jrpctl rules load DIR)\n");
        rc = 0;
        goto done;
    }
    printf("  %-8s %-20s %-14s %s\n", "version", "created (UTC)", "digest", "memoranda");
    for (size_t i = 0; i < n; i++) {
        Jrp__V1__RuleSet *rs = NULL;
        if (store_rules_get(store, versions[i], &rs, err, sizeof(err)))
            continue;
        char when[32];
        time_t t = (time_t)(rs->created_at_ms / 1000);
        strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S", gmtime(&t));
        printf("%c %-8lld %-20s %-14.12s %zu\n", versions[i] == active ? '*' : ' ',
               (long long)versions[i], when, rs->digest, rs->n_memoranda);
        jrp__v1__rule_set__free_unpacked(rs, NULL);
    }
    rc = 0;
done:
    free(versions);
    store_destroy(store);
    return rc;
}

static int ctl_rules_show(config_t *cfg, int argc, char **argv)
{
    int64_t version = 0;
    int files = 0;
    for (int i = 1; i < argc; i++) {
        char *end;
        if (!strcmp(argv[i], "--files")) {
            files = 1;
        } else {
            version = strtoll(argv[i], &end, 10);
            if (*end || version <= 0)
                return ctl_fail("rules show: \"%s\" is not a version number", argv[i]);
        }
    }
    char err[1024];
    store_t *store = store_create(cfg, err, sizeof(err));
    if (!store)
        return ctl_fail("%s", err);
    int rc = 1;
    Jrp__V1__RuleSet *rs = NULL;
    if (!version && (store_rules_active(store, &version, err, sizeof(err)) || !version)) {
        ctl_fail("%s", version ? err : "no active rule set (jrpctl rules load DIR)");
        goto done;
    }
    int got = store_rules_get(store, version, &rs, err, sizeof(err));
    if (got) {
        if (got > 0)
            ctl_fail("no rule set version %lld (jrpctl rules list)", (long long)version);
        else
            ctl_fail("%s", err);
        goto done;
    }
    if (!files) {
        for (size_t i = 0; i < rs->n_files; i++)
            jrp__v1__rule_file__free_unpacked(rs->files[i], NULL);
        free(rs->files);
        rs->files = NULL;
        rs->n_files = 0;
    }
    json_t *json = pbjson_encode(&rs->base, 0);
    char *text = json ? json_dumps(json, JSON_INDENT(2) | JSON_PRESERVE_ORDER) : NULL;
    if (text) {
        printf("%s\n", text);
        rc = 0;
    } else {
        ctl_fail("out of memory");
    }
    free(text);
    json_decref(json);
done:
    if (rs)
        jrp__v1__rule_set__free_unpacked(rs, NULL);
    store_destroy(store);
    return rc;
}

static int ctl_rules_activate(config_t *cfg, int argc, char **argv)
{
    char *end;
    if (argc != 2)
        return ctl_fail("rules activate takes one version (jrpctl rules list shows them)");
    int64_t version = strtoll(argv[1], &end, 10);
    if (*end || version <= 0)
        return ctl_fail("rules activate: \"%s\" is not a version number", argv[1]);
    char err[1024];
    store_t *store = store_create(cfg, err, sizeof(err));
    if (!store)
        return ctl_fail("%s", err);
    int rc = 1;
    Jrp__V1__RuleSet *rs = NULL;
    int got = store_rules_get(store, version, &rs, err, sizeof(err));
    if (got) {
        if (got > 0)
            ctl_fail("no rule set version %lld (jrpctl rules list)", (long long)version);
        else
            ctl_fail("%s", err);
        goto done;
    }
    if (rulesync_publish(cfg, rs, 1, err, sizeof(err))) {
        ctl_fail("publishing to Kafka: %s; nothing changed", err);
        goto done;
    }
    if (store_rules_activate(store, version, err, sizeof(err))) {
        ctl_fail("%s", err);
        goto done;
    }
    printf("rule set version %lld is active\n", (long long)version);
    rc = 0;
done:
    if (rs)
        jrp__v1__rule_set__free_unpacked(rs, NULL);
    store_destroy(store);
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
    if (argc < 2)
        return ctl_rules_usage(stderr, 2);
    if (ctl_wants_help(argc, argv))
        return ctl_rules_usage(stdout, 0);
    if (!strcmp(argv[1], "check"))
        return ctl_rules_check(argc - 1, argv + 1);
    if (!strcmp(argv[1], "load"))
        return ctl_rules_load(cfg, argc - 1, argv + 1);
    if (!strcmp(argv[1], "list"))
        return ctl_rules_list(cfg, argc - 1, argv + 1);
    if (!strcmp(argv[1], "show"))
        return ctl_rules_show(cfg, argc - 1, argv + 1);
    if (!strcmp(argv[1], "activate"))
        return ctl_rules_activate(cfg, argc - 1, argv + 1);
    return ctl_fail("unknown rules command \"%s\" (jrpctl rules --help)", argv[1]);
}
