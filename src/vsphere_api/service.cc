#include "vsphere_api/service.h"

#include <set>

#include "base/strings.h"
#include "vsphere_api/property_collector.h"

namespace vmbackup::vsphere_api {
namespace {

using xml::Node;

constexpr size_t kMaxPendingPages = 1000;
constexpr size_t kMaxViewsPerSession = 100;

std::string El(const char* name, const std::string& text) {
  return std::string("<") + name + ">" + xml::Escape(text) + "</" + name + ">";
}

std::string RefXml(const char* name, const MoRef& r) { return Value::Ref(r).Xml(name, false); }

MoRef RefArg(Node n) { return {n.attr("type").value_or(""), n.text()}; }

Value UserSession(const Session& s) {
  Value us = Value::Object("UserSession");
  us.Set("key", Value::String(s.key))
      .Set("userName", Value::String(s.user))
      .Set("fullName", Value::String(s.user))
      .Set("loginTime", Value::DateTime(s.login_us))
      .Set("lastActiveTime", Value::DateTime(s.last_active_us))
      .Set("locale", Value::String("en"))
      .Set("messageLocale", Value::String("en"));
  return us;
}

bool Is(const MoRef& r, const char* type, const char* value) {
  return r.type == type && r.value == value;
}

}  // namespace

// Properties as one request sees them: the inventory, plus the server's own objects (tasks,
// views, the caller's session).
class RequestSource final : public PropertySource {
 public:
  RequestSource(Service& s, const Session& session) : s_(s), session_(session) {}
  FaultOr<Value> Properties(const MoRef& obj) override { return s_.Properties(obj, session_); }

