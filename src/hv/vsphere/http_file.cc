#include "hv/vsphere/http_file.h"

#include <cstdlib>

#include "base/checked_math.h"
#include "base/strings.h"

namespace vmbackup::hv::vsphere {

Result<std::unique_ptr<HttpFile>> HttpFile::Open(const std::string& base_url,
                                                 const http::TlsOptions& tls,
                                                 const std::string& cookies,
                                                 const std::string& path, const std::string& name,
                                                 double timeout_seconds, RenewCookies renew) {
  VMBACKUP_ASSIGN_OR_RETURN(auto c, http::Client::Create(base_url, tls, timeout_seconds));
  c->set_cookies(cookies);
  VMBACKUP_ASSIGN_OR_RETURN(http::Response r, c->Send({"HEAD", path, {}, ""}));
  if (r.status == 404) return NotFoundError(name + ": no such file on the datastore (HTTP 404)");
  if (r.status == 401 || r.status == 403) {
    return UnauthenticatedError(StrFormat(
        "%s: the datastore file service refused access (HTTP %ld)", name.c_str(), r.status));
  }
  if (r.status != 200)
    return IOError(StrFormat("%s: HEAD answered HTTP %ld", name.c_str(), r.status));
  auto len = ParseUint(r.headers["content-length"]);
  if (!len) return ProtocolError(name + ": the datastore file service gave no Content-Length");
  // Range support is not always announced on HEAD; each ranged GET checks for a 206 instead.
  return std::unique_ptr<HttpFile>(new HttpFile(std::move(c), base_url, tls, timeout_seconds, path,
                                                name, *len, std::move(renew)));
}

namespace {

// libcurl follows the proxy settings of the environment; RangeConnection does not.
bool ProxyConfigured(const std::string& base_url) {
  const bool https = base_url.rfind("https://", 0) == 0;
  for (const char* name : {"all_proxy", "ALL_PROXY", https ? "https_proxy" : "http_proxy",
                           https ? "HTTPS_PROXY" : "HTTP_PROXY"}) {
    const char* v = std::getenv(name);
    if (v && *v) return true;
  }
  return false;
}

}  // namespace

HttpFile::HttpFile(std::unique_ptr<http::Client> c, std::string base_url, http::TlsOptions tls,
                   double timeout_seconds, std::string path, std::string name, uint64_t size,
                   RenewCookies renew)
    : base_url_(std::move(base_url)),
      tls_(std::move(tls)),
      timeout_seconds_(timeout_seconds),
      path_(std::move(path)),
      name_(std::move(name)),
      size_(size),
      renew_(std::move(renew)),
      curl_only_(ProxyConfigured(base_url_)) {
  cookies_ = c->cookies();
  curls_.Give(std::move(c));
}

Status HttpFile::ReadAt(uint64_t offset, std::span<uint8_t> buf) {
  if (!RangeWithin(offset, buf.size(), size_)) {
    return InvalidArgumentError(StrFormat("%s: read of %zu bytes at %llu past the end (%llu bytes)",
                                          name_.c_str(), buf.size(), (unsigned long long)offset,
                                          (unsigned long long)size_));
  }
  std::string cookies;
  {
    std::lock_guard<std::mutex> l(mu_);
    cookies = cookies_;
  }
  Status s;
  bool renewed = false;
  for (int attempt = 0; attempt < 3; ++attempt) {
    s = GetOnce(offset, buf, cookies);
    if (s.code() == ErrorCode::kUnauthenticated && renew_ && !renewed) {
      // The session ended under the job: once per read, a new one (shared by every
      // connection of this file).
      renewed = true;
      auto fresh = renew_(cookies);
      if (!fresh) return fresh.error().WithContext(name_);
      cookies = *fresh;
      {
        std::lock_guard<std::mutex> l(mu_);
        cookies_ = cookies;
      }
      --attempt;
      continue;
    }
    if (s.ok() || s.code() == ErrorCode::kUnauthenticated || s.code() == ErrorCode::kProtocol)
      break;
  }
  return s.WithContext(name_);
}

Status HttpFile::GetOnce(uint64_t offset, std::span<uint8_t> buf, const std::string& cookies) {
  if (curl_only_) return GetWithCurl(offset, buf, cookies);
  std::unique_ptr<http::RangeConnection> c = ranges_.Take();
  if (!c) {
    VMBACKUP_ASSIGN_OR_RETURN(c, http::RangeConnection::Create(base_url_, tls_, timeout_seconds_));
  }
  Status s = c->GetRange(path_, {{"Cookie", cookies}}, offset, buf);
  ranges_.Give(std::move(c));  // after a failure it connects again on its next use
  if (s.code() != ErrorCode::kNotSupported) return s;
  curl_only_ = true;
  return GetWithCurl(offset, buf, cookies);
}

Status HttpFile::GetWithCurl(uint64_t offset, std::span<uint8_t> buf, const std::string& cookies) {
  std::unique_ptr<http::Client> c = curls_.Take();
  if (!c) {
    VMBACKUP_ASSIGN_OR_RETURN(c, http::Client::Create(base_url_, tls_, timeout_seconds_));
  }
  c->set_cookies(cookies);
  Status s = c->GetRange(path_, offset, buf);
  if (s.ok()) curls_.Give(std::move(c));  // a connection that failed is not reused
  return s;
}

Status HttpFile::WriteAt(uint64_t, std::span<const uint8_t>) {
  return NotSupportedError(name_ +
                           ": the datastore file service replaces whole files; it cannot write "
                           "parts of a disk (use the san transport to write in place)");
}

}  // namespace vmbackup::hv::vsphere
