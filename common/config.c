/*
 * config: one table of every key, and a store filled from files, environment and overrides.
 * The table is the single source of truth: start-up checks, `--help` and docs/operations.md all
 * come from it.
 */
#include "config.h"
#include "grow.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define I64_MAX 9223372036854775807LL

/* clang-format off */
const config_def_t config_defs[] = {
    /* Shared by every part. */
    {"kafka.bootstrap.servers", CONFIG_STRING, "127.0.0.1:9092", 0, 0, NULL,
     "Kafka brokers, host:port[,host:port]; every other kafka.* key goes to librdkafka as is"},
    {"redis.url", CONFIG_STRING, "redis://127.0.0.1:6379/0", 0, 0, NULL,
     "Redis, redis://[:password@]host:port/db"},
    {"topic.prefix", CONFIG_STRING, "credit.", 0, 0, NULL,
     "prefix of every topic name (credit.events, credit.actions.<department>, ...)"},
    {"redis.prefix", CONFIG_STRING, "jrp:", 0, 0, NULL,
     "prefix of every Redis key jrp writes (several deployments can share one Redis)"},
    {"topic.partitions", CONFIG_INT, "6", 1, 10000, NULL,
     "partitions of the topics jrp creates; credit.state always gets credit.events' count"},
    {"topic.action_partitions", CONFIG_INT, "1", 0, 10000, NULL,
     "partitions of each credit.actions.<department> jrp creates (0 = as many as credit.events): "
     "every partition costs each engine transaction a request and a marker"},
    {"topic.decision_partitions", CONFIG_INT, "1", 0, 10000, NULL,
     "partitions of credit.decisions when jrp creates it (0 = as many as credit.events): every "
     "partition costs each engine transaction a request and a marker"},
    {"topic.replication_factor", CONFIG_INT, "-1", -1, 32, NULL,
     "replication factor of the topics jrp creates (-1 = the broker's default)"},
    {"log.level", CONFIG_ENUM, "info", 0, 0, "debug|info|warn|error", "least severe level logged"},
    {"log.format", CONFIG_ENUM, "plain", 0, 0, "plain|json", "log lines as plain text or JSON"},
    /* jrp-engine. */
    {"engine.instance", CONFIG_STRING, "engine-1", 0, 0, NULL,
     "stable name of this engine process: its transactional.id and group.instance.id"},
    {"engine.group", CONFIG_STRING, "jrp-engine", 0, 0, NULL, "consumer group of the engines"},
    {"engine.listen", CONFIG_HOSTPORT, "127.0.0.1:9183", 0, 0, NULL,
     "ops port: /healthz, /readyz, /metrics"},
    {"engine.batch_max_events", CONFIG_INT, "1000", 1, 100000, NULL,
     "most events in one transaction"},
    {"engine.batch_max_ms", CONFIG_INT, "100", 1, 60000, NULL,
     "longest a transaction stays open collecting events, in milliseconds"},
    {"engine.pipeline", CONFIG_BOOL, "true", 0, 0, NULL,
     "decide the next batch while the previous transaction commits"},
    {"engine.dedup_horizon_days", CONFIG_INT, "30", 1, 3650, NULL,
     "how long an event id is remembered to recognise a repeat"},
    {"engine.lapse_check_ms", CONFIG_INT, "1000", 100, 60000, NULL,
     "how often listings that reached valid_until are looked for"},
    {"engine.transaction_timeout_ms", CONFIG_INT, "60000", 1000, 900000, NULL,
     "Kafka transaction.timeout.ms of the engine's producer"},
    {"engine.state_cache_max", CONFIG_INT, "2000", 0, 100000000, NULL,
     "subject states kept in memory for the partitions this engine owns (about 2.7 kB each)"},
    {"engine.rules_check_ms", CONFIG_INT, "5000", 100, 600000, NULL,
     "how often the active rule-set version is checked in Redis (besides pub/sub)"},
    /* jrp-gateway. */
    {"gateway.listen", CONFIG_HOSTPORT, "127.0.0.1:8080", 0, 0, NULL, "HTTP API address"},
    {"gateway.ops_listen", CONFIG_HOSTPORT, NULL, 0, 0, NULL,
     "separate ops address for /healthz, /readyz, /metrics (default: the API address)"},
    {"gateway.max_body_bytes", CONFIG_INT, "1048576", 1024, 67108864, NULL,
     "largest request body accepted (413 above)"},
    {"gateway.max_header_bytes", CONFIG_INT, "16384", 1024, 1048576, NULL,
     "largest request head accepted (431 above)"},
    {"gateway.max_batch_events", CONFIG_INT, "1000", 1, 100000, NULL,
     "most events in one POST /v1/events"},
    {"gateway.max_connections", CONFIG_INT, "1024", 1, 1000000, NULL,
     "open connections at most (503 above)"},
    {"gateway.idle_timeout_ms", CONFIG_INT, "60000", 100, 3600000, NULL,
     "a keep-alive connection idle this long is closed"},
    {"gateway.header_timeout_ms", CONFIG_INT, "10000", 100, 600000, NULL,
     "a request whose head is not complete within this time gets 408"},
    {"gateway.body_timeout_ms", CONFIG_INT, "30000", 100, 600000, NULL,
     "a request whose body is not complete within this time (after its head) gets 408"},
    {"gateway.max_url_bytes", CONFIG_INT, "8192", 256, 65535, NULL,
     "longest request target (path and query) accepted (414 above)"},
    {"gateway.request_timeout_ms", CONFIG_INT, "5000", 100, 600000, NULL,
     "longest a request waits for Kafka or Redis before 503; the producer's message.timeout.ms"},
    {"gateway.max_inflight", CONFIG_INT, "10000", 1, 1000000, NULL,
     "API requests waiting for Kafka or Redis at most (429 above)"},
    {"gateway.token_cache_ms", CONFIG_INT, "2000", 0, 60000, NULL,
     "how long a token lookup is cached (0 = never); a revocation takes effect within this time"},
    {"gateway.linger_ms", CONFIG_DECIMAL, "0.1", 0, 1000, NULL,
     "the producer's linger.ms (kafka.linger.ms overrides): answers wait for the broker's ack"},
    {"gateway.check_record", CONFIG_ENUM, "acked", 0, 0, "acked|queued",
     "a credit check is answered once its record is acked (or queued: see docs/gateway.md)"},
    /* jrp-dispatch. */
    {"dispatch.listen", CONFIG_HOSTPORT, "127.0.0.1:9181", 0, 0, NULL, "ops port"},
    {"dispatch.group", CONFIG_STRING, "jrp-dispatch", 0, 0, NULL, "consumer group"},
    {"dispatch.*.url", CONFIG_STRING, NULL, 0, 0, NULL, "webhook URL of a department"},
    {"dispatch.*.secret", CONFIG_SECRET, NULL, 0, 0, NULL, "HMAC-SHA256 signing secret"},
    {"dispatch.*.timeout_ms", CONFIG_INT, "10000", 100, 600000, NULL, "per-request timeout"},
    {"dispatch.*.concurrency", CONFIG_INT, "8", 1, 1024, NULL, "requests in flight at most"},
    {"dispatch.*.ca_file", CONFIG_STRING, NULL, 0, 0, NULL,
     "CA certificates (PEM) that verify the webhook's TLS certificate (default: the system's)"},
    {"dispatch.instance", CONFIG_STRING, NULL, 0, 0, NULL,
     "stable group.instance.id of this dispatch process (unset: dynamic membership)"},
    {"dispatch.retry_base_ms", CONFIG_INT, "250", 1, 3600000, NULL,
     "first retry waits up to this long (full jitter), doubling per attempt"},
    {"dispatch.retry_cap_ms", CONFIG_INT, "60000", 1, 86400000, NULL,
     "longest wait between two attempts (Retry-After may ask for more, up to 1 hour)"},
    {"dispatch.max_attempts", CONFIG_INT, "0", 0, 1000000, NULL,
     "attempts before an action is dead-lettered as webhook_gave_up (0 = retry forever)"},
    {"dispatch.max_pending", CONFIG_INT, "10000", 10, 10000000, NULL,
     "actions held in memory at most; consumption pauses above it"},
    {"dispatch.commit_interval_ms", CONFIG_INT, "1000", 10, 60000, NULL,
     "how often finished offsets are committed"},
    {"dispatch.drain_ms", CONFIG_INT, "5000", 0, 600000, NULL,
     "on SIGTERM, how long requests in flight may still finish"},
    /* jrp-ledger. */
    {"ledger.listen", CONFIG_HOSTPORT, "127.0.0.1:9182", 0, 0, NULL, "ops port"},
    {"ledger.group", CONFIG_STRING, "jrp-ledger", 0, 0, NULL, "consumer group"},
    {"ledger.feedback_due_workdays", CONFIG_INT, "5", 1, 365, NULL,
     "working days a department has to report EXECUTED or REJECTED"},
    {"ledger.calendar", CONFIG_STRING, "deploy/calendar/cn-workdays.json", 0, 0, NULL,
     "working-day calendar (holidays and adjusted working days)"},
    {"ledger.scan_ms", CONFIG_INT, "1000", 50, 60000, NULL,
     "how often due alerts are looked for (and a batch held while Redis is down is retried)"},
    {"ledger.workday_seconds", CONFIG_INT, "0", 0, 86400, NULL,
     "tests and drills only: every working day lasts this many seconds (0 = the calendar)"},
};
/* clang-format on */
const size_t config_defs_count = sizeof(config_defs) / sizeof(config_defs[0]);

