#include "proxy/server.h"

#include <algorithm>
#include <boost/asio/signal_set.hpp>

#include "absl/container/flat_hash_set.h"
#include "common/strings.h"
#include "proxy/admin_console.h"
#include "proxy/catalog_reader.h"
#include "proxy/flip.h"
#include "proxy/log.h"
#include "proxy/metrics_endpoint.h"
#include "proxy/migration_state.h"
#include "proxy/reload_signal.h"
#include "proxy/session.h"

namespace pgshift::proxy {

SettingsPtr MakeSettings(routing::ConfigPtr config, uint64_t generation, routing::Catalog catalog,
                         routing::TableCounterRegistry& counters, MirrorReadiness mirroring) {
  auto settings = std::make_shared<Settings>();
  settings->generation = generation;
  settings->mirroring = mirroring;
  settings->router = std::make_shared<routing::Router>(config, std::move(catalog), counters);
  if (config->proxy.auth_method == routing::AuthMethod::kScramSha256) {
    for (const routing::UserConfig& u : config->users) {
      if (u.password.empty()) continue;
      settings->verifiers[u.name] = protocol::ScramVerifier::LooksLikeVerifier(u.password)
                                        ? *protocol::ScramVerifier::Parse(u.password)
                                        : protocol::ScramVerifier::FromPassword(u.password);
    }
  }
  settings->config = std::move(config);
  return settings;
}

namespace {

std::string EndpointText(const std::optional<routing::Endpoint>& e) {
  return e ? StrCat(e->host, ":", e->port) : "unset";
}

// Shadow reads run as the backends' own user unless shadow_user names a
// role of their own: said at start and at each reload that shadows.
void WarnIfShadowsRunAsControlRole(const routing::Config& config) {
  if (!config.proxy.shadow_user.empty()) return;
  for (const routing::TableConfig& t : config.tables) {
    if (t.shadow_sample > 0 &&
        (t.phase == routing::Phase::kShadowRead || t.phase == routing::Phase::kNewPrimary)) {
      LogEvent(LogLevel::kWarning, "shadow_user_unset",
               {{"table", t.name},
                {"reason",
                 "shadow reads run the application's SQL as each backend's user; set "
                 "proxy.shadow_user to a role with only SELECT on the tables"}});
      return;
    }
  }
}

// Settings bound at start stay as they are until a restart; says so.
void WarnIfRestartNeeded(const routing::ProxySettings& was, const routing::ProxySettings& now) {
  auto restart_needed = [&](std::string_view key, const std::string& before,
                            const std::string& after) {
    if (before != after) {
      LogEvent(LogLevel::kWarning, "config_needs_restart",
               {{"key", key}, {"running", before}, {"file", after}});
    }
  };
  restart_needed("proxy.listen", EndpointText(was.listen), EndpointText(now.listen));
  restart_needed("proxy.workers", StrCat(was.workers), StrCat(now.workers));
  restart_needed("proxy.tls_cert", was.tls_cert, now.tls_cert);
  restart_needed("proxy.tls_key", was.tls_key, now.tls_key);
  restart_needed("proxy.admin_listen", EndpointText(was.admin_listen),
                 EndpointText(now.admin_listen));
  restart_needed("proxy.metrics_listen", EndpointText(was.metrics_listen),
                 EndpointText(now.metrics_listen));
}

}  // namespace

const protocol::ScramVerifier* Settings::ScramVerifierFor(const std::string& user) const {
  auto it = verifiers.find(user);
  return it == verifiers.end() ? nullptr : &it->second;
}

Server::Server(std::string config_path, routing::ConfigPtr config)
    : config_path_(std::move(config_path)),
      settings_(MakeSettings(std::move(config), 0, {}, table_counters_)) {}

Server::~Server() {
  // It calls into this server: stopped before anything goes.
  if (coordinator_) coordinator_->Stop();
  for (auto& w : workers_) {
    w->guard.reset();
    w->context.stop();
    if (w->thread.joinable()) w->thread.join();
  }
}

SettingsPtr Server::settings() const {
  absl::MutexLock lock(&settings_mutex_);
  return settings_;
}

std::vector<ClientRow> Server::ListClients() const {
  std::vector<std::shared_ptr<Session>> sessions;
  {
    absl::MutexLock lock(&sessions_mutex_);
    for (const auto& [id, weak] : sessions_) {
      if (auto s = weak.lock()) sessions.push_back(std::move(s));
    }
  }
  std::vector<ClientRow> rows;
  for (const auto& s : sessions) rows.push_back(s->Describe());
  std::sort(rows.begin(), rows.end(),
            [](const ClientRow& a, const ClientRow& b) { return a.session < b.session; });
  return rows;
}

bool Server::TryAdmitClient() {
  int limit = settings()->config->proxy.max_clients;
  int current = clients_.load();
  while (current < limit) {
    if (clients_.compare_exchange_weak(current, current + 1)) return true;
  }
  return false;
}

void Server::ReleaseClient() { clients_.fetch_sub(1); }

namespace {

// True at most once per `interval` for `last` (the time it last was).
bool DueToSay(std::atomic<int64_t>& last, std::chrono::seconds interval) {
  const int64_t now = std::chrono::duration_cast<std::chrono::milliseconds>(
                          std::chrono::steady_clock::now().time_since_epoch())
                          .count();
  int64_t seen = last.load();
  const int64_t wait = std::chrono::duration_cast<std::chrono::milliseconds>(interval).count();
  return (seen == 0 || now - seen >= wait) && last.compare_exchange_strong(seen, now);
}

constexpr std::chrono::seconds kRefusalLogInterval{10};

}  // namespace

bool Server::TryBeginLogin() {
  const int limit = settings()->config->proxy.max_logins;
  int current = logins_.load();
  while (current < limit) {
    if (logins_.compare_exchange_weak(current, current + 1)) return true;
  }
  if (DueToSay(logins_full_logged_, kRefusalLogInterval)) {
    LogEvent(LogLevel::kWarning, "logins_full",
             {{"reason", StrCat("max_logins (", limit,
                                ") connections are logging in; new ones are closed at once")}});
  }
  return false;
}

void Server::EndLogin() { logins_.fetch_sub(1); }

absl::Status Server::Setup() {
  SettingsPtr settings = this->settings();
  const routing::Config& config = *settings->config;
  const routing::ProxySettings& p = config.proxy;
  if (p.tls_enabled()) {
    if (absl::Status tls = SetUpClientTls(p); !tls.ok()) return tls;
  }
  // Toward backends TLS encrypts; with sslmode verify-ca or verify-full each
  // connection also checks the server's certificate (backend_login.cc).
  backend_tls_ = std::make_unique<asio::ssl::context>(asio::ssl::context::tls_client);
  backend_tls_->set_verify_mode(asio::ssl::verify_none);

  // A new table that cannot be read now is served all the same (its
  // statements fail on the server or, for `*` over renamed columns, are
  // refused); the operator is told which and why.
  CatalogReadResult catalog = ReadCatalog(config, *backend_tls_);
  if (std::string bad = TransformProblems(catalog); !bad.empty()) {
    return absl::FailedPreconditionError(StrCat("pgshift: ", bad));
  }
  for (const CatalogReadResult::Problem& problem : catalog.problems) {
    LogEvent(LogLevel::kWarning, "catalog_unreadable",
             {{"table", problem.table}, {"reason", problem.reason}});
  }
  // With coordination the fleet's phases are the record (pgshift_phases).
  routing::ConfigPtr running = settings->config;
  if (config.coordination.enabled) {
    absl::StatusOr<routing::ConfigPtr> joined = JoinCoordinator(running);
    if (!joined.ok()) return joined.status();
    running = *std::move(joined);
  } else {
    ReportAndRecordAtStart(config, *backend_tls_);
  }
  WarnIfShadowsRunAsControlRole(config);
  RecoveryReport recovery;
  MirrorReadiness mirroring = ReadyMirroring(config, *backend_tls_, recovery);
  RecordRecovery(std::move(recovery));
  {
    SettingsPtr with_catalog = MakeSettings(running, settings->generation,
                                            std::move(catalog.catalog), table_counters_, mirroring);
    absl::MutexLock lock(&settings_mutex_);
    settings_ = with_catalog;
  }
  if (coordinator_) {
    // Its first round renews the lease: until then statements on tables in
    // mirrored phases would be refused, so clients wait for it (briefly).
    coordinator_->Start();
    auto give_up = std::chrono::steady_clock::now() +
                   std::chrono::milliseconds(static_cast<int64_t>(p.connect_timeout_s * 1000));
    while (!gate_.LeaseValid() && std::chrono::steady_clock::now() < give_up) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  }

  auto listener = Listen("proxy.listen", p.listen);
  if (!listener.ok()) return listener.status();
  acceptor_ = std::move(*listener);
  if (p.admin_listen) {
    auto admin = Listen("proxy.admin_listen", *p.admin_listen);
    if (!admin.ok()) return admin.status();
    admin_acceptor_ = std::move(*admin);
  }
  if (p.metrics_listen) {
    auto metrics = Listen("proxy.metrics_listen", *p.metrics_listen);
    if (!metrics.ok()) return metrics.status();
    metrics_acceptor_ = std::move(*metrics);
  }

  int workers = p.workers > 0 ? p.workers : static_cast<int>(std::thread::hardware_concurrency());
  StartWorkers(std::max(workers, 1));
  LogListening(config, static_cast<int>(workers_.size()));
  return absl::OkStatus();
}

absl::Status Server::SetUpClientTls(const routing::ProxySettings& p) {
  client_tls_ = std::make_unique<asio::ssl::context>(asio::ssl::context::tls_server);
  client_tls_->set_options(asio::ssl::context::default_workarounds | asio::ssl::context::no_sslv2 |
                           asio::ssl::context::no_sslv3 | asio::ssl::context::no_tlsv1 |
                           asio::ssl::context::no_tlsv1_1);
  error_code ec;
  client_tls_->use_certificate_chain_file(p.tls_cert, ec);
  if (ec)
    return absl::InvalidArgumentError(
        StrCat("proxy.tls_cert \"", p.tls_cert, "\": ", ec.message()));
  client_tls_->use_private_key_file(p.tls_key, asio::ssl::context::pem, ec);
  if (ec)
    return absl::InvalidArgumentError(StrCat("proxy.tls_key \"", p.tls_key, "\": ", ec.message()));
  return absl::OkStatus();
}

void Server::StartWorkers(int workers) {
  for (int i = 0; i < workers; ++i) {
    auto w = std::make_unique<Worker>();
    w->shadow = std::make_unique<ShadowRunner>(*this, w->context);
    w->guard = std::make_unique<asio::executor_work_guard<asio::io_context::executor_type>>(
        w->context.get_executor());
    Worker* raw = w.get();
    w->thread = std::thread([raw] { raw->context.run(); });
    workers_.push_back(std::move(w));
  }
}

void Server::LogListening(const routing::Config& config, int workers) const {
  const routing::ProxySettings& p = config.proxy;
  LogEvent(LogLevel::kInfo, "listening",
           {{"address", StrCat(p.listen.host, ":", acceptor_->local_endpoint().port())},
            {"workers", StrCat(workers)},
            {"auth_method", routing::AuthMethodName(p.auth_method)},
            {"tls", client_tls_ ? "on" : "off"},
            {"backend_old", StrCat(config.old_backend.endpoint.host, ":",
                                   config.old_backend.endpoint.port)}});
  if (admin_acceptor_) {
    LogEvent(LogLevel::kInfo, "admin_listening",
             {{"address", StrCat(p.admin_listen->host, ":", admin_acceptor_->local_endpoint().port())}});
  }
  if (metrics_acceptor_) {
    LogEvent(LogLevel::kInfo, "metrics_listening",
             {{"address", StrCat(p.metrics_listen->host, ":",
                                 metrics_acceptor_->local_endpoint().port())},
              {"path", "/metrics"}});
  }
}

absl::StatusOr<std::unique_ptr<tcp::acceptor>> Server::Listen(std::string_view key,
                                                              const routing::Endpoint& where) {
  error_code ec;
  auto address = asio::ip::make_address(where.host, ec);
  if (ec) return absl::InvalidArgumentError(StrCat(key, ": bad address \"", where.host, "\""));
  tcp::endpoint endpoint(address, where.port);
  auto acceptor = std::make_unique<tcp::acceptor>(main_);
  acceptor->open(endpoint.protocol(), ec);
  if (!ec) acceptor->set_option(tcp::acceptor::reuse_address(true), ec);
  if (!ec) acceptor->bind(endpoint, ec);
  if (!ec) acceptor->listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    return absl::UnavailableError(
        StrCat(key, ": cannot listen on ", where.host, ":", where.port, ": ", ec.message()));
  }
  return acceptor;
}

