#include "http/http_client.h"

#include <curl/curl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstring>
#include <mutex>

#include "base/lazy_library.h"
#include "base/strings.h"
#include "http/certificate.h"

VMBACKUP_DECLARE_LAZY_LIBRARY(curl)

namespace vmbackup::http {
namespace {

std::once_flag g_curl_init;

std::string Lower(std::string s) {
  for (char& c : s) c = char(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

std::string Trim(std::string s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.pop_back();
  size_t i = 0;
  while (i < s.size() && std::isspace(static_cast<unsigned char>(s[i]))) ++i;
  return s.substr(i);
}

}  // namespace

struct Client::Impl {
  CURL* curl = nullptr;
  std::string pinned;      // normalized SHA-256 thumbprint, or empty
  std::string trust_hint;  // TlsOptions::trust_hint
  std::string seen;        // the thumbprint the server presented (pinning only)
  std::string host;        // for messages
  // The transfer in progress.
  Response* response = nullptr;
  std::span<uint8_t> range_out;
  size_t range_got = 0;
  bool range_mode = false;
  bool range_overflow = false;
  std::map<std::string, std::string> cookie_jar;
  curl_socket_t socket = CURL_SOCKET_BAD;  // the connection's, while libcurl keeps it open
  ~Impl() {
    if (curl) curl_easy_cleanup(curl);
  }
};

namespace {

// OpenSSL's verify callback when a thumbprint is pinned: only the server's own certificate
// decides, by its SHA-256 digest; the chain and the host name do not matter.
int PinVerify(int /*preverify_ok*/, X509_STORE_CTX* store) {
  SSL* ssl =
      static_cast<SSL*>(X509_STORE_CTX_get_ex_data(store, SSL_get_ex_data_X509_STORE_CTX_idx()));
  auto* impl = static_cast<Client::Impl*>(SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl)));
  if (X509_STORE_CTX_get_error_depth(store) > 0) {
    X509_STORE_CTX_set_error(store, X509_V_OK);
    return 1;
  }
  X509* cert = X509_STORE_CTX_get_current_cert(store);
  impl->seen = cert ? CertificateDigest(cert, EVP_sha256()) : "";
  if (impl->seen.empty() || impl->seen != impl->pinned) return 0;
  X509_STORE_CTX_set_error(store, X509_V_OK);
  return 1;
}

CURLcode SslCtxHook(CURL*, void* ssl_ctx, void* user) {
  auto* ctx = static_cast<SSL_CTX*>(ssl_ctx);
  SSL_CTX_set_app_data(ctx, user);
  SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, PinVerify);
  return CURLE_OK;
}

// Acknowledges what came on the connection at once. A server that writes a response's head and
// body apart with Nagle's algorithm on (radosgw does) holds the body back until the head is
// acknowledged, and Linux delays that ACK by 40 ms on a connection that sends its next request
// right after an answer: measured, every GET on radosgw took 41 ms more than a HEAD.
void AckNow(curl_socket_t s) {
  if (s == CURL_SOCKET_BAD) return;
  int one = 1;
  (void)::setsockopt(s, IPPROTO_TCP, TCP_QUICKACK, &one, sizeof one);  // a hint
}

// libcurl's socket hooks, to know the connection's socket during a transfer (its
// CURLINFO_ACTIVESOCKET names it only after the transfer).
int OnSocketOpen(void* user, curl_socket_t s, curlsocktype /*purpose*/) {
  static_cast<Client::Impl*>(user)->socket = s;
  return CURL_SOCKOPT_OK;
}
int OnSocketClose(void* user, curl_socket_t s) {
  auto* impl = static_cast<Client::Impl*>(user);
  if (impl->socket == s) impl->socket = CURL_SOCKET_BAD;
  return ::close(s);
}

size_t OnHeader(char* data, size_t size, size_t n, void* user) {
  auto* impl = static_cast<Client::Impl*>(user);
  std::string line(data, size * n);
  if (line == "\r\n" || line == "\n") {  // the end of the head: the body may be held back
    AckNow(impl->socket);
    return size * n;
  }
  if (line.rfind("HTTP/", 0) == 0) {
    impl->response->headers.clear();  // a 100 Continue or a redirect before the real answer
    return size * n;
  }
  size_t colon = line.find(':');
  if (colon == std::string::npos) return size * n;
  std::string name = Lower(Trim(line.substr(0, colon)));
  std::string value = Trim(line.substr(colon + 1));
  if (name == "set-cookie") {
    std::string pair = value.substr(0, value.find(';'));
    size_t eq = pair.find('=');
    if (eq != std::string::npos) impl->cookie_jar[Trim(pair.substr(0, eq))] = pair.substr(eq + 1);
  }
  impl->response->headers[name] = value;
  return size * n;
}

size_t OnBody(char* data, size_t size, size_t n, void* user) {
  auto* impl = static_cast<Client::Impl*>(user);
  const size_t len = size * n;
  if (!impl->range_mode) {
    if (impl->response->body.size() + len > (size_t(256) << 20)) return 0;  // refuse > 256 MiB
    impl->response->body.append(data, len);
    return len;
  }
  if (impl->response->status == 0) {
    long code = 0;
    curl_easy_getinfo(impl->curl, CURLINFO_RESPONSE_CODE, &code);
    impl->response->status = code;
  }
  if (impl->response->status != 206) {  // an error page: keep a little of it for the message
    if (impl->response->body.size() < 4096)
      impl->response->body.append(data, std::min(len, size_t(4096)));
    return len;
  }
  if (impl->range_got + len > impl->range_out.size()) {
    impl->range_overflow = true;
    return 0;
  }
  std::memcpy(impl->range_out.data() + impl->range_got, data, len);
  impl->range_got += len;
  return len;
}

}  // namespace

