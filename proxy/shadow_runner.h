// Shadow reads, run off the clients' path (SPEC section 5.4). Each worker
// has one runner: a bounded queue of reads to compare, up to
// shadow_connections of them at once, each on connections of pgshift's own
// borrowed from a pool. On one database both reads run
// in one REPEATABLE READ READ ONLY snapshot (one batch, one transaction), so
// writes committed in between cannot make them differ. Across servers a
// difference is judged against the mirrored writes in flight
// (routing/writes_in_flight.h): one they explain is read again once its
// keys (or, for a result without keys, its tables) are quiet, and counted
// transient when it then agrees, or unstable when no quiet moment comes;
// one nothing explains is read again once more after a short delay, and
// is persistent if it stays. Most reads cost one read on the other side
// against the client's own result; those go to the server in batches
// (proxy/shadow_batch.cc).
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
    size_t held = 0;     // by every holder
    size_t waiting = 0;  // of `held`, by kWaiting holders
  };
  // A kWaiting holder (a queued job's own bytes) may hold, with the
  // others of its kind, at most three quarters of the limit: a full queue
  // leaves room for the comparisons that empty it.
  enum class Kind { kResult, kWaiting };
  static constexpr double kWaitingShare = 0.75;

  ShadowBytes() = default;
  explicit ShadowBytes(std::shared_ptr<Budget> budget, Kind kind = Kind::kResult)
      : budget_(std::move(budget)), kind_(kind) {}
  ShadowBytes(ShadowBytes&& other) noexcept
      : budget_(std::move(other.budget_)),
        kind_(other.kind_),
        taken_(std::exchange(other.taken_, 0)) {}
  ShadowBytes& operator=(ShadowBytes&& other) noexcept {
    Release();
    budget_ = std::move(other.budget_);
    kind_ = other.kind_;
    taken_ = std::exchange(other.taken_, 0);
    return *this;
  }
  ~ShadowBytes() { Release(); }

  // False, taking nothing, when the worker would hold more than its limit
  // (a kWaiting holder: or its kind more than their share).
  bool Take(size_t n) {
    if (!budget_ || budget_->held + n > budget_->limit) return false;
    const bool waiting = kind_ == Kind::kWaiting;
    if (waiting && budget_->waiting + n > budget_->limit * kWaitingShare) return false;
    budget_->held += n;
    if (waiting) budget_->waiting += n;
    taken_ += n;
    return true;
  }
  void Release() {
    if (budget_) {
      budget_->held -= taken_;
      if (kind_ == Kind::kWaiting) budget_->waiting -= taken_;
    }
    taken_ = 0;
  }

 private:
  std::shared_ptr<Budget> budget_;  // shared: a holder may outlive the runner
  Kind kind_ = Kind::kResult;
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
  // What the job itself holds while it waits and runs (its Bind, the
  // result's columns, the job; kWaiting): the queue is bounded by bytes as
  // well as by count, so a long queue of small reads cannot grow without
  // limit.
  ShadowBytes own_bytes;
  std::chrono::steady_clock::time_point queued;  // set by Enqueue
  bool alone = false;  // its batch could not judge it: compared on its own
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
  // queue holds proxy.shadow_queue_size reads, or the job would take the
  // worker past shadow_max_bytes: the client never waits.
  bool Enqueue(ShadowJob job);
  // A holder of bytes against this worker's shadow_max_bytes.
  ShadowBytes Bytes(ShadowBytes::Kind kind = ShadowBytes::Kind::kResult);

 private:
  // A connection of pgshift's own to one side, lent to one comparison at a
  // time.
  struct Connection {
    std::unique_ptr<Stream> stream;
    PacketBuffer buffer;
    // A batch of reads that call functions is followed by a DISCARD ALL, so
    // no session state a read made outlives it; its reply is read after the
    // batch's.
    int discards_pending = 0;
    // Reads that call no function run as statements prepared on it, by
    // text (at most kMaxPrepared; DISCARD ALL forgets them).
    absl::flat_hash_map<std::string, std::string> prepared;
    uint64_t statements_made = 0;
    // A batch failed: the statements it prepared may not exist.
    bool prepared_unsure = false;
  };
  static constexpr size_t kMaxPrepared = 64;
  // Reads against the client's own result go out in batches of up to
  // kBatchReads in one write and one transaction: the server answers them
  // in one wake-up, for a fraction of the CPU of one round trip each.
  // A batch waits for company at most kBatchLinger (the client is never
  // waiting on it).
  static constexpr size_t kBatchReads = 128;
  static constexpr std::chrono::milliseconds kBatchLinger{4};
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
    // Its reads call functions: each batch is followed by DISCARD ALL.
    bool discard = true;
    std::array<ConnectionPtr, 2> connections;
  };
  // What a comparison found.
  enum class Verdict { kMatched, kTransient, kPersistent, kUnstable, kDropped };
  struct Outcome {
    routing::Comparison comparison;
    Verdict verdict = Verdict::kMatched;
    std::vector<std::string> keys;  // a persistent mismatch's differing keys, when known
  };
  // Why two reads across servers differ: writes in flight on `keys` (or,
  // when the result has no keys, on the read's tables), or nothing known
  // (`unexplained`: the keys no write explains).
  struct Explanation {
    bool explained = false;
    std::vector<std::string> keys;
    std::vector<std::string> unexplained;
  };

  // Starts queued comparisons while fewer than shadow_connections run.
  awaitable<void> Loop();
  awaitable<void> Run(ShadowJob job);
  // Whether `job` is read once against its client's result, in a batch.
  static bool Batched(const ShadowJob& job);
  // The batched jobs at the queue's front that can go in one batch.
  size_t BatchAtFront() const;
  // One read per job on the other side, all in one transaction; a job
  // whose result differs goes back to the queue's front, to be read on
  // both sides.
  awaitable<void> RunBatch(std::vector<ShadowJob> jobs);
  awaitable<void> Compare(Comparing& run, ShadowJob& job);
  // True when the client's result matches the other side's read `b`
  // (counted).
  static bool MatchesServed(const ShadowJob& job, const routing::ResultSet& b);
  // Both reads on one server; nullopt when they could not be run.
  awaitable<std::optional<Outcome>> CompareInOneSnapshot(Comparing& run, const ShadowJob& job);
  awaitable<Outcome> CompareAcrossServers(Comparing& run, const ShadowJob& job);
  // The keys of the rows one result has and the other lacks, when the
  // read's rows can be traced to keys of its table (routing::KeyTrace);
  // `pinned` (if given) is set when they come from the statement's WHERE.
  static std::vector<std::string> DifferingKeys(const ShadowJob& job, const routing::ResultSet& a,
                                                const routing::ResultSet& b, bool* pinned);
  Explanation Explain(const ShadowJob& job, const routing::ResultSet& a,
                      const routing::ResultSet& b,
                      std::chrono::steady_clock::time_point began) const;
  // Whether `why`'s keys (or tables) had no write in flight at one moment
  // before `deadline`; the comparison's connections and its slot are
  // given back meanwhile.
  awaitable<bool> WaitUntilQuiet(Comparing& run, const ShadowJob& job, const Explanation& why,
                                 std::chrono::steady_clock::time_point deadline);
  // Gives back the connections and slot of `run` for `delay`, then takes a
  // slot and connections again (false: none could be had).
  awaitable<bool> Pause(Comparing& run, const ShadowJob& job,
                        std::chrono::steady_clock::duration delay);
  // A slot among the shadow_connections comparisons that may hold
  // connections at once, waiting for one if need be; and giving it back.
  awaitable<void> TakeSlot();
  void GiveSlot();
  void Tally(const ShadowJob& job, const Outcome& outcome);
  // The comparison cannot give a verdict (a connection broke, or a read was
  // skipped): counted so, true.
  static bool Unjudged(const Comparing& run, const routing::ShadowPlan& shadow);
  static void Dropped(const routing::ShadowPlan& shadow, std::string_view why);
  static size_t JobBytes(const ShadowJob& job);
  // A read (its statement, the client's parameters, results as text) in
  // the extended protocol, for `run`'s connection to `side`, and a Sync
  // when `sync`.
  static void AppendRead(Comparing& run, routing::BackendId side, std::string& out,
                         const std::string& sql, const std::shared_ptr<const std::string>& bind,
                         bool sync);
  awaitable<bool> Send(Comparing& run, routing::BackendId side, const std::string& out);
  // The results up to the next ReadyForQuery on `side`, one per read (an
  // error ends them).
  awaitable<std::vector<routing::ResultSet>> Collect(Comparing& run, routing::BackendId side);
  awaitable<routing::ResultSet> CollectOne(Comparing& run, routing::BackendId side);
  // A connection to `side` for `run`: an idle one of the pool, or a new one.
  awaitable<bool> Borrow(Comparing& run, routing::BackendId side);
  // Connections to both sides of `job`'s comparison.
  awaitable<bool> BorrowBoth(Comparing& run, const ShadowJob& job);
  // Its open connections go back to the pool.
  void GiveBack(Comparing& run);
  void Report(const ShadowJob& job, const Outcome& outcome);

  Server& server_;
  asio::io_context& context_;
  std::deque<ShadowJob> queue_;
  std::shared_ptr<ShadowBytes::Budget> budget_ = std::make_shared<ShadowBytes::Budget>();
  size_t comparing_ = 0;  // comparisons holding a slot
  size_t waiting_ = 0;    // comparisons waiting for a quiet moment (count as queued)
  // Comparisons back from waiting, first in line for a slot.
  std::deque<asio::steady_timer*> slot_waiters_;
  std::array<std::vector<ConnectionPtr>, 2> idle_;  // by routing::BackendId
  bool privilege_warned_ = false;  // once per worker
  asio::steady_timer wake_;
  bool running_ = false;
};

}  // namespace pgshift::proxy
