#include "hv/libvirt/libvirt_xml.h"

#include <algorithm>
#include <cctype>

#include "base/strings.h"
#include "xml/xml.h"

namespace vmbackup::hv::libvirt {

Result<DomainDesc> ParseDomainXml(std::string_view text) {
  VMBACKUP_ASSIGN_OR_RETURN(xml::Document doc, xml::Document::Parse(text, "libvirt domain XML"));
  xml::Node root = doc.root();
  if (root.name() != "domain") {
    return CorruptionError("libvirt domain XML: the root element is <" + root.name() +
                           ">, not <domain>");
  }
  DomainDesc d;
  d.name = root.child("name").text();
  d.uuid = root.child("uuid").text();
  if (d.name.empty()) return CorruptionError("libvirt domain XML: no <name>");
  for (xml::Node s : root.children("seclabel")) {
    if (s.attr("model").value_or("") == "dac") d.qemu_user = s.child("label").text();
  }
  for (xml::Node disk : root.child("devices").children("disk")) {
    DomainDisk dd;
    dd.device = disk.attr("device").value_or("disk");
    dd.type = disk.attr("type").value_or("file");
    dd.target = disk.child("target").attr("dev").value_or("");
    dd.format = disk.child("driver").attr("type").value_or("raw");
    xml::Node src = disk.child("source");
    if (dd.type == "file") dd.source = src.attr("file").value_or("");
    if (dd.type == "block") dd.source = src.attr("dev").value_or("");
    xml::Node backing = disk.child("backingStore");
    dd.has_backing = backing && backing.child("source");
    if (dd.target.empty()) return CorruptionError("libvirt domain XML: a disk has no target");
    // A target names files (a new domain's disks, a job's scratch files): a saved definition
    // comes from a repository, which must not choose a path ("../x"). libvirt's are vda, sdb..
    if (dd.target.size() > 32 ||
        dd.target.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789") != std::string::npos) {
      return CorruptionError("libvirt domain XML: disk target '" + dd.target +
                             "' is not letters and digits");
    }
    for (const auto& other : d.disks) {
      if (other.target == dd.target)
        return CorruptionError("libvirt domain XML: two disks have target " + dd.target);
    }
    d.disks.push_back(std::move(dd));
  }
  for (xml::Node ch : root.child("devices").children("channel")) {
    if (ch.child("target").attr("name").value_or("") == "org.qemu.guest_agent.0")
      d.has_agent_channel = true;
  }
  return d;
}

std::vector<DomainDisk> BackupDisks(const DomainDesc& d) {
  std::vector<DomainDisk> out;
  for (const auto& disk : d.disks) {
    if (disk.device == "disk" && (disk.type == "file" || disk.type == "block") &&
        !disk.source.empty())
      out.push_back(disk);
  }
  return out;
}

bool SafeDomainName(std::string_view name) {
  if (name.empty() || name.size() > 200 || name[0] == '.') return false;
  for (char c : name) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_' && c != '.')
      return false;
  }
  return true;
}

Result<std::string> NewDomainXml(std::string_view config, std::string_view name,
                                 const std::vector<NewDisk>& disks) {
  VMBACKUP_ASSIGN_OR_RETURN(xml::Document doc, xml::Document::Parse(config, "saved domain XML"));
  VMBACKUP_ASSIGN_OR_RETURN(DomainDesc desc, ParseDomainXml(config));
  xml::Node root = doc.root();
  root.child("name").SetText(name);
  for (xml::Node u = root.child("uuid"); u; u = root.child("uuid")) u.Remove();
  for (xml::Node m = root.child("metadata"); m; m = root.child("metadata")) m.Remove();
  xml::Node devices = root.child("devices");
  for (xml::Node iface : devices.children("interface")) {
    for (xml::Node mac = iface.child("mac"); mac; mac = iface.child("mac")) mac.Remove();
  }
  size_t next = 0;
  for (xml::Node disk : devices.children("disk")) {
    const std::string device = disk.attr("device").value_or("disk"),
                      type = disk.attr("type").value_or("file");
    xml::Node src = disk.child("source");
    const std::string path = type == "file"    ? src.attr("file").value_or("")
                             : type == "block" ? src.attr("dev").value_or("")
                                               : "";
    if (device != "disk" || (type != "file" && type != "block") || path.empty()) continue;
    if (next >= disks.size()) break;
    const NewDisk& nd = disks[next++];
    disk.SetAttr("type", "file");
    for (xml::Node b = disk.child("backingStore"); b; b = disk.child("backingStore")) b.Remove();
    for (xml::Node old = disk.child("source"); old; old = disk.child("source")) old.Remove();
    src = disk.AddChild("source");
    src.SetAttr("file", nd.path);
    xml::Node driver = disk.child("driver");
    if (!driver) {
      driver = disk.AddChild("driver");
      driver.SetAttr("name", "qemu");
    }
    driver.SetAttr("type", nd.format);
    if (!nd.nbd_backing.empty()) {
      xml::Node b = disk.AddChild("backingStore");
      b.SetAttr("type", "network");
      b.AddChild("format").SetAttr("type", "raw");
      xml::Node bs = b.AddChild("source");
      bs.SetAttr("protocol", "nbd");
      xml::Node host = bs.AddChild("host");
      host.SetAttr("transport", "unix");
      host.SetAttr("socket", nd.nbd_backing);
      driver.SetAttr("error_policy", "stop");
      driver.SetAttr("rerror_policy", "stop");
    }
  }
  if (next != disks.size() || BackupDisks(desc).size() != disks.size()) {
    return InvalidArgumentError(StrFormat("the saved domain has %zu disks to restore, %zu given",
                                          BackupDisks(desc).size(), disks.size()));
  }
  return doc.ToString();
}

