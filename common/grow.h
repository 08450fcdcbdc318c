/*
 * grow: room for one more element at the end of an array that doubles its capacity.
 */
#ifndef JRP_GROW_H
#define JRP_GROW_H

#include <stdlib.h>

/*
 * The array arr (of *cap elements of elem bytes, n of them used) with room for element n: arr
 * itself while n < *cap, else arr reallocated to twice *cap (first when *cap is 0), *cap updated.
 * NULL when out of memory; arr and *cap are then unchanged.
 */
static inline void *grow(void *arr, size_t *cap, size_t n, size_t elem, size_t first)
{
    if (n < *cap)
        return arr;
    size_t ncap = *cap ? *cap * 2 : first;
    void *p = realloc(arr, ncap * elem);
    if (p)
        *cap = ncap;
    return p;
}

#endif