int Server::Run() {
  signals_ = std::make_unique<asio::signal_set>(main_, SIGTERM, SIGINT, SIGHUP);
  ReleaseReloadSignal();
  if (absl::Status s = Setup(); !s.ok()) {
    LogEvent(LogLevel::kError, "startup_failed", {{"reason", MessageOf(s)}});
    return 1;
  }
  asio::co_spawn(main_, Accept(), asio::detached);
  if (admin_acceptor_) {
    asio::co_spawn(main_,
                   AcceptOnMain(*admin_acceptor_, [this](tcp::socket s) { ServeAdmin(std::move(s)); }),
                   asio::detached);
  }
  if (metrics_acceptor_) {
    asio::co_spawn(main_, AcceptOnMain(*metrics_acceptor_, [this](tcp::socket s) {
                     asio::co_spawn(main_, ServeMetrics(*this, std::move(s)), asio::detached);
                   }),
                   asio::detached);
  }
  asio::co_spawn(main_, HandleSignals(), asio::detached);
  periodic_recovery_ = std::make_unique<Recovery>();
  asio::co_spawn(periodic_recovery_->context, RecoverPeriodically(), asio::detached);
  asio::co_spawn(periodic_recovery_->context, AuditWritesPeriodically(), asio::detached);
  asio::co_spawn(periodic_recovery_->context, SampleRatesPeriodically(), asio::detached);
  periodic_recovery_->thread = std::thread([this] { periodic_recovery_->context.run(); });
  main_.run();
  for (auto& w : workers_) {
    w->guard.reset();
    w->context.stop();
    w->thread.join();
  }
  workers_.clear();
  // Stopped by Shutdown; a run it stopped midway goes with its context.
  // Gone only after the workers, whose sessions may still ask for a run.
  periodic_recovery_->thread.join();
  periodic_recovery_.reset();
  LogEvent(LogLevel::kInfo, "stopped", {});
  return 0;
}

