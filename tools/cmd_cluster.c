/*
 * cmd_cluster.c - `ferry cluster`: a cluster's brokers, its controller and
 * where each topic lives (the Metadata admin request, cluster mode:
 * broker/CLUSTER.md).
 */
#include "cli.h"
#include "cli_util.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#define CLUSTER_TIMEOUT_MS 10000

static const char cluster_help[] =
    "Usage: ferry cluster [OPTIONS] [PATTERN]\n"
    "\n"
    "Show the cluster the broker belongs to: its brokers (id, address, live or\n"
    "down, topics placed on it), the controller, and the broker that owns each\n"
    "placed topic (those matching PATTERN, default all). Any broker of the\n"
    "cluster answers. A broker not in a cluster says so.\n"
    "\n"
    "Options:\n"
    "  -j, --json       print JSON\n"
    "  -l, --limit N    at most N topics (default: the server's, 1000)\n"
    "\n"
    "Examples:\n"
    "  ferry -s h1:7373 cluster\n"
    "  ferry cluster 'orders.>' --json\n";

struct cluster_args {
    const char *cmd;
    int json;
    uint32_t limit;
};

static int cluster_opt(int opt, const char *arg, void *ctx)
{
    struct cluster_args *a = ctx;
    uint64_t v;
    switch (opt) {
    case 'j':
        a->json = 1;
        return -1;
    case 'l':
        if (cli_parse_u64(arg, &v) < 0 || v == 0 || v > UINT32_MAX) {
            return cli_usage(a->cmd, "--limit needs a number from 1, not '%s'", arg);
        }
        a->limit = (uint32_t)v;
        return -1;
    default:
        return cli_usage(a->cmd, "unexpected option");
    }
}

static void print_json(struct cli_buf *b, const ferry_metadata *m)
{
    cli_buf_adds(b, "{\"cluster\":");
    cli_buf_json_str(b, m->cluster, strlen(m->cluster));
    cli_buf_addf(b,
                 ",\"broker_id\":%" PRIu32 ",\"controller\":%" PRIu32
                 ",\"controller_epoch\":%" PRIu64 ",\"serving\":%s,\"truncated\":%s,\"brokers\":[",
                 m->broker_id, m->controller, m->controller_epoch, m->is_serving ? "true" : "false",
                 m->is_truncated ? "true" : "false");
    for (size_t i = 0; i < m->n_brokers; i++) {
        const ferry_broker_info *br = &m->brokers[i];
        cli_buf_addf(b, "%s{\"id\":%" PRIu32 ",\"address\":", i ? "," : "", br->id);
        cli_buf_json_str(b, br->address, strlen(br->address));
        cli_buf_addf(b, ",\"live\":%s,\"topics\":%" PRIu64 "}", br->is_live ? "true" : "false",
                     br->topics);
    }
    cli_buf_adds(b, "],\"topics\":[");
    for (size_t i = 0; i < m->n_topics; i++) {
        const ferry_placement *t = &m->topics[i];
        cli_buf_adds(b, i ? ",{\"topic\":" : "{\"topic\":");
        cli_buf_json_str(b, t->topic, strlen(t->topic));
        cli_buf_addf(b, ",\"owner\":%" PRIu32 ",\"address\":", t->owner);
        cli_buf_json_str(b, t->address, strlen(t->address));
        cli_buf_addf(b, ",\"epoch\":%" PRIu64 "}", t->epoch);
    }
    cli_buf_adds(b, "]}\n");
}

static void print_text(struct cli_buf *b, const ferry_metadata *m)
{
    cli_buf_addf(b, "cluster %s (asked broker %" PRIu32 "%s)\n", m->cluster, m->broker_id,
                 m->is_serving ? "" : ", which is fenced: not serving now");
    if (m->controller) {
        cli_buf_addf(b, "controller: broker %" PRIu32 " (epoch %" PRIu64 ")\n\n", m->controller,
                     m->controller_epoch);
    } else {
        cli_buf_adds(b, "controller: none now\n\n");
    }
    cli_buf_addf(b, "%-8s %-32s %-6s %8s\n", "BROKER", "ADDRESS", "STATE", "TOPICS");
    for (size_t i = 0; i < m->n_brokers; i++) {
        const ferry_broker_info *br = &m->brokers[i];
        cli_buf_addf(b, "%-8" PRIu32 " %-32s %-6s %8" PRIu64 "\n", br->id, br->address,
                     br->is_live ? "live" : "down", br->topics);
    }
    int w = 5;
    for (size_t i = 0; i < m->n_topics; i++) {
        int l = (int)strlen(m->topics[i].topic);
        w = l > w ? l : w;
    }
    cli_buf_addf(b, "\n%-*s %-8s %s\n", w, "TOPIC", "OWNER", "ADDRESS");
    for (size_t i = 0; i < m->n_topics; i++) {
        const ferry_placement *t = &m->topics[i];
        cli_buf_addf(b, "%-*s %-8" PRIu32 " %s\n", w, t->topic, t->owner, t->address);
    }
    if (m->n_topics == 0) {
        cli_buf_adds(b, "(no topics placed)\n");
    }
    if (m->is_truncated) {
        cli_buf_adds(b, "(truncated: more topics match; see --limit)\n");
    }
}

int cmd_cluster(struct cli_opts *o, int argc, char **argv)
{
    static const struct option longopts[] = {
        CLI_COMMON_LONGOPTS,
        {"json", no_argument, NULL, 'j'},
        {"limit", required_argument, NULL, 'l'},
        {NULL, 0, NULL, 0},
    };
    struct cluster_args a = {.cmd = o->cmd};
    int first;
    int rc = cli_getopt(o, argc, argv, "jl:", longopts, cluster_help, cluster_opt, &a, &first);
    if (rc != -1) {
        return rc;
    }
    if (argc - first > 1) {
        return cli_usage(o->cmd, "too many arguments: one PATTERN at most");
    }
    const char *pattern = first < argc ? argv[first] : NULL;
    ferry_client *c;
    if (cli_admin_connect(o, "ferry cluster", &c) < 0) {
        return CLI_EXIT_ERROR;
    }
    ferry_metadata m;
    rc = ferry_admin_metadata(c, pattern, a.limit, CLUSTER_TIMEOUT_MS, &m);
    if (rc < 0) {
        cli_fail(c, rc, "cluster");
        ferry_client_destroy(c);
        return CLI_EXIT_ERROR;
    }
    ferry_client_close(c, 1000);
    ferry_client_destroy(c);
    struct cli_buf b = {0};
    if (a.json) {
        print_json(&b, &m);
    } else if (m.cluster[0] == '\0') {
        cli_buf_adds(&b, "not in a cluster: this broker serves every topic itself\n");
    } else {
        print_text(&b, &m);
    }
    ferry_free(m.brokers);
    ferry_free(m.topics);
    fwrite(b.data, 1, b.len, stdout);
    cli_buf_free(&b);
    return fflush(stdout) == 0 ? CLI_EXIT_OK : CLI_EXIT_ERROR;
}
