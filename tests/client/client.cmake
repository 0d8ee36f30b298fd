# libferry's tests (label client), against the real ferryd of this build.
if(NOT TARGET ferryd)
  return()
endif()

foreach(name test_client test_client_reconnect test_client_store)
  ferry_check_test(${name} LABEL client TIMEOUT 180
    SOURCES ${CMAKE_CURRENT_LIST_DIR}/${name}.c ${CMAKE_CURRENT_LIST_DIR}/client_test.c
    LIBS ferry_shared ferry_test_support Threads::Threads)
endforeach()
# needs_store exits 77 (skipped, with its reason on stdout) while the broker
# has no store: it acks with sequence 0. needs_durables likewise while the
# broker refuses durable consumers (they come after the store).
set_tests_properties(test_client_store.needs_store test_client_store.needs_durables
  PROPERTIES SKIP_RETURN_CODE 77)

# Install libferry into a temporary prefix and build an out-of-tree program
# with pkg-config (shared and static) and with find_package(ferry).
# Sanitizer builds are skipped: the out-of-tree program is built without the
# sanitizer runtime the library would then need.
if(NOT FERRY_SANITIZE)
  add_test(NAME client_install
    COMMAND sh ${CMAKE_CURRENT_LIST_DIR}/install_test.sh ${CMAKE_BINARY_DIR}
            $<TARGET_FILE:ferryd> ${CMAKE_C_COMPILER} ${CMAKE_CURRENT_LIST_DIR})
  set_tests_properties(client_install PROPERTIES LABELS client TIMEOUT 300)
endif()

# The examples under valgrind (no errors, no leaks); skipped without
# valgrind, and in sanitizer builds (the two do not mix).
if(NOT FERRY_SANITIZE)
  add_test(NAME client_examples_valgrind
    COMMAND sh ${CMAKE_CURRENT_LIST_DIR}/valgrind_examples.sh $<TARGET_FILE:ferryd>
            $<TARGET_FILE:ferry_example_pub> $<TARGET_FILE:ferry_example_sub>)
  set_tests_properties(client_examples_valgrind PROPERTIES
    LABELS client TIMEOUT 300 SKIP_RETURN_CODE 77)
endif()
