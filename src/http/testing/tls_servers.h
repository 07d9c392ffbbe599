// Test support for the http library: real TLS servers (`openssl s_server -www`, which answers
// every GET with an HTTP/1.0 200 status page) with certificates made by the openssl command:
// a CA, a server certificate it signs for 127.0.0.1, and one it signs for another name.
#pragma once

#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "base/testing/temp_dir.h"
#include "http/http_client.h"

namespace vmbackup::http::testing {

// A loopback port nothing listens on (at the moment of asking).
inline int FreeLoopbackPort() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);
  return ntohs(a.sin_port);
}

class TlsServers {
 public:
  // Makes the certificates in a temporary folder; ok() says whether openssl made them.
  TlsServers() {
    const std::string d = dir_.path();
    ok_ = std::system(("cd " + d +
                       " && openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out "
                       "ca.pem -days 2 -subj /CN=test-ca 2>/dev/null"
                       " && openssl req -newkey rsa:2048 -nodes -keyout srv.key -out srv.csr "
                       "-subj /CN=127.0.0.1 2>/dev/null"
                       " && printf 'subjectAltName=IP:127.0.0.1\\n' > ext.cnf"
                       " && openssl x509 -req -in srv.csr -CA ca.pem -CAkey ca.key "
                       "-CAcreateserial -out srv.pem -days 2 -extfile ext.cnf 2>/dev/null"
                       " && printf 'subjectAltName=DNS:elsewhere.example\\n' > other.cnf"
                       " && openssl x509 -req -in srv.csr -CA ca.pem -CAkey ca.key "
                       "-CAcreateserial -out other.pem -days 2 -extfile other.cnf 2>/dev/null")
                          .c_str()) == 0;
    if (ok_)
      sha256_ = vmbackup::testing::Shell("openssl x509 -in " + d +
                                         "/srv.pem -noout -fingerprint -sha256 | cut -d= -f2");
  }
  ~TlsServers() {
    for (pid_t p : pids_) {
      ::kill(p, SIGTERM);
      ::waitpid(p, nullptr, 0);
    }
  }
  bool ok() const { return ok_; }
  std::string ca_file() const { return dir_.path() + "/ca.pem"; }
  // The SHA-256 thumbprint ("AB:CD:...") of the certificate for 127.0.0.1.
  const std::string& sha256() const { return sha256_; }

  // Starts a server on 127.0.0.1 presenting the certificate for 127.0.0.1, or the one for
  // another name; returns its port once it accepts.
  int Start(bool other_name = false) {
    const int port = FreeLoopbackPort();
    const std::string cert = dir_.path() + (other_name ? "/other.pem" : "/srv.pem");
    const std::string key = dir_.path() + "/srv.key";
    const pid_t pid = ::fork();
    if (pid == 0) {
      ::execlp("openssl", "openssl", "s_server", "-quiet", "-www", "-accept",
               ("127.0.0.1:" + std::to_string(port)).c_str(), "-cert", cert.c_str(), "-key",
               key.c_str(), nullptr);
      ::_exit(127);
    }
    pids_.push_back(pid);
    for (int i = 0; i < 100; ++i) {
      if (FetchThumbprints("127.0.0.1", port, 1).ok()) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return port;
  }

 private:
  vmbackup::testing::TempDir dir_;
  bool ok_ = false;
  std::string sha256_;
  std::vector<pid_t> pids_;
};

}  // namespace vmbackup::http::testing
