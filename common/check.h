/*
 * check: the credit check's answer (the measures in force for a subject now), as the gateway's
 * GET /v1/subjects/{type}/{id}/measures and `jrpctl check` give it. Pure: the caller brings the
 * subject's state and a way to the rule-set versions the measures came from (their texts and
 * legal basis are looked up there, so an answer quotes the memorandum that was applied).
 */
#ifndef JRP_CHECK_H
#define JRP_CHECK_H

#include <stddef.h>
#include <stdint.h>

#include "jrp/v1/action.pb-c.h"
#include "jrp/v1/rules.pb-c.h"
#include "jrp/v1/state.pb-c.h"

/* The measure's text and legal basis as rs states them. 0, or -1 if rs does not have it. */
int check_measure_texts(const Jrp__V1__RuleSet *rs, const Jrp__V1__Action *a, const char **text,
                        const char **basis);

/* The rule-set version a measure of the state came from. */
int64_t check_measure_version(const Jrp__V1__SubjectState *st, const Jrp__V1__Action *a);

/* Is a measure part of the answer: in force at now_ms, for department (NULL: every one)? */
int check_measure_wanted(const Jrp__V1__Action *a, const char *department, int64_t now_ms);

/* The rule set of version, or NULL if it cannot be had now. */
typedef const Jrp__V1__RuleSet *check_rules_fn(int64_t version, void *arg);

/*
 * Fill acts[0..*n) (room for st->n_measures; st may be NULL) with the measures in force, and
 * ptrs[i] = &acts[i]. The actions borrow the state's and the rule sets' strings: keep both
 * until the answer is packed. 0, or -1 with errstr naming the measure whose texts are missing.
 */
int check_answer(const Jrp__V1__SubjectState *st, const char *department, int64_t now_ms,
                 check_rules_fn *rules, void *arg, Jrp__V1__Action *acts, Jrp__V1__Action **ptrs,
                 size_t *n, char *errstr, size_t errstr_size);

#endif
