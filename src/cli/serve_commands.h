// `vmbackup serve`: a restore point's disk as a live NBD export (nbdkit with our plugin,
// optionally under a qcow2 overlay that takes writes).
#pragma once

#include <CLI/CLI.hpp>
#include <string>

#include "cli/repo_access.h"
#include "live/server_process.h"

namespace vmbackup::cli {

// The export of one disk of a point by our nbdkit plugin, with the key the command opened the
// repository with (where it goes, and how, is the caller's).
live::ExportOptions ExportOf(const RepoOpts& repo, const repo::KeySource& key,
                             const std::string& point_id, int disk);
struct PointExport {
  live::ExportOptions options;
  uint64_t capacity = 0;
};
// The point the user named (id, prefix, latest of --vm) and its disk `disk` checked, ready to
// export; the repository is closed again (the export opens its own, under its lock).
Result<PointExport> ResolvePointExport(const RepoOpts& repo, int disk);

void AddServeCommands(CLI::App& app, int* exit_code);

}  // namespace vmbackup::cli
