#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <thread>

#include "hv/changed_areas.h"
#include "hv/job_lock.h"

namespace vmbackup::hv {
namespace {

constexpr uint64_t K = 1024;

TEST(TransportList, ParsesAndRefuses) {
  auto all = ParseTransportList("san:hotadd:nbdssl:nbd");
  ASSERT_TRUE(all);
  EXPECT_EQ(all->size(), 4u);
  EXPECT_EQ((*ParseTransportList("nbd:san"))[0], TransportMode::kNbd);
  EXPECT_NE(ParseTransportList("san:floppy").error().message().find("unknown transport 'floppy'"),
            std::string::npos);
  EXPECT_NE(ParseTransportList("nbd:nbd").error().message().find("twice"), std::string::npos);
  EXPECT_FALSE(ParseTransportList(""));
  EXPECT_FALSE(ParseTransportList("san:"));
}

ExtentSet Set(std::initializer_list<Extent> es) {
  ExtentSet s;
  for (const auto& e : es) s.Add(e);
  return s;
}

TEST(Plan, ChangedButUnallocatedIsZerosUnlessTheChunkStillHoldsData) {
  const uint64_t chunk = 64 * K, cap = 1024 * K;
  // Chunk 0: 4K changed and now unallocated (trimmed), the rest of it allocated: read whole.
  // Chunk 2: changed, nothing allocated: zeros. Chunk 5: changed and allocated: read.
  // Chunk 8: allocated but unchanged: untouched.
  ExtentSet changed = Set({{0, 4 * K}, {128 * K, 64 * K}, {5 * 64 * K + 100, 10}});
  ExtentSet allocated = Set({{4 * K, 60 * K}, {5 * 64 * K, 64 * K}, {8 * 64 * K, 64 * K}});
  DiskPlan p = PlanIncremental(changed, allocated, chunk, cap);
  EXPECT_EQ(p.read, Set({{0, 64 * K}, {5 * 64 * K, 64 * K}}));
  EXPECT_EQ(p.zeros, Set({{128 * K, 64 * K}}));
  DiskPlan full = PlanFull(allocated, chunk, cap);
  EXPECT_EQ(full.read, Set({{0, 64 * K}, {5 * 64 * K, 64 * K}, {8 * 64 * K, 64 * K}}));
  EXPECT_TRUE(full.zeros.empty());
  // The last chunk is cut at the capacity.
  DiskPlan tail = PlanIncremental(Set({{cap - 10, 10}}), Set({{cap - 10, 10}}), chunk, cap - 5);
  EXPECT_EQ(tail.read, Set({{cap - 64 * K, 64 * K - 5}}));
}

// A host that answers changed-area questions badly, one way per test: the edge where a fake
// stands in for a broken peer.
class HostileHost : public Hypervisor {
 public:
  int mode = 0, calls = 0;
  std::string uri() const override { return "hostile://"; }
  Result<std::vector<std::string>> ListVms() override { return std::vector<std::string>{}; }
  Result<VmInfo> GetVm(std::string_view) override { return VmInfo{}; }
  Status EnableChangeTracking(const VmInfo&) override { return Status::Ok(); }
  Status ResetChangeTracking(const VmInfo&) override { return Status::Ok(); }
  Status SetPowerOnBlock(const VmInfo&, const std::string&) override { return Status::Ok(); }
  Status DestroyVm(const VmInfo&) override { return Status::Ok(); }
  Result<std::vector<SnapshotRef>> ListSnapshots(const VmInfo&) override {
    return std::vector<SnapshotRef>{};
  }
  Result<SnapshotRef> CreateSnapshot(const VmInfo&, std::string_view,
                                     const SnapshotOptions&) override {
    return SnapshotRef{};
  }
  Status RemoveSnapshot(const VmInfo&, const SnapshotRef&) override { return Status::Ok(); }
  Status RevertToSnapshot(const VmInfo&, const SnapshotRef&) override { return Status::Ok(); }
  Result<std::string> ChangeId(const VmInfo&, const SnapshotRef*, int) override {
    return std::string("x");
  }
  Result<ChangedAreas> QueryChangedDiskAreas(const VmInfo&, const SnapshotRef*, int, uint64_t start,
                                             std::string_view) override {
    ++calls;
    switch (mode) {
      case 0: return ChangedAreas{start, 100, {{start + 10, 5}}};   // honest, small pages
      case 1: return ChangedAreas{start, 0, {}};                    // no progress
      case 2: return ChangedAreas{start + 1, 100, {}};              // wrong start
      case 3: return ChangedAreas{start, 100, {{start + 90, 20}}};  // area past its page
      default: return NotFoundError("change id unknown");
    }
  }
  Result<std::unique_ptr<DiskAccess>> OpenDisk(const VmInfo&, const SnapshotRef*, int,
                                               std::span<const TransportMode>, OpenMode,
                                               std::vector<std::string>*) override {
    return UnavailableError("no");
  }
  Result<VmInfo> CreateVm(std::string_view, const std::string&, const std::vector<uint64_t>&,
                          const std::string&) override {
    return VmInfo{};
  }
};

TEST(CollectChangedAreas, PagesUntilCoveredAndRefusesABrokenHost) {
  HostileHost h;
  VmInfo vm;
  int calls = 0;
  auto ok = CollectChangedAreas(h, vm, nullptr, 2000, 1000, "x", &calls);
  ASSERT_TRUE(ok) << ok.error().ToString();
  EXPECT_EQ(calls, 10);
  EXPECT_EQ(ok->total_bytes(), 50u);
  for (int mode : {1, 2, 3}) {
    h.mode = mode;
    h.calls = 0;
    auto bad = CollectChangedAreas(h, vm, nullptr, 2000, 1000, "x");
    ASSERT_FALSE(bad) << "mode " << mode;
    EXPECT_EQ(bad.error().code(), ErrorCode::kProtocol) << bad.error().message();
    EXPECT_EQ(h.calls, 1);  // no loop
  }
  h.mode = 4;
  EXPECT_EQ(CollectChangedAreas(h, vm, nullptr, 2000, 1000, "x").error().code(),
            ErrorCode::kNotFound);
}

}  // namespace
}  // namespace vmbackup::hv

