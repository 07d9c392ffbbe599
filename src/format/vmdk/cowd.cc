#include "format/vmdk/cowd.h"

#include "base/checked_math.h"
#include "base/endian.h"
#include "base/strings.h"
#include "format/vmdk/sparse_header.h"

namespace vmbackup::vmdk {

Result<SparseLayout> ReadCowdLayout(io::BlockReader& file) {
  const std::string name = file.name();
  constexpr uint64_t kHeaderBytes = 2048;
  if (file.size() < kHeaderBytes) {
    return CorruptionError(name + ": too short for a COWD header (2048 bytes)");
  }
  uint8_t h[64];
  VMBACKUP_RETURN_IF_ERROR(file.ReadAt(0, h));
  if (LoadLE32(h) != kCowdMagic) return CorruptionError(name + ": no COWD magic");
  uint32_t version = LoadLE32(h + 4);
  if (version != 1) {
    return NotSupportedError(StrFormat("%s: COWD version %u (expected 1)", name.c_str(), version));
  }
  SparseLayout l;
  l.kind = "cowd";
  l.version = version;
  l.capacity_sectors = LoadLE32(h + 12);
  l.grain_sectors = LoadLE32(h + 16);
  l.gd_sector = LoadLE32(h + 20);
  l.gd_entries = LoadLE32(h + 24);
  l.gtes_per_gt = 4096;
  l.rgd_sector = 0;
  l.writable_format = false;
  l.header_sectors = kHeaderBytes / kSectorSize;
  if (l.capacity_sectors == 0) return CorruptionError(name + ": COWD numSectors is zero");
  if (!IsPowerOfTwo(l.grain_sectors) || l.grain_sectors > kMaxGrainSectors) {
    return CorruptionError(StrFormat("%s: COWD grainSize %llu is not a power of two", name.c_str(),
                                     (unsigned long long)l.grain_sectors));
  }
  if (l.gd_sector < kHeaderBytes / kSectorSize) {
    return CorruptionError(StrFormat("%s: COWD gdOffset %llu lies inside the header", name.c_str(),
                                     (unsigned long long)l.gd_sector));
  }
  // Grains come after the grain directory (grain tables are interleaved with them).
  l.first_grain_sector = l.gd_sector + DivRoundUp(l.gd_entries * 4, kSectorSize);
  return l;
}

}  // namespace vmbackup::vmdk
