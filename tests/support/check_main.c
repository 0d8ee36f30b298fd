/*
 * check_main.c - the main() of every Check test program.
 *
 * Each test program defines test_suite(). ctest runs the program once per
 * test case with CK_RUN_CASE set (see tests/CMakeLists.txt), and Check's
 * srunner_run_all() honours that variable.
 */
#include <check.h>
#include <stdlib.h>

Suite *test_suite(void);

int main(void)
{
    SRunner *sr = srunner_create(test_suite());
    srunner_run_all(sr, CK_ENV);
    int failed = srunner_ntests_failed(sr);
    int run = srunner_ntests_run(sr);
    srunner_free(sr);
    if (run == 0) {
        return 1; /* a named case that runs nothing is a broken registration */
    }
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
