// Fuzzes what RangeConnection reads from a server nobody vouches for: a response head and a
// Content-Range value. Nothing may crash; an accepted head has a 3-digit status, an accepted
// range is ordered.
#include <cstdlib>
#include <string>

#include "http/response_head.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace vmbackup;
  const std::string text(reinterpret_cast<const char*>(data), size);
  auto head = http::ParseResponseHead(text);
  if (head && (head->status < 100 || head->status > 999)) std::abort();
  auto range = http::ParseContentRange(text);
  if (range && range->last < range->first) std::abort();
  return 0;
}
