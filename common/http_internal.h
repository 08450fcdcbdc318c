/*
 * http_internal: what http.c exposes beyond http.h, for its own tests and fuzz target only.
 * Services must not include it.
 */
#ifndef JRP_HTTP_INTERNAL_H
#define JRP_HTTP_INTERNAL_H

#include <uv.h>

#include "http.h"

/*
 * Serve fd, an already connected stream socket (a socketpair end works), exactly as if srv had
 * accepted it: same parser, limits, queue and timers. srv owns fd from the call on, even when it
 * fails. Returns 0 or a negative libuv error.
 */
int http__server_adopt(http_server_t *srv, uv_os_sock_t fd);

#endif
