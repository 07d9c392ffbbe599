#include "host/change_tracking.h"

#include <zlib.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <random>

#include "base/checked_math.h"
#include "base/endian.h"
#include "base/strings.h"

namespace vmbackup::host {
namespace {

constexpr char kMagic[8] = {'V', 'M', 'H', 'C', 'T', 'K', '0', '1'};
constexpr uint32_t kVersion = 1;
constexpr uint64_t kMaxBlocks = uint64_t(1) << 32;  // 256 TiB at 64 KiB
constexpr uint64_t kIoBlocks = 16384;               // entries per read or write

void EncodeHeader(const std::array<uint8_t, 16>& epoch, uint64_t seq, uint64_t granularity,
                  uint64_t capacity, uint64_t blocks, uint8_t* h) {
  std::memset(h, 0, ChangeTrackFile::kHeaderSize);
  std::memcpy(h, kMagic, 8);
  StoreLE32(h + 8, kVersion);
  StoreLE32(h + 12, 0);
  std::memcpy(h + 16, epoch.data(), 16);
  StoreLE64(h + 32, seq);
  StoreLE64(h + 40, granularity);
  StoreLE64(h + 48, capacity);
  StoreLE64(h + 56, blocks);
  StoreLE32(h + 64, uint32_t(crc32(0, h, 64)));
}

}  // namespace

std::string ChangeId::ToString() const {
  std::string s;
  for (size_t i = 0; i < 16; ++i) {
    if (i) s += i == 8 ? "-" : " ";
    s += StrFormat("%02x", epoch[i]);
  }
  return s + "/" + std::to_string(seq);
}

Result<ChangeId> ChangeId::Parse(std::string_view text) {
  auto bad = [&] {
    return InvalidArgumentError(
        "change id '" + std::string(text) +
        "' is not of the form 'xx xx xx xx xx xx xx xx-xx xx xx xx xx xx xx xx/N'");
  };
  if (text.size() < 49 || text[47] != '/') return bad();
  ChangeId id;
  for (size_t i = 0; i < 16; ++i) {
    size_t at = i * 3;
    char sep = i == 0 ? ' ' : text[at - 1];
    if (i > 0 && sep != (i == 8 ? '-' : ' ')) return bad();
    int hi = -1, lo = -1;
    for (int k = 0; k < 2; ++k) {
      char c = text[at + size_t(k)];
      int v = c >= '0' && c <= '9'   ? c - '0'
              : c >= 'a' && c <= 'f' ? c - 'a' + 10
              : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                     : -1;
      (k == 0 ? hi : lo) = v;
    }
    if (hi < 0 || lo < 0) return bad();
    id.epoch[i] = uint8_t(hi * 16 + lo);
  }
  Result<uint64_t> seq = ParseUint(text.substr(48));
  if (!seq) return bad();
  id.seq = *seq;
  return id;
}

std::array<uint8_t, 16> ChangeId::NewEpoch() {
  std::random_device rd;
  std::array<uint8_t, 16> e;
  for (auto& b : e) b = uint8_t(rd());
  e[0] = 0x52;  // VMware's change ids start with 52
  return e;
}

Status ChangeTrackFile::Create(const std::string& path, const std::array<uint8_t, 16>& epoch,
                               uint64_t seq, uint64_t granularity, uint64_t capacity) {
  if (!IsPowerOfTwo(granularity) || granularity < 512) {
    return InvalidArgumentError("CBT granularity must be a power of two of at least 512 bytes");
  }
  uint64_t blocks = DivRoundUp(capacity, granularity);
  if (blocks > kMaxBlocks) return InvalidArgumentError("disk too large for this CBT granularity");
  VMBACKUP_ASSIGN_OR_RETURN(auto f, io::PosixFile::Open(path, io::OpenMode::kCreateTruncate));
  uint8_t h[kHeaderSize];
  EncodeHeader(epoch, seq, granularity, capacity, blocks, h);
  VMBACKUP_RETURN_IF_ERROR(f->Truncate(kHeaderSize + blocks * 4));
  VMBACKUP_RETURN_IF_ERROR(f->WriteAt(0, h));
  return f->Flush();
}

Result<std::unique_ptr<ChangeTrackFile>> ChangeTrackFile::Open(const std::string& path,
                                                               bool writable) {
  VMBACKUP_ASSIGN_OR_RETURN(auto f, io::PosixFile::Open(path, writable ? io::OpenMode::kReadWrite
                                                                       : io::OpenMode::kReadOnly));
  if (f->size() < kHeaderSize) return CorruptionError(path + ": too short for a ctk header");
  uint8_t h[kHeaderSize];
  VMBACKUP_RETURN_IF_ERROR(f->ReadAt(0, h));
  if (std::memcmp(h, kMagic, 8) != 0)
    return CorruptionError(path + ": not a vmhost ctk file (magic)");
  if (LoadLE32(h + 8) != kVersion) {
    return NotSupportedError(StrFormat("%s: ctk version %u", path.c_str(), LoadLE32(h + 8)));
  }
  if (LoadLE32(h + 64) != uint32_t(crc32(0, h, 64))) {
    return CorruptionError(path + ": ctk header checksum mismatch");
  }
  std::unique_ptr<ChangeTrackFile> t(new ChangeTrackFile());
  std::memcpy(t->epoch_.data(), h + 16, 16);
  t->seq_ = LoadLE64(h + 32);
  t->granularity_ = LoadLE64(h + 40);
  t->capacity_ = LoadLE64(h + 48);
  t->blocks_ = LoadLE64(h + 56);
  if (!IsPowerOfTwo(t->granularity_) || t->granularity_ < 512 || t->blocks_ > kMaxBlocks ||
      t->blocks_ != DivRoundUp(t->capacity_, t->granularity_) || t->seq_ >= UINT32_MAX) {
    return CorruptionError(path + ": ctk header fields are inconsistent");
  }
  if (f->size() != kHeaderSize + t->blocks_ * 4) {
    return CorruptionError(StrFormat("%s: ctk file is %llu bytes, expected %llu for %llu blocks",
                                     path.c_str(), (unsigned long long)f->size(),
                                     (unsigned long long)(kHeaderSize + t->blocks_ * 4),
                                     (unsigned long long)t->blocks_));
  }
  t->file_ = std::move(f);
  return t;
}

Status ChangeTrackFile::Record(uint64_t offset, uint64_t length) {
  if (length == 0) return Status::Ok();
  if (!RangeWithin(offset, length, capacity_)) {
    return InvalidArgumentError(file_->name() + ": recorded range past the end of the disk");
  }
  uint64_t first = offset / granularity_, last = (offset + length - 1) / granularity_;
  std::vector<uint8_t> buf;
  for (uint64_t b = first; b <= last;) {
    uint64_t n = std::min(kIoBlocks, last + 1 - b);
    buf.resize(n * 4);
    VMBACKUP_RETURN_IF_ERROR(file_->ReadAt(kHeaderSize + b * 4, buf));
    bool changed = false;
    for (uint64_t i = 0; i < n; ++i) {
      if (LoadLE32(buf.data() + 4 * i) != seq_) {
        StoreLE32(buf.data() + 4 * i, uint32_t(seq_));
        changed = true;
      }
    }
    if (changed) VMBACKUP_RETURN_IF_ERROR(file_->WriteAt(kHeaderSize + b * 4, buf));
    b += n;
  }
  return Status::Ok();
}

Result<ChangedAreas> ChangeTrackFile::Query(const ChangeId& since, uint64_t start_offset,
                                            size_t max_areas) {
  if (since.epoch != epoch_) {
    return NotFoundError("change id " + since.ToString() +
                         " is unknown: change tracking was reset since (epoch differs)");
  }
  if (since.seq > seq_) {
    return NotFoundError(StrFormat("change id %s is newer than this disk state (%s)",
                                   since.ToString().c_str(), change_id().ToString().c_str()));
  }
  if (start_offset > capacity_) {
    return InvalidArgumentError("startOffset lies past the end of the disk");
  }
  ChangedAreas out;
  out.start_offset = start_offset;
  uint64_t b = start_offset / granularity_;
  std::vector<uint8_t> buf;
  uint64_t end_block = blocks_;
  while (b < blocks_) {
    uint64_t n = std::min(kIoBlocks, blocks_ - b);
    buf.resize(n * 4);
    VMBACKUP_RETURN_IF_ERROR(file_->ReadAt(kHeaderSize + b * 4, buf));
    for (uint64_t i = 0; i < n; ++i) {
      if (LoadLE32(buf.data() + 4 * i) <= since.seq) continue;
      uint64_t start = std::max((b + i) * granularity_, start_offset);
      uint64_t end = std::min((b + i + 1) * granularity_, capacity_);
      if (!out.areas.empty() && out.areas.back().end() == start) {
        out.areas.back().length += end - start;
      } else if (out.areas.size() == max_areas) {
        end_block = b + i;  // this page ends where the next area would start
        break;
      } else {
        out.areas.push_back({start, end - start});
      }
    }
    if (end_block != blocks_) break;
    b += n;
  }
  uint64_t end = end_block == blocks_ ? capacity_ : end_block * granularity_;
  out.length = end - start_offset;
  return out;
}

Status ChangeTrackFile::WriteHeader() {
  uint8_t h[kHeaderSize];
  EncodeHeader(epoch_, seq_, granularity_, capacity_, blocks_, h);
  return file_->WriteAt(0, h);
}

Status ChangeTrackFile::CopyTo(const std::string& path, uint64_t seq) {
  std::string tmp = path + ".tmp";
  {
    VMBACKUP_ASSIGN_OR_RETURN(auto out, io::PosixFile::Open(tmp, io::OpenMode::kCreateTruncate));
    uint8_t h[kHeaderSize];
    EncodeHeader(epoch_, seq, granularity_, capacity_, blocks_, h);
    VMBACKUP_RETURN_IF_ERROR(out->WriteAt(0, h));
    std::vector<uint8_t> buf;
    for (uint64_t b = 0; b < blocks_;) {
      uint64_t n = std::min(kIoBlocks, blocks_ - b);
      buf.resize(n * 4);
      VMBACKUP_RETURN_IF_ERROR(file_->ReadAt(kHeaderSize + b * 4, buf));
      if (!IsAllZero(buf.data(), buf.size())) {
        VMBACKUP_RETURN_IF_ERROR(out->WriteAt(kHeaderSize + b * 4, buf));
      }
      b += n;
    }
    VMBACKUP_RETURN_IF_ERROR(out->Truncate(kHeaderSize + blocks_ * 4));
    VMBACKUP_RETURN_IF_ERROR(out->Flush());
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) return PosixError("rename " + tmp, errno);
  return Status::Ok();
}

Status ChangeTrackFile::Reset(const std::array<uint8_t, 16>& epoch) {
  epoch_ = epoch;
  VMBACKUP_RETURN_IF_ERROR(file_->Truncate(kHeaderSize));
  VMBACKUP_RETURN_IF_ERROR(file_->Truncate(kHeaderSize + blocks_ * 4));
  VMBACKUP_RETURN_IF_ERROR(WriteHeader());
  return file_->Flush();
}

}  // namespace vmbackup::host