typedef struct config_entry_s {
    char *key;
    char *value;
} config_entry_t;

struct config_s {
    config_entry_t *entries;
    size_t count;
    size_t cap;
};

config_t *config_create(void)
{
    return calloc(1, sizeof(config_t));
}

void config_destroy(config_t *cfg)
{
    if (!cfg)
        return;
    for (size_t i = 0; i < cfg->count; i++) {
        free(cfg->entries[i].key);
        free(cfg->entries[i].value);
    }
    free(cfg->entries);
    free(cfg);
}

/* Does key match pattern, where a "*" segment stands for one non-empty dot-free word? */
static int config__match(const char *pattern, const char *key)
{
    while (*pattern && *key) {
        if (*pattern == '*') {
            if (*key == '.')
                return 0;
            while (*key && *key != '.')
                key++;
            pattern++;
            continue;
        }
        if (*pattern != *key)
            return 0;
        pattern++;
        key++;
    }
    return *pattern == '\0' && *key == '\0';
}

const config_def_t *config_find_def(const char *key)
{
    for (size_t i = 0; i < config_defs_count; i++)
        if (config__match(config_defs[i].name, key))
            return &config_defs[i];
    return NULL;
}

static int config__parse_int(const char *s, long long *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end)
        return -1;
    *out = v;
    return 0;
}

