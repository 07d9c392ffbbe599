// One datastore file read through vSphere's datastore file service (HTTPS /folder, with
// ranges and the session cookie), as a block device for the VMDK chain reader.
#pragma once

#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

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
  // Thread-safe: reads at the same time go over connections of their own (a pool that grows
  // to the number of readers).
  Status ReadAt(uint64_t offset, std::span<uint8_t> buf) override;
  Status WriteAt(uint64_t, std::span<const uint8_t>) override;
  Status Flush() override { return Status::Ok(); }

 private:
  HttpFile(std::unique_ptr<http::Client> c, std::string base_url, http::TlsOptions tls,
           double timeout_seconds, std::string path, std::string name, uint64_t size,
           RenewCookies renew);
  // A connection for one read (an idle one, or a new one) with the current cookies.
  Result<std::unique_ptr<http::Client>> Take();
  void Give(std::unique_ptr<http::Client> c);

  const std::string base_url_;
  const http::TlsOptions tls_;
  const double timeout_seconds_;
  const std::string path_, name_;
  const uint64_t size_;
  RenewCookies renew_;
  std::mutex mu_;  // guards idle_ and cookies_
  std::vector<std::unique_ptr<http::Client>> idle_;
  std::string cookies_;
};

}  // namespace vmbackup::hv::vsphere
