// `vmhost serve`: the vSphere Web Services API over HTTPS at /sdk, the version document at
// /sdk/vimServiceVersions.xml, and the datastore file service at /folder (GET with Range,
// HEAD, PUT), on cpp-httplib with OpenSSL.
//
// The file service needs a session cookie (vcsim's does not) and serves only paths inside the
// datastore: no "..", no absolute paths, no hidden names (".vmhost-tls" holds the key), and
// symbolic links that lead out are refused after resolution.
#pragma once

#include <memory>
#include <string>

#include "base/result.h"
#include "vsphere_api/service.h"
#include "vsphere_api/tls_identity.h"

namespace vmbackup::vsphere_api {

struct ServerOptions {
  std::string host = "127.0.0.1";
  int port = 0;  // 0: any free port
  TlsIdentity tls;
  ServiceOptions service;
  bool log_requests = false;  // one line per request on stderr (never a body or a cookie)
};

class Server {
 public:
  // Binds the port; Run() then serves.
  static Result<std::unique_ptr<Server>> Create(ServerOptions options);
  ~Server();
  int port() const;
  // Serves until Stop() (from another thread or a signal watcher).
  Status Run();
  void Stop();

 private:
  struct Impl;
  explicit Server(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// The datastore-relative path of a /folder URL path ("/folder/vm/vm-flat.vmdk"), checked:
// kInvalidArgument for anything that is not a plain relative path of visible names.
Result<std::string> FolderRelativePath(std::string_view url_path);

}  // namespace vmbackup::vsphere_api
