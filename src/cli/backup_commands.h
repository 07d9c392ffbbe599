// `vmbackup backup` and `vmbackup restore`: the engine's jobs on a source host.
#pragma once

#include <CLI/CLI.hpp>

namespace vmbackup::cli {

void AddBackupCommands(CLI::App& app, int* exit_code);

}  // namespace vmbackup::cli
