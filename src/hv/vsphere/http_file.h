// One datastore file read through vSphere's datastore file service (HTTPS /folder, with
// ranges and the session cookie), as a block device for the VMDK chain reader.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "http/http_client.h"
#include "http/range_connection.h"
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
  // to the number of readers). Ranges go over `http::RangeConnection` (a third of the CPU
  // libcurl needs), or libcurl when a proxy is configured in the environment or the server
  // sends ranges in a form RangeConnection does not take.
  Status ReadAt(uint64_t offset, std::span<uint8_t> buf) override;
  Status WriteAt(uint64_t, std::span<const uint8_t>) override;
  Status Flush() override { return Status::Ok(); }

 private:
  HttpFile(std::unique_ptr<http::Client> c, std::string base_url, http::TlsOptions tls,
           double timeout_seconds, std::string path, std::string name, uint64_t size,
           RenewCookies renew);
  // One attempt at a range with these cookies.
  Status GetOnce(uint64_t offset, std::span<uint8_t> buf, const std::string& cookies);
  Status GetWithCurl(uint64_t offset, std::span<uint8_t> buf, const std::string& cookies);

  const std::string base_url_;
  const http::TlsOptions tls_;
  const double timeout_seconds_;
  const std::string path_, name_;
  const uint64_t size_;
  RenewCookies renew_;
  // Idle connections, taken by one read at a time.
  template <typename Connection>
  class Pool {
   public:
    std::unique_ptr<Connection> Take() {
      std::lock_guard<std::mutex> l(mu_);
      if (idle_.empty()) return nullptr;
      auto c = std::move(idle_.back());
      idle_.pop_back();
      return c;
    }
    void Give(std::unique_ptr<Connection> c) {
      std::lock_guard<std::mutex> l(mu_);
      idle_.push_back(std::move(c));
    }

   private:
    std::mutex mu_;
    std::vector<std::unique_ptr<Connection>> idle_;
  };
  Pool<http::RangeConnection> ranges_;
  Pool<http::Client> curls_;
  std::mutex mu_;  // guards cookies_
  std::string cookies_;
  std::atomic<bool> curl_only_;
};

}  // namespace vmbackup::hv::vsphere
