/*
 * testenv: what integration tests need to find the local Kafka and Redis that `make up` (or
 * scripts/test.sh) started, and unique names so that test runs never collide.
 */
#ifndef JRP_TESTENV_H
#define JRP_TESTENV_H

/*
 * Read the local configuration named by $JRP_TEST_CONF (default build/local/jrp.conf).
 * Returns the value of key (a static copy valid until the next call with the same key), or NULL
 * if the file or the key is missing.
 */
const char *testenv_get(const char *key);

/* Shorthands; NULL when the servers are not configured (tests then fail, they do not skip). */
const char *testenv_kafka_bootstrap(void);
const char *testenv_redis_url(void);

/* A name unique to this process and call: "<prefix>-<pid>-<ms>-<n>". Returns a static buffer
 * valid until the next call. */
const char *testenv_unique(const char *prefix);

#endif
