# Man pages made at build time by help2man from the built binaries' --help
# and --version (issue 14 item 8), gzipped as Debian ships them, installed to
# ${CMAKE_INSTALL_MANDIR}/man1 (and so in the Debian package).
#
# Without help2man or gzip there are none, and configure says so. Not in
# sanitizer, fuzzer or cross builds either: help2man runs the binaries, and
# those are not installed anyway. JOBRING_MAN_PAGES tells the tests whether
# the pages are made.
option(JOBRING_BUILD_MAN "Make man pages with help2man, if it is installed" ON)
set(JOBRING_MAN_PAGES OFF)
if(JOBRING_BUILD_MAN AND NOT JOBRING_SANITIZE AND NOT JOBRING_BUILD_FUZZERS AND NOT CMAKE_CROSSCOMPILING)
  find_program(JOBRING_HELP2MAN help2man)
  find_program(JOBRING_GZIP gzip)
  if(JOBRING_HELP2MAN AND JOBRING_GZIP)
    set(JOBRING_MAN_PAGES ON)
  else()
    message(STATUS "help2man or gzip not found: no man pages (on Debian: apt-get install help2man)")
  endif()
endif()

# jobring_man_page(TARGET NAME SUMMARY [INCLUDE FILE] [INCLUDE_SCRIPT SCRIPT]):
# NAME.1.gz from TARGET's --help and --version, SUMMARY as its NAME line;
# FILE (help2man's --include format) added as it is, or made at build time
# by `sh SCRIPT BINARY OUTPUT`.
function(jobring_man_page target name summary)
  if(NOT JOBRING_MAN_PAGES)
    return()
  endif()
  cmake_parse_arguments(PARSE_ARGV 3 arg "" "INCLUDE;INCLUDE_SCRIPT" "")
  set(page ${CMAKE_CURRENT_BINARY_DIR}/${name}.1)
  set(include_args)
  set(depends ${target})
  if(arg_INCLUDE)
    list(APPEND include_args --include=${arg_INCLUDE})
    list(APPEND depends ${arg_INCLUDE})
  endif()
  if(arg_INCLUDE_SCRIPT)
    set(generated ${CMAKE_CURRENT_BINARY_DIR}/${name}.h2m)
    add_custom_command(OUTPUT ${generated}
                       COMMAND sh ${arg_INCLUDE_SCRIPT} $<TARGET_FILE:${target}> ${generated}
                       DEPENDS ${target} ${arg_INCLUDE_SCRIPT} VERBATIM)
    list(APPEND include_args --include=${generated})
    list(APPEND depends ${generated})
  endif()
  add_custom_command(OUTPUT ${page}.gz
                     COMMAND ${JOBRING_HELP2MAN} --no-info --section=1 --name=${summary} ${include_args}
                             --output=${page} $<TARGET_FILE:${target}>
                     COMMAND ${JOBRING_GZIP} -9nf ${page}
                     DEPENDS ${depends}
                     COMMENT "help2man: ${name}.1.gz" VERBATIM)
  add_custom_target(${name}-man ALL DEPENDS ${page}.gz)
  install(FILES ${page}.gz DESTINATION ${CMAKE_INSTALL_MANDIR}/man1)
endfunction()
