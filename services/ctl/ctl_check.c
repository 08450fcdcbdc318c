/*
 * jrpctl check: the credit check from the command line, for an operator or a counter without
 * the HTTP API. The same answer as GET /v1/subjects/{type}/{id}/measures (common/check), read
 * from Redis, and recorded on credit.checks like every check (requested_by "jrpctl:<user>").
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/rand.h>

#include "check.h"
#include "ctl.h"
#include "ids.h"
#include "jrp/v1/check.pb-c.h"
#include "kafka.h"
#include "pbjson.h"
#include "rules.h"
#include "store.h"

#define CTL_CHECK_TIMEOUT_MS 15000
#define CTL_CHECK_VERSIONS 8

static const char ctl_check_usage[] =
    "usage: jrpctl check TYPE ID [--department D] [--business-item TEXT]\n"
    "The measures in force now for a subject (TYPE enterprise, person or vehicle), with their\n"
    "memorandum, text, legal basis and validity, as JSON; --department keeps one department's.\n"
    "The check is recorded on credit.checks, like every credit check.\n";

typedef struct ctl_check_rules_s {
    store_t *store;
    Jrp__V1__RuleSet *kept[CTL_CHECK_VERSIONS];
    size_t n;
    char err[512];
} ctl_check_rules_t;

static const Jrp__V1__RuleSet *ctl_check_rules(int64_t version, void *arg)
{
    ctl_check_rules_t *r = arg;
    for (size_t i = 0; i < r->n; i++)
        if (r->kept[i]->version == version)
            return r->kept[i];
    Jrp__V1__RuleSet *rs = NULL;
    if (r->n == CTL_CHECK_VERSIONS ||
        store_rules_get(r->store, version, &rs, r->err, sizeof(r->err)))
        return NULL;
    r->kept[r->n++] = rs;
    return rs;
}

static int64_t ctl_check_now_ms(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

int ctl_check(config_t *cfg, int argc, char **argv)
{
    if (ctl_wants_help(argc, argv)) {
        fputs(ctl_check_usage, stdout);
        return 0;
    }
    const char *type = NULL, *id = NULL, *department = NULL, *item = "";
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--department") && i + 1 < argc)
            department = argv[++i];
        else if (!strcmp(argv[i], "--business-item") && i + 1 < argc)
            item = argv[++i];
        else if (argv[i][0] == '-')
            return ctl_fail("check: unknown option \"%s\" (jrpctl check --help)", argv[i]);
        else if (!type)
            type = argv[i];
        else if (!id)
            id = argv[i];
        else
            return ctl_fail("check takes TYPE and ID (jrpctl check --help)");
    }
    if (!type || !id)
        return ctl_fail("check needs TYPE and ID (jrpctl check --help)");
    char key[600], why[256];
    ids_subject_type_t t;
    const char *sid, *code;
    snprintf(key, sizeof(key), "%s:%s", type, id);
    if (ids_subject_key_parse(key, &t, &sid, &code, why, sizeof(why)))
        return ctl_fail("check %s %s: %s", type, id, why);
    if (department && !ids_is_department(department))
        return ctl_fail("--department: \"%s\" is not a department code", department);

    char err[512];
    int rc = 1;
    ctl_check_rules_t rules = {0};
    Jrp__V1__SubjectState *st = NULL;
    Jrp__V1__Action *acts = NULL, **ptrs = NULL;
    uint8_t *buf = NULL;
    json_t *json = NULL;
    rules.store = store_create(cfg, err, sizeof(err));
    if (!rules.store)
        return ctl_fail("%s", err);
    const char *keys[1] = {key};
    int64_t offset;
    if (store_load_states(rules.store, 1, keys, &st, &offset, err, sizeof(err))) {
        ctl_fail("%s", err);
        goto done;
    }
    size_t n = 0, room = st && st->n_measures ? st->n_measures : 1;
    acts = calloc(room, sizeof(*acts));
    ptrs = calloc(room, sizeof(*ptrs));
    if (!acts || !ptrs) {
        ctl_fail("out of memory");
        goto done;
    }
    int64_t now = ctl_check_now_ms();
    if (check_answer(st, department, now, ctl_check_rules, &rules, acts, ptrs, &n, err,
                     sizeof(err))) {
        ctl_fail("%s%s%s", err, rules.err[0] ? ": " : "", rules.err);
        goto done;
    }

    unsigned char rnd[16];
    char check_id[33];
    if (RAND_bytes(rnd, sizeof(rnd)) != 1) {
        ctl_fail("no random bytes for the check id");
        goto done;
    }
    for (int i = 0; i < 16; i++)
        snprintf(check_id + 2 * i, 3, "%02x", rnd[i]);
    char who[300];
    const char *user = getenv("USER");
    snprintf(who, sizeof(who), "jrpctl:%s", user && *user ? user : "unknown");
    Jrp__V1__Subject subject;
    jrp__v1__subject__init(&subject);
    subject.type = (Jrp__V1__SubjectType)t;
    subject.id = (char *)sid;
    if (st && st->subject && st->subject->name)
        subject.name = st->subject->name;
    Jrp__V1__CheckRecord rec;
    jrp__v1__check_record__init(&rec);
    rec.check_id = check_id;
    rec.subject = &subject;
    rec.department = department ? (char *)department : (char *)"";
    rec.requested_by = who;
    rec.checked_at_ms = now;
    rec.measures = ptrs;
    rec.n_measures = n;
    rec.business_item = (char *)item;
    size_t len = jrp__v1__check_record__get_packed_size(&rec);
    buf = malloc(len ? len : 1);
    if (!buf) {
        ctl_fail("out of memory");
        goto done;
    }
    jrp__v1__check_record__pack(&rec, buf);
    char topic[512];
    config_topic(cfg, "checks", topic, sizeof(topic));
    /* Recorded first: an answer that is not on the record is not given. */
    if (kafka_produce_one(cfg, topic, key, buf, len, jrp__v1__check_record__descriptor.name,
                          CTL_CHECK_TIMEOUT_MS, err, sizeof(err))) {
        ctl_fail("the check could not be recorded: %s", err);
        goto done;
    }
    json = pbjson_encode(&rec.base, 0);
    if (!json || (!json_object_get(json, "measures") &&
                  json_object_set_new(json, "measures", json_array()) != 0)) {
        ctl_fail("out of memory");
        goto done;
    }
    if (json_dumpf(json, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER) != 0) {
        ctl_fail("writing the answer: %s", strerror(errno));
        goto done;
    }
    putchar('\n');
    rc = 0;
done:
    json_decref(json);
    free(buf);
    free(acts);
    free(ptrs);
    if (st)
        rules_state_free(st);
    for (size_t i = 0; i < rules.n; i++)
        jrp__v1__rule_set__free_unpacked(rules.kept[i], NULL);
    store_destroy(rules.store);
    return rc;
}
