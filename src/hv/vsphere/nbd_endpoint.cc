#include "hv/vsphere/nbd_endpoint.h"

#include "base/strings.h"
#include "http/http_client.h"

namespace vmbackup::hv::vsphere {
namespace {

constexpr std::string_view kExec = "exec:";

bool HasPrefix(std::string_view s, std::string_view p) { return s.substr(0, p.size()) == p; }

Result<std::string> Substitute(std::string_view text, const NbdEndpointVars& v, bool encode) {
  std::string out;
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] != '{') {
      out += text[i];
      continue;
    }
    const size_t close = text.find('}', i);
    if (close == std::string_view::npos)
      return InvalidArgumentError("--nbd-uri: '{' without '}' in '" + std::string(text) + "'");
    const std::string name(text.substr(i + 1, close - i - 1));
    const std::string* value = name == "vm"              ? &v.vm
                               : name == "vm_moref"      ? &v.vm_moref
                               : name == "key"           ? &v.key
                               : name == "disk"          ? &v.disk
                               : name == "snapshot"      ? &v.snapshot
                               : name == "snapshot_name" ? &v.snapshot_name
                               : name == "file"          ? &v.file
                               : name == "mode"          ? &v.mode
                                                         : nullptr;
    if (!value) {
      return InvalidArgumentError("--nbd-uri: unknown placeholder {" + name +
                                  "} (vm, vm_moref, key, disk, snapshot, snapshot_name, file, "
                                  "mode)");
    }
    out += encode ? http::UrlEncode(*value) : *value;
    i = close;
  }
  return out;
}

}  // namespace

std::string NbdEndpoint::Describe() const {
  if (!command) return uri;
  std::string s = "exec:";
  for (const auto& a : argv) s += (s.size() > 5 ? " " : "") + a;
  return s;
}

Status CheckNbdTemplate(const std::string& tmpl) {
  NbdEndpointVars sample{"vm", "vm-1", "2000", "0", "snapshot-1", "s", "[ds] vm/vm.vmdk", "read"};
  return ExpandNbdTemplate(tmpl, sample).status();
}

Result<NbdEndpoint> ExpandNbdTemplate(const std::string& tmpl, const NbdEndpointVars& vars) {
  NbdEndpoint e;
  if (HasPrefix(tmpl, kExec)) {
    e.command = true;
    for (const std::string& word : Split(tmpl.substr(kExec.size()), ' ')) {
      if (word.empty()) continue;
      VMBACKUP_ASSIGN_OR_RETURN(std::string arg, Substitute(word, vars, false));
      e.argv.push_back(std::move(arg));
    }
    if (e.argv.empty()) return InvalidArgumentError("--nbd-uri: exec: names no command");
    return e;
  }
  if (!HasPrefix(tmpl, "nbd://") && !HasPrefix(tmpl, "nbd+unix://") &&
      !HasPrefix(tmpl, "nbds://") && !HasPrefix(tmpl, "nbds+unix://")) {
    return InvalidArgumentError("--nbd-uri '" + tmpl +
                                "': expected nbd://, nbd+unix://, nbds://, nbds+unix:// or exec:");
  }
  e.tls = HasPrefix(tmpl, "nbds");
  VMBACKUP_ASSIGN_OR_RETURN(e.uri, Substitute(tmpl, vars, true));
  return e;
}

}  // namespace vmbackup::hv::vsphere
