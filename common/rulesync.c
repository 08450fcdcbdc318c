/*
 * rulesync: credit.rules <-> Redis, and the topics jrp needs. Kafka holds the truth; Redis can be
 * rebuilt from it at any time.
 */
#include "rulesync.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kafka.h"

#define RULESYNC_TIMEOUT_MS 30000 /* generous: a broker just started, on a busy machine */

static int rulesync__produce(rd_kafka_t *rk, const char *topic, const char *key, const uint8_t *buf,
                             size_t len, char *errstr, size_t errstr_size)
{
    rd_kafka_resp_err_t err = kafka_produce(rk, topic, RD_KAFKA_PARTITION_UA, key, strlen(key), buf,
                                            len, kafka_headers("jrp.v1.RuleSet", NULL), NULL);
    if (err) {
        snprintf(errstr, errstr_size, "produce to %s: %s", topic, rd_kafka_err2str(err));
        return -1;
    }
    return 0;
}

static void rulesync__dr(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    if (m->err)
        (*(int *)opaque)++;
}

int rulesync_publish(const config_t *cfg, const Jrp__V1__RuleSet *rs, int activate, char *errstr,
                     size_t errstr_size)
{
    char topic[256], key[64];
    config_topic(cfg, "rules", topic, sizeof(topic));
    int failures = 0, rc = -1;
    rd_kafka_conf_t *conf = NULL;
    rd_kafka_t *rk = NULL;
    size_t len = jrp__v1__rule_set__get_packed_size(rs);
    uint8_t *buf = malloc(len ? len : 1);
    if (!buf) {
        snprintf(errstr, errstr_size, "out of memory");
        goto done;
    }
    jrp__v1__rule_set__pack(rs, buf);
    if (!(conf = kafka_producer_conf(cfg, NULL, NULL, 0, errstr, errstr_size)))
        goto done;
    rd_kafka_conf_set_dr_msg_cb(conf, rulesync__dr);
    rd_kafka_conf_set_opaque(conf, &failures);
    rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, errstr_size);
    if (!rk)
        goto done;
    conf = NULL; /* now owned by rk */
    snprintf(key, sizeof(key), "ruleset/%lld", (long long)rs->version);
    if (rulesync__produce(rk, topic, key, buf, len, errstr, errstr_size))
        goto done;
    if (activate && rulesync__produce(rk, topic, "ruleset/active", buf, len, errstr, errstr_size))
        goto done;
    if (rd_kafka_flush(rk, RULESYNC_TIMEOUT_MS) != RD_KAFKA_RESP_ERR_NO_ERROR) {
        snprintf(errstr, errstr_size, "%s: not acknowledged within %d ms", topic,
                 RULESYNC_TIMEOUT_MS);
        goto done;
    }
    if (failures) {
        snprintf(errstr, errstr_size, "%s: %d records not delivered", topic, failures);
        goto done;
    }
    rc = 0;
done:
    if (conf)
        rd_kafka_conf_destroy(conf);
    if (rk)
        rd_kafka_destroy(rk);
    free(buf);
    return rc;
}

static int rulesync__cmp(const void *a, const void *b)
{
    int64_t x = (*(Jrp__V1__RuleSet *const *)a)->version;
    int64_t y = (*(Jrp__V1__RuleSet *const *)b)->version;
    return x < y ? -1 : x > y;
}

