// The parsers of what users type (source URIs, datastore maps) and of what a vSphere server
// answers (virtual disks, changed areas, SOAP faults).
#include "hv/vsphere/vsphere_source.h"

#include <gtest/gtest.h>

#include "hv/vsphere/nbd_endpoint.h"
#include "hv/vsphere/vim_client.h"
#include "hv/vsphere/vsphere_driver.h"

namespace vmbackup::hv::vsphere {
namespace {

const std::string kTp =
    "44:8F:62:8A:8A:65:AA:18:56:0E:53:A8:0C:53:AC:B3:8C:51:B4:27:DF:03:34:08:23:49:14:11:47:DC:"
    "9B:F6";

TEST(SourceUriTest, ParsesEveryPart) {
  auto s = ParseSourceUri(
      "vsphere://backup%40vsphere.local@vc.example:8443/DC%201?thumbprint=SHA256:" + kTp +
      "&ca=/etc/ca.pem");
  ASSERT_TRUE(s.ok()) << s.error().ToString();
  EXPECT_EQ(s->user, "backup@vsphere.local");
  EXPECT_EQ(s->host, "vc.example");
  EXPECT_EQ(s->port, 8443);
  EXPECT_EQ(s->datacenter, "DC 1");
  EXPECT_EQ(s->thumbprint, kTp);
  EXPECT_EQ(s->ca_file, "/etc/ca.pem");
  EXPECT_EQ(s->BaseUrl(), "https://vc.example:8443");
  auto v6 = ParseSourceUri("vsphere://u@[::1]:443");
  ASSERT_TRUE(v6.ok());
  EXPECT_EQ(v6->BaseUrl(), "https://[::1]:443");
}

TEST(SourceUriTest, RefusesPasswordsAndJunk) {
  for (const char* bad : {"vsphere://u:secret@h", "vsphere://h", "vsphere://u@", "vsphere://u@h:0",
                          "vsphere://u@h:99999", "vsphere://u@h?thumbprint=12:34",
                          "vsphere://u@h?color=red", "vmhost:///x"}) {
    auto s = ParseSourceUri(bad);
    ASSERT_FALSE(s.ok()) << bad;
    EXPECT_EQ(s.error().code(), ErrorCode::kInvalidArgument) << bad;
    EXPECT_EQ(s.error().message().find("secret"), std::string::npos) << "the password was echoed";
  }
}

TEST(DatastorePathTest, StaysInsideItsDatastore) {
  auto p = ParseDatastorePath("[LocalDS_0] vm one/disk.vmdk");
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->datastore, "LocalDS_0");
  EXPECT_EQ(p->path, "vm one/disk.vmdk");
  for (const char* bad : {"disk.vmdk", "[ds]", "[] a", "[ds] /etc/passwd", "[ds] ../x.vmdk",
                          "[ds] vm/../../x.vmdk", "[ds"}) {
    EXPECT_FALSE(ParseDatastorePath(bad).ok()) << bad;
  }
}

TEST(DatastoreMapTest, ParsesAndRefusesRelativeFolders) {
  auto m = ParseDatastoreMap("[ds1]=/mnt/ds1,ds2=/srv/ds2");
  ASSERT_TRUE(m.ok());
  EXPECT_EQ((*m)["ds1"], "/mnt/ds1");
  EXPECT_EQ((*m)["ds2"], "/srv/ds2");
  EXPECT_FALSE(ParseDatastoreMap("[ds1]=mnt").ok());
  EXPECT_FALSE(ParseDatastoreMap("ds1").ok());
}

std::string Envelope(const std::string& body) {
  return "<soapenv:Envelope xmlns:soapenv=\"http://schemas.xmlsoap.org/soap/envelope/\" "
         "xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\"><soapenv:Body>" +
         body + "</soapenv:Body></soapenv:Envelope>";
}

TEST(AnswerTest, ReadsDisksByKeyWithEitherCapacityField) {
  auto doc = ParseSoapAnswer(
      200,
      Envelope(
          "<R xmlns=\"urn:vim25\"><returnval xmlns:Q=\"http://www.w3.org/2001/XMLSchema-instance\">"
          "<VirtualDevice Q:type=\"VirtualE1000\"><key>4000</key></VirtualDevice>"
          "<VirtualDevice Q:type=\"VirtualDisk\"><key>2001</key><capacityInKB>2048</capacityInKB>"
          "<backing><fileName>[ds] b.vmdk</fileName><uuid>u2</uuid></backing></VirtualDevice>"
          "<VirtualDevice Q:type=\"VirtualDisk\"><key>2000</key><capacityInKB>1</capacityInKB>"
          "<capacityInBytes>1048576</capacityInBytes><deviceInfo><label>Hard disk "
          "1</label></deviceInfo>"
          "<backing><fileName>[ds] a.vmdk</fileName></backing></VirtualDevice></returnval></R>"),
      "t", nullptr);
  ASSERT_TRUE(doc.ok()) << doc.error().ToString();
  auto disks = ParseVirtualDisks(VimClient::ReturnVal(**doc), true);
  ASSERT_TRUE(disks.ok()) << disks.error().ToString();
  ASSERT_EQ(disks->size(), 2u);
  EXPECT_EQ((*disks)[0].device_key, 2000);
  EXPECT_EQ((*disks)[0].capacity, 1048576u);
  EXPECT_EQ((*disks)[0].label, "Hard disk 1");
  EXPECT_EQ((*disks)[1].capacity, 2048u * 1024);
  EXPECT_EQ((*disks)[1].uuid, "u2");
  EXPECT_EQ((*disks)[1].backing_path, "[ds] b.vmdk");
}

TEST(AnswerTest, FaultsCarryTheirType) {
  std::string fault;
  auto doc = ParseSoapAnswer(
      500,
      Envelope(
          "<soapenv:Fault><faultcode>ServerFaultCode</faultcode><faultstring>Error caused by "
          "file /vmfs/x</faultstring><detail><FileFaultFault xmlns=\"urn:vim25\" "
          "xsi:type=\"FileNotFound\"><file>x</file></FileFaultFault></detail></soapenv:Fault>"),
      "QueryChangedDiskAreas on VirtualMachine:vm-1", &fault);
  ASSERT_FALSE(doc.ok());
  EXPECT_EQ(fault, "FileNotFound");
  EXPECT_EQ(doc.error().code(), ErrorCode::kProtocol);
  EXPECT_NE(doc.error().message().find("vm-1"), std::string::npos);
  // Not SOAP at all, and an HTTP error without a fault.
  EXPECT_FALSE(ParseSoapAnswer(200, "<html>proxy error</html>", "t", nullptr).ok());
  EXPECT_EQ(ParseSoapAnswer(503, "", "t", nullptr).error().code(), ErrorCode::kProtocol);
}

TEST(AnswerTest, ChangedAreasNeedTheirFields) {
  auto doc = ParseSoapAnswer(
      200,
      Envelope(
          "<R xmlns=\"urn:vim25\"><returnval><startOffset>0</startOffset><length>4096</length>"
          "<changedArea><start>512</start><length>1024</length></changedArea></returnval></R>"),
      "t", nullptr);
  ASSERT_TRUE(doc.ok());
  auto a = ParseChangedAreas(VimClient::ReturnVal(**doc));
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->length, 4096u);
  ASSERT_EQ(a->areas.size(), 1u);
  EXPECT_EQ(a->areas[0].offset, 512u);
  EXPECT_EQ(a->areas[0].length, 1024u);
  auto bad = ParseSoapAnswer(
      200, Envelope("<R xmlns=\"urn:vim25\"><returnval><length>1</length></returnval></R>"), "t",
      nullptr);
  ASSERT_TRUE(bad.ok());
  EXPECT_FALSE(ParseChangedAreas(VimClient::ReturnVal(**bad)).ok());
}

}  // namespace
}  // namespace vmbackup::hv::vsphere

