// Creating VMDK files: flat (monolithicFlat), ESXi vmfs descriptors, monolithicSparse, and
// sparse children (snapshot deltas) of an existing disk that qemu-img reads with the parent.
#pragma once

#include <string>
#include <string_view>

#include "base/result.h"
#include "format/vmdk/descriptor.h"

namespace vmbackup::vmdk {

enum class DiskType { kFlat, kVmfs, kSparse, kStream };
// "flat", "vmfs", "sparse", "stream"; kInvalidArgument otherwise.
Result<DiskType> ParseDiskType(std::string_view text);
std::string_view DiskTypeName(DiskType t);

struct CreateOptions {
  DiskType type = DiskType::kSparse;
  // Bytes; rounded up to whole sectors. With a parent: 0 means the parent's capacity, and any
  // other value must equal it.
  uint64_t capacity = 0;
  std::string parent;             // sparse child of this disk (type must be kSparse)
  std::string parent_confine_to;  // the parent's chain must lie in this folder (DiskOptions)
  std::string adapter_type = "lsilogic";
  uint64_t grain_sectors = 128;
  // Sparse only: a version-2 file whose whole zero grains are grain table entries of 1
  // (reading zeros, hiding the parent) rather than data, as `qemu-img -o zeroed_grain=on`.
  bool zeroed_grain = false;
};

// Creates the files of a new disk at `path` (the descriptor; flat and vmfs also get
// "<stem>-flat.vmdk"). Existing files are never overwritten (kAlreadyExists). kStream is
// written by WriteStreamOptimized, not here.
Status CreateDisk(const std::string& path, const CreateOptions& options);

// Grows a flat or vmfs disk with no parent to `new_capacity` bytes (rounded up to sectors):
// the data file is extended (a hole) and the descriptor rewritten. Shrinking is refused.
Status GrowFlatDisk(const std::string& descriptor_path, uint64_t new_capacity);

// A descriptor with VMware's usual fields and a fresh CID, for a disk of `capacity_sectors`.
Descriptor NewDescriptor(std::string create_type, uint64_t capacity_sectors,
                         const std::string& adapter_type);

// "<stem>-flat.vmdk" for "<stem>.vmdk" (VMware's and QEMU's naming).
std::string FlatFileFor(const std::string& descriptor_path);

uint32_t RandomCid();

}  // namespace vmbackup::vmdk
