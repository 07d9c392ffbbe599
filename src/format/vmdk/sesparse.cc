#include "format/vmdk/sesparse.h"

#include <cstring>

#include "base/checked_math.h"
#include "base/endian.h"
#include "base/strings.h"
#include "format/vmdk/descriptor.h"
#include "format/vmdk/sparse_header.h"

namespace vmbackup::vmdk {
namespace {

constexpr uint64_t kVersion = 0x0000000200000001ull;
constexpr uint64_t kVolatileMagic = 0xCAFECAFE;
constexpr uint64_t kGrainSectors = 8;
constexpr uint64_t kGtSectors = 64;  // 4096 entries of 8 bytes
constexpr uint64_t kGtEntries = kGtSectors * kSectorSize / 8;

}  // namespace

Result<std::unique_ptr<SeSparseExtent>> SeSparseExtent::Open(std::shared_ptr<io::BlockWriter> file,
                                                             uint64_t size) {
  const std::string name = file->name();
  const uint64_t file_size = file->size();
  if (file_size < kSectorSize) return CorruptionError(name + ": too short for an SEsparse header");
  uint8_t h[512];
  VMBACKUP_RETURN_IF_ERROR(file->ReadAt(0, h));
  uint64_t f[26];
  for (int i = 0; i < 26; ++i) f[i] = LoadLE64(h + 8 * i);
  if (f[0] != kSeSparseMagic) return CorruptionError(name + ": no SEsparse magic");
  if (f[1] != kVersion) {
    return NotSupportedError(
        StrFormat("%s: SEsparse version %016llx (only 0000000200000001 is known)", name.c_str(),
                  (unsigned long long)f[1]));
  }
  if (f[3] != kGrainSectors || f[4] != kGtSectors) {
    return NotSupportedError(
        StrFormat("%s: SEsparse grain size %llu / table size %llu sectors "
                  "(expected 8 / 64)",
                  name.c_str(), (unsigned long long)f[3], (unsigned long long)f[4]));
  }
  std::unique_ptr<SeSparseExtent> e(new SeSparseExtent(std::move(file), size));
  e->capacity_sectors_ = f[2];
  if (e->capacity_sectors_ == 0 || e->capacity_sectors_ > kMaxCapacityBytes / kSectorSize ||
      size > e->capacity_sectors_ * kSectorSize) {
    return CorruptionError(
        StrFormat("%s: SEsparse capacity %llu sectors is zero, absurd, or smaller "
                  "than the descriptor's extent",
                  name.c_str(), (unsigned long long)f[2]));
  }
  // Every (offset, size) pair, in sectors, must lie inside the file.
  const char* names[] = {"volatile header", "journal header", "journal", "grain directory",
                         "grain tables",    "free bitmap",    "backmap", "grains"};
  for (int k = 0; k < 8; ++k) {
    uint64_t off = f[10 + 2 * k], len = f[11 + 2 * k];
    if (off > file_size / kSectorSize || len > file_size / kSectorSize ||
        (off + len) * kSectorSize > file_size) {
      // The grains area may be declared larger than the data written so far.
      if (k == 7 && off <= file_size / kSectorSize) continue;
      return CorruptionError(
          StrFormat("%s: SEsparse %s (sector %llu, %llu sectors) lies past the "
                    "end of the file (%llu bytes)",
                    name.c_str(), names[k], (unsigned long long)off, (unsigned long long)len,
                    (unsigned long long)file_size));
    }
  }
  uint8_t vol[32];
  VMBACKUP_RETURN_IF_ERROR(e->file_->ReadAt(f[10] * kSectorSize, vol));
  if (LoadLE64(vol) != kVolatileMagic)
    return CorruptionError(name + ": bad SEsparse volatile header magic");
  if (LoadLE64(vol + 24) != 0) {
    return NotSupportedError(name +
                             ": SEsparse journal needs replay (unclean shutdown); open it "
                             "on ESXi first");
  }
  e->gt_offset_ = f[18];
  e->gt_size_ = f[19];
  e->grains_offset_ = f[24];
  e->grains_size_ = f[25];
  uint64_t gd_entries = f[17] * kSectorSize / 8;
  uint64_t needed = DivRoundUp(e->capacity_sectors_, kGrainSectors * kGtEntries);
  if (gd_entries < needed) {
    return CorruptionError(
        StrFormat("%s: SEsparse grain directory has %llu entries, capacity needs %llu",
                  name.c_str(), (unsigned long long)gd_entries, (unsigned long long)needed));
  }
  std::vector<uint8_t> raw(needed * 8);
  VMBACKUP_RETURN_IF_ERROR(e->file_->ReadAt(f[16] * kSectorSize, raw));
  e->gd_.resize(needed);
  for (uint64_t i = 0; i < needed; ++i) {
    uint64_t v = LoadLE64(raw.data() + 8 * i);
    if (v != 0) {
      if ((v >> 32) != 0x10000000) {
        return CorruptionError(StrFormat("%s: SEsparse grain directory entry %llu is %016llx",
                                         name.c_str(), (unsigned long long)i,
                                         (unsigned long long)v));
      }
      uint64_t idx = v & 0xffffffff;
      if ((idx + 1) * kGtSectors > e->gt_size_) {
        return CorruptionError(
            StrFormat("%s: SEsparse grain directory entry %llu names table %llu, "
                      "outside the grain tables area",
                      name.c_str(), (unsigned long long)i, (unsigned long long)idx));
      }
    }
    e->gd_[i] = v;
  }
  return e;
}

Result<SeSparseExtent::Lookup> SeSparseExtent::LookupGrain(uint64_t grain) {
  uint64_t gdi = grain / kGtEntries;
  if (gdi >= gd_.size() || gd_[gdi] == 0) return Lookup{BlockState::kUnallocated, 0};
  auto it = tables_.find(gdi);
  if (it == tables_.end()) {
    std::vector<uint8_t> raw(kGtSectors * kSectorSize);
    uint64_t idx = gd_[gdi] & 0xffffffff;
    VMBACKUP_RETURN_IF_ERROR(file_->ReadAt((gt_offset_ + idx * kGtSectors) * kSectorSize, raw));
    std::vector<uint64_t> t(kGtEntries);
    for (uint64_t i = 0; i < kGtEntries; ++i) t[i] = LoadLE64(raw.data() + 8 * i);
    it = tables_.emplace(gdi, std::move(t)).first;
  }
  uint64_t e = it->second[grain % kGtEntries];
  switch (e >> 60) {
    case 0x0:
      if (e != 0) break;
      return Lookup{BlockState::kUnallocated, 0};
    case 0x1:  // unmapped by the guest: reads zeros
    case 0x2:  // zero grain
      return Lookup{BlockState::kZero, 0};
    case 0x3: {
      uint64_t idx = ((e >> 48) & 0xfff) | ((e & 0x0000ffffffffffffull) << 12);
      auto sector = CheckedAdd(grains_offset_, idx * kGrainSectors);
      if (idx > (uint64_t(1) << 48) || !sector ||
          !RangeWithin(*sector * kSectorSize, kGrainBytes, file_->size())) {
        return CorruptionError(
            StrFormat("%s: SEsparse grain %llu points at grain index %llu, past the "
                      "end of the file",
                      file_->name().c_str(), (unsigned long long)grain, (unsigned long long)idx));
      }
      return Lookup{BlockState::kData, *sector * kSectorSize};
    }
    default: break;
  }
  return CorruptionError(
      StrFormat("%s: SEsparse grain table entry %016llx for grain %llu is invalid",
                file_->name().c_str(), (unsigned long long)e, (unsigned long long)grain));
}

Status SeSparseExtent::Map(uint64_t offset, uint64_t length, std::vector<BlockRun>* runs) {
  uint64_t end = offset + length, pos = offset;
  while (pos < end) {
    uint64_t grain = pos / kGrainBytes;
    uint64_t gdi = grain / kGtEntries;
    if (gdi >= gd_.size() || gd_[gdi] == 0) {
      uint64_t next = std::min(end, (gdi + 1) * kGtEntries * kGrainBytes);
      AppendRun(runs, pos, next - pos, BlockState::kUnallocated);
      pos = next;
      continue;
    }
    VMBACKUP_ASSIGN_OR_RETURN(Lookup l, LookupGrain(grain));
    uint64_t next = std::min(end, (grain + 1) * kGrainBytes);
    AppendRun(runs, pos, next - pos, l.state);
    pos = next;
  }
  return Status::Ok();
}

Status SeSparseExtent::Read(uint64_t offset, std::span<uint8_t> buf) {
  uint64_t end = offset + buf.size(), pos = offset;
  while (pos < end) {
    uint64_t grain = pos / kGrainBytes, in = pos % kGrainBytes;
    uint64_t n = std::min(kGrainBytes - in, end - pos);
    uint8_t* dst = buf.data() + (pos - offset);
    VMBACKUP_ASSIGN_OR_RETURN(Lookup l, LookupGrain(grain));
    if (l.state == BlockState::kData) {
      VMBACKUP_RETURN_IF_ERROR(file_->ReadAt(l.file_offset + in, {dst, n}));
    } else {
      std::memset(dst, 0, n);
    }
    pos += n;
  }
  return Status::Ok();
}

}  // namespace vmbackup::vmdk
