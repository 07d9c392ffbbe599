// The vmhost driver against a real embedded-host datastore.
#include "hv/vmhost/vmhost_driver.h"

#include <gtest/gtest.h>

#include <fstream>

#include "base/testing/temp_dir.h"
#include "hv/changed_areas.h"

namespace vmbackup::hv {
namespace {

constexpr uint64_t K = 1024, M = 1024 * K;

class VmhostDriverTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = dir_ / "ds";
    ASSERT_TRUE(host::Datastore::Init(root_).ok());
    auto ds = host::Datastore::Open(root_);
    host::NewVmOptions o;
    o.disk_sizes = {32 * M};
    o.cbt = true;
    auto vm = ds->CreateVm("vm1", o);
    ASSERT_TRUE(vm) << vm.error().ToString();
    ASSERT_TRUE((*vm)->PowerOn().ok());
    for (uint64_t i = 0; i < 20; ++i) {  // 20 separate 64 KiB areas
      std::vector<uint8_t> data(64 * K, uint8_t(i + 1));
      ASSERT_TRUE((*vm)->Write(0, i * M + 128 * K, data).ok());
      written_.Add(i * M + 128 * K, 64 * K);
    }
    vm->reset();
    // The host answers at most 3 areas per question: the backup must page.
    std::ofstream(root_ + "/vm1/vm1.vmx", std::ios::app) << "vmhost.cbtMaxAreas = \"3\"\n";
    auto d = VmhostDriver::Connect("vmhost://" + root_);
    ASSERT_TRUE(d) << d.error().ToString();
    driver_ = std::move(*d);
  }
  testing::TempDir dir_;
  std::string root_;
  ExtentSet written_;
  std::unique_ptr<VmhostDriver> driver_;
};

TEST_F(VmhostDriverTest, UriIsChecked) {
  EXPECT_EQ(VmhostDriver::Connect("vmhost://relative").error().code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(VmhostDriver::Connect("nbd://x").error().code(), ErrorCode::kInvalidArgument);
  EXPECT_FALSE(VmhostDriver::Connect("vmhost:///no/such/datastore"));
}

TEST_F(VmhostDriverTest, SnapshotPagedChangesAndSanReads) {
  auto vm = driver_->GetVm("vm1");
  ASSERT_TRUE(vm) << vm.error().ToString();
  ASSERT_EQ(vm->disks.size(), 1u);
  EXPECT_EQ(vm->disks[0].device_key, 2000);
  EXPECT_TRUE(vm->disks[0].cbt_enabled);
  EXPECT_EQ(vm->power, PowerState::kOn);
  EXPECT_EQ(driver_->GetVm("nobody").error().code(), ErrorCode::kNotFound);

  auto snap = driver_->CreateSnapshot(*vm, "vmbackup-test", {});
  ASSERT_TRUE(snap) << snap.error().ToString();
  int calls = 0;
  auto allocated = CollectChangedAreas(*driver_, *vm, &*snap, 2000, 32 * M, "*", &calls);
  ASSERT_TRUE(allocated) << allocated.error().ToString();
  EXPECT_EQ(allocated->Intersect(written_), written_);  // every written area is reported
  EXPECT_GE(calls, 7);                                  // 20 areas, at most 3 per answer

  auto change_id = driver_->ChangeId(*vm, &*snap, 2000);
  ASSERT_TRUE(change_id);
  auto none = CollectChangedAreas(*driver_, *vm, &*snap, 2000, 32 * M, *change_id);
  ASSERT_TRUE(none);
  EXPECT_TRUE(none->empty());
  EXPECT_EQ(driver_
                ->QueryChangedDiskAreas(*vm, &*snap, 2000, 0,
                                        "52 00 00 00 00 00 00 00-00 "
                                        "00 00 00 00 00 00 00/1")
                .error()
                .code(),
            ErrorCode::kNotFound);

  const TransportMode only_nbd[] = {TransportMode::kHotAdd, TransportMode::kNbd};
  std::vector<std::string> attempts;
  auto no = driver_->OpenDisk(*vm, &*snap, 2000, only_nbd, OpenMode::kRead, &attempts);
  ASSERT_FALSE(no);
  EXPECT_EQ(no.error().code(), ErrorCode::kUnavailable);
  ASSERT_EQ(attempts.size(), 2u);
  EXPECT_EQ(attempts[0].rfind("hotadd: ", 0), 0u);

  const TransportMode order[] = {TransportMode::kHotAdd, TransportMode::kSan};
  auto disk = driver_->OpenDisk(*vm, &*snap, 2000, order, OpenMode::kRead, &attempts);
  ASSERT_TRUE(disk) << disk.error().ToString();
  EXPECT_EQ((*disk)->transport(), TransportMode::kSan);
  EXPECT_EQ(attempts.size(), 1u);  // hotadd was tried first
  std::vector<uint8_t> buf(64 * K);
  ASSERT_TRUE((*disk)->ReadAt(7 * M + 128 * K, buf).ok());
  EXPECT_EQ(buf, std::vector<uint8_t>(64 * K, 8));
  disk->reset();

  auto snaps = driver_->ListSnapshots(*vm);
  ASSERT_EQ(snaps->size(), 1u);
  EXPECT_EQ((*snaps)[0].name, "vmbackup-test");
  ASSERT_TRUE(driver_->RemoveSnapshot(*vm, *snap).ok());
  EXPECT_TRUE(driver_->ListSnapshots(*vm)->empty());
}

}  // namespace
}  // namespace vmbackup::hv
