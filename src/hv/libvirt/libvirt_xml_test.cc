#include "hv/libvirt/libvirt_xml.h"

#include <gtest/gtest.h>

#include "base/strings.h"
#include "xml/xml.h"

namespace vmbackup::hv::libvirt {
namespace {

// The shape of `virsh dumpxml` of a running domain (libvirt 9.0), trimmed.
constexpr const char* kDomain = R"(<domain type='qemu' id='3'>
  <name>web</name>
  <uuid>4dea22b3-1d52-d8f3-2516-782e98ab3fa0</uuid>
  <metadata><vmbackup:powerOnBlock xmlns:vmbackup="https://vmbackup.dev/libvirt/1" reason="x"/></metadata>
  <memory unit='KiB'>65536</memory>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='/var/lib/libvirt/images/web.qcow2' index='2'/>
      <backingStore type='file' index='3'><format type='qcow2'/><source file='/var/lib/libvirt/images/base.qcow2'/><backingStore/></backingStore>
      <target dev='vda' bus='virtio'/>
    </disk>
    <disk type='file' device='cdrom'>
      <driver name='qemu' type='raw'/><source file='/iso/debian.iso'/><target dev='sda' bus='sata'/>
    </disk>
    <disk type='block' device='disk'>
      <driver name='qemu' type='raw'/><source dev='/dev/vg/data'/><target dev='vdb' bus='virtio'/>
    </disk>
    <disk type='network' device='disk'>
      <driver name='qemu' type='raw'/><source protocol='nbd' name='x'><host name='h'/></source><target dev='vdc' bus='virtio'/>
    </disk>
    <interface type='network'><mac address='52:54:00:12:34:56'/><source network='default'/></interface>
  </devices>
  <seclabel type='dynamic' model='dac' relabel='yes'><label>+64055:+107</label><imagelabel>+64055:+107</imagelabel></seclabel>
</domain>)";

TEST(LibvirtXmlTest, ReadsDisksAndPicksThoseABackupReads) {
  auto d = ParseDomainXml(kDomain);
  ASSERT_TRUE(d.ok()) << d.error().ToString();
  EXPECT_EQ(d->name, "web");
  EXPECT_EQ(d->uuid, "4dea22b3-1d52-d8f3-2516-782e98ab3fa0");
  EXPECT_EQ(d->qemu_user, "+64055:+107");
  ASSERT_EQ(d->disks.size(), 4u);
  EXPECT_TRUE(d->disks[0].has_backing);
  EXPECT_EQ(d->disks[0].format, "qcow2");
  auto backup = BackupDisks(*d);
  ASSERT_EQ(backup.size(), 2u);  // not the cdrom, not the network disk
  EXPECT_EQ(backup[0].target, "vda");
  EXPECT_EQ(backup[0].source, "/var/lib/libvirt/images/web.qcow2");
  EXPECT_EQ(backup[1].target, "vdb");
  EXPECT_EQ(backup[1].type, "block");
  EXPECT_EQ(backup[1].source, "/dev/vg/data");
  EXPECT_EQ(backup[1].format, "raw");
}

TEST(LibvirtXmlTest, RefusesWhatIsNotADomain) {
  EXPECT_EQ(ParseDomainXml("<domainbackup/>").error().code(), ErrorCode::kCorruption);
  EXPECT_EQ(ParseDomainXml("<domain><name>x</name").error().code(), ErrorCode::kCorruption);
  EXPECT_EQ(ParseDomainXml("<domain/>").error().code(), ErrorCode::kCorruption);  // no name
  EXPECT_EQ(ParseDomainXml("<domain><name>x</name><devices><disk><target dev='vda'/></disk>"
                           "<disk><target dev='vda'/></disk></devices></domain>")
                .error()
                .code(),
            ErrorCode::kCorruption);
  // A target names files: never a path.
  for (const char* target : {"../../etc/x", "vda/", "", "VDA", "v da"}) {
    auto bad = ParseDomainXml(std::string("<domain><name>x</name><devices><disk><target dev='") +
                              target + "'/></disk></devices></domain>");
    ASSERT_FALSE(bad.ok()) << target;
    EXPECT_EQ(bad.error().code(), ErrorCode::kCorruption) << target;
  }
}

// Instant recovery: each disk a qcow2 overlay over the point's NBD export; errors pause.
TEST(LibvirtXmlTest, InstantDomainDisksAreOverlaysOverTheExport) {
  auto x = NewDomainXml(kDomain, "web-now",
                        {{"/images/web-now-2000.qcow2", "qcow2", "/run/i/disk-2000.sock"},
                         {"/images/web-now-2001.qcow2", "qcow2", "/run/i/disk-2001.sock"}});
  ASSERT_TRUE(x.ok()) << x.error().ToString();
  auto doc = xml::Document::Parse(*x, "test");
  ASSERT_TRUE(doc.ok());
  int i = 0;
  for (xml::Node disk : doc->root().child("devices").children("disk")) {
    if (disk.attr("device").value_or("disk") != "disk") continue;
    if (disk.attr("type").value_or("") == "network") continue;  // not a backup disk: as it was
    EXPECT_EQ(disk.child("driver").attr("type").value_or(""), "qcow2");
    xml::Node b = disk.child("backingStore");
    ASSERT_TRUE(b) << *x;
    EXPECT_EQ(b.attr("type").value_or(""), "network");
    EXPECT_EQ(b.child("format").attr("type").value_or(""), "raw");
    EXPECT_EQ(b.child("source").attr("protocol").value_or(""), "nbd");
    EXPECT_EQ(b.child("source").child("host").attr("socket").value_or(""),
              StrFormat("/run/i/disk-%d.sock", 2000 + i));
    EXPECT_EQ(disk.child("driver").attr("rerror_policy").value_or(""), "stop");
    EXPECT_EQ(disk.child("driver").attr("error_policy").value_or(""), "stop");
    ++i;
  }
  EXPECT_EQ(i, 2);
}

TEST(LibvirtXmlTest, NewDomainGetsItsNameFilesAndNoIdentityOfTheOriginal) {
  auto x = NewDomainXml(
      kDomain, "web-copy",
      {{"/restore/web-copy-vda.qcow2", "qcow2", ""}, {"/restore/web-copy-vdb.img", "raw", ""}});
  ASSERT_TRUE(x.ok()) << x.error().ToString();
  auto d = ParseDomainXml(*x);
  ASSERT_TRUE(d.ok()) << *x;
  EXPECT_EQ(d->name, "web-copy");
  EXPECT_EQ(d->uuid, "");
  auto backup = BackupDisks(*d);
  ASSERT_EQ(backup.size(), 2u);
  EXPECT_EQ(backup[0].source, "/restore/web-copy-vda.qcow2");
  EXPECT_FALSE(backup[0].has_backing);
  EXPECT_EQ(backup[1].type, "file");  // the block device became a file
  EXPECT_EQ(backup[1].source, "/restore/web-copy-vdb.img");
  EXPECT_EQ(backup[1].format, "raw");
  EXPECT_EQ(d->disks[1].source, "/iso/debian.iso");  // the cdrom keeps its media
  EXPECT_EQ(x->find("52:54:00:12:34:56"), std::string::npos);
  EXPECT_EQ(x->find("powerOnBlock"), std::string::npos);
  EXPECT_EQ(NewDomainXml(kDomain, "n", {{"/a", "qcow2", ""}}).error().code(),
            ErrorCode::kInvalidArgument);
}

TEST(LibvirtXmlTest, SandboxHasNoWayOutAndLogsItsConsole) {
  constexpr const char* kGuest = R"(<domain type='qemu'><name>g</name><devices>
    <disk type='file' device='disk'><source file='/a.qcow2'/><target dev='vda'/></disk>
    <interface type='network'><source network='default'/></interface>
    <interface type='bridge'><source bridge='br0'/></interface>
    <hostdev mode='subsystem' type='pci'><source><address bus='0x01'/></source></hostdev>
    <filesystem type='mount'><source dir='/srv/share'/><target dir='share'/></filesystem>
    <serial type='pty'><log file='/var/log/old.log' append='on'/><target port='0'/></serial>
    <serial type='pty'><target port='1'/></serial>
    <console type='pty'><target type='serial' port='0'/></console>
    <console type='pty'><target type='virtio' port='1'/></console>
    <channel type='unix'><target type='virtio' name='org.qemu.guest_agent.0'/></channel>
  </devices></domain>)";
  auto d = ParseDomainXml(kGuest);
  ASSERT_TRUE(d.ok());
  EXPECT_TRUE(d->has_agent_channel);
  EXPECT_FALSE(ParseDomainXml(kDomain)->has_agent_channel);
  auto x = SandboxDomainXml(kGuest, "/run/t/console.log");
  ASSERT_TRUE(x.ok()) << x.error().ToString();
  auto doc = xml::Document::Parse(*x, "sandbox");
  ASSERT_TRUE(doc.ok());
  xml::Node devices = doc->root().child("devices");
  for (const char* gone : {"interface", "hostdev", "filesystem"})
    EXPECT_FALSE(devices.child(gone)) << gone;
  ASSERT_EQ(devices.children("serial").size(), 1u);
  xml::Node serial = devices.child("serial");
  EXPECT_EQ(serial.attr("type").value_or(""), "pty");
  EXPECT_EQ(serial.children("log").size(), 1u);
  EXPECT_EQ(serial.child("log").attr("file").value_or(""), "/run/t/console.log");
  EXPECT_EQ(serial.child("log").attr("append").value_or(""), "off");
  ASSERT_EQ(devices.children("console").size(), 1u);  // the serial port's alias stays
  EXPECT_EQ(devices.child("console").child("target").attr("type").value_or(""), "serial");
  EXPECT_TRUE(devices.child("channel"));  // the agent stays: it is how the test talks to it
  EXPECT_TRUE(devices.child("disk"));
  // No serial port at all: one that writes to the log file.
  auto bare = SandboxDomainXml("<domain><name>b</name><devices/></domain>", "/l");
  ASSERT_TRUE(bare.ok());
  auto bdoc = xml::Document::Parse(*bare, "sandbox");
  xml::Node bs = bdoc->root().child("devices").child("serial");
  EXPECT_EQ(bs.attr("type").value_or(""), "file");
  EXPECT_EQ(bs.child("source").attr("path").value_or(""), "/l");
}

