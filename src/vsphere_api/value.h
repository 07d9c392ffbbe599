// Values of the vSphere API as the server builds them: primitives, managed object references,
// data objects and arrays, with the vim25 type of each, so that an answer carries the xsi:type
// every client needs (pyvmomi reads nothing it cannot type). Property paths ("config.hardware.
// device") are followed through data objects, as the PropertyCollector does.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace vmbackup::vsphere_api {

struct MoRef {
  std::string type, value;
  bool operator==(const MoRef&) const = default;
  bool operator<(const MoRef& o) const { return type != o.type ? type < o.type : value < o.value; }
};

class Value {
 public:
  enum class Kind { kUnset, kString, kBool, kInt, kLong, kDateTime, kMoRef, kObject, kArray };

  Value() = default;
  static Value String(std::string s);
  // A value of a vim25 enumeration ("VirtualMachinePowerState"): a string with that type.
  static Value Enum(std::string type, std::string s);
  static Value Bool(bool b);
  static Value Int(int64_t i);   // xsd:int
  static Value Long(int64_t i);  // xsd:long
  static Value DateTime(int64_t unix_us);
  static Value Ref(const MoRef& r);
  // A data object of vim25 type `type` ("VirtualDisk"); fields are added with Set().
  static Value Object(std::string type);
  // An array whose elements have vim25 type `element_type` ("VirtualDevice", "string",
  // "ManagedObjectReference"): the array type is "ArrayOf" + element_type, capitalized.
  static Value Array(std::string element_type);

  Kind kind() const { return kind_; }
  bool unset() const { return kind_ == Kind::kUnset; }
  const std::string& type() const { return type_; }
  const std::string& text() const { return text_; }

  // Data objects: adds a field (an unset value is left out, as vSphere leaves out unset
  // properties). Returns *this for chaining.
  Value& Set(std::string name, Value v);
  // Marks a field whose declared type is anyType (TaskInfo.result): written with xsi:type.
  Value& AsAny() {
    any_ = true;
    return *this;
  }
  // Data objects: XML appended after the fields, written by the caller (a fault's own fields).
  Value& SetRawFields(std::string xml) {
    raw_ = std::move(xml);
    return *this;
  }
  // Arrays: appends an element.
  Value& Add(Value v);
  const std::vector<Value>& items() const { return items_; }
  // A field of a data object, or nullptr.
  const Value* Field(std::string_view name) const;
  // Follows a dotted property path; nullptr when a step is missing or not a data object.
  const Value* Path(std::string_view dotted) const;

  // The value as the element `name`. `typed` adds xsi:type (a property's <val>, an anyType,
  // a data object whose declared type may be a base type); data objects always carry it.
  std::string Xml(std::string_view name, bool typed) const;

 private:
  Kind kind_ = Kind::kUnset;
  std::string type_;  // vim25 or xsd type; for references the referred type
  std::string text_;
  std::vector<std::pair<std::string, Value>> fields_;
  std::vector<Value> items_;
  std::string raw_;
  bool any_ = false;
};

int64_t NowMicros();  // since the Unix epoch
// "2026-11-30T09:54:28.123456Z"
std::string FormatDateTime(int64_t unix_us);

}  // namespace vmbackup::vsphere_api