Result<std::string> NormalizeSha256Thumbprint(const std::string& text) {
  std::string t = text;
  if (t.size() > 7 && Lower(t.substr(0, 7)) == "sha256:") t = t.substr(7);
  std::string hex;
  for (char c : t) {
    if (c == ':' || c == ' ' || c == '-') continue;
    if (!std::isxdigit(static_cast<unsigned char>(c)))
      return InvalidArgumentError("thumbprint '" + text + "' holds a character that is not hex");
    hex += char(std::toupper(static_cast<unsigned char>(c)));
  }
  if (hex.size() != 64) {
    return InvalidArgumentError("thumbprint '" + text +
                                "' is not a SHA-256 thumbprint (32 bytes in hex)");
  }
  std::string out;
  for (size_t i = 0; i < 64; i += 2) {
    if (i) out += ':';
    out += hex.substr(i, 2);
  }
  return out;
}

std::string UrlEncode(const std::string& text, bool keep_slash) {
  static const char* kHex = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : text) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~' ||
        (keep_slash && c == '/')) {
      out += char(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

Client::Client(std::string base_url, std::unique_ptr<Impl> impl)
    : base_url_(std::move(base_url)), impl_(std::move(impl)) {}
Client::~Client() = default;

Result<std::unique_ptr<Client>> Client::Create(const std::string& base_url, const TlsOptions& tls,
                                               double timeout_seconds) {
  VMBACKUP_RETURN_IF_ERROR(lazy::Load(lazy::curl));
  std::call_once(g_curl_init, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
  const bool https = base_url.rfind("https://", 0) == 0;
  if (!https && base_url.rfind("http://", 0) != 0)
    return InvalidArgumentError("URL " + base_url + " is neither https:// nor http://");
  auto impl = std::make_unique<Impl>();
  impl->curl = curl_easy_init();
  if (!impl->curl) return InternalError("curl_easy_init failed");
  impl->host = base_url;
  impl->trust_hint = tls.trust_hint;
  CURL* c = impl->curl;
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, long(timeout_seconds * 1000));
  // A transfer that moves less than 1 byte/s for the timeout is stalled.
  curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
  curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, std::max(1L, long(timeout_seconds)));
  curl_easy_setopt(c, CURLOPT_TCP_KEEPALIVE, 1L);
  curl_easy_setopt(c, CURLOPT_SOCKOPTFUNCTION, OnSocketOpen);
  curl_easy_setopt(c, CURLOPT_SOCKOPTDATA, impl.get());
  curl_easy_setopt(c, CURLOPT_CLOSESOCKETFUNCTION, OnSocketClose);
  curl_easy_setopt(c, CURLOPT_CLOSESOCKETDATA, impl.get());
  curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, OnHeader);
  curl_easy_setopt(c, CURLOPT_HEADERDATA, impl.get());
  // Large bodies (disk ranges) arrive in fewer, larger pieces: fewer callbacks and polls.
  curl_easy_setopt(c, CURLOPT_BUFFERSIZE, 512L * 1024);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, OnBody);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, impl.get());
  curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, https ? "https" : "http");
  if (https) {
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 2L);
    if (!tls.ca_file.empty()) curl_easy_setopt(c, CURLOPT_CAINFO, tls.ca_file.c_str());
    if (!tls.thumbprint.empty()) {
      VMBACKUP_ASSIGN_OR_RETURN(impl->pinned, NormalizeSha256Thumbprint(tls.thumbprint));
      curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 0L);  // the pin names the certificate itself
      curl_easy_setopt(c, CURLOPT_SSL_CTX_FUNCTION, SslCtxHook);
      curl_easy_setopt(c, CURLOPT_SSL_CTX_DATA, impl.get());
    }
  }
  return std::unique_ptr<Client>(new Client(base_url, std::move(impl)));
}

