#include "routing/coordination_gate.h"

namespace pgshift::routing {

namespace {

int64_t Ticks(CoordinationGate::Clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
}

}  // namespace

void CoordinationGate::Renewed(Clock::time_point until, Clock::time_point now) {
  // The epoch moves before the lease is valid again, so that a session
  // that sees the renewed lease sees the new epoch too.
  const int64_t was = lease_until_.load(std::memory_order_acquire);
  if (was != 0 && was <= Ticks(now)) lease_epoch_.fetch_add(1, std::memory_order_acq_rel);
  lease_until_.store(Ticks(until), std::memory_order_release);
}

bool CoordinationGate::LeaseValid(Clock::time_point now) const {
  return Ticks(now) < lease_until_.load(std::memory_order_acquire);
}

bool CoordinationGate::Fenced(std::string_view table) const {
  if (!AnyFenced()) return false;
  absl::MutexLock lock(&mutex_);
  return fenced_.contains(std::string(table));
}

std::vector<std::string> CoordinationGate::FencedTables() const {
  absl::MutexLock lock(&mutex_);
  return {fenced_.begin(), fenced_.end()};
}

// Sequentially consistent, with the fence's any_fenced_: either the
// session sees the fence after its pass began, or the coordinator sees the
// pass open and waits for it (no lock on every client read).
void CoordinationGate::BeginPass() { passes_.fetch_add(1, std::memory_order_seq_cst); }

void CoordinationGate::EndPass() { passes_.fetch_sub(1, std::memory_order_seq_cst); }

CoordinationGate::Entry CoordinationGate::Enter(const std::string& table, uint64_t session,
                                                uint64_t settings_generation) {
  absl::MutexLock lock(&mutex_);
  if (acknowledged_ && fenced_.contains(table)) return Entry::kFlipping;
  auto changed = changed_in_.find(table);
  if (changed != changed_in_.end() && changed->second > settings_generation) return Entry::kStale;
  in_flight_[table].try_emplace(session, Clock::now());
  return Entry::kEntered;
}

void CoordinationGate::Leave(const std::string& table, uint64_t session) {
  absl::MutexLock lock(&mutex_);
  auto it = in_flight_.find(table);
  if (it == in_flight_.end()) return;
  it->second.erase(session);
  if (it->second.empty()) in_flight_.erase(it);
}

bool CoordinationGate::ChangedSince(const std::string& table, uint64_t generation) const {
  if (latest_change_.load(std::memory_order_acquire) <= generation) return false;
  absl::MutexLock lock(&mutex_);
  auto changed = changed_in_.find(table);
  return changed != changed_in_.end() && changed->second > generation;
}

void CoordinationGate::PhasesChanged(const std::vector<std::string>& tables, uint64_t generation) {
  absl::MutexLock lock(&mutex_);
  for (const std::string& table : tables) changed_in_[table] = generation;
  if (!tables.empty()) latest_change_.store(generation, std::memory_order_release);
}

void CoordinationGate::Fence(int64_t flip, const std::vector<std::string>& tables) {
  absl::MutexLock lock(&mutex_);
  if (flip_ == flip) return;
  flip_ = flip;
  fenced_ = {tables.begin(), tables.end()};
  acknowledged_ = false;
  any_fenced_.store(true, std::memory_order_seq_cst);
}

std::optional<int64_t> CoordinationGate::fence() const {
  absl::MutexLock lock(&mutex_);
  if (flip_ == 0) return std::nullopt;
  return flip_;
}

bool CoordinationGate::TryAcknowledge(Holder* holder) {
  absl::MutexLock lock(&mutex_);
  if (flip_ == 0) return false;
  if (acknowledged_) return true;
  bool found = false;
  for (const std::string& table : fenced_) {
    auto it = in_flight_.find(table);
    if (it == in_flight_.end()) continue;
    for (const auto& [session, since] : it->second) {
      if (!found || since < holder->since) *holder = {table, session, since};
      found = true;
    }
  }
  if (found || passes_.load(std::memory_order_seq_cst) > 0) return false;
  acknowledged_ = true;
  return true;
}

void CoordinationGate::Lift() {
  absl::MutexLock lock(&mutex_);
  flip_ = 0;
  fenced_.clear();
  acknowledged_ = false;
  any_fenced_.store(false, std::memory_order_release);
}

}  // namespace pgshift::routing