awaitable<void> Server::Accept() {
  while (acceptor_->is_open()) {
    Worker& worker = *workers_[next_worker_++ % workers_.size()];
    error_code ec;
    tcp::socket socket = co_await acceptor_->async_accept(worker.context, WithError(ec));
    if (ec) {
      if (ec == asio::error::operation_aborted || !acceptor_->is_open()) break;
      // Out of file descriptors: the connection stays queued, and
      // accepting again at once would spin. Wait a moment; say so once
      // per interval.
      const bool out_of_files = ec == asio::error::no_descriptors ||
                                ec == boost::system::errc::too_many_files_open_in_system;
      if (!out_of_files || DueToSay(accept_backoff_logged_, kRefusalLogInterval)) {
        LogEvent(LogLevel::kWarning, "accept_failed",
                 {{"reason", ec.message()}, {"backoff_ms", out_of_files ? "100" : "0"}});
      }
      if (out_of_files) {
        asio::steady_timer pause(main_, std::chrono::milliseconds(100));
        co_await pause.async_wait(WithError(ec));
      }
      continue;
    }
    auto session = std::make_shared<Session>(*this, std::move(socket), next_session_id_++,
                                             worker.shadow.get());
    {
      absl::MutexLock lock(&sessions_mutex_);
      sessions_[session->id()] = session;
    }
    live_sessions_.fetch_add(1);
    asio::co_spawn(
        session->executor(),
        [this, session]() -> awaitable<void> {
          // However the session ends, it leaves the count shutdown waits on.
          struct Leave {
            Server* server;
            uint64_t id;
            ~Leave() {
              {
                absl::MutexLock lock(&server->sessions_mutex_);
                server->sessions_.erase(id);
              }
              server->live_sessions_.fetch_sub(1);
            }
          } leave{this, session->id()};
          try {
            co_await session->Run();
          } catch (const std::exception& e) {
            LogEvent(LogLevel::kError, "session_failed",
                     {{"session", StrCat(session->id())}, {"reason", e.what()}});
          }
        },
        asio::detached);
  }
}

