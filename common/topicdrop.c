/* topicdrop: delete a namespace's topics; see topicdrop.h. */
#include "topicdrop.h"

#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kafka.h"

int topicdrop_prefix(const config_t *cfg, const char *prefix, int timeout_ms, char *errstr,
                     size_t errstr_size)
{
    if (!prefix || !*prefix) {
        snprintf(errstr, errstr_size, "no topic prefix: refusing to delete every topic");
        return -1;
    }
    rd_kafka_t *rk = kafka_producer_create(cfg, NULL, 0, errstr, errstr_size);
    if (!rk)
        return -1;
    const rd_kafka_metadata_t *md = NULL;
    rd_kafka_resp_err_t kerr = rd_kafka_metadata(rk, 1, NULL, &md, timeout_ms);
    if (kerr) {
        snprintf(errstr, errstr_size, "metadata: %s", rd_kafka_err2str(kerr));
        rd_kafka_destroy(rk);
        return -1;
    }
    size_t plen = strlen(prefix);
    rd_kafka_DeleteTopic_t **del = calloc((size_t)md->topic_cnt + 1, sizeof(*del));
    int n = 0, rc = 0;
    for (int t = 0; del && t < md->topic_cnt; t++)
        if (!strncmp(md->topics[t].topic, prefix, plen))
            del[n++] = rd_kafka_DeleteTopic_new(md->topics[t].topic);
    rd_kafka_metadata_destroy(md);
    if (!del) {
        snprintf(errstr, errstr_size, "out of memory");
        rc = -1;
    } else if (n) {
        rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
        rd_kafka_DeleteTopics(rk, del, (size_t)n, NULL, q);
        rd_kafka_event_t *ev = rd_kafka_queue_poll(q, timeout_ms);
        if (!ev || rd_kafka_event_error(ev)) {
            snprintf(errstr, errstr_size, "delete topics: %s",
                     ev ? rd_kafka_event_error_string(ev) : "timed out");
            rc = -1;
        }
        if (ev)
            rd_kafka_event_destroy(ev);
        rd_kafka_queue_destroy(q);
        rd_kafka_DeleteTopic_destroy_array(del, (size_t)n);
    }
    free(del);
    rd_kafka_destroy(rk);
    return rc ? -1 : n;
}
