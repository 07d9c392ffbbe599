// Writing any block device (a raw file, a VMDK chain) into a new VMDK of a chosen type, and
// the VMware-style streamOptimized writer used for export.
#pragma once

#include <string>

#include "format/vmdk/create.h"
#include "io/block_device.h"

namespace vmbackup::vmdk {

struct ConvertStats {
  uint64_t bytes_scanned = 0;  // allocated bytes of the source that were read
  uint64_t bytes_written = 0;  // non-zero bytes written to the target
};

// Creates `out_path` of `type` holding the content of `src` (capacity rounded up to sectors).
// Only allocated, non-zero 64 KiB blocks are written; the rest stays a hole or unallocated.
Result<ConvertStats> ConvertDisk(io::BlockReader& src, const std::string& out_path, DiskType type);

// Writes a VMware-style streamOptimized file: header with gdOffset = GD_AT_END, embedded
// descriptor, zlib-compressed grains behind grain markers in ascending order, each grain
// table behind its marker after its grains, then the grain directory, the footer and the
// end-of-stream marker. All-zero grains are left out.
Result<ConvertStats> WriteStreamOptimized(io::BlockReader& src, const std::string& out_path);

}  // namespace vmbackup::vmdk
