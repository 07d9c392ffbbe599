#include "cli/key_commands.h"

#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>

#include "cli/output.h"
#include "cli/repo_access.h"

namespace vmbackup::cli {
namespace {

using nlohmann::json;

struct KeyOpts {
  RepoOpts repo;
  std::string new_key_file, new_passphrase_file, new_password_command, name;
};

// The new key: a key file (created when missing), a passphrase file, a command, or a prompt.
Result<repo::KeySource> NewKey(const KeyOpts& o) {
  RepoOpts as;
  as.key_file = o.new_key_file;
  as.passphrase_file = o.new_passphrase_file;
  as.password_command = o.new_password_command;
  // VMBACKUP_PASSPHRASE names the key that opens the repository, never the new one.
  const char* env = std::getenv("VMBACKUP_PASSPHRASE");
  std::string saved = env ? env : "";
  if (env) ::unsetenv("VMBACKUP_PASSPHRASE");
  auto k = KeysOrPrompt(as, /*new_key=*/true);
  if (env) ::setenv("VMBACKUP_PASSPHRASE", saved.c_str(), 1);
  if (k && k->empty()) {
    return InvalidArgumentError(
        "give the new key: --new-key-file, --new-passphrase-file or --new-password-command");
  }
  return k;
}

}  // namespace

void AddKeyCommands(CLI::App& app, int* exit_code) {
  auto o = std::make_shared<KeyOpts>();
  CLI::App* key = app.add_subcommand("key", "the keys of an encrypted repository");
  key->require_subcommand(1);
  auto new_key = [o](CLI::App* c) {
    c->add_option("--new-key-file", o->new_key_file, "the new key: a key file (made if missing)");
    c->add_option("--new-passphrase-file", o->new_passphrase_file,
                  "the new key: a file holding a passphrase");
    c->add_option("--new-password-command", o->new_password_command,
                  "the new key: a command that prints a passphrase");
  };

  CLI::App* c = key->add_subcommand("list", "the keys that open the repository");
  AddRepoOptions(c, o->repo);
  Bind(c, exit_code, [o]() -> Status {
    VMBACKUP_ASSIGN_OR_RETURN(auto r, OpenRepo(o->repo));
    VMBACKUP_ASSIGN_OR_RETURN(auto keys, r->ListKeys());
    json out = json::array();
    for (const auto& k : keys) {
      out.push_back({{"id", k.name},
                     {"type", k.type},
                     {"created", k.created},
                     {"host", k.host},
                     {"current", k.name == r->key_name()}});
    }
    if (Flags().json) {
      std::printf("%s\n", out.dump(2).c_str());
      return Status::Ok();
    }
    std::printf("  %-32s %-8s %-21s %s\n", "key", "type", "created", "host");
    for (const auto& k : keys) {
      std::printf("%s %-32s %-8s %-21s %s\n", k.name == r->key_name() ? "*" : " ", k.name.c_str(),
                  k.type.c_str(), k.created.c_str(), k.host.c_str());
    }
    return Status::Ok();
  });

  c = key->add_subcommand("add", "add a passphrase or key file (the data is not re-encrypted)");
  AddRepoOptions(c, o->repo);
  new_key(c);
  Bind(c, exit_code, [o]() -> Status {
    VMBACKUP_ASSIGN_OR_RETURN(auto r, OpenRepo(o->repo));
    VMBACKUP_ASSIGN_OR_RETURN(repo::KeySource k, NewKey(*o));
    VMBACKUP_ASSIGN_OR_RETURN(std::string name, r->AddKey(k));
    if (Flags().json) {
      std::printf("%s\n", json{{"id", name}}.dump(2).c_str());
    } else {
      std::printf("added key %s\n", name.c_str());
    }
    return Status::Ok();
  });

  c = key->add_subcommand("remove", "remove a key (not the one given to open the repository)");
  AddRepoOptions(c, o->repo);
  c->add_option("KEY", o->name, "the key's id (key list)")->required();
  Bind(c, exit_code, [o]() -> Status {
    VMBACKUP_ASSIGN_OR_RETURN(LockedRepo x, OpenLocked(o->repo, true, "key remove"));
    VMBACKUP_RETURN_IF_ERROR(x.repo->RemoveKey(o->name));
    if (!Flags().json) std::printf("removed key %s\n", o->name.c_str());
    return Status::Ok();
  });

  c = key->add_subcommand("passwd", "replace the key given to open the repository with a new one");
  AddRepoOptions(c, o->repo);
  new_key(c);
  Bind(c, exit_code, [o]() -> Status {
    VMBACKUP_ASSIGN_OR_RETURN(LockedRepo x, OpenLocked(o->repo, true, "key passwd"));
    VMBACKUP_ASSIGN_OR_RETURN(repo::KeySource k, NewKey(*o));
    const std::string old = x.repo->key_name();
    VMBACKUP_ASSIGN_OR_RETURN(std::string name, x.repo->ChangeKey(k));
    if (Flags().json) {
      std::printf("%s\n", json{{"id", name}, {"removed", old}}.dump(2).c_str());
    } else {
      std::printf("added key %s, removed key %s\n", name.c_str(), old.c_str());
    }
    return Status::Ok();
  });
}

}  // namespace vmbackup::cli
