// `vmbackup stats` (sizes, deduplication, per VM) and `vmbackup diff` (what changed between
// two points, per disk).
#pragma once

#include <CLI/CLI.hpp>

namespace vmbackup::cli {

void AddReportCommands(CLI::App& app, int* exit_code);

}  // namespace vmbackup::cli
