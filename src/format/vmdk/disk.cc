#include "format/vmdk/disk.h"

#include <stdlib.h>

#include <algorithm>
#include <cstring>
#include <random>
#include <set>

#include "base/checked_math.h"
#include "base/strings.h"
#include "io/posix_file.h"

namespace vmbackup::vmdk {
namespace {

std::string CanonicalPath(const std::string& path) {
  char* r = ::realpath(path.c_str(), nullptr);
  if (!r) return path;
  std::string s(r);
  ::free(r);
  return s;
}

// Where the parent named by `hint` is, seen from the child at `child_path`. ESXi writes
// absolute datastore paths (/vmfs/volumes/...); when such a path does not exist here, the
// parent is looked for by its file name beside the child.
std::string ResolveParent(const std::string& child_path, const std::string& hint, bool remote) {
  std::string dir = io::DirName(child_path);
  if (remote && !hint.empty() && hint[0] == '/') return io::JoinPath(dir, io::BaseName(hint));
  std::string p = io::JoinPath(dir, hint);
  if (!io::PathExists(p) && !hint.empty() && hint[0] == '/') {
    std::string beside = io::JoinPath(dir, io::BaseName(hint));
    if (io::PathExists(beside)) return beside;
  }
  return p;
}

}  // namespace

Result<std::unique_ptr<Disk>> Disk::Open(const std::string& path, const DiskOptions& options) {
  std::unique_ptr<Disk> disk(new Disk());
  disk->writable_ = options.writable;
  disk->cid_updated_ = options.preserve_cid;
  std::set<std::string> seen;
  std::string current = path;
  while (true) {
    const bool top = disk->layers_.empty();
    if (disk->layers_.size() >= kMaxChainLength) {
      return CorruptionError(
          StrFormat("%s: chain longer than %zu layers", path.c_str(), kMaxChainLength));
    }
    std::string canonical = options.open_file ? current : CanonicalPath(current);
    if (!seen.insert(canonical).second) {
      return CorruptionError(StrFormat("%s: parent chain loops back to %s",
                                       disk->layers_.back()->path().c_str(), current.c_str()));
    }
    Result<std::unique_ptr<Layer>> layer =
        Layer::Open(current, top && options.writable, options.confine_to,
                    options.open_file ? &options.open_file : nullptr);
    if (!layer) {
      if (!top && layer.error().code() == ErrorCode::kNotFound) {
        return NotFoundError(StrFormat("parent %s of %s is missing (parentFileNameHint)",
                                       current.c_str(), disk->layers_.back()->path().c_str()));
      }
      return layer.error();
    }
    if (!top) {
      const Layer& child = *disk->layers_.back();
      const Descriptor& cd = child.descriptor();
      const Descriptor& pd = (*layer)->descriptor();
      if (cd.parent_cid != pd.cid && !options.ignore_cid_mismatch) {
        return CorruptionError(StrFormat(
            "%s: parentCID %s does not match CID %s of parent %s (the parent changed after this "
            "delta was made; --ignore-cid reads it anyway)",
            child.path().c_str(), FormatCid(cd.parent_cid).c_str(), FormatCid(pd.cid).c_str(),
            current.c_str()));
      }
    }
    const Descriptor& d = (*layer)->descriptor();
    disk->layers_.push_back(std::move(*layer));
    if (!d.has_parent()) break;
    if (d.parent_file_name_hint.empty()) {
      return CorruptionError(current + ": parentCID is set but parentFileNameHint is missing");
    }
    current = ResolveParent(current, d.parent_file_name_hint, bool(options.open_file));
  }
  return disk;
}

Status Disk::ReadFrom(size_t depth, uint64_t offset, std::span<uint8_t> buf) {
  if (buf.empty()) return Status::Ok();
  if (depth >= layers_.size()) {
    std::memset(buf.data(), 0, buf.size());
    return Status::Ok();
  }
  Layer& layer = *layers_[depth];
  // A child may be larger than its parent: the parent reads zeros past its end.
  uint64_t cap = layer.capacity();
  uint64_t inside = offset >= cap ? 0 : std::min<uint64_t>(buf.size(), cap - offset);
  if (inside < buf.size()) std::memset(buf.data() + inside, 0, buf.size() - inside);
  if (inside == 0) return Status::Ok();
  // A flat layer maps its host file's holes (two lseeks a read) only to learn they are zeros.
  if (layer.fully_allocated()) return layer.Read(offset, buf.first(inside));
  std::vector<BlockRun> runs;
  VMBACKUP_RETURN_IF_ERROR(layer.Map(offset, inside, &runs));
  for (const BlockRun& r : runs) {
    std::span<uint8_t> part = buf.subspan(r.offset - offset, r.length);
    switch (r.state) {
      case BlockState::kData: VMBACKUP_RETURN_IF_ERROR(layer.Read(r.offset, part)); break;
      case BlockState::kZero: std::memset(part.data(), 0, part.size()); break;
      case BlockState::kUnallocated:
        VMBACKUP_RETURN_IF_ERROR(ReadFrom(depth + 1, r.offset, part));
        break;
    }
  }
  return Status::Ok();
}

bool Disk::ConcurrentReads() const {
  return std::all_of(layers_.begin(), layers_.end(),
                     [](const auto& layer) { return layer->fully_allocated(); });
}

Status Disk::ReadAt(uint64_t offset, std::span<uint8_t> buf) {
  if (!RangeWithin(offset, buf.size(), size())) {
    return InvalidArgumentError(StrFormat(
        "%s: read of %zu bytes at offset %llu past the end of "
        "the disk (%llu bytes)",
        name().c_str(), buf.size(), (unsigned long long)offset, (unsigned long long)size()));
  }
  return ReadFrom(0, offset, buf);
}

Status Disk::MapFrom(size_t depth, uint64_t offset, uint64_t length, std::vector<ChainRun>* runs) {
  auto append = [&](uint64_t off, uint64_t len, BlockState st, int d) {
    if (len == 0) return;
    if (!runs->empty()) {
      ChainRun& last = runs->back();
      if (last.state == st && last.depth == d && last.offset + last.length == off) {
        last.length += len;
        return;
      }
    }
    runs->push_back({off, len, st, d});
  };
  if (depth >= layers_.size()) {
    append(offset, length, BlockState::kUnallocated, -1);
    return Status::Ok();
  }
  Layer& layer = *layers_[depth];
  uint64_t cap = layer.capacity();
  uint64_t inside = offset >= cap ? 0 : std::min(length, cap - offset);
  std::vector<BlockRun> local;
  if (inside) VMBACKUP_RETURN_IF_ERROR(layer.Map(offset, inside, &local));
  for (const BlockRun& r : local) {
    if (r.state == BlockState::kUnallocated) {
      VMBACKUP_RETURN_IF_ERROR(MapFrom(depth + 1, r.offset, r.length, runs));
    } else {
      append(r.offset, r.length, r.state, int(depth));
    }
  }
  append(offset + inside, length - inside, BlockState::kUnallocated, -1);
  return Status::Ok();
}

Status Disk::MapChain(uint64_t offset, uint64_t length, std::vector<ChainRun>* runs) {
  if (!RangeWithin(offset, length, size())) {
    return InvalidArgumentError(
        StrFormat("%s: map range past the end of the disk", name().c_str()));
  }
  return MapFrom(0, offset, length, runs);
}

Result<ExtentSet> Disk::AllocatedExtents(uint64_t offset, uint64_t length) {
  uint64_t end = std::min(size(), offset + std::min(length, size() - std::min(offset, size())));
  std::vector<ChainRun> runs;
  if (offset < end) VMBACKUP_RETURN_IF_ERROR(MapChain(offset, end - offset, &runs));
  ExtentSet out;
  for (const ChainRun& r : runs) {
    if (r.state == BlockState::kData) out.Add(r.offset, r.length);
  }
  return out;
}

Status Disk::WriteZeroes(uint64_t offset, uint64_t length) {
  if (!writable_) return PermissionDeniedError(name() + ": disk opened read-only");
  if (!RangeWithin(offset, length, size()))
    return InvalidArgumentError(name() + ": zeroed range past the end of the disk");
  if (layers_.size() > 1) return io::BlockWriter::WriteZeroes(offset, length);  // hide the parent
  for (uint64_t pos = offset; pos < offset + length;) {
    LayerExtent& e = layers_[0]->ExtentAt(pos);
    const uint64_t in = pos - e.start;
    const uint64_t n = std::min(offset + length, e.start + e.extent->size()) - pos;
    Status s = e.extent->Deallocate(in, n);
    if (s.code() == ErrorCode::kNotSupported) {
      s = io::BlockWriter::WriteZeroes(pos, n);
    } else if (s.ok()) {
      s = MoveCidOnce();  // zeroing changes the content as a write does
    }
    VMBACKUP_RETURN_IF_ERROR(s);
    pos += n;
  }
  return Status::Ok();
}

Status Disk::WriteAt(uint64_t offset, std::span<const uint8_t> data) {
  if (!writable_) return PermissionDeniedError(name() + ": disk opened read-only");
  if (!RangeWithin(offset, data.size(), size())) {
    return InvalidArgumentError(StrFormat(
        "%s: write of %zu bytes at offset %llu past the end of "
        "the disk (%llu bytes)",
        name().c_str(), data.size(), (unsigned long long)offset, (unsigned long long)size()));
  }
  VMBACKUP_RETURN_IF_ERROR(MoveCidOnce());
  return WriteGrainAware(offset, data);
}

Status Disk::MoveCidOnce() {
  if (cid_updated_) return Status::Ok();
  std::random_device rd;
  uint32_t cid;
  do {
    cid = uint32_t(rd());
  } while (cid == kNoParentCid || cid == 0xfffffffe || cid == layers_[0]->descriptor().cid);
  VMBACKUP_RETURN_IF_ERROR(layers_[0]->UpdateCid(cid));
  cid_updated_ = true;
  return Status::Ok();
}

Status Disk::WriteGrainAware(uint64_t offset, std::span<const uint8_t> data) {
  Layer& top = *layers_[0];
  uint64_t pos = offset, end = offset + data.size();
  std::vector<uint8_t> grain_buf;
  while (pos < end) {
    LayerExtent& le = top.ExtentAt(pos);
    uint64_t ext_end = le.start + le.extent->size();
    uint64_t piece_end = std::min(end, ext_end);
    uint64_t gb = le.extent->grain_bytes();
    if (gb == 0) {  // written in place
      VMBACKUP_RETURN_IF_ERROR(
          top.WriteWithinExtent(pos, data.subspan(pos - offset, piece_end - pos)));
      pos = piece_end;
      continue;
    }
    uint64_t grain_start = le.start + RoundDown(pos - le.start, gb);
    uint64_t grain_end = std::min(grain_start + gb, ext_end);
    if (pos == grain_start && piece_end >= grain_end) {
      // Whole grains: one call for the whole aligned middle.
      uint64_t whole_end =
          piece_end == ext_end ? ext_end : le.start + RoundDown(piece_end - le.start, gb);
      VMBACKUP_RETURN_IF_ERROR(
          top.WriteWithinExtent(pos, data.subspan(pos - offset, whole_end - pos)));
      pos = whole_end;
      continue;
    }
    // A partial grain: in place when layer 0 holds it, else copy-on-write from below.
    uint64_t n = std::min(piece_end, grain_end) - pos;
    std::vector<BlockRun> runs;
    VMBACKUP_RETURN_IF_ERROR(
        le.extent->Map(grain_start - le.start, grain_end - grain_start, &runs));
    if (runs.size() == 1 && runs[0].state == BlockState::kData) {
      VMBACKUP_RETURN_IF_ERROR(top.WriteWithinExtent(pos, data.subspan(pos - offset, n)));
    } else {
      grain_buf.resize(grain_end - grain_start);
      VMBACKUP_RETURN_IF_ERROR(ReadFrom(0, grain_start, grain_buf));
      std::memcpy(grain_buf.data() + (pos - grain_start), data.data() + (pos - offset), n);
      VMBACKUP_RETURN_IF_ERROR(top.WriteWithinExtent(grain_start, grain_buf));
    }
    pos += n;
  }
  return Status::Ok();
}

Status Disk::Flush() {
  if (!writable_) return Status::Ok();
  return layers_[0]->Flush();
}

}  // namespace vmbackup::vmdk
