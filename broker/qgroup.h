/*
 * qgroup.h - who owns a queue group (prefix qgroup_).
 *
 * On a server with an auth file a queue group (a group name on a pattern,
 * without a durable: a durable's queue group is its owner's, consumer.h)
 * belongs, while it has members, to the user of the member that created
 * it. Another user may join it only with an auth-file rule
 * `allow USER group NAME` (or "*") or as an admin; the caller decides that
 * (may_any). When its last member leaves the group is forgotten: the next
 * member to come creates it again, and owns it.
 *
 * The registry holds the groups (sorted by pattern and name) and their
 * members (sorted by connection ref and subscription id, so that a
 * subscription or a whole connection leaves without naming its group).
 *
 * Threads: any thread; one lock guards the registry. Nothing else is
 * called under it.
 */
#ifndef FERRY_QGROUP_H
#define FERRY_QGROUP_H

#include <stddef.h>
#include <stdint.h>

struct qgroup_reg;

/* A new, empty registry, or NULL (no memory). */
struct qgroup_reg *qgroup_reg_create(void);
/* Free it and everything in it. NULL: no-op. */
void qgroup_reg_destroy(struct qgroup_reg *g);

/*
 * Subscription (ref, sub_id) joins group[0..glen) on pattern[0..plen) as
 * user (a NUL-terminated name, copied). A group nobody is in is created,
 * owned by user. Returns 0 (joined), FERRY_EPERM (the group is another
 * user's and !may_any), FERRY_EINVAL (empty group or pattern, or this
 * subscription is a member already), -ENOMEM.
 */
int qgroup_join(struct qgroup_reg *g, uint64_t ref, uint64_t sub_id, const char *pattern,
                size_t plen, const char *group, size_t glen, const char *user, int may_any);

/* Subscription (ref, sub_id) leaves its group, if it is in one. */
void qgroup_leave(struct qgroup_reg *g, uint64_t ref, uint64_t sub_id);

/* Every subscription of connection ref leaves its group. */
void qgroup_leave_all(struct qgroup_reg *g, uint64_t ref);

/* The owner of group on pattern ("" while nobody is in it), copied into
 * buf (cap bytes). For tests and diagnostics. */
void qgroup_owner(struct qgroup_reg *g, const char *pattern, size_t plen, const char *group,
                  size_t glen, char *buf, size_t cap);

#endif
