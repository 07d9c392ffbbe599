// Fuzzes what the S3 client reads from a server nobody vouches for: a ListObjectsV2 page and an
// error answer. Nothing may crash; every key of an accepted page lies under the prefix.
#include <cstdlib>
#include <string>

#include "s3/s3_client.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace vmbackup;
  const std::string body(reinterpret_cast<const char*>(data), size);
  auto page = s3::ParseListPage(body, "repo/packs/", "fuzz");
  if (page) {
    for (const auto& m : page->objects)
      if (m.key.rfind("repo/packs/", 0) != 0) std::abort();
  }
  http::Response r;
  r.status = size ? 400 + data[0] % 200 : 500;
  r.body = body;
  (void)s3::ErrorOf(r, "fuzz");
  return 0;
}
