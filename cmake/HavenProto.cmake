include(${CMAKE_CURRENT_LIST_DIR}/HavenProtoCheck.cmake)

# haven_proto_library(<target> <proto root>)
#
# Compiles every .proto below <proto root> with protoc-c into the build tree and builds the
# result as a static library <target>. Nothing generated is committed. protoc-c compiles a
# `stream` method silently as unary, so a proto that declares one is rejected here: feeds use
# nng pub/sub and long lists use page tokens.
function(haven_proto_library target root)
  file(GLOB_RECURSE protos CONFIGURE_DEPENDS "${root}/*.proto")
  set(outdir "${CMAKE_BINARY_DIR}/proto")
  set(sources "")
  foreach(proto IN LISTS protos)
    haven_proto_check("${proto}")
    file(RELATIVE_PATH rel "${root}" "${proto}")
    string(REGEX REPLACE "\\.proto$" "" base "${rel}")
    set(c "${outdir}/${base}.pb-c.c")
    set(h "${outdir}/${base}.pb-c.h")
    add_custom_command(
      OUTPUT "${c}" "${h}"
      COMMAND ${CMAKE_COMMAND} -E make_directory "${outdir}"
      COMMAND ${PROTOC_C} "--proto_path=${root}" "--c_out=${outdir}" "${proto}"
      DEPENDS "${proto}"
      COMMENT "protoc-c ${rel}"
      VERBATIM)
    list(APPEND sources "${c}")
  endforeach()
  add_library(${target} STATIC ${sources})
  target_include_directories(${target} PUBLIC "${outdir}")
  target_link_libraries(${target} PUBLIC PkgConfig::PROTOBUFC)
  set_target_properties(${target} PROPERTIES POSITION_INDEPENDENT_CODE ON)
endfunction()
