#include "instant/instant.h"

#include <dirent.h>
#include <grp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <thread>

#include "base/process.h"
#include "base/strings.h"
#include "base/subprocess.h"
#include "hv/libvirt/libvirt_driver.h"
#include "hv/libvirt/libvirt_xml.h"
#include "hv/libvirt/virt.h"
#include "io/posix_file.h"
#include "live/server_process.h"
#include "xml/xml.h"

namespace vmbackup::instant {
namespace {

namespace lv = hv::libvirt;
using Clock = std::chrono::steady_clock;

// QEMU's user under libvirt (Debian): the export sockets are read-write for its group.
constexpr const char* kQemuGroup = "libvirt-qemu";

std::string StateRoot(const Options& o) {
  if (!o.state_root.empty()) return o.state_root;
  if (::geteuid() == 0) return "/var/lib/vmbackup/instant";
  const char* home = std::getenv("HOME");
  return std::string(home ? home : ".") + "/.local/state/vmbackup/instant";
}

std::string OverlayDir(const Options& o) {
  return o.overlay_dir.empty() ? lv::DefaultImagesDir() : o.overlay_dir;
}

std::string InstanceDir(const Options& o, const std::string& name) {
  return StateRoot(o) + "/" + name;
}

Status SaveState(const std::string& dir, const nlohmann::json& state) {
  return io::WriteFileAtomic(dir + "/state.json", state.dump(2) + "\n");
}

Result<nlohmann::json> LoadState(const Options& o, const std::string& name) {
  if (!lv::SafeDomainName(name)) return InvalidArgumentError("no instance '" + name + "'");
  auto text = io::ReadSmallFile(InstanceDir(o, name) + "/state.json", 1 << 20);
  if (!text) return NotFoundError("no instant recovery named " + name + " (vmbackup instant list)");
  auto j = nlohmann::json::parse(*text, nullptr, false);
  if (!j.is_object()) return CorruptionError("the record of instance " + name + " is damaged");
  return j;
}

Status MakeDirs(const std::string& path, mode_t mode) {
  std::error_code ec;
  std::filesystem::create_directories(path, ec);
  if (ec) return PosixError("create " + path, ec.value());
  if (::chmod(path.c_str(), mode) != 0) return PosixError("chmod " + path, errno);
  return Status::Ok();
}

live::ExportOptions ExportFor(const Options& o, const nlohmann::json& state, int key,
                              const std::string& dir) {
  live::ExportOptions eo;
  eo.plugin = o.plugin;
  eo.repo_location = state.value("repo", o.repo_location);
  eo.s3_ca_file = state.value("s3_ca_file", o.s3_ca_file);
  eo.point_id = state.value("point", "");
  eo.disk_key = key;
  eo.key = o.key;
  eo.cache_mib = o.cache_mib;
  eo.socket = StrFormat("%s/point-%d.sock", dir.c_str(), key);
  eo.pidfile = StrFormat("%s/point-%d.pid", dir.c_str(), key);
  eo.log_file = StrFormat("%s/point-%d.log", dir.c_str(), key);
  eo.detach = true;
  return eo;
}

// QEMU connects to a proxy, never to the export itself: the proxy rides out a restart of the
// export (reconnect-delay), which libvirt cannot ask of QEMU for a backing store.
live::ProxyOptions ProxyFor(int key, const std::string& dir) {
  live::ProxyOptions po;
  po.backing_socket = StrFormat("%s/point-%d.sock", dir.c_str(), key);
  po.socket = StrFormat("%s/disk-%d.sock", dir.c_str(), key);
  po.pidfile = StrFormat("%s/disk-%d.pid", dir.c_str(), key);
  po.log_file = StrFormat("%s/disk-%d.log", dir.c_str(), key);
  po.detach = true;
  return po;
}

Result<nlohmann::json> StartOneExport(const live::ExportOptions& eo) {
  VMBACKUP_ASSIGN_OR_RETURN(auto server, live::StartExport(eo));
  const pid_t pid = server->Release();
  return nlohmann::json{{"pid", pid}, {"start", ProcessStart(pid)}};
}

Result<nlohmann::json> StartOneProxy(const live::ProxyOptions& po) {
  VMBACKUP_ASSIGN_OR_RETURN(auto server, live::StartProxy(po));
  if (::getgrnam(kQemuGroup)) VMBACKUP_RETURN_IF_ERROR(live::ShareSocket(po.socket, kQemuGroup));
  const pid_t pid = server->Release();
  return nlohmann::json{{"pid", pid}, {"start", ProcessStart(pid)}};
}

bool Alive(const nlohmann::json& disk, const char* server) {
  const auto& e = disk.value(server, nlohmann::json::object());
  const int64_t pid = e.value("pid", int64_t(0));
  return pid > 0 && ProcessAlive(pid, e.value("start", uint64_t(0)));
}

bool ExportAlive(const nlohmann::json& disk) {
  return Alive(disk, "export") && Alive(disk, "proxy");
}

Result<lv::DomainPtr> DomainOf(virConnectPtr conn, const nlohmann::json& state) {
  const std::string uuid = state.value("uuid", "");
  if (uuid.empty()) return NotFoundError("no domain recorded");
  lv::DomainPtr dom(virDomainLookupByUUIDString(conn, uuid.c_str()));
  if (!dom) return lv::LastError("domain " + state.value("name", "") + " (" + uuid + ")");
  return dom;
}

std::string StateName(virDomainPtr dom) {
  int state = 0, reason = 0;
  if (virDomainGetState(dom, &state, &reason, 0) != 0) return "unknown";
  switch (state) {
    case VIR_DOMAIN_RUNNING: return "running";
    case VIR_DOMAIN_PAUSED: return "paused";
    case VIR_DOMAIN_SHUTOFF: return "shut off";
    case VIR_DOMAIN_CRASHED: return "crashed";
    default: return "other";
  }
}

void StopExports(const nlohmann::json& state) {
  for (const auto& d : state.value("disks", nlohmann::json::array())) {
    for (const char* server : {"proxy", "export"}) {
      const auto& e = d.value(server, nlohmann::json::object());
      live::StopDetached(pid_t(e.value("pid", 0)), e.value("start", uint64_t(0)));
    }
  }
}

// One disk copied while the domain runs (libvirt block copy, a transient job), then the pivot
// once the copy caught up. kUnavailable when the job ended by itself before (a read failed).
Status CopyAndPivot(virDomainPtr dom, const std::string& target, const std::string& dest,
                    uint64_t bandwidth_mib) {
  const std::string dest_xml =
      "<disk type='file'><source file='" + xml::Escape(dest) + "'/><driver type='qcow2'/></disk>";
  virTypedParameterPtr params = nullptr;
  int nparams = 0, max = 0;
  if (bandwidth_mib)
    virTypedParamsAddULLong(&params, &nparams, &max, VIR_DOMAIN_BLOCK_COPY_BANDWIDTH,
                            bandwidth_mib << 20);
  const int rc = virDomainBlockCopy(dom, target.c_str(), dest_xml.c_str(), params, nparams,
                                    VIR_DOMAIN_BLOCK_COPY_TRANSIENT_JOB);
  virTypedParamsFree(params, nparams);
  if (rc != 0) return lv::LastError("copy disk " + target);
  for (;;) {
    virDomainBlockJobInfo info{};
    const int got = virDomainGetBlockJobInfo(dom, target.c_str(), &info, 0);
    if (got < 0) return lv::LastError("follow the copy of " + target);
    if (got == 0) return UnavailableError("the copy of disk " + target + " ended before the pivot");
    if (info.end > 0 && info.cur == info.end) {
      if (virDomainBlockJobAbort(dom, target.c_str(), VIR_DOMAIN_BLOCK_JOB_ABORT_PIVOT) == 0)
        return Status::Ok();
      if (lv::LastErrorNumber() != VIR_ERR_BLOCK_COPY_ACTIVE &&
          lv::LastErrorNumber() != VIR_ERR_OPERATION_INVALID)
        return lv::LastError("pivot disk " + target);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
}

}  // namespace

Result<StartReport> Start(const repo::Point& point, const std::string& name, const Options& o) {
  const auto started = Clock::now();
  if (!lv::SafeDomainName(name)) {
    return InvalidArgumentError("domain name '" + name +
                                "': use letters, digits, '-', '_' and '.' (it names its files)");
  }
  auto saved = lv::ParseDomainXml(point.config);
  if (!saved) {
    return NotSupportedError("point " + point.id +
                             " was not taken through libvirt (its configuration is not a domain "
                             "definition): instant recovery needs one; restore it with --to-vm");
  }
  const auto backup_disks = lv::BackupDisks(*saved);
  if (backup_disks.size() != point.disks.size()) {
    return CorruptionError(StrFormat("point %s: its definition has %zu disks, the point %zu",
                                     point.id.c_str(), backup_disks.size(), point.disks.size()));
  }
  VMBACKUP_ASSIGN_OR_RETURN(lv::ConnectPtr conn, lv::Connect(o.uri));
  if (lv::DomainPtr existing{virDomainLookupByName(conn.get(), name.c_str())})
    return AlreadyExistsError("domain " + name + " exists");
  const std::string dir = InstanceDir(o, name);
  if (io::PathExists(dir + "/state.json"))
    return AlreadyExistsError("instance " + name + " exists (vmbackup instant stop " + name + ")");
  // The instance folder: QEMU's user passes through it to the sockets (0711), nobody lists it.
  VMBACKUP_RETURN_IF_ERROR(MakeDirs(StateRoot(o), 0755));
  VMBACKUP_RETURN_IF_ERROR(MakeDirs(dir, 0711));
  StartReport report;
  report.name = name;
  nlohmann::json state = {{"name", name},
                          {"uri", o.uri},
                          {"point", point.id},
                          {"repo", o.repo_location},
                          {"s3_ca_file", o.s3_ca_file},
                          {"disks", nlohmann::json::array()}};
  if (o.sandbox) {
    const pid_t self = ::getpid();
    state["sandbox"] = true;
    state["owner"] = {{"pid", self}, {"start", ProcessStart(self)}};
    report.console_log = dir + "/console.log";
  }
  VMBACKUP_RETURN_IF_ERROR(SaveState(dir, state));
  auto steps = [&]() -> Status {
    std::vector<lv::NewDisk> disks;
    for (const auto& pd : point.disks) {
      live::ExportOptions eo = ExportFor(o, state, pd.key, dir);
      const live::ProxyOptions po = ProxyFor(pd.key, dir);
      nlohmann::json d = {{"key", pd.key}, {"socket", po.socket}};
      VMBACKUP_ASSIGN_OR_RETURN(d["export"], StartOneExport(eo));
      state["disks"].push_back(d);
      VMBACKUP_RETURN_IF_ERROR(SaveState(dir, state));
      VMBACKUP_ASSIGN_OR_RETURN(state["disks"].back()["proxy"], StartOneProxy(po));
      VMBACKUP_RETURN_IF_ERROR(SaveState(dir, state));
      const std::string overlay =
          StrFormat("%s/%s-%d.instant.qcow2", OverlayDir(o).c_str(), name.c_str(), pd.key);
      if (io::PathExists(overlay)) return AlreadyExistsError(overlay + " exists");
      VMBACKUP_RETURN_IF_ERROR(
          RunCommandOk({"qemu-img", "create", "-q", "-f", "qcow2", "-b",
                        "nbd+unix:///?socket=" + po.socket, "-F", "raw", overlay},
                       60)
              .status());
      state["disks"].back()["overlay"] = overlay;
      VMBACKUP_RETURN_IF_ERROR(SaveState(dir, state));
      report.overlays.push_back(overlay);
      disks.push_back({overlay, "qcow2", po.socket});
    }
    VMBACKUP_ASSIGN_OR_RETURN(std::string xml, lv::NewDomainXml(point.config, name, disks));
    if (o.sandbox) {
      VMBACKUP_ASSIGN_OR_RETURN(xml, lv::SandboxDomainXml(xml, report.console_log));
    }
    lv::DomainPtr dom(virDomainDefineXML(conn.get(), xml.c_str()));
    if (!dom) return lv::LastError("define domain " + name);
    char uuid[VIR_UUID_STRING_BUFLEN] = {};
    virDomainGetUUIDString(dom.get(), uuid);
    state["uuid"] = report.uuid = uuid;
    VMBACKUP_RETURN_IF_ERROR(SaveState(dir, state));
    if (virDomainCreate(dom.get()) != 0) return lv::LastError("start domain " + name);
    return Status::Ok();
  };
  Status s = steps();
  if (!s.ok()) {
    Stop(name, o).IgnoreError();  // the start's own error says more
    return s;
  }
  report.seconds_to_running = std::chrono::duration<double>(Clock::now() - started).count();
  return report;
}

Result<std::vector<Instance>> List(const Options& o) {
  std::vector<Instance> out;
  DIR* d = ::opendir(StateRoot(o).c_str());
  if (!d) return out;
  std::vector<std::string> names;
  while (dirent* e = ::readdir(d)) {
    if (lv::SafeDomainName(e->d_name)) names.push_back(e->d_name);
  }
  ::closedir(d);
  std::sort(names.begin(), names.end());
  auto conn = lv::Connect(o.uri);
  for (const auto& n : names) {
    auto state = LoadState(o, n);
    if (!state) continue;
    Instance i;
    i.name = n;
    i.point = state->value("point", "");
    i.state = "missing";
    if (conn) {
      if (auto dom = DomainOf(conn->get(), *state)) i.state = StateName(dom->get());
    }
    for (const auto& disk : state->value("disks", nlohmann::json::array())) {
      ++i.exports;
      i.exports_running += ExportAlive(disk);  // the export and its proxy
      if (disk.contains("overlay")) i.overlays.push_back(disk.value("overlay", ""));
    }
    out.push_back(i);
  }
  return out;
}

Result<int> Reconnect(const std::string& name, const Options& o) {
  VMBACKUP_ASSIGN_OR_RETURN(nlohmann::json state, LoadState(o, name));
  const std::string dir = InstanceDir(o, name);
  int started = 0;
  for (auto& disk : state["disks"]) {
    const int key = disk.value("key", 0);
    if (!Alive(disk, "export")) {
      VMBACKUP_ASSIGN_OR_RETURN(disk["export"], StartOneExport(ExportFor(o, state, key, dir)));
      VMBACKUP_RETURN_IF_ERROR(SaveState(dir, state));
      ++started;
    }
    if (!Alive(disk, "proxy")) {  // QEMU's connection broke: its next read fails once
      VMBACKUP_ASSIGN_OR_RETURN(disk["proxy"], StartOneProxy(ProxyFor(key, dir)));
      VMBACKUP_RETURN_IF_ERROR(SaveState(dir, state));
      ++started;
    }
  }
  // A guest that read during the outage was paused by its disk's error policy: resume it; the
  // request is retried, and QEMU reconnects to the export.
  if (state.contains("uuid")) {
    VMBACKUP_ASSIGN_OR_RETURN(lv::ConnectPtr conn, lv::Connect(state.value("uri", o.uri)));
    if (auto dom = DomainOf(conn.get(), state)) {
      int st = 0, reason = 0;
      if (virDomainGetState(dom->get(), &st, &reason, 0) == 0 && st == VIR_DOMAIN_PAUSED &&
          reason == VIR_DOMAIN_PAUSED_IOERROR && virDomainResume(dom->get()) != 0)
        return lv::LastError("resume " + name);
    }
  }
  return started;
}

Status Stop(const std::string& name, const Options& o) {
  VMBACKUP_ASSIGN_OR_RETURN(nlohmann::json state, LoadState(o, name));
  if (state.contains("uuid")) {
    VMBACKUP_ASSIGN_OR_RETURN(lv::ConnectPtr conn, lv::Connect(state.value("uri", o.uri)));
    auto dom = DomainOf(conn.get(), state);
    if (dom) {
      if (virDomainIsActive(dom->get()) == 1 && virDomainDestroy(dom->get()) != 0)
        return lv::LastError("stop domain " + name);
      const unsigned flags = VIR_DOMAIN_UNDEFINE_MANAGED_SAVE | VIR_DOMAIN_UNDEFINE_NVRAM |
                             VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA |
                             VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA;
      if (virDomainUndefineFlags(dom->get(), flags) != 0 &&
          lv::LastErrorNumber() != VIR_ERR_NO_DOMAIN)
        return lv::LastError("undefine domain " + name);
    } else if (dom.error().code() != ErrorCode::kNotFound) {
      return dom.error();
    }
  }
  StopExports(state);
  for (const auto& disk : state.value("disks", nlohmann::json::array())) {
    const std::string overlay = disk.value("overlay", "");
    if (!overlay.empty()) ::unlink(overlay.c_str());
  }
  std::error_code ec;
  std::filesystem::remove_all(InstanceDir(o, name), ec);
  if (ec) return PosixError("remove the record of " + name, ec.value());
  return Status::Ok();
}

Result<std::vector<std::string>> StopAbandonedSandboxes(const Options& o) {
  std::vector<std::string> stopped;
  VMBACKUP_ASSIGN_OR_RETURN(auto all, List(o));
  for (const auto& i : all) {
    auto state = LoadState(o, i.name);
    if (!state || !state->value("sandbox", false)) continue;
    const auto& owner = state->value("owner", nlohmann::json::object());
    const int64_t pid = owner.value("pid", int64_t(0));
    if (pid > 0 && ProcessAlive(pid, owner.value("start", uint64_t(0)))) continue;
    VMBACKUP_RETURN_IF_ERROR(Stop(i.name, o).WithContext("remove abandoned sandbox " + i.name));
    stopped.push_back(i.name);
  }
  return stopped;
}

Status Migrate(const std::string& name, const Options& o, uint64_t bandwidth_mib,
               const std::string& dest_dir) {
  VMBACKUP_ASSIGN_OR_RETURN(nlohmann::json state, LoadState(o, name));
  if (state.value("sandbox", false))
    return FailedPreconditionError(name +
                                   " is a restore test's sandbox: it is thrown away, not kept");
  VMBACKUP_ASSIGN_OR_RETURN(lv::ConnectPtr conn, lv::Connect(state.value("uri", o.uri)));
  VMBACKUP_ASSIGN_OR_RETURN(lv::DomainPtr dom, DomainOf(conn.get(), state));
  if (virDomainIsActive(dom.get()) != 1)
    return FailedPreconditionError("domain " + name +
                                   " is not running: start it, or restore "
                                   "the point with --to-vm instead");
  VMBACKUP_ASSIGN_OR_RETURN(lv::DomainDesc live,
                            lv::ParseDomainXml(lv::TakeString(virDomainGetXMLDesc(dom.get(), 0))));
  for (const auto& d : state["disks"]) {
    if (!ExportAlive(d))
      return UnavailableError("an export of " + name + " is down: vmbackup instant reconnect " +
                              name);
  }
  std::map<std::string, std::string> moved;  // overlay -> copy
  for (const auto& disk : state["disks"]) {
    const std::string overlay = disk.value("overlay", "");
    std::string target;
    for (const auto& d : live.disks)
      if (d.source == overlay) target = d.target;
    if (target.empty()) return NotFoundError("domain " + name + " no longer uses " + overlay);
    const std::string dest =
        StrFormat("%s/%s-%d.qcow2", (dest_dir.empty() ? OverlayDir(o) : dest_dir).c_str(),
                  name.c_str(), disk.value("key", 0));
    if (io::PathExists(dest)) return AlreadyExistsError(dest + " exists");
    // The first read after an export restarted fails once while QEMU reconnects: a copy that
    // ends at once is begun again (twice at most).
    Status copied;
    for (int attempt = 0; attempt < 3; ++attempt) {
      ::unlink(dest.c_str());  // a failed attempt's start (ours: the name was free)
      copied = CopyAndPivot(dom.get(), target, dest, bandwidth_mib);
      if (copied.ok() || copied.code() != ErrorCode::kUnavailable) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(500));
    }
    VMBACKUP_RETURN_IF_ERROR(copied);
    moved[overlay] = dest;
  }
  // The definition keeps the overlays until told otherwise: point it at the copies.
  const std::string inactive =
      lv::TakeString(virDomainGetXMLDesc(dom.get(), VIR_DOMAIN_XML_INACTIVE));
  VMBACKUP_ASSIGN_OR_RETURN(xml::Document doc, xml::Document::Parse(inactive, "domain XML"));
  for (xml::Node disk : doc.root().child("devices").children("disk")) {
    xml::Node src = disk.child("source");
    auto it = moved.find(src.attr("file").value_or(""));
    if (it == moved.end()) continue;
    src.SetAttr("file", it->second);
    for (xml::Node b = disk.child("backingStore"); b; b = disk.child("backingStore")) b.Remove();
  }
  lv::DomainPtr redefined(virDomainDefineXML(conn.get(), doc.ToString().c_str()));
  if (!redefined) return lv::LastError("redefine " + name + " on its copied disks");
  StopExports(state);
  for (const auto& [overlay, copy] : moved) ::unlink(overlay.c_str());
  std::error_code ec;
  std::filesystem::remove_all(InstanceDir(o, name), ec);
  return Status::Ok();
}

}  // namespace vmbackup::instant