Status Client::Perform(const std::string& url, const char* what) {
  CURL* c = impl_->curl;
  std::string cookie;
  for (const auto& [k, v] : impl_->cookie_jar) cookie += (cookie.empty() ? "" : "; ") + k + "=" + v;
  if (!cookies_.empty()) cookie = cookies_;
  curl_easy_setopt(c, CURLOPT_COOKIE, cookie.empty() ? nullptr : cookie.c_str());
  curl_easy_setopt(c, CURLOPT_URL, url.c_str());
  char err[CURL_ERROR_SIZE] = {0};
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, err);
  impl_->seen.clear();
  CURLcode rc = curl_easy_perform(c);
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, nullptr);
  // Cookies set by this answer replace those given with set_cookies.
  if (!impl_->cookie_jar.empty()) {
    std::string jar;
    for (const auto& [k, v] : impl_->cookie_jar) jar += (jar.empty() ? "" : "; ") + k + "=" + v;
    cookies_ = jar;
  }
  if (rc == CURLE_OK) {
    long code = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
    impl_->response->status = code;
    return Status::Ok();
  }
  if (!impl_->pinned.empty() && !impl_->seen.empty() && impl_->seen != impl_->pinned) {
    return UnauthenticatedError(PinMismatchMessage(base_url_, impl_->seen, impl_->pinned));
  }
  if (rc == CURLE_PEER_FAILED_VERIFICATION || rc == CURLE_SSL_CACERT_BADFILE) {
    return UnauthenticatedError(UntrustedCertificateMessage(
        base_url_, err[0] ? err : curl_easy_strerror(rc), impl_->trust_hint));
  }
  return IOError(StrFormat("%s %s: %s", what, url.c_str(), err[0] ? err : curl_easy_strerror(rc)));
}

Result<Response> Client::Send(const Request& request) {
  CURL* c = impl_->curl;
  Response response;
  impl_->response = &response;
  impl_->range_mode = false;
  curl_easy_setopt(c, CURLOPT_UPLOAD, 0L);
  curl_easy_setopt(c, CURLOPT_NOBODY, request.method == "HEAD" ? 1L : 0L);
  if (request.method == "POST") {
    curl_easy_setopt(c, CURLOPT_POST, 1L);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, request.body.data());
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, curl_off_t(request.body.size()));
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, nullptr);
  } else if (request.method == "GET" || request.method == "HEAD") {
    curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, nullptr);
    if (request.method == "HEAD") curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
  } else {
    curl_easy_setopt(c, CURLOPT_POST, 1L);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, request.body.data());
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, curl_off_t(request.body.size()));
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, request.method.c_str());
  }
  struct curl_slist* headers = nullptr;
  for (const auto& [k, v] : request.headers)
    headers = curl_slist_append(headers, (k + ": " + v).c_str());
  headers = curl_slist_append(headers, "Expect:");
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
  Status s = Perform(base_url_ + request.path, request.method.c_str());
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, nullptr);
  curl_slist_free_all(headers);
  impl_->response = nullptr;
  if (!s.ok()) return s;
  return response;
}

Result<Response> Client::GetRangeInto(const Request& request, uint64_t offset,
                                      std::span<uint8_t> out, size_t* got) {
  *got = 0;
  CURL* c = impl_->curl;
  Response response;
  impl_->response = &response;
  impl_->range_mode = true;
  impl_->range_out = out;
  impl_->range_got = 0;
  impl_->range_overflow = false;
  curl_easy_setopt(c, CURLOPT_UPLOAD, 0L);
  curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
  curl_easy_setopt(c, CURLOPT_NOBODY, 0L);
  curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, nullptr);
  const std::string range = StrFormat("%llu-%llu", (unsigned long long)offset,
                                      (unsigned long long)(offset + out.size() - 1));
  curl_easy_setopt(c, CURLOPT_RANGE, range.c_str());
  struct curl_slist* headers = nullptr;
  for (const auto& [k, v] : request.headers) {
    if (k != "range") headers = curl_slist_append(headers, (k + ": " + v).c_str());
  }
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
  Status s = Perform(base_url_ + request.path, "GET");
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, nullptr);
  curl_slist_free_all(headers);
  curl_easy_setopt(c, CURLOPT_RANGE, nullptr);
  impl_->range_mode = false;
  impl_->response = nullptr;
  *got = impl_->range_got;
  if (impl_->range_overflow) {
    return ProtocolError(StrFormat("GET %s bytes %s: the server sent more than asked",
                                   request.path.c_str(), range.c_str()));
  }
  VMBACKUP_RETURN_IF_ERROR(s);
  return response;
}

