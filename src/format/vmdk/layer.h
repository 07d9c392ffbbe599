// Layer: one VMDK "disk" in a chain: a descriptor (a text file, or embedded in a sparse file)
// and the extents it lists, concatenated into one address space.
//
// Opening accepts: a text descriptor; a monolithicSparse or streamOptimized file with an
// embedded descriptor; and a bare sparse extent (KDMV, COWD or SEsparse file with no
// descriptor), for which a descriptor is synthesized. Not thread-safe.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "format/vmdk/descriptor.h"
#include "format/vmdk/extent.h"

namespace vmbackup::vmdk {

// Opens one file of a chain by path, for reading or writing (DiskOptions::open_file).
using FileOpener =
    std::function<Result<std::shared_ptr<io::BlockWriter>>(const std::string& path, bool writable)>;

struct LayerExtent {
  ExtentLine line;
  std::string path;    // resolved file path ("" for ZERO)
  uint64_t start = 0;  // byte offset of the extent in the layer
  std::unique_ptr<ExtentBackend> extent;
};

class Layer {
 public:
  // `writable` opens the RW extents for writing. With `confine_to`, the layer's file and every
  // extent file must resolve inside that folder (DiskOptions::confine_to).
  // `opener`, when given, opens the layer's files instead of the local file system
  // (DiskOptions::open_file).
  static Result<std::unique_ptr<Layer>> Open(const std::string& path, bool writable,
                                             const std::string& confine_to = "",
                                             const FileOpener* opener = nullptr);

  const std::string& path() const { return path_; }
  const Descriptor& descriptor() const { return descriptor_; }
  uint64_t capacity() const { return capacity_; }
  bool embedded_descriptor() const { return embedded_; }
  const std::vector<LayerExtent>& extents() const { return extents_; }

  // ExtentBackend::Map / Read across the extents; the range must lie inside capacity().
  Status Map(uint64_t offset, uint64_t length, std::vector<BlockRun>* runs);
  Status Read(uint64_t offset, std::span<uint8_t> buf);
  // Every extent is FLAT, VMFS or ZERO: no byte falls through to a parent, and Read gives what
  // the layer holds (holes in a host file read as zeros), so reads need no Map first.
  bool fully_allocated() const { return fully_allocated_; }

  // The extent holding `offset` (inside capacity()).
  LayerExtent& ExtentAt(uint64_t offset);

  // Writes into one extent; [offset, offset+size) must not cross an extent boundary and must
  // follow that extent's grain rule (ExtentBackend::Write).
  Status WriteWithinExtent(uint64_t offset, std::span<const uint8_t> data);

  // Sets the layer's CID and rewrites its descriptor (in place when embedded, else atomically).
  Status UpdateCid(uint32_t cid);
  // Rewrites the descriptor (parent links, change tracking path, ...). The extents must stay
  // as they are. Needs the layer opened writable when the descriptor is embedded.
  Status ReplaceDescriptor(const Descriptor& d);

  Status Flush();

 private:
  Layer() = default;
  Status OpenExtents(bool writable, std::shared_ptr<io::BlockWriter> self, const FileOpener* opener,
                     const std::string& confine_to);

  std::string path_;
  Descriptor descriptor_;
  bool embedded_ = false;
  uint64_t descriptor_offset_ = 0;  // bytes, embedded only
  uint64_t descriptor_capacity_ = 0;
  uint64_t capacity_ = 0;
  bool fully_allocated_ = false;
  std::shared_ptr<io::BlockWriter> self_file_;  // the file `path_` when it holds data
  std::vector<LayerExtent> extents_;
};

}  // namespace vmbackup::vmdk

namespace vmbackup::vmdk {
// True when the file at `path` starts like a VMDK (sparse magic or a descriptor); false for
// anything else, such as a raw image. Errors only when the file cannot be read.
Result<bool> LooksLikeVmdk(const std::string& path);
}  // namespace vmbackup::vmdk
