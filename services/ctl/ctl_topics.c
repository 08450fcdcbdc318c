/*
 * jrpctl topics ensure: create every topic jrp uses, with topic.partitions (department
 * action topics: topic.action_partitions) and topic.replication_factor, through librdkafka's admin
 * API (rulesync_ensure_topics, the same code the engine and `rules load` run), and say which ones
 * it created and which already existed. Departments come from the active rule set on credit.rules
 * and from --department.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ctl.h"
#include "ids.h"
#include "kafka.h"
#include "rulesync.h"
#include "topicscan.h"

#define CTL_TOPICS_MAX_DEPTS 256

static int ctl_topics_usage(FILE *out, int rc)
{
    fprintf(out, "usage: jrpctl topics ensure [--department D]...\n\n"
                 "Create the topics jrp uses that do not exist yet, under topic.prefix:\n"
                 "  events, alerts, checks, feedback, dlq  topic.partitions each\n"
                 "  decisions                 topic.decision_partitions (0: as events)\n"
                 "  state                     compacted, as many partitions as events\n"
                 "  rules, tokens             compacted, 1 partition\n"
                 "  actions.<department>      for each department of the active rule set\n"
                 "                            (on <topic.prefix>rules) and each --department D;\n"
                 "                            topic.action_partitions each (0: as events)\n"
                 "with topic.replication_factor (-1: the broker's default). Existing topics are\n"
                 "left as they are. Prints each topic as created or existing.\n");
    return rc;
}

/* The departments of the active rule set on credit.rules, appended to depts (strings owned by
 * *keep, freed by the caller with jrp__v1__rule_set__free_unpacked). 0 or -1. */
