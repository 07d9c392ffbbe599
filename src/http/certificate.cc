#include "http/certificate.h"

#include <openssl/evp.h>

#include "base/strings.h"

namespace vmbackup::http {

std::string CertificateDigest(X509* cert, const EVP_MD* md) {
  static const char* kHex = "0123456789ABCDEF";
  unsigned char d[EVP_MAX_MD_SIZE];
  unsigned n = 0;
  if (X509_digest(cert, md, d, &n) != 1) return "";
  std::string s;
  for (unsigned i = 0; i < n; ++i) {
    if (i) s += ':';
    s += kHex[d[i] >> 4];
    s += kHex[d[i] & 15];
  }
  return s;
}

std::string UntrustedCertificateMessage(const std::string& base_url, const std::string& reason,
                                        const std::string& hint) {
  return StrFormat("%s: the server's TLS certificate is not trusted (%s); %s", base_url.c_str(),
                   reason.c_str(), hint.empty() ? "give the CA that signed it" : hint.c_str());
}

std::string PinMismatchMessage(const std::string& base_url, const std::string& seen,
                               const std::string& pinned) {
  return "the server " + base_url + " presented a certificate with SHA-256 thumbprint " + seen +
         ", not the pinned " + pinned + ": refused";
}

}  // namespace vmbackup::http
