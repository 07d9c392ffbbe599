// The libvirt/QEMU driver (source URI: any libvirt URI, e.g. qemu:///system; libvirt:///system
// means qemu:///system). A domain is a VM; its definition (inactive XML) is the saved
// configuration; its disks of device "disk" with a file or block source are backed up, keyed
// 2000, 2001, ... in the order of the definition.
//
// How VADP's calls map onto libvirt (docs/libvirt.md has the whole story):
// - A "snapshot" of a running domain is a pull-mode backup job (virDomainBackupBegin): QEMU
//   serves the point-in-time view of every disk over NBD on a unix socket in the driver's
//   run folder, with copy-before-write into scratch files there. The job creates a checkpoint
//   (a persistent dirty bitmap in each qcow2 disk); its name is the disk's change id. Removing
//   the snapshot ends the job, deletes the scratch files, and deletes our older checkpoints
//   that the job's own incrementals did not start from.
// - QueryChangedDiskAreas since a change id reads the job's exported dirty bitmap
//   (qemu:dirty-bitmap:backup-<target>); since "*" it reads base:allocation. A change id the
//   job could not start from (a checkpoint deleted, a bitmap lost by a crash, a disk replaced)
//   answers kNotFound with the reason, and the engine makes a full. A raw disk cannot hold a
//   bitmap: kNotSupported says so, and the engine reads what is allocated and stores only
//   what differs.
// - libvirt must know the incremental's checkpoint when the job begins, so CreateSnapshot
//   takes the parent's change ids (SnapshotOptions::since).
// - A powered-off domain's "snapshot" is its image files as they are (libvirt cannot create a
//   checkpoint offline): the san transport serves them with qemu-nbd (read-only, several
//   processes; or one writer for restores), and a qcow2's persistent bitmap still answers
//   QueryChangedDiskAreas; the point keeps that change id.
// - A remote libvirt (qemu+ssh://HOST/system): its jobs serve over TCP with TLS, read through
//   the nbdssl transport; locally too when nbdssl is asked for without nbd. Their scratch files
//   go to a folder of that host (remote_scratch_dir). The images of a remote domain are not
//   files here: it is backed up while it runs. A restore to a new domain there makes its disks
//   raw volumes of a storage pool and writes them through libvirt's own connection (volume
//   upload, as nbdssl: VolumeUploadAccess); in place, only restores to files.
// - Quiesce: the guest agent's fsfreeze around the job's start.
// - The power-on block is recorded in the domain's metadata (libvirt cannot forbid a start;
//   while a restore writes, qemu-nbd holds the image's write lock, so QEMU cannot open it).
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "hv/hypervisor.h"
#include "hv/libvirt/libvirt_xml.h"
#include "hv/libvirt/virt.h"
#include "nbd/nbd_disk.h"

namespace vmbackup::hv::libvirt {

struct DriverOptions {
  // Where job sockets, scratch files and markers go (one folder per domain; QEMU must be able
  // to write there). Default: /var/lib/vmbackup/libvirt for root, else
  // $XDG_RUNTIME_DIR/vmbackup-libvirt; VMBACKUP_LIBVIRT_RUN_DIR overrides it.
  std::string run_dir;
  // New domains' disks: this format ("qcow2" or "raw"; "" keeps the original's) in this
  // folder ("" = libvirt's default pool, /var/lib/libvirt/images for root).
  std::string new_disk_format, new_disk_dir;
  // A remote libvirt's new domains: their disks are raw volumes of this storage pool, uploaded
  // through libvirt's connection ("" = "default").
  std::string new_disk_pool;
  int max_connections_per_disk = 4;
  // Jobs served over TCP with TLS (the nbdssl transport; always for a remote libvirt): the
  // address QEMU listens on and vmbackup connects to ("" = the URI's host, or localhost), the
  // first of ten ports tried, and the folder of vmbackup's client certificates (ca-cert.pem,
  // client-cert.pem, client-key.pem). libvirt's own are qemu.conf's backup_tls_x509_cert_dir.
  std::string nbd_host;
  int nbd_port = 10809;
  std::string nbd_tls_dir = "/etc/pki/qemu";
  // A remote host's folder for the jobs' scratch files (libvirt creates them as QEMU's user
  // and removes them with the job).
  std::string remote_scratch_dir = "/var/tmp";
};

// libvirt's own default pool, where virt-install and virt-manager put disks (new domains' disks
// go there by default). Never a folder a saved definition names: it comes from a repository,
// which must not choose where we write.
std::string DefaultImagesDir();

class LibvirtDriver final : public Hypervisor {
 public:
  static Result<std::unique_ptr<LibvirtDriver>> Connect(const std::string& uri,
                                                        DriverOptions options);
  ~LibvirtDriver() override;

