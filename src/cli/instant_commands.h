// Instant recovery under libvirt: `vmbackup restore POINT --instant --to-vm --name NEW --source
// URI` and `vmbackup instant list|reconnect|migrate|stop` (instant::).
#pragma once

#include <CLI/CLI.hpp>
#include <string>

#include "base/result.h"
#include "cli/repo_access.h"
#include "instant/instant.h"

namespace vmbackup::cli {

// `restore --instant`: `source` a libvirt URI, `disk_dir` where the overlays go ("" = libvirt's
// pool).
Status InstantRestore(const RepoOpts& repo, const std::string& vm, const std::string& name,
                      const std::string& source, const std::string& disk_dir);
void AddInstantCommands(CLI::App& app, int* exit_code);
// The instance options for libvirt URI `source` ("" = qemu:///system; libvirt:// means qemu://):
// our nbdkit plugin, VMBACKUP_INSTANT_DIR for the records.
instant::Options InstantOptions(const std::string& source);

}  // namespace vmbackup::cli
