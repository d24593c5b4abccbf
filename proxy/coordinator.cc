#include "proxy/coordinator.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>

#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "common/json.h"
#include "common/strings.h"
#include "proxy/control_connection.h"
#include "proxy/coordinator_connection.h"
#include "proxy/deadline.h"
#include "proxy/flip.h"
#include "proxy/log.h"
#include "proxy/packet_buffer.h"
#include "routing/state_schema.h"

namespace pgshift::proxy {

namespace {

using Clock = std::chrono::steady_clock;
using Rows = std::vector<std::vector<std::optional<std::string>>>;

constexpr const char* kVersion = "pgshift 0.9";

// The tables this instance's file configures, for pgshift_instances: a
// flip of a table some live instance lacks is refused.
std::string ConfiguredTables(const routing::Config& config) {
  std::vector<std::string> names;
  for (const routing::TableConfig& t : config.tables) names.push_back(t.name);
  return absl::StrJoin(names, ",");
}

}  // namespace

Coordinator::Coordinator(CoordinatorHost& host, routing::CoordinationGate& gate,
                         asio::ssl::context& tls, routing::ConfigPtr config)
    : host_(host), gate_(gate), tls_(tls), config_(std::move(config)) {
  const routing::ProxySettings& proxy = config_->proxy;
  char name[256] = {};
  gethostname(name, sizeof(name) - 1);
  address_ = StrCat(name, ":", proxy.listen.port);
  id_ = config_->coordination.instance_id.empty() ? address_ : config_->coordination.instance_id;
  run_ =
      StrCat(id_, "@", getpid(), "-", std::chrono::system_clock::now().time_since_epoch().count());
}

Coordinator::~Coordinator() { Stop(); }

routing::ConfigPtr Coordinator::config() const {
  absl::MutexLock lock(&mutex_);
  return config_;
}

void Coordinator::Configure(routing::ConfigPtr config) {
  absl::MutexLock lock(&mutex_);
  config_ = std::move(config);
}

std::vector<InstanceRow> Coordinator::Instances() const {
  absl::MutexLock lock(&mutex_);
  return instances_;
}

absl::flat_hash_map<std::string, ShadowEvidence> Coordinator::FleetTotals() const {
  absl::MutexLock lock(&mutex_);
  return fleet_;
}

absl::StatusOr<SharedPhases> Coordinator::Join() {
  if (absl::Status claimed = ClaimId(); !claimed.ok()) return claimed;
  return ReadPhases(*config(), tls_, true);
}

absl::Status Coordinator::ClaimId() {
  routing::ConfigPtr current = config();
  return RunToCompletion<absl::Status>([&]() -> awaitable<absl::Status> {
    auto opened = co_await OpenCoordinator(*current, tls_);
    if (!opened.ok()) co_return opened.status();
    CoordinatorConnection c(std::move(*opened));
    Deadline deadline(*c.stream, current->coordination.lease_timeout_s);
    const std::string claim = StrCat(
        "INSERT INTO pgshift_instances AS i (instance_id, address, version, lease_expires, run) "
        "VALUES (",
        QuoteLiteral(id_), ", ", QuoteLiteral(address_), ", ", QuoteLiteral(kVersion), ", now(), ",
        QuoteLiteral(run_),
        ") ON CONFLICT (instance_id) DO UPDATE SET address = EXCLUDED.address, version = "
        "EXCLUDED.version, run = EXCLUDED.run, generation = 0, acknowledged = 0, holding = NULL "
        "WHERE i.lease_expires < now() OR i.address = EXCLUDED.address RETURNING 1");
    auto claimed = co_await c.Query(claim);
    if (!claimed.ok()) co_return claimed.status();
    if (!claimed->rows.empty()) co_return absl::OkStatus();
    auto holder = co_await c.Query(
        StrCat("SELECT address, to_char(lease_expires, 'YYYY-MM-DD HH24:MI:SS TZ') FROM "
               "pgshift_instances WHERE instance_id = ",
               QuoteLiteral(id_)));
    if (!holder.ok()) co_return holder.status();
    std::string who = holder->rows.empty()
                          ? std::string("another instance")
                          : StrCat("the instance at ", Text(holder->rows[0][0]), " (lease until ",
                                   Text(holder->rows[0][1]), ")");
    co_return absl::AlreadyExistsError(
        StrCat("coordination.instance_id \"", id_, "\" is held by ", who,
               ": give each instance an id of its own (the default is host:listen port)"));
  });
}

absl::Status Coordinator::Propose(const routing::Config& next,
                                  const std::vector<PhaseChange>& changes) {
  return ProposeFlip(next, changes, id_, tls_);
}

void Coordinator::Start() {
  asio::co_spawn(context_, Loop(), asio::detached);
  thread_ = std::thread([this] { context_.run(); });
}

void Coordinator::Stop() {
  if (!thread_.joinable()) return;
  context_.stop();
  thread_.join();
  routing::ConfigPtr current = config();
  RunToCompletion<bool>([&]() -> awaitable<bool> {
    auto opened = co_await OpenCoordinator(*current, tls_);
    if (!opened.ok()) co_return false;
    CoordinatorConnection c(std::move(*opened));
    Deadline deadline(*c.stream, current->coordination.poll_interval_s * 2);
    std::string sql =
        StrCat("UPDATE pgshift_instances SET lease_expires = now() WHERE instance_id = ",
               QuoteLiteral(id_), " AND run = ", QuoteLiteral(run_));
    co_return (co_await c.Query(sql)).ok();
  });
  LogEvent(LogLevel::kInfo, "coordination_lease_released", {{"instance", id_}});
}

awaitable<void> Coordinator::Loop() {
  std::unique_ptr<CoordinatorConnection> c;
  bool reported_down = false;
  while (true) {
    routing::ConfigPtr current = config();
    const routing::CoordinationSettings& settings = current->coordination;
    if (!c) {
      auto opened = co_await OpenCoordinator(*current, tls_);
      if (opened.ok()) {
        c = std::make_unique<CoordinatorConnection>(std::move(*opened));
        const std::string listen = ListenSql();
        if (!(co_await c->Query(listen)).ok()) c.reset();
      }
      if (!c) {
        if (!reported_down) {
          LogEvent(LogLevel::kError, "coordinator_unreachable",
                   {{"instance", id_},
                    {"reason", opened.ok() ? "LISTEN failed" : MessageOf(opened.status())},
                    {"lease_timeout_s", StrCat(settings.lease_timeout_s)}});
          reported_down = true;
        }
        co_await Sleep(Millis(settings.poll_interval_s));
        continue;
      }
      if (reported_down) LogEvent(LogLevel::kInfo, "coordinator_reachable", {{"instance", id_}});
      reported_down = false;
    }
    bool ok = false;
    {
      // A coordinator that stops answering (a cut network) must not hold
      // the loop: the connection is closed, and opened again.
      Deadline deadline(*c->stream, settings.poll_interval_s * 2);
      ok = co_await Round(*c);
    }
    if (!ok) {
      c.reset();
      continue;
    }
    // Until the next round: acknowledge a fenced flip as soon as it is
    // drained, and start a round at once when a notification comes.
    const Clock::time_point next = Clock::now() + Millis(settings.poll_interval_s);
    while (Clock::now() < next && ok) {
      {
        Deadline deadline(*c->stream, settings.poll_interval_s * 2);
        ok = co_await AcknowledgeIfDrained(*c);
      }
      error_code ec;
      if (c->notifications > 0 || c->stream->socket().available(ec) > 0 || ec) break;
      std::optional<int64_t> fence = gate_.fence();
      co_await Sleep(std::chrono::milliseconds(fence && acknowledged_ < *fence ? 2 : 10));
    }
    c->notifications = 0;
    if (!ok) c.reset();
  }
}

awaitable<bool> Coordinator::Round(CoordinatorConnection& c) {
  routing::ConfigPtr current = config();
  const double lease = current->coordination.lease_timeout_s;
  const Clock::time_point sent = Clock::now();
  const std::string holding = Holding();
  std::string upsert = StrCat(
      "INSERT INTO pgshift_instances AS i (instance_id, address, version, generation, "
      "lease_expires, sessions, acknowledged, holding, run, tables) VALUES (",
      QuoteLiteral(id_), ", ", QuoteLiteral(address_), ", ", QuoteLiteral(kVersion), ", ", applied_,
      ", now() + interval '", static_cast<int64_t>(lease * 1000), " milliseconds', ",
      host_.Sessions(), ", ", acknowledged_, ", ",
      holding.empty() ? std::string("NULL") : QuoteLiteral(holding), ", ", QuoteLiteral(run_), ", ",
      QuoteLiteral(ConfiguredTables(*current)),
      ") ON CONFLICT (instance_id) DO UPDATE SET address = EXCLUDED.address, version = "
      "EXCLUDED.version, generation = EXCLUDED.generation, lease_expires = "
      "EXCLUDED.lease_expires, sessions = EXCLUDED.sessions, acknowledged = "
      "EXCLUDED.acknowledged, holding = EXCLUDED.holding, run = EXCLUDED.run, tables = "
      "EXCLUDED.tables "
      "WHERE i.run = EXCLUDED.run OR i.lease_expires < now() RETURNING 1");
  auto renewed = co_await c.Query(upsert);
  if (renewed.ok() && renewed->rows.empty()) {
    // Another live process renews this id: its acknowledgements are not
    // this one's, so this one holds no lease until the id is free.
    if (!id_taken_logged_) {
      LogEvent(
          LogLevel::kError, "coordination_instance_id_taken",
          {{"instance", id_},
           {"reason", "another live process renews this coordination.instance_id"},
           {"consequence", "this instance holds no lease; give each instance an id of its own"}});
    }
    id_taken_logged_ = true;
    co_return false;
  }
  id_taken_logged_ = false;
  const std::string phases_sql =
      StrCat("SELECT table_name, phase, generation, pending_phase, flip, ",
             StaleFlipSql(current->coordination), " FROM pgshift_phases");
  auto phases = co_await c.Query(phases_sql);
  auto instances = co_await c.Query(
      "SELECT instance_id, address, version, generation, "
      "to_char(lease_expires, 'YYYY-MM-DD HH24:MI:SS.MS TZ'), sessions, acknowledged, "
      "coalesce(holding, ''), lease_expires > now() FROM pgshift_instances ORDER BY instance_id");
  for (const absl::Status& s : {renewed.status(), phases.status(), instances.status()}) {
    if (s.ok()) continue;
    LogEvent(LogLevel::kWarning, "coordination_round_failed",
             {{"instance", id_}, {"reason", MessageOf(s)}});
    co_return false;
  }
  Apply(phases->rows);
  {
    std::vector<InstanceRow> rows;
    for (const auto& r : instances->rows) {
      rows.push_back({Text(r[0]), Text(r[1]), Text(r[2]), Text(r[3]), Text(r[4]), Text(r[5]),
                      Text(r[6]), Text(r[7]), Text(r[8]) == "t"});
    }
    absl::MutexLock lock(&mutex_);
    instances_ = std::move(rows);
  }
  // Renewed only once the phases it vouches for are installed, and for
  // three quarters of the lease: a statement admitted just before the end
  // has the rest to finish before the others count this instance as gone.
  gate_.Synced();
  gate_.Renewed(sent + Millis(lease * 0.75));
  // A flip whose proposer died, or could not end it, is cleared by any
  // instance once it is long past cutover_timeout: nothing stays fenced.
  for (const auto& row : phases->rows) {
    if (Text(row[5]) != "t") continue;
    const std::string clear = StrCat(
        "UPDATE pgshift_phases SET pending_phase = NULL, flip = NULL, flip_by = NULL, "
        "flip_started = NULL WHERE flip = ",
        Text(row[4]));
    const std::vector<std::string> statements = {clear, NotifySql()};
    if (!(co_await c.Run(statements)).ok()) co_return false;
    LogEvent(LogLevel::kWarning, "stale_flip_cleared",
             {{"instance", id_}, {"flip", Text(row[4])}, {"table", Text(row[0])}});
  }
  if (!co_await FlushEvidence(c, phases->rows)) co_return false;
  if (!co_await FlushQueries(c)) co_return false;
  auto totals = co_await c.Query(
      "SELECT e.table_name, sum(e.compared), sum(e.persistent), sum(e.refused) FROM "
      "pgshift_evidence e JOIN pgshift_phases p ON p.table_name = e.table_name AND "
      "p.generation = e.entered GROUP BY e.table_name");
  if (!totals.ok()) co_return false;
  {
    absl::flat_hash_map<std::string, ShadowEvidence> fleet;
    for (const auto& r : totals->rows) {
      fleet[Text(r[0])] = {std::stoull(Text(r[1])), std::stoull(Text(r[2])),
                           std::stoull(Text(r[3]))};
    }
    absl::MutexLock lock(&mutex_);
    fleet_ = std::move(fleet);
  }
  co_return true;
}

void Coordinator::Apply(const Rows& rows) {
  SharedPhases committed;
  std::optional<int64_t> flip;
  std::vector<std::string> pending;
  for (const auto& row : rows) {
    const std::string table = Text(row[0]);
    if (auto phase = routing::PhaseFromName(Text(row[1]))) committed[table] = *phase;
    applied_ = std::max<int64_t>(applied_, std::stoll(Text(row[2])));
    if (!row[4]) continue;
    // Flips are proposed one at a time; an older one left behind is stale
    // (cleared in the round) and not fenced.
    const int64_t number = std::stoll(*row[4]);
    if (flip && number < *flip) continue;
    if (!flip || number > *flip) pending.clear();
    flip = number;
    pending.push_back(table);
  }
  // Installed before the fence lifts: what it held goes on under the new
  // phases.
  host_.InstallSharedPhases(committed);
  std::optional<int64_t> fenced = gate_.fence();
  if (fenced && fenced != flip) gate_.Lift();
  if (flip && fenced != flip) {
    gate_.Fence(*flip, pending);
    holder_ = {};
    LogEvent(
        LogLevel::kInfo, "flip_fenced",
        {{"instance", id_}, {"flip", StrCat(*flip)}, {"tables", absl::StrJoin(pending, ", ")}});
  }
  // A file that disagrees is followed by the database, and said once.
  std::vector<std::string> differences;
  for (const routing::TableConfig& t : config()->tables) {
    auto it = committed.find(t.name);
    if (it != committed.end() && it->second != t.phase) {
      differences.push_back(StrCat(t.name, ": file ", routing::PhaseName(t.phase), ", coordinator ",
                                   routing::PhaseName(it->second)));
    }
  }
  for (const auto& [table, phase] : committed) {
    if (phase == routing::Phase::kOldOnly) continue;
    const auto& tables = config()->tables;
    if (std::none_of(tables.begin(), tables.end(),
                     [&](const routing::TableConfig& t) { return t.name == table; })) {
      differences.push_back(StrCat(table, ": not in the file (statements on it are refused), ",
                                   "coordinator ", routing::PhaseName(phase)));
    }
  }
  if (!differences.empty() && !differences_logged_) {
    LogEvent(LogLevel::kWarning, "phase_file_differs",
             {{"instance", id_},
              {"tables", absl::StrJoin(differences, "; ")},
              {"reason", "the coordinator's phases are followed"}});
  }
  differences_logged_ = !differences.empty();
}

std::string Coordinator::Holding() const {
  std::optional<int64_t> fence = gate_.fence();
  if (!fence || acknowledged_ >= *fence || holder_.session == 0) return "";
  double held = std::chrono::duration<double>(Clock::now() - holder_.since).count();
  return StrCat(host_.DescribeSession(holder_.session), " in a transaction on ", holder_.table,
                " for ", absl::StrFormat("%.1f", held), " s");
}

awaitable<bool> Coordinator::AcknowledgeIfDrained(CoordinatorConnection& c) {
  std::optional<int64_t> fence = gate_.fence();
  if (!fence || acknowledged_ >= *fence) co_return true;
  routing::CoordinationGate::Holder holder;
  if (!gate_.TryAcknowledge(&holder)) {
    if (holder.session == holder_.session) co_return true;
    // Said once per holder: the proposer names it if the flip is aborted.
    holder_ = holder;
    std::string sql =
        StrCat("UPDATE pgshift_instances SET holding = ", QuoteLiteral(Holding()),
               " WHERE instance_id = ", QuoteLiteral(id_), " AND run = ", QuoteLiteral(run_));
    co_return (co_await c.Query(sql)).ok();
  }
  acknowledged_ = *fence;
  holder_ = {};
  std::string sql = StrCat("UPDATE pgshift_instances SET acknowledged = greatest(acknowledged, ",
                           *fence, "), holding = NULL WHERE instance_id = ", QuoteLiteral(id_),
                           " AND run = ", QuoteLiteral(run_));
  const std::vector<std::string> statements = {sql, NotifySql()};
  absl::Status done = co_await c.Run(statements);
  co_return done.ok();
}

awaitable<bool> Coordinator::FlushEvidence(CoordinatorConnection& c, const Rows& rows) {
  for (const auto& row : rows) {
    const std::string table = Text(row[0]);
    ShadowEvidence local = host_.LocalEvidence(table);
    std::string sql = StrCat(
        "INSERT INTO pgshift_evidence (run, instance_id, table_name, entered, compared, "
        "persistent, refused) VALUES (",
        QuoteLiteral(run_), ", ", QuoteLiteral(id_), ", ", QuoteLiteral(table), ", ", Text(row[2]),
        ", ", local.compared, ", ", local.persistent, ", ", local.refused,
        ") ON CONFLICT (run, table_name, entered) DO UPDATE SET compared = EXCLUDED.compared, "
        "persistent = EXCLUDED.persistent, refused = EXCLUDED.refused, flushed_at = now()");
    if (!(co_await c.Query(sql)).ok()) co_return false;
  }
  co_return true;
}

awaitable<bool> Coordinator::FlushQueries(CoordinatorConnection& c) {
  std::string values;
  std::vector<std::pair<std::string, uint64_t>> flushed;
  for (const routing::QueryFingerprints::Row& q : host_.Queries()) {
    const uint64_t seen = q.executions + q.refused;
    auto it = flushed_queries_.find(q.fingerprint);
    if (seen == 0 || (it != flushed_queries_.end() && it->second == seen)) continue;
    flushed.emplace_back(q.fingerprint, seen);
    values +=
        StrCat(values.empty() ? "" : ", ", "(", QuoteLiteral(run_), ", ", QuoteLiteral(id_), ", ",
               QuoteLiteral(q.fingerprint), ", ", QuoteLiteral(q.normalized), ", ",
               QuoteLiteral(absl::StrJoin(q.tables, ", ")), ", ", q.writes ? "true" : "false", ", ",
               q.executions, ", ", q.refused, ", to_timestamp(", q.last_seen_ms, " / 1000.0))");
  }
  if (values.empty()) co_return true;
  const std::string sql = StrCat(
      "INSERT INTO pgshift_fingerprints (run, instance_id, fingerprint, query, tables, writes, "
      "executions, refused, last_seen) VALUES ",
      values,
      " ON CONFLICT (run, fingerprint) DO UPDATE SET executions = EXCLUDED.executions, refused = "
      "EXCLUDED.refused, last_seen = EXCLUDED.last_seen, flushed_at = now()");
  if (!(co_await c.Query(sql)).ok()) co_return false;
  for (auto& [fingerprint, seen] : flushed) flushed_queries_[fingerprint] = seen;
  co_return true;
}

}  // namespace pgshift::proxy
