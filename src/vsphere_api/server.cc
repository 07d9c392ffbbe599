#include "vsphere_api/server.h"

#include <fcntl.h>
#include <httplib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <climits>
#include <cstdlib>
#include <variant>

#include "base/strings.h"
#include "io/posix_file.h"

namespace vmbackup::vsphere_api {
namespace {

constexpr const char* kVersions =
    "<?xml version=\"1.0\" encoding=\"UTF-8\" ?>\n<namespaces version=\"1.0\">\n <namespace>\n"
    "  <name>urn:vim25</name>\n  <version>6.7</version>\n  <priorVersions>\n"
    "   <version>6.5</version>\n   <version>6.0</version>\n   <version>5.5</version>\n"
    "  </priorVersions>\n </namespace>\n</namespaces>\n";

std::string RealPath(const std::string& p) {
  char buf[PATH_MAX];
  return ::realpath(p.c_str(), buf) ? std::string(buf) : std::string();
}

bool Inside(const std::string& root_real, const std::string& real) {
  return !real.empty() && real.size() > root_real.size() &&
         real.compare(0, root_real.size(), root_real) == 0 && real[root_real.size()] == '/';
}

// A Range of a file of `size` bytes as absolute [first, last], or nullopt when it cannot be
// satisfied. httplib writes "A-" and "-N" with -1 for the missing side.
std::optional<httplib::Range> Absolute(httplib::Range r, uint64_t size) {
  const ssize_t n = ssize_t(size);
  if (n == 0) return std::nullopt;
  if (r.first < 0) {
    if (r.second <= 0) return std::nullopt;
    return httplib::Range{n - std::min(r.second, n), n - 1};
  }
  if (r.first >= n || (r.second >= 0 && r.second < r.first)) return std::nullopt;
  return httplib::Range{r.first, r.second < 0 ? n - 1 : std::min(r.second, n - 1)};
}

}  // namespace

Result<std::string> FolderRelativePath(std::string_view url_path) {
  constexpr std::string_view kPrefix = "/folder/";
  if (url_path.substr(0, kPrefix.size()) != kPrefix)
    return InvalidArgumentError("not a /folder path");
  const std::string rel(url_path.substr(kPrefix.size()));
  if (rel.empty()) return InvalidArgumentError("no file named");
  for (const std::string& part : Split(rel, '/')) {
    if (part.empty() || part[0] == '.' || part.find('\0') != std::string::npos ||
        part.find('\\') != std::string::npos)
      return InvalidArgumentError("'" + rel + "' is not a plain path inside the datastore");
  }
  return rel;
}

struct Server::Impl {
  ServerOptions options;
  std::unique_ptr<Service> service;
  httplib::SSLServer http;
  std::string root_real;
  int port = 0;

  explicit Impl(ServerOptions o)
      : options(std::move(o)),
        service(std::make_unique<Service>(options.service)),
        http(options.tls.cert_file.c_str(), options.tls.key_file.c_str()) {}

  void Log(const httplib::Request& req, int status) const {
    if (options.log_requests)
      fprintf(stderr, "vmhost serve: %s %s %d\n", req.method.c_str(), req.path.c_str(), status);
  }

  bool Authorized(const httplib::Request& req) {
    return service->ValidSession(SessionCookie(req.get_header_value("Cookie")));
  }

