// Unit tests of the host's file formats: .vmx/.vmsd syntax, the snapshot tree, change ids and
// the ctk file, and of an export following the VM between requests. The VM operations are
// tested end to end against qemu-img (tests/e2e/vmhost_*).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/testing/temp_dir.h"
#include "host/change_tracking.h"
#include "host/config_file.h"
#include "host/datastore.h"
#include "host/lock_generation.h"
#include "host/shared_disk.h"
#include "host/vmsd.h"
#include "host/vmx.h"

namespace vmbackup::host {
namespace {

TEST(ConfigFile, RoundTripWithEscapesAndUnknownKeys) {
  auto cf = ConfigFile::Parse(
      "#!/usr/bin/vmware\n.encoding = \"UTF-8\"\ndisplayName = \"a |22quoted|22 |7C name\"\n"
      "Some.Unknown = \"kept\"\nmemSize=\"1024\"\n\n# comment\n");
  ASSERT_TRUE(cf) << cf.error().ToString();
  EXPECT_EQ(cf->Get("displayname"), "a \"quoted\" | name");
  EXPECT_EQ(cf->GetOr("some.unknown", ""), "kept");
  cf->Set("MEMSIZE", "2048");
  auto again = ConfigFile::Parse(cf->Serialize());
  ASSERT_TRUE(again);
  EXPECT_EQ(again->entries(), cf->entries());
  EXPECT_EQ(again->Get("memSize"), "2048");
  EXPECT_EQ(again->entries().size(), 4u);  // the key kept its place and case
  cf->RemovePrefix("some.");
  EXPECT_FALSE(cf->Get("Some.Unknown"));
}

TEST(ConfigFile, ErrorsNameTheLine) {
  auto r = ConfigFile::Parse("a = \"1\"\nnot a pair\n");
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("line 2: expected key = \"value\""), std::string::npos);
  r = ConfigFile::Parse("a = \"open\n");
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("no closing quote"), std::string::npos);
  r = ConfigFile::Parse("a = \"\xff\"\n");
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("not valid UTF-8"), std::string::npos);
}

TEST(Vmx, NewVmDisksAndKeys) {
  Vmx v = Vmx::New("web", 9, true);
  auto disks = v.Disks();
  ASSERT_TRUE(disks);
  ASSERT_EQ(disks->size(), 9u);
  EXPECT_EQ((*disks)[0].file_name, "web.vmdk");
  EXPECT_EQ((*disks)[1].file_name, "web_1.vmdk");
  EXPECT_EQ((*disks)[0].device_key, 2000);
  EXPECT_EQ((*disks)[7].node, "scsi0:8");  // unit 7 is the controller
  EXPECT_TRUE(v.cbt_enabled());
  EXPECT_FALSE(v.powered_on());
  auto parsed = Vmx::Parse(v.Serialize());
  ASSERT_TRUE(parsed);
  EXPECT_TRUE(parsed->config().GetBool("scsi0:8.ctkEnabled"));
  auto bad = Vmx::Parse("scsi0:0.present = \"TRUE\"\nscsi0:0.fileName = \"../../etc/passwd\"\n");
  ASSERT_TRUE(bad);
  EXPECT_EQ(bad->Disks().error().code(), ErrorCode::kCorruption);
}

TEST(SnapshotDb, RoundTripTreeAndLookup) {
  SnapshotDb db;
  db.last_uid = 3;
  db.current = 3;
  db.snapshots.push_back({1,
                          std::nullopt,
                          "base",
                          "",
                          1700000000123456,
                          Consistency::kCrash,
                          false,
                          {{"scsi0:0", "vm.vmdk"}}});
  db.snapshots.push_back({2,
                          1,
                          "a",
                          "d",
                          1700000001000000,
                          Consistency::kFileSystem,
                          true,
                          {{"scsi0:0", "vm-000001.vmdk"}}});
  db.snapshots.push_back(
      {3, 1, "a", "", -5, Consistency::kCrash, false, {{"scsi0:0", "vm-000002.vmdk"}}});
  auto back = SnapshotDb::Parse(db.Serialize());
  ASSERT_TRUE(back) << back.error().ToString();
  ASSERT_EQ(back->snapshots.size(), 3u);
  EXPECT_EQ(back->snapshots[1].create_time_us, 1700000001000000);
  EXPECT_EQ(back->snapshots[0].create_time_us, 1700000000123456);
  EXPECT_EQ(back->snapshots[1].consistency, Consistency::kFileSystem);
  EXPECT_EQ(back->snapshots[1].disks[0].file_name, "vm-000001.vmdk");
  EXPECT_EQ(back->current, 3u);
  EXPECT_EQ(back->Children(1), (std::vector<uint32_t>{2, 3}));
  EXPECT_EQ(back->PathTo(3), (std::vector<uint32_t>{1, 3}));
  EXPECT_EQ(back->Lookup("a").error().code(), ErrorCode::kInvalidArgument);  // ambiguous
  EXPECT_EQ((*back->Lookup("2"))->uid, 2u);
  EXPECT_EQ((*back->Lookup("base"))->uid, 1u);
  EXPECT_EQ(back->Lookup("zzz").error().code(), ErrorCode::kNotFound);
}

