// A new domain's disk on another host's libvirt. libvirt cannot write parts of a storage volume
// over its connection, only stream one whole (virStorageVolUpload), so the restore writes the
// disk here, into a sparse staging file under $TMPDIR, and Flush sends it with its holes as
// holes (a sparse stream), then reads the volume back (virStorageVolDownload) and compares it
// with the staging file byte for byte. The restore's own verify checks the staging file against
// the point; together they check what landed on the host. The staging file needs room for the
// disk's data (not its holes) and goes with the access.
#pragma once

#include <memory>
#include <string>

#include "hv/hypervisor.h"
#include "hv/libvirt/virt.h"
#include "io/posix_file.h"
#include "io/temp_dir.h"

namespace vmbackup::hv::libvirt {

// Sends `from` whole into `vol` (its holes as holes). `what` names the volume in errors.
Status UploadVolume(virConnectPtr conn, virStorageVolPtr vol, io::PosixFile& from,
                    const std::string& what);
// Reads `vol` back and compares it with `with`: kCorruption naming the first byte that differs
// (or a length that does).
Status CompareVolume(virConnectPtr conn, virStorageVolPtr vol, io::PosixFile& with,
                     const std::string& what);

class VolumeUploadAccess final : public DiskAccess {
 public:
  // `conn` must outlive the access.
  static Result<std::unique_ptr<VolumeUploadAccess>> Make(virConnectPtr conn, VolumePtr vol,
                                                          uint64_t capacity, std::string label);
  uint64_t size() const override { return file_->size(); }
  std::string name() const override { return label_; }
  // libvirt's own connection carries the data, as VDDK's nbdssl is NFC through the host's
  // agent: an ssh or TLS connection to libvirtd.
  TransportMode transport() const override { return TransportMode::kNbdSsl; }
  Status ReadAt(uint64_t offset, std::span<uint8_t> buf) override;
  Status WriteAt(uint64_t offset, std::span<const uint8_t> data) override;
  Status WriteZeroes(uint64_t offset, uint64_t length) override;
  Result<ExtentSet> AllocatedExtents(uint64_t offset, uint64_t length) override;
  // Uploads and compares what was written since the last Flush.
  Status Flush() override;

 private:
  VolumeUploadAccess(virConnectPtr conn, VolumePtr vol, io::TempDir dir,
                     std::unique_ptr<io::PosixFile> file, std::string label);
  virConnectPtr conn_;
  VolumePtr vol_;
  io::TempDir dir_;
  std::unique_ptr<io::PosixFile> file_;  // in dir_
  std::string label_;
  bool dirty_ = false;
};

}  // namespace vmbackup::hv::libvirt
