// One datastore file read through vSphere's datastore file service (HTTPS /folder, with
// ranges and the session cookie), as a block device for the VMDK chain reader.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "http/http_client.h"
#include "io/block_device.h"

namespace vmbackup::hv::vsphere {

class HttpFile final : public io::BlockWriter {
 public:
  // Gives the session's cookies after the server refused the ones passed (a session that
  // ended in the middle of a job): it logs in again when needed.
  using RenewCookies = std::function<Result<std::string>(const std::string& refused)>;
  // `path` is the URL path and query ("/folder/vm/disk-flat.vmdk?dcPath=DC0&dsName=ds1").
  // Its size comes from a HEAD request: kNotFound for a 404.
  static Result<std::unique_ptr<HttpFile>> Open(const std::string& base_url,
                                                const http::TlsOptions& tls,
                                                const std::string& cookies, const std::string& path,
                                                const std::string& name, double timeout_seconds,
                                                RenewCookies renew = nullptr);
  uint64_t size() const override { return size_; }
  std::string name() const override { return name_; }
  // Each range is asked again up to twice after a failed transfer (a reset, a stall).
  Status ReadAt(uint64_t offset, std::span<uint8_t> buf) override;
  Status WriteAt(uint64_t, std::span<const uint8_t>) override;
  Status Flush() override { return Status::Ok(); }

 private:
  HttpFile(std::unique_ptr<http::Client> c, std::string path, std::string name, uint64_t size,
           RenewCookies renew)
      : client_(std::move(c)),
        path_(std::move(path)),
        name_(std::move(name)),
        size_(size),
        renew_(std::move(renew)) {}
  std::unique_ptr<http::Client> client_;
  std::string path_, name_;
  uint64_t size_;
  RenewCookies renew_;
};

}  // namespace vmbackup::hv::vsphere