// Fuzzer findings: an 11-digit snapshot slot overflowed a conversion (an uncaught exception);
// an escaped byte that is not UTF-8 parsed but did not survive a write and re-parse.
TEST(SnapshotDb, HostileSlotsAndEscapesAreErrors) {
  auto huge = SnapshotDb::Parse("snapshot11111111111.uid = \"2\"\n");
  ASSERT_FALSE(huge);
  EXPECT_EQ(huge.error().code(), ErrorCode::kCorruption);
  EXPECT_FALSE(SnapshotDb::Parse("snapshot01.uid = \"2\"\n"));
  auto bad = ConfigFile::Parse("a = \"x|D0y\"\n");
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message().find("UTF-8"), std::string::npos);
  EXPECT_TRUE(ConfigFile::Parse("a = \"caf|C3|A9\"\n"));  // an escaped valid sequence is fine
}

TEST(SnapshotDb, RejectsBrokenTrees) {
  const char* cycle =
      "snapshot0.uid = \"1\"\nsnapshot0.parent = \"2\"\nsnapshot0.numDisks = \"0\"\n"
      "snapshot1.uid = \"2\"\nsnapshot1.parent = \"1\"\nsnapshot1.numDisks = \"0\"\n";
  auto r = SnapshotDb::Parse(cycle);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("cycle"), std::string::npos);
  r = SnapshotDb::Parse("snapshot0.uid = \"1\"\nsnapshot0.numDisks = \"1\"\n");
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("snapshot0.disk0.fileName"), std::string::npos);
  r = SnapshotDb::Parse("snapshot.current = \"4\"\n");
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("missing snapshot 4"), std::string::npos);
  r = SnapshotDb::Parse("snapshot0.uid = \"1\"\nsnapshot0.numDisks = \"99999\"\n");
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("absurd"), std::string::npos);
}

TEST(ChangeId, FormatAndParse) {
  ChangeId id;
  id.epoch = ChangeId::NewEpoch();
  id.seq = 42;
  std::string s = id.ToString();
  EXPECT_EQ(s.size(), 50u);
  EXPECT_EQ(s.substr(0, 3), "52 ");
  EXPECT_EQ(s[23], '-');
  auto back = ChangeId::Parse(s);
  ASSERT_TRUE(back);
  EXPECT_EQ(back->epoch, id.epoch);
  EXPECT_EQ(back->seq, 42u);
  for (const char* bad : {"*", "", "52 2d 7b 8f ac 61 51 cc 77 4c 7b ec 91 50 bb 7b/3",
                          "52 2d 7b 8f ac 61 51 cc-77 4c 7b ec 91 50 bb 7b/x",
                          "zz 2d 7b 8f ac 61 51 cc-77 4c 7b ec 91 50 bb 7b/3"}) {
    EXPECT_FALSE(ChangeId::Parse(bad)) << bad;
  }
}

