/*
 * topic.h - topic and pattern rules (DESIGN.md, ferry.proto Publish/Subscribe).
 *
 * A topic is dot-separated non-empty tokens of printable non-space bytes
 * (UTF-8 is welcome; the codec has already checked it), without '*' or '>'.
 * A pattern is the same, except that a token may be exactly "*" (one token) or,
 * as the last token only, exactly ">" (one or more tokens). Pure module.
 */
#ifndef FERRY_TOPIC_H
#define FERRY_TOPIC_H

#include <stddef.h>
#include <stdint.h>

/* Check s[0..len). is_pattern selects the pattern rules. Returns 0, or
 * FERRY_EINVALIDTOPIC / FERRY_EINVALIDPATTERN with *why (static text) set. */
int topic_validate(const char *s, size_t len, int is_pattern, uint32_t max_len, uint32_t max_depth,
                   const char **why);

/* FNV-1a of the topic: picks the worker that owns it. */
uint32_t topic_hash(const char *s, size_t len);

/* Does the valid pattern p[0..plen) match the concrete topic t[0..tlen)?
 * ('*' one token, '>' as the last token one or more.) Returns 1 or 0. */
int topic_match(const char *p, size_t plen, const char *t, size_t tlen);

/* Does the valid pattern p[0..plen) hold a wildcard token? Returns 1 or 0. */
int topic_has_wildcard(const char *p, size_t plen);

#endif
