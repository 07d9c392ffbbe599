// `vmhost serve`: the embedded host's vSphere API server (docs/vsphere-api.md).
#pragma once

#include <CLI/CLI.hpp>
#include <functional>
#include <string>

#include "base/result.h"

namespace vmbackup::cli {

// `datastore_root` gives the datastore folder (--datastore or VMHOST_DATASTORE) when run.
void AddServeCommand(CLI::App& app, std::function<Result<std::string>()> datastore_root,
                     int* exit_code);

}  // namespace vmbackup::cli
