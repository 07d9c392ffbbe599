#include "io/mem_device.h"

#include <cstring>

#include "base/checked_math.h"
#include "base/strings.h"

namespace vmbackup::io {

Status MemDevice::ReadAt(uint64_t offset, std::span<uint8_t> buf) {
  if (!RangeWithin(offset, buf.size(), data_.size())) {
    return CorruptionError(StrFormat("%s: read of %zu bytes at offset %llu: device ends at %zu",
                                     name_.c_str(), buf.size(), (unsigned long long)offset,
                                     data_.size()));
  }
  if (!buf.empty()) std::memcpy(buf.data(), data_.data() + offset, buf.size());
  return Status::Ok();
}

Status MemDevice::WriteAt(uint64_t offset, std::span<const uint8_t> data) {
  auto end = CheckedAdd(offset, data.size());
  if (!end || *end > (uint64_t(1) << 40)) return InvalidArgumentError(name_ + ": write too far");
  if (*end > data_.size()) data_.resize(*end);
  if (!data.empty()) std::memcpy(data_.data() + offset, data.data(), data.size());
  return Status::Ok();
}

}  // namespace vmbackup::io