TEST(ChangeTrackFile, RecordQueryPageAndReset) {
  vmbackup::testing::TempDir dir;
  std::string p = dir / "d-ctk.vmdk";
  auto epoch = ChangeId::NewEpoch();
  const uint64_t cap = 10 * 65536 + 1000;  // the last block is partial
  ASSERT_TRUE(ChangeTrackFile::Create(p, epoch, 1, 65536, cap).ok());
  auto f = ChangeTrackFile::Open(p, true);
  ASSERT_TRUE(f) << f.error().ToString();
  ASSERT_TRUE((*f)->Record(65536 + 5, 10).ok());         // block 1
  ASSERT_TRUE((*f)->Record(3 * 65536, 2 * 65536).ok());  // blocks 3, 4
  ASSERT_TRUE((*f)->Record(cap - 1, 1).ok());            // block 10 (partial)
  EXPECT_FALSE((*f)->Record(cap, 1).ok());
  ASSERT_TRUE((*f)->CopyTo(dir / "e-ctk.vmdk", 2).ok());
  auto g = ChangeTrackFile::Open(dir / "e-ctk.vmdk", true);
  ASSERT_TRUE(g);
  ASSERT_TRUE((*g)->Record(7 * 65536, 1).ok());  // block 7 at seq 2
  ChangeId since0{epoch, 0}, since1{epoch, 1};
  auto all = (*g)->Query(since0, 0, 100);
  ASSERT_TRUE(all);
  EXPECT_EQ(all->areas,
            (std::vector<Extent>{
                {65536, 65536}, {3 * 65536, 2 * 65536}, {7 * 65536, 65536}, {10 * 65536, 1000}}));
  EXPECT_EQ(all->length, cap);
  auto newer = (*g)->Query(since1, 0, 100);
  ASSERT_TRUE(newer);
  EXPECT_EQ(newer->areas, (std::vector<Extent>{{7 * 65536, 65536}}));
  // Paging: two areas per answer, then continue where the answer ended.
  auto page = (*g)->Query(since0, 0, 2);
  ASSERT_TRUE(page);
  EXPECT_EQ(page->areas.size(), 2u);
  EXPECT_EQ(page->length, 7 * 65536u);
  auto rest = (*g)->Query(since0, page->length, 2);
  ASSERT_TRUE(rest);
  EXPECT_EQ(rest->areas, (std::vector<Extent>{{7 * 65536, 65536}, {10 * 65536, 1000}}));
  EXPECT_EQ(rest->start_offset + rest->length, cap);
  // The source (seq 1) never saw block 7; a change id from its future is refused.
  EXPECT_EQ((*f)->Query(ChangeId{epoch, 2}, 0, 10).error().code(), ErrorCode::kNotFound);
  ASSERT_TRUE((*g)->Reset(ChangeId::NewEpoch()).ok());
  EXPECT_EQ((*g)->Query(since0, 0, 10).error().code(), ErrorCode::kNotFound);
}

// A datastore in dir/ds holding one VM of one 1 MiB disk.
Datastore DatastoreWithVm(const testing::TempDir& dir, const std::string& name) {
  EXPECT_TRUE(Datastore::Init(dir / "ds").ok());
  auto ds = Datastore::Open(dir / "ds");
  EXPECT_TRUE(ds);
  NewVmOptions o;
  o.disk_sizes = {1 << 20};
  auto vm = ds->CreateVm(name, o);
  EXPECT_TRUE(vm) << vm.error().ToString();
  return std::move(*ds);
}

// A restored configuration brings its settings, never its identity, disks, or a file path
// that leaves the VM folder.
TEST(Vm, AdoptSettingsKeepsPathsInside) {
  testing::TempDir dir;
  Datastore ds = DatastoreWithVm(dir, "copy");
  auto vm = ds.OpenVm("copy");
  ASSERT_TRUE(vm) << vm.error().ToString();
  const std::string other =
      "displayName = \"original\"\nmemSize = \"4096\"\nannotation = \"web server\"\n"
      "nvram = \"/etc/passwd\"\nserial0.fileName = \"../../outside.log\"\n"
      "floppy0.fileName = \"floppy.flp\"\nscsi0:0.fileName = \"/etc/shadow\"\n";
  ASSERT_TRUE((*vm)->AdoptSettings(other).ok());
  const ConfigFile& cf = (*vm)->vmx().config();
  EXPECT_EQ(cf.GetOr("memSize", ""), "4096");
  EXPECT_EQ(cf.GetOr("annotation", ""), "web server");
  EXPECT_EQ(cf.GetOr("floppy0.fileName", ""), "floppy.flp");
  EXPECT_EQ(cf.GetOr("displayName", ""), "copy");
  EXPECT_FALSE(cf.Get("nvram"));
  EXPECT_FALSE(cf.Get("serial0.fileName"));
  EXPECT_EQ(cf.GetOr("scsi0:0.fileName", ""), "copy.vmdk");
}

