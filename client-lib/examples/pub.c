/* pub.c - publish messages and wait for each to be stored.
 *
 *   cc pub.c -o pub $(pkg-config --cflags --libs ferry)
 *   ./pub [HOST:PORT] [TOPIC] [COUNT]
 */
#include <ferry.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv)
{
    const char *server = argc > 1 ? argv[1] : "127.0.0.1:7373";
    const char *topic = argc > 2 ? argv[2] : "demo.hello";
    int count = argc > 3 ? atoi(argv[3]) : 10;
    ferry_options *o;
    ferry_client *c;
    int rc;

    if ((rc = ferry_options_create(&o)) != 0 || (rc = ferry_options_set_servers(o, server)) != 0 ||
        (rc = ferry_client_create(o, &c)) != 0) {
        fprintf(stderr, "pub: %s\n", ferry_strerror(rc));
        ferry_options_destroy(o);
        return 1;
    }
    ferry_options_destroy(o);
    if ((rc = ferry_client_connect(c, 5000)) != 0) {
        char why[256];
        ferry_client_last_error(c, why, sizeof why);
        fprintf(stderr, "pub: connect: %s (%s)\n", ferry_strerror(rc), why);
        ferry_client_destroy(c);
        return 1;
    }
    for (int i = 0; i < count && rc == 0; i++) {
        char text[64];
        snprintf(text, sizeof text, "hello %d", i);
        ferry_header h = {"sender", "examples/pub"};
        ferry_pub m = {.topic = topic,
                       .payload = text,
                       .payload_len = strlen(text),
                       .headers = &h,
                       .n_headers = 1};
        uint64_t seq = 0;
        rc = ferry_publish_sync(c, &m, 5000, &seq);
        if (rc == 0) {
            printf("%s #%llu: %s\n", topic, (unsigned long long)seq, text);
        } else {
            fprintf(stderr, "pub: %s\n", ferry_strerror(rc));
        }
    }
    ferry_client_close(c, 5000);
    ferry_client_destroy(c);
    return rc == 0 ? 0 : 1;
}
