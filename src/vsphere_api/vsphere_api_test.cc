// The vSphere API server's pieces against a real vmhost datastore in a temporary folder: the
// SOAP reader, value writing, sessions, the PropertyCollector, tasks and the VM methods.
// pyvmomi and the vSphere driver talk to it over HTTPS in tests/e2e/vmhost_vsphere_api_test.sh.
#include <gtest/gtest.h>

#include <chrono>
#include <thread>

#include "base/testing/temp_dir.h"
#include "host/datastore.h"
#include "vsphere_api/server.h"
#include "vsphere_api/service.h"

namespace vmbackup::vsphere_api {
namespace {

using xml::Node;

std::string Call(const std::string& method, const std::string& this_type,
                 const std::string& this_value, const std::string& args) {
  return "<soapenv:Envelope xmlns:soapenv=\"http://schemas.xmlsoap.org/soap/envelope/\" "
         "xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\"><soapenv:Body><" +
         method + " xmlns=\"urn:vim25\"><_this type=\"" + this_type + "\">" + this_value +
         "</_this>" + args + "</" + method + "></soapenv:Body></soapenv:Envelope>";
}

TEST(Value, WritesTypesAsClientsNeedThem) {
  Value disk = Value::Object("VirtualDisk");
  disk.Set("key", Value::Int(2000)).Set("unset", Value());
  Value devices = Value::Array("VirtualDevice");
  devices.Add(disk);
  Value hw = Value::Object("VirtualHardware");
  hw.Set("device", devices);
  // Inside a data object an array is repeated fields; a property's own array is ArrayOf...
  EXPECT_EQ(
      hw.Xml("hardware", false),
      "<hardware xsi:type=\"VirtualHardware\"><device xsi:type=\"VirtualDisk\"><key>2000</key>"
      "</device></hardware>");
  EXPECT_EQ(devices.Xml("val", true),
            "<val xsi:type=\"ArrayOfVirtualDevice\"><VirtualDevice xsi:type=\"VirtualDisk\">"
            "<key>2000</key></VirtualDevice></val>");
  EXPECT_EQ(Value::Ref({"VirtualMachine", "vm-a"}).Xml("val", true),
            "<val type=\"VirtualMachine\" xsi:type=\"ManagedObjectReference\">vm-a</val>");
  EXPECT_EQ(Value::Enum("VirtualMachinePowerState", "poweredOn").Xml("val", true),
            "<val xsi:type=\"VirtualMachinePowerState\">poweredOn</val>");
  EXPECT_EQ(Value::String("a<b").Xml("name", false), "<name>a&lt;b</name>");
  Value any = Value::Ref({"Task", "task-1"});
  EXPECT_NE(any.AsAny().Xml("result", false).find("xsi:type"), std::string::npos);
  EXPECT_EQ(hw.Path("device") != nullptr, true);
  EXPECT_EQ(hw.Path("device.key"), nullptr);  // no paths into arrays
  EXPECT_EQ(FormatDateTime(1700000000123456), "2023-11-14T22:13:20.123456Z");
}

TEST(Soap, MalformedRequestsAreErrorsNotCrashes) {
  EXPECT_TRUE(ParseSoapRequest(Call("Login", "SessionManager", "ha-sessionmgr", "")).ok());
  const std::string good = Call("Login", "SessionManager", "ha-sessionmgr", "");
  for (const std::string& bad :
       {good.substr(0, good.size() / 2), std::string("<a/>"), std::string(""),
        std::string("<soapenv:Envelope xmlns:soapenv=\"http://schemas.xmlsoap.org/soap/envelope/\">"
                    "<soapenv:Body><A/><B/></soapenv:Body></soapenv:Envelope>"),
        Call("Login", "", "", ""),
        std::string("<?xml version=\"1.0\"?><!DOCTYPE l [<!ENTITY a \"aaaaaaaaaa\"><!ENTITY b "
                    "\"&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;\"><!ENTITY c \"&b;&b;&b;&b;&b;&b;&b;&b;\">]>"
                    "<soapenv:Envelope xmlns:soapenv=\"http://schemas.xmlsoap.org/soap/envelope/\">"
                    "<soapenv:Body><Login><_this type=\"SessionManager\">&c;</_this></Login>"
                    "</soapenv:Body></soapenv:Envelope>")}) {
    EXPECT_FALSE(ParseSoapRequest(bad).ok()) << bad;
  }
  EXPECT_FALSE(ParseSoapRequest(std::string(kMaxRequestBytes + 1, ' ')).ok());
}

TEST(FolderPath, StaysInsideTheDatastoreAndAwayFromHiddenFiles) {
  EXPECT_EQ(*FolderRelativePath("/folder/web/web-flat.vmdk"), "web/web-flat.vmdk");
  for (const char* bad : {"/folder/../etc/passwd", "/folder/web/../../x", "/folder//etc/passwd",
                          "/folder/.vmhost-tls/key.pem", "/folder/web/.vmhost.lock", "/folder/",
                          "/sdk/x", "/folder/a\\..\\b"}) {
    EXPECT_FALSE(FolderRelativePath(bad).ok()) << bad;
  }
}

class ServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(host::Datastore::Init(dir_.path()).ok());
    auto ds = host::Datastore::Open(dir_.path());
    ASSERT_TRUE(ds.ok());
    host::NewVmOptions o;
    o.disk_sizes = {4 << 20};
    o.cbt = true;
    for (const char* n : {"alpha", "beta", "gamma"}) ASSERT_TRUE(ds->CreateVm(n, o).ok());
    ServiceOptions so;
    so.inventory.datastore_root = dir_.path();
    so.user = "root";
    so.password = "s3cret";
    service_ = std::make_unique<Service>(so);
    auto a = service_->Handle(Call("Login", "SessionManager", "ha-sessionmgr",
                                   "<userName>root</userName><password>s3cret</password>"),
                              "");
    ASSERT_EQ(a.http_status, 200) << a.body;
    session_ = a.set_cookie;
    ASSERT_FALSE(session_.empty());
  }

