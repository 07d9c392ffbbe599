// Fuzzes the VMDK descriptor parser: any input is parsed without crashing, and whatever parses
// survives a canonical write and re-parse unchanged.
#include <cstdlib>
#include <string_view>

#include "format/vmdk/descriptor.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  vmbackup::vmdk::LooksLikeDescriptor(text);
  auto d = vmbackup::vmdk::ParseDescriptor(text);
  if (!d) return 0;
  std::string canonical = vmbackup::vmdk::SerializeDescriptor(*d);
  auto again = vmbackup::vmdk::ParseDescriptor(canonical);
  if (!again || !(*again == *d)) std::abort();  // the canonical form must round-trip
  return 0;
}