 private:
  Service& s_;
  const Session& session_;
};

Service::Service(ServiceOptions options)
    : options_(std::move(options)),
      inventory_(options_.inventory),
      sessions_(options_.user, options_.password, options_.login_fail_delay_ms) {}

Service::Answer Service::Handle(std::string_view body, const std::string& cookie_session) {
  Result<SoapRequest> req = ParseSoapRequest(body);
  if (!req) return {500, FaultEnvelope(InvalidRequestFault(req.error().message())), ""};
  const SoapRequest& r = *req;
  Answer a;
  FaultOr<std::string> out = std::string();
  if (r.method == "RetrieveServiceContent" || r.method == "CurrentTime") {
    if (!Is(r.this_ref, "ServiceInstance", "ServiceInstance")) {
      out = ManagedObjectNotFoundFault(r.this_ref);
    } else if (r.method == "CurrentTime") {
      sessions_.Find(cookie_session);  // keeps a session alive, as a keepalive wants
      out = Value::DateTime(NowMicros()).Xml("returnval", false);
    } else {
      out = inventory_.ServiceContent().Xml("returnval", false);
    }
  } else if (r.method == "Login") {
    if (!Is(r.this_ref, "SessionManager", "ha-sessionmgr")) {
      out = ManagedObjectNotFoundFault(r.this_ref);
    } else {
      auto s = sessions_.Login(r.Arg("userName").text(), r.Arg("password").text());
      if (!s && s.error().code() == ErrorCode::kLocked) {
        out = Fault{"RequestCanceled", s.error().message(), ""};
      } else if (!s) {
        out = Fault{"InvalidLogin", s.error().message(), ""};
      } else {
        out = UserSession(*s).Xml("returnval", false);
        a.set_cookie = s->key;
      }
    }
  } else {
    std::optional<Session> s = sessions_.Find(cookie_session);
    if (!s) {
      out = NotAuthenticatedFault();
    } else {
      out = Dispatch(r, *s);
    }
  }
  if (!out.ok()) return {500, FaultEnvelope(out.fault()), ""};
  a.body = AnswerEnvelope(r.method, *out);
  return a;
}

FaultOr<std::string> Service::Dispatch(const SoapRequest& r, const Session& s) {
  const std::string& t = r.this_ref.type;
  if (t == "SessionManager") return SessionMethod(r, s);
  if (t == "PropertyFilter") return UpdateMethod(r, s);
  if (t == "PropertyCollector" || t == "ViewManager" || t == "ContainerView")
    return PropertyMethod(r, s);
  if (t == "SearchIndex") return SearchMethod(r);
  if (t == "VirtualMachine") return VmMethod(r, s);
  if (t == "VirtualMachineSnapshot") return SnapshotMethod(r, s);
  if (t == "Folder") return FolderMethod(r, s);
  if (t == "AuthorizationManager") return AuthorizationMethod(r);
  if (t == "Task" && r.method == "CancelTask") {
    if (!tasks_.Cancel(r.this_ref)) return ManagedObjectNotFoundFault(r.this_ref);
    return std::string();
  }
  return MethodNotFoundFault(r.this_ref, r.method);
}

FaultOr<std::string> Service::SessionMethod(const SoapRequest& r, const Session& s) {
  if (r.this_ref.value != "ha-sessionmgr") return ManagedObjectNotFoundFault(r.this_ref);
  if (r.method == "Logout") {
    sessions_.Remove(s.key);
    return std::string();
  }
  if (r.method == "SessionIsActive") {
    const std::string key = r.Arg("sessionID").text(), user = r.Arg("userName").text();
    bool active = false;
    for (const Session& other : sessions_.List())
      if (other.key == key && other.user == user) active = true;
    return Value::Bool(active).Xml("returnval", false);
  }
  if (r.method == "TerminateSession") {
    for (Node id : r.call.children("sessionId")) {
      if (id.text() == s.key)
        return InvalidArgumentFault("a session cannot terminate itself (Logout)", "sessionId");
      if (!sessions_.Remove(id.text())) return Fault{"NotFound", "no session " + id.text(), ""};
    }
    return std::string();
  }
  return MethodNotFoundFault(r.this_ref, r.method);
}

std::string Service::Page(std::vector<std::string> objects, size_t max,
                          const std::string& session) {
  if (objects.empty()) return "";
  std::string out = "<returnval>";
  const size_t n = std::min(max, objects.size());
  if (n < objects.size()) {
    Paged p;
    p.rest.assign(std::make_move_iterator(objects.begin() + long(n)),
                  std::make_move_iterator(objects.end()));
    p.session = session;
    std::lock_guard<std::mutex> l(mu_);
    // Retrievals never continued are dropped, oldest first, beyond the limit.
    while (pages_.size() >= kMaxPendingPages) pages_.erase(pages_.begin());
    const uint64_t token = next_id_++;
    pages_[token] = std::move(p);
    out += El("token", std::to_string(token));
  }
  for (size_t i = 0; i < n; ++i) out += objects[i];
  return out + "</returnval>";
}

FaultOr<std::string> Service::PropertyMethod(const SoapRequest& r, const Session& s) {
  const std::string& m = r.method;
  if (r.this_ref.type == "ViewManager") {
    if (r.this_ref.value != "ViewManager") return ManagedObjectNotFoundFault(r.this_ref);
    if (m != "CreateContainerView") return MethodNotFoundFault(r.this_ref, m);
    View v;
    v.container = RefArg(r.Arg("container"));
    for (Node t : r.call.children("type")) v.types.push_back(t.text());
    v.recursive = r.Arg("recursive").text() == "true";
    v.session = s.key;
    FaultOr<Value> c = Properties(v.container, s);
    if (!c.ok()) return c.fault();
    std::lock_guard<std::mutex> l(mu_);
    if (OwnedBy(views_, s.key) >= kMaxViewsPerSession)
      return InvalidStateFault(StrFormat("a session may hold %zu views", kMaxViewsPerSession));
    const std::string id = "session[" + s.key + "]" + std::to_string(next_id_++);
    views_[id] = v;
    return RefXml("returnval", {"ContainerView", id});
  }
  if (r.this_ref.type == "ContainerView") {
    if (m != "DestroyView") return MethodNotFoundFault(r.this_ref, m);
    std::lock_guard<std::mutex> l(mu_);
    if (views_.erase(r.this_ref.value) == 0) return ManagedObjectNotFoundFault(r.this_ref);
    return std::string();
  }
  if (r.this_ref.value != "ha-property-collector") return ManagedObjectNotFoundFault(r.this_ref);
  if (m == "CreateFilter" || m == "WaitForUpdates" || m == "WaitForUpdatesEx" ||
      m == "CheckForUpdates" || m == "CancelWaitForUpdates")
    return UpdateMethod(r, s);
  RequestSource source(*this, s);
  if (m == "RetrieveProperties") {
    auto objects = RetrieveObjectContents(source, r.call, "returnval");
    if (!objects.ok()) return objects.fault();
    std::string out;
    for (const auto& o : *objects) out += o;
    return out;
  }
  if (m == "RetrievePropertiesEx") {
    auto objects = RetrieveObjectContents(source, r.call, "objects");
    if (!objects.ok()) return objects.fault();
    size_t max = options_.default_page;
    if (auto n = ParseUint(r.Arg("options").child("maxObjects").text()); n && *n > 0)
      max = std::min<uint64_t>(*n, max);
    return Page(std::move(*objects), max, s.key);
  }
  if (m == "ContinueRetrievePropertiesEx" || m == "CancelRetrievePropertiesEx") {
    const std::string token = r.Arg("token").text();
    Paged p;
    {
      std::lock_guard<std::mutex> l(mu_);
      auto number = ParseUint(token);
      auto it = number ? pages_.find(*number) : pages_.end();
      if (it == pages_.end() || it->second.session != s.key)
        return InvalidArgumentFault("no retrieval with token '" + token + "'", "token");
      p = std::move(it->second);
      pages_.erase(it);
    }
    if (m == "CancelRetrievePropertiesEx") return std::string();
    return Page(std::move(p.rest), options_.default_page, s.key);
  }
  return MethodNotFoundFault(r.this_ref, m);
}

std::vector<MoRef> Service::ViewContents(const View& v) {
  std::vector<MoRef> out, stack{v.container};
  std::set<MoRef> seen;
  while (!stack.empty()) {
    MoRef c = stack.back();
    stack.pop_back();
    std::vector<MoRef> children = inventory_.Children(c);
    if (c == Inventory::DatacenterRef()) {
      children = {Inventory::VmFolder(),
                  {"Folder", "ha-folder-host"},
                  {"Folder", "ha-folder-datastore"},
                  {"Folder", "ha-folder-network"}};
    }
    for (const MoRef& child : children) {
      if (!seen.insert(child).second) continue;
      bool wanted = v.types.empty();
      for (const auto& t : v.types) wanted = wanted || IsA(child.type, t);
      if (wanted) out.push_back(child);
      if (v.recursive) stack.push_back(child);
    }
  }
  return out;
}

FaultOr<Value> Service::Properties(const MoRef& obj, const Session& s) {
  if (obj.type == "Task") {
    auto info = tasks_.Info(obj);
    if (!info) return ManagedObjectNotFoundFault(obj);
    Value v = Value::Object("Task");
    v.Set("info", *info);
    return v;
  }
  if (obj.type == "ContainerView") {
    View view;
    {
      std::lock_guard<std::mutex> l(mu_);
      auto it = views_.find(obj.value);
      if (it == views_.end()) return ManagedObjectNotFoundFault(obj);
      view = it->second;
    }
    Value refs = Value::Array("ManagedObjectReference");
    for (const MoRef& m : ViewContents(view)) refs.Add(Value::Ref(m));
    Value types = Value::Array("string");
    for (const auto& t : view.types) types.Add(Value::String(t));
    Value v = Value::Object("ContainerView");
    v.Set("view", refs)
        .Set("container", Value::Ref(view.container))
        .Set("type", types)
        .Set("recursive", Value::Bool(view.recursive));
    return v;
  }
  if (Is(obj, "SessionManager", "ha-sessionmgr")) {
    Value all = Value::Array("UserSession");
    for (const Session& other : sessions_.List()) all.Add(UserSession(other));
    Value v = Value::Object("SessionManager");
    v.Set("currentSession", UserSession(s)).Set("sessionList", all);
    return v;
  }
  if (Is(obj, "PropertyCollector", "ha-property-collector")) {
    Value v = Value::Object("PropertyCollector");
    v.Set("filter", Value::Array("ManagedObjectReference"));
    return v;
  }
  return inventory_.Properties(obj);
}

FaultOr<std::string> Service::SearchMethod(const SoapRequest& r) {
  if (r.this_ref.value != "ha-searchindex") return ManagedObjectNotFoundFault(r.this_ref);
  std::optional<MoRef> found;
  const std::string dc = inventory_.options().datacenter_name;
  if (r.method == "FindByInventoryPath") {
    const std::string path = r.Arg("inventoryPath").text();
    if (path == dc) found = Inventory::DatacenterRef();
    if (path == dc + "/vm") found = Inventory::VmFolder();
    if (path == dc + "/datastore/" + inventory_.options().datastore_name)
      found = inventory_.DatastoreRef();
    const std::string vm_prefix = dc + "/vm/";
    if (path.rfind(vm_prefix, 0) == 0) {
      const std::string name = path.substr(vm_prefix.size());
      if (host::ValidateVmName(name).ok() && inventory_.OpenVm(name).ok())
        found = Inventory::VmRef(name);
    }
  } else if (r.method == "FindByUuid") {
    const std::string uuid = r.Arg("uuid").text();
    const bool instance = r.Arg("instanceUuid").text() == "true";
    if (r.Arg("vmSearch").text() != "true")
      return Fault{"NotSupported", "vmhost has no host objects to search", ""};
    for (const MoRef& ref : inventory_.Vms()) {
      auto vm = inventory_.OpenVm(*Inventory::VmOf(ref));
      if (!vm) continue;
      const auto& cf = (*vm)->vmx();
      const std::string id = instance ? cf.config().GetOr("vc.uuid", cf.uuid()) : cf.uuid();
      if (EqualsIgnoreCase(id, uuid)) found = ref;
    }
  } else if (r.method == "FindByDatastorePath") {
    auto rel = inventory_.RelativePath(r.Arg("path").text());
    if (rel) {
      const auto parts = Split(*rel, '/');
      if (parts.size() == 2 && parts[1] == parts[0] + ".vmx" && inventory_.OpenVm(parts[0]).ok())
        found = Inventory::VmRef(parts[0]);
    }
  } else {
    return MethodNotFoundFault(r.this_ref, r.method);
  }
  return found ? RefXml("returnval", *found) : std::string();
}

}  // namespace vmbackup::vsphere_api
