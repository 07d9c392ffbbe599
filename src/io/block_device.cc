#include "io/block_device.h"

#include <algorithm>
#include <vector>

namespace vmbackup::io {

Result<ExtentSet> BlockReader::AllocatedExtents(uint64_t offset, uint64_t length) {
  ExtentSet all;
  all.Add(0, size());
  return all.Clip(offset, length);
}

Status BlockWriter::WriteZeroes(uint64_t offset, uint64_t length) {
  static const std::vector<uint8_t> zeros(1 << 20, 0);
  while (length > 0) {
    const size_t n = size_t(std::min<uint64_t>(length, zeros.size()));
    VMBACKUP_RETURN_IF_ERROR(WriteAt(offset, {zeros.data(), n}));
    offset += n;
    length -= n;
  }
  return Status::Ok();
}

}  // namespace vmbackup::io
