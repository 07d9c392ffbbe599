#include "host/vmx.h"

#include <algorithm>
#include <random>
#include <regex>

#include "base/strings.h"

namespace vmbackup::host {

Result<Vmx> Vmx::Parse(std::string_view text) {
  Vmx v;
  VMBACKUP_ASSIGN_OR_RETURN(v.cf_, ConfigFile::Parse(text));
  return v;
}

Vmx Vmx::New(const std::string& name, size_t disk_count, bool cbt) {
  Vmx v;
  ConfigFile& c = v.cf_;
  std::random_device rd;
  std::string uuid;
  for (int i = 0; i < 16; ++i)
    uuid += StrFormat(i == 0 ? "%02x" : (i == 8 ? "-%02x" : " %02x"), rd() & 0xff);
  c.Set(".encoding", "UTF-8");
  c.Set("config.version", "8");
  c.Set("virtualHW.version", "14");
  c.Set("displayName", name);
  c.Set("guestOS", "other-64");
  c.Set("memSize", "1024");
  c.Set("numvcpus", "1");
  c.Set("uuid.bios", uuid);
  c.Set("scsi0.present", "TRUE");
  c.Set("scsi0.virtualDev", "pvscsi");
  for (size_t i = 0; i < disk_count; ++i) {
    size_t unit = i < 7 ? i : i + 1;  // unit 7 is the controller itself
    std::string node = StrFormat("scsi0:%zu", unit);
    c.Set(node + ".present", "TRUE");
    c.Set(node + ".fileName", i == 0 ? name + ".vmdk" : StrFormat("%s_%zu.vmdk", name.c_str(), i));
    c.Set(node + ".deviceType", "scsi-hardDisk");
    c.Set(node + ".mode", "persistent");
  }
  v.set_cbt_enabled(cbt);
  v.set_powered_on(false);
  return v;
}

void Vmx::set_cbt_enabled(bool on) {
  cf_.SetBool("ctkEnabled", on);
  auto disks = Disks();
  if (disks) {
    for (const VmxDisk& d : *disks) cf_.SetBool(d.node + ".ctkEnabled", on);
  }
}

uint64_t Vmx::cbt_granularity() const {
  auto v = cf_.Get("vmhost.cbtGranularity");
  if (!v) return 65536;
  auto n = ParseSize(*v);
  return n ? *n : 65536;
}

size_t Vmx::cbt_max_areas() const {
  auto v = cf_.Get("vmhost.cbtMaxAreas");
  if (!v) return 64;
  auto n = ParseUint(*v);
  return n && *n > 0 ? size_t(*n) : 64;
}

Result<std::vector<VmxDisk>> Vmx::Disks() const {
  static const std::regex kNode(R"((scsi|sata|nvme|ide)(\d{1,2}):(\d{1,2})\.filename)",
                                std::regex::icase);
  std::vector<std::pair<std::tuple<int, int, int>, VmxDisk>> found;
  for (const auto& [key, value] : cf_.entries()) {
    std::smatch m;
    if (!std::regex_match(key, m, kNode)) continue;
    std::string node = key.substr(0, key.size() - std::string(".fileName").size());
    if (!cf_.GetBool(node + ".present", false)) continue;
    std::string type = cf_.GetOr(node + ".deviceType", "scsi-hardDisk");
    if (type.find("cdrom") != std::string::npos) continue;
    std::string bus = m[1].str();
    std::transform(bus.begin(), bus.end(), bus.begin(), ::tolower);
    int ctrl = std::stoi(m[2].str()), unit = std::stoi(m[3].str());
    int bus_rank = bus == "scsi" ? 0 : bus == "sata" ? 1 : bus == "nvme" ? 2 : 3;
    int base = bus == "scsi" ? 2000 : bus == "sata" ? 16000 : bus == "nvme" ? 31000 : 3000;
    if (value.empty() || value.find('/') != std::string::npos) {
      return CorruptionError(key + ": disk file name '" + value +
                             "' must be a file in the VM folder");
    }
    found.push_back({{bus_rank, ctrl, unit}, VmxDisk{node, base + 16 * ctrl + unit, value}});
  }
  std::sort(found.begin(), found.end(),
            [](const auto& a, const auto& b) { return a.first < b.first; });
  std::vector<VmxDisk> out;
  for (auto& f : found) out.push_back(std::move(f.second));
  return out;
}

void Vmx::SetDiskFile(const std::string& node, const std::string& file_name) {
  cf_.Set(node + ".fileName", file_name);
}

}  // namespace vmbackup::host
