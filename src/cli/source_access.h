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
};

// --source (required or not), --password-file, --datastore-map, --nbd-uri.
void AddSourceOptions(CLI::App* c, SourceOpts& o, const std::string& what, bool required);

// vmhost:///DATASTORE or vsphere://USER@HOST[:PORT][/DC]?thumbprint=...
Result<std::unique_ptr<hv::Hypervisor>> ConnectSource(const SourceOpts& o);

// `vmbackup vsphere thumbprint|vms`.
void AddVsphereCommands(CLI::App& app, int* exit_code);

}  // namespace vmbackup::cli