/* Digits with at most one '.', an optional leading '-': no exponent, hex, inf or nan. */
static int config__parse_decimal(const char *s, double *out)
{
    const char *p = s + (*s == '-');
    int digits = 0, dots = 0;
    for (; *p; p++) {
        if (*p == '.')
            dots++;
        else if (*p >= '0' && *p <= '9')
            digits++;
        else
            return -1;
    }
    if (!digits || dots > 1)
        return -1;
    *out = strtod(s, NULL);
    return 0;
}

static int config__parse_bool(const char *s)
{
    static const char *yes[] = {"true", "yes", "on", "1"};
    static const char *no[] = {"false", "no", "off", "0"};
    for (size_t i = 0; i < 4; i++) {
        if (!strcasecmp(s, yes[i]))
            return 1;
        if (!strcasecmp(s, no[i]))
            return 0;
    }
    return -1;
}

static int config__split_hostport(const char *s, char *host, size_t host_size, int *port)
{
    const char *colon = strrchr(s, ':');
    if (!colon || colon == s)
        return -1;
    size_t hl = (size_t)(colon - s);
    if (s[0] == '[' && hl >= 2 && s[hl - 1] == ']') { /* [::1]:8080 */
        s++;
        hl -= 2;
    }
    if (hl == 0 || hl >= host_size)
        return -1;
    long long p;
    if (config__parse_int(colon + 1, &p) || p < 0 || p > 65535)
        return -1;
    memcpy(host, s, hl);
    host[hl] = '\0';
    *port = (int)p;
    return 0;
}

static int config__enum_has(const char *choices, const char *v)
{
    size_t n = strlen(v);
    for (const char *p = choices; *p;) {
        const char *bar = strchr(p, '|');
        size_t len = bar ? (size_t)(bar - p) : strlen(p);
        if (len == n && !strncmp(p, v, n))
            return 1;
        if (!bar)
            break;
        p = bar + 1;
    }
    return 0;
}

