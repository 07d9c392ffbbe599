// Fuzzes file-level restore's reading of a restore point's disk (outside input: whatever the
// guest wrote): the partition table, the file systems The Sleuth Kit finds, and our walk over
// them. Nothing may crash or loop; every listed path must be absolute and made of safe names.
// The input is the start of a 4 MiB disk; the rest reads as zeros.
#include <cstdlib>
#include <cstring>
#include <string>

#include "files/disk_browser.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace vmbackup;
  constexpr uint64_t kDisk = 4 << 20;
  auto read = [data, size](uint64_t off, std::span<uint8_t> buf) -> Status {
    std::memset(buf.data(), 0, buf.size());
    if (off < size) std::memcpy(buf.data(), data + off, std::min<uint64_t>(buf.size(), size - off));
    return Status::Ok();
  };
  auto b = files::DiskBrowser::Open(kDisk, read);
  if (!b) return 0;
  for (const auto& v : (*b)->volumes()) {
    if (v.fs_type.empty()) continue;
    auto entries = (*b)->List(v.number, "/", true);
    if (!entries) continue;
    for (const auto& e : *entries) {
      if (e.path.empty() || e.path[0] != '/' || e.path.find("/../") != std::string::npos ||
          e.path.find("//") != std::string::npos)
        std::abort();
    }
  }
  return 0;
}
