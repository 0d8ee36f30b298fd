/*
 * mqtt_topic.c - the mapping of MQTT topics to ferry topics (mqtt_topic.h).
 */
#include "mqtt_topic.h"

#include <string.h>

int mqtt_topic_to_ferry(const char *s, size_t len, int is_filter, char *out, size_t *out_len,
                        size_t *parent_len)
{
    if (len == 0) {
        return -1;
    }
    /* Check every level first: out stays untouched on a refusal. */
    size_t start = 0;
    for (size_t i = 0; i <= len; i++) {
        if (i < len && s[i] != '/') {
            continue;
        }
        size_t n = i - start;
        const char *lv = s + start;
        if (n == 0) {
            return -1; /* an empty level */
        }
        int is_plus = n == 1 && lv[0] == '+';
        int is_hash = n == 1 && lv[0] == '#';
        if ((is_plus || is_hash) && !is_filter) {
            return -1;
        }
        if (is_hash && i != len) {
            return -1; /* '#' only as the last level */
        }
        if (!is_plus && !is_hash) {
            for (size_t k = 0; k < n; k++) {
                char ch = lv[k];
                if (ch == '.' || ch == '*' || ch == '>' || ch == '+' || ch == '#') {
                    return -1;
                }
            }
        }
        start = i + 1;
    }
    for (size_t i = 0; i < len; i++) {
        char ch = s[i];
        out[i] = ch == '/' ? '.' : ch == '+' ? '*' : ch == '#' ? '>' : ch;
    }
    out[len] = '\0';
    *out_len = len;
    *parent_len = is_filter && len >= 3 && s[len - 1] == '#' ? len - 2 : 0;
    return 0;
}
