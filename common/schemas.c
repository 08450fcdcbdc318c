/* schemas: what each jrp topic carries; see schemas.h. */
#include "schemas.h"

#include <string.h>

#include "jrp/v1/action.pb-c.h"
#include "jrp/v1/alert.pb-c.h"
#include "jrp/v1/check.pb-c.h"
#include "jrp/v1/decision.pb-c.h"
#include "jrp/v1/event.pb-c.h"
#include "jrp/v1/feedback.pb-c.h"
#include "jrp/v1/rules.pb-c.h"
#include "jrp/v1/state.pb-c.h"
#include "jrp/v1/token.pb-c.h"

static const struct {
    const char *suffix;
    int is_prefix; /* "actions." matches "actions.<department>" */
    const ProtobufCMessageDescriptor *desc;
} schemas_topics[] = {
    {"events", 0, &jrp__v1__credit_event__descriptor},
    {"actions.", 1, &jrp__v1__action__descriptor},
    {"feedback", 0, &jrp__v1__feedback__descriptor},
    {"decisions", 0, &jrp__v1__decision__descriptor},
    {"state", 0, &jrp__v1__subject_state__descriptor},
    {"rules", 0, &jrp__v1__rule_set__descriptor},
    {"alerts", 0, &jrp__v1__alert__descriptor},
    {"checks", 0, &jrp__v1__check_record__descriptor},
    {"tokens", 0, &jrp__v1__token_record__descriptor},
    {"dlq", 0, NULL},
};

#define SCHEMAS_N_TOPICS (sizeof(schemas_topics) / sizeof(schemas_topics[0]))

const ProtobufCMessageDescriptor *schemas_by_name(const char *name, size_t len)
{
    for (size_t i = 0; i < SCHEMAS_N_TOPICS; i++) {
        const ProtobufCMessageDescriptor *d = schemas_topics[i].desc;
        if (d && strlen(d->name) == len && !memcmp(d->name, name, len))
            return d;
    }
    return NULL;
}

int schemas_by_topic(const char *suffix, const ProtobufCMessageDescriptor **desc)
{
    for (size_t i = 0; i < SCHEMAS_N_TOPICS; i++) {
        const char *s = schemas_topics[i].suffix;
        size_t n = strlen(s);
        if (schemas_topics[i].is_prefix ? !strncmp(suffix, s, n) && suffix[n]
                                        : !strcmp(suffix, s)) {
            *desc = schemas_topics[i].desc;
            return 1;
        }
    }
    return 0;
}
