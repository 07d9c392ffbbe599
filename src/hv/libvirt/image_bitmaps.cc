#include "hv/libvirt/image_bitmaps.h"

#include <libvirt/libvirt-qemu.h>

#include <cstdlib>
#include <nlohmann/json.hpp>
#include <set>

#include "base/subprocess.h"
#include "hv/libvirt/session.h"
#include "hv/libvirt/virt.h"

namespace vmbackup::hv::libvirt {

using nlohmann::json;

Result<std::vector<ImageBitmap>> ReadImageBitmaps(const std::string& path) {
  VMBACKUP_ASSIGN_OR_RETURN(std::string out,
                            RunCommandOk({"qemu-img", "info", "-U", "--output=json", path}, 60));
  const json j = json::parse(out, nullptr, false);
  if (!j.is_object()) return ProtocolError("qemu-img info of " + path + " is not JSON");
  std::vector<ImageBitmap> bitmaps;
  const auto spec = j.find("format-specific");
  if (spec == j.end() || !spec->is_object() || !spec->contains("data")) return bitmaps;
  const json& data = (*spec)["data"];
  if (!data.is_object() || !data.contains("bitmaps") || !data["bitmaps"].is_array()) return bitmaps;
  for (const json& b : data["bitmaps"]) {
    if (!b.is_object() || !b.contains("name") || !b["name"].is_string()) continue;
    ImageBitmap ib;
    ib.name = b["name"].get<std::string>();
    if (b.contains("flags") && b["flags"].is_array()) {
      for (const json& f : b["flags"]) {
        ib.in_use = ib.in_use || f == "in-use";
        ib.enabled = ib.enabled || f == "auto";
      }
    }
    bitmaps.push_back(std::move(ib));
  }
  return bitmaps;
}

namespace {

Result<json> Monitor(virDomainPtr dom, const json& command) {
  char* reply = nullptr;
  if (virDomainQemuMonitorCommand(dom, command.dump().c_str(), &reply, 0) < 0)
    return LastError("QEMU monitor: " + command.value("execute", std::string("command")));
  const std::string text = TakeString(reply);
  json j = json::parse(text, nullptr, false);
  if (!j.is_object()) return ProtocolError("QEMU monitor: an answer that is not JSON");
  if (j.contains("error")) {
    return IOError("QEMU monitor: " + command.value("execute", std::string("command")) + ": " +
                   j["error"].value("desc", std::string("failed")));
  }
  return j["return"];
}

// The format node QEMU opened for the image at `path` ("" when none), and its bitmaps.
struct OpenImage {
  std::string node;
  std::set<std::string> bitmaps;
};
Result<OpenImage> FindOpenImage(virDomainPtr dom, const std::string& path) {
  VMBACKUP_ASSIGN_OR_RETURN(json nodes, Monitor(dom, {{"execute", "query-named-block-nodes"},
                                                      {"arguments", {{"flat", true}}}}));
  if (!nodes.is_array()) return ProtocolError("QEMU monitor: query-named-block-nodes");
  OpenImage image;
  for (const json& n : nodes) {
    if (!n.is_object() || n.value("drv", "") != "qcow2" || n.value("file", "") != path) continue;
    image.node = n.value("node-name", "");
    if (n.contains("dirty-bitmaps") && n["dirty-bitmaps"].is_array()) {
      for (const json& b : n["dirty-bitmaps"])
        if (b.is_object()) image.bitmaps.insert(b.value("name", ""));
    }
    break;
  }
  return image;
}

Result<std::set<std::string>> CheckpointNames(virDomainPtr dom, const std::string& vm_name) {
  virDomainCheckpointPtr* cps = nullptr;
  const int n = virDomainListAllCheckpoints(dom, &cps, 0);
  if (n < 0) return LastError("list the checkpoints of " + vm_name);
  std::set<std::string> names;
  for (int i = 0; i < n; ++i) {
    CheckpointPtr cp(cps[i]);
    names.insert(virDomainCheckpointGetName(cp.get()));
  }
  std::free(cps);
  return names;
}

}  // namespace

Result<std::vector<std::string>> RemoveStaleBitmaps(virDomainPtr dom, const std::string& vm_name,
                                                    const std::vector<DomainDisk>& disks,
                                                    bool offline) {
  VMBACKUP_ASSIGN_OR_RETURN(std::set<std::string> checkpoints, CheckpointNames(dom, vm_name));
  std::vector<std::string> removed;
  for (const DomainDisk& d : disks) {
    if (d.format != "qcow2" || d.source.empty()) continue;
    auto bitmaps = ReadImageBitmaps(d.source);
    if (!bitmaps) continue;  // an image qemu-img cannot read has nothing we can remove either
    std::vector<std::string> stale;
    for (const ImageBitmap& b : *bitmaps) {
      if (b.name.rfind(kCheckpointPrefix, 0) == 0 && !checkpoints.count(b.name))
        stale.push_back(b.name);
    }
    if (stale.empty()) continue;
    OpenImage image;
    if (!offline) {
      VMBACKUP_ASSIGN_OR_RETURN(image, FindOpenImage(dom, d.source));
    }
    for (const std::string& name : stale) {
      Status s;
      if (offline) {
        s = RunCommandOk({"qemu-img", "bitmap", "--remove", d.source, name}, 120).status();
      } else if (image.bitmaps.count(name)) {
        s = Monitor(dom, {{"execute", "block-dirty-bitmap-remove"},
                          {"arguments", {{"node", image.node}, {"name", name}}}})
                .status();
      } else {
        continue;  // not open in QEMU (any more): it goes with the image's next offline hygiene
      }
      if (!s.ok()) return s.WithContext("remove stale bitmap " + name + " of " + vm_name);
      removed.push_back(d.target + ":" + name);
    }
  }
  return removed;
}

}  // namespace vmbackup::hv::libvirt
