// Fuzzes the sparse extent readers (hosted sparse / stream header, COWD, SEsparse, their grain
// directories and tables, compressed grains): the input is the whole extent file. Opening,
// mapping and reading never crash, hang or allocate in proportion to numbers in the file.
#include <algorithm>
#include <memory>
#include <vector>

#include "base/endian.h"
#include "format/vmdk/cowd.h"
#include "format/vmdk/hosted_sparse.h"
#include "format/vmdk/sesparse.h"
#include "io/mem_device.h"

namespace {

using namespace vmbackup;
using namespace vmbackup::vmdk;

constexpr uint64_t kMaxScan = 256ull << 20;  // bytes of the disk mapped per input
constexpr uint64_t kMaxRead = 8ull << 20;    // bytes of data read per input

void Exercise(ExtentBackend& e) {
  std::vector<BlockRun> runs;
  if (!e.Map(0, std::min(e.size(), kMaxScan), &runs).ok()) return;
  uint64_t budget = kMaxRead;
  std::vector<uint8_t> buf;
  for (const BlockRun& r : runs) {
    if (r.state != BlockState::kData) continue;
    uint64_t n = std::min(r.length, budget);
    if (n == 0) break;
    buf.resize(n);
    if (!e.Read(r.offset, buf).ok()) return;
    budget -= n;
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto file = std::make_shared<io::MemDevice>(std::vector<uint8_t>(data, data + size), "fuzz.vmdk");
  if (size < 8) return 0;
  const uint32_t magic = LoadLE32(data);
  Result<SparseLayout> layout = InternalError("no layout");
  if (magic == kSparseMagic) {
    layout = ReadHostedSparseLayout(*file, nullptr);
  } else if (magic == kCowdMagic) {
    layout = ReadCowdLayout(*file);
  } else if (LoadLE64(data) == kSeSparseMagic && size >= 24) {
    uint64_t cap = LoadLE64(data + 16);
    if (cap > kMaxCapacityBytes / kSectorSize) return 0;
    auto e = SeSparseExtent::Open(file, cap * kSectorSize);
    if (e) Exercise(**e);
    return 0;
  }
  if (!layout) return 0;
  auto e = SparseExtent::Open(file, *layout, layout->capacity_sectors * kSectorSize, false);
  if (e) Exercise(**e);
  return 0;
}
