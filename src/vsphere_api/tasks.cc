#include "vsphere_api/tasks.h"

namespace vmbackup::vsphere_api {
namespace {
constexpr size_t kKeptTasks = 1000;  // finished tasks kept for clients to read
}

Tasks::~Tasks() { Drain(); }

void Tasks::Drain() {
  std::list<Worker> workers;
  {
    std::lock_guard<std::mutex> l(mu_);
    workers.swap(workers_);
  }
  for (auto& w : workers) w.thread.join();
}

FaultOr<MoRef> Tasks::Start(const std::string& description_id, const MoRef& entity,
                            const std::string& entity_name, const std::string& user, Work work) {
  std::lock_guard<std::mutex> l(mu_);
  if (auto it = busy_.find(entity); it != busy_.end()) {
    return TaskInProgressFault("Another task is already in progress on " + entity_name + ".",
                               {"Task", it->second});
  }
  Record r;
  r.ref = {"Task", "task-" + std::to_string(next_++)};
  r.description_id = description_id;
  r.entity = entity;
  r.entity_name = entity_name;
  r.user = user;
  r.queue_us = NowMicros();
  busy_[entity] = r.ref.value;
  // Forget the oldest finished tasks beyond the limit.
  while (records_.size() >= kKeptTasks) {
    auto oldest = records_.end();
    for (auto it = records_.begin(); it != records_.end(); ++it) {
      if (it->second.state != "success" && it->second.state != "error") continue;
      if (oldest == records_.end() || it->second.queue_us < oldest->second.queue_us) oldest = it;
    }
    if (oldest == records_.end()) break;
    records_.erase(oldest);
  }
  records_[r.ref.value] = r;
  const MoRef ref = r.ref;
  // Threads of finished tasks are joined here, so a long-running server keeps none.
  for (auto it = workers_.begin(); it != workers_.end();) {
    if (it->done->load()) {
      it->thread.join();
      it = workers_.erase(it);
    } else {
      ++it;
    }
  }
  auto done = std::make_shared<std::atomic<bool>>(false);
  workers_.push_back({std::thread([this, ref, done, w = std::move(work)]() mutable {
                        Run(ref, std::move(w));
                        done->store(true);
                      }),
                      done});
  return ref;
}

void Tasks::Run(const MoRef& ref, Work work) {
  {
    std::lock_guard<std::mutex> l(mu_);
    Record& r = records_[ref.value];
    if (r.cancelled) {
      r.state = "error";
      r.error = Fault{"RequestCanceled", "The task was canceled by a user.", ""};
      r.complete_us = NowMicros();
      busy_.erase(r.entity);
      return;
    }
    r.state = "running";
    r.start_us = NowMicros();
  }
  FaultOr<Value> result = work();
  std::lock_guard<std::mutex> l(mu_);
  Record& r = records_[ref.value];
  r.complete_us = NowMicros();
  if (result.ok()) {
    r.state = "success";
    r.result = *result;
  } else {
    r.state = "error";
    r.error = result.fault();
  }
  busy_.erase(r.entity);
}

std::optional<MoRef> Tasks::Running(const MoRef& entity) {
  std::lock_guard<std::mutex> l(mu_);
  auto it = busy_.find(entity);
  if (it == busy_.end()) return std::nullopt;
  return MoRef{"Task", it->second};
}

std::optional<Value> Tasks::Info(const MoRef& task) {
  std::lock_guard<std::mutex> l(mu_);
  auto it = records_.find(task.value);
  if (task.type != "Task" || it == records_.end()) return std::nullopt;
  return InfoLocked(it->second);
}

bool Tasks::Cancel(const MoRef& task) {
  std::lock_guard<std::mutex> l(mu_);
  auto it = records_.find(task.value);
  if (it == records_.end()) return false;
  if (it->second.state == "queued") it->second.cancelled = true;
  return true;
}

Value Tasks::InfoLocked(const Record& r) const {
  Value reason = Value::Object("TaskReasonUser");
  reason.Set("userName", Value::String(r.user));
  Value v = Value::Object("TaskInfo");
  v.Set("key", Value::String(r.ref.value))
      .Set("task", Value::Ref(r.ref))
      .Set("descriptionId", Value::String(r.description_id))
      .Set("entity", Value::Ref(r.entity))
      .Set("entityName", Value::String(r.entity_name))
      .Set("state", Value::Enum("TaskInfoState", r.state))
      .Set("cancelled", Value::Bool(r.cancelled))
      .Set("cancelable", Value::Bool(false));
  if (r.error) v.Set("error", LocalizedFault(*r.error));
  if (r.state == "success" && !r.result.unset()) {
    // TaskInfo.result is an anyType: the value names its type.
    v.Set("result", Value(r.result).AsAny());
  }
  v.Set("reason", reason).Set("queueTime", Value::DateTime(r.queue_us));
  if (r.start_us) v.Set("startTime", Value::DateTime(r.start_us));
  if (r.complete_us) v.Set("completeTime", Value::DateTime(r.complete_us));
  v.Set("eventChainId", Value::Int(0));
  return v;
}

}  // namespace vmbackup::vsphere_api
