// SparseExtent: an extent whose grain directory (GD) holds 32-bit sector numbers of grain
// tables (GT), whose entries are 32-bit sector numbers of grains. Hosted sparse ("KDMV",
// monolithicSparse / twoGbMaxExtentSparse), streamOptimized (compressed grains behind
// markers) and ESXi vmfsSparse ("COWD") deltas all have this shape and differ only in their
// headers, which hosted_sparse.h and cowd.h turn into a SparseLayout.
//
// Bytes from the file are hostile: the GD and every GT are checked to lie inside the file
// and not to overlap; every grain entry is checked before it is followed. Memory is bounded
// by the size of the file's metadata, never by a number read from it.
#pragma once

#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "format/vmdk/descriptor.h"
#include "format/vmdk/extent.h"

namespace vmbackup::vmdk {

// Largest grain accepted from a file (32 MiB); VMware uses 64 KiB.
inline constexpr uint64_t kMaxGrainSectors = 65536;

struct SparseLayout {
  std::string kind;  // "hosted-sparse", "stream" or "cowd"
  uint32_t version = 1;
  uint64_t capacity_sectors = 0;
  uint64_t grain_sectors = 128;
  uint32_t gtes_per_gt = 512;
  uint64_t gd_sector = 0;
  uint64_t rgd_sector = 0;  // 0 = no redundant GD
  uint64_t gd_entries = 0;
  uint64_t header_sectors = 1;        // header (+ embedded descriptor): no table may start inside
  uint64_t first_grain_sector = 0;    // grains may not start below this (metadata lives there)
  bool zeroed_grain_entries = false;  // GT entry 1 = zero grain
  bool compressed = false;
  bool markers = false;
  bool writable_format = true;  // false: this kind is never written (stream, COWD, v3)
};

class SparseExtent final : public ExtentBackend {
 public:
  // `size` is the extent size from the descriptor; it may not exceed the layout's capacity.
  static Result<std::unique_ptr<SparseExtent>> Open(std::shared_ptr<io::BlockWriter> file,
                                                    const SparseLayout& layout, uint64_t size,
                                                    bool writable);

  uint64_t size() const override { return size_; }
  Status Map(uint64_t offset, uint64_t length, std::vector<BlockRun>* runs) override;
  Status Read(uint64_t offset, std::span<uint8_t> buf) override;
  uint64_t grain_bytes() const override { return grain_bytes_; }
  bool writable() const override { return writable_; }
  // Writes grains in place when allocated, else appends new grains at the end of the file,
  // data first, then the grain table entries (primary and redundant), as QEMU does.
  Status Write(uint64_t offset, std::span<const uint8_t> data) override;
  Status Flush() override { return file_->Flush(); }
  ExtentFormat format() const override { return {layout_.kind, grain_bytes_, layout_.version}; }

 private:
  struct Lookup {
    BlockState state;
    uint64_t sector;  // kData only
  };
  SparseExtent(std::shared_ptr<io::BlockWriter> file, const SparseLayout& layout, uint64_t size,
               bool writable);
  Status LoadDirectory();
  // The entries of a grain table, or nullptr when the table holds no entry (unless
  // `for_write`, which always materializes it). Empty tables are not kept in memory.
  Result<std::vector<uint32_t>*> Table(uint64_t gd_index, bool for_write = false);
  Result<Lookup> LookupGrain(uint64_t grain);
  Status ReadCompressedGrain(uint64_t grain, uint64_t sector);
  Result<uint64_t> AllocateTable(uint64_t gd_index);
  Status WriteTable(uint64_t gd_index);
  std::string Where() const { return file_->name(); }

  std::shared_ptr<io::BlockWriter> file_;
  SparseLayout layout_;
  uint64_t size_;
  uint64_t grain_bytes_;
  uint64_t gt_bytes_;
  bool writable_;
  std::vector<uint32_t> gd_;
  std::vector<uint32_t> rgd_;  // loaded only when writable and present
  std::unordered_map<uint64_t, std::vector<uint32_t>> tables_;
  // Tables known to hold no entry at all (kept as a flag only).
  std::unordered_map<uint64_t, bool> table_empty_;
  // Last inflated grain of a compressed extent, for sequential partial reads.
  uint64_t cached_grain_ = UINT64_MAX;
  std::vector<uint8_t> grain_buf_;
  std::vector<uint8_t> compressed_buf_;
};

}  // namespace vmbackup::vmdk