TEST(LibvirtXmlTest, JobAndCheckpointDocumentsAreWellFormedAndEscaped) {
  JobServer unix_server;
  unix_server.socket = "/run/x/nbd.sock";
  const std::string job = BackupJobXml(
      unix_server, {{"vda", "vmbackup-1", "/run/x/s'a.qcow2"}, {"vdb", "", "/run/x/b"}});
  auto doc = xml::Document::Parse(job, "job");
  ASSERT_TRUE(doc.ok()) << job;
  EXPECT_EQ(doc->root().child("server").attr("transport").value_or(""), "unix");
  EXPECT_EQ(JobEndpoint(job), "unix:/run/x/nbd.sock");
  auto disks = doc->root().child("disks").children("disk");
  ASSERT_EQ(disks.size(), 2u);
  EXPECT_EQ(disks[0].attr("backupmode").value_or(""), "incremental");
  EXPECT_EQ(disks[0].attr("incremental").value_or(""), "vmbackup-1");
  EXPECT_EQ(disks[0].child("scratch").attr("file").value_or(""), "/run/x/s'a.qcow2");
  EXPECT_EQ(disks[1].attr("backupmode").value_or(""), "full");
  const std::string cp = CheckpointXml("vmbackup-2", {"vda", "vdb"}, {"vda"});
  auto c = xml::Document::Parse(cp, "checkpoint");
  ASSERT_TRUE(c.ok()) << cp;
  EXPECT_EQ(c->root().child("name").text(), "vmbackup-2");
  auto cd = c->root().child("disks").children("disk");
  ASSERT_EQ(cd.size(), 2u);
  EXPECT_EQ(cd[0].attr("checkpoint").value_or(""), "bitmap");
  EXPECT_EQ(cd[1].attr("checkpoint").value_or(""), "no");
  EXPECT_EQ(JobEndpoint("not xml"), "");
}

