// The signer against the examples of AWS's S3 SigV4 documentation ("Signature calculations for
// the Authorization header": GET object, PUT object, GET bucket lifecycle, list objects), which
// fix every part of the canonical request; and the encoding rules radosgw is strict about.
#include "s3/sigv4.h"

#include <gtest/gtest.h>

namespace vmbackup::s3 {
namespace {

const Credentials kKeys{"AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", ""};
constexpr const char* kEmpty = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
constexpr const char* kHost = "examplebucket.s3.amazonaws.com";
constexpr const char* kWhen = "20130524T000000Z";

TEST(SigV4, GetObjectWithRange) {
  SignedRequest r{"GET", kHost, "/test.txt", {}, {{"Range", "bytes=0-9"}}, kEmpty};
  Signature s = Sign(r, kKeys, "us-east-1", kWhen);
  EXPECT_EQ(s.canonical_request,
            std::string("GET\n/test.txt\n\nhost:examplebucket.s3.amazonaws.com\nrange:bytes=0-9\n"
                        "x-amz-content-sha256:") +
                kEmpty +
                "\nx-amz-date:20130524T000000Z\n\nhost;range;x-amz-content-sha256;x-amz-date\n" +
                kEmpty);
  EXPECT_EQ(s.signature, "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41");
  EXPECT_EQ(s.authorization,
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, "
            "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, "
            "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41");
  EXPECT_EQ(s.headers.at("x-amz-content-sha256"), kEmpty);
}

TEST(SigV4, PutObjectSignsThePayloadHash) {
  const std::string body = "Welcome to Amazon S3.";
  SignedRequest r{
      "PUT",
      kHost,
      "/test$file.text",
      {},
      {{"Date", "Fri, 24 May 2013 00:00:00 GMT"}, {"x-amz-storage-class", "REDUCED_REDUNDANCY"}},
      Sha256Hex(body)};
  EXPECT_EQ(r.payload_sha256, "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072");
  Signature s = Sign(r, kKeys, "us-east-1", kWhen);
  EXPECT_NE(s.canonical_request.find("\n/test%24file.text\n"), std::string::npos);
  EXPECT_EQ(s.signature, "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd");
  // Another body: another signature (what lets the server refuse a damaged upload).
  r.payload_sha256 = Sha256Hex("Welcome to Amazon S3!");
  EXPECT_NE(Sign(r, kKeys, "us-east-1", kWhen).signature, s.signature);
}

TEST(SigV4, QueryIsSortedAndAlwaysNameEqualsValue) {
  SignedRequest lifecycle{"GET", kHost, "/", {{"lifecycle", ""}}, {}, kEmpty};
  Signature s = Sign(lifecycle, kKeys, "us-east-1", kWhen);
  EXPECT_EQ(s.query_string, "lifecycle=");
  EXPECT_EQ(s.signature, "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543");
  SignedRequest list{"GET", kHost, "/", {{"prefix", "J"}, {"max-keys", "2"}}, {}, kEmpty};
  s = Sign(list, kKeys, "us-east-1", kWhen);
  EXPECT_EQ(s.query_string, "max-keys=2&prefix=J");
  EXPECT_EQ(s.signature, "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7");
}

TEST(SigV4, EncodingAsAwsWantsIt) {
  SignedRequest k{"GET", "h", "/b/a b+c(d)~e_f.g-h/\xc3\xa9", {}, {}, kEmpty};
  EXPECT_NE(Sign(k, kKeys, "us-east-1", kWhen)
                .canonical_request.find("\n/b/a%20b%2Bc%28d%29~e_f.g-h/%C3%A9\n"),
            std::string::npos);  // UTF-8 bytes, upper-case hex, '/' kept in the path
  SignedRequest r{"GET", "h",   "/b", {{"prefix", "a/b c"}, {"continuation-token", "1+2"}},
                  {},    kEmpty};
  EXPECT_EQ(Sign(r, kKeys, "us-east-1", kWhen).query_string,
            "continuation-token=1%2B2&prefix=a%2Fb%20c");
  // Header names are signed lower-case, values trimmed with inner runs of spaces made one.
  SignedRequest h{"GET", "h", "/b", {}, {{"X-Amz-Meta-A", "  one   two  "}}, kEmpty};
  Signature s = Sign(h, kKeys, "us-east-1", kWhen);
  EXPECT_EQ(s.headers.at("x-amz-meta-a"), "one two");
  EXPECT_NE(s.canonical_request.find("x-amz-meta-a:one two\n"), std::string::npos);
  // A session token is sent and signed.
  Credentials temp = kKeys;
  temp.session_token = "token";
  EXPECT_NE(Sign(h, temp, "us-east-1", kWhen).authorization.find("x-amz-security-token"),
            std::string::npos);
}

}  // namespace
}  // namespace vmbackup::s3
