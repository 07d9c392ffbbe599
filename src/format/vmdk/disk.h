// Disk: a VMDK chain opened as one block device. Layer 0 is the file that was named; each
// layer's parentFileNameHint leads to the next, down to a base with no parent.
//
// Reads are served per range by the topmost layer that holds it; unallocated ranges fall
// through; below the base they read as zeros. Writes go to layer 0 only, copy-on-write by
// grain (a partial write to a grain layer 0 lacks first copies the grain from below).
// Not thread-safe.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "format/vmdk/layer.h"
#include "io/block_device.h"

namespace vmbackup::vmdk {

struct DiskOptions {
  bool writable = false;
  // Open a chain whose parentCID does not match its parent's CID (recovery work only: the
  // data read may be inconsistent).
  bool ignore_cid_mismatch = false;
  // Keep the top layer's CID on write. Only for writes that do not change what any child of
  // the top layer reads, such as merging a child's own data down into it.
  bool preserve_cid = false;
  // When set, every file of the chain (descriptors, extents, parents) must resolve inside this
  // folder (io::CheckInside): a hostile descriptor cannot make the disk read or write elsewhere.
  std::string confine_to;
  // When set, opens every file of the chain instead of the local file system: a chain read
  // through another transport (vSphere's datastore file service). Paths are then names in that
  // space, joined and resolved as local paths would be.
  FileOpener open_file;
};

// One run of a chain's allocation map.
struct ChainRun {
  uint64_t offset = 0;
  uint64_t length = 0;
  BlockState state = BlockState::kUnallocated;  // kData or kZero, or kUnallocated in no layer
  int depth = -1;  // index of the layer that answers; -1 when no layer holds the range
};

class Disk final : public io::BlockWriter {
 public:
  static constexpr size_t kMaxChainLength = 255;

  // Errors: kNotFound for a missing parent, kCorruption for a CID mismatch, a loop, a chain
  // longer than kMaxChainLength, or any damaged file (the message names file and field).
  static Result<std::unique_ptr<Disk>> Open(const std::string& path, const DiskOptions& options);

  uint64_t size() const override { return layers_[0]->capacity(); }
  Status ReadAt(uint64_t offset, std::span<uint8_t> buf) override;
  // On the first write the top layer gets a new CID (as VMware and QEMU do), so children
  // made from an older state of it no longer open without --ignore-cid.
  Status WriteAt(uint64_t offset, std::span<const uint8_t> data) override;
  // Zeros: on a layer with no parent, flat extents get holes (a thin disk stays thin); where
  // the layer has a parent, or the extent cannot deallocate, zeros are written.
  Status WriteZeroes(uint64_t offset, uint64_t length) override;
  Status Flush() override;
  // Data and zero runs of any layer count as allocated (zero runs hide the parent).
  Result<ExtentSet> AllocatedExtents(uint64_t offset, uint64_t length) override;
  std::string name() const override { return layers_[0]->path(); }

  const std::vector<std::unique_ptr<Layer>>& layers() const { return layers_; }
  // Whether ReadAt may run on several threads at once: every extent of the chain is flat or
  // zero (reads keep no state), given files whose ReadAt is thread-safe.
  bool ConcurrentReads() const;

  // The allocation map of [offset, offset+length) with the layer that answers each run.
  Status MapChain(uint64_t offset, uint64_t length, std::vector<ChainRun>* runs);

 private:
  Disk() = default;
  Status ReadFrom(size_t depth, uint64_t offset, std::span<uint8_t> buf);
  Status MapFrom(size_t depth, uint64_t offset, uint64_t length, std::vector<ChainRun>* runs);
  Status WriteGrainAware(uint64_t offset, std::span<const uint8_t> data);

  std::vector<std::unique_ptr<Layer>> layers_;
  bool writable_ = false;
  // Gives the top layer a new CID on the first change of content (not with preserve_cid).
  Status MoveCidOnce();
  bool cid_updated_ = false;  // also true from the start with preserve_cid
};

}  // namespace vmbackup::vmdk
