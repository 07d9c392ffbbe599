#include "vsphere_api/tls_identity.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <functional>
#include <memory>

#include "base/strings.h"
#include "io/posix_file.h"

namespace vmbackup::vsphere_api {
namespace {

struct FileCloser {
  void operator()(FILE* f) const { fclose(f); }
};
using UniqueFile = std::unique_ptr<FILE, FileCloser>;
struct X509Free {
  void operator()(X509* x) const { X509_free(x); }
};
struct PkeyFree {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};

std::string Digest(X509* cert, const EVP_MD* md) {
  unsigned char d[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  if (X509_digest(cert, md, d, &n) != 1) return "";
  std::string out;
  for (unsigned int i = 0; i < n; ++i) out += StrFormat(i ? ":%02X" : "%02X", d[i]);
  return out;
}

Status AddExtension(X509* cert, int nid, const std::string& value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, cert, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value.c_str());
  if (!ext) return InternalError("cannot make certificate extension " + value);
  X509_add_ext(cert, ext, -1);
  X509_EXTENSION_free(ext);
  return Status::Ok();
}

Status WritePrivate(const std::string& path, const std::function<bool(FILE*)>& write) {
  const std::string tmp = path + ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return PosixError("create " + tmp, errno);
  UniqueFile f(fdopen(fd, "w"));
  if (!f) {
    ::close(fd);
    return PosixError("open " + tmp, errno);
  }
  if (!write(f.get()) || fflush(f.get()) != 0 || fsync(fileno(f.get())) != 0)
    return IOError("cannot write " + tmp);
  f.reset();
  if (::rename(tmp.c_str(), path.c_str()) != 0) return PosixError("rename " + tmp, errno);
  return Status::Ok();
}

}  // namespace

Result<TlsIdentity> LoadTlsIdentity(const std::string& cert_file, const std::string& key_file) {
  UniqueFile cf(fopen(cert_file.c_str(), "r"));
  if (!cf) return PosixError("open " + cert_file, errno);
  std::unique_ptr<X509, X509Free> cert(PEM_read_X509(cf.get(), nullptr, nullptr, nullptr));
  if (!cert) return InvalidArgumentError(cert_file + " holds no PEM certificate");
  UniqueFile kf(fopen(key_file.c_str(), "r"));
  if (!kf) return PosixError("open " + key_file, errno);
  std::unique_ptr<EVP_PKEY, PkeyFree> key(PEM_read_PrivateKey(kf.get(), nullptr, nullptr, nullptr));
  if (!key) return InvalidArgumentError(key_file + " holds no PEM private key");
  if (X509_check_private_key(cert.get(), key.get()) != 1)
    return InvalidArgumentError(key_file + " is not the key of " + cert_file);
  TlsIdentity id;
  id.cert_file = cert_file;
  id.key_file = key_file;
  id.sha1 = Digest(cert.get(), EVP_sha1());
  id.sha256 = Digest(cert.get(), EVP_sha256());
  return id;
}

Result<TlsIdentity> SelfSignedIdentity(const std::string& dir, const std::string& host) {
  const std::string cert_file = io::JoinPath(dir, "cert.pem"),
                    key_file = io::JoinPath(dir, "key.pem");
  if (io::PathExists(cert_file) && io::PathExists(key_file))
    return LoadTlsIdentity(cert_file, key_file);
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) return PosixError("mkdir " + dir, errno);
  std::unique_ptr<EVP_PKEY, PkeyFree> key(EVP_EC_gen("P-256"));
  if (!key) return InternalError("cannot make an EC key");
  std::unique_ptr<X509, X509Free> cert(X509_new());
  X509_set_version(cert.get(), 2);
  uint8_t serial[16];
  RAND_bytes(serial, sizeof serial);
  serial[0] &= 0x7f;
  BIGNUM* bn = BN_bin2bn(serial, sizeof serial, nullptr);
  BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(cert.get()));
  BN_free(bn);
  X509_gmtime_adj(X509_getm_notBefore(cert.get()), -3600);
  X509_gmtime_adj(X509_getm_notAfter(cert.get()), 10L * 365 * 24 * 3600);
  X509_set_pubkey(cert.get(), key.get());
  X509_NAME* name = X509_get_subject_name(cert.get());
  const std::string cn = host.empty() ? "localhost" : host;
  X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>("vmhost"), -1, -1, 0);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>(cn.c_str()), -1, -1, 0);
  X509_set_issuer_name(cert.get(), name);
  std::string san = "DNS:localhost,IP:127.0.0.1,IP:::1";
  if (!host.empty() && host != "localhost" && host != "127.0.0.1") {
    unsigned char buf[16];
    const bool ip =
        inet_pton(AF_INET, host.c_str(), buf) == 1 || inet_pton(AF_INET6, host.c_str(), buf) == 1;
    san += (ip ? ",IP:" : ",DNS:") + host;
  }
  VMBACKUP_RETURN_IF_ERROR(AddExtension(cert.get(), NID_subject_alt_name, san));
  VMBACKUP_RETURN_IF_ERROR(AddExtension(cert.get(), NID_basic_constraints, "critical,CA:TRUE"));
  if (X509_sign(cert.get(), key.get(), EVP_sha256()) == 0)
    return InternalError("cannot sign the certificate");
  VMBACKUP_RETURN_IF_ERROR(WritePrivate(key_file, [&](FILE* f) {
    return PEM_write_PrivateKey(f, key.get(), nullptr, nullptr, 0, nullptr, nullptr) == 1;
  }));
  VMBACKUP_RETURN_IF_ERROR(
      WritePrivate(cert_file, [&](FILE* f) { return PEM_write_X509(f, cert.get()) == 1; }));
  return LoadTlsIdentity(cert_file, key_file);
}

}  // namespace vmbackup::vsphere_api
