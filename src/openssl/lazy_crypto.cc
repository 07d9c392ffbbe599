// libcrypto (libssl3): hashes, ciphers, random numbers, certificates.
// Loaded when first used (base/lazy_library.h): mapping and relocating it (18,000 relocations,
// 360 KiB of its data written) cost 3-5 ms before main on every start. Programs warm it up on a
// thread of their own (repo::CryptoWarmUp) while main builds the command line, so its loading
// overlaps that work instead of preceding it.

#include "base/lazy_library.h"

// Every function of it this program calls (a missing one fails the link).
#define FUNCTIONS(X)                 \
  X(BN_bin2bn)                       \
  X(BN_free)                         \
  X(BN_to_ASN1_INTEGER)              \
  X(CRYPTO_memcmp)                   \
  X(ERR_clear_error)                 \
  X(ERR_error_string_n)              \
  X(ERR_get_error)                   \
  X(EVP_CIPHER_CTX_ctrl)             \
  X(EVP_CIPHER_CTX_free)             \
  X(EVP_CIPHER_CTX_new)              \
  X(EVP_DecodeBlock)                 \
  X(EVP_DecryptFinal_ex)             \
  X(EVP_DecryptInit_ex)              \
  X(EVP_DecryptUpdate)               \
  X(EVP_Digest)                      \
  X(EVP_EncodeBlock)                 \
  X(EVP_EncryptFinal_ex)             \
  X(EVP_EncryptInit_ex)              \
  X(EVP_EncryptUpdate)               \
  X(EVP_PBE_scrypt)                  \
  X(EVP_PKEY_Q_keygen)               \
  X(EVP_PKEY_free)                   \
  X(EVP_aes_256_gcm)                 \
  X(EVP_md5)                         \
  X(EVP_sha1)                        \
  X(EVP_sha256)                      \
  X(HMAC)                            \
  X(PEM_read_PrivateKey)             \
  X(PEM_read_X509)                   \
  X(PEM_write_PrivateKey)            \
  X(PEM_write_X509)                  \
  X(RAND_bytes)                      \
  X(X509V3_EXT_conf_nid)             \
  X(X509V3_set_ctx)                  \
  X(X509_EXTENSION_free)             \
  X(X509_NAME_add_entry_by_txt)      \
  X(X509_STORE_CTX_get_current_cert) \
  X(X509_STORE_CTX_get_error_depth)  \
  X(X509_STORE_CTX_get_ex_data)      \
  X(X509_STORE_CTX_set_error)        \
  X(X509_VERIFY_PARAM_set1_ip_asc)   \
  X(X509_add_ext)                    \
  X(X509_check_private_key)          \
  X(X509_digest)                     \
  X(X509_free)                       \
  X(X509_get_serialNumber)           \
  X(X509_get_subject_name)           \
  X(X509_getm_notAfter)              \
  X(X509_getm_notBefore)             \
  X(X509_gmtime_adj)                 \
  X(X509_new)                        \
  X(X509_set_issuer_name)            \
  X(X509_set_pubkey)                 \
  X(X509_set_version)                \
  X(X509_sign)                       \
  X(X509_verify_cert_error_string)
VMBACKUP_LAZY_LIBRARY(crypto, "libcrypto.so.3", "libssl3", FUNCTIONS)
