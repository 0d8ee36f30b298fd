/*
 * check_main.c - the main() of every Check test program.
 *
 * Each test program defines test_suite(). ctest runs the program once per
 * test case with CK_RUN_CASE set (see tests/CMakeLists.txt), and Check's
 * srunner_run_all() honours that variable.
 *
 * A case that cannot run here (no root, no promtool...) calls exit(77) in
 * its forked child; Check records that as "Early exit with return value
 * 77", and we turn a run whose every failure is such an exit into exit
 * status 77, which ctest reports as skipped (SKIP_RETURN_CODE 77).
 */
#include <check.h>
#include <stdlib.h>
#include <string.h>

Suite *test_suite(void);

int main(void)
{
    SRunner *sr = srunner_create(test_suite());
    srunner_run_all(sr, CK_ENV);
    int failed = srunner_ntests_failed(sr);
    int run = srunner_ntests_run(sr);
    int skipped = 0;
    if (failed > 0) {
        TestResult **tr = srunner_failures(sr);
        for (int i = 0; i < failed; i++) {
            const char *msg = tr_msg(tr[i]);
            skipped += msg != NULL && strstr(msg, "Early exit with return value 77") != NULL;
        }
        free(tr);
    }
    srunner_free(sr);
    if (run == 0) {
        return 1; /* a named case that runs nothing is a broken registration */
    }
    if (failed > 0 && skipped == failed) {
        return 77;
    }
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
