// `vmbackup copy`: restore points from one repository into another (folder to S3, S3 to
// folder, S3 to S3), as restic's copy and Proxmox's sync jobs.
#pragma once

#include <CLI/CLI.hpp>

namespace vmbackup::cli {

void AddCopyCommands(CLI::App& app, int* exit_code);

}  // namespace vmbackup::cli
