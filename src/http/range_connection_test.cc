// RangeConnection against servers that answer in scripted ways over plain HTTP on 127.0.0.1
// (a well-behaved one, and the hostile or broken answers only a scripted peer can give), and
// its TLS checks against `openssl s_server`. Real ranges over TLS from a real file service are
// the vSphere e2e tests' (vcsim).
#include "http/range_connection.h"

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <thread>

#include "base/strings.h"
#include "http/response_head.h"
#include "http/testing/tls_servers.h"

namespace vmbackup::http {
namespace {

// What the server does with one request: send `bytes`, then keep the connection, close it,
// or send nothing and hold it open (a stall).
struct Answer {
  std::string bytes;
  enum { kKeep, kClose, kStall } after = kKeep;
};
using Script = std::function<Answer(const std::string& request_head, int request_number)>;

class ScriptedServer {
 public:
  explicit ScriptedServer(Script script) : script_(std::move(script)) {
    listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::bind(listen_fd_, reinterpret_cast<sockaddr*>(&a), sizeof a);
    ::listen(listen_fd_, 8);
    socklen_t len = sizeof a;
    ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    thread_ = std::thread([this] { Serve(); });
  }
  ~ScriptedServer() {
    stop_ = true;
    ::shutdown(listen_fd_, SHUT_RDWR);
    thread_.join();
    ::close(listen_fd_);
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  int accepted() const { return accepted_; }

 private:
  void Serve() {
    int n = 0;
    while (!stop_) {
      const int fd = ::accept(listen_fd_, nullptr, nullptr);
      if (fd < 0) return;
      ++accepted_;
      std::string in;
      bool open = true;
      while (open && !stop_) {
        size_t end;
        while ((end = in.find("\r\n\r\n")) == std::string::npos) {
          char buf[4096];
          const ssize_t got = ::recv(fd, buf, sizeof buf, 0);
          if (got <= 0) {
            open = false;
            break;
          }
          in.append(buf, size_t(got));
        }
        if (!open) break;
        const std::string head = in.substr(0, end + 4);
        in.erase(0, end + 4);
        const Answer a = script_(head, n++);
        ::send(fd, a.bytes.data(), a.bytes.size(), MSG_NOSIGNAL);
        if (a.after == Answer::kStall) {
          std::this_thread::sleep_for(std::chrono::milliseconds(2500));
          open = false;
        }
        if (a.after == Answer::kClose) open = false;
      }
      ::close(fd);
    }
  }

  Script script_;
  int listen_fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<int> accepted_{0};
  std::thread thread_;
};

// The bytes of a file of `size` bytes at [first, last].
std::string Content(uint64_t first, uint64_t last) {
  std::string s;
  for (uint64_t i = first; i <= last; ++i) s += char('a' + (i * 7 + i / 251) % 26);
  return s;
}

// "bytes=F-L" of a request head.
std::pair<uint64_t, uint64_t> RangeOf(const std::string& head) {
  const size_t at = head.find("Range: bytes=");
  const size_t dash = head.find('-', at);
  return {std::stoull(head.substr(at + 13, dash - at - 13)), std::stoull(head.substr(dash + 1))};
}

Answer Partial(const std::string& head, const std::string& extra_headers = "") {
  auto [first, last] = RangeOf(head);
  const std::string body = Content(first, last);
  return {StrFormat("HTTP/1.1 206 Partial Content\r\nContent-Length: %zu\r\n"
                    "Content-Range: bytes %llu-%llu/1000000\r\n",
                    body.size(), (unsigned long long)first, (unsigned long long)last) +
          extra_headers + "\r\n" + body};
}

std::string Read(RangeConnection& c, uint64_t offset, size_t length, Status* status) {
  std::string out(length, '\0');
  *status = c.GetRange("/folder/disk-flat.vmdk?dsName=ds1", {{"Cookie", "vmware_soap_session=x"}},
                       offset, {reinterpret_cast<uint8_t*>(out.data()), out.size()});
  return out;
}

TEST(RangeConnectionTest, ReadsRangesOverOneKeptAliveConnectionSendingTheHeaders) {
  std::string seen;
  ScriptedServer server([&](const std::string& head, int) {
    seen = head;
    return Partial(head);
  });
  auto c = RangeConnection::Create(server.url(), {}, 5);
  ASSERT_TRUE(c.ok()) << c.error().ToString();
  Status s;
  EXPECT_EQ(Read(**c, 1000, 70000, &s), Content(1000, 70999));
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(Read(**c, 5, 3, &s), Content(5, 7));
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ((*c)->connects(), 1);
  EXPECT_NE(seen.find("GET /folder/disk-flat.vmdk?dsName=ds1 HTTP/1.1\r\n"), std::string::npos);
  EXPECT_NE(seen.find("Cookie: vmware_soap_session=x\r\n"), std::string::npos) << seen;
  EXPECT_NE(seen.find("Range: bytes=5-7\r\n"), std::string::npos) << seen;
}

TEST(RangeConnectionTest, AConnectionTheServerClosedIsOpenedAgainOnce) {
  ScriptedServer server([](const std::string& head, int) {
    Answer a = Partial(head);
    a.after = Answer::kClose;  // without saying so: the client finds out on its next request
    return a;
  });
  auto c = RangeConnection::Create(server.url(), {}, 5);
  ASSERT_TRUE(c.ok());
  Status s;
  for (uint64_t i = 0; i < 3; ++i) {
    EXPECT_EQ(Read(**c, i * 100, 100, &s), Content(i * 100, i * 100 + 99));
    ASSERT_TRUE(s.ok()) << s.ToString();
  }
  EXPECT_EQ((*c)->connects(), 3);
}

TEST(RangeConnectionTest, ConnectionCloseIsHonoured) {
  ScriptedServer server([](const std::string& head, int) {
    Answer a = Partial(head, "Connection: close\r\n");
    a.after = Answer::kClose;
    return a;
  });
  auto c = RangeConnection::Create(server.url(), {}, 5);
  ASSERT_TRUE(c.ok());
  Status s;
  Read(**c, 0, 10, &s);
  ASSERT_TRUE(s.ok()) << s.ToString();
  Read(**c, 10, 10, &s);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ((*c)->connects(), 2);
}

struct BadCase {
  const char* name;
  std::function<Answer(const std::string&)> answer;
  ErrorCode code;
  const char* says;
  int times = 1;  // answers in a row given this way
};

TEST(RangeConnectionTest, WrongAnswersAreClearErrorsAndTheNextRequestStartsClean) {
  const BadCase cases[] = {
      {"401",
       [](const std::string&) { return Answer{"HTTP/1.1 401 No\r\nContent-Length: 0\r\n\r\n"}; },
       ErrorCode::kUnauthenticated, "HTTP 401"},
      {"200 without the range",
       [](const std::string&) {
         return Answer{"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nwhat"};
       },
       ErrorCode::kIOError, "HTTP 200"},
      {"500 with a message",
       [](const std::string&) {
         return Answer{"HTTP/1.1 500 Oops\r\nContent-Length: 11\r\n\r\ndisk failed"};
       },
       ErrorCode::kIOError, "disk failed"},
      {"a longer body than asked",
       [](const std::string& h) {
         auto [f, l] = RangeOf(h);
         return Answer{StrFormat("HTTP/1.1 206 P\r\nContent-Length: %llu\r\nContent-Range: bytes "
                                 "%llu-%llu/9\r\n\r\n",
                                 (unsigned long long)(l - f + 2), (unsigned long long)f,
                                 (unsigned long long)(l + 1)) +
                       Content(f, l + 1)};
       },
       ErrorCode::kProtocol, "bytes"},
      {"other bytes than asked",
       [](const std::string& h) {
         auto [f, l] = RangeOf(h);
         return Answer{StrFormat("HTTP/1.1 206 P\r\nContent-Length: %llu\r\nContent-Range: bytes "
                                 "%llu-%llu/9\r\n\r\n",
                                 (unsigned long long)(l - f + 1), (unsigned long long)f + 1,
                                 (unsigned long long)l + 1) +
                       Content(f + 1, l + 1)};
       },
       ErrorCode::kProtocol, "instead"},
      {"extra bytes after the body",
       [](const std::string& h) {
         Answer a = Partial(h);
         a.bytes += "JUNK";
         return a;
       },
       ErrorCode::kProtocol, "more than asked"},
      {"a short body, then the end",
       [](const std::string& h) {
         Answer a = Partial(h);
         a.bytes.resize(a.bytes.size() - 5);
         a.after = Answer::kClose;
         return a;
       },
       ErrorCode::kIOError, "ended after"},
      {"chunked",
       [](const std::string& h) {
         auto [f, l] = RangeOf(h);
         return Answer{
             StrFormat("HTTP/1.1 206 P\r\nTransfer-Encoding: chunked\r\nContent-Range: "
                       "bytes %llu-%llu/9\r\n\r\n0\r\n\r\n",
                       (unsigned long long)f, (unsigned long long)l)};
       },
       ErrorCode::kNotSupported, "chunked"},
      {"a malformed head",
       [](const std::string&) { return Answer{"HTTP/1.1 2O6 Partial\r\n\r\n"}; },
       ErrorCode::kProtocol, "status code"},
      {"no status line at all",
       [](const std::string&) { return Answer{"SSH-2.0-OpenSSH_9.2\r\n\r\n"}; },
       ErrorCode::kProtocol, "status line"},
      // Once would be a kept-alive connection the server closed: asked again on a new one.
      {"nothing, then the end, twice",
       [](const std::string&) {
         return Answer{"", Answer::kClose};
       },
       ErrorCode::kIOError, "closed before an answer", 2},
  };
  for (const BadCase& bad : cases) {
    SCOPED_TRACE(bad.name);
    ScriptedServer server([&](const std::string& head, int n) {
      // The second request is answered badly (and the retry of it, `times` in all).
      return n >= 1 && n <= bad.times ? bad.answer(head) : Partial(head);
    });
    auto c = RangeConnection::Create(server.url(), {}, 5);
    ASSERT_TRUE(c.ok());
    Status s;
    Read(**c, 0, 100, &s);
    ASSERT_TRUE(s.ok()) << s.ToString();
    Read(**c, 100, 100, &s);
    EXPECT_EQ(s.code(), bad.code) << s.ToString();
    EXPECT_NE(s.message().find(bad.says), std::string::npos) << s.ToString();
    EXPECT_NE(s.message().find("bytes 100-199"), std::string::npos) << s.ToString();
    // The connection is not trusted after that: the next request gets a new one.
    EXPECT_EQ(Read(**c, 200, 50, &s), Content(200, 249));
    EXPECT_TRUE(s.ok()) << s.ToString();
    EXPECT_EQ((*c)->connects(), 1 + bad.times);
  }
}

TEST(RangeConnectionTest, AStallEndsAfterTheTimeout) {
  ScriptedServer server([](const std::string&, int) { return Answer{"", Answer::kStall}; });
  auto c = RangeConnection::Create(server.url(), {}, 1);
  ASSERT_TRUE(c.ok());
  const auto t0 = std::chrono::steady_clock::now();
  Status s;
  Read(**c, 0, 10, &s);
  const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_EQ(s.code(), ErrorCode::kIOError) << s.ToString();
  EXPECT_NE(s.message().find("sent nothing for 1 s"), std::string::npos) << s.ToString();
  EXPECT_LT(took, 2.4);  // one wait, not one more on a new connection
}

TEST(RangeConnectionTest, RefusesLineBreaksInHeadersAndBadUrls) {
  auto c = RangeConnection::Create("http://127.0.0.1:1", {}, 1);
  ASSERT_TRUE(c.ok());
  std::string out(4, '\0');
  Status s = (*c)->GetRange("/x", {{"Cookie", "a\r\nX-Evil: 1"}}, 0,
                            {reinterpret_cast<uint8_t*>(out.data()), out.size()});
  EXPECT_EQ(s.code(), ErrorCode::kInvalidArgument) << s.ToString();
  s = (*c)->GetRange("/x y", {}, 0, {reinterpret_cast<uint8_t*>(out.data()), out.size()});
  EXPECT_EQ(s.code(), ErrorCode::kInvalidArgument) << s.ToString();
  for (const char* url : {"ftp://h", "https://h/path", "https://h:0", "https://h:99999",
                          "https://[::1", "https://:443", "https://user@h"}) {
    EXPECT_EQ(RangeConnection::Create(url, {}).error().code(), ErrorCode::kInvalidArgument) << url;
  }
  EXPECT_TRUE(RangeConnection::Create("https://[::1]:8443", {}).ok());
  EXPECT_EQ(RangeConnection::Create("https://h", {"", "12:34", ""}).error().code(),
            ErrorCode::kInvalidArgument);
}

TEST(RangeConnectionTest, NothingListeningIsAnIoErrorNamingTheServer) {
  const std::string url = "http://127.0.0.1:" + std::to_string(testing::FreeLoopbackPort());
  auto c = RangeConnection::Create(url, {}, 2);
  ASSERT_TRUE(c.ok());
  Status s;
  Read(**c, 0, 10, &s);
  EXPECT_EQ(s.code(), ErrorCode::kIOError) << s.ToString();
  EXPECT_NE(s.message().find(url), std::string::npos) << s.ToString();
}

// TLS: `openssl s_server -www` answers every GET with an HTTP/1.0 200 status page, so a
// trusted server shows as "HTTP 200" (not a range) and a refused one as kUnauthenticated.
class RangeTlsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    servers_ = new testing::TlsServers();
    ASSERT_TRUE(servers_->ok());
    port_ = servers_->Start();
    other_port_ = servers_->Start(/*other_name=*/true);
  }
  static void TearDownTestSuite() { delete servers_; }
  static Status Get(int port, const TlsOptions& tls) {
    auto c = RangeConnection::Create("https://127.0.0.1:" + std::to_string(port), tls, 5);
    if (!c.ok()) return c.error();
    Status s;
    Read(**c, 0, 10, &s);
    return s;
  }

