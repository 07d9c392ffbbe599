// Block device interfaces: every disk-shaped thing (a file, a VMDK chain, an NBD export, a
// restore point) is read and written through these.
//
// Offsets and lengths are bytes. Implementations are not thread-safe unless they say so.
#pragma once

#include <cstdint>
#include <span>
#include <string>

#include "base/extent_set.h"
#include "base/result.h"

namespace vmbackup::io {

class BlockReader {
 public:
  virtual ~BlockReader() = default;

  // Size of the device in bytes.
  virtual uint64_t size() const = 0;

  // Fills `buf` with the bytes at [offset, offset+buf.size()). A range that does not lie wholly
  // inside the device is an error (kInvalidArgument for a caller's range, kCorruption when the
  // device is shorter than its metadata promised, kIOError for OS failures).
  virtual Status ReadAt(uint64_t offset, std::span<uint8_t> buf) = 0;

  // The parts of [offset, offset+length) that may hold non-zero data; bytes outside the
  // result read as zeros. The default says everything may. Implementations answer from their
  // metadata (VMDK grain tables, SEEK_DATA holes) without reading the data.
  virtual Result<ExtentSet> AllocatedExtents(uint64_t offset, uint64_t length);

  // A name for messages: a path, a URI.
  virtual std::string name() const = 0;
};

class BlockWriter : public BlockReader {
 public:
  // Writes `data` at `offset`; the range must lie inside the device unless the device grows
  // (files do; disks do not).
  virtual Status WriteAt(uint64_t offset, std::span<const uint8_t> data) = 0;

  // Makes [offset, offset+length) read as zeros, deallocating it where the device can (a hole
  // in a file, discard on NBD), so a thin disk stays thin. The default writes zeros.
  virtual Status WriteZeroes(uint64_t offset, uint64_t length);

  // Makes every completed write durable.
  virtual Status Flush() = 0;
};

}  // namespace vmbackup::io
