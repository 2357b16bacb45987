# haven_test(<name> SOURCES <files...> [LIBS <libs...>] [TIMEOUT <seconds>] [ARGS <args...>])
#
# One executable per test program, registered with ctest under <name> with a timeout.
file(MAKE_DIRECTORY ${CMAKE_BINARY_DIR}/test-tmp)

function(haven_test name)
  cmake_parse_arguments(T "" "TIMEOUT" "SOURCES;LIBS;ARGS;LABELS" ${ARGN})
  if(NOT T_TIMEOUT)
    set(T_TIMEOUT 60)
  endif()
  add_executable(${name} ${T_SOURCES})
  target_compile_options(${name} PRIVATE ${HAVEN_WARNINGS})
  target_link_libraries(${name} PRIVATE haven PkgConfig::CMOCKA ${T_LIBS})
  add_test(NAME ${name} COMMAND ${name} ${T_ARGS})
  set_tests_properties(${name} PROPERTIES TIMEOUT ${T_TIMEOUT}
    ENVIRONMENT "HAVEN_TEST_TMP=${CMAKE_BINARY_DIR}/test-tmp;ASAN_OPTIONS=detect_leaks=1;UBSAN_OPTIONS=print_stacktrace=1")
  if(T_LABELS)
    set_tests_properties(${name} PROPERTIES LABELS "${T_LABELS}")
  endif()
endfunction()