int rulesync_read(const config_t *cfg, Jrp__V1__RuleSet ***versions, size_t *n, int64_t *active,
                  char *errstr, size_t errstr_size)
{
    char topic[256];
    config_topic(cfg, "rules", topic, sizeof(topic));
    *versions = NULL;
    *n = 0;
    *active = 0;
    int rc = -1;
    rd_kafka_t *c = kafka_consumer_create(cfg, "jrp-rulesync", NULL, 0, errstr, errstr_size);
    if (!c)
        return -1;
    const rd_kafka_metadata_t *md = NULL;
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(c, topic, NULL);
    rd_kafka_resp_err_t err = rd_kafka_metadata(c, 0, rkt, &md, RULESYNC_TIMEOUT_MS);
    rd_kafka_topic_destroy(rkt);
    if (err || md->topic_cnt != 1 || md->topics[0].err) {
        /* No topic: no versions. */
        rc = (err == RD_KAFKA_RESP_ERR_NO_ERROR) ? 0 : -1;
        if (rc)
            snprintf(errstr, errstr_size, "metadata of %s: %s", topic, rd_kafka_err2str(err));
        goto done;
    }
    int parts = md->topics[0].partition_cnt;
    rd_kafka_topic_partition_list_t *assign = rd_kafka_topic_partition_list_new(parts);
    int64_t *ends = calloc((size_t)parts + 1, sizeof(int64_t));
    int remaining = 0;
    for (int p = 0; p < parts; p++) {
        int64_t lo = 0, hi = 0;
        err = kafka_watermarks(c, topic, p, &lo, &hi, RULESYNC_TIMEOUT_MS);
        if (err) {
            snprintf(errstr, errstr_size, "offsets of %s: %s", topic, rd_kafka_err2str(err));
            rd_kafka_topic_partition_list_destroy(assign);
            free(ends);
            goto done;
        }
        ends[p] = hi;
        if (hi > lo) {
            rd_kafka_topic_partition_list_add(assign, topic, p)->offset = lo;
            remaining++;
        }
    }
    rd_kafka_assign(c, assign);
    rd_kafka_topic_partition_list_destroy(assign);
    Jrp__V1__RuleSet *active_rs = NULL;
    int64_t deadline_polls = RULESYNC_TIMEOUT_MS / 100;
    while (remaining > 0 && deadline_polls-- > 0) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(c, 100);
        if (!m)
            continue;
        if (!m->err && m->key && m->payload) {
            Jrp__V1__RuleSet *rs = jrp__v1__rule_set__unpack(NULL, m->len, m->payload);
            if (rs && m->key_len == 14 && !memcmp(m->key, "ruleset/active", 14)) {
                if (active_rs)
                    jrp__v1__rule_set__free_unpacked(active_rs, NULL);
                active_rs = rs;
            } else if (rs) {
                /* Compaction may keep several records of one version until it runs. */
                size_t i;
                for (i = 0; i < *n && (*versions)[i]->version != rs->version; i++)
                    ;
                if (i < *n) {
                    jrp__v1__rule_set__free_unpacked((*versions)[i], NULL);
                    (*versions)[i] = rs;
                } else {
                    Jrp__V1__RuleSet **nv = realloc(*versions, (*n + 1) * sizeof(*nv));
                    if (!nv) {
                        jrp__v1__rule_set__free_unpacked(rs, NULL);
                    } else {
                        *versions = nv;
                        nv[(*n)++] = rs;
                    }
                }
            }
        }
        if (!m->err && m->offset + 1 >= ends[m->partition])
            remaining--;
        rd_kafka_message_destroy(m);
    }
    free(ends);
    if (active_rs) {
        *active = active_rs->version;
        jrp__v1__rule_set__free_unpacked(active_rs, NULL);
    }
    if (remaining > 0) {
        snprintf(errstr, errstr_size, "%s: not read to its end within %d ms", topic,
                 RULESYNC_TIMEOUT_MS);
        goto done;
    }
    if (*n)
        qsort(*versions, *n, sizeof(**versions), rulesync__cmp);
    rc = 0;
done:
    if (md)
        rd_kafka_metadata_destroy(md);
    rd_kafka_consumer_close(c);
    rd_kafka_destroy(c);
    if (rc) {
        for (size_t i = 0; i < *n; i++)
            jrp__v1__rule_set__free_unpacked((*versions)[i], NULL);
        free(*versions);
        *versions = NULL;
        *n = 0;
    }
    return rc;
}

int rulesync_restore(const config_t *cfg, store_t *store, size_t *restored, char *errstr,
                     size_t errstr_size)
{
    Jrp__V1__RuleSet **versions;
    size_t n;
    int64_t active;
    *restored = 0;
    if (rulesync_read(cfg, &versions, &n, &active, errstr, errstr_size))
        return -1;
    int rc = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        rc = store_rules_put(store, versions[i], errstr, errstr_size);
        if (!rc)
            (*restored)++;
    }
    if (!rc && active)
        rc = store_rules_activate(store, active, errstr, errstr_size);
    for (size_t i = 0; i < n; i++)
        jrp__v1__rule_set__free_unpacked(versions[i], NULL);
    free(versions);
    return rc;
}

int rulesync_next_version(const config_t *cfg, store_t *store, int64_t *next, char *errstr,
                          size_t errstr_size)
{
    int64_t *redis_versions = NULL, high = 0, active;
    size_t n = 0;
    if (store_rules_versions(store, &redis_versions, &n, errstr, errstr_size))
        return -1;
    for (size_t i = 0; i < n; i++)
        if (redis_versions[i] > high)
            high = redis_versions[i];
    free(redis_versions);
    Jrp__V1__RuleSet **versions;
    if (rulesync_read(cfg, &versions, &n, &active, errstr, errstr_size))
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (versions[i]->version > high)
            high = versions[i]->version;
        jrp__v1__rule_set__free_unpacked(versions[i], NULL);
    }
    free(versions);
    *next = high + 1;
    return 0;
}

int rulesync_departments(const Jrp__V1__RuleSet *rs, const char ***out, size_t *n)
{
    size_t cap = 0;
    for (size_t i = 0; i < rs->n_memoranda; i++)
        cap += rs->memoranda[i]->n_measures;
    *out = calloc(cap + 1, sizeof(char *));
    *n = 0;
    if (!*out)
        return -1;
    for (size_t i = 0; i < rs->n_memoranda; i++)
        for (size_t k = 0; k < rs->memoranda[i]->n_measures; k++) {
            const char *d = rs->memoranda[i]->measures[k]->department;
            size_t j;
            for (j = 0; j < *n && strcmp((*out)[j], d); j++)
                ;
            if (j == *n)
                (*out)[(*n)++] = d;
        }
    return 0;
}

