/*
 * bench_rules: the matcher's cost per event beside a baseline measured in the same run — protobuf
 * unpack and pack of the same event, the least any engine must do with it. Prints medians of
 * several rounds and their ratio; the machine is shared and noisy, so only ratios mean much.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "errlist.h"
#include "rules.h"

static int ROUNDS = 7;
static int EVENTS = 200000;
#define SUBJECTS 5000

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof(double), cmp_double);
    return v[n / 2];
}

/* Event i: subject i % SUBJECTS, alternately listed on and delisted from black.overload. */
static void make_event(Jrp__V1__CreditEvent *ev, Jrp__V1__Subject *s, char *id, size_t id_size,
                       int i)
{
    jrp__v1__credit_event__init(ev);
    snprintf(id, id_size, "bench-%d", i);
    ev->event_id = id;
    ev->kind = (i / SUBJECTS) % 2 ? JRP__V1__EVENT_KIND__EVENT_KIND_DELISTED
                                  : JRP__V1__EVENT_KIND__EVENT_KIND_LISTED;
    ev->delist_reason = JRP__V1__DELIST_REASON__DELIST_REASON_REPAIRED;
    ev->subject = s;
    ev->source_department = "transport";
    ev->occurred_at_ms = 1767225600000LL + i;
    ev->list_code = "black.overload";
}

int main(int argc, char **argv)
{
    const char *dir = argc > 1 ? argv[1] : "deploy/rules";
    errlist_t el;
    errlist_init(&el);
    Jrp__V1__RuleSet *rs = rules_load_dir(dir, &el);
    if (!rs) {
        fprintf(stderr, "bench_rules: %s: rules refused\n", dir);
        return 1;
    }
    rs->version = 1;
    char err[256];
    rules_t *rules = rules_compile(rs, err, sizeof(err));
    if (!rules) {
        fprintf(stderr, "bench_rules: %s\n", err);
        return 1;
    }
    Jrp__V1__SubjectState **states = calloc(SUBJECTS, sizeof(*states));
    Jrp__V1__Subject subject;
    jrp__v1__subject__init(&subject);
    subject.type = JRP__V1__SUBJECT_TYPE__SUBJECT_TYPE_ENTERPRISE;
    subject.id = "91350100M000100Y43";
    rules_match_opts_t opts = {30LL * 86400 * 1000, 64};
    if (argc > 2) {
        EVENTS = atoi(argv[2]);
        ROUNDS = 1;
    }
    double base[7], match[7];
    size_t actions = 0;
    uint8_t buf[1024];
    for (int r = 0; r < ROUNDS; r++) {
        /* Baseline: decode and re-encode each event. */
        double t = now_s();
        for (int i = 0; i < EVENTS; i++) {
            Jrp__V1__CreditEvent ev;
            char id[32];
            make_event(&ev, &subject, id, sizeof(id), i);
            size_t len = jrp__v1__credit_event__pack(&ev, buf);
            Jrp__V1__CreditEvent *back = jrp__v1__credit_event__unpack(NULL, len, buf);
            len = jrp__v1__credit_event__pack(back, buf);
            jrp__v1__credit_event__free_unpacked(back, NULL);
        }
        base[r] = EVENTS / (now_s() - t);
        /* The matcher on per-subject states, plus the same decode the engine does. */
        for (int s = 0; s < SUBJECTS; s++) {
            if (states[s])
                rules_state_free(states[s]);
            states[s] = malloc(sizeof(Jrp__V1__SubjectState));
            jrp__v1__subject_state__init(states[s]);
        }
        t = now_s();
        rules_result_t res;
        rules_result_init(&res);
        for (int i = 0; i < EVENTS; i++) {
            Jrp__V1__CreditEvent ev;
            char id[32];
            make_event(&ev, &subject, id, sizeof(id), i);
            size_t len = jrp__v1__credit_event__pack(&ev, buf);
            Jrp__V1__CreditEvent *back = jrp__v1__credit_event__unpack(NULL, len, buf);
            if (rules_match(rules, states[i % SUBJECTS], back, ev.occurred_at_ms, &opts, &res)) {
                fprintf(stderr, "bench_rules: out of memory\n");
                return 1;
            }
            actions += res.n_actions;
            rules_result_clear(&res);
            jrp__v1__credit_event__free_unpacked(back, NULL);
        }
        match[r] = EVENTS / (now_s() - t);
    }
    double b = median(base, ROUNDS), m = median(match, ROUNDS);
    printf("rules_match: %d events x %d rounds over %d subjects (%zu actions per round)\n", EVENTS,
           ROUNDS, SUBJECTS, actions / ROUNDS);
    printf("  baseline  protobuf unpack+pack   %10.0f events/s (median)\n", b);
    printf("  matcher   unpack+match           %10.0f events/s (median), %.2f us/event\n", m,
           1e6 / m);
    printf("  ratio     matcher / baseline     %10.2f\n", m / b);
    for (int s = 0; s < SUBJECTS; s++)
        rules_state_free(states[s]);
    free(states);
    rules_destroy(rules);
    return 0;
}
