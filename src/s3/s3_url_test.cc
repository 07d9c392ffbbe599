// Repository URLs and credentials as users write them (restic's forms), and bad ones refused.
#include "s3/s3_url.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <fstream>

#include "base/testing/temp_dir.h"

namespace vmbackup::s3 {
namespace {

TEST(S3Url, Forms) {
  ::unsetenv("AWS_DEFAULT_REGION");
  ::unsetenv("AWS_REGION");
  auto l = ParseS3Url("s3:http://127.0.0.1:7480/backups/site-a/vms/");
  ASSERT_TRUE(l) << l.error().ToString();
  EXPECT_EQ(l->endpoint, "http://127.0.0.1:7480");
  EXPECT_EQ(l->host, "127.0.0.1:7480");
  EXPECT_EQ(l->bucket, "backups");
  EXPECT_EQ(l->prefix, "site-a/vms/");
  EXPECT_EQ(l->region, "us-east-1");
  l = ParseS3Url("s3:https://s3.example.com/bucket1?region=eu-west-1");
  ASSERT_TRUE(l);
  EXPECT_EQ(l->prefix, "");
  EXPECT_EQ(l->region, "eu-west-1");
  EXPECT_EQ(l->timeout_seconds, 60);
  l = ParseS3Url("s3:https://s3.example.com/bucket1?timeout=5&region=eu-west-1");
  ASSERT_TRUE(l);
  EXPECT_EQ(l->timeout_seconds, 5);
  EXPECT_EQ(l->region, "eu-west-1");
  ::setenv("AWS_DEFAULT_REGION", "ap-south-1", 1);
  EXPECT_EQ(ParseS3Url("s3:https://h/bucket1")->region, "ap-south-1");
  ::unsetenv("AWS_DEFAULT_REGION");
  EXPECT_TRUE(IsS3Url("s3:https://h/b"));
  EXPECT_FALSE(IsS3Url("/srv/repo"));
}

TEST(S3Url, BadOnesAreRefusedNamingTheProblem) {
  for (const char* bad :
       {"s3:ftp://h/bucket", "s3:https:///bucket", "s3:https://h/", "s3:https://h/ab",
        "s3:https://h/Upper", "s3:https://h/b_c", "s3:https://h/bucket/../x",
        "s3:https://h/bucket?acl=1", "s3:https://h/bucket?timeout=0",
        "s3:https://h/bucket?timeout=x", "/srv/repo"}) {
    auto l = ParseS3Url(bad);
    EXPECT_FALSE(l) << bad;
    if (!l) {
      EXPECT_EQ(l.error().code(), ErrorCode::kInvalidArgument) << bad;
    }
  }
}

TEST(S3Credentials, EnvironmentThenProfileFile) {
  testing::TempDir dir;
  const std::string file = dir / "credentials";
  std::ofstream(file) << "[default]\naws_access_key_id = AK1\naws_secret_access_key = SK1\n"
                         "\n[backup]\n aws_access_key_id=AK2 \naws_secret_access_key=S/K+2\n";
  ::setenv("AWS_SHARED_CREDENTIALS_FILE", file.c_str(), 1);
  ::unsetenv("AWS_ACCESS_KEY_ID");
  ::unsetenv("AWS_SECRET_ACCESS_KEY");
  ::unsetenv("AWS_PROFILE");
  EXPECT_EQ(CredentialsFromEnvironment()->access_key, "AK1");
  ::setenv("AWS_PROFILE", "backup", 1);
  auto c = CredentialsFromEnvironment();
  ASSERT_TRUE(c);
  EXPECT_EQ(c->access_key, "AK2");
  EXPECT_EQ(c->secret_key, "S/K+2");
  ::setenv("AWS_ACCESS_KEY_ID", "ENV", 1);
  ::setenv("AWS_SECRET_ACCESS_KEY", "ENVSECRET", 1);
  EXPECT_EQ(CredentialsFromEnvironment()->access_key, "ENV");  // the environment first
  ::unsetenv("AWS_ACCESS_KEY_ID");
  ::unsetenv("AWS_SECRET_ACCESS_KEY");
  ::setenv("AWS_PROFILE", "nobody", 1);
  auto none = CredentialsFromEnvironment();
  ASSERT_FALSE(none);
  EXPECT_NE(none.error().message().find("profile 'nobody'"), std::string::npos);
  ::unsetenv("AWS_PROFILE");
  ::unsetenv("AWS_SHARED_CREDENTIALS_FILE");
}

}  // namespace
}  // namespace vmbackup::s3
