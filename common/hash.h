/*
 * hash: FNV-1a (64-bit) for the in-memory tables keyed by short strings such as subject keys.
 * Not for input an attacker can shape in bulk, and never stored: the values may change.
 */
#ifndef JRP_HASH_H
#define JRP_HASH_H

#include <stddef.h>
#include <stdint.h>

#define HASH_SEED 14695981039346656037ULL /* FNV-1a's offset basis */

/* h folded with n bytes at p (start from HASH_SEED). */
uint64_t hash_bytes(uint64_t h, const void *p, size_t n);

/* h folded with the string s. */
uint64_t hash_str(uint64_t h, const char *s);

#endif
