#include "base/subprocess.h"

#include <gtest/gtest.h>

namespace vmbackup {
namespace {

TEST(SubprocessTest, ReadsBothStreamsAndTheExitCode) {
  auto r = RunCommand({"sh", "-c", "echo out; echo err >&2; exit 3"});
  ASSERT_TRUE(r.ok()) << r.error().ToString();
  EXPECT_EQ(r->exit_code, 3);
  EXPECT_EQ(r->out, "out\n");
  EXPECT_EQ(r->err, "err\n");
}

TEST(SubprocessTest, ArgumentsAreNotInterpretedByAShell) {
  auto r = RunCommandOk({"printf", "%s", "$(echo no) ; *"});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(*r, "$(echo no) ; *");
}

TEST(SubprocessTest, FailureNamesTheProgramAndItsLastError) {
  auto r = RunCommandOk({"sh", "-c", "echo first >&2; echo 'the reason' >&2; exit 2"});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code(), ErrorCode::kIOError);
  EXPECT_NE(r.error().message().find("sh exited with 2: the reason"), std::string::npos)
      << r.error().message();
  auto missing = RunCommand({"/nonexistent/program"});
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().code(), ErrorCode::kUnavailable);
}

TEST(SubprocessTest, ATimeLimitKillsTheProgram) {
  auto r = RunCommand({"sleep", "30"}, 1);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message().find("did not finish within 1 s"), std::string::npos);
}

}  // namespace
}  // namespace vmbackup
