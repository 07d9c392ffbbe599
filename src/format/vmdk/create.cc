#include "format/vmdk/create.h"

#include <random>
#include <vector>

#include "base/checked_math.h"
#include "base/endian.h"
#include "base/strings.h"
#include "format/vmdk/disk.h"
#include "format/vmdk/layer.h"
#include "format/vmdk/sparse_header.h"
#include "io/posix_file.h"

namespace vmbackup::vmdk {
namespace {

constexpr uint64_t kEmbeddedDescriptorSectors = 20;  // as QEMU reserves

std::string RandomHex(size_t digits) {
  std::random_device rd;
  std::string s;
  while (s.size() < digits) s += StrFormat("%08x", uint32_t(rd()));
  return s.substr(0, digits);
}

std::string UuidDdb() {
  std::string h = RandomHex(32), out;
  for (size_t i = 0; i < 16; ++i) {
    if (i) out += i == 8 ? "-" : " ";
    out += h.substr(2 * i, 2);
  }
  return out;
}

Status RefuseExisting(const std::string& path) {
  if (io::PathExists(path)) return AlreadyExistsError(path + ": already exists");
  return Status::Ok();
}

Status CreateSparse(const std::string& path, uint64_t capacity_sectors, const CreateOptions& o,
                    Descriptor d) {
  const uint64_t grain = o.grain_sectors;
  if (!IsPowerOfTwo(grain) || grain < 8 || grain > 65536) {
    return InvalidArgumentError("grain size must be a power of two from 8 to 65536 sectors");
  }
  const uint64_t gd_entries = DivRoundUp(capacity_sectors, grain * kGtesPerGt);
  const uint64_t gd_sectors = DivRoundUp(gd_entries * 4, kSectorSize);
  const uint64_t gt_sectors_total = gd_entries * (kGtesPerGt * 4 / kSectorSize);
  SparseHeader h;
  h.version = o.zeroed_grain ? 2 : 1;
  h.flags = kFlagNewlineCheck | kFlagRedundantGd | (o.zeroed_grain ? kFlagZeroedGrainGte : 0);
  h.capacity = capacity_sectors;
  h.grain_size = grain;
  h.descriptor_offset = 1;
  h.descriptor_size = kEmbeddedDescriptorSectors;
  h.rgd_offset = 1 + kEmbeddedDescriptorSectors;
  h.gd_offset = h.rgd_offset + gd_sectors + gt_sectors_total;
  uint64_t meta_end = h.gd_offset + gd_sectors + gt_sectors_total;
  h.over_head = DivRoundUp(meta_end, grain) * grain;
  if (h.over_head > UINT32_MAX)
    return InvalidArgumentError("capacity too large for a sparse extent");

  std::string text = SerializeDescriptor(d);
  if (text.size() > kEmbeddedDescriptorSectors * kSectorSize) {
    return InvalidArgumentError("descriptor does not fit the embedded descriptor area");
  }
  VMBACKUP_RETURN_IF_ERROR(RefuseExisting(path));
  VMBACKUP_ASSIGN_OR_RETURN(auto f, io::PosixFile::Open(path, io::OpenMode::kCreateNew));
  // Grain tables are preallocated (all zero, left as a hole) so that writers, ours and
  // QEMU's, only ever append grains.
  VMBACKUP_RETURN_IF_ERROR(f->Truncate(h.over_head * kSectorSize));
  uint8_t header[512];
  EncodeSparseHeader(h, header);
  VMBACKUP_RETURN_IF_ERROR(f->WriteAt(0, header));
  text.resize(kEmbeddedDescriptorSectors * kSectorSize, '\0');
  VMBACKUP_RETURN_IF_ERROR(
      f->WriteAt(kSectorSize, {reinterpret_cast<const uint8_t*>(text.data()), text.size()}));
  for (uint64_t gd_at : {h.rgd_offset, h.gd_offset}) {
    std::vector<uint8_t> gd(gd_sectors * kSectorSize, 0);
    uint64_t first_gt = gd_at + gd_sectors;
    for (uint64_t i = 0; i < gd_entries; ++i) {
      StoreLE32(gd.data() + 4 * i, uint32_t(first_gt + i * (kGtesPerGt * 4 / kSectorSize)));
    }
    VMBACKUP_RETURN_IF_ERROR(f->WriteAt(gd_at * kSectorSize, gd));
  }
  return f->Flush();
}

}  // namespace

Result<DiskType> ParseDiskType(std::string_view t) {
  if (t == "flat") return DiskType::kFlat;
  if (t == "vmfs") return DiskType::kVmfs;
  if (t == "sparse") return DiskType::kSparse;
  if (t == "stream") return DiskType::kStream;
  return InvalidArgumentError("unknown disk type '" + std::string(t) +
                              "': expected flat, vmfs, sparse or stream");
}

std::string_view DiskTypeName(DiskType t) {
  switch (t) {
    case DiskType::kFlat: return "flat";
    case DiskType::kVmfs: return "vmfs";
    case DiskType::kSparse: return "sparse";
    case DiskType::kStream: return "stream";
  }
  return "?";
}

uint32_t RandomCid() {
  std::random_device rd;
  uint32_t c;
  do {
    c = uint32_t(rd());
  } while (c == kNoParentCid || c == 0xfffffffe);
  return c;
}

std::string FlatFileFor(const std::string& path) {
  std::string stem = path;
  if (stem.size() > 5 && stem.compare(stem.size() - 5, 5, ".vmdk") == 0)
    stem.resize(stem.size() - 5);
  return stem + "-flat.vmdk";
}

Descriptor NewDescriptor(std::string create_type, uint64_t capacity_sectors,
                         const std::string& adapter_type) {
  Descriptor d;
  d.version = 1;
  d.encoding = "UTF-8";
  d.cid = RandomCid();
  d.create_type = std::move(create_type);
  const bool ide = adapter_type == "ide";
  const uint64_t heads = ide ? 16 : 255, sectors = 63;
  d.SetDdb("ddb.adapterType", adapter_type);
  d.SetDdb("ddb.geometry.cylinders",
           std::to_string(std::max<uint64_t>(1, capacity_sectors / (heads * sectors))));
  d.SetDdb("ddb.geometry.heads", std::to_string(heads));
  d.SetDdb("ddb.geometry.sectors", std::to_string(sectors));
  d.SetDdb("ddb.longContentID", RandomHex(24) + FormatCid(d.cid));
  d.SetDdb("ddb.uuid", UuidDdb());
  d.SetDdb("ddb.virtualHWVersion", "14");
  return d;
}

Status CreateDisk(const std::string& path, const CreateOptions& o) {
  if (o.adapter_type != "ide" && o.adapter_type != "lsilogic" && o.adapter_type != "buslogic" &&
      o.adapter_type != "legacyESX") {
    return InvalidArgumentError("adapter type must be ide, lsilogic, buslogic or legacyESX");
  }
  uint64_t capacity_sectors = DivRoundUp(o.capacity, kSectorSize);
  if (capacity_sectors * kSectorSize > kMaxCapacityBytes) {
    return InvalidArgumentError("capacity larger than 256 TiB");
  }
  if (o.type == DiskType::kStream) {
    return InvalidArgumentError("stream disks are written by 'vmdk convert --type stream'");
  }
  if (!o.parent.empty()) {
    if (o.type != DiskType::kSparse) {
      return InvalidArgumentError(
          "only sparse disks can have a parent (VMware and QEMU allow no "
          "flat child)");
    }
    DiskOptions po;
    po.confine_to = o.parent_confine_to;
    VMBACKUP_ASSIGN_OR_RETURN(auto parent, Disk::Open(o.parent, po));
    uint64_t parent_sectors = DivRoundUp(parent->size(), kSectorSize);
    if (capacity_sectors == 0) capacity_sectors = parent_sectors;
    if (capacity_sectors != parent_sectors) {
      return InvalidArgumentError(StrFormat("a child must have its parent's capacity (%llu bytes)",
                                            (unsigned long long)parent->size()));
    }
    Descriptor d = NewDescriptor("monolithicSparse", capacity_sectors, o.adapter_type);
    const Descriptor& pd = parent->layers()[0]->descriptor();
    d.parent_cid = pd.cid;
    // The hint is relative when the parent sits beside the child, as VMware writes it.
    std::string hint =
        io::DirName(o.parent) == io::DirName(path) ? io::BaseName(o.parent) : o.parent;
    if (hint.find('"') != std::string::npos)
      return InvalidArgumentError("parent path contains '\"'");
    d.parent_file_name_hint = hint;
    d.extents.push_back({ExtentAccess::kReadWrite, capacity_sectors, ExtentType::kSparse,
                         io::BaseName(path), std::nullopt, ""});
    return CreateSparse(path, capacity_sectors, o, std::move(d));
  }
  if (capacity_sectors == 0) return InvalidArgumentError("capacity must be at least one sector");
  if (o.zeroed_grain && o.type != DiskType::kSparse) {
    return InvalidArgumentError("zeroed-grain entries exist only in sparse disks");
  }

  if (o.type == DiskType::kSparse) {
    Descriptor d = NewDescriptor("monolithicSparse", capacity_sectors, o.adapter_type);
    d.extents.push_back({ExtentAccess::kReadWrite, capacity_sectors, ExtentType::kSparse,
                         io::BaseName(path), std::nullopt, ""});
    return CreateSparse(path, capacity_sectors, o, std::move(d));
  }
  // flat / vmfs: a descriptor plus a data file of the full size (a hole until written).
  std::string data_path = FlatFileFor(path);
  VMBACKUP_RETURN_IF_ERROR(RefuseExisting(path));
  VMBACKUP_RETURN_IF_ERROR(RefuseExisting(data_path));
  const bool vmfs = o.type == DiskType::kVmfs;
  Descriptor d = NewDescriptor(vmfs ? "vmfs" : "monolithicFlat", capacity_sectors, o.adapter_type);
  ExtentLine line{
      ExtentAccess::kReadWrite, capacity_sectors, vmfs ? ExtentType::kVmfs : ExtentType::kFlat,
      io::BaseName(data_path),  std::nullopt,     ""};
  if (!vmfs) line.offset_sectors = 0;  // QEMU requires the offset on FLAT and refuses it on VMFS
  d.extents.push_back(line);
  if (vmfs) d.SetDdb("ddb.thinProvisioned", "1");
  {
    VMBACKUP_ASSIGN_OR_RETURN(auto f, io::PosixFile::Open(data_path, io::OpenMode::kCreateNew));
    VMBACKUP_RETURN_IF_ERROR(f->Truncate(capacity_sectors * kSectorSize));
    VMBACKUP_RETURN_IF_ERROR(f->Flush());
  }
  return io::WriteFileAtomic(path, SerializeDescriptor(d));
}

}  // namespace vmbackup::vmdk