/* Check value against the definition; 0 or -1 with a reason. */
static int config__check(const config_def_t *def, const char *value, char *why, size_t why_size)
{
    long long v;
    char host[256];
    int port;
    switch (def->type) {
    case CONFIG_INT:
        if (config__parse_int(value, &v)) {
            snprintf(why, why_size, "\"%s\" is not a whole number", value);
            return -1;
        }
        if (v < def->min || v > def->max) {
            snprintf(why, why_size, "%lld is outside %lld..%lld", v, def->min, def->max);
            return -1;
        }
        return 0;
    case CONFIG_DECIMAL: {
        double d;
        if (config__parse_decimal(value, &d)) {
            snprintf(why, why_size, "\"%s\" is not a decimal number", value);
            return -1;
        }
        if (d < (double)def->min || d > (double)def->max) {
            snprintf(why, why_size, "%s is outside %lld..%lld", value, def->min, def->max);
            return -1;
        }
        return 0;
    }
    case CONFIG_BOOL:
        if (config__parse_bool(value) < 0) {
            snprintf(why, why_size, "\"%s\" is not true or false", value);
            return -1;
        }
        return 0;
    case CONFIG_HOSTPORT:
        if (config__split_hostport(value, host, sizeof(host), &port)) {
            snprintf(why, why_size, "\"%s\" is not host:port (port 0..65535)", value);
            return -1;
        }
        return 0;
    case CONFIG_ENUM:
        if (!config__enum_has(def->choices, value)) {
            snprintf(why, why_size, "\"%s\" is not one of %s", value, def->choices);
            return -1;
        }
        return 0;
    case CONFIG_STRING:
    case CONFIG_SECRET:
        return 0;
    }
    return 0;
}

/* Is key.suffix (after "kafka.") a property librdkafka accepts with this value? */
static int config__kafka_check(const char *prop, const char *value, char *why, size_t why_size)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (!conf) {
        snprintf(why, why_size, "out of memory");
        return -1;
    }
    int rc = rd_kafka_conf_set(conf, prop, value, why, why_size) == RD_KAFKA_CONF_OK ? 0 : -1;
    rd_kafka_conf_destroy(conf);
    return rc;
}

static int config__store(config_t *cfg, const char *key, const char *value)
{
    for (size_t i = 0; i < cfg->count; i++) {
        if (!strcmp(cfg->entries[i].key, key)) {
            char *v = strdup(value);
            if (!v)
                return -ENOMEM;
            free(cfg->entries[i].value);
            cfg->entries[i].value = v;
            return 0;
        }
    }
    config_entry_t *e = grow(cfg->entries, &cfg->cap, cfg->count, sizeof(*e), 32);
    if (!e)
        return -ENOMEM;
    cfg->entries = e;
    char *k = strdup(key), *v = strdup(value);
    if (!k || !v) {
        free(k);
        free(v);
        return -ENOMEM;
    }
    cfg->entries[cfg->count].key = k;
    cfg->entries[cfg->count].value = v;
    cfg->count++;
    return 0;
}

int config_set(config_t *cfg, const char *key, const char *value, const char *origin, char *errstr,
               size_t errstr_size)
{
    char why[512];
    if (!strncmp(key, "kafka.", 6)) {
        if (!key[6]) {
            snprintf(errstr, errstr_size, "%s: empty kafka property name", origin);
            return -1;
        }
        if (config__kafka_check(key + 6, value, why, sizeof(why))) {
            snprintf(errstr, errstr_size, "%s: %s: %s", origin, key, why);
            return -1;
        }
    } else {
        const config_def_t *def = config_find_def(key);
        if (!def) {
            snprintf(errstr, errstr_size, "%s: unknown key \"%s\"", origin, key);
            return -1;
        }
        if (config__check(def, value, why, sizeof(why))) {
            snprintf(errstr, errstr_size, "%s: %s: %s", origin, key, why);
            return -1;
        }
    }
    if (config__store(cfg, key, value)) {
        snprintf(errstr, errstr_size, "%s: out of memory", origin);
        return -1;
    }
    return 0;
}

static char *config__trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    size_t n = strlen(s);
    while (n && isspace((unsigned char)s[n - 1]))
        s[--n] = '\0';
    return s;
}

