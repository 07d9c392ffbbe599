// The hypervisor a command talks to: --source URI and what its driver needs (a vSphere
// password, a datastore map), turned into a driver in one place.
#pragma once

#include <CLI/CLI.hpp>
#include <memory>
#include <string>

#include "base/result.h"
#include "hv/hypervisor.h"

namespace vmbackup::cli {

struct SourceOpts {
  std::string source;
  std::string password_file;  // vSphere: the password's file (else the environment, a prompt)
  std::string datastore_map;  // vSphere san: "[ds1]=/mnt/ds1,..."
  std::string nbd_uri;        // vSphere nbd/nbdssl: each disk's endpoint (a template)
  std::string disk_format;    // libvirt, new domains: qcow2 or raw ("" = as the original)
  std::string disk_dir;       // libvirt, new domains: their disks' folder ("" = the original's)
  std::string disk_pool;      // libvirt on another host, new domains: their volumes' pool
  // libvirt jobs over TCP with TLS (nbdssl): where they listen, and our client certificates.
  std::string nbd_host, nbd_tls_dir, remote_scratch_dir;
  int nbd_port = 0;  // 0 = the driver's default
};

// --source (required or not), --password-file, --datastore-map, --nbd-uri, --disk-format,
// --disk-dir, --disk-pool, and the libvirt nbdssl options.
void AddSourceOptions(CLI::App* c, SourceOpts& o, const std::string& what, bool required);

// vmhost:///DATASTORE, vsphere://USER@HOST[:PORT][/DC]?thumbprint=..., or a libvirt URI
Result<std::unique_ptr<hv::Hypervisor>> ConnectSource(const SourceOpts& o);

// `vmbackup vsphere thumbprint|vms`.
void AddVsphereCommands(CLI::App& app, int* exit_code);

}  // namespace vmbackup::cli
