// Mirroring across servers keeps the mirror's side of a transaction
// prepared (PREPARE TRANSACTION) until the authoritative side has committed,
// so that a crash between the two commits loses nothing. At start and on
// reload pgshift readies both servers: it creates the divergence log and
// learns whether each server allows prepared transactions. At those times
// and every recovery_interval while it runs, it finishes the prepared
// mirrors a crash left behind by the fate of the authoritative transaction
// each one follows, and leaves (and reports) those whose fate is unknown.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "proxy/asio.h"
#include "routing/config.h"
#include "routing/router.h"

namespace pgshift::proxy {

struct MirrorReadiness {
  // Indexed by routing::BackendId: the server allows PREPARE TRANSACTION
  // (max_prepared_transactions > 0).
  std::array<bool, 2> can_prepare{};
};

// A prepared mirror whose fate recovery did not decide, as SHOW PREPARED
// lists it.
struct UnresolvedMirror {
  std::string backend;      // where it is prepared
  std::string transaction;  // its gid
  std::string reason;
};

struct RecoveryReport {
  std::vector<UnresolvedMirror> unresolved;
  int resolved = 0;
  // Both servers were reached: `unresolved` is the whole list.
  bool complete = false;
};

// Blocks the calling thread for at most the connect timeouts. Only with
// [backends.new]; problems are logged, never fatal.
MirrorReadiness ReadyMirroring(const routing::Config& config, asio::ssl::context& tls,
                               RecoveryReport& recovery);

// The leftover prepared mirrors of this deployment, resolved where their
// fate is known. A server that cannot be reached leaves the report
// incomplete; it is not logged here (a periodic run would say it every time).
awaitable<RecoveryReport> ResolvePreparedMirrors(const routing::Config& config,
                                                 asio::ssl::context& tls);

// A reload that renames the deployment (proxy.deployment) while the running
// name's prepared mirrors are left on either server, whatever their age, is
// refused (FailedPrecondition, naming one): under the new name recovery
// would never resolve them. So is one when a server cannot be asked.
absl::Status CheckDeploymentChange(const routing::Config& running, const routing::Config& next,
                                   asio::ssl::context& tls);

// A run's connections are closed after this long, so a server that stops
// answering midway delays the next run (or a reload) by this much at most.
inline constexpr double kRecoveryRunTimeoutS = 30;

// "pgshift_3f2a9c0b1d4e_old_1234": deployment 3f2a9c0b1d4e's mirror of
// transaction 1234 on the authoritative server old.
std::string PreparedTransactionId(std::string_view deployment, routing::BackendId authoritative,
                                  std::string_view xid);

struct PreparedMirrorId {
  std::string deployment;  // empty in "pgshift_old_1234", written before deployments had names
  routing::BackendId authoritative = routing::BackendId::kOld;
  int64_t xid = 0;
};
// nullopt: not a gid pgshift writes.
std::optional<PreparedMirrorId> ParsePreparedTransactionId(std::string_view gid);

// What a leftover prepared transaction of pgshift's is to this recovery.
enum class Leftover {
  // Younger than recovery_min_age: perhaps a live session of another
  // instance is between old's COMMIT and its own COMMIT PREPARED. Left, and
  // not reported: it is looked at again once it is older.
  kInFlight,
  // Another deployment's, old enough to be a leftover: never touched (its
  // fate is on servers this one may not know), but reported.
  kOtherDeployment,
  kOurs,
};
Leftover ClassifyLeftover(const PreparedMirrorId& id, double age_s, std::string_view deployment,
                          double min_age_s);

enum class Resolution { kCommit, kRollBack, kLeave };
struct ResolutionChoice {
  Resolution resolution;
  std::string_view why;  // for kLeave
};
// What recovery does with a prepared mirror of this deployment, given
// txid_status() of the transaction it follows (nullopt: NULL, too old to
// be known) and whether a session of this process is settling it. Only a
// known outcome is acted on: an unknown one is never taken for a rollback.
ResolutionChoice ChooseResolution(const std::optional<std::string>& authoritative_status,
                                  bool settling);

// The prepared mirrors this process's sessions are settling, which
// recovery leaves to them. One per process, as the sessions are.
class SettlingMirrors {
 public:
  static SettlingMirrors& Get();
  void Add(const std::string& gid);
  void Remove(const std::string& gid);
  bool Contains(const std::string& gid) const;

 private:
  mutable absl::Mutex mutex_;
  absl::flat_hash_set<std::string> gids_ ABSL_GUARDED_BY(mutex_);
};

// Registers a gid with SettlingMirrors for as long as it lives.
class SettlingMirror {
 public:
  SettlingMirror() = default;
  explicit SettlingMirror(std::string gid) : gid_(std::move(gid)) {
    if (!gid_.empty()) SettlingMirrors::Get().Add(gid_);
  }
  SettlingMirror(SettlingMirror&& other) noexcept : gid_(std::exchange(other.gid_, {})) {}
  SettlingMirror& operator=(SettlingMirror&& other) noexcept {
    if (this != &other) {
      Release();
      gid_ = std::exchange(other.gid_, {});
    }
    return *this;
  }
  ~SettlingMirror() { Release(); }
  const std::string& gid() const { return gid_; }

 private:
  void Release() {
    if (!gid_.empty()) SettlingMirrors::Get().Remove(gid_);
    gid_.clear();
  }
  std::string gid_;
};

}  // namespace pgshift::proxy
