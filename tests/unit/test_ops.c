/*
 * test_ops: the Prometheus text helpers and the ops port's three paths over a real socket.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "ops.h"

static void test_text_helpers(void **state)
{
    (void)state;
    ops_text_t t = {0};
    ops_counter(&t, "jrp_x_total", "Things.", 42);
    ops_family(&t, "jrp_y", "gauge", "Y by department.");
    ops_sample(&t, "jrp_y", "department=\"transport\"", 2.5);
    ops_sample(&t, "jrp_y", "department=\"market\"", 3);
    assert_false(t.failed);
    assert_string_equal(t.data, "# HELP jrp_x_total Things.\n# TYPE jrp_x_total counter\n"
                                "jrp_x_total 42\n"
                                "# HELP jrp_y Y by department.\n# TYPE jrp_y gauge\n"
                                "jrp_y{department=\"transport\"} 2.5\n"
                                "jrp_y{department=\"market\"} 3\n");
    free(t.data);
}

static void test_histogram_is_cumulative(void **state)
{
    (void)state;
    ops_histogram_t h = {0};
    ops_histogram_observe(&h, 0.0001); /* first bucket */
    ops_histogram_observe(&h, 0.003);  /* le 0.005 */
    ops_histogram_observe(&h, 0.003);
    ops_histogram_observe(&h, 99); /* +Inf only */
    ops_text_t t = {0};
    ops_histogram_write(&t, "jrp_d_seconds", "department=\"tax\"", &h);
    assert_false(t.failed);
    assert_non_null(strstr(t.data, "jrp_d_seconds_bucket{department=\"tax\",le=\"0.0005\"} 1\n"));
    assert_non_null(strstr(t.data, "jrp_d_seconds_bucket{department=\"tax\",le=\"0.0025\"} 1\n"));
    assert_non_null(strstr(t.data, "jrp_d_seconds_bucket{department=\"tax\",le=\"0.005\"} 3\n"));
    assert_non_null(strstr(t.data, "jrp_d_seconds_bucket{department=\"tax\",le=\"10\"} 3\n"));
    assert_non_null(strstr(t.data, "jrp_d_seconds_bucket{department=\"tax\",le=\"+Inf\"} 4\n"));
    assert_non_null(strstr(t.data, "jrp_d_seconds_count{department=\"tax\"} 4\n"));
    assert_non_null(strstr(t.data, "jrp_d_seconds_sum{department=\"tax\"} 99.0061\n"));
    free(t.data);

    ops_text_t u = {0};
    ops_histogram_write(&u, "jrp_e_seconds", NULL, &h);
    assert_non_null(strstr(u.data, "jrp_e_seconds_bucket{le=\"+Inf\"} 4\n"));
    assert_non_null(strstr(u.data, "jrp_e_seconds_count 4\n"));
    free(u.data);
}

static void test_bad_listen_address(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    char err[256];
    const char *bad[] = {"9183", ":9183", "127.0.0.1:", "127.0.0.1:70000", "127.0.0.1:9x"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = '\0';
        assert_null(ops_start(&loop, bad[i], NULL, NULL, NULL, err, sizeof(err)));
        assert_non_null(strstr(err, "listen address"));
    }
    uv_loop_close(&loop);
}

/* ---- the port over a socket: a client thread asks, the loop answers ---------------------- */

typedef struct client_s {
    int port;
    const char *request;
    char reply[8192];
    uv_async_t done;
    int closed;
} client_t;

static void client_run(void *arg)
{
    client_t *c = arg;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)c->port)};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    size_t n = 0;
    if (fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
        write(fd, c->request, strlen(c->request)) == (ssize_t)strlen(c->request)) {
        ssize_t r;
        while (n + 1 < sizeof(c->reply) &&
               (r = read(fd, c->reply + n, sizeof(c->reply) - 1 - n)) > 0)
            n += (size_t)r;
    }
    c->reply[n] = '\0';
    if (fd >= 0)
        close(fd);
    uv_async_send(&c->done);
}

static void on_closed(uv_handle_t *h)
{
    ((client_t *)h->data)->closed = 1;
}

static void on_done(uv_async_t *a)
{
    uv_close((uv_handle_t *)a, on_closed);
}

static int ready_flag;
static const char *ready_cb(void *arg)
{
    (void)arg;
    return ready_flag ? NULL : "no partitions assigned yet";
}

static void metrics_cb(ops_text_t *t, void *arg)
{
    ops_counter(t, "jrp_test_things_total", "Things.", *(uint64_t *)arg);
}

static void ask(uv_loop_t *loop, ops_server_t *ops, const char *request, char *reply,
                size_t reply_size)
{
    client_t c = {.port = ops_port(ops), .request = request};
    uv_async_init(loop, &c.done, on_done);
    c.done.data = &c;
    uv_thread_t th;
    assert_int_equal(uv_thread_create(&th, client_run, &c), 0);
    while (!c.closed)
        uv_run(loop, UV_RUN_ONCE);
    uv_thread_join(&th);
    snprintf(reply, reply_size, "%s", c.reply);
}

static void stopped(void *arg)
{
    *(int *)arg = 1;
}

static void test_ops_port(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    uint64_t things = 7;
    char err[256], reply[8192];
    ops_server_t *ops =
        ops_start(&loop, "127.0.0.1:0", metrics_cb, ready_cb, &things, err, sizeof(err));
    assert_non_null(ops);
    assert_true(ops_port(ops) > 0);

    ask(&loop, ops, "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", reply,
        sizeof(reply));
    assert_non_null(strstr(reply, "HTTP/1.1 200"));

    ready_flag = 0;
    ask(&loop, ops, "GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", reply,
        sizeof(reply));
    assert_non_null(strstr(reply, "HTTP/1.1 503"));
    assert_non_null(strstr(reply, "not ready: no partitions assigned yet"));
    ready_flag = 1;
    ask(&loop, ops, "GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", reply,
        sizeof(reply));
    assert_non_null(strstr(reply, "HTTP/1.1 200"));

    ask(&loop, ops, "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", reply,
        sizeof(reply));
    assert_non_null(strstr(reply, "HTTP/1.1 200"));
    assert_non_null(strstr(reply, "text/plain; version=0.0.4"));
    assert_non_null(strstr(reply, "\njrp_test_things_total 7\n"));
    assert_non_null(strstr(reply, "\nprocess_resident_memory_bytes "));

    ask(&loop, ops, "GET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", reply,
        sizeof(reply));
    assert_non_null(strstr(reply, "HTTP/1.1 404"));
    ask(&loop, ops,
        "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        reply, sizeof(reply));
    assert_non_null(strstr(reply, "HTTP/1.1 405"));

    int closed = 0;
    ops_stop(ops, stopped, &closed);
    while (!closed)
        uv_run(&loop, UV_RUN_ONCE);
    uv_run(&loop, UV_RUN_NOWAIT);
    assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_text_helpers),
        cmocka_unit_test(test_histogram_is_cumulative),
        cmocka_unit_test(test_bad_listen_address),
        cmocka_unit_test(test_ops_port),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
