// The PropertyCollector's evaluation of a PropertyFilterSpec: the objects of each objectSet
// and of its traversal (TraversalSpec and SelectionSpec by name, as clients write them to walk
// folders and container views), and for each object the properties its propSet asks for
// (pathSet, or all), following dotted paths into data objects.
#pragma once

#include <string>
#include <vector>

#include "vsphere_api/soap.h"
#include "vsphere_api/value.h"
#include "xml/xml.h"

namespace vmbackup::vsphere_api {

// Where properties come from: every property of an object, as the fields of one value.
class PropertySource {
 public:
  virtual ~PropertySource() = default;
  virtual FaultOr<Value> Properties(const MoRef& obj) = 0;
};

// At most this many objects per RetrieveProperties, however the traversal fans out.
inline constexpr size_t kMaxRetrievedObjects = 100000;

// One object's answer: its moref and, per property path asked, the value as <val> XML.
struct ObjectProperties {
  MoRef obj;
  std::vector<std::pair<std::string, std::string>> props;
};

// Evaluates one PropertyFilterSpec (a specSet, or CreateFilter's spec).
FaultOr<std::vector<ObjectProperties>> EvaluateFilterSpec(PropertySource& source, xml::Node spec);
// <NAME><obj/><propSet/>...</NAME>
std::string ObjectContentXml(const ObjectProperties& o, const char* element_name);

// Evaluates every <specSet> child of `call` (RetrieveProperties, RetrievePropertiesEx). The
// answer is one <NAME>ObjectContent</NAME> string per object, in order. Faults:
// InvalidArgument for a malformed spec, InvalidProperty for a property the type does not
// have, ManagedObjectNotFound for an objectSet object that does not exist.
FaultOr<std::vector<std::string>> RetrieveObjectContents(PropertySource& source, xml::Node call,
                                                         const char* element_name);

// Whether an object of type `actual` is a `wanted` (the type or one of its base types).
bool IsA(const std::string& actual, const std::string& wanted);

}  // namespace vmbackup::vsphere_api