  // The answer's body element (the <MethodResponse> or the fault's detail child).
  struct Parsed {
    int status;
    std::shared_ptr<xml::Document> doc;
    Node response() const { return doc->root().child("Body").children()[0]; }
    std::string fault() const {
      Node f = doc->root().child("Body").child("Fault");
      auto details = f.child("detail").children();
      return details.empty() ? "" : details[0].xsi_type();
    }
  };
  Parsed Do(const std::string& method, const std::string& type, const std::string& value,
            const std::string& args, const std::string& session = "-") {
    auto a = service_->Handle(Call(method, type, value, args), session == "-" ? session_ : session);
    auto doc = xml::Document::Parse(a.body, "answer");
    EXPECT_TRUE(doc.ok()) << a.body;
    return {a.http_status, std::make_shared<xml::Document>(std::move(*doc))};
  }
  std::string WaitTask(const std::string& task) {
    for (int i = 0; i < 500; ++i) {
      auto p = Do("RetrievePropertiesEx", "PropertyCollector", "ha-property-collector",
                  "<specSet><propSet><type>Task</type><pathSet>info.state</pathSet></propSet>"
                  "<objectSet><obj type=\"Task\">" +
                      task + "</obj></objectSet></specSet>");
      const std::string state = p.response().path("returnval/objects/propSet/val").text();
      if (state == "success" || state == "error") return state;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return "timeout";
  }
  std::string Retrieve(const std::string& type, const std::string& obj, const std::string& path) {
    auto p = Do("RetrievePropertiesEx", "PropertyCollector", "ha-property-collector",
                "<specSet><propSet><type>" + type + "</type><pathSet>" + path +
                    "</pathSet></propSet><objectSet><obj type=\"" + type + "\">" + obj +
                    "</obj></objectSet></specSet>");
    return p.status == 200 ? p.response().path("returnval/objects/propSet/val").text()
                           : "fault:" + p.fault();
  }

  testing::TempDir dir_;
  std::unique_ptr<Service> service_;
  std::string session_;
};

TEST_F(ServiceTest, SessionsAreRequiredAndEnd) {
  auto bad = service_->Handle(Call("Login", "SessionManager", "ha-sessionmgr",
                                   "<userName>root</userName><password>wrong</password>"),
                              "");
  EXPECT_EQ(bad.http_status, 500);
  EXPECT_NE(bad.body.find("InvalidLogin"), std::string::npos);
  EXPECT_TRUE(bad.set_cookie.empty());
  EXPECT_EQ(Do("CreateContainerView", "ViewManager", "ViewManager", "", "nope").fault(),
            "NotAuthenticated");
  // The version-free calls work without one.
  EXPECT_EQ(Do("RetrieveServiceContent", "ServiceInstance", "ServiceInstance", "", "")
                .response()
                .path("returnval/about/apiType")
                .text(),
            "HostAgent");
  // A second session is ended by the first; its cookie stops working.
  auto b = service_->Handle(Call("Login", "SessionManager", "ha-sessionmgr",
                                 "<userName>root</userName><password>s3cret</password>"),
                            "");
  EXPECT_EQ(Retrieve("SessionManager", "ha-sessionmgr", "currentSession.key"), session_);
  EXPECT_EQ(Do("TerminateSession", "SessionManager", "ha-sessionmgr",
               "<sessionId>" + b.set_cookie + "</sessionId>")
                .status,
            200);
  EXPECT_EQ(Do("CurrentTime", "ServiceInstance", "ServiceInstance", "", b.set_cookie).status, 200);
  EXPECT_EQ(Do("DestroyView", "ContainerView", "x", "", b.set_cookie).fault(), "NotAuthenticated");
  EXPECT_EQ(Do("Logout", "SessionManager", "ha-sessionmgr", "").status, 200);
  EXPECT_EQ(Do("DestroyView", "ContainerView", "x", "").fault(), "NotAuthenticated");
}

TEST_F(ServiceTest, ContainerViewTraversalPagesWithTokens) {
  auto view = Do("CreateContainerView", "ViewManager", "ViewManager",
                 "<container type=\"Folder\">ha-folder-root</container>"
                 "<type>VirtualMachine</type><recursive>true</recursive>");
  const std::string id = view.response().child("returnval").text();
  ASSERT_FALSE(id.empty());
  const std::string spec =
      "<specSet><propSet><type>VirtualMachine</type><pathSet>name</pathSet>"
      "<pathSet>runtime.powerState</pathSet></propSet><objectSet><obj type=\"ContainerView\">" +
      id +
      "</obj><skip>true</skip><selectSet xsi:type=\"TraversalSpec\"><name>v</name>"
      "<type>ContainerView</type><path>view</path><skip>false</skip></selectSet></objectSet>"
      "</specSet><options><maxObjects>2</maxObjects></options>";
  auto p = Do("RetrievePropertiesEx", "PropertyCollector", "ha-property-collector", spec);
  ASSERT_EQ(p.status, 200);
  std::vector<std::string> names;
  Node rv = p.response().child("returnval");
  for (int pages = 0; rv; ++pages) {
    ASSERT_LT(pages, 3);
    for (Node o : rv.children("objects")) {
      EXPECT_EQ(o.child("obj").attr("type").value_or(""), "VirtualMachine");
      for (Node ps : o.children("propSet"))
        if (ps.child("name").text() == "name")
          names.push_back(ps.child("val").text());
        else
          EXPECT_EQ(ps.child("val").text(), "poweredOff");
    }
    const std::string token = rv.child("token").text();
    if (token.empty()) break;
    EXPECT_EQ(rv.children("objects").size(), 2u);
    p = Do("ContinueRetrievePropertiesEx", "PropertyCollector", "ha-property-collector",
           "<token>" + token + "</token>");
    rv = p.response().child("returnval");
  }
  std::sort(names.begin(), names.end());
  EXPECT_EQ(names, (std::vector<std::string>{"alpha", "beta", "gamma"}));
  EXPECT_EQ(Do("ContinueRetrievePropertiesEx", "PropertyCollector", "ha-property-collector",
               "<token>99</token>")
                .fault(),
            "InvalidArgument");
  EXPECT_EQ(Do("DestroyView", "ContainerView", id, "").status, 200);
  EXPECT_EQ(Do("DestroyView", "ContainerView", id, "").fault(), "ManagedObjectNotFound");
}

TEST_F(ServiceTest, FaultsNameTheProblem) {
  EXPECT_EQ(Retrieve("VirtualMachine", "vm-nope", "name"), "fault:ManagedObjectNotFound");
  EXPECT_EQ(Retrieve("VirtualMachine", "vm-alpha", "nonsense"), "fault:InvalidProperty");
  EXPECT_EQ(Retrieve("VirtualMachine", "vm-alpha", "snapshot"), "");  // unset: left out
  EXPECT_EQ(Do("Frobnicate", "VirtualMachine", "vm-alpha", "").fault(), "MethodNotFound");
  EXPECT_EQ(Do("PowerOnVM_Task", "VirtualMachine", "vm-../x", "").fault(), "ManagedObjectNotFound");
  auto malformed = service_->Handle("<soapenv:Envelope", session_);
  EXPECT_EQ(malformed.http_status, 500);
  EXPECT_NE(malformed.body.find("InvalidRequest"), std::string::npos);
  // A task's fault: powering off a VM that is off.
  auto t = Do("PowerOffVM_Task", "VirtualMachine", "vm-alpha", "");
  const std::string task = t.response().child("returnval").text();
  EXPECT_EQ(WaitTask(task), "error");
  EXPECT_EQ(Retrieve("Task", task, "info.error.localizedMessage").find("Powered off") !=
                std::string::npos,
            true);
  auto err = Do("RetrievePropertiesEx", "PropertyCollector", "ha-property-collector",
                "<specSet><propSet><type>Task</type><pathSet>info.error</pathSet></propSet>"
                "<objectSet><obj type=\"Task\">" +
                    task + "</obj></objectSet></specSet>");
  Node fault = err.response().path("returnval/objects/propSet/val/fault");
  EXPECT_EQ(fault.xsi_type(), "InvalidPowerState");
  EXPECT_EQ(fault.child("existingState").text(), "poweredOff");
}

TEST_F(ServiceTest, SnapshotsAndChangedAreasFollowTheDisk) {
  ASSERT_EQ(WaitTask(Do("PowerOnVM_Task", "VirtualMachine", "vm-alpha", "")
                         .response()
                         .child("returnval")
                         .text()),
            "success");
  {
    auto ds = host::Datastore::Open(dir_.path());
    auto vm = ds->OpenVm("alpha");
    std::vector<uint8_t> data(128 << 10, 0x5a);
    ASSERT_TRUE((*vm)->Write(0, 1 << 20, data).ok());
  }
  auto t = Do("CreateSnapshot_Task", "VirtualMachine", "vm-alpha",
              "<name>s1</name><memory>false</memory><quiesce>false</quiesce>");
  const std::string task = t.response().child("returnval").text();
  ASSERT_EQ(WaitTask(task), "success");
  EXPECT_EQ(Retrieve("Task", task, "info.result"), "snapshot-alpha-1");
  EXPECT_EQ(Retrieve("VirtualMachine", "vm-alpha", "snapshot.currentSnapshot"), "snapshot-alpha-1");
  auto devices = Do("RetrievePropertiesEx", "PropertyCollector", "ha-property-collector",
                    "<specSet><propSet><type>VirtualMachineSnapshot</type><pathSet>config.hardware."
                    "device</pathSet></propSet><objectSet><obj type=\"VirtualMachineSnapshot\">"
                    "snapshot-alpha-1</obj></objectSet></specSet>");
  Node disk;
  for (Node d : devices.response().path("returnval/objects/propSet/val").children("VirtualDevice"))
    if (d.xsi_type() == "VirtualDisk") disk = d;
  ASSERT_TRUE(disk);
  EXPECT_EQ(disk.path("backing/fileName").text(), "[datastore1] alpha/alpha.vmdk");
  EXPECT_EQ(disk.child("capacityInBytes").text(), std::to_string(4 << 20));
  EXPECT_FALSE(disk.path("backing/changeId").text().empty());
  auto q = Do("QueryChangedDiskAreas", "VirtualMachine", "vm-alpha",
              "<snapshot type=\"VirtualMachineSnapshot\">snapshot-alpha-1</snapshot>"
              "<deviceKey>2000</deviceKey><startOffset>0</startOffset><changeId>*</changeId>");
  ASSERT_EQ(q.status, 200);
  Node areas = q.response().child("returnval");
  EXPECT_EQ(areas.child("length").text(), std::to_string(4 << 20));
  ASSERT_EQ(areas.children("changedArea").size(), 1u);
  EXPECT_EQ(areas.path("changedArea/start").text(), std::to_string(1 << 20));
  EXPECT_EQ(areas.path("changedArea/length").text(), std::to_string(128 << 10));
  // An unknown change id is FileFault (a client backs up in full), a bad key InvalidArgument.
  EXPECT_EQ(Do("QueryChangedDiskAreas", "VirtualMachine", "vm-alpha",
               "<snapshot type=\"VirtualMachineSnapshot\">snapshot-alpha-1</snapshot><deviceKey>"
               "2000</deviceKey><startOffset>0</startOffset><changeId>52 00 00 00 00 00 00 00-00 "
               "00 00 00 00 00 00 00/9</changeId>")
                .fault(),
            "FileFault");
  EXPECT_EQ(Do("QueryChangedDiskAreas", "VirtualMachine", "vm-alpha",
               "<deviceKey>7</deviceKey><startOffset>0</startOffset><changeId>*</changeId>")
                .fault(),
            "InvalidArgument");
  // Revert is refused while the VM runs (vmhost has no memory state to go back to).
  auto rv = Do("RevertToSnapshot_Task", "VirtualMachineSnapshot", "snapshot-alpha-1", "");
  EXPECT_EQ(WaitTask(rv.response().child("returnval").text()), "error");
  auto rm = Do("RemoveSnapshot_Task", "VirtualMachineSnapshot", "snapshot-alpha-1",
               "<removeChildren>false</removeChildren>");
  EXPECT_EQ(WaitTask(rm.response().child("returnval").text()), "success");
  EXPECT_EQ(Retrieve("VirtualMachine", "vm-alpha", "snapshot"), "");
  EXPECT_EQ(Retrieve("VirtualMachineSnapshot", "snapshot-alpha-1", "config"),
            "fault:ManagedObjectNotFound");
}

TEST_F(ServiceTest, OneTaskPerVmAndDestroy) {
  // A quiesced snapshot whose freeze hook takes a while keeps a task running; a second task on
  // the VM meanwhile is TaskInProgress naming the first.
  const std::string hook = dir_ / "slow-freeze.sh";
  testing::Shell("printf '#!/bin/sh\\nsleep 0.5\\n' > " + hook + " && chmod +x " + hook);
  testing::Shell("printf 'vmhost.freezeHook = \"" + hook + "\"\\n' >> " +
                 (dir_ / "gamma/gamma.vmx"));
  auto first = Do("CreateSnapshot_Task", "VirtualMachine", "vm-gamma",
                  "<name>q</name><memory>false</memory><quiesce>true</quiesce>");
  const std::string task = first.response().child("returnval").text();
  auto second = Do("PowerOnVM_Task", "VirtualMachine", "vm-gamma", "");
  ASSERT_EQ(second.fault(), "TaskInProgress");
  EXPECT_EQ(second.doc->root()
                .child("Body")
                .child("Fault")
                .path("detail")
                .children()[0]
                .child("task")
                .text(),
            task);
  EXPECT_EQ(WaitTask(task), "success");
  auto tree = Do("RetrievePropertiesEx", "PropertyCollector", "ha-property-collector",
                 "<specSet><propSet><type>VirtualMachine</type><pathSet>snapshot</pathSet>"
                 "</propSet><objectSet><obj type=\"VirtualMachine\">vm-gamma</obj></objectSet>"
                 "</specSet>");
  EXPECT_EQ(tree.response().path("returnval/objects/propSet/val/rootSnapshotList/quiesced").text(),
            "true");
  // SessionIsActive, for this session and for a made-up one.
  EXPECT_EQ(Do("SessionIsActive", "SessionManager", "ha-sessionmgr",
               "<sessionID>" + session_ + "</sessionID><userName>root</userName>")
                .response()
                .child("returnval")
                .text(),
            "true");
  EXPECT_EQ(Do("SessionIsActive", "SessionManager", "ha-sessionmgr",
               "<sessionID>nope</sessionID><userName>root</userName>")
                .response()
                .child("returnval")
                .text(),
            "false");
  // Destroy: the VM and its files go; a destroyed VM is ManagedObjectNotFound.
  auto d = Do("Destroy_Task", "VirtualMachine", "vm-gamma", "");
  EXPECT_EQ(WaitTask(d.response().child("returnval").text()), "success");
  EXPECT_EQ(Retrieve("VirtualMachine", "vm-gamma", "name"), "fault:ManagedObjectNotFound");
  EXPECT_FALSE(host::Datastore::Open(dir_.path())->OpenVm("gamma").ok());
}

TEST_F(ServiceTest, DisableMethodsBlocksPowerOn) {
  EXPECT_EQ(Do("DisableMethods", "AuthorizationManager", "ha-authmgr",
               "<entity type=\"VirtualMachine\">vm-beta</entity><method><method>PowerOnVM_Task"
               "</method></method><sourceId>vmbackup restore</sourceId>")
                .status,
            200);
  EXPECT_EQ(Retrieve("VirtualMachine", "vm-beta", "disabledMethod"), "PowerOnVM_Task");
  auto on = Do("PowerOnVM_Task", "VirtualMachine", "vm-beta", "");
  EXPECT_EQ(WaitTask(on.response().child("returnval").text()), "error");
  EXPECT_EQ(Do("EnableMethods", "AuthorizationManager", "ha-authmgr",
               "<entity type=\"VirtualMachine\">vm-beta</entity><method>PowerOnVM_Task</method>"
               "<sourceId>vmbackup restore</sourceId>")
                .status,
            200);
  on = Do("PowerOnVM_Task", "VirtualMachine", "vm-beta", "");
  EXPECT_EQ(WaitTask(on.response().child("returnval").text()), "success");
  // extraConfig: tools' keys are set and removed; others are refused.
  auto set = [&](const std::string& key, const std::string& value) {
    auto t = Do("ReconfigVM_Task", "VirtualMachine", "vm-beta",
                "<spec><extraConfig><key>" + key + "</key><value xsi:type=\"xsd:string\">" + value +
                    "</value></extraConfig></spec>");
    return WaitTask(t.response().child("returnval").text());
  };
  EXPECT_EQ(set("vmbackup.note", "kept"), "success");
  EXPECT_NE(Retrieve("VirtualMachine", "vm-beta", "config.extraConfig").find("kept"),
            std::string::npos);
  EXPECT_EQ(set("vmbackup.note", ""), "success");
  EXPECT_EQ(Retrieve("VirtualMachine", "vm-beta", "config.extraConfig").find("kept"),
            std::string::npos);
  EXPECT_EQ(set("scsi0:0.fileName", "/etc/passwd"), "error");
  EXPECT_EQ(Retrieve("VirtualMachine", "vm-beta", "runtime.powerState"), "poweredOn");
}

}  // namespace
}  // namespace vmbackup::vsphere_api
