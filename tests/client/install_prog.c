/* install_prog.c - built out of tree against an installed libferry (only
 * pkg-config or find_package): publish one message and receive it. */
#include <ferry.h>
#include <stdio.h>
#include <string.h>

int main(int argc, char **argv)
{
    ferry_options *o;
    ferry_client *c;
    ferry_sub *s;
    ferry_msg *m;
    uint64_t seq = 0;
    int rc;
    if (argc != 2) {
        fprintf(stderr, "usage: install_prog HOST:PORT\n");
        return 2;
    }
    if ((rc = ferry_options_create(&o)) != 0 || (rc = ferry_options_set_servers(o, argv[1])) != 0 ||
        (rc = ferry_client_create(o, &c)) != 0) {
        fprintf(stderr, "install_prog: %s\n", ferry_strerror(rc));
        return 1;
    }
    ferry_options_destroy(o);
    ferry_pub p = {.topic = "install.check", .payload = "installed", .payload_len = 9};
    if ((rc = ferry_client_connect(c, 20000)) != 0 ||
        (rc = ferry_subscribe(c, "install.>", NULL, NULL, NULL, 20000, &s)) != 0 ||
        (rc = ferry_publish_sync(c, &p, 20000, &seq)) != 0 ||
        (rc = ferry_sub_next(s, 20000, &m)) != 0) {
        fprintf(stderr, "install_prog: %s\n", ferry_strerror(rc));
        ferry_client_destroy(c);
        return 1;
    }
    size_t len;
    const char *d = ferry_msg_data(m, &len);
    int ok = len == 9 && memcmp(d, "installed", 9) == 0 &&
             strcmp(ferry_msg_topic(m), "install.check") == 0;
    printf("install_prog: libferry %s, got \"%.*s\" on %s: %s\n", ferry_version(), (int)len, d,
           ferry_msg_topic(m), ok ? "ok" : "WRONG");
    ferry_msg_destroy(m);
    ferry_unsubscribe(s);
    ferry_client_close(c, 20000);
    ferry_client_destroy(c);
    return ok ? 0 : 1;
}
