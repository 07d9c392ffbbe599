#include "http/range_connection.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstring>

#include "base/strings.h"
#include "http/certificate.h"
#include "http/response_head.h"

namespace vmbackup::http {

struct RangeConnection::Tls {
  SSL_CTX* ctx = nullptr;
  SSL* ssl = nullptr;
  ~Tls() {
    if (ssl) SSL_free(ssl);
    if (ctx) SSL_CTX_free(ctx);
  }
};

namespace {

constexpr size_t kMaxHead = 64 << 10;
// OpenSSL reads this much from the socket at a time (read-ahead): many TLS records per recv.
constexpr size_t kTlsReadBuffer = 256 << 10;

std::string OpenSslError() {
  const unsigned long e = ERR_get_error();
  if (!e) return "no detail";
  char buf[256];
  ERR_error_string_n(e, buf, sizeof buf);
  return buf;
}

bool IsIpAddress(const std::string& host) {
  unsigned char b[16];
  return ::inet_pton(AF_INET, host.c_str(), b) == 1 || ::inet_pton(AF_INET6, host.c_str(), b) == 1;
}

// A write on a socket the peer has closed raises SIGPIPE, which ends the process unless
// handled. OpenSSL's socket BIO writes with write(), not send(MSG_NOSIGNAL), so the signal is
// blocked in this thread while writing, and one raised meanwhile is taken back before the
// old mask returns (the library must not change the process's signal handling).
class SigpipeBlocked {
 public:
  SigpipeBlocked() {
    sigset_t pipe;
    sigemptyset(&pipe);
    sigaddset(&pipe, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe, &old_);
    sigset_t pending;
    sigpending(&pending);
    was_pending_ = sigismember(&pending, SIGPIPE) == 1;
  }
  ~SigpipeBlocked() {
    if (!was_pending_) {
      sigset_t pipe;
      sigemptyset(&pipe);
      sigaddset(&pipe, SIGPIPE);
      const timespec zero{0, 0};
      while (sigtimedwait(&pipe, nullptr, &zero) == SIGPIPE) {
      }
    }
    pthread_sigmask(SIG_SETMASK, &old_, nullptr);
  }

