# The `ferry` command-line tool. Its pure helpers (histogram, parsing, JSON)
# form a static library that the unit tests link as well.
add_library(ferry_cli_util STATIC
  ${CMAKE_CURRENT_LIST_DIR}/cli_util.c
  ${CMAKE_CURRENT_LIST_DIR}/hist.c)
target_include_directories(ferry_cli_util PUBLIC ${CMAKE_CURRENT_LIST_DIR})
target_link_libraries(ferry_cli_util PRIVATE ferry_warnings)
