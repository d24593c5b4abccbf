// Shadow reads, run off the clients' path (SPEC section 5.4). Each worker
// has one runner: a bounded queue of reads to compare, worked through one
// at a time on connections of pgshift's own. On one database both reads run
// in one REPEATABLE READ READ ONLY snapshot (one batch, one transaction), so
// writes committed in between cannot make them differ; across servers a
// mismatch is read again after a short delay and counted transient when it
// then agrees.
#pragma once

#include <array>
#include <chrono>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <utility>

#include "absl/synchronization/mutex.h"
#include "proxy/asio.h"
#include "proxy/packet_buffer.h"
#include "proxy/stream.h"
#include "routing/router.h"
#include "routing/shadow.h"

namespace pgshift::proxy {

class Server;

// Bytes of the clients' and the shadow reads' results a worker holds for
// comparison, counted against proxy.shadow_max_bytes: each holder takes
// them as its result grows and gives them back when it goes.
class ShadowBytes {
 public:
  struct Budget {
    size_t limit = 0;
    size_t held = 0;
  };
  ShadowBytes() = default;
  explicit ShadowBytes(std::shared_ptr<Budget> budget) : budget_(std::move(budget)) {}
  ShadowBytes(ShadowBytes&& other) noexcept
      : budget_(std::move(other.budget_)), taken_(std::exchange(other.taken_, 0)) {}
  ShadowBytes& operator=(ShadowBytes&& other) noexcept {
    Release();
    budget_ = std::move(other.budget_);
    taken_ = std::exchange(other.taken_, 0);
    return *this;
  }
  ~ShadowBytes() { Release(); }

  // False, taking nothing, when the worker would hold more than its limit.
  bool Take(size_t n) {
    if (!budget_ || budget_->held + n > budget_->limit) return false;
    budget_->held += n;
    taken_ += n;
    return true;
  }
  void Release() {
    if (budget_) budget_->held -= taken_;
    taken_ = 0;
  }

 private:
  std::shared_ptr<Budget> budget_;  // shared: a holder may outlive the runner
  size_t taken_ = 0;
};

// One read to compare: the plan it was served by, the client's Bind (its
// parameters) when it came through the extended protocol, and the result
// the client got, when the relay could keep it (text results, not too
// many rows): then only the other side's read runs, unless they differ.
struct ShadowJob {
  routing::PlanPtr plan;
  std::shared_ptr<const std::string> bind;
  std::shared_ptr<const routing::ResultSet> served;
  ShadowBytes served_bytes;  // what `served` holds
};

// A persistent mismatch, for the log and SHOW MISMATCHES.
struct MismatchRecord {
  std::chrono::system_clock::time_point at;
  std::string table;
  std::string fingerprint;
  std::string query;
  std::string detail;
};

// The recent mismatches of all workers; says when a fingerprint may be
// logged again (once a minute).
class MismatchLog {
 public:
  void Add(MismatchRecord record);
  std::vector<MismatchRecord> Recent() const;

 private:
  mutable absl::Mutex mutex_;
  std::deque<MismatchRecord> recent_ ABSL_GUARDED_BY(mutex_);  // newest last, at most 100
  absl::flat_hash_map<std::string, std::chrono::steady_clock::time_point> last_logged_
      ABSL_GUARDED_BY(mutex_);
};

class ShadowRunner {
 public:
  ShadowRunner(Server& server, asio::io_context& context);

  // From the worker's own thread. False (and counted dropped) when the
  // queue holds proxy.shadow_queue_size reads: the client never waits.
  bool Enqueue(ShadowJob job);
  // A holder of bytes against this worker's shadow_max_bytes.
  ShadowBytes Bytes();

 private:
  awaitable<void> Loop();
  awaitable<void> Compare(const ShadowJob& job);
  // A comparison of both sides' reads; `transient`: matched only when read
  // again.
  struct Outcome {
    routing::Comparison comparison;
    bool transient = false;
  };
  // True when the client's result matches the other side's read (counted).
  awaitable<bool> MatchesServed(const ShadowJob& job);
  // Both reads on one server; nullopt when they could not be run.
  awaitable<std::optional<routing::Comparison>> CompareInOneSnapshot(const ShadowJob& job);
  awaitable<Outcome> CompareWithRecheck(const ShadowJob& job);
  void Tally(const ShadowJob& job, const Outcome& outcome);
  // A read (its statement, the client's parameters, results as text) in
  // the extended protocol, and a Sync when `sync`.
  static void AppendRead(std::string& out, const std::string& sql,
                         const std::shared_ptr<const std::string>& bind, bool sync);
  awaitable<bool> Send(routing::BackendId side, const std::string& out);
  // The results up to the next ReadyForQuery on `side`, one per read (an
  // error ends them).
  awaitable<std::vector<routing::ResultSet>> Collect(routing::BackendId side);
  awaitable<routing::ResultSet> CollectOne(routing::BackendId side);
  awaitable<bool> Connect(routing::BackendId side);
  void Report(const ShadowJob& job, const routing::Comparison& comparison);

  Server& server_;
  asio::io_context& context_;
  std::deque<ShadowJob> queue_;
  std::shared_ptr<ShadowBytes::Budget> budget_ = std::make_shared<ShadowBytes::Budget>();
  // What the comparison under way reads; past the budget its rows are not
  // kept and it is counted skipped, as when a read was canceled
  // (shadow_timeout): why, when it is.
  ShadowBytes reading_;
  std::string skipped_because_;
  bool privilege_warned_ = false;  // once per worker
  asio::steady_timer wake_;
  bool running_ = false;
  struct Connection {
    std::unique_ptr<Stream> stream;
    PacketBuffer buffer;
    // Each batch of reads is followed by a DISCARD ALL, so no session state
    // a read made outlives it; its reply is read after the batch's.
    int discards_pending = 0;
  };
  std::array<Connection, 2> connections_;  // by routing::BackendId
};

}  // namespace pgshift::proxy