Result<std::string> SandboxDomainXml(std::string_view domain_xml, const std::string& console_log) {
  VMBACKUP_ASSIGN_OR_RETURN(xml::Document doc, xml::Document::Parse(domain_xml, "domain XML"));
  xml::Node devices = doc.root().child("devices");
  for (const char* kind : {"interface", "hostdev", "filesystem", "redirdev", "smartcard"}) {
    for (xml::Node n = devices.child(kind); n; n = devices.child(kind)) n.Remove();
  }
  // A console that is not the first serial port's alias, and every other serial port, go.
  bool first = true;
  for (xml::Node serial : devices.children("serial")) {
    if (!first) {
      serial.Remove();
      continue;
    }
    first = false;
    for (xml::Node l = serial.child("log"); l; l = serial.child("log")) l.Remove();
    if (serial.attr("type").value_or("") == "file") {
      serial.child("source").SetAttr("path", console_log);
    } else {
      xml::Node log = serial.AddChild("log");
      log.SetAttr("file", console_log);
      log.SetAttr("append", "off");
    }
  }
  for (xml::Node console : devices.children("console")) {
    if (first || console.child("target").attr("type").value_or("serial") != "serial")
      console.Remove();
  }
  if (first) {  // no serial port: one that only logs
    xml::Node serial = devices.AddChild("serial");
    serial.SetAttr("type", "file");
    serial.AddChild("source").SetAttr("path", console_log);
    serial.AddChild("target").SetAttr("port", "0");
  }
  return doc.ToString();
}

std::string JobServer::Endpoint() const {
  return socket.empty() ? "tcp:" + host + ":" + std::to_string(port) : "unix:" + socket;
}

std::optional<JobServer> JobServer::FromTcpEndpoint(std::string_view endpoint) {
  if (endpoint.rfind("tcp:", 0) != 0) return std::nullopt;
  const size_t colon = endpoint.rfind(':');
  auto port = ParseUint(endpoint.substr(colon + 1));
  if (colon <= 4 || !port || *port == 0 || *port > 65535) return std::nullopt;
  return JobServer{"", std::string(endpoint.substr(4, colon - 4)), int(*port), true};
}

std::string BackupJobXml(const JobServer& server, const std::vector<JobDisk>& disks) {
  std::string x = "<domainbackup mode='pull'>\n  <server ";
  if (!server.socket.empty()) {
    x += "transport='unix' socket='" + xml::Escape(server.socket) + "'";
  } else {
    x += "transport='tcp' name='" + xml::Escape(server.host) + "' port='" +
         std::to_string(server.port) + "' tls='" + (server.tls ? "yes" : "no") + "'";
  }
  x += "/>\n  <disks>\n";
  for (const JobDisk& d : disks) {
    x += "    <disk name='" + xml::Escape(d.target) + "' backup='yes' type='file'";
    if (d.incremental_from.empty()) {
      x += " backupmode='full'";
    } else {
      x += " backupmode='incremental' incremental='" + xml::Escape(d.incremental_from) + "'";
    }
    x += ">\n      <scratch file='" + xml::Escape(d.scratch) + "'/>\n    </disk>\n";
  }
  return x + "  </disks>\n</domainbackup>\n";
}

std::string CheckpointXml(const std::string& name, const std::vector<std::string>& all_targets,
                          const std::vector<std::string>& bitmap_targets) {
  std::string x = "<domaincheckpoint>\n  <name>" + xml::Escape(name) + "</name>\n  <disks>\n";
  for (const std::string& t : all_targets) {
    const bool bitmap =
        std::find(bitmap_targets.begin(), bitmap_targets.end(), t) != bitmap_targets.end();
    x += "    <disk name='" + xml::Escape(t) + "' checkpoint='" + (bitmap ? "bitmap" : "no") +
         "'/>\n";
  }
  return x + "  </disks>\n</domaincheckpoint>\n";
}

std::string JobEndpoint(std::string_view job_xml) {
  auto doc = xml::Document::Parse(job_xml, "backup job XML");
  if (!doc) return "";
  xml::Node server = doc->root().child("server");
  JobServer js;
  js.socket = server.attr("socket").value_or("");
  if (js.socket.empty()) {
    js.host = server.attr("name").value_or("");
    auto port = ParseUint(server.attr("port").value_or(""));
    if (js.host.empty() || !port || *port > 65535) return "";
    js.port = int(*port);
  }
  return js.Endpoint();
}

std::string RemoteHost(std::string_view uri) {
  const size_t scheme = uri.find("://");
  if (scheme == std::string_view::npos) return "";
  std::string_view rest = uri.substr(scheme + 3);
  rest = rest.substr(0, rest.find_first_of("/?"));
  if (size_t at = rest.rfind('@'); at != std::string_view::npos) rest = rest.substr(at + 1);
  std::string host;
  if (!rest.empty() && rest[0] == '[') {
    host = std::string(rest.substr(1, rest.find(']') - 1));
  } else {
    host = std::string(rest.substr(0, rest.find(':')));
  }
  if (host == "localhost" || host == "127.0.0.1" || host == "::1") return "";
  return host;
}

}  // namespace vmbackup::hv::libvirt
