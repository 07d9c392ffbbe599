// `vmhost ...`: the embedded host's command line (ARCHITECTURE.md section 5).
#pragma once

#include <CLI/CLI.hpp>

namespace vmbackup::cli {

// Registers every vmhost subcommand on `app`; the chosen one stores its exit code.
void AddVmhostCommands(CLI::App& app, int* exit_code);

}  // namespace vmbackup::cli
