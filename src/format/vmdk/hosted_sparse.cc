#include "format/vmdk/hosted_sparse.h"

#include <algorithm>

#include "base/checked_math.h"
#include "base/endian.h"
#include "base/strings.h"

namespace vmbackup::vmdk {

Result<SparseLayout> ReadHostedSparseLayout(io::BlockReader& file, SparseHeader* header_out) {
  const std::string name = file.name();
  if (file.size() < kSectorSize) {
    return CorruptionError(StrFormat("%s: %llu bytes, too short for a sparse header", name.c_str(),
                                     (unsigned long long)file.size()));
  }
  uint8_t raw[512];
  VMBACKUP_RETURN_IF_ERROR(file.ReadAt(0, raw));
  SparseHeader h = DecodeSparseHeader(raw);
  if (header_out) *header_out = h;
  if (h.magic != kSparseMagic) return CorruptionError(name + ": no KDMV magic in the header");
  if (h.version < 1 || h.version > 3) {
    return NotSupportedError(
        StrFormat("%s: sparse header version %u (expected 1, 2 or 3)", name.c_str(), h.version));
  }
  if ((h.flags & kFlagNewlineCheck) && !h.newline_check_ok) {
    return CorruptionError(name +
                           ": newline-check bytes of the header are damaged (was the file "
                           "copied in text mode?)");
  }
  if (h.gd_offset == kGdAtEnd) {
    // streamOptimized written by VMware: the footer (a copy of the header with the real GD
    // offset) sits in the second-to-last sector, behind a footer marker.
    if (file.size() < 3 * kSectorSize) {
      return CorruptionError(name +
                             ": gdOffset is GD_AT_END but the file is too short for a footer");
    }
    uint8_t marker[512];
    VMBACKUP_RETURN_IF_ERROR(file.ReadAt(file.size() - 3 * kSectorSize, marker));
    if (LoadLE32(marker + 8) != 0 || LoadLE32(marker + 12) != kMarkerFooter) {
      return CorruptionError(name +
                             ": gdOffset is GD_AT_END but there is no footer marker 1536 "
                             "bytes before the end (truncated stream?)");
    }
    VMBACKUP_RETURN_IF_ERROR(file.ReadAt(file.size() - 2 * kSectorSize, raw));
    SparseHeader f = DecodeSparseHeader(raw);
    if (f.magic != kSparseMagic || f.gd_offset == kGdAtEnd) {
      return CorruptionError(name + ": stream footer is not a valid header");
    }
    if (f.capacity != h.capacity || f.grain_size != h.grain_size) {
      return CorruptionError(name +
                             ": stream footer disagrees with the header on capacity or "
                             "grain size");
    }
    h.gd_offset = f.gd_offset;
    h.rgd_offset = f.rgd_offset;
  }
  if (h.num_gtes_per_gt != kGtesPerGt) {
    return CorruptionError(
        StrFormat("%s: numGTEsPerGT is %u, expected 512", name.c_str(), h.num_gtes_per_gt));
  }
  const bool compressed = (h.flags & kFlagCompressed) != 0;
  if (compressed && h.compress_algorithm != kCompressionDeflate) {
    return NotSupportedError(StrFormat("%s: compressAlgorithm %u (only 1, deflate, exists)",
                                       name.c_str(), h.compress_algorithm));
  }
  if (h.capacity == 0 || h.capacity > kMaxCapacityBytes / kSectorSize) {
    return CorruptionError(StrFormat("%s: capacity %llu sectors is zero or larger than 256 TiB",
                                     name.c_str(), (unsigned long long)h.capacity));
  }
  // Bounded before any arithmetic: grainSize * 512 entries must not overflow.
  if (!IsPowerOfTwo(h.grain_size) || h.grain_size > kMaxGrainSectors) {
    return CorruptionError(StrFormat("%s: grainSize %llu is not a power of two up to %llu sectors",
                                     name.c_str(), (unsigned long long)h.grain_size,
                                     (unsigned long long)kMaxGrainSectors));
  }
  SparseLayout l;
  l.kind = compressed ? "stream" : "hosted-sparse";
  l.version = h.version;
  l.capacity_sectors = h.capacity;
  l.grain_sectors = h.grain_size;
  l.gtes_per_gt = h.num_gtes_per_gt;
  l.gd_sector = h.gd_offset;
  l.rgd_sector = (h.flags & kFlagRedundantGd) ? h.rgd_offset : 0;
  l.gd_entries = DivRoundUp(h.capacity, h.grain_size * kGtesPerGt);
  l.header_sectors = 1;
  if (h.descriptor_offset != 0 && h.descriptor_offset < (uint64_t(1) << 32) &&
      h.descriptor_size < (uint64_t(1) << 32)) {
    l.header_sectors = std::max<uint64_t>(1, h.descriptor_offset + h.descriptor_size);
  }
  // Grains live at or after overHead. A stream is read through its markers and tables, and
  // writers disagree on overHead there (Xen Orchestra's 2022 writer says 7 and puts the first
  // grain at sector 2, which qemu-img reads): only the header and the embedded descriptor are
  // off limits.
  l.first_grain_sector = compressed ? l.header_sectors : h.over_head;
  l.zeroed_grain_entries = (h.flags & kFlagZeroedGrainGte) != 0;
  l.compressed = compressed;
  l.markers = (h.flags & kFlagMarkers) != 0;
  // Version 3 without compression is the CBT-era layout; like QEMU we only read it.
  l.writable_format = !compressed && h.version <= 2;
  return l;
}

}  // namespace vmbackup::vmdk
