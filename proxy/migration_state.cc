#include "proxy/migration_state.h"

#include "common/json.h"
#include "common/strings.h"
#include "proxy/backend_query.h"
#include "proxy/control_connection.h"
#include "proxy/log.h"
#include "proxy/packet_buffer.h"
#include "routing/hidden_writes.h"
#include "routing/key_sequence.h"
#include "routing/mirror.h"
#include "routing/state_schema.h"

namespace pgshift::proxy {

namespace {

routing::Phase PhaseIn(const routing::Config& config, const std::string& table) {
  return config.PhaseOf(table);
}

// A control connection to old with pgshift_state in place.
struct StateConnection {
  std::unique_ptr<Stream> stream;
  PacketBuffer buffer;

  awaitable<absl::StatusOr<QueryResult>> Query(std::string_view sql) {
    co_return co_await RunQuery(*stream, buffer, sql);
  }
};

// `create`: with pgshift_state created when missing; readers (status)
// take no such lock and write nothing.
awaitable<absl::StatusOr<std::unique_ptr<StateConnection>>> OpenState(const routing::Config& config,
                                                                      asio::ssl::context& tls,
                                                                      bool create = true) {
  auto opened = co_await OpenControlConnection(config, config.old_backend, "old", tls);
  if (!opened.ok()) co_return opened.status();
  auto state = std::make_unique<StateConnection>();
  state->stream = std::move(*opened);
  if (!create) co_return state;
  for (const char* ddl : {routing::kCreateStateTable, routing::kCreateRangeIndex}) {
    auto created = co_await state->Query(ddl);
    if (!created.ok()) co_return created.status();
  }
  co_return state;
}

std::string RecordSql(const std::string& table, std::string_view from, std::string_view to,
                      bool forced, const std::string& checksum, bool at_start) {
  std::string detail = StrCat("{\"from\":", JsonString(from), ",\"to\":", JsonString(to),
                              ",\"forced\":", forced ? "true" : "false",
                              ",\"config_checksum\":", JsonString(checksum),
                              at_start ? ",\"at_start\":true" : "", "}");
  return StrCat("INSERT INTO pgshift_state (table_name, kind, detail) VALUES (",
                QuoteLiteral(table), ", 'phase', ", QuoteLiteral(detail), "::jsonb)");
}

// A verify with zero differences recorded since the table last entered
// dual-write (or ever, when that was never recorded).
std::string CleanVerifySql(const std::string& table) {
  std::string t = QuoteLiteral(table);
  return StrCat(
      "SELECT EXISTS (SELECT 1 FROM pgshift_state v WHERE v.table_name = ", t,
      " AND v.kind = 'verify' AND (v.detail->>'missing')::int + (v.detail->>'extra')::int + "
      "(v.detail->>'different')::int = 0 AND v.recorded_at > coalesce((SELECT "
      "max(p.recorded_at) FROM pgshift_state p WHERE p.table_name = ",
      t, " AND p.kind = 'phase' AND p.detail->>'to' = 'dual-write'), '-infinity'))");
}

// The key-sequence guard rail (routing/key_sequence.h) on the side that
// takes writes over: why not, or "".
awaitable<std::string> KeySequenceBehind(const routing::Config& config,
                                         const routing::TableConfig& t, bool to_new,
                                         asio::ssl::context& tls) {
  std::optional<routing::KeySequenceCheck> check = routing::KeySequenceCheckFor(t, to_new);
  if (!check) co_return "";
  const routing::BackendConfig& backend =
      to_new && config.new_backend ? *config.new_backend : config.old_backend;
  std::string side = to_new && config.new_backend ? "new" : "old";
  auto opened = co_await OpenControlConnection(config, backend, side, tls);
  if (!opened.ok()) {
    co_return StrCat("cannot check the key sequence of ", check->table, ": ",
                     MessageOf(opened.status()));
  }
  PacketBuffer buffer;
  auto result = co_await RunQuery(**opened, buffer, check->sql);
  (*opened)->Close();
  if (!result.ok()) {
    co_return StrCat("cannot check the key sequence of ", check->table, ": ",
                     MessageOf(result.status()));
  }
  co_return routing::KeySequenceBehind(*check, result->rows.at(0), side);
}

}  // namespace

std::vector<PhaseChange> PhaseChanges(const routing::Config& running, const routing::Config& next) {
  std::vector<PhaseChange> changes;
  for (const routing::TableConfig& t : next.tables) {
    routing::Phase before = PhaseIn(running, t.name);
    if (before != t.phase) changes.push_back({t.name, before, t.phase, t.force});
  }
  for (const routing::TableConfig& t : running.tables) {
    bool kept = false;
    for (const routing::TableConfig& n : next.tables) kept = kept || n.name == t.name;
    if (!kept && t.phase != routing::Phase::kOldOnly) {
      changes.push_back({t.name, t.phase, routing::Phase::kOldOnly, false});
    }
  }
  return changes;
}

namespace {

using State = absl::StatusOr<std::unique_ptr<StateConnection>>;

// `why` a guard rail of change `c` (into `to`) is not met ("" when it is):
// the change is refused, unless forced.
absl::Status UnlessForced(const PhaseChange& c, std::string_view to, const std::string& why) {
  if (why.empty()) return absl::OkStatus();
  if (c.forced) {
    LogEvent(LogLevel::kWarning, "guard_rail_overridden",
             {{"table", c.table}, {"to", to}, {"reason", why}});
    return absl::OkStatus();
  }
  return absl::FailedPreconditionError(
      StrCat(c.table, " cannot move to ", to, ": ", why, " (force = true overrides)"));
}

// shadow-read -> new-primary: enough shadow reads compared, few enough
// mismatched.
std::string ShadowShortfall(const routing::TableConfig& table, const ShadowEvidence& e) {
  double rate =
      e.compared ? static_cast<double>(e.persistent) / static_cast<double>(e.compared) : 0;
  if (e.compared < static_cast<uint64_t>(table.min_shadow_compared)) {
    return StrCat("only ", e.compared,
                  " shadow reads were compared since it entered "
                  "shadow-read (min_shadow_compared = ",
                  table.min_shadow_compared, ")");
  }
  if (rate > table.max_shadow_mismatch_rate) {
    return StrCat(e.persistent, " of ", e.compared,
                  " shadow reads compared mismatched persistently, above "
                  "max_shadow_mismatch_rate = ",
                  table.max_shadow_mismatch_rate);
  }
  return "";
}

// dual-write -> shadow-read: a verify with zero differences recorded since
// the table entered dual-write.
awaitable<std::string> VerifyShortfall(State& state, const std::string& table) {
  if (!state.ok()) {
    co_return StrCat("cannot look for a verify in pgshift_state: ", MessageOf(state.status()));
  }
  std::string sql = CleanVerifySql(table);
  auto clean = co_await (*state)->Query(sql);
  if (!clean.ok()) {
    co_return StrCat("cannot look for a verify in pgshift_state: ", MessageOf(clean.status()));
  }
  if (clean->rows[0][0] != "t") {
    co_return "no verify with zero differences was recorded since it entered dual-write; run "
              "pgshift verify (with --repair if needed) until it reports none";
  }
  co_return "";
}

// The paths to `table` on old (`on_new` false) or new that write it
// unseen (routing/hidden_writes.h).
awaitable<absl::StatusOr<std::vector<routing::HiddenWritePath>>> FindHiddenWritePaths(
    const routing::Config& config, const routing::TableConfig& table, bool on_new,
    asio::ssl::context& tls) {
  const bool second_server = on_new && config.new_backend.has_value();
  const routing::BackendConfig& backend = second_server ? *config.new_backend : config.old_backend;
  auto opened = co_await OpenControlConnection(config, backend, second_server ? "new" : "old", tls);
  if (!opened.ok()) co_return opened.status();
  PacketBuffer buffer;
  const std::string sql = routing::HiddenWritePathsSql(on_new ? table.new_name : table.name);
  auto rows = co_await RunQuery(**opened, buffer, sql);
  (*opened)->Close();
  if (!rows.ok()) co_return rows.status();
  co_return routing::HiddenWritePathsOf(config, rows->rows, on_new);
}

// Into a mirrored phase: no write reaches the table without a statement
// naming it, on old, and on new too when new takes the writes over.
// Nothing when pgshift lacks the settings to look (a backend without
// dbname or user): the rail is then unknown, logged, and holds no flip.
awaitable<std::optional<std::string>> HiddenWritesShortfall(const routing::Config& next,
                                                            const routing::TableConfig& table,
                                                            routing::Phase to,
                                                            asio::ssl::context& tls) {
  std::vector<routing::HiddenWritePath> paths;
  bool unchecked = false;
  for (bool on_new : {false, true}) {
    if (on_new && to != routing::Phase::kNewPrimary) break;
    auto found = co_await FindHiddenWritePaths(next, table, on_new, tls);
    if (found.status().code() == absl::StatusCode::kFailedPrecondition) {
      LogEvent(LogLevel::kWarning, "hidden_write_paths_unchecked",
               {{"table", table.name}, {"reason", MessageOf(found.status())}});
      unchecked = true;
      continue;
    }
    if (!found.ok()) {
      co_return StrCat("cannot read the catalog of ", on_new ? "new" : "old",
                       " for writes that reach it unseen: ", MessageOf(found.status()));
    }
    paths.insert(paths.end(), found->begin(), found->end());
  }
  if (!paths.empty()) {
    co_return StrCat("writes reach it without a statement naming it, which pgshift cannot mirror: ",
                     routing::DescribeHiddenWritePaths(paths),
                     "; with force = true the two sides may drift apart there");
  }
  if (unchecked) co_return std::nullopt;
  co_return "";
}

// Every guard rail of `c` (SPEC section 6), each judged; none stops the
// others. `evidence` null: the shadow evidence is not known here.
awaitable<std::vector<RailVerdict>> Rails(
    const routing::Config& next, const PhaseChange& c,
    const absl::flat_hash_map<std::string, ShadowEvidence>* evidence, State& state,
    asio::ssl::context& tls) {
  std::vector<RailVerdict> rails;
  const routing::TableConfig* table = nullptr;
  for (const routing::TableConfig& t : next.tables) {
    if (t.name == c.table) table = &t;
  }
  if (table == nullptr) co_return rails;  // leaving: back to old-only
  auto judged = [&](std::string rail, std::string why, std::string numbers = "") {
    rails.push_back({std::move(rail), why.empty() ? RailVerdict::kMet : RailVerdict::kNotMet,
                     std::move(why), std::move(numbers)});
  };
  if (routing::MirrorsWrites(c.to)) {
    std::optional<std::string> why = co_await HiddenWritesShortfall(next, *table, c.to, tls);
    if (why) {
      judged("no write reaches it unseen", *why);
    } else {
      rails.push_back({"no write reaches it unseen", RailVerdict::kUnknown,
                       "not checked: pgshift needs a backend's dbname and user to read its "
                       "catalog for triggers and rules that write the table",
                       ""});
    }
  }
  using routing::Phase;
  const bool to_new_primary = c.from == Phase::kShadowRead && c.to == Phase::kNewPrimary;
  if (to_new_primary || (c.from == Phase::kNewPrimary && c.to == Phase::kShadowRead)) {
    // The side taking over must not hand out keys the table already holds.
    std::string why = co_await KeySequenceBehind(next, *table, to_new_primary, tls);
    judged("its key sequence ahead of its keys", why);
  }
  if (to_new_primary) {
    if (evidence == nullptr) {
      rails.push_back({"shadow reads compared, few mismatched", RailVerdict::kUnknown,
                       "the shadow counts since it entered shadow-read are in the running "
                       "instance's memory: ask its admin console (SHOW STATUS), or enable "
                       "[coordination]",
                       ""});
    } else {
      const auto found = evidence->find(c.table);
      const ShadowEvidence e = found == evidence->end() ? ShadowEvidence{} : found->second;
      const double rate =
          e.compared ? static_cast<double>(e.persistent) / static_cast<double>(e.compared) : 0;
      judged("shadow reads compared, few mismatched", ShadowShortfall(*table, e),
             StrCat(e.compared, " compared (min_shadow_compared ", table->min_shadow_compared,
                    "), ", e.persistent, " persistent mismatches (rate ", rate,
                    ", max_shadow_mismatch_rate ", table->max_shadow_mismatch_rate, ")"));
    }
  }
  if (c.from == Phase::kDualWrite && c.to == Phase::kShadowRead) {
    std::string why = co_await VerifyShortfall(state, c.table);
    judged("a clean verify since dual-write", why);
  }
  co_return rails;
}

awaitable<absl::Status> Guard(const routing::Config& next, const PhaseChange& c,
                              const absl::flat_hash_map<std::string, ShadowEvidence>& evidence,
                              State& state, asio::ssl::context& tls) {
  std::vector<RailVerdict> rails = co_await Rails(next, c, &evidence, state, tls);
  for (const RailVerdict& rail : rails) {
    // What pgshift cannot judge here (it lacks the settings to look; logged)
    // holds no flip.
    if (rail.state == RailVerdict::kUnknown) continue;
    if (absl::Status s = UnlessForced(c, routing::PhaseName(c.to), rail.why); !s.ok()) co_return s;
  }
  co_return absl::OkStatus();
}

awaitable<void> RecordChanges(StateConnection& state, const routing::Config& next,
                              const std::vector<PhaseChange>& changes) {
  for (const PhaseChange& c : changes) {
    // A named local: GCC 12 mishandles temporaries in co_await operands.
    std::string sql = RecordSql(c.table, routing::PhaseName(c.from), routing::PhaseName(c.to),
                                c.forced, next.checksum, false);
    auto recorded = co_await state.Query(sql);
    if (!recorded.ok()) {
      LogEvent(LogLevel::kWarning, "phase_history_not_recorded",
               {{"table", c.table}, {"reason", MessageOf(recorded.status())}});
    }
  }
}

}  // namespace

absl::Status GuardAndRecord(const routing::Config& next, const std::vector<PhaseChange>& changes,
                            const absl::flat_hash_map<std::string, ShadowEvidence>& evidence,
                            asio::ssl::context& tls, bool record) {
  if (changes.empty()) return absl::OkStatus();
  return RunToCompletion<absl::Status>([&]() -> awaitable<absl::Status> {
    State state = co_await OpenState(next, tls);
    for (const PhaseChange& c : changes) {
      absl::Status guarded = co_await Guard(next, c, evidence, state, tls);
      if (!guarded.ok()) co_return guarded;
    }
    if (!record) co_return absl::OkStatus();
    if (!state.ok()) {
      LogEvent(LogLevel::kWarning, "phase_history_not_recorded",
               {{"reason", MessageOf(state.status())}});
      co_return absl::OkStatus();
    }
    co_await RecordChanges(**state, next, changes);
    (*state)->stream->Close();
    co_return absl::OkStatus();
  });
}

std::vector<RailVerdict> JudgeRails(
    const routing::Config& next, const PhaseChange& change,
    const absl::flat_hash_map<std::string, ShadowEvidence>* evidence, asio::ssl::context& tls) {
  return RunToCompletion<std::vector<RailVerdict>>([&]() -> awaitable<std::vector<RailVerdict>> {
    State state = co_await OpenState(next, tls, /*create=*/false);
    std::vector<RailVerdict> rails = co_await Rails(next, change, evidence, state, tls);
    if (state.ok()) (*state)->stream->Close();
    co_return rails;
  });
}

void ReportAndRecordAtStart(const routing::Config& config, asio::ssl::context& tls) {
  if (config.tables.empty()) return;
  RunToCompletion<bool>([&]() -> awaitable<bool> {
    auto state = co_await OpenState(config, tls);
    if (!state.ok()) {
      LogEvent(LogLevel::kWarning, "phase_history_unavailable",
               {{"reason", MessageOf(state.status())}});
      co_return false;
    }
    auto last = co_await (*state)->Query(
        "SELECT DISTINCT ON (table_name) table_name, detail->>'to', recorded_at::text "
        "FROM pgshift_state WHERE kind = 'phase' ORDER BY table_name, id DESC");
    if (!last.ok()) co_return false;
    for (const routing::TableConfig& t : config.tables) {
      std::optional<std::string> recorded, since;
      for (const auto& row : last->rows) {
        if (row[0] == t.name) {
          recorded = row[1];
          since = row[2];
        }
      }
      const std::string_view phase = routing::PhaseName(t.phase);
      if (routing::MirrorsWrites(t.phase)) {
        auto paths = co_await FindHiddenWritePaths(config, t, false, tls);
        if (paths.ok() && !paths->empty()) {
          LogEvent(LogLevel::kWarning, "hidden_write_path",
                   {{"table", t.name},
                    {"phase", phase},
                    {"paths", routing::DescribeHiddenWritePaths(*paths)},
                    {"reason",
                     "writes reach it without a statement naming it, which pgshift "
                     "cannot mirror"}});
        }
      }
      if (recorded && *recorded == phase) {
        LogEvent(LogLevel::kInfo, "phase_state",
                 {{"table", t.name}, {"phase", phase}, {"since", since.value_or("")}});
        continue;
      }
      LogEvent(LogLevel::kWarning, "phase_state",
               {{"table", t.name}, {"phase", phase},
                {"recorded", recorded.value_or("none")},
                {"reason", "the configuration differs from the last recorded phase; recorded now"}});
      std::string sql =
          RecordSql(t.name, recorded.value_or("none"), phase, t.force, config.checksum, true);
      co_await (*state)->Query(sql);
    }
    (*state)->stream->Close();
    co_return true;
  });
}

absl::StatusOr<std::vector<PhaseRecord>> ReadPhaseHistory(const routing::Config& config,
                                                          asio::ssl::context& tls) {
  using Records = std::vector<PhaseRecord>;
  return RunToCompletion<absl::StatusOr<Records>>([&]() -> awaitable<absl::StatusOr<Records>> {
    auto state = co_await OpenState(config, tls, /*create=*/false);
    if (!state.ok()) co_return state.status();
    auto events = co_await (*state)->Query(
        "SELECT recorded_at::text, table_name, detail->>'from', detail->>'to', "
        "coalesce((detail->>'forced')::boolean, false)::text FROM pgshift_state "
        "WHERE kind = 'phase' ORDER BY id DESC LIMIT 200");
    (*state)->stream->Close();
    if (!events.ok()) co_return events.status();
    Records records;
    for (const auto& r : events->rows) {
      records.push_back({r[0].value_or(""), r[1].value_or(""), r[2].value_or(""), r[3].value_or(""),
                         r[4] == "true"});
    }
    co_return records;
  });
}

absl::StatusOr<std::vector<std::vector<std::string>>> ReadHistory(const routing::Config& config,
                                                                 asio::ssl::context& tls) {
  using Rows = std::vector<std::vector<std::string>>;
  return RunToCompletion<absl::StatusOr<Rows>>([&]() -> awaitable<absl::StatusOr<Rows>> {
    auto state = co_await OpenState(config, tls);
    if (!state.ok()) co_return state.status();
    auto events = co_await (*state)->Query(
        "SELECT recorded_at::text, table_name, kind, detail::text FROM pgshift_state "
        "WHERE kind NOT IN ('backfill_range', 'verify_range') ORDER BY id DESC LIMIT 200");
    (*state)->stream->Close();
    if (!events.ok()) co_return events.status();
    Rows rows;
    for (const auto& r : events->rows) {
      std::vector<std::string> row;
      for (const auto& v : r) row.push_back(v.value_or(""));
      rows.push_back(std::move(row));
    }
    co_return rows;
  });
}

}  // namespace pgshift::proxy
