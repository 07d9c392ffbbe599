// What the libvirt driver keeps for one snapshot while a job runs (private to the driver).
#pragma once

#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "hv/libvirt/libvirt_driver.h"
#include "nbd/nbd_disk.h"

namespace vmbackup::hv::libvirt {

// The change id of a disk that cannot hold a bitmap (raw): asking about it answers
// kNotSupported, so the engine reads what is allocated and stores only what differs.
inline constexpr std::string_view kNoBitmapChangeId = "no-bitmap";
inline constexpr std::string_view kCheckpointPrefix = "vmbackup-";
// In the environment of the qemu-nbd processes the driver starts: the OwnerTag of its vmbackup.
inline constexpr std::string_view kQemuNbdOwnerVar = "VMBACKUP_QEMU_NBD_OWNER";

// Ends the qemu-nbd processes of vmbackup runs that died (their owner tag names a process that
// is gone); returns how many.
int KillOrphanedQemuNbd();

struct LibvirtDriver::Session {
  std::string id, name;
  bool online = false;
  bool upload = false;     // a remote new domain's: its disks are written as volume uploads
  std::string dir;         // the domain's run folder
  JobServer server;        // where the job serves (online)
  std::string checkpoint;  // the checkpoint the job created ("" offline or with no bitmaps)
  struct Disk {
    int key = 0;
    DomainDisk dd;
    uint64_t capacity = 0;
    std::string since;     // the change id this view's dirty bitmap starts from ("" = none)
    std::string why_full;  // why the change id asked for could not be used
    std::mutex mu;
    std::unique_ptr<nbd::NbdDisk> meta;  // block status (and the offline bitmap) of this disk
  };
  std::vector<std::unique_ptr<Disk>> disks;

  Disk* FindDisk(int key) {
    for (auto& d : disks)
      if (d->key == key) return d.get();
    return nullptr;
  }
  bool bitmaps(const Disk& d) const { return d.dd.format == "qcow2"; }
};

// The running (or, when off, defined) domain as libvirt describes it now.
Result<DomainDesc> LiveDesc(virDomainPtr dom, const std::string& name);

// The files of a job in the domain's run folder.
std::string JobSocketPath(const std::string& dir);
std::string ScratchPath(const std::string& dir, const std::string& target);
std::string MarkerPath(const std::string& dir);
// The marker names the snapshot, then where its job serves: a killed run's job is told apart
// from another tool's by it.
std::string MarkerText(const std::string& name, const JobServer& server);
// From a marker: the snapshot's name, and the endpoint ("" when the marker names none).
std::pair<std::string, std::string> ParseMarker(const std::string& text);

}  // namespace vmbackup::hv::libvirt
