/*
 * acl.h - may an identity publish to a topic or subscribe to a pattern?
 *
 * An ACL is two lists of patterns (topic rules, topic.h): what the identity
 * may publish to and what it may subscribe to. Publishing is checked on the
 * concrete topic: allowed when some publish pattern matches it.
 *
 * Subscribing is checked on the pattern as a set of topics: allowed only when
 * every topic the pattern can match is allowed, so a user allowed
 * "orders.eu.*" may subscribe to "orders.eu.*" or "orders.eu.new" but not to
 * "orders.*", "orders.>" or ">". One allowed pattern covers a requested one
 * when, token by token: a literal covers only the same literal; "*" covers a
 * literal or "*"; ">" covers whatever remains (one token or more, wildcards
 * included); and nothing but ">" covers ">". Several allowed patterns may
 * cover together what none covers alone: "a.*" and "a.*.>" together cover
 * "a.>" (">" is "*" or "*.>"), which acl_may_subscribe() finds by splitting a
 * trailing ">" of the request. A "*" of the request can only be covered by a
 * wildcard (there are infinitely many tokens), so no other split is needed.
 *
 * Patterns and topics are data: they are compared token by token and never
 * built by concatenating strings, so an identity's name cannot change what
 * a rule means. Pure module: no IO, no threads, no logging.
 */
#ifndef FERRY_ACL_H
#define FERRY_ACL_H

#include <stddef.h>
#include <stdint.h>

/* Does the valid pattern allowed[0..alen) match every topic that the valid
 * pattern pat[0..plen) can match? Returns 1 or 0. */
int acl_pattern_covers(const char *allowed, size_t alen, const char *pat, size_t plen);

/* One list of patterns. Owned by whoever holds the ACL (the auth table);
 * immutable once built. */
struct acl_list {
    char **pats; /* NUL-terminated valid patterns */
    uint32_t *lens;
    uint32_t n_pats, pats_cap;
};

/* Append a copy of the valid pattern p[0..len). Returns 0 or -ENOMEM. */
int acl_list_add(struct acl_list *l, const char *p, size_t len);
void acl_list_deinit(struct acl_list *l);

/* Publish: does some pattern of l match the concrete topic t[0..len)? */
int acl_may_publish(const struct acl_list *l, const char *t, size_t len);

/* Subscribe: is every topic of the valid pattern p[0..len) matched by some
 * pattern of l? Returns 1 or 0. */
int acl_may_subscribe(const struct acl_list *l, const char *p, size_t len);

#endif
