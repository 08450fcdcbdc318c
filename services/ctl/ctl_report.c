/*
 * jrpctl report: the effects list (成效清单) of a period from the ledger's Redis data, as JSON
 * or CSV on stdout: the same answer as the gateway's GET /v1/reports/effects (common/report).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "ctl.h"
#include "redis.h"
#include "report.h"

static const char ctl_report_usage[] =
    "usage: jrpctl report --from TIME --to TIME [--format json|csv]\n"
    "       jrpctl report --list subjects [--format json|csv]\n"
    "       jrpctl report --list measures --from TIME --to TIME [--format json|csv]\n"
    "The effects list (成效清单) of actions issued in [from, to): per memorandum and department,\n"
    "applied, lifted, executed, rejected, pending and overdue, with the 双公示 disclosures "
    "decided\n"
    "in the period (JSON only). TIME: epoch milliseconds, YYYY-MM-DD (00:00 China Standard Time)\n"
    "or an RFC 3339 date-time (2026-11-27T08:00:00+08:00).\n"
    "--list subjects: the subjects list (对象清单), every subject listed now, on which lists,\n"
    "since when. --list measures: the measures list (措施清单), every measure of the active\n"
    "rule set with its text and legal basis, and how often it was applied and lifted in the\n"
    "period.\n";

static int64_t ctl_report_now_ms(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

/* Print a rendered list (taking it; NULL means it could not be rendered): JSON gets a final
 * newline, CSV ends with its last row's. Returns the exit code. */
static int ctl_report_print(char *out, int csv)
{
    if (!out)
        return ctl_fail("report: out of memory");
    fputs(out, stdout);
    if (!csv)
        fputc('\n', stdout);
    free(out);
    return fflush(stdout) ? ctl_fail("report: cannot write the output") : 0;
}

static int ctl_report_subjects(config_t *cfg, int csv)
{
    char err[512];
    redisContext *c = redis_connect(config_get(cfg, "redis.url"), 10000, err, sizeof(err));
    if (!c)
        return ctl_fail("report: %s", err);
    json_t *subjects = NULL;
    int rc = report_subjects_load(c, config_get(cfg, "redis.prefix"), &subjects, err, sizeof(err));
    redisFree(c);
    if (rc)
        return ctl_fail("report: %s", err);
    char *out = report_subjects_render(subjects, ctl_report_now_ms(), csv);
    json_decref(subjects);
    return ctl_report_print(out, csv);
}

int ctl_report(config_t *cfg, int argc, char **argv)
{
    if (ctl_wants_help(argc, argv)) {
        fputs(ctl_report_usage, stdout);
        return 0;
    }
    const char *from = NULL, *to = NULL, *format = "json", *list = "effects";
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--from") && i + 1 < argc)
            from = argv[++i];
        else if (!strcmp(argv[i], "--to") && i + 1 < argc)
            to = argv[++i];
        else if (!strcmp(argv[i], "--format") && i + 1 < argc)
            format = argv[++i];
        else if (!strcmp(argv[i], "--list") && i + 1 < argc)
            list = argv[++i];
        else
            return ctl_fail("report: unexpected argument \"%s\" (jrpctl report --help)", argv[i]);
    }
    int csv = !strcmp(format, "csv");
    if (!csv && strcmp(format, "json"))
        return ctl_fail("report: --format must be json or csv");
    if (!strcmp(list, "subjects"))
        return ctl_report_subjects(cfg, csv);
    int measures = !strcmp(list, "measures");
    if (strcmp(list, "effects") && !measures)
        return ctl_fail("report: --list must be effects, subjects or measures");
    int64_t from_ms, to_ms;
    if (!from || !to)
        return ctl_fail("report: --from and --to are required (jrpctl report --help)");
    if (report_parse_time(from, &from_ms))
        return ctl_fail("report: --from \"%s\" is not epoch ms, YYYY-MM-DD or RFC 3339", from);
    if (report_parse_time(to, &to_ms))
        return ctl_fail("report: --to \"%s\" is not epoch ms, YYYY-MM-DD or RFC 3339", to);
    if (to_ms <= from_ms)
        return ctl_fail("report: --to must be after --from");
    char err[512];
    redisContext *c = redis_connect(config_get(cfg, "redis.url"), 10000, err, sizeof(err));
    if (!c)
        return ctl_fail("report: %s", err);
    int64_t now = ctl_report_now_ms();
    if (measures) {
        json_t *rows = NULL;
        int mrc = report_measures_load(c, config_get(cfg, "redis.prefix"), from_ms, to_ms, &rows,
                                       err, sizeof(err));
        redisFree(c);
        if (mrc)
            return ctl_fail("report: %s", err);
        char *mout = report_measures_render(rows, from_ms, to_ms, now, csv);
        json_decref(rows);
        return ctl_report_print(mout, csv);
    }
    report_t r;
    int rc =
        report_load(c, config_get(cfg, "redis.prefix"), from_ms, to_ms, now, &r, err, sizeof(err));
    redisFree(c);
    if (rc)
        return ctl_fail("report: %s", err);
    char *out = csv ? report_render_csv(&r) : report_render_json(&r);
    report_free(&r);
    return ctl_report_print(out, csv);
}
