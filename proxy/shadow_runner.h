// Shadow reads, run off the clients' path (SPEC section 5.4). Each worker
// has one runner: a bounded queue of reads to compare, up to
// shadow_connections of them at once, each on connections of pgshift's own
// borrowed from a pool. On one database both reads run
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
#include <vector>

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
  // A connection of pgshift's own to one side, lent to one comparison at a
  // time.
  struct Connection {
    std::unique_ptr<Stream> stream;
    PacketBuffer buffer;
    // Each batch of reads is followed by a DISCARD ALL, so no session state
    // a read made outlives it; its reply is read after the batch's.
    int discards_pending = 0;
  };
  using ConnectionPtr = std::unique_ptr<Connection>;
  // One comparison under way: the bytes its reads hold (past the budget its
  // rows are not kept and it is counted skipped, as when a read was
  // canceled by shadow_timeout: why, when it is) and the connections it
  // borrowed, by routing::BackendId.
  struct Comparing {
    explicit Comparing(ShadowBytes bytes) : reading(std::move(bytes)) {}
    ShadowBytes reading;
    std::string skipped_because;
    bool lost = false;  // a connection broke: no verdict, counted dropped
    std::array<ConnectionPtr, 2> connections;
  };
  // A comparison of both sides' reads; `transient`: matched only when read
  // again; `dropped`: the recheck found no connection.
  struct Outcome {
    routing::Comparison comparison;
    bool transient = false;
    bool dropped = false;
  };

  // Starts queued comparisons while fewer than shadow_connections run.
  awaitable<void> Loop();
  awaitable<void> Run(ShadowJob job);
  awaitable<void> Compare(Comparing& run, const ShadowJob& job);
  // True when the client's result matches the other side's read (counted).
  awaitable<bool> MatchesServed(Comparing& run, const ShadowJob& job);
  // Both reads on one server; nullopt when they could not be run.
  awaitable<std::optional<routing::Comparison>> CompareInOneSnapshot(Comparing& run,
                                                                     const ShadowJob& job);
  awaitable<Outcome> CompareWithRecheck(Comparing& run, const ShadowJob& job);
  void Tally(const ShadowJob& job, const Outcome& outcome);
  // The comparison cannot give a verdict (a connection broke, or a read was
  // skipped): counted so, true.
  static bool Unjudged(const Comparing& run, const routing::ShadowPlan& shadow);
  // A read (its statement, the client's parameters, results as text) in
  // the extended protocol, and a Sync when `sync`.
  static void AppendRead(std::string& out, const std::string& sql,
                         const std::shared_ptr<const std::string>& bind, bool sync);
  awaitable<bool> Send(Comparing& run, routing::BackendId side, const std::string& out);
  // The results up to the next ReadyForQuery on `side`, one per read (an
  // error ends them).
  awaitable<std::vector<routing::ResultSet>> Collect(Comparing& run, routing::BackendId side);
  awaitable<routing::ResultSet> CollectOne(Comparing& run, routing::BackendId side);
  // A connection to `side` for `run`: an idle one of the pool, or a new one.
  awaitable<bool> Borrow(Comparing& run, routing::BackendId side);
  // Its open connections go back to the pool.
  void GiveBack(Comparing& run);
  void Report(const ShadowJob& job, const routing::Comparison& comparison);

  Server& server_;
  asio::io_context& context_;
  std::deque<ShadowJob> queue_;
  std::shared_ptr<ShadowBytes::Budget> budget_ = std::make_shared<ShadowBytes::Budget>();
  size_t comparing_ = 0;                            // comparisons under way
  std::array<std::vector<ConnectionPtr>, 2> idle_;  // by routing::BackendId
  bool privilege_warned_ = false;  // once per worker
  asio::steady_timer wake_;
  bool running_ = false;
};

}  // namespace pgshift::proxy
