#include "nbd/nbd_disk.h"

#include <libnbd.h>

#include "base/checked_math.h"
#include "base/lazy_library.h"
#include "base/strings.h"

VMBACKUP_DECLARE_LAZY_LIBRARY(nbd)

namespace vmbackup::nbd {
namespace {

// libnbd splits nothing for us: requests above the server's maximum fail, so reads and
// writes go in pieces of at most this.
constexpr uint64_t kMaxRequest = 32 << 20;

// argv as libnbd takes it: C strings ending in a null pointer (views into `argv`).
std::vector<char*> CArgv(const std::vector<std::string>& argv) {
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  return args;
}

}  // namespace

Result<std::unique_ptr<NbdDisk>> NbdDisk::Create(std::string name, const Options& options) {
  VMBACKUP_RETURN_IF_ERROR(lazy::Load(lazy::nbd));
  nbd_handle* h = nbd_create();
  if (!h) return IOError(std::string("libnbd: ") + nbd_get_error());
  std::unique_ptr<NbdDisk> d(new NbdDisk(h, std::move(name)));
  if (!options.tls_username.empty() &&
      nbd_set_tls_username(h, options.tls_username.c_str()) == -1) {
    return d->Error("set the TLS user name");
  }
  if (!options.tls_certificates.empty() &&
      (nbd_set_tls(h, LIBNBD_TLS_REQUIRE) == -1 ||
       nbd_set_tls_certificates(h, options.tls_certificates.c_str()) == -1 ||
       nbd_set_tls_verify_peer(h, true) == -1)) {
    return d->Error("use the TLS certificates in " + options.tls_certificates);
  }
  if (nbd_set_uri_allow_local_file(h, options.allow_local_files) == -1 ||
      nbd_add_meta_context(h, LIBNBD_CONTEXT_BASE_ALLOCATION) == -1) {
    return d->Error("set up");
  }
  for (const std::string& c : options.meta_contexts) {
    if (nbd_add_meta_context(h, c.c_str()) == -1) return d->Error("ask for context " + c);
  }
  return d;
}

Result<std::unique_ptr<NbdDisk>> NbdDisk::Connect(const std::string& uri, const Options& options) {
  VMBACKUP_ASSIGN_OR_RETURN(auto d, Create(uri, options));
  if (nbd_connect_uri(d->h_, uri.c_str()) == -1) return d->Error("connect");
  VMBACKUP_RETURN_IF_ERROR(d->Handshaken());
  return d;
}

Result<std::unique_ptr<NbdDisk>> NbdDisk::ConnectUnix(const std::string& socket_path,
                                                      const std::string& export_name,
                                                      const Options& options) {
  VMBACKUP_ASSIGN_OR_RETURN(auto d,
                            Create("export '" + export_name + "' on " + socket_path, options));
  if (nbd_set_export_name(d->h_, export_name.c_str()) == -1 ||
      nbd_connect_unix(d->h_, socket_path.c_str()) == -1) {
    return d->Error("connect");
  }
  VMBACKUP_RETURN_IF_ERROR(d->Handshaken());
  return d;
}

Result<std::unique_ptr<NbdDisk>> NbdDisk::ConnectTcp(const std::string& host, int port,
                                                     const std::string& export_name,
                                                     const Options& options) {
  const std::string where =
      (host.find(':') != std::string::npos ? "[" + host + "]" : host) + ":" + std::to_string(port);
  VMBACKUP_ASSIGN_OR_RETURN(auto d, Create("export '" + export_name + "' at " + where +
                                               (options.tls_certificates.empty() ? "" : " (TLS)"),
                                           options));
  const std::string service = std::to_string(port);
  if (nbd_set_export_name(d->h_, export_name.c_str()) == -1 ||
      nbd_connect_tcp(d->h_, host.c_str(), service.c_str()) == -1) {
    return d->Error("connect");
  }
  VMBACKUP_RETURN_IF_ERROR(d->Handshaken());
  return d;
}

Result<std::unique_ptr<NbdDisk>> NbdDisk::ConnectActivated(const std::vector<std::string>& argv,
                                                           const std::string& name,
                                                           const Options& options) {
  if (argv.empty()) return InvalidArgumentError("NBD: an empty command");
  VMBACKUP_ASSIGN_OR_RETURN(auto d, Create(name, options));
  std::vector<char*> args = CArgv(argv);
  if (nbd_connect_systemd_socket_activation(d->h_, args.data()) == -1)
    return d->Error("run " + argv[0]);
  VMBACKUP_RETURN_IF_ERROR(d->Handshaken());
  return d;
}

Result<std::unique_ptr<NbdDisk>> NbdDisk::ConnectCommand(const std::vector<std::string>& argv,
                                                         const std::string& name) {
  if (argv.empty()) return InvalidArgumentError("NBD: an empty command");
  VMBACKUP_ASSIGN_OR_RETURN(auto d, Create(name, Options{}));
  std::vector<char*> args = CArgv(argv);
  if (nbd_connect_command(d->h_, args.data()) == -1) return d->Error("run " + argv[0]);
  VMBACKUP_RETURN_IF_ERROR(d->Handshaken());
  return d;
}

Status NbdDisk::Handshaken() {
  int64_t size = nbd_get_size(h_);
  if (size < 0) return Error("size");
  size_ = uint64_t(size);
  read_only_ = nbd_is_read_only(h_) == 1;
  can_block_status_ = nbd_can_meta_context(h_, LIBNBD_CONTEXT_BASE_ALLOCATION) == 1;
  can_multi_conn_ = nbd_can_multi_conn(h_) == 1;
  return Status::Ok();
}

NbdDisk::~NbdDisk() {
  if (h_) {
    nbd_shutdown(h_, 0);
    nbd_close(h_);
  }
}

Status NbdDisk::Error(const std::string& what) const {
  const char* e = nbd_get_error();
  int errnum = nbd_get_errno();
  std::string msg = StrFormat("NBD %s: %s", uri_.c_str(), what.c_str());
  if (e) msg += std::string(": ") + e;
  return errnum == EINVAL || errnum == EPROTO ? ProtocolError(msg) : IOError(msg);
}

Status NbdDisk::ReadAt(uint64_t offset, std::span<uint8_t> buf) {
  if (!RangeWithin(offset, buf.size(), size_))
    return InvalidArgumentError("read past the end of " + uri_);
  for (uint64_t done = 0; done < buf.size();) {
    uint64_t n = std::min<uint64_t>(kMaxRequest, buf.size() - done);
    if (nbd_pread(h_, buf.data() + done, n, offset + done, 0) == -1) {
      return Error(StrFormat("read %llu bytes at %llu", (unsigned long long)n,
                             (unsigned long long)(offset + done)));
    }
    done += n;
  }
  return Status::Ok();
}

Status NbdDisk::WriteAt(uint64_t offset, std::span<const uint8_t> data) {
  if (!RangeWithin(offset, data.size(), size_))
    return InvalidArgumentError("write past the end of " + uri_);
  for (uint64_t done = 0; done < data.size();) {
    uint64_t n = std::min<uint64_t>(kMaxRequest, data.size() - done);
    if (nbd_pwrite(h_, data.data() + done, n, offset + done, 0) == -1) {
      return Error(StrFormat("write %llu bytes at %llu", (unsigned long long)n,
                             (unsigned long long)(offset + done)));
    }
    done += n;
  }
  return Status::Ok();
}

Status NbdDisk::WriteZeroes(uint64_t offset, uint64_t length) {
  if (!RangeWithin(offset, length, size_))
    return InvalidArgumentError("zeroed range past the end of " + uri_);
  if (nbd_can_zero(h_) != 1) return io::BlockWriter::WriteZeroes(offset, length);
  constexpr uint64_t kMaxZero = 1ull << 30;
  for (uint64_t done = 0; done < length;) {
    uint64_t n = std::min(kMaxZero, length - done);
    if (nbd_zero(h_, n, offset + done, 0) == -1) {
      return Error(StrFormat("zero %llu bytes at %llu", (unsigned long long)n,
                             (unsigned long long)(offset + done)));
    }
    done += n;
  }
  return Status::Ok();
}

Status NbdDisk::Flush() {
  if (nbd_can_flush(h_) == 1 && nbd_flush(h_, 0) == -1) return Error("flush");
  return Status::Ok();
}

namespace {
struct MapState {
  const std::string* context;
  ExtentSet* out;
  uint64_t pos;
  uint32_t mask;
  bool want_set;
  bool bad = false;
};

int OnExtents(void* user, const char* context, uint64_t, uint32_t* entries, size_t n, int*) {
  auto* st = static_cast<MapState*>(user);
  if (*st->context != context) return 0;
  if (n % 2 != 0) {
    st->bad = true;
    return 0;
  }
  for (size_t i = 0; i < n; i += 2) {
    const uint32_t length = entries[i], flags = entries[i + 1];
    const bool set = (flags & st->mask) == st->mask;
    if (set == st->want_set) st->out->Add(st->pos, length);
    st->pos += length;
  }
  return 0;
}
}  // namespace

bool NbdDisk::HasContext(const std::string& context) const {
  return nbd_can_meta_context(h_, context.c_str()) == 1;
}

Result<ExtentSet> NbdDisk::MapContext(const std::string& context, uint64_t offset, uint64_t length,
                                      uint32_t mask, bool want_set) {
  if (!HasContext(context)) {
    return NotSupportedError("NBD " + uri_ + ": the server does not offer context " + context);
  }
  ExtentSet out;
  const uint64_t end = std::min(size_, offset + std::min(length, size_ - std::min(offset, size_)));
  for (uint64_t pos = offset; pos < end;) {
    MapState st{&context, &out, pos, mask, want_set};
    uint64_t count = std::min<uint64_t>(end - pos, 1ull << 30);
    if (nbd_block_status(h_, count, pos, nbd_extent_callback{OnExtents, &st, nullptr}, 0) == -1)
      return Error("block status of " + context);
    if (st.bad || st.pos <= pos) return ProtocolError("NBD " + uri_ + ": bad block status reply");
    pos = st.pos;
  }
  return out.Clip(offset, end - offset);
}

Result<ExtentSet> NbdDisk::AllocatedExtents(uint64_t offset, uint64_t length) {
  if (!can_block_status_) {
    ExtentSet out;
    const uint64_t end =
        std::min(size_, offset + std::min(length, size_ - std::min(offset, size_)));
    out.Add(offset, end - offset);
    return out;
  }
  return MapContext(LIBNBD_CONTEXT_BASE_ALLOCATION, offset, length, LIBNBD_STATE_HOLE, false);
}

}  // namespace vmbackup::nbd
