// Automated restore tests (`vmbackup test-restore`, docs/live.md): a restore point is restored
// for real, without writing anywhere that lasts, and checked:
//   - fsck: every file system of every disk, read-only, in libguestfs's appliance over the
//     point's NBD exports (files/fs_check.h);
//   - boot: the point's VM starts in a sandbox under libvirt (instant recovery with no network,
//     no host devices, throwaway overlays) and must answer through qemu-guest-agent and/or show
//     a pattern on its serial console, within a time limit; a console that shows a kernel panic
//     or an emergency shell fails at once;
//   - script: a script of the user's runs in the booted guest through the agent; exit 0 passes.
// Everything started is removed on every path; a sandbox left by a killed run is removed by the
// next one. The result (repo::RestoreTest) is what `list` shows once it is recorded.
#pragma once

#include <atomic>
#include <functional>
#include <string>

#include "base/result.h"
#include "instant/instant.h"
#include "repo/point.h"
#include "repo/restore_tests.h"

namespace vmbackup::restore_check {

struct Options {
  bool boot = false, fsck = false;
  std::string script;                   // the script's text; "" = none (needs boot)
  std::string script_name;              // for the report
  std::string interpreter = "/bin/sh";  // runs the script from its standard input
  int boot_timeout_s = 600;
  int script_timeout_s = 600;
  // ECMAScript regex: the guest counts as up once its serial console shows it. "" = the agent's
  // answer alone decides (then the saved definition must have an agent channel).
  std::string ready_pattern;
  instant::Options instant;  // libvirt URI, plugin, repository, key, state and overlay folders
  std::function<void(const std::string&)> progress;  // notes for the user, may be empty
  // Set (by a signal handler) to stop early: Run removes what it started and returns
  // kCancelled.
  const std::atomic<bool>* cancel = nullptr;
};

// Tests `point`. A check that fails is a result (ok false, the reason in the summary); an error
// means the test could not run (libvirt unreachable, a point that cannot boot anywhere).
Result<repo::RestoreTest> Run(const repo::Point& point, const Options& o);

}  // namespace vmbackup::restore_check