 private:
  sigset_t old_;
  bool was_pending_ = false;
};

timeval ToTimeval(double seconds) {
  timeval tv{};
  tv.tv_sec = time_t(seconds);
  tv.tv_usec = suseconds_t((seconds - double(tv.tv_sec)) * 1e6);
  if (tv.tv_sec == 0 && tv.tv_usec == 0) tv.tv_usec = 1000;
  return tv;
}

}  // namespace

Result<std::unique_ptr<RangeConnection>> RangeConnection::Create(const std::string& base_url,
                                                                 const TlsOptions& tls,
                                                                 double timeout_seconds) {
  bool https;
  std::string rest;
  if (base_url.rfind("https://", 0) == 0) {
    https = true;
    rest = base_url.substr(8);
  } else if (base_url.rfind("http://", 0) == 0) {
    https = false;
    rest = base_url.substr(7);
  } else {
    return InvalidArgumentError("URL " + base_url + " is neither https:// nor http://");
  }
  if (!rest.empty() && rest.back() == '/') rest.pop_back();
  if (rest.empty() || rest.find_first_of("/?#@ ") != std::string::npos)
    return InvalidArgumentError("URL " + base_url + " is not scheme://HOST[:PORT]");
  std::string host, port = https ? "443" : "80";
  if (rest[0] == '[') {
    const size_t close = rest.find(']');
    if (close == std::string::npos) return InvalidArgumentError("URL " + base_url + ": no ']'");
    host = rest.substr(1, close - 1);
    if (close + 1 < rest.size()) {
      if (rest[close + 1] != ':') return InvalidArgumentError("URL " + base_url + ": bad port");
      port = rest.substr(close + 2);
    }
  } else {
    const size_t colon = rest.rfind(':');
    host = rest.substr(0, colon);
    if (colon != std::string::npos) port = rest.substr(colon + 1);
  }
  auto port_number = ParseUint(port);
  if (host.empty() || !port_number || *port_number == 0 || *port_number > 65535 ||
      port.find_first_not_of("0123456789") != std::string::npos)
    return InvalidArgumentError("URL " + base_url + ": bad host or port");
  TlsOptions checked = tls;
  if (!tls.thumbprint.empty()) {
    VMBACKUP_ASSIGN_OR_RETURN(checked.thumbprint, NormalizeSha256Thumbprint(tls.thumbprint));
  }
  return std::unique_ptr<RangeConnection>(
      new RangeConnection(base_url, host, port, https, checked, timeout_seconds));
}

RangeConnection::RangeConnection(std::string base_url, std::string host, std::string port,
                                 bool https, TlsOptions tls, double timeout_seconds)
    : base_url_(std::move(base_url)),
      host_(std::move(host)),
      port_(std::move(port)),
      https_(https),
      tls_(std::move(tls)),
      timeout_seconds_(timeout_seconds) {}

RangeConnection::~RangeConnection() { Close(); }

void RangeConnection::Close() {
  if (ssl_ && ssl_->ssl) {
    SigpipeBlocked quiet;
    SSL_shutdown(ssl_->ssl);  // a courtesy close_notify; its answer is not awaited
  }
  ssl_.reset();
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
  carry_.clear();
}

Status RangeConnection::Connect() {
  Close();
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  const int rc = ::getaddrinfo(host_.c_str(), port_.c_str(), &hints, &found);
  if (rc != 0) return IOError("resolve " + host_ + ": " + gai_strerror(rc));
  int err = 0;
  for (addrinfo* a = found; a && fd_ < 0; a = a->ai_next) {
    int fd = ::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, a->ai_protocol);
    if (fd < 0) {
      err = errno;
      continue;
    }
    if (::connect(fd, a->ai_addr, a->ai_addrlen) != 0) {
      err = errno;
      if (err == EINPROGRESS) {
        pollfd p{fd, POLLOUT, 0};
        const int ready = ::poll(&p, 1, int(timeout_seconds_ * 1000));
        socklen_t len = sizeof err;
        if (ready == 1 && ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err == 0) {
          fd_ = fd;
          break;
        }
        if (ready == 0) err = ETIMEDOUT;
      }
      ::close(fd);
      continue;
    }
    fd_ = fd;
  }
  ::freeaddrinfo(found);
  if (fd_ < 0) return PosixError("connect to " + base_url_, err);
  ::fcntl(fd_, F_SETFL, ::fcntl(fd_, F_GETFL) & ~O_NONBLOCK);
  const int one = 1;
  ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  const timeval tv = ToTimeval(timeout_seconds_);
  ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(fd_, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  ++connects_;
  if (!https_) return Status::Ok();

  ssl_ = std::make_unique<Tls>();
  ssl_->ctx = SSL_CTX_new(TLS_client_method());
  if (!ssl_->ctx) return InternalError("SSL_CTX_new: " + OpenSslError());
  SSL_CTX_set_min_proto_version(ssl_->ctx, TLS1_2_VERSION);
  SSL_CTX_set_read_ahead(ssl_->ctx, 1);
  SSL_CTX_set_default_read_buffer_len(ssl_->ctx, kTlsReadBuffer);
  // A server that closes without close_notify ends the stream; the body's length decides
  // whether anything is missing.
  SSL_CTX_set_options(ssl_->ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
  const bool pinned = !tls_.thumbprint.empty();
  if (pinned) {
    SSL_CTX_set_verify(ssl_->ctx, SSL_VERIFY_NONE, nullptr);  // checked after the handshake
  } else {
    SSL_CTX_set_verify(ssl_->ctx, SSL_VERIFY_PEER, nullptr);
    const int loaded = tls_.ca_file.empty() ? SSL_CTX_set_default_verify_paths(ssl_->ctx)
                                            : SSL_CTX_load_verify_locations(
                                                  ssl_->ctx, tls_.ca_file.c_str(), nullptr);
    if (loaded != 1) {
      return UnauthenticatedError(UntrustedCertificateMessage(
          base_url_, "the CA file " + tls_.ca_file + " cannot be read: " + OpenSslError(),
          tls_.trust_hint));
    }
  }
  ssl_->ssl = SSL_new(ssl_->ctx);
  if (!ssl_->ssl) return InternalError("SSL_new: " + OpenSslError());
  SSL_set_fd(ssl_->ssl, fd_);
  if (IsIpAddress(host_)) {
    X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl_->ssl), host_.c_str());
  } else {
    SSL_set_tlsext_host_name(ssl_->ssl, host_.c_str());
    SSL_set1_host(ssl_->ssl, host_.c_str());
  }
  ERR_clear_error();
  int done;
  {
    SigpipeBlocked quiet;
    done = SSL_connect(ssl_->ssl);
  }
  if (done != 1) {
    const long verdict = SSL_get_verify_result(ssl_->ssl);
    const std::string detail = OpenSslError();
    Close();
    if (!pinned && verdict != X509_V_OK) {
      return UnauthenticatedError(UntrustedCertificateMessage(
          base_url_, X509_verify_cert_error_string(verdict), tls_.trust_hint));
    }
    return IOError("TLS handshake with " + base_url_ + " failed: " + detail);
  }
  if (pinned) {
    X509* cert = SSL_get1_peer_certificate(ssl_->ssl);
    const std::string seen = cert ? CertificateDigest(cert, EVP_sha256()) : "";
    if (cert) X509_free(cert);
    if (seen != tls_.thumbprint) {
      Close();
      return UnauthenticatedError(
          PinMismatchMessage(base_url_, seen.empty() ? "(none)" : seen, tls_.thumbprint));
    }
  }
  return Status::Ok();
}

