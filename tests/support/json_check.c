/*
 * json_check.c - a recursive-descent check of RFC 8259 JSON (json_check.h).
 */
#include "json_check.h"

#include <stdint.h>

#define DEPTH_MAX 64

struct jc {
    const unsigned char *s;
    size_t n, i;
};

static void ws(struct jc *j)
{
    while (j->i < j->n &&
           (j->s[j->i] == ' ' || j->s[j->i] == '\t' || j->s[j->i] == '\n' || j->s[j->i] == '\r')) {
        j->i++;
    }
}

static int lit(struct jc *j, const char *w)
{
    for (; *w; w++, j->i++) {
        if (j->i >= j->n || j->s[j->i] != (unsigned char)*w) {
            return -1;
        }
    }
    return 0;
}

static int hex4(struct jc *j, uint32_t *out)
{
    uint32_t v = 0;
    for (int k = 0; k < 4; k++, j->i++) {
        if (j->i >= j->n) {
            return -1;
        }
        unsigned char c = j->s[j->i];
        v <<= 4;
        if (c >= '0' && c <= '9') {
            v |= (uint32_t)(c - '0');
        } else if ((c | 0x20) >= 'a' && (c | 0x20) <= 'f') {
            v |= (uint32_t)((c | 0x20) - 'a' + 10);
        } else {
            return -1;
        }
    }
    *out = v;
    return 0;
}

/* One UTF-8 sequence at j->i (not ASCII): well-formed or -1. */
static int utf8(struct jc *j)
{
    unsigned char c = j->s[j->i];
    int need;
    uint32_t cp;
    if (c >= 0xc2 && c <= 0xdf) {
        need = 1, cp = c & 0x1fu;
    } else if (c >= 0xe0 && c <= 0xef) {
        need = 2, cp = c & 0x0fu;
    } else if (c >= 0xf0 && c <= 0xf4) {
        need = 3, cp = c & 0x07u;
    } else {
        return -1;
    }
    for (int k = 1; k <= need; k++) {
        if (j->i + (size_t)k >= j->n || (j->s[j->i + (size_t)k] & 0xc0) != 0x80) {
            return -1;
        }
        cp = cp << 6 | (j->s[j->i + (size_t)k] & 0x3fu);
    }
    if ((need == 2 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
        (need == 3 && (cp < 0x10000 || cp > 0x10ffff))) {
        return -1;
    }
    j->i += (size_t)need + 1;
    return 0;
}

static int string(struct jc *j)
{
    if (j->i >= j->n || j->s[j->i] != '"') {
        return -1;
    }
    j->i++;
    while (j->i < j->n) {
        unsigned char c = j->s[j->i];
        if (c == '"') {
            j->i++;
            return 0;
        }
        if (c < 0x20) {
            return -1;
        }
        if (c >= 0x80) {
            if (utf8(j) < 0) {
                return -1;
            }
            continue;
        }
        j->i++;
        if (c != '\\') {
            continue;
        }
        if (j->i >= j->n) {
            return -1;
        }
        c = j->s[j->i++];
        if (c == 'u') {
            uint32_t u, lo;
            if (hex4(j, &u) < 0) {
                return -1;
            }
            if (u >= 0xdc00 && u <= 0xdfff) {
                return -1; /* a low surrogate alone */
            }
            if (u >= 0xd800 && u <= 0xdbff &&
                (lit(j, "\\u") < 0 || hex4(j, &lo) < 0 || lo < 0xdc00 || lo > 0xdfff)) {
                return -1;
            }
        } else if (c != '"' && c != '\\' && c != '/' && c != 'b' && c != 'f' && c != 'n' &&
                   c != 'r' && c != 't') {
            return -1;
        }
    }
    return -1;
}

static int digits(struct jc *j)
{
    size_t at = j->i;
    while (j->i < j->n && j->s[j->i] >= '0' && j->s[j->i] <= '9') {
        j->i++;
    }
    return j->i > at ? 0 : -1;
}

static int number(struct jc *j)
{
    if (j->i < j->n && j->s[j->i] == '-') {
        j->i++;
    }
    if (j->i < j->n && j->s[j->i] == '0') {
        j->i++;
    } else if (digits(j) < 0) {
        return -1;
    }
    if (j->i < j->n && j->s[j->i] == '.') {
        j->i++;
        if (digits(j) < 0) {
            return -1;
        }
    }
    if (j->i < j->n && (j->s[j->i] | 0x20) == 'e') {
        j->i++;
        if (j->i < j->n && (j->s[j->i] == '+' || j->s[j->i] == '-')) {
            j->i++;
        }
        if (digits(j) < 0) {
            return -1;
        }
    }
    return 0;
}

static int value(struct jc *j, int depth);

/* An object ('{', pairs) or an array ('[', values), after its opener. */
static int container(struct jc *j, int depth, int is_object)
{
    char close = is_object ? '}' : ']';
    ws(j);
    if (j->i < j->n && j->s[j->i] == close) {
        j->i++;
        return 0;
    }
    for (;;) {
        ws(j);
        if (is_object) {
            if (string(j) < 0) {
                return -1;
            }
            ws(j);
            if (lit(j, ":") < 0) {
                return -1;
            }
        }
        if (value(j, depth + 1) < 0) {
            return -1;
        }
        ws(j);
        if (j->i >= j->n) {
            return -1;
        }
        char c = (char)j->s[j->i++];
        if (c == close) {
            return 0;
        }
        if (c != ',') {
            return -1;
        }
    }
}

static int value(struct jc *j, int depth)
{
    if (depth > DEPTH_MAX) {
        return -1;
    }
    ws(j);
    if (j->i >= j->n) {
        return -1;
    }
    switch (j->s[j->i]) {
    case '{':
        j->i++;
        return container(j, depth, 1);
    case '[':
        j->i++;
        return container(j, depth, 0);
    case '"':
        return string(j);
    case 't':
        return lit(j, "true");
    case 'f':
        return lit(j, "false");
    case 'n':
        return lit(j, "null");
    default:
        return number(j);
    }
}

int json_check(const char *s, size_t n, size_t *err_at)
{
    struct jc j = {(const unsigned char *)s, n, 0};
    int rc = value(&j, 0);
    if (rc == 0) {
        ws(&j);
        rc = j.i == n ? 0 : -1;
    }
    if (rc < 0 && err_at != NULL) {
        *err_at = j.i;
    }
    return rc;
}
