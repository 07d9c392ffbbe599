// The server's sessions: one per successful Login, named by a random key that travels in the
// vmware_soap_session cookie, ended by Logout, TerminateSession or 30 minutes without a call.
// Thread-safe.
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "base/result.h"
#include "vsphere_api/value.h"

namespace vmbackup::vsphere_api {

struct Session {
  std::string key;
  std::string user;
  int64_t login_us = 0;
  int64_t last_active_us = 0;
};

class Sessions {
 public:
  static constexpr size_t kMaxSessions = 1000;
  Sessions(std::string user, std::string password, int login_fail_delay_ms = 500,
           int64_t idle_limit_us = 30LL * 60 * 1000000)
      : user_(std::move(user)),
        password_(std::move(password)),
        login_fail_delay_ms_(login_fail_delay_ms),
        idle_limit_us_(idle_limit_us) {}

  // A new session, or kUnauthenticated after a short delay (it slows guessing down), or
  // kLocked when kMaxSessions are open.
  Result<Session> Login(const std::string& user, const std::string& password);
  // The session of a cookie value, touched; nullopt when there is none (or it timed out).
  std::optional<Session> Find(const std::string& key);
  bool Remove(const std::string& key);
  std::vector<Session> List();

 private:
  void ExpireLocked(int64_t now);

  const std::string user_, password_;
  const int login_fail_delay_ms_;
  const int64_t idle_limit_us_;
  std::mutex mu_;
  std::map<std::string, Session> sessions_;
};

// "vmware_soap_session" from a Cookie header ("a=b; vmware_soap_session=\"52..\""), unquoted.
std::string SessionCookie(const std::string& cookie_header);

}  // namespace vmbackup::vsphere_api