TEST(LibvirtXmlTest, TcpJobsNameTheirHostPortAndTls) {
  JobServer tcp{"", "kvm1.example", 10811, true};
  const std::string job = BackupJobXml(tcp, {{"vda", "", "/var/tmp/s.qcow2"}});
  auto doc = xml::Document::Parse(job, "job");
  ASSERT_TRUE(doc.ok()) << job;
  xml::Node server = doc->root().child("server");
  EXPECT_EQ(server.attr("transport").value_or(""), "tcp");
  EXPECT_EQ(server.attr("name").value_or(""), "kvm1.example");
  EXPECT_EQ(server.attr("port").value_or(""), "10811");
  EXPECT_EQ(server.attr("tls").value_or(""), "yes");
  EXPECT_EQ(doc->root().child("disks").child("disk").child("scratch").attr("file").value_or(""),
            "/var/tmp/s.qcow2");
  EXPECT_EQ(JobEndpoint(job), "tcp:kvm1.example:10811");
  EXPECT_EQ(tcp.Endpoint(), JobEndpoint(job));
  auto back = JobServer::FromTcpEndpoint(tcp.Endpoint());
  ASSERT_TRUE(back);
  EXPECT_EQ(back->host, "kvm1.example");
  EXPECT_EQ(back->port, 10811);
  EXPECT_FALSE(JobServer::FromTcpEndpoint("unix:/run/x/nbd.sock"));
  EXPECT_FALSE(JobServer::FromTcpEndpoint("tcp:h:99999"));
  EXPECT_FALSE(JobServer::FromTcpEndpoint("tcp::5"));
  tcp.tls = false;
  EXPECT_NE(BackupJobXml(tcp, {}).find("tls='no'"), std::string::npos);
  // libvirt's own answer (virDomainBackupGetXMLDesc) has the same attributes.
  EXPECT_EQ(JobEndpoint("<domainbackup mode='pull'><server transport='tcp' tls='yes' "
                        "name='localhost' port='10809'/></domainbackup>"),
            "tcp:localhost:10809");
  EXPECT_EQ(JobEndpoint("<domainbackup><server transport='tcp' name='h' port='x'/></domainbackup>"),
            "");
}

TEST(LibvirtXmlTest, RemoteHostIsTheUrisHostUnlessItIsThisMachine) {
  EXPECT_EQ(RemoteHost("qemu:///system"), "");
  EXPECT_EQ(RemoteHost("qemu+ssh://root@kvm1:2222/system?keyfile=/k"), "kvm1");
  EXPECT_EQ(RemoteHost("qemu+tls://kvm2.example/system"), "kvm2.example");
  EXPECT_EQ(RemoteHost("qemu+ssh://u@[fd00::5]:22/system"), "fd00::5");
  EXPECT_EQ(RemoteHost("qemu+tcp://localhost/system"), "");
  EXPECT_EQ(RemoteHost("qemu+ssh://127.0.0.1/system"), "");
  EXPECT_EQ(RemoteHost("qemu+ssh://[::1]/system"), "");
  EXPECT_EQ(RemoteHost("test:///default"), "");
}

}  // namespace
}  // namespace vmbackup::hv::libvirt
