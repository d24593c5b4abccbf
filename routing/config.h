// The configuration model (SPEC section 3): an immutable snapshot that
// sessions hold by shared pointer, so a reload never changes what a running
// transaction sees.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "routing/column_transform.h"
#include "routing/phase.h"

namespace pgshift::routing {

enum class AuthMethod { kTrust, kMd5, kScramSha256 };
std::string_view AuthMethodName(AuthMethod method);

// As libpq's sslmode, limited to what a proxy needs.
enum class SslMode { kDisable, kPrefer, kRequire, kVerifyCa, kVerifyFull };
inline constexpr std::array<std::pair<std::string_view, SslMode>, 5> kSslModeNames = {{
    {"disable", SslMode::kDisable},
    {"prefer", SslMode::kPrefer},
    {"require", SslMode::kRequire},
    {"verify-ca", SslMode::kVerifyCa},
    {"verify-full", SslMode::kVerifyFull},
}};
std::string_view SslModeName(SslMode mode);
inline bool VerifiesServer(SslMode mode) {
  return mode == SslMode::kVerifyCa || mode == SslMode::kVerifyFull;
}

enum class MirrorErrorPolicy { kFail, kLog };
// When a mirrored write's apply on the other server is awaited, inside a
// client transaction: before the client hears back (sync), or before its
// next statement that needs the outcome, at the latest its COMMIT
// (pipelined).
enum class MirrorApply { kSync, kPipelined };

struct Endpoint {
  std::string host;
  uint16_t port = 0;
};

// How log lines are written: `time LEVEL event=... key=value`, or one
// JSON object per line with the same fields (for Loki, Elasticsearch).
enum class LogFormat { kText, kJson };

struct ProxySettings {
  Endpoint listen{"127.0.0.1", 6432};
  int workers = 0;  // 0: one per core
  std::optional<Endpoint> admin_listen;
  std::optional<Endpoint> metrics_listen;
  LogFormat log_format = LogFormat::kText;  // applies at once, also on reload
  AuthMethod auth_method = AuthMethod::kTrust;
  // The admin console's, when not auth_method's. Under trust the console
  // takes only connections from this host (loopback) unless this is set.
  std::optional<AuthMethod> admin_auth_method;
  int max_clients = 1000;      // authenticated sessions
  int max_logins = 100;        // connections still logging in
  int admin_max_clients = 10;  // admin console connections
  // A client must finish its startup, TLS handshake and authentication
  // within this (PostgreSQL's authentication_timeout).
  double login_timeout_s = 60;
  std::string tls_cert;
  std::string tls_key;
  double shutdown_timeout_s = 30;   // SIGTERM: how long sessions may finish
  double connect_timeout_s = 10;    // toward backends
  uint64_t max_message_size = uint64_t{1} << 30;
  // Routing plans kept by statement text (per configuration); 0 turns the
  // cache off.
  int64_t plan_cache_size = 10000;
  // The plans' approximate bytes (statement texts, rewritten texts),
  // beyond which the least recently used go.
  int64_t plan_cache_max_bytes = int64_t{64} << 20;
  // Shadow reads waiting per worker; more are dropped (and counted).
  int64_t shadow_queue_size = 100000;
  // Comparisons one worker runs at once, each on a connection per side of
  // its own (a pool of at most this many per side).
  int64_t shadow_connections = 4;
  // Bytes of the clients' results one worker keeps for shadow comparisons
  // (queued and being captured); a read that would hold more is dropped.
  int64_t shadow_max_bytes = int64_t{64} << 20;
  // Bytes one session holds for mirroring across servers: the rows and
  // held replies of the write being mirrored, and the keys its transaction
  // mirrored so far. A write past it fails (54000) and is rolled back.
  int64_t mirror_max_bytes = int64_t{256} << 20;
  // Bytes of one client's prepared statements, portals and setting changes
  // that pgshift keeps; a statement that would keep more fails (54000).
  int64_t client_state_max_bytes = int64_t{16} << 20;
  // Across servers, a shadow read whose difference no write in flight
  // explains is read again after this delay (transient if it then agrees).
  double shadow_recheck_s = 0.2;
  // Across servers, how long a comparison whose difference writes in
  // flight explain may wait for a quiet moment to be judged at; past it,
  // it is counted unstable.
  double shadow_quiet_timeout_s = 2;
  // The role shadow reads run as, on both servers (it needs only SELECT on
  // the tables); unset: each backend's own user. Its password, when not
  // given, is the [[users]] entry's of that name.
  std::string shadow_user;
  std::optional<std::string> shadow_password;
  // A shadow read's statement_timeout.
  double shadow_timeout_s = 5;
  // Names this deployment in the prepared transactions of its mirrors, so
  // that two deployments sharing a mirror server never resolve each other's.
  // Lower-case letters and digits; by default derived from the old and new
  // databases' addresses (see DefaultDeployment).
  std::string deployment;
  // How often leftover prepared mirrors are looked for and resolved while
  // pgshift runs (besides at start and reload).
  double recovery_interval_s = 5;
  // A leftover prepared mirror is resolved only once it is this old: until
  // then another instance's live session may still be settling it.
  double recovery_min_age_s = 30;
  // How often the published row counts of tables in mirrored phases are
  // read to count writes no statement showed (0: never).
  double write_audit_interval_s = 10;
  // pgshift's own statements on a mirror wait at most this long for a row
  // lock (a mirror that times out has failed, under its table's policy).
  double mirror_lock_timeout_s = 5;

