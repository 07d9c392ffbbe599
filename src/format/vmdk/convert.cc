#include "format/vmdk/convert.h"

#include <zlib.h>

#include <cstring>
#include <vector>

#include "base/checked_math.h"
#include "base/endian.h"
#include "base/strings.h"
#include "format/vmdk/disk.h"
#include "format/vmdk/sparse_header.h"
#include "io/posix_file.h"

namespace vmbackup::vmdk {
namespace {

constexpr uint64_t kBlock = 64 * 1024;        // zero-detection unit
constexpr uint64_t kChunk = 4 * 1024 * 1024;  // read size

// Calls `fn(offset, span)` for every allocated, non-zero run of `src`, reading in chunks of
// kChunk and splitting at kBlock-sized zero blocks.
template <class F>
Result<ConvertStats> ForEachDataRun(io::BlockReader& src, F&& fn) {
  ConvertStats stats;
  VMBACKUP_ASSIGN_OR_RETURN(ExtentSet allocated, src.AllocatedExtents(0, src.size()));
  allocated = allocated.AlignOutward(kBlock, src.size());
  std::vector<uint8_t> buf(kChunk);
  for (const Extent& e : allocated) {
    for (uint64_t pos = e.offset; pos < e.end();) {
      uint64_t n = std::min(kChunk - pos % kChunk, e.end() - pos);
      std::span<uint8_t> chunk(buf.data(), n);
      VMBACKUP_RETURN_IF_ERROR(src.ReadAt(pos, chunk).WithContext("read source"));
      stats.bytes_scanned += n;
      uint64_t run_start = 0, run_len = 0;
      for (uint64_t b = 0; b < n; b += kBlock) {
        uint64_t len = std::min(kBlock - (pos + b) % kBlock, n - b);
        if (IsAllZero(chunk.data() + b, len)) {
          if (run_len)
            VMBACKUP_RETURN_IF_ERROR(fn(pos + run_start, chunk.subspan(run_start, run_len)));
          stats.bytes_written += run_len;
          run_len = 0;
          continue;
        }
        if (run_len == 0) run_start = b;
        run_len += len;
      }
      if (run_len) VMBACKUP_RETURN_IF_ERROR(fn(pos + run_start, chunk.subspan(run_start, run_len)));
      stats.bytes_written += run_len;
      pos += n;
    }
  }
  return stats;
}

// Appends to a file sequentially through a buffer.
class SequentialWriter {
 public:
  explicit SequentialWriter(io::PosixFile* f) : file_(f) {}
  uint64_t position() const { return flushed_ + buf_.size(); }
  uint64_t sector() const { return position() / kSectorSize; }
  Status Append(const uint8_t* p, size_t n) {
    buf_.insert(buf_.end(), p, p + n);
    return buf_.size() >= kChunk ? Flush() : Status::Ok();
  }
  Status PadToSector() {
    size_t pad = size_t((kSectorSize - position() % kSectorSize) % kSectorSize);
    buf_.insert(buf_.end(), pad, 0);
    return Status::Ok();
  }
  Status Flush() {
    VMBACKUP_RETURN_IF_ERROR(file_->WriteAt(flushed_, buf_));
    flushed_ += buf_.size();
    buf_.clear();
    return Status::Ok();
  }

