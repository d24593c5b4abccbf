// Proposing a flip, the fleet's evidence for the guard rails, and
// `pgshift phase` (coordinator.h says how a flip goes).
#include "proxy/flip.h"

#include <unistd.h>

#include <algorithm>

#include "absl/strings/str_join.h"
#include "common/json.h"
#include "common/strings.h"
#include "proxy/control_connection.h"
#include "proxy/coordinator_connection.h"
#include "proxy/deadline.h"
#include "proxy/log.h"

namespace pgshift::proxy {

namespace {

using Clock = std::chrono::steady_clock;

}  // namespace

absl::Status ProposeFlip(const routing::Config& next, const std::vector<PhaseChange>& changes,
                         const std::string& proposer, asio::ssl::context& tls) {
  if (changes.empty()) return absl::OkStatus();
  const routing::CoordinationSettings& settings = next.coordination;
  std::vector<std::string> names;
  for (const PhaseChange& ch : changes) {
    names.push_back(StrCat(ch.table, " to ", routing::PhaseName(ch.to)));
  }
  const std::string what = absl::StrJoin(names, ", ");
  return RunToCompletion<absl::Status>([&]() -> awaitable<absl::Status> {
    auto opened = co_await OpenCoordinator(next, tls);
    if (!opened.ok()) {
      co_return absl::UnavailableError(
          StrCat("cannot propose ", what,
                 ": the coordinator cannot be reached: ", MessageOf(opened.status())));
    }
    CoordinatorConnection c(std::move(*opened));
    Deadline deadline(*c.stream, settings.cutover_timeout_s + 30);
    // Named locals throughout: GCC 12 mishandles temporaries in co_await
    // operands.
    auto refused = [&](const std::string& why) -> awaitable<absl::Status> {
      absl::Status status =
          absl::FailedPreconditionError(StrCat("cannot propose ", what, ": ", why));
      co_await c.Query("ROLLBACK");
      co_return status;
    };
    std::string why;
    // Proposals one at a time: the phases table is locked while one is written.
    const std::vector<std::string> lock = {"BEGIN",
                                           "LOCK TABLE pgshift_phases IN SHARE ROW EXCLUSIVE MODE"};
    if (absl::Status begun = co_await c.Run(lock); !begun.ok()) {
      why = MessageOf(begun);
      co_return co_await refused(why);
    }
    const std::string under_way_sql =
        StrCat("SELECT table_name, flip, flip_by, ", StaleFlipSql(settings),
               " FROM pgshift_phases WHERE flip IS NOT NULL");
    auto under_way = co_await c.Query(under_way_sql);
    if (!under_way.ok()) {
      why = MessageOf(under_way.status());
      co_return co_await refused(why);
    }
    for (const auto& row : under_way->rows) {
      if (Text(row[3]) == "t") continue;  // its proposer died: replaced below
      why = StrCat("flip ", Text(row[1]), " of ", Text(row[0]), ", proposed by instance ",
                   Text(row[2]), ", is under way; try again once it has ended");
      co_return co_await refused(why);
    }
    for (const PhaseChange& ch : changes) {
      std::string sql =
          StrCat("SELECT phase FROM pgshift_phases WHERE table_name = ", QuoteLiteral(ch.table));
      auto now = co_await c.Query(sql);
      if (!now.ok()) {
        why = MessageOf(now.status());
        co_return co_await refused(why);
      }
      std::string shared = now->rows.empty() ? "old-only" : Text(now->rows[0][0]);
      if (shared != routing::PhaseName(ch.from)) {
        why = StrCat(ch.table, " is in ", shared, " on the coordinator, not ",
                     routing::PhaseName(ch.from), " (another instance changed it); reload again");
        co_return co_await refused(why);
      }
    }
    // An instance whose file lacks the table would serve it straight to
    // old and acknowledge the flip all the same.
    const std::string configured_sql =
        "SELECT instance_id, tables FROM pgshift_instances WHERE lease_expires > now() ORDER BY 1";
    auto configured = co_await c.Query(configured_sql);
    if (!configured.ok()) {
      why = MessageOf(configured.status());
      co_return co_await refused(why);
    }
    for (const auto& row : configured->rows) {
      const std::string tables = Text(row[1]);
      const std::vector<std::string_view> known = Split(tables, ',');
      for (const PhaseChange& ch : changes) {
        if (std::find(known.begin(), known.end(), ch.table) != known.end()) continue;
        why = StrCat("instance ", Text(row[0]), " does not configure ", ch.table,
                     " (its file lacks the table, or it has not renewed its lease since it "
                     "started), so it would not follow the flip; give every instance the table "
                     "and reload it first");
        co_return co_await refused(why);
      }
    }
    auto numbered = co_await c.Query("SELECT nextval('pgshift_flip')");
    if (!numbered.ok()) {
      why = MessageOf(numbered.status());
      co_return co_await refused(why);
    }
    const std::string flip = Text(numbered->rows[0][0]);
    std::vector<std::string> writes;
    for (const PhaseChange& ch : changes) {
      writes.push_back(
          StrCat("INSERT INTO pgshift_phases (table_name, phase, pending_phase, flip, flip_by, "
                 "flip_started) VALUES (",
                 QuoteLiteral(ch.table), ", ", QuoteLiteral(routing::PhaseName(ch.from)), ", ",
                 QuoteLiteral(routing::PhaseName(ch.to)), ", ", flip, ", ", QuoteLiteral(proposer),
                 ", now()) ON CONFLICT (table_name) DO UPDATE SET pending_phase = "
                 "EXCLUDED.pending_phase, flip = EXCLUDED.flip, flip_by = EXCLUDED.flip_by, "
                 "flip_started = EXCLUDED.flip_started"));
    }
    writes.push_back(NotifySql());
    writes.push_back("COMMIT");
    if (absl::Status proposed = co_await c.Run(writes); !proposed.ok()) {
      why = MessageOf(proposed);
      co_return co_await refused(why);
    }
    LogEvent(LogLevel::kInfo, "flip_proposed", {{"flip", flip}, {"changes", what}});
    const Clock::time_point started = Clock::now();
    const Clock::time_point give_up = started + Millis(settings.cutover_timeout_s);
    std::vector<std::string> waiting_for, took_part;
    bool answered = false;  // the acknowledgements were read at least once
    while (true) {
      const std::string acks_sql =
          StrCat("SELECT instance_id, acknowledged >= ", flip,
                 ", coalesce(holding, '') FROM pgshift_instances WHERE lease_expires > now() "
                 "ORDER BY instance_id");
      auto acks = co_await c.Query(acks_sql);
      if (!acks.ok()) {
        answered = false;
        break;
      }
      answered = true;
      waiting_for.clear();
      took_part.clear();
      for (const auto& row : acks->rows) {
        took_part.push_back(Text(row[0]));
        if (Text(row[1]) == "t") continue;
        std::string holding = Text(row[2]);
        waiting_for.push_back(StrCat("instance ", Text(row[0]),
                                     holding.empty() ? std::string() : StrCat(" (", holding, ")")));
      }
      if (waiting_for.empty() || Clock::now() >= give_up) break;
      co_await Sleep(std::chrono::milliseconds(2));
    }
    const int64_t held_ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - started).count();
    // With no live instance (none running, or none reaching the
    // coordinator) nothing serves the table under a lease: the flip
    // commits, and each instance reads it before it serves again.
    if (!waiting_for.empty() || !answered) {
      std::vector<std::string> abort = {
          StrCat("UPDATE pgshift_phases SET pending_phase = NULL, flip = NULL, flip_by = NULL, "
                 "flip_started = NULL WHERE flip = ",
                 flip),
          NotifySql()};
      absl::Status aborted = co_await c.Run(abort);
      why = StrCat("the flip of ", what,
                   " was aborted after cutover_timeout = ", settings.cutover_timeout_s, " s: ",
                   waiting_for.empty() ? std::string("the coordinator stopped answering")
                                       : StrCat(absl::StrJoin(waiting_for, ", "),
                                                " did not drain its transactions on the table"),
                   "; nothing changed",
                   aborted.ok() ? "" : StrCat(" (abort: ", MessageOf(aborted), ")"));
      LogEvent(LogLevel::kError, "flip_aborted", {{"flip", flip}, {"reason", why}});
      // On record too, for SHOW HISTORY: what was tried, and what held it.
      std::vector<std::string> records;
      for (const PhaseChange& ch : changes) {
        std::string detail = StrCat("{\"from\":", JsonString(routing::PhaseName(ch.from)),
                                    ",\"to\":", JsonString(routing::PhaseName(ch.to)),
                                    ",\"flip\":", flip, ",\"proposed_by\":", JsonString(proposer),
                                    ",\"held_ms\":", held_ms, ",\"reason\":", JsonString(why), "}");
        records.push_back(StrCat("INSERT INTO pgshift_state (table_name, kind, detail) VALUES (",
                                 QuoteLiteral(ch.table), ", 'flip_aborted', ", QuoteLiteral(detail),
                                 "::jsonb)"));
      }
      co_await c.Run(records);
      co_return absl::FailedPreconditionError(why);
    }
    // Committed only while still pending: past cutover_timeout + 10 s any
    // instance may have cleared it as left behind, and the fleet stays.
    const std::vector<std::string> begin = {"BEGIN"};
    const std::string update = StrCat(
        "UPDATE pgshift_phases SET phase = pending_phase, generation = flip, changed_at = "
        "now(), pending_phase = NULL, flip = NULL, flip_by = NULL, flip_started = NULL "
        "WHERE flip = ",
        flip, " RETURNING table_name");
    absl::Status began = co_await c.Run(begin);
    absl::StatusOr<QueryResult> updated = began.ok() ? absl::InternalError("not run") : began;
    if (began.ok()) updated = co_await c.Query(update);
    if (!updated.ok() || updated->rows.size() != changes.size()) {
      co_await c.Query("ROLLBACK");
      co_return absl::FailedPreconditionError(
          StrCat("the flip of ", what, " could not be committed: ",
                 updated.ok() ? "it was no longer pending (cleared as left behind by an instance)"
                              : MessageOf(updated.status()),
                 "; nothing changed"));
    }
    std::vector<std::string> commit;
    for (const PhaseChange& ch : changes) {
      std::string detail =
          StrCat("{\"from\":", JsonString(routing::PhaseName(ch.from)),
                 ",\"to\":", JsonString(routing::PhaseName(ch.to)),
                 ",\"forced\":", ch.forced ? "true" : "false",
                 ",\"config_checksum\":", JsonString(next.checksum), ",\"flip\":", flip,
                 ",\"proposed_by\":", JsonString(proposer), ",\"instances\":", JsonArray(took_part),
                 ",\"held_ms\":", held_ms, "}");
      commit.push_back(StrCat("INSERT INTO pgshift_state (table_name, kind, detail) VALUES (",
                              QuoteLiteral(ch.table), ", 'phase', ", QuoteLiteral(detail),
                              "::jsonb)"));
    }
    commit.push_back(NotifySql());
    commit.push_back("COMMIT");
    if (absl::Status committed = co_await c.Run(commit); !committed.ok()) {
      co_await c.Query("ROLLBACK");
      co_return absl::UnavailableError(
          StrCat("the flip of ", what, " could not be committed: ", MessageOf(committed)));
    }
    LogEvent(LogLevel::kInfo, "flip_committed",
             {{"flip", flip},
              {"changes", what},
              {"instances", absl::StrJoin(took_part, ", ")},
              {"held_ms", StrCat(held_ms)}});
    c.stream->Close();
    co_return absl::OkStatus();
  });
}

