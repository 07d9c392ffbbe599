// `vmbackup files ls` and `vmbackup files get`: file-level restore from a restore point, read
// in process (files::DiskBrowser over live::SharedPointDisk), without restoring the disk.
#pragma once

#include <CLI/CLI.hpp>

namespace vmbackup::cli {

void AddFilesCommands(CLI::App& app, int* exit_code);

}  // namespace vmbackup::cli