int config_load_file(config_t *cfg, const char *path, char *errstr, size_t errstr_size)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(errstr, errstr_size, "%s: cannot open: %s", path, strerror(errno));
        return -1;
    }
    char line[4096], origin[1100];
    int lineno = 0, rc = 0;
    while (fgets(line, sizeof(line), f)) {
        lineno++;
        snprintf(origin, sizeof(origin), "%s:%d", path, lineno);
        if (!strchr(line, '\n') && !feof(f)) {
            snprintf(errstr, errstr_size, "%s: line longer than %zu bytes", origin,
                     sizeof(line) - 2);
            rc = -1;
            break;
        }
        char *s = config__trim(line);
        if (!*s || *s == '#')
            continue;
        char *eq = strchr(s, '=');
        if (!eq) {
            snprintf(errstr, errstr_size, "%s: expected \"key = value\"", origin);
            rc = -1;
            break;
        }
        *eq = '\0';
        char *key = config__trim(s), *value = config__trim(eq + 1);
        if (!*key) {
            snprintf(errstr, errstr_size, "%s: empty key", origin);
            rc = -1;
            break;
        }
        if (config_set(cfg, key, value, origin, errstr, errstr_size)) {
            rc = -1;
            break;
        }
    }
    if (rc == 0 && ferror(f)) {
        snprintf(errstr, errstr_size, "%s: read error", path);
        rc = -1;
    }
    fclose(f);
    return rc;
}

/* JRP_ + upper(key) with '.' and '-' as '_'. */
static void config__env_name(const char *key, char *buf, size_t size)
{
    size_t n = (size_t)snprintf(buf, size, "JRP_");
    for (const char *p = key; *p && n + 1 < size; p++)
        buf[n++] = (*p == '.' || *p == '-') ? '_' : (char)toupper((unsigned char)*p);
    buf[n] = '\0';
}

int config_load_env(config_t *cfg, char **envp, char *errstr, size_t errstr_size)
{
    if (!envp)
        return 0;
    char name[256], key[256], why[256];
    for (char **e = envp; *e; e++) {
        if (strncmp(*e, "JRP_", 4))
            continue;
        const char *eq = strchr(*e, '=');
        if (!eq || (size_t)(eq - *e) >= sizeof(name))
            continue;
        memcpy(name, *e, (size_t)(eq - *e));
        name[eq - *e] = '\0';
        const char *value = eq + 1;
        /* A table key whose variable name this is? Patterned keys cannot come from here. */
        const config_def_t *def = NULL;
        for (size_t i = 0; i < config_defs_count && !def; i++) {
            char candidate[256];
            if (strchr(config_defs[i].name, '*'))
                continue;
            config__env_name(config_defs[i].name, candidate, sizeof(candidate));
            if (!strcmp(candidate, name))
                def = &config_defs[i];
        }
        if (def) {
            if (config_set(cfg, def->name, value, name, errstr, errstr_size))
                return -1;
            continue;
        }
        if (!strncmp(name, "JRP_KAFKA_", 10) && name[10]) {
            size_t n = 0;
            for (const char *p = name + 10; *p && n + 1 < sizeof(key); p++)
                key[n++] = *p == '_' ? '.' : (char)tolower((unsigned char)*p);
            key[n] = '\0';
            if (config__kafka_check(key, value, why, sizeof(why)) == 0) {
                char full[300];
                snprintf(full, sizeof(full), "kafka.%s", key);
                if (config_set(cfg, full, value, name, errstr, errstr_size))
                    return -1;
            }
        }
        /* Anything else is a script's variable (JRP_TEST_CONF, JRP_KAFKA_PORT, ...). */
    }
    return 0;
}