namespace vmbackup::hv::vsphere {
namespace {

TEST(NbdTemplate, ExpandsUrisEncodedAndCommandsPerArgument) {
  NbdEndpointVars v{"web 1", "vm-7", "2000", "0", "snapshot-9", "vmbackup-x", "[ds 1] web/web.vmdk",
                    "read"};
  auto u = ExpandNbdTemplate("nbd+unix:///{vm}-{key}?socket=/run/{disk}.sock", v);
  ASSERT_TRUE(u.ok()) << u.error().ToString();
  EXPECT_FALSE(u->command);
  EXPECT_FALSE(u->tls);
  EXPECT_EQ(u->uri, "nbd+unix:///web%201-2000?socket=/run/0.sock");
  auto t = ExpandNbdTemplate("nbds://h/{file}", v);
  ASSERT_TRUE(t.ok());
  EXPECT_TRUE(t->tls);
  EXPECT_EQ(t->uri, "nbds://h/%5Bds%201%5D%20web%2Fweb.vmdk");
  auto c = ExpandNbdTemplate("exec:nbdkit -s vddk  file={file} snapshot={snapshot} m={mode}", v);
  ASSERT_TRUE(c.ok());
  EXPECT_TRUE(c->command);
  EXPECT_EQ(c->argv, (std::vector<std::string>{"nbdkit", "-s", "vddk", "file=[ds 1] web/web.vmdk",
                                               "snapshot=snapshot-9", "m=read"}));
  for (const char* bad : {"http://h/{vm}", "nbd://h/{vmname}", "nbd://h/{vm", "exec:", "exec:  "})
    EXPECT_FALSE(ExpandNbdTemplate(bad, v).ok()) << bad;
  EXPECT_TRUE(CheckNbdTemplate("exec:nbdkit -s x vm={vm_moref}").ok());
}

}  // namespace
}  // namespace vmbackup::hv::vsphere
