# Test registration. Conventions (so new tests need no CMake edits):
#   tests/test_<module>.c   unit test binary, links libshale + internal headers
#   tests/test_<name>.py    integration test run with python3; gets SHALE_BIN,
#                           SHALE_SRC and SHALE_BUILD in its environment
#   tests/test_<name>.sh    integration test run with bash, same environment
#   fuzz/fuzz_<name>.c      libFuzzer target; without SHL_FUZZ it is linked with
#                           fuzz/driver.c and runs its seed corpus
#                           fuzz/corpus/<name>/ as a regression test
set(SHL_TEST_ENV
  "SHALE_BIN=$<TARGET_FILE:shale>"
  "SHALE_SRC=${CMAKE_SOURCE_DIR}"
  "SHALE_BUILD=${CMAKE_BINARY_DIR}")

file(GLOB unit_tests CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/tests/test_*.c)
foreach(src ${unit_tests})
  get_filename_component(name ${src} NAME_WE)
  add_executable(${name} ${src})
  target_include_directories(${name} PRIVATE ${CMAKE_SOURCE_DIR} ${CMAKE_SOURCE_DIR}/include ${CMAKE_SOURCE_DIR}/tests)
  target_link_libraries(${name} PRIVATE shale_static)
  add_test(NAME ${name} COMMAND ${name})
  set_tests_properties(${name} PROPERTIES ENVIRONMENT "${SHL_TEST_ENV}" SKIP_RETURN_CODE 77)
endforeach()

file(GLOB helper_srcs CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/tests/helper_*.c)
foreach(src ${helper_srcs})
  get_filename_component(name ${src} NAME_WE)
  add_executable(${name} ${src})
  target_include_directories(${name} PRIVATE ${CMAKE_SOURCE_DIR} ${CMAKE_SOURCE_DIR}/include)
  target_link_libraries(${name} PRIVATE shale_static)
  list(APPEND SHL_TEST_ENV "SHALE_${name}=$<TARGET_FILE:${name}>")
endforeach()

file(GLOB script_tests CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/tests/test_*.py ${CMAKE_SOURCE_DIR}/tests/test_*.sh)
foreach(src ${script_tests})
  get_filename_component(name ${src} NAME_WE)
  get_filename_component(ext ${src} EXT)
  if(ext STREQUAL ".py")
    add_test(NAME ${name} COMMAND python3 ${src})
  else()
    add_test(NAME ${name} COMMAND bash ${src})
  endif()
  set_tests_properties(${name} PROPERTIES ENVIRONMENT "${SHL_TEST_ENV}" SKIP_RETURN_CODE 77 TIMEOUT 900)
endforeach()

file(GLOB fuzz_srcs CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/fuzz/fuzz_*.c)
foreach(src ${fuzz_srcs})
  get_filename_component(name ${src} NAME_WE)
  string(REPLACE "fuzz_" "" short ${name})
  if(SHL_FUZZ)
    add_executable(${name} ${src})
    target_compile_options(${name} PRIVATE -fsanitize=fuzzer)
    target_link_options(${name} PRIVATE -fsanitize=fuzzer)
  else()
    add_executable(${name} ${src} ${CMAKE_SOURCE_DIR}/fuzz/driver.c)
  endif()
  target_include_directories(${name} PRIVATE ${CMAKE_SOURCE_DIR} ${CMAKE_SOURCE_DIR}/include)
  target_link_libraries(${name} PRIVATE shale_static)
  if(NOT SHL_FUZZ)
    add_test(NAME ${name}_corpus COMMAND ${name} ${CMAKE_SOURCE_DIR}/fuzz/corpus/${short})
  endif()
endforeach()
