// The storage::Backend contract (storage/testing/backend_conformance.h) met by S3Backend on a
// real S3 server: Ceph's radosgw started by tests/rgw/rgw-up (tests/e2e/s3_rgw_test.sh runs
// this with S3_ENDPOINT and the keys in the environment, once over http and once over https with
// S3_CA_FILE, the CA of radosgw's certificate). Each test gets its own prefix. Also: a wrong
// secret is refused naming S3's error, and a missing repository is said so.
#include <gtest/gtest.h>

#include <cstdlib>
#include <random>

#include "s3/s3_backend.h"
#include "storage/testing/backend_conformance.h"

namespace vmbackup::s3 {
namespace {

std::string Endpoint() {
  const char* e = std::getenv("S3_ENDPOINT");
  if (!e) {
    ADD_FAILURE() << "S3_ENDPOINT is not set (tests/e2e/s3_rgw_test.sh sets it)";
    return "";
  }
  return e;
}

// Verified against S3_CA_FILE when it is set (the https run).
http::TlsOptions Tls() {
  http::TlsOptions tls;
  if (const char* ca = std::getenv("S3_CA_FILE")) tls.ca_file = ca;
  return tls;
}

std::string FreshPrefix() {
  static std::mt19937_64 rng(std::random_device{}());
  return "t" + std::to_string(rng() % 1000000000);
}

struct S3Factory {
  std::unique_ptr<storage::Backend> Make() {
    auto keys = CredentialsFromEnvironment();
    EXPECT_TRUE(keys) << keys.error().ToString();
    const std::string url = "s3:" + Endpoint() + "/vmbackup-conformance/" + FreshPrefix();
    auto b = S3Backend::Open(url, *keys, Tls(), /*create_bucket=*/true);
    EXPECT_TRUE(b) << b.error().ToString();
    return std::move(*b);
  }
};

}  // namespace
}  // namespace vmbackup::s3

namespace vmbackup::storage::testing {
INSTANTIATE_TYPED_TEST_SUITE_P(S3, BackendConformance, vmbackup::s3::S3Factory);
}  // namespace vmbackup::storage::testing

namespace vmbackup::s3 {
namespace {

TEST(S3Backend, AWrongSecretIsRefusedNamingS3sError) {
  auto keys = CredentialsFromEnvironment();
  ASSERT_TRUE(keys);
  keys->secret_key += "x";
  auto b = S3Backend::Open("s3:" + Endpoint() + "/vmbackup-conformance", *keys, Tls(), true);
  ASSERT_FALSE(b);
  EXPECT_EQ(b.error().code(), ErrorCode::kPermissionDenied) << b.error().ToString();
  EXPECT_NE(b.error().message().find("SignatureDoesNotMatch"), std::string::npos)
      << b.error().ToString();
}

TEST(S3Backend, NoRepositoryWithoutItsConfig) {
  auto keys = CredentialsFromEnvironment();
  ASSERT_TRUE(keys);
  auto b =
      S3Backend::Open("s3:" + Endpoint() + "/vmbackup-conformance/" + FreshPrefix(), *keys, Tls(),
                      /*create_bucket=*/false);
  ASSERT_FALSE(b);
  EXPECT_EQ(b.error().code(), ErrorCode::kNoRepository) << b.error().ToString();
}

TEST(S3Backend, KeysWithEveryAllowedCharacterAndManyPages) {
  auto keys = CredentialsFromEnvironment();
  ASSERT_TRUE(keys);
  auto b =
      S3Backend::Open("s3:" + Endpoint() + "/vmbackup-conformance/" + FreshPrefix() + "/a b+c(d)~e",
                      *keys, Tls(), true);
  ASSERT_TRUE(b) << b.error().ToString();
  const std::vector<uint8_t> one = {1};
  for (int i = 0; i < 1100; ++i) {  // more than one page of 1000
    ASSERT_TRUE(
        (*b)->Save({storage::ObjectType::kIndex, "k-" + std::to_string(i) + ".x_y"}, one).ok());
  }
  auto all = (*b)->List(storage::ObjectType::kIndex);
  ASSERT_TRUE(all) << all.error().ToString();
  EXPECT_EQ(all->size(), 1100u);
}

}  // namespace
}  // namespace vmbackup::s3
