/*
 * schemas: which protobuf message each jrp topic carries (CONTRACT.md's topic table), and jrp's
 * messages by their full names (the jrp-schema header). One table for every tool that decodes
 * records it did not write: jrpctl tail and jrpctl dlq.
 */
#ifndef JRP_SCHEMAS_H
#define JRP_SCHEMAS_H

#include <protobuf-c/protobuf-c.h>
#include <stddef.h>

/* A jrp message by full name ("jrp.v1.Action", len bytes, not terminated), or NULL. */
const ProtobufCMessageDescriptor *schemas_by_name(const char *name, size_t len);

/*
 * suffix: a topic's name after topic.prefix ("events", "actions.market", ...). Returns 1 when
 * it names a jrp topic, with *desc its message, NULL for the dead-letter topic ("dlq", whose
 * records keep their own schema in a header); 0 otherwise.
 */
int schemas_by_topic(const char *suffix, const ProtobufCMessageDescriptor **desc);

#endif
