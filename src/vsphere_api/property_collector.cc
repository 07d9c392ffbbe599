#include "vsphere_api/property_collector.h"

#include <map>
#include <set>

#include "base/strings.h"

namespace vmbackup::vsphere_api {
namespace {

using xml::Node;

struct Traversal {
  std::string name, type, path;
  bool skip = false;
  std::vector<Node> select;  // nested selectSet elements
};

struct PropSpec {
  std::string type;
  bool all = false;
  std::vector<std::string> paths;
};

bool True(Node n) { return n.text() == "true" || n.text() == "1"; }

// Top-level properties each managed object type has (set or not): a path outside these is
// InvalidProperty; an unset one inside them is simply left out of the answer.
const std::map<std::string, std::set<std::string>>& KnownProperties() {
  static const auto* table = new std::map<std::string, std::set<std::string>>{
      {"ManagedEntity",
       {"name", "parent", "overallStatus", "configStatus", "effectiveRole", "permission",
        "recentTask", "declaredAlarmState", "triggeredAlarmState", "alarmActionsEnabled", "tag",
        "value", "availableField", "customValue", "disabledMethod"}},
      {"VirtualMachine",
       {"config", "runtime", "snapshot", "rootSnapshot", "layoutEx", "layout", "summary",
        "datastore", "guest", "guestHeartbeatStatus", "storage", "network", "resourcePool",
        "resourceConfig", "capability", "environmentBrowser", "parentVApp", "runtime"}},
      {"Folder", {"childEntity", "childType", "namespace"}},
      {"Datacenter",
       {"vmFolder", "hostFolder", "datastoreFolder", "networkFolder", "datastore", "network",
        "configuration"}},
      {"Datastore",
       {"summary", "info", "vm", "host", "browser", "capability", "iormConfiguration"}},
      {"VirtualMachineSnapshot", {"config", "childSnapshot", "vm"}},
      {"ServiceInstance", {"content", "capability", "serverClock"}},
      {"Task", {"info"}},
      {"ContainerView", {"view", "container", "type", "recursive"}},
      {"SessionManager", {"currentSession", "sessionList", "message", "defaultLocale"}},
      {"PropertyCollector", {"filter"}},
  };
  return *table;
}

bool IsManagedEntity(const std::string& t) {
  return t == "VirtualMachine" || t == "Folder" || t == "Datacenter" || t == "Datastore" ||
         t == "ManagedEntity";
}

bool Known(const std::string& type, const std::string& top) {
  const auto& t = KnownProperties();
  if (auto it = t.find(type); it != t.end() && it->second.count(top)) return true;
  if (IsManagedEntity(type)) return t.at("ManagedEntity").count(top) > 0;
  return false;
}

class Evaluator {
 public:
  Evaluator(PropertySource& source, Node spec) : source_(source), spec_(spec) {}

  FaultOr<std::vector<ObjectProperties>> Run() {
    for (Node p : spec_.children("propSet")) {
      PropSpec ps;
      ps.type = p.child("type").text();
      ps.all = True(p.child("all"));
      for (Node path : p.children("pathSet")) ps.paths.push_back(path.text());
      if (ps.type.empty()) return InvalidArgumentFault("a propSet without a type", "type");
      props_.push_back(std::move(ps));
    }
    // Named traversal specs anywhere in the filter, for SelectionSpec references.
    for (Node o : spec_.children("objectSet")) IndexNames(o, 0);
    for (Node o : spec_.children("objectSet")) {
      Node obj = o.child("obj");
      MoRef ref{obj.attr("type").value_or(""), obj.text()};
      if (ref.type.empty() || ref.value.empty())
        return InvalidArgumentFault("an objectSet without obj", "obj");
      FaultOr<Value> props = Get(ref);
      if (!props.ok()) return props.fault();
      if (!True(o.child("skip"))) Include(ref);
      for (Node s : o.children("selectSet")) {
        if (auto f = Follow(ref, s, 0); !f.type.empty()) return f;
      }
    }
    std::vector<ObjectProperties> out;
    for (const MoRef& ref : order_) {
      FaultOr<Value> props = Get(ref);
      if (!props.ok()) continue;  // gone since it was reached: left out, as vSphere does
      ObjectProperties o;
      o.obj = ref;
      bool wanted = false;
      std::set<std::string> seen;
      for (const PropSpec& ps : props_) {
        if (!IsA(ref.type, ps.type)) continue;
        wanted = true;
        std::vector<std::string> paths = ps.paths;
        if (ps.all) {
          paths.clear();
          // every property the object has: the top-level fields
          for (const auto& top : TopFields(*props)) paths.push_back(top);
        }
        for (const std::string& path : paths) {
          if (!seen.insert(path).second) continue;
          const std::string top = path.substr(0, path.find('.'));
          if (!Known(ref.type, top) && !props->Field(top)) return InvalidPropertyFault(path);
          const Value* v = props->Path(path);
          if (!v) continue;
          o.props.emplace_back(path, v->Xml("val", true));
        }
      }
      if (wanted) out.push_back(std::move(o));
    }
    return out;
  }