absl::StatusOr<absl::flat_hash_map<std::string, ShadowEvidence>> FleetEvidence(
    const routing::Config& config, const std::vector<PhaseChange>& changes,
    asio::ssl::context& tls) {
  using Evidence = absl::flat_hash_map<std::string, ShadowEvidence>;
  if (changes.empty()) return Evidence{};
  return RunToCompletion<absl::StatusOr<Evidence>>([&]() -> awaitable<absl::StatusOr<Evidence>> {
    auto opened = co_await OpenCoordinator(config, tls);
    if (!opened.ok()) co_return opened.status();
    CoordinatorConnection c(std::move(*opened));
    Deadline deadline(*c.stream, config.coordination.lease_timeout_s);
    Evidence evidence;
    for (const PhaseChange& ch : changes) {
      std::string sql = StrCat(
          "SELECT coalesce(sum(e.compared), 0), coalesce(sum(e.persistent), 0) FROM "
          "pgshift_evidence e JOIN pgshift_phases p ON p.table_name = e.table_name AND "
          "p.generation = e.entered WHERE e.table_name = ",
          QuoteLiteral(ch.table));
      auto sums = co_await c.Query(sql);
      if (!sums.ok()) co_return sums.status();
      evidence[ch.table] = {std::stoull(Text(sums->rows[0][0])),
                            std::stoull(Text(sums->rows[0][1]))};
    }
    c.stream->Close();
    co_return evidence;
  });
}

