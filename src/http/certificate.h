// What both HTTP clients of this library say about a server's certificate (internal to http).
#pragma once

#include <openssl/x509.h>

#include <string>

namespace vmbackup::http {

// The certificate's digest as "AB:CD:..." ("" when OpenSSL cannot compute it).
std::string CertificateDigest(X509* cert, const EVP_MD* md);

// The error texts for a certificate that is not trusted (`hint`: TlsOptions::trust_hint), and
// for a pin that does not match.
std::string UntrustedCertificateMessage(const std::string& base_url, const std::string& reason,
                                        const std::string& hint);
std::string PinMismatchMessage(const std::string& base_url, const std::string& seen,
                               const std::string& pinned);

}  // namespace vmbackup::http
