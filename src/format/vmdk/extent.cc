#include "format/vmdk/extent.h"

#include <cstring>

#include "base/checked_math.h"
#include "base/strings.h"

namespace vmbackup::vmdk {

std::string_view BlockStateName(BlockState s) {
  switch (s) {
    case BlockState::kUnallocated: return "unallocated";
    case BlockState::kZero: return "zero";
    case BlockState::kData: return "data";
  }
  return "?";
}

void AppendRun(std::vector<BlockRun>* runs, uint64_t offset, uint64_t length, BlockState state) {
  if (length == 0) return;
  if (!runs->empty()) {
    BlockRun& last = runs->back();
    if (last.state == state && last.offset + last.length == offset) {
      last.length += length;
      return;
    }
  }
  runs->push_back({offset, length, state});
}

Status ExtentBackend::Write(uint64_t, std::span<const uint8_t>) {
  return NotSupportedError("extent of kind " + format().kind + " is read-only");
}

Status ExtentBackend::Deallocate(uint64_t, uint64_t) {
  return NotSupportedError("extent of kind " + format().kind + " cannot deallocate");
}

Status ZeroExtent::Map(uint64_t offset, uint64_t length, std::vector<BlockRun>* runs) {
  AppendRun(runs, offset, length, BlockState::kZero);
  return Status::Ok();
}

Status ZeroExtent::Read(uint64_t, std::span<uint8_t> buf) {
  std::memset(buf.data(), 0, buf.size());
  return Status::Ok();
}

Result<std::unique_ptr<FlatExtent>> FlatExtent::Open(std::shared_ptr<io::BlockWriter> file,
                                                     uint64_t file_offset, uint64_t size,
                                                     bool writable) {
  auto end = CheckedAdd(file_offset, size);
  if (!end || *end > file->size()) {
    return CorruptionError(StrFormat(
        "%s: file is %llu bytes, shorter than the extent's end at %llu", file->name().c_str(),
        (unsigned long long)file->size(), (unsigned long long)(end ? *end : UINT64_MAX)));
  }
  return std::unique_ptr<FlatExtent>(new FlatExtent(std::move(file), file_offset, size, writable));
}

Status FlatExtent::Map(uint64_t offset, uint64_t length, std::vector<BlockRun>* runs) {
  // Holes in the host file (a thin disk's never-written areas) read as zeros: report them as
  // zero runs so readers skip them, as qemu-img map does ("zero": true).
  VMBACKUP_ASSIGN_OR_RETURN(ExtentSet data, file_->AllocatedExtents(file_offset_ + offset, length));
  uint64_t pos = file_offset_ + offset;
  for (const Extent& e : data) {
    AppendRun(runs, pos - file_offset_, e.offset - pos, BlockState::kZero);
    AppendRun(runs, e.offset - file_offset_, e.length, BlockState::kData);
    pos = e.end();
  }
  AppendRun(runs, pos - file_offset_, file_offset_ + offset + length - pos, BlockState::kZero);
  return Status::Ok();
}

Status FlatExtent::Read(uint64_t offset, std::span<uint8_t> buf) {
  return file_->ReadAt(file_offset_ + offset, buf);
}

Status FlatExtent::Write(uint64_t offset, std::span<const uint8_t> data) {
  if (!writable_) return PermissionDeniedError(file_->name() + ": extent is read-only");
  return file_->WriteAt(file_offset_ + offset, data);
}

Status FlatExtent::Deallocate(uint64_t offset, uint64_t length) {
  if (!writable_) return PermissionDeniedError(file_->name() + ": extent is read-only");
  return file_->WriteZeroes(file_offset_ + offset, length);
}

}  // namespace vmbackup::vmdk
