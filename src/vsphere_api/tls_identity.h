// The server's certificate: the user's (--tls-cert, --tls-key), or a self-signed one made on
// first use and kept in a private folder (0700, files 0600), so that a thumbprint a client
// pinned stays valid across restarts.
#pragma once

#include <string>

#include "base/result.h"

namespace vmbackup::vsphere_api {

struct TlsIdentity {
  std::string cert_file, key_file;
  std::string sha1, sha256;  // "AB:CD:..." thumbprints of the certificate
};

// Checks that the files hold a certificate and its key.
Result<TlsIdentity> LoadTlsIdentity(const std::string& cert_file, const std::string& key_file);
// `dir`/cert.pem and key.pem, made (EC P-256, 10 years, for localhost and 127.0.0.1 and
// `host`) when missing.
Result<TlsIdentity> SelfSignedIdentity(const std::string& dir, const std::string& host);

}  // namespace vmbackup::vsphere_api
