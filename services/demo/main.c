/*
 * jrp-demo: hosts librdkafka's in-process mock Kafka cluster for `make demo`, so the real
 * jrp-engine and jrpctl can run the main job with no JVM. Creates the demo's topics, prints
 * "bootstrap=<host:port,...>" on stdout, and serves until SIGINT/SIGTERM or its parent goes away.
 * The mock cluster is a demonstration stand-in only: it drops transactional offsets and shows
 * aborted records, so nothing about exactly-once may be concluded from it.
 */
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
    (void)sig;
    stop = 1;
}

int main(int argc, char **argv)
{
    if (argc < 3 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        fprintf(argc < 3 ? stderr : stdout,
                "usage: jrp-demo PARTITIONS TOPIC...\n"
                "Starts a one-broker mock Kafka cluster in this process with the given topics,\n"
                "prints bootstrap=<servers> and serves until SIGINT/SIGTERM.\n");
        return argc < 3 ? 2 : 0;
    }
    int partitions = atoi(argv[1]);
    if (partitions < 1 || partitions > 64) {
        fprintf(stderr, "jrp-demo: partitions must be 1..64\n");
        return 2;
    }
    char err[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "log_level", "3", err, sizeof(err));
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
    if (!rk) {
        fprintf(stderr, "jrp-demo: %s\n", err);
        return 1;
    }
    rd_kafka_mock_cluster_t *mc = rd_kafka_mock_cluster_new(rk, 1);
    if (!mc) {
        fprintf(stderr, "jrp-demo: cannot create the mock cluster\n");
        rd_kafka_destroy(rk);
        return 1;
    }
    for (int i = 2; i < argc; i++) {
        rd_kafka_resp_err_t e = rd_kafka_mock_topic_create(mc, argv[i], partitions, 1);
        if (e) {
            fprintf(stderr, "jrp-demo: topic %s: %s\n", argv[i], rd_kafka_err2str(e));
            rd_kafka_mock_cluster_destroy(mc);
            rd_kafka_destroy(rk);
            return 1;
        }
    }
    printf("bootstrap=%s\n", rd_kafka_mock_cluster_bootstraps(mc));
    fflush(stdout);
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    pid_t parent = getppid();
    while (!stop && getppid() == parent)
        usleep(100000);
    rd_kafka_mock_cluster_destroy(mc);
    rd_kafka_destroy(rk);
    return 0;
}
