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
    // A folder holding ca-cert.pem, client-cert.pem and client-key.pem (GnuTLS's names, as
    // QEMU's): TLS is then required, and the server's certificate must chain to ca-cert.pem and
    // name the host connected to.
    std::string tls_certificates;
    // Metadata contexts to ask for besides base:allocation, e.g. "qemu:dirty-bitmap:backup-vda"
    // (QEMU's exports of dirty bitmaps); MapContext reads them.
    std::vector<std::string> meta_contexts;
  };
  static Result<std::unique_ptr<NbdDisk>> Connect(const std::string& uri, const Options& options);
  static Result<std::unique_ptr<NbdDisk>> Connect(const std::string& uri) {
    return Connect(uri, Options{});
  }
  // Export `export_name` at TCP `host`:`port` (no URI, so no escaping).
  static Result<std::unique_ptr<NbdDisk>> ConnectTcp(const std::string& host, int port,
                                                     const std::string& export_name,
                                                     const Options& options);
  // Runs `argv` (no shell) with its stdin and stdout as the connection, as nbd_connect_command
  // does (e.g. `nbdkit -s PLUGIN ...`); the command ends when the disk is closed. `name` names
  // the export in messages.
  static Result<std::unique_ptr<NbdDisk>> ConnectCommand(const std::vector<std::string>& argv,
                                                         const std::string& name);
  // Export `export_name` on the unix socket `socket_path` (no URI, so no escaping).
  static Result<std::unique_ptr<NbdDisk>> ConnectUnix(const std::string& socket_path,
                                                      const std::string& export_name,
                                                      const Options& options);
  // Starts `argv` (a server that supports systemd socket activation: qemu-nbd, nbdkit) on a
  // socket of its own and connects to it; the server ends when the disk is closed, and also
  // when this process dies (it serves only this one connection). `name` names it in messages.
  static Result<std::unique_ptr<NbdDisk>> ConnectActivated(const std::vector<std::string>& argv,
                                                           const std::string& name,
                                                           const Options& options);
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
  // Whether the server agreed to the metadata context `context`.
  bool HasContext(const std::string& context) const;
  // The extents of [offset, offset+length) whose flags in `context` have every bit of `mask`
  // set (when `want_set`) or none of them (otherwise). kNotSupported when the server did not
  // agree to the context; kProtocol for an answer out of place.
  Result<ExtentSet> MapContext(const std::string& context, uint64_t offset, uint64_t length,
                               uint32_t mask, bool want_set);
  // Whether the server allows several connections to the export with consistent results.
  bool can_multi_conn() const { return can_multi_conn_; }

 private:
  NbdDisk(nbd_handle* h, std::string uri) : h_(h), uri_(std::move(uri)) {}
  static Result<std::unique_ptr<NbdDisk>> Create(std::string name, const Options& options);
  Status Handshaken();  // size, read-only, block status, after a connect
  Status Error(const std::string& what) const;
  nbd_handle* h_;
  std::string uri_;
  uint64_t size_ = 0;
  bool read_only_ = false, can_block_status_ = false, can_multi_conn_ = false;
};

}  // namespace vmbackup::nbd