Status Client::GetRange(const std::string& path, uint64_t offset, std::span<uint8_t> out) {
  if (out.empty()) return Status::Ok();
  size_t got = 0;
  VMBACKUP_ASSIGN_OR_RETURN(Response response,
                            GetRangeInto({"GET", path, {}, ""}, offset, out, &got));
  const std::string range = StrFormat("%llu-%llu", (unsigned long long)offset,
                                      (unsigned long long)(offset + out.size() - 1));
  if (response.status == 401 || response.status == 403) {
    return UnauthenticatedError(StrFormat("GET %s bytes %s: HTTP %ld (the session is not valid)",
                                          path.c_str(), range.c_str(), response.status));
  }
  if (response.status != 206) {
    return IOError(StrFormat("GET %s bytes %s: HTTP %ld %s", path.c_str(), range.c_str(),
                             response.status, response.body.substr(0, 200).c_str()));
  }
  if (got != out.size()) {
    return IOError(StrFormat("GET %s bytes %s: %zu bytes came, %zu asked", path.c_str(),
                             range.c_str(), got, out.size()));
  }
  return Status::Ok();
}

namespace {
struct PutState {
  const std::function<Status(uint64_t, std::span<uint8_t>)>* read;
  uint64_t length, offset;
  Status error;
};
size_t OnRead(char* buffer, size_t size, size_t n, void* user) {
  auto* st = static_cast<PutState*>(user);
  size_t want = std::min<uint64_t>(size * n, st->length - st->offset);
  if (want == 0) return 0;
  Status s = (*st->read)(st->offset, {reinterpret_cast<uint8_t*>(buffer), want});
  if (!s.ok()) {
    st->error = s;
    return CURL_READFUNC_ABORT;
  }
  st->offset += want;
  return want;
}
}  // namespace

Result<Response> Client::PutStream(
    const std::string& path, uint64_t length,
    const std::function<Status(uint64_t, std::span<uint8_t>)>& read) {
  CURL* c = impl_->curl;
  Response response;
  impl_->response = &response;
  impl_->range_mode = false;
  PutState st{&read, length, 0, Status::Ok()};
  curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, nullptr);
  curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
  curl_easy_setopt(c, CURLOPT_INFILESIZE_LARGE, curl_off_t(length));
  curl_easy_setopt(c, CURLOPT_READFUNCTION, OnRead);
  curl_easy_setopt(c, CURLOPT_READDATA, &st);
  struct curl_slist* headers = curl_slist_append(nullptr, "Expect:");
  headers = curl_slist_append(headers, "Content-Type: application/octet-stream");
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
  Status s = Perform(base_url_ + path, "PUT");
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, nullptr);
  curl_easy_setopt(c, CURLOPT_UPLOAD, 0L);
  curl_easy_setopt(c, CURLOPT_READFUNCTION, nullptr);
  curl_slist_free_all(headers);
  impl_->response = nullptr;
  if (!st.error.ok()) return st.error;
  if (!s.ok()) return s;
  return response;
}

Result<Thumbprints> FetchThumbprints(const std::string& host, int port, double timeout_seconds) {
  struct addrinfo hints = {}, *res = nullptr;
  hints.ai_socktype = SOCK_STREAM;
  const std::string service = std::to_string(port);
  int rc = ::getaddrinfo(host.c_str(), service.c_str(), &hints, &res);
  if (rc != 0) return IOError("resolve " + host + ": " + gai_strerror(rc));
  int fd = -1;
  int err = 0;
  for (auto* a = res; a; a = a->ai_next) {
    fd = ::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0) continue;
    struct timeval tv = {long(timeout_seconds), 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    if (::connect(fd, a->ai_addr, a->ai_addrlen) == 0) break;
    err = errno;
    ::close(fd);
    fd = -1;
  }
  ::freeaddrinfo(res);
  if (fd < 0) return PosixError("connect to " + host + ":" + service, err);
  SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
  SSL* ssl = ctx ? SSL_new(ctx) : nullptr;
  Result<Thumbprints> out = IOError("TLS handshake with " + host + ":" + service + " failed");
  if (ssl) {
    SSL_set_fd(ssl, fd);
    SSL_set_tlsext_host_name(ssl, host.c_str());
    // Nothing is trusted here: the point is to show the user what the server presents.
    SSL_set_verify(ssl, SSL_VERIFY_NONE, nullptr);
    if (SSL_connect(ssl) == 1) {
      X509* cert = SSL_get1_peer_certificate(ssl);
      if (cert) {
        out =
            Thumbprints{CertificateDigest(cert, EVP_sha256()), CertificateDigest(cert, EVP_sha1())};
        X509_free(cert);
      }
      SSL_shutdown(ssl);
    }
    SSL_free(ssl);
  }
  if (ctx) SSL_CTX_free(ctx);
  ::close(fd);
  return out;
}

}  // namespace vmbackup::http
