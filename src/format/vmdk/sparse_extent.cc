#include "format/vmdk/sparse_extent.h"

#include <zlib.h>

#include <algorithm>
#include <cstring>

#include "base/checked_math.h"
#include "base/endian.h"
#include "base/strings.h"

namespace vmbackup::vmdk {
namespace {

std::vector<uint32_t> DecodeU32s(const std::vector<uint8_t>& raw, size_t count) {
  std::vector<uint32_t> v(count);
  for (size_t i = 0; i < count; ++i) v[i] = LoadLE32(raw.data() + 4 * i);
  return v;
}

}  // namespace

SparseExtent::SparseExtent(std::shared_ptr<io::BlockWriter> file, const SparseLayout& layout,
                           uint64_t size, bool writable)
    : file_(std::move(file)),
      layout_(layout),
      size_(size),
      grain_bytes_(layout.grain_sectors * kSectorSize),
      gt_bytes_(uint64_t(layout.gtes_per_gt) * 4),
      writable_(writable) {}

Result<std::unique_ptr<SparseExtent>> SparseExtent::Open(std::shared_ptr<io::BlockWriter> file,
                                                         const SparseLayout& layout, uint64_t size,
                                                         bool writable) {
  const std::string name = file->name();
  if (!IsPowerOfTwo(layout.grain_sectors) || layout.grain_sectors > kMaxGrainSectors) {
    return CorruptionError(StrFormat("%s: grainSize %llu sectors is not a power of two up to %llu",
                                     name.c_str(), (unsigned long long)layout.grain_sectors,
                                     (unsigned long long)kMaxGrainSectors));
  }
  if (layout.gtes_per_gt != 512 && layout.gtes_per_gt != 4096) {
    return CorruptionError(StrFormat("%s: numGTEsPerGT %u is not 512 (or 4096 for COWD)",
                                     name.c_str(), layout.gtes_per_gt));
  }
  if (layout.capacity_sectors == 0 || layout.capacity_sectors > kMaxCapacityBytes / kSectorSize) {
    return CorruptionError(StrFormat("%s: capacity %llu sectors is zero or larger than 256 TiB",
                                     name.c_str(), (unsigned long long)layout.capacity_sectors));
  }
  if (size > layout.capacity_sectors * kSectorSize) {
    return CorruptionError(StrFormat(
        "%s: header capacity %llu sectors is smaller than the descriptor's extent of %llu sectors",
        name.c_str(), (unsigned long long)layout.capacity_sectors,
        (unsigned long long)(size / kSectorSize)));
  }
  uint64_t needed = DivRoundUp(layout.capacity_sectors, layout.grain_sectors * layout.gtes_per_gt);
  if (layout.gd_entries < needed) {
    return CorruptionError(StrFormat("%s: grain directory has %llu entries, capacity needs %llu",
                                     name.c_str(), (unsigned long long)layout.gd_entries,
                                     (unsigned long long)needed));
  }
  if (writable && !layout.writable_format) {
    return NotSupportedError(name + ": " + layout.kind + " extents (version " +
                             std::to_string(layout.version) + ") are read-only");
  }
  std::unique_ptr<SparseExtent> e(new SparseExtent(std::move(file), layout, size, writable));
  VMBACKUP_RETURN_IF_ERROR(e->LoadDirectory());
  return e;
}

Status SparseExtent::LoadDirectory() {
  const uint64_t file_size = file_->size();
  auto load_gd = [&](uint64_t sector, const char* what, std::vector<uint32_t>* out) -> Status {
    auto off = CheckedMul(sector, kSectorSize);
    auto bytes = CheckedMul(layout_.gd_entries, 4);
    if (!off || !bytes || !RangeWithin(*off, *bytes, file_size)) {
      return CorruptionError(
          StrFormat("%s: %s at sector %llu with %llu entries lies past the end "
                    "of the file (%llu bytes)",
                    Where().c_str(), what, (unsigned long long)sector,
                    (unsigned long long)layout_.gd_entries, (unsigned long long)file_size));
    }
    std::vector<uint8_t> raw(*bytes);
    VMBACKUP_RETURN_IF_ERROR(file_->ReadAt(*off, raw));
    *out = DecodeU32s(raw, layout_.gd_entries);
    return Status::Ok();
  };
  if (layout_.gd_sector < layout_.header_sectors) {
    return CorruptionError(StrFormat("%s: grain directory at sector %llu overlaps the header",
                                     Where().c_str(), (unsigned long long)layout_.gd_sector));
  }
  VMBACKUP_RETURN_IF_ERROR(load_gd(layout_.gd_sector, "grain directory", &gd_));
  if (writable_ && layout_.rgd_sector != 0) {
    VMBACKUP_RETURN_IF_ERROR(load_gd(layout_.rgd_sector, "redundant grain directory", &rgd_));
  }

  // Every grain table must lie inside the file, after the metadata that precedes it, and
  // must not overlap the grain directory or another grain table.
  const uint64_t gt_sectors = DivRoundUp(gt_bytes_, kSectorSize);
  const uint64_t gd_sectors = DivRoundUp(layout_.gd_entries * 4, kSectorSize);
  std::vector<std::pair<uint64_t, uint64_t>> ranges;  // [start, end) sectors, gd index
  ranges.reserve(gd_.size() + 1);
  for (size_t i = 0; i < gd_.size(); ++i) {
    uint64_t s = gd_[i];
    if (s == 0) continue;
    if (!RangeWithin(s * kSectorSize, gt_bytes_, file_size)) {
      return CorruptionError(
          StrFormat("%s: grain directory entry %zu points at sector %llu, "
                    "past the end of the file (%llu bytes)",
                    Where().c_str(), i, (unsigned long long)s, (unsigned long long)file_size));
    }
    if (s < layout_.header_sectors) {
      return CorruptionError(StrFormat("%s: grain table %zu at sector %llu overlaps the header",
                                       Where().c_str(), i, (unsigned long long)s));
    }
    ranges.emplace_back(s, i);
  }
  std::sort(ranges.begin(), ranges.end());
  for (size_t k = 0; k < ranges.size(); ++k) {
    uint64_t s = ranges[k].first;
    if (k + 1 < ranges.size() && s + gt_sectors > ranges[k + 1].first) {
      return CorruptionError(StrFormat(
          "%s: grain tables %llu and %llu overlap (sectors %llu and %llu)", Where().c_str(),
          (unsigned long long)ranges[k].second, (unsigned long long)ranges[k + 1].second,
          (unsigned long long)s, (unsigned long long)ranges[k + 1].first));
    }
    if (s < layout_.gd_sector + gd_sectors && layout_.gd_sector < s + gt_sectors) {
      return CorruptionError(
          StrFormat("%s: grain table %llu at sector %llu overlaps the grain "
                    "directory",
                    Where().c_str(), (unsigned long long)ranges[k].second, (unsigned long long)s));
    }
  }
  return Status::Ok();
}

Result<std::vector<uint32_t>*> SparseExtent::Table(uint64_t gd_index, bool for_write) {
  auto it = tables_.find(gd_index);
  if (it != tables_.end()) return &it->second;
  auto known = table_empty_.find(gd_index);
  if (known == table_empty_.end() || !known->second || for_write) {
    std::vector<uint8_t> raw(gt_bytes_);
    VMBACKUP_RETURN_IF_ERROR(
        file_->ReadAt(uint64_t(gd_[gd_index]) * kSectorSize, raw)
            .WithContext(StrFormat("grain table %llu", (unsigned long long)gd_index)));
    bool empty = IsAllZero(raw.data(), raw.size());
    table_empty_[gd_index] = empty;
    if (!empty || for_write) {
      return &tables_.emplace(gd_index, DecodeU32s(raw, layout_.gtes_per_gt)).first->second;
    }
  }
  return nullptr;
}

Result<SparseExtent::Lookup> SparseExtent::LookupGrain(uint64_t grain) {
  uint64_t gdi = grain / layout_.gtes_per_gt;
  if (gdi >= gd_.size() || gd_[gdi] == 0) return Lookup{BlockState::kUnallocated, 0};
  VMBACKUP_ASSIGN_OR_RETURN(std::vector<uint32_t> * table, Table(gdi));
  if (!table) return Lookup{BlockState::kUnallocated, 0};
  uint32_t e = (*table)[grain % layout_.gtes_per_gt];
  if (e == 0) return Lookup{BlockState::kUnallocated, 0};
  if (e == 1 && layout_.zeroed_grain_entries) return Lookup{BlockState::kZero, 0};
  uint64_t grain_start = grain * grain_bytes_;
  uint64_t need = layout_.compressed ? (layout_.markers ? 12 : 1)
                                     : std::min(grain_bytes_, size_ - std::min(size_, grain_start));
  if (e < layout_.first_grain_sector) {
    return CorruptionError(StrFormat(
        "%s: grain table %llu entry %llu points at sector %u, inside "
        "the metadata (grains start at sector %llu)",
        Where().c_str(), (unsigned long long)gdi, (unsigned long long)(grain % layout_.gtes_per_gt),
        e, (unsigned long long)layout_.first_grain_sector));
  }
  if (!RangeWithin(uint64_t(e) * kSectorSize, need, file_->size())) {
    return CorruptionError(StrFormat(
        "%s: grain table %llu entry %llu points at sector %u, past the "
        "end of the file (%llu bytes)",
        Where().c_str(), (unsigned long long)gdi, (unsigned long long)(grain % layout_.gtes_per_gt),
        e, (unsigned long long)file_->size()));
  }
  return Lookup{BlockState::kData, e};
}

Status SparseExtent::Map(uint64_t offset, uint64_t length, std::vector<BlockRun>* runs) {
  const uint64_t end = offset + length;
  const uint64_t table_span = grain_bytes_ * layout_.gtes_per_gt;
  uint64_t pos = offset;
  while (pos < end) {
    uint64_t grain = pos / grain_bytes_;
    uint64_t gdi = grain / layout_.gtes_per_gt;
    bool absent = gdi >= gd_.size() || gd_[gdi] == 0;
    if (!absent) {
      VMBACKUP_ASSIGN_OR_RETURN(std::vector<uint32_t> * table, Table(gdi));
      absent = table == nullptr;
    }
    if (absent) {  // a whole table's span is unallocated
      uint64_t next = std::min(end, (gdi + 1) * table_span);
      AppendRun(runs, pos, next - pos, BlockState::kUnallocated);
      pos = next;
      continue;
    }
    VMBACKUP_ASSIGN_OR_RETURN(Lookup l, LookupGrain(grain));
    uint64_t next = std::min(end, (grain + 1) * grain_bytes_);
    AppendRun(runs, pos, next - pos, l.state);
    pos = next;
  }
  return Status::Ok();
}

Status SparseExtent::ReadCompressedGrain(uint64_t grain, uint64_t sector) {
  if (cached_grain_ == grain) return Status::Ok();
  cached_grain_ = UINT64_MAX;
  const uint64_t file_off = sector * kSectorSize;
  const uint64_t grain_start = grain * grain_bytes_;
  const uint64_t expect = std::min(grain_bytes_, size_ - grain_start);
  // A grain compresses to at most a little more than its size; bound what we read by that.
  const uint64_t max_compressed = grain_bytes_ + grain_bytes_ / 8 + 1024;
  uint64_t data_off = file_off, data_len;
  if (layout_.markers) {
    uint8_t hdr[12];
    VMBACKUP_RETURN_IF_ERROR(file_->ReadAt(file_off, hdr));
    uint64_t lba = LoadLE64(hdr);
    data_len = LoadLE32(hdr + 8);
    if (lba != grain * layout_.grain_sectors) {
      return CorruptionError(
          StrFormat("%s: grain marker at sector %llu says LBA %llu, the grain "
                    "table says %llu",
                    Where().c_str(), (unsigned long long)sector, (unsigned long long)lba,
                    (unsigned long long)(grain * layout_.grain_sectors)));
    }
    if (data_len == 0 || data_len > max_compressed ||
        !RangeWithin(file_off + 12, data_len, file_->size())) {
      return CorruptionError(
          StrFormat("%s: grain marker at sector %llu has a bad compressed size %llu",
                    Where().c_str(), (unsigned long long)sector, (unsigned long long)data_len));
    }
    data_off = file_off + 12;
  } else {
    data_len = std::min(max_compressed, file_->size() - file_off);
  }
  compressed_buf_.resize(data_len);
  VMBACKUP_RETURN_IF_ERROR(file_->ReadAt(data_off, compressed_buf_));
  grain_buf_.assign(grain_bytes_, 0);
  uLongf out_len = uLongf(grain_bytes_);
  uLong in_len = uLong(data_len);
  int rc = uncompress2(grain_buf_.data(), &out_len, compressed_buf_.data(), &in_len);
  if (rc != Z_OK || out_len < expect) {
    return CorruptionError(
        StrFormat("%s: compressed grain at sector %llu does not inflate to %llu "
                  "bytes (zlib: %s, got %llu)",
                  Where().c_str(), (unsigned long long)sector, (unsigned long long)expect,
                  zError(rc), (unsigned long long)out_len));
  }
  cached_grain_ = grain;
  return Status::Ok();
}

Status SparseExtent::Read(uint64_t offset, std::span<uint8_t> buf) {
  const uint64_t end = offset + buf.size();
  uint8_t* out = buf.data();
  // Coalesce grains that are contiguous in the file into one read.
  uint64_t pend_file = 0, pend_len = 0;
  uint8_t* pend_out = nullptr;
  auto flush = [&]() -> Status {
    if (pend_len == 0) return Status::Ok();
    Status s = file_->ReadAt(pend_file, {pend_out, pend_len});
    pend_len = 0;
    return s;
  };
  uint64_t pos = offset;
  while (pos < end) {
    uint64_t grain = pos / grain_bytes_;
    uint64_t in = pos % grain_bytes_;
    uint64_t n = std::min(grain_bytes_ - in, end - pos);
    uint8_t* dst = out + (pos - offset);
    VMBACKUP_ASSIGN_OR_RETURN(Lookup l, LookupGrain(grain));
    if (l.state != BlockState::kData) {
      VMBACKUP_RETURN_IF_ERROR(flush());
      std::memset(dst, 0, n);
    } else if (layout_.compressed) {
      VMBACKUP_RETURN_IF_ERROR(flush());
      VMBACKUP_RETURN_IF_ERROR(ReadCompressedGrain(grain, l.sector));
      std::memcpy(dst, grain_buf_.data() + in, n);
    } else {
      uint64_t foff = l.sector * kSectorSize + in;
      if (pend_len != 0 && pend_file + pend_len == foff) {
        pend_len += n;
      } else {
        VMBACKUP_RETURN_IF_ERROR(flush());
        pend_file = foff;
        pend_len = n;
        pend_out = dst;
      }
    }
    pos += n;
  }
  return flush();
}

Result<uint64_t> SparseExtent::AllocateTable(uint64_t gd_index) {
  // A GD entry of 0: put a zeroed table (and its redundant copy) at the end of the file.
  auto place = [&]() -> Result<uint64_t> {
    uint64_t sector = DivRoundUp(file_->size(), kSectorSize);
    std::vector<uint8_t> zeros(DivRoundUp(gt_bytes_, kSectorSize) * kSectorSize, 0);
    VMBACKUP_RETURN_IF_ERROR(file_->WriteAt(sector * kSectorSize, zeros));
    return sector;
  };
  VMBACKUP_ASSIGN_OR_RETURN(uint64_t sector, place());
  if (sector > UINT32_MAX) return NotSupportedError(Where() + ": sparse file larger than 2 TiB");
  if (!rgd_.empty()) {
    VMBACKUP_ASSIGN_OR_RETURN(uint64_t rsector, place());
    if (rsector > UINT32_MAX) return NotSupportedError(Where() + ": sparse file larger than 2 TiB");
    rgd_[gd_index] = uint32_t(rsector);
    uint8_t le[4];
    StoreLE32(le, uint32_t(rsector));
    VMBACKUP_RETURN_IF_ERROR(file_->WriteAt(layout_.rgd_sector * kSectorSize + gd_index * 4, le));
  }
  gd_[gd_index] = uint32_t(sector);
  uint8_t le[4];
  StoreLE32(le, uint32_t(sector));
  VMBACKUP_RETURN_IF_ERROR(file_->WriteAt(layout_.gd_sector * kSectorSize + gd_index * 4, le));
  tables_[gd_index] = std::vector<uint32_t>(layout_.gtes_per_gt, 0);
  table_empty_[gd_index] = true;
  return sector;
}

Status SparseExtent::WriteTable(uint64_t gd_index) {
  const std::vector<uint32_t>& t = tables_.at(gd_index);
  std::vector<uint8_t> raw(gt_bytes_);
  for (size_t i = 0; i < t.size(); ++i) StoreLE32(raw.data() + 4 * i, t[i]);
  VMBACKUP_RETURN_IF_ERROR(file_->WriteAt(uint64_t(gd_[gd_index]) * kSectorSize, raw));
  if (!rgd_.empty() && rgd_[gd_index] != 0) {
    VMBACKUP_RETURN_IF_ERROR(file_->WriteAt(uint64_t(rgd_[gd_index]) * kSectorSize, raw));
  }
  return Status::Ok();
}

Status SparseExtent::Write(uint64_t offset, std::span<const uint8_t> data) {
  if (!writable_) return PermissionDeniedError(Where() + ": extent is read-only");
  const uint64_t end = offset + data.size();
  std::vector<uint64_t> dirty_tables;
  // New grains go at the end of the file, grain-aligned; consecutive new grains are written
  // with one call.
  uint64_t pend_file = 0, pend_len = 0;
  const uint8_t* pend_src = nullptr;
  auto flush = [&]() -> Status {
    if (pend_len == 0) return Status::Ok();
    Status s = file_->WriteAt(pend_file, {pend_src, pend_len});
    pend_len = 0;
    return s;
  };
  uint64_t next_free = 0;  // sector of the next new grain; 0 = not computed yet
  uint64_t pos = offset;
  while (pos < end) {
    uint64_t grain = pos / grain_bytes_;
    uint64_t in = pos % grain_bytes_;
    uint64_t n = std::min(grain_bytes_ - in, end - pos);
    const uint8_t* src = data.data() + (pos - offset);
    VMBACKUP_ASSIGN_OR_RETURN(Lookup l, LookupGrain(grain));
    if (l.state == BlockState::kData) {
      VMBACKUP_RETURN_IF_ERROR(flush());
      VMBACKUP_RETURN_IF_ERROR(file_->WriteAt(l.sector * kSectorSize + in, {src, n}));
      pos += n;
      continue;
    }
    uint64_t grain_end = std::min((grain + 1) * grain_bytes_, size_);
    if (in != 0 || pos + n != grain_end) {
      return InternalError(StrFormat("%s: partial write to unallocated grain %llu", Where().c_str(),
                                     (unsigned long long)grain));
    }
    uint64_t gdi = grain / layout_.gtes_per_gt;
    if (layout_.zeroed_grain_entries && IsAllZero(src, n)) {
      // A whole grain of zeros costs no data: entry 1 reads as zeros and hides the parent.
      if (l.state != BlockState::kZero) {
        if (gd_[gdi] == 0) {
          VMBACKUP_RETURN_IF_ERROR(flush());
          VMBACKUP_RETURN_IF_ERROR(AllocateTable(gdi).status());
          next_free = 0;
        }
        VMBACKUP_ASSIGN_OR_RETURN(std::vector<uint32_t> * zt, Table(gdi, /*for_write=*/true));
        (*zt)[grain % layout_.gtes_per_gt] = 1;
        table_empty_[gdi] = false;
        if (dirty_tables.empty() || dirty_tables.back() != gdi) dirty_tables.push_back(gdi);
      }
      pos += n;
      continue;
    }
    if (gd_[gdi] == 0) {
      VMBACKUP_RETURN_IF_ERROR(flush());
      VMBACKUP_RETURN_IF_ERROR(AllocateTable(gdi).status());
      next_free = 0;
    }
    if (next_free == 0) {
      uint64_t file_end = std::max(file_->size(), pend_file + pend_len);
      next_free = DivRoundUp(file_end, grain_bytes_) * layout_.grain_sectors;
    }
    if (next_free > UINT32_MAX) {
      return NotSupportedError(Where() + ": sparse file would grow past 2 TiB");
    }
    VMBACKUP_ASSIGN_OR_RETURN(std::vector<uint32_t> * table, Table(gdi, /*for_write=*/true));
    (*table)[grain % layout_.gtes_per_gt] = uint32_t(next_free);
    table_empty_[gdi] = false;
    if (dirty_tables.empty() || dirty_tables.back() != gdi) dirty_tables.push_back(gdi);
    uint64_t foff = next_free * kSectorSize;
    if (pend_len != 0 && pend_file + pend_len == foff && pend_src + pend_len == src) {
      pend_len += n;
    } else {
      VMBACKUP_RETURN_IF_ERROR(flush());
      pend_file = foff;
      pend_len = n;
      pend_src = src;
    }
    // Whole grains keep the file grain-aligned; a short last grain is padded on disk.
    if (n < grain_bytes_) {
      VMBACKUP_RETURN_IF_ERROR(flush());
      std::vector<uint8_t> pad(grain_bytes_ - n, 0);
      VMBACKUP_RETURN_IF_ERROR(file_->WriteAt(foff + n, pad));
    }
    next_free += layout_.grain_sectors;
    pos += n;
  }
  VMBACKUP_RETURN_IF_ERROR(flush());
  // Data first, then the tables that point at it.
  for (uint64_t gdi : dirty_tables) VMBACKUP_RETURN_IF_ERROR(WriteTable(gdi));
  return Status::Ok();
}

}  // namespace vmbackup::vmdk