// The admin console and metrics are served from main_: little traffic, and
// it keeps them responsive however busy the workers are.
awaitable<void> Server::AcceptOnMain(tcp::acceptor& acceptor,
                                     std::function<void(tcp::socket)> serve) {
  while (acceptor.is_open()) {
    error_code ec;
    tcp::socket socket = co_await acceptor.async_accept(WithError(ec));
    if (ec) {
      if (ec == asio::error::operation_aborted || !acceptor.is_open()) break;
      continue;
    }
    serve(std::move(socket));
  }
}

void Server::ServeAdmin(tcp::socket socket) {
  std::erase_if(admin_consoles_, [](const auto& weak) { return weak.expired(); });
  const int limit = settings()->config->proxy.admin_max_clients;
  if (static_cast<int>(admin_consoles_.size()) >= limit) {
    LogEvent(LogLevel::kWarning, "admin_refused",
             {{"reason", StrCat("admin_max_clients (", limit, ") reached")}});
    error_code ignored;
    socket.close(ignored);
    return;
  }
  auto console = std::make_shared<AdminConsole>(*this, std::move(socket));
  admin_consoles_.push_back(console);
  asio::co_spawn(
      main_, [console]() -> awaitable<void> { co_await console->Run(); }, asio::detached);
}

awaitable<void> Server::HandleSignals() {
  while (true) {
    error_code ec;
    int signal = co_await signals_->async_wait(WithError(ec));
    if (ec) co_return;
    if (signal == SIGHUP) {
      // Off this thread, which accepts clients: Reload reads catalogs.
      asio::post(periodic_recovery_->context, [this] { Reload().IgnoreError(); });  // it logs
      continue;
    }
    LogEvent(LogLevel::kInfo, "shutdown_started",
             {{"signal", signal == SIGTERM ? "SIGTERM" : "SIGINT"},
              {"sessions", StrCat(live_sessions_.load())},
              {"timeout_s", StrCat(settings()->config->proxy.shutdown_timeout_s)}});
    co_await Shutdown();
    co_return;
  }
}

