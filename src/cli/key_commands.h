// `vmbackup key list|add|remove|passwd`: the keys of an encrypted repository (repo/keys.h).
#pragma once

#include <CLI/CLI.hpp>

namespace vmbackup::cli {

void AddKeyCommands(CLI::App& app, int* exit_code);

}  // namespace vmbackup::cli
