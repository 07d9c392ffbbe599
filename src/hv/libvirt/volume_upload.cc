#include "hv/libvirt/volume_upload.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "base/strings.h"

namespace vmbackup::hv::libvirt {
namespace {

// libvirt's RPC carries at most 256 KiB of stream data per message.
constexpr size_t kPiece = 256 << 10;

// A stream that is aborted unless it was finished.
class Stream {
 public:
  static Result<Stream> New(virConnectPtr conn, const std::string& what) {
    virStreamPtr s = virStreamNew(conn, 0);
    if (!s) return LastError("open a stream for " + what);
    return Stream(StreamPtr(s));
  }
  Stream(Stream&&) = default;
  ~Stream() {
    if (s_ && !finished_) virStreamAbort(s_.get());
  }
  virStreamPtr get() const { return s_.get(); }
  Status Finish(const std::string& what) {
    finished_ = true;
    if (virStreamFinish(s_.get()) < 0) return LastError(what);
    return Status::Ok();
  }

 private:
  explicit Stream(StreamPtr s) : s_(std::move(s)) {}
  StreamPtr s_;
  bool finished_ = false;
};

Status SendAll(virStreamPtr st, const uint8_t* data, size_t n, const std::string& what) {
  while (n > 0) {
    const int sent = virStreamSend(st, reinterpret_cast<const char*>(data), n);
    if (sent <= 0) return LastError("upload " + what);
    data += sent;
    n -= size_t(sent);
  }
  return Status::Ok();
}

// Checks that [offset, offset+length) of `f` reads as zeros (the volume has a hole there).
Status ExpectZeros(io::PosixFile& f, uint64_t offset, uint64_t length, std::vector<uint8_t>& buf,
                   const std::string& what) {
  VMBACKUP_ASSIGN_OR_RETURN(ExtentSet data, f.AllocatedExtents(offset, length));
  for (const Extent& e : data) {
    for (uint64_t at = e.offset; at < e.end();) {
      const size_t n = size_t(std::min<uint64_t>(buf.size(), e.end() - at));
      VMBACKUP_RETURN_IF_ERROR(f.ReadAt(at, {buf.data(), n}));
      if (!IsAllZero(buf.data(), n)) {
        return CorruptionError(StrFormat("%s: bytes from %llu hold data here but not in the volume",
                                         what.c_str(), (unsigned long long)at));
      }
      at += n;
    }
  }
  return Status::Ok();
}

}  // namespace

Status UploadVolume(virConnectPtr conn, virStorageVolPtr vol, io::PosixFile& from,
                    const std::string& what) {
  const uint64_t size = from.size();
  VMBACKUP_ASSIGN_OR_RETURN(ExtentSet data, from.AllocatedExtents(0, size));
  VMBACKUP_ASSIGN_OR_RETURN(Stream st, Stream::New(conn, what));
  if (virStorageVolUpload(vol, st.get(), 0, size, VIR_STORAGE_VOL_UPLOAD_SPARSE_STREAM) < 0)
    return LastError("upload " + what);
  std::vector<uint8_t> buf(kPiece);
  uint64_t pos = 0;
  auto hole = [&](uint64_t length) -> Status {
    if (length > 0 && virStreamSendHole(st.get(), (long long)length, 0) < 0)
      return LastError("upload " + what);
    return Status::Ok();
  };
  for (const Extent& e : data) {
    VMBACKUP_RETURN_IF_ERROR(hole(e.offset - pos));
    for (uint64_t at = e.offset; at < e.end();) {
      const size_t n = size_t(std::min<uint64_t>(kPiece, e.end() - at));
      VMBACKUP_RETURN_IF_ERROR(from.ReadAt(at, {buf.data(), n}));
      VMBACKUP_RETURN_IF_ERROR(SendAll(st.get(), buf.data(), n, what));
      at += n;
    }
    pos = e.end();
  }
  VMBACKUP_RETURN_IF_ERROR(hole(size - pos));
  return st.Finish("finish the upload of " + what);
}

Status CompareVolume(virConnectPtr conn, virStorageVolPtr vol, io::PosixFile& with,
                     const std::string& what) {
  const uint64_t size = with.size();
  VMBACKUP_ASSIGN_OR_RETURN(Stream st, Stream::New(conn, what));
  if (virStorageVolDownload(vol, st.get(), 0, 0, VIR_STORAGE_VOL_DOWNLOAD_SPARSE_STREAM) < 0)
    return LastError("read back " + what);
  std::vector<uint8_t> got(kPiece), want(kPiece);
  uint64_t pos = 0;
  for (;;) {
    const int n = virStreamRecvFlags(st.get(), reinterpret_cast<char*>(got.data()), got.size(),
                                     VIR_STREAM_RECV_STOP_AT_HOLE);
    if (n == 0) break;  // the end
    if (n == -3) {      // a hole: zeros in the volume
      long long length = 0;
      if (virStreamRecvHole(st.get(), &length, 0) < 0) return LastError("read back " + what);
      if (length < 0 || uint64_t(length) > size - pos)
        return CorruptionError(what + ": the volume is longer than the disk");
      VMBACKUP_RETURN_IF_ERROR(ExpectZeros(with, pos, uint64_t(length), want, what));
      pos += uint64_t(length);
      continue;
    }
    if (n < 0) return LastError("read back " + what);
    if (uint64_t(n) > size - pos)
      return CorruptionError(what + ": the volume is longer than the disk");
    VMBACKUP_RETURN_IF_ERROR(with.ReadAt(pos, {want.data(), size_t(n)}));
    if (std::memcmp(got.data(), want.data(), size_t(n)) != 0) {
      size_t i = 0;
      while (got[i] == want[i]) ++i;
      return CorruptionError(StrFormat("%s: byte %llu differs from what was uploaded", what.c_str(),
                                       (unsigned long long)(pos + i)));
    }
    pos += uint64_t(n);
  }
  if (pos != size) {
    return CorruptionError(StrFormat("%s: the volume holds %llu bytes, the disk %llu", what.c_str(),
                                     (unsigned long long)pos, (unsigned long long)size));
  }
  return st.Finish("finish reading back " + what);
}

Result<std::unique_ptr<VolumeUploadAccess>> VolumeUploadAccess::Make(virConnectPtr conn,
                                                                     VolumePtr vol,
                                                                     uint64_t capacity,
                                                                     std::string label) {
  VMBACKUP_ASSIGN_OR_RETURN(io::TempDir dir, io::TempDir::Make("vmbackup-volume"));
  VMBACKUP_ASSIGN_OR_RETURN(auto file, io::PosixFile::Open(io::JoinPath(dir.path(), "disk.raw"),
                                                           io::OpenMode::kCreateNew));
  VMBACKUP_RETURN_IF_ERROR(file->Truncate(capacity));
  return std::unique_ptr<VolumeUploadAccess>(new VolumeUploadAccess(
      conn, std::move(vol), std::move(dir), std::move(file), std::move(label)));
}

VolumeUploadAccess::VolumeUploadAccess(virConnectPtr conn, VolumePtr vol, io::TempDir dir,
                                       std::unique_ptr<io::PosixFile> file, std::string label)
    : conn_(conn),
      vol_(std::move(vol)),
      dir_(std::move(dir)),
      file_(std::move(file)),
      label_(std::move(label)) {}

Status VolumeUploadAccess::ReadAt(uint64_t offset, std::span<uint8_t> buf) {
  return file_->ReadAt(offset, buf);
}

Status VolumeUploadAccess::WriteAt(uint64_t offset, std::span<const uint8_t> data) {
  if (offset > size() || data.size() > size() - offset)
    return InvalidArgumentError(label_ + ": a write past the end of the disk");
  dirty_ = true;
  return file_->WriteAt(offset, data);
}

Status VolumeUploadAccess::WriteZeroes(uint64_t offset, uint64_t length) {
  if (offset > size() || length > size() - offset)
    return InvalidArgumentError(label_ + ": zeros past the end of the disk");
  dirty_ = true;
  return file_->WriteZeroes(offset, length);
}

Result<ExtentSet> VolumeUploadAccess::AllocatedExtents(uint64_t offset, uint64_t length) {
  return file_->AllocatedExtents(offset, length);
}

Status VolumeUploadAccess::Flush() {
  if (!dirty_) return Status::Ok();
  VMBACKUP_RETURN_IF_ERROR(UploadVolume(conn_, vol_.get(), *file_, label_));
  VMBACKUP_RETURN_IF_ERROR(CompareVolume(conn_, vol_.get(), *file_, label_));
  dirty_ = false;
  return Status::Ok();
}

}  // namespace vmbackup::hv::libvirt