absl::Status Server::Reload() {
  auto loaded = routing::LoadConfigFile(config_path_);
  if (!loaded.ok()) {
    LogEvent(LogLevel::kError, "config_rejected",
             {{"file", config_path_}, {"reason", MessageOf(loaded.status())}});
    return loaded.status();
  }
  return Apply(*loaded, /*from_file=*/true);
}

absl::Status Server::Apply(routing::ConfigPtr next, bool from_file) {
  auto rejected = [this](absl::Status why) {
    LogEvent(LogLevel::kError, "config_rejected",
             {{"file", config_path_}, {"reason", MessageOf(why)}});
    return why;
  };
  SettingsPtr current = settings();
  // With coordination, what is kept as the file (its phases are only
  // proposals), and the proposals: a file's phases where it changed them
  // since it was last accepted (a file left behind by a flip made
  // elsewhere does not take the fleet back), or SET PHASE's.
  routing::ConfigPtr file = next;
  if (coordinator_) {
    absl::MutexLock lock(&install_mutex_);
    if (from_file) {
      next = ProposedPhases(*next, *file_config_, shared_phases_);
    } else {
      file = file_config_;
    }
  }
  if (absl::Status steps = routing::CheckPhaseSteps(*current->config, *next); !steps.ok()) {
    return rejected(steps);
  }
  if (absl::Status renamed = CheckDeploymentChange(*current->config, *next, *backend_tls_);
      !renamed.ok()) {
    return rejected(renamed);
  }
  WarnIfRestartNeeded(current->config->proxy, next->proxy);
  WarnIfShadowsRunAsControlRole(*next);

  // A table cannot move toward new while its new table cannot be read.
  CatalogReadResult catalog = ReadCatalog(*next, *backend_tls_);
  std::string bad = TransformProblems(catalog, current->config.get(), next.get());
  if (!bad.empty()) return rejected(absl::FailedPreconditionError(StrCat("pgshift: ", bad)));
  for (const routing::TableConfig& t : next->tables) {
    if (t.phase == current->config->PhaseOf(t.name)) continue;
    if (std::optional<std::string> why = CannotMove(catalog, t)) {
      LogEvent(LogLevel::kError, "config_rejected",
               {{"file", config_path_}, {"table", t.name}, {"reason", *why}});
      return absl::FailedPreconditionError(*why);
    }
  }
  for (const CatalogReadResult::Problem& problem : catalog.problems) {
    LogEvent(LogLevel::kWarning, "catalog_unreadable",
             {{"table", problem.table}, {"reason", problem.reason}});
  }
  // Columns that cannot be read now (a server down) are taken from the
  // running configuration's catalog, so that a reload keeps mirroring.
  const routing::Catalog& running = current->router->catalog();
  for (const auto& [relation, columns] : running.old_tables) {
    catalog.catalog.old_tables.try_emplace(relation, columns);
  }
  for (const auto& [relation, columns] : running.new_tables) {
    catalog.catalog.new_tables.try_emplace(relation, columns);
  }
  std::vector<PhaseChange> changes = PhaseChanges(*current->config, *next);
  // With coordination the file's phases are proposals: a flip records
  // itself once every instance has taken it.
  absl::flat_hash_map<std::string, ShadowEvidence> evidence;
  if (coordinator_) {
    // Every instance's comparisons count, and a restart's do not vanish.
    auto fleet = FleetEvidence(*next, changes, *backend_tls_);
    if (!fleet.ok()) {
      return rejected(absl::UnavailableError(
          StrCat("cannot read the fleet's shadow evidence from the coordinator: ",
                 MessageOf(fleet.status()))));
    }
    evidence = *std::move(fleet);
  } else {
    evidence = ShadowEvidenceFor(changes);
  }
  if (absl::Status guarded = GuardAndRecord(*next, changes, evidence, *backend_tls_,
                                            /*record=*/coordinator_ == nullptr);
      !guarded.ok()) {
    return rejected(guarded);
  }
  if (coordinator_) {
    if (absl::Status flipped = coordinator_->Propose(*next, changes); !flipped.ok()) {
      return rejected(flipped);
    }
    coordinator_->Configure(file);
  }
  RecoveryReport recovery;
  MirrorReadiness mirroring = ReadyMirroring(*next, *backend_tls_, recovery);
  RecordRecovery(std::move(recovery));
  absl::MutexLock lock(&install_mutex_);
  routing::ConfigPtr installing = next;
  if (coordinator_) {
    for (const PhaseChange& c : changes) shared_phases_[c.table] = c.to;
    file_config_ = file;
    installing = WithSharedPhases(*file, shared_phases_);
  }
  Install(installing, std::move(catalog.catalog), mirroring);
  SetLogFormat(installing->proxy.log_format);
  LogEvent(LogLevel::kInfo, "config_reloaded",
           {{"file", config_path_}, {"generation", StrCat(generation_.load())}});
  return absl::OkStatus();
}

