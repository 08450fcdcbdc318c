/*
 * errlist: an ordered list of validation errors, each naming where (a file and/or a
 * field path such as "subject.id" or "measures[2].department") and what is wrong.
 * Used by every decoder and loader so that bad input reports every problem at once.
 */
#ifndef JRP_ERRLIST_H
#define JRP_ERRLIST_H

#include <stddef.h>

typedef struct errlist_item_s {
    char *file;    /* may be NULL */
    char *path;    /* field path, "" for the whole input */
    char *code;    /* stable token: "bad_checksum", "missing_field", "bad_json", ... */
    char *message; /* human-readable, one sentence */
} errlist_item_t;

typedef struct errlist_s {
    errlist_item_t *items;
    size_t count;
    size_t cap;
} errlist_t;

/* Initialise an empty list (no allocation). */
void errlist_init(errlist_t *el);

/* Free every item; the list is empty and reusable afterwards. Accepts NULL. */
void errlist_clear(errlist_t *el);

/* Append an error; every string is copied. file may be NULL. Returns 0 or -ENOMEM. */
int errlist_add(errlist_t *el, const char *file, const char *path, const char *code,
                const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* Append every item of src (copied) to dst. */
int errlist_merge(errlist_t *dst, const errlist_t *src);

/* Format item i as "file: path: message [code]" into buf. */
void errlist_format(const errlist_t *el, size_t i, char *buf, size_t size);

/* True if some item's message, path or code contains needle (tests use this). */
int errlist_contains(const errlist_t *el, const char *needle);

#endif
