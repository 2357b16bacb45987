# haven_proto_check(<file>): FATAL_ERROR when the .proto declares a streaming method.
# protoc-c compiles `stream` methods silently as unary; haven feeds use nng pub/sub and long
# lists use page tokens instead. Usable in script mode: cmake -DPROTO=file -P this-file.
function(haven_proto_check proto)
  file(READ "${proto}" text)
  string(REGEX REPLACE "//[^\n]*" "" text "${text}")
  if(text MATCHES "rpc[ \t\r\n]+[A-Za-z0-9_]+[ \t\r\n]*\\([ \t\r\n]*stream[ \t\r\n]"
     OR text MATCHES "returns[ \t\r\n]*\\([ \t\r\n]*stream[ \t\r\n]")
    message(FATAL_ERROR "${proto}: streaming RPC methods are not supported "
                        "(protoc-c compiles them as unary); use pub/sub or page tokens")
  endif()
endfunction()

if(CMAKE_SCRIPT_MODE_FILE AND DEFINED PROTO)
  haven_proto_check("${PROTO}")
endif()
