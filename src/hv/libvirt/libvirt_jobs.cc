// Backup jobs and checkpoints: a "snapshot" begins a pull-mode job with a new checkpoint, and
// removing it ends the job and keeps the checkpoints few.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <random>
#include <thread>

#include "base/strings.h"
#include "hv/libvirt/image_bitmaps.h"
#include "hv/libvirt/libvirt_driver.h"
#include "hv/libvirt/session.h"
#include "io/posix_file.h"

namespace vmbackup::hv::libvirt {
namespace {

std::string NewCheckpointName() {
  std::random_device rd;
  std::string t = UtcNowRfc3339();  // 2026-11-30T12:00:00Z -> 20261130T120000Z
  t.erase(std::remove_if(t.begin(), t.end(), [](char c) { return c == '-' || c == ':'; }), t.end());
  return StrFormat("%s%s-%06x", std::string(kCheckpointPrefix).c_str(), t.c_str(),
                   unsigned(rd()) & 0xffffffu);
}

bool IsOurs(const std::string& checkpoint) { return checkpoint.rfind(kCheckpointPrefix, 0) == 0; }

// Ends the backup job of `dom` when it serves at `endpoint`; Ok when there is none.
Status EndJobOn(virDomainPtr dom, const std::string& endpoint, const std::string& what) {
  const std::string job = TakeString(virDomainBackupGetXMLDesc(dom, 0));
  if (job.empty() || JobEndpoint(job) != endpoint) return Status::Ok();
  if (virDomainAbortJob(dom) < 0) {
    // It may have ended between the two calls.
    if (TakeString(virDomainBackupGetXMLDesc(dom, 0)).empty()) return Status::Ok();
    return LastError("end the backup job of " + what);
  }
  // libvirt tears the job down after answering: its scratch files stay in use until then.
  for (int i = 0; i < 600; ++i) {
    if (TakeString(virDomainBackupGetXMLDesc(dom, 0)).empty()) return Status::Ok();
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return UnavailableError("the backup job of " + what + " did not end within 30 s");
}

// Whether a job serves over TCP with TLS: always for a remote libvirt (a unix socket there is
// out of reach), and here when nbdssl is asked for without nbd.
bool WantsTls(bool remote, const std::vector<TransportMode>& transports) {
  if (remote) return true;
  auto has = [&](TransportMode m) {
    return std::find(transports.begin(), transports.end(), m) != transports.end();
  };
  return has(TransportMode::kNbdSsl) && !has(TransportMode::kNbd);
}

}  // namespace

Result<Consistency> LibvirtDriver::BeginJob(virDomainPtr dom, const VmInfo& vm, Session& s,
                                            const SnapshotOptions& o) {
  const std::string other = TakeString(virDomainBackupGetXMLDesc(dom, 0));
  if (!other.empty()) {
    return LockedError("domain " + vm.name + " already has a backup job (serving at " +
                       JobEndpoint(other) + ") that vmbackup did not start; end it with " +
                       "'virsh domjobabort " + vm.name + "' if nothing uses it");
  }
  const bool remote = !remote_host_.empty();
  if (WantsTls(remote, o.transports)) {
    // Before a job starts: libnbd's own error for a missing file only says the handshake broke.
    for (const char* f : {"ca-cert.pem", "client-cert.pem", "client-key.pem"}) {
      const std::string path = options_.nbd_tls_dir + "/" + f;
      if (::access(path.c_str(), R_OK) != 0) {
        return FailedPreconditionError(
            "the nbdssl transport needs vmbackup's client certificates: cannot read " + path +
            " (" + std::strerror(errno) + "); name their folder with --nbd-tls-dir");
      }
    }
    s.server = {"", options_.nbd_host, options_.nbd_port, true};
    if (s.server.host.empty()) s.server.host = remote ? remote_host_ : "localhost";
  } else {
    s.server = {JobSocketPath(s.dir), "", 0, false};
  }
  std::vector<std::string> all, bitmaps;
  for (const auto& d : s.disks) {
    all.push_back(d->dd.target);
    if (s.bitmaps(*d)) bitmaps.push_back(d->dd.target);
    ::unlink(ScratchPath(s.dir, d->dd.target).c_str());  // QEMU creates them anew
  }
  ::unlink(JobSocketPath(s.dir).c_str());
  if (!bitmaps.empty()) s.checkpoint = NewCheckpointName();

  Consistency achieved = Consistency::kCrash;
  bool frozen = false;
  if (o.quiesce) {
    if (virDomainFSFreeze(dom, nullptr, 0, 0) >= 0) {
      frozen = true;
      achieved = Consistency::kFileSystem;
    } else if (!o.allow_crash_consistent) {
      return LastError("quiesce " + vm.name + " (guest agent fsfreeze)")
          .WithContext(
              "a quiesced backup was asked for; allow a crash-consistent one or fix "
              "the guest agent");
    }
  }
  // A remote QEMU writes its scratch files into a folder of that host, under names no other
  // job uses (a killed run's may stay there when its job ended without libvirt), and libvirt
  // removes them with the job.
  const std::string remote_scratch = options_.remote_scratch_dir + "/vmbackup-" + vm.id + "-" +
                                     NewCheckpointName().substr(kCheckpointPrefix.size()) + "-";
  auto begin = [&]() -> Status {
    std::vector<JobDisk> jd;
    for (const auto& d : s.disks) {
      jd.push_back(
          {d->dd.target, d->since,
           remote ? remote_scratch + d->dd.target + ".qcow2" : ScratchPath(s.dir, d->dd.target)});
    }
    const std::string cp = s.checkpoint.empty() ? "" : CheckpointXml(s.checkpoint, all, bitmaps);
    // A TCP port another program holds: the next of ten. The marker names the port first, so
    // that a kill leaves a job the next run can tell is ours.
    for (int tries = 0;; ++tries) {
      VMBACKUP_RETURN_IF_ERROR(
          io::WriteFileAtomic(MarkerPath(s.dir), MarkerText(s.name, s.server)));
      const std::string job = BackupJobXml(s.server, jd);
      if (virDomainBackupBegin(dom, job.c_str(), cp.empty() ? nullptr : cp.c_str(), 0) >= 0)
        return Status::Ok();
      Status st = LastError("begin a backup job on " + vm.name + " (serving at " +
                            s.server.Endpoint() + ")");
      if (!s.server.socket.empty() || tries == 9 ||
          st.message().find("in use") == std::string::npos)
        return st;
      ++s.server.port;
    }
  };
  Status first = begin();
  bool any_incremental = false;
  for (const auto& d : s.disks) any_incremental = any_incremental || !d->since.empty();
  if (!first.ok() && any_incremental) {
    // A bitmap libvirt finds broken (lost in a crash, a disk replaced) fails the whole job:
    // every disk starts over from a full view, with libvirt's reason.
    for (auto& d : s.disks) {
      if (d->since.empty()) continue;
      d->why_full = "libvirt cannot start an incremental from checkpoint " + d->since + " (" +
                    first.message() + ")";
      d->since.clear();
    }
    first = begin();
  }
  if (frozen && virDomainFSThaw(dom, nullptr, 0, 0) < 0 && first.ok()) {
    Status thaw = LastError("thaw the file systems of " + vm.name);
    virDomainAbortJob(dom);
    return thaw;
  }
  if (!first.ok()) return first;
  return achieved;
}

Status LibvirtDriver::DeleteOurCheckpoints(virDomainPtr dom, const VmInfo& vm,
                                           const std::vector<std::string>& keep, bool offline) {
  virDomainCheckpointPtr* cps = nullptr;
  const int n = virDomainListAllCheckpoints(dom, &cps, 0);
  if (n < 0) return LastError("list the checkpoints of " + vm.name);
  std::vector<CheckpointPtr> all;
  for (int i = 0; i < n; ++i) all.emplace_back(cps[i]);
  std::free(cps);
  Status first;
  for (auto& cp : all) {
    const std::string name = virDomainCheckpointGetName(cp.get());
    if (!IsOurs(name) || std::find(keep.begin(), keep.end(), name) != keep.end()) continue;
    // Offline, libvirt can only forget a checkpoint: its bitmaps are then stale ones, which
    // RemoveStaleBitmaps removes with qemu-img. Online, metadata only is what is left of a
    // broken bitmap QEMU could not delete.
    if (!offline && virDomainCheckpointDelete(cp.get(), 0) == 0) continue;
    if (virDomainCheckpointDelete(cp.get(), VIR_DOMAIN_CHECKPOINT_DELETE_METADATA_ONLY) < 0) {
      if (first.ok()) first = LastError("delete checkpoint " + name + " of " + vm.name);
    }
  }
  return first;
}

Status LibvirtDriver::ResetChangeTracking(const VmInfo& vm) {
  {
    // Our own block-status connections hold the images open (offline, qemu-nbd).
    std::lock_guard<std::mutex> l(mu_);
    for (auto& [id, s] : sessions_)
      for (auto& d : s->disks) {
        std::lock_guard<std::mutex> dl(d->mu);
        d->meta.reset();
      }
  }
  VMBACKUP_ASSIGN_OR_RETURN(DomainPtr dom, Domain(vm.name));
  VMBACKUP_ASSIGN_OR_RETURN(const bool off, IsOff(dom.get(), vm.name));
  VMBACKUP_RETURN_IF_ERROR(DeleteOurCheckpoints(dom.get(), vm, {}, off));
  // The forgotten checkpoints' bitmaps (a disk without one has nothing to remove).
  // (Offline that takes qemu-img on the images: only when they are files here.)
  if (off && !remote_host_.empty()) return Status::Ok();
  VMBACKUP_ASSIGN_OR_RETURN(DomainDesc desc, LiveDesc(dom.get(), vm.name));
  RemoveStaleBitmaps(dom.get(), vm.name, BackupDisks(desc), off).status().IgnoreError();
  return Status::Ok();
}

Status LibvirtDriver::EndSession(const VmInfo& vm, Session& s) {
  for (auto& d : s.disks) {
    std::lock_guard<std::mutex> l(d->mu);
    d->meta.reset();
  }
  VMBACKUP_ASSIGN_OR_RETURN(DomainPtr dom, Domain(vm.name));
  Status st = EndJobOn(dom.get(), s.server.Endpoint(), vm.name);
  if (!st.ok()) return st;
  for (const auto& d : s.disks) ::unlink(ScratchPath(s.dir, d->dd.target).c_str());
  ::unlink(JobSocketPath(s.dir).c_str());
  if (s.online && !s.checkpoint.empty()) {
    // Kept: this job's checkpoint (the new point's change id) and those its incrementals
    // started from (the previous point's, in case this point goes). Older ones, and those of
    // runs that died, only cost QEMU work on every write.
    std::vector<std::string> keep{s.checkpoint};
    for (const auto& d : s.disks)
      if (!d->since.empty()) keep.push_back(d->since);
    DeleteOurCheckpoints(dom.get(), vm, keep, false).IgnoreError();  // hygiene, not the job
  }
  // Bitmaps of ours no checkpoint names (the domain was defined anew, a run died) cost QEMU
  // work on every guest write: they go too, online or off.
  std::vector<DomainDisk> disks;
  for (const auto& d : s.disks) disks.push_back(d->dd);
  // (Offline that takes qemu-img on the images: only when they are files here.)
  if (s.online || remote_host_.empty())
    RemoveStaleBitmaps(dom.get(), vm.name, disks, !s.online).status().IgnoreError();  // hygiene
  ::unlink(MarkerPath(s.dir).c_str());
  ::rmdir(s.dir.c_str());  // empty now, unless someone else's files are in it
  return Status::Ok();
}

Status LibvirtDriver::RemoveSnapshot(const VmInfo& vm, const SnapshotRef& snapshot) {
  std::unique_ptr<Session> s;
  {
    std::lock_guard<std::mutex> l(mu_);
    auto it = sessions_.find(snapshot.id);
    if (it != sessions_.end()) {
      s = std::move(it->second);
      sessions_.erase(it);
    }
  }
  if (!s) {
    // A killed run's: its job, scratch files, socket and marker (its checkpoint goes with the
    // next job's hygiene).
    VMBACKUP_ASSIGN_OR_RETURN(DomainPtr dom, Domain(vm.name));
    VMBACKUP_ASSIGN_OR_RETURN(s, NewSession(dom.get(), vm, snapshot.name, {}));
  }
  return EndSession(vm, *s);
}

Status LibvirtDriver::RevertToSnapshot(const VmInfo& vm, const SnapshotRef& snapshot) {
  VMBACKUP_ASSIGN_OR_RETURN(Session * s, FindSession(vm, &snapshot));
  if (s->online) {
    return NotSupportedError("libvirt: domain " + vm.name +
                             " is running; a backup job's view cannot be reverted to");
  }
  return Status::Ok();  // offline, restores write the images themselves
}

}  // namespace vmbackup::hv::libvirt
