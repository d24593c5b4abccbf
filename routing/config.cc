#include "routing/config.h"

#include <openssl/sha.h>
#include <toml++/toml.h>

#include <algorithm>
#include <array>
#include <fstream>
#include <set>
#include <sstream>

#include "absl/strings/str_join.h"
#include "common/strings.h"
#include "protocol/md5_auth.h"
#include "protocol/scram.h"

namespace pgshift::routing {

namespace {

// Reads the keys of one TOML table, remembering which were used, so that
// every unknown key and bad value can be reported with its line.
class Section {
 public:
  Section(const toml::table& table, std::string path, std::vector<std::string>& errors,
          std::string_view source)
      : table_(table), path_(std::move(path)), errors_(errors), source_(source) {}

  ~Section() {
    for (const auto& [key, node] : table_) {
      if (!used_.contains(std::string(key.str()))) {
        Error(node, StrCat("unknown key \"", Qualified(key.str()), "\""));
      }
    }
  }

  const toml::node* Find(std::string_view key) {
    used_.insert(std::string(key));
    return table_.get(key);
  }

  template <typename T>
  bool Get(std::string_view key, T& out) {
    const toml::node* node = Find(key);
    if (node == nullptr) return false;
    if (auto v = node->value<T>()) {
      out = *v;
      return true;
    }
    Error(*node, StrCat("\"", Qualified(key), "\" must be ", TypeName<T>()));
    return false;
  }

  bool GetString(std::string_view key, std::string& out) { return Get(key, out); }

  bool GetOptionalString(std::string_view key, std::optional<std::string>& out) {
    std::string s;
    if (!Get(key, s)) return false;
    out = s;
    return true;
  }

  void GetEndpoint(std::string_view key, std::optional<Endpoint>& out) {
    std::string text;
    if (!Get(key, text)) return;
    auto ep = ParseEndpoint(text);
    if (!ep.ok()) {
      Error(*Find(key), StrCat("\"", Qualified(key), "\": ", MessageOf(ep.status())));
      return;
    }
    out = *ep;
  }

  void GetStringArray(std::string_view key, std::vector<std::string>& out) {
    const toml::node* node = Find(key);
    if (node == nullptr) return;
    const toml::array* arr = node->as_array();
    bool ok = arr != nullptr;
    if (ok) {
      for (const toml::node& item : *arr) {
        if (auto s = item.value<std::string>()) {
          out.push_back(*s);
        } else {
          ok = false;
        }
      }
    }
    if (!ok) Error(*node, StrCat("\"", Qualified(key), "\" must be an array of strings"));
  }

  // A string that must be one of `choices`.
  template <typename E, typename Choices>
  void GetChoice(std::string_view key, const Choices& choices, std::optional<E>& out) {
    if (!table_.contains(key)) return;
    E value{};
    GetChoice(key, choices, value);
    out = value;
  }
  template <typename Choices, typename E>
  void GetChoice(std::string_view key, const Choices& choices, E& out) {
    std::string text;
    if (!Get(key, text)) return;
    std::string names;
    for (const auto& [name, value] : choices) {
      if (name == text) {
        out = value;
        return;
      }
      names += names.empty() ? std::string(name) : StrCat(", ", name);
    }
    BadValue(key, StrCat("is \"", text, "\"; must be one of ", names));
  }

  // An integer from `min` to `max`.
  template <typename T>
  void GetInteger(std::string_view key, int64_t min, int64_t max, T& out) {
    int64_t v = 0;
    if (!Get(key, v)) return;
    if (v < min || v > max) {
      BadValue(key, StrCat("must be between ", min, " and ", max));
      return;
    }
    out = static_cast<T>(v);
  }

  // A number of seconds (integer or fractional), at most a day.
  void GetSeconds(std::string_view key, double& out) {
    const toml::node* n = Find(key);
    if (n == nullptr) return;
    std::optional<double> v = n->value<double>();  // toml++ converts integers too
    if (!v || *v < 0 || *v > 86400) {
      BadValue(key, "must be a number of seconds from 0 to 86400");
      return;
    }
    out = *v;
  }