// An export (SharedDisk) skips re-reading the VM's files while the lock's generation stands
// still; every vmhost operation raises it, so the export still follows snapshots taken, merged
// and written by other handles between two of its requests.
TEST(SharedDisk, FollowsSnapshotsAndOtherWritersBetweenRequests) {
  testing::TempDir dir;
  Datastore ds = DatastoreWithVm(dir, "g");
  {
    auto vm = ds.OpenVm("g");
    ASSERT_TRUE(vm) << vm.error().ToString();
    ASSERT_TRUE((*vm)->PowerOn().ok());
  }
  auto guest = SharedDisk::Open(dir / "ds/g", 0, std::nullopt, DiskOpenMode::kWrite);
  ASSERT_TRUE(guest) << guest.error().ToString();
  auto reader = SharedDisk::Open(dir / "ds/g", 0, std::nullopt, DiskOpenMode::kRead);
  ASSERT_TRUE(reader);
  auto block = [](uint8_t v) { return std::vector<uint8_t>(4096, v); };
  auto read = [](SharedDisk& d) {
    std::vector<uint8_t> b(4096);
    EXPECT_TRUE(d.Read(0, b).ok());
    return b;
  };
  ASSERT_TRUE((*guest)->Write(0, block(1)).ok());
  EXPECT_EQ(read(**reader), block(1));  // another handle's write, seen without any snapshot

  uint32_t uid = 0;
  {
    auto vm = ds.OpenVm("g");
    ASSERT_TRUE(vm);
    auto snap = (*vm)->CreateSnapshot("s", {});
    ASSERT_TRUE(snap) << snap.error().ToString();
    uid = snap->uid;
  }
  ASSERT_TRUE((*guest)->Write(0, block(2)).ok());  // must go to the new delta
  EXPECT_NE((*guest)->layer(), "g.vmdk");
  auto frozen = SharedDisk::Open(dir / "ds/g", 0, uid, DiskOpenMode::kRead);
  ASSERT_TRUE(frozen);
  EXPECT_EQ(read(**frozen), block(1));
  EXPECT_EQ(read(**reader), block(2));
  {
    auto vm = ds.OpenVm("g");
    ASSERT_TRUE(vm);
    ASSERT_TRUE((*vm)->Write(0, 0, block(3)).ok());
    ASSERT_TRUE((*vm)->DeleteSnapshot(uid).ok());  // the delta is merged and removed
  }
  EXPECT_EQ(read(**reader), block(3));
  ASSERT_TRUE((*guest)->Write(0, block(4)).ok());  // into the base again, not the merged delta
  EXPECT_EQ((*guest)->layer(), "g.vmdk");
  std::vector<uint8_t> b(4096);
  EXPECT_FALSE((*frozen)->Read(0, b).ok());  // its snapshot is gone
  auto vm = ds.OpenVm("g");
  ASSERT_TRUE(vm);
  ASSERT_TRUE((*vm)->Read(0, std::nullopt, 0, b).ok());
  EXPECT_EQ(b, block(4));
}

TEST(LockGeneration, RaisedByEveryVmOpenWithoutUsingDiskSpace) {
  testing::TempDir dir;
  Datastore ds = DatastoreWithVm(dir, "g");
  int fd = ::open((dir / "ds/g/.vmhost.lock").c_str(), O_RDWR | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  auto before = ReadLockGeneration(fd);
  ASSERT_TRUE(before);
  ASSERT_TRUE(ds.OpenVm("g"));
  auto after = ReadLockGeneration(fd);
  ASSERT_TRUE(after);
  EXPECT_EQ(*after, *before + 1);
  auto raised = RaiseLockGeneration(fd);
  ASSERT_TRUE(raised);
  EXPECT_EQ(*raised, *after + 1);
  struct stat st;
  ASSERT_EQ(::fstat(fd, &st), 0);
  EXPECT_EQ(st.st_blocks, 0);  // a size, not data: raising it works on a full disk
  ::close(fd);
}

TEST(ChangeTrackFile, DamageIsCorruption) {
  vmbackup::testing::TempDir dir;
  std::string p = dir / "d-ctk.vmdk";
  ASSERT_TRUE(ChangeTrackFile::Create(p, ChangeId::NewEpoch(), 1, 65536, 1 << 20).ok());
  auto good = vmbackup::testing::ReadBytes(p);
  auto bytes = good;
  bytes.push_back(0);
  vmbackup::testing::WriteBytes(p, bytes);
  auto r = ChangeTrackFile::Open(p, false);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("expected 576"), std::string::npos) << r.error().message();
  bytes = good;
  bytes[40] ^= 1;  // granularity, under the checksum
  vmbackup::testing::WriteBytes(p, bytes);
  r = ChangeTrackFile::Open(p, false);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("checksum"), std::string::npos);
  bytes = good;
  bytes[0] = 'X';
  vmbackup::testing::WriteBytes(p, bytes);
  EXPECT_NE(ChangeTrackFile::Open(p, false).error().message().find("magic"), std::string::npos);
}

}  // namespace
}  // namespace vmbackup::host
