// Where an S3 repository is and who may use it: the URL restic's users know,
// "s3:http[s]://HOST[:PORT]/BUCKET[/PREFIX][?region=R]", and the credentials, which come from
// the environment or ~/.aws/credentials and never from a command line.
#pragma once

#include <string>

#include "base/result.h"
#include "s3/sigv4.h"

namespace vmbackup::s3 {

// "s3:http[s]://HOST[:PORT]/BUCKET[/PREFIX][?region=R][&timeout=S]", as restic writes it (the
// options are ours).
struct Location {
  std::string url;       // as given, for messages
  std::string endpoint;  // "http://127.0.0.1:8000"
  std::string host;      // "127.0.0.1:8000"
  std::string bucket;
  std::string prefix;  // "" or "a/b/" (always ending in '/')
  std::string region;  // from ?region=, else AWS_DEFAULT_REGION, else us-east-1
  // ?timeout=: connecting, and any stall of a request, longer than this fails it (retried)
  double timeout_seconds = 60;
};
bool IsS3Url(const std::string& text);
Result<Location> ParseS3Url(const std::string& text);

// AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (/ AWS_SESSION_TOKEN), else the profile AWS_PROFILE
// (default "default") of ~/.aws/credentials (AWS_SHARED_CREDENTIALS_FILE). Never a command line.
Result<Credentials> CredentialsFromEnvironment();

}  // namespace vmbackup::s3
