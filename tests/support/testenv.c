/*
 * testenv: locate the local servers from the configuration `make up` writes.
 */
#include "testenv.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

#define TESTENV_MAX 32

static struct {
    char key[128];
    char value[512];
} testenv_cache[TESTENV_MAX];
static int testenv_count;

static char *testenv__trim(char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    size_t n = strlen(s);
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\n' || s[n - 1] == '\r'))
        s[--n] = '\0';
    return s;
}

const char *testenv_get(const char *key)
{
    for (int i = 0; i < testenv_count; i++)
        if (!strcmp(testenv_cache[i].key, key))
            return testenv_cache[i].value;
    const char *path = getenv("JRP_TEST_CONF");
    if (!path || !*path)
        path = "build/local/jrp.conf";
    FILE *f = fopen(path, "r");
    if (!f)
        return NULL;
    char line[1024];
    const char *found = NULL;
    while (fgets(line, sizeof(line), f)) {
        char *s = testenv__trim(line);
        if (*s == '#' || !*s)
            continue;
        char *eq = strchr(s, '=');
        if (!eq)
            continue;
        *eq = '\0';
        char *k = testenv__trim(s), *v = testenv__trim(eq + 1);
        if (strcmp(k, key) || testenv_count == TESTENV_MAX)
            continue;
        snprintf(testenv_cache[testenv_count].key, sizeof(testenv_cache[0].key), "%s", k);
        snprintf(testenv_cache[testenv_count].value, sizeof(testenv_cache[0].value), "%s", v);
        found = testenv_cache[testenv_count++].value;
        break;
    }
    fclose(f);
    return found;
}

const char *testenv_kafka_bootstrap(void)
{
    return testenv_get("kafka.bootstrap.servers");
}

const char *testenv_redis_url(void)
{
    return testenv_get("redis.url");
}

const char *testenv_unique(const char *prefix)
{
    static char buf[256];
    static int n;
    struct timeval tv;
    gettimeofday(&tv, NULL);
    long long ms = (long long)tv.tv_sec * 1000 + tv.tv_usec / 1000;
    snprintf(buf, sizeof(buf), "%s-%d-%lld-%d", prefix, (int)getpid(), ms, n++);
    return buf;
}