  // Records a bad value of `key` with the line it is on.
  void BadValue(std::string_view key, std::string_view why) {
    const toml::node* node = table_.get(key);
    if (node != nullptr) {
      Error(*node, StrCat("\"", Qualified(key), "\" ", why));
    } else {
      errors_.push_back(StrCat(source_, ": ", Qualified(key), " ", why));
    }
  }

  void Error(const toml::node& node, std::string_view message) {
    errors_.push_back(StrCat(source_, ":", node.source().begin.line, ": ", message));
  }

  std::string Qualified(std::string_view key) const {
    return path_.empty() ? std::string(key) : StrCat(path_, ".", key);
  }

 private:
  template <typename T>
  static std::string_view TypeName() {
    if constexpr (std::is_same_v<T, std::string>) return "a string";
    if constexpr (std::is_same_v<T, bool>) return "true or false";
    if constexpr (std::is_same_v<T, int64_t>) return "an integer";
    if constexpr (std::is_same_v<T, double>) return "a number";
    return "of another type";
  }

  const toml::table& table_;
  std::string path_;
  std::vector<std::string>& errors_;
  std::string_view source_;
  std::set<std::string> used_;
};

std::string Sha256Hex(std::string_view text) {
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(text.data()), text.size(), digest);
  return HexOf(std::string_view(reinterpret_cast<const char*>(digest), sizeof(digest)));
}

std::string QualifyTableName(std::string_view name) {
  return name.find('.') == std::string_view::npos ? StrCat("public.", name)
                                                  : std::string(name);
}

void ReadCoordination(Section& s, CoordinationSettings& c) {
  s.Get("enabled", c.enabled);
  s.GetString("instance_id", c.instance_id);
  s.GetSeconds("lease_timeout", c.lease_timeout_s);
  if (c.lease_timeout_s < 1) s.BadValue("lease_timeout", "must be at least 1 second");
  s.GetSeconds("cutover_timeout", c.cutover_timeout_s);
  if (c.cutover_timeout_s < 0.1) s.BadValue("cutover_timeout", "must be at least 0.1 seconds");
  s.GetSeconds("poll_interval", c.poll_interval_s);
  if (c.poll_interval_s < 0.05) s.BadValue("poll_interval", "must be at least 0.05 seconds");
  if (c.poll_interval_s * 2 > c.lease_timeout_s) {
    s.BadValue("poll_interval", "must be at most half of lease_timeout");
  }
  s.GetOptionalString("host", c.host);
  int port = 0;
  s.GetInteger("port", 1, 65535, port);
  if (port != 0) c.port = port;
}

void ReadProxy(Section& s, ProxySettings& p) {
  std::optional<Endpoint> listen;
  s.GetEndpoint("listen", listen);
  if (listen) p.listen = *listen;
  s.GetInteger("workers", 0, 256, p.workers);
  s.GetEndpoint("admin_listen", p.admin_listen);
  s.GetEndpoint("metrics_listen", p.metrics_listen);
  using FormatChoice = std::pair<std::string_view, LogFormat>;
  s.GetChoice(
      "log_format",
      std::array{FormatChoice{"text", LogFormat::kText}, FormatChoice{"json", LogFormat::kJson}},
      p.log_format);
  using AuthChoice = std::pair<std::string_view, AuthMethod>;
  const std::array auth_choices{AuthChoice{"trust", AuthMethod::kTrust},
                                AuthChoice{"md5", AuthMethod::kMd5},
                                AuthChoice{"scram-sha-256", AuthMethod::kScramSha256}};
  s.GetChoice("auth_method", auth_choices, p.auth_method);
  s.GetChoice("admin_auth_method", auth_choices, p.admin_auth_method);
  s.GetInteger("max_clients", 1, 1'000'000, p.max_clients);
  s.GetInteger("max_logins", 1, 1'000'000, p.max_logins);
  s.GetInteger("admin_max_clients", 1, 1000, p.admin_max_clients);
  s.GetSeconds("login_timeout", p.login_timeout_s);
  if (p.login_timeout_s < 0.1) s.BadValue("login_timeout", "must be at least 0.1 seconds");
  s.GetString("tls_cert", p.tls_cert);
  s.GetString("tls_key", p.tls_key);
  if (p.tls_cert.empty() != p.tls_key.empty()) {
    s.BadValue(p.tls_cert.empty() ? "tls_key" : "tls_cert",
               "needs both proxy.tls_cert and proxy.tls_key");
  }
  s.GetSeconds("shutdown_timeout", p.shutdown_timeout_s);
  s.GetSeconds("connect_timeout", p.connect_timeout_s);
  s.GetInteger("max_message_size", 1024, int64_t{1} << 30, p.max_message_size);
  s.GetInteger("plan_cache_size", 0, 10'000'000, p.plan_cache_size);
  s.GetInteger("plan_cache_max_bytes", 0, int64_t{1} << 40, p.plan_cache_max_bytes);
  s.GetInteger("shadow_queue_size", 1, 1'000'000, p.shadow_queue_size);
  s.GetInteger("shadow_connections", 1, 64, p.shadow_connections);
  s.GetInteger("shadow_max_bytes", 1024, int64_t{1} << 40, p.shadow_max_bytes);
  s.GetInteger("mirror_max_bytes", 1024, int64_t{1} << 40, p.mirror_max_bytes);
  s.GetInteger("client_state_max_bytes", 1024, int64_t{1} << 40, p.client_state_max_bytes);
  s.GetSeconds("shadow_recheck_delay", p.shadow_recheck_s);
  s.GetSeconds("shadow_quiet_timeout", p.shadow_quiet_timeout_s);
  s.GetString("shadow_user", p.shadow_user);
  s.GetOptionalString("shadow_password", p.shadow_password);
  s.GetSeconds("shadow_timeout", p.shadow_timeout_s);
  if (p.shadow_timeout_s < 0.001) s.BadValue("shadow_timeout", "must be at least 0.001 seconds");
  if (s.GetString("deployment", p.deployment) &&
      (p.deployment.empty() || p.deployment.size() > 32 ||
       !std::all_of(p.deployment.begin(), p.deployment.end(),
                    [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }))) {
    s.BadValue("deployment", "must be 1 to 32 lower-case letters and digits");
  }
  // Below these, a periodic recovery would log in to both databases in a
  // tight loop, and a lock_timeout would round to 0 ms, which is no limit.
  s.GetSeconds("recovery_interval", p.recovery_interval_s);
  if (p.recovery_interval_s < 0.1) s.BadValue("recovery_interval", "must be at least 0.1 seconds");
  s.GetSeconds("recovery_min_age", p.recovery_min_age_s);
  s.GetSeconds("write_audit_interval", p.write_audit_interval_s);
  if (p.write_audit_interval_s != 0 && p.write_audit_interval_s < 0.1) {
    s.BadValue("write_audit_interval", "must be 0 (off) or at least 0.1 seconds");
  }
  s.GetSeconds("mirror_lock_timeout", p.mirror_lock_timeout_s);
  if (p.mirror_lock_timeout_s > 0 && p.mirror_lock_timeout_s < 0.001) {
    s.BadValue("mirror_lock_timeout", "must be 0 (no limit) or at least 0.001 seconds");
  }
}

void ReadBackend(Section& s, BackendConfig& b) {
  s.GetString("host", b.endpoint.host);
  s.GetInteger("port", 1, 65535, b.endpoint.port);
  s.GetOptionalString("dbname", b.dbname);
  s.GetOptionalString("user", b.user);
  s.GetOptionalString("password", b.password);
  s.GetChoice("sslmode", kSslModeNames, b.sslmode);
  s.GetString("sslrootcert", b.sslrootcert);
  if (VerifiesServer(b.sslmode) && b.sslrootcert.empty()) {
    s.BadValue("sslrootcert", StrCat("is required with sslmode \"", SslModeName(b.sslmode),
                                     "\" (a PEM file of CA certificates, or \"system\")"));
  } else if (!b.sslrootcert.empty() && b.sslrootcert != "system" &&
             !std::ifstream(b.sslrootcert).good()) {
    s.BadValue("sslrootcert", StrCat("cannot read \"", b.sslrootcert, "\""));
  }
}

void ReadUser(Section& s, UserConfig& u) {
  if (!s.GetString("name", u.name) || u.name.empty()) s.BadValue("name", "is required");
  s.GetString("password", u.password);
  s.Get("admin", u.admin);
  if (protocol::ScramVerifier::LooksLikeVerifier(u.password) &&
      !protocol::ScramVerifier::Parse(u.password).ok()) {
    s.BadValue("password", "looks like a SCRAM-SHA-256 verifier but is malformed");
  }
}

// `key` = { column = "expression over <other>'s columns", ... }.
void ReadTransforms(Section& s, const std::string& table, std::string_view key,
                    std::string_view other, std::vector<ColumnTransform>& out) {
  const toml::node* n = s.Find(key);
  if (n == nullptr) return;
  const toml::table* columns = n->as_table();
  if (columns == nullptr) {
    s.BadValue(key, StrCat("must be a table of column = \"SQL expression over the ", other,
                           " table's columns\""));
    return;
  }
  for (const auto& [column, v] : *columns) {
    std::optional<std::string> expression = v.value<std::string>();
    if (!expression) {
      s.Error(v, StrCat("\"", s.Qualified(key), ".", column.str(), "\" must be a string"));
      continue;
    }
    absl::StatusOr<ColumnTransform> parsed = ParseColumnTransform(column.str(), *expression);
    if (!parsed.ok()) {
      s.Error(v, StrCat("\"", s.Qualified(key), ".", column.str(), "\" (table ", table,
                        "): ", MessageOf(parsed.status())));
      continue;
    }
    out.push_back(*std::move(parsed));
  }
}

void CheckTransforms(Section& s, const TableConfig& t) {
  for (const auto& [key, why] : TransformConflicts(t)) s.BadValue(key, why);
  if (std::string why = TransformsRefusePhase(t); !why.empty()) s.BadValue("phase", why);
}

void ReadTable(Section& s, TableConfig& t) {
  if (!s.GetString("name", t.name) || t.name.empty()) s.BadValue("name", "is required");
  t.name = QualifyTableName(t.name);
  if (!s.GetString("new_name", t.new_name) || t.new_name.empty()) {
    s.BadValue("new_name", "is required");
  }
  t.new_name = QualifyTableName(t.new_name);
  if (s.Find("phase") == nullptr) s.BadValue("phase", "is required");
  s.GetChoice("phase", kPhaseNames, t.phase);
  s.GetStringArray("key", t.key);
  if (const toml::node* n = s.Find("columns")) {
    const toml::table* cols = n->as_table();
    if (cols == nullptr) {
      s.BadValue("columns", "must be a table of old column = \"new column\"");
    } else {
      for (const auto& [k, v] : *cols) {
        if (auto name = v.value<std::string>()) {
          t.columns[std::string(k.str())] = *name;
        } else {
          s.Error(v, StrCat("\"", s.Qualified("columns"), ".", k.str(), "\" must be a string"));
        }
      }
    }
  }
  ReadTransforms(s, t.name, "new_columns", "old", t.new_columns);
  ReadTransforms(s, t.name, "old_columns", "new", t.old_columns);
  for (auto [key, out] : {std::pair{"shadow_sample", &t.shadow_sample},
                           std::pair{"max_shadow_mismatch_rate", &t.max_shadow_mismatch_rate}}) {
    if (const toml::node* n = s.Find(key)) {
      std::optional<double> v = n->value<double>();
      if (!v || *v < 0 || *v > 1) {
        s.BadValue(key, "must be a number from 0 to 1");
      } else {
        *out = *v;
      }
    }
  }
  s.GetInteger("min_shadow_compared", 0, int64_t{1} << 40, t.min_shadow_compared);
  using PolicyChoice = std::pair<std::string_view, MirrorErrorPolicy>;
  s.GetChoice("on_mirror_error",
              std::array{PolicyChoice{"fail", MirrorErrorPolicy::kFail},
                         PolicyChoice{"log", MirrorErrorPolicy::kLog}},
              t.on_mirror_error);
  using ApplyChoice = std::pair<std::string_view, MirrorApply>;
  s.GetChoice("mirror_apply",
              std::array{ApplyChoice{"sync", MirrorApply::kSync},
                         ApplyChoice{"pipelined", MirrorApply::kPipelined}},
              t.mirror_apply);
  s.Get("force", t.force);
  CheckTransforms(s, t);
}

// Calls `read` for each table of the array `key`, and reports a non-table.
template <typename T, typename Fn>
void ReadArrayOfTables(Section& top, std::string_view key, std::vector<T>& out, Fn read,
                       std::vector<std::string>& errors, std::string_view source) {
  const toml::node* node = top.Find(key);
  if (node == nullptr) return;
  const toml::array* arr = node->as_array();
  if (arr == nullptr) {
    top.BadValue(key, StrCat("must be an array of tables ([[", key, "]])"));
    return;
  }
  size_t i = 0;
  for (const toml::node& item : *arr) {
    const toml::table* t = item.as_table();
    if (t == nullptr) {
      top.Error(item, StrCat("\"", key, "\" entries must be tables"));
      continue;
    }
    Section s(*t, StrCat(key, "[", i++, "]"), errors, source);
    T value;
    read(s, value);
    out.push_back(std::move(value));
  }
}

void CheckWhole(Config& c, std::vector<std::string>& errors) {
  if (c.coordination.enabled && (!c.old_backend.dbname || !c.old_backend.user)) {
    errors.push_back(StrCat(c.source,
                            ": coordination.enabled needs backends.old.dbname and user: the "
                            "phases are kept in the old database, on pgshift's own connection"));
  }
  std::set<std::string> seen;
  for (const UserConfig& u : c.users) {
    if (!seen.insert(u.name).second) {
      errors.push_back(StrCat(c.source, ": user \"", u.name, "\" is listed twice"));
    }
    if (c.proxy.auth_method == AuthMethod::kMd5 &&
        protocol::ScramVerifier::LooksLikeVerifier(u.password)) {
      errors.push_back(StrCat(c.source, ": user \"", u.name,
                                    "\" has a SCRAM verifier, which md5 auth_method cannot use"));
    }
  }
  if (c.proxy.auth_method != AuthMethod::kTrust && c.users.empty()) {
    errors.push_back(StrCat(c.source, ": proxy.auth_method \"",
                                  AuthMethodName(c.proxy.auth_method),
                                  "\" needs at least one [[users]] entry"));
  }
  seen.clear();
  for (const TableConfig& t : c.tables) {
    if (!seen.insert(t.name).second) {
      errors.push_back(StrCat(c.source, ": table \"", t.name, "\" is listed twice"));
    }
  }
}

}  // namespace

