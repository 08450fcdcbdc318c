/*
 * errlist: an ordered list of validation errors with file, field path, code and message.
 */
#include "errlist.h"
#include "grow.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void errlist_init(errlist_t *el)
{
    el->items = NULL;
    el->count = 0;
    el->cap = 0;
}

void errlist_clear(errlist_t *el)
{
    if (!el)
        return;
    for (size_t i = 0; i < el->count; i++) {
        free(el->items[i].file);
        free(el->items[i].path);
        free(el->items[i].code);
        free(el->items[i].message);
    }
    free(el->items);
    errlist_init(el);
}

static int errlist__push(errlist_t *el, const char *file, const char *path, const char *code,
                         const char *msg)
{
    errlist_item_t *items = grow(el->items, &el->cap, el->count, sizeof(*items), 8);
    if (!items)
        return -ENOMEM;
    el->items = items;
    errlist_item_t *it = &el->items[el->count];
    it->file = file ? strdup(file) : NULL;
    it->path = strdup(path ? path : "");
    it->code = strdup(code ? code : "invalid");
    it->message = strdup(msg);
    if ((file && !it->file) || !it->path || !it->code || !it->message) {
        free(it->file);
        free(it->path);
        free(it->code);
        free(it->message);
        return -ENOMEM;
    }
    el->count++;
    return 0;
}

int errlist_add(errlist_t *el, const char *file, const char *path, const char *code,
                const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    return errlist__push(el, file, path, code, msg);
}

int errlist_merge(errlist_t *dst, const errlist_t *src)
{
    for (size_t i = 0; i < src->count; i++) {
        const errlist_item_t *it = &src->items[i];
        int rc = errlist__push(dst, it->file, it->path, it->code, it->message);
        if (rc)
            return rc;
    }
    return 0;
}

void errlist_format(const errlist_t *el, size_t i, char *buf, size_t size)
{
    const errlist_item_t *it = &el->items[i];
    snprintf(buf, size, "%s%s%s%s%s [%s]", it->file ? it->file : "", it->file ? ": " : "",
             it->path[0] ? it->path : "", it->path[0] ? ": " : "", it->message, it->code);
}

int errlist_contains(const errlist_t *el, const char *needle)
{
    for (size_t i = 0; i < el->count; i++) {
        const errlist_item_t *it = &el->items[i];
        if (strstr(it->message, needle) || strstr(it->path, needle) || strstr(it->code, needle) ||
            (it->file && strstr(it->file, needle)))
            return 1;
    }
    return 0;
}
