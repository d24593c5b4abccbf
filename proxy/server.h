// The proxy process: listens, hands each client to a worker thread's
// io_context, and shuts down gracefully on SIGTERM/SIGINT.
#pragma once

#include <atomic>
#include <boost/asio/signal_set.hpp>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "protocol/scram.h"
#include "proxy/asio.h"
#include "proxy/cancel_registry.h"
#include "proxy/coordinator.h"
#include "proxy/migration_state.h"
#include "proxy/plan_command.h"
#include "proxy/rate_history.h"
#include "proxy/shadow_runner.h"
#include "proxy/stats.h"
#include "proxy/two_phase.h"
#include "proxy/write_audit.h"
#include "routing/config.h"
#include "routing/coordination_gate.h"
#include "routing/dry_run.h"
#include "routing/router.h"
#include "routing/writes_in_flight.h"

namespace pgshift::proxy {

class AdminConsole;
class Session;
struct ClientRow;

// What sessions read: a configuration and what is derived from it. Replaced
// whole on reload, never changed, so a session can hold one for as long as
// it needs the same answers.
struct Settings {
  routing::ConfigPtr config;
  // SCRAM verifiers of [[users]], derived once rather than per login.
  absl::flat_hash_map<std::string, protocol::ScramVerifier> verifiers;
  uint64_t generation = 0;
  // Plans statements for this configuration; its plan cache lives and dies
  // with these settings.
  std::shared_ptr<routing::Router> router;
  // Which servers allow PREPARE TRANSACTION, for mirrors across servers.
  MirrorReadiness mirroring;

  const protocol::ScramVerifier* ScramVerifierFor(const std::string& user) const;
};
using SettingsPtr = std::shared_ptr<const Settings>;

// The settings for `config`, its plans counted in `counters`.
SettingsPtr MakeSettings(routing::ConfigPtr config, uint64_t generation, routing::Catalog catalog,
                         routing::TableCounterRegistry& counters, MirrorReadiness mirroring = {});

class Server : private CoordinatorHost {
 public:
  // `config_path` is read again on SIGHUP.
  Server(std::string config_path, routing::ConfigPtr config);
  ~Server() override;

  // Listens and serves until SIGTERM/SIGINT; returns the exit code.
  int Run();

  // What sessions use.
  SettingsPtr settings() const;
  // Cheap to poll: changes when a reload has installed new settings.
  uint64_t settings_generation() const { return generation_.load(std::memory_order_acquire); }
  asio::ssl::context* client_tls() { return client_tls_.get(); }
  asio::ssl::context& backend_tls() { return *backend_tls_; }
  CancelRegistry& cancels() { return cancels_; }
  Stats& stats() { return stats_; }
  routing::TableCounterRegistry& table_counters() { return table_counters_; }
  // The last minutes of each table's rates, for the status page.
  const RateHistory& rate_history() const { return rate_history_; }
  const WriteAudit& write_audit() const { return write_audit_; }
  MismatchLog& mismatches() { return mismatches_; }
  routing::WritesInFlight& writes_in_flight() { return writes_in_flight_; }
  int live_sessions() const { return live_sessions_.load(); }
  // With [coordination] enabled (fixed at start): what sessions consult
  // before touching a configured table, and the coordinator. Else null.
  routing::CoordinationGate* coordination_gate() { return coordinator_ ? &gate_ : nullptr; }
  Coordinator* coordinator() { return coordinator_.get(); }
  // SIGHUP and RELOAD: read the file again; install it if it is valid and
  // its phase steps are allowed, else keep the running settings and say why.
  // Runs on the background thread (it reads catalogs), never main_'s.
  absl::Status Reload();
  // The dry-run of moving `table` to `phase`: the statement shapes this
  // instance has seen on it, planned under that phase as `pgshift plan`
  // plans them (against the catalog the flip would read: it blocks the
  // calling thread for that read, as a reload does).
  absl::StatusOr<FlipPlan> ExplainPhase(std::string_view table, std::string_view phase);
  // The admin console's SET PHASE (coordination only): proposes `table`'s
  // move to `phase` as Reload would a file that says so.
  absl::Status SetPhase(std::string_view table, std::string_view phase);
  // Runs `work` on the background thread (periodic recovery's) and resumes
  // on main_ with its result: what may wait on a backend never holds up
  // accepting clients, the admin console or metrics. Empty when the work
  // threw (logged) or shutdown came first.
  awaitable<std::string> RunInBackground(std::function<std::string()> work);
  const std::string& config_path() const { return config_path_; }
  // This instance's shadow reads compared and persistent since `table`
  // entered its phase (SHOW STATUS).
  ShadowEvidence EvidenceSincePhase(const std::string& table) { return LocalEvidence(table); }
  // For SHOW CLIENTS, in session order.
  std::vector<ClientRow> ListClients() const;
  // For SHOW PREPARED: the last recovery's verdict on leftover prepared
  // mirrors.
  RecoveryReport LastRecovery() const;
  // Counts a client against max_clients; false when it is full.
  bool TryAdmitClient();
  void ReleaseClient();
  // Counts a connection logging in against max_logins; false (logged
  // once per 10 s) when it is full.
  bool TryBeginLogin();
  void EndLogin();

