/*
 * test_json_check.c - the tests' strict JSON checker (tests/support): what
 * it accepts and the first byte it refuses.
 */
#include "json_check.h"

#include <check.h>
#include <string.h>

static int ok(const char *s)
{
    return json_check(s, strlen(s), NULL) == 0;
}

START_TEST(test_json_check_accepts_documents)
{
    ck_assert(ok("{}"));
    ck_assert(ok(" [1, -2.5e+3, 0, true, false, null, \"x\"] \n"));
    ck_assert(ok("{\"a\":{\"b\":[{}]},\"c\":\"\\\"\\\\\\/\\b\\f\\n\\r\\t\\u00e9\\ud83d\\ude00\"}"));
    ck_assert(ok("\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\""));
    ck_assert(ok("0.5"));
}
END_TEST

START_TEST(test_json_check_refuses_what_rfc8259_does)
{
    const char *bad[] = {
        "",
        "{",
        "{\"a\"}",
        "{\"a\":1,}",
        "[1,]",
        "[1 2]",
        "01",
        "1.",
        "-",
        "1e",
        "tru",
        "'x'",
        "{a:1}",
        "\"\x01\"",
        "\"\\x\"",
        "\"\\u12\"",
        "\"\\udc00\"",
        "\"\\ud800\"",
        "\"\xff\"",
        "\"\xc0\xaf\"",
        "\"\xed\xa0\x80\"",
        "{} {}",
        "[]x",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        ck_assert_msg(!ok(bad[i]), "accepted: %s", bad[i]);
    }
    size_t at = 0;
    ck_assert_int_eq(json_check("[1, x]", 6, &at), -1);
    ck_assert_uint_eq(at, 4);
}
END_TEST

Suite *test_suite(void);
Suite *test_suite(void)
{
    Suite *s = suite_create("json_check");
    TCase *tc = tcase_create("json_check");
    tcase_add_test(tc, test_json_check_accepts_documents);
    tcase_add_test(tc, test_json_check_refuses_what_rfc8259_does);
    suite_add_tcase(s, tc);
    return s;
}
