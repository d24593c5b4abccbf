#include "proxy/admin_console.h"

#include <algorithm>
#include <cctype>
#include <ctime>
#include <vector>

#include "absl/strings/str_join.h"
#include "common/strings.h"
#include "protocol/crypto.h"
#include "protocol/message_type.h"
#include "protocol/messages/authentication.h"
#include "protocol/messages/backend_key_data.h"
#include "protocol/messages/command_complete.h"
#include "protocol/messages/data_row.h"
#include "protocol/messages/empty.h"
#include "protocol/messages/error_response.h"
#include "protocol/messages/parameter_status.h"
#include "protocol/messages/query.h"
#include "protocol/messages/ready_for_query.h"
#include "protocol/messages/row_description.h"
#include "proxy/client_login.h"
#include "proxy/deadline.h"
#include "proxy/log.h"
#include "proxy/message_io.h"
#include "proxy/migration_state.h"
#include "proxy/server.h"
#include "proxy/session.h"
#include "proxy/status_page.h"

namespace pgshift::proxy {

namespace {

namespace sqlstate = protocol::sqlstate;
constexpr int32_t kTextOid = 25;

// A result set of text columns.
struct Table {
  std::vector<std::string> columns;
  std::vector<std::vector<std::string>> rows;

  void Encode(std::string& out, std::string_view tag) const {
    protocol::RowDescription desc;
    for (const auto& c : columns) desc.fields.push_back({c, 0, 0, kTextOid, -1, -1, 0});
    desc.Encode(out);
    for (const auto& r : rows) {
      protocol::DataRow row;
      for (const auto& v : r) row.values.emplace_back(v);
      row.Encode(out);
    }
    protocol::CommandComplete{StrCat(tag, " ", rows.size())}.Encode(out);
  }
};

std::string Endpoint(const routing::Endpoint& e) { return StrCat(e.host, ":", e.port); }
std::string Endpoint(const std::optional<routing::Endpoint>& e) { return e ? Endpoint(*e) : ""; }

std::string Time(std::chrono::system_clock::time_point t);

// The statements on configured tables by shape, most executed first.
Table ShowQueries(const routing::QueryFingerprints& fingerprints) {
  std::vector<routing::QueryFingerprints::Row> rows = fingerprints.Rows();
  std::sort(rows.begin(), rows.end(),
            [](const auto& a, const auto& b) { return a.executions > b.executions; });
  Table t{{"fingerprint", "tables", "kind", "executions", "refused", "last_seen", "query"}, {}};
  for (const auto& r : rows) {
    const std::chrono::system_clock::time_point seen{std::chrono::milliseconds(r.last_seen_ms)};
    t.rows.push_back({r.fingerprint, absl::StrJoin(r.tables, ", "), r.writes ? "write" : "read",
                      StrCat(r.executions), StrCat(r.refused), Time(seen), r.normalized});
  }
  return t;
}

// EXPLAIN PHASE: refused shapes first, then by executions.
Table ExplainPhase(const std::vector<routing::DryRunRow>& rows) {
  Table t{{"verdict", "server", "kind", "executions", "query", "mirrored", "shadowed", "detail"},
          {}};
  for (const routing::DryRunRow& r : rows) {
    t.rows.push_back({routing::Verdict(r), r.server, r.shape.writes ? "write" : "read",
                      StrCat(r.shape.executions + r.shape.refused), r.shape.normalized, r.mirrored,
                      r.shadowed, r.detail});
  }
  return t;
}

std::string Time(std::chrono::system_clock::time_point t) {
  std::time_t tt = std::chrono::system_clock::to_time_t(t);
  std::tm tm;
  gmtime_r(&tt, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%SZ", &tm);
  return buf;
}

std::string Join(const std::vector<std::string>& items) {
  std::string out;
  for (const auto& i : items) out += out.empty() ? i : StrCat(",", i);
  return out;
}

// Empty outside a mirrored phase; "pending" until the count begins.
std::string UnexplainedChanges(const routing::Config& config, const routing::TableConfig& table,
                               const WriteAudit& audit) {
  if (!routing::MirrorsWrites(table.phase)) return "";
  if (config.proxy.write_audit_interval_s == 0) return "off";
  std::optional<uint64_t> n = audit.Unexplained(table.name);
  return n ? StrCat(*n) : "pending";
}

// With coordination (`fleet`: every instance's evidence), three more
// columns: the whole fleet's since the table entered its phase.
// `in_phase`: this instance's shadow counts since each table entered its
// phase (what the guard rail judges without coordination).
Table ShowTables(const routing::Config& c, routing::TableCounterRegistry& counters,
                 const WriteAudit& audit,
                 const absl::flat_hash_map<std::string, ShadowEvidence>& in_phase,
                 const absl::flat_hash_map<std::string, ShadowEvidence>* fleet) {
  Table t{{"table",
           "new_name",
           "phase",
           "reads",
           "writes",
           "refused",
           "key",
           "renamed_columns",
           "shadow_sample",
           "on_mirror_error",
           "force",
           "shadow_compared",
           "shadow_matched",
           "shadow_transient",
           "shadow_persistent",
           "shadow_unstable",
           "shadow_dropped",
           "shadow_skipped",
           "rows_written",
           "mirror_failures",
           "unexplained_changes",
           "phase_shadow_compared",
           "phase_shadow_persistent"},
          {}};
  for (const auto& tab : c.tables) {
    std::vector<std::string> renames;
    for (const auto& [from, to] : tab.columns) renames.push_back(StrCat(from, "->", to));
    const routing::TableCounters& n = counters.For(tab.name);
    t.rows.push_back({tab.name,
                      tab.new_name,
                      std::string(routing::PhaseName(tab.phase)),
                      StrCat(n.reads.load()),
                      StrCat(n.writes.load()),
                      StrCat(n.refused.load()),
                      Join(tab.key),
                      Join(renames),
                      StrCat(tab.shadow_sample),
                      tab.on_mirror_error == routing::MirrorErrorPolicy::kFail ? "fail" : "log",
                      tab.force ? "true" : "false",
                      StrCat(n.shadow_compared.load()),
                      StrCat(n.shadow_matched.load()),
                      StrCat(n.shadow_transient.load()),
                      StrCat(n.shadow_persistent.load()),
                      StrCat(n.shadow_unstable.load()),
                      StrCat(n.shadow_dropped.load()),
                      StrCat(n.shadow_skipped.load()),
                      StrCat(n.rows_written.load()),
                      StrCat(n.mirror_failures.load()),
                      UnexplainedChanges(c, tab, audit)});
    auto local = in_phase.find(tab.name);
    const ShadowEvidence since = local == in_phase.end() ? ShadowEvidence{} : local->second;
    t.rows.back().insert(t.rows.back().end(), {StrCat(since.compared), StrCat(since.persistent)});
    if (fleet != nullptr) {
      auto it = fleet->find(tab.name);
      ShadowEvidence e = it == fleet->end() ? ShadowEvidence{} : it->second;
      t.rows.back().insert(t.rows.back().end(),
                           {StrCat(e.compared), StrCat(e.persistent), StrCat(e.refused)});
    }
  }
  if (fleet != nullptr) {
    t.columns.insert(t.columns.end(),
                     {"fleet_shadow_compared", "fleet_shadow_persistent", "fleet_refused"});
  }
  return t;
}

Table ShowClients(const std::vector<ClientRow>& clients) {
  Table t{{"session", "client", "user", "database", "backend_pid", "tls", "state", "queries",
           "connected_at"},
          {}};
  for (const auto& c : clients) {
    t.rows.push_back({StrCat(c.session), c.client, c.user, c.database, StrCat(c.backend_pid),
                      c.tls ? "on" : "off", c.state, StrCat(c.queries), Time(c.connected_at)});
  }
  return t;
}

Table ShowConfig(const Settings& s, const std::string& path) {
  const routing::Config& c = *s.config;
  const routing::ProxySettings& p = c.proxy;
  auto backend = [](std::string_view name, const routing::BackendConfig& b,
                    std::vector<std::vector<std::string>>& rows) {
    rows.push_back({StrCat("backends.", name, ".address"), Endpoint(b.endpoint)});
    rows.push_back({StrCat("backends.", name, ".dbname"), b.dbname.value_or("(client's)")});
    rows.push_back({StrCat("backends.", name, ".user"), b.user.value_or("(client's)")});
    rows.push_back({StrCat("backends.", name, ".password"), b.password ? "(set)" : "(client's)"});
    rows.push_back({StrCat("backends.", name, ".sslmode"), std::string(routing::SslModeName(b.sslmode))});
    if (!b.sslrootcert.empty()) {
      rows.push_back({StrCat("backends.", name, ".sslrootcert"), b.sslrootcert});
    }
  };
  Table t{{"key", "value"}, {}};
  t.rows = {
      {"config_file", path},
      {"generation", StrCat(s.generation)},
      {"proxy.listen", Endpoint(p.listen)},
      {"proxy.workers", StrCat(p.workers)},
      {"proxy.admin_listen", Endpoint(p.admin_listen)},
      {"proxy.metrics_listen", Endpoint(p.metrics_listen)},
      {"proxy.log_format", p.log_format == routing::LogFormat::kJson ? "json" : "text"},
      {"proxy.auth_method", std::string(routing::AuthMethodName(p.auth_method))},
      {"proxy.max_clients", StrCat(p.max_clients)},
      {"proxy.max_logins", StrCat(p.max_logins)},
      {"proxy.login_timeout", StrCat(p.login_timeout_s)},
      {"proxy.admin_max_clients", StrCat(p.admin_max_clients)},
      {"proxy.tls", p.tls_enabled() ? "on" : "off"},
      {"proxy.shutdown_timeout", StrCat(p.shutdown_timeout_s)},
      {"proxy.connect_timeout", StrCat(p.connect_timeout_s)},
      {"proxy.max_message_size", StrCat(p.max_message_size)},
      {"users", StrCat(c.users.size())},
      {"tables", StrCat(c.tables.size())},
  };
  backend("old", c.old_backend, t.rows);
  if (c.new_backend) backend("new", *c.new_backend, t.rows);
  return t;
}

Table ShowStats(Server& server) {
  Stats& s = server.stats();
  Stats::Latency l = s.latency();
  Table t{{"stat", "value"}, {}};
  t.rows = {
      {"sessions", StrCat(server.live_sessions())},
      {"sessions_total", StrCat(s.sessions_total.load())},
      {"queries_total", StrCat(l.count)},
      {"query_seconds_mean", StrCat(l.count ? l.sum_seconds / static_cast<double>(l.count) : 0.0)},
      {"login_failures_total", StrCat(s.login_failures.load())},
      {"protocol_violations_total", StrCat(s.protocol_violations.load())},
      {"backend_failures_total", StrCat(s.backend_failures.load())},
  };
  return t;
}

// Commands are a few words, not SQL: split on blanks, without the
// trailing semicolon psql sends.
std::vector<std::string> SplitWords(std::string_view sql) {
  std::vector<std::string> words;
  std::string current;
  for (char c : sql) {
    if (std::isspace(static_cast<unsigned char>(c)) || c == ';') {
      if (!current.empty()) words.push_back(std::move(current));
      current.clear();
    } else {
      current.push_back(c);
    }
  }
  if (!current.empty()) words.push_back(std::move(current));
  return words;
}

// The words, case folded.
std::vector<std::string> Words(std::string_view sql) {
  std::vector<std::string> words = SplitWords(sql);
  for (std::string& w : words) {
    for (char& c : w) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  }
  return words;
}

}  // namespace

AdminConsole::AdminConsole(Server& server, tcp::socket socket)
    : server_(server), client_(std::move(socket)) {
  error_code ec;
  auto remote = client_.socket().remote_endpoint(ec);
  address_ = ec ? "unknown" : StrCat(remote.address().to_string(), ":", remote.port());
}

awaitable<void> AdminConsole::Run() {
  auto deadline =
      std::make_unique<Deadline>(client_, server_.settings()->config->proxy.login_timeout_s);
  ClientLogin login(client_, buffer_, address_, server_.stats());
  auto start = co_await login.ReadStartup(server_.client_tls());
  if (!start) co_return;
  auto* startup = std::get_if<protocol::StartupMessage>(&*start);
  if (startup == nullptr) {  // a CancelRequest: nothing to cancel here
    client_.Close();
    co_return;
  }
  std::string user(startup->Get("user"));
  SettingsPtr settings = server_.settings();
  const routing::ProxySettings& proxy = settings->config->proxy;
  const routing::AuthMethod method = proxy.admin_auth_method.value_or(proxy.auth_method);
  // Trust where anyone on the network could reach the console would hand
  // them RELOAD and the migration's state: only from this host, unless
  // admin_auth_method says trust on purpose.
  error_code ec;
  const bool local = client_.socket().remote_endpoint(ec).address().is_loopback() && !ec;
  if (method == routing::AuthMethod::kTrust && !proxy.admin_auth_method && !local) {
    LogEvent(LogLevel::kWarning, "admin_refused",
             {{"client", address_}, {"user", user}, {"reason", "trust from another host"}});
    co_await login.Fail(Fatal(sqlstate::kInvalidAuthorization,
                              "pgshift: the admin console takes trust logins only from this "
                              "host; set proxy.admin_auth_method"));
    co_return;
  }
  if (!co_await login.Authenticate(*settings, user, method)) co_return;
  deadline.reset();
  const routing::UserConfig* entry = settings->config->FindUser(user);
  if (entry == nullptr || !entry->admin) {
    LogEvent(LogLevel::kWarning, "admin_refused",
             {{"client", address_}, {"user", user}, {"reason", "not an admin user"}});
    co_await login.Fail(Fatal(sqlstate::kInvalidAuthorization,
                              StrCat("pgshift: user \"", user,
                                     "\" may not use the admin console (needs admin = true in "
                                     "[[users]])")));
    co_return;
  }
  std::string hello;
  protocol::Authentication{}.Encode(hello);
  for (auto [name, value] : {std::pair<const char*, const char*>{"server_version", "15.0"},
                             {"server_encoding", "UTF8"},
                             {"client_encoding", "UTF8"},
                             {"DateStyle", "ISO, MDY"},
                             {"integer_datetimes", "on"},
                             {"standard_conforming_strings", "on"},
                             {"application_name", "pgshift admin"}}) {
    protocol::ParameterStatus{name, value}.Encode(hello);
  }
  protocol::BackendKeyData key;
  protocol::FillRandom(&key, sizeof key);
  key.Encode(hello);
  protocol::ReadyForQuery{protocol::TransactionStatus::kIdle}.Encode(hello);
  co_await login.Send(hello);
  LogEvent(LogLevel::kInfo, "admin_session_start", {{"client", address_}, {"user", user}});

  while (login.writable()) {
    error_code ec;
    auto message = co_await ReadWholeMessage(client_, buffer_, protocol::kFrontendTypes, ec);
    if (ec) break;
    if (!message.ok()) {
      co_await login.Fail(Fatal(sqlstate::kProtocolViolation, MessageOf(message.status())));
      co_return;
    }
    char type = (*message)[0];
    if (type == protocol::frontend::kTerminate) break;
    std::string reply;
    if (type == protocol::frontend::kQuery) {
      auto query = protocol::Query::Decode(std::string_view(*message).substr(protocol::kHeaderSize));
      // Some commands read a backend (SHOW HISTORY, RELOAD's catalogs):
      // every one runs off the thread that accepts clients.
      std::string sql = query.ok() ? query->sql : "";
      // A named local: GCC 12 destroys temporaries inside co_await twice.
      std::function<std::string()> work = [this, sql] { return Execute(sql); };
      reply = co_await server_.RunInBackground(std::move(work));
      if (reply.empty()) {
        protocol::ErrorResponse(
            protocol::ErrorFields::Make("ERROR", sqlstate::kAdminShutdown,
                                        "pgshift admin console: the command did not complete "
                                        "(pgshift is shutting down, or it failed: see the log)"))
            .Encode(reply);
        protocol::ReadyForQuery{protocol::TransactionStatus::kIdle}.Encode(reply);
      }
    } else if (type == protocol::frontend::kSync) {
      protocol::ErrorResponse(protocol::ErrorFields::Make(
                                  "ERROR", sqlstate::kFeatureNotSupported,
                                  "pgshift admin console: only the simple query protocol is supported"))
          .Encode(reply);
      protocol::ReadyForQuery{protocol::TransactionStatus::kIdle}.Encode(reply);
    }
    if (!reply.empty()) co_await login.Send(reply);
  }
  client_.Close();
}

std::string AdminConsole::Execute(std::string_view sql) {
  std::vector<std::string> words = Words(sql);
  std::string out;
  auto error = [&](std::string_view code, std::string message) {
    protocol::ErrorResponse(protocol::ErrorFields::Make("ERROR", code, message)).Encode(out);
  };
  if (words.empty()) {
    protocol::EmptyQueryResponse{}.Encode(out);
  } else if (words.size() == 2 && words[0] == "SHOW" && words[1] == "TABLES") {
    std::optional<absl::flat_hash_map<std::string, ShadowEvidence>> fleet;
    if (Coordinator* coordinator = server_.coordinator()) fleet = coordinator->FleetTotals();
    SettingsPtr settings = server_.settings();
    absl::flat_hash_map<std::string, ShadowEvidence> in_phase;
    for (const routing::TableConfig& t : settings->config->tables) {
      in_phase[t.name] = server_.EvidenceSincePhase(t.name);
    }
    ShowTables(*settings->config, server_.table_counters(), server_.write_audit(), in_phase,
               fleet ? &*fleet : nullptr)
        .Encode(out, "SHOW");
  } else if (words.size() == 2 && words[0] == "SHOW" && words[1] == "STATUS") {
    auto status = ReadServerStatus(server_);
    if (status.ok()) {
      Table{StatusColumns(), StatusRows(*status)}.Encode(out, "SHOW");
    } else {
      error(sqlstate::kObjectNotInPrerequisiteState,
            StrCat("pgshift: cannot read the status: ", MessageOf(status.status())));
    }
  } else if (words.size() == 2 && words[0] == "SHOW" && words[1] == "CLIENTS") {
    ShowClients(server_.ListClients()).Encode(out, "SHOW");
  } else if (words.size() == 2 && words[0] == "SHOW" && words[1] == "CONFIG") {
    ShowConfig(*server_.settings(), server_.config_path()).Encode(out, "SHOW");
  } else if (words.size() == 2 && words[0] == "SHOW" && words[1] == "STATS") {
    ShowStats(server_).Encode(out, "SHOW");
  } else if (words.size() == 2 && words[0] == "SHOW" && words[1] == "HISTORY") {
    auto history = ReadHistory(*server_.settings()->config, server_.backend_tls());
    if (history.ok()) {
      Table{{"recorded_at", "table", "event", "detail"}, *std::move(history)}.Encode(out, "SHOW");
    } else {
      error(sqlstate::kObjectNotInPrerequisiteState,
            StrCat("pgshift: cannot read pgshift_state: ", MessageOf(history.status())));
    }
  } else if (words.size() == 2 && words[0] == "SHOW" && words[1] == "PREPARED") {
    Table t{{"backend", "transaction", "reason"}, {}};
    for (const UnresolvedMirror& u : server_.LastRecovery().unresolved) {
      t.rows.push_back({u.backend, u.transaction, u.reason});
    }
    t.Encode(out, "SHOW");
  } else if (words.size() == 2 && words[0] == "SHOW" && words[1] == "MISMATCHES") {
    Table t{{"at", "table", "fingerprint", "query", "detail"}, {}};
    for (const MismatchRecord& m : server_.mismatches().Recent()) {
      t.rows.push_back({Time(m.at), m.table, m.fingerprint, m.query, m.detail});
    }
    t.Encode(out, "SHOW");
  } else if (words.size() == 2 && words[0] == "SHOW" && words[1] == "QUERIES") {
    ShowQueries(server_.table_counters().fingerprints()).Encode(out, "SHOW");
  } else if (words.size() == 2 && words[0] == "SHOW" && words[1] == "INSTANCES") {
    Table t{{"instance", "address", "version", "generation", "lease_expires", "live", "sessions",
             "acknowledged", "holding"},
            {}};
    if (Coordinator* coordinator = server_.coordinator()) {
      for (const InstanceRow& i : coordinator->Instances()) {
        t.rows.push_back({i.id, i.address, i.version, i.generation, i.lease_expires,
                          i.live ? "yes" : "no", i.sessions, i.acknowledged, i.holding});
      }
    }
    t.Encode(out, "SHOW");
  } else if (words.size() == 5 && words[0] == "SET" && words[1] == "PHASE" && words[3] == "TO") {
    // The table and phase as typed (Words folds case).
    std::vector<std::string> typed = SplitWords(sql);
    LogEvent(LogLevel::kInfo, "phase_change_requested",
             {{"client", address_}, {"table", typed[2]}, {"to", typed[4]}});
    absl::Status s = server_.SetPhase(typed[2], typed[4]);
    if (s.ok()) {
      protocol::CommandComplete{"SET PHASE"}.Encode(out);
    } else {
      error(sqlstate::kObjectNotInPrerequisiteState,
            StrCat("pgshift: phase change refused: ", MessageOf(s)));
    }
  } else if (words.size() == 5 && words[0] == "EXPLAIN" && words[1] == "PHASE" &&
             words[3] == "TO") {
    std::vector<std::string> typed = SplitWords(sql);
    auto plan = server_.ExplainPhase(typed[2], typed[4]);
    if (!plan.ok() || !plan->flip_refused.empty()) {
      error(sqlstate::kObjectNotInPrerequisiteState,
            StrCat("pgshift: cannot explain the flip: ",
                   plan.ok() ? plan->flip_refused : MessageOf(plan.status())));
    } else {
      ExplainPhase(plan->rows).Encode(out, "EXPLAIN");
    }
  } else if (words.size() == 2 && words[0] == "SHOW" && words[1] == "HELP") {
    Table help{{"command", "what it shows or does"},
               {{"SHOW TABLES", "the migrating tables and their phases"},
                {"SHOW CLIENTS", "client sessions"},
                {"SHOW CONFIG", "the running settings"},
                {"SHOW STATS", "counters since start"},
                {"SHOW HISTORY", "phase changes, backfills and verifies recorded in pgshift_state"},
                {"SHOW STATUS",
                 "per table: phase and since when, backfill, last verify, shadow reads, the next "
                 "step's guard rails and the command that moves it on"},
                {"SHOW MISMATCHES", "the latest shadow read mismatches"},
                {"SHOW QUERIES", "the statements sent to configured tables, by shape"},
                {"SHOW PREPARED", "prepared mirrors recovery left alone, and why"},
                {"SHOW INSTANCES", "the coordinated instances, their leases and flips"},
                {"EXPLAIN PHASE table TO phase",
                 "what that flip would do to each statement shape sent to the table"},
                {"SET PHASE table TO phase", "propose a fenced flip to every instance"},
                {"RELOAD", "read the configuration file again"}}};
    help.Encode(out, "SHOW");
  } else if (words.size() == 1 && words[0] == "RELOAD") {
    LogEvent(LogLevel::kInfo, "reload_requested", {{"client", address_}, {"via", "admin console"}});
    absl::Status s = server_.Reload();
    if (s.ok()) {
      protocol::CommandComplete{"RELOAD"}.Encode(out);
    } else {
      error(sqlstate::kObjectNotInPrerequisiteState,
            StrCat("pgshift: configuration rejected, the running one stays: ", MessageOf(s)));
    }
  } else {
    error(sqlstate::kSyntaxError, StrCat("pgshift admin console: unknown command \"",
                                         std::string(sql), "\"; SHOW HELP lists the commands"));
  }
  protocol::ReadyForQuery{protocol::TransactionStatus::kIdle}.Encode(out);
  return out;
}

}  // namespace pgshift::proxy
