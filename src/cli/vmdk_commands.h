// `vmbackup vmdk ...`: info, map, cat, create and convert.
#pragma once

#include <CLI/CLI.hpp>

namespace vmbackup::cli {

// Registers the vmdk subcommands on `app`; the chosen one stores its exit code in *exit_code.
void AddVmdkCommands(CLI::App& app, int* exit_code);

}  // namespace vmbackup::cli