Status RangeConnection::SendAll(const std::string& bytes) {
  size_t sent = 0;
  while (sent < bytes.size()) {
    if (ssl_) {
      ERR_clear_error();
      SigpipeBlocked quiet;
      const int n = SSL_write(ssl_->ssl, bytes.data() + sent, int(bytes.size() - sent));
      if (n <= 0) return IOError("send to " + base_url_ + ": " + OpenSslError());
      sent += size_t(n);
    } else {
      const ssize_t n = ::send(fd_, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return PosixError("send to " + base_url_, errno);
      sent += size_t(n);
    }
  }
  return Status::Ok();
}

Result<size_t> RangeConnection::Receive(uint8_t* buf, size_t n) {
  const auto stalled = [&] {
    stalled_ = true;
    return IOError(StrFormat("%s sent nothing for %.0f s", base_url_.c_str(), timeout_seconds_));
  };
  if (!ssl_) {
    while (true) {
      const ssize_t got = ::recv(fd_, buf, n, 0);
      if (got >= 0) return size_t(got);
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return stalled();
      return PosixError("receive from " + base_url_, errno);
    }
  }
  ERR_clear_error();
  errno = 0;
  const int got = SSL_read(ssl_->ssl, buf, int(std::min<size_t>(n, INT_MAX)));
  if (got > 0) return size_t(got);
  switch (SSL_get_error(ssl_->ssl, got)) {
    case SSL_ERROR_ZERO_RETURN: return size_t(0);
    case SSL_ERROR_WANT_READ: return stalled();
    case SSL_ERROR_SYSCALL:
      if (errno == EAGAIN || errno == EWOULDBLOCK) return stalled();
      if (errno == 0) return size_t(0);
      return PosixError("receive from " + base_url_, errno);
    default: return IOError("TLS from " + base_url_ + ": " + OpenSslError());
  }
}

Status RangeConnection::ReadBody(std::span<uint8_t> out) {
  size_t got = std::min(carry_.size(), out.size());
  std::memcpy(out.data(), carry_.data(), got);
  carry_.erase(0, got);
  while (got < out.size()) {
    VMBACKUP_ASSIGN_OR_RETURN(size_t n, Receive(out.data() + got, out.size() - got));
    if (n == 0) {
      return IOError(StrFormat("the answer ended after %zu of its %zu bytes", got, out.size()));
    }
    got += n;
  }
  return Status::Ok();
}

Status RangeConnection::Exchange(const std::string& request, const std::string& what,
                                 uint64_t offset, std::span<uint8_t> out, bool* nothing_came) {
  *nothing_came = true;  // until the server answers anything
  VMBACKUP_RETURN_IF_ERROR(SendAll(request).WithContext(what));
  ResponseHead head;
  do {  // 1xx answers (informational) come before the real one
    size_t end;
    while ((end = carry_.find("\r\n\r\n")) == std::string::npos &&
           (end = carry_.find("\n\n")) == std::string::npos) {
      if (carry_.size() > kMaxHead) return ProtocolError(what + ": the answer's head is too long");
      uint8_t buf[16 << 10];
      stalled_ = false;
      auto n = Receive(buf, sizeof buf);
      if (!n || *n == 0) {
        // A reset or an end before any byte is a kept-alive connection the server closed
        // (not a stall: that waited the whole timeout already).
        *nothing_came = carry_.empty() && !stalled_;
        if (!n) return n.error().WithContext(what);
        return IOError(what + ": the connection closed before an answer");
      }
      carry_.append(reinterpret_cast<const char*>(buf), *n);
    }
    *nothing_came = false;
    end += carry_[end] == '\r' ? 4 : 2;
    auto parsed = ParseResponseHead(std::string_view(carry_).substr(0, end));
    if (!parsed) return parsed.error().WithContext(what);
    head = std::move(*parsed);
    carry_.erase(0, end);
  } while (head.status >= 100 && head.status < 200);

  if (head.status == 401 || head.status == 403) {
    return UnauthenticatedError(
        StrFormat("%s: HTTP %d (the session is not valid)", what.c_str(), head.status));
  }
  if (head.status != 206) {
    std::string body;
    if (head.content_length && *head.content_length <= 4096 && !head.chunked) {
      body.resize(*head.content_length);
      if (!ReadBody({reinterpret_cast<uint8_t*>(body.data()), body.size()}).ok()) body.clear();
    }
    return IOError(
        StrFormat("%s: HTTP %d %s", what.c_str(), head.status, body.substr(0, 200).c_str()));
  }
  if (head.chunked) {
    return NotSupportedError(what + ": the range came with Transfer-Encoding " +
                             head.headers["transfer-encoding"]);
  }
  if (!head.content_length) return ProtocolError(what + ": the range came without a length");
  if (*head.content_length != out.size()) {
    return ProtocolError(StrFormat("%s: the server sent %llu bytes, %zu asked", what.c_str(),
                                   (unsigned long long)*head.content_length, out.size()));
  }
  auto range = ParseContentRange(head.headers["content-range"]);
  if (!range) return range.error().WithContext(what);
  if (range->first != offset || range->last != offset + out.size() - 1) {
    return ProtocolError(StrFormat("%s: the server sent bytes %llu-%llu instead", what.c_str(),
                                   (unsigned long long)range->first,
                                   (unsigned long long)range->last));
  }
  VMBACKUP_RETURN_IF_ERROR(ReadBody(out).WithContext(what));
  // Bytes already here after the body are more than the server said it would send (later
  // ones spoil the next answer's head, which is refused then).
  uint8_t peek;
  if (!carry_.empty() || (ssl_ && SSL_pending(ssl_->ssl) > 0) ||
      (!ssl_ && ::recv(fd_, &peek, 1, MSG_PEEK | MSG_DONTWAIT) > 0)) {
    return ProtocolError(what + ": the server sent more than asked");
  }
  if (head.connection_close) Close();
  return Status::Ok();
}

Status RangeConnection::GetRange(const std::string& path,
                                 const std::map<std::string, std::string>& headers, uint64_t offset,
                                 std::span<uint8_t> out) {
  if (out.empty()) return Status::Ok();
  const unsigned long long last = offset + out.size() - 1;
  const std::string what =
      StrFormat("GET %s bytes %llu-%llu", path.c_str(), (unsigned long long)offset, last);
  const bool default_port = port_ == (https_ ? "443" : "80");
  const std::string host_field =
      (host_.find(':') != std::string::npos ? "[" + host_ + "]" : host_) +
      (default_port ? "" : ":" + port_);
  std::string request =
      "GET " + path + " HTTP/1.1\r\nHost: " + host_field +
      StrFormat("\r\nRange: bytes=%llu-%llu\r\n", (unsigned long long)offset, last) +
      "User-Agent: vmbackup\r\n";
  if (path.empty() || path[0] != '/' || path.find_first_of("\r\n ") != std::string::npos)
    return InvalidArgumentError(what + ": the path is not one absolute path without spaces");
  for (const auto& [name, value] : headers) {
    if ((name + value).find_first_of("\r\n") != std::string::npos)
      return InvalidArgumentError(what + ": header " + name + " holds a line break");
    if (!value.empty()) request += name + ": " + value + "\r\n";
  }
  request += "\r\n";
  for (int attempt = 0;; ++attempt) {
    const bool reused = fd_ >= 0;
    if (!reused) VMBACKUP_RETURN_IF_ERROR(Connect());
    bool nothing_came = false;
    Status s = Exchange(request, what, offset, out, &nothing_came);
    if (s.ok()) return s;
    Close();
    // A kept-alive connection the server closed while idle: asked again on a new one.
    if (reused && nothing_came && attempt == 0) continue;
    return s;
  }
}

}  // namespace vmbackup::http
