// The head of an HTTP/1.1 response (status line and header fields), parsed from what a
// server sent: outside input, so every malformed head is a kProtocol error, never a crash
// (fuzz/http_head_fuzzer.cc).
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "base/result.h"

namespace vmbackup::http {

struct ResponseHead {
  int status = 0;
  std::string reason;
  std::map<std::string, std::string> headers;  // names lower-cased; repeated names joined by ", "
  // The body's framing as the head declares it.
  std::optional<uint64_t> content_length;
  bool chunked = false;           // Transfer-Encoding other than identity
  bool connection_close = false;  // the server closes the connection after this response
};

// `head` is everything up to and including the blank line ("HTTP/1.1 206 ...\r\n...\r\n\r\n");
// bare LF line ends are accepted. kProtocol for anything that is not a valid head: a bad
// status line, a field line without a name or colon, an obsolete folded line, a
// Content-Length that is not one number.
Result<ResponseHead> ParseResponseHead(std::string_view head);

// "bytes FIRST-LAST/TOTAL" (TOTAL may be "*") -> {FIRST, LAST}; kProtocol otherwise.
struct ByteRange {
  uint64_t first = 0, last = 0;
};
Result<ByteRange> ParseContentRange(std::string_view value);

}  // namespace vmbackup::http