 private:
  absl::Status Setup();
  // Checks `next`, guards and (with coordination) proposes its phase
  // changes, and installs it; the running settings stay when it is refused.
  // `from_file`: a reload's (else SET PHASE's, the running settings with
  // one phase changed).
  absl::Status Apply(routing::ConfigPtr next, bool from_file);
  // With coordination: joins the coordinator and returns the configuration
  // with the fleet's phases (the file's when it cannot be reached); an error
  // when another live process holds this instance's id.
  absl::StatusOr<routing::ConfigPtr> JoinCoordinator(routing::ConfigPtr file);
  // CoordinatorHost.
  void InstallSharedPhases(const SharedPhases& phases) override;
  int Sessions() const override { return live_sessions_.load(); }
  ShadowEvidence LocalEvidence(const std::string& table) override;
  std::vector<routing::QueryFingerprints::Row> Queries() const override {
    return table_counters_.fingerprints().Rows();
  }
  std::string DescribeSession(uint64_t session) const override;
  // Installs `next` (already checked) as the running settings, with
  // `catalog` and `mirroring`; logs and notes its phase changes. Under
  // install_mutex_.
  void Install(routing::ConfigPtr next, routing::Catalog catalog, MirrorReadiness mirroring);
  absl::Status SetUpClientTls(const routing::ProxySettings& proxy);
  void StartWorkers(int workers);
  void LogListening(const routing::Config& config, int workers) const;
  // The shadow comparisons counted since each changing table entered
  // shadow-read: the evidence for its guard rail.
  absl::flat_hash_map<std::string, ShadowEvidence> ShadowEvidenceFor(
      const std::vector<PhaseChange>& changes);
  // Logs each applied change; one into shadow-read starts its evidence.
  void NotePhaseChanges(const std::vector<PhaseChange>& changes);
  awaitable<void> Accept();
  // Accepts on a main_ acceptor until it is closed, handing each connection to `serve`.
  awaitable<void> AcceptOnMain(tcp::acceptor& acceptor, std::function<void(tcp::socket)> serve);
  void ServeAdmin(tcp::socket socket);
  // Opens a listening socket on main_.
  absl::StatusOr<std::unique_ptr<tcp::acceptor>> Listen(std::string_view key,
                                                        const routing::Endpoint& where);
  awaitable<void> HandleSignals();
  // Every recovery_interval, on recovery_ thread: leftover prepared mirrors
  // resolved, so a mirror server that restarted with some is freed within
  // seconds.
  awaitable<void> RecoverPeriodically();
  // Every write_audit_interval, on recovery_ thread: a round of the write
  // audit (the first at start).
  awaitable<void> AuditWritesPeriodically();
  // Every RateHistory::kIntervalSeconds, each configured table's counters.
  awaitable<void> SampleRatesPeriodically();
  // Keeps `report` for SHOW PREPARED, logging what changed since the last.
  void RecordRecovery(RecoveryReport report);

 public:
  // A session reached a server it had lost: leftover prepared mirrors are
  // looked for now, not at the next recovery_interval. From any thread.
  void RecoverSoon();