int rulesync_ensure_topics(const config_t *cfg, const char *const *departments, size_t n,
                           int32_t *events_partitions, char *errstr, size_t errstr_size)
{
    rd_kafka_t *rk = kafka_producer_create(cfg, NULL, 0, errstr, errstr_size);
    if (!rk)
        return -1;
    int rc = -1;
    int parts = (int)config_get_int(cfg, "topic.partitions");
    int action_parts = (int)config_get_int(cfg, "topic.action_partitions");
    int decision_parts = (int)config_get_int(cfg, "topic.decision_partitions");
    int rf = (int)config_get_int(cfg, "topic.replication_factor");
    char names[16][256];
    char(*actions)[256] = calloc(n + 1, sizeof(*actions));
    kafka_topic_spec_t *specs = calloc(n + 16, sizeof(*specs));
    static const char *const compact[] = {"cleanup.policy", "compact", NULL};
    if (!actions || !specs) {
        snprintf(errstr, errstr_size, "out of memory");
        goto done;
    }
    /* credit.events first: its partition count decides credit.state's. */
    config_topic(cfg, "events", names[0], sizeof(names[0]));
    kafka_topic_spec_t ev = {names[0], parts, rf, NULL};
    if (kafka_topics_ensure(rk, &ev, 1, RULESYNC_TIMEOUT_MS, errstr, errstr_size))
        goto done;
    const rd_kafka_metadata_t *md = NULL;
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, names[0], NULL);
    rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR_NO_ERROR;
    /* A broker that has just created the topic may not list it for a moment: ask again. */
    for (int waited = 0;; waited += 200) {
        err = rd_kafka_metadata(rk, 0, rkt, &md, RULESYNC_TIMEOUT_MS);
        int pending = !err && md->topic_cnt == 1 &&
                      (md->topics[0].err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART ||
                       md->topics[0].err == RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE);
        if (!pending || waited >= RULESYNC_TIMEOUT_MS)
            break;
        rd_kafka_metadata_destroy(md);
        md = NULL;
        usleep(200000);
    }
    rd_kafka_topic_destroy(rkt);
    if (err || md->topic_cnt != 1 || md->topics[0].err) {
        snprintf(errstr, errstr_size, "metadata of %s: %s", names[0],
                 rd_kafka_err2str(err ? err : md->topics[0].err));
        if (md)
            rd_kafka_metadata_destroy(md);
        goto done;
    }
    int ev_parts = md->topics[0].partition_cnt;
    rd_kafka_metadata_destroy(md);
    if (events_partitions)
        *events_partitions = ev_parts;
    static const char *const suffixes[] = {"state",    "decisions", "alerts", "dlq",
                                           "feedback", "checks",    "rules",  "tokens"};
    size_t ns = 0;
    for (size_t i = 0; i < sizeof(suffixes) / sizeof(suffixes[0]); i++) {
        config_topic(cfg, suffixes[i], names[1 + i], sizeof(names[0]));
        int single = !strcmp(suffixes[i], "rules") || !strcmp(suffixes[i], "tokens");
        int is_compact = single || !strcmp(suffixes[i], "state");
        int n_parts = single ? 1 : ev_parts;
        if (!strcmp(suffixes[i], "decisions") && decision_parts)
            n_parts = decision_parts;
        specs[ns++] = (kafka_topic_spec_t){names[1 + i], n_parts, rf, is_compact ? compact : NULL};
    }
    for (size_t i = 0; i < n; i++) {
        char suffix[128];
        snprintf(suffix, sizeof(suffix), "actions.%s", departments[i]);
        config_topic(cfg, suffix, actions[i], sizeof(actions[i]));
        specs[ns++] =
            (kafka_topic_spec_t){actions[i], action_parts ? action_parts : ev_parts, rf, NULL};
    }
    if (kafka_topics_ensure(rk, specs, ns, RULESYNC_TIMEOUT_MS, errstr, errstr_size))
        goto done;
    /* An existing credit.state with another partition count would split subjects' state. A
     * topic just created may show no partitions for a moment: ask again. */
    int state_parts = 0;
    for (int attempt = 0; attempt < 50 && state_parts == 0; attempt++) {
        if (attempt)
            usleep(200000);
        rkt = rd_kafka_topic_new(rk, names[1], NULL);
        err = rd_kafka_metadata(rk, 0, rkt, &md, RULESYNC_TIMEOUT_MS);
        rd_kafka_topic_destroy(rkt);
        if (!err && md->topic_cnt == 1 && !md->topics[0].err)
            state_parts = md->topics[0].partition_cnt;
        if (md)
            rd_kafka_metadata_destroy(md);
        md = NULL;
    }
    if (state_parts != ev_parts) {
        snprintf(errstr, errstr_size, "%s has %d partitions but %s has %d: they must match",
                 names[1], state_parts, names[0], ev_parts);
        goto done;
    }
    rc = 0;
done:
    free(actions);
    free(specs);
    rd_kafka_destroy(rk);
    return rc;
}