 private:
  static std::vector<std::string> TopFields(const Value& v) {
    std::vector<std::string> names;
    for (const auto& n : {"name",
                          "parent",
                          "config",
                          "runtime",
                          "snapshot",
                          "rootSnapshot",
                          "layoutEx",
                          "summary",
                          "datastore",
                          "disabledMethod",
                          "overallStatus",
                          "childEntity",
                          "childType",
                          "vmFolder",
                          "hostFolder",
                          "datastoreFolder",
                          "networkFolder",
                          "info",
                          "vm",
                          "childSnapshot",
                          "content",
                          "view",
                          "container",
                          "type",
                          "recursive",
                          "currentSession",
                          "sessionList"}) {
      if (v.Field(n)) names.push_back(n);
    }
    return names;
  }

  FaultOr<Value> Get(const MoRef& ref) {
    auto it = cache_.find(ref);
    if (it != cache_.end()) return it->second;
    FaultOr<Value> v = source_.Properties(ref);
    if (v.ok()) cache_.emplace(ref, *v);
    return v;
  }

  void Include(const MoRef& ref) {
    if (included_.insert(ref).second && order_.size() < kMaxRetrievedObjects) order_.push_back(ref);
  }

  void IndexNames(Node n, int depth) {
    if (depth > 32) return;
    for (Node s : n.children("selectSet")) {
      const std::string name = s.child("name").text();
      if (!name.empty() && s.child("type") && !named_.count(name)) named_[name] = s;
      IndexNames(s, depth + 1);
    }
  }

  // Follows one selectSet element from `from`; a fault (non-empty type) for a bad spec.
  Fault Follow(const MoRef& from, Node sel, int depth) {
    if (depth > 64 || order_.size() >= kMaxRetrievedObjects) return {};
    Node ts = sel;
    if (!sel.child("type")) {  // a SelectionSpec: a reference by name
      auto it = named_.find(sel.child("name").text());
      if (it == named_.end())
        return InvalidArgumentFault(
            "selectSet names an unknown spec '" + sel.child("name").text() + "'", "selectSet");
      ts = it->second;
    }
    const std::string type = ts.child("type").text(), path = ts.child("path").text();
    if (path.empty()) return InvalidArgumentFault("a TraversalSpec without a path", "path");
    if (!IsA(from.type, type)) return {};
    const std::string key = ts.child("name").text() + "|" + from.type + ":" + from.value;
    if (!visited_.insert(key + "|" + path).second) return {};
    FaultOr<Value> props = Get(from);
    if (!props.ok()) return {};
    if (!Known(from.type, path.substr(0, path.find('.'))) && !props->Field(path))
      return InvalidPropertyFault(path);
    const Value* v = props->Path(path);
    if (!v) return {};
    std::vector<MoRef> targets;
    if (v->kind() == Value::Kind::kMoRef) targets.push_back({v->type(), v->text()});
    for (const Value& item : v->items())
      if (item.kind() == Value::Kind::kMoRef) targets.push_back({item.type(), item.text()});
    const bool skip = True(ts.child("skip"));
    for (const MoRef& t : targets) {
      if (!skip) Include(t);
      for (Node s : ts.children("selectSet")) {
        if (auto f = Follow(t, s, depth + 1); !f.type.empty()) return f;
      }
    }
    return {};
  }

  PropertySource& source_;
  Node spec_;
  std::vector<PropSpec> props_;
  std::map<std::string, Node> named_;
  std::map<MoRef, Value> cache_;
  std::set<MoRef> included_;
  std::vector<MoRef> order_;
  std::set<std::string> visited_;
};

}  // namespace

bool IsA(const std::string& actual, const std::string& wanted) {
  if (actual == wanted || wanted == "ManagedObject") return true;
  if (wanted == "ManagedEntity" || wanted == "ExtensibleManagedObject")
    return IsManagedEntity(actual);
  return false;
}

FaultOr<std::vector<ObjectProperties>> EvaluateFilterSpec(PropertySource& source, Node spec) {
  Evaluator e(source, spec);
  return e.Run();
}

std::string ObjectContentXml(const ObjectProperties& o, const char* element_name) {
  std::string s = std::string("<") + element_name + "><obj type=\"" + xml::Escape(o.obj.type) +
                  "\">" + xml::Escape(o.obj.value) + "</obj>";
  for (const auto& [name, val] : o.props)
    s += "<propSet><name>" + xml::Escape(name) + "</name>" + val + "</propSet>";
  return s + "</" + element_name + ">";
}

FaultOr<std::vector<std::string>> RetrieveObjectContents(PropertySource& source, Node call,
                                                         const char* element_name) {
  std::vector<std::string> all;
  auto specs = call.children("specSet");
  if (specs.empty()) return InvalidArgumentFault("no specSet", "specSet");
  for (Node spec : specs) {
    FaultOr<std::vector<ObjectProperties>> part = EvaluateFilterSpec(source, spec);
    if (!part.ok()) return part.fault();
    for (const auto& o : *part) all.push_back(ObjectContentXml(o, element_name));
  }
  return all;
}

}  // namespace vmbackup::vsphere_api