namespace vmbackup::hv {
namespace {

TEST(JobLock, OneJobPerVmAndTheSecondNamesTheFirst) {
  char tmpl[] = "/tmp/vmbackup-joblock-XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  ::setenv("VMBACKUP_LOCK_DIR", tmpl, 1);
  auto first = JobLock::Acquire("vmhost:///ds", "web", "backup", 0);
  ASSERT_TRUE(first) << first.error().ToString();
  auto second = JobLock::Acquire("vmhost:///ds", "web", "in-place restore", 0);
  ASSERT_FALSE(second);
  EXPECT_EQ(second.error().code(), ErrorCode::kLocked);
  EXPECT_NE(second.error().message().find("a backup job (pid " + std::to_string(::getpid())),
            std::string::npos)
      << second.error().message();
  // Another VM, or the same name on another host, is not held.
  EXPECT_TRUE(JobLock::Acquire("vmhost:///ds", "db", "backup", 0));
  EXPECT_TRUE(JobLock::Acquire("vmhost:///other", "web", "backup", 0));
  // A waiter gets the VM when the holder lets go.
  std::thread release([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    first->reset();
  });
  auto waited = JobLock::Acquire("vmhost:///ds", "web", "backup", 10);
  release.join();
  EXPECT_TRUE(waited) << waited.error().ToString();
  std::system((std::string("rm -rf ") + tmpl).c_str());
  ::unsetenv("VMBACKUP_LOCK_DIR");
}

}  // namespace
}  // namespace vmbackup::hv
