// ESXi SEsparse ("space-efficient sparse") delta extents (FORMATS.md section 1.6): read-only,
// clean files only. The layout is what QEMU implements; VMware does not publish it, so we
// refuse anything outside it (a dirty journal, other versions, other grain sizes).
#pragma once

#include <memory>
#include <unordered_map>
#include <vector>

#include "format/vmdk/extent.h"

namespace vmbackup::vmdk {

class SeSparseExtent final : public ExtentBackend {
 public:
  static Result<std::unique_ptr<SeSparseExtent>> Open(std::shared_ptr<io::BlockWriter> file,
                                                      uint64_t size);
  uint64_t size() const override { return size_; }
  Status Map(uint64_t offset, uint64_t length, std::vector<BlockRun>* runs) override;
  Status Read(uint64_t offset, std::span<uint8_t> buf) override;
  ExtentFormat format() const override { return {"sesparse", kGrainBytes, 2}; }

  static constexpr uint64_t kGrainBytes = 4096;

 private:
  struct Lookup {
    BlockState state;
    uint64_t file_offset;
  };
  SeSparseExtent(std::shared_ptr<io::BlockWriter> f, uint64_t size)
      : file_(std::move(f)), size_(size) {}
  Result<Lookup> LookupGrain(uint64_t grain);

  std::shared_ptr<io::BlockWriter> file_;
  uint64_t size_;
  uint64_t capacity_sectors_ = 0;
  uint64_t gt_offset_ = 0, gt_size_ = 0;          // sectors
  uint64_t grains_offset_ = 0, grains_size_ = 0;  // sectors
  std::vector<uint64_t> gd_;
  std::unordered_map<uint64_t, std::vector<uint64_t>> tables_;
};

}  // namespace vmbackup::vmdk