  // The file of a /folder request, or an HTTP status to answer with.
  std::variant<std::string, int> FolderFile(const httplib::Request& req, bool for_write) {
    if (!Authorized(req)) return 401;
    const auto& inv = service->inventory().options();
    if (req.get_param_value("dsName") != inv.datastore_name) return 404;
    if (req.has_param("dcPath") && req.get_param_value("dcPath") != inv.datacenter_name) return 404;
    auto rel = FolderRelativePath(req.path);
    if (!rel) return 403;
    const std::string full = io::JoinPath(inv.datastore_root, *rel);
    if (for_write) {
      // Every folder on the way must be a real folder inside the datastore; missing ones are
      // made (a VM's folder, for a restore's upload).
      std::string dir = inv.datastore_root;
      const auto parts = Split(*rel, '/');
      for (size_t i = 0; i + 1 < parts.size(); ++i) {
        dir = io::JoinPath(dir, parts[i]);
        if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) return 500;
        struct stat st {};
        if (::lstat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) return 403;
      }
      if (!Inside(root_real, RealPath(dir) + "/x")) return 403;
      return full;
    }
    const std::string real = RealPath(full);
    if (real.empty()) return 404;
    if (!Inside(root_real, real)) return 403;
    struct stat st {};
    if (::stat(real.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) return 404;
    return real;
  }

  void Get(const httplib::Request& req, httplib::Response& res) {
    auto f = FolderFile(req, false);
    if (auto* status = std::get_if<int>(&f)) {
      res.status = *status;
      return Log(req, res.status);
    }
    const std::string path = std::get<std::string>(f);
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    struct stat st {};
    if (fd < 0 || ::fstat(fd, &st) != 0) {
      if (fd >= 0) ::close(fd);
      res.status = 404;
      return Log(req, res.status);
    }
    // cpp-httplib answers a Range request itself (206, Content-Range) by asking the provider
    // for the part it needs, but 0.11 computes nonsense for a range that ends past the file or
    // starts beyond it. So the range is checked and made absolute here first: one range only,
    // clamped to the file, or 416.
    const uint64_t size = uint64_t(st.st_size);
    if (!req.ranges.empty()) {
      auto& ranges = const_cast<httplib::Ranges&>(req.ranges);  // httplib's own object
      auto r = ranges.size() == 1 ? Absolute(ranges[0], size) : std::nullopt;
      if (!r) {
        ::close(fd);
        res.status = 416;
        res.set_header("Content-Range", StrFormat("bytes */%llu", (unsigned long long)size));
        return Log(req, res.status);
      }
      ranges[0] = *r;
    }
    res.set_header("Accept-Ranges", "bytes");
    auto shared_fd = std::shared_ptr<int>(new int(fd), [](int* p) {
      ::close(*p);
      delete p;
    });
    res.set_content_provider(size_t(size), "application/octet-stream",
                             [shared_fd](size_t offset, size_t want, httplib::DataSink& sink) {
                               std::vector<char> buf(std::min<size_t>(want, 1 << 20));
                               const ssize_t n =
                                   ::pread(*shared_fd, buf.data(), buf.size(), off_t(offset));
                               if (n <= 0) return false;
                               return sink.write(buf.data(), size_t(n));
                             });
    Log(req, res.status);
  }

  void Put(const httplib::Request& req, httplib::Response& res,
           const httplib::ContentReader& reader) {
    auto f = FolderFile(req, true);
    if (auto* status = std::get_if<int>(&f)) {
      res.status = *status;
      res.set_header("Connection", "close");
      return Log(req, res.status);
    }
    const std::string path = std::get<std::string>(f);
    const std::string tmp = path + ".vmhost-upload";
    int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
      res.status = 500;
      return Log(req, res.status);
    }
    bool ok = true;
    uint64_t offset = 0;
    reader([&](const char* data, size_t n) {
      // Zeros stay holes: an uploaded thin disk stays thin.
      if (IsAllZero(reinterpret_cast<const uint8_t*>(data), n)) {
        offset += n;
        return true;
      }
      while (ok && n > 0) {
        const ssize_t w = ::pwrite(fd, data, n, off_t(offset));
        if (w <= 0) {
          ok = false;
          break;
        }
        data += w;
        n -= size_t(w);
        offset += uint64_t(w);
      }
      return ok;
    });
    ok = ok && ::ftruncate(fd, off_t(offset)) == 0 && ::fsync(fd) == 0;
    ::close(fd);
    struct stat st {};
    // An existing target keeps its place only if it is a plain file (never follow a link).
    if (ok && ::lstat(path.c_str(), &st) == 0 && !S_ISREG(st.st_mode)) ok = false;
    if (ok && ::rename(tmp.c_str(), path.c_str()) != 0) ok = false;
    if (!ok) {
      ::unlink(tmp.c_str());
      res.status = 500;
      res.set_header("Connection", "close");
    } else {
      res.status = 201;
    }
    Log(req, res.status);
  }