std::string_view AuthMethodName(AuthMethod method) {
  switch (method) {
    case AuthMethod::kTrust: return "trust";
    case AuthMethod::kMd5: return "md5";
    case AuthMethod::kScramSha256: return "scram-sha-256";
  }
  return "unknown";
}

std::string_view SslModeName(SslMode mode) {
  for (const auto& [name, m] : kSslModeNames) {
    if (m == mode) return name;
  }
  return "unknown";
}

const UserConfig* Config::FindUser(std::string_view name) const {
  for (const UserConfig& u : users) {
    if (u.name == name) return &u;
  }
  return nullptr;
}

const TableConfig* Config::FindTable(std::string_view name) const {
  const TableConfig* found = nullptr;
  for (const TableConfig& t : tables) {
    std::string_view bare = std::string_view(t.name).substr(t.name.rfind('.') + 1);
    if (t.name == name) return &t;
    if (bare == name) found = &t;
  }
  return found;
}

Phase Config::PhaseOf(const std::string& name) const {
  for (const TableConfig& t : tables) {
    if (t.name == name) return t.phase;
  }
  auto fleet = unconfigured_migrating.find(name);
  return fleet == unconfigured_migrating.end() ? Phase::kOldOnly : fleet->second;
}

absl::StatusOr<Endpoint> ParseEndpoint(std::string_view text) {
  size_t colon = text.rfind(':');
  if (colon == std::string_view::npos) {
    return absl::InvalidArgumentError(StrCat("\"", text, "\" is not host:port"));
  }
  std::string_view host = text.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  int port = 0;
  if (host.empty() || !ParseInt(text.substr(colon + 1), port) || port < 0 ||
      port > 65535) {
    return absl::InvalidArgumentError(StrCat("\"", text, "\" is not host:port"));
  }
  return Endpoint{std::string(host), static_cast<uint16_t>(port)};
}

