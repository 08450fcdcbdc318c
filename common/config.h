/*
 * config: the one table of every configuration key jrp knows (name, type, default, bounds, help),
 * and a store filled from a file (-c FILE, "key = value" lines), JRP_* environment variables and
 * -o key=value overrides, in that order of precedence (later wins). Unknown keys and bad values
 * stop start-up naming the file and line. Keys under "kafka." go to librdkafka untouched, but are
 * checked against it at load time so a typo is caught with its line number too.
 */
#ifndef JRP_CONFIG_H
#define JRP_CONFIG_H

#include <librdkafka/rdkafka.h>
#include <stddef.h>

typedef enum {
    CONFIG_STRING = 0,
    CONFIG_INT,      /* 64-bit signed, within [min, max] */
    CONFIG_BOOL,     /* true/false, yes/no, on/off, 1/0 */
    CONFIG_HOSTPORT, /* host:port, port 1..65535 (port 0 = any free port) */
    CONFIG_ENUM,     /* one of the '|'-separated words in `choices` */
    CONFIG_SECRET,   /* a string never printed whole */
    CONFIG_DECIMAL,  /* a decimal number (1, 0.25), within [min, max] */
} config_type_t;

typedef struct config_def_s {
    const char
        *name; /* "engine.batch_max_events"; a "*" segment matches one word: "dispatch.*.url" */
    config_type_t type;
    const char *def; /* default as text; NULL = no default (unset) */
    long long min, max;
    const char *choices; /* CONFIG_ENUM: "plain|json" */
    const char *help;    /* one line */
} config_def_t;

/* The table, in the order operations.md lists it. */
extern const config_def_t config_defs[];
extern const size_t config_defs_count;

typedef struct config_s config_t;

config_t *config_create(void);
void config_destroy(config_t *cfg); /* accepts NULL */

/*
 * Set key to value, checked against the table; origin ("file.conf:12", "-o", "JRP_X") is used in
 * the error. Returns 0, or -1 with "origin: reason" in errstr.
 */
int config_set(config_t *cfg, const char *key, const char *value, const char *origin, char *errstr,
               size_t errstr_size);

/* Load "key = value" lines ('#' comments, blank lines). 0 or -1 naming file and line. */
int config_load_file(config_t *cfg, const char *path, char *errstr, size_t errstr_size);

/*
 * Read JRP_* variables from envp: the variable for key k is "JRP_" + k upper-cased with '.' and
 * '-' as '_' (JRP_REDIS_URL). JRP_KAFKA_X_Y becomes kafka.x.y when librdkafka knows x.y. Other
 * JRP_* variables belong to scripts and are ignored. 0 or -1.
 */
int config_load_env(config_t *cfg, char **envp, char *errstr, size_t errstr_size);

/*
 * Remove every "-c FILE" / "--config FILE" / "-o k=v" / "--option k=v" from argv (wherever it
 * stands, so subcommands accept them too), then load defaults < files < environment < options.
 * *argc is updated; argv keeps the remaining arguments in order. 0 or -1 with the reason.
 */
int config_from_args(config_t *cfg, int *argc, char **argv, char **envp, char *errstr,
                     size_t errstr_size);

/* The effective value (set or default), or NULL when unset with no default. */
const char *config_get(const config_t *cfg, const char *key);
long long config_get_int(const config_t *cfg, const char *key);
double config_get_decimal(const config_t *cfg, const char *key);
int config_get_bool(const config_t *cfg, const char *key);
/* Split a CONFIG_HOSTPORT value; 0 or -1. */
int config_get_hostport(const config_t *cfg, const char *key, char *host, size_t host_size,
                        int *port);

/* Apply every kafka.* key (prefix removed) to conf. 0 or -1 with librdkafka's reason. */
int config_apply_kafka(const config_t *cfg, rd_kafka_conf_t *conf, char *errstr,
                       size_t errstr_size);

/* The topic name for a suffix: topic.prefix + suffix ("credit." + "events"). Writes into buf. */
const char *config_topic(const config_t *cfg, const char *suffix, char *buf, size_t size);

/* Call fn for every explicitly set key starting with prefix (e.g. "dispatch."). */
void config_each(const config_t *cfg, const char *prefix,
                 void (*fn)(const char *key, const char *value, void *arg), void *arg);

/* The table entry matching key (patterns honoured), or NULL. */
const config_def_t *config_find_def(const char *key);

#endif
