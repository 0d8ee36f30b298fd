/* sub.c - print the messages of a pattern (blocking "next message" style).
 *
 *   cc sub.c -o sub $(pkg-config --cflags --libs ferry)
 *   ./sub [HOST:PORT] [PATTERN] [COUNT]     (COUNT 0: forever)
 */
#include <ferry.h>
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv)
{
    const char *server = argc > 1 ? argv[1] : "127.0.0.1:7373";
    const char *pattern = argc > 2 ? argv[2] : "demo.>";
    long count = argc > 3 ? atol(argv[3]) : 0;
    ferry_options *o = NULL;
    ferry_client *c = NULL;
    ferry_sub *s = NULL;
    int rc;

    if ((rc = ferry_options_create(&o)) != 0 || (rc = ferry_options_set_servers(o, server)) != 0 ||
        (rc = ferry_client_create(o, &c)) != 0 || (rc = ferry_client_connect(c, 5000)) != 0 ||
        (rc = ferry_subscribe(c, pattern, NULL, NULL, NULL, 5000, &s)) != 0) {
        fprintf(stderr, "sub: %s\n", ferry_strerror(rc));
        ferry_options_destroy(o);
        ferry_client_destroy(c);
        return 1;
    }
    ferry_options_destroy(o);
    printf("subscribed to %s\n", pattern);
    fflush(stdout);
    for (long n = 0; count == 0 || n < count; n++) {
        ferry_msg *m;
        rc = ferry_sub_next(s, -1, &m);
        if (rc != 0) {
            fprintf(stderr, "sub: %s\n", ferry_strerror(rc));
            break;
        }
        size_t len;
        const char *data = ferry_msg_data(m, &len);
        printf("%s #%llu: %.*s\n", ferry_msg_topic(m), (unsigned long long)ferry_msg_sequence(m),
               (int)len, data);
        fflush(stdout);
        ferry_msg_destroy(m);
    }
    ferry_unsubscribe(s);
    ferry_client_close(c, 5000);
    ferry_client_destroy(c);
    return rc == 0 ? 0 : 1;
}