 private:
  awaitable<void> Shutdown();
  void ForEachSession(void (Session::*action)());

  const std::string config_path_;
  // Before settings_: every Router refers to it.
  routing::TableCounterRegistry table_counters_;
  mutable absl::Mutex settings_mutex_;
  SettingsPtr settings_ ABSL_GUARDED_BY(settings_mutex_);
  std::atomic<uint64_t> generation_{0};
  std::unique_ptr<asio::ssl::context> client_tls_;
  std::unique_ptr<asio::ssl::context> backend_tls_;
  CancelRegistry cancels_;
  Stats stats_;
  MismatchLog mismatches_;
  // Keys of mirrored writes in flight, for the shadow runners' verdicts.
  routing::WritesInFlight writes_in_flight_;
  WriteAudit write_audit_;
  // Installing settings: a reload (background thread) and the
  // coordinator's phases (its own thread) take turns.
  mutable absl::Mutex install_mutex_;
  // Shadow counters when each table last entered shadow-read.
  absl::flat_hash_map<std::string, ShadowEvidence> shadow_baseline_ ABSL_GUARDED_BY(install_mutex_);
  // With coordination: the file as last accepted, whose phases are only
  // proposals, and the fleet's phases, which the running settings follow.
  routing::ConfigPtr file_config_ ABSL_GUARDED_BY(install_mutex_);
  SharedPhases shared_phases_ ABSL_GUARDED_BY(install_mutex_);
  routing::CoordinationGate gate_;
  std::unique_ptr<Coordinator> coordinator_;
  std::atomic<int> clients_{0};
  std::atomic<int> logins_{0};
  // When a refusal of each kind was last logged (steady clock, ms), so a
  // flood is said once per interval, not once per connection.
  std::atomic<int64_t> logins_full_logged_{0};
  std::atomic<int64_t> accept_backoff_logged_{0};
  mutable absl::Mutex recovery_mutex_;
  RecoveryReport recovery_ ABSL_GUARDED_BY(recovery_mutex_);

  asio::io_context main_;  // acceptor and signals
  // Installed before the port opens: a signal sent as soon as pgshift
  // accepts connections waits for the handler instead of being lost (or
  // ending the process).
  std::unique_ptr<asio::signal_set> signals_;
  std::unique_ptr<tcp::acceptor> acceptor_;
  std::unique_ptr<tcp::acceptor> admin_acceptor_;    // absent without admin_listen
  std::unique_ptr<tcp::acceptor> metrics_acceptor_;  // absent without metrics_listen
  // Periodic recovery runs on a thread of its own, so a server slow to
  // answer it holds up neither accepting nor shutdown, which stops it
  // wherever it is (a login, a query).
  struct Recovery {
    asio::io_context context{1};
    asio::steady_timer timer{context};
    bool soon = false;  // RecoverSoon asked for a run (the context's own thread)
    asio::steady_timer audit_timer{context};  // the write audit's rounds share the thread
    std::thread thread;
  };
  std::unique_ptr<Recovery> periodic_recovery_;
  RateHistory rate_history_;
  // Open admin console connections (main_ only), closed at shutdown.
  std::vector<std::weak_ptr<AdminConsole>> admin_consoles_;
  // RunInBackground's waiters (main_ only), let go at shutdown.
  std::vector<std::weak_ptr<asio::steady_timer>> background_waits_;
  struct Worker {
    asio::io_context context{1};
    // After `context`: its timer and sockets must go before the context's
    // services do.
    std::unique_ptr<ShadowRunner> shadow;
    std::unique_ptr<asio::executor_work_guard<asio::io_context::executor_type>> guard;
    std::thread thread;
  };
  std::vector<std::unique_ptr<Worker>> workers_;
  size_t next_worker_ = 0;
  uint64_t next_session_id_ = 1;

  mutable absl::Mutex sessions_mutex_;
  absl::flat_hash_map<uint64_t, std::weak_ptr<Session>> sessions_ ABSL_GUARDED_BY(sessions_mutex_);
  std::atomic<int> live_sessions_{0};
};

}  // namespace pgshift::proxy
