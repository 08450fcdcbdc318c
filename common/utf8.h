/*
 * utf8: strict UTF-8 checks, as strict as jansson (no overlong forms, surrogates or code points
 * past U+10FFFF), so whatever passes here jansson accepts too. protobuf-c does not check strings
 * from the wire; everything that reaches JSON goes through these.
 */
#ifndef JRP_UTF8_H
#define JRP_UTF8_H

#include <stddef.h>

/* Length of the well-formed sequence at p (n bytes available, n >= 1), or 0 if there is none. */
size_t utf8_seq_len(const unsigned char *p, size_t n);

/* 1 if the len bytes at s are well-formed UTF-8, else 0. */
int utf8_valid(const char *s, size_t len);

#endif
