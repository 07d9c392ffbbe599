#include "xml/xml.h"

#include <gtest/gtest.h>

namespace vmbackup::xml {
namespace {

// vcsim's answer to a task poll, verbatim in shape: xsi:type under another prefix.
constexpr const char* kTaskAnswer =
    R"(<?xml version="1.0" encoding="UTF-8"?>
<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soapenv:Body><RetrievePropertiesResponse xmlns="urn:vim25"><returnval><obj type="Task">task-81</obj><propSet><name>info</name><val xmlns:XMLSchema-instance="http://www.w3.org/2001/XMLSchema-instance" XMLSchema-instance:type="TaskInfo"><state>success</state><result XMLSchema-instance:type="ManagedObjectReference" type="VirtualMachineSnapshot">snapshot-82</result></val></propSet></returnval></RetrievePropertiesResponse></soapenv:Body></soapenv:Envelope>)";

TEST(XmlTest, ResolvesXsiTypeUnderAnyPrefixAndMatchesByLocalName) {
  auto doc = Document::Parse(kTaskAnswer, "task answer");
  ASSERT_TRUE(doc.ok()) << doc.error().ToString();
  Node val = doc->root().path("Body/RetrievePropertiesResponse/returnval/propSet/val");
  ASSERT_TRUE(val);
  EXPECT_EQ(val.xsi_type(), "TaskInfo");
  EXPECT_EQ(val.ns(), "urn:vim25");
  EXPECT_EQ(val.child("state").text(), "success");
  Node result = val.child("result");
  EXPECT_EQ(result.xsi_type(), "ManagedObjectReference");
  EXPECT_EQ(result.attr("type").value_or(""), "VirtualMachineSnapshot");
  EXPECT_EQ(result.text(), "snapshot-82");
  // A plain attribute named "type" is not xsi:type, and vice versa.
  EXPECT_FALSE(result.attr("type", kXsiNs).value_or("") == "VirtualMachineSnapshot");
}

TEST(XmlTest, AbsentNodesAreHarmless) {
  auto doc = Document::Parse("<a><b>1</b><b>2</b><c/></a>", "t");
  ASSERT_TRUE(doc.ok());
  EXPECT_EQ(doc->root().children("b").size(), 2u);
  EXPECT_EQ(doc->root().children().size(), 3u);
  Node none = doc->root().path("x/y/z");
  EXPECT_FALSE(none);
  EXPECT_EQ(none.text(), "");
  EXPECT_EQ(none.children().size(), 0u);
  EXPECT_FALSE(none.attr("q"));
}

TEST(XmlTest, MalformedInputIsCorruptionNamingWhere) {
  for (const char* bad : {"", "<a>", "<a></b>", "not xml", "<a x='1' x='2'/>"}) {
    auto doc = Document::Parse(bad, "the answer to Login");
    ASSERT_FALSE(doc.ok()) << bad;
    EXPECT_EQ(doc.error().code(), ErrorCode::kCorruption) << bad;
    EXPECT_NE(doc.error().message().find("the answer to Login"), std::string::npos);
  }
}

TEST(XmlTest, ExternalEntitiesAreNotRead) {
  // An XXE attempt: the file's content must never appear.
  const char* xxe =
      "<?xml version=\"1.0\"?><!DOCTYPE a [<!ENTITY e SYSTEM \"file:///etc/hostname\">]>"
      "<a>&e;</a>";
  auto doc = Document::Parse(xxe, "t");
  if (doc.ok()) {
    EXPECT_EQ(doc->root().text().find('\n'), std::string::npos);  // no file content
    EXPECT_LT(doc->root().text().size(), 2u);
  }
  // Entity expansion bombs are refused or stay small.
  std::string bomb = "<?xml version=\"1.0\"?><!DOCTYPE a [<!ENTITY a \"aaaaaaaaaa\">";
  for (int i = 1; i < 10; ++i) {
    bomb += "<!ENTITY a" + std::to_string(i) + " \"";
    for (int k = 0; k < 10; ++k) bomb += i == 1 ? "&a;" : "&a" + std::to_string(i - 1) + ";";
    bomb += "\">";
  }
  bomb += "]><a>&a9;</a>";
  auto b = Document::Parse(bomb, "t");
  if (b.ok()) {
    EXPECT_LT(b->root().text().size(), size_t(1) << 20);
  }
}

TEST(XmlTest, EscapeRoundTrips) {
  const std::string nasty = "a<b>&\"c'</x>";
  auto doc = Document::Parse("<v a=\"" + Escape(nasty) + "\">" + Escape(nasty) + "</v>", "t");
  ASSERT_TRUE(doc.ok());
  EXPECT_EQ(doc->root().text(), nasty);
  EXPECT_EQ(doc->root().attr("a").value_or(""), nasty);
}

}  // namespace
TEST(XmlTest, EditsAndWritesBackWithTextEscaped) {
  auto doc = Document::Parse(
      "<domain><name>a</name><uuid>u</uuid><disk><source file='x'/></disk></domain>", "t");
  ASSERT_TRUE(doc.ok());
  Node root = doc->root();
  root.child("name").SetText("b & <c>");
  Node uuid = root.child("uuid");
  uuid.Remove();
  EXPECT_FALSE(uuid);
  root.path("disk/source").SetAttr("file", "/d/\"q\".qcow2");
  root.child("disk").AddChild("target").SetAttr("dev", "vda");
  root.child("disk").child("source").RemoveAttr("nothing");
  const std::string out = doc->ToString();
  auto back = Document::Parse(out, "written");
  ASSERT_TRUE(back.ok()) << out;
  EXPECT_EQ(back->root().child("name").text(), "b & <c>");
  EXPECT_FALSE(back->root().child("uuid"));
  EXPECT_EQ(back->root().path("disk/source").attr("file").value_or(""), "/d/\"q\".qcow2");
  EXPECT_EQ(back->root().path("disk/target").attr("dev").value_or(""), "vda");
}

}  // namespace vmbackup::xml
