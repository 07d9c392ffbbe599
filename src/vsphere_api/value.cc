#include "vsphere_api/value.h"

#include <chrono>
#include <ctime>

#include "base/strings.h"
#include "xml/xml.h"

namespace vmbackup::vsphere_api {
namespace {

std::string PrimitiveXsdType(Value::Kind k) {
  switch (k) {
    case Value::Kind::kString: return "xsd:string";
    case Value::Kind::kBool: return "xsd:boolean";
    case Value::Kind::kInt: return "xsd:int";
    case Value::Kind::kLong: return "xsd:long";
    case Value::Kind::kDateTime: return "xsd:dateTime";
    default: return "";
  }
}

std::string ArrayType(const std::string& element_type) {
  std::string t = element_type;
  if (!t.empty()) t[0] = char(std::toupper(static_cast<unsigned char>(t[0])));
  return "ArrayOf" + t;
}

}  // namespace

int64_t NowMicros() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string FormatDateTime(int64_t unix_us) {
  const time_t secs = time_t(unix_us / 1000000);
  struct tm tm_utc;
  gmtime_r(&secs, &tm_utc);
  char buf[64];
  strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm_utc);
  return StrFormat("%s.%06lldZ", buf, (long long)(unix_us % 1000000));
}

Value Value::String(std::string s) {
  Value v;
  v.kind_ = Kind::kString;
  v.text_ = std::move(s);
  return v;
}

Value Value::Enum(std::string type, std::string s) {
  Value v = String(std::move(s));
  v.type_ = std::move(type);
  return v;
}

Value Value::Bool(bool b) {
  Value v;
  v.kind_ = Kind::kBool;
  v.text_ = b ? "true" : "false";
  return v;
}

Value Value::Int(int64_t i) {
  Value v;
  v.kind_ = Kind::kInt;
  v.text_ = std::to_string(i);
  return v;
}

Value Value::Long(int64_t i) {
  Value v;
  v.kind_ = Kind::kLong;
  v.text_ = std::to_string(i);
  return v;
}

Value Value::DateTime(int64_t unix_us) {
  Value v;
  v.kind_ = Kind::kDateTime;
  v.text_ = FormatDateTime(unix_us);
  return v;
}

Value Value::Ref(const MoRef& r) {
  Value v;
  v.kind_ = Kind::kMoRef;
  v.type_ = r.type;
  v.text_ = r.value;
  return v;
}

Value Value::Object(std::string type) {
  Value v;
  v.kind_ = Kind::kObject;
  v.type_ = std::move(type);
  return v;
}

Value Value::Array(std::string element_type) {
  Value v;
  v.kind_ = Kind::kArray;
  v.type_ = std::move(element_type);
  return v;
}

Value& Value::Set(std::string name, Value v) {
  if (!v.unset()) fields_.emplace_back(std::move(name), std::move(v));
  return *this;
}

Value& Value::Add(Value v) {
  items_.push_back(std::move(v));
  return *this;
}

const Value* Value::Field(std::string_view name) const {
  for (const auto& [n, v] : fields_)
    if (n == name) return &v;
  return nullptr;
}

const Value* Value::Path(std::string_view dotted) const {
  const Value* v = this;
  while (!dotted.empty()) {
    if (v->kind_ != Kind::kObject) return nullptr;
    const size_t dot = dotted.find('.');
    v = v->Field(dotted.substr(0, dot));
    if (!v) return nullptr;
    dotted = dot == std::string_view::npos ? std::string_view() : dotted.substr(dot + 1);
  }
  return v;
}

std::string Value::Xml(std::string_view name, bool typed) const {
  const std::string n(name);
  typed = typed || any_;
  switch (kind_) {
    case Kind::kUnset: return "";
    case Kind::kMoRef:
      return "<" + n + " type=\"" + xml::Escape(type_) + "\"" +
             (typed ? " xsi:type=\"ManagedObjectReference\"" : "") + ">" + xml::Escape(text_) +
             "</" + n + ">";
    case Kind::kObject: {
      std::string s = "<" + n + " xsi:type=\"" + type_ + "\">";
      for (const auto& [fname, f] : fields_) {
        if (f.kind_ == Kind::kArray) {
          for (const Value& item : f.items_) s += item.Xml(fname, false);
        } else {
          s += f.Xml(fname, false);
        }
      }
      return s + raw_ + "</" + n + ">";
    }
    case Kind::kArray: {
      // Only a property's own value is a whole array element; inside data objects an array is
      // written as repeated fields (above).
      std::string s = "<" + n + " xsi:type=\"" + ArrayType(type_) + "\">";
      for (const Value& item : items_) s += item.Xml(type_, false);
      return s + "</" + n + ">";
    }
    default:
      const std::string t = type_.empty() ? PrimitiveXsdType(kind_) : type_;
      return "<" + n + (typed ? " xsi:type=\"" + t + "\"" : "") + ">" + xml::Escape(text_) + "</" +
             n + ">";
  }
}

}  // namespace vmbackup::vsphere_api
