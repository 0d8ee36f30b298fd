/*
 * topic.c - one pass over the bytes, token by token.
 */
#include "topic.h"

#include "ferry.h"

#include <string.h>

int topic_validate(const char *s, size_t len, int is_pattern, uint32_t max_len, uint32_t max_depth,
                   const char **why)
{
    int bad = is_pattern ? FERRY_EINVALIDPATTERN : FERRY_EINVALIDTOPIC;
    if (len == 0) {
        *why = "empty topic";
        return bad;
    }
    if (len > max_len) {
        *why = "topic too long";
        return bad;
    }
    uint32_t depth = 0;
    size_t tok = 0; /* start of the current token */
    for (size_t i = 0; i <= len; i++) {
        if (i < len && s[i] != '.') {
            unsigned char c = (unsigned char)s[i];
            if (c <= 0x20 || c == 0x7f) {
                *why = "topic has whitespace or a control character";
                return bad;
            }
            continue;
        }
        size_t tl = i - tok;
        if (tl == 0) {
            *why = "topic has an empty token";
            return bad;
        }
        if (++depth > max_depth) {
            *why = "topic has too many tokens";
            return bad;
        }
        for (size_t j = tok; j < i; j++) {
            if (s[j] == '*' || s[j] == '>') {
                if (!is_pattern) {
                    *why = "wildcards are not allowed in a published topic";
                    return bad;
                }
                if (tl != 1) {
                    *why = "a wildcard must be a whole token";
                    return bad;
                }
                if (s[j] == '>' && i != len) {
                    *why = "'>' must be the last token";
                    return bad;
                }
            }
        }
        tok = i + 1;
    }
    return 0;
}

uint32_t topic_hash(const char *s, size_t len)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)s[i];
        h *= 16777619u;
    }
    return h;
}

int topic_match(const char *p, size_t plen, const char *t, size_t tlen)
{
    size_t i = 0, j = 0; /* starts of the current pattern and topic tokens */
    for (;;) {
        size_t pe = i, te = j;
        while (pe < plen && p[pe] != '.') {
            pe++;
        }
        while (te < tlen && t[te] != '.') {
            te++;
        }
        if (pe - i == 1 && p[i] == '>') {
            return 1; /* the topic has a token left here: '>' takes it and the rest */
        }
        if (!(pe - i == 1 && p[i] == '*')) {
            if (pe - i != te - j || memcmp(p + i, t + j, pe - i) != 0) {
                return 0;
            }
        }
        int p_end = pe >= plen, t_end = te >= tlen;
        if (p_end || t_end) {
            return p_end && t_end;
        }
        i = pe + 1;
        j = te + 1;
    }
}

int topic_has_wildcard(const char *p, size_t plen)
{
    size_t tok = 0;
    for (size_t i = 0; i <= plen; i++) {
        if (i == plen || p[i] == '.') {
            if (i - tok == 1 && (p[tok] == '*' || p[tok] == '>')) {
                return 1;
            }
            tok = i + 1;
        }
    }
    return 0;
}