 private:
  io::PosixFile* file_;
  uint64_t flushed_ = 0;
  std::vector<uint8_t> buf_;
};

}  // namespace

Result<ConvertStats> ConvertDisk(io::BlockReader& src, const std::string& out_path, DiskType type) {
  if (type == DiskType::kStream) return WriteStreamOptimized(src, out_path);
  CreateOptions o;
  o.type = type;
  o.capacity = src.size();
  VMBACKUP_RETURN_IF_ERROR(CreateDisk(out_path, o));
  DiskOptions d;
  d.writable = true;
  VMBACKUP_ASSIGN_OR_RETURN(auto out, Disk::Open(out_path, d));
  auto stats = ForEachDataRun(
      src, [&](uint64_t off, std::span<const uint8_t> data) { return out->WriteAt(off, data); });
  if (!stats) return stats;
  VMBACKUP_RETURN_IF_ERROR(out->Flush());
  return stats;
}

Result<ConvertStats> WriteStreamOptimized(io::BlockReader& src, const std::string& out_path) {
  const uint64_t grain_sectors = 128;
  const uint64_t grain_bytes = grain_sectors * kSectorSize;
  const uint64_t capacity_sectors = DivRoundUp(src.size(), kSectorSize);
  if (capacity_sectors == 0) return InvalidArgumentError("source is empty");
  const uint64_t gd_entries = DivRoundUp(capacity_sectors, grain_sectors * kGtesPerGt);

  Descriptor d = NewDescriptor("streamOptimized", capacity_sectors, "lsilogic");
  d.extents.push_back({ExtentAccess::kReadWrite, capacity_sectors, ExtentType::kSparse,
                       io::BaseName(out_path), std::nullopt, ""});
  std::string text = SerializeDescriptor(d);
  SparseHeader h;
  h.version = 3;
  h.flags = kFlagNewlineCheck | kFlagCompressed | kFlagMarkers;
  h.capacity = capacity_sectors;
  h.grain_size = grain_sectors;
  h.descriptor_offset = 1;
  h.descriptor_size = DivRoundUp(text.size(), kSectorSize);
  h.rgd_offset = 0;
  h.gd_offset = kGdAtEnd;
  h.over_head = DivRoundUp(1 + h.descriptor_size, grain_sectors) * grain_sectors;
  h.compress_algorithm = kCompressionDeflate;

  if (io::PathExists(out_path)) return AlreadyExistsError(out_path + ": already exists");
  VMBACKUP_ASSIGN_OR_RETURN(auto f, io::PosixFile::Open(out_path, io::OpenMode::kCreateNew));
  SequentialWriter w(f.get());
  uint8_t sector[512];
  EncodeSparseHeader(h, sector);
  VMBACKUP_RETURN_IF_ERROR(w.Append(sector, sizeof sector));
  VMBACKUP_RETURN_IF_ERROR(w.Append(reinterpret_cast<const uint8_t*>(text.data()), text.size()));
  std::vector<uint8_t> zeros(h.over_head * kSectorSize - w.position(), 0);
  VMBACKUP_RETURN_IF_ERROR(w.Append(zeros.data(), zeros.size()));

  std::vector<uint32_t> gd(gd_entries, 0);
  std::vector<uint32_t> gt(kGtesPerGt, 0);
  uint64_t current_gt = UINT64_MAX;  // index of the table being filled
  auto emit_table = [&]() -> Status {
    if (current_gt == UINT64_MAX) return Status::Ok();
    EncodeMetadataMarker(kGtesPerGt * 4 / kSectorSize, kMarkerGrainTable, sector);
    VMBACKUP_RETURN_IF_ERROR(w.Append(sector, sizeof sector));
    if (w.sector() > UINT32_MAX) return NotSupportedError("stream file larger than 2 TiB");
    gd[current_gt] = uint32_t(w.sector());
    std::vector<uint8_t> raw(kGtesPerGt * 4);
    for (size_t i = 0; i < kGtesPerGt; ++i) StoreLE32(raw.data() + 4 * i, gt[i]);
    VMBACKUP_RETURN_IF_ERROR(w.Append(raw.data(), raw.size()));
    std::fill(gt.begin(), gt.end(), 0);
    current_gt = UINT64_MAX;
    return Status::Ok();
  };

  std::vector<uint8_t> grain(grain_bytes);
  std::vector<uint8_t> packed(12 + compressBound(uLong(grain_bytes)));
  uint64_t last_grain = UINT64_MAX;
  auto stats = ForEachDataRun(src, [&](uint64_t off, std::span<const uint8_t> data) -> Status {
    // Runs are 64 KiB-aligned (the grain size) and ascending; compress grain by grain.
    for (uint64_t pos = 0; pos < data.size(); pos += grain_bytes) {
      uint64_t g = (off + pos) / grain_bytes;
      if (g == last_grain) return InternalError("stream writer saw a grain twice");
      last_grain = g;
      uint64_t n = std::min<uint64_t>(grain_bytes, data.size() - pos);
      std::memcpy(grain.data(), data.data() + pos, n);
      // The last grain of an odd-sized disk is padded to a whole grain, as QEMU expects.
      std::memset(grain.data() + n, 0, grain_bytes - n);
      uint64_t table = g / kGtesPerGt;
      if (table != current_gt) {
        VMBACKUP_RETURN_IF_ERROR(emit_table());
        current_gt = table;
      }
      uLongf clen = uLongf(packed.size() - 12);
      int rc = compress2(packed.data() + 12, &clen, grain.data(), uLong(grain_bytes), 1);
      if (rc != Z_OK) return InternalError(std::string("zlib compress: ") + zError(rc));
      StoreLE64(packed.data(), g * grain_sectors);
      StoreLE32(packed.data() + 8, uint32_t(clen));
      if (w.sector() > UINT32_MAX) return NotSupportedError("stream file larger than 2 TiB");
      gt[g % kGtesPerGt] = uint32_t(w.sector());
      VMBACKUP_RETURN_IF_ERROR(w.Append(packed.data(), 12 + clen));
      VMBACKUP_RETURN_IF_ERROR(w.PadToSector());
    }
    return Status::Ok();
  });
  if (!stats) return stats;
  VMBACKUP_RETURN_IF_ERROR(emit_table());

  const uint64_t gd_sectors = DivRoundUp(gd_entries * 4, kSectorSize);
  EncodeMetadataMarker(gd_sectors, kMarkerGrainDirectory, sector);
  VMBACKUP_RETURN_IF_ERROR(w.Append(sector, sizeof sector));
  h.gd_offset = w.sector();
  std::vector<uint8_t> raw(gd_sectors * kSectorSize, 0);
  for (size_t i = 0; i < gd_entries; ++i) StoreLE32(raw.data() + 4 * i, gd[i]);
  VMBACKUP_RETURN_IF_ERROR(w.Append(raw.data(), raw.size()));
  EncodeMetadataMarker(1, kMarkerFooter, sector);
  VMBACKUP_RETURN_IF_ERROR(w.Append(sector, sizeof sector));
  EncodeSparseHeader(h, sector);
  VMBACKUP_RETURN_IF_ERROR(w.Append(sector, sizeof sector));
  EncodeMetadataMarker(0, kMarkerEos, sector);
  VMBACKUP_RETURN_IF_ERROR(w.Append(sector, sizeof sector));
  VMBACKUP_RETURN_IF_ERROR(w.Flush());
  VMBACKUP_RETURN_IF_ERROR(f->Flush());
  return stats;
}

}  // namespace vmbackup::vmdk