static int ctl_topics_rule_depts(const config_t *cfg, const char **depts, size_t *n,
                                 Jrp__V1__RuleSet **keep, int64_t *active, char *errstr,
                                 size_t errstr_size)
{
    Jrp__V1__RuleSet **versions = NULL;
    size_t nv = 0;
    *keep = NULL;
    if (rulesync_read(cfg, &versions, &nv, active, errstr, errstr_size))
        return -1;
    for (size_t i = 0; i < nv; i++) {
        if (versions[i]->version == *active && !*keep)
            *keep = versions[i];
        else
            jrp__v1__rule_set__free_unpacked(versions[i], NULL);
    }
    free(versions);
    if (!*keep)
        return 0;
    const char **rd = NULL;
    size_t nrd = 0;
    if (rulesync_departments(*keep, &rd, &nrd)) {
        snprintf(errstr, errstr_size, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < nrd && *n < CTL_TOPICS_MAX_DEPTS; i++) {
        size_t j;
        for (j = 0; j < *n && strcmp(depts[j], rd[i]); j++)
            ;
        if (j == *n)
            depts[(*n)++] = rd[i];
    }
    free(rd);
    return 0;
}

/* Names of the topics jrp wants, in the order they are printed. */
static size_t ctl_topics_names(const config_t *cfg, const char *const *depts, size_t n,
                               char (*names)[256])
{
    static const char *const suffixes[] = {"events",   "state",  "decisions", "alerts", "dlq",
                                           "feedback", "checks", "rules",     "tokens"};
    size_t k = 0;
    for (size_t i = 0; i < sizeof(suffixes) / sizeof(suffixes[0]); i++)
        config_topic(cfg, suffixes[i], names[k++], 256);
    for (size_t i = 0; i < n; i++) {
        char suffix[128];
        snprintf(suffix, sizeof(suffix), "actions.%s", depts[i]);
        config_topic(cfg, suffix, names[k++], 256);
    }
    return k;
}

static int ctl_topics_ensure(config_t *cfg, int argc, char **argv)
{
    const char *depts[CTL_TOPICS_MAX_DEPTS + 1];
    size_t n = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--department")) {
            if (i + 1 >= argc)
                return ctl_fail("topics ensure: --department needs a department code");
            const char *d = argv[++i];
            if (!ids_is_department(d))
                return ctl_fail("topics ensure: \"%s\" is not a department code "
                                "([a-z][a-z0-9_]{1,31})",
                                d);
            size_t j;
            for (j = 0; j < n && strcmp(depts[j], d); j++)
                ;
            if (j == n && n < CTL_TOPICS_MAX_DEPTS)
                depts[n++] = d;
        } else {
            return ctl_fail("topics ensure: unexpected \"%s\" (jrpctl topics --help)", argv[i]);
        }
    }
    char err[1024];
    Jrp__V1__RuleSet *rs = NULL;
    int64_t active = 0;
    rd_kafka_t *rk = NULL;
    char(*names)[256] = NULL;
    int8_t *existed = NULL;
    int rc = 1;
    /* A reader: its metadata requests never auto-create a topic, as a producer's may. */
    rk = kafka_reader_create(cfg, err, sizeof(err));
    if (!rk) {
        ctl_fail("cannot create a Kafka client: %s", err);
        goto done;
    }
    char rules_topic[256];
    config_topic(cfg, "rules", rules_topic, sizeof(rules_topic));
    int32_t rules_parts = topicscan_partitions(rk, rules_topic, err, sizeof(err));
    if (rules_parts < 0) {
        ctl_fail("cannot reach Kafka at %s: %s", config_get(cfg, "kafka.bootstrap.servers"), err);
        goto done;
    }
    /* A topic created a moment ago may have no leader yet: try a few times. */
    for (int attempt = 1; rules_parts > 0; attempt++) {
        if (!ctl_topics_rule_depts(cfg, depts, &n, &rs, &active, err, sizeof(err)))
            break;
        if (attempt == 5) {
            ctl_fail("reading the active rule set from Kafka: %s", err);
            goto done;
        }
        sleep(1);
    }
    names = calloc(n + 9, sizeof(*names));
    existed = calloc(n + 9, sizeof(*existed));
    if (!names || !existed) {
        ctl_fail("out of memory");
        goto done;
    }
    size_t nt = ctl_topics_names(cfg, depts, n, names);
    for (size_t i = 0; i < nt; i++) {
        int32_t parts = topicscan_partitions(rk, names[i], err, sizeof(err));
        if (parts < 0) {
            ctl_fail("cannot reach Kafka at %s: %s", config_get(cfg, "kafka.bootstrap.servers"),
                     err);
            goto done;
        }
        existed[i] = parts > 0;
    }
    if (rulesync_ensure_topics(cfg, depts, n, NULL, err, sizeof(err))) {
        ctl_fail("creating topics: %s", err);
        goto done;
    }
    size_t created = 0;
    for (size_t i = 0; i < nt; i++) {
        int32_t parts = topicscan_partitions(rk, names[i], err, sizeof(err));
        if (parts <= 0) {
            ctl_fail("topic %s is still missing after creation: %s", names[i],
                     parts < 0 ? err : "not in the metadata");
            goto done;
        }
        created += !existed[i];
        printf("%-8s %s (%d partitions)\n", existed[i] ? "exists" : "created", names[i],
               (int)parts);
    }
    printf("%zu created, %zu already existed; %zu departments (", created, nt - created, n);
    if (active)
        printf("rule set version %lld and --department)\n", (long long)active);
    else
        printf("no active rule set on Kafka yet: --department only)\n");
    rc = 0;
done:
    if (rk) {
        rd_kafka_consumer_close(rk);
        rd_kafka_destroy(rk);
    }
    if (rs)
        jrp__v1__rule_set__free_unpacked(rs, NULL);
    free(names);
    free(existed);
    return rc;
}

int ctl_topics(config_t *cfg, int argc, char **argv)
{
    /* librdkafka's own error lines only when asked for (-o kafka.log_level=N): a command
     * that fails says why in one line. */
    char lerr[256];
    if (!config_get(cfg, "kafka.log_level") &&
        config_set(cfg, "kafka.log_level", "2", "jrpctl", lerr, sizeof(lerr)))
        return ctl_fail("%s", lerr);
    if (ctl_wants_help(argc, argv))
        return ctl_topics_usage(stdout, 0);
    if (argc < 2)
        return ctl_topics_usage(stderr, 2);
    if (!strcmp(argv[1], "ensure"))
        return ctl_topics_ensure(cfg, argc - 1, argv + 1);
    return ctl_fail("unknown topics command \"%s\" (jrpctl topics --help)", argv[1]);
}
