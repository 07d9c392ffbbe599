#include "cli/vmhost_serve.h"

#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <nlohmann/json.hpp>
#include <thread>

#include "base/strings.h"
#include "cli/output.h"
#include "io/posix_file.h"
#include "vsphere_api/server.h"

namespace vmbackup::cli {
namespace {

struct ServeOptions {
  std::string listen = "127.0.0.1:0";
  std::string tls_cert, tls_key, user = "root", password_file, info_file;
  bool log = false;
};

Result<std::string> ServePassword(const ServeOptions& o) {
  std::string p;
  if (!o.password_file.empty()) {
    VMBACKUP_ASSIGN_OR_RETURN(p, io::ReadSmallFile(o.password_file, 4096));
  } else if (const char* env = std::getenv("VMHOST_SERVE_PASSWORD")) {
    p = env;
  } else {
    return InvalidArgumentError(
        "no password for the API's user: give --password-file FILE or VMHOST_SERVE_PASSWORD");
  }
  while (!p.empty() && (p.back() == '\n' || p.back() == '\r')) p.pop_back();
  if (p.empty()) return InvalidArgumentError("the API password is empty");
  return p;
}

Status Serve(const ServeOptions& o, const std::string& root) {
  VMBACKUP_ASSIGN_OR_RETURN(auto listen, ParseHostPort(o.listen, "--listen", true));
  vsphere_api::ServerOptions so;
  so.host = listen.first;
  so.port = listen.second;
  so.log_requests = o.log;
  if (o.tls_cert.empty() != o.tls_key.empty())
    return InvalidArgumentError("--tls-cert and --tls-key go together");
  if (!o.tls_cert.empty()) {
    VMBACKUP_ASSIGN_OR_RETURN(so.tls, vsphere_api::LoadTlsIdentity(o.tls_cert, o.tls_key));
  } else {
    VMBACKUP_ASSIGN_OR_RETURN(
        so.tls, vsphere_api::SelfSignedIdentity(io::JoinPath(root, ".vmhost-tls"), listen.first));
  }
  so.service.user = o.user;
  VMBACKUP_ASSIGN_OR_RETURN(so.service.password, ServePassword(o));
  so.service.inventory.datastore_root = root;
  so.service.inventory.instance_uuid = so.tls.sha256.substr(0, 47);
  // Signals are taken by a watcher thread: block them before the server starts its threads.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  const vsphere_api::TlsIdentity tls = so.tls;
  VMBACKUP_ASSIGN_OR_RETURN(auto server, vsphere_api::Server::Create(std::move(so)));
  const std::string host =
      listen.first.find(':') != std::string::npos ? "[" + listen.first + "]" : listen.first;
  const std::string url = StrFormat("https://%s:%d/sdk", host.c_str(), server->port());
  if (Flags().json) {
    std::printf("%s\n", nlohmann::json{{"url", url},
                                       {"port", server->port()},
                                       {"sha1", tls.sha1},
                                       {"sha256", tls.sha256},
                                       {"pid", int(::getpid())}}
                            .dump()
                            .c_str());
  } else {
    std::printf("vmhost serves the vSphere API at %s\n", url.c_str());
    std::printf("datastore [datastore1] is %s, datacenter ha-datacenter\n", root.c_str());
    std::printf("SHA-1 thumbprint:   %s\nSHA-256 thumbprint: %s\n", tls.sha1.c_str(),
                tls.sha256.c_str());
  }
  std::fflush(stdout);
  if (!o.info_file.empty()) {
    const std::string info = nlohmann::json{
        {"url", url},
        {"port", server->port()},
        {"sha1", tls.sha1},
        {"sha256", tls.sha256},
        {"pid", int(::getpid())}}.dump();
    VMBACKUP_RETURN_IF_ERROR(io::WriteFileAtomic(o.info_file, info + "\n"));
  }
  std::thread watcher([&server, set] {
    int sig = 0;
    sigwait(&set, &sig);
    server->Stop();
  });
  Status s = server->Run();
  // Run ended by a signal: the watcher is done. Ended otherwise: wake the watcher.
  ::kill(::getpid(), SIGTERM);
  watcher.join();
  return s;
}

}  // namespace

void AddServeCommand(CLI::App& app, std::function<Result<std::string>()> datastore_root,
                     int* exit_code) {
  auto o = std::make_shared<ServeOptions>();
  CLI::App* c = app.add_subcommand(
      "serve", "serve the vSphere Web Services API (/sdk) and the datastore (/folder) over HTTPS");
  c->add_option("--listen", o->listen, "HOST:PORT (port 0: any free port; default 127.0.0.1:0)");
  c->add_option("--tls-cert", o->tls_cert,
                "certificate (PEM); default: a self-signed one kept in DATASTORE/.vmhost-tls");
  c->add_option("--tls-key", o->tls_key, "its private key (PEM)");
  c->add_option("--user", o->user, "the API's user name (default root)");
  c->add_option("--password-file", o->password_file,
                "file holding the API's password (or VMHOST_SERVE_PASSWORD)");
  c->add_option("--info-file", o->info_file,
                "write url, port, thumbprints and pid here as JSON once listening");
  c->add_flag("--log", o->log, "one line per request on stderr");
  Bind(c, exit_code, [o, datastore_root]() -> Status {
    VMBACKUP_ASSIGN_OR_RETURN(std::string root, datastore_root());
    return Serve(*o, root);
  });
}

}  // namespace vmbackup::cli
