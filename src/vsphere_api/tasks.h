// Task objects: each long operation runs on its own thread and is seen by clients as a Task
// whose info goes from queued to running to success or error (with the fault), as vSphere's
// TaskInfo. One task at a time per entity: a second one is TaskInProgress, as on vSphere.
#pragma once

#include <atomic>
#include <functional>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "vsphere_api/soap.h"
#include "vsphere_api/value.h"

namespace vmbackup::vsphere_api {

class Tasks {
 public:
  using Work = std::function<FaultOr<Value>()>;
  Tasks() = default;
  Tasks(const Tasks&) = delete;
  Tasks& operator=(const Tasks&) = delete;
  ~Tasks();  // waits for running tasks

  // Starts `work` (descriptionId e.g. "VirtualMachine.createSnapshot") on `entity`; a
  // TaskInProgress fault while another task of the entity runs.
  FaultOr<MoRef> Start(const std::string& description_id, const MoRef& entity,
                       const std::string& entity_name, const std::string& user, Work work);
  // The task running on `entity`, if one does.
  std::optional<MoRef> Running(const MoRef& entity);
  // The TaskInfo; nullopt for an unknown task.
  std::optional<Value> Info(const MoRef& task);
  // Marks the task cancelled if it has not started (a running one runs to its end, as an
  // uncancelable vSphere task). false for an unknown task.
  bool Cancel(const MoRef& task);
  // Waits until no task runs (tests, shutdown).
  void Drain();

 private:
  struct Record {
    MoRef ref;
    std::string description_id, entity_name, user;
    MoRef entity;
    std::string state = "queued";
    int64_t queue_us = 0, start_us = 0, complete_us = 0;
    Value result;
    std::optional<Fault> error;
    bool cancelled = false;
  };
  void Run(const MoRef& ref, Work work);
  Value InfoLocked(const Record& r) const;

  std::mutex mu_;
  uint64_t next_ = 1;
  std::map<std::string, Record> records_;  // by task moref value
  std::map<MoRef, std::string> busy_;      // entity -> running task
  // Running and finished task threads; finished ones are joined when the next task starts.
  struct Worker {
    std::thread thread;
    std::shared_ptr<std::atomic<bool>> done;
  };
  std::list<Worker> workers_;
};

}  // namespace vmbackup::vsphere_api
