// NbdDisk: an NBD export as a block device, through libnbd (the NBD client library of the
// nbdkit/libnbd project). Connects by URI (nbd://, nbd+unix://, nbds+unix:// with TLS, see
// nbd_connect_uri(3)); reads, writes, flushes, and maps allocation with block status.
// A server that breaks the protocol or fails a request gives a clear kIOError / kProtocol
// naming the export; requests time out by libnbd's rules. Not thread-safe.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "io/block_device.h"

struct nbd_handle;

namespace vmbackup::nbd {

class NbdDisk final : public io::BlockWriter {
 public:
  struct Options {
    // The URI may name local files (tls-psk-file, tls-certificates): only for URIs this
    // program made itself.
    bool allow_local_files = false;
    std::string tls_username;  // for a TLS pre-shared key; empty: libnbd's default (the login)
  };
  static Result<std::unique_ptr<NbdDisk>> Connect(const std::string& uri, const Options& options);
  static Result<std::unique_ptr<NbdDisk>> Connect(const std::string& uri) {
    return Connect(uri, Options{});
  }
  // Runs `argv` (no shell) with its stdin and stdout as the connection, as nbd_connect_command
  // does (e.g. `nbdkit -s PLUGIN ...`); the command ends when the disk is closed. `name` names
  // the export in messages.
  static Result<std::unique_ptr<NbdDisk>> ConnectCommand(const std::vector<std::string>& argv,
                                                         const std::string& name);
  ~NbdDisk() override;

  uint64_t size() const override { return size_; }
  std::string name() const override { return uri_; }
  bool read_only() const { return read_only_; }
  Status ReadAt(uint64_t offset, std::span<uint8_t> buf) override;
  Status WriteAt(uint64_t offset, std::span<const uint8_t> data) override;
  // NBD_CMD_WRITE_ZEROES, letting the server punch holes (no NO_HOLE flag); writes zeros when
  // the export cannot zero.
  Status WriteZeroes(uint64_t offset, uint64_t length) override;
  Status Flush() override;
  // From NBD block status (base:allocation); everything when the server cannot say.
  Result<ExtentSet> AllocatedExtents(uint64_t offset, uint64_t length) override;

 private:
  NbdDisk(nbd_handle* h, std::string uri) : h_(h), uri_(std::move(uri)) {}
  Status Handshaken();  // size, read-only, block status, after a connect
  Status Error(const std::string& what) const;
  nbd_handle* h_;
  std::string uri_;
  uint64_t size_ = 0;
  bool read_only_ = false, can_block_status_ = false;
};

}  // namespace vmbackup::nbd
