#include "hv/libvirt/guest_agent.h"

#include <libvirt/libvirt-qemu.h>
#include <openssl/evp.h>

#include <chrono>
#include <thread>

#include "hv/libvirt/virt.h"

namespace vmbackup::hv::libvirt {

using nlohmann::json;

Result<json> AgentCommand(virDomainPtr dom, const json& command, int timeout_s) {
  char* reply = virDomainQemuAgentCommand(dom, command.dump().c_str(), timeout_s, 0);
  if (!reply) {
    return LastError("guest agent: " + command.value("execute", std::string("command")));
  }
  const std::string text = TakeString(reply);
  json j = json::parse(text, nullptr, false);
  if (!j.is_object() || !j.contains("return"))
    return IOError("guest agent: an answer that is not a result: " + text.substr(0, 200));
  return j["return"];
}

bool AgentAnswers(virDomainPtr dom) {
  return AgentCommand(dom, json{{"execute", "guest-ping"}}, 1).ok();
}

std::string Base64Encode(std::string_view data) {
  std::string out(4 * ((data.size() + 2) / 3) + 1, '\0');
  const int n =
      EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                      reinterpret_cast<const unsigned char*>(data.data()), int(data.size()));
  out.resize(size_t(n));
  return out;
}

Result<std::string> Base64Decode(std::string_view text) {
  if (text.size() % 4 != 0) return CorruptionError("guest agent: base64 of a wrong length");
  std::string out(text.size() / 4 * 3 + 1, '\0');
  const int n =
      EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                      reinterpret_cast<const unsigned char*>(text.data()), int(text.size()));
  if (n < 0) return CorruptionError("guest agent: output that is not base64");
  size_t len = size_t(n);
  // EVP_DecodeBlock counts the padding's zero bytes too.
  for (size_t i = text.size(); i > 0 && text[i - 1] == '=' && len > 0; --i) --len;
  out.resize(len);
  return out;
}

Result<GuestExecResult> GuestExec(virDomainPtr dom, const std::string& path,
                                  const std::vector<std::string>& args, const std::string& input,
                                  int timeout_s) {
  json exec = {{"path", path}, {"arg", args}, {"capture-output", true}};
  if (!input.empty()) exec["input-data"] = Base64Encode(input);
  VMBACKUP_ASSIGN_OR_RETURN(
      json started, AgentCommand(dom, {{"execute", "guest-exec"}, {"arguments", exec}}, 30));
  if (!started.is_object() || !started.value("pid", json()).is_number_integer())
    return IOError("guest agent: guest-exec gave no pid");
  const int64_t pid = started["pid"].get<int64_t>();
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(timeout_s);
  GuestExecResult r;
  for (;;) {
    VMBACKUP_ASSIGN_OR_RETURN(
        json st,
        AgentCommand(dom, {{"execute", "guest-exec-status"}, {"arguments", {{"pid", pid}}}}, 30));
    if (!st.is_object()) return IOError("guest agent: guest-exec-status gave no status");
    if (st.value("exited", false)) {
      try {
        r.exit_code = st.value("exitcode", -1);
        r.signal = st.value("signal", 0);
        if (st.contains("out-data")) {
          VMBACKUP_ASSIGN_OR_RETURN(r.out, Base64Decode(st["out-data"].get<std::string>()));
        }
        if (st.contains("err-data")) {
          VMBACKUP_ASSIGN_OR_RETURN(r.err, Base64Decode(st["err-data"].get<std::string>()));
        }
      } catch (const json::exception&) {
        return IOError("guest agent: guest-exec-status with fields of the wrong type");
      }
      return r;
    }
    if (std::chrono::steady_clock::now() >= deadline) {
      r.timed_out = true;
      return r;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(250));
  }
}

}  // namespace vmbackup::hv::libvirt