std::string DefaultDeployment(const Config& c) {
  auto address = [](const BackendConfig& b) {
    return StrCat(b.endpoint.host, ":", b.endpoint.port, "/", b.dbname.value_or(""));
  };
  const std::string both =
      StrCat(address(c.old_backend), " ", c.new_backend ? address(*c.new_backend) : "");
  return Sha256Hex(both).substr(0, 12);
}

absl::StatusOr<ConfigPtr> ParseConfig(std::string_view text, std::string_view source) {
  toml::table root;
  try {
    root = toml::parse(text, source);
  } catch (const toml::parse_error& e) {
    return absl::InvalidArgumentError(StrCat(source, ":", e.source().begin.line, ": ",
                                                   e.description()));
  }
  auto config = std::make_shared<Config>();
  config->source = std::string(source);
  config->checksum = Sha256Hex(text);
  std::vector<std::string> errors;
  {
    Section top(root, "", errors, source);
    auto section = [&](std::string_view key, auto read) {
      const toml::node* node = top.Find(key);
      if (node == nullptr) return false;
      if (const toml::table* t = node->as_table()) {
        Section s(*t, std::string(key), errors, source);
        read(s);
      } else {
        top.BadValue(key, "must be a table");
      }
      return true;
    };
    section("proxy", [&](Section& s) { ReadProxy(s, config->proxy); });
    section("coordination", [&](Section& s) { ReadCoordination(s, config->coordination); });
    ReadArrayOfTables(top, "users", config->users, ReadUser, errors, source);
    if (const toml::node* node = top.Find("backends")) {
      if (const toml::table* backends = node->as_table()) {
        Section b(*backends, "backends", errors, source);
        auto read_backend = [&](std::string_view name, BackendConfig& out) {
          const toml::node* n = b.Find(name);
          if (n == nullptr) return false;
          if (const toml::table* t = n->as_table()) {
            Section s(*t, StrCat("backends.", name), errors, source);
            ReadBackend(s, out);
          } else {
            b.BadValue(name, "must be a table");
          }
          return true;
        };
        if (!read_backend("old", config->old_backend)) {
          errors.push_back(StrCat(source, ": [backends.old] is required"));
        }
        BackendConfig new_backend;
        if (read_backend("new", new_backend)) config->new_backend = new_backend;
      } else {
        top.BadValue("backends", "must be a table");
      }
    } else {
      errors.push_back(StrCat(source, ": [backends.old] is required"));
    }
    ReadArrayOfTables(top, "tables", config->tables, ReadTable, errors, source);
  }
  CheckWhole(*config, errors);
  if (config->proxy.deployment.empty()) config->proxy.deployment = DefaultDeployment(*config);
  if (!errors.empty()) return absl::InvalidArgumentError(absl::StrJoin(errors, "\n"));
  return ConfigPtr(std::move(config));
}

absl::StatusOr<ConfigPtr> LoadConfigFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(StrCat("cannot read config file \"", path, "\""));
  std::stringstream text;
  text << in.rdbuf();
  return ParseConfig(text.str(), path);
}

}  // namespace pgshift::routing