  void Sdk(const httplib::Request& req, httplib::Response& res,
           const httplib::ContentReader& reader) {
    std::string body;
    bool too_big = false;
    reader([&](const char* data, size_t n) {
      if (body.size() + n > kMaxRequestBytes) {
        too_big = true;
        return false;
      }
      body.append(data, n);
      return true;
    });
    Service::Answer a;
    if (too_big) {
      a = {500,
           FaultEnvelope(InvalidRequestFault(
               StrFormat("the request is larger than %zu bytes", kMaxRequestBytes))),
           ""};
      res.set_header("Connection", "close");
    } else {
      a = service->Handle(body, SessionCookie(req.get_header_value("Cookie")));
    }
    res.status = a.http_status;
    if (!a.set_cookie.empty()) {
      res.set_header("Set-Cookie",
                     "vmware_soap_session=\"" + a.set_cookie + "\"; Path=/; HttpOnly; Secure;");
    }
    res.set_content(a.body, "text/xml; charset=utf-8");
    Log(req, res.status);
  }
};

Server::Server(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Server::~Server() {
  Stop();
  if (impl_) impl_->service->DrainTasks();
}

Result<std::unique_ptr<Server>> Server::Create(ServerOptions options) {
  const std::string root = RealPath(options.service.inventory.datastore_root);
  if (root.empty())
    return NotFoundError("datastore " + options.service.inventory.datastore_root + " is not there");
  options.service.inventory.datastore_root = root;
  auto impl = std::make_unique<Impl>(std::move(options));
  if (!impl->http.is_valid())
    return InvalidArgumentError("the TLS certificate or key cannot be used: " +
                                impl->options.tls.cert_file);
  impl->root_real = root;
  Impl* p = impl.get();
  // Answers go out as written: with Nagle's algorithm a response's last piece waited for the
  // client's delayed ACK, 40 ms per call on a kept-alive connection (measured with curl).
  p->http.set_tcp_nodelay(true);
  p->http.set_keep_alive_max_count(100000);
  p->http.set_keep_alive_timeout(60);
  p->http.set_read_timeout(60);
  p->http.set_write_timeout(60);
  p->http.Get("/sdk/vimServiceVersions.xml", [](const httplib::Request&, httplib::Response& res) {
    res.set_content(kVersions, "text/xml");
  });
  p->http.Post("/sdk", [p](const httplib::Request& req, httplib::Response& res,
                           const httplib::ContentReader& reader) { p->Sdk(req, res, reader); });
  p->http.Get("/folder/.*",
              [p](const httplib::Request& req, httplib::Response& res) { p->Get(req, res); });
  p->http.Put("/folder/.*",
              [p](const httplib::Request& req, httplib::Response& res,
                  const httplib::ContentReader& reader) { p->Put(req, res, reader); });
  if (p->options.port == 0) {
    p->port = p->http.bind_to_any_port(p->options.host.c_str());
    if (p->port <= 0) return IOError("cannot listen on " + p->options.host);
  } else {
    if (!p->http.bind_to_port(p->options.host.c_str(), p->options.port))
      return IOError(StrFormat("cannot listen on %s:%d", p->options.host.c_str(), p->options.port));
    p->port = p->options.port;
  }
  return std::unique_ptr<Server>(new Server(std::move(impl)));
}

int Server::port() const { return impl_->port; }

Status Server::Run() {
  if (!impl_->http.listen_after_bind()) return IOError("the server stopped listening");
  return Status::Ok();
}

void Server::Stop() {
  if (impl_) impl_->http.stop();
}

}  // namespace vmbackup::vsphere_api
