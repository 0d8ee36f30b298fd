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

int mqtt_topic_match(const char *f, size_t flen, const char *t, size_t tlen)
{
    if (flen > 0 && (f[0] == '+' || f[0] == '#') && tlen > 0 && t[0] == '$') {
        return 0; /* 4.7.2-1 */
    }
    /* Level by level: f's from i, t's from j (j past tlen: t has no more). */
    size_t i = 0, j = 0;
    for (;;) {
        size_t fe = i, te = j;
        while (fe < flen && f[fe] != '/') {
            fe++;
        }
        if (fe - i == 1 && f[i] == '#') {
            return 1; /* the rest of t, or nothing ("a/#" matches "a") */
        }
        if (j > tlen) {
            return 0; /* a level of f, none left in t */
        }
        while (te < tlen && t[te] != '/') {
            te++;
        }
        int is_plus = fe - i == 1 && f[i] == '+';
        if (!is_plus && (fe - i != te - j || memcmp(f + i, t + j, fe - i) != 0)) {
            return 0;
        }
        if (fe == flen) {
            return te == tlen;
        }
        i = fe + 1;
        j = te + 1;
    }
}
