# The systemd unit and the Debian packages (packaging/).
if(NOT TARGET ferryd)
  return()
endif()

# packaging/ferryd.service.in made as install_service.cmake makes it, but
# with ExecStart pointing at this build's ferryd (systemd-analyze verify
# wants an executable there); checked by systemd-analyze verify (label unit;
# skipped without it: Debian systemd).
set(FERRY_TEST_UNIT_DIR ${CMAKE_CURRENT_BINARY_DIR}/unit)
set(FERRYD_BIN "$<TARGET_FILE:ferryd>")
set(FERRYD_CONF /etc/ferry/ferryd.conf)
configure_file(${PROJECT_SOURCE_DIR}/packaging/ferryd.service.in
  ${FERRY_TEST_UNIT_DIR}/ferryd.service.genex @ONLY)
file(GENERATE OUTPUT ${FERRY_TEST_UNIT_DIR}/ferryd.service
  INPUT ${FERRY_TEST_UNIT_DIR}/ferryd.service.genex)
add_test(NAME package_unit_verify
  COMMAND sh ${CMAKE_CURRENT_LIST_DIR}/verify_unit.sh ${FERRY_TEST_UNIT_DIR}/ferryd.service)
set_tests_properties(package_unit_verify PROPERTIES LABELS unit TIMEOUT 60 SKIP_RETURN_CODE 77)

# The .deb packages: built with CPack into a temporary directory and
# checked with dpkg-deb (label package; about 30 s, most of it CPack's
# check that the build is up to date). Not in sanitizer builds: their
# binaries are not what a package ships.
if(NOT FERRY_SANITIZE)
  get_target_property(FERRY_TEST_SOVERSION ferry_shared SOVERSION)
  add_test(NAME package_deb
    COMMAND sh ${CMAKE_CURRENT_LIST_DIR}/deb_test.sh ${CMAKE_BINARY_DIR} ${PROJECT_VERSION}
            ${FERRY_TEST_SOVERSION} ${CMAKE_C_COMPILER}
            ${PROJECT_SOURCE_DIR}/tests/client/install_prog.c)
  set_tests_properties(package_deb PROPERTIES LABELS package TIMEOUT 300 SKIP_RETURN_CODE 77)
endif()
