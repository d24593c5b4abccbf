// Several instances, one migration (SPEC section 9): the phases live in the
// old database (pgshift_phases), each instance holds a lease there
// (pgshift_instances), and a phase change is a fenced flip.
//
// The coordinator runs on a thread of its own, on one connection that
// LISTENs: each round it renews the lease, reads the phases and applies
// what changed (the server installs them), and fences the tables of a flip
// under way until its sessions have drained them, then acknowledges. A
// NOTIFY starts a round at once; poll_interval is the fallback. Proposing
// a flip (Propose) runs on the caller's thread, on a connection of its own.
//
// A flip: the proposer writes the pending phase under a new flip number and
// notifies; every live instance fences the table (new transactions that
// touch it wait), lets those in flight finish, and acknowledges; once all
// have, the proposer commits the phase and notifies, and every instance
// installs it and lets the held transactions go, under the new phase. One
// that does not acknowledge within cutover_timeout aborts the flip, and
// the reason names it and what holds it.
#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "proxy/asio.h"
#include "proxy/migration_state.h"
#include "routing/config.h"
#include "routing/coordination_gate.h"
#include "routing/query_fingerprints.h"

namespace pgshift::proxy {

using SharedPhases = absl::flat_hash_map<std::string, routing::Phase>;

// What the coordinator needs of the server it runs in.
class CoordinatorHost {
 public:
  virtual ~CoordinatorHost() = default;
  // The fleet's phases as the coordinator holds them: installed, when
  // they differ from the running ones.
  virtual void InstallSharedPhases(const SharedPhases& phases) = 0;
  virtual int Sessions() const = 0;
  // This process's shadow comparisons of `table` since it entered its
  // phase here.
  virtual ShadowEvidence LocalEvidence(const std::string& table) = 0;
  // This process's statements on configured tables, by shape.
  virtual std::vector<routing::QueryFingerprints::Row> Queries() const = 0;
  // "session 12 (client 10.0.0.7:50312)", for what holds a flip.
  virtual std::string DescribeSession(uint64_t session) const = 0;
};

// A connection to the coordinator (coordinator.cc).
struct CoordinatorConnection;

// One row of SHOW INSTANCES.
struct InstanceRow {
  std::string id;
  std::string address;
  std::string version;
  std::string generation;
  std::string lease_expires;
  std::string sessions;
  std::string acknowledged;
  std::string holding;
  bool live = false;
};

class Coordinator {
 public:
  Coordinator(CoordinatorHost& host, routing::CoordinationGate& gate, asio::ssl::context& tls,
              routing::ConfigPtr config);
  ~Coordinator();

  // At start, before clients are served: claims the instance id, seeds
  // pgshift_phases with the file's tables it lacks and reads the phases.
  // AlreadyExists when another live process holds the id (two instances
  // sharing one id would acknowledge flips for each other). Unavailable
  // when the coordinator cannot be reached: the instance then serves no
  // configured table until the first round succeeds.
  absl::StatusOr<SharedPhases> Join();
  void Start();
  // Stops the loop and gives the lease up (a clean exit is not waited for
  // as a live instance's acknowledgement would be).
  void Stop();
  // The configuration for the next rounds (after a reload).
  void Configure(routing::ConfigPtr config);

  // ProposeFlip, by this instance.
  absl::Status Propose(const routing::Config& next, const std::vector<PhaseChange>& changes);

  // As of the last round.
  std::vector<InstanceRow> Instances() const;
  // Every instance's evidence per table since it entered its phase, as of
  // the last round.
  absl::flat_hash_map<std::string, ShadowEvidence> FleetTotals() const;
  const std::string& instance_id() const { return id_; }

 private:
  awaitable<void> Loop();
  // One round: lease, phases, instances, evidence. False when the
  // connection failed.
  awaitable<bool> Round(CoordinatorConnection& c);
  // The id's row, made this process's: when it has none, its lease has
  // expired, or its address is this one's (this instance, restarted).
  absl::Status ClaimId();
  // This process's evidence for every table (`rows`: pgshift_phases'),
  // under its run.
  awaitable<bool> FlushEvidence(CoordinatorConnection& c,
                                const std::vector<std::vector<std::optional<std::string>>>& rows);
  // This process's statement shapes that ran since the last flush.
  awaitable<bool> FlushQueries(CoordinatorConnection& c);
  // Acknowledges the fenced flip once the sessions have drained it.
  awaitable<bool> AcknowledgeIfDrained(CoordinatorConnection& c);
  void Apply(const std::vector<std::vector<std::optional<std::string>>>& phases);
  routing::ConfigPtr config() const;
  std::string Holding() const;

  CoordinatorHost& host_;
  routing::CoordinationGate& gate_;
  asio::ssl::context& tls_;
  std::string id_;
  std::string address_;
  std::string run_;  // this process's run, for its evidence rows
  mutable absl::Mutex mutex_;
  routing::ConfigPtr config_ ABSL_GUARDED_BY(mutex_);
  std::vector<InstanceRow> instances_ ABSL_GUARDED_BY(mutex_);
  absl::flat_hash_map<std::string, ShadowEvidence> fleet_ ABSL_GUARDED_BY(mutex_);
  // The coordinator thread's own.
  int64_t applied_ = 0;       // the newest flip installed
  int64_t acknowledged_ = 0;  // the newest flip drained for
  routing::CoordinationGate::Holder holder_;
  bool differences_logged_ = false;
  bool id_taken_logged_ = false;
  // Per shape, its executions and refusals as last flushed.
  absl::flat_hash_map<std::string, uint64_t> flushed_queries_;
  asio::io_context context_{1};
  std::thread thread_;
};

}  // namespace pgshift::proxy
