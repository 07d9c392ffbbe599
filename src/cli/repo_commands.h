// `vmbackup init|list|show|protect`: the repository commands that exist so far.
#pragma once

#include <CLI/CLI.hpp>

namespace vmbackup::cli {

void AddRepoCommands(CLI::App& app, int* exit_code);

}  // namespace vmbackup::cli
