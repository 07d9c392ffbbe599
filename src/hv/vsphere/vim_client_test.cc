// The vSphere API client against VMware's own simulator, vcsim (tests/vcsim), built from
// Debian's govmomi sources: the session, properties, inventory search, tasks and faults.
#include "hv/vsphere/vim_client.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "base/testing/temp_dir.h"

namespace vmbackup::hv::vsphere {
namespace {

using testing::Shell;

class VcsimTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new testing::TempDir();
    const char* bin = std::getenv("VMBACKUP_VCSIM");
    vcsim_ = bin ? bin : Shell(std::string(VMBACKUP_SOURCE_DIR) + "/tests/vcsim/build.sh");
    ASSERT_EQ(::access(vcsim_.c_str(), X_OK), 0) << "no vcsim: " << vcsim_;
    testing::WriteText(*dir_ / "password", "s3cret pass\n");
    const std::string info = *dir_ / "info.json";
    pid_ = ::fork();
    if (pid_ == 0) {
      ::setenv("TMPDIR", dir_->path().c_str(), 1);
      ::execl(vcsim_.c_str(), "vcsim", "-info", info.c_str(), "-user", "backup", "-password-file",
              (*dir_ / "password").c_str(), nullptr);
      ::_exit(127);
    }
    for (int i = 0; i < 300 && ::access(info.c_str(), R_OK) != 0; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    std::ifstream in(info);
    auto j = nlohmann::json::parse(in, nullptr, false);
    ASSERT_TRUE(j.is_object()) << "vcsim did not start";
    std::string url = j["url"].get<std::string>();
    base_ = url.substr(0, url.find("/sdk"));
    const std::string hostport = base_.substr(8);
    auto t = http::FetchThumbprints(hostport.substr(0, hostport.find(':')),
                                    std::stoi(hostport.substr(hostport.find(':') + 1)));
    ASSERT_TRUE(t.ok()) << t.error().ToString();
    thumbprint_ = t->sha256;
  }
  static void TearDownTestSuite() {
    ::kill(pid_, SIGTERM);
    ::waitpid(pid_, nullptr, 0);
    delete dir_;
  }
  static VimClient::Options Opts(std::string password = "s3cret pass") {
    VimClient::Options o;
    o.url = base_;
    o.user = "backup";
    o.password = std::move(password);
    o.tls.thumbprint = thumbprint_;
    o.keepalive_seconds = 0;
    return o;
  }

  static testing::TempDir* dir_;
  static std::string vcsim_, base_, thumbprint_;
  static pid_t pid_;
};
testing::TempDir* VcsimTest::dir_ = nullptr;
std::string VcsimTest::vcsim_, VcsimTest::base_, VcsimTest::thumbprint_;
pid_t VcsimTest::pid_ = 0;

TEST_F(VcsimTest, LogsInAndListsTheVms) {
  auto c = VimClient::Connect(Opts());
  ASSERT_TRUE(c.ok()) << c.error().ToString();
  EXPECT_NE((*c)->about().find("vCenter"), std::string::npos) << (*c)->about();
  auto vms = (*c)->RetrieveAll("VirtualMachine", {"name", "runtime.powerState"});
  ASSERT_TRUE(vms.ok()) << vms.error().ToString();
  std::set<std::string> names;
  for (const auto& o : vms->objects) {
    names.insert(o.Get("name").text());
    EXPECT_EQ(o.obj.type, "VirtualMachine");
    EXPECT_EQ(o.Get("runtime.powerState").text(), "poweredOff");
  }
  EXPECT_TRUE(names.count("DC0_H0_VM0") && names.count("DC0_H0_VM1")) << names.size();
}

TEST_F(VcsimTest, AWrongPasswordIsInvalidLogin) {
  auto c = VimClient::Connect(Opts("Hunter2-guess"));
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.error().code(), ErrorCode::kUnauthenticated);
  EXPECT_NE(c.error().message().find("InvalidLogin"), std::string::npos) << c.error().ToString();
  EXPECT_EQ(c.error().message().find("Hunter2"), std::string::npos) << "the password leaked";
}

TEST_F(VcsimTest, AWrongThumbprintIsRefusedBeforeTheLogin) {
  auto o = Opts();
  o.tls.thumbprint = std::string(95, '0');
  for (size_t i = 2; i < o.tls.thumbprint.size(); i += 3) o.tls.thumbprint[i] = ':';
  auto c = VimClient::Connect(o);
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.error().code(), ErrorCode::kUnauthenticated);
  EXPECT_NE(c.error().message().find(thumbprint_), std::string::npos) << c.error().ToString();
}

TEST_F(VcsimTest, FindsByInventoryPathAndSaysWhenNothingIsThere) {
  auto c = VimClient::Connect(Opts());
  ASSERT_TRUE(c.ok());
  auto vm = (*c)->FindByInventoryPath("DC0/vm/DC0_H0_VM0");
  ASSERT_TRUE(vm.ok()) << vm.error().ToString();
  EXPECT_EQ(vm->type, "VirtualMachine");
  auto none = (*c)->FindByInventoryPath("DC0/vm/no-such-vm");
  ASSERT_FALSE(none.ok());
  EXPECT_EQ(none.error().code(), ErrorCode::kNotFound);
}

