# vmbackup_add_library(NAME SOURCES ... DEPS ...): one static library per source folder.
# vmbackup_add_unit_test(NAME SOURCES ... DEPS ...): a GoogleTest binary, label "unit".

set(VMBACKUP_WARNINGS -Wall -Wextra -Wshadow -Wconversion -Wno-sign-conversion)
if(VMBACKUP_WERROR)
  list(APPEND VMBACKUP_WARNINGS -Werror)
endif()
if(VMBACKUP_SANITIZE)
  add_compile_options(-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined)
  add_link_options(-fsanitize=address,undefined)
endif()
if(VMBACKUP_FUZZ)
  add_compile_options(-fsanitize=fuzzer-no-link,address,undefined -fno-omit-frame-pointer)
  add_link_options(-fsanitize=address,undefined)
endif()

function(vmbackup_add_library name)
  cmake_parse_arguments(ARG "" "" "SOURCES;DEPS" ${ARGN})
  add_library(${name} STATIC ${ARG_SOURCES})
  target_include_directories(${name} PUBLIC ${PROJECT_SOURCE_DIR}/src)
  target_compile_options(${name} PRIVATE ${VMBACKUP_WARNINGS})
  target_link_libraries(${name} PUBLIC ${ARG_DEPS})
endfunction()

function(vmbackup_add_unit_test name)
  if(NOT VMBACKUP_BUILD_TESTS)
    return()
  endif()
  cmake_parse_arguments(ARG "" "" "SOURCES;DEPS" ${ARGN})
  add_executable(${name} ${ARG_SOURCES})
  target_compile_options(${name} PRIVATE ${VMBACKUP_WARNINGS})
  target_link_libraries(${name} PRIVATE ${ARG_DEPS} GTest::gtest GTest::gtest_main)
  gtest_discover_tests(${name} PROPERTIES LABELS unit TIMEOUT 60
                       DISCOVERY_TIMEOUT 60)
endfunction()

# Compiles `target` against an imported library's headers without linking the library: its
# functions come from the target's lazy_*.cc list and are loaded on first use
# (src/base/lazy_library.h).
function(vmbackup_use_headers_of target imported)
  get_target_property(dirs ${imported} INTERFACE_INCLUDE_DIRECTORIES)
  if(dirs)
    target_include_directories(${target} SYSTEM PUBLIC ${dirs})
  endif()
  get_target_property(options ${imported} INTERFACE_COMPILE_OPTIONS)
  if(options)
    target_compile_options(${target} PUBLIC ${options})
  endif()
endfunction()
