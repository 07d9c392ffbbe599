// One kept-alive HTTP/1.1 connection for large ranged GETs (disk contents from vSphere's
// datastore file service), written on OpenSSL and sockets directly.
//
// Why not libcurl, as the rest of this library: libcurl 7.88 reads TLS one record at a time
// (two recv calls and a poll per 16 KiB record) and copies every byte once more from its
// buffer into the caller's. OpenSSL's read-ahead, which takes many records per recv, cannot
// be used under libcurl: it polls the socket and does not see records OpenSSL has already
// read. Measured on vcsim's file service (2 GiB, 4 connections): 2.3 CPU seconds under
// libcurl, 1.7 here; on a 2-core proxy the CPU decides the backup's speed. Requests, status
// and header handling stay those of an ordinary HTTP/1.1 client; TLS is verified exactly as
// `Client` does (a CA store or file with the host name, or a pinned SHA-256 thumbprint).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>

#include "base/result.h"
#include "http/http_client.h"

namespace vmbackup::http {

class RangeConnection {
 public:
  // `base_url` is "https://HOST[:PORT]" (or http:// on 127.0.0.1/::1/localhost, for tests).
  // Nothing is connected until the first request. `timeout_seconds` bounds connecting and
  // each stall of a transfer.
  static Result<std::unique_ptr<RangeConnection>> Create(const std::string& base_url,
                                                         const TlsOptions& tls,
                                                         double timeout_seconds = 60);
  ~RangeConnection();
  RangeConnection(const RangeConnection&) = delete;
  RangeConnection& operator=(const RangeConnection&) = delete;

  // GET `path` (path and query) of bytes [offset, offset + out.size()) into `out`, with
  // `headers` added ("Cookie" for instance). The answer must be a 206 of exactly that range:
  //   kUnauthenticated  HTTP 401/403, or a TLS certificate refused (a pin: both thumbprints);
  //   kProtocol         a malformed answer, more or other bytes than asked;
  //   kNotSupported     a body this reader does not take (chunked): use `Client::GetRange`;
  //   kIOError          no connection, a reset, a stall, a short body, any other status.
  // After an error the connection is closed; the next request connects again. A kept-alive
  // connection the server had closed in the meantime is reopened once, transparently.
  Status GetRange(const std::string& path, const std::map<std::string, std::string>& headers,
                  uint64_t offset, std::span<uint8_t> out);

  // How many TCP connections this object opened (tests: keep-alive is used).
  int connects() const { return connects_; }

  struct Tls;  // OpenSSL's context and connection (range_connection.cc)

 private:
  RangeConnection(std::string base_url, std::string host, std::string port, bool https,
                  TlsOptions tls, double timeout_seconds);
  Status Connect();
  void Close();
  Status SendAll(const std::string& bytes);
  // Some bytes into `buf`: 0 at the end of the stream.
  Result<size_t> Receive(uint8_t* buf, size_t n);
  Status ReadBody(std::span<uint8_t> out);
  Status Exchange(const std::string& request, const std::string& what, uint64_t offset,
                  std::span<uint8_t> out, bool* nothing_came);

  const std::string base_url_, host_, port_;
  const bool https_;
  const TlsOptions tls_;
  const double timeout_seconds_;
  int fd_ = -1;
  std::unique_ptr<Tls> ssl_;
  std::string carry_;  // bytes read past a response head: the start of its body
  int connects_ = 0;
  bool stalled_ = false;  // the last Receive waited out the timeout
};

}  // namespace vmbackup::http