namespace vmbackup::vmdk {

Status GrowFlatDisk(const std::string& path, uint64_t new_capacity) {
  VMBACKUP_ASSIGN_OR_RETURN(auto layer, Layer::Open(path, false));
  Descriptor d = layer->descriptor();
  if (layer->embedded_descriptor() || d.has_parent() || d.extents.size() != 1 ||
      (d.extents[0].type != ExtentType::kFlat && d.extents[0].type != ExtentType::kVmfs)) {
    return NotSupportedError(path +
                             ": only a single-extent flat or vmfs disk without a parent can grow");
  }
  uint64_t sectors = DivRoundUp(new_capacity, kSectorSize);
  if (sectors < d.extents[0].sectors) return InvalidArgumentError("disks can grow, not shrink");
  if (sectors * kSectorSize > kMaxCapacityBytes)
    return InvalidArgumentError("capacity larger than 256 TiB");
  if (sectors == d.extents[0].sectors) return Status::Ok();
  const std::string data = layer->extents()[0].path;
  uint64_t offset = d.extents[0].offset_sectors.value_or(0) * kSectorSize;
  {
    VMBACKUP_ASSIGN_OR_RETURN(auto f, io::PosixFile::Open(data, io::OpenMode::kReadWrite));
    if (f->size() < offset + sectors * kSectorSize) {
      VMBACKUP_RETURN_IF_ERROR(f->Truncate(offset + sectors * kSectorSize));
      VMBACKUP_RETURN_IF_ERROR(f->Flush());
    }
  }
  d.extents[0].sectors = sectors;
  const bool ide = d.GetDdb("ddb.adapterType") == "ide";
  d.SetDdb("ddb.geometry.cylinders",
           std::to_string(std::max<uint64_t>(1, sectors / ((ide ? 16 : 255) * 63))));
  // The data file grew first: a crash in between leaves a longer file, which is harmless.
  return io::WriteFileAtomic(path, SerializeDescriptor(d));
}

}  // namespace vmbackup::vmdk