  bool tls_enabled() const { return !tls_cert.empty() && !tls_key.empty(); }
};

struct UserConfig {
  std::string name;
  std::string password;  // plaintext, "md5..." or a SCRAM-SHA-256 verifier
  bool admin = false;
};

struct BackendConfig {
  Endpoint endpoint{"127.0.0.1", 5432};
  std::optional<std::string> dbname;    // default: the client's
  std::optional<std::string> user;      // default: the client's
  std::optional<std::string> password;  // default: the client's [[users]] password
  SslMode sslmode = SslMode::kPrefer;
  // verify-ca and verify-full: the CA certificates (a PEM file) the
  // server's certificate must chain to, or "system" for the system's own.
  std::string sslrootcert;
};

struct TableConfig {
  std::string name;      // schema-qualified, as the application names it
  std::string new_name;  // schema-qualified
  Phase phase = Phase::kOldOnly;
  std::vector<std::string> key;
  std::map<std::string, std::string> columns;  // old column -> new column
  // Columns computed from the other side's row (routing/column_transform.h):
  // new's from old's row, and old's from new's.
  std::vector<ColumnTransform> new_columns;
  std::vector<ColumnTransform> old_columns;
  double shadow_sample = 0;
  // The guard rail into new-primary: at least this many shadow reads
  // compared since the table entered shadow-read, and at most this share of
  // them mismatched (persistently).
  int64_t min_shadow_compared = 1000;
  double max_shadow_mismatch_rate = 0.001;
  MirrorErrorPolicy on_mirror_error = MirrorErrorPolicy::kFail;
  MirrorApply mirror_apply = MirrorApply::kPipelined;
  bool force = false;

  // Some of its reads are compared on the other side (shadow-read and
  // new-primary, with shadow_sample above 0).
  bool shadowed() const {
    return (phase == Phase::kShadowRead || phase == Phase::kNewPrimary) && shadow_sample > 0;
  }
};

// [coordination]: several instances share one migration through the old
// database (SPEC section 9). Off: this instance's file is the truth.
struct CoordinationSettings {
  bool enabled = false;
  // Names this instance in pgshift_instances; empty: "host:listen port".
  std::string instance_id;
  // An instance that has not renewed its lease for this long refuses
  // statements on tables in mirrored phases; the others count it as gone.
  double lease_timeout_s = 10;
  // How long a fenced flip waits for every live instance to drain the
  // table's transactions before it is aborted.
  double cutover_timeout_s = 2;
  // How often each instance renews its lease and reads the phases when no
  // notification comes first.
  double poll_interval_s = 1;
  // Where the coordinator is reached, when not at old's own address
  // (another route to the same database).
  std::optional<std::string> host;
  std::optional<int> port;
};

struct Config {
  std::string source;    // file it was read from
  std::string checksum;  // SHA-256 of its text, hex, recorded with phase changes
  ProxySettings proxy;
  std::vector<UserConfig> users;
  BackendConfig old_backend;
  std::optional<BackendConfig> new_backend;  // absent: same database as old
  std::vector<TableConfig> tables;
  CoordinationSettings coordination;
  // Set from the coordinator, never from a file: tables the coordinated
  // migration has past old-only that this file does not configure. A
  // statement naming one is refused, so none reaches old alone while the
  // other instances mirror it.
  std::map<std::string, Phase> unconfigured_migrating;

  const UserConfig* FindUser(std::string_view name) const;
  // The table named `name` as configured ("public.channels") or unqualified
  // ("channels"), as an operator types it.
  const TableConfig* FindTable(std::string_view name) const;
  // The phase `name` ("public.channels") runs under: as configured, else
  // as the fleet has it (unconfigured_migrating), else old-only.
  Phase PhaseOf(const std::string& name) const;
};

using ConfigPtr = std::shared_ptr<const Config>;

// Parses TOML text; `source` names it in errors ("demo.toml:12: ...").
absl::StatusOr<ConfigPtr> ParseConfig(std::string_view text, std::string_view source);
absl::StatusOr<ConfigPtr> LoadConfigFile(const std::string& path);

// proxy.deployment when the file leaves it out: 12 hex digits of a hash of
// the old and new databases' addresses, the same for every instance and
// every restart in front of them.
std::string DefaultDeployment(const Config& c);

// The phase step rules of SPEC section 2, for `next` replacing `running`:
// forward one phase at a time, back any number, never out of new-only (old
// is stale by then); a table absent from a file is old-only. While a table
// is past old-only its new_name and key cannot change. A table with
// force = true in `next` may break these rules. Returns every refusal, each
// naming the table and its phases.
absl::Status CheckPhaseSteps(const Config& running, const Config& next);

// "host:port", "[v6]:port".
absl::StatusOr<Endpoint> ParseEndpoint(std::string_view text);

}  // namespace pgshift::routing
