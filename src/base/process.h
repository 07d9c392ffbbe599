// Who a process is, across pid reuse: host name, pid, and the process's start time. Used to
// tell whether the owner of a lock, a temporary file or a job is still alive.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace vmbackup {

std::string HostName();
// Field 22 of /proc/PID/stat: when the process started, in clock ticks after boot. 0 when
// the process does not exist (or /proc is not there).
uint64_t ProcessStart(int64_t pid);
// False when no process `pid` exists, or it is a zombie (dead, not yet reaped), or the one that
// exists started at another time than
// `start` (a reused pid is another process). `start` 0 means "unknown": any process counts.
bool ProcessAlive(int64_t pid, uint64_t start);

// This process: "<host>:<pid>:<start>", the owner tag written into temporary names and job
// records; OwnerAlive() answers for such a tag (tags of other hosts count as alive: nothing
// here can tell).
std::string OwnerTag();
bool OwnerAlive(const std::string& tag);

// The same for file names: "<8 hex of the host name>-<pid>-<start>" (only [0-9a-f-]).
// FileTagOwnerAlive() reads such a tag at the start of `name` (followed by '-' or '.' or the
// end); names without one, and tags of other hosts, count as alive.
std::string OwnerFileTag();
bool FileTagOwnerAlive(std::string_view name);

}  // namespace vmbackup
