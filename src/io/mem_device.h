// MemDevice: a growable in-memory BlockWriter, for tests and fuzzing.
#pragma once

#include <string>
#include <vector>

#include "io/block_device.h"

namespace vmbackup::io {

class MemDevice final : public BlockWriter {
 public:
  explicit MemDevice(std::vector<uint8_t> data = {}, std::string name = "memory")
      : data_(std::move(data)), name_(std::move(name)) {}

  uint64_t size() const override { return data_.size(); }
  Status ReadAt(uint64_t offset, std::span<uint8_t> buf) override;
  // Grows the device when writing past the end (zero-filled gap).
  Status WriteAt(uint64_t offset, std::span<const uint8_t> data) override;
  Status Flush() override { return Status::Ok(); }
  std::string name() const override { return name_; }

  const std::vector<uint8_t>& data() const { return data_; }
  std::vector<uint8_t>& mutable_data() { return data_; }

 private:
  std::vector<uint8_t> data_;
  std::string name_;
};

}  // namespace vmbackup::io
