/*
 * ids: the identifiers of the transport credit system, validated by computation.
 * Unified social credit codes (GB 32100-2015), resident identity numbers (GB 11643-1999),
 * vehicle plates (GA 36-2018), department / list / measure / memorandum codes, and subject keys
 * ("<type>:<id>"). Pure functions, no allocation.
 */
#ifndef JRP_IDS_H
#define JRP_IDS_H

#include <stddef.h>

typedef enum {
    IDS_SUBJECT_UNKNOWN = 0, /* same numbering as jrp.v1.SubjectType */
    IDS_SUBJECT_ENTERPRISE = 1,
    IDS_SUBJECT_PERSON = 2,
    IDS_SUBJECT_VEHICLE = 3,
} ids_subject_type_t;

/*
 * Each validator returns 0 when s is valid. Otherwise it returns -1, and when reason is not
 * NULL writes one sentence saying what is wrong into reason (reason_size bytes), and when
 * code is not NULL sets *code to a stable token: "bad_length", "bad_char", "bad_checksum",
 * "bad_date", "bad_format".
 */
int ids_check_credit_code(const char *s, const char **code, char *reason, size_t reason_size);
int ids_check_identity_number(const char *s, const char **code, char *reason, size_t reason_size);
int ids_check_plate(const char *s, const char **code, char *reason, size_t reason_size);

/* Dispatch on type; an unknown type is "bad_type". */
int ids_check_subject(ids_subject_type_t type, const char *id, const char **code, char *reason,
                      size_t reason_size);

/* The GB 32100 check character for the first 17 characters of s, or 0 if one is not in the charset.
 */
char ids_credit_code_check_char(const char *s17);
/* The GB 11643 check character for the first 17 digits of s, or 0 if one is not a digit. */
char ids_identity_check_char(const char *s17);

/* Code formats of CONTRACT.md; each returns 1 if well formed, 0 if not. */
int ids_is_department(const char *s);    /* [a-z][a-z0-9_]{1,31} */
int ids_is_list_code(const char *s);     /* (red|focus|black).[a-z0-9_.]+ */
int ids_is_measure_code(const char *s);  /* [A-Z][A-Z0-9_]+ */
int ids_is_memorandum_id(const char *s); /* [a-z0-9_.-]+ */

/* "enterprise", "person", "vehicle" <-> type; accepts the proto names SUBJECT_TYPE_* too. */
const char *ids_subject_type_name(ids_subject_type_t type); /* "enterprise", ... or "unknown" */
ids_subject_type_t ids_subject_type_parse(const char *s);   /* IDS_SUBJECT_UNKNOWN if not known */

/*
 * Subject key "<type>:<id>". ids_subject_key writes it into buf and returns its length, or -1 if
 * it does not fit. ids_subject_key_parse splits key into type and id (id points into key) and
 * validates the id; returns 0 or -1 with code and reason as above.
 */
int ids_subject_key(ids_subject_type_t type, const char *id, char *buf, size_t size);
int ids_subject_key_parse(const char *key, ids_subject_type_t *type, const char **id,
                          const char **code, char *reason, size_t reason_size);

/*
 * Mask a person's identity number for logs: first 6 and last 4 characters kept, the rest '*'
 * ("110105********002X"). Any other string of 11 or more characters is masked the same way;
 * shorter strings become all '*'. Writes into buf (NUL-terminated, truncated to size).
 */
void ids_mask(const char *s, char *buf, size_t size);

#endif
