#include "vsphere_api/sessions.h"

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include <chrono>
#include <thread>

#include "base/strings.h"

namespace vmbackup::vsphere_api {
namespace {

bool SecretEquals(const std::string& a, const std::string& b) {
  // Constant time in the secret's content; the length is not secret enough to hide.
  return a.size() == b.size() && CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

std::string NewKey() {
  uint8_t b[16];
  if (RAND_bytes(b, sizeof b) != 1) return "";
  std::string hex;
  for (size_t i = 0; i < sizeof b; ++i) {
    if (i == 4 || i == 6 || i == 8 || i == 10) hex += '-';
    hex += StrFormat("%02x", b[i]);
  }
  return hex;
}

}  // namespace

Result<Session> Sessions::Login(const std::string& user, const std::string& password) {
  // Both compared, whatever the first says.
  const bool user_ok = SecretEquals(user, user_);
  const bool password_ok = SecretEquals(password, password_);
  if (!user_ok || !password_ok) {
    std::this_thread::sleep_for(std::chrono::milliseconds(login_fail_delay_ms_));
    return UnauthenticatedError("Cannot complete login due to an incorrect user name or password.");
  }
  Session s;
  s.key = NewKey();
  if (s.key.empty()) return InternalError("no random bytes for a session key");
  s.user = user;
  s.login_us = s.last_active_us = NowMicros();
  std::lock_guard<std::mutex> l(mu_);
  ExpireLocked(s.login_us);
  if (sessions_.size() >= kMaxSessions)
    return LockedError(StrFormat("the server holds %zu sessions, its limit", kMaxSessions));
  sessions_[s.key] = s;
  return s;
}

std::optional<Session> Sessions::Find(const std::string& key) {
  if (key.empty()) return std::nullopt;
  std::lock_guard<std::mutex> l(mu_);
  const int64_t now = NowMicros();
  ExpireLocked(now);
  auto it = sessions_.find(key);
  if (it == sessions_.end()) return std::nullopt;
  it->second.last_active_us = now;
  return it->second;
}

bool Sessions::Remove(const std::string& key) {
  std::lock_guard<std::mutex> l(mu_);
  return sessions_.erase(key) > 0;
}

std::vector<Session> Sessions::List() {
  std::lock_guard<std::mutex> l(mu_);
  ExpireLocked(NowMicros());
  std::vector<Session> out;
  for (const auto& [k, s] : sessions_) out.push_back(s);
  return out;
}

void Sessions::ExpireLocked(int64_t now) {
  for (auto it = sessions_.begin(); it != sessions_.end();) {
    if (now - it->second.last_active_us > idle_limit_us_) {
      it = sessions_.erase(it);
    } else {
      ++it;
    }
  }
}

std::string SessionCookie(const std::string& header) {
  for (const std::string& part : Split(header, ';')) {
    std::string_view p = Trim(part);
    const size_t eq = p.find('=');
    if (eq == std::string_view::npos || Trim(p.substr(0, eq)) != "vmware_soap_session") continue;
    std::string_view v = Trim(p.substr(eq + 1));
    if (v.size() >= 2 && v.front() == '"' && v.back() == '"') v = v.substr(1, v.size() - 2);
    return std::string(v);
  }
  return "";
}

}  // namespace vmbackup::vsphere_api
