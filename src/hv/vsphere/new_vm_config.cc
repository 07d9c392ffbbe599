#include "hv/vsphere/new_vm_config.h"

#include <openssl/rand.h>

#include <algorithm>
#include <regex>

#include "base/strings.h"

namespace vmbackup::hv::vsphere {
namespace {

struct Entry {
  std::string key, value;  // value as written between the quotes (VMware's |XX escapes kept)
};

std::string Lower(std::string s) {
  for (char& c : s) c = char(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// VMware's escaping of a value: '"', '|', '#' and control characters as |XX.
std::string EscapeValue(std::string_view v) {
  std::string out;
  for (unsigned char c : v) {
    if (c == '"' || c == '|' || c == '#' || c < 0x20) {
      out += StrFormat("|%02X", c);
    } else {
      out += char(c);
    }
  }
  return out;
}

std::vector<Entry> Parse(std::string_view text) {
  std::vector<Entry> out;
  for (const std::string& raw : Split(text, '\n')) {
    std::string_view line = Trim(raw);
    if (line.empty() || line[0] == '#') continue;
    const size_t eq = line.find('=');
    if (eq == std::string_view::npos) continue;
    std::string key(Trim(line.substr(0, eq)));
    std::string_view v = Trim(line.substr(eq + 1));
    if (v.size() >= 2 && v.front() == '"' && v.back() == '"') v = v.substr(1, v.size() - 2);
    if (!key.empty()) out.push_back({key, std::string(v)});
  }
  return out;
}

std::string NewBiosUuid() {
  uint8_t b[16];
  RAND_bytes(b, sizeof b);
  std::string s;
  for (int i = 0; i < 16; ++i) s += StrFormat(i == 8 ? "-%02x" : (i ? " %02x" : "%02x"), b[i]);
  return s;
}

bool LeavesFolder(std::string_view v) {
  return !v.empty() && (v[0] == '/' || v.find("..") != std::string_view::npos);
}

}  // namespace

Result<NewVmConfig> MakeNewVmConfig(std::string_view saved, const std::string& name,
                                    size_t disk_count, const std::string& power_on_block) {
  static const std::regex kDrop(
      "uuid\\.(bios|location)|vc\\.uuid|displayname|sched\\.swap\\.derivedname|nvram|"
      "ctkenabled|.*\\.ctkenabled|ethernet[0-9]+\\.(generatedaddress|generatedaddressoffset)|"
      "vmhost\\.(powerstate|poweronblocked)|vmbackup\\..*|checkpoint\\..*|migrate\\..*|"
      "extendedconfigfile|vmotion\\..*|tools\\.remindinstall|cleanshutdown|softpoweroff");
  static const std::regex kDiskFile("((scsi|sata|ide|nvme)[0-9]+:[0-9]+)\\.filename");
  std::vector<Entry> in = Parse(saved);
  // The disks of the saved configuration, in the order vSphere numbers them (controller, unit).
  std::vector<std::string> nodes;
  for (const Entry& e : in) {
    std::smatch m;
    const std::string k = Lower(e.key);
    if (std::regex_match(k, m, kDiskFile) && e.value.size() > 5 &&
        EqualsIgnoreCase(e.value.substr(e.value.size() - 5), ".vmdk")) {
      bool present = true;
      for (const Entry& p : in)
        if (Lower(p.key) == m[1].str() + ".present" && Lower(p.value) == "false") present = false;
      if (present) nodes.push_back(m[1].str());
    }
  }
  std::sort(nodes.begin(), nodes.end());
  NewVmConfig out;
  for (size_t i = 0; i < disk_count; ++i)
    out.disk_files.push_back(i == 0 ? name + ".vmdk" : StrFormat("%s_%zu.vmdk", name.c_str(), i));
  std::vector<Entry> kept;
  if (nodes.empty() || in.empty()) {
    kept = {{".encoding", "UTF-8"},      {"config.version", "8"},
            {"virtualHW.version", "14"}, {"guestOS", "other-64"},
            {"memsize", "256"},          {"numvcpus", "1"},
            {"scsi0.present", "TRUE"},   {"scsi0.virtualDev", "lsilogic"}};
    for (size_t i = 0; i < disk_count; ++i) {
      const std::string node = StrFormat("scsi0:%zu", i);
      kept.push_back({node + ".present", "TRUE"});
      kept.push_back({node + ".deviceType", "scsi-hardDisk"});
      kept.push_back({node + ".fileName", EscapeValue(out.disk_files[i])});
    }
  } else {
    if (nodes.size() != disk_count) {
      return InvalidArgumentError(StrFormat("the saved configuration has %zu disks, the point %zu",
                                            nodes.size(), disk_count));
    }
    for (const Entry& e : in) {
      const std::string k = Lower(e.key);
      if (std::regex_match(k, kDrop)) continue;
      std::smatch m;
      if (std::regex_match(k, m, kDiskFile)) {
        auto it = std::find(nodes.begin(), nodes.end(), m[1].str());
        if (it != nodes.end()) {
          kept.push_back({e.key, EscapeValue(out.disk_files[size_t(it - nodes.begin())])});
          continue;
        }
      }
      if (LeavesFolder(e.value)) continue;
      kept.push_back(e);
    }
  }
  kept.push_back({"displayName", EscapeValue(name)});
  kept.push_back({"uuid.bios", NewBiosUuid()});
  if (!power_on_block.empty()) {
    // vmhost honours its own key from the first moment; vSphere gets DisableMethods as well.
    kept.push_back({"vmhost.powerOnBlocked", EscapeValue(power_on_block)});
    kept.push_back({"vmbackup.powerOnBlocked", EscapeValue(power_on_block)});
  }
  for (const Entry& e : kept) out.vmx += e.key + " = \"" + e.value + "\"\n";
  return out;
}

}  // namespace vmbackup::hv::vsphere
