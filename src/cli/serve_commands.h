// `vmbackup serve`: a restore point's disk as a live NBD export (nbdkit with our plugin,
// optionally under a qcow2 overlay that takes writes).
#pragma once

#include <CLI/CLI.hpp>

namespace vmbackup::cli {

void AddServeCommands(CLI::App& app, int* exit_code);

}  // namespace vmbackup::cli
