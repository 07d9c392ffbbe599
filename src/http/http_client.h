// An HTTPS client on libcurl (OpenSSL), for the vSphere API and its datastore file service,
// and later S3. One HttpClient is one connection that is kept open between requests; it is
// not thread-safe (use one per thread).
//
// TLS is never trusted silently: the server's certificate is verified against the system's
// CA store or a given CA file, or pinned by the SHA-256 thumbprint of its certificate (as
// vSphere clients do for self-signed hosts). A pinned certificate that does not match is
// refused before anything is sent, and the error names both thumbprints.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <span>
#include <string>

#include "base/result.h"

namespace vmbackup::http {

struct TlsOptions {
  std::string ca_file;     // PEM bundle to verify against instead of the system store
  std::string thumbprint;  // "SHA256:AB:CD:..." or plain hex: pin the certificate instead
  // How the user of this connection makes an untrusted server trusted (its options), for the
  // error; empty: "give the CA that signed it".
  std::string trust_hint;
};

struct Response {
  long status = 0;
  std::map<std::string, std::string> headers;  // names lower-cased; the last one of a name
  std::string body;
};

struct Request {
  std::string method = "GET";  // GET, HEAD, POST, PUT
  std::string path;            // appended to the base URL: "/sdk", "/folder/x?dcPath=DC0"
  std::map<std::string, std::string> headers;
  std::string body;
};

class Client {
 public:
  // `base_url` is "https://HOST[:PORT]" (http:// is allowed only for tests on 127.0.0.1).
  // `timeout_seconds` bounds connecting and each stall in a transfer.
  static Result<std::unique_ptr<Client>> Create(const std::string& base_url, const TlsOptions& tls,
                                                double timeout_seconds = 60);
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // Sends the request with the client's cookies; kIo (naming the URL) when no HTTP answer came,
  // kUnauthenticated for a TLS certificate that is refused. Any HTTP status is a response.
  Result<Response> Send(const Request& request);
  // GET of `length` bytes at `offset` of the resource into `out` (a 206 answer of exactly that
  // range); kIo otherwise.
  Status GetRange(const std::string& path, uint64_t offset, std::span<uint8_t> out);
  // The same GET with `request.headers` (the method is GET; a "range" header is the one this
  // call writes). A 206 answer's body goes straight into `out`, `*got` telling how much came
  // (more than out.size(): kProtocol); any other answer comes back with at most 4 KiB of its
  // body, for the caller to judge. kIo (naming the URL) when no HTTP answer came.
  Result<Response> GetRangeInto(const Request& request, uint64_t offset, std::span<uint8_t> out,
                                size_t* got);
  // PUT of `length` bytes produced by `read(offset, buffer)`, streamed.
  Result<Response> PutStream(const std::string& path, uint64_t length,
                             const std::function<Status(uint64_t, std::span<uint8_t>)>& read);

  // Cookies the server set ("name=value; name2=value2"), and setting them for later requests.
  std::string cookies() const { return cookies_; }
  void set_cookies(std::string c) { cookies_ = std::move(c); }
  const std::string& base_url() const { return base_url_; }

  struct Impl;  // libcurl's handle and the transfer in progress (http_client.cc)

 private:
  Client(std::string base_url, std::unique_ptr<Impl> impl);
  Status Perform(const std::string& url, const char* what);
  std::string base_url_;
  std::string cookies_;
  std::unique_ptr<Impl> impl_;
};

// The SHA-256 and SHA-1 thumbprints ("AB:CD:...") of the certificate `host:port` presents,
// read without trusting it (for the user to compare and pin).
struct Thumbprints {
  std::string sha256, sha1;
};
Result<Thumbprints> FetchThumbprints(const std::string& host, int port,
                                     double timeout_seconds = 15);

// "SHA256:ab:cd..." / "AB CD ..." / "abcd..." -> "AB:CD:..." (kInvalidArgument if not 32 bytes).
Result<std::string> NormalizeSha256Thumbprint(const std::string& text);

// Percent-encoding of a URL query value or path segment ('/' kept when `keep_slash`).
std::string UrlEncode(const std::string& text, bool keep_slash = false);

}  // namespace vmbackup::http
