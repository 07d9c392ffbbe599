#include "io/block_device.h"

namespace vmbackup::io {

Result<ExtentSet> BlockReader::AllocatedExtents(uint64_t offset, uint64_t length) {
  ExtentSet all;
  all.Add(0, size());
  return all.Clip(offset, length);
}

}  // namespace vmbackup::io
