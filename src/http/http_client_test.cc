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

#include "base/testing/temp_dir.h"

namespace vmbackup::http {
namespace {

using testing::Shell;

int FreePort() {
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

class HttpsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new testing::TempDir();
    const std::string d = dir_->path();
    // A CA, and a server certificate it signs for 127.0.0.1.
    ASSERT_EQ(std::system(("cd " + d +
                           " && openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out "
                           "ca.pem -days 2 -subj /CN=test-ca 2>/dev/null"
                           " && openssl req -newkey rsa:2048 -nodes -keyout srv.key -out srv.csr "
                           "-subj /CN=127.0.0.1 2>/dev/null"
                           " && printf 'subjectAltName=IP:127.0.0.1\\n' > ext.cnf"
                           " && openssl x509 -req -in srv.csr -CA ca.pem -CAkey ca.key "
                           "-CAcreateserial -out srv.pem -days 2 -extfile ext.cnf 2>/dev/null")
                              .c_str()),
              0);
    port_ = FreePort();
    pid_ = ::fork();
    if (pid_ == 0) {
      ::execlp("openssl", "openssl", "s_server", "-quiet", "-www", "-accept",
               ("127.0.0.1:" + std::to_string(port_)).c_str(), "-cert", (d + "/srv.pem").c_str(),
               "-key", (d + "/srv.key").c_str(), nullptr);
      ::_exit(127);
    }
    // Wait until it accepts.
    for (int i = 0; i < 100; ++i) {
      if (FetchThumbprints("127.0.0.1", port_, 1).ok()) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    sha256_ = Shell("openssl x509 -in " + d + "/srv.pem -noout -fingerprint -sha256 | cut -d= -f2");
  }
  static void TearDownTestSuite() {
    ::kill(pid_, SIGTERM);
    ::waitpid(pid_, nullptr, 0);
    delete dir_;
  }
  std::string url() const { return "https://127.0.0.1:" + std::to_string(port_); }

  static testing::TempDir* dir_;
  static int port_;
  static pid_t pid_;
  static std::string sha256_;
};
testing::TempDir* HttpsTest::dir_ = nullptr;
int HttpsTest::port_ = 0;
pid_t HttpsTest::pid_ = 0;
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
  auto c = Client::Create(url(), {dir_->path() + "/ca.pem", ""});
  ASSERT_TRUE(c.ok());
  auto r = (*c)->Send({"GET", "/", {}, ""});
  ASSERT_TRUE(r.ok()) << r.error().ToString();
  EXPECT_EQ(r->status, 200);
}

TEST_F(HttpsTest, TheRightPinIsAcceptedAndAWrongOneRefusedNamingBoth) {
  auto good = Client::Create(url(), {"", "SHA256:" + sha256_});
  ASSERT_TRUE(good.ok());
  auto r = (*good)->Send({"GET", "/", {}, ""});
  ASSERT_TRUE(r.ok()) << r.error().ToString();
  EXPECT_EQ(r->status, 200);

  std::string wrong = sha256_;
  wrong[0] = wrong[0] == 'A' ? 'B' : 'A';
  auto bad = Client::Create(url(), {"", wrong});
  ASSERT_TRUE(bad.ok());
  auto r2 = (*bad)->Send({"GET", "/", {}, ""});
  ASSERT_FALSE(r2.ok());
  EXPECT_EQ(r2.error().code(), ErrorCode::kUnauthenticated);
  EXPECT_NE(r2.error().message().find(sha256_), std::string::npos) << r2.error().ToString();
  EXPECT_NE(r2.error().message().find(wrong), std::string::npos) << r2.error().ToString();
}

TEST_F(HttpsTest, NothingListeningIsAnIoErrorNamingTheUrl) {
  auto c = Client::Create("https://127.0.0.1:" + std::to_string(FreePort()), {}, 5);
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