routing::ConfigPtr WithSharedPhases(const routing::Config& file, const SharedPhases& phases) {
  auto running = std::make_shared<routing::Config>(file);
  for (routing::TableConfig& t : running->tables) {
    auto it = phases.find(t.name);
    if (it == phases.end()) continue;
    t.phase = it->second;
  }
  for (const auto& [name, phase] : phases) {
    if (phase == routing::Phase::kOldOnly) continue;
    bool configured = std::any_of(running->tables.begin(), running->tables.end(),
                                  [&](const routing::TableConfig& t) { return t.name == name; });
    if (!configured) running->unconfigured_migrating[name] = phase;
  }
  return running;
}

routing::ConfigPtr ProposedPhases(const routing::Config& file, const routing::Config& previous,
                                  const SharedPhases& phases) {
  auto proposed = std::make_shared<routing::Config>(file);
  for (routing::TableConfig& t : proposed->tables) {
    auto shared = phases.find(t.name);
    if (shared == phases.end()) continue;  // new to the fleet: the file proposes it
    for (const routing::TableConfig& before : previous.tables) {
      if (before.name == t.name && before.phase == t.phase) t.phase = shared->second;
    }
  }
  return proposed;
}

absl::StatusOr<routing::ConfigPtr> WithTablePhase(const routing::Config& running,
                                                  std::string_view table, routing::Phase to) {
  const routing::TableConfig* found = running.FindTable(table);
  if (found == nullptr) {
    return absl::NotFoundError(StrCat("table \"", table, "\" is not in ", running.source));
  }
  auto next = std::make_shared<routing::Config>(running);
  next->tables[found - running.tables.data()].phase = to;
  return next;
}