  static testing::TlsServers* servers_;
  static int port_, other_port_;
};
testing::TlsServers* RangeTlsTest::servers_ = nullptr;
int RangeTlsTest::port_ = 0;
int RangeTlsTest::other_port_ = 0;

TEST_F(RangeTlsTest, AnUntrustedCertificateIsRefused) {
  Status s = Get(port_, {});
  EXPECT_EQ(s.code(), ErrorCode::kUnauthenticated) << s.ToString();
  EXPECT_NE(s.message().find("not trusted"), std::string::npos) << s.ToString();
}

TEST_F(RangeTlsTest, TheCaFileMakesItTrustedButOnlyForTheNameInTheCertificate) {
  Status s = Get(port_, {servers_->ca_file(), "", ""});
  EXPECT_EQ(s.code(), ErrorCode::kIOError) << s.ToString();
  EXPECT_NE(s.message().find("HTTP 200"), std::string::npos) << s.ToString();
  // Signed by the same CA, for another name: refused.
  s = Get(other_port_, {servers_->ca_file(), "", ""});
  EXPECT_EQ(s.code(), ErrorCode::kUnauthenticated) << s.ToString();
  EXPECT_NE(s.message().find("mismatch"), std::string::npos) << s.ToString();
}

TEST_F(RangeTlsTest, TheRightPinIsAcceptedAndAWrongOneRefusedNamingBoth) {
  Status s = Get(port_, {"", "SHA256:" + servers_->sha256(), ""});
  EXPECT_EQ(s.code(), ErrorCode::kIOError) << s.ToString();
  EXPECT_NE(s.message().find("HTTP 200"), std::string::npos) << s.ToString();
  std::string wrong = servers_->sha256();
  wrong[0] = wrong[0] == 'A' ? 'B' : 'A';
  s = Get(port_, {"", wrong, ""});
  EXPECT_EQ(s.code(), ErrorCode::kUnauthenticated) << s.ToString();
  EXPECT_NE(s.message().find(servers_->sha256()), std::string::npos) << s.ToString();
  EXPECT_NE(s.message().find(wrong), std::string::npos) << s.ToString();
}

TEST(ResponseHeadTest, ParsesStatusFieldsAndFraming) {
  auto h = ParseResponseHead(
      "HTTP/1.1 206 Partial Content\r\nContent-Length: 5\r\nSet-Cookie: a=1\r\n"
      "set-cookie: b=2\r\nConnection: close\r\n\r\n");
  ASSERT_TRUE(h.ok()) << h.error().ToString();
  EXPECT_EQ(h->status, 206);
  EXPECT_EQ(h->reason, "Partial Content");
  EXPECT_EQ(h->content_length, 5u);
  EXPECT_EQ(h->headers["set-cookie"], "a=1, b=2");
  EXPECT_TRUE(h->connection_close);
  EXPECT_FALSE(h->chunked);
  auto old = ParseResponseHead("HTTP/1.0 200 ok\n\n");
  ASSERT_TRUE(old.ok());
  EXPECT_TRUE(old->connection_close);  // HTTP/1.0 without keep-alive
  EXPECT_TRUE(ParseResponseHead("HTTP/1.1 206 P\r\nContent-Length: 5, 5\r\n\r\n").ok());
}

TEST(ResponseHeadTest, RefusesMalformedHeads) {
  for (const char* bad :
       {"", "\r\n", "HTTP/1.1 206\r\n", "HTTP/2 200 OK\r\n\r\n", "HTTP/1.1 99 Low\r\n\r\n",
        "HTTP/1.1 2000 x\r\n\r\n", "HTTP/1.1 206 P\r\n folded\r\n\r\n",
        "HTTP/1.1 206 P\r\nNoColon\r\n\r\n", "HTTP/1.1 206 P\r\n: empty name\r\n\r\n",
        "HTTP/1.1 206 P\r\nBad Name: x\r\n\r\n", "HTTP/1.1 206 P\r\nContent-Length: 5, 6\r\n\r\n",
        "HTTP/1.1 206 P\r\nContent-Length: -5\r\n\r\n",
        "HTTP/1.1 206 P\r\nContent-Length: 99999999999999999999\r\n\r\n",
        "HTTP/1.1 206 P\r\n\r\nbody"}) {
    auto h = ParseResponseHead(bad);
    EXPECT_FALSE(h.ok()) << bad;
    if (!h.ok()) {
      EXPECT_EQ(h.error().code(), ErrorCode::kProtocol) << bad;
    }
  }
}

TEST(ResponseHeadTest, ContentRange) {
  auto r = ParseContentRange("bytes 10-19/100");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->first, 10u);
  EXPECT_EQ(r->last, 19u);
  EXPECT_TRUE(ParseContentRange("bytes 0-0/*").ok());
  for (const char* bad :
       {"", "bytes", "bytes 5-4/9", "bytes 1-2", "items 1-2/3", "bytes -2/3", "bytes 1-2/x"})
    EXPECT_EQ(ParseContentRange(bad).error().code(), ErrorCode::kProtocol) << bad;
}

}  // namespace
}  // namespace vmbackup::http
