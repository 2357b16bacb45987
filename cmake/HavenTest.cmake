# haven_test(<name> SOURCES <files...> [LIBS <libs...>] [TIMEOUT <seconds>] [ARGS <args...>]
#            [LABELS <labels...>] [LIBNNG_LEAKS])
#
# One executable per test program, registered with ctest under <name> with a timeout and the
# test environment (haven_test_env).
#
# haven_test_env(<test>... [LIBNNG_LEAKS])
#
# Sets the environment of tests registered with add_test (scripts, tests of other targets):
# HAVEN_TEST_TMP (the scratch directory) and the sanitizer options of cmake/sanitizers.env,
# the one place they are set. LIBNNG_LEAKS adds the LeakSanitizer suppression of libnng's own
# objects (tests/lsan-libnng.supp) for tests whose processes may strand them.
file(MAKE_DIRECTORY ${CMAKE_BINARY_DIR}/test-tmp)

file(STRINGS ${CMAKE_SOURCE_DIR}/cmake/sanitizers.env _haven_san_lines REGEX "^[A-Z_]+=")
set(HAVEN_TEST_ENV "HAVEN_TEST_TMP=${CMAKE_BINARY_DIR}/test-tmp")
set(HAVEN_TEST_ENV_LIBNNG "")
foreach(_line IN LISTS _haven_san_lines)
  string(REPLACE "@SOURCE_DIR@" "${CMAKE_SOURCE_DIR}" _line "${_line}")
  if(_line MATCHES "^LIBNNG_LEAKS_(LSAN_OPTIONS=.*)$")
    set(HAVEN_TEST_ENV_LIBNNG "${CMAKE_MATCH_1}")
  else()
    list(APPEND HAVEN_TEST_ENV "${_line}")
  endif()
endforeach()
set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/cmake/sanitizers.env)

function(haven_test_env)
  cmake_parse_arguments(E "LIBNNG_LEAKS" "" "" ${ARGN})
  set(env ${HAVEN_TEST_ENV})
  if(E_LIBNNG_LEAKS)
    list(APPEND env ${HAVEN_TEST_ENV_LIBNNG})
  endif()
  set_tests_properties(${E_UNPARSED_ARGUMENTS} PROPERTIES ENVIRONMENT "${env}")
endfunction()

function(haven_test name)
  cmake_parse_arguments(T "LIBNNG_LEAKS" "TIMEOUT" "SOURCES;LIBS;ARGS;LABELS" ${ARGN})
  if(NOT T_TIMEOUT)
    set(T_TIMEOUT 60)
  endif()
  add_executable(${name} ${T_SOURCES})
  target_compile_options(${name} PRIVATE ${HAVEN_WARNINGS})
  target_link_libraries(${name} PRIVATE haven PkgConfig::CMOCKA ${T_LIBS})
  add_test(NAME ${name} COMMAND ${name} ${T_ARGS})
  set_tests_properties(${name} PROPERTIES TIMEOUT ${T_TIMEOUT})
  if(T_LIBNNG_LEAKS)
    haven_test_env(${name} LIBNNG_LEAKS)
  else()
    haven_test_env(${name})
  endif()
  if(T_LABELS)
    set_tests_properties(${name} PROPERTIES LABELS "${T_LABELS}")
  endif()
endfunction()
