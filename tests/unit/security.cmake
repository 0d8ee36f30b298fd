# Unit tests of authentication and authorization (broker/auth.c, broker/acl.c).
if(NOT TARGET ferry_broker)
  return()
endif()
ferry_check_test(test_acl LABEL unit
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_acl.c LIBS ferry_broker)
ferry_check_test(test_auth LABEL unit
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_auth.c LIBS ferry_broker)
ferry_check_test(test_login LABEL unit
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_login.c LIBS ferry_broker)
ferry_check_test(test_auth_file LABEL unit
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_auth_file.c LIBS ferry_broker)
ferry_check_test(test_qgroup LABEL unit
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_qgroup.c LIBS ferry_broker)
