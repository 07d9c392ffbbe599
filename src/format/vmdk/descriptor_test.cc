#include "format/vmdk/descriptor.h"

#include <gtest/gtest.h>

namespace vmbackup::vmdk {
namespace {

constexpr const char* kEsxi =
    "# Disk DescriptorFile\n"
    "version=3\n"
    "encoding=\"UTF-8\"\n"
    "CID=05e9aba7\n"
    "parentCID=ffffffff\n"
    "isNativeSnapshot=\"no\"\n"
    "createType=\"vmfs\"\n"
    "\n"
    "# Extent description\n"
    "RW 75497472 VMFS \"gerrit-flat.vmdk\"\n"
    "\n"
    "# Change Tracking File\n"
    "changeTrackPath=\"gerrit-ctk.vmdk\"\n"
    "\n"
    "# The Disk Data Base\n"
    "#DDB\n"
    "\n"
    "ddb.adapterType = \"lsilogic\"\n"
    "ddb.longContentID = \"8124c2c9cf1609f2921a6b6705e9aba7\"\n"
    "ddb.thinProvisioned = \"1\"\n";

TEST(Descriptor, ParsesEsxiDescriptor) {
  auto d = ParseDescriptor(kEsxi);
  ASSERT_TRUE(d) << d.error().ToString();
  EXPECT_EQ(d->version, 3);
  EXPECT_EQ(d->cid, 0x05e9aba7u);
  EXPECT_EQ(d->parent_cid, kNoParentCid);
  EXPECT_FALSE(d->has_parent());
  EXPECT_EQ(d->create_type, "vmfs");
  EXPECT_EQ(d->change_track_path, "gerrit-ctk.vmdk");
  ASSERT_EQ(d->extents.size(), 1u);
  EXPECT_EQ(d->extents[0].type, ExtentType::kVmfs);
  EXPECT_EQ(d->extents[0].sectors, 75497472u);
  EXPECT_EQ(d->extents[0].filename, "gerrit-flat.vmdk");
  EXPECT_FALSE(d->extents[0].offset_sectors.has_value());
  EXPECT_EQ(d->GetDdb("ddb.thinprovisioned"), "1");
  EXPECT_EQ(d->capacity_sectors(), 75497472u);
  ASSERT_EQ(d->extra_headers.size(), 1u);
  EXPECT_EQ(d->extra_headers[0].first, "isNativeSnapshot");
}

TEST(Descriptor, LenientCrlfCaseOrderQuotingComments) {
  const char* text =
      "# comment first\r\n"
      "  createtype = monolithicFlat \r\n"
      "ddb.adapterType=\"ide\"\r\n"
      "rw 100 flat \"my disk-flat.vmdk\" 0\r\n"
      "Version = \"1\"\r\n"
      "cid = 0xABCDEF01\r\n"
      "PARENTCID=FFFFFFFF\r\n"
      "RdOnly 50 Zero\r\n"
      "NOACCESS 8 FLAT \"other.bin\" 16\r\n";
  auto d = ParseDescriptor(text);
  ASSERT_TRUE(d) << d.error().ToString();
  EXPECT_EQ(d->create_type, "monolithicFlat");
  EXPECT_EQ(d->cid, 0xabcdef01u);
  ASSERT_EQ(d->extents.size(), 3u);
  EXPECT_EQ(d->extents[0].filename, "my disk-flat.vmdk");
  EXPECT_EQ(*d->extents[0].offset_sectors, 0u);
  EXPECT_EQ(d->extents[1].access, ExtentAccess::kReadOnly);
  EXPECT_EQ(d->extents[1].type, ExtentType::kZero);
  EXPECT_EQ(d->extents[2].access, ExtentAccess::kNoAccess);
  EXPECT_EQ(*d->extents[2].offset_sectors, 16u);
  EXPECT_EQ(d->capacity_sectors(), 158u);
}

TEST(Descriptor, CanonicalRoundTrip) {
  auto d = ParseDescriptor(kEsxi);
  ASSERT_TRUE(d);
  d->parent_cid = 0x12345678;
  d->parent_file_name_hint = "base.vmdk";
  d->extents.push_back({ExtentAccess::kReadOnly, 10, ExtentType::kZero, "", std::nullopt, ""});
  std::string text = SerializeDescriptor(*d);
  auto again = ParseDescriptor(text);
  ASSERT_TRUE(again) << again.error().ToString();
  EXPECT_EQ(*again, *d);
  EXPECT_EQ(SerializeDescriptor(*again), text);
  // The canonical form starts as QEMU's prober wants and keeps CID before parentCID.
  EXPECT_EQ(text.rfind("# Disk DescriptorFile\nversion=3\n", 0), 0u);
  EXPECT_LT(text.find("\nCID="), text.find("parentCID="));
  EXPECT_TRUE(d->has_parent());
}

TEST(Descriptor, EmbeddedNulPaddingIgnored) {
  std::string text = "version=1\ncreateType=\"monolithicSparse\"\nRW 8 SPARSE \"a.vmdk\"\n";
  text.append(300, '\0');
  text += "garbage after the padding";
  auto d = ParseDescriptor(text);
  ASSERT_TRUE(d) << d.error().ToString();
  EXPECT_EQ(d->extents.size(), 1u);
}

void ExpectError(const std::string& text, const std::string& fragment) {
  auto d = ParseDescriptor(text);
  ASSERT_FALSE(d.has_value()) << text;
  EXPECT_EQ(d.error().code(), ErrorCode::kCorruption);
  EXPECT_NE(d.error().message().find(fragment), std::string::npos)
      << "message: " << d.error().message() << "\nexpected: " << fragment;
}

TEST(Descriptor, ErrorsNameLineAndField) {
  const std::string head = "version=1\ncreateType=\"vmfs\"\n";
  ExpectError(head + "RW abc VMFS \"x\"\n", "line 3: extent size 'abc' is not a number");
  ExpectError(head + "RW 10 BOGUS \"x\"\n", "line 3: unknown extent type 'BOGUS'");
  ExpectError(head + "RW 10 VMFS \"x\n", "line 3: extent file name has no closing quote");
  ExpectError(head + "RW 10 VMFS x\n", "not quoted");
  ExpectError(head + "RW 10 VMFS\n", "names no file");
  ExpectError(head + "RW 10 ZERO \"x\"\n", "ZERO extent must not name a file");
  ExpectError(head + "RW 0 VMFS \"x\"\n", "extent size is zero");
  ExpectError(head + "RW 10 FLAT \"x\" zz\n", "extent offset 'zz' is not a number");
  // Found by the descriptor fuzzer: a quoted empty offset used to be taken as "no offset",
  // and the canonical form then re-parsed differently.
  ExpectError(head + "RW 10 FLAT \"x\" \"\"\"dk\" 0\n", "extent offset '' is not a number");
  ExpectError(head + "RW 99999999999999999 VMFS \"x\"\n", "larger than 256 TiB");
  ExpectError(head + "RW 549755813888 VMFS \"x\"\nRW 1 VMFS \"x\"\n", "more than 256 TiB");
  ExpectError(head + "CID=xyz\nRW 1 VMFS \"x\"\n", "line 3: CID 'xyz' is not a hex number");
  ExpectError(head + "parentCID=12345678g\nRW 1 VMFS \"x\"\n", "parentCID");
  // Xen Orchestra's decimal CIDs read as QEMU reads them: hex, modulo 2^32.
  auto xo = ParseDescriptor(head + "CID=899822576\nparentCID=ffffffff\nRW 1 VMFS \"x\"\n");
  ASSERT_TRUE(xo) << xo.error().ToString();
  EXPECT_EQ(xo->cid, 0x99822576u);
  EXPECT_FALSE(xo->has_parent());
  auto huge = ParseDescriptor(head + "CID=123456789012345678901\nRW 1 VMFS \"x\"\n");
  ASSERT_TRUE(huge);
  EXPECT_EQ(huge->cid, 0xffffffffu);  // strtoul saturates
  ExpectError(head + "just words\n", "line 3: expected 'key=value'");
  ExpectError(head + "ddb.x = \"open\n", "no closing quote");
  ExpectError("version=7\ncreateType=\"vmfs\"\nRW 1 VMFS \"x\"\n", "line 1: version '7'");
  ExpectError("createType=\"vmfs\"\nRW 1 VMFS \"x\"\n", "no 'version' line");
  ExpectError("version=1\nRW 1 VMFS \"x\"\n", "no 'createType' line");
  ExpectError(head, "no extent lines");
}

TEST(Descriptor, NonUtf8IsAnErrorUnlessAnotherEncodingIsDeclared) {
  std::string bad = "version=1\ncreateType=\"vmfs\"\nRW 1 VMFS \"caf\xe9-flat.vmdk\"\n";
  ExpectError(bad, "line 3: byte");
  auto ok = ParseDescriptor("encoding=\"windows-1252\"\n" + bad);
  ASSERT_TRUE(ok) << ok.error().ToString();
  EXPECT_EQ(ok->extents[0].filename, "caf\xe9-flat.vmdk");
}

TEST(Descriptor, LooksLikeDescriptor) {
  EXPECT_TRUE(LooksLikeDescriptor("# Disk DescriptorFile\n\nversion=1\n"));
  EXPECT_TRUE(LooksLikeDescriptor("Version = 2\r\n"));
  EXPECT_FALSE(LooksLikeDescriptor("createType=\"x\"\nversion=1\n"));
  EXPECT_FALSE(LooksLikeDescriptor(std::string("\xeb\x63\x90\x00", 4)));
  EXPECT_FALSE(LooksLikeDescriptor(""));
}

}  // namespace
}  // namespace vmbackup::vmdk
