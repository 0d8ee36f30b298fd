/*
 * test_qgroup.c - queue groups' owners (broker/qgroup.c): the first
 * member's user owns a group; others join only when allowed; a group is
 * forgotten with its last member, by subscription or by connection.
 */
#include "ferry.h"
#include "qgroup.h"

#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

Suite *test_suite(void);

static const char *owner_of(struct qgroup_reg *g, const char *pattern, const char *group)
{
    static char buf[80];
    qgroup_owner(g, pattern, strlen(pattern), group, strlen(group), buf, sizeof(buf));
    return buf;
}

static int join(struct qgroup_reg *g, uint64_t ref, uint64_t sub, const char *pattern,
                const char *group, const char *user, int may_any)
{
    return qgroup_join(g, ref, sub, pattern, strlen(pattern), group, strlen(group), user, may_any);
}

START_TEST(test_qgroup_first_member_owns_others_need_a_right)
{
    struct qgroup_reg *g = qgroup_reg_create();
    ck_assert_ptr_nonnull(g);
    ck_assert_str_eq(owner_of(g, "a.>", "g"), "");
    ck_assert_int_eq(join(g, 1, 1, "a.>", "g", "alice", 0), 0);
    ck_assert_str_eq(owner_of(g, "a.>", "g"), "alice");
    ck_assert_int_eq(join(g, 2, 1, "a.>", "g", "bob", 0), FERRY_EPERM);
    ck_assert_int_eq(join(g, 1, 2, "a.>", "g", "alice", 0), 0);            /* the owner, again */
    ck_assert_int_eq(join(g, 1, 2, "a.>", "g", "alice", 0), FERRY_EINVAL); /* same sub */
    /* another pattern or another name is another group */
    ck_assert_int_eq(join(g, 2, 2, "a.*", "g", "bob", 0), 0);
    ck_assert_int_eq(join(g, 2, 3, "a.>", "h", "bob", 0), 0);
    ck_assert_str_eq(owner_of(g, "a.*", "g"), "bob");
    /* allowed (a group rule, admin): joins, and the owner stays */
    ck_assert_int_eq(join(g, 3, 1, "a.>", "g", "carol", 1), 0);
    ck_assert_str_eq(owner_of(g, "a.>", "g"), "alice");
    ck_assert_int_eq(join(g, 4, 1, "", "g", "x", 1), FERRY_EINVAL);
    ck_assert_int_eq(join(g, 4, 1, "a", "", "x", 1), FERRY_EINVAL);
    qgroup_reg_destroy(g);
}
END_TEST

START_TEST(test_qgroup_forgotten_with_its_last_member)
{
    struct qgroup_reg *g = qgroup_reg_create();
    ck_assert_int_eq(join(g, 1, 1, "t", "g", "alice", 0), 0);
    ck_assert_int_eq(join(g, 1, 2, "t", "g", "alice", 0), 0);
    ck_assert_int_eq(join(g, 2, 7, "t", "g", "carol", 1), 0);
    ck_assert_int_eq(join(g, 1, 3, "u", "g", "alice", 0), 0);
    qgroup_leave(g, 1, 1);
    qgroup_leave(g, 9, 9); /* not a member: nothing */
    ck_assert_int_eq(join(g, 3, 1, "t", "g", "bob", 0), FERRY_EPERM);
    qgroup_leave_all(g, 1); /* alice's connection closes: subs 2 and 3 */
    ck_assert_str_eq(owner_of(g, "u", "g"), "");
    /* carol is still in: the group is alice's still */
    ck_assert_str_eq(owner_of(g, "t", "g"), "alice");
    ck_assert_int_eq(join(g, 3, 1, "t", "g", "bob", 0), FERRY_EPERM);
    qgroup_leave(g, 2, 7);
    ck_assert_str_eq(owner_of(g, "t", "g"), "");
    ck_assert_int_eq(join(g, 3, 1, "t", "g", "bob", 0), 0);
    ck_assert_str_eq(owner_of(g, "t", "g"), "bob");
    /* many members and groups, left in any order */
    for (uint64_t i = 0; i < 200; i++) {
        char grp[16];
        snprintf(grp, sizeof(grp), "g%llu", (unsigned long long)(i % 7));
        ck_assert_int_eq(join(g, 100 + i % 5, i, "m", grp, "zed", 0), 0);
    }
    for (uint64_t r = 100; r < 105; r++) {
        qgroup_leave_all(g, r);
    }
    ck_assert_str_eq(owner_of(g, "m", "g3"), "");
    ck_assert_str_eq(owner_of(g, "t", "g"), "bob");
    qgroup_reg_destroy(g);
}
END_TEST

Suite *test_suite(void)
{
    Suite *s = suite_create("qgroup");
    TCase *tc = tcase_create("qgroup");
    tcase_add_test(tc, test_qgroup_first_member_owns_others_need_a_right);
    tcase_add_test(tc, test_qgroup_forgotten_with_its_last_member);
    suite_add_tcase(s, tc);
    return s;
}