int config_from_args(config_t *cfg, int *argc, char **argv, char **envp, char *errstr,
                     size_t errstr_size)
{
    int n = *argc, out = 1, rc = 0;
    char **files = calloc((size_t)n + 1, sizeof(char *));
    char **opts = calloc((size_t)n + 1, sizeof(char *));
    int nfiles = 0, nopts = 0;
    if (!files || !opts) {
        snprintf(errstr, errstr_size, "out of memory");
        rc = -1;
        goto done;
    }
    for (int i = 1; i < n; i++) {
        const char *a = argv[i];
        int is_c = !strcmp(a, "-c") || !strcmp(a, "--config");
        int is_o = !strcmp(a, "-o") || !strcmp(a, "--option");
        if (!strcmp(a, "--")) { /* everything after is positional */
            while (i < n)
                argv[out++] = argv[i++];
            break;
        }
        if (is_c || is_o) {
            if (i + 1 >= n) {
                snprintf(errstr, errstr_size, "%s needs a value", a);
                rc = -1;
                goto done;
            }
            if (is_c)
                files[nfiles++] = argv[++i];
            else
                opts[nopts++] = argv[++i];
            continue;
        }
        if (!strncmp(a, "--config=", 9)) {
            files[nfiles++] = (char *)a + 9;
            continue;
        }
        if (!strncmp(a, "--option=", 9)) {
            opts[nopts++] = (char *)a + 9;
            continue;
        }
        argv[out++] = argv[i];
    }
    argv[out] = NULL;
    *argc = out;
    for (int i = 0; i < nfiles && !rc; i++)
        rc = config_load_file(cfg, files[i], errstr, errstr_size);
    if (!rc)
        rc = config_load_env(cfg, envp, errstr, errstr_size);
    for (int i = 0; i < nopts && !rc; i++) {
        char kv[4096];
        snprintf(kv, sizeof(kv), "%s", opts[i]);
        char *eq = strchr(kv, '=');
        if (!eq) {
            snprintf(errstr, errstr_size, "-o %s: expected key=value", opts[i]);
            rc = -1;
            break;
        }
        *eq = '\0';
        rc = config_set(cfg, config__trim(kv), config__trim(eq + 1), "-o", errstr, errstr_size);
    }
done:
    free(files);
    free(opts);
    return rc;
}

const char *config_get(const config_t *cfg, const char *key)
{
    for (size_t i = 0; i < cfg->count; i++)
        if (!strcmp(cfg->entries[i].key, key))
            return cfg->entries[i].value;
    const config_def_t *def = config_find_def(key);
    return def ? def->def : NULL;
}

long long config_get_int(const config_t *cfg, const char *key)
{
    const char *v = config_get(cfg, key);
    long long out = 0;
    if (v && config__parse_int(v, &out))
        out = 0;
    return out;
}

double config_get_decimal(const config_t *cfg, const char *key)
{
    const char *v = config_get(cfg, key);
    double out = 0;
    if (v && config__parse_decimal(v, &out))
        out = 0;
    return out;
}

int config_get_bool(const config_t *cfg, const char *key)
{
    const char *v = config_get(cfg, key);
    return v ? config__parse_bool(v) == 1 : 0;
}

int config_get_hostport(const config_t *cfg, const char *key, char *host, size_t host_size,
                        int *port)
{
    const char *v = config_get(cfg, key);
    return v ? config__split_hostport(v, host, host_size, port) : -1;
}

int config_apply_kafka(const config_t *cfg, rd_kafka_conf_t *conf, char *errstr, size_t errstr_size)
{
    const char *bs = config_get(cfg, "kafka.bootstrap.servers");
    if (bs &&
        rd_kafka_conf_set(conf, "bootstrap.servers", bs, errstr, errstr_size) != RD_KAFKA_CONF_OK)
        return -1;
    for (size_t i = 0; i < cfg->count; i++) {
        const char *k = cfg->entries[i].key;
        if (strncmp(k, "kafka.", 6))
            continue;
        if (rd_kafka_conf_set(conf, k + 6, cfg->entries[i].value, errstr, errstr_size) !=
            RD_KAFKA_CONF_OK)
            return -1;
    }
    return 0;
}

const char *config_topic(const config_t *cfg, const char *suffix, char *buf, size_t size)
{
    const char *prefix = config_get(cfg, "topic.prefix");
    snprintf(buf, size, "%s%s", prefix ? prefix : "", suffix);
    return buf;
}

void config_each(const config_t *cfg, const char *prefix,
                 void (*fn)(const char *key, const char *value, void *arg), void *arg)
{
    size_t n = strlen(prefix);
    for (size_t i = 0; i < cfg->count; i++)
        if (!strncmp(cfg->entries[i].key, prefix, n))
            fn(cfg->entries[i].key, cfg->entries[i].value, arg);
}
