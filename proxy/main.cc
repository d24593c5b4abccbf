// pgshift: a PostgreSQL wire-protocol proxy for table migrations.
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <string>
#include <string_view>

#include "absl/strings/numbers.h"
#include "absl/time/time.h"
#include "common/strings.h"
#include "migration/backfill.h"
#include "migration/check_database.h"
#include "migration/verify.h"
#include "proxy/coordinator.h"
#include "proxy/coordinator_connection.h"
#include "proxy/flip.h"
#include "proxy/instance_console.h"
#include "proxy/log.h"
#include "proxy/plan_command.h"
#include "proxy/reload_signal.h"
#include "proxy/server.h"
#include "proxy/status.h"
#include "routing/config.h"

namespace {

constexpr std::string_view kUsage =
    R"(pgshift: a PostgreSQL proxy that moves tables without downtime

Usage:
  pgshift serve --config FILE [--log-level debug|info|warning|error]
      Run the proxy.
  pgshift check-config --config FILE [--against-database]
      Validate a configuration file; exits 1 and lists every problem. With
      --against-database, also check each table against the databases: both
      tables, a unique key on new, where old's columns go, differing types,
      writes that reach it unseen, and what its next phase needs (exit 1 when
      a check fails).
  pgshift backfill --config FILE --table T [--batch N] [--batch-seconds S]
                   [--rate ROWS_PER_S] [--max-lock-waits N] [--restart]
                   [--jobs J] [--lease-seconds L]
      Copy old's rows of T into new, in key order, a batch per transaction:
      N rows (default 1000) at first and at least, grown or shrunk so that a
      batch takes about S seconds (default 0.5; 0 keeps N), at most
      ROWS_PER_S rows a second, pausing while more than N sessions (default
      5) wait on locks in old. Resumes from its
      checkpoints in pgshift_state; --restart starts over. Never overwrites a
      row new already has, never brings back a row deleted meanwhile.
      With J workers (default 1) the table is split into 4*J key ranges that
      the workers claim; a backfill started on another machine joins the
      split. A range whose worker saves nothing for L seconds (default 60)
      is taken over by another.
  pgshift status --config FILE [--json]
      Where each table stands: its phase and since when, the backfill's
      progress, the last verify, shadow reads compared and mismatched
      (across the fleet with coordination), each guard rail of its next
      step met or not, and the command that moves it on.
  pgshift verify --config FILE --table T [--chunk N] [--rate ROWS_PER_S]
                 [--repair] [--json] [--jobs J] [--lease-seconds L]
      Compare old and new by key ranges of N keys (default 1000) with
      checksums computed in each database; report missing, extra and
      different keys, and with --repair copy them again from the
      authoritative side. Exits 0 when the tables agree (or were repaired),
      1 when they differ. --jobs and --lease-seconds share the work as in
      backfill; every command of one run reports the whole table.
  pgshift plan --config FILE --table T --to PHASE [--since DURATION] [--json]
      The dry-run of a flip on the statements the application sent (by
      shape: every instance's with coordination, else the running
      instance's, asked on its admin_listen as the file's first admin user,
      with PGPASSWORD when set): each planned under PHASE, listed as
      refused (with the refusal's words), rewritten (with the text sent
      instead) or sent as written, with the server that answers it and how
      its writes are mirrored. The guard rails are status's. Exits 0 when
      nothing would be refused, 1 when something would (or the flip itself:
      its phase step, or a new table that cannot be read), 2 when the
      statements cannot be read. --since (as 168h, 90m) leaves out, and
      counts, the shapes last seen longer ago than that; by default every
      recorded shape counts, the rare ones (a monthly job's) included.
  pgshift phase --config FILE --table T --to PHASE
      With [coordination] enabled: move T to PHASE for every instance, as a
      reload of one would (the phase-step rules and guard rails, judged on
      the whole fleet's evidence), as one fenced flip. Exits 0 once it is
      committed, 1 when it is refused or aborted, saying why.
  pgshift --help
      This text.

Signals (serve): SIGHUP reads the configuration file again; a valid file
whose phase steps are allowed applies to transactions that start after it,
anything else is rejected with a log line and the running configuration
stays. SIGTERM or SIGINT stops accepting clients, lets sessions finish their
transactions for up to proxy.shutdown_timeout seconds, then exits 0.
)";

struct Options {
  std::string command;
  std::string config;
  std::string log_level = "info";
  std::string table;
  std::string to;  // phase
  pgshift::migration::BackfillOptions backfill;
  pgshift::migration::VerifyOptions verify;
  bool against_database = false;               // check-config
  bool json = false;                           // status and plan (verify keeps its own)
  std::optional<absl::Duration> since;         // plan: only shapes seen this recently
};

bool ParseNumber(const char* text, int64_t min, int64_t& out) {
  int64_t v = 0;
  if (!pgshift::ParseInt(text, v) || v < min) return false;
  out = v;
  return true;
}

bool ParseOptions(int argc, char** argv, Options& o) {
  if (argc < 2) return false;
  o.command = argv[1];
  for (int i = 2; i < argc; ++i) {
    std::string_view arg = argv[i];
    auto value = [&](std::string& out) {
      if (i + 1 >= argc) return false;
      out = argv[++i];
      return true;
    };
    std::string text;
    if (arg == "--config") {
      if (!value(o.config)) return false;
    } else if (arg == "--log-level") {
      if (!value(o.log_level)) return false;
    } else if (arg == "--table") {
      if (!value(o.table)) return false;
    } else if (arg == "--to") {
      if (!value(o.to)) return false;
    } else if (arg == "--since") {
      absl::Duration since;
      if (!value(text) || !absl::ParseDuration(text, &since) || since <= absl::ZeroDuration()) {
        return false;
      }
      o.since = since;
    } else if (arg == "--batch") {
      if (!value(text) || !ParseNumber(text.c_str(), 1, o.backfill.batch)) return false;
    } else if (arg == "--batch-seconds") {
      if (!value(text) || !absl::SimpleAtod(text, &o.backfill.batch_seconds) ||
          !(o.backfill.batch_seconds >= 0 && o.backfill.batch_seconds <= 60)) {
        return false;
      }
    } else if (arg == "--chunk") {
      if (!value(text) || !ParseNumber(text.c_str(), 1, o.verify.chunk)) return false;
    } else if (arg == "--max-lock-waits") {
      if (!value(text) || !ParseNumber(text.c_str(), 0, o.backfill.max_lock_waits)) return false;
    } else if (arg == "--rate") {
      int64_t rate = 0;
      if (!value(text) || !ParseNumber(text.c_str(), 1, rate)) return false;
      o.backfill.rate = o.verify.rate = static_cast<double>(rate);
    } else if (arg == "--jobs") {
      if (!value(text) || !ParseNumber(text.c_str(), 1, o.backfill.jobs) || o.backfill.jobs > 64) {
        return false;
      }
      o.verify.jobs = o.backfill.jobs;
    } else if (arg == "--lease-seconds") {
      if (!value(text) || !ParseNumber(text.c_str(), 2, o.backfill.lease_seconds) ||
          o.backfill.lease_seconds > 86400) {
        return false;
      }
      o.verify.lease_seconds = o.backfill.lease_seconds;
    } else if (arg == "--restart") {
      o.backfill.restart = true;
    } else if (arg == "--repair") {
      o.verify.repair = true;
    } else if (arg == "--json") {
      o.verify.json = o.json = true;
    } else if (arg == "--against-database") {
      o.against_database = true;
    } else {
      std::fprintf(stderr, "pgshift: unknown option \"%s\"\n", argv[i]);
      return false;
    }
  }
  return true;
}

bool SetLevel(std::string_view name) {
  using pgshift::proxy::LogLevel;
  if (name == "debug") pgshift::proxy::SetLogLevel(LogLevel::kDebug);
  else if (name == "info") pgshift::proxy::SetLogLevel(LogLevel::kInfo);
  else if (name == "warning") pgshift::proxy::SetLogLevel(LogLevel::kWarning);
  else if (name == "error") pgshift::proxy::SetLogLevel(LogLevel::kError);
  else return false;
  return true;
}

std::optional<pgshift::routing::Phase> TargetPhase(const Options& options) {
  if (options.table.empty() || options.to.empty()) {
    std::fprintf(stderr, "pgshift %s: --table T and --to PHASE are required\n",
                 options.command.c_str());
    return std::nullopt;
  }
  std::optional<pgshift::routing::Phase> to = pgshift::routing::PhaseFromName(options.to);
  if (!to) {
    std::fprintf(stderr,
                 "pgshift %s: --to must be old-only, dual-write, shadow-read, new-primary or "
                 "new-only\n",
                 options.command.c_str());
  }
  return to;
}

// The phases in force: the fleet's with coordination, else the file's.
absl::StatusOr<pgshift::routing::ConfigPtr> PhasesInForce(const pgshift::routing::Config& file,
                                                          boost::asio::ssl::context& tls) {
  if (!file.coordination.enabled) return std::make_shared<pgshift::routing::Config>(file);
  auto shared = pgshift::proxy::ReadPhases(file, tls, false);
  if (!shared.ok()) return shared.status();
  return pgshift::proxy::WithSharedPhases(file, *shared);
}

int Failed(const Options& options, const absl::Status& status, int exit_code) {
  std::fprintf(stderr, "pgshift %s: %s\n", options.command.c_str(),
               std::string(pgshift::MessageOf(status)).c_str());
  return exit_code;
}

// pgshift phase: a fenced flip through the coordinator.
int ChangePhase(const Options& options, const pgshift::routing::Config& config) {
  std::optional<pgshift::routing::Phase> to = TargetPhase(options);
  if (!to) return 2;
  if (!config.coordination.enabled) {
    std::fprintf(stderr,
                 "pgshift phase: [coordination] is not enabled in %s: edit the table's phase "
                 "there and reload the instance\n",
                 options.config.c_str());
    return 2;
  }
  boost::asio::ssl::context tls(boost::asio::ssl::context::tls_client);
  tls.set_verify_mode(boost::asio::ssl::verify_none);
  absl::Status done = pgshift::proxy::ChangePhase(config, options.table, *to, tls);
  if (!done.ok()) return Failed(options, done, 1);
  std::printf("%s is in %s on every instance\n", options.table.c_str(), options.to.c_str());
  return 0;
}

// `pgshift status`: with coordination the fleet's phases and shadow counts;
// without, the running instance's, asked on its admin console (the file's
// phases, and shadow counts unknown, when it cannot be asked).
int Status(const Options& options, const pgshift::routing::Config& file) {
  boost::asio::ssl::context tls(boost::asio::ssl::context::tls_client);
  tls.set_verify_mode(boost::asio::ssl::verify_none);
  auto in_force = PhasesInForce(file, tls);
  if (!in_force.ok()) return Failed(options, in_force.status(), 2);
  pgshift::routing::ConfigPtr config = *in_force;
  std::optional<absl::flat_hash_map<std::string, pgshift::proxy::ShadowEvidence>> evidence;
  if (!file.coordination.enabled) {
    // The running instance knows its phases and shadow counts; the file
    // may not be reloaded yet.
    auto instance = pgshift::proxy::AskInstance(file, tls, /*shapes=*/false);
    if (instance.ok()) {
      config = pgshift::proxy::WithSharedPhases(file, instance->phases);
      evidence = std::move(instance->evidence);
    } else {
      std::fprintf(stderr,
                   "pgshift status: the running instance was not asked (%s): phases are the "
                   "file's, shadow counts unknown\n",
                   std::string(pgshift::MessageOf(instance.status())).c_str());
    }
  } else {
    std::vector<pgshift::proxy::PhaseChange> tables;
    for (const auto& t : config->tables) tables.push_back({t.name, t.phase, t.phase, false});
    auto fleet = pgshift::proxy::FleetEvidence(*config, tables, tls);
    if (!fleet.ok()) {
      return Failed(
          options,
          absl::UnavailableError(pgshift::StrCat("cannot read the fleet's shadow counts: ",
                                                 pgshift::MessageOf(fleet.status()))),
          2);
    }
    evidence = *std::move(fleet);
  }
  auto status =
      pgshift::proxy::ReadStatus(*config, {options.config, evidence ? &*evidence : nullptr}, tls);
  if (!status.ok()) return Failed(options, status.status(), 2);
  std::fputs(
      (options.json ? pgshift::proxy::StatusJson(*status) : pgshift::proxy::StatusText(*status))
          .c_str(),
      stdout);
  return 0;
}

// `pgshift plan`: exits 1 when the flip, or a statement under it, would be
// refused.
int Plan(const Options& options, const pgshift::routing::Config& file) {
  std::optional<pgshift::routing::Phase> to = TargetPhase(options);
  if (!to) return 2;
  boost::asio::ssl::context tls(boost::asio::ssl::context::tls_client);
  tls.set_verify_mode(boost::asio::ssl::verify_none);
  auto shapes = pgshift::proxy::ReadRecordedShapes(file, tls);
  if (!shapes.ok()) return Failed(options, shapes.status(), 2);
  if (options.since) pgshift::proxy::KeepSeenSince(*shapes, *options.since, absl::Now());
  // The phases in force: the fleet's, or the running instance's.
  absl::StatusOr<pgshift::routing::ConfigPtr> running =
      shapes->phases ? pgshift::proxy::WithSharedPhases(file, *shapes->phases)
                     : PhasesInForce(file, tls);
  if (!running.ok()) return Failed(options, running.status(), 2);
  auto plan = pgshift::proxy::PlanFlip(**running, options.table, *to, *std::move(shapes), tls);
  if (!plan.ok()) return Failed(options, plan.status(), 2);
  std::fputs(
      (options.json ? pgshift::proxy::PlanJson(*plan) : pgshift::proxy::PlanText(*plan)).c_str(),
      stdout);
  return plan->clean() ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  Options options;
  if (argc >= 2 && (std::strcmp(argv[1], "--help") == 0 || std::strcmp(argv[1], "-h") == 0 ||
                    std::strcmp(argv[1], "help") == 0)) {
    std::fputs(kUsage.data(), stdout);
    return 0;
  }
  if (!ParseOptions(argc, argv, options) ||
      (options.command != "serve" && options.command != "check-config" &&
       options.command != "backfill" && options.command != "verify" && options.command != "phase" &&
       options.command != "status" && options.command != "plan")) {
    std::fputs(kUsage.data(), stderr);
    return 2;
  }
  // A SIGHUP that arrives while serve still reads its file or reaches its
  // servers waits, blocked, until Server::Run can handle it: a reload, not
  // the default action that ends the process.
  if (options.command == "serve") pgshift::proxy::HoldReloadSignal();
  if (options.config.empty()) {
    std::fprintf(stderr, "pgshift %s: --config FILE is required\n", options.command.c_str());
    return 2;
  }
  if (!SetLevel(options.log_level)) {
    std::fprintf(stderr, "pgshift: --log-level must be debug, info, warning or error\n");
    return 2;
  }
  auto config = pgshift::routing::LoadConfigFile(options.config);
  if (!config.ok()) {
    std::fprintf(stderr, "pgshift: invalid configuration:\n%s\n",
                 std::string(pgshift::MessageOf(config.status())).c_str());
    // status and plan say 1 about the tables, not the file.
    return options.command == "status" || options.command == "plan" ? 2 : 1;
  }
  pgshift::proxy::SetLogFormat((*config)->proxy.log_format);
  if (options.command == "check-config") {
    std::printf("%s: configuration is valid\n", options.config.c_str());
    if (!options.against_database) return 0;
    auto checked = pgshift::migration::CheckAgainstDatabase(**config, stdout);
    if (!checked.ok()) {
      std::fprintf(stderr, "pgshift check-config: %s\n",
                   std::string(pgshift::MessageOf(checked.status())).c_str());
      return 2;
    }
    return *checked ? 0 : 1;
  }
  if (options.command == "backfill" || options.command == "verify") {
    if (options.table.empty()) {
      std::fprintf(stderr, "pgshift %s: --table T is required\n", options.command.c_str());
      return 2;
    }
    if (options.command == "backfill") {
      options.backfill.progress_bar = isatty(fileno(stdout)) != 0;
      absl::Status done =
          pgshift::migration::Backfill(**config, options.table, options.backfill, stdout);
      if (!done.ok()) {
        std::fprintf(stderr, "pgshift backfill: %s\n",
                     std::string(pgshift::MessageOf(done)).c_str());
        return 1;
      }
      return 0;
    }
    auto report = pgshift::migration::Verify(**config, options.table, options.verify);
    if (!report.ok()) {
      std::fprintf(stderr, "pgshift verify: %s\n",
                   std::string(pgshift::MessageOf(report.status())).c_str());
      return 2;
    }
    pgshift::migration::PrintReport(*report, options.verify.json, stdout);
    return report->differences() == 0 || report->repaired ? 0 : 1;
  }
  if (options.command == "phase") return ChangePhase(options, **config);
  if (options.command == "status") return Status(options, **config);
  if (options.command == "plan") return Plan(options, **config);
  pgshift::proxy::Server server(options.config, *config);
  return server.Run();
}
