// PropertyCollector filters and updates: CreateFilter, WaitForUpdates, WaitForUpdatesEx,
// CheckForUpdates, DestroyPropertyFilter. What clients like pyVim.task.WaitForTask use to wait
// for a task. Each call evaluates the session's filters and reports what changed since the
// last report (enter, modify with assign/remove, leave), waiting up to maxWaitSeconds.
#include <chrono>
#include <thread>

#include "base/strings.h"
#include "vsphere_api/property_collector.h"
#include "vsphere_api/service.h"

namespace vmbackup::vsphere_api {
namespace {

constexpr size_t kMaxFiltersPerSession = 100;

std::string RefXml(const char* name, const MoRef& r) { return Value::Ref(r).Xml(name, false); }

class SessionSource final : public PropertySource {
 public:
  explicit SessionSource(std::function<FaultOr<Value>(const MoRef&)> f) : f_(std::move(f)) {}
  FaultOr<Value> Properties(const MoRef& obj) override { return f_(obj); }

 private:
  std::function<FaultOr<Value>(const MoRef&)> f_;
};

}  // namespace

FaultOr<std::string> Service::CollectUpdates(const Session& s, bool from_scratch) {
  std::vector<std::pair<std::string, Filter>> mine;
  {
    std::lock_guard<std::mutex> l(mu_);
    for (auto& [id, f] : filters_) {
      if (f.session != s.key) continue;
      if (from_scratch) f.reported.clear();
      mine.emplace_back(id, f);
    }
  }
  SessionSource source([this, &s](const MoRef& obj) { return Properties(obj, s); });
  std::string out;
  for (auto& [id, f] : mine) {
    FaultOr<std::vector<ObjectProperties>> now = EvaluateFilterSpec(source, f.spec);
    if (!now.ok()) return now.fault();
    std::string objects;
    std::map<MoRef, std::map<std::string, std::string>> current;
    for (const ObjectProperties& o : *now) {
      auto& props = current[o.obj];
      for (const auto& [path, val] : o.props) props[path] = val;
      auto before = f.reported.find(o.obj);
      std::string changes;
      for (const auto& [path, val] : props) {
        if (before != f.reported.end()) {
          auto it = before->second.find(path);
          if (it != before->second.end() && it->second == val) continue;
        }
        changes += "<changeSet><name>" + xml::Escape(path) + "</name><op>assign</op>" + val +
                   "</changeSet>";
      }
      if (before != f.reported.end()) {
        for (const auto& [path, val] : before->second)
          if (!props.count(path))
            changes +=
                "<changeSet><name>" + xml::Escape(path) + "</name><op>remove</op></changeSet>";
      }
      if (before != f.reported.end() && changes.empty()) continue;
      objects += std::string("<objectSet><kind>") +
                 (before == f.reported.end() ? "enter" : "modify") + "</kind>" +
                 RefXml("obj", o.obj) + changes + "</objectSet>";
    }
    for (const auto& [obj, props] : f.reported)
      if (!current.count(obj))
        objects += "<objectSet><kind>leave</kind>" + RefXml("obj", obj) + "</objectSet>";
    if (objects.empty()) continue;
    out += "<filterSet>" + RefXml("filter", {"PropertyFilter", id}) + objects + "</filterSet>";
    std::lock_guard<std::mutex> l(mu_);
    if (auto it = filters_.find(id); it != filters_.end()) it->second.reported = std::move(current);
  }
  return out;
}

FaultOr<std::string> Service::UpdateMethod(const SoapRequest& r, const Session& s) {
  const std::string& m = r.method;
  if (r.this_ref.type == "PropertyFilter") {
    if (m != "DestroyPropertyFilter") return MethodNotFoundFault(r.this_ref, m);
    std::lock_guard<std::mutex> l(mu_);
    auto it = filters_.find(r.this_ref.value);
    if (it == filters_.end() || it->second.session != s.key)
      return ManagedObjectNotFoundFault(r.this_ref);
    filters_.erase(it);
    return std::string();
  }
  if (m == "CreateFilter") {
    Filter f;
    f.doc = r.doc;
    f.spec = r.Arg("spec");
    f.session = s.key;
    if (!f.spec) return InvalidArgumentFault("CreateFilter without a spec", "spec");
    // The spec is checked now, as vSphere does (an unknown object or property is a fault).
    SessionSource source([this, &s](const MoRef& obj) { return Properties(obj, s); });
    FaultOr<std::vector<ObjectProperties>> check = EvaluateFilterSpec(source, f.spec);
    if (!check.ok()) return check.fault();
    std::lock_guard<std::mutex> l(mu_);
    if (OwnedBy(filters_, s.key) >= kMaxFiltersPerSession)
      return InvalidStateFault(StrFormat("a session may hold %zu filters", kMaxFiltersPerSession));
    const std::string id = "session[" + s.key + "]filter-" + std::to_string(next_id_++);
    filters_[id] = std::move(f);
    return RefXml("returnval", {"PropertyFilter", id});
  }
  if (m == "CancelWaitForUpdates") return std::string();
  // WaitForUpdates(version), WaitForUpdatesEx(version, options.maxWaitSeconds),
  // CheckForUpdates(version): from scratch when the version is empty.
  const std::string version = r.Arg("version").text();
  const double longest = options_.longest_update_wait_seconds;
  double wait = longest;
  if (m == "CheckForUpdates") {
    wait = 0;
  } else if (m == "WaitForUpdatesEx") {
    if (auto w = ParseUint(r.Arg("options").child("maxWaitSeconds").text())) wait = double(*w);
  } else if (m != "WaitForUpdates") {
    return MethodNotFoundFault(r.this_ref, m);
  }
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::duration<double>(std::min(wait, longest));
  bool from_scratch = version.empty();
  for (;;) {
    FaultOr<std::string> sets = CollectUpdates(s, from_scratch);
    if (!sets.ok()) return sets.fault();
    from_scratch = false;
    if (!sets->empty() || std::chrono::steady_clock::now() >= deadline) {
      uint64_t v;
      {
        std::lock_guard<std::mutex> l(mu_);
        v = sets->empty() ? update_versions_[s.key] : ++update_versions_[s.key];
      }
      // Nothing within the time: WaitForUpdatesEx and CheckForUpdates answer nothing at all;
      // the old WaitForUpdates an empty set of the same version.
      if (sets->empty() && m != "WaitForUpdates") return std::string();
      return "<returnval><version>" + std::to_string(v) + "</version>" + *sets + "</returnval>";
    }
    if (!sessions_.Find(s.key)) return NotAuthenticatedFault();
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

}  // namespace vmbackup::vsphere_api