absl::StatusOr<routing::ConfigPtr> TargetOfFlip(const routing::Config& running,
                                                std::string_view table, routing::Phase to) {
  auto next = WithTablePhase(running, table, to);
  if (!next.ok()) return next.status();
  if (absl::Status steps = routing::CheckPhaseSteps(running, **next); !steps.ok()) {
    return absl::FailedPreconditionError(
        StrCat("the flip itself would be refused: ", MessageOf(steps)));
  }
  return next;
}

absl::Status ChangePhase(const routing::Config& file, const std::string& table, routing::Phase to,
                         asio::ssl::context& tls) {
  auto shared = ReadPhases(file, tls, false);
  if (!shared.ok()) return shared.status();
  routing::ConfigPtr running = WithSharedPhases(file, *shared);
  auto next = WithTablePhase(*running, table, to);
  if (!next.ok()) return next.status();
  if (absl::Status steps = routing::CheckPhaseSteps(*running, **next); !steps.ok()) return steps;
  std::vector<PhaseChange> changes = PhaseChanges(*running, **next);
  if (changes.empty()) {
    return absl::AlreadyExistsError(StrCat(table, " is in ", routing::PhaseName(to), " already"));
  }
  auto evidence = FleetEvidence(**next, changes, tls);
  if (!evidence.ok()) return evidence.status();
  if (absl::Status guarded = GuardAndRecord(**next, changes, *evidence, tls, /*record=*/false);
      !guarded.ok()) {
    return guarded;
  }
  char host[256] = {};
  gethostname(host, sizeof(host) - 1);
  return ProposeFlip(**next, changes, StrCat("pgshift phase@", host), tls);
}

}  // namespace pgshift::proxy
