// The HTTPS client against a real TLS server (openssl s_server -www) with certificates made by
// the openssl command: trust through a CA file, pinning by thumbprint, refusal of both wrong.
#include "http/http_client.h"

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <thread>

#include "http/testing/tls_servers.h"

namespace vmbackup::http {
namespace {

using testing::FreeLoopbackPort;

class HttpsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    servers_ = new testing::TlsServers();
    ASSERT_TRUE(servers_->ok());
    port_ = servers_->Start();
    sha256_ = servers_->sha256();
  }
  static void TearDownTestSuite() { delete servers_; }
  std::string url() const { return "https://127.0.0.1:" + std::to_string(port_); }

  static testing::TlsServers* servers_;
  static int port_;
  static std::string sha256_;
};
testing::TlsServers* HttpsTest::servers_ = nullptr;
int HttpsTest::port_ = 0;
std::string HttpsTest::sha256_;

TEST_F(HttpsTest, ThumbprintsAreTheCertificateDigests) {
  auto t = FetchThumbprints("127.0.0.1", port_);
  ASSERT_TRUE(t.ok()) << t.error().ToString();
  ASSERT_EQ(sha256_.size(), 95u);
  EXPECT_EQ(t->sha256, sha256_);
  EXPECT_EQ(t->sha1.size(), 59u);
}

TEST_F(HttpsTest, AnUntrustedCertificateIsRefused) {
  auto c = Client::Create(url(), {});
  ASSERT_TRUE(c.ok());
  auto r = (*c)->Send({"GET", "/", {}, ""});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code(), ErrorCode::kUnauthenticated) << r.error().ToString();
  EXPECT_NE(r.error().message().find("not trusted"), std::string::npos) << r.error().ToString();
}

TEST_F(HttpsTest, TheCaFileMakesItTrusted) {
  auto c = Client::Create(url(), {servers_->ca_file(), "", ""});
  ASSERT_TRUE(c.ok());
  auto r = (*c)->Send({"GET", "/", {}, ""});
  ASSERT_TRUE(r.ok()) << r.error().ToString();
  EXPECT_EQ(r->status, 200);
}

TEST_F(HttpsTest, TheRightPinIsAcceptedAndAWrongOneRefusedNamingBoth) {
  auto good = Client::Create(url(), {"", "SHA256:" + sha256_, ""});
  ASSERT_TRUE(good.ok());
  auto r = (*good)->Send({"GET", "/", {}, ""});
  ASSERT_TRUE(r.ok()) << r.error().ToString();
  EXPECT_EQ(r->status, 200);

  std::string wrong = sha256_;
  wrong[0] = wrong[0] == 'A' ? 'B' : 'A';
  auto bad = Client::Create(url(), {"", wrong, ""});
  ASSERT_TRUE(bad.ok());
  auto r2 = (*bad)->Send({"GET", "/", {}, ""});
  ASSERT_FALSE(r2.ok());
  EXPECT_EQ(r2.error().code(), ErrorCode::kUnauthenticated);
  EXPECT_NE(r2.error().message().find(sha256_), std::string::npos) << r2.error().ToString();
  EXPECT_NE(r2.error().message().find(wrong), std::string::npos) << r2.error().ToString();
}

TEST_F(HttpsTest, NothingListeningIsAnIoErrorNamingTheUrl) {
  auto c = Client::Create("https://127.0.0.1:" + std::to_string(FreeLoopbackPort()), {}, 5);
  ASSERT_TRUE(c.ok());
  auto r = (*c)->Send({"GET", "/sdk", {}, ""});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code(), ErrorCode::kIOError);
  EXPECT_NE(r.error().message().find("/sdk"), std::string::npos);
}

TEST(ThumbprintTest, Normalizes) {
  const std::string want =
      "AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:"
      "67:89";
  EXPECT_EQ(*NormalizeSha256Thumbprint("SHA256:" + want), want);
  EXPECT_EQ(*NormalizeSha256Thumbprint(
                "abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789"),
            want);
  EXPECT_FALSE(NormalizeSha256Thumbprint("AB:CD").ok());
  EXPECT_FALSE(NormalizeSha256Thumbprint(want.substr(0, 92) + "ZZ").ok());
}

TEST(UrlTest, EncodesQueryValues) {
  EXPECT_EQ(UrlEncode("[ds 1]/a b&c"), "%5Bds%201%5D%2Fa%20b%26c");
  EXPECT_EQ(UrlEncode("vm one/disk.vmdk", true), "vm%20one/disk.vmdk");
}

}  // namespace
}  // namespace vmbackup::http