TEST_F(VcsimTest, SnapshotTasksSucceedAndARemovedSnapshotIsNotFound) {
  auto c = VimClient::Connect(Opts());
  ASSERT_TRUE(c.ok());
  auto vm = (*c)->FindByInventoryPath("DC0/vm/DC0_H0_VM1");
  ASSERT_TRUE(vm.ok());
  auto task = (*c)->Invoke("CreateSnapshot_Task", *vm,
                           "<name>t1</name><memory>false</memory><quiesce>false</quiesce>");
  ASSERT_TRUE(task.ok()) << task.error().ToString();
  auto done = (*c)->WaitForTask(MoRef::From(VimClient::ReturnVal(**task)), "snapshot t1");
  ASSERT_TRUE(done.ok()) << done.error().ToString();
  MoRef snap = MoRef::From(done->result);
  EXPECT_EQ(snap.type, "VirtualMachineSnapshot");
  ASSERT_FALSE(snap.empty());
  for (int round = 0; round < 2; ++round) {
    auto rm = (*c)->Invoke("RemoveSnapshot_Task", snap,
                           "<removeChildren>false</removeChildren><consolidate>true</consolidate>");
    if (round == 0) {
      ASSERT_TRUE(rm.ok()) << rm.error().ToString();
      auto w = (*c)->WaitForTask(MoRef::From(VimClient::ReturnVal(**rm)), "remove t1");
      ASSERT_TRUE(w.ok()) << w.error().ToString();
    } else {
      ASSERT_FALSE(rm.ok());
      EXPECT_EQ(rm.error().code(), ErrorCode::kNotFound) << rm.error().ToString();
      EXPECT_EQ((*c)->last_fault(), "ManagedObjectNotFound");
    }
  }
}

TEST_F(VcsimTest, FaultsBecomeErrorsNamingTheirType) {
  auto c = VimClient::Connect(Opts());
  ASSERT_TRUE(c.ok());
  auto vm = (*c)->FindByInventoryPath("DC0/vm/DC0_H0_VM0");
  ASSERT_TRUE(vm.ok());
  // vcsim has no change tracking: the method is missing.
  auto q =
      (*c)->Invoke("QueryChangedDiskAreas", *vm,
                   "<deviceKey>2000</deviceKey><startOffset>0</startOffset><changeId>*</changeId>");
  ASSERT_FALSE(q.ok());
  EXPECT_EQ(q.error().code(), ErrorCode::kNotSupported) << q.error().ToString();
  EXPECT_NE(q.error().message().find("MethodNotFound"), std::string::npos);
  // Powering off a VM that is off.
  auto off = (*c)->Invoke("PowerOffVM_Task", *vm);
  ASSERT_TRUE(off.ok());
  auto w = (*c)->WaitForTask(MoRef::From(VimClient::ReturnVal(**off)), "power off");
  ASSERT_FALSE(w.ok());
  EXPECT_EQ(w.error().code(), ErrorCode::kFailedPrecondition) << w.error().ToString();
  EXPECT_NE(w.error().message().find("InvalidPowerState"), std::string::npos);
}

TEST_F(VcsimTest, ADroppedSessionIsLoggedInAgain) {
  auto a = VimClient::Connect(Opts());
  auto b = VimClient::Connect(Opts());
  ASSERT_TRUE(a.ok() && b.ok());
  auto key = (*a)->SessionKey();
  ASSERT_TRUE(key.ok()) << key.error().ToString();
  auto t = (*b)->Invoke("TerminateSession", (*b)->session_manager(),
                        "<sessionId>" + *key + "</sessionId>");
  ASSERT_TRUE(t.ok()) << t.error().ToString();
  EXPECT_EQ((*a)->logins(), 1);
  auto vm = (*a)->FindByInventoryPath("DC0/vm/DC0_H0_VM0");
  ASSERT_TRUE(vm.ok()) << vm.error().ToString();
  EXPECT_EQ((*a)->logins(), 2);
}

TEST_F(VcsimTest, TheKeepaliveRunsBesideTheJobsCalls) {
  auto o = Opts();
  o.keepalive_seconds = 0.05;
  auto c = VimClient::Connect(o);
  ASSERT_TRUE(c.ok());
  // Calls of the job while the keepalive calls too: one connection, no second login.
  for (int i = 0; i < 20; ++i) {
    auto vm = (*c)->FindByInventoryPath("DC0/vm/DC0_H0_VM0");
    ASSERT_TRUE(vm.ok()) << vm.error().ToString();
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ((*c)->logins(), 1);
  EXPECT_EQ((*c)->last_fault(), "");
}

}  // namespace
}  // namespace vmbackup::hv::vsphere
