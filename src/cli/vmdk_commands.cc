#include "cli/vmdk_commands.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>
#include <vector>

#include "base/strings.h"
#include "cli/output.h"
#include "format/vmdk/convert.h"
#include "format/vmdk/create.h"
#include "format/vmdk/disk.h"
#include "io/posix_file.h"

namespace vmbackup::cli {
namespace {

using nlohmann::json;
using vmdk::BlockState;

struct CommonOptions {
  std::string file;
  bool ignore_cid = false;
};

Result<std::unique_ptr<vmdk::Disk>> OpenDisk(const CommonOptions& o) {
  vmdk::DiskOptions d;
  d.ignore_cid_mismatch = o.ignore_cid;
  return vmdk::Disk::Open(o.file, d);
}

Result<uint64_t> LayerAllocatedBytes(vmdk::Layer& layer) {
  std::vector<vmdk::BlockRun> runs;
  VMBACKUP_RETURN_IF_ERROR(layer.Map(0, layer.capacity(), &runs));
  uint64_t total = 0;
  for (const auto& r : runs)
    if (r.state == BlockState::kData) total += r.length;
  return total;
}

Status RunInfo(const CommonOptions& o) {
  VMBACKUP_ASSIGN_OR_RETURN(auto disk, OpenDisk(o));
  const vmdk::Layer& top = *disk->layers()[0];
  const vmdk::Descriptor& d = top.descriptor();
  VMBACKUP_ASSIGN_OR_RETURN(ExtentSet allocated, disk->AllocatedExtents(0, disk->size()));
  json j;
  j["file"] = o.file;
  j["create_type"] = d.create_type;
  j["capacity"] = disk->size();
  j["allocated_bytes"] = allocated.total_bytes();
  j["cid"] = vmdk::FormatCid(d.cid);
  j["parent_cid"] = vmdk::FormatCid(d.parent_cid);
  if (!d.parent_file_name_hint.empty()) j["parent_file_name_hint"] = d.parent_file_name_hint;
  if (!d.change_track_path.empty()) j["change_track_path"] = d.change_track_path;
  j["descriptor_embedded"] = top.embedded_descriptor();
  json ddb = json::object();
  for (const auto& [k, v] : d.ddb) ddb[k] = v;
  j["ddb"] = ddb;
  json extents = json::array();
  for (const vmdk::LayerExtent& le : top.extents()) {
    vmdk::ExtentFormat f = le.extent->format();
    json e{{"access", vmdk::ExtentAccessName(le.line.access)},
           {"sectors", le.line.sectors},
           {"type", vmdk::ExtentTypeName(le.line.type)},
           {"format", f.kind}};
    if (!le.line.filename.empty()) e["file"] = le.line.filename;
    if (le.line.offset_sectors) e["offset_sectors"] = *le.line.offset_sectors;
    if (f.grain_bytes) e["grain_bytes"] = f.grain_bytes;
    if (f.version) e["version"] = f.version;
    extents.push_back(e);
  }
  j["extents"] = extents;
  json chain = json::array();
  for (const auto& layer : disk->layers()) {
    VMBACKUP_ASSIGN_OR_RETURN(uint64_t alloc, LayerAllocatedBytes(*layer));
    const vmdk::Descriptor& ld = layer->descriptor();
    chain.push_back({{"file", layer->path()},
                     {"cid", vmdk::FormatCid(ld.cid)},
                     {"parent_cid", vmdk::FormatCid(ld.parent_cid)},
                     {"create_type", ld.create_type},
                     {"capacity", layer->capacity()},
                     {"allocated_bytes", alloc}});
  }
  j["chain"] = chain;
  if (Flags().json) {
    std::printf("%s\n", j.dump(2).c_str());
    return Status::Ok();
  }
  std::printf("file:        %s\n", o.file.c_str());
  std::printf("create type: %s\n", d.create_type.c_str());
  std::printf("capacity:    %llu bytes (%s)\n", (unsigned long long)disk->size(),
              HumanBytes(disk->size()).c_str());
  std::printf("allocated:   %llu bytes (%s) in the chain\n",
              (unsigned long long)allocated.total_bytes(),
              HumanBytes(allocated.total_bytes()).c_str());
  std::printf("extents:\n");
  for (const auto& e : j["extents"]) {
    std::printf("  %s %llu %s", e["access"].get<std::string>().c_str(),
                (unsigned long long)e["sectors"].get<uint64_t>(),
                e["type"].get<std::string>().c_str());
    if (e.contains("file")) std::printf(" \"%s\"", e["file"].get<std::string>().c_str());
    if (e.contains("offset_sectors"))
      std::printf(" %llu", (unsigned long long)e["offset_sectors"].get<uint64_t>());
    std::printf("  [%s", e["format"].get<std::string>().c_str());
    if (e.contains("grain_bytes"))
      std::printf(", grain %llu", (unsigned long long)e["grain_bytes"].get<uint64_t>());
    if (e.contains("version")) std::printf(", version %u", e["version"].get<unsigned>());
    std::printf("]\n");
  }
  std::printf("chain (top first):\n");
  int depth = 0;
  for (const auto& c : chain) {
    std::printf("  %d: %s  CID %s  parentCID %s  %s  %llu bytes allocated\n", depth++,
                c["file"].get<std::string>().c_str(), c["cid"].get<std::string>().c_str(),
                c["parent_cid"].get<std::string>().c_str(),
                c["create_type"].get<std::string>().c_str(),
                (unsigned long long)c["allocated_bytes"].get<uint64_t>());
  }
  return Status::Ok();
}

Status RunMap(const CommonOptions& o) {
  VMBACKUP_ASSIGN_OR_RETURN(auto disk, OpenDisk(o));
  std::vector<vmdk::ChainRun> runs;
  VMBACKUP_RETURN_IF_ERROR(disk->MapChain(0, disk->size(), &runs));
  json j = json::array();
  if (!Flags().json)
    std::printf("%-20s %-20s %-6s %-5s %s\n", "offset", "length", "kind", "depth", "file");
  for (const auto& r : runs) {
    if (r.state == BlockState::kUnallocated) continue;
    const std::string& file = disk->layers()[size_t(r.depth)]->path();
    if (Flags().json) {
      j.push_back({{"offset", r.offset},
                   {"length", r.length},
                   {"kind", vmdk::BlockStateName(r.state)},
                   {"depth", r.depth},
                   {"file", file}});
    } else {
      std::printf("%-20llu %-20llu %-6s %-5d %s\n", (unsigned long long)r.offset,
                  (unsigned long long)r.length, std::string(vmdk::BlockStateName(r.state)).c_str(),
                  r.depth, file.c_str());
    }
  }
  if (Flags().json) std::printf("%s\n", j.dump(2).c_str());
  return Status::Ok();
}

struct CatOptions {
  CommonOptions common;
  std::string offset = "0";
  std::string length;
};

Status RunCat(const CatOptions& o) {
  VMBACKUP_ASSIGN_OR_RETURN(auto disk, OpenDisk(o.common));
  VMBACKUP_ASSIGN_OR_RETURN(uint64_t offset, ParseSize(o.offset));
  uint64_t length = disk->size() - std::min(offset, disk->size());
  if (!o.length.empty()) {
    VMBACKUP_ASSIGN_OR_RETURN(length, ParseSize(o.length));
  }
  StreamSink out(STDOUT_FILENO);
  return CopyDiskRange(*disk, offset, length, out);
}

struct WriteCmdOptions {
  CommonOptions common;
  std::string offset = "0", length, from, pattern;
};

// Writes a repeated byte or a file's bytes into the disk (through copy-on-write for deltas).
Status RunWrite(const WriteCmdOptions& o) {
  if (o.from.empty() == o.pattern.empty()) {
    return InvalidArgumentError("give exactly one of --from FILE and --pattern BYTE");
  }
  vmdk::DiskOptions d;
  d.writable = true;
  d.ignore_cid_mismatch = o.common.ignore_cid;
  VMBACKUP_ASSIGN_OR_RETURN(auto disk, vmdk::Disk::Open(o.common.file, d));
  VMBACKUP_ASSIGN_OR_RETURN(uint64_t offset, ParseSize(o.offset));
  std::unique_ptr<io::PosixFile> src;
  uint64_t length = 0;
  int byte = 0;
  if (!o.from.empty()) {
    VMBACKUP_ASSIGN_OR_RETURN(src, io::PosixFile::Open(o.from, io::OpenMode::kReadOnly));
    struct stat st;
    if (::fstat(src->fd(), &st) != 0 || !S_ISREG(st.st_mode))
      return InvalidArgumentError("--from " + o.from + " must be a regular file");
    length = src->size();
  } else {
    VMBACKUP_ASSIGN_OR_RETURN(uint64_t b, ParseUint(o.pattern));
    if (b > 255) return InvalidArgumentError("--pattern must be a byte (0 to 255)");
    byte = int(b);
    if (o.length.empty()) return InvalidArgumentError("--pattern needs --length");
  }
  if (!o.length.empty()) {
    VMBACKUP_ASSIGN_OR_RETURN(length, ParseSize(o.length));
    if (src && length > src->size()) return InvalidArgumentError("--length is longer than --from");
  }
  if (offset > disk->size() || length > disk->size() - offset) {
    return InvalidArgumentError(StrFormat(
        "range %llu+%llu lies past the end of the disk (%llu bytes)", (unsigned long long)offset,
        (unsigned long long)length, (unsigned long long)disk->size()));
  }
  constexpr uint64_t kChunk = 8 << 20;
  std::vector<uint8_t> buf;
  for (uint64_t done = 0; done < length;) {
    uint64_t n = std::min(kChunk, length - done);
    buf.assign(n, uint8_t(byte));
    if (src) VMBACKUP_RETURN_IF_ERROR(src->ReadAt(done, buf));
    VMBACKUP_RETURN_IF_ERROR(disk->WriteAt(offset + done, buf));
    done += n;
  }
  return disk->Flush();
}

struct CreateCmdOptions {
  std::string file, size, type = "sparse", parent, adapter = "lsilogic";
  bool zeroed_grain = false;
};

Status RunCreate(const CreateCmdOptions& o) {
  vmdk::CreateOptions c;
  VMBACKUP_ASSIGN_OR_RETURN(c.type, vmdk::ParseDiskType(o.type));
  if (!o.size.empty()) {
    VMBACKUP_ASSIGN_OR_RETURN(c.capacity, ParseSize(o.size));
  } else if (o.parent.empty()) {
    return InvalidArgumentError("--size is required (unless --parent gives it)");
  }
  c.parent = o.parent;
  c.adapter_type = o.adapter;
  c.zeroed_grain = o.zeroed_grain;
  return vmdk::CreateDisk(o.file, c);
}

struct ConvertCmdOptions {
  CommonOptions common;
  std::string out, type, input_format = "auto";
};

Status RunConvert(const ConvertCmdOptions& o) {
  VMBACKUP_ASSIGN_OR_RETURN(vmdk::DiskType type, vmdk::ParseDiskType(o.type));
  bool is_vmdk;
  if (o.input_format == "auto") {
    VMBACKUP_ASSIGN_OR_RETURN(is_vmdk, vmdk::LooksLikeVmdk(o.common.file));
  } else if (o.input_format == "vmdk" || o.input_format == "raw") {
    is_vmdk = o.input_format == "vmdk";
  } else {
    return InvalidArgumentError("--input-format must be auto, vmdk or raw");
  }
  std::unique_ptr<io::BlockReader> src;
  if (is_vmdk) {
    VMBACKUP_ASSIGN_OR_RETURN(src, OpenDisk(o.common));
  } else {
    VMBACKUP_ASSIGN_OR_RETURN(src, io::PosixFile::Open(o.common.file, io::OpenMode::kReadOnly));
  }
  VMBACKUP_ASSIGN_OR_RETURN(vmdk::ConvertStats stats, vmdk::ConvertDisk(*src, o.out, type));
  if (Flags().json) {
    json j{{"input", o.common.file},
           {"input_format", is_vmdk ? "vmdk" : "raw"},
           {"output", o.out},
           {"type", o.type},
           {"capacity", src->size()},
           {"bytes_scanned", stats.bytes_scanned},
           {"bytes_written", stats.bytes_written}};
    std::printf("%s\n", j.dump(2).c_str());
  } else {
    std::printf("%s (%s) -> %s (%s): %llu bytes scanned, %llu bytes of data written\n",
                o.common.file.c_str(), is_vmdk ? "vmdk" : "raw", o.out.c_str(), o.type.c_str(),
                (unsigned long long)stats.bytes_scanned, (unsigned long long)stats.bytes_written);
  }
  return Status::Ok();
}

void AddCommon(CLI::App* cmd, CommonOptions* o) {
  cmd->add_option("FILE", o->file, "VMDK file (descriptor or sparse file)")->required();
  cmd->add_flag("--ignore-cid", o->ignore_cid,
                "open a chain whose parentCID does not match its parent (recovery)");
}

template <class Opts, class Fn>
void Bind(CLI::App* cmd, std::shared_ptr<Opts> opts, int* exit_code, Fn fn) {
  cmd->callback([opts, exit_code, fn] {
    Status s = fn(*opts);
    *exit_code = s.ok() ? kExitOk : ReportError(s);
  });
}

}  // namespace

void AddVmdkCommands(CLI::App& app, int* exit_code) {
  CLI::App* vmdk = app.add_subcommand("vmdk", "inspect, read, create and convert VMDK disks");
  vmdk->require_subcommand(1);

  auto info = std::make_shared<CommonOptions>();
  CLI::App* c = vmdk->add_subcommand("info", "type, capacity, extents, CID chain, allocation");
  AddCommon(c, info.get());
  Bind(c, info, exit_code, RunInfo);

  auto map = std::make_shared<CommonOptions>();
  c = vmdk->add_subcommand("map", "allocated extents of the chain and the layer holding each");
  AddCommon(c, map.get());
  Bind(c, map, exit_code, RunMap);

  auto cat = std::make_shared<CatOptions>();
  c = vmdk->add_subcommand("cat", "write the disk's raw bytes to stdout");
  AddCommon(c, &cat->common);
  c->add_option("--offset", cat->offset, "first byte (suffixes K, M, G, T)");
  c->add_option("--length", cat->length, "number of bytes (default: to the end)");
  Bind(c, cat, exit_code, RunCat);

  auto write = std::make_shared<WriteCmdOptions>();
  c = vmdk->add_subcommand("write", "write a byte pattern or a file's bytes into the disk");
  AddCommon(c, &write->common);
  c->add_option("--offset", write->offset, "first byte (suffixes K, M, G, T)");
  c->add_option("--length", write->length, "number of bytes");
  c->add_option("--pattern", write->pattern, "byte value to repeat (0-255, or 0xNN)");
  c->add_option("--from", write->from, "file whose bytes to write");
  Bind(c, write, exit_code, RunWrite);

  auto create = std::make_shared<CreateCmdOptions>();
  c = vmdk->add_subcommand("create", "create a new disk");
  c->add_option("FILE", create->file, "descriptor path to create")->required();
  c->add_option("--size", create->size, "capacity (suffixes K, M, G, T)");
  c->add_option("--type", create->type, "flat, vmfs or sparse (default sparse)");
  c->add_option("--parent", create->parent, "make a sparse child (snapshot delta) of this disk");
  c->add_option("--adapter", create->adapter, "ide, lsilogic, buslogic or legacyESX");
  c->add_flag("--zeroed-grain", create->zeroed_grain,
              "sparse: record whole zero grains without data (version 2)");
  Bind(c, create, exit_code, RunCreate);

  auto convert = std::make_shared<ConvertCmdOptions>();
  c = vmdk->add_subcommand("convert", "copy a VMDK or raw image into a new VMDK");
  c->add_option("IN", convert->common.file, "source: a VMDK or a raw image")->required();
  c->add_option("OUT", convert->out, "new VMDK to write")->required();
  c->add_option("--type", convert->type, "flat, vmfs, sparse or stream")->required();
  c->add_option("--input-format", convert->input_format, "auto (default), vmdk or raw");
  c->add_flag("--ignore-cid", convert->common.ignore_cid, "accept parentCID mismatches");
  Bind(c, convert, exit_code, RunConvert);
}

}  // namespace vmbackup::cli