void Server::ForEachSession(void (Session::*action)()) {
  absl::MutexLock lock(&sessions_mutex_);
  for (auto& [id, weak] : sessions_) {
    if (auto session = weak.lock()) {
      asio::post(session->executor(), [session, action] { ((*session).*action)(); });
    }
  }
}

awaitable<void> Server::Shutdown() {
  error_code ignored;
  acceptor_->close(ignored);
  if (admin_acceptor_) admin_acceptor_->close(ignored);
  if (metrics_acceptor_) metrics_acceptor_->close(ignored);
  periodic_recovery_->context.stop();
  // Work queued behind it will not run: its waiters are let go.
  for (const auto& weak : background_waits_) {
    if (auto done = weak.lock()) done->cancel();
  }
  for (const auto& weak : admin_consoles_) {
    if (auto console = weak.lock()) console->Close();
  }
  ForEachSession(&Session::BeginShutdown);
  asio::steady_timer timer(main_);
  auto deadline = std::chrono::steady_clock::now() +
                  std::chrono::milliseconds(static_cast<int64_t>(
                      settings()->config->proxy.shutdown_timeout_s * 1000));
  bool aborted = false;
  while (live_sessions_.load() > 0) {
    if (!aborted && std::chrono::steady_clock::now() >= deadline) {
      LogEvent(LogLevel::kWarning, "shutdown_timeout",
               {{"sessions_closed", StrCat(live_sessions_.load())}});
      ForEachSession(&Session::Abort);
      aborted = true;
    }
    timer.expires_after(std::chrono::milliseconds(20));
    co_await timer.async_wait(WithError(ignored));
  }
  // Nothing is left on main_ now (the acceptor is closed, the signal
  // handled), so Run()'s main_.run() returns and the workers are stopped
  // after every operation that refers to them has completed.
}

}  // namespace pgshift::proxy
