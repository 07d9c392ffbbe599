#include "format/vmdk/layer.h"

#include <algorithm>
#include <cstring>
#include <map>

#include "base/endian.h"
#include "base/strings.h"
#include "format/vmdk/cowd.h"
#include "format/vmdk/hosted_sparse.h"
#include "format/vmdk/sesparse.h"
#include "io/posix_file.h"

namespace vmbackup::vmdk {
namespace {

Descriptor SynthesizedDescriptor(const std::string& create_type, ExtentType type, uint64_t sectors,
                                 const std::string& file) {
  Descriptor d;
  d.create_type = create_type;
  d.extents.push_back({ExtentAccess::kReadWrite, sectors, type, file, std::nullopt, ""});
  return d;
}

}  // namespace

static Result<std::shared_ptr<io::BlockWriter>> OpenLayerFile(const std::string& path,
                                                              bool writable,
                                                              const FileOpener* opener) {
  if (opener) return (*opener)(path, writable);
  VMBACKUP_ASSIGN_OR_RETURN(auto f, io::PosixFile::Open(path, writable ? io::OpenMode::kReadWrite
                                                                       : io::OpenMode::kReadOnly));
  return std::shared_ptr<io::BlockWriter>(std::move(f));
}

Result<std::unique_ptr<Layer>> Layer::Open(const std::string& path, bool writable,
                                           const std::string& confine_to,
                                           const FileOpener* opener) {
  if (!confine_to.empty()) VMBACKUP_RETURN_IF_ERROR(io::CheckInside(confine_to, path));
  std::unique_ptr<Layer> layer(new Layer());
  layer->path_ = path;
  VMBACKUP_ASSIGN_OR_RETURN(std::shared_ptr<io::BlockWriter> file,
                            OpenLayerFile(path, writable, opener));
  uint8_t magic[8] = {};
  if (file->size() >= 8) VMBACKUP_RETURN_IF_ERROR(file->ReadAt(0, magic));
  const std::string base = io::BaseName(path);

  if (LoadLE32(magic) == kSparseMagic) {
    SparseHeader h;
    VMBACKUP_ASSIGN_OR_RETURN(SparseLayout l, ReadHostedSparseLayout(*file, &h));
    if (h.descriptor_offset != 0) {
      uint64_t off = h.descriptor_offset * kSectorSize;
      uint64_t len = std::min<uint64_t>(h.descriptor_size * kSectorSize, kMaxDescriptorBytes);
      if (h.descriptor_size == 0 || h.descriptor_offset > file->size() / kSectorSize ||
          h.descriptor_size > file->size() / kSectorSize || off + len > file->size()) {
        return CorruptionError(
            StrFormat("%s: embedded descriptor (sector %llu, %llu sectors) lies "
                      "past the end of the file",
                      path.c_str(), (unsigned long long)h.descriptor_offset,
                      (unsigned long long)h.descriptor_size));
      }
      std::string text(len, '\0');
      VMBACKUP_RETURN_IF_ERROR(file->ReadAt(off, {reinterpret_cast<uint8_t*>(text.data()), len}));
      Result<Descriptor> d = ParseDescriptor(text);
      if (!d) return d.error().WithContext(path + ": embedded descriptor");
      layer->descriptor_ = std::move(*d);
      if (layer->descriptor_.extents.size() != 1 ||
          layer->descriptor_.extents[0].type != ExtentType::kSparse) {
        return CorruptionError(path + ": embedded descriptor must list exactly one SPARSE extent");
      }
      layer->embedded_ = true;
      layer->descriptor_offset_ = off;
      layer->descriptor_capacity_ = h.descriptor_size * kSectorSize;
    } else {
      layer->descriptor_ =
          SynthesizedDescriptor(l.compressed ? "streamOptimized" : "monolithicSparse",
                                ExtentType::kSparse, l.capacity_sectors, base);
      layer->embedded_ = true;  // no separate descriptor; the file is the extent
    }
    layer->self_file_ = file;
  } else if (LoadLE32(magic) == kCowdMagic) {
    VMBACKUP_ASSIGN_OR_RETURN(SparseLayout l, ReadCowdLayout(*file));
    layer->descriptor_ =
        SynthesizedDescriptor("vmfsSparse", ExtentType::kVmfsSparse, l.capacity_sectors, base);
    layer->embedded_ = true;
    layer->self_file_ = file;
  } else if (LoadLE64(magic) == kSeSparseMagic) {
    uint8_t h[24];
    VMBACKUP_RETURN_IF_ERROR(file->ReadAt(0, h));
    layer->descriptor_ =
        SynthesizedDescriptor("seSparse", ExtentType::kSeSparse, LoadLE64(h + 16), base);
    layer->embedded_ = true;
    layer->self_file_ = file;
  } else {
    if (file->size() > kMaxDescriptorBytes) {
      return CorruptionError(path +
                             ": not a VMDK (no sparse magic, and too large to be a "
                             "descriptor)");
    }
    std::string text(file->size(), '\0');
    VMBACKUP_RETURN_IF_ERROR(
        file->ReadAt(0, {reinterpret_cast<uint8_t*>(text.data()), text.size()}));
    if (!LooksLikeDescriptor(text)) {
      return CorruptionError(path +
                             ": not a VMDK (no sparse magic, and no 'version=' line of a "
                             "descriptor)");
    }
    Result<Descriptor> d = ParseDescriptor(text);
    if (!d) return d.error().WithContext(path);
    layer->descriptor_ = std::move(*d);
  }
  Status s = layer->OpenExtents(writable, layer->self_file_, opener, confine_to);
  if (!s.ok()) return s.WithContext(path);
  return layer;
}

Status Layer::OpenExtents(bool writable, std::shared_ptr<io::BlockWriter> self,
                          const FileOpener* opener, const std::string& confine_to) {
  const std::string dir = io::DirName(path_);
  std::map<std::string, std::shared_ptr<io::BlockWriter>> files;
  uint64_t start = 0;
  for (size_t i = 0; i < descriptor_.extents.size(); ++i) {
    const ExtentLine& line = descriptor_.extents[i];
    LayerExtent le;
    le.line = line;
    le.start = start;
    const uint64_t size = line.sectors * kSectorSize;
    const bool rw = writable && line.access == ExtentAccess::kReadWrite;
    auto context = [&](const Status& s) {
      return s.WithContext(StrFormat("extent %zu (%s)", i + 1, line.filename.c_str()));
    };
    std::shared_ptr<io::BlockWriter> file;
    if (line.type != ExtentType::kZero) {
      if (self) {
        file = self;
        le.path = path_;
      } else {
        le.path = io::JoinPath(dir, line.filename);
        if (!confine_to.empty()) {
          Status inside = io::CheckInside(confine_to, le.path);
          if (!inside.ok()) return context(inside);
        }
        auto it = files.find(le.path);
        if (it != files.end()) {
          file = it->second;
        } else {
          auto f = OpenLayerFile(le.path, rw, opener);
          if (!f) return context(f.error());
          file = std::move(*f);
          files[le.path] = file;
        }
      }
    }
    switch (line.type) {
      case ExtentType::kZero: le.extent = std::make_unique<ZeroExtent>(size); break;
      case ExtentType::kFlat:
      case ExtentType::kVmfs: {
        auto e = FlatExtent::Open(file, line.offset_sectors.value_or(0) * kSectorSize, size, rw);
        if (!e) return context(e.error());
        le.extent = std::move(*e);
        break;
      }
      case ExtentType::kSparse: {
        auto layout = ReadHostedSparseLayout(*file, nullptr);
        if (!layout) return context(layout.error());
        auto e = SparseExtent::Open(file, *layout, size, rw);
        if (!e) return context(e.error());
        le.extent = std::move(*e);
        break;
      }
      case ExtentType::kVmfsSparse: {
        auto layout = ReadCowdLayout(*file);
        if (!layout) return context(layout.error());
        auto e = SparseExtent::Open(file, *layout, size, false);
        if (!e) return context(e.error());
        le.extent = std::move(*e);
        break;
      }
      case ExtentType::kSeSparse: {
        auto e = SeSparseExtent::Open(file, size);
        if (!e) return context(e.error());
        le.extent = std::move(*e);
        break;
      }
      case ExtentType::kVmfsRdm:
      case ExtentType::kVmfsRaw:
        return context(NotSupportedError(
            "raw device mapping extents (VMFSRDM/VMFSRAW) point at a LUN and are not supported"));
    }
    start += size;
    extents_.push_back(std::move(le));
  }
  capacity_ = start;
  fully_allocated_ = std::all_of(extents_.begin(), extents_.end(), [](const LayerExtent& e) {
    return e.line.type == ExtentType::kFlat || e.line.type == ExtentType::kVmfs ||
           e.line.type == ExtentType::kZero;
  });
  return Status::Ok();
}

LayerExtent& Layer::ExtentAt(uint64_t offset) {
  auto it = std::upper_bound(extents_.begin(), extents_.end(), offset,
                             [](uint64_t off, const LayerExtent& e) { return off < e.start; });
  return *std::prev(it);
}

Status Layer::Map(uint64_t offset, uint64_t length, std::vector<BlockRun>* runs) {
  uint64_t pos = offset, end = offset + length;
  while (pos < end) {
    LayerExtent& le = ExtentAt(pos);
    uint64_t n = std::min(end, le.start + le.extent->size()) - pos;
    std::vector<BlockRun> local;
    VMBACKUP_RETURN_IF_ERROR(le.extent->Map(pos - le.start, n, &local));
    for (const BlockRun& r : local) {
      // NOACCESS extents hold data nobody may read; map them as data so reads fail loudly.
      BlockState st = le.line.access == ExtentAccess::kNoAccess ? BlockState::kData : r.state;
      AppendRun(runs, r.offset + le.start, r.length, st);
    }
    pos += n;
  }
  return Status::Ok();
}

Status Layer::Read(uint64_t offset, std::span<uint8_t> buf) {
  uint64_t pos = offset, end = offset + buf.size();
  while (pos < end) {
    LayerExtent& le = ExtentAt(pos);
    uint64_t n = std::min(end, le.start + le.extent->size()) - pos;
    if (le.line.access == ExtentAccess::kNoAccess) {
      return PermissionDeniedError(StrFormat("%s: extent at byte %llu is NOACCESS", path_.c_str(),
                                             (unsigned long long)le.start));
    }
    VMBACKUP_RETURN_IF_ERROR(le.extent->Read(pos - le.start, buf.subspan(pos - offset, n)));
    pos += n;
  }
  return Status::Ok();
}

Status Layer::WriteWithinExtent(uint64_t offset, std::span<const uint8_t> data) {
  LayerExtent& le = ExtentAt(offset);
  if (le.line.access != ExtentAccess::kReadWrite) {
    return PermissionDeniedError(StrFormat("%s: extent at byte %llu is %s", path_.c_str(),
                                           (unsigned long long)le.start,
                                           std::string(ExtentAccessName(le.line.access)).c_str()));
  }
  if (le.line.type == ExtentType::kZero) {
    return NotSupportedError(path_ + ": cannot write into a ZERO extent");
  }
  return le.extent->Write(offset - le.start, data);
}

Status Layer::UpdateCid(uint32_t cid) {
  Descriptor d = descriptor_;
  d.cid = cid;
  return ReplaceDescriptor(d);
}

Status Layer::ReplaceDescriptor(const Descriptor& d) {
  if (d.extents != descriptor_.extents) {
    return InternalError(path_ + ": a descriptor rewrite may not change the extents");
  }
  std::string text = SerializeDescriptor(d);
  if (embedded_) {
    if (descriptor_capacity_ == 0) {
      descriptor_ = d;  // bare extent: no descriptor to rewrite
      return Status::Ok();
    }
    if (text.size() > descriptor_capacity_) {
      return NotSupportedError(path_ +
                               ": new descriptor does not fit the embedded descriptor area");
    }
    text.resize(descriptor_capacity_, '\0');
    VMBACKUP_RETURN_IF_ERROR(self_file_->WriteAt(
        descriptor_offset_, {reinterpret_cast<const uint8_t*>(text.data()), text.size()}));
  } else {
    VMBACKUP_RETURN_IF_ERROR(io::WriteFileAtomic(path_, text));
  }
  descriptor_ = d;
  return Status::Ok();
}

Status Layer::Flush() {
  for (LayerExtent& le : extents_) {
    if (le.extent->writable()) VMBACKUP_RETURN_IF_ERROR(le.extent->Flush());
  }
  return Status::Ok();
}

}  // namespace vmbackup::vmdk

namespace vmbackup::vmdk {

Result<bool> LooksLikeVmdk(const std::string& path) {
  VMBACKUP_ASSIGN_OR_RETURN(auto f, io::PosixFile::Open(path, io::OpenMode::kReadOnly));
  uint8_t magic[8] = {};
  if (f->size() >= 8) VMBACKUP_RETURN_IF_ERROR(f->ReadAt(0, magic));
  if (LoadLE32(magic) == kSparseMagic || LoadLE32(magic) == kCowdMagic ||
      LoadLE64(magic) == kSeSparseMagic) {
    return true;
  }
  if (f->size() > kMaxDescriptorBytes) return false;
  std::string text(f->size(), '\0');
  VMBACKUP_RETURN_IF_ERROR(f->ReadAt(0, {reinterpret_cast<uint8_t*>(text.data()), text.size()}));
  return LooksLikeDescriptor(text);
}

}  // namespace vmbackup::vmdk
