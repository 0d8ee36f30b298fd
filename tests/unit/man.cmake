# The manual pages (man/*.scd) agree with the programs (label unit): every
# option of ferryd --help and of each ferry command's --help is in its page
# and the other way round, every config key in ferryd.conf(5), every
# function of ferry.h in libferry(3), whose example compiles. Reads the
# .scd sources, so it runs without scdoc; skipped (77) until the binaries
# are built.
foreach(part ferryd ferry conf libferry)
  add_test(NAME man_options.${part}
    COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/man_options.sh ${part} ${PROJECT_SOURCE_DIR}/man
      $<TARGET_FILE:ferryd> $<TARGET_FILE:ferry> ${PROJECT_SOURCE_DIR}/client-lib/include/ferry.h)
  set_tests_properties(man_options.${part} PROPERTIES LABELS unit SKIP_RETURN_CODE 77 TIMEOUT 120)
endforeach()
