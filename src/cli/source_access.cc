#include "cli/source_access.h"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <nlohmann/json.hpp>

#include "base/strings.h"
#include "cli/output.h"
#include "cli/repo_access.h"
#include "http/http_client.h"
#include "hv/libvirt/libvirt_driver.h"
#include "hv/vmhost/vmhost_driver.h"
#include "hv/vsphere/nbd_endpoint.h"
#include "hv/vsphere/vsphere_driver.h"
#include "io/posix_file.h"

namespace vmbackup::cli {
namespace {

// The vSphere password: a file, VMBACKUP_VSPHERE_PASSWORD, or the terminal. Never an argument.
Result<std::string> VspherePassword(const SourceOpts& o, const std::string& user) {
  std::string p;
  if (!o.password_file.empty()) {
    VMBACKUP_ASSIGN_OR_RETURN(p, io::ReadSmallFile(o.password_file, 4096));
  } else if (const char* env = std::getenv("VMBACKUP_VSPHERE_PASSWORD")) {
    p = env;
  } else if (::isatty(0)) {
    VMBACKUP_ASSIGN_OR_RETURN(p, Prompt("vSphere password of " + user + ": "));
  }
  while (!p.empty() && (p.back() == '\n' || p.back() == '\r')) p.pop_back();
  if (p.empty()) {
    return InvalidArgumentError(
        "no vSphere password: give --password-file FILE or VMBACKUP_VSPHERE_PASSWORD");
  }
  return p;
}

std::vector<std::string> SplitWords(const char* text) {
  std::vector<std::string> out;
  std::string word;
  for (const char* p = text;; ++p) {
    if (*p == ' ' || *p == 0) {
      if (!word.empty()) out.push_back(word);
      word.clear();
      if (*p == 0) break;
    } else {
      word += *p;
    }
  }
  return out;
}

}  // namespace

void AddSourceOptions(CLI::App* c, SourceOpts& o, const std::string& what, bool required) {
  auto* s = c->add_option("--source", o.source,
                          what +
                              ": vmhost:///DATASTORE, "
                              "vsphere://USER@HOST[:PORT][/DC]?thumbprint=SHA256:..., or a "
                              "libvirt URI (qemu:///system, qemu+ssh://HOST/system)");
  if (required) s->required();
  c->add_option("--password-file", o.password_file,
                "vSphere: file holding the password (or VMBACKUP_VSPHERE_PASSWORD, or asked)");
  c->add_option("--datastore-map", o.datastore_map,
                "vSphere san transport: where datastores are mounted here, "
                "\"[ds1]=/mnt/ds1,[ds2]=/mnt/ds2\"");
  c->add_option("--nbd-uri", o.nbd_uri,
                "vSphere nbd/nbdssl transports: each disk's NBD endpoint, a template "
                "(nbd://..., nbds://..., or exec:COMMAND ...) with {vm} {key} {disk} {snapshot} "
                "{snapshot_name} {file} {mode} (docs/cli.md)");
  c->add_option("--nbd-tls-dir", o.nbd_tls_dir,
                "libvirt nbdssl transport: the folder of vmbackup's client certificates "
                "ca-cert.pem, client-cert.pem, client-key.pem (default /etc/pki/qemu)");
  c->add_option("--nbd-host", o.nbd_host,
                "libvirt nbdssl transport: the address the backup job listens on (default: the "
                "URI's host, or localhost)");
  c->add_option("--nbd-port", o.nbd_port,
                "libvirt nbdssl transport: the first of ten TCP ports tried (default 10809)")
      ->check(CLI::Range(1, 65526));
  c->add_option("--remote-scratch-dir", o.remote_scratch_dir,
                "libvirt on another host: the folder there for the backup job's scratch files "
                "(default /var/tmp)");
  c->add_option("--disk-format", o.disk_format,
                "libvirt restores to a new domain: qcow2 or raw (default: as the original)")
      ->check(CLI::IsMember({"qcow2", "raw"}));
  c->add_option("--disk-dir", o.disk_dir,
                "libvirt restores to a new domain: the folder of its disks (default: "
                "/var/lib/libvirt/images)");
  c->add_option("--disk-pool", o.disk_pool,
                "libvirt on another host, restores to a new domain: the storage pool there for "
                "its disks, raw volumes uploaded through libvirt (default: default)");
}

Result<std::unique_ptr<hv::Hypervisor>> ConnectSource(const SourceOpts& o) {
  const std::string& uri = o.source;
  if (uri.empty()) return InvalidArgumentError("give the source with --source URI");
  if (uri.rfind("vmhost://", 0) == 0) {
    hv::VmhostDriverOptions vo;
    vo.nbdkit_plugin = PluginPath();
    // Test hook: nbdkit filters in the data path of the NBD modes (tests/e2e).
    if (const char* extra = std::getenv("VMBACKUP_TEST_NBDKIT_ARGS"))
      vo.nbdkit_extra_args = SplitWords(extra);
    VMBACKUP_ASSIGN_OR_RETURN(auto d, hv::VmhostDriver::Connect(uri, vo));
    return std::unique_ptr<hv::Hypervisor>(std::move(d));
  }
  if (uri.rfind("vsphere://", 0) == 0) {
    VMBACKUP_ASSIGN_OR_RETURN(auto src, hv::vsphere::ParseSourceUri(uri));
    hv::vsphere::DriverOptions vo;
    VMBACKUP_ASSIGN_OR_RETURN(vo.password, VspherePassword(o, src.user));
    VMBACKUP_ASSIGN_OR_RETURN(vo.datastore_map, hv::vsphere::ParseDatastoreMap(o.datastore_map));
    if (!o.nbd_uri.empty()) VMBACKUP_RETURN_IF_ERROR(hv::vsphere::CheckNbdTemplate(o.nbd_uri));
    vo.nbd_template = o.nbd_uri;
    VMBACKUP_ASSIGN_OR_RETURN(auto d, hv::vsphere::VsphereDriver::Connect(uri, vo));
    return std::unique_ptr<hv::Hypervisor>(std::move(d));
  }
  if (uri.rfind("libvirt:", 0) == 0 || uri.rfind("qemu", 0) == 0) {
    hv::libvirt::DriverOptions lo;
    lo.new_disk_format = o.disk_format;
    lo.new_disk_dir = o.disk_dir;
    lo.new_disk_pool = o.disk_pool;
    if (!o.nbd_host.empty()) lo.nbd_host = o.nbd_host;
    if (!o.nbd_tls_dir.empty()) lo.nbd_tls_dir = o.nbd_tls_dir;
    if (o.nbd_port != 0) lo.nbd_port = o.nbd_port;
    if (!o.remote_scratch_dir.empty()) lo.remote_scratch_dir = o.remote_scratch_dir;
    VMBACKUP_ASSIGN_OR_RETURN(auto d, hv::libvirt::LibvirtDriver::Connect(uri, lo));
    return std::unique_ptr<hv::Hypervisor>(std::move(d));
  }
  return InvalidArgumentError("source '" + uri +
                              "': expected vmhost:///DATASTORE, vsphere://USER@HOST[:PORT], or a "
                              "libvirt URI (qemu:///system)");
}

void AddVsphereCommands(CLI::App& app, int* exit_code) {
  CLI::App* vs = app.add_subcommand("vsphere", "vSphere helpers: a host's thumbprint, its VMs");
  vs->require_subcommand(1);

  auto host = std::make_shared<std::string>();
  CLI::App* t = vs->add_subcommand(
      "thumbprint", "print the TLS certificate thumbprints of HOST[:PORT] (to pin in the URI)");
  t->add_option("HOST", *host, "HOST or HOST:PORT (port 443 by default)")->required();
  Bind(t, exit_code, [host]() -> Status {
    std::string h = *host;
    int port = 443;
    if (size_t c = h.rfind(':'); c != std::string::npos && h.find(']') == std::string::npos) {
      auto p = ParseUint(h.substr(c + 1));
      if (!p || *p == 0 || *p > 65535) return InvalidArgumentError("bad port in '" + h + "'");
      port = int(*p);
      h = h.substr(0, c);
    }
    VMBACKUP_ASSIGN_OR_RETURN(auto tp, http::FetchThumbprints(h, port));
    if (Flags().json) {
      std::printf(
          "%s\n",
          nlohmann::json{{"host", h}, {"port", port}, {"sha256", tp.sha256}, {"sha1", tp.sha1}}
              .dump(2)
              .c_str());
    } else {
      std::printf("SHA256:%s\nSHA1:%s\n", tp.sha256.c_str(), tp.sha1.c_str());
      Note("pin it with vsphere://USER@%s:%d?thumbprint=SHA256:%s after checking it on the host",
           h.c_str(), port, tp.sha256.c_str());
    }
    return Status::Ok();
  });

  auto so = std::make_shared<SourceOpts>();
  CLI::App* v = vs->add_subcommand("vms", "list the VMs of a vSphere source with their disks");
  AddSourceOptions(v, *so, "the vSphere host", true);
  Bind(v, exit_code, [so]() -> Status {
    VMBACKUP_ASSIGN_OR_RETURN(auto hv, ConnectSource(*so));
    VMBACKUP_ASSIGN_OR_RETURN(auto names, hv->ListVms());
    nlohmann::json all = nlohmann::json::array();
    for (const auto& n : names) {
      VMBACKUP_ASSIGN_OR_RETURN(hv::VmInfo vm, hv->GetVm(n));
      nlohmann::json disks = nlohmann::json::array();
      for (const auto& d : vm.disks) {
        disks.push_back({{"device_key", d.device_key},
                         {"capacity", d.capacity},
                         {"label", d.label},
                         {"file", d.backing_path},
                         {"change_tracking", d.cbt_enabled}});
      }
      VMBACKUP_ASSIGN_OR_RETURN(auto snaps, hv->ListSnapshots(vm));
      nlohmann::json snapshots = nlohmann::json::array();
      for (const auto& sn : snaps) snapshots.push_back(sn.name);
      all.push_back({{"vm", vm.name},
                     {"vm_id", vm.id},
                     {"power", vm.power == hv::PowerState::kOn ? "on" : "off"},
                     {"disks", disks},
                     {"snapshots", snapshots}});
    }
    if (Flags().json) {
      std::printf("%s\n", all.dump(2).c_str());
      return Status::Ok();
    }
    for (const auto& vm : all) {
      std::printf("%s (%s)\n", vm["vm"].get<std::string>().c_str(),
                  vm["power"].get<std::string>().c_str());
      for (const auto& d : vm["disks"]) {
        std::printf("  disk %d  %s  %s\n", d["device_key"].get<int>(),
                    HumanBytes(d["capacity"].get<uint64_t>()).c_str(),
                    d["file"].get<std::string>().c_str());
      }
      for (const auto& sn : vm["snapshots"])
        std::printf("  snapshot %s\n", sn.get<std::string>().c_str());
    }
    return Status::Ok();
  });
}

}  // namespace vmbackup::cli
