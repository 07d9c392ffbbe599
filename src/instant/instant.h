// Instant recovery under libvirt (docs/live.md): a new domain started straight from a restore
// point. Each disk is a qcow2 overlay on the hypervisor's storage whose backing is the point's
// NBD export (nbdkit with our plugin, detached, its socket usable by QEMU's user); QEMU
// reconnects for 30 s when the export restarts. The guest's writes stay in the overlays; the
// repository never changes. Migrate copies the disks to real storage while the guest runs
// (libvirt block copy, then a pivot) and then stops the exports.
//
// Everything an instance owns is recorded in STATE_ROOT/<name>/state.json before the next step
// (the exports' pids and start times, the overlays, the domain's uuid), so list, stop and
// reconnect find it after any crash. Only points taken from libvirt carry a domain definition;
// others are refused with the reason.
#pragma once

#include <string>
#include <vector>

#include "base/result.h"
#include "repo/keys.h"
#include "repo/point.h"

namespace vmbackup::instant {

struct Options {
  std::string uri = "qemu:///system";
  std::string state_root;     // default /var/lib/vmbackup/instant (root) or ~/.local/state/...
  std::string overlay_dir;    // default: libvirt's pool (/var/lib/libvirt/images for root)
  std::string plugin;         // nbdkit-vmbackup-plugin.so
  std::string repo_location;  // a folder or an S3 URL
  std::string s3_ca_file;
  repo::KeySource key;
  uint64_t cache_mib = 256;
  // A restore test's throwaway instance (test-restore): the domain gets no network and no host
  // devices, its first serial port logs to <instance>/console.log, and the record names the
  // process that owns it, so that a later StopAbandonedSandboxes removes it if that process
  // died.
  bool sandbox = false;
};

struct StartReport {
  std::string name, uuid;
  std::string console_log;        // sandboxes: where the serial console goes
  double seconds_to_running = 0;  // from the call to a running domain
  std::vector<std::string> overlays;
};

struct Instance {
  std::string name, point, state;  // state: libvirt's ("running", "shut off") or "missing"
  int exports_running = 0, exports = 0;
  std::vector<std::string> overlays;
};

// Defines and starts domain `name` from `point` (a libvirt point: its saved definition).
Result<StartReport> Start(const repo::Point& point, const std::string& name, const Options& o);
Result<std::vector<Instance>> List(const Options& o);
// Starts again the exports of `name` that are not running (same sockets: QEMU reconnects).
Result<int> Reconnect(const std::string& name, const Options& o);
// Throws the instance away: the domain (only the one with the recorded uuid), its exports, its
// overlays, its record.
Status Stop(const std::string& name, const Options& o);
// Stops the sandboxes whose owning process is gone (a killed test-restore); returns their names.
Result<std::vector<std::string>> StopAbandonedSandboxes(const Options& o);
// Copies each disk into `dest_dir` (default: the overlays' folder) as <name>-<key>.qcow2 while
// the guest runs, pivots, makes the definition use the copies, then stops the exports and
// removes the overlays and the record. `bandwidth_mib` 0: unlimited.
Status Migrate(const std::string& name, const Options& o, uint64_t bandwidth_mib,
               const std::string& dest_dir);

}  // namespace vmbackup::instant