  std::string uri() const override { return uri_; }
  Result<std::vector<std::string>> ListVms() override;
  Result<VmInfo> GetVm(std::string_view name) override;
  Status EnableChangeTracking(const VmInfo&) override { return Status::Ok(); }
  Status ResetChangeTracking(const VmInfo& vm) override;
  Status SetPowerOnBlock(const VmInfo& vm, const std::string& why) override;
  Result<std::vector<SnapshotRef>> ListSnapshots(const VmInfo& vm) override;
  Result<SnapshotRef> CreateSnapshot(const VmInfo& vm, std::string_view name,
                                     const SnapshotOptions& options) override;
  Status RemoveSnapshot(const VmInfo& vm, const SnapshotRef& snapshot) override;
  Status RevertToSnapshot(const VmInfo& vm, const SnapshotRef& snapshot) override;
  Result<std::string> ChangeId(const VmInfo& vm, const SnapshotRef* snapshot,
                               int device_key) override;
  Result<ChangedAreas> QueryChangedDiskAreas(const VmInfo& vm, const SnapshotRef* snapshot,
                                             int device_key, uint64_t start_offset,
                                             std::string_view change_id) override;
  Result<std::unique_ptr<DiskAccess>> OpenDisk(const VmInfo& vm, const SnapshotRef* snapshot,
                                               int device_key, std::span<const TransportMode> modes,
                                               OpenMode mode,
                                               std::vector<std::string>* attempts) override;
  Result<VmInfo> CreateVm(std::string_view name, const std::string& config,
                          const std::vector<uint64_t>& capacities,
                          const std::string& power_on_block) override;
  Status DestroyVm(const VmInfo& vm) override;

  struct Session;  // one snapshot's state (libvirt_driver.cc)

 private:
  LibvirtDriver(std::string uri, ConnectPtr conn, DriverOptions options);
  Result<DomainPtr> Domain(std::string_view name);
  Result<std::string> DomainDir(const VmInfo& vm, const DomainDesc& live);
  Result<Session*> FindSession(const VmInfo& vm, const SnapshotRef* snapshot);
  // The disks of `dom` as a snapshot sees them, with the change ids each can start from.
  Result<std::unique_ptr<Session>> NewSession(virDomainPtr dom, const VmInfo& vm,
                                              const std::string& name,
                                              const std::map<int, std::string>& since);
  Result<Consistency> BeginJob(virDomainPtr dom, const VmInfo& vm, Session& s,
                               const SnapshotOptions& o);
  Status EndSession(const VmInfo& vm, Session& s);
  Status DeleteOurCheckpoints(virDomainPtr dom, const VmInfo& vm,
                              const std::vector<std::string>& keep, bool offline);
  Result<std::unique_ptr<DiskAccess>> OpenSan(const VmInfo& vm, Session& s, int key, OpenMode mode);
  Result<std::unique_ptr<DiskAccess>> OpenExport(const VmInfo& vm, Session& s, int key);
  // A connection to export `target` of the job of `s`.
  Result<std::unique_ptr<nbd::NbdDisk>> ConnectJob(const Session& s, const std::string& target,
                                                   nbd::NbdDisk::Options o);
  // Why transport `m` cannot serve `s`, or "" when it can.
  std::string TransportRefusal(const Session& s, TransportMode m, OpenMode mode) const;
  // A remote libvirt's new domain (made by this driver): its disks' volumes, and writing one.
  bool MadeHere(const std::string& vm_name);
  Result<std::unique_ptr<DiskAccess>> OpenUpload(const VmInfo& vm, Session& s, int key);
  // A new domain's disks: files made with qemu-img here, or volumes of a pool on a remote host.
  Result<std::vector<NewDisk>> CreateFiles(const std::string& name,
                                           const std::vector<DomainDisk>& disks,
                                           const std::vector<uint64_t>& capacities);
  Result<std::vector<NewDisk>> CreateVolumes(const std::string& name,
                                             const std::vector<DomainDisk>& disks,
                                             const std::vector<uint64_t>& capacities);

  std::string uri_;
  std::string remote_host_;  // "" for this machine's libvirt
  ConnectPtr conn_;
  DriverOptions options_;
  std::mutex mu_;
  std::map<std::string, std::unique_ptr<Session>> sessions_;
  // Remote domains this driver defined: name -> device key -> volume path.
  std::map<std::string, std::map<int, std::string>> volumes_;
};

}  // namespace vmbackup::hv::libvirt
