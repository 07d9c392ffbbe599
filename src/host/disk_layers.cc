#include "host/disk_layers.h"

#include <dirent.h>
#include <unistd.h>

#include <cerrno>
#include <memory>

#include "base/strings.h"
#include "format/vmdk/layer.h"
#include "io/posix_file.h"

namespace vmbackup::host {
namespace {

bool IsDeltaName(const std::string& name, const std::string& stem) {
  // <stem>-NNNNNN.vmdk
  if (name.size() != stem.size() + 12 || name.compare(0, stem.size(), stem) != 0) return false;
  if (name[stem.size()] != '-' || name.compare(name.size() - 5, 5, ".vmdk") != 0) return false;
  for (size_t i = stem.size() + 1; i < stem.size() + 7; ++i)
    if (name[i] < '0' || name[i] > '9') return false;
  return true;
}

Result<std::vector<std::string>> ListDir(const std::string& dir) {
  DIR* d = ::opendir(dir.c_str());
  if (!d) return PosixError("list " + dir, errno);
  std::vector<std::string> names;
  while (dirent* e = ::readdir(d)) names.emplace_back(e->d_name);
  ::closedir(d);
  return names;
}

}  // namespace

std::string DiskStem(const std::string& vm, size_t index) {
  return index == 0 ? vm : vm + "_" + std::to_string(index);
}

std::string CtkFileFor(const std::string& layer_file) {
  std::string stem = layer_file;
  if (stem.size() > 5 && stem.compare(stem.size() - 5, 5, ".vmdk") == 0)
    stem.resize(stem.size() - 5);
  return stem + "-ctk.vmdk";
}

Result<std::map<std::string, LayerNode>> ScanLayers(const std::string& dir,
                                                    const std::string& stem) {
  VMBACKUP_ASSIGN_OR_RETURN(std::vector<std::string> names, ListDir(dir));
  std::map<std::string, LayerNode> out;
  for (const std::string& name : names) {
    bool base = name == stem + ".vmdk";
    if (!base && !IsDeltaName(name, stem)) continue;
    LayerNode node;
    node.file = name;
    node.is_base = base;
    auto layer = vmdk::Layer::Open(io::JoinPath(dir, name), false, io::DirName(dir));
    if (!layer) {
      node.problem = layer.error().message();
    } else {
      const vmdk::Descriptor& d = (*layer)->descriptor();
      if (d.has_parent()) node.parent = io::BaseName(d.parent_file_name_hint);
      node.change_track_path = d.change_track_path;
    }
    out[name] = std::move(node);
  }
  return out;
}

Result<std::string> NextDeltaName(const std::string& dir, const std::string& stem) {
  for (int n = 1; n < 1000000; ++n) {
    std::string name = StrFormat("%s-%06d.vmdk", stem.c_str(), n);
    if (!io::PathExists(io::JoinPath(dir, name))) return name;
  }
  return InternalError("no free delta name for " + stem);
}

Status RemoveLayerFiles(const std::string& dir, const LayerNode& layer) {
  if (layer.is_base) return InternalError("refusing to remove the base disk " + layer.file);
  for (const std::string& f : {layer.change_track_path, layer.file}) {
    if (f.empty()) continue;
    std::string p = io::JoinPath(dir, f);
    if (::unlink(p.c_str()) != 0 && errno != ENOENT) return PosixError("remove " + p, errno);
  }
  return Status::Ok();
}

}  // namespace vmbackup::host
