// ExtentBackend: one piece of a VMDK layer's address space (one extent line of a descriptor),
// backed by a flat file region, a sparse file, or nothing (ZERO).
//
// Offsets are bytes relative to the start of the extent. Implementations are not thread-safe.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "base/result.h"
#include "io/block_device.h"

namespace vmbackup::vmdk {

// What one layer says about a range.
enum class BlockState : uint8_t {
  kUnallocated,  // not in this layer: read through to the parent, or zeros at the base
  kZero,         // this layer says zeros (zeroed grain, ZERO extent); does not read through
  kData,         // this layer holds the bytes
};
std::string_view BlockStateName(BlockState s);

struct BlockRun {
  uint64_t offset = 0;
  uint64_t length = 0;
  BlockState state = BlockState::kUnallocated;
};

// Appends a run, merging it into the previous one when adjacent with the same state.
void AppendRun(std::vector<BlockRun>* runs, uint64_t offset, uint64_t length, BlockState state);

// Facts about an extent for `vmdk info`.
struct ExtentFormat {
  std::string kind;          // "flat", "hosted-sparse", "stream", "cowd", "sesparse", "zero"
  uint64_t grain_bytes = 0;  // 0 for flat and zero
  uint32_t version = 0;      // sparse header version, 0 when not applicable
};

class ExtentBackend {
 public:
  virtual ~ExtentBackend() = default;

  // Bytes covered, as the descriptor's extent line says.
  virtual uint64_t size() const = 0;

  // Appends runs covering exactly [offset, offset+length), which must lie inside size().
  virtual Status Map(uint64_t offset, uint64_t length, std::vector<BlockRun>* runs) = 0;

  // Reads [offset, offset+buf.size()): the data where allocated, zeros everywhere else
  // (reading through to a parent is the layer's job, guided by Map).
  virtual Status Read(uint64_t offset, std::span<uint8_t> buf) = 0;

  // Allocation unit of writes: 0 when written in place (flat), else the grain size. A write
  // that touches a grain this extent does not hold as data must cover that whole grain (or
  // up to the end of the extent); the caller does the copy-on-write.
  virtual uint64_t grain_bytes() const { return 0; }
  virtual bool writable() const { return false; }
  virtual Status Write(uint64_t offset, std::span<const uint8_t> data);
  // Makes [offset, offset+length) hold nothing, so that it reads as zeros with no parent below
  // (a hole). kNotSupported where the extent cannot (the caller writes zeros instead).
  virtual Status Deallocate(uint64_t offset, uint64_t length);
  virtual Status Flush() { return Status::Ok(); }

  virtual ExtentFormat format() const = 0;
};

// A ZERO extent: reads zeros, holds nothing.
class ZeroExtent final : public ExtentBackend {
 public:
  explicit ZeroExtent(uint64_t size) : size_(size) {}
  uint64_t size() const override { return size_; }
  Status Map(uint64_t offset, uint64_t length, std::vector<BlockRun>* runs) override;
  Status Read(uint64_t offset, std::span<uint8_t> buf) override;
  ExtentFormat format() const override { return {"zero", 0, 0}; }

 private:
  uint64_t size_;
};

// FLAT and VMFS extents: `size` bytes at `file_offset` of a plain file.
class FlatExtent final : public ExtentBackend {
 public:
  // Fails with kCorruption when the file is shorter than file_offset + size.
  static Result<std::unique_ptr<FlatExtent>> Open(std::shared_ptr<io::BlockWriter> file,
                                                  uint64_t file_offset, uint64_t size,
                                                  bool writable);
  uint64_t size() const override { return size_; }
  Status Map(uint64_t offset, uint64_t length, std::vector<BlockRun>* runs) override;
  Status Read(uint64_t offset, std::span<uint8_t> buf) override;
  bool writable() const override { return writable_; }
  Status Write(uint64_t offset, std::span<const uint8_t> data) override;
  Status Deallocate(uint64_t offset, uint64_t length) override;  // punches a hole
  Status Flush() override { return file_->Flush(); }
  ExtentFormat format() const override { return {"flat", 0, 0}; }

 private:
  FlatExtent(std::shared_ptr<io::BlockWriter> f, uint64_t off, uint64_t size, bool w)
      : file_(std::move(f)), file_offset_(off), size_(size), writable_(w) {}
  std::shared_ptr<io::BlockWriter> file_;
  uint64_t file_offset_, size_;
  bool writable_;
};

}  // namespace vmbackup::vmdk
