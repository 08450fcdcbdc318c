/*
 * check: the credit check's answer from a subject's state. See check.h.
 */
#include "check.h"

#include <stdio.h>
#include <string.h>

int check_measure_texts(const Jrp__V1__RuleSet *rs, const Jrp__V1__Action *a, const char **text,
                        const char **basis)
{
    for (size_t i = 0; i < rs->n_memoranda; i++) {
        const Jrp__V1__Memorandum *m = rs->memoranda[i];
        if (strcmp(m->id, a->memorandum_id) != 0)
            continue;
        for (size_t k = 0; k < m->n_measures; k++) {
            const Jrp__V1__MemorandumMeasure *mm = m->measures[k];
            if (strcmp(mm->department, a->department) != 0 ||
                strcmp(mm->measure, a->measure_code) != 0)
                continue;
            *text = mm->text;
            *basis = mm->basis;
            if (!mm->basis[0])
                for (size_t c = 0; c < rs->n_catalogue; c++)
                    if (strcmp(rs->catalogue[c]->code, mm->measure) == 0)
                        *basis = rs->catalogue[c]->basis;
            return 0;
        }
    }
    return -1;
}

int64_t check_measure_version(const Jrp__V1__SubjectState *st, const Jrp__V1__Action *a)
{
    return a->ruleset_version ? a->ruleset_version : st->ruleset_version;
}

int check_measure_wanted(const Jrp__V1__Action *a, const char *department, int64_t now_ms)
{
    if (a->valid_until_ms != 0 && a->valid_until_ms <= now_ms)
        return 0; /* lapsed; the engine's expiry timer lifts it within a second or so */
    return !department || strcmp(a->department, department) == 0;
}

int check_answer(const Jrp__V1__SubjectState *st, const char *department, int64_t now_ms,
                 check_rules_fn *rules, void *arg, Jrp__V1__Action *acts, Jrp__V1__Action **ptrs,
                 size_t *n, char *errstr, size_t errstr_size)
{
    *n = 0;
    for (size_t i = 0; st && i < st->n_measures; i++) {
        const Jrp__V1__Action *a = st->measures[i];
        if (!check_measure_wanted(a, department, now_ms))
            continue;
        int64_t version = check_measure_version(st, a);
        const Jrp__V1__RuleSet *rs = rules(version, arg);
        const char *text = NULL, *basis = NULL;
        if (!rs || check_measure_texts(rs, a, &text, &basis) != 0) {
            snprintf(errstr, errstr_size,
                     "the texts of measure %s/%s of memorandum %s are not in rule set version %lld",
                     a->department, a->measure_code, a->memorandum_id, (long long)version);
            return -1;
        }
        Jrp__V1__Action *o = &acts[*n];
        jrp__v1__action__init(o);
        o->action_id = a->action_id;
        o->department = a->department;
        o->measure_code = a->measure_code;
        o->measure_kind = a->measure_kind;
        o->measure_text = (char *)text;
        o->legal_basis = (char *)basis;
        o->memorandum_id = a->memorandum_id;
        o->memorandum_version = a->memorandum_version;
        o->list_code = a->list_code;
        o->grade_field = a->grade_field;
        o->grade = a->grade;
        o->cause_event_id = a->cause_event_id;
        o->valid_from_ms = a->valid_from_ms;
        o->valid_until_ms = a->valid_until_ms;
        o->ruleset_version = version;
        ptrs[(*n)++] = o;
    }
    return 0;
}
