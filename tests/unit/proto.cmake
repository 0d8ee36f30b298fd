# Unit tests of the wire layer (proto/): framing and codec.
ferry_check_test(test_frame LABEL unit
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_frame.c LIBS ferry_proto)
ferry_check_test(test_codec LABEL unit
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_codec.c LIBS ferry_proto)
